package bench

import (
	"bytes"
	"context"
	"errors"

	"github.com/go-zeromq/zmq4"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// GoZMQ4 is github.com/go-zeromq/zmq4's own sockets (zmq4.NewPush etc.), the
// socket layer zpeer replaces while keeping zmq4's connection. Its PUSH
// sends every message to every connected peer (upstream issue #158), which
// shows as duplicates in the puller-killed fault; its PUB queues messages
// by reference without a bound, so the adapter copies them.
type GoZMQ4 struct{}

// Name implements benchcore.Stack.
func (GoZMQ4) Name() string { return "go-zeromq" }

type gzTopo struct {
	cancel context.CancelFunc
	socks  []zmq4.Socket
}

func (t *gzTopo) close() error {
	var errs []error
	for _, s := range t.socks {
		errs = append(errs, s.Close())
	}
	t.cancel()
	return errors.Join(errs...)
}

func (GoZMQ4) build(ctx context.Context, bind func(context.Context) zmq4.Socket, conn func(context.Context) zmq4.Socket, n int, setup func(zmq4.Socket) error) (*gzTopo, zmq4.Socket, []zmq4.Socket, error) {
	sctx, cancel := context.WithCancel(context.Background())
	t := &gzTopo{cancel: cancel}
	fail := func(err error) (*gzTopo, zmq4.Socket, []zmq4.Socket, error) {
		t.close()
		return nil, nil, nil, err
	}
	b := bind(sctx)
	t.socks = append(t.socks, b)
	if err := b.Listen("tcp://127.0.0.1:0"); err != nil {
		return fail(err)
	}
	ep := "tcp://" + b.Addr().String()
	var cs []zmq4.Socket
	for range n {
		c := conn(sctx)
		t.socks = append(t.socks, c)
		if setup != nil {
			if err := setup(c); err != nil {
				return fail(err)
			}
		}
		if err := c.Dial(ep); err != nil {
			return fail(err)
		}
		cs = append(cs, c)
	}
	return t, b, cs, nil
}

func newGz(fn func(context.Context, ...zmq4.Option) zmq4.Socket) func(context.Context) zmq4.Socket {
	return func(ctx context.Context) zmq4.Socket { return fn(ctx) }
}

func (g GoZMQ4) topo(ctx context.Context, bt, ct func(context.Context, ...zmq4.Option) zmq4.Socket, n int, setup func(zmq4.Socket) error, copySend bool) (*benchcore.Topology, error) {
	t, b, cs, err := g.build(ctx, newGz(bt), newGz(ct), n, setup)
	if err != nil {
		return nil, err
	}
	top := &benchcore.Topology{Send: newGzConn(b, copySend), Close: t.close}
	for _, c := range cs {
		top.Recv = append(top.Recv, newGzConn(c, false))
	}
	return top, nil
}

// Pipeline implements benchcore.Stack.
func (g GoZMQ4) Pipeline(ctx context.Context, n int) (*benchcore.Topology, error) {
	return g.topo(ctx, zmq4.NewPush, zmq4.NewPull, n, nil, false)
}

// PubSub implements benchcore.Stack.
func (g GoZMQ4) PubSub(ctx context.Context, n int) (*benchcore.Topology, error) {
	return g.topo(ctx, zmq4.NewPub, zmq4.NewSub, n, func(s zmq4.Socket) error { return s.SetOption(zmq4.OptionSubscribe, "") }, true)
}

// ReqRep implements benchcore.Stack.
func (g GoZMQ4) ReqRep(ctx context.Context) (*benchcore.Topology, error) {
	t, rep, reqs, err := g.build(ctx, newGz(zmq4.NewRep), newGz(zmq4.NewReq), 1, nil)
	if err != nil {
		return nil, err
	}
	return &benchcore.Topology{Client: newGzConn(reqs[0], false), Server: newGzConn(rep, false), Close: t.close}, nil
}

type gzConn struct {
	s    zmq4.Socket
	copy bool
	in   interrupter
}

func newGzConn(s zmq4.Socket, copySend bool) *gzConn {
	c := &gzConn{s: s, copy: copySend}
	c.in.fn = func() { s.Close() }
	return c
}

func (c *gzConn) Send(ctx context.Context, b []byte) error {
	if err := c.in.begin(ctx); err != nil {
		return err
	}
	defer c.in.end()
	if c.copy {
		b = bytes.Clone(b)
	}
	return ctxErr(ctx, c.s.Send(zmq4.NewMsg(b)))
}

func (c *gzConn) Recv(ctx context.Context) ([]byte, error) {
	if err := c.in.begin(ctx); err != nil {
		return nil, err
	}
	defer c.in.end()
	m, err := c.s.Recv()
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if len(m.Frames) == 0 {
		return nil, nil
	}
	return m.Frames[len(m.Frames)-1], nil
}

func (c *gzConn) Close() error {
	c.in.release()
	return c.s.Close()
}
