package main

import "context"

type statusCmd struct {
	Format string `enum:"table,json" default:"table" placeholder:"FORMAT" help:"Output format: table or json (default: ${default})."`
}

func (cmd *statusCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here: cfg, err := g.loadConfig(), then
	// answer from the catalog and the slot.
	return errNotImplemented
}
