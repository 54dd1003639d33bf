package test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"lbt/schema"
	"lbt/source"
	"lbt/test/pgtest"
)

// statementCounter counts the statements a connection sends.
type statementCounter struct{ n int }

func (s *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	s.n++
	return ctx
}
func (s *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// The archiver's description at each Relation message is one statement,
// and reads what the stream does not carry: type names, the primary key,
// attnum, NOT NULL, DEFAULT, the fast default and the storage.
func TestSource_DescribeRelationInOneStatement(t *testing.T) {
	c := pgtest.Shared(t)
	dsn := c.NewDatabase(t)
	c.Exec(t, dsn, `CREATE TABLE t (id integer PRIMARY KEY, gone text, label varchar(20) NOT NULL DEFAULT 'x', g integer GENERATED ALWAYS AS (id * 2) STORED);
		INSERT INTO t (id) VALUES (1);
		ALTER TABLE t DROP COLUMN gone;
		ALTER TABLE t ADD COLUMN n integer DEFAULT 5;
		CREATE TABLE empty ()`)
	oid := func(name string) uint32 {
		var o uint32
		if err := c.Connect(t, dsn).QueryRow(context.Background(), `SELECT $1::regclass::oid`, name).Scan(&o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	tOID, emptyOID := oid("t"), oid("empty")
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	counter := &statementCounter{}
	cc.Tracer = counter
	conn, err := pgx.ConnectConfig(context.Background(), cc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	l := source.NewLookup(conn, "")
	ctx := context.Background()

	// As the Relation message gives it: the generated column is not sent.
	def := schema.Table{Schema: "public", Name: "t", ReplicaIdentity: 'd', Columns: []schema.Column{
		{Name: "id", TypeOID: 23, TypeMod: -1, Key: true}, {Name: "label", TypeOID: 1043, TypeMod: 24}, {Name: "n", TypeOID: 23, TypeMod: -1}}}
	st, err := l.DescribeRelation(ctx, tOID, &def)
	if err != nil {
		t.Fatal(err)
	}
	if counter.n != 1 {
		t.Errorf("DescribeRelation sent %d statements, want 1", counter.n)
	}
	want := []schema.Column{
		{Name: "id", TypeOID: 23, TypeMod: -1, TypeName: "integer", Key: true, AttNum: 1, NotNull: true},
		{Name: "label", TypeOID: 1043, TypeMod: 24, TypeName: "character varying(20)", AttNum: 3, NotNull: true, Default: "'x'::character varying"},
		{Name: "n", TypeOID: 23, TypeMod: -1, TypeName: "integer", AttNum: 5, Default: "5", HasMissing: true, Missing: "5"},
	}
	for i, w := range want {
		if def.Columns[i] != w {
			t.Errorf("column %d: %+v, want %+v", i, def.Columns[i], w)
		}
	}
	if strings.Join(def.PrimaryKey, ",") != "id" {
		t.Errorf("primary key %v, want [id]", def.PrimaryKey)
	}
	relfilenode := c.QueryString(t, dsn, `SELECT relfilenode FROM pg_class WHERE relname = 't'`)
	if st.Relfilenode == 0 || st.Xmin == 0 || relfilenode != strconv.FormatUint(uint64(st.Relfilenode), 10) {
		t.Errorf("storage %+v, want relfilenode %s and an xmin", st, relfilenode)
	}

	empty := schema.Table{Schema: "public", Name: "empty", ReplicaIdentity: 'd'}
	if st, err := l.DescribeRelation(ctx, emptyOID, &empty); err != nil || st.Relfilenode == 0 || len(empty.PrimaryKey) != 0 {
		t.Errorf("table without columns: %+v, %+v, %v", empty, st, err)
	}

	// Dropped meanwhile: no storage, and no error.
	c.Exec(t, dsn, `DROP TABLE t`)
	gone := schema.Table{Schema: "public", Name: "t", Columns: []schema.Column{{Name: "id", TypeOID: 23, TypeMod: -1}}}
	st, err = l.DescribeRelation(ctx, tOID, &gone)
	if err != nil || st != (source.Storage{}) || gone.Columns[0].TypeName != "integer" || gone.Columns[0].AttNum != 0 {
		t.Errorf("dropped table: %+v, %+v, %v", gone, st, err)
	}
	if _, _, ok, err := l.DescribeCurrent(ctx, tOID, gone); ok || err != nil {
		t.Errorf("DescribeCurrent of a dropped table: ok %v, %v; want not ok", ok, err)
	}
}
