package pattern

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these (or a
// context error, or a socket error for a bad endpoint) so callers can test
// them with errors.Is.
var (
	// ErrClosed is returned by operations on a closed pattern.
	ErrClosed = errors.New("pattern: closed")
	// ErrTimeout is returned by Requester.Request when every attempt timed
	// out, or a blocking call's context deadline passed. When a deadline
	// caused it, the error wraps context.DeadlineExceeded too.
	ErrTimeout = errors.New("pattern: timeout")
	// ErrRemote is wrapped by the *RemoteError a Requester returns when the
	// replier's handler failed or panicked.
	ErrRemote = errors.New("pattern: remote error")
	// ErrDead is the reason given to the WithOnDead callback: the message
	// was delivered the maximum number of times and never acknowledged.
	ErrDead = errors.New("pattern: message dead after max deliveries")
	// ErrBadMessage reports a message that does not decode: not an
	// envelope, a body that does not unmarshal into the expected type, or
	// frames of the wrong shape. Such messages are counted as dropped.
	ErrBadMessage = errors.New("pattern: bad message")
	// ErrFull is returned by Pusher.Push when its custody queue is full and
	// the context ends before room appears.
	ErrFull = errors.New("pattern: queue full")
	// ErrOutbox wraps a failure of an acked Pusher's outbox (WithOutbox):
	// it cannot be opened, or a write or fsync failed, after which every
	// Push fails with it.
	ErrOutbox = errors.New("pattern: outbox")
	// ErrOption is wrapped by the error of an invalid or inapplicable
	// option.
	ErrOption = errors.New("pattern: bad option")
	// ErrRefused is wrapped by the error of a peer refused at the
	// handshake because it cannot take part in the pattern: an acked
	// Pusher or Puller facing a fire-and-forget one, say (see Refusal),
	// or a server that refused this pattern (its reason: "client key ...
	// is not trusted", "mechanism mismatch: ..."). A call waiting for a
	// peer (Request, Push, Drain) returns it when that is why no peer
	// came.
	ErrRefused = errors.New("pattern: peer refused")
)

// RemoteError is the error a Requester returns when the replier's handler
// returned an error or panicked. Message is the handler's error text; the
// handler's error value itself does not cross the wire. It matches ErrRemote
// with errors.Is.
type RemoteError struct {
	Message string // the handler's error text, or the panic value
	Panic   bool   // the handler panicked (it was recovered)
}

func (e *RemoteError) Error() string {
	if e.Panic {
		return "pattern: remote handler panicked: " + e.Message
	}
	return "pattern: remote error: " + e.Message
}

// Unwrap returns ErrRemote.
func (e *RemoteError) Unwrap() error { return ErrRemote }

func badMessage(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadMessage}, args...)...)
}

// ctxError is ctx's error, wrapped in ErrTimeout for a deadline.
func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}
