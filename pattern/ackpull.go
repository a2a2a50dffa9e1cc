package pattern

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// ackPuller is the acknowledged mode of a Puller: one DEALER socket per
// pusher endpoint, a shared pool of workers, and per-socket batched acks.
type ackPuller[T any] struct {
	pl  *Puller[T]
	sem chan struct{}  // one slot per worker, shared by every socket
	wg  sync.WaitGroup // workers
	awg sync.WaitGroup // ackers

	mu    sync.Mutex
	socks map[string]*pullSock

	dmu   sync.Mutex
	seen  map[codec.ID]*pullSock   // being processed: the first copy's socket; nil: processed
	extra map[codec.ID][]*pullSock // duplicates that arrived while the first was processed
	ring  []codec.ID               // the processed ids in seen, oldest first from pos
	pos   int
}

// pullSock is the connection to one pusher endpoint.
type pullSock struct {
	ep   string
	sock *socket.Socket
	up   atomic.Int32
	kick chan struct{}
	stop chan struct{}

	amu   sync.Mutex
	ids   []byte // acks due, 16 bytes each
	spare []byte
}

func newAckPuller[T any](pl *Puller[T]) *ackPuller[T] {
	return &ackPuller[T]{pl: pl, sem: make(chan struct{}, pl.o.workers), socks: make(map[string]*pullSock),
		seen: make(map[codec.ID]*pullSock, pl.o.dedupWindow), extra: make(map[codec.ID][]*pullSock),
		ring: make([]codec.ID, pl.o.dedupWindow)}
}

func (a *ackPuller[T]) connect(ep string) error {
	ps := &pullSock{ep: ep, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	// The DEALER only sends acks, in batches: written at once from the
	// worker that flushes them, they reach the pusher without waiting
	// for a writer goroutine to be scheduled.
	sopts := append([]socket.Option{
		socket.WithNoBlock(),
		socket.WithLowLatency(true),
		socket.WithEventHandler(func(ev socket.Event) { a.event(ps, ev) }),
	}, a.pl.o.sockOpts...)
	s, err := socket.New(socket.DEALER, sopts...)
	if err != nil {
		return err
	}
	ps.sock = s
	a.mu.Lock()
	if a.pl.ctx.Err() != nil {
		a.mu.Unlock()
		s.Close()
		return ErrClosed
	}
	if a.socks[ep] != nil {
		a.mu.Unlock()
		s.Close()
		return &endpointError{ep, "already connected"}
	}
	a.socks[ep] = ps
	a.wg.Add(a.pl.o.workers)
	a.awg.Add(1)
	a.mu.Unlock()
	for range a.pl.o.workers {
		go a.worker(ps)
	}
	go a.acker(ps)
	if err := s.Connect(ep); err != nil {
		a.disconnect(ep)
		return err
	}
	return nil
}

type endpointError struct{ ep, what string }

func (e *endpointError) Error() string {
	return "pattern: endpoint " + strconv.Quote(e.ep) + ": " + e.what
}
func (e *endpointError) Unwrap() error { return socket.ErrEndpoint }

func (a *ackPuller[T]) disconnect(ep string) error {
	a.mu.Lock()
	ps := a.socks[ep]
	delete(a.socks, ep)
	a.mu.Unlock()
	if ps == nil {
		return &endpointError{ep, "not connected"}
	}
	close(ps.stop)
	return ps.sock.Close()
}

func (a *ackPuller[T]) peers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, ps := range a.socks {
		n += int(ps.up.Load())
	}
	return n
}

// event runs on the socket's event goroutine: every new connection starts
// with a hello announcing the credit.
func (a *ackPuller[T]) event(ps *pullSock, ev socket.Event) {
	a.pl.ref.event(ev, a.peers)
	switch ev.Kind {
	case socket.EventConnected:
		ps.up.Add(1)
		env := codec.Envelope{Kind: codec.KindAck, Sender: a.pl.o.name, Timestamp: now().UnixNano(),
			Headers: map[string]string{creditHeader: strconv.Itoa(a.pl.o.credit)}}
		if frame, err := encodeEnvelope(&env); err == nil {
			ps.sock.Send(context.Background(), socket.Msg{Frames: [][]byte{empty, frame}})
		}
		// Acks left over from the last connection settle messages the
		// pusher may have requeued: send them now.
		ps.wake()
	case socket.EventDisconnected:
		ps.up.Add(-1)
	}
}

func (ps *pullSock) wake() {
	select {
	case ps.kick <- struct{}{}:
	default:
	}
}

// polling is a cancelled context: Recv with it takes a waiting message
// or returns at once.
var polling = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// worker takes messages from ps and processes them. Every socket has
// WithWorkers of them, and they share WithWorkers slots: the handler never
// runs more than that many times at once, and no goroutine hand-off
// separates receiving a message from processing it.
//
// Acks are queued on ps as messages finish, and the worker sends them
// when it runs out of waiting messages or has finished half its credit
// since it last sent: a busy puller acks in batches (the pusher refills
// half the window at once, while the other half keeps the worker busy),
// and an idle one at once.
func (a *ackPuller[T]) worker(ps *pullSock) {
	defer a.wg.Done()
	ctx := a.pl.ctx
	batch := max(1, a.pl.o.credit/2)
	acks := 0 // queued on ps since the last flush
	for {
		m, err := ps.sock.Recv(polling)
		if err != nil {
			if acks > 0 {
				a.flushFrom(ps)
				acks = 0
			}
			if m, err = ps.sock.Recv(ctx); err != nil {
				return
			}
		}
		select {
		case <-ps.stop:
			return
		default:
		}
		acked, kept, ok := a.process(ps, m)
		if !kept {
			m.Free() // process has copied what it keeps
		}
		if !ok {
			return
		}
		if acks += acked; acks >= batch {
			a.flushFrom(ps)
			acks = 0
		}
	}
}

// process handles one message received on ps: it drops it (malformed),
// acknowledges it again (a duplicate already processed), parks it (a
// duplicate being processed), or runs the handler and acks or nacks it.
// It returns how many acks it queued on ps, whether the handler was given
// the received memory (see takeBody), and false when the Puller closed
// while it waited for a worker slot.
func (a *ackPuller[T]) process(ps *pullSock, m socket.Msg) (acks int, kept, ok bool) {
	c := &a.pl.c
	n := len(m.Frames)
	var env codec.View
	if n == 0 || codec.DecodeView(m.Frames[n-1], &env) != nil || env.Kind != codec.KindData {
		c.dropped.Add(1)
		return 0, false, true
	}
	a.dmu.Lock()
	if first, dup := a.seen[env.ID]; dup {
		c.dups.Add(1)
		if first == nil { // processed: acknowledge again
			a.dmu.Unlock()
			ps.ack(env.ID)
			return 1, false, true
		}
		// Being processed: answer with the first copy's outcome.
		a.extra[env.ID] = append(a.extra[env.ID], ps)
		a.dmu.Unlock()
		return 0, false, true
	}
	a.seen[env.ID] = ps
	a.dmu.Unlock()
	select {
	case a.sem <- struct{}{}:
	case <-a.pl.ctx.Done():
		return 0, false, false
	}
	kept, err := a.pl.handle(env.Body)
	<-a.sem
	if err != nil && a.pl.ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return 0, kept, true // closing: neither ack nor nack; the pusher redelivers
	}
	a.finish(ps, env.ID, err)
	return 1, kept, true
}

// finish acks (or nacks) every copy of id received so far. The acks on
// self, the caller's socket, are left for the caller to flush; those on
// other sockets are flushed now.
func (a *ackPuller[T]) finish(self *pullSock, id codec.ID, err error) {
	a.dmu.Lock()
	// seen[id] is self: only the worker that put it there finishes id, and
	// duplicates that arrive meanwhile wait in extra.
	var more []*pullSock
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
			ps.ack(id)
			if ps != self {
				ps.wake()
			}
			a.pl.c.acked.Add(1)
		} else {
			a.nack(ps, id, err)
		}
	}
}

// flushFrom sends the acks due on ps from a worker, saving the hand-off
// to the acker, which retries if they cannot be sent now.
func (a *ackPuller[T]) flushFrom(ps *pullSock) {
	if !a.flush(ps) {
		ps.wake()
	}
}

// ack queues an ack; the caller flushes it (see worker).
func (ps *pullSock) ack(id codec.ID) {
	ps.amu.Lock()
	ps.ids = append(ps.ids, id[:]...)
	ps.amu.Unlock()
}

func (a *ackPuller[T]) nack(ps *pullSock, id codec.ID, cause error) {
	bp := codec.GetBuffer()
	defer codec.PutBuffer(bp)
	body, _ := marshalBody(*bp, cause.Error())
	*bp = body
	env := codec.Envelope{ID: id, Kind: codec.KindNack, Sender: a.pl.o.name, Timestamp: now().UnixNano(), Body: body}
	if frame, err := encodeEnvelope(&env); err == nil {
		// Best effort: a lost nack becomes an ack timeout at the pusher.
		ps.sock.Send(context.Background(), socket.Msg{Frames: [][]byte{empty, frame}})
	}
}

// acker sends the acks due on ps in batches: whatever accumulated while
// the previous batch was being sent goes out in one message.
func (a *ackPuller[T]) acker(ps *pullSock) {
	defer a.awg.Done()
	var retry *time.Timer
	var retryC <-chan time.Time
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-ps.kick:
		case <-retryC:
		case <-ps.stop:
			a.flush(ps)
			return
		}
		retryC = nil
		if !a.flush(ps) {
			if retry == nil {
				retry = time.NewTimer(10 * time.Millisecond)
			} else {
				retry.Reset(10 * time.Millisecond)
			}
			retryC = retry.C
		}
	}
}

// flush sends the acks due on ps; it reports false when they could not be
// sent and are kept for later.
func (a *ackPuller[T]) flush(ps *pullSock) bool {
	ps.amu.Lock()
	ids := ps.ids
	ps.ids = ps.spare[:0]
	ps.spare = nil
	ps.amu.Unlock()
	if len(ids) == 0 {
		ps.amu.Lock()
		ps.spare = ids
		ps.amu.Unlock()
		return true
	}
	bp := codec.GetBuffer()
	body, _ := marshalBody(*bp, ids)
	*bp = body
	env := codec.Envelope{Kind: codec.KindAck, Sender: a.pl.o.name, Timestamp: now().UnixNano(), Body: body}
	frame, err := encodeEnvelope(&env)
	codec.PutBuffer(bp)
	if err == nil {
		err = ps.sock.Send(context.Background(), socket.Msg{Frames: [][]byte{empty, frame}})
	}
	ps.amu.Lock()
	defer ps.amu.Unlock()
	if err == nil {
		ps.spare = ids[:0]
		return true
	}
	// Keep them, oldest first, but no more than the dedup window's worth.
	ids = append(ids, ps.ids...)
	if max := 16 * len(a.ring); len(ids) > max {
		ids = ids[len(ids)-max:]
	}
	ps.ids = ids
	return false
}

func (a *ackPuller[T]) stats(s *Stats) {
	a.mu.Lock()
	socks := make([]*pullSock, 0, len(a.socks))
	for _, ps := range a.socks {
		socks = append(socks, ps)
	}
	a.mu.Unlock()
	for _, ps := range socks {
		addSocket(&s.Socket, ps.sock.Stats())
	}
}

// close runs after the Puller's context is cancelled: it waits for the
// receivers and workers, flushes the acks due and closes the sockets.
func (a *ackPuller[T]) close() {
	a.wg.Wait()
	a.mu.Lock()
	socks := a.socks
	a.socks = map[string]*pullSock{}
	a.mu.Unlock()
	for _, ps := range socks {
		close(ps.stop)
	}
	a.awg.Wait()
	for _, ps := range socks {
		ps.sock.Close()
	}
}
