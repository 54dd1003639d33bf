package main

import (
	"context"
	"fmt"
	"time"

	"lbt/setup"
	"lbt/source"
)

type setupCmd struct {
	CaptureActors bool `help:"Record who makes each change (role, application, client address, backend pid) with a statement trigger on every published table, tables created later included (default: false)."`
	CaptureDDL    bool `name:"capture-ddl" help:"Record each DDL command (statement, object, role) with an event trigger (default: false)."`
	Remove        bool `xor:"mode" help:"Remove the capture triggers setup installed: those selected by --capture-actors or --capture-ddl, or all of them and the schema lbt (default: false)."`
	Status        bool `xor:"mode" help:"Show what is set up on the source, and change nothing (default: false)."`
}

func (cmd *setupCmd) Help() string {
	return `Installs on the source what makes the archive record who changed what: with --capture-actors, each writing transaction emits one logical message naming its role, application, client address and backend pid; with --capture-ddl, each DDL command emits its statement and role. Both travel in the replication stream with their transaction, and lbt inspect shows them. The cost on the source is one small WAL record per writing transaction (and per DDL command). Installing and removing need a superuser. Running it again changes only what is missing. The objects live in the schema lbt, plus the event triggers lbt_actor_sync, lbt_ddl_capture and lbt_ddl_capture_drop and a trigger lbt_actor on each published table.

lbt backup creates the publication and the replication slot; setup --status shows them too.`
}

func (cmd *setupCmd) Run(ctx context.Context, g *Globals) error {
	cfg, log, err := g.configure()
	if err != nil {
		return err
	}
	pc, err := cfg.ConnConfig()
	if err != nil {
		return usageError{err}
	}
	server := source.ConnLabel(pc)
	log.Debug("connecting to the source database", "conn", server)
	conn, err := source.Connect(ctx, pc)
	if err != nil {
		return cfg.RedactError(err)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer conn.Close(closeCtx)

	opts := setup.NewOptions()
	opts.Publication, opts.CaptureActors, opts.CaptureDDL = cfg.Publication, cmd.CaptureActors, cmd.CaptureDDL
	var res setup.Result
	switch {
	case cmd.Status || (!cmd.Remove && !cmd.CaptureActors && !cmd.CaptureDDL):
		st, err := setup.GetStatus(ctx, conn, cfg.Publication, cfg.SlotName)
		if err != nil {
			return err
		}
		return st.Write(g.stdout)
	case cmd.Remove:
		res, err = setup.Remove(ctx, conn, opts)
	default:
		res, err = setup.Install(ctx, conn, opts)
	}
	if err != nil {
		return err
	}
	for _, n := range res.Notes {
		log.Warn(n)
	}
	switch {
	case cmd.Remove:
		fmt.Fprintf(g.stdout, "removed capture from %s (%d table triggers)\n", server, res.TriggersRemoved)
	case cmd.CaptureActors:
		fmt.Fprintf(g.stdout, "installed actor capture on %s (%d table triggers added)\n", server, res.TriggersAdded)
		if cmd.CaptureDDL {
			fmt.Fprintf(g.stdout, "installed DDL capture on %s\n", server)
		}
	default:
		fmt.Fprintf(g.stdout, "installed DDL capture on %s\n", server)
	}
	return nil
}
