package pattern

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/zpeer/zpeer/socket"
)

// proxyRun is a pub/sub forwarder that can be stopped and started again on
// the same endpoints: an XSUB connected to the publisher, an XPUB bound
// for the subscribers.
type proxyRun struct {
	xsub, xpub *socket.Socket
	cancel     context.CancelFunc
	done       chan error
}

func startProxy(t *testing.T, pubEP, backEP string) (*proxyRun, string) {
	t.Helper()
	fast := socket.WithReconnect(10*time.Millisecond, 50*time.Millisecond)
	xsub, err := socket.New(socket.XSUB, fast)
	if err != nil {
		t.Fatal(err)
	}
	xpub, err := socket.New(socket.XPUB, socket.WithXPubVerbose(false))
	if err != nil {
		t.Fatal(err)
	}
	ep, err := xpub.Bind(backEP)
	if err != nil {
		t.Fatal(err)
	}
	if err := xsub.Connect(pubEP); err != nil {
		t.Fatal(err)
	}
	px, err := socket.NewProxy(xsub, xpub)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &proxyRun{xsub: xsub, xpub: xpub, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- px.Run(ctx) }()
	return r, ep
}

func (r *proxyRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; !errors.Is(err, context.Canceled) {
		t.Errorf("proxy Run: %v", err)
	}
	r.xsub.Close()
	r.xpub.Close()
}

// subTally is what one subscriber received: data sequence numbers, probes, and
// the gaps it counted per topic.
type subTally struct {
	mu     sync.Mutex
	seqs   []uint64
	probes int
	gaps   map[string]uint64
}

func (tl *subTally) snapshot() (int, int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return len(tl.seqs), tl.probes
}

// subscribeTally starts a Subscriber to "data" and "probe" behind ep and
// a goroutine recording what it receives.
func subscribeTally(t *testing.T, ep string) (*Subscriber[int], *subTally, func()) {
	t.Helper()
	tl := &subTally{gaps: map[string]uint64{}}
	sub, err := NewSubscriber[int](WithConnect(ep), WithTopics("data", "probe"),
		WithSocketOptions(socket.WithReconnect(10*time.Millisecond, 50*time.Millisecond)),
		WithOnGap(func(g Gap) {
			tl.mu.Lock()
			tl.gaps[g.Topic] += g.Missed
			tl.mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := sub.Recv(context.Background())
			if err != nil {
				return
			}
			tl.mu.Lock()
			if m.Topic == "data" {
				tl.seqs = append(tl.seqs, m.Seq)
			} else {
				tl.probes++
			}
			tl.mu.Unlock()
		}
	}()
	stop := func() {
		sub.Close()
		<-done
	}
	t.Cleanup(stop)
	return sub, tl, stop
}

// probe publishes on "probe" until every subTally has seen one more probe
// than before: the path to each subscriber is up.
func probe(t *testing.T, pub *Publisher[int], tls ...*subTally) {
	t.Helper()
	before := make([]int, len(tls))
	for i, tl := range tls {
		_, before[i] = tl.snapshot()
	}
	waitFor(t, "probes through", func() bool {
		if err := pub.Publish(ctxT(t), "probe", 0); err != nil {
			t.Fatal(err)
		}
		for i, tl := range tls {
			if _, p := tl.snapshot(); p == before[i] {
				return false
			}
		}
		return true
	})
}

func publishData(t *testing.T, pub *Publisher[int], n int) {
	t.Helper()
	for i := range n {
		if err := pub.Publish(ctxT(t), "data", i); err != nil {
			t.Fatal(err)
		}
	}
}

func waitData(t *testing.T, n int, tls ...*subTally) {
	t.Helper()
	waitFor(t, "data through", func() bool {
		for _, tl := range tls {
			if got, _ := tl.snapshot(); got < n {
				return false
			}
		}
		return true
	})
}

// TestProxyRestartKeepsSubscribers: the proxy between a publisher and
// three subscribers goes down and comes back on the same endpoints. With no
// action on their side every subscriber gets the stream again, and the
// gaps each counts are exactly what was published while the proxy was
// down.
func TestProxyRestartKeepsSubscribers(t *testing.T) {
	p, err := NewPublisher[int](WithBind(loopback), WithName("pub"))
	pub := cleanup(t, p, err)
	pubEP := pub.Endpoints()[0]
	px, backEP := startProxy(t, pubEP, "tcp://127.0.0.1:0")
	var tls []*subTally
	for range 3 {
		_, tl, _ := subscribeTally(t, backEP)
		tls = append(tls, tl)
	}
	probe(t, pub, tls...)
	const before, down, after = 100, 37, 100
	publishData(t, pub, before)
	waitData(t, before, tls...)

	px.stop(t)
	waitFor(t, "publisher sees the proxy gone", func() bool { return pub.Subscribers() == 0 })
	publishData(t, pub, down)

	px, _ = startProxy(t, pubEP, backEP)
	defer px.stop(t)
	probe(t, pub, tls...)
	publishData(t, pub, after)
	waitData(t, before+after, tls...)

	for i, tl := range tls {
		tl.mu.Lock()
		if g := tl.gaps["data"]; g != down {
			t.Errorf("subscriber %d counted %d missed data messages, want %d", i, g, down)
		}
		if len(tl.seqs) != before+after || tl.seqs[before-1] != before || tl.seqs[before] != before+down+1 {
			t.Errorf("subscriber %d: %d messages, around the restart %v", i, len(tl.seqs), tl.seqs[before-1:before+1])
		}
		tl.mu.Unlock()
	}
}

// TestSubscriberRestartBehindProxy: a subscriber that restarts behind the
// proxy gets the stream again; the others never notice.
func TestSubscriberRestartBehindProxy(t *testing.T) {
	p, err := NewPublisher[int](WithBind(loopback), WithName("pub"))
	pub := cleanup(t, p, err)
	px, backEP := startProxy(t, pub.Endpoints()[0], "tcp://127.0.0.1:0")
	defer px.stop(t)
	_, stay, _ := subscribeTally(t, backEP)
	_, gone, stop := subscribeTally(t, backEP)
	probe(t, pub, stay, gone)
	publishData(t, pub, 50)
	waitData(t, 50, stay, gone)
	stop()
	waitFor(t, "proxy sees the subscriber gone", func() bool { return px.xpub.Peers() == 1 })
	publishData(t, pub, 20)
	waitData(t, 70, stay) // the 20 are through the proxy, not in flight
	_, back, _ := subscribeTally(t, backEP)
	probe(t, pub, stay, back)
	publishData(t, pub, 50)
	waitData(t, 120, stay)
	waitData(t, 50, back)
	stay.mu.Lock()
	if g := stay.gaps["data"]; g != 0 || len(stay.seqs) != 120 {
		t.Errorf("the subscriber that stayed: %d messages, %d missed", len(stay.seqs), g)
	}
	stay.mu.Unlock()
	back.mu.Lock()
	if g := back.gaps["data"]; g != 0 || back.seqs[0] != 71 {
		t.Errorf("the restarted subscriber: first seq %d, %d missed; want 71 and none", back.seqs[0], g)
	}
	back.mu.Unlock()
}
