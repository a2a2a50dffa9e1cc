package demo

import (
	"context"
	"fmt"
	"github.com/zpeer/zpeer/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// Query and Answer are the request/reply service's messages.
type Query struct {
	A, B int
}

type Answer struct {
	Sum int
	By  string
}

// reqRep runs a request/reply service with two repliers and a requester
// that finds them over mDNS; the second replier stops halfway through and
// the requester fails over to the first.
func (n *network) reqRep(ctx context.Context) (Figures, error) {
	cfg := n.cfg
	f := Figures{Pattern: "request/reply", Peers: fmt.Sprintf("%d concurrent requests, 2 repliers", cfg.Clients),
		Latency: "round trip"}
	svc := n.service("demo-rpc")
	cfg.Log("request/reply: starting 2 repliers, announced as %s over mDNS on lo", svc)

	type replica struct {
		rep  *pattern.Replier[Query, Answer]
		stop func() error
	}
	var replicas []replica
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("replier-%d", i)
		kp, err := n.server()
		if err != nil {
			return f, err
		}
		rep, err := pattern.NewReplier(func(_ context.Context, q Query) (Answer, error) {
			return Answer{Sum: q.A + q.B, By: name}, nil
		}, pattern.WithBind(local), pattern.WithName(name), pattern.WithKey(kp))
		if err != nil {
			return f, err
		}
		n.onClose(rep.Close)
		n.expose(metrics.RoleReplier, name, rep)
		ann, err := n.announce(svc, "REP", fmt.Sprintf("rpc-%s-%d", n.tag, i), rep.Endpoints(), kp.Public)
		if err != nil {
			return f, err
		}
		replicas = append(replicas, replica{rep, func() error {
			ann.Close() // goodbye first: the requester stops choosing it
			return rep.Close()
		}})
	}
	// An impostor announces the same service with a key nobody trusts: the
	// requester sees it and never connects to it.
	var stolen atomic.Uint64
	impKey, err := socket.NewKeyPair()
	if err != nil {
		return f, err
	}
	imp, err := pattern.NewReplier(func(_ context.Context, q Query) (Answer, error) {
		stolen.Add(1)
		return Answer{Sum: q.A + q.B, By: "impostor"}, nil
	}, pattern.WithBind(local), pattern.WithName("impostor"), pattern.WithKey(impKey))
	if err != nil {
		return f, err
	}
	n.onClose(imp.Close)
	n.expose(metrics.RoleReplier, "impostor", imp)
	if _, err := n.announce(svc, "REP", "rpc-impostor-"+n.tag, imp.Endpoints(), impKey.Public); err != nil {
		return f, err
	}
	cfg.Log("request/reply: an impostor announces %s too, with a key nobody trusts", svc)

	began := time.Now()
	req, err := pattern.NewRequester[Query, Answer](n.client(
		pattern.WithDiscovery(n.find(svc, "REQ", "rpc-client-"+n.tag)),
		pattern.WithTimeout(500*time.Millisecond),
		pattern.WithRetries(4),
		pattern.WithName("requester"))...)
	if err != nil {
		return f, err
	}
	n.onClose(req.Close)
	n.expose(metrics.RoleRequester, "requester", req)
	if err := waitFor(ctx, discoveryTimeout, "the requester finding both repliers", func() bool { return req.Peers() == 2 }); err != nil {
		return f, err
	}
	n.found(time.Since(began))
	cfg.Log("request/reply: the requester found both repliers in %s; %d clients for %s", time.Since(began).Round(time.Millisecond), cfg.Clients, cfg.Phase)

	lat := newLatencies()
	var sent, ok, wrong atomic.Uint64
	var byReplier sync.Map
	phase, cancel := context.WithTimeout(ctx, cfg.Phase)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; phase.Err() == nil; i++ {
				q := Query{A: c, B: i}
				sent.Add(1)
				t0 := time.Now()
				// Each request gets its own deadline, independent of the
				// phase's end, so that none is cut off by the clock.
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				ans, err := req.Request(rctx, q)
				rcancel()
				if err != nil {
					continue
				}
				lat.record(time.Since(t0))
				if ans.Sum != q.A+q.B {
					wrong.Add(1)
					continue
				}
				ok.Add(1)
				v, _ := byReplier.LoadOrStore(ans.By, new(atomic.Uint64))
				v.(*atomic.Uint64).Add(1)
			}
		}()
	}
	// Halfway: the second replier goes away.
	var stoppedAt time.Duration
	stop := time.NewTimer(cfg.Phase / 2)
	defer stop.Stop()
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-stop.C:
			stoppedAt = time.Since(start)
			cfg.Log("request/reply: stopping replier-2 at %s", stoppedAt.Round(time.Millisecond))
			replicas[1].stop()
		case <-ticker.C:
			cfg.Progress("request/reply", float64(time.Since(start))/float64(cfg.Phase))
		case <-phase.Done():
			break loop
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return f, err
	}
	f.Sent, f.Delivered = sent.Load(), ok.Load()
	lat.fill(&f, elapsed)
	st := req.Stats()
	per := func(name string) uint64 {
		if v, ok := byReplier.Load(name); ok {
			return v.(*atomic.Uint64).Load()
		}
		return 0
	}
	f.Notes = append(f.Notes,
		fmt.Sprintf("replier-2 stopped at %s; replies: replier-1 %d, replier-2 %d; re-sent attempts (fail-over): %d; late replies discarded: %d",
			stoppedAt.Round(100*time.Millisecond), per("replier-1"), per("replier-2"), st.Retried, st.Late))
	f.Notes = append(f.Notes, fmt.Sprintf("the impostor announcing the service with an untrusted key received %d requests", stolen.Load()+per("impostor")))
	if w := wrong.Load(); w > 0 {
		f.Notes = append(f.Notes, fmt.Sprintf("%d WRONG answers", w))
	}
	cfg.Log("request/reply: %d of %d requests answered", f.Delivered, f.Sent)
	return f, nil
}
