package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"lbt/catalog"
	"lbt/restore"
)

type verifyCmd struct {
	ReadData       bool   `help:"Also read every blob and basebackup, check its checksum and decode it, which is slow; without it the catalog's integrity and the files' presence and sizes are checked (default: false)."`
	ReadDataSubset string `placeholder:"SUBSET" help:"Read the data of a part of the files only (all of them: read-data): n/t (part n of t, by file name: 1/7 to 7/7 on seven days read each file once) or x% (each file with that chance) (default: none)."`
	PrintHead      bool   `help:"Print the hash chain's head (HASH@LSN) once the archive verifies, to keep outside the archive (default: false)."`
	Head           string `placeholder:"HASH@LSN" help:"Also check that this head, printed by an earlier --print-head, is a link of the chain and that the history it covers is unchanged (default: none)."`
	RestoreTest    bool   `help:"Also restore each table's latest state into a scratch schema of --target-dsn, check its row count against the catalog's and its checksum computed by the target against the rows sent, and drop the schema (default: false)."`
	TargetDSN      string `name:"target-dsn" placeholder:"DSN" help:"Database for --restore-test, as a libpq connection string or URL: a scratch database, since a restore also creates the types and extensions its tables need (default: none)."`
}

func (cmd *verifyCmd) Help() string {
	return `Checks that the archive is intact: the catalog's integrity, that every file it references exists and is long enough, and that its references agree. With --read-data every blob is read, its checksums (CRC-32C and SHA-256) checked and every record decoded, and every basebackup is decompressed and its rows counted. Every run recomputes the hash chain over the catalog's history (transactions, blobs, messages, basebackups, purges) and names the first link where it breaks; --print-head prints its head for an auditor to keep, --head checks one kept earlier. Exit status 3 when anything is wrong. Read-only: safe while lbt backup runs.`
}

func (cmd *verifyCmd) Run(ctx context.Context, g *Globals) error {
	cfg, log, err := g.configure()
	if err != nil {
		return err
	}
	arch, err := openReadArchive(ctx, cfg, cmd.ReadData || cmd.ReadDataSubset != "" || cmd.RestoreTest)
	if err != nil {
		return err
	}
	defer arch.Close()
	cat := arch.cat
	subset := catalog.DataSubset{All: cmd.ReadData}
	if cmd.ReadDataSubset != "" && !cmd.ReadData {
		if subset, err = catalog.ParseDataSubset(cmd.ReadDataSubset); err != nil {
			return usageError{err}
		}
	}
	var target *pgconn.Config
	if cmd.RestoreTest {
		if cmd.TargetDSN == "" {
			return usageError{errors.New("--restore-test needs --target-dsn: a scratch database to restore into")}
		}
		if target, err = pgconn.ParseConfig(cmd.TargetDSN); err != nil {
			return usageError{fmt.Errorf("--target-dsn: %s", cfg.RedactSecrets(err.Error()))}
		}
		if _, ok := target.RuntimeParams["application_name"]; !ok {
			target.RuntimeParams["application_name"] = "lbt"
		}
	} else if cmd.TargetDSN != "" {
		return usageError{errors.New("--target-dsn is for --restore-test")}
	}
	var head *catalog.Head
	if cmd.Head != "" {
		h, err := catalog.ParseHead(cmd.Head)
		if err != nil {
			return usageError{err}
		}
		head = &h
	}
	r, err := cat.VerifyHead(ctx, subset, head)
	for _, w := range r.Warnings {
		log.Warn(w)
	}
	for _, p := range r.Problems {
		fmt.Fprintln(g.stdout, "problem:", p)
	}
	if err != nil {
		return err
	}
	if target != nil {
		rs, err := restore.Rehearse(ctx, cat, target, int64(cfg.RestoreMemory), cfg.EffectiveTempDir(), log)
		for _, r := range rs {
			switch {
			case r.Skipped != "":
				fmt.Fprintf(g.stdout, "restore test: %s skipped: %s\n", r.Table, cfg.RedactSecrets(r.Skipped))
			case r.Err != nil:
				fmt.Fprintf(g.stdout, "problem: restore test: %s: %s\n", r.Table, cfg.RedactSecrets(r.Err.Error()))
			default:
				fmt.Fprintf(g.stdout, "restore test: %s restored and verified: %d rows, checksum %s\n", r.Table, r.Rows, r.Checksum)
			}
		}
		if err != nil {
			return cfg.RedactError(err)
		}
		if err := restore.CheckRehearsals(rs); err != nil {
			return err
		}
	}
	if cmd.PrintHead {
		if r.Chain.Links == 0 {
			return fmt.Errorf("archive %s has no hash chain yet (no transaction or basebackup archived): nothing to print", cfg.ArchiveDir)
		}
		fmt.Fprintln(g.stdout, r.Chain.Head)
		return nil
	}
	fmt.Fprintf(g.stdout, "archive %s is intact: %d segments, %d blobs, %d basebackups checked; the data of %d segments and %d basebackups read, %d bytes; hash chain of %d links intact",
		cfg.ArchiveDir, r.Segments, r.Blobs, r.Basebackups, r.SegmentsRead, r.BasebackupsRead, r.BytesRead, r.Chain.Links)
	if head != nil {
		fmt.Fprintf(g.stdout, ", and it extends head %s", head)
	}
	fmt.Fprintln(g.stdout)
	return nil
}
