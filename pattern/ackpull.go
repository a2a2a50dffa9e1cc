package pattern

import (
	"context"
	"errors"
	"github.com/zpeer/zpeer/internal/eventlog"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/codecwire"
	"github.com/zpeer/zpeer/socket"
)

// ackPuller is the acknowledged mode of a Puller: one DEALER socket
// connected to every pusher, WithWorkers workers taking messages from it,
// and acks batched per pusher connection. It starts no goroutine per
// pusher: the socket's peer hooks greet a pusher (the hello granting
// credit) and flush acks that were waiting for room.
type ackPuller[T any] struct {
	pl   *Puller[T]
	sock *socket.Socket
	wg   sync.WaitGroup // workers

	// Lock order: rmu before pusherPeer.amu; mu and dmu are each held
	// alone (never with another of these).
	rmu sync.Mutex // one release at a time; taken before pusherPeer.amu

	// The connected pushers and the acks kept for departed ones, guarded
	// by mu.
	mu    sync.Mutex
	peers map[*socket.Peer]*pusherPeer
	// left holds the acks due on an endpoint whose connection went before
	// they were sent, for its next connection: they settle messages the
	// pusher would otherwise redeliver.
	left map[string][]byte

	// Deduplication, guarded by dmu.
	dmu   sync.Mutex
	seen  map[codec.ID]*pusherPeer   // being processed: the first copy's pusher; nil: processed
	extra map[codec.ID][]*pusherPeer // duplicates that arrived while the first was processed
	ring  []codec.ID                 // the processed ids in seen, oldest first from pos
	pos   int
}

// pusherPeer is one connection to a pusher.
type pusherPeer struct {
	peer *socket.Peer

	// The acks due on this connection, guarded by amu.
	amu   sync.Mutex
	ids   []byte // acks due, 16 bytes each
	spare []byte
	// held are acks whose handlers returned but whose effects are not yet
	// known durable: with WithBeforeAck, release moves them to ids once
	// the function has run.
	held []byte
	gone atomic.Bool // detached: acks go to ackPuller.left (set under amu)
}

func newAckPuller[T any](pl *Puller[T]) (*ackPuller[T], error) {
	a := &ackPuller[T]{pl: pl, peers: make(map[*socket.Peer]*pusherPeer), left: make(map[string][]byte),
		seen: make(map[codec.ID]*pusherPeer, pl.o.dedupWindow), extra: make(map[codec.ID][]*pusherPeer),
		ring: make([]codec.ID, pl.o.dedupWindow)}
	// The DEALER sends acks in batches: written at once from the worker
	// that flushes them, they reach the pusher without waiting for a
	// writer goroutine to be scheduled.
	var err error
	a.sock, err = newSocket(socket.DEALER, &pl.o,
		&socket.PeerHooks{Attach: a.attach, Detach: a.detach, Ready: a.ready},
		socket.WithNoBlock(), socket.WithLowLatency(true), pl.ref.eventOption(a.pushers))
	if err != nil {
		return nil, err
	}
	return a, nil
}

// start connects to the pushers and starts the workers.
func (a *ackPuller[T]) start() error {
	a.wg.Add(a.pl.o.workers)
	for range a.pl.o.workers {
		go a.worker()
	}
	return setup(a.sock, a.pl.o)
}

// maxLeft bounds the acks kept for a connection that went, in bytes: the
// dedup window's worth.
func (a *ackPuller[T]) maxLeft() int { return 16 * len(a.ring) }

// attach is the socket's Attach hook: every new connection starts with a
// hello announcing the credit, then the acks left over from the last
// connection to the endpoint.
func (a *ackPuller[T]) attach(sp *socket.Peer) {
	ps := &pusherPeer{peer: sp}
	a.mu.Lock()
	a.peers[sp] = ps
	ps.ids = a.left[sp.Endpoint()]
	delete(a.left, sp.Endpoint())
	a.mu.Unlock()
	env := codec.Envelope{Kind: codec.KindAck, Sender: a.pl.o.name, Timestamp: nowNano(),
		Headers: map[string]string{creditHeader: strconv.Itoa(a.pl.o.credit), startHeader: "1"}}
	if frame, err := encodeEnvelope(&env); err == nil {
		a.sock.SendTo(context.Background(), sp, socket.Msg{Frames: [][]byte{empty, frame}})
	}
	a.flush(ps)
}

// detach is the socket's Detach hook: acks not yet sent wait for the
// endpoint's next connection.
func (a *ackPuller[T]) detach(sp *socket.Peer, _ error) {
	a.mu.Lock()
	ps := a.peers[sp]
	delete(a.peers, sp)
	a.mu.Unlock()
	if ps == nil {
		return
	}
	ps.amu.Lock()
	ps.gone.Store(true)
	ids := ps.ids
	ps.ids, ps.spare = nil, nil
	ps.amu.Unlock()
	a.keepLeft(sp.Endpoint(), ids)
}

// ready is the socket's Ready hook: acks that found the queue full go now.
func (a *ackPuller[T]) ready(sp *socket.Peer) {
	a.mu.Lock()
	ps := a.peers[sp]
	a.mu.Unlock()
	if ps != nil {
		a.flush(ps)
	}
}

// keepLeft keeps ids (16 bytes each) for ep's next connection, the newest
// maxLeft bytes at most.
func (a *ackPuller[T]) keepLeft(ep string, ids []byte) {
	if len(ids) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pl.ctx.Err() != nil {
		return // closing: nothing will connect again
	}
	all := append(a.left[ep], ids...)
	if m := a.maxLeft(); len(all) > m {
		all = all[len(all)-m:]
	}
	a.left[ep] = all
}

// pusher returns the state of the connection a message came from: the
// attached one, or a detached stand-in whose acks go to left.
func (a *ackPuller[T]) pusher(sp *socket.Peer) *pusherPeer {
	a.mu.Lock()
	ps := a.peers[sp]
	a.mu.Unlock()
	if ps == nil {
		ps = &pusherPeer{peer: sp}
		ps.gone.Store(true)
	}
	return ps
}

func (a *ackPuller[T]) connect(ep string) error { return a.sock.Connect(ep) }

// disconnect drops ep, and the acks kept for its next connection: there
// will be none.
func (a *ackPuller[T]) disconnect(ep string) error {
	if err := a.sock.Disconnect(ep); err != nil {
		return err
	}
	a.mu.Lock()
	delete(a.left, ep)
	a.mu.Unlock()
	return nil
}

func (a *ackPuller[T]) pushers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.peers)
}

// polling is a cancelled context: Recv with it takes a waiting message
// or returns at once.
var polling = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// worker takes messages from the socket and processes them: the handler
// never runs more than WithWorkers times at once, and no goroutine hand-off
// separates receiving a message from processing it.
//
// Acks are queued per pusher as messages finish, and a worker sends those
// it queued when it runs out of waiting messages, or a pusher's when half
// the credit is due on it: a busy puller acks in batches (the pusher
// refills half the window at once, while the other half keeps the worker
// busy), and an idle one at once.
func (a *ackPuller[T]) worker() {
	defer a.wg.Done()
	ctx := a.pl.ctx
	batch := max(1, a.pl.o.credit/2)
	var dirty []*pusherPeer // pushers this worker queued acks on since it last flushed
	var last *pusherPeer    // the pusher of the previous message
	for {
		m, sp, err := a.sock.RecvFrom(polling)
		if err != nil {
			a.release(dirty...)
			for i, ps := range dirty {
				a.flush(ps)
				dirty[i] = nil
			}
			dirty = dirty[:0]
			if m, sp, err = a.sock.RecvFrom(ctx); err != nil {
				return
			}
		}
		if ctx.Err() != nil {
			m.Free()
			return // closing: the pusher redelivers it
		}
		ps := last
		if ps == nil || ps.peer != sp || ps.gone.Load() {
			ps = a.pusher(sp)
			last = ps
		}
		due, kept := a.process(ps, m)
		if kept {
			m.TakeFrame(len(m.Frames) - 1) // the value is (a part of) the received frame
		} else {
			m.Free() // process has copied what it keeps
		}
		if due == 0 {
			continue
		}
		if due >= batch {
			a.release(ps)
			a.flush(ps)
		} else if !containsPeer(dirty, ps) {
			dirty = append(dirty, ps)
		}
	}
}

func containsPeer(l []*pusherPeer, ps *pusherPeer) bool {
	for _, q := range l {
		if q == ps {
			return true
		}
	}
	return false
}

// process handles one message from ps: it drops it (malformed),
// acknowledges it again (a duplicate already processed), parks it (a
// duplicate being processed), or runs the handler and acks or nacks it.
// It returns how many acks are due on ps when it queued one (0 when it
// did not), and whether the handler was given the received memory (see
// takeBody).
func (a *ackPuller[T]) process(ps *pusherPeer, m socket.Msg) (due int, kept bool) {
	c := &a.pl.c
	n := len(m.Frames)
	var env codec.View
	if n == 0 || codec.DecodeView(m.Frames[n-1], &env) != nil || env.Kind != codec.KindData {
		c.dropped.Add(1)
		return 0, false
	}
	a.dmu.Lock()
	if first, dup := a.seen[env.ID]; dup {
		c.dups.Add(1)
		if first == nil { // processed: acknowledge again
			a.dmu.Unlock()
			return a.ack(ps, env.ID), false
		}
		// Being processed: answer with the first copy's outcome.
		a.extra[env.ID] = append(a.extra[env.ID], ps)
		a.dmu.Unlock()
		return 0, false
	}
	a.seen[env.ID] = ps
	a.dmu.Unlock()
	if _, ok := env.Header(startHeader); ok {
		// The pusher counts this delivery against WithMaxDeliveries only
		// if it hears that the handler started.
		id := env.ID // (env itself must not escape)
		a.sendIDs(ps, codec.KindStart, id[:])
	}
	kept, ctx, err := a.pl.handle(&env)
	if err != nil && a.pl.ctx.Err() != nil && errors.Is(err, context.Canceled) {
		a.dmu.Lock()
		delete(a.seen, env.ID) // closing: neither ack nor nack; the pusher redelivers
		a.dmu.Unlock()
		return 0, kept
	}
	if t := a.pl.o.tracer; t != nil {
		_, end := t.Start(ctx, Operation{Kind: OpSettle, Role: "puller", Destination: a.pl.o.service, MessageID: env.ID}, noCarrier{})
		defer func() { end(err) }()
	}
	return a.finish(ps, env.ID, err), kept
}

// finish acks (or nacks) every copy of id received so far. The ack on
// self, the caller's pusher, is left for the caller to flush (finish
// returns how many are due on self, 0 after a nack); those on other
// pushers are flushed now.
func (a *ackPuller[T]) finish(self *pusherPeer, id codec.ID, err error) (due int) {
	a.dmu.Lock()
	// seen[id] is self: only the worker that put it there finishes id, and
	// duplicates that arrive meanwhile wait in extra.
	var more []*pusherPeer
	if len(a.extra) > 0 {
		if more = a.extra[id]; more != nil {
			delete(a.extra, id)
		}
	}
	if err == nil {
		a.seen[id] = nil
		// The ring holds processed ids only, each once: while one is in
		// it, its duplicates are acknowledged, never processed again.
		if old := a.ring[a.pos]; !old.IsZero() {
			delete(a.seen, old)
		}
		a.ring[a.pos] = id
		a.pos = (a.pos + 1) % len(a.ring)
	} else {
		delete(a.seen, id)
	}
	a.dmu.Unlock()
	for i := -1; i < len(more); i++ {
		ps := self
		if i >= 0 {
			ps = more[i]
		}
		if err == nil {
			n := a.ack(ps, id)
			if ps != self {
				a.release(ps)
				a.flush(ps)
			} else {
				due = n
			}
			a.pl.c.acked.Add(1)
		} else {
			a.nack(ps, id, err)
		}
	}
	return due
}

// ack queues an ack on ps, and returns how many are due on it (at least
// 1); the caller flushes them (see worker).
func (a *ackPuller[T]) ack(ps *pusherPeer, id codec.ID) int {
	ps.amu.Lock()
	if a.pl.o.beforeAck != nil {
		// Held until release has run WithBeforeAck's function, even for a
		// pusher gone meanwhile (release keeps them for its endpoint).
		ps.held = append(ps.held, id[:]...)
		n := (len(ps.ids) + len(ps.held)) / 16
		ps.amu.Unlock()
		return n
	}
	if ps.gone.Load() {
		ps.amu.Unlock()
		if ps.peer != nil {
			a.keepLeft(ps.peer.Endpoint(), id[:])
		}
		return 1
	}
	ps.ids = append(ps.ids, id[:]...)
	n := len(ps.ids) / 16
	ps.amu.Unlock()
	return n
}

// release makes the acks held on pss sendable, after WithBeforeAck's
// function has made the effects of their handlers durable: it takes the
// acks held now (their handlers have returned), runs the function once
// (what those handlers did happened before it), then queues them. If the
// function fails they stay held, and the next release tries again; the
// pusher redelivers what stays unacknowledged past its ack timeout. It
// runs on workers only, never on an I/O goroutine.
func (a *ackPuller[T]) release(pss ...*pusherPeer) {
	fn := a.pl.o.beforeAck
	if fn == nil {
		return
	}
	a.rmu.Lock()
	defer a.rmu.Unlock()
	taken := make([][]byte, len(pss))
	any := false
	for i, ps := range pss {
		ps.amu.Lock()
		taken[i], ps.held = ps.held, nil
		ps.amu.Unlock()
		any = any || len(taken[i]) > 0
	}
	if !any {
		return
	}
	if err := fn(); err != nil {
		a.pl.o.elog.Log(slog.LevelWarn, eventlog.AckHeld, "reason", err.Error())
		for i, ps := range pss {
			ps.amu.Lock()
			ps.held = append(taken[i], ps.held...)
			ps.amu.Unlock()
		}
		return
	}
	for i, ps := range pss {
		if len(taken[i]) == 0 {
			continue
		}
		ps.amu.Lock()
		if ps.gone.Load() {
			ps.amu.Unlock()
			a.keepLeft(ps.peer.Endpoint(), taken[i])
			continue
		}
		ps.ids = append(ps.ids, taken[i]...)
		ps.amu.Unlock()
	}
}

func (a *ackPuller[T]) nack(ps *pusherPeer, id codec.ID, cause error) {
	bp := codecwire.GetBuffer()
	defer codecwire.PutBuffer(bp)
	body, _ := marshalBody(*bp, cause.Error())
	*bp = body
	env := codec.Envelope{ID: id, Kind: codec.KindNack, Sender: a.pl.o.name, Timestamp: nowNano(), Body: body}
	if frame, err := encodeEnvelope(&env); err == nil {
		// Best effort: a lost nack becomes an ack timeout at the pusher.
		a.sock.SendTo(context.Background(), ps.peer, socket.Msg{Frames: [][]byte{empty, frame}})
	}
}

// sendIDs sends ps an envelope of the given kind whose body is ids (16
// bytes each).
func (a *ackPuller[T]) sendIDs(ps *pusherPeer, kind codec.Kind, ids []byte) error {
	bp := codecwire.GetBuffer()
	defer codecwire.PutBuffer(bp)
	body, _ := marshalBody(*bp, ids)
	*bp = body
	env := codec.Envelope{Kind: kind, Sender: a.pl.o.name, Timestamp: nowNano(), Body: body}
	frame, err := encodeEnvelope(&env)
	if err != nil {
		return err
	}
	return a.sock.SendTo(context.Background(), ps.peer, socket.Msg{Frames: [][]byte{empty, frame}})
}

// flush sends the acks due on ps. Acks that find its queue full are kept
// and sent by the socket's Ready hook; those of a connection that went
// wait for the endpoint's next one.
func (a *ackPuller[T]) flush(ps *pusherPeer) {
	for {
		ps.amu.Lock()
		ids := ps.ids
		if len(ids) == 0 || ps.gone.Load() {
			ps.amu.Unlock()
			return
		}
		ps.ids = ps.spare[:0]
		ps.spare = nil
		ps.amu.Unlock()
		err := a.sendIDs(ps, codec.KindAck, ids)
		ps.amu.Lock()
		if err == nil {
			ps.spare = ids[:0]
			ps.amu.Unlock()
			return
		}
		// Keep them, oldest first, but no more than the dedup window's worth.
		ids = append(ids, ps.ids...)
		if m := a.maxLeft(); len(ids) > m {
			ids = ids[len(ids)-m:]
		}
		gone := ps.gone.Load()
		if gone {
			ps.ids = nil
		} else {
			ps.ids = ids
		}
		ps.amu.Unlock()
		switch {
		case gone || errors.Is(err, socket.ErrPeerLost):
			if !gone {
				// The Detach hook is on its way; it moves what is
				// left on ps.
				return
			}
			a.keepLeft(ps.peer.Endpoint(), ids)
			return
		case errors.Is(err, socket.ErrWouldBlock) && ps.peer.Ready():
			continue // room came before the Ready hook could see these
		default:
			return
		}
	}
}

func (a *ackPuller[T]) stats(s *Stats) {
	addSocket(&s.Socket, a.sock.Stats())
}

// close runs after the Puller's context is cancelled: it waits for the
// workers, sends the acks due and closes the socket.
func (a *ackPuller[T]) close() {
	a.wg.Wait()
	a.mu.Lock()
	peers := make([]*pusherPeer, 0, len(a.peers))
	for _, ps := range a.peers {
		peers = append(peers, ps)
	}
	a.mu.Unlock()
	for _, ps := range peers {
		a.flush(ps)
	}
	a.sock.Close()
}
