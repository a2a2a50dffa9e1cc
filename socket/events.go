package socket

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
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
// blocking an I/O goroutine.
type events struct {
	ch      chan Event // user-visible, drops when full
	handler func(Event)
	mu      sync.Mutex
	queue   []Event // guarded by mu: pending for the handler goroutine
	kick    chan struct{}
	done    chan struct{}
	dropped atomic.Uint64
	wg      sync.WaitGroup
}

func newEvents(handler func(Event), buf int) *events {
	e := &events{ch: make(chan Event, buf), handler: handler, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if handler != nil {
		e.wg.Add(1)
		go e.run()
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
	if e.handler == nil {
		return
	}
	e.mu.Lock()
	// The handler gets every event: they come at the pace of connection
	// changes, and code like an acked pusher's redelivery depends on each
	// disconnect. Only a handler stuck for good lets the queue grow past
	// maxHandlerQueue, and then the oldest retry events go first.
	if len(e.queue) >= maxHandlerQueue {
		e.queue = dropRetries(e.queue)
		if len(e.queue) >= maxHandlerQueue {
			e.mu.Unlock()
			e.dropped.Add(1)
			return
		}
	}
	e.queue = append(e.queue, ev)
	e.mu.Unlock()
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// maxHandlerQueue bounds the events waiting for a stuck handler.
const maxHandlerQueue = 1 << 16

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

func (e *events) run() {
	defer e.wg.Done()
	for {
		select {
		case <-e.kick:
		case <-e.done:
			e.drain()
			return
		}
		e.drain()
	}
}

func (e *events) drain() {
	for {
		e.mu.Lock()
		q := e.queue
		e.queue = nil
		e.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, ev := range q {
			e.handler(ev)
		}
	}
}

func (e *events) close() {
	close(e.done)
	e.wg.Wait()
}
