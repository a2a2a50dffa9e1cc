package pattern

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/testutil"
	"github.com/zpeer/zpeer/socket"
)

type tick struct {
	Symbol string
	Price  float64
}

// syncSub publishes on topic until sub receives one message, so that the
// subscription has reached the publisher. It returns the message received.
func syncSub[T any](t *testing.T, pub *Publisher[T], sub *Subscriber[T], topic string, v T) Message[T] {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := pub.Publish(ctxT(t), topic, v); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		m, err := sub.Recv(ctx)
		cancel()
		if err == nil {
			return m
		}
	}
	t.Fatal("subscription never took effect")
	return Message[T]{}
}

func TestPubSubTopics(t *testing.T) {
	pub, err := NewPublisher[tick](WithBind(loopback), WithName("feed"), WithType("tick"))
	pub = cleanup(t, pub, err)
	sub, err := NewSubscriber[tick](WithConnect(ep(t, pub)), WithTopics("eq."))
	sub = cleanup(t, sub, err)
	first := syncSub(t, pub, sub, "eq.warm", tick{})
	before := time.Now()
	for _, topic := range []string{"fx.EURUSD", "eq.ACME", "eq.ACME", "bond.X", "eq.INIT"} {
		if err := pub.Publish(ctxT(t), topic, tick{topic, 1.5}, Header("k", "v")); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct {
		topic string
		seq   uint64
	}{{"eq.ACME", 1}, {"eq.ACME", 2}, {"eq.INIT", 1}}
	for _, w := range want {
		m, err := sub.Recv(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if m.Topic != w.topic || m.Seq != w.seq || m.Value.Symbol != w.topic || m.Value.Price != 1.5 ||
			m.Sender != "feed" || m.Type != "tick" || m.Headers["k"] != "v" || m.ID.IsZero() ||
			m.Timestamp.Before(before.Add(-time.Second)) {
			t.Fatalf("got %+v, want topic %s seq %d", m, w.topic, w.seq)
		}
	}
	if first.Seq < 1 {
		t.Fatalf("warm-up seq %d", first.Seq)
	}
	st := sub.Stats()
	if st.Gaps != 0 || len(st.Sources) != 1 || st.Sources[0].Sender != "feed" || st.Sources[0].Reliability != 1 {
		t.Fatalf("subscriber stats: %+v", st)
	}
}

// A subscriber that joins late starts from the next message and does not
// count what was published before it as missed.
func TestSubscriberJoinsLate(t *testing.T) {
	pub, err := NewPublisher[int](WithBind(loopback))
	pub = cleanup(t, pub, err)
	for i := range 5 {
		if err := pub.Publish(ctxT(t), "t", i); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := NewSubscriber[int](WithConnect(ep(t, pub)), WithTopics(""))
	sub = cleanup(t, sub, err)
	m := syncSub(t, pub, sub, "t", 99)
	if m.Seq <= 5 {
		t.Fatalf("first message seq %d: it should be one published after joining", m.Seq)
	}
	for i := range 3 {
		pub.Publish(ctxT(t), "t", i)
	}
	for range 3 {
		if _, err := sub.Recv(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if st := sub.Stats(); st.Gaps != 0 {
		t.Fatalf("late joiner counted gaps: %+v", st)
	}
}

// Overflow a slow subscriber: the publisher is not slowed down, it counts
// what it dropped, and the subscriber reports exactly as many messages
// missed, through the callback and in its stats.
func TestSlowSubscriberOverflow(t *testing.T) {
	pub, err := NewPublisher[[]byte](WithBind(loopback), WithSocketOptions(socket.WithSendHWM(20)))
	pub = cleanup(t, pub, err)
	var gmu sync.Mutex
	var gaps []Gap
	logs := &testutil.SyncBuffer{}
	sub, err := NewSubscriber[[]byte](WithConnect(ep(t, pub)), WithTopics("bulk"),
		WithSocketOptions(socket.WithRecvHWM(10)), WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
		WithOnGap(func(g Gap) { gmu.Lock(); gaps = append(gaps, g); gmu.Unlock() }))
	sub = cleanup(t, sub, err)
	syncSub(t, pub, sub, "bulk", []byte("warm"))

	const n = 2000
	payload := make([]byte, 16<<10)
	start := time.Now()
	for range n { // the subscriber reads nothing meanwhile
		if err := pub.Publish(ctxT(t), "bulk", payload); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("publishing %d messages took %v: the slow subscriber held the publisher up", n, d)
	}
	pst := pub.Stats()
	if pst.Dropped == 0 {
		t.Fatalf("nothing dropped: %+v", pst)
	}
	// Drain, then publish a last message the subscriber certainly gets, so
	// that every drop shows as a gap.
	quiet := 0
	for quiet < 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := sub.Recv(ctx)
		cancel()
		if err != nil {
			quiet++
		}
	}
	if err := pub.Publish(ctxT(t), "bulk", []byte("last")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Recv(ctxT(t))
	if err != nil || string(m.Value) != "last" {
		t.Fatalf("last message: %v %v", m.Value, err)
	}
	pst, sst := pub.Stats(), sub.Stats()
	if pst.Dropped != sst.Gaps {
		t.Fatalf("publisher dropped %d, subscriber saw %d missing", pst.Dropped, sst.Gaps)
	}
	gmu.Lock()
	var reported uint64
	for _, g := range gaps {
		reported += g.Missed
		if g.Topic != "bulk" || g.To < g.From || g.Missed != g.To-g.From+1 {
			t.Errorf("bad gap %+v", g)
		}
	}
	gmu.Unlock()
	if reported != sst.Gaps {
		t.Fatalf("callback reported %d missed, stats %d", reported, sst.Gaps)
	}
	if l := logs.String(); !strings.Contains(l, `level=WARN msg=gap sender=`) || !strings.Contains(l, " topic=bulk from=") {
		t.Errorf("no gap event logged: %q", l)
	}
	src := sst.Sources[0]
	if src.Reliability >= 1 || src.Reliability != float64(src.Delivered)/float64(src.Delivered+src.Gaps) {
		t.Fatalf("source stats %+v", src)
	}
	if len(pst.Peers) != 1 || pst.Peers[0].Dropped != pst.Dropped || pst.Peers[0].Reliability >= 1 {
		t.Fatalf("publisher per-peer stats %+v", pst.Peers)
	}
	t.Logf("published %d, dropped %d, subscriber delivered %d (reliability %.3f)", n+1, pst.Dropped, src.Delivered, src.Reliability)
}

// Any ZeroMQ SUB can filter a Publisher's messages by topic: they are
// [topic, envelope].
func TestPublisherWireShape(t *testing.T) {
	pub, err := NewPublisher[string](WithBind(loopback))
	pub = cleanup(t, pub, err)
	raw, err := socket.New(socket.SUB)
	raw = cleanup(t, raw, err)
	raw.Subscribe("news")
	raw.Connect(ep(t, pub))
	var m socket.Msg
	waitFor(t, "a message", func() bool {
		pub.Publish(ctxT(t), "news.x", "hello")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		var err error
		m, err = raw.Recv(ctx)
		return err == nil
	})
	if len(m.Frames) != 2 || string(m.Frames[0]) != "news.x" {
		t.Fatalf("frames %q", m.Frames)
	}
	var env codec.Envelope
	if err := codec.Decode(m.Frames[1], &env); err != nil || env.Topic != "news.x" || env.Kind != codec.KindData {
		t.Fatalf("envelope %+v %v", env, err)
	}
}

func TestSubscriberClose(t *testing.T) {
	sub, err := NewSubscriber[int](WithConnect("tcp://127.0.0.1:1"), WithTopics(""))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sub.Recv(context.Background())
		done <- err
	}()
	sub.Close()
	sub.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
}
