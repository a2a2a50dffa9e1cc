package demo

import (
	"context"
	"fmt"
	"github.com/zpeer/zpeer/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/discovery"
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
// PubRate for one phase. The last subscriber stands for another LAN: it
// finds a relay (an XSUB->XPUB socket.Proxy, as `zpeer proxy --type
// pubsub` runs) that finds the publisher, and gets the ticks through it.
func (n *network) pubSub(ctx context.Context) (Figures, error) {
	cfg := n.cfg
	f := Figures{Pattern: "publish/subscribe", Peers: fmt.Sprintf("1 publisher, %d subscribers (1 via a proxy)", cfg.Subscribers),
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
	n.expose(metrics.RolePublisher, "publisher", pub)
	if _, err := n.announce(svc, "PUB", "ticks-pub-"+n.tag, pub.Endpoints(), kp.Public); err != nil {
		return f, err
	}
	began := time.Now()
	relaySvc := n.service("demo-relay")
	px, err := n.relay(ctx, svc, relaySvc)
	if err != nil {
		return f, err
	}
	cfg.Log("publish/subscribe: publisher announced as %s, a proxy relays it as %s; starting %d subscribers", svc, relaySvc, cfg.Subscribers)
	subs := make([]*pattern.Subscriber[Tick], cfg.Subscribers)
	for i := range subs {
		from := svc
		if i == len(subs)-1 {
			from = relaySvc
		}
		s, err := pattern.NewSubscriber[Tick](n.client(
			pattern.WithTopics("ticks"),
			pattern.WithDiscovery(n.find(from, "SUB", fmt.Sprintf("ticks-sub-%s-%d", n.tag, i+1))),
			pattern.WithName(fmt.Sprintf("subscriber-%d", i+1)))...)
		if err != nil {
			return f, err
		}
		n.onClose(s.Close)
		n.expose(metrics.RoleSubscriber, fmt.Sprintf("subscriber-%d", i+1), s)
		subs[i] = s
	}
	// The publisher's subscribers: the direct ones and the proxy (which
	// subscribes once the relayed subscriber has).
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
	xs := px.Stats()
	f.Notes = append(f.Notes, fmt.Sprintf("the proxy (XSUB->XPUB, both sides found over mDNS) relayed %d messages and %d subscription(s) upstream",
		xs.Backend.MsgsOut, xs.Subscriptions))
	cfg.Log("publish/subscribe: %d of %d copies delivered", f.Delivered, f.Sent)
	return f, nil
}

// relay starts a pub/sub proxy between two services: its XSUB finds the
// publishers of from (trusted keys only, as every client in the demo), its
// XPUB binds, is a CURVE server with a key of its own and is announced as
// to. It runs until the demo closes.
func (n *network) relay(ctx context.Context, from, to string) (*socket.Proxy, error) {
	kp, err := n.server()
	if err != nil {
		return nil, err
	}
	ckp, err := socket.NewKeyPair()
	if err != nil {
		return nil, err
	}
	keys := pattern.NewServerKeys(socket.Key{}, n.trusted)
	front, err := socket.New(socket.XSUB, socket.WithLinger(0), socket.WithCurveClientKey(ckp),
		socket.WithCurveServerKeys(keys.Lookup))
	if err != nil {
		return nil, err
	}
	n.onClose(front.Close)
	back, err := socket.New(socket.XPUB, socket.WithLinger(0), socket.WithNoBlock(), socket.WithCurveServer(kp.Secret))
	if err != nil {
		return nil, err
	}
	n.onClose(back.Close)
	ep, err := back.Bind(local)
	if err != nil {
		return nil, err
	}
	px, err := socket.NewProxy(front, back)
	if err != nil {
		return nil, err
	}
	// Closed first (closers run in reverse): the proxy stops, then the
	// announcement, the discovery and the sockets go.
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		px.Run(pctx)
	}()
	// find counts the peer in n, so it is called here, not on the
	// goroutine (the main goroutine goes on to count others).
	discover := n.find(from, "XSUB", "ticks-relay-"+n.tag)
	go func() {
		defer wg.Done()
		discover(pctx, keyedConnector{front, keys})
	}()
	if _, err := n.announce(to, "XPUB", "ticks-relay-out-"+n.tag, []string{ep}, kp.Public); err != nil {
		stop()
		wg.Wait()
		return nil, err
	}
	n.onClose(func() error {
		stop()
		wg.Wait()
		return nil
	})
	n.peers-- // find and announce each counted it: one peer
	return px, nil
}

// keyedConnector connects a socket to the discovered peers whose CURVE key
// keys admits, with that key (what a pattern's WithTrust does).
type keyedConnector struct {
	*socket.Socket
	keys *pattern.ServerKeys
}

func (c keyedConnector) ConnectPeer(p discovery.Peer, ep string) error {
	if err := c.keys.Admit(p, ep); err != nil {
		return err
	}
	return c.Connect(ep)
}
