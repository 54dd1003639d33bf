// Package inspect answers questions about an archive's history: every
// version of one row and who wrote it (History), what one transaction did
// (Tx), which transactions changed a table (Changes), what the archive holds
// (Tables) and how the tables' definitions changed (DDL).
//
// Answers come from the catalog's indexes and read only the blobs they need:
// the history of a row looks its key's hash up in the row-key index, finds each
// transaction's first blob by the table's blob LSN ranges and decodes that
// blob alone. The package only reads; it works while the backup daemon
// writes the archive.
//
// Each query returns a structured report; its Write method renders it as an
// aligned table for people, or as JSON lines or CSV for tools.
package inspect

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"lbt/catalog"
	"lbt/crypt"
	"lbt/schema"
)

// InputError reports a question the archive cannot answer as asked: an
// unknown table, a malformed key. Its message names the fix. Package
// repair reports its bad input with it too.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func inputErrorf(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// Range bounds a query by commit time: Since is inclusive, Until exclusive.
// A zero time leaves that side open.
type Range struct {
	Since time.Time
	Until time.Time
}

func (r Range) contains(t time.Time) bool {
	return (r.Since.IsZero() || !t.Before(r.Since)) && (r.Until.IsZero() || t.Before(r.Until))
}

func (r Range) check() error {
	if !r.Since.IsZero() && !r.Until.IsZero() && !r.Since.Before(r.Until) {
		return inputErrorf("--since %s is not before --until %s", formatTime(r.Since), formatTime(r.Until))
	}
	return nil
}

// ActorHint is the note reports carry when some transaction has no
// recorded actor.
const ActorHint = "actor unknown: run lbt setup --capture-actors on the source to record who makes each change"

// Inspector answers questions about one archive. It never writes to it.
// It is not safe for concurrent use.
type Inspector struct {
	// cat answers every question from one moment of the archive (a read
	// snapshot of owner), so that a purge that commits while a report is
	// made cannot give it half a transaction.
	cat      *catalog.Catalog
	owner    *catalog.Catalog
	release  func()
	src      *catalog.BlobSource
	blobs    *blobCache
	mu       sync.Mutex // guards versions, which searches on other cores share
	versions map[int64]map[int]*version

	// background searches: at most cap(sem) at once, all ended by Close
	sem        chan struct{}
	prefetches sync.WaitGroup
}

// Open opens the archive in dir for reading.
//
// keys are the archive's encryption keys (Catalog.Keys or the configured
// ones; nil for a plaintext archive).
func Open(ctx context.Context, dir string, keys *crypt.Keys) (*Inspector, error) {
	cat, err := catalog.OpenReadOnly(ctx, dir)
	if err != nil {
		return nil, err
	}
	if err := cat.UseKeys(ctx, keys); err != nil {
		cat.Close()
		return nil, err
	}
	if err := cat.CheckIdentity(ctx); err != nil {
		cat.Close()
		return nil, err
	}
	in, err := New(ctx, cat)
	if err != nil {
		cat.Close()
		return nil, err
	}
	return in, nil
}

// New inspects the archive of cat, opened read-only, whose files may be in
// an object store (catalog.SetFiles) and which has its keys
// (Catalog.UseKeys); Close closes cat. Every question is answered from the
// moment New was called.
func New(ctx context.Context, cat *catalog.Catalog) (*Inspector, error) {
	view, release, err := cat.BeginRead(ctx)
	if err != nil {
		return nil, err
	}
	return &Inspector{
		cat:      view,
		owner:    cat,
		release:  release,
		src:      catalog.NewBlobSource(ctx, cat.Store(), cat.Keys()),
		blobs:    newBlobCache(256 << 20),
		sem:      make(chan struct{}, runtime.GOMAXPROCS(0)),
		versions: make(map[int64]map[int]*version),
	}, nil
}

// Close releases the catalog and the segment files.
func (in *Inspector) Close() error {
	in.prefetches.Wait()
	in.src.Close()
	in.release()
	return in.owner.Close()
}

// Catalog is the read snapshot the Inspector answers from, for a caller
// whose own questions must be of the same moment (lbt undo). It is valid
// until Close.
func (in *Inspector) Catalog() *catalog.Catalog { return in.cat }

// table is an archived table as a query resolved it.
type table struct {
	id       int64
	name     string // qualified, quoted as SQL
	versions []catalog.SchemaVersion
}

// resolveTable finds the table a SQL name means: the newest of the tables
// that ever had that name. notes receives a note when there were several.
func (in *Inspector) resolveTable(ctx context.Context, name string, notes *[]string) (*table, error) {
	ids, err := in.findTables(ctx, name)
	if err != nil {
		return nil, err
	}
	t, err := in.tableByID(ctx, ids[0])
	if err != nil {
		return nil, err
	}
	if len(ids) > 1 {
		*notes = append(*notes, fmt.Sprintf("%d archived tables were named %s (dropped and created again): showing the newest, catalog table %d; older ones: %v",
			len(ids), t.name, ids[0], ids[1:]))
	}
	return t, nil
}

// findTables returns the catalog ids of the tables that had a name, newest first.
func (in *Inspector) findTables(ctx context.Context, name string) ([]int64, error) {
	ns, rel, err := schema.ParseName(name)
	if err != nil {
		return nil, &InputError{Msg: fmt.Sprintf("--table: %v", err)}
	}
	ids, err := in.cat.FindTable(ctx, ns, rel)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, inputErrorf("table %s is not in the archive (lbt inspect tables lists the archived tables)",
			schema.QuoteIdent(ns)+"."+schema.QuoteIdent(rel))
	}
	return ids, nil
}

func (in *Inspector) tableByID(ctx context.Context, id int64) (*table, error) {
	versions, err := in.cat.SchemaVersions(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("catalog table %d has no schema version", id)
	}
	return &table{id: id, name: versions[len(versions)-1].QualifiedName(), versions: versions}, nil
}

// version is one schema version of a table, with what reading its records
// needs at hand.
type version struct {
	def     schema.Table
	name    string   // qualified SQL name
	columns []string // column names
	keyIdx  []int    // KeyColumns
	// the key columns in table order, as catalog.KeyFunc wants them
	sortedIdx   []int
	sortedNames []string
}

// version returns version v of a table's definition.
func (in *Inspector) version(ctx context.Context, tableID int64, v int) (*version, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	m := in.versions[tableID]
	if m == nil {
		svs, err := in.cat.SchemaVersions(ctx, tableID)
		if err != nil {
			return nil, err
		}
		m = make(map[int]*version, len(svs))
		for _, sv := range svs {
			ver := &version{def: sv.Table, name: sv.QualifiedName(), columns: columnNames(sv.Table), keyIdx: sv.KeyColumns()}
			ver.sortedIdx = slices.Clone(ver.keyIdx)
			slices.Sort(ver.sortedIdx)
			for _, i := range ver.sortedIdx {
				ver.sortedNames = append(ver.sortedNames, sv.Columns[i].Name)
			}
			m[sv.Version] = ver
		}
		in.versions[tableID] = m
	}
	ver, ok := m[v]
	if !ok {
		return nil, fmt.Errorf("%w: table %d has no schema version %d", catalog.ErrCorrupt, tableID, v)
	}
	return ver, nil
}

// txMeta is what the catalog says of a transaction.
type txMeta struct {
	lsn  uint64
	xid  uint32
	time time.Time
}

// eachTxChange calls fn for every change the transaction that committed at
// lsn made to a table, in order, with the place of its record: the index of
// its blob among the transaction's blobs, and its offset there. With keys,
// it passes only the changes of rows with that key, and truncates, and steps
// over the others undecoded. The tuples are valid during the call only.
func (in *Inspector) eachTxChange(ctx context.Context, tableID int64, lsn uint64, keys catalog.KeyFunc, fn func(place, catalog.Change) error) error {
	// The first of the table's blobs whose LSN range holds the transaction.
	blobID, first, ok, err := in.cat.TxBlob(ctx, tableID, lsn, 0)
	if err != nil || !ok || first > lsn {
		return err
	}
	b, err := in.cat.BlobByID(ctx, blobID)
	if err != nil {
		return err
	}
	for seq := 0; ; seq++ {
		raw, err := in.readBlob(b)
		if err != nil {
			return err
		}
		for ch, err := range catalog.Changes(b, raw, catalog.Filter{CommitLSN: lsn, Keys: keys}) {
			if err != nil {
				return err
			}
			if err := fn(place{seq, ch.End}, ch); err != nil {
				return err
			}
		}
		if b.LastLSN > lsn {
			return nil
		}
		// A large transaction continues in the table's next blob.
		next, _, ok, err := in.cat.TxBlob(ctx, tableID, lsn, b.ID)
		if err != nil || !ok {
			return err
		}
		if b, err = in.cat.BlobByID(ctx, next); err != nil {
			return err
		}
		if b.FirstLSN != lsn {
			return nil
		}
	}
}

// place is where a record is among a transaction's records.
type place struct {
	blob int // index among the transaction's blobs
	pos  int // catalog.Change.End
}

func (p place) after(q place) bool { return p.blob > q.blob || p.blob == q.blob && p.pos > q.pos }

// Actor is who made a transaction, as lbt setup --capture-actors records it.
type Actor struct {
	Known       bool
	Role        string // current_user
	SessionUser string
	Application string
	ClientAddr  string // empty for a Unix socket
	BackendPID  int
}

// actorMessage is the content of an 'lbt.actor' message; package setup
// writes it.
type actorMessage struct {
	CurrentUser     string  `json:"current_user"`
	SessionUser     string  `json:"session_user"`
	ApplicationName *string `json:"application_name"`
	ClientAddr      *string `json:"client_addr"`
	BackendPID      int     `json:"backend_pid"`
}

// Message prefixes of the logical messages lbt setup makes the source emit.
const (
	ActorPrefix = "lbt.actor"
	DDLPrefix   = "lbt.ddl"
)

func parseActor(content []byte) Actor {
	var m actorMessage
	if err := json.Unmarshal(content, &m); err != nil || m.CurrentUser == "" {
		return Actor{}
	}
	a := Actor{Known: true, Role: m.CurrentUser, SessionUser: m.SessionUser, BackendPID: m.BackendPID}
	if m.ApplicationName != nil {
		a.Application = *m.ApplicationName
	}
	if m.ClientAddr != nil {
		a.ClientAddr = *m.ClientAddr
	}
	return a
}

// String is the actor for people: role (application, client, pid).
func (a Actor) String() string {
	if !a.Known {
		return "unknown"
	}
	s := a.Role + " ("
	if a.SessionUser != "" && a.SessionUser != a.Role {
		s += "session " + a.SessionUser + ", "
	}
	app := a.Application
	if app == "" {
		app = "no application_name"
	}
	s += app + ", "
	if a.ClientAddr != "" {
		s += a.ClientAddr + ", "
	} else {
		s += "local, "
	}
	return s + fmt.Sprintf("pid %d)", a.BackendPID)
}

// actorOf returns the actor of the transaction that committed at lsn: its
// first 'lbt.actor' message.
func (in *Inspector) actorOf(ctx context.Context, lsn uint64) (Actor, error) {
	content, ok, err := in.cat.FirstMessage(ctx, lsn, ActorPrefix)
	if err != nil || !ok {
		return Actor{}, err
	}
	return parseActor(content), nil
}

// TimeLayout is how reports write times: RFC 3339 in UTC with microseconds.
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeLayout)
}

// addActorHint appends ActorHint to notes once when an actor is unknown.
func addActorHint(notes *[]string, actors ...Actor) {
	for _, a := range actors {
		if !a.Known {
			for _, n := range *notes {
				if n == ActorHint {
					return
				}
			}
			*notes = append(*notes, ActorHint)
			return
		}
	}
}
