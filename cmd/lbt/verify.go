package main

import (
	"context"
	"fmt"

	"lbt/catalog"
)

type verifyCmd struct {
	ReadData       bool   `help:"Also read every blob and basebackup, check its checksum and decode it, which is slow; without it the catalog's integrity and the files' presence and sizes are checked (default: false)."`
	ReadDataSubset string `placeholder:"SUBSET" help:"Read the data of a part of the files only (all of them: read-data): n/t (part n of t, by file name: 1/7 to 7/7 on seven days read each file once) or x% (each file with that chance) (default: none)."`
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
	cat, err := openArchive(ctx, cfg, false, cmd.ReadData || cmd.ReadDataSubset != "")
	if err != nil {
		return err
	}
	defer cat.Close()
	subset := catalog.DataSubset{All: cmd.ReadData}
	if cmd.ReadDataSubset != "" && !cmd.ReadData {
		if subset, err = catalog.ParseDataSubset(cmd.ReadDataSubset); err != nil {
			return usageError{err}
		}
	}
	r, err := cat.VerifyData(ctx, subset)
	for _, w := range r.Warnings {
		log.Warn(w)
	}
	for _, p := range r.Problems {
		fmt.Fprintln(g.stdout, "problem:", p)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "archive %s is intact: %d segments, %d blobs, %d basebackups checked; the data of %d segments and %d basebackups read, %d bytes\n",
		cfg.ArchiveDir, r.Segments, r.Blobs, r.Basebackups, r.SegmentsRead, r.BasebackupsRead, r.BytesRead)
	return nil
}
