package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"lbt/inspect"
)

type inspectCmd struct {
	History inspectHistoryCmd `cmd:"" help:"Show every version of the rows of a table, with the transaction that wrote it."`
	Tx      inspectTxCmd      `cmd:"" name:"tx" help:"Show the changes one transaction made to the backed-up tables."`
	Changes inspectChangesCmd `cmd:"" help:"List the changes to a table in a time range."`
	Tables  inspectTablesCmd  `cmd:"" help:"List the tables in the archive, with their basebackups, changes and size."`
	DDL     inspectDDLCmd     `cmd:"" name:"ddl" help:"List the schema changes recorded in the archive."`
}

// outputFormat is the --format flag the inspect commands share.
type outputFormat struct {
	Format string `enum:"table,json,csv" default:"table" placeholder:"FORMAT" help:"Output format: table, json (one object per line) or csv (default: ${default})."`
}

// timeRange is the --since and --until flags.
type timeRange struct {
	Since timeArg `placeholder:"TIMESTAMP" help:"Only what was committed at or after this time: RFC 3339, 'YYYY-MM-DD HH:MM:SS' with an optional zone, or relative like -2h (default: the start of the archive)."`
	Until timeArg `placeholder:"TIMESTAMP" help:"Only what was committed before this time (default: now)."`
}

func (r timeRange) parse(now time.Time) (inspect.Range, error) {
	var rng inspect.Range
	var err error
	if r.Since != "" {
		if rng.Since, err = parseTimeFlag(string(r.Since), now); err != nil {
			return rng, usageError{fmt.Errorf("--since: %w", err)}
		}
	}
	if r.Until != "" {
		if rng.Until, err = parseTimeFlag(string(r.Until), now); err != nil {
			return rng, usageError{fmt.Errorf("--until: %w", err)}
		}
	}
	return rng, nil
}

// report is what every inspect query returns.
type report interface {
	Write(w io.Writer, f inspect.Format) error
}

// runInspect opens the archive of the configuration read-only, runs query
// and writes its report to stdout and its notes to stderr.
func runInspect(ctx context.Context, g *Globals, format string, query func(*inspect.Inspector) (report, []string, error)) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	f, err := inspect.ParseFormat(format)
	if err != nil {
		return usageError{err}
	}
	arch, err := openReadArchive(ctx, cfg, true)
	if err != nil {
		return err
	}
	in, err := inspect.New(ctx, arch.cat)
	if err != nil {
		arch.cat.Close()
		return err
	}
	defer in.Close()
	r, notes, err := query(in)
	if err != nil {
		return err
	}
	if err := r.Write(g.stdout, f); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	for _, n := range notes {
		fmt.Fprintf(g.stderr, "note: %s\n", n)
	}
	return nil
}

type inspectHistoryCmd struct {
	Table string `required:"" placeholder:"TABLE" help:"Table, as a SQL name (required)."`
	Key   string `placeholder:"COL=VALUE" help:"Only the row with this key, like 'id=42'; separate the columns of a composite key with commas, and put values holding commas or equals signs in double quotes: 'a=1,b=\"x,y\"' (default: every row)."`
	timeRange
	outputFormat
}

func (cmd *inspectHistoryCmd) Help() string {
	return `With --key, follows the row across updates that change its key and shows a TRUNCATE that removed it. Each change shows its commit time, xid, commit LSN, the values before and after (changed columns marked *) and who made it, when lbt setup --capture-actors records that.`
}

func (cmd *inspectHistoryCmd) Run(ctx context.Context, g *Globals) error {
	rng, err := cmd.parse(time.Now())
	if err != nil {
		return err
	}
	return runInspect(ctx, g, cmd.Format, func(in *inspect.Inspector) (report, []string, error) {
		opts := inspect.NewHistoryOptions()
		opts.Table, opts.Key, opts.Range = cmd.Table, cmd.Key, rng
		h, err := in.History(ctx, opts)
		if err != nil {
			return nil, nil, err
		}
		return h, h.Notes, nil
	})
}

type inspectTxCmd struct {
	XID uint32 `name:"xid" xor:"tx" placeholder:"XID" help:"Transaction ID (default: none)."`
	LSN string `name:"lsn" xor:"tx" placeholder:"LSN" help:"Commit WAL position, like 0/16B3748 (default: none)."`
	outputFormat
}

func (cmd *inspectTxCmd) Validate() error {
	if cmd.XID == 0 && cmd.LSN == "" {
		return errors.New("give --xid or --lsn")
	}
	return nil
}

func (cmd *inspectTxCmd) Run(ctx context.Context, g *Globals) error {
	opts := inspect.TxOptions{Xid: cmd.XID}
	if cmd.LSN != "" {
		lsn, err := parseLSNFlag("--lsn", cmd.LSN)
		if err != nil {
			return err
		}
		opts.LSN = lsn
	}
	return runInspect(ctx, g, cmd.Format, func(in *inspect.Inspector) (report, []string, error) {
		r, err := in.Tx(ctx, opts)
		if err != nil {
			return nil, nil, err
		}
		return r, r.Notes, nil
	})
}

type inspectChangesCmd struct {
	Table   string   `required:"" placeholder:"TABLE" help:"Table, as a SQL name (required)."`
	Op      []string `name:"op" placeholder:"OP" help:"Only transactions that did this to the table: insert, update, delete or truncate; several separated by commas (default: any)."`
	MinRows int64    `name:"min-rows" placeholder:"N" help:"Only transactions that changed at least N rows of the table (with the --op operations when given; a TRUNCATE counts as one) (default: 0)."`
	Actor   string   `placeholder:"ROLE" help:"Only transactions made by this role (current_user), as the actor capture of lbt setup records it (default: any)."`
	timeRange
	outputFormat
}

func (cmd *inspectChangesCmd) Help() string {
	return `One line per transaction that changed the table, from the catalog alone: time, xid, commit LSN, inserts, updates, deletes, truncates and who. The filters find a mass change: "when did somebody delete most of orders" is lbt inspect changes --table orders --op delete --min-rows 1000; lbt restore --before-xid XID then restores the table as it was just before it, and lbt undo --xid XID writes the statements that reverse it.`
}

func (cmd *inspectChangesCmd) Run(ctx context.Context, g *Globals) error {
	rng, err := cmd.parse(time.Now())
	if err != nil {
		return err
	}
	return runInspect(ctx, g, cmd.Format, func(in *inspect.Inspector) (report, []string, error) {
		r, err := in.Changes(ctx, inspect.ChangesOptions{Table: cmd.Table, Range: rng, Ops: cmd.Op, MinRows: cmd.MinRows, Actor: cmd.Actor})
		if err != nil {
			return nil, nil, err
		}
		return r, r.Notes, nil
	})
}

type inspectTablesCmd struct {
	outputFormat
}

func (cmd *inspectTablesCmd) Run(ctx context.Context, g *Globals) error {
	return runInspect(ctx, g, cmd.Format, func(in *inspect.Inspector) (report, []string, error) {
		r, err := in.Tables(ctx)
		if err != nil {
			return nil, nil, err
		}
		return r, r.Notes, nil
	})
}

type inspectDDLCmd struct {
	Table string `placeholder:"TABLE" help:"Only changes to this table, as a SQL name (default: every table)."`
	timeRange
	outputFormat
}

func (cmd *inspectDDLCmd) Run(ctx context.Context, g *Globals) error {
	rng, err := cmd.parse(time.Now())
	if err != nil {
		return err
	}
	return runInspect(ctx, g, cmd.Format, func(in *inspect.Inspector) (report, []string, error) {
		r, err := in.DDL(ctx, inspect.DDLOptions{Table: cmd.Table, Range: rng})
		if err != nil {
			return nil, nil, err
		}
		return r, r.Notes, nil
	})
}
