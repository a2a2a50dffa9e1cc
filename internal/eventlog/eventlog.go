// Package eventlog is the one vocabulary of zpeer's log lines and their
// rate limit, shared by socket, pattern and discovery.
//
// Every line zpeer logs about a peer or a message is one of the events
// below: the event name is the slog message, and the fields have the same
// names wherever they appear (endpoint, remote, peer_type, reason, id,
// deliveries, sender, topic, service, instance). A Logger lets a burst of
// Burst lines through, then one per Every, and counts what it held back in
// the next line's "suppressed" field: a host opening connections in a loop
// must not turn the log into a flood. The library is silent by default (its
// loggers discard); docs/operations.md lists the events for operators.
package eventlog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// The events.
const (
	// socket
	Connect          = "connect"           // a peer's handshake completed: endpoint, remote, peer_type (debug)
	Disconnect       = "disconnect"        // a peer's connection ended: endpoint, remote, peer_type, reason (debug)
	HandshakeRefused = "handshake refused" // this socket refused a peer (access control): endpoint, remote, reason (warn)
	SessionRevoked   = "session revoked"   // a session closed because its key was removed from the trusted keys: endpoint, remote, reason (warn)
	RefusedByPeer    = "refused by peer"   // the peer refused this socket: endpoint, remote, reason (info)
	HandshakeFailed  = "handshake failed"  // a handshake did not complete (timeout, garbage, closed): endpoint, remote, reason (info)
	ProtocolError    = "protocol error"    // a peer was dropped for breaking the protocol: endpoint, remote, reason (warn)
	Shed             = "handshake shed"    // connections closed unread over the handshake limits: endpoint, remote, shed (warn)
	AcceptFailed     = "accept failed"     // the listener's accept failed: endpoint, reason (warn)
	// pattern
	Redelivery = "redelivery"  // an acked job delivered again: id, deliveries, reason (info)
	DeadLetter = "dead letter" // an acked job given up on: id, deliveries, reason (warn)
	Gap        = "gap"         // a subscriber missed messages: sender, topic, from, to, missed (warn)
	AckHeld    = "acks held"   // an acked Puller's WithBeforeAck function failed; its acks wait: reason (warn)
	// discovery
	PeerUp   = "peer up"   // a peer appeared: service, instance, node, endpoints (info)
	PeerDown = "peer down" // a peer went: service, instance, reason (info)
)

// The rate limit of a Logger.
const (
	Burst = 10
	Every = time.Second
)

// Logger logs events through a rate limit. The zero Logger and a nil one
// discard.
type Logger struct {
	l *slog.Logger

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed uint64
}

// New returns a Logger writing to l (nil: discard).
func New(l *slog.Logger) *Logger { return &Logger{l: l} }

// Enabled reports whether a line at level would be written (before the
// rate limit): callers skip building fields when it is false.
func (l *Logger) Enabled(level slog.Level) bool {
	return l != nil && l.l != nil && l.l.Enabled(context.Background(), level)
}

// Log logs event at level with args (key, value pairs), unless the rate
// limit holds it back.
func (l *Logger) Log(level slog.Level, event string, args ...any) {
	if !l.Enabled(level) {
		return
	}
	ok, suppressed := l.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	l.l.Log(context.Background(), level, event, args...)
}

// allow takes a token, and returns how many lines were held back since the
// last one allowed.
func (l *Logger) allow(now time.Time) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = Burst
	} else {
		l.tokens = min(Burst, l.tokens+float64(now.Sub(l.last))/float64(Every))
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
