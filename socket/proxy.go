package socket

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Proxy forwards messages between a frontend and a backend socket, as
// libzmq's zmq_proxy_steerable does: what the frontend receives is sent on
// the backend and, where both types allow it, what the backend receives is
// sent on the frontend. The classic devices are
//
//   - a pub/sub forwarder: frontend XSUB (facing the publishers), backend
//     XPUB (facing the subscribers). Subscriptions travel up from the XPUB
//     to the XSUB, data down. Give the XPUB WithXPubVerbose so that every
//     subscribe reaches the publishers (a last-value cache upstream answers
//     each one), and the XSUB passes a cancel on only when no subscriber
//     holds the prefix any more.
//   - a request queue: frontend ROUTER (requesters), backend DEALER
//     (repliers). A ROUTER WithNoBlock drops, and counts, a reply to a
//     requester whose queue is full instead of holding up the others.
//   - a pipeline streamer: frontend PULL, backend PUSH.
//
// Subscriptions survive restarts of either side: a subscriber that
// reconnects re-sends its subscriptions (SUB and XSUB do), and the XSUB
// sends the union of its subscribers' prefixes to every publisher that
// attaches, so a restarted proxy, or a restarted publisher, gets every
// subscription back with no action from the subscribers.
//
// A Proxy is steered from Go (Pause, Resume, Terminate, Stats) or through a
// control socket (WithControl) with libzmq's commands. It never owns the
// sockets: closing them is the caller's job, after Run returns.
type Proxy struct {
	front, back      *Socket
	capture, control *Socket

	mu      sync.Mutex
	paused  bool          // guarded by mu
	resumed chan struct{} // guarded by mu: closed on Resume
	stop    chan struct{}
	once    sync.Once

	fIn, fOut, bIn, bOut        atomic.Uint64 // messages
	fInB, fOutB, bInB, bOutB    atomic.Uint64 // bytes
	subs, unsubs, dropped       atomic.Uint64
	captureDropped, badCommands atomic.Uint64
}

// ProxyOption configures a Proxy.
type ProxyOption func(*Proxy) error

// WithCapture sends a copy of every message the proxy forwards, either
// way, to s (libzmq's capture socket). A capture peer that stops reading
// never holds up the proxy: copies that find no room are dropped and
// counted in ProxyStats.CaptureDropped.
func WithCapture(s *Socket) ProxyOption {
	return func(p *Proxy) error {
		if s == nil || !canSendType(s.typ) {
			return fmt.Errorf("%w: capture socket must be able to send", ErrState)
		}
		p.capture = s
		return nil
	}
}

// WithControl steers the proxy from messages received on s, libzmq's
// commands as the first (for a ROUTER, the last) frame: PAUSE, RESUME,
// TERMINATE and STATISTICS. STATISTICS is answered on sockets that can
// reply (REP, PAIR, DEALER, ROUTER) with eight 8-byte frames, as libzmq
// sends them: frontend messages in, bytes in, messages out, bytes out, then
// the same for the backend (little-endian). A REP control socket gets a
// reply to every command ("OK", or "ERROR" for an unknown one), since REP
// must answer. Unknown commands are counted in ProxyStats.BadCommands and
// otherwise ignored.
func WithControl(s *Socket) ProxyOption {
	return func(p *Proxy) error {
		if s == nil || !canRecvType(s.typ) {
			return fmt.Errorf("%w: control socket must be able to receive", ErrState)
		}
		p.control = s
		return nil
	}
}

func canSendType(t Type) bool { return t != PULL && t != SUB }
func canRecvType(t Type) bool { return t != PUSH && t != PUB }

// NewProxy makes a proxy from frontend to backend. At least one direction
// must be possible: the frontend receives and the backend sends.
func NewProxy(frontend, backend *Socket, opts ...ProxyOption) (*Proxy, error) {
	if frontend == nil || backend == nil || frontend == backend {
		return nil, fmt.Errorf("%w: a proxy needs two sockets", ErrState)
	}
	if !canRecvType(frontend.typ) || !canSendType(backend.typ) {
		return nil, fmt.Errorf("%w: a proxy cannot forward from a %s to a %s socket", ErrState, frontend.typ, backend.typ)
	}
	p := &Proxy{front: frontend, back: backend, resumed: make(chan struct{}), stop: make(chan struct{})}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Run forwards until ctx ends, Terminate is called (from Go or the control
// socket: Run then returns nil) or a socket closes (ErrClosed).
func (p *Proxy) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	errc := make(chan error, 3)
	n := 1
	go func() { errc <- p.pump(ctx, p.front, p.back, &p.fIn, &p.fInB, &p.bOut, &p.bOutB, false) }()
	if canRecvType(p.back.typ) && canSendType(p.front.typ) {
		n++
		go func() { errc <- p.pump(ctx, p.back, p.front, &p.bIn, &p.bInB, &p.fOut, &p.fOutB, true) }()
	}
	if p.control != nil {
		n++
		go func() { errc <- p.steer(ctx) }()
	}
	var first error
	for range n {
		err := <-errc
		cancel()
		if first == nil && err != nil && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	select {
	case <-p.stop:
		return nil
	default:
	}
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// pump forwards from one socket to the other. up is the backend-to-frontend
// direction, where a pub/sub forwarder's subscriptions travel.
func (p *Proxy) pump(ctx context.Context, from, to *Socket, in, inB, out, outB *atomic.Uint64, up bool) error {
	for {
		if err := p.waitRunning(ctx); err != nil {
			return err
		}
		m, err := from.Recv(ctx)
		if err != nil {
			return err
		}
		// Paused while waiting in Recv: hold the message until Resume.
		if err := p.waitRunning(ctx); err != nil {
			m.Free()
			return err
		}
		size := uint64(m.Size())
		in.Add(1)
		inB.Add(size)
		if up {
			if _, on, ok := subscription(m); ok {
				if on {
					p.subs.Add(1)
				} else {
					p.unsubs.Add(1)
				}
			}
		}
		if p.capture != nil {
			if err := p.capture.Send(doneCtx, m); err != nil {
				p.captureDropped.Add(1)
			}
		}
		switch err := to.Send(ctx, m); {
		case err == nil:
			out.Add(1)
			outB.Add(size)
		case errors.Is(err, ErrClosed), ctx.Err() != nil:
			return err
		default:
			p.dropped.Add(1)
		}
		if small(m) {
			m.Free()
		}
	}
}

// doneCtx is a context that is already done: a Send with it takes what
// fits now and never waits.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// small reports whether every frame of m was copied by Send, so that its
// memory can be reused at once.
func small(m Msg) bool {
	for _, f := range m.Frames {
		if len(f) >= CopyThreshold {
			return false
		}
	}
	return true
}

func (p *Proxy) waitRunning(ctx context.Context) error {
	for {
		p.mu.Lock()
		paused, resumed := p.paused, p.resumed
		p.mu.Unlock()
		if !paused {
			return nil
		}
		select {
		case <-resumed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Pause stops forwarding (what arrives meanwhile waits in the sockets'
// queues, up to their high-water marks) until Resume.
func (p *Proxy) Pause() {
	p.mu.Lock()
	if !p.paused {
		p.paused = true
		p.resumed = make(chan struct{})
	}
	p.mu.Unlock()
}

// Resume undoes Pause.
func (p *Proxy) Resume() {
	p.mu.Lock()
	if p.paused {
		p.paused = false
		close(p.resumed)
	}
	p.mu.Unlock()
}

// Terminate makes Run return nil. It is idempotent.
func (p *Proxy) Terminate() { p.once.Do(func() { close(p.stop) }) }

// ProxyStats are a proxy's counters.
type ProxyStats struct {
	// Frontend and Backend count what each socket received and what was
	// sent on it.
	Frontend, Backend ProxySideStats
	Paused            bool
	// Subscriptions and Unsubscriptions count the subscription messages
	// that went from the backend to the frontend (a pub/sub forwarder).
	Subscriptions, Unsubscriptions uint64
	// Dropped counts messages the destination refused (a ROUTER's
	// unknown or full peer, WithNoBlock with no room).
	Dropped uint64
	// CaptureDropped counts copies the capture socket had no room for.
	CaptureDropped uint64
	// BadCommands counts control messages that are no command.
	BadCommands uint64
}

// ProxySideStats are one side's message and byte counts.
type ProxySideStats struct {
	MsgsIn, BytesIn, MsgsOut, BytesOut uint64
}

// Stats returns a snapshot of the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	return ProxyStats{
		Frontend:        ProxySideStats{p.fIn.Load(), p.fInB.Load(), p.fOut.Load(), p.fOutB.Load()},
		Backend:         ProxySideStats{p.bIn.Load(), p.bInB.Load(), p.bOut.Load(), p.bOutB.Load()},
		Paused:          paused,
		Subscriptions:   p.subs.Load(),
		Unsubscriptions: p.unsubs.Load(),
		Dropped:         p.dropped.Load(),
		CaptureDropped:  p.captureDropped.Load(),
		BadCommands:     p.badCommands.Load(),
	}
}

// steer reads commands from the control socket.
func (p *Proxy) steer(ctx context.Context) error {
	c := p.control
	replies := c.typ == REP || c.typ == PAIR || c.typ == DEALER || c.typ == ROUTER
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			return err
		}
		var env [][]byte // ROUTER: the routing id
		cmd := m.Frames[0]
		if c.typ == ROUTER {
			env, cmd = [][]byte{m.Frames[0]}, m.Frames[len(m.Frames)-1]
		}
		var reply [][]byte
		switch string(cmd) {
		case "PAUSE":
			p.Pause()
		case "RESUME":
			p.Resume()
		case "TERMINATE":
			p.Terminate()
		case "STATISTICS":
			st := p.Stats()
			for _, v := range []uint64{st.Frontend.MsgsIn, st.Frontend.BytesIn, st.Frontend.MsgsOut, st.Frontend.BytesOut,
				st.Backend.MsgsIn, st.Backend.BytesIn, st.Backend.MsgsOut, st.Backend.BytesOut} {
				reply = append(reply, binary.LittleEndian.AppendUint64(nil, v))
			}
		default:
			p.badCommands.Add(1)
			if c.typ == REP {
				reply = [][]byte{[]byte("ERROR")}
			}
		}
		if reply == nil && c.typ == REP {
			reply = [][]byte{[]byte("OK")}
		}
		m.Free()
		if replies && reply != nil {
			// A controller that does not read its replies loses them; it
			// never holds the proxy up.
			c.Send(doneCtx, Msg{Frames: append(env, reply...)})
		}
	}
}
