package main

import (
	"context"
	"errors"
)

type basebackupCmd struct {
	Table []string `short:"t" xor:"what" placeholder:"TABLE" help:"Table to back up, as a SQL name (schema.table, parts quoted as in SQL); repeat for several (default: none)."`
	All   bool     `xor:"what" help:"Back up every table of the publication (default: false)."`
}

func (cmd *basebackupCmd) Validate() error {
	if len(cmd.Table) == 0 && !cmd.All {
		return errors.New("give --table or --all")
	}
	return nil
}

func (cmd *basebackupCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here: cfg, err := g.loadConfig(), then
	// log := g.logger(cfg), and ask the archive for basebackups of
	// cmd.Table (or all tables).
	return errNotImplemented
}
