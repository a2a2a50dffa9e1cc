package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// Libzmq is libzmq (the C library, Debian's libzmq5) through
// github.com/pebbe/zmq4, with default options (HWM 1000, one I/O thread)
// and linger 0. A libzmq socket is used by one goroutine at a time, so
// calls poll the context every 100 ms through the send and receive
// time-outs instead of being interrupted.
type Libzmq struct {
	// Curve, when set, makes the bound socket a CURVE server and the
	// connecting ones its clients (ZMQ_CURVE_SERVER, ZMQ_CURVE_SERVERKEY:
	// libzmq's CURVE through libsodium), with no ZAP handler: any client
	// is let in.
	Curve *LibzmqCurveKeys
	// Inproc, when set, binds and connects over inproc:// (one context per
	// topology, as libzmq requires): libzmq's own in-process transport,
	// the reference for zpeer-inproc.
	Inproc bool
}

// inprocNames numbers the inproc endpoints of Inproc topologies.
var inprocNames atomic.Uint64

// LibzmqCurveKeys are the Z85 keys of a CURVE Libzmq stack.
type LibzmqCurveKeys struct {
	ServerPublic, ServerSecret, ClientPublic, ClientSecret string
}

// LibzmqCurve returns the libzmq stack over CURVE ("libzmq-curve").
func LibzmqCurve() Libzmq {
	sp, ss, err := zmq.NewCurveKeypair()
	if err != nil {
		panic(err)
	}
	cp, cs, err := zmq.NewCurveKeypair()
	if err != nil {
		panic(err)
	}
	return Libzmq{Curve: &LibzmqCurveKeys{sp, ss, cp, cs}}
}

// Name implements benchcore.Stack.
func (l Libzmq) Name() string {
	switch {
	case l.Curve != nil:
		return benchcore.RefLibzmq + "-curve"
	case l.Inproc:
		return benchcore.RefLibzmq + "-inproc"
	}
	return benchcore.RefLibzmq
}

// curveServer and curveClient set a socket's CURVE role (nothing without
// Curve).
func (l Libzmq) curveServer(s *zmq.Socket) error {
	if l.Curve == nil {
		return nil
	}
	return errors.Join(s.SetCurveServer(1), s.SetCurveSecretkey(l.Curve.ServerSecret))
}

func (l Libzmq) curveClient(s *zmq.Socket) error {
	if l.Curve == nil {
		return nil
	}
	return errors.Join(s.SetCurveServerkey(l.Curve.ServerPublic), s.SetCurvePublickey(l.Curve.ClientPublic), s.SetCurveSecretkey(l.Curve.ClientSecret))
}

const zmqPoll = 100 * time.Millisecond

type zmqTopo struct {
	zctx  *zmq.Context
	socks []*zmq.Socket
}

func (t *zmqTopo) socket(typ zmq.Type) (*zmq.Socket, error) {
	s, err := t.zctx.NewSocket(typ)
	if err != nil {
		return nil, err
	}
	t.socks = append(t.socks, s)
	for _, err := range []error{s.SetLinger(0), s.SetRcvtimeo(zmqPoll), s.SetSndtimeo(zmqPoll)} {
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (t *zmqTopo) close() error {
	var errs []error
	for _, s := range t.socks {
		if err := s.Close(); err != nil && !errors.Is(err, zmq.ErrorSocketClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, t.zctx.Term())...)
}

// build binds one socket of type bt on 127.0.0.1 and connects n of type ct.
func (l Libzmq) build(bt, ct zmq.Type, n int, setup func(*zmq.Socket) error) (*zmqTopo, *zmq.Socket, []*zmq.Socket, error) {
	zctx, err := zmq.NewContext()
	if err != nil {
		return nil, nil, nil, err
	}
	t := &zmqTopo{zctx: zctx}
	fail := func(err error) (*zmqTopo, *zmq.Socket, []*zmq.Socket, error) {
		t.close()
		return nil, nil, nil, err
	}
	b, err := t.socket(bt)
	if err != nil {
		return fail(err)
	}
	if err := l.curveServer(b); err != nil {
		return fail(err)
	}
	bindEP := "tcp://127.0.0.1:*"
	if l.Inproc {
		bindEP = fmt.Sprintf("inproc://zpeer-bench-%d", inprocNames.Add(1))
	}
	if err := b.Bind(bindEP); err != nil {
		return fail(err)
	}
	ep, err := b.GetLastEndpoint()
	if err != nil {
		return fail(err)
	}
	var cs []*zmq.Socket
	for range n {
		c, err := t.socket(ct)
		if err != nil {
			return fail(err)
		}
		if err := l.curveClient(c); err != nil {
			return fail(err)
		}
		if setup != nil {
			if err := setup(c); err != nil {
				return fail(err)
			}
		}
		if err := c.Connect(ep); err != nil {
			return fail(err)
		}
		cs = append(cs, c)
	}
	return t, b, cs, nil
}

func (l Libzmq) topo(bt, ct zmq.Type, n int, setup func(*zmq.Socket) error) (*benchcore.Topology, error) {
	t, b, cs, err := l.build(bt, ct, n, setup)
	if err != nil {
		return nil, err
	}
	top := &benchcore.Topology{Send: zmqConn{b}, Close: t.close}
	for _, c := range cs {
		top.Recv = append(top.Recv, zmqConn{c})
	}
	return top, nil
}

// Pipeline implements benchcore.Stack.
func (l Libzmq) Pipeline(ctx context.Context, n int) (*benchcore.Topology, error) {
	return l.topo(zmq.PUSH, zmq.PULL, n, nil)
}

// PubSub implements benchcore.Stack.
func (l Libzmq) PubSub(ctx context.Context, n int) (*benchcore.Topology, error) {
	return l.topo(zmq.PUB, zmq.SUB, n, func(s *zmq.Socket) error { return s.SetSubscribe("") })
}

// ReqRep implements benchcore.Stack.
func (l Libzmq) ReqRep(ctx context.Context) (*benchcore.Topology, error) {
	t, rep, reqs, err := l.build(zmq.REP, zmq.REQ, 1, nil)
	if err != nil {
		return nil, err
	}
	return &benchcore.Topology{Client: zmqConn{reqs[0]}, Server: zmqConn{rep}, Close: t.close}, nil
}

type zmqConn struct{ s *zmq.Socket }

func again(err error) bool { return zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) }

func (c zmqConn) Send(ctx context.Context, b []byte) error {
	for {
		_, err := c.s.SendBytes(b, 0)
		if err == nil || !again(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (c zmqConn) Recv(ctx context.Context) ([]byte, error) {
	for {
		b, err := c.s.RecvBytes(0)
		if err == nil || !again(err) {
			return b, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

func (c zmqConn) Close() error { return c.s.Close() }

// ProxyPubSub implements benchcore.ProxyStack: zmq_proxy_steerable between
// an XSUB and an XPUB, both bound, on a goroutine of its own (a control
// PAIR over inproc ends it); the PUB and the n SUBs connect.
func (l Libzmq) ProxyPubSub(ctx context.Context, n int) (*benchcore.Topology, error) {
	if l.Inproc {
		return nil, benchcore.ErrNotSupported // the proxy scenario is over tcp://
	}
	zctx, err := zmq.NewContext()
	if err != nil {
		return nil, err
	}
	t := &zmqTopo{zctx: zctx}
	var proxySocks []*zmq.Socket
	done := make(chan struct{})
	var ctl *zmq.Socket
	stop := func() error {
		if ctl != nil {
			ctl.Send("TERMINATE", 0)
			<-done
			for _, s := range proxySocks {
				s.Close()
			}
		}
		return t.close()
	}
	fail := func(err error) (*benchcore.Topology, error) {
		stop()
		return nil, err
	}
	raw := func(typ zmq.Type) (*zmq.Socket, error) {
		s, err := zctx.NewSocket(typ)
		if err == nil {
			proxySocks = append(proxySocks, s)
			err = s.SetLinger(0)
		}
		return s, err
	}
	xsub, err := raw(zmq.XSUB)
	if err != nil {
		return fail(err)
	}
	xpub, err := raw(zmq.XPUB)
	if err != nil {
		return fail(err)
	}
	ctlIn, err := raw(zmq.PAIR)
	if err != nil {
		return fail(err)
	}
	for _, e := range []error{xsub.Bind("tcp://127.0.0.1:*"), xpub.Bind("tcp://127.0.0.1:*"), ctlIn.Bind("inproc://zpeer-bench-proxy-control")} {
		if e != nil {
			return fail(e)
		}
	}
	front, err := xsub.GetLastEndpoint()
	if err != nil {
		return fail(err)
	}
	back, err := xpub.GetLastEndpoint()
	if err != nil {
		return fail(err)
	}
	if ctl, err = t.socket(zmq.PAIR); err != nil {
		return fail(err)
	}
	if err := ctl.Connect("inproc://zpeer-bench-proxy-control"); err != nil {
		return fail(err)
	}
	go func() {
		defer close(done)
		zmq.ProxySteerable(xsub, xpub, nil, ctlIn)
	}()
	pub, err := t.socket(zmq.PUB)
	if err != nil {
		return fail(err)
	}
	if err := pub.Connect(front); err != nil {
		return fail(err)
	}
	top := &benchcore.Topology{Send: zmqConn{pub}, Close: stop}
	for range n {
		s, err := t.socket(zmq.SUB)
		if err != nil {
			return fail(err)
		}
		if err := s.SetSubscribe(""); err != nil {
			return fail(err)
		}
		if err := s.Connect(back); err != nil {
			return fail(err)
		}
		top.Recv = append(top.Recv, zmqConn{s})
	}
	return top, nil
}
