package setup

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"lbt/source"
)

// Status is what is set up on the source for lbt.
type Status struct {
	Role      string
	Superuser bool
	Database  string

	Publication          string
	PublicationExists    bool
	PublicationAllTables bool

	Slot       string
	SlotExists bool
	SlotActive bool

	// ActorCapture: the trigger function and the event trigger that covers
	// new tables are installed.
	ActorCapture bool
	// ActorTables counts the tables that need the trigger; ActorMissing
	// names those that lack it.
	ActorTables  int
	ActorMissing []string
	// DDLCapture: both DDL event triggers are installed and enabled.
	DDLCapture bool
	// Disabled names lbt's event triggers that exist but are disabled.
	Disabled []string
}

// GetStatus reports what is installed. It changes nothing and needs no
// special privilege.
func GetStatus(ctx context.Context, conn *pgx.Conn, publication, slot string) (Status, error) {
	s := Status{Publication: publication, Slot: slot}
	err := conn.QueryRow(ctx, `SELECT current_user, rolsuper, current_database() FROM pg_catalog.pg_roles WHERE rolname = current_user`).
		Scan(&s.Role, &s.Superuser, &s.Database)
	if err != nil {
		return s, fmt.Errorf("look up the role: %w", err)
	}
	pub, err := source.LookupPublication(ctx, conn, publication)
	if err != nil {
		return s, err
	}
	s.PublicationExists, s.PublicationAllTables = pub.Exists, pub.AllTables
	if slot != "" {
		sl, err := source.LookupSlot(ctx, conn, slot)
		if err != nil {
			return s, err
		}
		s.SlotExists, s.SlotActive = sl.Exists, sl.Active
	}
	var fn, sync bool
	err = conn.QueryRow(ctx, `SELECT pg_catalog.to_regprocedure('lbt.capture_actor()') IS NOT NULL,
		EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = 'lbt_actor_sync')`).Scan(&fn, &sync)
	if err != nil {
		return s, fmt.Errorf("look up actor capture: %w", err)
	}
	s.ActorCapture = fn && sync
	rows, err := conn.Query(ctx, `SELECT rel::text, has_trigger FROM (`+actorTablesSQL+`) a ORDER BY 1`, publication)
	if err != nil {
		return s, fmt.Errorf("list the tables of publication %q: %w", publication, err)
	}
	for rows.Next() {
		var rel string
		var has bool
		if err := rows.Scan(&rel, &has); err != nil {
			rows.Close()
			return s, fmt.Errorf("list the tables of publication %q: %w", publication, err)
		}
		s.ActorTables++
		if !has {
			s.ActorMissing = append(s.ActorMissing, rel)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("list the tables of publication %q: %w", publication, err)
	}
	rows, err = conn.Query(ctx, `SELECT evtname, evtenabled <> 'D' FROM pg_catalog.pg_event_trigger
		WHERE evtname IN ('lbt_actor_sync', 'lbt_ddl_capture', 'lbt_ddl_capture_drop') ORDER BY 1`)
	if err != nil {
		return s, fmt.Errorf("list event triggers: %w", err)
	}
	ddl := 0
	for rows.Next() {
		var name string
		var enabled bool
		if err := rows.Scan(&name, &enabled); err != nil {
			rows.Close()
			return s, fmt.Errorf("list event triggers: %w", err)
		}
		if !enabled {
			s.Disabled = append(s.Disabled, name)
		} else if name != ActorSyncEvent {
			ddl++
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("list event triggers: %w", err)
	}
	s.DDLCapture = ddl == 2
	return s, nil
}

// Write writes the status for people.
func (s Status) Write(w io.Writer) error {
	var b strings.Builder
	super := "not a superuser: lbt setup --capture-actors and --capture-ddl need one"
	if s.Superuser {
		super = "superuser"
	}
	fmt.Fprintf(&b, "source:         database %s, role %s (%s)\n", s.Database, s.Role, super)
	switch {
	case !s.PublicationExists:
		fmt.Fprintf(&b, "publication:    %s does not exist (lbt backup creates it FOR ALL TABLES)\n", s.Publication)
	case s.PublicationAllTables:
		fmt.Fprintf(&b, "publication:    %s, FOR ALL TABLES\n", s.Publication)
	default:
		fmt.Fprintf(&b, "publication:    %s\n", s.Publication)
	}
	switch {
	case s.Slot == "":
	case !s.SlotExists:
		fmt.Fprintf(&b, "slot:           %s does not exist (lbt backup creates it)\n", s.Slot)
	case s.SlotActive:
		fmt.Fprintf(&b, "slot:           %s, in use\n", s.Slot)
	default:
		fmt.Fprintf(&b, "slot:           %s, not in use: WAL is kept for it until lbt backup runs again\n", s.Slot)
	}
	switch {
	case !s.ActorCapture:
		fmt.Fprintf(&b, "actor capture:  not installed (lbt setup --capture-actors)\n")
	case len(s.ActorMissing) == 0:
		fmt.Fprintf(&b, "actor capture:  installed, on all %d tables of the publication\n", s.ActorTables)
	default:
		fmt.Fprintf(&b, "actor capture:  installed, but %d of %d tables lack the trigger: %s (run lbt setup --capture-actors again)\n",
			len(s.ActorMissing), s.ActorTables, strings.Join(s.ActorMissing, ", "))
	}
	if s.DDLCapture {
		fmt.Fprintf(&b, "DDL capture:    installed\n")
	} else {
		fmt.Fprintf(&b, "DDL capture:    not installed (lbt setup --capture-ddl)\n")
	}
	if len(s.Disabled) > 0 {
		fmt.Fprintf(&b, "warning:        event triggers disabled: %s (ALTER EVENT TRIGGER ... ENABLE)\n", strings.Join(s.Disabled, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
