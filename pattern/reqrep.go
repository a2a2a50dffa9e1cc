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

const panicHeader = codec.HeaderPanic

// Requester sends typed requests and returns typed replies. It is safe for
// concurrent use: any number of goroutines may call Request at once, and
// their requests are in flight together.
//
// Underneath is one DEALER socket connected to every replier endpoint (and
// bound, with WithBind, for repliers that dial in). The Requester chooses
// the replier of each attempt itself, through the socket's peer handles:
// the connected replier with the fewest requests in flight, not one already
// tried for this request when another is connected. It learns of repliers
// from the socket's attach and detach hooks, so a request waiting for a
// replier goes out as soon as one connects. An attempt that gets no reply
// within WithTimeout is abandoned and the request is sent again, to another
// replier when there is one, up to WithRetries times (the Lazy Pirate
// pattern of the ZeroMQ guide). When a replier's connection drops while it
// holds a request, the request is resent at once rather than after the
// timeout, unless its reply had already arrived (a reply sent just before
// the replier closed or said goodbye answers the request).
//
// Each replier endpoint has a circuit breaker. An attempt that times out
// opens it: the replier gets no requests until its back-off (WithTimeout at
// first) has passed, then one probe request. A reply closes the breaker
// and the replier gets its full share again; a probe that times out doubles
// the back-off, up to the larger of WithTimeout and 5 s. A hung replier so
// costs at most one timed-out request per back-off, and one that recovered
// gets traffic back within a back-off. The breaker belongs to the endpoint,
// not the connection: after two timeouts in a row the Requester drops the
// connection and dials it afresh (Lazy Pirate), and the new connection
// starts where the old one left off. A replier that dialled in (WithBind)
// has a breaker for as long as its connection lasts. When every connected
// replier's breaker is open, the breakers are overruled rather than the
// request kept waiting: it goes to the replier with the fewest timeouts in
// a row.
//
// Every attempt carries a new envelope id and replies are matched by it: a
// late reply to an abandoned attempt is discarded (counted in Stats.Late),
// never returned to another call. Retries of one request share its Seq.
// Requests should be idempotent: an abandoned attempt may still have been
// processed.
type Requester[Req, Resp any] struct {
	o      options
	sock   *socket.Socket
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	c      counters
	lat    histogram
	seq    atomic.Uint64
	disc   *joined
	ref    *refusals     // repliers that refused this Requester (an untrusted key, say)
	waits  atomic.Uint64 // times a request waited for a replier (tests)

	// sent, when set (by tests, before the first Request), is called
	// after each attempt is queued for its replier.
	sent func(*socket.Peer)
	// hold, when set (by tests), holds recvLoop with the message it has
	// just received until the channel is closed.
	hold atomic.Pointer[chan struct{}]

	// epMu serialises Connect, Disconnect and redials. It is never held
	// by a peer hook: socket.Disconnect runs the Detach hook.
	epMu sync.Mutex

	// The repliers and the calls in flight, guarded by mu. Lock order:
	// epMu, then mu.
	mu      sync.Mutex
	peers   []*reqPeer // attached repliers, in attach order
	byPeer  map[*socket.Peer]*reqPeer
	health  map[string]*breaker // per connected endpoint
	pending map[codec.ID]*call
	next    int
	closed  bool
	change  chan struct{} // closed and replaced when a replier may have become available
	// leaving holds the repliers detached while messages they sent were
	// still unread: their attempts fail once recvLoop has taken those
	// messages, not before (a reply among them answers its call).
	leaving map[*socket.Peer]*reqPeer
}

// reqPeer is one connected replier.
type reqPeer struct {
	peer     *socket.Peer
	h        *breaker
	inflight int
	calls    map[*call]struct{}
	gone     bool
	taken    uint64 // messages recvLoop has taken from the peer
}

// breaker is a replier endpoint's circuit breaker. r.mu guards it.
type breaker struct {
	ep       string // the connected endpoint; "" for a peer that dialled in
	fails    int    // attempts in a row that timed out
	open     bool
	retryAt  int64         // mono time when an open breaker lets a probe through
	backoff  time.Duration // how long it stays open after a failed probe
	probing  bool          // the probe is in flight
	sent     uint64        // attempts sent
	timeouts uint64        // attempts that timed out
}

// probeMax caps the breaker's back-off (but never below WithTimeout).
const probeMax = 5 * time.Second

// call is one Request's registration while an attempt is in flight.
type call struct {
	ch    chan reply // capacity 1; written once per registration
	id    codec.ID
	peer  *reqPeer
	probe bool
}

type reply struct {
	lost  bool // the peer's connection dropped
	kind  codec.Kind
	body  []byte
	panic bool
	env   *codec.View // with WithTracer: the reply's envelope, for its trace context
	msg   socket.Msg  // what body is in, for Request to free or take
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
	r := &Requester[Req, Resp]{o: o, byPeer: make(map[*socket.Peer]*reqPeer), leaving: make(map[*socket.Peer]*reqPeer), health: make(map[string]*breaker),
		pending: make(map[codec.ID]*call), change: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.ref = newRefusals(&r.o, "Requester", "a Requester (DEALER)", "Repliers (REP or ROUTER)")
	r.sock, err = newSocket(socket.DEALER, &r.o,
		&socket.PeerHooks{Attach: r.attach, Detach: r.detach, Ready: r.ready},
		socket.WithNoBlock(), socket.WithLowLatency(true), socket.WithLinger(0),
		r.ref.eventOption(func() int { return r.sock.Peers() }))
	if err != nil {
		r.cancel()
		r.ref.close()
		return nil, err
	}
	for _, ep := range o.binds {
		if _, err := r.sock.Bind(ep); err != nil {
			r.Close()
			return nil, err
		}
	}
	for _, ep := range o.connects {
		if err := r.Connect(ep); err != nil {
			r.Close()
			return nil, err
		}
	}
	r.wg.Add(1)
	go r.recvLoop()
	if r.disc, err = join(&r.o, "DEALER", r, r.Endpoints()); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Connect adds a replier endpoint. Connecting is asynchronous; the
// endpoint is re-dialled whenever its connection drops. Connecting twice to
// one endpoint is an error (wrapping socket.ErrEndpoint).
func (r *Requester[Req, Resp]) Connect(ep string) error {
	r.epMu.Lock()
	defer r.epMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if r.health[ep] != nil {
		r.mu.Unlock()
		return fmt.Errorf("%w %q: already connected", socket.ErrEndpoint, ep)
	}
	// The breaker is there before the first connection attaches.
	r.health[ep] = &breaker{ep: ep}
	r.mu.Unlock()
	if err := r.sock.Connect(ep); err != nil {
		r.mu.Lock()
		delete(r.health, ep)
		r.mu.Unlock()
		return err
	}
	return nil
}

// Disconnect removes a replier endpoint added by Connect. Requests in flight
// to it are resent elsewhere at once.
func (r *Requester[Req, Resp]) Disconnect(ep string) error {
	r.epMu.Lock()
	defer r.epMu.Unlock()
	if err := r.sock.Disconnect(ep); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.health, ep)
	r.mu.Unlock()
	return nil
}

// redial drops the connection to ep and dials it afresh, unless ep was
// disconnected meanwhile. Its breaker stays as it is.
func (r *Requester[Req, Resp]) redial(ep string) {
	r.epMu.Lock()
	defer r.epMu.Unlock()
	r.mu.Lock()
	_, ok := r.health[ep]
	r.mu.Unlock()
	if ok && r.sock.Disconnect(ep) == nil {
		r.sock.Connect(ep)
	}
}

// attach is the socket's Attach hook: a replier connected.
func (r *Requester[Req, Resp]) attach(sp *socket.Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.health[sp.Endpoint()]
	if h == nil { // it dialled in: a breaker for this connection
		h = &breaker{}
	}
	p := &reqPeer{peer: sp, h: h, calls: make(map[*call]struct{})}
	r.peers = append(r.peers, p)
	r.byPeer[sp] = p
	r.broadcast()
}

// detach is the socket's Detach hook: a replier's connection is gone, and
// the requests it held are resent at once, unless messages it sent are
// still unread. The socket keeps those readable (a reply sent just before
// a goodbye, or just before the replier closed): the requests are resent
// once recvLoop has taken them, and a reply among them answers its call.
func (r *Requester[Req, Resp]) detach(sp *socket.Peer, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.byPeer[sp]
	if p == nil {
		return
	}
	delete(r.byPeer, sp)
	p.gone = true
	r.peers = slices.DeleteFunc(r.peers, func(q *reqPeer) bool { return q == p })
	if len(p.calls) > 0 && !r.allTaken(p) {
		r.leaving[sp] = p
		return
	}
	r.failCalls(p)
}

// allTaken reports whether recvLoop has taken every message the socket
// kept from p (by the peer's counters: final once it is detached). r.mu is
// held.
func (r *Requester[Req, Resp]) allTaken(p *reqPeer) bool {
	st := p.peer.Stats()
	return p.taken+st.Discarded >= st.MsgsIn
}

// ready is the socket's Ready hook: a replier's full queue has room again.
func (r *Requester[Req, Resp]) ready(*socket.Peer) {
	r.mu.Lock()
	r.broadcast()
	r.mu.Unlock()
}

// broadcast wakes the requests waiting for a replier. r.mu is held.
func (r *Requester[Req, Resp]) broadcast() {
	close(r.change)
	r.change = make(chan struct{})
}

// failCalls tells every call waiting on p that its attempt is lost. r.mu is
// held.
func (r *Requester[Req, Resp]) failCalls(p *reqPeer) {
	for c := range p.calls {
		delete(r.pending, c.id)
		r.release(c)
		c.ch <- reply{lost: true}
	}
	clear(p.calls)
	p.inflight = 0
}

// release undoes c's registration with its peer. r.mu is held.
func (r *Requester[Req, Resp]) release(c *call) {
	p := c.peer
	if p == nil {
		return
	}
	delete(p.calls, c)
	p.inflight--
	if p.gone && len(p.calls) == 0 {
		delete(r.leaving, p.peer) // nothing left to fail
	}
	if c.probe {
		// The probe ended without an answer either way (lost, or not
		// sent): the next request may probe again.
		p.h.probing = false
		c.probe = false
		r.broadcast()
	}
	c.peer = nil
}

func (r *Requester[Req, Resp]) recvLoop() {
	defer r.wg.Done()
	for {
		m, sp, err := r.sock.RecvFrom(r.ctx)
		if err != nil {
			return
		}
		if h := r.hold.Load(); h != nil {
			<-*h
		}
		var env codec.View
		ok := len(m.Frames) > 0 && codec.DecodeView(m.Frames[len(m.Frames)-1], &env) == nil &&
			(env.Kind == codec.KindReply || env.Kind == codec.KindError)
		r.mu.Lock()
		left := r.leaving[sp]
		if p := r.byPeer[sp]; p != nil {
			p.taken++
		} else if left != nil {
			left.taken++
		}
		if !ok {
			r.c.dropped.Add(1)
			m.Free()
		} else if !r.answer(&env, m) {
			m.Free() // late: nobody waits for it
		}
		if left != nil && r.allTaken(left) {
			// Every message the gone replier sent is taken: its attempts
			// still without a reply are lost.
			delete(r.leaving, sp)
			r.failCalls(left)
		}
		r.mu.Unlock()
	}
}

// answer hands a reply to the call it answers, if one waits for it. r.mu
// is held.
func (r *Requester[Req, Resp]) answer(env *codec.View, m socket.Msg) bool {
	c := r.pending[env.ID]
	if c == nil {
		r.c.late.Add(1)
		return false
	}
	delete(r.pending, env.ID)
	if p := c.peer; p != nil {
		// A matched reply: the replier is healthy.
		h := p.h
		h.fails = 0
		c.probe = false
		if h.open || h.probing {
			h.open, h.probing, h.backoff = false, false, 0
			r.broadcast()
		}
		r.release(c)
	}
	panicked, _ := env.Header(panicHeader)
	rep := reply{kind: env.Kind, body: env.Body, panic: len(panicked) > 0, msg: m}
	if r.o.tracer != nil {
		e := *env
		rep.env = &e
	}
	c.ch <- rep
	return true
}

// pick chooses the replier for an attempt among the connected ones whose
// queue has room. Those whose breaker lets a request through come first:
// one not tried yet for this request if there is one, then one due a probe,
// then the one with the fewest requests in flight, round-robin among
// equals. When every breaker is shut, the breakers are overruled rather
// than the request kept waiting: it goes to the replier with the fewest
// timeouts in a row (then in all), preferably not tried yet. pick returns
// nil when no connected replier has room.
func (r *Requester[Req, Resp]) pick(tried []*reqPeer, now int64) (best *reqPeer, probe bool) {
	var least *reqPeer // the fallback
	bestTried, leastTried := true, true
	n := len(r.peers)
	for i := range n {
		p := r.peers[(r.next+i)%n]
		if p.gone || !p.peer.Ready() {
			continue
		}
		h := p.h
		t := slices.Contains(tried, p)
		if h.open && (h.probing || now < h.retryAt) {
			if q := least; q == nil || leastTried && !t ||
				leastTried == t && (h.fails < q.h.fails || h.fails == q.h.fails && h.timeouts < q.h.timeouts) {
				least, leastTried = p, t
			}
			continue
		}
		isProbe := h.open
		switch {
		case best == nil,
			bestTried && !t,
			bestTried == t && (isProbe && !probe || isProbe == probe && p.inflight < best.inflight):
			best, bestTried, probe = p, t, isProbe
		}
	}
	if n > 0 {
		r.next = (r.next + 1) % n
	}
	if best == nil {
		return least, false
	}
	return best, probe
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
	var end func(error)
	if r.o.tracer != nil {
		ctx, opts, end = r.o.startSend(ctx, "requester", r.o.service, codec.ID{}, opts)
	}
	resp, err := r.request(ctx, start, v, opts)
	if end != nil {
		end(err)
	}
	if err != nil {
		r.c.errors.Add(1)
		return zero, callError(err)
	}
	r.lat.record(time.Since(start))
	r.c.delivered.Add(1)
	return resp, nil
}

// request runs Request's attempts: each sends the request to the replier
// pick chooses (sendAttempt), waits for its reply (awaitReply) and decodes
// it (takeReply); an attempt that finds no replier or no reply within the
// timeout is retried, as one whose replier went.
func (r *Requester[Req, Resp]) request(ctx context.Context, now time.Time, v Req, opts []CallOption) (Resp, error) {
	var zero Resp
	body, bmem, err := marshalSend(v)
	if err != nil {
		return zero, err
	}
	defer bmem.release()
	env := codec.Envelope{Kind: codec.KindData, Body: body, Seq: r.seq.Add(1)}
	stamp(&env, now, &r.o, opts)

	c := callPool.Get().(*call)
	defer callPool.Put(c)
	var triedBuf [4]*reqPeer
	tried := triedBuf[:0]
	timer := getTimer(r.o.timeout)
	defer putTimer(timer)

	attempts := r.o.retries + 1
	lastErr := error(nil)
	r.c.sent.Add(1)
	for a := range attempts {
		if a > 0 {
			r.c.retried.Add(1)
			timer.Reset(r.o.timeout)
		}
		env.ID = codec.NewID()
		frame, fmem, err := encodeSend(&env, &bmem)
		if err != nil {
			return zero, err
		}
		p, err := r.sendAttempt(ctx, c, env.ID, env.Priority, frame, fmem, tried, timer)
		if err != nil {
			return zero, err
		}
		if p == nil {
			lastErr = errNoReplier
			continue
		}
		if !slices.Contains(tried, p) {
			tried = append(tried, p)
		}
		rep, retry, err := r.awaitReply(ctx, c, p, timer)
		if err != nil {
			return zero, err
		}
		if retry != nil {
			lastErr = retry
			continue
		}
		return r.takeReply(ctx, rep)
	}
	return zero, fmt.Errorf("%w: %d attempts, last: %v", ErrTimeout, attempts, lastErr)
}

// The reasons an attempt failed, for the ErrTimeout of the last.
var (
	errNoReplier   = errors.New("no replier available")
	errNoReply     = errors.New("no reply")
	errReplierLost = errors.New("replier connection lost")
)

// sendAttempt registers c as the attempt with id and sends its frame to
// the replier pick chooses, waiting for one that can take it. It returns
// that replier, or nil when timer fired before any could, or an error that
// ends the request. fmem, the frame's memory, is released when it returns:
// a send that failed (the replier's queue filled, or it went) leaves the
// frame to the next replier chosen, still ours.
func (r *Requester[Req, Resp]) sendAttempt(ctx context.Context, c *call, id codec.ID, prio uint8, frame []byte, fmem sendMem, tried []*reqPeer, timer *time.Timer) (*reqPeer, error) {
	defer fmem.release()
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		p, probe := r.pick(tried, mono())
		change := r.change
		if p != nil {
			c.id, c.peer, c.probe = id, p, probe
			r.pending[id] = c
			p.calls[c] = struct{}{}
			p.inflight++
			p.h.sent++
			if probe {
				p.h.probing = true
			}
		}
		r.mu.Unlock()
		if p != nil {
			err := r.sock.SendTo(ctx, p.peer, socket.Msg{Frames: [][]byte{empty, frame}, Priority: prio, Buf: fmem.sb})
			if err == nil {
				if r.sent != nil {
					r.sent(p.peer)
				}
				return p, nil
			}
			r.unregister(c, p, errors.Is(err, socket.ErrPeerLost))
			drain(c.ch)
			switch {
			case errors.Is(err, socket.ErrWouldBlock), errors.Is(err, socket.ErrPeerLost):
				continue // its queue filled, or it went: choose again
			case errors.Is(err, socket.ErrClosed):
				return nil, ErrClosed
			}
			return nil, err
		}
		r.waits.Add(1)
		// Ended, with the reason, when a replier refuses this
		// Requester (its key is not trusted, say) while none is
		// connected: waiting would not change that.
		refused := r.ref.waiting()
		select {
		case <-change:
		case <-refused.Done():
			return nil, context.Cause(refused)
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctxError(ctx)
		case <-r.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// awaitReply waits for the reply to c's attempt on p. retry, when not nil,
// says why the attempt failed and another may follow (no reply within the
// timeout, or p's connection lost); err ends the request.
func (r *Requester[Req, Resp]) awaitReply(ctx context.Context, c *call, p *reqPeer, timer *time.Timer) (rep reply, retry, err error) {
	select {
	case rep = <-c.ch:
	case <-timer.C:
		if r.abandon(c, p) {
			return reply{}, errNoReply, nil
		}
		rep = <-c.ch // the reply won the race
	case <-ctx.Done():
		if !r.abandon(c, nil) {
			rep := <-c.ch // the reply won the race: nobody takes it
			rep.msg.Free()
		}
		return reply{}, nil, ctxError(ctx)
	case <-r.ctx.Done():
		if !r.abandon(c, nil) {
			rep := <-c.ch
			rep.msg.Free()
		}
		return reply{}, nil, ErrClosed
	}
	if rep.lost {
		return reply{}, errReplierLost, nil
	}
	return rep, nil, nil
}

// takeReply ends the request with rep: its trace, then the replier's error
// or the body decoded into Resp. rep's memory is freed, or for a large
// []byte body handed to the caller.
func (r *Requester[Req, Resp]) takeReply(ctx context.Context, rep reply) (Resp, error) {
	var zero Resp
	if rep.env != nil {
		_, end := r.o.startRecv(ctx, OpReceive, "requester", rep.env)
		end(nil)
	}
	if rep.kind == codec.KindError {
		msg, err := unmarshalBody[string](rep.body)
		rep.msg.Free()
		if err != nil {
			msg = "undecodable error reply"
		}
		return zero, &RemoteError{Message: msg, Panic: rep.panic}
	}
	resp, kept, err := takeBody[Resp](rep.body)
	if kept {
		// a large []byte: the received memory itself, the caller's now
		rep.msg.TakeFrame(len(rep.msg.Frames) - 1)
	} else {
		rep.msg.Free()
	}
	if err != nil {
		return zero, fmt.Errorf("pattern: reply: %w", err)
	}
	return resp, nil
}

// unregister removes c's registration after its send failed; gone says
// that the send found p gone, so it is not chosen again.
func (r *Requester[Req, Resp]) unregister(c *call, p *reqPeer, gone bool) {
	r.mu.Lock()
	if r.pending[c.id] == c {
		delete(r.pending, c.id)
	}
	r.release(c)
	p.h.sent--
	if gone {
		p.gone = true
	}
	r.mu.Unlock()
}

// abandon withdraws c's attempt. It returns false when a reply (or a lost
// notice) was already delivered to c.ch. timedOut, when not nil, is the
// replier the attempt timed out on: its breaker opens, or stays open with
// a doubled back-off when the attempt was its probe; after two timeouts in
// a row its connection is dropped and dialled again.
func (r *Requester[Req, Resp]) abandon(c *call, timedOut *reqPeer) bool {
	r.mu.Lock()
	if r.pending[c.id] != c {
		r.mu.Unlock()
		return false
	}
	delete(r.pending, c.id)
	probe := c.probe
	c.probe = false // a failed probe is no reason to let another through
	r.release(c)
	redial := ""
	if p := timedOut; p != nil && !p.gone {
		h := p.h
		h.fails++
		h.timeouts++
		now := mono()
		switch {
		case probe:
			h.probing = false
			h.backoff = min(2*h.backoff, max(r.o.timeout, probeMax))
			h.retryAt = now + int64(h.backoff)
		case !h.open:
			h.open = true
			h.backoff = r.o.timeout
			h.retryAt = now + int64(h.backoff)
		}
		if h.fails%2 == 0 && h.ep != "" {
			redial = h.ep
		}
	}
	r.mu.Unlock()
	if redial != "" {
		// Lazy Pirate: abandon the connection and dial afresh. The
		// disconnect fails the replier's other attempts over at once.
		r.redial(redial)
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
	case rep := <-ch:
		rep.msg.Free()
	default:
	}
}

// Endpoints returns the endpoints bound with WithBind.
func (r *Requester[Req, Resp]) Endpoints() []string { return r.sock.Endpoints() }

// Peers returns the number of connected repliers.
func (r *Requester[Req, Resp]) Peers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.peers)
}

// Stats returns the Requester's counters: Sent (requests), Retried,
// Delivered (replies returned), Errors, Late, Dropped (undecodable replies),
// Pending (requests in flight), the Latency of successful requests, retries
// included, and in Peers one entry per replier endpoint (and per replier
// that dialled in): attempts sent, in flight and timed out, and whether its
// breaker is open.
func (r *Requester[Req, Resp]) Stats() Stats {
	var s Stats
	r.c.fill(&s)
	s.Refused = r.ref.count.Load()
	s.Latency = r.lat.snapshot()
	r.mu.Lock()
	s.Pending = len(r.pending)
	add := func(h *breaker, p *reqPeer) {
		ps := PeerStats{Endpoint: h.ep, Sent: h.sent, Timeouts: h.timeouts, Open: h.open, Reliability: 1}
		if p != nil {
			ps.Remote, ps.InFlight = p.peer.Remote(), p.inflight
		}
		s.Peers = append(s.Peers, ps)
	}
	seen := make(map[*breaker]bool)
	for _, p := range r.peers {
		if !seen[p.h] {
			seen[p.h] = true
			add(p.h, p)
		}
	}
	for _, h := range r.health {
		if !seen[h] {
			add(h, nil)
		}
	}
	r.mu.Unlock()
	addSocket(&s.Socket, r.sock.Stats())
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
	r.cancel()
	r.sock.Close()
	r.ref.close()
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
	o          options
	h          func(context.Context, Req) (Resp, error)
	sock       *socket.Socket
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	c          counters
	handlerLat histogram // WithHandlerTiming
	disc       *joined
	closeMu    sync.Mutex
	closed     bool // guarded by closeMu
}

// NewReplier creates a Replier that answers with h.
//
// Options: WithBind, WithConnect, WithWorkers, WithName, WithSocketOptions,
// WithLogger, WithService, WithWatcher, WithDiscovery.
func NewReplier[Req, Resp any](h func(ctx context.Context, req Req) (Resp, error), opts ...Option) (*Replier[Req, Resp], error) {
	if h == nil {
		return nil, optErr("NewReplier: nil handler")
	}
	o, err := buildOptions("Replier", oWorkers|oBorrow|oHandlerTiming, opts)
	if err != nil {
		return nil, err
	}
	s, err := newSocket(socket.ROUTER, &o, nil, socket.WithNoBlock(), socket.WithLowLatency(true))
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

func (rp *Replier[Req, Resp]) worker() {
	defer rp.wg.Done()
	for {
		m, err := rp.sock.Recv(rp.ctx)
		if err != nil {
			return
		}
		if rp.serve(m) {
			m.TakeFrame(len(m.Frames) - 1) // the request value was (a part of) the received frame
		} else {
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
	out := env.Reply()
	out.Sender, out.Type, out.Timestamp = rp.o.name, rp.o.msgType, now().UnixNano()
	var resp Resp
	var bmem sendMem // the reply body's memory
	defer func() { bmem.release() }()
	req, kept, err := takeBodyMode[Req](env.Body, rp.o.borrow)
	panicked := false
	ctx := rp.ctx
	if err == nil {
		logUnknownKeys[Req](&rp.o, env.Body)
		if rp.o.tracer != nil {
			var end func(error)
			ctx, end = rp.o.startRecv(ctx, OpProcess, "replier", &env)
			resp, err, panicked = rp.call(ctx, req)
			end(err)
		} else {
			resp, err, panicked = rp.call(ctx, req)
		}
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
		out.Body, bmem, _ = marshalSend(err.Error())
	} else if out.Body, bmem, err = marshalSend(resp); err != nil {
		rp.c.errors.Add(1)
		out.Kind = codec.KindError
		out.Body, bmem, _ = marshalSend("pattern: marshal reply: " + err.Error())
	}
	endSend := nopEnd
	if rp.o.tracer != nil {
		h := headerCarrier{}
		_, endSend = rp.o.tracer.Start(ctx, Operation{Kind: OpSend, Role: "replier", Destination: rp.o.service, MessageID: out.ID}, h)
		out.Headers = h.addTo(out.Headers)
	}
	frame, fmem, err := encodeSend(&out, &bmem)
	if err != nil {
		rp.c.dropped.Add(1)
		endSend(err)
		return kept
	}
	defer fmem.release()
	// The routing frames, then the reply (in a new slice: m's frames are
	// freed after this, and a large reply is written from its memory).
	frames := append(m.Frames[:n-1:n-1], frame)
	err = rp.sock.Send(rp.ctx, socket.Msg{Frames: frames, Priority: out.Priority, Buf: fmem.sb})
	endSend(err)
	if err != nil {
		rp.c.dropped.Add(1) // the requester has gone, or its queue is full
		return kept
	}
	rp.c.sent.Add(1)
	return kept
}

// call runs the handler, recovering a panic.
func (rp *Replier[Req, Resp]) call(ctx context.Context, req Req) (resp Resp, err error, panicked bool) {
	var start time.Time
	if rp.o.handlerTiming {
		start = time.Now()
	}
	defer func() {
		if rp.o.handlerTiming {
			rp.handlerLat.record(time.Since(start))
		}
		if v := recover(); v != nil {
			rp.c.panics.Add(1)
			rp.o.logger.Error("pattern: replier handler panicked", "panic", v, "stack", string(debug.Stack()))
			err, panicked = fmt.Errorf("%v", v), true
		}
	}()
	resp, err = rp.h(ctx, req)
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
	s.Handler = rp.handlerLat.snapshot()
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
