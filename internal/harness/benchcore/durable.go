package benchcore

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/zpeer/zpeer/pattern"
)

// DurableStack is the acknowledged pipeline with a durable outbox
// (pattern.WithOutbox) in a fresh directory under os.TempDir (or
// $ZPEER_BENCH_DIR), removed on Close. In sync mode every Push waits for an
// fsync, so one goroutine pushes one job per fsync: the adapter keeps
// Window pushes in flight (Send hands the job to one of Window pushing
// goroutines, Flush waits for them), as a JetStream publisher keeps
// PublishAsync acks outstanding. PubSub and ReqRep are n/a.
type DurableStack struct {
	Mode   pattern.OutboxMode
	Label  string // "sync" or "batched"
	Window int    // pushes in flight; 1 = Push from the harness's goroutine
}

// ZpeerDurableSync returns the sync-mode durable stack, 256 pushes in
// flight.
func ZpeerDurableSync() *DurableStack {
	return &DurableStack{Mode: pattern.OutboxSync, Label: "sync", Window: 256}
}

// ZpeerDurableBatched returns the batched-mode durable stack (fsync every
// 10 ms), pushed from one goroutine.
func ZpeerDurableBatched() *DurableStack {
	return &DurableStack{Mode: pattern.OutboxBatched(10 * time.Millisecond), Label: "batched", Window: 1}
}

// Name implements Stack.
func (d *DurableStack) Name() string { return "zpeer-durable-" + d.Label }

// PubSub implements Stack.
func (d *DurableStack) PubSub(context.Context, int) (*Topology, error) { return nil, ErrNotSupported }

// ReqRep implements Stack.
func (d *DurableStack) ReqRep(context.Context) (*Topology, error) { return nil, ErrNotSupported }

// Pipeline implements Stack.
func (d *DurableStack) Pipeline(ctx context.Context, n int) (*Topology, error) {
	dir, err := os.MkdirTemp(os.Getenv("ZPEER_BENCH_DIR"), "zpeer-bench-outbox-")
	if err != nil {
		return nil, err
	}
	top, err := (&TypedStack{Acked: true, extra: []pattern.Option{pattern.WithOutbox(dir, d.Mode)}}).Pipeline(ctx, n)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	closeTop := top.Close
	var w *windowPush
	if d.Window > 1 {
		w = newWindowPush(top.Send, d.Window)
		top.Send = w
	}
	top.Close = func() error {
		if w != nil {
			w.close()
		}
		err := closeTop()
		return errors.Join(err, os.RemoveAll(dir))
	}
	return top, nil
}

// windowPush keeps up to n Sends of the sender s in flight on n
// goroutines.
type windowPush struct {
	s    Sender
	jobs chan []byte
	wg   sync.WaitGroup // the goroutines
	busy sync.WaitGroup // jobs handed over and not yet sent
	ctx  context.Context
	stop context.CancelFunc

	mu  sync.Mutex
	err error
}

func newWindowPush(s Sender, n int) *windowPush {
	w := &windowPush{s: s, jobs: make(chan []byte)}
	w.ctx, w.stop = context.WithCancel(context.Background())
	for range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for b := range w.jobs {
				if err := s.Send(w.ctx, b); err != nil {
					w.mu.Lock()
					if w.err == nil {
						w.err = err
					}
					w.mu.Unlock()
				}
				w.busy.Done()
			}
		}()
	}
	return w
}

func (w *windowPush) Send(ctx context.Context, b []byte) error {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return err
	}
	w.busy.Add(1)
	select {
	case w.jobs <- b:
		return nil
	case <-ctx.Done():
		w.busy.Done()
		return ctx.Err()
	}
}

// Flush waits until every job handed over was pushed.
func (w *windowPush) Flush() error {
	w.busy.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *windowPush) close() {
	w.stop()
	close(w.jobs)
	w.wg.Wait()
}
