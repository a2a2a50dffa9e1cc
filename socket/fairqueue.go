package socket

import (
	"context"
	"sync"
)

// fairQueue holds received messages per pipe and hands them out round-robin
// over the pipes that have any (RFC 30 fair-queueing). Each pipe holds at
// most RecvHWM messages; its reader blocks beyond that, so a fast peer is
// back-pressured through TCP instead of crowding out the others. Messages
// of a pipe that has gone stay deliverable: they were accepted.
type fairQueue struct {
	hwm    int
	hwmB   int64
	mu     sync.Mutex
	active []*pipe
	next   int
	notify chan struct{} // capacity 1: a message arrived
	closed chan struct{}
}

func newFairQueue(hwm int, hwmBytes int64, closed chan struct{}) *fairQueue {
	return &fairQueue{hwm: hwm, hwmB: hwmBytes, notify: make(chan struct{}, 1), closed: closed}
}

// fullLocked reports whether p's receive queue is at its high-water mark in
// messages or bytes (never when empty).
func (q *fairQueue) fullLocked(p *pipe) bool {
	n := len(p.inq) - p.inHead
	return n >= q.hwm || (n > 0 && p.inBytes >= q.hwmB)
}

// push appends msgs to p's queue, blocking while it is full. It gives up
// when the pipe or the socket closes; messages not yet queued then are
// counted as dropped.
func (q *fairQueue) push(p *pipe, msgs []Msg) {
	for len(msgs) > 0 {
		q.mu.Lock()
		// how many of msgs fit under both marks (at least one if empty)
		n, count, bytes := 0, len(p.inq)-p.inHead, p.inBytes
		for n < len(msgs) && count+n < q.hwm && (count+n == 0 || bytes < q.hwmB) {
			bytes += int64(msgs[n].size)
			n++
		}
		if n == 0 {
			q.mu.Unlock()
			select {
			case <-p.space:
				continue
			case <-q.closed:
			case <-p.done:
			}
			p.discard(uint64(len(msgs)))
			return
		}
		p.inBytes = bytes
		if p.inHead > 0 && len(p.inq)+n > cap(p.inq) {
			// compact instead of growing
			k := copy(p.inq, p.inq[p.inHead:])
			clear(p.inq[k:])
			p.inq = p.inq[:k]
			p.inHead = 0
		}
		p.inq = append(p.inq, msgs[:n]...)
		msgs = msgs[n:]
		if !p.inActive {
			p.inActive = true
			q.active = append(q.active, p)
		}
		q.mu.Unlock()
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
}

// tryPop takes the next message in round-robin order, if any.
func (q *fairQueue) tryPop() (Msg, *pipe, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.active) == 0 {
		return Msg{}, nil, false
	}
	if q.next >= len(q.active) {
		q.next = 0
	}
	p := q.active[q.next]
	wasFull := q.fullLocked(p)
	m := p.inq[p.inHead]
	p.inBytes -= int64(m.size)
	p.inq[p.inHead] = Msg{}
	p.inHead++
	if p.inHead == len(p.inq) {
		p.inq = p.inq[:0]
		p.inHead = 0
		p.inActive = false
		last := len(q.active) - 1
		copy(q.active[q.next:], q.active[q.next+1:])
		q.active[last] = nil
		q.active = q.active[:last]
	} else {
		q.next++
	}
	if wasFull && !q.fullLocked(p) {
		select {
		case p.space <- struct{}{}:
		default:
		}
	}
	if len(q.active) > 0 {
		// more left: make sure another waiting receiver wakes too
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	return m, p, true
}

// pop waits for the next message. abort, when not nil, ends the wait with
// errAbort (REQ uses it when its peer goes away).
func (q *fairQueue) pop(ctx context.Context, abort <-chan struct{}) (Msg, *pipe, error) {
	for {
		if m, p, ok := q.tryPop(); ok {
			return m, p, nil
		}
		select {
		case <-q.notify:
		case <-q.closed:
			if m, p, ok := q.tryPop(); ok {
				return m, p, nil
			}
			return Msg{}, nil, ErrClosed
		case <-abort:
			if m, p, ok := q.tryPop(); ok {
				return m, p, nil
			}
			return Msg{}, nil, errAbort
		case <-ctx.Done():
			return Msg{}, nil, ctxErr(ctx)
		}
	}
}
