package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lbt/catalog"
	"lbt/schema"
)

// Rehearsal is the outcome of restoring one table's latest state for
// lbt verify --restore-test.
type Rehearsal struct {
	Table    string // as named now
	Rows     int64
	Checksum string
	Skipped  string // why the table was not restored: the plan refused it
	Err      error  // the restore failed or did not verify
}

// Rehearse restores every archived table's latest state into a scratch
// schema of the target database, with Verify (the changes read against
// the catalog's counts, the restored row count against the catalog's and
// the checksum the target computes against the rows sent), and drops the
// schema afterwards. A table whose plan is refused (no basebackup yet,
// dropped, in an inexact span) is skipped with the reason. It returns an
// error only when it could not rehearse at all.
func Rehearse(ctx context.Context, cat *catalog.Catalog, target *pgconn.Config, memory int64, tempDir string, log hclog.Logger) ([]Rehearsal, error) {
	tables, err := cat.Tables(ctx)
	if err != nil {
		return nil, err
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	scratch := "lbt_restore_test_" + hex.EncodeToString(rnd[:])
	cc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("target connection: %w", err)
	}
	cc.Config = *target.Copy()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to target database: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema.QuoteIdent(scratch)); err != nil {
		return nil, fmt.Errorf("create scratch schema %s on the target: %w", scratch, err)
	}
	defer func() {
		dropCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := conn.Exec(dropCtx, "DROP SCHEMA "+schema.QuoteIdent(scratch)+" CASCADE"); err != nil {
			log.Error("could not drop the scratch schema: drop it by hand", "schema", scratch, "error", err)
		}
	}()

	var out []Rehearsal
	seen := map[string]bool{}
	for _, t := range tables {
		versions, err := cat.SchemaVersions(ctx, t.ID)
		if err != nil {
			return out, err
		}
		if len(versions) == 0 {
			continue
		}
		name := versions[len(versions)-1].QualifiedName()
		if seen[name] {
			continue // an older table of the same name: the latest one is restored
		}
		seen[name] = true
		r := Rehearsal{Table: name}
		opts := NewOptions()
		opts.Table = name
		opts.TargetConn = target
		opts.TargetTable = schema.QuoteIdent(scratch) + "." + schema.QuoteIdent(fmt.Sprintf("t%d", t.ID))
		opts.Memory, opts.TempDir = memory, tempDir
		opts.Logger = log
		opts.DryRun = true
		if _, err := Run(ctx, cat, opts); err != nil {
			r.Skipped = err.Error()
			out = append(out, r)
			continue
		}
		opts.DryRun, opts.Verify = false, true
		res, err := Run(ctx, cat, opts)
		r.Rows, r.Checksum, r.Err = res.Rows, res.Checksum, err
		out = append(out, r)
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// RehearsalFailed reports tables whose rehearsed restore failed.
type RehearsalFailed struct{ Failed []string }

func (e *RehearsalFailed) Error() string {
	return fmt.Sprintf("restore test failed for %d tables, the first: %s", len(e.Failed), e.Failed[0])
}

// VerificationFailed tells the command line to exit with status 3.
func (e *RehearsalFailed) VerificationFailed() bool { return true }

// CheckRehearsals returns a *RehearsalFailed naming each failed table.
func CheckRehearsals(rs []Rehearsal) error {
	var failed []string
	for _, r := range rs {
		if r.Err != nil {
			var v *VerificationError
			what := "restore failed"
			if errors.As(r.Err, &v) {
				what = "does not verify"
			}
			failed = append(failed, fmt.Sprintf("%s: %s: %v", r.Table, what, r.Err))
		}
	}
	if len(failed) > 0 {
		return &RehearsalFailed{Failed: failed}
	}
	return nil
}
