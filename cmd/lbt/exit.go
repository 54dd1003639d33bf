package main

import "errors"

// Exit statuses. They are the only place error kinds become numbers, and
// exitStatusHelp documents them in `lbt --help`.
const (
	exitOK           = 0   // success
	exitFailure      = 1   // runtime failure
	exitUsage        = 2   // usage or configuration error
	exitVerifyFailed = 3   // a verification found the archive or a restore wrong
	exitInterrupted  = 130 // a second SIGINT or SIGTERM
)

const exitStatusHelp = `Exit status:

    0    success
    1    runtime failure (database unreachable, I/O error, ...)
    2    usage or configuration error (a bad flag, config key or value)
    3    verification failed (verify, restore --verify)
    130  interrupted: a second SIGINT or SIGTERM stops lbt at once
         (the first one shuts down cleanly)`

// usageError marks an error of the command line or of the configuration:
// something the operator has to change before trying again.
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

// exitCode maps an error returned by a command to the exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var usage usageError
	var verify verificationFailure
	switch {
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &verify) && verify.VerificationFailed():
		return exitVerifyFailed
	default:
		return exitFailure
	}
}
