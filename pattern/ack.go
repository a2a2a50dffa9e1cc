package pattern

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"sync"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// creditHeader carries a Puller's credit in its hello: an ack envelope with
// a zero id and no ids in its body.
const creditHeader = "zpeer-credit"

// dispatchBatch bounds how many messages the dispatcher assigns per lock
// hold, so acks are not held up behind a long backlog.
const dispatchBatch = 256

// item is one message in an acked Pusher's custody.
type item struct {
	id         codec.ID
	frame      []byte // the encoded envelope; never modified
	value      any    // for WithOnDead
	prio       uint8
	pushed     time.Time
	deliveries int
	inflight   bool        // delivered, waiting for its ack (else queued)
	peer       *pullerPeer // inflight: where
	avoid      *pullerPeer // redelivered: prefer another puller
	lastErr    string
	deadline   time.Time
	q, f       links // queue and in-flight list links
}

type links struct{ prev, next *item }

// ilist is an intrusive doubly linked list of items through one of their
// links: O(1) push, pop and removal from the middle.
type ilist struct {
	head, tail *item
	sel        func(*item) *links
}

func (l *ilist) pushBack(it *item) {
	ln := l.sel(it)
	ln.prev, ln.next = l.tail, nil
	if l.tail != nil {
		l.sel(l.tail).next = it
	} else {
		l.head = it
	}
	l.tail = it
}

func (l *ilist) pushFront(it *item) {
	ln := l.sel(it)
	ln.prev, ln.next = nil, l.head
	if l.head != nil {
		l.sel(l.head).prev = it
	} else {
		l.tail = it
	}
	l.head = it
}

func (l *ilist) remove(it *item) {
	ln := l.sel(it)
	if ln.prev != nil {
		l.sel(ln.prev).next = ln.next
	} else {
		l.head = ln.next
	}
	if ln.next != nil {
		l.sel(ln.next).prev = ln.prev
	} else {
		l.tail = ln.prev
	}
	ln.prev, ln.next = nil, nil
}

func qlinks(it *item) *links { return &it.q }
func flinks(it *item) *links { return &it.f }

// pullerPeer is one connected acked Puller, by its ROUTER routing id.
type pullerPeer struct {
	rid     []byte
	window  int
	credit  int                   // how many more it accepts
	out     map[codec.ID]struct{} // delivered to it, not yet acked or nacked by it
	sent    uint64
	blocked bool // its socket queue was full; wait for an ack
	gone    bool
}

// ackPusher is the acknowledged mode of a Pusher.
type ackPusher[T any] struct {
	p     *Pusher[T]
	o     *options
	notes *notifier
	lat   histogram
	kick  chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	custody  map[codec.ID]*item
	levels   [256]ilist // queued, by priority
	nonEmpty [4]uint64  // bitmap of non-empty levels
	queued   int
	flight   ilist // in flight, by deadline (= send order)
	peers    map[string]*pullerPeer
	ring     []*pullerPeer // round-robin order
	next     int
	remotes  map[string]string
	spaceCh  chan struct{} // closed when custody shrinks, if someone waits
	emptyCh  chan struct{} // closed when custody empties, if someone waits
}

func newAckPusher[T any](p *Pusher[T]) *ackPusher[T] {
	a := &ackPusher[T]{p: p, o: &p.o, notes: newNotifier(), kick: make(chan struct{}, 1),
		custody: make(map[codec.ID]*item), peers: make(map[string]*pullerPeer), remotes: make(map[string]string)}
	for i := range a.levels {
		a.levels[i].sel = qlinks
	}
	a.flight.sel = flinks
	return a
}

func (a *ackPusher[T]) start() {
	a.wg.Add(2)
	go a.dispatch()
	go a.recvLoop()
}

func (a *ackPusher[T]) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *ackPusher[T]) push(ctx context.Context, now time.Time, env *codec.Envelope, v T) error {
	env.Seq = a.p.seq.Add(1)
	frame, err := encodeEnvelope(env)
	if err != nil {
		return err
	}
	it := &item{id: env.ID, frame: frame, prio: env.Priority, pushed: now}
	if a.o.onDead != nil {
		it.value = v
	}
	a.mu.Lock()
	for len(a.custody) >= a.o.maxPending {
		if a.spaceCh == nil {
			a.spaceCh = make(chan struct{})
		}
		ch := a.spaceCh
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrFull, ctxError(ctx))
		case <-a.p.ctx.Done():
			return ErrClosed
		}
		a.mu.Lock()
	}
	if a.p.ctx.Err() != nil {
		a.mu.Unlock()
		return ErrClosed
	}
	a.custody[it.id] = it
	if a.queued == 0 {
		// Nothing waits ahead of it: send it from here, saving the
		// hand-off to the dispatcher.
		if p := a.pick(nil); p != nil {
			d := a.assign(it, p, now)
			first := a.flight.head == it
			a.mu.Unlock()
			if first {
				a.wake() // the dispatcher arms its ack timer
			}
			if dead := a.send(d, nil); len(dead) > 0 {
				a.reportDead(dead)
			}
			return nil
		}
	}
	a.enqueue(it, false)
	a.mu.Unlock()
	a.wake()
	return nil
}

// assign delivers it to p. a.mu is held.
func (a *ackPusher[T]) assign(it *item, p *pullerPeer, now time.Time) delivery {
	p.credit--
	p.sent++
	p.out[it.id] = struct{}{}
	it.inflight, it.peer = true, p
	it.deliveries++
	it.deadline = now.Add(a.o.ackTimeout)
	a.flight.pushBack(it)
	return delivery{it, p, p.rid, it.frame, it.prio}
}

// send hands an assigned delivery to the socket.
func (a *ackPusher[T]) send(d delivery, dead []DeadLetter) []DeadLetter {
	err := a.p.sock.Send(a.p.ctx, socket.Msg{Frames: [][]byte{d.rid, empty, d.frame}, Priority: d.prio})
	if err != nil {
		return a.undo(d, err, dead)
	}
	if d.it.deliveries > 1 {
		a.p.c.retried.Add(1)
	} else {
		a.p.c.sent.Add(1)
	}
	return dead
}

// enqueue queues it at its priority, at the front for a redelivery.
func (a *ackPusher[T]) enqueue(it *item, front bool) {
	it.inflight = false
	if front {
		a.levels[it.prio].pushFront(it)
	} else {
		a.levels[it.prio].pushBack(it)
	}
	a.nonEmpty[it.prio>>6] |= 1 << (it.prio & 63)
	a.queued++
}

func (a *ackPusher[T]) dequeue(it *item) {
	l := &a.levels[it.prio]
	l.remove(it)
	if l.head == nil {
		a.nonEmpty[it.prio>>6] &^= 1 << (it.prio & 63)
	}
	a.queued--
}

// highest returns the first queued item of the highest priority.
func (a *ackPusher[T]) highest() *item {
	for w := 3; w >= 0; w-- {
		if b := a.nonEmpty[w]; b != 0 {
			return a.levels[w<<6+bits.Len64(b)-1].head
		}
	}
	return nil
}

// pick chooses a puller with free credit, round robin, preferring one other
// than avoid.
func (a *ackPusher[T]) pick(avoid *pullerPeer) *pullerPeer {
	n := len(a.ring)
	for i := range n {
		p := a.ring[(a.next+i)%n]
		if p.credit > 0 && !p.blocked && p != avoid {
			a.next = (a.next + i + 1) % n
			return p
		}
	}
	if avoid != nil && !avoid.gone && avoid.credit > 0 && !avoid.blocked {
		return avoid
	}
	return nil
}

// requeue puts an item that was not acknowledged back in the queue, or
// declares it dead when it has had its deliveries. a.mu is held.
func (a *ackPusher[T]) requeue(it *item, dead []DeadLetter) []DeadLetter {
	if it.deliveries >= a.o.maxDeliveries {
		delete(a.custody, it.id)
		a.p.c.dead.Add(1)
		a.shrunk()
		return append(dead, DeadLetter{ID: it.id, Value: it.value, Priority: it.prio, Deliveries: it.deliveries,
			Err: fmt.Errorf("%w (%d): last: %s", ErrDead, it.deliveries, it.lastErr)})
	}
	a.enqueue(it, true)
	return dead
}

// shrunk wakes Push calls waiting for room and Drain calls waiting for an
// empty custody. a.mu is held.
func (a *ackPusher[T]) shrunk() {
	if a.spaceCh != nil {
		close(a.spaceCh)
		a.spaceCh = nil
	}
	if len(a.custody) == 0 && a.emptyCh != nil {
		close(a.emptyCh)
		a.emptyCh = nil
	}
}

// recall takes an in-flight item back from its puller. a.mu is held.
func (a *ackPusher[T]) recall(it *item, why string, dead []DeadLetter) []DeadLetter {
	a.flight.remove(it)
	it.avoid, it.peer, it.lastErr = it.peer, nil, why
	return a.requeue(it, dead)
}

type delivery struct {
	it    *item
	peer  *pullerPeer
	rid   []byte
	frame []byte
	prio  uint8
}

// dispatch assigns queued messages to pullers with credit, sends them, and
// redelivers those whose ack is overdue.
func (a *ackPusher[T]) dispatch() {
	defer a.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var sends []delivery
	var dead []DeadLetter
	for {
		select {
		case <-a.kick:
		case <-timer.C:
		case <-a.p.ctx.Done():
			return
		}
		now := now()
		a.mu.Lock()
		for it := a.flight.head; it != nil && !it.deadline.After(now); it = a.flight.head {
			dead = a.recall(it, "no ack within "+a.o.ackTimeout.String(), dead)
		}
		for len(sends) < dispatchBatch {
			it := a.highest()
			if it == nil {
				break
			}
			p := a.pick(it.avoid)
			if p == nil {
				break
			}
			a.dequeue(it)
			sends = append(sends, a.assign(it, p, now))
		}
		more := len(sends) == dispatchBatch
		if h := a.flight.head; h != nil {
			timer.Reset(h.deadline.Sub(now))
		}
		a.mu.Unlock()

		for i, d := range sends {
			dead = a.send(d, dead)
			sends[i] = delivery{}
		}
		sends = sends[:0]
		dead = a.reportDead(dead)
		if more {
			a.wake()
		}
	}
}

// undo takes back a delivery the socket refused.
func (a *ackPusher[T]) undo(d delivery, err error, dead []DeadLetter) []DeadLetter {
	a.mu.Lock()
	defer a.mu.Unlock()
	if errors.Is(err, socket.ErrNoPeer) {
		if !d.peer.gone {
			dead = a.dropPeer(d.peer, dead)
		}
		return dead
	}
	if _, ok := d.peer.out[d.it.id]; ok {
		delete(d.peer.out, d.it.id)
		d.peer.credit++
	}
	if errors.Is(err, socket.ErrTooLarge) {
		// No puller will ever take it.
		if d.it.inflight && d.it.peer == d.peer {
			d.it.deliveries = a.o.maxDeliveries
			dead = a.recall(d.it, err.Error(), dead)
		}
		return dead
	}
	// Full queue (or closing): give the credit back and wait for an ack.
	d.peer.blocked = true
	if d.it.inflight && d.it.peer == d.peer {
		a.flight.remove(d.it)
		d.it.peer = nil
		d.it.deliveries--
		a.enqueue(d.it, true)
	}
	return dead
}

// dropPeer forgets a puller and redelivers what it held. a.mu is held.
func (a *ackPusher[T]) dropPeer(p *pullerPeer, dead []DeadLetter) []DeadLetter {
	p.gone = true
	delete(a.peers, string(p.rid))
	for i, q := range a.ring {
		if q == p {
			a.ring = append(a.ring[:i], a.ring[i+1:]...)
			break
		}
	}
	for id := range p.out {
		if it := a.custody[id]; it != nil && it.inflight && it.peer == p {
			dead = a.recall(it, "puller connection lost", dead)
		}
	}
	clear(p.out)
	a.wake()
	return dead
}

func (a *ackPusher[T]) reportDead(dead []DeadLetter) []DeadLetter {
	for _, d := range dead {
		a.o.logger.Warn("pattern: message dead", "id", d.ID, "deliveries", d.Deliveries, "err", d.Err)
		if fn := a.o.onDead; fn != nil {
			a.notes.post(func() { fn(d) })
		}
	}
	clear(dead)
	return dead[:0]
}

// event runs on the socket's event goroutine.
func (a *ackPusher[T]) event(ev socket.Event) {
	var dead []DeadLetter
	a.mu.Lock()
	switch ev.Kind {
	case socket.EventConnected:
		a.remotes[string(ev.PeerID)] = ev.Remote
	case socket.EventDisconnected:
		delete(a.remotes, string(ev.PeerID))
		if p := a.peers[string(ev.PeerID)]; p != nil {
			dead = a.dropPeer(p, nil)
		}
	}
	a.mu.Unlock()
	a.reportDead(dead)
}

func (a *ackPusher[T]) recvLoop() {
	defer a.wg.Done()
	var dead []DeadLetter
	for {
		m, err := a.p.sock.Recv(a.p.ctx)
		if err != nil {
			return
		}
		n := len(m.Frames)
		var env codec.Envelope
		if n < 2 || codec.Decode(m.Frames[n-1], &env) != nil {
			a.p.c.dropped.Add(1)
			continue
		}
		rid := m.Frames[0]
		switch env.Kind {
		case codec.KindAck:
			ids, ok := binView(env.Body)
			if !ok || len(ids)%len(codec.ID{}) != 0 {
				a.p.c.dropped.Add(1)
				continue
			}
			a.mu.Lock()
			p := a.peers[string(rid)]
			if c := env.Headers[creditHeader]; c != "" {
				if w, err := strconv.Atoi(c); err == nil && w > 0 {
					if p == nil {
						p = &pullerPeer{rid: bytes.Clone(rid), out: make(map[codec.ID]struct{})}
						a.peers[string(rid)] = p
						a.ring = append(a.ring, p)
					}
					p.window = w
					p.credit = w - len(p.out)
				}
			}
			now := now()
			for len(ids) > 0 {
				a.settle(codec.ID(ids[:16]), p, now)
				ids = ids[16:]
			}
			a.mu.Unlock()
			a.wake()
		case codec.KindNack:
			var why string
			if unmarshalBody(env.Body, &why) != nil {
				why = "nack"
			}
			a.mu.Lock()
			p := a.peers[string(rid)]
			if p != nil {
				if _, ok := p.out[env.ID]; ok {
					delete(p.out, env.ID)
					p.credit++
					p.blocked = false
				}
			}
			if it := a.custody[env.ID]; it != nil && it.inflight && it.peer == p && p != nil {
				dead = a.recall(it, "puller: "+why, dead)
			}
			a.mu.Unlock()
			dead = a.reportDead(dead)
			a.wake()
		default:
			a.p.c.dropped.Add(1)
		}
	}
}

// settle handles the ack of id from p. a.mu is held.
func (a *ackPusher[T]) settle(id codec.ID, p *pullerPeer, now time.Time) {
	if p != nil {
		if _, ok := p.out[id]; ok {
			delete(p.out, id)
			p.credit++
			p.blocked = false
		}
	}
	it := a.custody[id]
	if it == nil {
		a.p.c.late.Add(1)
		return
	}
	if it.inflight {
		a.flight.remove(it)
	} else {
		a.dequeue(it)
	}
	delete(a.custody, id)
	a.p.c.acked.Add(1)
	a.lat.record(now.Sub(it.pushed))
	a.shrunk()
}

func (a *ackPusher[T]) drain(ctx context.Context) error {
	a.mu.Lock()
	for len(a.custody) > 0 {
		if a.emptyCh == nil {
			a.emptyCh = make(chan struct{})
		}
		ch := a.emptyCh
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctxError(ctx)
		case <-a.p.ctx.Done():
			return ErrClosed
		}
		a.mu.Lock()
	}
	a.mu.Unlock()
	return nil
}

func (a *ackPusher[T]) stats(s *Stats) {
	s.Latency = a.lat.snapshot()
	a.mu.Lock()
	defer a.mu.Unlock()
	s.Pending = len(a.custody)
	for _, p := range a.ring {
		s.Peers = append(s.Peers, PeerStats{Remote: a.remotes[string(p.rid)], Sent: p.sent,
			Reliability: 1, Credit: p.credit, InFlight: len(p.out)})
	}
}

// binView returns the payload of a msgpack bin value spanning all of data,
// without copying; msgpack nil and no body at all are an empty payload.
func binView(data []byte) ([]byte, bool) {
	if len(data) == 0 {
		return nil, true // a hello carries no body at all
	}
	var n, h int
	switch data[0] {
	case 0xc0:
		return nil, len(data) == 1
	case 0xc4:
		if len(data) < 2 {
			return nil, false
		}
		n, h = int(data[1]), 2
	case 0xc5:
		if len(data) < 3 {
			return nil, false
		}
		n, h = int(binary.BigEndian.Uint16(data[1:])), 3
	case 0xc6:
		if len(data) < 5 {
			return nil, false
		}
		n, h = int(binary.BigEndian.Uint32(data[1:])), 5
	default:
		return nil, false
	}
	if len(data)-h != n {
		return nil, false
	}
	return data[h:], true
}
