package repair

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ApplyMode says what Apply does with conflicting rows.
type ApplyMode int

const (
	// ApplyAll applies nothing when any row conflicts.
	ApplyAll ApplyMode = iota
	// SkipConflicts applies the rest and leaves the conflicting rows alone.
	SkipConflicts
	// Force overwrites the conflicting rows with their old image too.
	Force
)

// TargetConflict is a row that is not on the target as the undone
// transaction left it, though the archive knows of no later change: a
// change not archived yet, or a target that is not the source.
type TargetConflict struct {
	Statement *Statement
}

func (c TargetConflict) String() string {
	s := c.Statement
	return fmt.Sprintf("%s %s: on the target it is not as transaction %d left it (changed since, by a change not archived yet?); left alone", s.Table, s.Key, s.Tx.Xid)
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	Applied     int // statements that changed their rows
	Overwritten int // conflicting rows overwritten (Force)
	Target      []TargetConflict
	Committed   bool // false: nothing was applied
}

// Conflicts is the number of rows that conflict, in the archive or on the
// target.
func (p *Plan) conflictCount(r ApplyResult) int { return len(p.Conflicts) + len(r.Target) }

// Apply runs the plan on the target in one transaction. Every guarded
// statement runs first: one that changes fewer rows than expected finds
// its row changed on the target. With a conflict (there or in the archive)
// the transaction is rolled back unless mode says otherwise: SkipConflicts
// commits what the guards let through, Force runs again with the
// conflicting rows overwritten.
func (p *Plan) Apply(ctx context.Context, conn *pgx.Conn, mode ApplyMode) (ApplyResult, error) {
	var r ApplyResult
	tx, err := conn.Begin(ctx)
	if err != nil {
		return r, fmt.Errorf("target: %w", err)
	}
	defer tx.Rollback(ctx)
	for _, s := range sessionSettings {
		if _, err := tx.Exec(ctx, "SET LOCAL"+s[len("SET"):]); err != nil {
			return r, fmt.Errorf("target: %s: %w", s, err)
		}
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT lbt_undo_check"); err != nil {
		return r, fmt.Errorf("target: %w", err)
	}
	conflicted := map[int]bool{}
	for i := range p.Statements {
		s := &p.Statements[i]
		if s.Conflict != nil {
			conflicted[i] = true
			continue
		}
		tag, err := tx.Exec(ctx, s.SQL)
		if err != nil {
			return r, fmt.Errorf("target: undo of %s %s (transaction %d): %w", s.Table, s.Key, s.Tx.Xid, err)
		}
		if tag.RowsAffected() != s.Rows {
			r.Target = append(r.Target, TargetConflict{Statement: s})
			conflicted[i] = true
			continue
		}
		r.Applied++
	}
	if p.conflictCount(r) > 0 {
		switch mode {
		case ApplyAll:
			r.Applied = 0
			return r, nil // rolled back
		case Force:
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT lbt_undo_check"); err != nil {
				return r, fmt.Errorf("target: %w", err)
			}
			r.Applied = 0
			for i := range p.Statements {
				s := &p.Statements[i]
				if !conflicted[i] {
					if _, err := tx.Exec(ctx, s.SQL); err != nil {
						return r, fmt.Errorf("target: undo of %s %s (transaction %d): %w", s.Table, s.Key, s.Tx.Xid, err)
					}
					r.Applied++
					continue
				}
				tag, err := tx.Exec(ctx, s.Forced[0])
				if err == nil && tag.RowsAffected() == 0 && s.Forced[1] != "" {
					_, err = tx.Exec(ctx, s.Forced[1])
				}
				if err != nil {
					return r, fmt.Errorf("target: overwriting %s %s (transaction %d): %w", s.Table, s.Key, s.Tx.Xid, err)
				}
				r.Overwritten++
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return r, fmt.Errorf("target: commit: %w", err)
	}
	r.Committed = true
	return r, nil
}
