package main

import (
	"context"
	"errors"
)

type restoreCmd struct {
	Table       string `required:"" placeholder:"TABLE" help:"Table to restore, as a SQL name: schema.table, parts quoted as in SQL (required)."`
	Until       string `xor:"target" placeholder:"TIMESTAMP" help:"Restore the table as it was at this time: RFC 3339, or 'YYYY-MM-DD HH:MM:SS' with an optional zone (default: the latest state in the archive)."`
	LSN         string `name:"lsn" xor:"target" placeholder:"LSN" help:"Restore the table as it was after the transaction that committed at this WAL position, like 0/16B3748 (default: none)."`
	XID         uint32 `name:"xid" xor:"target" placeholder:"XID" help:"Restore the table as it was after this transaction committed (default: none)."`
	TargetDSN   string `name:"target-dsn" xor:"output" placeholder:"DSN" help:"Database to restore into, as a libpq connection string or URL (default: the source database of the configuration)."`
	TargetTable string `placeholder:"TABLE" help:"Table to create and fill, as a SQL name (default: the table's name with the suffix _restored, in its schema)."`
	Replace     bool   `help:"Drop and recreate the target table if it exists; without it an existing target table is an error (default: false)."`
	SQL         string `name:"sql" xor:"output" placeholder:"FILE" help:"Write the restore as SQL (CREATE TABLE and COPY) to FILE instead of into a database; - writes to standard output (default: none)."`
	Verify      bool   `help:"After restoring, compare the result with the archive's checksums; a difference exits with status 3 (default: false)."`
	Quiet       bool   `short:"q" help:"Print nothing but errors (default: false)."`
	DryRun      bool   `help:"Print which basebackup and changes the restore would use, and change nothing (default: false)."`
}

func (cmd *restoreCmd) Help() string {
	return `Restores one table from its latest basebackup before the target and the changes committed after it, into a new table. The target is the latest state unless --until, --lsn or --xid names another; an error names the window the archive can restore.`
}

func (cmd *restoreCmd) Validate() error {
	if cmd.SQL != "" && cmd.Replace {
		return errors.New("--replace has no meaning with --sql")
	}
	return nil
}

func (cmd *restoreCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here: cfg, err := g.loadConfig(), then
	// log := g.logger(cfg), fill the restore package's options struct
	// from cmd and run it. Map a failed --verify to an error whose
	// VerificationFailed method returns true (exit status 3).
	return errNotImplemented
}
