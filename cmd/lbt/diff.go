package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"lbt/repair"
	"lbt/restore"
)

type diffCmd struct {
	Table   string  `required:"" placeholder:"TABLE" help:"Table to compare, as a SQL name as it was named at the two moments (required)."`
	From    timeArg `xor:"from" placeholder:"TIMESTAMP" help:"The first moment: the state right after the last transaction committed at or before this time, as restore --until takes it (default: none)."`
	FromLSN string  `name:"from-lsn" xor:"from" placeholder:"LSN" help:"The first moment: after the transactions committed at or before this WAL position (default: none)."`
	FromXID uint32  `name:"from-xid" xor:"from" placeholder:"XID" help:"The first moment: right after this transaction (default: none)."`
	To      timeArg `xor:"to" placeholder:"TIMESTAMP" help:"The second moment, as --from (default: the latest archived state)."`
	ToLSN   string  `name:"to-lsn" xor:"to" placeholder:"LSN" help:"The second moment, as --from-lsn (default: none)."`
	ToXID   uint32  `name:"to-xid" xor:"to" placeholder:"XID" help:"The second moment, as --from-xid (default: none)."`
	SQL     string  `name:"sql" placeholder:"FILE" help:"Write the statements that turn the table's state at the second moment into its state at the first (a rewind in place) to FILE, - for standard output, instead of the report (default: none)."`
	outputFormat
}

func (cmd *diffCmd) Help() string {
	return `Compares a table at two moments, computed from the archive as lbt restore does, and lists the rows that differ by key: added (only at the second moment), removed (only at the first) and changed (with both images, changed columns marked). A table without a key is compared as a multiset. --sql writes guarded statements that turn the second state into the first, as lbt undo writes them: each changes its row only if it is still as it was at the second moment.`
}

func (cmd *diffCmd) Validate() error {
	if cmd.From == "" && cmd.FromLSN == "" && cmd.FromXID == 0 {
		return errors.New("give the first moment: --from, --from-lsn or --from-xid")
	}
	return nil
}

// moment turns one side's flags into a restore target.
func moment(side, at, lsn string, xid uint32, now time.Time) (restore.Options, error) {
	var o restore.Options
	var err error
	switch {
	case at != "":
		if o.Until, err = parseTimeFlag(at, now); err != nil {
			return o, usageError{fmt.Errorf("--%s: %w", side, err)}
		}
	case lsn != "":
		if o.LSN, err = parseLSNFlag("--"+side+"-lsn", lsn); err != nil {
			return o, err
		}
	case xid != 0:
		o.Xid = xid
	}
	return o, nil
}

func (cmd *diffCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	now := time.Now()
	opts := repair.DiffOptions{Table: cmd.Table}
	if opts.From, err = moment("from", string(cmd.From), cmd.FromLSN, cmd.FromXID, now); err != nil {
		return err
	}
	if opts.To, err = moment("to", string(cmd.To), cmd.ToLSN, cmd.ToXID, now); err != nil {
		return err
	}
	cat, err := openArchive(ctx, cfg, false, true)
	if err != nil {
		return err
	}
	defer cat.Close()
	r, err := repair.Diff(ctx, cat, opts)
	if err != nil {
		return err
	}
	if cmd.SQL != "" {
		return writeScriptFile(cmd.SQL, g.stdout, func(w io.Writer) error { return r.WriteSQL(w, version) })
	}
	if err := r.Write(g.stdout, repair.Format(cmd.Format)); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
