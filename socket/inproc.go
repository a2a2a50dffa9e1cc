package socket

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// inproc:// connects sockets of one process without a network, a ZMTP
// greeting or a handshake: a connected pair of pipes hands each message
// over in memory. Each pipe's sending side is an inprocLink, the pipe's
// link (link replaces the batch writer for it); its receiving side is an
// inprocRing, which the receiving socket's fair queue reads.
//
// The ring is a lock-free single-producer, single-consumer queue (libzmq's
// ypipe): chunks of slots, linked as the sender fills them and recycled
// once the receiver is through them. The sender (one at a time, under its
// pipe's wmu) writes a message into the next slot and publishes the count
// of messages written with one atomic store; the receiver (one at a time,
// under its fair queue's mu) reads slots up to the count it last loaded,
// and loads it again only when it gets there. A message of up to
// slotBytes body bytes is stored in its slot and copied out by the
// receiver into its own slab memory: its memory, owner and Free stay on
// the receiver's side, and the slot is the only memory both cores touch. A
// larger message, or one the receiving type's incoming filter must see, is
// copied by the sender into its own pooled memory (the copy a Send always
// makes), passed through the filter as a reader goroutine would, and
// stored in its slot as a Msg. A PULL, DEALER or PAIR peer's filter passes
// everything and is not called.
//
// The sender lists the pipe in the receiver's fair queue (and wakes a
// receiver) only when the pipe was idle: the ring's listed flag, which the
// receiver clears when it finds the ring empty (and looks once more, so
// that a message published meanwhile is not missed).
//
// The high-water mark is the receiver's receive mark (a sender finds the
// peer full when it holds RecvHWM messages or RecvHWMBytes of it); the send
// mark plays no part, as nothing waits on the sending side. The sender
// counts what it publishes, the receiver what it took (under its fair
// queue's lock), and the sender looks at the latter only when its last
// look says the peer is full; then it asks to be woken once the receiver
// has read it down to half its mark (libzmq's low-water mark). A PUSH or
// DEALER sender of a small message watches for that, while the receiver
// makes progress, before it blocks (spinWait): a sender woken from a block
// runs next on the receiver's processor, and the two would run by turns on
// one core. So a sender faster than its receiver keeps its core busy
// while it waits, as long as the receiver runs.
//
// Close is immediate: what was handed over stays deliverable to the
// receiver, as with any peer that goes (the fair queue counts it as
// orphans).
//
// As in libzmq 4.x, a socket may connect before another binds the name
// (the connection is made when it does, and again after an unbind and a
// new bind); binding a name that is bound already is an error. Inproc
// peers have no heartbeats and get no PeerHooks Ready calls.

// inprocRegistry is the process's bound inproc names.
var inprocRegistry = struct {
	mu      sync.Mutex
	bound   map[string]*inprocListener // guarded by mu
	changed chan struct{}              // guarded by mu: closed (and replaced) when bound changes
}{bound: make(map[string]*inprocListener), changed: make(chan struct{})}

// inprocListener is a bound inproc name: the net.Listener of the
// socket's listener entry, so that Unbind and Close treat it as any other.
type inprocListener struct {
	s    *Socket
	l    *listener
	name string
	once sync.Once
	done chan struct{}
}

func (ln *inprocListener) Accept() (net.Conn, error) {
	<-ln.done
	return nil, net.ErrClosed
}

func (ln *inprocListener) Close() error {
	ln.once.Do(func() {
		close(ln.done)
		r := &inprocRegistry
		r.mu.Lock()
		if r.bound[ln.name] == ln {
			delete(r.bound, ln.name)
			close(r.changed)
			r.changed = make(chan struct{})
		}
		r.mu.Unlock()
	})
	return nil
}

func (ln *inprocListener) Addr() net.Addr { return inprocAddr(ln.name) }

type inprocAddr string

func (a inprocAddr) Network() string { return "inproc" }
func (a inprocAddr) String() string  { return string(a) }

// bindInproc binds e's name. The caller holds s.mu.
func (s *Socket) bindInproc(e endpoint) (string, error) {
	r := &inprocRegistry
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bound[e.addr] != nil {
		return "", fmt.Errorf("%w %q: address in use", ErrEndpoint, e.raw)
	}
	ln := &inprocListener{s: s, name: e.addr, done: make(chan struct{})}
	ln.l = &listener{ep: e, bound: e.raw, ln: ln, accepted: make(map[*pipe]struct{})}
	s.listeners[e.raw] = ln.l
	r.bound[e.addr] = ln
	close(r.changed)
	r.changed = make(chan struct{})
	s.ev.emit(Event{Kind: EventListening, Endpoint: e.raw})
	return e.raw, nil
}

// inprocDialLoop is dialLoop for inproc: it waits for the name to be bound,
// connects, and waits again when the connection ends.
func (s *Socket) inprocDialLoop(d *dialer) {
	defer s.wg.Done()
	r := &inprocRegistry
	for {
		r.mu.Lock()
		ln, changed := r.bound[d.ep.addr], r.changed
		r.mu.Unlock()
		if ln != nil {
			p, err := s.linkInproc(d, ln)
			if err == nil {
				select {
				case <-p.done:
					if d.leaving.Load() {
						return // Disconnect: no redial
					}
					s.reconnects.Add(1)
					continue
				case <-d.stop:
					p.terminate(ErrClosed)
					return
				}
			}
			s.ev.emit(Event{Kind: EventRetry, Endpoint: d.ep.raw, Err: err})
		}
		select {
		case <-changed:
		case <-d.stop:
			return
		}
	}
}

// linkInproc connects d's socket to the one bound at ln: a pipe in each,
// each the other's peer, registered and attached in both sockets.
func (s *Socket) linkInproc(d *dialer, ln *inprocListener) (*pipe, error) {
	b := ln.s
	pa := newInprocPipe(s, d.ep.raw, b)
	pb := newInprocPipe(b, ln.l.bound, s)
	newInprocLink(pa, pb)
	newInprocLink(pb, pa)
	if err := b.registerInproc(pb, ln.l); err != nil {
		return nil, err
	}
	if err := s.registerInproc(pa, nil); err != nil {
		pb.terminate(err)
		return nil, err
	}
	s.mu.Lock()
	select {
	case <-d.stop:
		s.mu.Unlock()
		pa.terminate(ErrClosed)
		return nil, ErrClosed
	default:
	}
	d.pipe = pa
	s.mu.Unlock()
	// The bound side first, then ours; neither hands anything over until
	// both are attached (what attach sends, subscriptions say, waits).
	for _, p := range []*pipe{pb, pa} {
		p.s.connects.Add(1)
		p.s.attach(p)
	}
	pb.link.start()
	pa.link.start()
	for _, p := range []*pipe{pb, pa} {
		p.s.ev.emit(Event{Kind: EventConnected, Endpoint: p.endpoint, Remote: p.remote, PeerType: p.peerType, PeerID: p.routeID})
		p.s.signalReady()
	}
	return pa, nil
}

// registerInproc adds p to s (and to l's accepted pipes), as handshake
// does for a network peer.
func (s *Socket) registerInproc(p *pipe, l *listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || (l != nil && s.listeners[l.bound] != l) {
		return ErrClosed
	}
	if a, ok := s.proto.(admitter); ok {
		if err := a.admit(p); err != nil {
			s.rejected.count(errAdmit)
			return err
		}
	}
	s.pipes[p] = struct{}{}
	if l != nil {
		p.listener = l
		l.accepted[p] = struct{}{}
	}
	return nil
}

// link carries a pipe's messages to its peer some other way than the batch
// writer and a connection: inproc's hand-over in memory (inprocLink) is
// the one there is. A pipe with a link has no connection, sends no
// commands and has nothing to flush; writer.go, pipe.go and lb.go ask it
// what they would otherwise ask of the send queue.
type link interface {
	ready() bool                  // the peer has room for a message now
	send(m Msg, force bool) error // hand a copy of m over (errFull at the mark, unless force)
	closed(err error)             // the pipe terminated: release memory, end the other end
	counts(c *Counters)           // the message and byte counts, both ways
}

// The pipe holds its link as an *inprocLink, not as a link: a message
// passed through an interface method escapes to the heap, and so would
// every caller's array of frames.
var _ link = (*inprocLink)(nil)

// inproc ring geometry: a chunk of ringSlots slots, each storing a message
// of up to slotBytes body bytes (a message of several frames spends a byte
// per frame on its length, and has at most maxSlotFrames of them).
const (
	ringSlots     = 256
	slotBytes     = 128
	maxSlotFrames = 16
	ringSpares    = 8 // chunks kept for reuse: enough for a queue of 2048 messages
)

// ringChunk is a run of slots of an inproc ring. It is over 32 KiB, so the
// allocator places it on a page boundary and each slot's data on cache
// lines of its own.
type ringChunk struct {
	data [ringSlots][slotBytes]byte
	// hdr says what slot i holds: frames<<24 | body bytes for a message
	// stored in data[i], 0 for one in msg[i].
	hdr  [ringSlots]uint32
	msg  [ringSlots]Msg // messages not stored in their slot: the sender's copies
	next *ringChunk     // written by the sender before it publishes a message in next
}

// inprocRing is an inproc pipe's receiving side: the messages its peer's
// link published and the receiver has not taken yet.
type inprocRing struct {
	from *inprocLink // the sending side, set at the link

	// The sender's, read by the receiver: the count of messages published
	// (every slot before it is written).
	pub atomic.Int64
	_   [56]byte
	// listed: the pipe is active in the receiving fair queue, or its sender
	// is listing it. The sender sets it (and lists the pipe) when it was
	// clear; the receiver clears it when it finds the ring empty.
	listed atomic.Bool
	spares [ringSpares]atomic.Pointer[ringChunk] // chunks the receiver is through, for the sender
	_      [40]byte

	// The receiver's, guarded by the receiving socket's fq.mu.
	head   *ringChunk // the chunk being read, from slot pos
	pos    int
	avail  int64 // pub when the receiver last loaded it
	taken  int64 // messages taken (every one before avail is published)
	takenB int64 // ... and their body bytes
	// waiting: the sender found the peer full and waits for a signal; it
	// had sent sent messages (sentB bytes) when it looked.
	waiting     bool
	sent, sentB int64
	// progress is taken, stored every ringProgress messages: a sender
	// waiting for room watches it (see spinWait)
	progress atomic.Int64
	every    int64 // ringProgress, or an eighth of the mark
	tick     int64 // messages to take before the next store of progress
	_        [64]byte
}

// ringProgress is how often (in messages) the receiver publishes its
// progress, at most: an eighth of the receive mark when that is less.
const ringProgress = 16

// inprocLink is an inproc pipe's sending side, the pipe's link. Its fields
// are guarded by the pipe's wmu.
type inprocLink struct {
	p, peer *pipe
	r       *inprocRing // peer's ring
	fq      *fairQueue  // peer's socket's fair queue

	up      bool     // both ends attached: hand messages over
	pending []Msg    // what was sent before that (copies)
	c       carver   // the memory of the copies of messages not stored in a slot
	frames  [][]byte // scratch for the frames being copied
	tail    *ringChunk
	pos     int // the next slot in tail
	// What this end published, and its last look at what the receiver
	// took of it: their difference bounds what the peer holds, without
	// touching the receiver's memory per message.
	sent, sentB int64
	seen, seenB int64
	// everything handed over, filtered out or not: the pipe's MsgsOut and
	// BytesOut, and the peer's MsgsIn and BytesIn
	handed, handedB uint64
	// copies of the peer's fixed settings, so that the sender reads
	// nothing per message from the receiver's busy memory
	hwm      int64
	hwmB     int64
	incoming func(*pipe, Msg) (Msg, bool) // nil: the peer takes every message as it is
}

func newInprocPipe(s *Socket, endpoint string, other *Socket) *pipe {
	p := newPipeBase(s, endpoint, "inproc", other.typ.String(), other.opts.Identity)
	p.ring = &inprocRing{head: new(ringChunk), every: int64(max(1, min(ringProgress, s.opts.RecvHWM/8)))}
	return p
}

// newInprocLink makes p's link to q: p sends into q's ring.
func newInprocLink(p, q *pipe) {
	r := q.s
	l := &inprocLink{p: p, peer: q, r: q.ring, fq: r.fq, tail: q.ring.head, hwm: int64(r.fq.hwm), hwmB: r.fq.hwmB}
	if _, ok := r.proto.(passIncoming); !ok {
		l.incoming = r.proto.incoming // (else no call per message)
	}
	p.peer, p.link, q.ring.from = q, l, l
}

// start starts handing messages over, those sent meanwhile first (they
// pass the mark, as a forced message would: there are few of them, sent
// between the link and now).
func (l *inprocLink) start() {
	p := l.p
	p.wmu.Lock()
	l.up = true
	pending := l.pending
	l.pending = nil
	list := false
	for i := range pending {
		if !p.wclosed {
			list = l.handOver(&pending[i]) || list
		}
		pending[i] = Msg{}
	}
	p.wmu.Unlock()
	if list {
		l.fq.list(l.peer)
	}
}

// ready implements link: the peer has room.
func (l *inprocLink) ready() bool {
	p := l.p
	p.wmu.Lock()
	ok := !p.wclosed && l.roomLocked()
	p.wmu.Unlock()
	return ok
}

// roomLocked reports whether the peer is below its receive marks. When it
// is not, it asks to be signalled (the sending socket's signalReady) when
// it is again. The caller holds wmu.
func (l *inprocLink) roomLocked() bool {
	fq := l.fq
	if !l.up {
		return true // pending: what is sent waits for the link
	}
	if l.fits() && !fq.orphanFull.Load() {
		return true
	}
	// Our last look says full (or orphans may be): look again.
	r := l.r
	fq.mu.Lock()
	l.seen, l.seenB = r.taken, r.takenB
	ok := l.fits()
	if !ok {
		r.sent, r.sentB, r.waiting = l.sent, l.sentB, true
	} else if fq.orphansFullLocked() {
		ok = false
		fq.orphanWait = append(fq.orphanWait, l.p.s)
	}
	fq.mu.Unlock()
	return ok
}

// fits reports whether what was published and not yet seen taken is below
// the peer's marks.
func (l *inprocLink) fits() bool {
	n := l.sent - l.seen
	return n < l.hwm && (n == 0 || l.sentB-l.seenB < l.hwmB)
}

// send implements link. A forced message (a subscription, say) waits for
// room, as a reader would, without holding wmu; it gives up when either
// end goes. m comes by value: a pointer through the interface would make
// every caller's message escape to the heap.
func (l *inprocLink) send(m Msg, force bool) error {
	p := l.p
	for {
		p.wmu.Lock()
		if p.wclosed {
			p.wmu.Unlock()
			return ErrClosed
		}
		if !l.up {
			l.pending = append(l.pending, cloneMsg(&m))
			p.wmu.Unlock()
			return nil
		}
		if !l.roomLocked() {
			if !force {
				p.wmu.Unlock()
				return errFull
			}
			wait := p.s.readyWait()
			if !l.roomLocked() {
				p.wmu.Unlock()
				q := l.peer
				select {
				case <-wait:
					continue
				case <-p.done:
				case <-q.done:
				case <-q.s.closing:
				case <-p.s.closing:
				}
				q.discard(1)
				return ErrClosed
			}
		}
		list := l.handOver(&m)
		p.wmu.Unlock()
		if list {
			l.fq.list(l.peer)
		}
		return nil
	}
}

// handOver publishes a copy of m in the peer's ring, and reports whether
// the peer is to be listed in its fair queue (fairQueue.list, called
// without wmu). The caller holds wmu and has checked for room.
func (l *inprocLink) handOver(m *Msg) bool {
	fs := m.Frames
	l.handed++
	if l.incoming == nil {
		if len(fs) == 1 && len(fs[0]) <= slotBytes {
			// the usual small message: stored in its slot
			ch, i := l.slot()
			n := copy(ch.data[i][:], fs[0])
			ch.hdr[i] = 1<<24 | uint32(n)
			l.handedB += uint64(n)
			return l.publish(n)
		}
		if size, ok := slotFits(fs); ok {
			ch, i := l.slot()
			d := ch.data[i][:]
			off := len(fs)
			for k, f := range fs {
				d[k] = byte(len(f))
				off += copy(d[off:], f)
			}
			ch.hdr[i] = uint32(len(fs))<<24 | uint32(size)
			l.handedB += uint64(size)
			return l.publish(size)
		}
		ch, i := l.slot()
		l.copyInto(&ch.msg[i], fs)
		ch.hdr[i] = 0
		size := ch.msg[i].size
		l.handedB += uint64(size)
		return l.publish(size)
	}
	var cp Msg
	l.copyInto(&cp, fs)
	l.handedB += uint64(cp.size)
	out, ok := l.incoming(l.peer, cp)
	if !ok {
		cp.Free()
		return false
	}
	ch, i := l.slot()
	ch.msg[i] = out
	ch.hdr[i] = 0
	return l.publish(out.size)
}

// slotFits reports whether a message of frames fs is stored in a slot, and
// its size.
func slotFits(fs [][]byte) (int, bool) {
	if len(fs) > maxSlotFrames {
		return 0, false
	}
	size := len(fs)
	for _, f := range fs {
		if len(f) > 255 {
			return 0, false
		}
		size += len(f)
	}
	return size - len(fs), size <= slotBytes
}

// copyInto makes *dst a copy of the message of frames fs in the sender's
// memory, building it in its place (a message is 8 words: see tryPopInto).
func (l *inprocLink) copyInto(dst *Msg, fs [][]byte) {
	c := &l.c
	if len(fs) == 1 {
		f := fs[0]
		b := c.frame(len(f), false)
		copy(b, f)
		c.finishOne(dst, b, len(f))
		return
	}
	cs := l.frames[:0]
	size := 0
	for _, f := range fs {
		b := c.frame(len(f), false)
		copy(b, f)
		cs = append(cs, b)
		size += len(f)
	}
	c.finishInto(dst, cs, size)
	clear(cs)
	l.frames = cs[:0]
}

// slot returns the next slot to write, linking a new chunk when the last
// is full.
func (l *inprocLink) slot() (*ringChunk, int) {
	if l.pos == ringSlots {
		var nc *ringChunk
		for i := range l.r.spares {
			if nc = l.r.spares[i].Swap(nil); nc != nil {
				break
			}
		}
		if nc == nil {
			nc = new(ringChunk) // zeroed here: its lines are this core's already
		} else {
			nc.own()
		}
		nc.next = nil
		l.tail.next = nc
		l.tail, l.pos = nc, 0
	}
	return l.tail, l.pos
}

// own writes to every cache line of a spare chunk's slots and headers (the
// lines the sender writes for messages stored in their slots) before the
// sender uses it. The receiver read them last, so they are in its core's
// cache; a write needs them back, and each message's write would
// otherwise wait for that, one message at a time (every Send takes a lock,
// which waits for the writes before it). Writing them all here has their
// transfers overlap: on the project's 2-core VM, a 64 B stream between
// two cores ran at 4.5-5.2M msgs/s without it and 9.2-11.8M with it
// (bench/README.md). The receiver is through the chunk (it gave it back
// as a spare), so nothing reads what is written.
func (ch *ringChunk) own() {
	for i := range ch.data {
		ch.data[i][0] = 0
		ch.data[i][cacheLine] = 0
	}
	for i := 0; i < ringSlots; i += cacheLine / 4 {
		ch.hdr[i] = 0
	}
}

// cacheLine is the cache line size own assumes (64 bytes on the machines
// zpeer runs on; a larger line only makes own write some lines twice).
const cacheLine = 64

// publish makes the slot just written (a message of size bytes) visible to
// the receiver, and reports whether the pipe is to be listed in the
// receiver's fair queue.
func (l *inprocLink) publish(size int) bool {
	l.pos++
	l.sent++
	l.sentB += int64(size)
	r := l.r
	r.pub.Store(l.sent)
	return !r.listed.Load() && r.listed.CompareAndSwap(false, true)
}

// stop makes the link hand nothing more over, and returns the body bytes
// it ever published. The receiving fair queue calls it when the peer is
// gone, before counting what the ring holds as orphans.
func (l *inprocLink) stop() int64 {
	p := l.p
	p.wmu.Lock()
	p.wclosed = true
	b := l.sentB
	p.wmu.Unlock()
	return b
}

// closed implements link: terminate calls it.
func (l *inprocLink) closed(err error) {
	p := l.p
	p.wmu.Lock()
	l.c.leave()
	l.pending = nil
	p.wmu.Unlock()
	l.peer.terminate(err)
}

// counts implements link: each end counts what it handed over.
func (l *inprocLink) counts(c *Counters) {
	p, q := l.p, l.peer
	p.wmu.Lock()
	c.MsgsOut, c.BytesOut = l.handed, l.handedB
	p.wmu.Unlock()
	ql := p.ring.from // q's link
	q.wmu.Lock()
	c.MsgsIn, c.BytesIn = ql.handed, ql.handedB
	q.wmu.Unlock()
}

// next moves the receiver to the ring's next chunk, giving the one it is
// through to the sender for reuse. The caller holds the fair queue's mu.
func (r *inprocRing) next() {
	old := r.head
	r.head, r.pos = old.next, 0
	old.next = nil
	for i := range r.spares {
		if r.spares[i].CompareAndSwap(nil, old) {
			return
		}
	}
}

// emptyLocked reports whether the receiver has taken everything published.
// When it has, the pipe is no longer listed (its sender lists it again
// with its next message). The caller holds the fair queue's mu.
func (r *inprocRing) emptyLocked() bool {
	if r.taken < r.avail {
		return false
	}
	if r.avail = r.pub.Load(); r.taken < r.avail {
		return false
	}
	r.listed.Store(false)
	// A message published before the store may have found the pipe
	// listed: look once more.
	if r.avail = r.pub.Load(); r.taken < r.avail && r.listed.CompareAndSwap(false, true) {
		return false
	}
	return true
}

// tookLocked counts a message of size bytes as taken from p, and wakes p's
// sender if it waits and p is down to its low-water mark. The caller holds
// q.mu.
func (r *inprocRing) tookLocked(p *pipe, size int, q *fairQueue) {
	r.taken++
	r.takenB += int64(size)
	if r.tick--; r.tick <= 0 {
		r.tick = r.every
		r.progress.Store(r.taken)
	}
	if !r.waiting {
		return
	}
	n, b := r.sent-r.taken, r.sentB-r.takenB
	if n > 0 && (n > int64(q.hwm/2) || b > q.hwmB/2) {
		return
	}
	r.waiting = false
	p.peer.s.signalReady()
}

func cloneMsg(m *Msg) Msg {
	fs := make([][]byte, len(m.Frames))
	for i, f := range m.Frames {
		fs[i] = append([]byte{}, f...)
	}
	return Msg{Frames: fs, Priority: m.Priority}
}
