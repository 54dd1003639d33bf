// Package setup installs on the source database what lets lbt record who
// changed what, and takes it away again.
//
// pgoutput carries a transaction's xid, commit time and origin, not the
// role that made it. With actor capture, a statement-level trigger on every
// published table emits one transactional logical message (prefix
// 'lbt.actor') per writing transaction, holding current_user, session_user,
// application_name, the client address and the backend pid; the message
// travels in the stream with the transaction and the archive keeps it. An
// event trigger adds the trigger to tables created (or published) later.
// With DDL capture, an event trigger emits each DDL command the same way
// (prefix 'lbt.ddl'): its tag, object, statement text and role.
//
// Everything lives in the schema lbt on the source, plus three event
// triggers (lbt_actor_sync, lbt_ddl_capture, lbt_ddl_capture_drop) and one
// trigger lbt_actor per table. The cost on the source is one small WAL
// record per writing transaction, and per DDL command.
package setup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"lbt/schema"
	"lbt/source"
)

// Names of what setup installs on the source.
const (
	Schema         = "lbt"
	ActorTrigger   = "lbt_actor"
	ActorSyncEvent = "lbt_actor_sync"
	DDLEvent       = "lbt_ddl_capture"
	DDLDropEvent   = "lbt_ddl_capture_drop"
	ActorPrefix    = "lbt.actor"
	DDLPrefix      = "lbt.ddl"
)

// Options says what to install or remove.
type Options struct {
	// Publication names the publication whose tables get the actor
	// trigger, and whose future tables the sync event trigger covers.
	Publication   string
	CaptureActors bool
	CaptureDDL    bool
	// LockTimeout bounds the wait for each table's lock when a trigger is
	// added or dropped, in PostgreSQL syntax (like "10s"), so that a long
	// transaction on the source makes setup fail rather than hang.
	LockTimeout string
}

// NewOptions returns the defaults: publication lbt, nothing selected.
func NewOptions() Options {
	return Options{Publication: "lbt", LockTimeout: "10s"}
}

// ErrNotSuperuser reports a role that cannot install or remove event
// triggers.
var ErrNotSuperuser = errors.New("not a superuser")

// actorTablesSQL lists the tables that need the actor trigger: those of
// the publication ($1), with the whole partition tree they belong to, since
// a statement on a partitioned table fires its own statement triggers, not
// its partitions'. It serves as the body of lbt.actor_tables and as the
// status query.
const actorTablesSQL = `
	WITH published AS (
		` + source.PublishedOIDsSQL + `
	), tree AS (
		SELECT oid AS relid FROM published
		UNION
		SELECT t.relid FROM published p, pg_catalog.pg_partition_tree(coalesce(pg_catalog.pg_partition_root(p.oid), p.oid)) t
	)
	SELECT tree.relid::pg_catalog.regclass AS rel,
		EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g WHERE g.tgrelid = tree.relid AND g.tgname = 'lbt_actor') AS has_trigger
	FROM tree JOIN pg_catalog.pg_class c ON c.oid = tree.relid
	WHERE c.relkind IN ('r', 'p')
`

// The trigger emits at most one message per transaction: a transaction-
// local setting remembers the xid it emitted for. A savepoint rolled back
// takes both the message and the setting with it, so the next statement
// emits again. A statement that wrote nothing has no xid yet and emits
// nothing. Errors become warnings: recording the actor must never fail the
// user's transaction. The function runs as the caller, so that current_user
// is the caller's. It names every function, type and operator with its
// schema instead of setting search_path: a SET clause would cost every
// statement a configuration save and restore, and a caller's search_path
// then cannot put another function in the place of a built-in one.
const captureActorSQL = `
CREATE OR REPLACE FUNCTION lbt.capture_actor() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
	x pg_catalog.text := pg_catalog.txid_current_if_assigned()::pg_catalog.text;
BEGIN
	IF x IS NULL OR pg_catalog.current_setting('lbt.actor_emitted', true) OPERATOR(pg_catalog.=) x THEN
		RETURN NULL;
	END IF;
	BEGIN
		PERFORM pg_catalog.pg_logical_emit_message(true, 'lbt.actor', pg_catalog.json_build_object(
			'v', 1,
			'current_user', current_user,
			'session_user', session_user,
			'application_name', pg_catalog.current_setting('application_name', true),
			'client_addr', pg_catalog.host(pg_catalog.inet_client_addr()),
			'backend_pid', pg_catalog.pg_backend_pid())::pg_catalog.text);
		PERFORM pg_catalog.set_config('lbt.actor_emitted', x, true);
	EXCEPTION WHEN OTHERS THEN
		RAISE WARNING 'lbt: the actor of this transaction is not recorded: %', SQLERRM;
	END;
	RETURN NULL;
END
$fn$`

const actorTablesFuncSQL = `
CREATE OR REPLACE FUNCTION lbt.actor_tables(name) RETURNS TABLE (rel regclass, has_trigger boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$` + actorTablesSQL + `$fn$`

// actorSyncSQL adds the trigger to the tables a DDL command created or
// attached, or to every table that lacks it after a change of the
// publication. It runs as its owner, the superuser who ran setup, so that
// any role's new table gets the trigger. $publication is replaced by the
// publication's name as a literal.
const actorSyncSQL = `
CREATE OR REPLACE FUNCTION lbt.actor_sync() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT a.rel FROM lbt.actor_tables($publication) a
		WHERE NOT a.has_trigger AND (TG_TAG IN ('CREATE PUBLICATION', 'ALTER PUBLICATION') OR a.rel IN (
			SELECT t.relid FROM pg_event_trigger_ddl_commands() c,
				pg_partition_tree(coalesce(pg_partition_root(c.objid), c.objid)) t
			WHERE c.classid = 'pg_class'::regclass
			UNION
			SELECT c.objid FROM pg_event_trigger_ddl_commands() c WHERE c.classid = 'pg_class'::regclass))
	LOOP
		BEGIN
			EXECUTE format('CREATE TRIGGER lbt_actor AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION lbt.capture_actor()', r.rel);
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'lbt: could not add the actor trigger to %: %', r.rel, SQLERRM;
		END;
	END LOOP;
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING 'lbt: actor triggers not added: %', SQLERRM;
END
$fn$`

const actorSyncEventSQL = `CREATE EVENT TRIGGER lbt_actor_sync ON ddl_command_end
	WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE', 'CREATE PUBLICATION', 'ALTER PUBLICATION')
	EXECUTE FUNCTION lbt.actor_sync()`

// captureDDLSQL emits one 'lbt.ddl' message per DDL command, leaving out
// lbt's own objects. It runs as the caller, whose role it records.
const captureDDLSQL = `
CREATE OR REPLACE FUNCTION lbt.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	r record;
BEGIN
	IF TG_EVENT = 'sql_drop' THEN
		-- Tables dropped with another object (DROP SCHEMA ... CASCADE, the
		-- partitions of a dropped table) too: restore must know them gone.
		FOR r IN SELECT TG_TAG AS tag, d.object_type, d.object_identity, d.schema_name, d.objid
			FROM pg_event_trigger_dropped_objects() d WHERE d.original OR d.object_type = 'table'
		LOOP
			CONTINUE WHEN r.schema_name = 'lbt' OR r.object_identity LIKE 'lbt\_actor on %';
			PERFORM pg_logical_emit_message(true, 'lbt.ddl', json_build_object(
				'v', 1, 'tag', r.tag, 'object_type', r.object_type, 'object', r.object_identity, 'objid', r.objid,
				'query', current_query(),
				'current_user', current_user, 'session_user', session_user,
				'application_name', current_setting('application_name', true),
				'client_addr', host(inet_client_addr()), 'backend_pid', pg_backend_pid())::text);
		END LOOP;
	ELSE
		FOR r IN SELECT c.command_tag AS tag, c.object_type, c.object_identity, c.schema_name, c.objid
			FROM pg_event_trigger_ddl_commands() c
		LOOP
			CONTINUE WHEN r.schema_name = 'lbt' OR r.object_identity LIKE 'lbt\_actor on %'
				OR (r.object_type = 'schema' AND r.object_identity = 'lbt');
			PERFORM pg_logical_emit_message(true, 'lbt.ddl', json_build_object(
				'v', 1, 'tag', r.tag, 'object_type', r.object_type, 'object', r.object_identity, 'objid', r.objid,
				'query', current_query(),
				'current_user', current_user, 'session_user', session_user,
				'application_name', current_setting('application_name', true),
				'client_addr', host(inet_client_addr()), 'backend_pid', pg_backend_pid())::text);
		END LOOP;
	END IF;
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING 'lbt: DDL command not recorded: %', SQLERRM;
END
$fn$`

// Result says what Install or Remove changed.
type Result struct {
	TriggersAdded   int // tables that got the actor trigger
	TriggersRemoved int
	Notes           []string
}

// Install installs what opts selects. Running it again changes only what
// is missing, and brings the functions up to date.
func Install(ctx context.Context, conn *pgx.Conn, opts Options) (Result, error) {
	var res Result
	if !opts.CaptureActors && !opts.CaptureDDL {
		return res, errors.New("nothing to install: choose --capture-actors, --capture-ddl or both")
	}
	if err := checkSuperuser(ctx, conn, "install the capture triggers"); err != nil {
		return res, err
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := setLockTimeout(ctx, tx, opts.LockTimeout); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS lbt`); err != nil {
			return fmt.Errorf("create schema lbt: %w", err)
		}
		if _, err := tx.Exec(ctx, `REVOKE CREATE ON SCHEMA lbt FROM PUBLIC`); err != nil {
			return fmt.Errorf("schema lbt: %w", err)
		}
		if opts.CaptureActors {
			n, err := installActors(ctx, tx, opts.Publication)
			if err != nil {
				return err
			}
			res.TriggersAdded = n
			pub, err := source.LookupPublication(ctx, tx, opts.Publication)
			if err != nil {
				return err
			}
			if !pub.Exists {
				res.Notes = append(res.Notes, fmt.Sprintf("publication %s does not exist yet: its tables get the actor trigger when it is created (lbt backup creates it FOR ALL TABLES)", opts.Publication))
			}
		}
		if opts.CaptureDDL {
			// Last, so that the statements above are not captured.
			for _, q := range []string{captureDDLSQL,
				`DROP EVENT TRIGGER IF EXISTS lbt_ddl_capture`,
				`CREATE EVENT TRIGGER lbt_ddl_capture ON ddl_command_end EXECUTE FUNCTION lbt.capture_ddl()`,
				`DROP EVENT TRIGGER IF EXISTS lbt_ddl_capture_drop`,
				`CREATE EVENT TRIGGER lbt_ddl_capture_drop ON sql_drop EXECUTE FUNCTION lbt.capture_ddl()`,
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return fmt.Errorf("install DDL capture: %w", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

func installActors(ctx context.Context, tx pgx.Tx, publication string) (int, error) {
	for _, q := range []string{
		captureActorSQL,
		actorTablesFuncSQL,
		strings.ReplaceAll(actorSyncSQL, "$publication", schema.QuoteLiteral(publication)),
		`DROP EVENT TRIGGER IF EXISTS lbt_actor_sync`,
		actorSyncEventSQL,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("install actor capture: %w", err)
		}
	}
	rels, err := missingActorTables(ctx, tx, publication)
	if err != nil {
		return 0, err
	}
	for _, rel := range rels {
		q := `CREATE TRIGGER lbt_actor AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ` + rel + ` FOR EACH STATEMENT EXECUTE FUNCTION lbt.capture_actor()`
		if _, err := tx.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("add the actor trigger to %s: %w", rel, lockHint(err))
		}
	}
	return len(rels), nil
}

// missingActorTables lists the tables of the publication without the actor
// trigger, as quoted qualified names.
func missingActorTables(ctx context.Context, q querier, publication string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT rel::text FROM (`+actorTablesSQL+`) a WHERE NOT has_trigger ORDER BY 1`, publication)
	if err != nil {
		return nil, fmt.Errorf("list the tables of publication %q: %w", publication, err)
	}
	rels, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list the tables of publication %q: %w", publication, err)
	}
	return rels, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Remove takes away what Install installed: the actor capture, the DDL
// capture, or (with neither selected) both and the schema lbt. The
// publication and the replication slot are left alone.
func Remove(ctx context.Context, conn *pgx.Conn, opts Options) (Result, error) {
	var res Result
	actors, ddl := opts.CaptureActors, opts.CaptureDDL
	all := !actors && !ddl
	if all {
		actors, ddl = true, true
	}
	if err := checkSuperuser(ctx, conn, "remove the capture triggers"); err != nil {
		return res, err
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := setLockTimeout(ctx, tx, opts.LockTimeout); err != nil {
			return err
		}
		if ddl {
			for _, q := range []string{
				`DROP EVENT TRIGGER IF EXISTS lbt_ddl_capture`,
				`DROP EVENT TRIGGER IF EXISTS lbt_ddl_capture_drop`,
				`DROP FUNCTION IF EXISTS lbt.capture_ddl()`,
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return fmt.Errorf("remove DDL capture: %w", err)
				}
			}
		}
		if actors {
			if _, err := tx.Exec(ctx, `DROP EVENT TRIGGER IF EXISTS lbt_actor_sync`); err != nil {
				return fmt.Errorf("remove actor capture: %w", err)
			}
			rows, err := tx.Query(ctx, `SELECT tgrelid::pg_catalog.regclass::text FROM pg_catalog.pg_trigger
				WHERE tgname = 'lbt_actor' AND tgfoid = pg_catalog.to_regprocedure('lbt.capture_actor()') ORDER BY 1`)
			if err != nil {
				return fmt.Errorf("list actor triggers: %w", err)
			}
			rels, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("list actor triggers: %w", err)
			}
			for _, rel := range rels {
				if _, err := tx.Exec(ctx, `DROP TRIGGER lbt_actor ON `+rel); err != nil {
					return fmt.Errorf("drop the actor trigger of %s: %w", rel, lockHint(err))
				}
			}
			res.TriggersRemoved = len(rels)
			if _, err := tx.Exec(ctx, `DROP FUNCTION IF EXISTS lbt.actor_sync(), lbt.actor_tables(name), lbt.capture_actor()`); err != nil {
				return fmt.Errorf("remove actor capture: %w", err)
			}
		}
		if all {
			if _, err := tx.Exec(ctx, `DROP SCHEMA IF EXISTS lbt`); err != nil {
				return fmt.Errorf("drop schema lbt (it holds objects lbt did not create: move or drop them first): %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

func checkSuperuser(ctx context.Context, conn *pgx.Conn, what string) error {
	var role string
	var super bool
	if err := conn.QueryRow(ctx, `SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&role, &super); err != nil {
		return fmt.Errorf("look up the role: %w", err)
	}
	if !super {
		return fmt.Errorf("%w: role %s cannot %s (event triggers need a superuser): run lbt setup with --dsn naming a superuser", ErrNotSuperuser, schema.QuoteIdent(role), what)
	}
	return nil
}

func setLockTimeout(ctx context.Context, tx pgx.Tx, timeout string) error {
	if timeout == "" {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_catalog.set_config('lock_timeout', $1, true)`, timeout); err != nil {
		return fmt.Errorf("set lock_timeout: %w", err)
	}
	return nil
}

// lockHint explains a lock timeout.
func lockHint(err error) error {
	if strings.Contains(err.Error(), "lock timeout") {
		return fmt.Errorf("%w (a long transaction holds the table: retry when it ends)", err)
	}
	return err
}
