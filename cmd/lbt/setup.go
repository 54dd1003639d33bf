package main

import "context"

type setupCmd struct {
	CaptureActors bool `help:"Also record who made each change (role, application, client address) with a trigger on every table (default: false)."`
	CaptureDDL    bool `name:"capture-ddl" help:"Also record schema changes with an event trigger (default: false)."`
	Remove        bool `xor:"mode" help:"Remove what setup created: slot, publication and triggers (default: false)."`
	Status        bool `xor:"mode" help:"Show what is set up, and change nothing (default: false)."`
}

func (cmd *setupCmd) Help() string {
	return `Creates the publication and the replication slot if missing, gives tables without a usable replica identity one, and installs the optional capture triggers. Running it again changes only what is missing.`
}

func (cmd *setupCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here: cfg, err := g.loadConfig(), then
	// log := g.logger(cfg).
	return errNotImplemented
}
