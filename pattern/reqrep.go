package pattern

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// empty is the REQ/REP delimiter frame. It is never modified.
var empty = []byte{}

const panicHeader = "zpeer-panic"

// Requester sends typed requests and returns typed replies. It is safe for
// concurrent use: any number of goroutines may call Request at once, and
// their requests are in flight together.
//
// Underneath, each endpoint it connects to gets a DEALER socket of its own,
// so that the Requester chooses which replier an attempt goes to: the
// connected replier with the fewest requests in flight, avoiding repliers
// that have just timed out and those already tried for this request. An
// attempt that gets no reply within WithTimeout is abandoned and the request
// is sent again, to another replier when there is one, up to WithRetries
// times (the Lazy Pirate pattern of the ZeroMQ guide); after two timeouts in
// a row with no reply in between, the connection to that replier is dropped
// and dialled afresh. When a replier's connection drops while it holds a
// request, the request is resent at once rather than after the timeout.
//
// Every attempt carries a new envelope id and replies are matched by it: a
// late reply to an abandoned attempt is discarded (counted in Stats.Late),
// never returned to another call. Retries of one request share its Seq.
// Requests should be idempotent: an abandoned attempt may still have been
// processed.
type Requester[Req, Resp any] struct {
	o      options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	c      counters
	lat    histogram
	seq    atomic.Uint64
	disc   *joined

	mu      sync.Mutex
	peers   []*reqPeer
	bound   *reqPeer
	pending map[codec.ID]*call
	next    int
	closed  bool
	change  chan struct{} // closed and replaced when a peer connects
}

type reqPeer struct {
	ep       string // connected endpoint; "" for the bound socket
	sock     *socket.Socket
	up       int // connected pipes
	inflight int
	timeouts int // consecutive abandoned attempts
	calls    map[*call]struct{}
	gone     bool
}

// call is one Request's registration while an attempt is in flight.
type call struct {
	ch   chan reply // capacity 1; written once per registration
	id   codec.ID
	peer *reqPeer
}

type reply struct {
	lost  bool // the peer's connection dropped
	kind  codec.Kind
	body  []byte
	panic bool
}

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan reply, 1)} }}

// NewRequester creates a Requester. It needs at least one WithConnect or
// WithBind endpoint, or WithService, WithWatcher or WithDiscovery, or later
// calls to Connect.
//
// Options: WithConnect, WithBind, WithTimeout, WithRetries, WithPriority,
// WithType, WithName, WithSocketOptions, WithLogger, WithService,
// WithWatcher, WithDiscovery.
func NewRequester[Req, Resp any](opts ...Option) (*Requester[Req, Resp], error) {
	o, err := buildOptions("Requester", oTimeout|oRetries|oPriority|oType, opts)
	if err != nil {
		return nil, err
	}
	r := &Requester[Req, Resp]{o: o, pending: make(map[codec.ID]*call), change: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if len(o.binds) > 0 {
		p, err := r.newPeer("")
		if err != nil {
			r.Close()
			return nil, err
		}
		for _, ep := range o.binds {
			if _, err := p.sock.Bind(ep); err != nil {
				r.Close()
				return nil, err
			}
		}
	}
	for _, ep := range o.connects {
		if err := r.Connect(ep); err != nil {
			r.Close()
			return nil, err
		}
	}
	if r.disc, err = join(&r.o, "DEALER", r, r.Endpoints()); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// newPeer creates a DEALER socket for ep ("" for the bound socket) and
// starts its receive loop.
func (r *Requester[Req, Resp]) newPeer(ep string) (*reqPeer, error) {
	p := &reqPeer{ep: ep, calls: make(map[*call]struct{})}
	sopts := append([]socket.Option{
		socket.WithNoBlock(),
		socket.WithLowLatency(true),
		socket.WithLinger(0),
		socket.WithEventHandler(func(ev socket.Event) { r.event(p, ev) }),
	}, r.o.sockOpts...)
	s, err := socket.New(socket.DEALER, sopts...)
	if err != nil {
		return nil, err
	}
	p.sock = s
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		s.Close()
		return nil, ErrClosed
	}
	if ep == "" {
		r.bound = p
	}
	r.peers = append(r.peers, p)
	r.wg.Add(1)
	r.mu.Unlock()
	go r.recvLoop(p)
	return p, nil
}

// Connect adds a replier endpoint. Connecting is asynchronous; the
// endpoint is re-dialled whenever its connection drops.
func (r *Requester[Req, Resp]) Connect(ep string) error {
	r.mu.Lock()
	for _, p := range r.peers {
		if p.ep == ep && ep != "" {
			r.mu.Unlock()
			return fmt.Errorf("%w %q: already connected", socket.ErrEndpoint, ep)
		}
	}
	r.mu.Unlock()
	p, err := r.newPeer(ep)
	if err != nil {
		return err
	}
	if err := p.sock.Connect(ep); err != nil {
		r.removePeer(p)
		return err
	}
	return nil
}

// Disconnect removes a replier endpoint added by Connect. Requests in flight
// to it are resent elsewhere at once.
func (r *Requester[Req, Resp]) Disconnect(ep string) error {
	r.mu.Lock()
	var p *reqPeer
	for _, q := range r.peers {
		if q.ep == ep && ep != "" {
			p = q
		}
	}
	r.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%w %q: not connected", socket.ErrEndpoint, ep)
	}
	r.removePeer(p)
	return nil
}

func (r *Requester[Req, Resp]) removePeer(p *reqPeer) {
	r.mu.Lock()
	p.gone = true
	r.peers = slices.DeleteFunc(r.peers, func(q *reqPeer) bool { return q == p })
	r.failCalls(p)
	r.mu.Unlock()
	p.sock.Close()
}

// failCalls tells every call waiting on p that its attempt is lost. r.mu is
// held.
func (r *Requester[Req, Resp]) failCalls(p *reqPeer) {
	for c := range p.calls {
		delete(r.pending, c.id)
		c.peer = nil
		c.ch <- reply{lost: true}
	}
	clear(p.calls)
	p.inflight = 0
}

// event runs on the socket's event goroutine.
func (r *Requester[Req, Resp]) event(p *reqPeer, ev socket.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev.Kind {
	case socket.EventConnected:
		p.up++
		close(r.change)
		r.change = make(chan struct{})
	case socket.EventDisconnected:
		if p.up > 0 {
			p.up--
		}
		// A bound socket cannot tell which requests went to the pipe that
		// dropped; its requests fail over only when the last one goes.
		if p.up == 0 {
			r.failCalls(p)
		}
	}
}

func (r *Requester[Req, Resp]) recvLoop(p *reqPeer) {
	defer r.wg.Done()
	for {
		m, err := p.sock.Recv(r.ctx)
		if err != nil {
			return
		}
		var env codec.View
		if len(m.Frames) == 0 || codec.DecodeView(m.Frames[len(m.Frames)-1], &env) != nil ||
			(env.Kind != codec.KindReply && env.Kind != codec.KindError) {
			r.c.dropped.Add(1)
			continue
		}
		r.mu.Lock()
		c := r.pending[env.ID]
		if c == nil {
			r.mu.Unlock()
			r.c.late.Add(1)
			continue
		}
		delete(r.pending, env.ID)
		if q := c.peer; q != nil {
			delete(q.calls, c)
			q.inflight--
			q.timeouts = 0
		}
		c.peer = nil
		panicked, _ := env.Header(panicHeader)
		c.ch <- reply{kind: env.Kind, body: env.Body, panic: len(panicked) > 0}
		r.mu.Unlock()
	}
}

// pick chooses the peer for an attempt: connected, not tried yet if any
// untried one is connected, fewest timeouts, then fewest in flight, then
// round-robin. It returns nil when no peer is connected.
func (r *Requester[Req, Resp]) pick(tried []*reqPeer) *reqPeer {
	var best *reqPeer
	bestTried := true
	n := len(r.peers)
	for i := range n {
		p := r.peers[(r.next+i)%n]
		if p.up == 0 {
			continue
		}
		t := slices.Contains(tried, p)
		switch {
		case best == nil,
			bestTried && !t,
			bestTried == t && (p.timeouts < best.timeouts ||
				p.timeouts == best.timeouts && p.inflight < best.inflight):
			best, bestTried = p, t
		}
	}
	if n > 0 {
		r.next = (r.next + 1) % n
	}
	return best
}

// Request sends v and returns the reply. It fails with ctx's error (wrapped
// in ErrTimeout for a deadline), with ErrTimeout when every attempt went
// unanswered, with a *RemoteError (matching ErrRemote) when the replier's
// handler failed, with ErrBadMessage when the reply does not decode into
// Resp, or with ErrClosed.
func (r *Requester[Req, Resp]) Request(ctx context.Context, v Req, opts ...CallOption) (Resp, error) {
	var zero Resp
	if r.ctx.Err() != nil {
		return zero, ErrClosed
	}
	start := now()
	resp, err := r.request(ctx, start, v, opts)
	if err != nil {
		r.c.errors.Add(1)
		return zero, callError(err)
	}
	r.lat.record(time.Since(start))
	r.c.delivered.Add(1)
	return resp, nil
}

func (r *Requester[Req, Resp]) request(ctx context.Context, now time.Time, v Req, opts []CallOption) (Resp, error) {
	var zero Resp
	bp := codec.GetBuffer()
	defer codec.PutBuffer(bp)
	body, err := marshalBody(*bp, v)
	if err != nil {
		return zero, err
	}
	*bp = body
	env := codec.Envelope{Kind: codec.KindData, Body: body, Seq: r.seq.Add(1)}
	stamp(&env, now, &r.o, opts)

	c := callPool.Get().(*call)
	defer callPool.Put(c)
	var triedBuf [4]*reqPeer
	tried := triedBuf[:0]
	timer := getTimer(r.o.timeout)
	defer putTimer(timer)
	var poll *time.Timer // while the chosen peer's queue is full
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()

	attempts := r.o.retries + 1
	lastErr := error(nil)
	r.c.sent.Add(1)
attempt:
	for a := range attempts {
		if a > 0 {
			r.c.retried.Add(1)
			timer.Reset(r.o.timeout)
		}
		env.ID = codec.NewID()
		frame, err := encodeEnvelope(&env)
		if err != nil {
			return zero, err
		}
		// Send, waiting for a connected peer whose queue has room.
		var p *reqPeer
		for {
			r.mu.Lock()
			if r.closed {
				r.mu.Unlock()
				return zero, ErrClosed
			}
			p = r.pick(tried)
			change := r.change
			if p != nil {
				c.id, c.peer = env.ID, p
				r.pending[env.ID] = c
				p.calls[c] = struct{}{}
				p.inflight++
			}
			r.mu.Unlock()
			var wait <-chan time.Time
			if p != nil {
				err := p.sock.Send(ctx, socket.Msg{Frames: [][]byte{empty, frame}, Priority: env.Priority})
				if err == nil {
					break
				}
				r.unregister(c)
				drain(c.ch)
				if !errors.Is(err, socket.ErrWouldBlock) && !errors.Is(err, socket.ErrNoPeers) &&
					!errors.Is(err, socket.ErrClosed) {
					return zero, err
				}
				// The peer's queue is full, or its connection is going:
				// look again shortly.
				if poll == nil {
					poll = time.NewTimer(time.Millisecond)
				} else {
					poll.Reset(time.Millisecond)
				}
				wait = poll.C
			}
			select {
			case <-change:
			case <-wait:
			case <-timer.C:
				lastErr = errors.New("no replier connected")
				continue attempt
			case <-ctx.Done():
				return zero, ctxError(ctx)
			case <-r.ctx.Done():
				return zero, ErrClosed
			}
		}
		if !slices.Contains(tried, p) {
			tried = append(tried, p)
		}

		// Wait for the reply.
		var rep reply
		select {
		case rep = <-c.ch:
		case <-timer.C:
			if r.abandon(c, p) {
				lastErr = errors.New("no reply")
				continue attempt
			}
			rep = <-c.ch // the reply won the race
		case <-ctx.Done():
			if !r.abandon(c, nil) {
				<-c.ch
			}
			return zero, ctxError(ctx)
		case <-r.ctx.Done():
			if !r.abandon(c, nil) {
				<-c.ch
			}
			return zero, ErrClosed
		}
		if rep.lost {
			lastErr = errors.New("replier connection lost")
			continue
		}
		if rep.kind == codec.KindError {
			msg, err := unmarshalBody[string](rep.body)
			if err != nil {
				msg = "undecodable error reply"
			}
			return zero, &RemoteError{Message: msg, Panic: rep.panic}
		}
		// The reply's message is never freed: a large []byte can be
		// the received memory itself.
		resp, _, err := takeBody[Resp](rep.body)
		if err != nil {
			return zero, fmt.Errorf("pattern: reply: %w", err)
		}
		return resp, nil
	}
	return zero, fmt.Errorf("%w: %d attempts, last: %v", ErrTimeout, attempts, lastErr)
}

// unregister removes c's registration if it is still there.
func (r *Requester[Req, Resp]) unregister(c *call) {
	r.mu.Lock()
	if r.pending[c.id] == c {
		delete(r.pending, c.id)
	}
	if p := c.peer; p != nil {
		delete(p.calls, c)
		p.inflight--
		c.peer = nil
	}
	r.mu.Unlock()
}

// abandon withdraws c's attempt. It returns false when a reply (or a lost
// notice) was already delivered to c.ch. timedOut, when not nil, is the
// peer the attempt timed out on: after two timeouts in a row its
// connection is dropped and dialled again.
func (r *Requester[Req, Resp]) abandon(c *call, timedOut *reqPeer) bool {
	r.mu.Lock()
	if r.pending[c.id] != c {
		r.mu.Unlock()
		return false
	}
	delete(r.pending, c.id)
	if p := c.peer; p != nil {
		delete(p.calls, c)
		p.inflight--
		c.peer = nil
	}
	reconnect := false
	if p := timedOut; p != nil && !p.gone {
		p.timeouts++
		if p.timeouts >= 2 && p.ep != "" {
			p.timeouts = 0
			reconnect = true
		}
	}
	r.mu.Unlock()
	if reconnect {
		// Lazy Pirate: abandon the connection and dial afresh. The
		// disconnect fails the peer's other attempts over at once.
		if timedOut.sock.Disconnect(timedOut.ep) == nil {
			timedOut.sock.Connect(timedOut.ep)
		}
	}
	return true
}

var timerPool sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, ok := timerPool.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and pools it. Since Go 1.23 a stopped timer's channel
// holds no stale tick, so Reset after Get is safe.
func putTimer(t *time.Timer) {
	t.Stop()
	timerPool.Put(t)
}

func drain(ch chan reply) {
	select {
	case <-ch:
	default:
	}
}

func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}

// Endpoints returns the endpoints bound with WithBind.
func (r *Requester[Req, Resp]) Endpoints() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bound == nil {
		return nil
	}
	return r.bound.sock.Endpoints()
}

// Peers returns the number of connected repliers.
func (r *Requester[Req, Resp]) Peers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.peers {
		n += p.up
	}
	return n
}

// Stats returns the Requester's counters: Sent (requests), Retried,
// Delivered (replies returned), Errors, Late, Dropped (undecodable replies),
// Pending (requests in flight) and the Latency of successful requests,
// retries included.
func (r *Requester[Req, Resp]) Stats() Stats {
	var s Stats
	r.c.fill(&s)
	s.Latency = r.lat.snapshot()
	r.mu.Lock()
	s.Pending = len(r.pending)
	socks := make([]*socket.Socket, 0, len(r.peers))
	for _, p := range r.peers {
		socks = append(socks, p.sock)
	}
	r.mu.Unlock()
	for _, so := range socks {
		addSocket(&s.Socket, so.Stats())
	}
	return s
}

// Close closes the Requester. Requests in flight fail with ErrClosed. Close
// is idempotent.
func (r *Requester[Req, Resp]) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.disc.leave()
	r.mu.Lock()
	peers := slices.Clone(r.peers)
	r.mu.Unlock()
	r.cancel()
	for _, p := range peers {
		p.sock.Close()
	}
	r.wg.Wait()
	return nil
}

// Replier answers typed requests with a handler, running up to WithWorkers
// handler calls at once. It listens on a ROUTER socket (usually bound with
// WithBind) and answers Requesters as well as plain ZeroMQ REQ and DEALER
// peers that send envelopes.
//
// A handler error goes back to the caller as a *RemoteError carrying its
// text; a handler panic is recovered, logged, counted and goes back the
// same way with Panic set. The handler's context is cancelled when the
// Replier closes; a handler that then returns the context's error sends no
// reply, so the requester fails over to another replier.
type Replier[Req, Resp any] struct {
	o       options
	h       func(context.Context, Req) (Resp, error)
	sock    *socket.Socket
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	c       counters
	disc    *joined
	closeMu sync.Mutex
	closed  bool
}

// NewReplier creates a Replier that answers with h.
//
// Options: WithBind, WithConnect, WithWorkers, WithName, WithSocketOptions,
// WithLogger, WithService, WithWatcher, WithDiscovery.
func NewReplier[Req, Resp any](h func(ctx context.Context, req Req) (Resp, error), opts ...Option) (*Replier[Req, Resp], error) {
	if h == nil {
		return nil, optErr("NewReplier: nil handler")
	}
	o, err := buildOptions("Replier", oWorkers|oBorrow, opts)
	if err != nil {
		return nil, err
	}
	sopts := append([]socket.Option{socket.WithNoBlock(), socket.WithLowLatency(true)}, o.sockOpts...)
	s, err := socket.New(socket.ROUTER, sopts...)
	if err != nil {
		return nil, err
	}
	rp := &Replier[Req, Resp]{o: o, h: h, sock: s}
	rp.ctx, rp.cancel = context.WithCancel(context.Background())
	if err := setup(s, o); err != nil {
		rp.Close()
		return nil, err
	}
	for range o.workers {
		rp.wg.Add(1)
		go rp.worker()
	}
	if rp.disc, err = join(&rp.o, "ROUTER", rp, rp.Endpoints()); err != nil {
		rp.Close()
		return nil, err
	}
	return rp, nil
}

// setup binds and connects s as the options say.
func setup(s *socket.Socket, o options) error {
	for _, ep := range o.binds {
		if _, err := s.Bind(ep); err != nil {
			return err
		}
	}
	for _, ep := range o.connects {
		if err := s.Connect(ep); err != nil {
			return err
		}
	}
	return nil
}

func (rp *Replier[Req, Resp]) worker() {
	defer rp.wg.Done()
	for {
		m, err := rp.sock.Recv(rp.ctx)
		if err != nil {
			return
		}
		if !rp.serve(m) {
			m.Free() // serve has copied what it keeps
		}
	}
}

// serve answers one request: [routing id, (delimiter,) envelope]. It
// reports whether the handler was given the received memory (see takeBody).
func (rp *Replier[Req, Resp]) serve(m socket.Msg) (kept bool) {
	n := len(m.Frames)
	var env codec.View
	if n < 2 || codec.DecodeView(m.Frames[n-1], &env) != nil || env.Kind != codec.KindData {
		rp.c.dropped.Add(1)
		rp.o.logger.Debug("pattern: replier dropped a malformed request")
		return kept
	}
	rp.c.delivered.Add(1)
	out := codec.Envelope{ID: env.ID, Kind: codec.KindReply, Priority: env.Priority, Seq: env.Seq,
		Sender: rp.o.name, Type: rp.o.msgType, Timestamp: now().UnixNano()}
	var resp Resp
	bp := codec.GetBuffer()
	defer codec.PutBuffer(bp)
	req, kept, err := takeBodyMode[Req](env.Body, rp.o.borrow)
	panicked := false
	if err == nil {
		logUnknownKeys[Req](&rp.o, env.Body)
		resp, err, panicked = rp.call(req)
	}
	if err != nil {
		if rp.ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return kept // closing: let the requester fail over
		}
		rp.c.errors.Add(1)
		out.Kind = codec.KindError
		if panicked {
			out.Headers = map[string]string{panicHeader: "1"}
		}
		out.Body, _ = marshalBody(*bp, err.Error())
	} else if out.Body, err = marshalBody(*bp, resp); err != nil {
		rp.c.errors.Add(1)
		out.Kind = codec.KindError
		out.Body, _ = marshalBody((*bp)[:0], "pattern: marshal reply: "+err.Error())
	}
	*bp = out.Body
	frame, err := encodeEnvelope(&out)
	if err != nil {
		rp.c.dropped.Add(1)
		return kept
	}
	// The routing frames, then the reply (in a new slice: m's frames are
	// freed after this, and a large reply is written from its memory).
	frames := append(m.Frames[:n-1:n-1], frame)
	if err := rp.sock.Send(rp.ctx, socket.Msg{Frames: frames, Priority: out.Priority}); err != nil {
		rp.c.dropped.Add(1) // the requester has gone, or its queue is full
		return kept
	}
	rp.c.sent.Add(1)
	return kept
}

// call runs the handler, recovering a panic.
func (rp *Replier[Req, Resp]) call(req Req) (resp Resp, err error, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			rp.c.panics.Add(1)
			rp.o.logger.Error("pattern: replier handler panicked", "panic", v, "stack", string(debug.Stack()))
			err, panicked = fmt.Errorf("%v", v), true
		}
	}()
	resp, err = rp.h(rp.ctx, req)
	return resp, err, false
}

// Connect connects the Replier's socket to ep (for a Replier that dials its
// requesters rather than binding).
func (rp *Replier[Req, Resp]) Connect(ep string) error { return rp.sock.Connect(ep) }

// Disconnect undoes Connect.
func (rp *Replier[Req, Resp]) Disconnect(ep string) error { return rp.sock.Disconnect(ep) }

// Endpoints returns the bound endpoints, with real port numbers.
func (rp *Replier[Req, Resp]) Endpoints() []string { return rp.sock.Endpoints() }

// Stats returns the Replier's counters: Delivered (requests handed to the
// handler), Sent (replies), Errors, Panics, Dropped (malformed requests and
// replies that could not be sent).
func (rp *Replier[Req, Resp]) Stats() Stats {
	var s Stats
	rp.c.fill(&s)
	addSocket(&s.Socket, rp.sock.Stats())
	return s
}

// Close stops taking requests, cancels the handlers' context, waits for
// running handlers to return (and their replies to be queued), then closes
// the socket. Close is idempotent.
func (rp *Replier[Req, Resp]) Close() error {
	rp.closeMu.Lock()
	defer rp.closeMu.Unlock()
	if rp.closed {
		return nil
	}
	rp.closed = true
	rp.disc.leave()
	rp.cancel()
	rp.wg.Wait()
	return rp.sock.Close()
}
