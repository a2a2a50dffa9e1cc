package socket

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-zeromq/zmq4"
)

// XPubOptions are an XPUB socket's settings (libzmq's ZMQ_XPUB_VERBOSE,
// ZMQ_XPUB_VERBOSER, ZMQ_XPUB_MANUAL and ZMQ_XPUB_WELCOME_MSG).
type XPubOptions struct {
	// Verbose passes every subscribe message to the application, not only
	// the first for a prefix no other peer holds.
	Verbose bool
	// VerboseUnsubscribe passes every cancel that removes a peer's prefix,
	// not only the one that removes it from the last peer holding it.
	VerboseUnsubscribe bool
	// Manual leaves subscriptions to the application: every subscription
	// message is passed up and changes nothing until the application
	// calls Subscribe (for the peer of the last one Recv returned) or
	// SubscribePeer.
	Manual bool
	// Welcome, when not nil, is sent to every peer as it attaches (a SUB
	// receives it only if it subscribed to a prefix of it).
	Welcome []byte
}

// WithXPubVerbose makes an XPUB socket pass every subscribe message up
// (ZMQ_XPUB_VERBOSE); with unsubscribe set, every cancel too
// (ZMQ_XPUB_VERBOSER).
func WithXPubVerbose(unsubscribe bool) Option {
	return func(o *Options) error {
		o.XPub.Verbose, o.XPub.VerboseUnsubscribe = true, unsubscribe
		return nil
	}
}

// WithXPubManual makes an XPUB socket leave subscriptions to the
// application (ZMQ_XPUB_MANUAL, see XPubOptions.Manual).
func WithXPubManual() Option {
	return func(o *Options) error { o.XPub.Manual = true; return nil }
}

// WithWelcomeMessage makes an XPUB socket send msg to every peer as it
// attaches (ZMQ_XPUB_WELCOME_MSG). It must not be empty.
func WithWelcomeMessage(msg []byte) Option {
	return func(o *Options) error {
		if len(msg) == 0 {
			return errors.New("socket: empty welcome message")
		}
		o.XPub.Welcome = append([]byte(nil), msg...)
		return nil
	}
}

// xpubProto is PUB (pubProto sends, filters and drops) plus what libzmq's
// XPUB adds: the subscription messages of its peers, and any other message
// they send, are handed to the application by Recv, in the order they
// arrived; a peer that goes hands up a cancel for each of its prefixes that
// no other peer holds. A subscription forwarder (the pub/sub proxy) is an
// XPUB whose Recv feeds an XSUB's Send.
//
// What Recv hands up waits in one queue in arrival order (libzmq's pending
// list), not per peer: a peer's cancels must never overtake its subscribes.
// The queue holds RecvHWM messages; a peer's reader waits beyond that, so a
// subscription flood is back-pressured through TCP to the peer that sends
// it. Only the cancels of a departing peer are queued beyond the mark: they
// are bounded by its prefixes, and losing one would leave a prefix
// subscribed upstream forever.
type xpubProto struct {
	*pubProto
	o XPubOptions

	mu      sync.Mutex
	q       []upMsg             // guarded by mu: q[head:] wait for Recv
	head    int                 // guarded by mu
	live    map[*pipe]*xpubPeer // guarded by mu: the attached peers
	holders map[string]int      // guarded by mu: prefix -> peers holding it
	last    *pipe               // guarded by mu: the peer of the last subscription Recv returned
	room    chan struct{}       // guarded by mu: closed (and replaced) when the queue drops below the mark
	notify  chan struct{}       // capacity 1: something was queued
}

// upMsg is a message on its way to the application, with its peer.
type upMsg struct {
	m   Msg
	p   *pipe
	sub bool // a subscription message
}

type xpubPeer struct {
	requested map[string]struct{} // manual mode: the prefixes the peer asked for
}

func newXPubProto(s *Socket) *xpubProto {
	return &xpubProto{
		pubProto: newPubProto(s),
		o:        s.opts.XPub,
		live:     make(map[*pipe]*xpubPeer),
		holders:  make(map[string]int),
		room:     make(chan struct{}),
		notify:   make(chan struct{}, 1),
	}
}

func (r *xpubProto) attach(p *pipe) {
	if r.o.Welcome != nil {
		p.enqueue(Msg{Frames: [][]byte{r.o.Welcome}}, true)
	}
	r.mu.Lock()
	r.live[p] = &xpubPeer{requested: make(map[string]struct{})}
	r.mu.Unlock()
	r.pubProto.attach(p)
}

func (r *xpubProto) detach(p *pipe) {
	r.pubProto.detach(p)
	r.mu.Lock()
	pr := r.live[p]
	delete(r.live, p)
	if r.last == p {
		r.last = nil
	}
	var gone []string
	switch {
	case pr == nil || r.s.isClosed():
		// never attached, or the socket is closing: no one will read them
	case r.o.Manual:
		for k := range pr.requested {
			gone = append(gone, k)
		}
	default:
		for _, k := range p.subs.list() {
			if r.drop(k) || r.o.VerboseUnsubscribe {
				gone = append(gone, k)
			}
		}
	}
	for _, k := range gone {
		r.q = append(r.q, upMsg{m: subMsg(k, false), p: p, sub: true})
	}
	r.mu.Unlock()
	if len(gone) > 0 {
		r.wake()
	}
}

// drop removes one holder of prefix k and reports whether none is left.
// The caller holds mu.
func (r *xpubProto) drop(k string) bool {
	if r.holders[k] <= 1 {
		delete(r.holders, k)
		return true
	}
	r.holders[k]--
	return false
}

func (r *xpubProto) wake() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// incoming runs on p's reader: a subscription message updates p's
// subscriptions and goes up as the options say; any other message goes up
// as it is.
func (r *xpubProto) incoming(p *pipe, m Msg) (Msg, bool) {
	if prefix, on, ok := subscription(m); ok {
		r.subscription(p, prefix, on)
		return Msg{}, false
	}
	if !r.lockRoom(p) {
		p.discard(1)
		return Msg{}, false
	}
	// The reader frees m when incoming consumes it: keep a copy.
	frames := make([][]byte, len(m.Frames))
	for i, f := range m.Frames {
		frames[i] = append([]byte{}, f...)
	}
	r.q = append(r.q, upMsg{m: Msg{Frames: frames}, p: p})
	r.mu.Unlock()
	r.wake()
	return Msg{}, false
}

// command takes ZMTP 3.1 SUBSCRIBE and CANCEL commands as the equivalent
// messages.
func (r *xpubProto) command(p *pipe, name string, data []byte) {
	r.subscription(p, data, name == zmq4.CmdSubscribe)
}

// lockRoom waits until the queue is below the mark and returns holding mu,
// true; or false, not holding it, when p is detached or the socket closes.
func (r *xpubProto) lockRoom(p *pipe) bool {
	for {
		r.mu.Lock()
		if r.live[p] == nil {
			r.mu.Unlock()
			return false
		}
		if len(r.q)-r.head < r.s.opts.RecvHWM {
			return true
		}
		room := r.room
		r.mu.Unlock()
		// Not reading: the heartbeat must not take the peer for dead (see
		// fairQueue.push).
		p.paused.Store(true)
		select {
		case <-room:
			p.resume()
		case <-p.done:
			p.resume()
			return false
		case <-r.s.closing:
			p.resume()
			return false
		}
	}
}

// subscription applies a subscription message from p and queues it for
// Recv as the options say. prefix is the reader's memory: what is queued is
// a copy.
func (r *xpubProto) subscription(p *pipe, prefix []byte, on bool) {
	if on && len(prefix) > r.s.opts.MaxPrefix {
		p.discard(1)
		return
	}
	if !r.lockRoom(p) {
		p.discard(1)
		return
	}
	pass := false
	if r.o.Manual {
		req := r.live[p].requested
		_, had := req[string(prefix)]
		switch {
		case on && !had && len(req) >= r.s.opts.MaxSubs:
			p.discard(1)
		case on:
			req[string(prefix)] = struct{}{}
			pass = true
		default:
			delete(req, string(prefix))
			pass = true
		}
	} else {
		changed, err := p.subs.add(prefix, on, r.s.opts.MaxSubs)
		if changed {
			r.s.subsChanged.fire()
		}
		switch {
		case err != nil:
			p.discard(1)
		case on:
			unique := false
			if changed {
				r.holders[string(prefix)]++
				unique = r.holders[string(prefix)] == 1
			}
			pass = unique || r.o.Verbose
		case changed:
			pass = r.drop(string(prefix)) || r.o.VerboseUnsubscribe
		}
	}
	if pass {
		r.q = append(r.q, upMsg{m: subMsg(string(prefix), on), p: p, sub: true})
	}
	r.mu.Unlock()
	if pass {
		r.wake()
	}
}

// tryRecv takes the next message up, if any.
func (r *xpubProto) tryRecv() (upMsg, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.q) - r.head
	if n == 0 {
		return upMsg{}, false
	}
	u := r.q[r.head]
	r.q[r.head] = upMsg{}
	r.head++
	if r.head == len(r.q) {
		r.q, r.head = r.q[:0], 0
	} else if r.head >= 1024 && r.head*2 >= len(r.q) {
		k := copy(r.q, r.q[r.head:])
		clear(r.q[k:])
		r.q, r.head = r.q[:k], 0
	}
	if u.sub {
		r.last = u.p
	}
	if n == r.s.opts.RecvHWM {
		close(r.room)
		r.room = make(chan struct{})
	}
	if n > 1 {
		r.wake() // for another receiver
	}
	return u, true
}

func (r *xpubProto) recv(ctx context.Context) (Msg, *pipe, error) {
	for {
		if u, ok := r.tryRecv(); ok {
			return u.m, u.p, nil
		}
		select {
		case <-r.notify:
		case <-r.s.closing:
			if u, ok := r.tryRecv(); ok {
				return u.m, u.p, nil
			}
			return Msg{}, nil, ErrClosed
		case <-ctx.Done():
			return Msg{}, nil, ctxErr(ctx)
		}
	}
}

func (r *xpubProto) sendTo(ctx context.Context, p *pipe, m Msg) error {
	return sendTo(ctx, r.s, p, m, ErrPeerLost)
}

// subscribeLast is Subscribe on an XPUB: manual mode, for the peer of the
// last subscription message Recv returned.
func (r *xpubProto) subscribeLast(prefix string, on bool) error {
	if !r.o.Manual {
		return fmt.Errorf("%w: Subscribe on an XPUB socket needs WithXPubManual", ErrState)
	}
	r.mu.Lock()
	p := r.last
	r.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%w: XPUB Subscribe: no subscription received from a connected peer", ErrState)
	}
	return r.subscribePeer(p, prefix, on)
}

func (r *xpubProto) subscribePeer(p *pipe, prefix string, on bool) error {
	if !r.o.Manual {
		return fmt.Errorf("%w: SubscribePeer needs WithXPubManual", ErrState)
	}
	changed, err := p.subs.add([]byte(prefix), on, r.s.opts.MaxSubs)
	if err != nil {
		return fmt.Errorf("socket: subscribe %s: %w", p.face.String(), err)
	}
	if changed {
		r.s.subsChanged.fire()
	}
	return nil
}

// SubscribePeer subscribes p to prefix on an XPUB socket with
// WithXPubManual: what is sent from now on whose first frame starts with
// prefix goes to p. It is Subscribe with the peer named, for a program that
// takes subscription messages with RecvFrom. Other sockets fail with
// ErrState; a peer beyond its subscription limit with an error.
func (s *Socket) SubscribePeer(p *Peer, prefix string) error {
	return s.subscribePeer(p, prefix, true)
}

// UnsubscribePeer undoes SubscribePeer.
func (s *Socket) UnsubscribePeer(p *Peer, prefix string) error {
	return s.subscribePeer(p, prefix, false)
}

func (s *Socket) subscribePeer(p *Peer, prefix string, on bool) error {
	r, ok := s.proto.(*xpubProto)
	if !ok {
		return errState(s, "SubscribePeer")
	}
	if p == nil || p.p.s != s {
		return fmt.Errorf("%w: not a peer of this socket", ErrNoSuchPeer)
	}
	return r.subscribePeer(p.p, prefix, on)
}
