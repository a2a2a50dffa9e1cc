package demo

import (
	"context"
	"fmt"
	"github.com/zpeer/zpeer/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/pattern"
)

// Job is a pipeline work item.
type Job struct {
	ID        int64
	CreatedAt int64 // Unix nanoseconds
}

// pipeline runs an acknowledged pusher and workers that find it over mDNS;
// one worker is stopped halfway, and what it held is redelivered.
func (n *network) pipeline(ctx context.Context) (Figures, error) {
	cfg := n.cfg
	f := Figures{Pattern: "acked pipeline", Peers: fmt.Sprintf("1 pusher, %d workers", cfg.Workers),
		Latency: "push to processed"}
	svc := n.service("demo-jobs")
	var dead atomic.Int64
	kp, err := n.server()
	if err != nil {
		return f, err
	}
	push, err := pattern.NewPusher[Job](pattern.WithAck(), pattern.WithBind(local), pattern.WithName("pusher"), pattern.WithKey(kp),
		pattern.WithAckTimeout(time.Second),
		pattern.WithOnDead(func(pattern.DeadLetter) { dead.Add(1) }))
	if err != nil {
		return f, err
	}
	n.onClose(push.Close)
	n.expose(metrics.RolePusher, "pusher", push)
	if _, err := n.announce(svc, "PUSH", "jobs-push-"+n.tag, push.Endpoints(), kp.Public); err != nil {
		return f, err
	}
	cfg.Log("acked pipeline: pusher announced as %s; starting %d workers", svc, cfg.Workers)
	began := time.Now()

	lat := newLatencies()
	var mu sync.Mutex
	done := make(map[int64]int) // job id -> times processed
	perWorker := make([]int, cfg.Workers)
	workers := make([]*pattern.Puller[Job], cfg.Workers)
	for i := range workers {
		w, err := pattern.NewPuller(func(ctx context.Context, j Job) error {
			// The work itself.
			t := time.NewTimer(cfg.Work)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err() // stopped: neither acked nor nacked, redelivered
			}
			mu.Lock()
			done[j.ID]++
			if done[j.ID] == 1 {
				lat.record(time.Since(time.Unix(0, j.CreatedAt)))
			}
			perWorker[i]++
			mu.Unlock()
			return nil
		}, n.client(
			pattern.WithAck(),
			pattern.WithWorkers(4),
			pattern.WithDiscovery(n.find(svc, "PULL", fmt.Sprintf("jobs-worker-%s-%d", n.tag, i+1))),
			pattern.WithName(fmt.Sprintf("worker-%d", i+1)))...)
		if err != nil {
			return f, err
		}
		n.onClose(w.Close)
		n.expose(metrics.RolePuller, fmt.Sprintf("worker-%d", i+1), w)
		workers[i] = w
	}
	if err := waitFor(ctx, discoveryTimeout, "the workers finding the pusher", func() bool {
		return push.Pullers() == cfg.Workers
	}); err != nil {
		return f, err
	}
	n.found(time.Since(began))
	cfg.Log("acked pipeline: %d workers found the pusher in %s; pushing %d jobs/s for %s, stopping worker-%d halfway",
		cfg.Workers, time.Since(began).Round(time.Millisecond), cfg.PushRate, cfg.Phase, cfg.Workers)

	phase, cancel := context.WithTimeout(ctx, cfg.Phase)
	defer cancel()
	start := time.Now()
	p := &pacer{rate: cfg.PushRate}
	var pushed int64
	var stoppedAt time.Duration
	stopped := false
	lastProgress := start
	for p.next(phase) == nil {
		if err := push.Push(ctx, Job{ID: pushed, CreatedAt: time.Now().UnixNano()}); err != nil {
			return f, err
		}
		pushed++
		if !stopped && time.Since(start) >= cfg.Phase/2 {
			stopped = true
			stoppedAt = time.Since(start)
			cfg.Log("acked pipeline: stopping worker-%d at %s", cfg.Workers, stoppedAt.Round(time.Millisecond))
			go workers[cfg.Workers-1].Close()
		}
		if time.Since(lastProgress) > 100*time.Millisecond {
			lastProgress = time.Now()
			cfg.Progress("acked pipeline", float64(time.Since(start))/float64(cfg.Phase))
		}
	}
	if err := ctx.Err(); err != nil {
		return f, err
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	derr := push.Drain(dctx)
	dcancel()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return f, err
	}

	mu.Lock()
	unique, twice := uint64(len(done)), 0
	for _, c := range done {
		if c > 1 {
			twice++
		}
	}
	counts := append([]int(nil), perWorker...)
	mu.Unlock()
	f.Sent, f.Delivered = uint64(pushed), unique
	lat.fill(&f, elapsed)
	st := push.Stats()
	deadN := dead.Load()
	f.Notes = append(f.Notes, fmt.Sprintf("worker-%d stopped at %s; jobs per worker %v; redelivered: %d, processed twice: %d, dead: %d",
		cfg.Workers, stoppedAt.Round(100*time.Millisecond), counts, st.Retried, twice, deadN))
	if derr != nil {
		f.Notes = append(f.Notes, fmt.Sprintf("not settled after 10s: %v (%d pending)", derr, st.Pending))
	}
	cfg.Log("acked pipeline: %d of %d jobs processed", f.Delivered, f.Sent)
	return f, nil
}
