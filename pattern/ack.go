package pattern

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/outbox"
	"github.com/zpeer/zpeer/socket"
)

// creditHeader carries a Puller's credit in its hello: an ack envelope with
// a zero id and no ids in its body.
const creditHeader = "zpeer-credit"

// dispatchBatch bounds how many messages the dispatcher assigns per lock
// hold, so acks are not held up behind a long backlog.
const dispatchBatch = 256

// item is one message in an acked Pusher's custody.
//
// Credit bookkeeping: a puller holds a message from its delivery until it
// acks or nacks it, or disconnects, and each held message uses one of its
// credits. The current holder is item.peer (and the item is on that peer's
// held list); a puller that still holds an earlier delivery, after an ack
// timeout sent the message elsewhere, is in item.stale; once the message is
// settled, pullers that still hold it are remembered in the pusher's tombs
// until they answer, so that their credit comes back.
type item struct {
	id         codec.ID
	seq        uint64
	frames     [3][]byte      // routing id, delimiter, envelope; the envelope is never modified
	buf        *socket.Buffer // the envelope's memory, if reused: released when forgotten
	size       int            // bytes counted in ackPusher.bytes (WithMaxPendingBytes)
	value      any            // for WithOnDead
	prio       uint8
	pushed     int64 // mono time
	deadline   int64 // mono time of the ack timeout, while in flight
	deliveries int
	inflight   bool          // delivered, waiting for its ack (else queued)
	peer       *pullerPeer   // in flight: the current holder
	stale      []*pullerPeer // earlier holders that have not answered
	avoid      *pullerPeer   // redelivered: prefer another puller
	lastErr    string
	rcpt       *Receipt // PushAsync's, settled with the job
	q, f, h    links    // queue, in-flight and held list links
}

// newItem is a message taken into custody, pushed now or taken back from
// the outbox (openOutbox): frame is its envelope.
func newItem(id codec.ID, seq uint64, prio uint8, frame []byte) *item {
	it := &item{id: id, seq: seq, prio: prio, pushed: mono()}
	it.frames[1], it.frames[2] = empty, frame
	return it
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
func hlinks(it *item) *links { return &it.h }

// monoBase anchors mono.
var monoBase = time.Now()

// mono is a monotonic clock reading in nanoseconds.
func mono() int64 { return int64(time.Since(monoBase)) }

// pullerPeer is one connected acked Puller, by its ROUTER routing id.
type pullerPeer struct {
	rid    []byte
	window int
	credit int   // how many more it accepts
	held   ilist // items whose current delivery it holds
	nheld  int   // len(held) plus stale and settled deliveries it holds
	sent   uint64
	gone   bool
	// blockedUntil: its socket queue was full; try it again then, or
	// after its next ack.
	blockedUntil int64
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
	custody  *custody
	tombs    map[codec.ID][]*pullerPeer // settled, still held by these
	levels   [256]ilist                 // queued, by priority
	nonEmpty [4]uint64                  // bitmap of non-empty levels
	queued   int
	flight   ilist // in flight, by deadline (= send order)
	peers    map[string]*pullerPeer
	ring     []*pullerPeer // round-robin order
	next     int
	remotes  map[string]string
	spaceCh  chan struct{} // closed when custody shrinks, if someone waits
	bytes    int           // frame bytes of the items push put in custody (item.size)
	emptyCh  chan struct{} // closed when custody empties, if someone waits

	store     *outbox.Log // WithOutbox
	recovered int         // jobs taken back from the outbox at start
}

func newAckPusher[T any](p *Pusher[T]) *ackPusher[T] {
	a := &ackPusher[T]{p: p, o: &p.o, notes: newNotifier(), kick: make(chan struct{}, 1),
		custody: newCustody(p.o.maxPending), tombs: make(map[codec.ID][]*pullerPeer),
		peers: make(map[string]*pullerPeer), remotes: make(map[string]string)}
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

// push takes custody of a message: frame is its envelope, with the given
// id (from custody.id), sequence number and priority. buf, if not nil, is
// the frame's memory, whose reference custody takes over: every delivery
// holds one more while the socket may reference the frame, and custody
// releases its own when it forgets the message, so redelivery sends the
// same bytes without a copy.
func (a *ackPusher[T]) push(ctx context.Context, frame []byte, buf *socket.Buffer, id codec.ID, seq uint64, prio uint8, v T, rc *Receipt) error {
	it := newItem(id, seq, prio, frame)
	it.buf = buf
	it.size = len(frame)
	it.rcpt = rc
	if a.o.onDead != nil {
		it.value = v
	}
	a.mu.Lock()
	for a.custody.len() >= a.o.maxPending || (a.bytes > 0 && a.bytes+it.size > a.o.maxPendingBytes) {
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
	a.custody.put(it)
	a.bytes += it.size
	if a.queued == 0 {
		// Nothing waits ahead of it: send it from here, saving the
		// hand-off to the dispatcher.
		if p := a.pick(nil, it.pushed); p != nil {
			a.assign(it, p, it.pushed)
			d := deliveryPool.Get().(*delivery)
			*d = deliveryOf(it, p)
			first := a.flight.head == it
			a.mu.Unlock()
			if first {
				a.wake() // the dispatcher arms its ack timer
			}
			dead := a.send(d, nil)
			*d = delivery{}
			deliveryPool.Put(d)
			if len(dead) > 0 {
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
func (a *ackPusher[T]) pick(avoid *pullerPeer, now int64) *pullerPeer {
	n := len(a.ring)
	for i := range n {
		p := a.ring[(a.next+i)%n]
		if p.credit > 0 && p != avoid && now >= p.blockedUntil {
			a.next = (a.next + i + 1) % n
			return p
		}
	}
	if avoid != nil && !avoid.gone && avoid.credit > 0 && now >= avoid.blockedUntil {
		return avoid
	}
	return nil
}

// assign delivers it to p. a.mu is held.
func (a *ackPusher[T]) assign(it *item, p *pullerPeer, now int64) {
	p.credit--
	p.sent++
	p.nheld++
	p.held.pushBack(it)
	it.frames[0] = p.rid
	it.inflight, it.peer = true, p
	it.deliveries++
	it.deadline = now + int64(a.o.ackTimeout)
	a.flight.pushBack(it)
}

// send hands an assigned delivery to the socket.
// d is the caller's: the socket is handed d.frames without a copy.
func (a *ackPusher[T]) send(d *delivery, dead []DeadLetter) []DeadLetter {
	err := a.p.sock.Send(a.p.ctx, socket.Msg{Frames: d.frames[:], Priority: d.prio, Buf: d.buf})
	if d.buf != nil {
		d.buf.Release() // the socket holds its own until written
		d.buf = nil
	}
	if err != nil {
		return a.undo(d.it, d.peer, err, dead)
	}
	if d.retry {
		a.p.c.retried.Add(1)
	} else {
		a.p.c.sent.Add(1)
	}
	return dead
}

// sendAll sends the deliveries assigned under a.mu (released since) and
// reports the messages that died meanwhile; it returns both slices emptied
// for reuse.
func (a *ackPusher[T]) sendAll(sends []delivery, dead []DeadLetter) ([]delivery, []DeadLetter) {
	for i := range sends {
		dead = a.send(&sends[i], dead)
		sends[i] = delivery{}
	}
	return sends[:0], a.reportDead(dead)
}

// release notes that p no longer holds a delivery: its credit comes back.
// a.mu is held.
func (p *pullerPeer) release() {
	p.credit++
	p.nheld--
	p.blockedUntil = 0
}

// takeBack withdraws an in-flight item from its current holder, which no
// longer holds it (it nacked, or is gone, or never got it). a.mu is held.
func (a *ackPusher[T]) takeBack(it *item) {
	a.flight.remove(it)
	if p := it.peer; p != nil {
		p.held.remove(it)
		p.release()
	}
	it.peer, it.inflight = nil, false
}

// requeue puts an item that was not acknowledged back in the queue, or
// declares it dead when it has had its deliveries. a.mu is held.
func (a *ackPusher[T]) requeue(it *item, why string, dead []DeadLetter) []DeadLetter {
	it.lastErr = why
	if it.deliveries >= a.o.maxDeliveries {
		err := fmt.Errorf("%w (%d): last: %s", ErrDead, it.deliveries, it.lastErr)
		a.p.c.dead.Add(1) // before the receipt settles: a producer woken by it sees the count
		a.forget(it, err)
		return append(dead, DeadLetter{ID: it.id, Value: it.value, Priority: it.prio, Deliveries: it.deliveries, Err: err})
	}
	a.enqueue(it, true)
	return dead
}

// forget removes an acked (err nil) or dead item from custody,
// remembering who still holds a delivery of it. a.mu is held.
func (a *ackPusher[T]) forget(it *item, err error) {
	a.custody.del(it)
	a.bytes -= it.size
	if it.buf != nil {
		it.buf.Release() // deliveries still being sent hold their own
		it.buf = nil
	}
	a.settled(it, err)
	if stale := slices.DeleteFunc(it.stale, func(p *pullerPeer) bool { return p.gone }); len(stale) > 0 {
		a.tombs[it.id] = stale
	}
	if a.spaceCh != nil {
		close(a.spaceCh)
		a.spaceCh = nil
	}
	if a.custody.len() == 0 && a.emptyCh != nil {
		close(a.emptyCh)
		a.emptyCh = nil
	}
}

// answered handles p's ack (ok) or nack of id: p's credit comes back if it
// held the message, and the message is settled or redelivered. a.mu is
// held.
func (a *ackPusher[T]) answered(id codec.ID, p *pullerPeer, ok bool, why string, now int64, dead []DeadLetter) []DeadLetter {
	it := a.custody.get(id)
	if it == nil {
		if holders, found := a.tombs[id]; found {
			if i := slices.Index(holders, p); i >= 0 && p != nil {
				p.release()
				holders = slices.Delete(holders, i, i+1)
			}
			if len(holders) == 0 {
				delete(a.tombs, id)
			} else {
				a.tombs[id] = holders
			}
		}
		if ok {
			a.p.c.late.Add(1)
		}
		return dead
	}
	current := it.inflight && it.peer == p && p != nil
	if !current && p != nil {
		if i := slices.Index(it.stale, p); i >= 0 {
			p.release()
			it.stale = slices.Delete(it.stale, i, i+1)
		}
	}
	switch {
	case ok:
		if it.inflight {
			if current {
				a.takeBack(it)
			} else {
				// Settled by an earlier holder: the current one still
				// holds it, and gets its credit back when it answers.
				a.flight.remove(it)
				it.peer.held.remove(it)
				it.stale = append(it.stale, it.peer)
			}
		} else {
			a.dequeue(it)
		}
		a.p.c.acked.Add(1)
		a.lat.record(time.Duration(now - it.pushed))
		a.forget(it, nil)
	case current:
		a.takeBack(it)
		it.avoid = p
		dead = a.requeue(it, "puller: "+why, dead)
	}
	return dead
}

// undo takes back a delivery the socket refused.
func (a *ackPusher[T]) undo(it *item, p *pullerPeer, err error, dead []DeadLetter) []DeadLetter {
	a.mu.Lock()
	defer a.mu.Unlock()
	if errors.Is(err, socket.ErrNoPeer) {
		if !p.gone {
			dead = a.dropPeer(p, dead)
		}
		return dead
	}
	if !it.inflight || it.peer != p {
		return dead // already taken back
	}
	a.takeBack(it)
	it.deliveries--
	if errors.Is(err, socket.ErrTooLarge) {
		// No puller will ever take it.
		it.deliveries = a.o.maxDeliveries
		return a.requeue(it, err.Error(), dead)
	}
	// Full queue (or closing): try the peer again shortly. (Not "after its
	// next ack": every ack may already be in.)
	p.blockedUntil = mono() + int64(time.Millisecond)
	a.enqueue(it, true)
	a.wake()
	return dead
}

// dropPeer forgets a puller and redelivers what it held. a.mu is held.
func (a *ackPusher[T]) dropPeer(p *pullerPeer, dead []DeadLetter) []DeadLetter {
	p.gone = true
	delete(a.peers, string(p.rid))
	if i := slices.Index(a.ring, p); i >= 0 {
		a.ring = slices.Delete(a.ring, i, i+1)
	}
	for it := p.held.head; it != nil; it = p.held.head {
		a.takeBack(it)
		it.avoid = p
		dead = a.requeue(it, "puller connection lost", dead)
	}
	for id, holders := range a.tombs {
		if i := slices.Index(holders, p); i >= 0 {
			if holders = slices.Delete(holders, i, i+1); len(holders) == 0 {
				delete(a.tombs, id)
			} else {
				a.tombs[id] = holders
			}
		}
	}
	a.wake()
	return dead
}

type delivery struct {
	it   *item
	peer *pullerPeer
	// What the socket is handed, copied from it under a.mu when it was
	// assigned: once a.mu is released the dispatcher may take it back and
	// assign it again (another routing id, another delivery count).
	frames [3][]byte
	buf    *socket.Buffer // a reference of the delivery's own to it.buf, released by send
	prio   uint8
	retry  bool
}

// deliveryPool holds deliveries for Push's direct sends (the dispatcher
// and the receive loop keep slices of their own).
var deliveryPool = sync.Pool{New: func() any { return new(delivery) }}

// deliveryOf snapshots an item just assigned to p. a.mu is held.
func deliveryOf(it *item, p *pullerPeer) delivery {
	if it.buf != nil {
		it.buf.Retain()
	}
	return delivery{it: it, peer: p, frames: it.frames, buf: it.buf, prio: it.prio, retry: it.deliveries > 1}
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
		now := mono()
		a.mu.Lock()
		for it := a.flight.head; it != nil && it.deadline <= now; it = a.flight.head {
			// The holder keeps its credit until it answers.
			p := it.peer
			a.flight.remove(it)
			p.held.remove(it)
			it.stale = append(it.stale, p)
			it.peer, it.inflight, it.avoid = nil, false, p
			dead = a.requeue(it, "no ack within "+a.o.ackTimeout.String(), dead)
		}
		sends = a.assignQueued(sends, now)
		more := len(sends) == dispatchBatch
		var next int64
		if h := a.flight.head; h != nil {
			next = h.deadline
		}
		if a.queued > 0 {
			for _, p := range a.ring {
				if p.blockedUntil > now && (next == 0 || p.blockedUntil < next) {
					next = p.blockedUntil
				}
			}
		}
		if next != 0 {
			timer.Reset(time.Duration(next - now))
		}
		a.mu.Unlock()

		sends, dead = a.sendAll(sends, dead)
		if more {
			a.wake()
		}
	}
}

// assignQueued assigns queued messages to pullers with credit, up to
// dispatchBatch in all. a.mu is held.
func (a *ackPusher[T]) assignQueued(sends []delivery, now int64) []delivery {
	for len(sends) < dispatchBatch {
		it := a.highest()
		if it == nil {
			break
		}
		p := a.pick(it.avoid, now)
		if p == nil {
			break
		}
		a.dequeue(it)
		a.assign(it, p, now)
		sends = append(sends, deliveryOf(it, p))
	}
	return sends
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
	var sends []delivery
	for {
		m, err := a.p.sock.Recv(a.p.ctx)
		if err != nil {
			return
		}
		dead, sends = a.handleAnswer(m, dead, sends)
		m.Free() // handleAnswer has copied what it keeps
	}
}

// handleAnswer handles one message from a puller: an ack (or a hello), or
// a nack.
func (a *ackPusher[T]) handleAnswer(m socket.Msg, dead []DeadLetter, sends []delivery) ([]DeadLetter, []delivery) {
	n := len(m.Frames)
	var env codec.View
	if n < 2 || codec.DecodeView(m.Frames[n-1], &env) != nil {
		a.p.c.dropped.Add(1)
		return dead, sends
	}
	rid := m.Frames[0]
	switch env.Kind {
	case codec.KindAck:
		ids, ok := []byte(nil), true // a hello carries no body at all
		if len(env.Body) > 0 {
			ids, ok = binBody(env.Body)
		}
		if !ok || len(ids)%len(codec.ID{}) != 0 {
			a.p.c.dropped.Add(1)
			return dead, sends
		}
		now := mono()
		a.mu.Lock()
		p := a.peers[string(rid)]
		if c, ok := env.Header(creditHeader); ok {
			if w, err := strconv.Atoi(string(c)); err == nil && w > 0 {
				if p == nil {
					p = &pullerPeer{rid: bytes.Clone(rid)}
					p.held.sel = hlinks
					a.peers[string(rid)] = p
					a.ring = append(a.ring, p)
				}
				p.window = w
				p.credit = w - p.nheld
			}
		}
		for len(ids) > 0 {
			dead = a.answered(codec.ID(ids[:16]), p, true, "", now, dead)
			ids = ids[16:]
		}
		// The credit that came back is used from here, saving the
		// hand-off to the dispatcher; it takes over a long backlog
		// and arms the ack timer when nothing was in flight.
		idle := a.flight.head == nil
		sends = a.assignQueued(sends, now)
		wake := idle || len(sends) == dispatchBatch
		a.mu.Unlock()
		sends, dead = a.sendAll(sends, dead)
		if wake {
			a.wake()
		}
	case codec.KindNack:
		why, err := unmarshalBody[string](env.Body)
		if err != nil {
			why = "nack"
		}
		a.mu.Lock()
		dead = a.answered(env.ID, a.peers[string(rid)], false, why, mono(), dead)
		a.mu.Unlock()
		dead = a.reportDead(dead)
		a.wake()
	default:
		a.p.c.dropped.Add(1)
	}
	return dead, sends
}

func (a *ackPusher[T]) drain(ctx context.Context) error {
	a.mu.Lock()
	for a.custody.len() > 0 {
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
	s.Pending = a.custody.len()
	for _, p := range a.ring {
		s.Peers = append(s.Peers, PeerStats{Remote: a.remotes[string(p.rid)], Sent: p.sent,
			Reliability: 1, Credit: p.credit, InFlight: p.nheld})
	}
}
