package main

import (
	"context"
	"errors"
)

type inspectCmd struct {
	History inspectHistoryCmd `cmd:"" help:"Show every version of the rows of a table, with the transaction that wrote it."`
	Tx      inspectTxCmd      `cmd:"" name:"tx" help:"Show the changes one transaction made to the backed-up tables."`
	Changes inspectChangesCmd `cmd:"" help:"List the changes to a table in a time range."`
	Tables  inspectTablesCmd  `cmd:"" help:"List the tables in the archive and the window each can be restored to."`
	DDL     inspectDDLCmd     `cmd:"" name:"ddl" help:"List the schema changes recorded in the archive."`
}

// outputFormat is the --format flag the inspect commands share.
type outputFormat struct {
	Format string `enum:"table,json,csv" default:"table" placeholder:"FORMAT" help:"Output format: table, json or csv (default: ${default})."`
}

type inspectHistoryCmd struct {
	Table string `required:"" placeholder:"TABLE" help:"Table, as a SQL name (required)."`
	Key   string `placeholder:"COL=VALUE" help:"Only the row with this replica identity key, like 'id=42'; separate the columns of a composite key with commas (default: every row)."`
	Since string `placeholder:"TIMESTAMP" help:"Only versions written at or after this time (default: the start of the archive)."`
	Until string `placeholder:"TIMESTAMP" help:"Only versions written before this time (default: now)."`
	outputFormat
}

func (cmd *inspectHistoryCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here, like restore.
	return errNotImplemented
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
	// Plug the implementation in here, like restore.
	return errNotImplemented
}

type inspectChangesCmd struct {
	Table string `required:"" placeholder:"TABLE" help:"Table, as a SQL name (required)."`
	Since string `placeholder:"TIMESTAMP" help:"Only changes committed at or after this time (default: the start of the archive)."`
	Until string `placeholder:"TIMESTAMP" help:"Only changes committed before this time (default: now)."`
	outputFormat
}

func (cmd *inspectChangesCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here, like restore.
	return errNotImplemented
}

type inspectTablesCmd struct {
	outputFormat
}

func (cmd *inspectTablesCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here, like restore.
	return errNotImplemented
}

type inspectDDLCmd struct {
	Table string `placeholder:"TABLE" help:"Only changes to this table, as a SQL name (default: every table)."`
	Since string `placeholder:"TIMESTAMP" help:"Only changes at or after this time (default: the start of the archive)."`
	Until string `placeholder:"TIMESTAMP" help:"Only changes before this time (default: now)."`
	outputFormat
}

func (cmd *inspectDDLCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here, like restore.
	return errNotImplemented
}
