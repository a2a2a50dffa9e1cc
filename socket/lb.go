package socket

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
)

// lb load-balances sends round-robin over the pipes that are ready (below
// their high-water mark), as PUSH, DEALER and REQ do (RFC 28, 30). A slow
// peer's queue fills and it is skipped until it drains, so it gets fewer
// messages rather than holding the others up.
type lb struct {
	s     *Socket
	mu    sync.Mutex
	pipes []*pipe // guarded by mu
	next  int     // guarded by mu
	// one is the only pipe when there is exactly one, else nil: written
	// holding mu, so that send finds it without taking mu.
	one atomic.Pointer[pipe]
}

// spinWait watches the ready channel wait for a while before an inproc
// sender blocks on a peer that is full (the one whose ring is r), and
// reports whether it closed. A receiver that takes messages at its own
// pace, on its own processor, reads a full ring down to half its mark in
// tens of microseconds; a sender that blocked and is woken by it then was
// queued to run next on the receiver's processor, where it waited for the
// receiver to block (another processor takes a goroutine from there only
// after some microseconds, if at all): the two ran by turns on one
// processor while the other was idle. So the sender watches for as long
// as the receiver makes progress, which it publishes every few messages.
// When it sees none, it yields its processor once (the receiver may be
// the goroutine queued next on it), and blocks when it sees none again (a
// busy machine where the receiver is not running; one processor): a
// watch that fails costs a few microseconds. It stops, reporting false,
// when stop (the send's context, the socket's closing) is closed.
func spinWait(wait <-chan struct{}, r *inprocRing, stop ...<-chan struct{}) bool {
	if spinProcs < 2 {
		return false
	}
	last := r.progress.Load()
	yielded := false
	for i := 1; ; i++ {
		if closed(wait) {
			return true
		}
		if i%spinLook != 0 {
			continue
		}
		for _, c := range stop {
			if closed(c) {
				return false
			}
		}
		if now := r.progress.Load(); now != last {
			last, yielded = now, false
			continue
		}
		if yielded {
			return false
		}
		runtime.Gosched()
		yielded = true
	}
}

// spinLook is how often (in looks at the ready channel, a few nanoseconds
// each) spinWait looks at the receiver's progress: 1-3 µs, a few times
// what a running receiver takes for ringProgress small messages.
const spinLook = 512

// slotSized reports whether m is stored in an inproc ring slot, or nearly: a
// receiver takes such messages at tens of millions a second, and a
// sender waiting for room for one watches rather than blocks (see
// spinWait).
func slotSized(m *Msg) bool {
	return len(m.Frames) == 1 && len(m.Frames[0]) <= slotBytes
}

// closed reports whether ch is closed (or has a value), without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// spinProcs is GOMAXPROCS when the package was initialised: with one
// processor, the goroutine a sender waits for cannot run meanwhile.
var spinProcs = runtime.GOMAXPROCS(0)

func (l *lb) attach(p *pipe) {
	l.mu.Lock()
	l.pipes = append(l.pipes, p)
	l.setOneLocked()
	l.mu.Unlock()
}

func (l *lb) setOneLocked() {
	if len(l.pipes) == 1 {
		l.one.Store(l.pipes[0])
	} else {
		l.one.Store(nil)
	}
}

func (l *lb) detach(p *pipe) {
	l.mu.Lock()
	for i, q := range l.pipes {
		if q == p {
			copy(l.pipes[i:], l.pipes[i+1:])
			l.pipes[len(l.pipes)-1] = nil
			l.pipes = l.pipes[:len(l.pipes)-1]
			break
		}
	}
	l.setOneLocked()
	l.mu.Unlock()
}

// send queues *m (which it does not keep) on the next ready pipe, waiting for one if needed. before,
// if not nil, runs just before the message is queued on the chosen pipe.
func (l *lb) send(ctx context.Context, m *Msg, before func(*pipe)) (*pipe, error) {
	// The first round looks without the ready channel: a sender that
	// finds a ready pipe (the usual case) takes no more locks than it must.
	var wait <-chan struct{}
	for {
		n := 0
		var full *inprocRing // the ring of an inproc peer found full
		for tried := 0; ; tried++ {
			p := l.one.Load()
			if p != nil && tried == 0 {
				n = 1 // one pipe (the usual PUSH): no turn to take
			} else {
				l.mu.Lock()
				n = len(l.pipes)
				if tried >= n {
					l.mu.Unlock()
					break
				}
				if l.next >= n {
					l.next = 0
				}
				p = l.pipes[l.next]
				l.next++
				l.mu.Unlock()
			}
			if before != nil {
				// before must run only for the pipe the message goes to
				// (a link's send checks as cheaply; without before,
				// enqueue's own check under wmu is the only one needed).
				if p.link == nil && !p.ready() {
					continue
				}
				before(p)
			}
			if err := p.enqueueRef(m, false); err == nil {
				return p, nil
			}
			if p.link != nil {
				full = p.link.r
			}
		}
		if l.s.opts.NoBlock {
			if n == 0 {
				return nil, ErrNoPeers
			}
			return nil, ErrWouldBlock
		}
		if wait == nil {
			// a pipe that turns ready from now on closes it: look again
			wait = l.s.readyWait()
			continue
		}
		if full != nil && slotSized(m) && spinWait(wait, full, ctx.Done(), l.s.closing) {
			wait = l.s.readyWait()
			continue
		}
		select {
		case <-wait:
		case <-l.s.closing:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctxErr(ctx)
		}
		wait = l.s.readyWait()
	}
}

// sendTo queues m on one given pipe, waiting while it is full. It fails with
// gone (ErrNoSuchPeer for a reply or ROUTER Send, ErrPeerLost for SendTo) once
// the pipe is gone.
func sendTo(ctx context.Context, s *Socket, p *pipe, m Msg, gone error) error {
	for {
		wait := s.readyWait()
		err := p.enqueue(m, false)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrClosed):
			return gone
		case s.opts.NoBlock:
			return ErrWouldBlock
		}
		select {
		case <-wait:
		case <-p.done:
			return gone
		case <-s.closing:
			return ErrClosed
		case <-ctx.Done():
			return ctxErr(ctx)
		}
	}
}

// sendTo is SendTo for the types that send a message as it is.
func (l *lb) sendTo(ctx context.Context, p *pipe, m Msg) error {
	return sendTo(ctx, l.s, p, m, ErrPeerLost)
}

func errState(s *Socket, op string) error {
	return &stateError{op: op, typ: s.typ}
}

type stateError struct {
	op  string
	typ Type
}

func (e *stateError) Error() string {
	return "socket: " + e.op + " is not allowed on a " + e.typ.String() + " socket"
}
func (e *stateError) Unwrap() error { return ErrState }
