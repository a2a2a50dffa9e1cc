package bench

import (
	"context"
	"sync/atomic"
)

// interrupter turns the end of a call's context into an interruption of a
// blocking call on a stack whose API takes no context: when ctx ends while
// a call with that same ctx is in progress, fn runs (it closes the socket
// or connection). A context that ends between calls, or whose watch fires
// late while a call with another context runs, interrupts nothing; the
// next call with an ended context fails with its error. One interrupter
// serves one goroutine's calls.
type interrupter struct {
	active atomic.Uint64 // generation of the call in progress; 0 when idle
	gen    uint64        // generation of ctx
	ctx    context.Context
	stop   func() bool
	fn     func()
}

func (w *interrupter) begin(ctx context.Context) error {
	if ctx != w.ctx {
		w.release()
		w.gen++
		g := w.gen
		w.ctx = ctx
		w.stop = context.AfterFunc(ctx, func() {
			if w.active.Load() == g {
				w.fn()
			}
		})
	}
	w.active.Store(w.gen)
	select {
	case <-ctx.Done():
		w.active.Store(0)
		return ctx.Err()
	default:
	}
	return nil
}

func (w *interrupter) end() { w.active.Store(0) }

// release forgets the current context's watch.
func (w *interrupter) release() {
	if w.stop != nil {
		w.stop()
		w.stop, w.ctx = nil, nil
	}
}
