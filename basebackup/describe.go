package basebackup

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"lbt/schema"
	"lbt/source"
)

// ErrNoTable reports a table that does not exist on the source (any more).
var ErrNoTable = source.ErrNoTable

// ErrNotPublished reports a table outside the publication: the daemon does
// not archive its changes, so a basebackup of it could not be brought
// forward in time.
var ErrNotPublished = errors.New("table is not in the publication")

// resolve finds a table's OID by name under the dump's snapshot.
func resolve(ctx context.Context, tx pgx.Tx, nsp, rel string) (uint32, error) {
	oid, ok, err := source.TableOID(ctx, tx, nsp, rel)
	if err == nil && !ok {
		return 0, fmt.Errorf("%w: %s (check the name; an unqualified name means schema public)", ErrNoTable, schema.QuoteIdent(nsp)+"."+schema.QuoteIdent(rel))
	}
	return oid, err
}

// checkTable refuses a table that no longer exists, and one that the
// publication (when given) does not carry.
func checkTable(ctx context.Context, tx pgx.Tx, oid uint32, publication string) error {
	m, ok, err := source.PublicationMembership(ctx, tx, oid, publication)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%w: the table with OID %d was dropped", ErrNoTable, oid)
	case publication == "":
		return nil
	case !m.PublicationExists:
		return fmt.Errorf("%w: publication %s does not exist (lbt backup creates it)", ErrNotPublished, schema.QuoteIdent(publication))
	case !m.Published:
		return notPublished(ctx, tx, oid, m.Name, publication)
	}
	return nil
}
