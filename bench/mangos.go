package bench

import (
	"context"
	"errors"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/protocol/pub"
	"go.nanomsg.org/mangos/v3/protocol/pull"
	"go.nanomsg.org/mangos/v3/protocol/push"
	"go.nanomsg.org/mangos/v3/protocol/rep"
	"go.nanomsg.org/mangos/v3/protocol/req"
	"go.nanomsg.org/mangos/v3/protocol/sub"
	_ "go.nanomsg.org/mangos/v3/transport/tcp" // the tcp:// transport

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// Mangos is nanomsg's mangos v3 with default options, over its tcp://
// transport (SP protocols, not ZMTP: it talks to nanomsg/NNG peers, not to
// ZeroMQ ones). Send copies the payload into a pooled message; Recv uses
// RecvMsg and frees the previous message.
type Mangos struct{}

// Name implements benchcore.Stack.
func (Mangos) Name() string { return "mangos" }

func (Mangos) build(bt, ct func() (mangos.Socket, error), n int, setup func(mangos.Socket) error) (mangos.Socket, []mangos.Socket, func() error, error) {
	var all []mangos.Socket
	closeAll := func() error {
		var errs []error
		for _, s := range all {
			if err := s.Close(); err != nil && !errors.Is(err, mangos.ErrClosed) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (mangos.Socket, []mangos.Socket, func() error, error) {
		closeAll()
		return nil, nil, nil, err
	}
	b, err := bt()
	if err != nil {
		return fail(err)
	}
	all = append(all, b)
	l, err := b.NewListener("tcp://127.0.0.1:0", nil)
	if err != nil {
		return fail(err)
	}
	if err := l.Listen(); err != nil {
		return fail(err)
	}
	ep := l.Address()
	var cs []mangos.Socket
	for range n {
		c, err := ct()
		if err != nil {
			return fail(err)
		}
		all = append(all, c)
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
	return b, cs, closeAll, nil
}

func (m Mangos) topo(bt, ct func() (mangos.Socket, error), n int, setup func(mangos.Socket) error) (*benchcore.Topology, error) {
	b, cs, closeAll, err := m.build(bt, ct, n, setup)
	if err != nil {
		return nil, err
	}
	t := &benchcore.Topology{Send: newMgConn(b), Close: closeAll}
	for _, c := range cs {
		t.Recv = append(t.Recv, newMgConn(c))
	}
	return t, nil
}

// Pipeline implements benchcore.Stack.
func (m Mangos) Pipeline(ctx context.Context, n int) (*benchcore.Topology, error) {
	return m.topo(push.NewSocket, pull.NewSocket, n, nil)
}

// PubSub implements benchcore.Stack.
func (m Mangos) PubSub(ctx context.Context, n int) (*benchcore.Topology, error) {
	return m.topo(pub.NewSocket, sub.NewSocket, n, func(s mangos.Socket) error { return s.SetOption(mangos.OptionSubscribe, []byte{}) })
}

// ReqRep implements benchcore.Stack.
func (m Mangos) ReqRep(ctx context.Context) (*benchcore.Topology, error) {
	r, cs, closeAll, err := m.build(rep.NewSocket, req.NewSocket, 1, nil)
	if err != nil {
		return nil, err
	}
	return &benchcore.Topology{Client: newMgConn(cs[0]), Server: newMgConn(r), Close: closeAll}, nil
}

type mgConn struct {
	s    mangos.Socket
	last *mangos.Message
	in   interrupter
}

func newMgConn(s mangos.Socket) *mgConn {
	c := &mgConn{s: s}
	c.in.fn = func() { s.Close() }
	return c
}

func (c *mgConn) Send(ctx context.Context, b []byte) error {
	if err := c.in.begin(ctx); err != nil {
		return err
	}
	defer c.in.end()
	return ctxErr(ctx, c.s.Send(b))
}

func (c *mgConn) Recv(ctx context.Context) ([]byte, error) {
	if err := c.in.begin(ctx); err != nil {
		return nil, err
	}
	defer c.in.end()
	if c.last != nil {
		c.last.Free()
		c.last = nil
	}
	m, err := c.s.RecvMsg()
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	c.last = m
	return m.Body, nil
}

func (c *mgConn) Close() error {
	c.in.release()
	return c.s.Close()
}
