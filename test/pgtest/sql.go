package pgtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// These helpers use context.Background rather than t.Context because they
// also run in cleanup functions, after t.Context has been canceled. A hung
// statement is ended by the test binary's timeout.

// Connect opens a connection to dsn that is closed when the test ends.
func (c *Cluster) Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs sql on a new connection to dsn and fails the test on error. The
// string may hold several statements, which then run in one transaction
// unless it contains BEGIN and COMMIT of its own.
func (c *Cluster) Exec(t testing.TB, dsn string, sql string) {
	t.Helper()
	if err := c.exec(dsn, sql); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

func (c *Cluster) exec(dsn string, sql string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	// Without arguments pgx uses the simple query protocol, which allows
	// several statements in one string.
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("exec %q: %w", abbreviate(sql), err)
	}
	return nil
}

// QueryString runs sql on a new connection to dsn and returns the first
// column of the first row of its last result in PostgreSQL's text form
// (NULL as ""). It fails the test on error or when there is no row.
func (c *Cluster) QueryString(t testing.TB, dsn string, sql string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	// The simple query protocol returns every value as text.
	results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("pgtest: query %q: %v", abbreviate(sql), err)
	}
	if len(results) == 0 || len(results[len(results)-1].Rows) == 0 || len(results[len(results)-1].Rows[0]) == 0 {
		t.Fatalf("pgtest: query %q returned no value", abbreviate(sql))
	}
	return string(results[len(results)-1].Rows[0][0])
}

// NewDatabase creates a database with a name unique in the cluster and
// returns its DSN. The database is dropped when the test ends, after the
// replication slots on it (which would block the drop) and the sessions
// connected to it.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := databaseName(c.dbSeq.Add(1), t.Name())
	c.Exec(t, c.DSN("postgres"), "CREATE DATABASE "+quoteIdent(name))
	t.Cleanup(func() {
		if err := c.dropDatabase(name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c.DSN(name)
}

// dropDatabase drops database name with its replication slots.
func (c *Cluster) dropDatabase(name string) error {
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return nil // the database went away with the cluster
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("drop database %s: connect: %w", name, err)
	}
	defer conn.Close(context.Background())

	// DROP DATABASE refuses while logical slots exist on the database, and
	// an active slot cannot be dropped: end the sessions holding slots (which
	// also drops their temporary slots), then drop the rest. Sessions can
	// take a slot again meanwhile, hence the loop.
	const dropSlots = `
		SELECT CASE WHEN active_pid IS NULL
			THEN pg_drop_replication_slot(slot_name) IS NULL
			ELSE pg_terminate_backend(active_pid)
		END
		FROM pg_replication_slots
		WHERE database = $1`
	for {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, name).Scan(&n)
		if err != nil {
			return fmt.Errorf("drop database %s: list slots: %w", name, err)
		}
		if n == 0 {
			break
		}
		// Failures here are races with the sessions being terminated;
		// the next round sees the outcome.
		_, dropErr := conn.Exec(ctx, dropSlots, name)
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop database %s: %d replication slots remain (last error: %v)", name, n, dropErr)
		case <-time.After(20 * time.Millisecond):
		}
	}

	if c.major >= 13 {
		_, err = conn.Exec(ctx, "DROP DATABASE "+quoteIdent(name)+" WITH (FORCE)")
	} else {
		_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name)
		if err == nil {
			_, err = conn.Exec(ctx, "DROP DATABASE "+quoteIdent(name))
		}
	}
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// databaseName returns a database name made of a sequence number and the
// test's name, which helps to tell in a server log which test did what.
func databaseName(seq int64, testName string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lbt_%d_", seq)
	for _, r := range strings.ToLower(testName) {
		if b.Len() == 63 { // NAMEDATALEN-1: longer names are truncated
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// quoteIdent quotes an SQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// abbreviate shortens SQL for error messages.
func abbreviate(sql string) string {
	sql = strings.Join(strings.Fields(sql), " ")
	if len(sql) > 200 {
		return sql[:200] + "..."
	}
	return sql
}
