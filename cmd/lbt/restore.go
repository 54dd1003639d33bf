package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-isatty"

	"lbt/config"
	"lbt/restore"
)

type restoreCmd struct {
	Table       string           `required:"" placeholder:"TABLE" help:"Table to restore, as a SQL name as it was named at the target moment: schema.table, parts quoted as in SQL (required)."`
	Until       timeArg          `xor:"target" placeholder:"TIMESTAMP" help:"Restore the table as it was right after the last transaction committed at or before this time: RFC 3339, 'YYYY-MM-DD HH:MM:SS[.frac]' with an optional zone (local time without), or relative like -2h (default: the latest state in the archive)."`
	LSN         string           `name:"lsn" xor:"target" placeholder:"LSN" help:"Restore the table as it was after the transactions that committed at or before this WAL position, like 0/16B3748 (default: none)."`
	XID         uint32           `name:"xid" xor:"target" placeholder:"XID" help:"Restore the table as it was right after this transaction committed (default: none)."`
	BeforeXID   uint32           `name:"before-xid" xor:"target" placeholder:"XID" help:"Restore the table as it was just before this transaction committed: after every transaction that committed before it (default: none)."`
	BeforeLSN   string           `name:"before-lsn" xor:"target" placeholder:"LSN" help:"Restore the table as it was just before the transaction that committed at this WAL position (its commit LSN, as lbt inspect changes prints it): after every transaction that committed before it (default: none)."`
	TargetDSN   string           `name:"target-dsn" xor:"output" placeholder:"DSN" help:"Database to restore into, as a libpq connection string or URL (default: the source database of the configuration)."`
	TargetTable string           `placeholder:"TABLE" help:"Table to create and fill, as a SQL name (default: <table>_restored_<YYYYMMDDHHMMSS> of the target moment in UTC, in the table's schema; with --sql the table's own name)."`
	Replace     bool             `help:"Drop and recreate the target table if it exists; without it an existing target table is an error (default: false)."`
	SQL         string           `name:"sql" xor:"output" placeholder:"FILE" help:"Write the restore as a SQL script for psql (table definition, COPY data, sequence values) to FILE instead of into a database; - writes to standard output (default: none)."`
	Verify      bool             `help:"Check the changes read against the catalog's counts, and, before committing, the restored table's row count against the catalog's and its checksum, computed by the target server in one pass, against the rows sent; with --sql the script checks itself before COMMIT. A difference exits with status 3 and commits nothing (default: false)."`
	Quiet       bool             `short:"q" help:"Print nothing but errors (default: false)."`
	DryRun      bool             `help:"Print which basebackup and changes the restore would use, and change nothing (default: false)."`
	Where       string           `placeholder:"PREDICATE" help:"Restore only the rows for which this SQL condition is true, like 'customer_id = 42', with the columns named as at the target moment; the target server evaluates it as the rows load (COPY ... WHERE, PostgreSQL 12 or newer), with --sql too (default: every row)."`
	Columns     []string         `placeholder:"COLUMN" help:"Restore only these columns (comma-separated), by their names at the target moment; they keep the table's order. The others are loaded, may be used by the WHERE predicate, and are dropped before the commit (default: every column)."`
	Memory      *config.ByteSize `placeholder:"SIZE" help:"Memory for the reduced changes, like 64MiB or 2GiB; past it they spill to sorted files in tempDir (default: config restoreMemory, 256 MiB unless set, which keeps the process under 512 MiB); 0 keeps them all in memory."`
	Jobs        int              `short:"j" placeholder:"N" help:"Connections loading the rows at once (default: 1). With more, the table is loaded in a staging schema lbt_restore_<random> and moved into place by one final transaction; it appears whole or not at all either way."`
}

func (cmd *restoreCmd) Help() string {
	return `Restores one table from its newest basebackup at or before the target and the transactions committed after it, up to the target, into a new table in one transaction. The target is the latest archived state unless --until, --lsn, --xid, --before-xid or --before-lsn names another (--before-xid N is the usual target after lbt inspect found the bad transaction N); an error names the window the archive can restore. On a terminal, progress goes to standard error; a summary line with the row count and the checksum of the restored rows (md5-sum64, docs/RESTORE.md) ends the run. Only the archive directory and the target server are needed.`
}

func (cmd *restoreCmd) Validate() error {
	if cmd.SQL != "" && cmd.Replace {
		return errors.New("--replace has no meaning with --sql")
	}
	return nil
}

func (cmd *restoreCmd) Run(ctx context.Context, g *Globals) error {
	cfg, log, err := g.configure()
	if err != nil {
		return err
	}

	opts := restore.NewOptions()
	opts.Table = cmd.Table
	opts.Replace = cmd.Replace
	opts.TargetTable = cmd.TargetTable
	opts.Verify = cmd.Verify
	opts.Where = cmd.Where
	opts.Columns = cmd.Columns
	opts.DryRun = cmd.DryRun
	opts.Version = version
	opts.Logger = log
	opts.Memory = int64(cfg.RestoreMemory)
	if cmd.Memory != nil {
		if *cmd.Memory < 0 {
			return usageError{errors.New("--memory must not be negative")}
		}
		opts.Memory = int64(*cmd.Memory)
	}
	opts.TempDir = cfg.EffectiveTempDir()
	if cmd.Jobs < 0 {
		return usageError{errors.New("--jobs must be at least 1")}
	}
	opts.Jobs = cmd.Jobs
	limitGoMemory(opts.Memory)
	switch {
	case cmd.Until != "":
		if opts.Until, err = parseTimeFlag(string(cmd.Until), time.Now()); err != nil {
			return usageError{fmt.Errorf("--until: %w", err)}
		}
	case cmd.LSN != "":
		if opts.LSN, err = parseLSNFlag("--lsn", cmd.LSN); err != nil {
			return err
		}
	case cmd.XID != 0:
		opts.Xid = cmd.XID
	}
	var beforeLSN uint64
	if cmd.BeforeLSN != "" {
		if beforeLSN, err = parseLSNFlag("--before-lsn", cmd.BeforeLSN); err != nil {
			return err
		}
	}

	// stdout carries the script with --sql -, so messages go to stderr then.
	msgs := g.stdout
	var script *os.File
	switch cmd.SQL {
	case "":
		if cmd.TargetDSN != "" {
			pc, err := pgconn.ParseConfig(cmd.TargetDSN)
			if err != nil {
				return usageError{fmt.Errorf("--target-dsn: %w", cfg.RedactError(err))}
			}
			if _, ok := pc.RuntimeParams["application_name"]; !ok {
				pc.RuntimeParams["application_name"] = "lbt"
			}
			opts.TargetConn = pc
		} else if opts.TargetConn, err = cfg.ConnConfig(); err != nil {
			return usageError{err}
		}
	case "-":
		opts.SQL = g.stdout
		msgs = g.stderr
	default:
		if !cmd.DryRun {
			// Written beside its final name and renamed when complete, so
			// that a failed restore leaves no half script.
			script, err = os.CreateTemp(filepath.Dir(cmd.SQL), filepath.Base(cmd.SQL)+".partial-*")
			if err != nil {
				return fmt.Errorf("--sql: %w", err)
			}
			defer os.Remove(script.Name())
			defer script.Close()
			opts.SQL = script
		}
	}
	if f, ok := g.stderr.(*os.File); ok && !cmd.Quiet && !cmd.DryRun && isatty.IsTerminal(f.Fd()) {
		opts.Progress = g.stderr
	}

	arch, err := openReadArchive(ctx, cfg, !cmd.DryRun)
	if err != nil {
		return err
	}
	defer arch.Close()
	cat := arch.cat
	switch {
	case cmd.BeforeXID != 0:
		opts.LSN, err = restore.BeforeXid(ctx, cat, cmd.BeforeXID)
	case beforeLSN != 0:
		opts.LSN, err = restore.BeforeLSN(ctx, cat, beforeLSN)
	}
	if err != nil {
		return err
	}
	res, err := restore.Run(ctx, cat, opts)
	if err != nil {
		// A connection error may quote the target DSN.
		return cfg.RedactError(err)
	}
	if script != nil {
		if err := script.Sync(); err != nil {
			return fmt.Errorf("--sql: %w", err)
		}
		if err := script.Close(); err != nil {
			return fmt.Errorf("--sql: %w", err)
		}
		if err := os.Rename(script.Name(), cmd.SQL); err != nil {
			return fmt.Errorf("--sql: %w", err)
		}
	}
	if !cmd.Quiet {
		printRestore(msgs, res, cmd.DryRun, cmd.SQL != "")
		arch.reportDownload(ctx, msgs)
	}
	return nil
}

// limitGoMemory sets the Go runtime's soft memory limit a little above
// what the restore's budget lets it hold, unless GOMEMLIMIT says otherwise:
// the garbage collector then works harder instead of letting the heap grow
// to twice what is live.
func limitGoMemory(budget int64) {
	if budget <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(budget*5/4 + 128<<20)
}

// printRestore writes the plan of a dry run, or the summary line.
func printRestore(w io.Writer, r restore.Result, dryRun, script bool) {
	at := r.TargetTime.Local().Format("2006-01-02 15:04:05.999999Z07:00")
	lsn := func(x uint64) string { return pglogrepl.LSN(x).String() }
	if dryRun {
		fmt.Fprintf(w, "table:       %s\n", r.Table)
		fmt.Fprintf(w, "target:      %s (changes committed at or before LSN %s; %s)\n", r.Target, lsn(r.TargetLSN), at)
		if r.Partitions > 0 {
			fmt.Fprintf(w, "partitions:  %d, their basebackups %d rows (each in a note)\n", r.Partitions, r.BaseRows)
		} else {
			fmt.Fprintf(w, "basebackup:  %d at LSN %s, taken %s, %d rows\n", r.BasebackupID, lsn(r.BasebackupLSN), r.BasebackupAt.Local().Format(time.RFC3339), r.BaseRows)
		}
		fmt.Fprintf(w, "changes:     %d transactions, %d changes\n", r.Transactions, r.Changes)
		fmt.Fprintf(w, "restore as:  %s\n", r.TargetTable)
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "note:        %s\n", warn)
		}
		return
	}
	where := "into " + r.TargetTable
	if script {
		where = "as a SQL script for " + r.TargetTable
	}
	sum := ""
	if r.Checksum != "" {
		sum = ", md5-sum64 " + r.Checksum
	}
	verified := ""
	if r.Verified {
		verified = ", verified"
	}
	from := "basebackup at " + lsn(r.BasebackupLSN)
	if r.Partitions > 0 {
		from = fmt.Sprintf("%d partitions, their basebackups", r.Partitions)
	}
	spilled := ""
	if r.Spills > 0 {
		spilled = fmt.Sprintf(" (spilled to tempDir %d times)", r.Spills)
	}
	rows := fmt.Sprintf("%d rows", r.Rows)
	if r.RowsSent {
		rows = fmt.Sprintf("%d rows before its WHERE", r.Rows)
	}
	fmt.Fprintf(w, "restored %s as of %s (LSN %s) %s: %s%s%s; %s + %d transactions (%d changes)%s, %s\n",
		r.Table, at, lsn(r.TargetLSN), where, rows, sum, verified, from, r.Transactions, r.Changes, spilled, r.Duration.Round(time.Millisecond))
}
