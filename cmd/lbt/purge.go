package main

import "context"

type purgeCmd struct {
	DryRun bool `help:"List what would be removed, and remove nothing (default: false)."`
}

func (cmd *purgeCmd) Help() string {
	return `Removes the basebackups and changes that retention and retentionBasebackups no longer keep. The catalog rows go first, then the files, so that an interrupted purge leaves a consistent archive.`
}

func (cmd *purgeCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here: cfg, err := g.loadConfig(), then
	// log := g.logger(cfg).
	return errNotImplemented
}
