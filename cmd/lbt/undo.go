package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/inspect"
	"lbt/repair"
)

type undoCmd struct {
	XID           uint32  `name:"xid" xor:"what" placeholder:"XID" help:"Undo this transaction (the newest archived one with that xid) (default: none)."`
	LSN           string  `name:"lsn" xor:"what" placeholder:"LSN" help:"Undo the transaction that committed at this WAL position, as lbt inspect changes prints it (default: none)."`
	Actor         string  `placeholder:"ROLE" help:"Undo every transaction this role (current_user) made, as the actor capture of lbt setup records it, within the --since and --until window (default: none)."`
	Application   string  `placeholder:"NAME" help:"Undo every transaction made with this application_name, within the --since and --until window; with an actor too, both must match (default: none)."`
	Since         timeArg `placeholder:"TIMESTAMP" help:"With --actor or --application: only transactions committed at or after this time: RFC 3339, 'YYYY-MM-DD HH:MM:SS' with an optional zone, or relative like -2h (default: the start of the archive)."`
	Until         timeArg `placeholder:"TIMESTAMP" help:"With --actor or --application: only transactions committed before this time (default: now)."`
	Table         string  `placeholder:"TABLE" help:"Only undo what the transactions did to this table, as a SQL name (default: every archived table they changed)."`
	SQL           string  `name:"sql" placeholder:"FILE" help:"Write the undo as a psql script to FILE; - is standard output (default: -, or none with --apply)."`
	Apply         bool    `help:"Apply the undo to the target database in one transaction, after checking every row there (default: false)."`
	TargetDSN     string  `name:"target-dsn" placeholder:"DSN" help:"With --apply: the database to repair, as a libpq connection string or URL (default: the source database of the configuration)."`
	SkipConflicts bool    `xor:"conflicts" help:"With --apply: apply the rest when rows conflict, and leave those rows alone (default: false)."`
	Force         bool    `xor:"conflicts" help:"With --apply: overwrite conflicting rows with their image from before the undone transaction too (default: false)."`
	Quiet         bool    `short:"q" help:"Print nothing but errors and conflicts (default: false)."`
}

func (cmd *undoCmd) Help() string {
	return `Writes the SQL that reverses archived transactions: a DELETE for each row they inserted, an INSERT of the old row for each row they deleted (a TRUNCATE too), an UPDATE back to the old image for each row they updated; in reverse commit order, in one transaction. The old images come from the archive alone (the table just before each transaction, computed as lbt restore does), whatever the table's replica identity.

Every statement is guarded: it changes its row only if the row is still exactly as the undone transaction left it, so that a change made since, archived or not, is never overwritten. A row that a later archived transaction changed again is a conflict: it is listed on standard error (who changed it, and when) and in the script, and left alone. Sequences are not touched.

--apply runs the statements on the target (--target-dsn) in one transaction and checks every row there first: with any conflict nothing is applied and the conflicts are listed, unless --skip-conflicts (apply the rest) or --force (overwrite the conflicting rows too).

` + fmt.Sprintf("Exit status: %d done, every row undone; %d done, with conflicting rows left alone (the script leaves them, or --apply --skip-conflicts did); %d nothing applied (--apply found conflicts); %d a runtime failure, nothing applied; %d bad input (an xid the archive does not hold, a window without transactions, a bad flag).",
		exitOK, exitConflictsLeft, exitNothingDone, exitFailure, exitUsage)
}

func (cmd *undoCmd) Validate() error {
	n := 0
	for _, set := range []bool{cmd.XID != 0, cmd.LSN != "", cmd.Actor != "" || cmd.Application != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("give what to undo: --xid, --lsn, or --actor/--application with --since and --until")
	case n > 1:
		return errors.New("give one of --xid, --lsn and --actor/--application")
	case (cmd.Since != "" || cmd.Until != "") && cmd.Actor == "" && cmd.Application == "":
		return errors.New("--since and --until go with --actor or --application")
	case !cmd.Apply && (cmd.TargetDSN != "" || cmd.SkipConflicts || cmd.Force):
		return errors.New("--target-dsn, --skip-conflicts and --force go with --apply")
	}
	return nil
}

func (cmd *undoCmd) Run(ctx context.Context, g *Globals) error {
	cfg, log, err := g.configure()
	if err != nil {
		return err
	}
	opts := repair.Options{Xid: cmd.XID, Role: cmd.Actor, Application: cmd.Application, Table: cmd.Table, Logger: log}
	if cmd.LSN != "" {
		if opts.LSN, err = parseLSNFlag("--lsn", cmd.LSN); err != nil {
			return err
		}
	}
	now := time.Now()
	if cmd.Since != "" {
		if opts.Since, err = parseTimeFlag(string(cmd.Since), now); err != nil {
			return usageError{fmt.Errorf("--since: %w", err)}
		}
	}
	if cmd.Until != "" {
		if opts.Until, err = parseTimeFlag(string(cmd.Until), now); err != nil {
			return usageError{fmt.Errorf("--until: %w", err)}
		}
	}
	if !opts.Since.IsZero() && !opts.Until.IsZero() && !opts.Since.Before(opts.Until) {
		return usageError{fmt.Errorf("--since %s is not before --until %s", cmd.Since, cmd.Until)}
	}
	var target *pgconn.Config
	if cmd.Apply {
		if cmd.TargetDSN != "" {
			if target, err = pgconn.ParseConfig(cmd.TargetDSN); err != nil {
				return usageError{fmt.Errorf("--target-dsn: %w", cfg.RedactError(err))}
			}
			if _, ok := target.RuntimeParams["application_name"]; !ok {
				target.RuntimeParams["application_name"] = "lbt"
			}
		} else if target, err = cfg.ConnConfig(); err != nil {
			return usageError{err}
		}
	}

	cat, err := openArchive(ctx, cfg, false, true)
	if err != nil {
		return err
	}
	defer cat.Close()
	icat, err := openArchive(ctx, cfg, false, true)
	if err != nil {
		return err
	}
	in, err := inspect.New(ctx, icat)
	if err != nil {
		icat.Close()
		return err
	}
	defer in.Close()
	// The transactions are chosen from the snapshot the changes are read
	// from: a purge meanwhile cannot leave half of one.
	plan, err := repair.Undo(ctx, in.Catalog(), in, opts)
	if err != nil {
		return err
	}
	for _, n := range plan.Notes {
		fmt.Fprintf(g.stderr, "note: %s\n", n)
	}
	for _, c := range plan.Conflicts {
		fmt.Fprintf(g.stderr, "conflict: %s\n", c)
	}

	sqlFile := cmd.SQL
	if sqlFile == "" && !cmd.Apply {
		sqlFile = "-"
	}
	if sqlFile != "" {
		if err := writeScriptFile(sqlFile, g.stdout, func(w io.Writer) error { return plan.WriteScript(w, version) }); err != nil {
			return err
		}
	}
	msgs := g.stdout
	if sqlFile == "-" {
		msgs = g.stderr
	}
	if !cmd.Apply {
		if !cmd.Quiet {
			fmt.Fprintf(msgs, "undo of %d transaction(s): %d statement(s), %d conflict(s) left alone\n", len(plan.Txs), len(plan.Statements)-len(plan.Conflicts), len(plan.Conflicts))
		}
		if len(plan.Conflicts) > 0 {
			return exitStatus(exitConflictsLeft)
		}
		return nil
	}

	cc, err := pgx.ParseConfig("")
	if err != nil {
		return fmt.Errorf("target connection: %w", err)
	}
	cc.Config = *target.Copy()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return cfg.RedactError(fmt.Errorf("target: %w", err))
	}
	defer conn.Close(context.Background())
	mode := repair.ApplyAll
	switch {
	case cmd.SkipConflicts:
		mode = repair.SkipConflicts
	case cmd.Force:
		mode = repair.Force
	}
	res, err := plan.Apply(ctx, conn, mode)
	if err != nil {
		return cfg.RedactError(err)
	}
	for _, c := range res.Target {
		fmt.Fprintf(g.stderr, "conflict: %s\n", c)
	}
	conflicts := len(plan.Conflicts) + len(res.Target)
	switch {
	case !res.Committed:
		fmt.Fprintf(g.stderr, "lbt undo: nothing applied: %d row(s) conflict; --skip-conflicts applies the rest, --force overwrites them\n", conflicts)
		return exitStatus(exitNothingDone)
	case !cmd.Quiet:
		fmt.Fprintf(msgs, "undo of %d transaction(s) applied: %d row(s) undone, %d overwritten, %d conflict(s) left alone\n", len(plan.Txs), res.Applied, res.Overwritten, conflicts-res.Overwritten)
	}
	if conflicts > res.Overwritten {
		return exitStatus(exitConflictsLeft)
	}
	return nil
}

// writeScriptFile writes a script to file (- for stdout), beside its final
// name first so that a failure leaves no half script.
func writeScriptFile(file string, stdout io.Writer, write func(io.Writer) error) error {
	if file == "-" {
		return write(stdout)
	}
	f, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".partial-*")
	if err != nil {
		return fmt.Errorf("--sql: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("--sql: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--sql: %w", err)
	}
	if err := os.Rename(f.Name(), file); err != nil {
		return fmt.Errorf("--sql: %w", err)
	}
	return nil
}
