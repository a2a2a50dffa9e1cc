package socket

import (
	"fmt"
	"net"
	"sync"
)

// inproc:// connects sockets of one process without a network, a ZMTP
// greeting or a handshake: a connected pair of pipes hands each message
// over in memory. Send copies the frames (into the sender's pooled slab
// memory, so a sender that reuses its message and a receiver that frees
// what it reads allocate nothing), passes the copy through the receiving
// socket type's incoming filter, as a reader goroutine would, and appends
// it to the receiving pipe's mailbox. The receiving socket's fair queue
// takes a whole mailbox at a time when that pipe's inbox runs empty, so
// sender and receiver meet on one lock per batch rather than per message
// (see mailbox). The high-water mark is the receiver's receive mark (a
// sender finds the peer full when the receiver holds RecvHWM messages or
// RecvHWMBytes of it, mailbox and inbox together); the send mark plays no
// part, as nothing waits on the sending side. A sender blocked on a full
// peer is woken when the receiver has read it down to half its mark.
// Close is immediate: what was handed over stays deliverable to the
// receiver, as with any peer that goes.
//
// Per message, each end writes only memory of its own or memory it holds
// the lock of anyway: the sender counts what it hands over in the mailbox
// (the counts both ends' Stats show), the receiver what it took under its
// fair queue's lock, and the sender looks at the latter only when its last
// look says the peer is full. The copy is built in its place in the
// mailbox, and a PULL, DEALER or PAIR peer's incoming filter, which passes
// everything, is not called.
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
			p, err := s.inprocLink(d, ln)
			if err == nil {
				select {
				case <-p.done:
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

// inprocLink connects d's socket to the one bound at ln: a pipe in each,
// each the other's peer, registered and attached in both sockets.
func (s *Socket) inprocLink(d *dialer, ln *inprocListener) (*pipe, error) {
	b := ln.s
	pa := newInprocPipe(s, d.ep.raw, b)
	pb := newInprocPipe(b, ln.l.bound, s)
	pa.peer, pb.peer = pb, pa
	for _, p := range []*pipe{pa, pb} {
		ip, r := p.ip, p.peer.s
		ip.hwm, ip.hwmB = int64(r.fq.hwm), r.fq.hwmB
		if _, ok := r.proto.(passIncoming); !ok {
			ip.incoming = r.proto.incoming // (else no call per message)
		}
	}
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
	pb.linkUp()
	pa.linkUp()
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

// inprocState is an inproc pipe's sending side, guarded by the pipe's wmu.
type inprocState struct {
	up      bool     // both ends attached: hand messages over
	pending []Msg    // what was sent before that (copies)
	c       carver   // the memory of the copies handed over
	frames  [][]byte // scratch for the frames being copied
	// What this end ever handed over, and its last look at what the
	// receiver took of it (mailbox.taken): their difference bounds what the
	// peer holds, without touching the receiver's memory per message.
	sent, sentB int64
	seen, seenB int64
	// copies of the peer's fixed settings, so that the sender reads
	// nothing per message from the receiver's busy memory
	hwm      int64
	hwmB     int64
	incoming func(*pipe, Msg) (Msg, bool) // nil: the peer takes every message as it is
}

// mailbox is an inproc pipe's incoming side: the sending end appends the
// copies it hands over under mu, and the receiving socket's fair queue
// moves them into the pipe's inbox a whole batch at a time (refillLocked),
// when the inbox runs empty. The sender takes the fair queue's lock only
// to list the pipe when its mailbox was idle, and wakes the receivers
// then; so sender and receiver share one lock per batch, not per message.
//
// The high-water mark is the receiver's receive mark over the inbox and
// the mailbox together: the sender counts what it sent (inprocState), the
// receiver what it took, under the fair queue's lock, with plain adds. The
// sender looks at what was taken, under that lock, only when its last
// look says the peer is full; when it still is, it sets waiting, so that
// the receiver signals the sending socket once the peer is down to half
// its mark (libzmq's low-water mark): a blocked sender wakes once per half
// mark, not once per message.
type mailbox struct {
	mu     sync.Mutex
	q      []Msg // guarded by mu
	bytes  int64 // guarded by mu
	listed bool  // guarded by mu: the pipe is active in the fair queue, or its sender is listing it
	closed bool  // guarded by mu: the pipe is gone, nothing more is handed over
	// everything the sender handed over, filtered out or not: the pipe's
	// MsgsIn and BytesIn, and the sending end's MsgsOut and BytesOut
	// (pipe.counters). Counted under mu, which the sender holds anyway,
	// rather than with atomic adds per message.
	handed, handedB uint64 // guarded by mu

	// The receiver's side, guarded by the receiving socket's fq.mu, on
	// cache lines of its own: Recv writes it per message, the sender reads
	// it once per mark or so.
	_             [64]byte
	taken, takenB int64 // messages and bytes Recv took from the pipe
	waiting       bool  // a sender found the peer full and waits for a signal
	sent, sentB   int64 // the sender's counts when it set waiting
	_             [64]byte
}

// counts returns what the sender handed over (mailbox.handed).
func (mb *mailbox) counts() (msgs, bytes uint64) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.handed, mb.handedB
}

// took counts m (size bytes) as taken from p, holding the fair queue's mu,
// and wakes p's sender if it waits and p is down to its low-water mark.
func (mb *mailbox) took(p *pipe, size int, q *fairQueue) {
	mb.taken++
	mb.takenB += int64(size)
	if !mb.waiting {
		return
	}
	n, b := mb.sent-mb.taken, mb.sentB-mb.takenB
	if n > 0 && (n > int64(q.hwm/2) || b > q.hwmB/2) {
		return
	}
	mb.waiting = false
	p.peer.s.signalReady()
}

// refillLocked moves p's mailbox into its inbox and reports whether the
// inbox holds anything now. When there is nothing, p is no longer listed
// (its sender lists it again with the next message). The caller holds
// q.mu.
func (q *fairQueue) refillLocked(p *pipe) bool {
	mb := p.mb
	mb.mu.Lock()
	if len(mb.q) > 0 {
		if p.in.len() == 0 {
			// swap the buffers: the inbox's empty one serves the sender next
			old := p.in.q[:0]
			p.in.q, p.in.head = mb.q, 0
			mb.q = old
		} else {
			p.in.put(mb.q)
			clear(mb.q)
			mb.q = mb.q[:0]
		}
		p.in.bytes += mb.bytes
		mb.bytes = 0
	}
	ok := p.in.len() > 0
	if !ok {
		mb.listed = false
	}
	mb.mu.Unlock()
	return ok
}

// list makes p, whose mailbox was idle, active in the fair queue and wakes
// a receiver.
func (q *fairQueue) list(p *pipe) {
	q.mu.Lock()
	if p.in.active || !q.refillLocked(p) {
		q.mu.Unlock()
		return
	}
	q.activateLocked(p)
	q.mu.Unlock()
	q.wake()
}

func newInprocPipe(s *Socket, endpoint string, other *Socket) *pipe {
	p := newPipeBase(s, endpoint, "inproc", other.typ.String(), other.opts.Identity)
	p.ip = &inprocState{}
	p.mb = &mailbox{}
	return p
}

// linkUp starts handing messages over, those sent meanwhile first (they
// pass the mark, as a forced message would: there are few of them, sent
// between the link and now).
func (p *pipe) linkUp() {
	p.wmu.Lock()
	p.ip.up = true
	pending := p.ip.pending
	p.ip.pending = nil
	list := false
	for i := range pending {
		if !p.wclosed {
			l, err := p.handOver(&pending[i])
			list = list || (err == nil && l)
		}
		pending[i] = Msg{}
	}
	p.wmu.Unlock()
	if list {
		p.peer.s.fq.list(p.peer)
	}
}

// inprocReady is ready for an inproc pipe: its peer has room.
func (p *pipe) inprocReady() bool {
	p.wmu.Lock()
	ok := !p.wclosed && p.roomLocked()
	p.wmu.Unlock()
	return ok
}

// roomLocked reports whether the peer is below its receive marks. When it
// is not, it asks to be signalled (the sending socket's signalReady) when
// it is again. The caller holds wmu.
func (p *pipe) roomLocked() bool {
	ip, q := p.ip, p.peer
	fq := q.s.fq
	if !ip.up {
		return true // pending: what is sent waits for the link
	}
	if ip.fits() && !fq.orphanFull.Load() {
		return true
	}
	// Our last look says full (or orphans may be): look again.
	mb := q.mb
	fq.mu.Lock()
	ip.seen, ip.seenB = mb.taken, mb.takenB
	ok := ip.fits()
	if !ok {
		mb.sent, mb.sentB, mb.waiting = ip.sent, ip.sentB, true
	} else if fq.orphansFullLocked() {
		ok = false
		fq.orphanWait = append(fq.orphanWait, p.s)
	}
	fq.mu.Unlock()
	return ok
}

// fits reports whether what was handed over and not yet seen taken is
// below the marks of fq.
func (ip *inprocState) fits() bool {
	n := ip.sent - ip.seen
	return n < ip.hwm && (n == 0 || ip.sentB-ip.seenB < ip.hwmB)
}

// inprocSend is enqueue for an inproc pipe. A forced message (a
// subscription, say) waits for room, as a reader would, without holding
// wmu; it gives up when either end goes.
func (p *pipe) inprocSend(m *Msg, force bool) error {
	for {
		p.wmu.Lock()
		if p.wclosed {
			p.wmu.Unlock()
			return ErrClosed
		}
		if !p.ip.up {
			p.ip.pending = append(p.ip.pending, cloneMsg(m))
			p.wmu.Unlock()
			return nil
		}
		if !p.roomLocked() {
			if !force {
				p.wmu.Unlock()
				return errFull
			}
			wait := p.s.readyWait()
			if !p.roomLocked() {
				p.wmu.Unlock()
				q := p.peer
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
		list, err := p.handOver(m)
		p.wmu.Unlock()
		if list {
			p.peer.s.fq.list(p.peer)
		}
		return err
	}
}

// handOver copies m into the peer's memory and appends it to the peer's
// mailbox; it reports whether the peer is to be listed in its fair queue
// (fairQueue.list, called without wmu). The caller holds wmu and has
// checked for room.
func (p *pipe) handOver(m *Msg) (bool, error) {
	q := p.peer
	c := &p.ip.c
	// The frames' copies: one (the usual message), or fs.
	var one []byte
	var fs [][]byte
	size := 0
	if len(m.Frames) == 1 {
		f := m.Frames[0]
		one = c.frame(len(f), false)
		copy(one, f)
		size = len(f)
	} else {
		fs = p.ip.frames[:0]
		for _, f := range m.Frames {
			b := c.frame(len(f), false)
			copy(b, f)
			fs = append(fs, b)
			size += len(f)
		}
	}
	finish := func(dst *Msg) {
		if fs == nil {
			c.finishOne(dst, one, size)
			return
		}
		c.finishInto(dst, fs, size)
		clear(fs)
		p.ip.frames = fs[:0]
	}
	mb := q.mb
	if p.ip.incoming == nil {
		// The copy is made in its place in the mailbox: a message is 8
		// words, and building it once where it stays is measurably
		// cheaper than copying it there (see tryPopInto).
		mb.mu.Lock()
		mb.handed++
		mb.handedB += uint64(size)
		if mb.closed {
			mb.mu.Unlock()
			var cp Msg
			finish(&cp)
			cp.Free()
			return false, ErrClosed
		}
		n := len(mb.q)
		if n < cap(mb.q) {
			mb.q = mb.q[:n+1]
		} else {
			mb.q = append(mb.q, Msg{})
		}
		finish(&mb.q[n])
		return p.postedLocked(mb, size), nil
	}
	var cp Msg
	finish(&cp)
	out, ok := p.ip.incoming(q, cp)
	mb.mu.Lock()
	mb.handed++
	mb.handedB += uint64(size)
	if !ok {
		mb.mu.Unlock()
		cp.Free()
		return false, nil
	}
	if mb.closed {
		mb.mu.Unlock()
		out.Free()
		return false, ErrClosed
	}
	mb.q = append(mb.q, out)
	return p.postedLocked(mb, out.size), nil
}

// postedLocked accounts for a message of size bytes just appended to mb,
// unlocks mb.mu and reports whether the peer is to be listed.
func (p *pipe) postedLocked(mb *mailbox, size int) bool {
	mb.bytes += int64(size)
	list := !mb.listed
	mb.listed = true
	p.ip.sent++
	p.ip.sentB += int64(size)
	mb.mu.Unlock()
	return list
}

func cloneMsg(m *Msg) Msg {
	fs := make([][]byte, len(m.Frames))
	for i, f := range m.Frames {
		fs[i] = append([]byte{}, f...)
	}
	return Msg{Frames: fs, Priority: m.Priority}
}

// inprocClose releases the sending side's memory; terminate calls it.
func (p *pipe) inprocClose() {
	p.wmu.Lock()
	p.ip.c.leave()
	p.ip.pending = nil
	p.wmu.Unlock()
}
