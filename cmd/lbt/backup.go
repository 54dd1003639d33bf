package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

type backupCmd struct {
	CheckConfig bool `help:"Print the effective configuration, passwords masked, and exit without connecting (default: false)."`
}

func (cmd *backupCmd) Help() string {
	return `Runs until stopped: reads committed changes from the logical replication slot, writes them to the archive, and confirms to the server only what is durable. The first SIGINT or SIGTERM flushes and stops cleanly.

Use --check-config to see the configuration lbt would run with, after the config file, LBT_* variables and flags are combined.`
}

func (cmd *backupCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	if cmd.CheckConfig {
		_, err := io.WriteString(g.stdout, cfg.Redacted())
		return err
	}
	log := g.logger(cfg)

	pc, err := cfg.ConnConfig()
	if err != nil {
		return usageError{err}
	}
	source := describeConn(pc)
	log.Debug("connecting to the source database", "conn", source)
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("connect to source %s: %s", source, cfg.RedactSecrets(connectCause(err)))
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer conn.Close(closeCtx)

	// INGEST: this is where the daemon starts, once package lbt/ingest
	// exists: hand it ctx, cfg and log, and return its error. It owns
	// the connections from here on; the probe above only makes
	// configuration and connection errors fail fast with a clear message.
	return fmt.Errorf("connected to source %s, but the backup daemon is %w", source, errNotImplemented)
}

// describeConn names the server and role of a connection without its
// password, for messages.
func describeConn(pc *pgconn.Config) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s", pc.Host, pc.Port, pc.User, pc.Database)
}

// connectCause returns the reason a connection failed. pgconn's own prefix
// repeats the user and database describeConn already gives.
func connectCause(err error) string {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && errors.Unwrap(ce) != nil {
		return errors.Unwrap(ce).Error()
	}
	return err.Error()
}
