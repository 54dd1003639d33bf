package schema

// Definition is everything needed to recreate a table as it was when a
// basebackup was taken, read from the source catalog under the dump's
// snapshot.
type Definition struct {
	// Table is the table as the stream names its columns: the columns a
	// basebackup's COPY holds, in order (generated columns excluded).
	Table Table `json:"table"`
	// Columns are all columns in attnum order, generated ones included.
	Columns     []ColumnDef  `json:"columns"`
	Constraints []Constraint `json:"constraints"` // primary key, unique, check, exclusion (foreign keys are left out: the restored table stands alone)
	Indexes     []string     `json:"indexes"`     // CREATE INDEX statements of indexes that back no constraint
}

// ColumnDef is one column's full definition.
type ColumnDef struct {
	Name      string `json:"name"`
	Type      string `json:"type"` // format_type, e.g. "numeric(10,2)"
	NotNull   bool   `json:"not_null,omitempty"`
	Default   string `json:"default,omitempty"`   // pg_get_expr of the default
	Identity  string `json:"identity,omitempty"`  // "a" ALWAYS, "d" BY DEFAULT, "" none
	Generated string `json:"generated,omitempty"` // expression of a STORED generated column
	Collation string `json:"collation,omitempty"` // non-default collation, quoted
}

// Constraint is a table constraint as pg_get_constraintdef prints it.
type Constraint struct {
	Name string `json:"name"`
	Def  string `json:"def"` // e.g. "PRIMARY KEY (id)"
}

// Sequence is the state of a sequence owned by a table's column.
type Sequence struct {
	Name      string `json:"name"`   // qualified, quoted
	Column    string `json:"column"` // the owning column
	LastValue int64  `json:"last_value"`
	IsCalled  bool   `json:"is_called"`
	Increment int64  `json:"increment"`
	MinValue  int64  `json:"min_value"`
	MaxValue  int64  `json:"max_value"`
	Start     int64  `json:"start"`
	Type      string `json:"type"` // bigint, integer, smallint
}
