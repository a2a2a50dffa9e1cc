package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// JetStream is NATS JetStream with file storage, the brokered reference for
// the durable acked pipeline (zpeer-durable-*): an embedded nats-server
// with JetStream on 127.0.0.1 and its store in a fresh directory under
// os.TempDir (or $ZPEER_BENCH_DIR). Pipeline is a work-queue stream and one
// durable pull consumer with explicit acks shared by the receivers; the
// sender publishes with PublishAsync, up to Window publishes waiting for
// their stored-ack (Flush waits for all of them), and each receiver acks
// every message it takes (Ack, not double-ack). SyncAlways makes the
// server fsync every write; by default it fsyncs every 2 minutes
// (sync_interval) and a write is only in the page cache when its ack
// comes.
type JetStream struct {
	SyncAlways bool
	Window     int
}

// Name implements benchcore.Stack.
func (j JetStream) Name() string {
	if j.SyncAlways {
		return "nats-js-syncalways"
	}
	return "nats-js"
}

// PubSub implements benchcore.Stack.
func (JetStream) PubSub(context.Context, int) (*benchcore.Topology, error) {
	return nil, benchcore.ErrNotSupported
}

// ReqRep implements benchcore.Stack.
func (JetStream) ReqRep(context.Context) (*benchcore.Topology, error) {
	return nil, benchcore.ErrNotSupported
}

const jsSubject = "bench.jobs"

// Pipeline implements benchcore.Stack.
func (j JetStream) Pipeline(ctx context.Context, n int) (*benchcore.Topology, error) {
	dir, err := os.MkdirTemp(os.Getenv("ZPEER_BENCH_DIR"), "zpeer-bench-js-")
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		MaxPayload: 8 << 20, MaxPending: 256 << 20,
		JetStream: true, StoreDir: dir, SyncAlways: j.SyncAlways,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	srv.Start()
	t := &natsTopo{srv: srv}
	closeAll := func() error {
		err := t.close()
		return errors.Join(err, os.RemoveAll(dir))
	}
	fail := func(err error) (*benchcore.Topology, error) {
		closeAll()
		return nil, fmt.Errorf("%s: %w", j.Name(), err)
	}
	if !srv.ReadyForConnections(10 * time.Second) {
		return fail(errors.New("embedded server did not start"))
	}
	window := max(j.Window, 1)
	pc, err := t.connect()
	if err != nil {
		return fail(err)
	}
	pjs, err := jetstream.New(pc, jetstream.WithPublishAsyncMaxPending(window))
	if err != nil {
		return fail(err)
	}
	stream, err := pjs.CreateStream(ctx, jetstream.StreamConfig{
		Name: "BENCH", Subjects: []string{jsSubject}, Storage: jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy, MaxBytes: 4 << 30,
	})
	if err != nil {
		return fail(err)
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1 << 16,
	}); err != nil {
		return fail(err)
	}
	top := &benchcore.Topology{Send: &jsPub{js: pjs}, Close: closeAll}
	for range n {
		nc, err := t.connect()
		if err != nil {
			return fail(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return fail(err)
		}
		cons, err := js.Consumer(ctx, "BENCH", "workers")
		if err != nil {
			return fail(err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(1024))
		if err != nil {
			return fail(err)
		}
		r := &jsSub{it: it}
		top.Recv = append(top.Recv, r)
		prev := top.Close
		top.Close = func() error { r.Close(); return prev() }
	}
	return top, nil
}

type jsPub struct {
	js jetstream.JetStream
}

// Send blocks while Window publishes wait for their acks (up to 30 s; the
// default 200 ms stall wait fails a publisher that outruns SyncAlways).
func (p *jsPub) Send(ctx context.Context, b []byte) error {
	_, err := p.js.PublishAsync(jsSubject, b, jetstream.WithStallWait(30*time.Second))
	return err
}

// Flush waits until every publish was stored (acked by the server).
func (p *jsPub) Flush() error {
	select {
	case <-p.js.PublishAsyncComplete():
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("nats-js: publishes not acked within 30s")
	}
}

// jsSub takes messages from the shared consumer and acks each.
type jsSub struct {
	it   jetstream.MessagesContext
	once sync.Once
}

func (s *jsSub) Recv(ctx context.Context) ([]byte, error) {
	// Next blocks with no context: stop the iterator when ctx ends.
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	m, err := s.it.Next()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if err := m.Ack(); err != nil {
		return nil, err
	}
	return m.Data(), nil
}

func (s *jsSub) Close() error {
	s.once.Do(s.it.Stop)
	return nil
}
