package demo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// Tick is what the publisher publishes.
type Tick struct {
	N      int64
	SentAt int64 // Unix nanoseconds
	Warm   bool  // a warm-up tick, sent until every subscriber gets one
}

// pubSub runs a publisher and subscribers that find it over mDNS, paced at
// PubRate for one phase.
func (n *network) pubSub(ctx context.Context) (Figures, error) {
	cfg := n.cfg
	f := Figures{Pattern: "publish/subscribe", Peers: fmt.Sprintf("1 publisher, %d subscribers", cfg.Subscribers),
		Latency: "one way"}
	svc := n.service("demo-ticks")
	// A publisher drops for a subscriber whose queue is full rather than
	// wait for it; a queue of a second's worth of ticks rides out a busy
	// machine's hiccups.
	kp, err := n.server()
	if err != nil {
		return f, err
	}
	pub, err := pattern.NewPublisher[Tick](pattern.WithBind(local), pattern.WithName("publisher"),
		pattern.WithSocketOptions(socket.WithSendHWM(cfg.PubRate)), pattern.WithKey(kp))
	if err != nil {
		return f, err
	}
	n.onClose(pub.Close)
	if _, err := n.announce(svc, "PUB", "ticks-pub-"+n.tag, pub.Endpoints(), kp.Public); err != nil {
		return f, err
	}
	cfg.Log("publish/subscribe: publisher announced as %s; starting %d subscribers", svc, cfg.Subscribers)
	began := time.Now()
	subs := make([]*pattern.Subscriber[Tick], cfg.Subscribers)
	for i := range subs {
		s, err := pattern.NewSubscriber[Tick](n.client(
			pattern.WithTopics("ticks"),
			pattern.WithDiscovery(n.find(svc, "SUB", fmt.Sprintf("ticks-sub-%s-%d", n.tag, i+1))),
			pattern.WithName(fmt.Sprintf("subscriber-%d", i+1)))...)
		if err != nil {
			return f, err
		}
		n.onClose(s.Close)
		subs[i] = s
	}
	if err := waitFor(ctx, discoveryTimeout, "the subscribers finding the publisher", func() bool {
		return pub.Subscribers() == cfg.Subscribers
	}); err != nil {
		return f, err
	}
	n.found(time.Since(began))

	lat := newLatencies()
	var delivered atomic.Uint64
	warmed := make([]atomic.Bool, len(subs))
	rctx, stopRecv := context.WithCancel(ctx)
	defer stopRecv()
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := s.Recv(rctx)
				if err != nil {
					return
				}
				if m.Value.Warm {
					warmed[i].Store(true)
					continue
				}
				lat.record(time.Since(time.Unix(0, m.Value.SentAt)))
				delivered.Add(1)
			}
		}()
	}
	// Warm up: a subscription reaches the publisher shortly after the
	// connection; until it has, the publisher does not send to that
	// subscriber at all.
	allWarm := func() bool {
		for i := range warmed {
			if !warmed[i].Load() {
				return false
			}
		}
		return true
	}
	warm := time.NewTicker(5 * time.Millisecond)
	err = waitFor(ctx, discoveryTimeout, "every subscriber receiving", func() bool {
		select {
		case <-warm.C:
			pub.Publish(ctx, "ticks", Tick{Warm: true, SentAt: time.Now().UnixNano()})
		default:
		}
		return allWarm()
	})
	warm.Stop()
	if err != nil {
		return f, err
	}
	cfg.Log("publish/subscribe: %d subscribers found the publisher in %s; publishing %d/s for %s",
		cfg.Subscribers, time.Since(began).Round(time.Millisecond), cfg.PubRate, cfg.Phase)

	phase, cancel := context.WithTimeout(ctx, cfg.Phase)
	defer cancel()
	start := time.Now()
	p := &pacer{rate: cfg.PubRate}
	var published uint64
	lastProgress := start
	for p.next(phase) == nil {
		if err := pub.Publish(ctx, "ticks", Tick{N: int64(published), SentAt: time.Now().UnixNano()}); err != nil {
			return f, err
		}
		published++
		if time.Since(lastProgress) > 100*time.Millisecond {
			lastProgress = time.Now()
			cfg.Progress("publish/subscribe", float64(time.Since(start))/float64(cfg.Phase))
		}
	}
	if err := ctx.Err(); err != nil {
		return f, err
	}
	// Let the subscribers take what is still in flight.
	want := published * uint64(len(subs))
	waitFor(ctx, 2*time.Second, "the last publications", func() bool { return delivered.Load() >= want })
	elapsed := time.Since(start)
	stopRecv()
	wg.Wait()

	f.Sent, f.Delivered = want, delivered.Load()
	lat.fill(&f, elapsed)
	var gaps uint64
	for _, s := range subs {
		gaps += s.Stats().Gaps
	}
	ps := pub.Stats()
	f.Notes = append(f.Notes, fmt.Sprintf("%d published x %d subscribers; publisher dropped %d copies for full queues, subscribers counted %d gaps",
		published, len(subs), ps.Dropped, gaps))
	cfg.Log("publish/subscribe: %d of %d copies delivered", f.Delivered, f.Sent)
	return f, nil
}
