package pattern

import (
	"context"
	"errors"
	"fmt"
	"github.com/zpeer/zpeer/internal/eventlog"
	"log/slog"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/outbox"
	"github.com/zpeer/zpeer/internal/partition"
	"github.com/zpeer/zpeer/socket"
)

// creditHeader carries a Puller's credit in its hello: an ack envelope with
// a zero id and no ids in its body.
const creditHeader = codec.HeaderCredit

// startHeader, in a Puller's hello, says that it reports handler starts;
// in a delivered message, it asks the puller to report when its handler
// starts on it (a start envelope, before the handler runs). See
// docs/wire.md.
const startHeader = codec.HeaderStart

// limboWait bounds how long a message whose last delivery, lost with its
// puller's connection, brought it to WithMaxDeliveries waits before it is
// declared dead: what the puller sent before its connection closed (an ack
// of that very message, say) may still be queued on the socket. It is
// declared dead as soon as the socket has no message waiting, or after
// limboWait.
const limboWait = 100 * time.Millisecond

// dispatchBatch bounds how many messages the dispatcher assigns per lock
// hold, so acks are not held up behind a long backlog.
const dispatchBatch = 256

// item is one message in an acked Pusher's custody.
//
// Deliveries that count towards WithMaxDeliveries are those a handler
// started, as far as the Pusher can tell: one that was nacked or whose ack
// timed out counts; one lost with its puller's connection counts unless
// the puller would have reported its start (a redelivery, flagged, to a
// puller that reports starts) and did not. A first delivery is not
// flagged (a start report per message would cost the fast path a message
// each), so its loss counts: a message that crashes its worker is dead
// after WithMaxDeliveries starts, and puller churn costs a message at most
// one counted delivery.
//
// Credit bookkeeping: a puller holds a message from its delivery until it
// acks or nacks it, or disconnects, and each held message uses one of its
// credits. The current holder is item.peer (and the item is on that peer's
// held list); a puller that still holds an earlier delivery, after an ack
// timeout sent the message elsewhere, is in item.stale; once the message is
// settled, pullers that still hold it are remembered in the pusher's tombs
// until they answer, so that their credit comes back.
//
// An item's fields are guarded by its Pusher's ackPusher.mu once it is in
// custody (newItem and push fill them in before). It takes 256 bytes, the
// fields a delivery reads and writes first: a job waits long enough in a
// full custody for its memory to go cold, and then every cache line it
// spans is a miss (TestItemSize).
type item struct {
	// Delivery: queued, assigned, sent.
	state   jobState // see jobState: which lists it is on
	prio    uint8
	flagged bool          // the envelope asks for a start report
	keyed   bool          // it has a partition key (partition.go)
	sends   int32         // times handed to a puller
	khash   uint64        // its partition key's hash
	knext   *item         // the next job of its key, in push order
	ln      [nlinks]links // queue, in-flight and held list links
	peer    *pullerPeer   // in flight: the current holder
	// deadline, a mono time: in flight, of the ack timeout; in limbo,
	// when it is declared dead (see limboWait). Queued in a keyQueue, it
	// is the job's position there instead (jobRing).
	deadline int64
	frame    []byte         // the envelope: never modified, only replaced
	buf      *socket.Buffer // the envelope's memory, if reused: released when forgotten or replaced

	// Acknowledgement.
	id     codec.ID
	seq    uint64
	size   int           // bytes counted in ackPusher.bytes (WithMaxPendingBytes)
	pushed int64         // mono time
	rcpt   *Receipt      // PushAsync's, settled with the job
	stale  []*pullerPeer // earlier holders that have not answered

	// Redelivery and dead letters.
	deliveries int32       // deliveries that count (see above)
	avoid      *pullerPeer // redelivered: prefer another puller
	// lostOn is the gone puller of a lost delivery that did not count:
	// its start report, read after the loss, still counts it.
	lostOn  *socket.Peer
	lastErr string
	value   any // for WithOnDead
}

// newItem is a message taken into custody, pushed now or taken back from
// the outbox (openOutbox): frame is its envelope.
func newItem(id codec.ID, seq uint64, prio uint8, frame []byte) *item {
	it := &item{id: id, seq: seq, prio: prio, pushed: mono()}
	it.frame = frame
	return it
}

type links struct{ prev, next *item }

// An item's links (item.ln), one per list it can be on at once.
const (
	qlinks = iota // a queue: ackPusher.levels or a keyQueue
	flinks        // ackPusher.flight
	hlinks        // its holder's held list
	nlinks
)

// ilist is an intrusive doubly linked list of items through their links
// ln[w]: O(1) push, pop and removal from the middle.
type ilist struct {
	head, tail *item
	w          uint8 // qlinks, flinks or hlinks
}

func (l *ilist) pushBack(it *item) {
	ln := &it.ln[l.w]
	ln.prev, ln.next = l.tail, nil
	if l.tail != nil {
		l.tail.ln[l.w].next = it
	} else {
		l.head = it
	}
	l.tail = it
}

func (l *ilist) pushFront(it *item) {
	ln := &it.ln[l.w]
	ln.prev, ln.next = nil, l.head
	if l.head != nil {
		l.head.ln[l.w].prev = it
	} else {
		l.tail = it
	}
	l.head = it
}

func (l *ilist) remove(it *item) {
	ln := &it.ln[l.w]
	if ln.prev != nil {
		ln.prev.ln[l.w].next = ln.next
	} else {
		l.head = ln.next
	}
	if ln.next != nil {
		ln.next.ln[l.w].prev = ln.prev
	} else {
		l.tail = ln.prev
	}
	ln.prev, ln.next = nil, nil
}

// pullerPeer is one connected acked Puller: attached by the socket's
// Attach hook, sent work once its hello arrived, gone at its Detach hook.
// Its fields are guarded by ackPusher.mu (peer is set before it is
// shared).
type pullerPeer struct {
	peer   *socket.Peer
	hello  bool // its credit arrived: it is in the ring
	starts bool // it reports handler starts
	window int
	credit int   // how many more it accepts
	held   ilist // items whose current delivery it holds
	nheld  int   // len(held) plus stale and settled deliveries it holds
	sent   uint64
	gone   bool
	// blocked: its socket queue was full; it is tried again when the
	// socket's Ready hook says it has room.
	blocked bool
	id      string    // its name, from its hello: what its keys are hashed on
	hash    uint64    // partition.Hash(id)
	tie     uint64    // its peer id: between equal names, the lower owns the keys
	keyed   *keyQueue // keyed jobs waiting for its credit (nil until one does)
}

// ackPusher is the acknowledged mode of a Pusher.
//
// Locks: mu guards the jobs and the pullers. It is never held across a
// send or a receive (a delivery is sent, and a dead letter reported, once
// it is released), since the socket's peer hooks (attach, detach, ready)
// take it; under it the Pusher only reads a peer's state (Ready, Remote),
// takes the outbox's own lock (Ack) and settles receipts.
type ackPusher[T any] struct {
	p     *Pusher[T]
	o     *options
	notes *notifier
	lat   histogram
	kick  chan struct{}
	wg    sync.WaitGroup

	// The jobs and the pullers, guarded by mu (through dead, and the
	// partitioned jobs' fields below). A job's jobState says which of
	// these hold it.
	mu       sync.Mutex
	custody  *custody
	tombs    map[codec.ID][]*pullerPeer // settled, still held by these
	levels   [256]ilist                 // queued, by priority
	nonEmpty [4]uint64                  // bitmap of non-empty levels
	queued   int
	flight   ilist   // in flight, by deadline (= send order)
	limbo    []*item // waiting to be declared dead (see limboWait)
	peers    map[*socket.Peer]*pullerPeer
	ring     []*pullerPeer // pullers whose hello arrived, round-robin order
	next     int
	spaceCh  chan struct{} // closed when custody shrinks, if someone waits
	bytes    int           // frame bytes of the items push put in custody (item.size)
	emptyCh  chan struct{} // closed when custody empties, if someone waits
	// dead holds the dead letters of the current hold of mu: whoever
	// releases it with unlock reports them once it is released.
	dead []DeadLetter

	// Set in NewPusher before the goroutines start, never written again.
	store     *outbox.Log // WithOutbox
	recovered int         // jobs taken back from the outbox at start

	// Partitioned jobs (partition.go), guarded by mu.
	keys        keyTable  // the keys with jobs in custody, by hash
	homeless    *keyQueue // keyed jobs queued while no puller is in the ring
	keyedQueued int       // jobs in the pullers' keyed queues and homeless
	keyNext     int       // where assignKeyed starts in the ring
	links       []keyLink // chain links not written yet (linkKeys)
	touched     uint64    // what touchKeyed and warm read: kept, so that they read it
}

func newAckPusher[T any](p *Pusher[T]) *ackPusher[T] {
	a := &ackPusher[T]{p: p, o: &p.o, notes: newNotifier(), kick: make(chan struct{}, 1),
		custody: newCustody(p.o.maxPending), tombs: make(map[codec.ID][]*pullerPeer),
		peers: make(map[*socket.Peer]*pullerPeer), keys: newKeyTable(), homeless: newKeyQueue(nil)}
	for i := range a.levels {
		a.levels[i].w = qlinks
	}
	a.flight.w = flinks
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
// releases its own when it forgets the message (or replaces the
// envelope), so deliveries send the same bytes without a copy. With keyed
// it is a job of the partition key that hashes to kh (see pushKeyedLocked).
func (a *ackPusher[T]) push(ctx context.Context, frame []byte, buf *socket.Buffer, id codec.ID, seq uint64, prio uint8, v T, rc *Receipt, keyed bool, kh uint64) error {
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
	if keyed {
		a.pushKeyedLocked(it, kh)
		return nil
	}
	if a.queued == 0 {
		// Nothing waits ahead of it: send it from here, saving the
		// hand-off to the dispatcher.
		if p := a.pick(nil); p != nil {
			a.sendNowUnlock(it, p)
			return nil
		}
	}
	a.enqueue(it, false)
	a.mu.Unlock()
	a.wake()
	return nil
}

// unlock releases a.mu and then reports the messages that died while it
// was held (a.dead).
func (a *ackPusher[T]) unlock() {
	dead := a.dead
	a.dead = nil
	a.mu.Unlock()
	if len(dead) > 0 {
		a.reportDead(dead)
	}
}

// sendNowUnlock assigns it, just pushed, to p and sends it from the
// pushing goroutine. a.mu is held, and released.
func (a *ackPusher[T]) sendNowUnlock(it *item, p *pullerPeer) {
	a.assign(it, p, it.pushed)
	d := deliveryPool.Get().(*delivery)
	*d = deliveryOf(it, p)
	first := a.flight.head == it
	a.mu.Unlock()
	if first {
		a.wake() // the dispatcher arms its ack timer
	}
	a.send(d)
	*d = delivery{}
	deliveryPool.Put(d)
}

// enqueue queues it at its priority, at the front for a redelivery. a.mu
// is held.
func (a *ackPusher[T]) enqueue(it *item, front bool) {
	it.setState(jobQueued)
	if it.keyed {
		a.enqueueKeyed(it, front)
		return
	}
	if front {
		a.levels[it.prio].pushFront(it)
	} else {
		a.levels[it.prio].pushBack(it)
	}
	a.nonEmpty[it.prio>>6] |= 1 << (it.prio & 63)
	a.queued++
}

// dequeue takes a queued job out of its queue (see takeOut). a.mu is held.
func (a *ackPusher[T]) dequeue(it *item) {
	if it.keyed {
		a.dequeueKeyed(it)
		return
	}
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
		if p.credit > 0 && p != avoid && !p.blocked {
			a.next = (a.next + i + 1) % n
			return p
		}
	}
	if avoid != nil && !avoid.gone && avoid.hello && avoid.credit > 0 && !avoid.blocked {
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
	it.setState(jobSent)
	it.peer = p
	it.sends++
	if it.sends > 1 && !it.flagged {
		a.flag(it)
	}
	it.deadline = now + int64(a.o.ackTimeout)
	a.flight.pushBack(it)
}

// flag makes a redelivered message's envelope ask the puller to report
// its handler's start. It costs a re-encoding, once per message that is
// redelivered at all. a.mu is held.
func (a *ackPusher[T]) flag(it *item) {
	it.flagged = true
	var env codec.Envelope
	if codec.Decode(it.frame, &env) != nil {
		return // ours: it decodes
	}
	h := make(map[string]string, len(env.Headers)+1)
	maps.Copy(h, env.Headers)
	h[startHeader] = "1"
	env.Headers = h
	if frame, err := encodeEnvelope(&env); err == nil {
		it.frame = frame
		it.releaseBuf() // deliveries of the old envelope hold their own
	}
}

// releaseBuf drops custody's reference to the envelope's memory
// (deliveries still being sent hold their own). a.mu is held.
func (it *item) releaseBuf() {
	if it.buf != nil {
		it.buf.Release()
		it.buf = nil
	}
}

// send hands an assigned delivery to the socket.
// d is the caller's: the socket is handed d.frames without a copy.
func (a *ackPusher[T]) send(d *delivery) {
	// Counted before the send: the puller may answer, and the job settle
	// and Drain return, before SendTo does; Stats then already has it.
	count := &a.p.c.sent
	if d.retry {
		count = &a.p.c.retried
	}
	count.Add(1)
	if d.retry && a.o.elog.Enabled(slog.LevelInfo) {
		// Logged before the send too: the job may settle, and Drain
		// return, before SendTo does.
		a.o.elog.Log(slog.LevelInfo, eventlog.Redelivery, "id", d.it.id, "deliveries", d.sends, "reason", d.reason)
	}
	err := a.p.sock.SendTo(a.p.ctx, d.peer.peer, socket.Msg{Frames: d.frames[:], Priority: d.prio, Buf: d.buf})
	if d.buf != nil {
		d.buf.Release() // the socket holds its own until written
		d.buf = nil
	}
	if err != nil {
		count.Add(^uint64(0)) // not sent after all
		a.undo(d.it, d.peer, err)
	}
}

// sendAll sends the deliveries assigned under a.mu (released since); it
// returns sends emptied for reuse.
func (a *ackPusher[T]) sendAll(sends []delivery) []delivery {
	for i := range sends {
		a.send(&sends[i])
		sends[i] = delivery{}
	}
	return sends[:0]
}

// release notes that p no longer holds a delivery: its credit comes back.
// a.mu is held.
func (p *pullerPeer) release() {
	p.credit++
	p.nheld--
}

// retry puts a job taken out of flight (it was not acknowledged) back in
// the queue, or declares it dead when it has had its deliveries; counted
// says that the delivery that failed counts (see item). a.mu is held.
func (a *ackPusher[T]) retry(it *item, counted bool, why string) {
	it.lastErr = why
	if counted {
		it.deliveries++
	}
	if int(it.deliveries) >= a.o.maxDeliveries {
		a.kill(it)
		return
	}
	a.enqueue(it, true)
}

// retryLost is retry for a delivery lost with its puller's connection: a
// job that reaches its last delivery waits in limbo rather than dying at
// once (see limboWait). a.mu is held.
func (a *ackPusher[T]) retryLost(it *item, counted bool) {
	it.lastErr = "puller connection lost"
	if counted {
		it.deliveries++
	}
	if int(it.deliveries) >= a.o.maxDeliveries {
		a.toLimbo(it)
		return
	}
	a.enqueue(it, true)
}

// toLimbo parks a job taken out of its state until it is declared dead.
// a.mu is held.
func (a *ackPusher[T]) toLimbo(it *item) {
	it.setState(jobLimbo)
	it.deadline = mono() + int64(limboWait)
	a.limbo = append(a.limbo, it)
	a.wake() // the dispatcher arms its timer
}

// settleLimbo declares dead the messages in limbo, all of them or those
// whose wait is over by now. a.mu is held.
func (a *ackPusher[T]) settleLimbo(all bool, now int64) {
	keep := a.limbo[:0]
	for _, it := range a.limbo {
		if all || now >= it.deadline {
			a.kill(it) // taken out of limbo here
		} else {
			keep = append(keep, it)
		}
	}
	clear(a.limbo[len(keep):])
	a.limbo = keep
}

// kill declares dead a job taken out of its state (or in limbo, which
// settleLimbo empties), adding it to a.dead. a.mu is held.
func (a *ackPusher[T]) kill(it *item) {
	err := fmt.Errorf("%w (%d): last: %s", ErrDead, it.deliveries, it.lastErr)
	a.p.c.dead.Add(1) // before the receipt settles: a producer woken by it sees the count
	a.forget(it, err)
	a.dead = append(a.dead, DeadLetter{ID: it.id, Value: it.value, Priority: it.prio, Deliveries: int(it.deliveries), Err: err})
}

// forget removes an acked (err nil) or dead job, taken out of its state,
// from custody, remembering who still holds a delivery of it. a.mu is
// held.
func (a *ackPusher[T]) forget(it *item, err error) {
	waited := it.state == jobWaiting
	it.setState(jobSettled)
	a.custody.del(it)
	a.bytes -= it.size
	it.releaseBuf()
	a.settled(it, err)
	if it.keyed {
		a.keySettled(it, waited, err != nil)
	}
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
func (a *ackPusher[T]) answered(id codec.ID, p *pullerPeer, ok bool, why string, now int64) {
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
		return
	}
	current := it.state.inFlight() && it.peer == p && p != nil
	if !current && p != nil {
		if i := slices.Index(it.stale, p); i >= 0 {
			p.release()
			it.stale = slices.Delete(it.stale, i, i+1)
		}
	}
	switch {
	case ok:
		// Settled by an earlier holder, the current one still holds it,
		// and gets its credit back when it answers.
		a.takeOut(it, !current)
		a.p.c.acked.Add(1)
		a.lat.record(time.Duration(now - it.pushed))
		a.forget(it, nil)
	case current:
		a.takeOut(it, false)
		it.avoid = p
		a.retry(it, true, "puller: "+why)
	}
}

// startedOn handles sp's report that its handler started on id. a.mu is
// held.
func (a *ackPusher[T]) startedOn(id codec.ID, sp *socket.Peer) {
	it := a.custody.get(id)
	switch {
	case it == nil || sp == nil:
	case it.state.inFlight() && it.peer.peer == sp:
		if it.state == jobSent {
			it.setState(jobStarted)
		}
	case it.lostOn == sp:
		// The connection was lost before its report was read: the
		// delivery counts after all.
		it.lostOn = nil
		it.deliveries++
		if int(it.deliveries) < a.o.maxDeliveries || it.state == jobLimbo {
			break
		}
		// Redelivered meanwhile, it is withdrawn as after an ack
		// timeout (the holder keeps its credit until it answers).
		a.takeOut(it, true)
		a.toLimbo(it)
	}
}

// undo takes back a delivery the socket refused.
func (a *ackPusher[T]) undo(it *item, p *pullerPeer, err error) {
	a.mu.Lock()
	defer a.unlock()
	if errors.Is(err, socket.ErrPeerLost) {
		if it.state.inFlight() && it.peer == p {
			// Never sent: it does not count.
			a.takeOut(it, false)
			it.sends--
			a.enqueue(it, true)
			a.wake()
		}
		if !p.gone {
			a.dropPeer(p)
		}
		return
	}
	if !it.state.inFlight() || it.peer != p {
		return // already taken back
	}
	a.takeOut(it, false)
	it.sends--
	if errors.Is(err, socket.ErrTooLarge) {
		// No puller will ever take it.
		it.deliveries = int32(a.o.maxDeliveries)
		a.retry(it, false, err.Error())
		return
	}
	// Full queue (or closing): the peer is tried again when the socket's
	// Ready hook says it has room, or now if it has room already (the
	// hook may have run before it was marked).
	p.blocked = p.peer != nil && !p.peer.Ready()
	a.enqueue(it, true)
	a.wake()
}

// attach is the socket's Attach hook: a puller connected. It gets work
// once its hello arrives.
func (a *ackPusher[T]) attach(sp *socket.Peer) {
	p := &pullerPeer{peer: sp}
	p.held.w = hlinks
	a.mu.Lock()
	a.peers[sp] = p
	a.mu.Unlock()
}

// detach is the socket's Detach hook: what the puller held is redelivered
// at once.
func (a *ackPusher[T]) detach(sp *socket.Peer, _ error) {
	a.mu.Lock()
	if p := a.peers[sp]; p != nil && !p.gone {
		a.dropPeer(p)
	}
	a.unlock()
}

// ready is the socket's Ready hook: a puller whose queue was full has room.
func (a *ackPusher[T]) ready(sp *socket.Peer) {
	a.mu.Lock()
	p := a.peers[sp]
	wake := p != nil && p.blocked
	if wake {
		p.blocked = false
	}
	a.mu.Unlock()
	if wake {
		a.wake()
	}
}

// dropPeer forgets a puller and redelivers what it held. a.mu is held.
func (a *ackPusher[T]) dropPeer(p *pullerPeer) {
	p.gone = true
	delete(a.peers, p.peer)
	if i := slices.Index(a.ring, p); i >= 0 {
		a.ring = slices.Delete(a.ring, i, i+1)
		a.leftLocked(p)
	}
	for it := p.held.head; it != nil; it = p.held.head {
		// It counts unless the puller would have reported its start.
		counted := !(p.starts && it.flagged && it.state != jobStarted)
		a.takeOut(it, false)
		it.avoid = p
		if !counted {
			it.lostOn = p.peer
		}
		a.retryLost(it, counted)
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
}

type delivery struct {
	it   *item
	peer *pullerPeer
	// What the socket is handed, copied from it under a.mu when it was
	// assigned: once a.mu is released the dispatcher may take it back and
	// assign it again (another peer, another envelope).
	frames [2][]byte
	buf    *socket.Buffer // a reference of the delivery's own to it.buf, released by send
	prio   uint8
	retry  bool
	sends  int    // it.sends, this one included
	reason string // a retry's: why the last delivery failed
}

// deliveryPool holds deliveries for Push's direct sends (the dispatcher
// and the receive loop keep slices of their own).
var deliveryPool = sync.Pool{New: func() any { return new(delivery) }}

// deliveryOf snapshots an item just assigned to p. a.mu is held.
func deliveryOf(it *item, p *pullerPeer) delivery {
	if it.buf != nil {
		it.buf.Retain()
	}
	d := delivery{it: it, peer: p, frames: [2][]byte{empty, it.frame}, buf: it.buf, prio: it.prio, retry: it.sends > 1, sends: int(it.sends)}
	if d.retry {
		d.reason = it.lastErr
	}
	return d
}

// dispatch assigns queued messages to pullers with credit, sends them, and
// redelivers those whose ack is overdue.
func (a *ackPusher[T]) dispatch() {
	defer a.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var sends []delivery
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
			it.avoid = it.peer
			a.takeOut(it, true)
			a.retry(it, true, "no ack within "+a.o.ackTimeout.String())
		}
		if len(a.limbo) > 0 {
			a.settleLimbo(false, now)
		}
		sends = a.assignQueued(sends, now)
		more := len(sends) == dispatchBatch
		var next int64
		if h := a.flight.head; h != nil {
			next = h.deadline
		}
		for _, it := range a.limbo {
			if next == 0 || it.deadline < next {
				next = it.deadline
			}
		}
		if next != 0 {
			timer.Reset(time.Duration(next - now))
		}
		a.unlock()

		sends = a.sendAll(sends)
		if more {
			a.wake()
		}
	}
}

// assignQueued assigns queued messages to pullers with credit, up to
// dispatchBatch in all. a.mu is held.
func (a *ackPusher[T]) assignQueued(sends []delivery, now int64) []delivery {
	if a.keyedQueued > 0 {
		sends = a.assignKeyed(sends, now)
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
		a.assign(it, p, now)
		sends = append(sends, deliveryOf(it, p))
	}
	return sends
}

// reportDead logs the dead letters of one hold of a.mu (see
// ackPusher.dead) and hands them to WithOnDead's callback, on the
// notifier's goroutine.
func (a *ackPusher[T]) reportDead(dead []DeadLetter) {
	for _, d := range dead {
		a.o.elog.Log(slog.LevelWarn, eventlog.DeadLetter, "id", d.ID, "deliveries", d.Deliveries, "reason", d.Err.Error())
		if fn := a.o.onDead; fn != nil {
			a.notes.post(func() { fn(d) })
		}
	}
}

func (a *ackPusher[T]) recvLoop() {
	defer a.wg.Done()
	var sends []delivery
	for {
		m, sp, err := a.p.sock.RecvFrom(polling)
		if err != nil {
			// Nothing waiting: whatever a gone puller sent has been
			// read, and the messages in limbo are dead.
			a.mu.Lock()
			if len(a.limbo) > 0 {
				a.settleLimbo(true, 0)
			}
			a.unlock()
			if m, sp, err = a.p.sock.RecvFrom(a.p.ctx); err != nil {
				return
			}
		}
		sends = a.handleAnswer(m, sp, sends)
		m.Free() // handleAnswer has copied what it keeps
	}
}

// handleAnswer handles one message from the puller sp: an ack (or a
// hello), a nack or a start report.
func (a *ackPusher[T]) handleAnswer(m socket.Msg, sp *socket.Peer, sends []delivery) []delivery {
	n := len(m.Frames)
	var env codec.View
	if n < 2 || codec.DecodeView(m.Frames[n-1], &env) != nil {
		a.p.c.dropped.Add(1)
		return sends
	}
	switch env.Kind {
	case codec.KindAck, codec.KindStart:
		ids, ok := []byte(nil), true // a hello carries no body at all
		if len(env.Body) > 0 {
			ids, ok = binBody(env.Body)
		}
		if !ok || len(ids)%len(codec.ID{}) != 0 {
			a.p.c.dropped.Add(1)
			return sends
		}
		if env.Kind == codec.KindStart {
			a.mu.Lock()
			for ; len(ids) > 0; ids = ids[16:] {
				a.startedOn(codec.ID(ids[:16]), sp)
			}
			a.mu.Unlock()
			return sends
		}
		now := mono()
		a.mu.Lock()
		p := a.peers[sp] // nil once gone
		if c, ok := env.Header(creditHeader); ok && p != nil {
			if w, err := strconv.Atoi(string(c)); err == nil && w > 0 {
				if !p.hello {
					p.hello = true
					p.id = string(env.Sender)
					p.hash, p.tie = partition.Hash(p.id), sp.ID()
					a.ring = append(a.ring, p)
					a.joinedLocked(p)
				}
				_, p.starts = env.Header(startHeader)
				p.window = w
				p.credit = w - p.nheld
			}
		}
		if a.keys.n > 0 {
			a.touchKeyed(ids)
		}
		for len(ids) > 0 {
			a.answered(codec.ID(ids[:16]), p, true, "", now)
			ids = ids[16:]
		}
		// The credit that came back is used from here, saving the
		// hand-off to the dispatcher; it takes over a long backlog
		// and arms the ack timer when nothing was in flight.
		idle := a.flight.head == nil
		sends = a.assignQueued(sends, now)
		wake := idle || len(sends) == dispatchBatch
		a.unlock()
		sends = a.sendAll(sends)
		if wake {
			a.wake()
		}
	case codec.KindNack:
		why, err := unmarshalBody[string](env.Body)
		if err != nil {
			why = "nack"
		}
		a.mu.Lock()
		a.answered(env.ID, a.peers[sp], false, why, mono())
		a.unlock()
		a.wake()
	default:
		a.p.c.dropped.Add(1)
	}
	return sends
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
	if a.store != nil {
		st := a.store.Stats()
		s.Outbox = &OutboxStats{Jobs: st.Messages, Bytes: st.Bytes, Segments: st.Segments,
			Appends: st.Appends, Acks: st.Acks, Writes: st.Writes, Syncs: st.Syncs,
			Recovered: a.recovered, Corrupt: st.Corrupt}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s.Pending = a.custody.len()
	for _, p := range a.ring {
		s.Peers = append(s.Peers, PeerStats{Remote: p.peer.Remote(), Identity: p.id, Sent: p.sent,
			Reliability: 1, Credit: p.credit, InFlight: p.nheld, Keys: p.keysOf()})
	}
}
