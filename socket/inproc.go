package socket

import (
	"fmt"
	"net"
	"sync"
)

// inproc:// connects sockets of one process without a network, a ZMTP
// greeting or a handshake: a connected pair of pipes hands each message
// over in memory. Send copies the frames (into the receiver's pooled slab
// memory, so a sender that reuses its message and a receiver that frees
// what it reads allocate nothing) and queues the copy straight into the
// receiving socket's fair queue, after its socket type's incoming filter,
// as a reader goroutine would. The high-water mark is the receiver's
// receive mark (a sender finds the peer full when the receiver holds
// RecvHWM messages or RecvHWMBytes of it); the send mark plays no part, as
// nothing waits on the sending side. Close is immediate: what was handed
// over stays deliverable to the receiver, as with any peer that goes.
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
			s.rejected.Add(1)
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
	one     [1]Msg   // the batch of one handed to the peer's fair queue
}

func newInprocPipe(s *Socket, endpoint string, other *Socket) *pipe {
	p := &pipe{
		s:        s,
		id:       s.peerIDs.Add(1),
		endpoint: endpoint,
		remote:   "inproc",
		peerType: other.typ.String(),
		identity: other.opts.Identity,
		out:      &batch{},
		spare:    &batch{},
		urgent:   &batch{},
		uspare:   &batch{},
		kick:     make(chan struct{}, 1),
		in:       inbox{space: make(chan struct{}, 1)},
		done:     make(chan struct{}),
		ip:       &inprocState{},
	}
	p.face.p = p
	return p
}

// linkUp starts handing messages over, those sent meanwhile first.
func (p *pipe) linkUp() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.ip.up = true
	for i, m := range p.ip.pending {
		if !p.wclosed {
			p.handOver(m, true)
		}
		p.ip.pending[i] = Msg{}
	}
	p.ip.pending = nil
}

// inprocReady is ready for an inproc pipe: its peer's inbox has room.
func (p *pipe) inprocReady() bool {
	return !p.isDone() && p.peer.s.fq.room(p.peer)
}

// room reports whether p's inbox is below its marks, without the lock (the
// inproc sender's check: offer checks again, holding it).
func (q *fairQueue) room(p *pipe) bool {
	n := p.in.n.Load()
	return n < int64(q.hwm) && (n == 0 || p.in.b.Load() < q.hwmB)
}

// inprocSend is enqueue for an inproc pipe.
func (p *pipe) inprocSend(m Msg, force bool) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.wclosed {
		return ErrClosed
	}
	if !p.ip.up {
		p.ip.pending = append(p.ip.pending, cloneMsg(m))
		return nil
	}
	return p.handOver(m, force)
}

// handOver copies m into the peer's memory and queues it there. The caller
// holds wmu.
func (p *pipe) handOver(m Msg, force bool) error {
	q := p.peer
	fq := q.s.fq
	c := &p.ip.c
	fs := p.ip.frames[:0]
	size := 0
	for _, f := range m.Frames {
		b := c.frame(len(f), false)
		copy(b, f)
		fs = append(fs, b)
		size += len(f)
	}
	cp := c.finish(fs, size)
	clear(fs)
	p.ip.frames = fs[:0]
	p.stats.msgsOut.Add(1)
	p.stats.bytesOut.Add(uint64(size))
	q.stats.msgsIn.Add(1)
	q.stats.bytesIn.Add(uint64(size))
	if !force && !fq.room(q) {
		cp.Free()
		return errFull
	}
	out, ok := q.s.proto.incoming(q, cp)
	if !ok {
		cp.Free()
		return nil
	}
	if !fq.offer(q, out) {
		if !force {
			// Filled meanwhile (another sender of this socket, or the
			// socket's orphans): not handed over.
			out.Free()
			return errFull
		}
		// A forced message (a subscription, say) waits for room, as a
		// reader would.
		p.ip.one[0] = out
		fq.push(q, p.ip.one[:])
		p.ip.one[0] = Msg{}
	}
	return nil
}

func cloneMsg(m Msg) Msg {
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

// offer queues m in p's inbox if it has room now (the inproc hand-over: one
// critical section, no waiting), and reports whether it did.
func (q *fairQueue) offer(p *pipe, m Msg) bool {
	q.mu.Lock()
	if q.fullLocked(p) || (q.orphansFullLocked() && !p.in.gone) {
		q.mu.Unlock()
		return false
	}
	if p.in.gone {
		q.orphans++
		q.orphanBytes += int64(m.size)
	}
	p.in.bytes += int64(m.size)
	one := [1]Msg{m}
	p.in.put(one[:])
	if !p.in.active {
		p.in.active = true
		q.active = append(q.active, p)
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return true
}
