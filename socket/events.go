package socket

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/internal/asyncq"
)

// EventKind says what happened to a peer connection.
type EventKind uint8

// Event kinds.
const (
	EventConnected    EventKind = iota + 1 // handshake done, pipe up
	EventDisconnected                      // pipe gone (Err says why)
	EventRejected                          // connection refused before or during the handshake, or dropped for a protocol violation
	EventListening                         // Bind succeeded (Endpoint is the real address)
	EventRetry                             // a dial failed; it will be retried (Err says why)
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventRejected:
		return "rejected"
	case EventListening:
		return "listening"
	case EventRetry:
		return "retry"
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// Event reports a change in a socket's connections.
type Event struct {
	Kind     EventKind
	Endpoint string // the endpoint bound or connected
	Remote   string // the peer's network address, when known
	PeerType string // the peer's socket type, after the handshake
	PeerID   []byte // ROUTER: the routing id the peer is addressed by
	Err      error  // the reason, for disconnected, rejected and retry
	Time     time.Time
}

func (e Event) String() string {
	s := fmt.Sprintf("%s %s", e.Kind, e.Endpoint)
	if e.Remote != "" {
		s += " remote=" + e.Remote
	}
	if e.PeerType != "" {
		s += " peer=" + e.PeerType
	}
	if e.Err != nil {
		s += " err=" + e.Err.Error()
	}
	return s
}

// events fans events out to the Events channel and the handler without ever
// blocking an I/O goroutine: the handler runs on an asyncq.Queue's
// goroutine.
type events struct {
	ch      chan Event           // user-visible, drops when full
	q       *asyncq.Queue[Event] // nil without a handler
	dropped atomic.Uint64
}

// maxHandlerQueue bounds the events waiting for a stuck handler.
const maxHandlerQueue = 1 << 16

func newEvents(handler func(Event), buf int) *events {
	e := &events{ch: make(chan Event, buf)}
	if handler != nil {
		// The handler gets every event: they come at the pace of
		// connection changes, and code like an acked pusher's redelivery
		// depends on each disconnect. Only a handler stuck for good lets
		// the queue reach maxHandlerQueue, and then the retry events go
		// first.
		e.q = asyncq.New(handler, maxHandlerQueue, dropRetries)
	}
	return e
}

func (e *events) emit(ev Event) {
	ev.Time = time.Now()
	select {
	case e.ch <- ev:
	default:
		e.dropped.Add(1)
	}
	if e.q != nil && !e.q.Post(ev) {
		e.dropped.Add(1)
	}
}

// dropRetries removes EventRetry events (the only kind that repeats without
// a connection changing) from q.
func dropRetries(q []Event) []Event {
	out := q[:0]
	for _, ev := range q {
		if ev.Kind != EventRetry {
			out = append(out, ev)
		}
	}
	clear(q[len(out):])
	return out
}

// close runs the events queued for the handler and waits for it.
func (e *events) close() {
	if e.q != nil {
		e.q.Close()
	}
}
