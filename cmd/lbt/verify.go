package main

import "context"

type verifyCmd struct {
	ReadData bool `help:"Also read every file of the archive and check its checksum, which is slow; without it the catalog and the files' presence and sizes are checked (default: false)."`
}

func (cmd *verifyCmd) Run(ctx context.Context, g *Globals) error {
	// Plug the implementation in here: cfg, err := g.loadConfig(), then
	// log := g.logger(cfg). A damaged archive is an error whose
	// VerificationFailed method returns true (exit status 3).
	return errNotImplemented
}
