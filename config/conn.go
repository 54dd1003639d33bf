package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// applicationName is reported to the server unless the connection
	// settings name another, so that lbt's sessions are recognizable in
	// pg_stat_activity.
	applicationName = "lbt"
	// defaultConnectTimeout bounds a connection attempt when neither the
	// DSN nor PGCONNECT_TIMEOUT does; libpq would wait forever.
	defaultConnectTimeout = 30 * time.Second
)

// ConnConfig returns the settings for a normal connection to the source
// database. They are layered like libpq's, later layers winning: libpq's
// defaults, the PG* environment variables (PGHOST, PGPASSWORD, PGSERVICE,
// ...), db.dsn, then db.host, db.port, db.user, db.database and db.password.
// A password still missing is looked up in ~/.pgpass (or PGPASSFILE).
func (c Config) ConnConfig() (*pgconn.Config, error) {
	pc, err := pgconn.ParseConfig(c.DB.connString())
	if err != nil {
		// pgconn's redaction of passwords in its errors is best effort;
		// lbt's errors must never carry one.
		return nil, c.RedactError(fmt.Errorf("connection settings: %w", err))
	}
	for k, v := range c.DB.RuntimeParams {
		pc.RuntimeParams[k] = v
	}
	if _, ok := pc.RuntimeParams["application_name"]; !ok {
		pc.RuntimeParams["application_name"] = applicationName
	}
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = defaultConnectTimeout
	}
	return pc, nil
}

// ReplicationConnConfig returns ConnConfig with replication=database, for
// the logical replication protocol.
func (c Config) ReplicationConnConfig() (*pgconn.Config, error) {
	pc, err := c.ConnConfig()
	if err != nil {
		return nil, err
	}
	pc.RuntimeParams["replication"] = "database"
	return pc, nil
}

// connString returns db.dsn with the individual db.* settings added so that
// they take precedence: as query parameters of a URL, as later keywords of a
// keyword/value string (libpq keeps the last of a repeated keyword).
func (d DBConfig) connString() string {
	var kv [][2]string
	if d.Host != "" {
		kv = append(kv, [2]string{"host", d.Host})
	}
	if d.Port != 0 {
		kv = append(kv, [2]string{"port", strconv.Itoa(d.Port)})
	}
	if d.User != "" {
		kv = append(kv, [2]string{"user", d.User})
	}
	if d.Database != "" {
		kv = append(kv, [2]string{"dbname", d.Database})
	}
	if d.Password != "" {
		kv = append(kv, [2]string{"password", d.Password})
	}

	dsn := strings.TrimSpace(d.DSN)
	if len(kv) == 0 {
		return dsn
	}
	var b strings.Builder
	b.WriteString(dsn)
	if isURL(dsn) {
		sep := "?"
		if urlHasQuery(dsn) {
			sep = "&"
		}
		for _, p := range kv {
			b.WriteString(sep + p[0] + "=" + uriEscape(p[1]))
			sep = "&"
		}
		return b.String()
	}
	for _, p := range kv {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p[0] + "=" + quoteValue(p[1]))
	}
	return b.String()
}

func isURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// urlHasQuery reports whether a connection URL has a query part. Like
// libpq, the user info ends at the first @ before any /, and may itself
// contain a ?.
func urlHasQuery(dsn string) bool {
	_, rest, _ := strings.Cut(dsn, "://")
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		rest = rest[i+1:]
	}
	return strings.Contains(rest, "?")
}

// quoteValue quotes a value for a keyword/value connection string, where
// spaces, quotes and backslashes would otherwise end or change it.
func quoteValue(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// uriEscape percent-encodes everything but the unreserved characters of
// RFC 3986. libpq does not read + as a space, so url.QueryEscape will not
// do.
func uriEscape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// RedactSecrets replaces every password the configuration knows of, in any
// of the spellings a connection string or URL gives it, with ****. Use it on
// any text built from connection settings or connection errors before it is
// printed or logged.
func (c Config) RedactSecrets(s string) string {
	secrets := []string{c.DB.Password}
	for _, sp := range dsnSecrets(c.DB.DSN) {
		secrets = append(secrets, sp.raw, sp.value)
	}
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		// Longer, escaped spellings first: the raw value may not be a
		// substring of them.
		for _, form := range []string{quoteValue(secret), uriEscape(secret), url.QueryEscape(secret), secret} {
			s = strings.ReplaceAll(s, form, mask)
		}
	}
	return s
}

const mask = "****"

// RedactError returns err with RedactSecrets applied to its message. The
// chain stays: errors.Is and errors.As see the original, so an error keeps
// its kind (and its exit status) through redaction.
func (c Config) RedactError(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: c.RedactSecrets(err.Error()), err: err}
}

// redactedError is an error whose message has had the passwords taken out.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
