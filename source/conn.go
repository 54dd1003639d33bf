package source

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Connect opens a normal (not replication) connection with the settings
// pc, as config.Config.ConnConfig gives them: libpq's layers, lbt's
// application_name and connect timeout. pc is not changed. A failure names
// the server and role (ConnLabel) and the cause, never the password; the
// error unwraps to pgconn's.
func Connect(ctx context.Context, pc *pgconn.Config) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cc.Config = *pc.Copy()
	delete(cc.RuntimeParams, "replication")
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, &ConnectError{Server: ConnLabel(pc), password: pc.Password, err: err}
	}
	return conn, nil
}

// ConnLabel names the server and role of connection settings for messages,
// without the password.
func ConnLabel(pc *pgconn.Config) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s", pc.Host, pc.Port, pc.User, pc.Database)
}

// ConnectError is a connection to the source that could not be made.
type ConnectError struct {
	Server   string // ConnLabel's text
	password string
	err      error
}

// Error gives the server and the cause: pgconn's own prefix repeats the
// user and database that Server gives already. The password is masked
// even where a server's message would repeat it (config.RedactSecrets
// masks its other spellings where the whole configuration is known).
func (e *ConnectError) Error() string {
	cause := e.err.Error()
	var ce *pgconn.ConnectError
	if errors.As(e.err, &ce) && errors.Unwrap(ce) != nil {
		cause = errors.Unwrap(ce).Error()
	}
	if e.password != "" {
		cause = strings.ReplaceAll(cause, e.password, "****")
	}
	return "connect to source " + e.Server + ": " + cause
}

func (e *ConnectError) Unwrap() error { return e.err }
