package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure: unreachable peer, no reply, bind failed
	exitUsage   = 2 // bad usage: unknown flag or command, bad endpoint, unknown codec
)

// usageError is a command line the user has to fix; it exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// interrupted is the cause of the command context when a signal stops zpeer.
type interrupted struct{ sig syscall.Signal }

func (e interrupted) Error() string {
	switch e.sig {
	case syscall.SIGINT:
		return "interrupted (SIGINT)"
	case syscall.SIGTERM:
		return "stopped (SIGTERM)"
	}
	return "stopped by " + e.sig.String()
}

// reported wraps an error that has already been told to the user: it
// sets the exit code but prints nothing more.
type reported struct{ err error }

func (e reported) Error() string { return e.err.Error() }
func (e reported) Unwrap() error { return e.err }

// code follows the shell convention: 128 + the signal number.
func (e interrupted) code() int { return 128 + int(e.sig) }

// errInterrupted reports whether ctx ended because of a signal.
func errInterrupted(ctx context.Context) (interrupted, bool) {
	var in interrupted
	ok := errors.As(context.Cause(ctx), &in)
	return in, ok
}

// exitCode maps an error returned by a command to the process exit code.
func exitCode(err error) int {
	var in interrupted
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &in):
		return in.code()
	case isUsage(err):
		return exitUsage
	}
	return exitFailure
}

// isUsage reports whether err is the user's to fix on the command line.
func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u) ||
		errors.Is(err, socket.ErrEndpoint) ||
		errors.Is(err, codec.ErrUnknownCodec)
}

// errorLine renders err as the one line zpeer prints on standard error,
// without the package prefixes of the library's wrapped errors.
func errorLine(err error) string {
	msg := err.Error()
	for _, p := range []string{"socket: ", "codec: ", "pattern: ", "discovery: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	msg = strings.ReplaceAll(msg, "\n", " ")
	return "zpeer: " + msg
}
