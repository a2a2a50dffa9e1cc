package socket

import (
	"context"
	"sync"
	"sync/atomic"
)

// fairQueue holds received messages per pipe, in each pipe's inbox, and
// hands them out round-robin over the pipes that have any (RFC 30
// fair-queueing). Each pipe holds at most RecvHWM messages; its reader
// blocks beyond that, so a fast peer is back-pressured through TCP instead
// of crowding out the others.
//
// Messages of a pipe that has gone stay deliverable: they were accepted.
// They are orphans, and they count against the socket's receive bounds:
// while orphans fill a whole receive mark (messages or bytes), every reader
// waits as if its own queue were full. So a receiver that stops reading
// holds at most about one mark per live peer plus two marks of orphans,
// however often its peers reconnect.
type fairQueue struct {
	hwm    int
	hwmB   int64
	notify chan struct{} // capacity 1: a message arrived
	closed chan struct{}

	// guarded by mu
	mu          sync.Mutex
	active      []*pipe       // the pipes with messages, in turn order
	next        int           // the next turn in active
	orphans     int           // messages queued from pipes that are gone
	orphanBytes int64         // ... and their body bytes
	orphanRoom  chan struct{} // closed (and replaced) when orphans drop below the mark
	orphanWait  []*Socket     // inproc senders waiting for orphan room, signalled when there is
	c           carver        // the memory of messages taken from inproc ring slots
	frames      [][]byte      // scratch for their frames

	// orphanFull mirrors orphansFullLocked for inproc senders, which check
	// it without the lock: written holding mu. It has a cache line of its
	// own: the senders read it per message, the receivers write the lines
	// around it.
	_          [64]byte
	orphanFull atomic.Bool
	_          [64]byte
	// waiters counts the Recv callers blocked in pop: tryPop passes the
	// wake-up on only when one waits.
	waiters atomic.Int32
}

// inbox is one pipe's received messages waiting for Recv. It lives in the
// pipe and is guarded by the fair queue's mu.
type inbox struct {
	q      []Msg // q[head:] are waiting
	head   int
	bytes  int64 // body bytes waiting
	active bool  // listed in the fair queue's active pipes
	gone   bool  // the pipe is gone: what it has queued counts as orphans
	// space (capacity 1) wakes the pipe's reader, blocked on a full
	// inbox, when it has room again. The channel itself needs no lock.
	space chan struct{}
}

func (in *inbox) len() int { return len(in.q) - in.head }

// put appends msgs, compacting rather than growing when it can.
func (in *inbox) put(msgs []Msg) {
	if in.head > 0 && len(in.q)+len(msgs) > cap(in.q) {
		k := copy(in.q, in.q[in.head:])
		clear(in.q[k:])
		in.q = in.q[:k]
		in.head = 0
	}
	in.q = append(in.q, msgs...)
}

// takeInto moves the first message to *m; in must not be empty. It
// reports whether in is empty now.
func (in *inbox) takeInto(m *Msg) bool {
	slot := &in.q[in.head]
	*m = *slot
	*slot = Msg{}
	in.bytes -= int64(m.size)
	in.head++
	if in.head < len(in.q) {
		return false
	}
	in.q = in.q[:0]
	in.head = 0
	return true
}

func newFairQueue(hwm int, hwmBytes int64, closed chan struct{}) *fairQueue {
	return &fairQueue{hwm: hwm, hwmB: hwmBytes, notify: make(chan struct{}, 1), closed: closed, orphanRoom: make(chan struct{})}
}

// orphansFullLocked reports whether the orphans fill a receive mark.
// activateLocked lists p among the pipes with something to take. The
// caller holds q.mu and has checked that p is not listed.
func (q *fairQueue) activateLocked(p *pipe) {
	p.in.active = true
	q.active = append(q.active, p)
}

// unlistLocked removes p, the pipe at q.next, from the pipes with
// something to take. The caller holds q.mu.
func (q *fairQueue) unlistLocked(p *pipe) {
	p.in.active = false
	last := len(q.active) - 1
	copy(q.active[q.next:], q.active[q.next+1:])
	q.active[last] = nil
	q.active = q.active[:last]
}

// wake wakes one waiting receiver, or the next to wait (one wake-up stays
// pending at most).
func (q *fairQueue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *fairQueue) orphansFullLocked() bool {
	return q.orphans >= q.hwm || (q.orphans > 0 && q.orphanBytes >= q.hwmB)
}

// orphan turns what p still has queued into orphans; the socket calls it
// once, when p is gone.
func (q *fairQueue) orphan(p *pipe) {
	var ringB int64
	if r := p.ring; r != nil && r.from != nil {
		ringB = r.from.stop() // its sender hands nothing more over
	}
	q.mu.Lock()
	if r := p.ring; r != nil {
		// what the ring holds counts as queued (it was handed over)
		n := r.pub.Load() - r.taken
		q.orphans += int(n)
		q.orphanBytes += ringB - r.takenB
		if n > 0 && !p.in.active {
			// its sender had not listed it yet (it finds it listed)
			r.listed.Store(true)
			q.activateLocked(p)
			q.wake()
		}
	}
	p.in.gone = true
	q.orphans += p.in.len()
	q.orphanBytes += p.in.bytes
	q.orphanFull.Store(q.orphansFullLocked())
	q.mu.Unlock()
}

// fullLocked reports whether p's inbox is at its high-water mark in
// messages or bytes (never when empty).
func (q *fairQueue) fullLocked(p *pipe) bool {
	n := p.in.len()
	return n >= q.hwm || (n > 0 && p.in.bytes >= q.hwmB)
}

// push appends msgs to p's inbox, blocking while it is full. It gives up
// when the pipe or the socket closes; messages not yet queued then are
// counted as dropped.
func (q *fairQueue) push(p *pipe, msgs []Msg) {
	for len(msgs) > 0 {
		q.mu.Lock()
		// how many of msgs fit under both marks (at least one if empty)
		n, count, bytes := 0, p.in.len(), p.in.bytes
		for n < len(msgs) && count+n < q.hwm && (count+n == 0 || bytes < q.hwmB) {
			bytes += int64(msgs[n].size)
			n++
		}
		if q.orphansFullLocked() && !p.in.gone {
			n = 0
		}
		if n == 0 {
			room := q.orphanRoom
			q.mu.Unlock()
			// The reader stops reading until the application makes room:
			// the peer is back-pressured through TCP. What the peer sends
			// meanwhile (PONGs included) waits unread in the kernel, so the
			// heartbeat must not judge the peer on it.
			p.paused.Store(true)
			select {
			case <-p.in.space:
				p.resume()
				continue
			case <-room:
				p.resume()
				continue
			case <-q.closed:
			case <-p.done:
			case <-p.leaveCh:
				// Leaving (leave.go): no waiting for the application.
			}
			p.resume()
			p.discard(uint64(len(msgs)))
			return
		}
		if p.in.gone {
			q.orphans += n
			q.orphanBytes += bytes - p.in.bytes
			q.orphanFull.Store(q.orphansFullLocked())
		}
		p.in.bytes = bytes
		p.in.put(msgs[:n])
		msgs = msgs[n:]
		if !p.in.active {
			q.activateLocked(p)
		}
		q.mu.Unlock()
		q.wake()
	}
}

// tryPop takes the next message in round-robin order, if any.
func (q *fairQueue) tryPop() (Msg, *pipe, bool) {
	var m Msg
	p, ok := q.tryPopInto(&m)
	return m, p, ok
}

// tryPopInto is tryPop into *out: a message is 8 words, and handing it
// down the call chain in memory rather than copying it out of each frame's
// results is measurably cheaper at millions of messages a second.
func (q *fairQueue) tryPopInto(out *Msg) (*pipe, bool) {
	q.mu.Lock()
	var p *pipe
	var r *inprocRing
	for {
		if len(q.active) == 0 {
			q.mu.Unlock()
			return nil, false
		}
		if q.next >= len(q.active) {
			q.next = 0
		}
		p = q.active[q.next]
		r = p.ring
		// An inproc pipe is listed by its sender after it published, but
		// the list can come late, after the receiver took that message and
		// found the ring empty: then nothing is published for it to take.
		if r == nil || !r.emptyLocked() {
			break
		}
		q.unlistLocked(p)
	}
	wasFull := r == nil && q.fullLocked(p)
	var empty bool
	if r != nil {
		q.ringTakeLocked(r, out)
	} else {
		empty = p.in.takeInto(out)
	}
	m := out
	if p.in.gone {
		wasFull := q.orphansFullLocked()
		q.orphans--
		q.orphanBytes -= int64(m.size)
		if wasFull && !q.orphansFullLocked() {
			q.orphanFull.Store(false)
			close(q.orphanRoom)
			q.orphanRoom = make(chan struct{})
			for i, s := range q.orphanWait {
				s.signalReady() // inproc senders
				q.orphanWait[i] = nil
			}
			q.orphanWait = q.orphanWait[:0]
		}
	}
	if r != nil {
		// inproc: the sender's room is what it sent less what was taken
		r.tookLocked(p, m.size, q)
		empty = r.emptyLocked()
	}
	if empty {
		q.unlistLocked(p)
	} else {
		q.next++
	}
	if wasFull && !q.fullLocked(p) {
		select {
		case p.in.space <- struct{}{}:
		default:
		}
	}
	if len(q.active) > 0 && q.waiters.Load() > 0 {
		q.wake() // more left: make sure another waiting receiver wakes too
	}
	q.mu.Unlock()
	return p, true
}

// ringTakeLocked takes the next message of the inproc ring r, which has
// one, into *out. A message stored in its slot is copied into the
// receiving socket's own memory (q.c): its Free touches nothing of the
// sender's. The caller holds q.mu.
func (q *fairQueue) ringTakeLocked(r *inprocRing, out *Msg) {
	if r.pos == ringSlots {
		r.next()
	}
	ch, i := r.head, r.pos
	r.pos++
	h := ch.hdr[i]
	if h == 0 {
		slot := &ch.msg[i]
		*out = *slot
		*slot = Msg{}
		return
	}
	c, d := &q.c, ch.data[i][:]
	nf, size := int(h>>24), int(h&(1<<24-1))
	if nf == 1 {
		c.copyOne(out, d[:size])
		return
	}
	fs := q.frames[:0]
	off := nf
	for k := range nf {
		n := int(d[k])
		f := c.frame(n, false)
		off += copy(f, d[off:off+n])
		fs = append(fs, f)
	}
	c.finishInto(out, fs, size)
	clear(fs)
	q.frames = fs[:0]
}

// list makes p, whose ring the sender found idle, active in the fair
// queue and wakes a receiver.
func (q *fairQueue) list(p *pipe) {
	q.mu.Lock()
	if p.in.active {
		q.mu.Unlock()
		return
	}
	q.activateLocked(p)
	q.mu.Unlock()
	q.wake()
}

// pop waits for the next message. abort, when not nil, ends the wait with
// errAbort (REQ uses it when its peer goes away).
func (q *fairQueue) pop(ctx context.Context, abort <-chan struct{}) (Msg, *pipe, error) {
	var m Msg
	p, err := q.popInto(ctx, abort, &m)
	return m, p, err
}

// popInto is pop into *m (see tryPopInto).
func (q *fairQueue) popInto(ctx context.Context, abort <-chan struct{}, m *Msg) (*pipe, error) {
	for {
		if p, ok := q.tryPopInto(m); ok {
			return p, nil
		}
		// Counted as waiting before looking again: a tryPop that leaves
		// messages behind either sees this waiter or is seen by the look.
		q.waiters.Add(1)
		if p, ok := q.tryPopInto(m); ok {
			q.waiters.Add(-1)
			return p, nil
		}
		var why int
		select {
		case <-q.notify:
		case <-q.closed:
			why = 1
		case <-abort:
			why = 2
		case <-ctx.Done():
			why = 3
		}
		q.waiters.Add(-1)
		switch why {
		case 1:
			if p, ok := q.tryPopInto(m); ok {
				return p, nil
			}
			return nil, ErrClosed
		case 2:
			if p, ok := q.tryPopInto(m); ok {
				return p, nil
			}
			return nil, errAbort
		case 3:
			return nil, ctxErr(ctx)
		}
	}
}
