// Command lbt keeps a continuous logical backup of PostgreSQL tables and
// restores them to any point in time.
//
// This package only wires the command line: each command is a struct with
// kong tags in its own file, whose Run method loads the configuration and
// calls the package that does the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"lbt/config"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	ctx, stop := signalContext(os.Stderr)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// signalContext returns a context that the first SIGINT or SIGTERM cancels,
// so that the running command can shut down cleanly. A second signal exits
// at once, for when the clean shutdown hangs.
func signalContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "lbt: received %s, shutting down (send it again to stop at once)\n", s)
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			fmt.Fprintln(stderr, "lbt: interrupted")
			os.Exit(exitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

const description = `lbt keeps a continuous logical backup of PostgreSQL tables: a basebackup of each table and every change committed since, read from a logical replication slot. Any table can be restored to any point in time the archive covers.

Settings come from, in increasing precedence: built-in defaults, the config file (--config; LBT's YAML format is read unchanged), LBT_* environment variables (LBT_ and the key in upper snake case: archiveDir is LBT_ARCHIVE_DIR, db.host is LBT_DB_HOST, db.dsn is LBT_DSN), and flags. Unset connection settings come from the PG* environment variables and ~/.pgpass, as with psql.

` + exitStatusHelp

// cli is the command line: the global flags and one field per command.
type cli struct {
	Globals

	Backup     backupCmd     `cmd:"" help:"Stream changes from the replication slot into the archive (the daemon)."`
	Basebackup basebackupCmd `cmd:"" help:"Take a basebackup of tables now, starting a new epoch of their history."`
	Restore    restoreCmd    `cmd:"" help:"Restore a table as of a time, WAL position or transaction."`
	Inspect    inspectCmd    `cmd:"" help:"Look into the archive: row history, transactions, changes, tables, DDL."`
	Status     statusCmd     `cmd:"" help:"Show the state of the archive, the slot and every table."`
	Undo       undoCmd       `cmd:"" help:"Write (or apply) the statements that reverse archived transactions."`
	Diff       diffCmd       `cmd:"" help:"Compare a table at two moments, row by row, or write the statements that rewind it."`
	Verify     verifyCmd     `cmd:"" help:"Check that the archive is complete and intact."`
	Purge      purgeCmd      `cmd:"" help:"Remove history that the retention settings no longer keep."`
	Keygen     keygenCmd     `cmd:"" help:"Write a new encryption key (age identity) and print its public key."`
	Repair     repairCmd     `cmd:"" help:"Rebuild a missing or damaged catalog from the archive's files."`
	Setup      setupCmd      `cmd:"" help:"Prepare the source database: publication, slot, replica identity, capture triggers."`
	Version    versionCmd    `cmd:"" help:"Print the version of lbt and of Go it was built with."`
}

// kongExit carries kong's request to exit (after --help, for instance) out
// of the parser, so that run returns instead of the process exiting.
type kongExit int

// run parses args, runs the selected command and returns the exit status.
// Output goes to stdout and stderr only; an error is printed once, as one
// line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	var c cli
	c.stdout, c.stderr = stdout, stderr
	parser := newParser(ctx, &c, stdout, stderr)
	defer func() {
		if r := recover(); r != nil {
			exit, ok := r.(kongExit)
			if !ok {
				panic(r)
			}
			code = int(exit)
		}
	}()

	kctx, err := parser.Parse(args)
	if err != nil {
		help := "lbt --help"
		var perr *kong.ParseError
		if errors.As(err, &perr) && perr.Context != nil && perr.Context.Selected() != nil {
			help = perr.Context.Selected().FullPath() + " --help"
		}
		fmt.Fprintf(stderr, "lbt: %s (see %s)\n", oneLine(err.Error()), help)
		if perr != nil && perr.Context != nil && perr.Context.Selected() != nil && perr.Context.Selected().FullPath() == "lbt status" {
			return nagiosUnknown
		}
		return exitUsage
	}
	if err := kctx.Run(); err != nil {
		var status exitStatus
		if !errors.As(err, &status) {
			fmt.Fprintf(stderr, "lbt %s: %s\n", kctx.Command(), oneLine(err.Error()))
		}
		return exitCode(kctx.Command(), err)
	}
	return exitOK
}

// newParser builds the command line parser that fills c.
func newParser(ctx context.Context, c *cli, stdout, stderr io.Writer) *kong.Kong {
	parser, err := kong.New(c,
		kong.Name("lbt"),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(kongExit(code)) }),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.Bind(&c.Globals),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		// Duration flags read what config keys read: 15m, 1d12h.
		kong.TypeMapper(reflect.TypeOf(time.Duration(0)), kong.MapperFunc(decodeDuration)),
	)
	if err != nil {
		panic("lbt: building the command line: " + err.Error())
	}
	return parser
}

// decodeDuration reads a duration flag with config.ParseDuration.
func decodeDuration(ctx *kong.DecodeContext, target reflect.Value) error {
	var s string
	if err := ctx.Scan.PopValueInto("duration", &s); err != nil {
		return err
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("expected a duration like 15m, 2h or 1d12h, not %q", s)
	}
	target.SetInt(int64(d))
	return nil
}

// oneLine joins the lines of a multi-line message, such as pgconn's errors
// for several connection attempts, so that every error is one line of
// output. Repeated lines (one per attempt with and without TLS) are given
// once.
func oneLine(s string) string {
	var b strings.Builder
	seen := make(map[string]bool)
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || seen[line] {
			continue
		}
		seen[line] = true
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(line)
	}
	return b.String()
}
