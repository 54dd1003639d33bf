package main

import (
	"errors"
	"fmt"

	"lbt/basebackup"
	"lbt/catalog"
	"lbt/inspect"
	"lbt/restore"
	"lbt/setup"
)

// Exit statuses. They are the only place error kinds become numbers, and
// exitStatusHelp documents them in `lbt --help`.
const (
	exitOK            = 0   // success
	exitFailure       = 1   // runtime failure
	exitUsage         = 2   // usage or configuration error
	exitVerifyFailed  = 3   // a verification found the archive or a restore wrong
	exitConflictsLeft = 4   // lbt undo: done, with conflicting rows left alone
	exitNothingDone   = 5   // lbt undo --apply: conflicts, nothing applied
	exitNotRestorable = 6   // the archive cannot restore to that moment
	exitNotArchive    = 10  // archiveDir holds no lbt archive (restic's 10)
	exitLocked        = 11  // another lbt holds the archive's lock (restic's 11)
	exitInterrupted   = 130 // a second SIGINT or SIGTERM
)

const exitStatusHelp = `Exit status:

    0    success
    1    runtime failure (database unreachable, I/O error, ...)
    2    usage or configuration error (a bad flag, config key or value)
    3    verification failed (verify, restore --verify)
    4    lbt undo: done, but rows that changed again were left alone
    5    lbt undo --apply: rows changed again, nothing applied
    6    not restorable: the archive cannot restore the table to that
         moment (in a gap or span, before its first basebackup, beyond
         the archive); another moment may do
    10   not an archive: archiveDir holds no lbt archive
    11   archive locked: another lbt backup (or purge) holds it; try
         again when it is done
    lbt status exits as a Nagios plugin: 0 OK, 1 WARNING, 2 CRITICAL,
         3 UNKNOWN (also for its usage errors); see lbt status --help
    130  interrupted: a second SIGINT or SIGTERM stops lbt at once
         (the first one shuts down cleanly)`

// usageError marks an error of the command line or of the configuration:
// something the operator has to change before trying again. Packages'
// errors of bad input (inspect's InputError, which repair's is, an unknown or
// unpublished table, a role that is not superuser) are mapped in exitCode.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// verificationFailure is implemented by errors reporting that a verification
// ran and found a difference, as opposed to failing to run. Packages declare
// their own error type with this method, so that they need not import
// anything from the command line:
//
//	func (e *MismatchError) VerificationFailed() bool { return true }
type verificationFailure interface {
	VerificationFailed() bool
}

// exitStatus is returned by a command that printed its result and wants a
// particular exit status for it, as lbt status does with Nagios's: main
// prints nothing more.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// nagiosUnknown is the status of lbt status for anything that kept it from
// judging, its own usage errors included, as Nagios plugins do.
const nagiosUnknown = 3

// exitCode maps an error returned by command (its kong path, such as
// "status") to the exit status. Packages declare the kinds (sentinel errors,
// error types); this is the one place that gives them numbers. The chain of
// err must be intact: redact with config.RedactError, wrap with %w.
func exitCode(command string, err error) int {
	if err == nil {
		return exitOK
	}
	var status exitStatus
	if errors.As(err, &status) {
		return int(status)
	}
	if command == "status" {
		return nagiosUnknown
	}
	var usage usageError
	var verify verificationFailure
	var input *inspect.InputError // repair's too
	switch {
	case errors.As(err, &usage), errors.As(err, &input),
		errors.Is(err, basebackup.ErrNoTable), errors.Is(err, basebackup.ErrNotPublished), errors.Is(err, setup.ErrNotSuperuser):
		return exitUsage
	case errors.As(err, &verify) && verify.VerificationFailed():
		return exitVerifyFailed
	case errors.Is(err, restore.ErrNotRestorable):
		return exitNotRestorable
	case errors.Is(err, catalog.ErrNotArchive):
		return exitNotArchive
	case errors.Is(err, catalog.ErrLocked):
		return exitLocked
	default:
		return exitFailure
	}
}
