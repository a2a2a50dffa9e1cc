package benchcore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/socket"
)

// ZpeerStack is zpeer's socket engine under test.
type ZpeerStack struct {
	// Options are applied to every socket after the harness's own
	// (linger 0, so that closing a topology never waits).
	Options []socket.Option
	// Bound and Connected are applied after Options to the bound socket
	// and to the connecting ones (a CURVE server and its clients).
	Bound, Connected []socket.Option
	name             string
	// Inproc binds inproc:// endpoints instead of loopback TCP: the
	// sockets of one process, messages handed over in memory.
	Inproc bool
}

// Zpeer returns the zpeer stack with default socket options.
func Zpeer(opts ...socket.Option) *ZpeerStack { return &ZpeerStack{Options: opts} }

// ZpeerInproc returns the zpeer stack over inproc:// ("zpeer-inproc").
func ZpeerInproc(opts ...socket.Option) *ZpeerStack {
	return &ZpeerStack{Options: opts, Inproc: true, name: "zpeer-inproc"}
}

var inprocSeq atomic.Uint64

// bindEndpoint is what the stack's bound sockets bind.
func (z *ZpeerStack) bindEndpoint() string {
	if z.Inproc {
		return fmt.Sprintf("inproc://zpeer-bench-%d", inprocSeq.Add(1))
	}
	return "tcp://127.0.0.1:0"
}

// ZpeerCurve returns the zpeer stack over CURVE ("zpeer-curve"): the bound
// socket is a CURVE server, the connecting ones its clients, each with a
// key pair of its own; the server lets any client in.
func ZpeerCurve() *ZpeerStack {
	kp, err := socket.NewKeyPair()
	if err != nil {
		panic(err) // crypto/rand failed
	}
	return &ZpeerStack{
		name:      "zpeer-curve",
		Bound:     []socket.Option{socket.WithCurveServer(kp.Secret)},
		Connected: []socket.Option{socket.WithCurveClient(kp.Public, socket.KeyPair{})},
	}
}

// Name implements Stack.
func (z *ZpeerStack) Name() string {
	if z.name != "" {
		return z.name
	}
	return "zpeer"
}

func (z *ZpeerStack) newSocket(t socket.Type, bound bool) (*socket.Socket, error) {
	opts := append([]socket.Option{socket.WithLinger(0)}, z.Options...)
	if bound {
		opts = append(opts, z.Bound...)
	} else {
		opts = append(opts, z.Connected...)
	}
	return socket.New(t, opts...)
}

// topo builds one bound socket and n connected ones, and waits until the
// bound one sees all n peers.
func (z *ZpeerStack) topo(ctx context.Context, bt, ct socket.Type, n int, setup func(*socket.Socket) error) (*socket.Socket, []*socket.Socket, func() error, error) {
	var all []*socket.Socket
	closeAll := func() error {
		var errs []error
		for i := len(all) - 1; i >= 0; i-- {
			errs = append(errs, all[i].Close())
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*socket.Socket, []*socket.Socket, func() error, error) {
		closeAll()
		return nil, nil, nil, err
	}
	b, err := z.newSocket(bt, true)
	if err != nil {
		return fail(err)
	}
	all = append(all, b)
	ep, err := b.Bind(z.bindEndpoint())
	if err != nil {
		return fail(err)
	}
	var cs []*socket.Socket
	for range n {
		c, err := z.newSocket(ct, false)
		if err != nil {
			return fail(err)
		}
		all = append(all, c)
		cs = append(cs, c)
		if setup != nil {
			if err := setup(c); err != nil {
				return fail(err)
			}
		}
		if err := c.Connect(ep); err != nil {
			return fail(err)
		}
	}
	if err := WaitFor(ctx, func() bool { return b.Peers() >= n }); err != nil {
		return fail(fmt.Errorf("zpeer: %d peers on %s: %w", n, ep, err))
	}
	return b, cs, closeAll, nil
}

// Pipeline implements Stack: PUSH binds, n PULLs connect.
func (z *ZpeerStack) Pipeline(ctx context.Context, n int) (*Topology, error) {
	push, pulls, closeAll, err := z.topo(ctx, socket.PUSH, socket.PULL, n, nil)
	if err != nil {
		return nil, err
	}
	t := &Topology{Send: zconn{push}, Close: closeAll}
	for _, p := range pulls {
		t.Recv = append(t.Recv, &zrecv{s: p})
	}
	return t, nil
}

// PubSub implements Stack: PUB binds, n SUBs subscribe to everything and
// connect.
func (z *ZpeerStack) PubSub(ctx context.Context, n int) (*Topology, error) {
	pub, subs, closeAll, err := z.topo(ctx, socket.PUB, socket.SUB, n, func(s *socket.Socket) error { return s.Subscribe("") })
	if err != nil {
		return nil, err
	}
	t := &Topology{Send: zconn{pub}, Close: closeAll}
	for _, s := range subs {
		t.Recv = append(t.Recv, &zrecv{s: s})
	}
	return t, nil
}

// ReqRep implements Stack: REP binds, REQ connects.
func (z *ZpeerStack) ReqRep(ctx context.Context) (*Topology, error) {
	rep, reqs, closeAll, err := z.topo(ctx, socket.REP, socket.REQ, 1, nil)
	if err != nil {
		return nil, err
	}
	return &Topology{Client: zconn{reqs[0]}, Server: zconn{rep}, Close: closeAll}, nil
}

// zconn adapts a socket the way an application uses it: one frame per
// message, built at the call.
type zconn struct{ s *socket.Socket }

func (c zconn) Send(ctx context.Context, b []byte) error {
	return c.s.Send(ctx, socket.Msg{Frames: [][]byte{b}})
}

func (c zconn) Recv(ctx context.Context) ([]byte, error) {
	m, err := c.s.Recv(ctx)
	return m.Body(), err
}

func (c zconn) Close() error { return c.s.Close() }

// WaitFor polls cond every millisecond until it holds or ctx ends.
func WaitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// zrecv is a receive-only socket that, like an application done with each
// message, frees the previous one (socket.Msg.Free) when it asks for the
// next: large frame buffers are reused instead of collected.
type zrecv struct {
	s    *socket.Socket
	prev socket.Msg
}

func (r *zrecv) Recv(ctx context.Context) ([]byte, error) {
	r.prev.Free()
	m, err := r.s.Recv(ctx)
	r.prev = m
	return m.Body(), err
}

func (r *zrecv) Close() error { return r.s.Close() }

// ProxyPubSub implements ProxyStack: a socket.Proxy between an XSUB and an
// XPUB, both bound; the PUB and the n SUBs connect.
func (z *ZpeerStack) ProxyPubSub(ctx context.Context, n int) (*Topology, error) {
	var socks []*socket.Socket
	var stopProxy func()
	closeAll := func() error {
		if stopProxy != nil {
			stopProxy()
		}
		var errs []error
		for i := len(socks) - 1; i >= 0; i-- {
			errs = append(errs, socks[i].Close())
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*Topology, error) {
		closeAll()
		return nil, err
	}
	mk := func(t socket.Type, bound bool, opts ...socket.Option) (*socket.Socket, error) {
		all := append([]socket.Option{socket.WithLinger(0)}, z.Options...)
		if bound {
			all = append(all, z.Bound...)
		} else {
			all = append(all, z.Connected...)
		}
		s, err := socket.New(t, append(all, opts...)...)
		if err == nil {
			socks = append(socks, s)
		}
		return s, err
	}
	xsub, err := mk(socket.XSUB, true)
	if err != nil {
		return fail(err)
	}
	xpub, err := mk(socket.XPUB, true, socket.WithXPubVerbose(false))
	if err != nil {
		return fail(err)
	}
	px, err := socket.NewProxy(xsub, xpub)
	if err != nil {
		return fail(err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		px.Run(pctx)
	}()
	stopProxy = func() { cancel(); <-done }
	front, err := xsub.Bind(z.bindEndpoint())
	if err != nil {
		return fail(err)
	}
	back, err := xpub.Bind(z.bindEndpoint())
	if err != nil {
		return fail(err)
	}
	pub, err := mk(socket.PUB, false)
	if err != nil {
		return fail(err)
	}
	if err := pub.Connect(front); err != nil {
		return fail(err)
	}
	t := &Topology{Send: zconn{pub}, Close: closeAll}
	for range n {
		s, err := mk(socket.SUB, false)
		if err != nil {
			return fail(err)
		}
		s.Subscribe("")
		if err := s.Connect(back); err != nil {
			return fail(err)
		}
		t.Recv = append(t.Recv, &zrecv{s: s})
	}
	if err := WaitFor(ctx, func() bool {
		st := pub.Stats()
		return xpub.Peers() >= n && len(st.PerPeer) == 1 && st.PerPeer[0].Subscriptions > 0
	}); err != nil {
		return fail(fmt.Errorf("zpeer: proxy with %d subscribers: %w", n, err))
	}
	return t, nil
}
