package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// NATS is core NATS (no JetStream) through nats.go, with a nats-server
// embedded in the process and listening on 127.0.0.1: a brokered reference
// point, every message crossing the server. Pipeline is a queue group
// (the server picks one member per message); PubSub is plain subjects;
// ReqRep publishes with a reply inbox. Receivers are SubscribeSync
// subscriptions with nats.go's defaults: a 64k-message queue, beyond which
// the client drops and reports a slow consumer, as NATS does for any
// application that falls behind.
type NATS struct{}

// Name implements benchcore.Stack.
func (NATS) Name() string { return "nats" }

const natsSubject = "bench"

type natsTopo struct {
	srv   *server.Server
	conns []*nats.Conn
}

func startNATS() (*natsTopo, error) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		MaxPayload: 8 << 20, MaxPending: 256 << 20,
	})
	if err != nil {
		return nil, err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("nats: embedded server did not start")
	}
	return &natsTopo{srv: srv}, nil
}

func (t *natsTopo) connect() (*nats.Conn, error) {
	nc, err := nats.Connect(t.srv.ClientURL(), nats.NoReconnect())
	if err != nil {
		return nil, err
	}
	t.conns = append(t.conns, nc)
	return nc, nil
}

func (t *natsTopo) close() error {
	for _, nc := range t.conns {
		nc.Close()
	}
	t.srv.Shutdown()
	t.srv.WaitForShutdown()
	return nil
}

func (NATS) fan(queue bool, n int) (*benchcore.Topology, error) {
	t, err := startNATS()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*benchcore.Topology, error) {
		t.close()
		return nil, err
	}
	pubc, err := t.connect()
	if err != nil {
		return fail(err)
	}
	top := &benchcore.Topology{Send: natsPub{nc: pubc, subj: natsSubject}, Close: t.close}
	for range n {
		nc, err := t.connect()
		if err != nil {
			return fail(err)
		}
		var s *nats.Subscription
		if queue {
			s, err = nc.QueueSubscribeSync(natsSubject, "workers")
		} else {
			s, err = nc.SubscribeSync(natsSubject)
		}
		if err == nil {
			err = s.SetPendingLimits(-1, -1)
		}
		if err == nil {
			err = nc.Flush() // the server has the subscription
		}
		if err != nil {
			return fail(fmt.Errorf("nats: subscribe: %w", err))
		}
		top.Recv = append(top.Recv, &natsSub{nc: nc, sub: s})
	}
	return top, nil
}

// Pipeline implements benchcore.Stack.
func (s NATS) Pipeline(ctx context.Context, n int) (*benchcore.Topology, error) {
	return s.fan(true, n)
}

// PubSub implements benchcore.Stack.
func (s NATS) PubSub(ctx context.Context, n int) (*benchcore.Topology, error) { return s.fan(false, n) }

// ReqRep implements benchcore.Stack.
func (NATS) ReqRep(ctx context.Context) (*benchcore.Topology, error) {
	t, err := startNATS()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*benchcore.Topology, error) {
		t.close()
		return nil, err
	}
	sc, err := t.connect()
	if err != nil {
		return fail(err)
	}
	ssub, err := sc.SubscribeSync(natsSubject)
	if err == nil {
		err = sc.Flush()
	}
	if err != nil {
		return fail(err)
	}
	cc, err := t.connect()
	if err != nil {
		return fail(err)
	}
	inbox := cc.NewRespInbox()
	csub, err := cc.SubscribeSync(inbox)
	if err == nil {
		err = cc.Flush()
	}
	if err != nil {
		return fail(err)
	}
	return &benchcore.Topology{
		Client: &natsReq{natsSub: natsSub{nc: cc, sub: csub}, inbox: inbox},
		Server: &natsRep{natsSub: natsSub{nc: sc, sub: ssub}},
		Close:  t.close,
	}, nil
}

type natsPub struct {
	nc   *nats.Conn
	subj string
}

func (p natsPub) Send(_ context.Context, b []byte) error { return p.nc.Publish(p.subj, b) }

type natsSub struct {
	nc  *nats.Conn
	sub *nats.Subscription
}

func (s *natsSub) Recv(ctx context.Context) ([]byte, error) {
	m, err := s.sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

func (s *natsSub) Close() error {
	s.nc.Close()
	return nil
}

type natsReq struct {
	natsSub
	inbox string
}

func (r *natsReq) Send(_ context.Context, b []byte) error {
	return r.nc.PublishRequest(natsSubject, r.inbox, b)
}

type natsRep struct {
	natsSub
	reply string
}

func (r *natsRep) Recv(ctx context.Context) ([]byte, error) {
	m, err := r.sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, err
	}
	r.reply = m.Reply
	return m.Data, nil
}

func (r *natsRep) Send(_ context.Context, b []byte) error { return r.nc.Publish(r.reply, b) }
