package socket

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// A pipe the application lets go of (Disconnect, which discovery calls when
// a peer says goodbye) does not throw away what its peer had already sent:
// a reply sent just before the goodbye may still be in the connection's
// receive buffer, or half parsed by the reader, when Disconnect runs.
// Leaving is therefore three steps:
//
//  1. Sending stops at once: the pipe takes no more messages, and sends
//     choose other peers (as after a write error).
//  2. The reader is woken (a read deadline in the past interrupts a read in
//     progress) and reads out exactly what has arrived by then: the bytes
//     the kernel holds for the connection (FIONREAD), and those already in
//     its buffer. None of these reads can block, so no timer is involved.
//     What it parses goes to the fair queue like any message, while the
//     receive queue has room: a reader that would wait for the application
//     to make room (back-pressure) discards the rest instead, so memory
//     stays within the receive marks and Disconnect never waits for Recv.
//     A message cut off by the end of what arrived is dropped.
//  3. The reader then ends the pipe: the socket type and the Detach hook
//     learn that it is gone only after its messages are in the fair queue,
//     where they stay readable (fairqueue.go: orphans).
//
// On a system where the kernel cannot say how much is waiting (not Linux),
// or on a connection that is not a kernel socket, step 2 reads only what the
// reader has buffered.

// connReader is what a pipe's buffered reader reads from: the connection,
// until the pipe leaves; then only the bytes that had arrived.
type connReader struct {
	c       net.Conn
	leaving atomic.Pointer[error] // the reason, once the pipe leaves

	// the reader goroutine's only
	draining bool
	budget   int // bytes the kernel held when draining began, not yet read
}

// errLeft is what the reader sees after the last byte that had arrived.
var errLeft = errors.New("socket: pipe left")

func (r *connReader) Read(b []byte) (int, error) {
	if !r.draining {
		n, err := r.c.Read(b)
		if n > 0 || err == nil || r.leaving.Load() == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		// leave interrupted the read: from now on, read what had arrived.
		r.c.SetReadDeadline(time.Time{})
		r.budget = unread(r.c)
		r.draining = true
	}
	if r.budget <= 0 {
		return 0, *r.leaving.Load()
	}
	if len(b) > r.budget {
		b = b[:r.budget]
	}
	n, err := r.c.Read(b)
	r.budget -= n
	return n, err
}

// leave ends a network pipe after its reader has read out what its peer had
// already sent (see the top of this file), and returns once the pipe is
// detached. An inproc pipe ends at once: what its peer handed over is in
// its mailbox, and the fair queue keeps it.
func (p *pipe) leave(err error) {
	p.startLeaving(err)
	<-p.ended
}

// startLeaving is leave without the wait. The first reason given is the
// one reported.
func (p *pipe) startLeaving(err error) {
	if p.src == nil {
		p.terminate(err)
		return
	}
	if !p.src.leaving.CompareAndSwap(nil, &err) {
		return
	}
	p.wmu.Lock()
	p.wclosed = true // no more sends: they go to other peers
	p.wakeFlushedLocked()
	p.wmu.Unlock()
	p.s.signalReady()
	close(p.leaveCh) // a reader waiting for room gives up
	p.conn.SetReadDeadline(time.Unix(1, 0))
}
