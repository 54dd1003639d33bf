package main

import (
	"context"
	"fmt"

	"lbt/catalog"
)

type verifyCmd struct {
	ReadData bool `help:"Also read every blob and basebackup, check its checksum and decode it, which is slow; without it the catalog's integrity and the files' presence and sizes are checked (default: false)."`
}

func (cmd *verifyCmd) Help() string {
	return `Checks that the archive is intact: the catalog's integrity, that every file it references exists and is long enough, and that its references agree. With --read-data every blob is read, its checksum checked and every record decoded, and every basebackup is decompressed and its rows counted. Exit status 3 when anything is wrong. Read-only: safe while lbt backup runs.`
}

func (cmd *verifyCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	log := g.logger(cfg)
	cat, err := catalog.OpenReadOnly(ctx, cfg.ArchiveDir)
	if err != nil {
		return err
	}
	defer cat.Close()
	r, err := cat.Verify(ctx, cmd.ReadData)
	for _, w := range r.Warnings {
		log.Warn(w)
	}
	for _, p := range r.Problems {
		fmt.Fprintln(g.stdout, "problem:", p)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "archive %s is intact: %d segments, %d blobs, %d basebackups checked, %d bytes read\n",
		cfg.ArchiveDir, r.Segments, r.Blobs, r.Basebackups, r.BytesRead)
	return nil
}
