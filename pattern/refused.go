package pattern

import (
	"context"
	"errors"
	"fmt"
	"github.com/zpeer/zpeer/internal/eventlog"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/zpeer/zpeer/socket"
)

// Refusal is a peer connection a pattern refused at the handshake because
// the peer cannot take part in it: most often an acked Pusher or Puller
// (WithAck) facing a fire-and-forget one, whose socket types (ROUTER and
// DEALER against PUSH and PULL) do not match, or a peer of another pattern
// altogether. It is counted in Stats.Refused, logged at warning level (once
// per endpoint), handed to the WithOnRefused callback, and the reason of
// the error of a call that waits for a peer (Push, Drain) when no peer of
// the right kind is connected.
type Refusal struct {
	Endpoint string // the endpoint bound or connected to
	Remote   string // the peer's address
	Err      error  // wraps ErrRefused, says why
}

// WithOnRefused registers a function a Pusher or Puller calls for every
// peer it refuses (see Refusal). It runs on a goroutine of its own, in
// order, never on an I/O goroutine.
func WithOnRefused(fn func(Refusal)) Option {
	return func(o *options) error {
		o.used |= oOnRefused
		o.onRefused = fn
		return nil
	}
}

// refusals tracks the peers a pattern refused, for Stats, the log, the
// WithOnRefused callback and the calls that wait for a peer.
type refusals struct {
	o     *options
	name  string // "Requester", ...: the pattern, for a refusal by the peer
	what  string // "an acked Pusher", ...
	want  string // what it needs on the other side
	count atomic.Uint64
	notes *notifier // nil without WithOnRefused

	mu     sync.Mutex
	logged map[string]bool // guarded by mu: endpoints already warned about
	// ctx is cancelled, with the refusal as its cause, when a peer is
	// refused while no peer is connected; a connection replaces it.
	ctx    atomic.Pointer[context.Context]
	cancel context.CancelCauseFunc
}

func newRefusals(o *options, name, what, want string) *refusals {
	r := &refusals{o: o, name: name, what: what, want: want, logged: make(map[string]bool)}
	if o.onRefused != nil {
		r.notes = newNotifier()
	}
	r.reset()
	return r
}

// reset starts a fresh wait context. r.mu is held, or r is new.
func (r *refusals) reset() {
	ctx, cancel := context.WithCancelCause(context.Background())
	if r.cancel != nil {
		r.cancel(nil)
	}
	r.ctx.Store(&ctx)
	r.cancel = cancel
}

// waiting is a context that a call waiting for a peer adds to its own: it
// ends, with a Refusal's error as its cause, when a peer was refused and
// none is connected.
func (r *refusals) waiting() context.Context { return *r.ctx.Load() }

// eventOption is the socket option that feeds r the events of a pattern's
// socket; peers counts its connected peers.
func (r *refusals) eventOption(peers func() int) socket.Option {
	return socket.WithEventHandler(func(ev socket.Event) { r.event(ev, peers) })
}

// event takes the socket events of the pattern's socket; peers is its
// number of connected peers.
func (r *refusals) event(ev socket.Event, peers func() int) {
	switch ev.Kind {
	case socket.EventConnected:
		r.mu.Lock()
		if r.waiting().Err() != nil {
			r.reset()
		}
		r.mu.Unlock()
	case socket.EventRejected:
		var byPeer *socket.RefusedError
		switch {
		case ev.Err == nil:
		case errors.As(ev.Err, &byPeer):
			// The peer would not have us: its reason, as it gave it.
			r.record(ev.Endpoint, ev.Remote, fmt.Errorf("%w: the peer at %s refused %s: %s", ErrRefused, ev.Endpoint, r.self(), byPeer.Reason), peers)
		case errors.Is(ev.Err, socket.ErrKey):
			// A CURVE client with no (trusted) key for the server there.
			r.record(ev.Endpoint, ev.Remote, fmt.Errorf("%w: not connecting to %s: %s", ErrRefused, ev.Endpoint, strings.TrimPrefix(ev.Err.Error(), socket.ErrKey.Error()+": ")), peers)
		case strings.Contains(ev.Err.Error(), "not compatible with"):
			peer := ""
			if _, after, ok := strings.Cut(ev.Err.Error(), "peer="); ok {
				peer, _, _ = strings.Cut(after, " ")
				peer = strings.Trim(peer, `"`)
			}
			r.refuse(ev.Endpoint, ev.Remote, peer, peers)
		}
	case socket.EventDisconnected:
		// A NULL server's Authenticator refuses after the handshake.
		var byPeer *socket.RefusedError
		if errors.As(ev.Err, &byPeer) {
			r.record(ev.Endpoint, ev.Remote, fmt.Errorf("%w: the peer at %s refused %s: %s", ErrRefused, ev.Endpoint, r.self(), byPeer.Reason), peers)
		}
	}
}

// self names the pattern's side for a refusal by a peer ("this Requester").
func (r *refusals) self() string {
	if r.name != "" {
		return "this " + r.name
	}
	return "this pattern"
}

// refuse records one refused peer, of socket type peer ("" if unknown).
func (r *refusals) refuse(endpoint, remote, peer string, peers func() int) {
	kind := "a peer of another kind"
	if peer != "" {
		kind = "a " + peer + " peer"
	}
	r.record(endpoint, remote, fmt.Errorf("%w: %s refused %s at %s (it needs %s)", ErrRefused, r.what, kind, endpoint, r.want), peers)
}

// record counts, logs and reports one refusal, err (wrapping ErrRefused),
// and ends the calls waiting for a peer when none is connected.
func (r *refusals) record(endpoint, remote string, err error, peers func() int) {
	r.count.Add(1)
	r.mu.Lock()
	first := !r.logged[endpoint]
	r.logged[endpoint] = true
	if peers() == 0 {
		r.cancel(err)
	}
	r.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	r.o.elog.Log(level, eventlog.HandshakeRefused, "endpoint", endpoint, "remote", remote, "reason", err.Error())
	if r.notes != nil {
		fn, ref := r.o.onRefused, Refusal{Endpoint: endpoint, Remote: remote, Err: err}
		r.notes.post(func() { fn(ref) })
	}
}

// explain adds to err, the error of a call that waited for a peer, the
// refusal that explains why none came, if there is one.
func (r *refusals) explain(err error) error {
	if err == nil || errors.Is(err, ErrRefused) {
		return err
	}
	if cause := context.Cause(r.waiting()); errors.Is(cause, ErrRefused) {
		if errors.Is(err, context.Canceled) {
			return cause // the refusal ended the wait
		}
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// bind returns ctx, also ended by a refusal while no peer is connected,
// for a call that waits for a peer; stop releases it.
func (r *refusals) bind(ctx context.Context) (context.Context, func()) {
	w := r.waiting()
	if ctx.Done() == nil {
		return w, func() {} // no allocation for the common case
	}
	merged, cancel := context.WithCancelCause(ctx)
	unhook := context.AfterFunc(w, func() { cancel(context.Cause(w)) })
	return merged, func() { unhook(); cancel(nil) }
}

// close stops the callback goroutine.
func (r *refusals) close() {
	r.mu.Lock()
	r.cancel(nil)
	r.mu.Unlock()
	if r.notes != nil {
		r.notes.close()
	}
}
