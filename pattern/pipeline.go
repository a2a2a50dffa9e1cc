package pattern

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/codecwire"
	"github.com/zpeer/zpeer/internal/outbox"
	"github.com/zpeer/zpeer/internal/partition"
	"github.com/zpeer/zpeer/socket"
)

// Pusher hands typed work items to a pool of Pullers, load-balanced over the
// pullers that are ready. It works in one of two modes, and its pullers must
// use the same one:
//
// Fire-and-forget (the default) is a PUSH socket sending one frame, the
// envelope. Push returns once the message is queued for a ready puller
// (blocking while none is); nothing is confirmed, and what a puller had
// received but not processed when it died is lost. It is the fastest mode
// and any ZeroMQ PULL peer can receive from it.
//
// Acknowledged (WithAck) is at-least-once delivery over a ROUTER socket.
// Each Puller announces how many messages it will hold (its credit,
// WithCredit) and the Pusher sends only to pullers with free credit, round
// robin, so work goes to pullers that are ready and a busy one is not sent
// more. The Pusher keeps every message until it is acknowledged. A message
// is redelivered, preferably to another puller, when its acknowledgement
// does not come within WithAckTimeout, when the puller's handler fails (the
// puller nacks it), or at once when the puller's connection drops. After
// WithMaxDeliveries deliveries it is declared dead: counted in Stats.Dead,
// logged, and handed to the WithOnDead callback, never dropped silently.
// The Pusher keeps its messages in memory: if its process dies they are
// lost, unless WithOutbox keeps them on disk too (see WithOutbox).
// Messages waiting for credit are queued by priority (see Priority), then in
// push order; a redelivered message goes ahead of those pushed after it.
//
// Partitioned (PartitionKey, WithPartitionKey): every message of a key goes
// to the key's owner, the puller connected now that rendezvous hashing on
// its name (WithName, announced to the Pusher) ranks first for the key, so
// keys spread evenly over the pullers, and a puller that leaves moves only
// its own keys, one that joins takes about 1/N of them. Acknowledged, a key
// has at most one job in flight: its next job waits at the Pusher until the
// one ahead is acknowledged or dead, so a key's jobs are processed in push
// order across redeliveries and changes of owner, while other keys keep
// flowing (a puller without credit holds up only its own keys).
// Fire-and-forget, a key's messages reach its owner in push order while the
// set of pullers does not change; Push blocks while the owner's queue is
// full. See docs/patterns.md for what is and is not promised.
type Pusher[T any] struct {
	o    options
	sock *socket.Socket
	c    counters
	ack  *ackPusher[T] // nil in fire-and-forget mode
	seq  atomic.Uint64
	tmpl *codec.Template // the envelope of a Push without CallOptions
	ctx  context.Context
	stop context.CancelFunc
	disc *joined
	ref  *refusals

	keyFn func(T) string // WithPartitionKey
	ring  *pullerRing    // fire-and-forget: the pullers, for keyed messages

	closeMu sync.Mutex
	closed  bool // guarded by closeMu
}

// NewPusher creates a Pusher.
//
// Options: WithBind, WithConnect, WithAck, WithAckTimeout, WithMaxDeliveries,
// WithMaxPending, WithOnDead, WithOnRefused, WithOutbox, WithOutboxMaxBytes,
// WithPriority, WithPartitionKey, WithType, WithName, WithSocketOptions,
// WithLogger, WithService, WithWatcher, WithDiscovery. With WithOutbox, NewPusher takes
// back the jobs a previous Pusher left in the outbox before it returns.
func NewPusher[T any](opts ...Option) (*Pusher[T], error) {
	o, err := buildOptions("Pusher", oAck|oAckTimeout|oMaxDeliveries|oMaxPending|oOnDead|oPriority|oType|oOnRefused|oOutbox|oOutboxBytes|oPartition, opts)
	if err != nil {
		return nil, err
	}
	if !o.ack && o.used&(oAckTimeout|oMaxDeliveries|oMaxPending|oOnDead|oOutbox|oOutboxBytes) != 0 {
		return nil, optErr("WithAckTimeout, WithMaxDeliveries, WithMaxPending, WithOnDead and WithOutbox need WithAck")
	}
	if o.used&oOutboxBytes != 0 && o.used&oOutbox == 0 {
		return nil, optErr("WithOutboxMaxBytes needs WithOutbox")
	}
	p := &Pusher[T]{o: o}
	if p.keyFn, err = checkKeyFunc[T](&o); err != nil {
		return nil, err
	}
	if p.tmpl, err = newTemplate(&p.o, codec.KindData, ""); err != nil {
		return nil, optErr("%v", err)
	}
	p.ctx, p.stop = context.WithCancel(context.Background())
	if o.ack {
		p.ack = newAckPusher(p)
		p.ref = newRefusals(&p.o, "acked Pusher", "an acked Pusher (ROUTER)", "acked Pullers, WithAck (DEALER)")
		// Credit bounds what is queued per puller, so the socket's own
		// high-water mark need not (WithCredit allows up to 1<<20).
		p.sock, err = newSocket(socket.ROUTER, &p.o,
			&socket.PeerHooks{Attach: p.ack.attach, Detach: p.ack.detach, Ready: p.ack.ready},
			socket.WithNoBlock(), socket.WithSendHWM(1<<20), p.ref.eventOption(func() int { return p.sock.Peers() }))
	} else {
		p.ref = newRefusals(&p.o, "Pusher", "a fire-and-forget Pusher (PUSH)", "fire-and-forget Pullers, without WithAck (PULL)")
		p.ring = newPullerRing()
		p.sock, err = newSocket(socket.PUSH, &p.o, &socket.PeerHooks{Attach: p.ring.attach, Detach: p.ring.detach},
			p.ref.eventOption(func() int { return p.sock.Peers() }))
	}
	if err != nil {
		p.Close() // stops the notifiers
		return nil, err
	}
	if err := setup(p.sock, o); err != nil {
		p.Close()
		return nil, err
	}
	if p.ack != nil {
		if o.outboxDir != "" {
			if err := p.ack.openOutbox(); err != nil {
				p.Close()
				return nil, err
			}
		}
		p.ack.start()
	}
	typ := "PUSH"
	if p.ack != nil {
		typ = "ROUTER"
	}
	if p.disc, err = join(&p.o, typ, p, p.Endpoints()); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Push sends v to one puller. In fire-and-forget mode it blocks until a
// puller is ready to take the message or ctx ends. In acknowledged mode it
// returns once the Pusher has taken custody of the message, blocking only
// while WithMaxPending messages are already held; delivery, redelivery and
// acknowledgement happen in the background (see Drain and Stats).
func (p *Pusher[T]) Push(ctx context.Context, v T, opts ...CallOption) (err error) {
	if p.ack != nil {
		return p.pushAcked(ctx, v, opts, nil)
	}
	if p.ctx.Err() != nil {
		return ErrClosed
	}
	key, keyed, opts := keyOf(p.keyFn, v, opts)
	if p.o.tracer != nil {
		var end func(error)
		ctx, opts, end = p.o.startSend(ctx, "pusher", p.o.service, codec.ID{}, opts)
		defer func() { end(err) }()
	}
	seq := p.seq.Add(1)
	frame, mem, prio, err := encodeMsg(&p.o, p.tmpl, codec.KindData, "", codec.NewID(), seq, v, opts)
	if err != nil {
		return err
	}
	sctx := ctx
	if w := p.ref.waiting(); ctx.Done() == nil || w.Err() != nil {
		// Ended by a refused peer when none is connected, so that Push
		// does not wait for ever on a puller of the wrong mode.
		sctx = w
	}
	m := socket.Msg{Frames: [][]byte{frame}, Priority: prio, Buf: mem.sb}
	if keyed {
		err = p.ring.send(sctx, p.ctx.Done(), p.sock, partition.Hash(key), m)
	} else {
		err = p.sock.Send(sctx, m)
	}
	mem.release()
	if err != nil {
		return p.ref.explain(callError(err))
	}
	p.c.sent.Add(1)
	return nil
}

// pushAcked is Push in acknowledged mode, with PushAsync's receipt if rc
// is not nil.
func (p *Pusher[T]) pushAcked(ctx context.Context, v T, opts []CallOption, rc *Receipt) (err error) {
	if p.ctx.Err() != nil {
		return ErrClosed
	}
	key, keyed, opts := keyOf(p.keyFn, v, opts)
	var kh uint64
	if keyed {
		kh = partition.Hash(key)
	}
	if p.o.tracer != nil {
		var end func(error)
		ctx, opts, end = p.o.startSend(ctx, "pusher", p.o.service, codec.ID{}, opts)
		defer func() { end(err) }()
	}
	// The acked pusher makes its own ids, and keeps the frame.
	seq := p.seq.Add(1)
	id := p.ack.custody.id(seq)
	frame, mem, prio, err := encodeMsg(&p.o, p.tmpl, codec.KindData, "", id, seq, v, opts)
	if err != nil {
		return err
	}
	if mem.bp != nil {
		frame = bytes.Clone(frame)
		codecwire.PutBuffer(mem.bp)
	}
	if rc != nil {
		rc.id = id
	}
	if p.ack.store != nil {
		rec := frame
		if keyed {
			rec = keyedRecord(key, frame)
		}
		if err := p.ack.storeJob(ctx, id, rec); err != nil {
			return err
		}
	}
	err = p.ack.push(ctx, frame, mem.sb, id, seq, prio, v, rc, keyed, kh)
	if err != nil && p.ack.store != nil {
		p.ack.store.Ack(outbox.ID(id)) // not pushed: not to be replayed
	}
	return err
}

// Drain waits until everything pushed so far is settled: in acknowledged
// mode, acknowledged or dead; in fire-and-forget mode, written to the
// network. It fails with ctx's error or ErrClosed.
func (p *Pusher[T]) Drain(ctx context.Context) error {
	if p.ack != nil {
		dctx, stop := p.ref.bind(ctx)
		defer stop()
		err := p.ack.drain(dctx)
		if err != nil && ctx.Err() != nil {
			err = ctxError(ctx)
		}
		return p.ref.explain(err)
	}
	// Fire-and-forget: the socket says when its send queues are written.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()
	err := p.sock.Flush(fctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctxError(ctx)
	case p.ctx.Err() != nil || errors.Is(err, socket.ErrClosed):
		return ErrClosed
	}
	return err
}

// Connect connects the Pusher's socket to ep (for a pusher that dials
// fire-and-forget pullers; acknowledged pullers connect to the pusher).
func (p *Pusher[T]) Connect(ep string) error { return p.sock.Connect(ep) }

// Disconnect undoes Connect.
func (p *Pusher[T]) Disconnect(ep string) error { return p.sock.Disconnect(ep) }

// Endpoints returns the bound endpoints, with real port numbers.
func (p *Pusher[T]) Endpoints() []string { return p.sock.Endpoints() }

// Pullers returns the number of connected pullers.
func (p *Pusher[T]) Pullers() int { return p.sock.Peers() }

// Stats returns the Pusher's counters: Sent (first deliveries), per puller
// in Peers its identity, messages sent and in flight (fire-and-forget:
// queued in the socket), and in acknowledged mode Acked, Retried
// (redeliveries), Dead, Late (acks for messages already settled), Pending
// (messages held), the push-to-ack Latency, and per puller its free
// credit and the partition keys it has work of.
func (p *Pusher[T]) Stats() Stats {
	var s Stats
	p.c.fill(&s)
	s.Refused = p.ref.count.Load()
	addSocket(&s.Socket, p.sock.Stats())
	if p.ack != nil {
		p.ack.stats(&s)
	} else {
		p.ring.stats(&s)
	}
	return s
}

// Close stops the Pusher. In acknowledged mode, messages not yet
// acknowledged are abandoned (call Drain first to wait for them), their
// PushAsync receipts settled with ErrClosed; with WithOutbox they stay in
// the outbox for the next Pusher. Queued messages get the socket's linger
// time to be written. Close is idempotent.
func (p *Pusher[T]) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.disc.leave()
	p.stop()
	if p.ack != nil {
		p.ack.wg.Wait()
	}
	var err error
	if p.sock != nil {
		err = p.sock.Close()
	}
	if p.ack != nil {
		p.ack.notes.close()
		p.ack.abandon()
		if p.ack.store != nil {
			if serr := p.ack.store.Close(); serr != nil && err == nil {
				err = outboxError(serr)
			}
		}
	}
	if p.ref != nil {
		p.ref.close()
	}
	return err
}

// Puller takes work items from Pushers and runs a handler on each, up to
// WithWorkers at once. Its mode must match its pushers' (see Pusher).
//
// Fire-and-forget: a PULL socket, fair-queued over the pushers; a handler
// error is counted and logged, and the message is gone.
//
// Acknowledged (WithAck): one DEALER socket connected to every pusher,
// announcing WithCredit on each connection. After the handler returns nil the message is acknowledged
// (acknowledgements are batched); after it returns an error or panics it is
// nacked and the pusher redelivers it, preferably elsewhere. The ids of the
// last WithDedupWindow processed messages are remembered, and a redelivered
// message whose id is among them is acknowledged without being processed
// again (counted in Stats.Duplicates); a duplicate that arrives while the
// first copy is still being processed waits for that outcome. When the
// pusher asks (on a redelivery), the puller reports that the handler starts
// on a message before it runs it, so that the pusher counts towards
// WithMaxDeliveries only deliveries that reached a handler. An acked
// Puller must connect to its pushers (WithConnect, Connect, WithDiscovery):
// acknowledgements go back on the connection the message came on.
//
// The handler's context is cancelled when the Puller closes; a handler
// that then returns the context's error is neither acked nor nacked, and
// the pusher redelivers the message when the connection drops.
type Puller[T any] struct {
	o          options
	h          func(context.Context, T) error
	c          counters
	handlerLat histogram // WithHandlerTiming
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	sock *socket.Socket // fire-and-forget
	ack  *ackPuller[T]  // acknowledged
	disc *joined
	ref  *refusals

	closeMu sync.Mutex
	closed  bool // guarded by closeMu
}

// NewPuller creates a Puller that runs h on each message.
//
// Options: WithConnect, WithBind (fire-and-forget only), WithAck, WithCredit,
// WithDedupWindow, WithWorkers, WithOnRefused, WithName, WithSocketOptions,
// WithLogger, WithService, WithWatcher, WithDiscovery.
func NewPuller[T any](h func(ctx context.Context, v T) error, opts ...Option) (*Puller[T], error) {
	if h == nil {
		return nil, optErr("NewPuller: nil handler")
	}
	o, err := buildOptions("Puller", oAck|oCredit|oDedup|oWorkers|oOnRefused|oBorrow|oHandlerTiming|oBeforeAck, opts)
	if err != nil {
		return nil, err
	}
	if o.ack && len(o.binds) > 0 {
		return nil, optErr("WithBind: an acknowledged Puller connects to its pushers")
	}
	if !o.ack && o.used&(oCredit|oDedup|oBeforeAck) != 0 {
		return nil, optErr("WithCredit, WithDedupWindow and WithBeforeAck need WithAck")
	}
	pl := &Puller[T]{o: o, h: h}
	pl.ctx, pl.cancel = context.WithCancel(context.Background())
	if o.ack {
		pl.ref = newRefusals(&pl.o, "acked Puller", "an acked Puller (DEALER)", "an acked Pusher, WithAck (ROUTER)")
		if pl.ack, err = newAckPuller(pl); err != nil {
			pl.ref.close()
			pl.cancel()
			return nil, err
		}
		if err := pl.ack.start(); err != nil {
			pl.Close()
			return nil, err
		}
	} else {
		pl.ref = newRefusals(&pl.o, "Puller", "a fire-and-forget Puller (PULL)", "a fire-and-forget Pusher, without WithAck (PUSH)")
		own := []socket.Option{pl.ref.eventOption(func() int { return pl.sock.Peers() })}
		if n := pl.o.name; n != "" && len(n) <= 255 && n[0] != 0 {
			// Its name, as a partitioned Pusher hashes its keys on.
			own = append(own, socket.WithIdentity([]byte(n)))
		}
		if pl.sock, err = newSocket(socket.PULL, &pl.o, nil, own...); err != nil {
			pl.ref.close()
			pl.cancel()
			return nil, err
		}
		if err := setup(pl.sock, o); err != nil {
			pl.Close()
			return nil, err
		}
		for range o.workers {
			pl.wg.Add(1)
			go pl.worker()
		}
	}
	typ := "PULL"
	if o.ack {
		typ = "DEALER"
	}
	if pl.disc, err = join(&pl.o, typ, pl, pl.Endpoints()); err != nil {
		pl.Close()
		return nil, err
	}
	return pl, nil
}

func (pl *Puller[T]) worker() {
	defer pl.wg.Done()
	for {
		m, err := pl.sock.Recv(pl.ctx)
		if err != nil {
			return
		}
		var env codec.View
		if len(m.Frames) != 1 || codec.DecodeView(m.Frames[0], &env) != nil || env.Kind != codec.KindData {
			pl.c.dropped.Add(1)
			m.Free()
			continue
		}
		kept, _, err := pl.handle(&env)
		if err != nil && pl.ctx.Err() == nil {
			pl.o.logger.Warn("pattern: puller handler failed", "id", env.ID, "err", err)
		}
		if kept {
			m.TakeFrame(0) // the value is (a part of) the received frame: its memory is the value's now
		} else {
			m.Free() // the value handed to the handler was a copy
		}
	}
}

// handle decodes env's body and runs the handler on it, recovering a
// panic. kept reports that the value was the body itself (see takeBody);
// ctx is the handler's context (the process span's, with WithTracer).
func (pl *Puller[T]) handle(env *codec.View) (kept bool, ctx context.Context, err error) {
	body := env.Body
	ctx = pl.ctx
	v, kept, err := takeBodyMode[T](body, pl.o.borrow)
	if err != nil {
		pl.c.dropped.Add(1)
		return false, ctx, err
	}
	logUnknownKeys[T](&pl.o, body)
	if pl.o.tracer != nil {
		var end func(error)
		ctx, end = pl.o.startRecv(ctx, OpProcess, "puller", env)
		defer func() { end(err) }()
	}
	var start time.Time
	if pl.o.handlerTiming {
		start = time.Now()
	}
	defer func() {
		if pl.o.handlerTiming {
			pl.handlerLat.record(time.Since(start))
		}
		if r := recover(); r != nil {
			pl.c.panics.Add(1)
			pl.o.logger.Error("pattern: puller handler panicked", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
		pl.c.delivered.Add(1)
		if err != nil {
			pl.c.errors.Add(1)
		}
	}()
	return kept, ctx, pl.h(ctx, v)
}

// Connect connects to a pusher at ep.
func (pl *Puller[T]) Connect(ep string) error {
	if pl.ack != nil {
		return pl.ack.connect(ep)
	}
	return pl.sock.Connect(ep)
}

// Disconnect undoes Connect.
func (pl *Puller[T]) Disconnect(ep string) error {
	if pl.ack != nil {
		return pl.ack.disconnect(ep)
	}
	return pl.sock.Disconnect(ep)
}

// Endpoints returns the bound endpoints (fire-and-forget mode), with real
// port numbers.
func (pl *Puller[T]) Endpoints() []string {
	if pl.sock == nil {
		return nil
	}
	return pl.sock.Endpoints()
}

// Pushers returns the number of connected pushers.
func (pl *Puller[T]) Pushers() int {
	if pl.ack != nil {
		return pl.ack.pushers()
	}
	return pl.sock.Peers()
}

// Stats returns the Puller's counters: Delivered (handler calls finished),
// Errors, Panics, Dropped (undecodable messages) and in acknowledged mode
// Acked and Duplicates.
func (pl *Puller[T]) Stats() Stats {
	var s Stats
	pl.c.fill(&s)
	s.Handler = pl.handlerLat.snapshot()
	s.Refused = pl.ref.count.Load()
	if pl.sock != nil {
		addSocket(&s.Socket, pl.sock.Stats())
	}
	if pl.ack != nil {
		pl.ack.stats(&s)
	}
	return s
}

// Close stops taking messages, cancels the handlers' context, waits for
// running handlers, sends the acknowledgements still due (within the
// socket's linger time) and closes the sockets. Messages received but not
// processed are not acknowledged; an acknowledged pusher redelivers them.
// Close is idempotent.
func (pl *Puller[T]) Close() error {
	pl.closeMu.Lock()
	defer pl.closeMu.Unlock()
	if pl.closed {
		return nil
	}
	pl.closed = true
	if pl.ack == nil {
		pl.disc.leave()
	}
	pl.cancel()
	if pl.ack != nil {
		// The acks due go out before discovery's goodbye disconnects the
		// pushers it connected: else the last ones would be lost, and
		// their messages processed again elsewhere.
		pl.ack.close()
		pl.disc.leave()
	}
	var err error
	if pl.sock != nil {
		err = pl.sock.Close()
	}
	pl.wg.Wait()
	pl.ref.close()
	return err
}
