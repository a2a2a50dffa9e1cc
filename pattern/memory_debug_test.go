//go:build zpeerdebug && !race

// Not under the race detector: the test keeps a borrowed value and reads it
// while the worker gives the memory back, which is the violation it
// demonstrates; the race detector reports that read itself (a data race on
// the received memory), so a -race build would fail on the proof.

package pattern

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
)

// poisoned reports whether b is all the poison zpeerdebug builds fill
// memory given back to the socket with (socket's poisonByte).
func poisoned(b []byte) bool {
	return len(b) > 0 && len(bytes.Trim(b, "\xdf")) == 0
}

// TestBorrowedValueHeldPastHandler proves WithBorrowedValues' rule: a
// []byte or string value kept past its handler's return is the received
// memory, given back when the handler returned. Under zpeerdebug that
// memory is poisoned, so the kept value reads as 0xDF garbage, loudly,
// instead of silently as a later message's bytes. Both sizes are checked:
// small values carved from a shared receive slab and large ones from the
// buffer pool.
func TestBorrowedValueHeldPastHandler(t *testing.T) {
	values := [][]byte{bytes.Repeat([]byte("s"), 64), bytes.Repeat([]byte("L"), 64<<10)}
	check := func(t *testing.T, held [][]byte, heldStr []string) {
		t.Helper()
		for i, v := range held {
			if !poisoned(v) {
				t.Errorf("value %d (%d bytes) kept past its handler is not poisoned: starts %q", i, len(v), v[:min(len(v), 8)])
			}
		}
		for i, v := range heldStr {
			if !poisoned([]byte(v)) {
				t.Errorf("string %d (%d bytes) kept past its handler is not poisoned", i, len(v))
			}
		}
	}
	for _, acked := range []bool{false, true} {
		t.Run(fmt.Sprintf("puller acked=%v", acked), func(t *testing.T) {
			var opts []Option
			if acked {
				opts = append(opts, WithAck())
			}
			push, err := NewPusher[[]byte](append(opts, WithBind(loopback))...)
			push = cleanup(t, push, err)
			var mu sync.Mutex
			var held [][]byte
			h := func(_ context.Context, v []byte) error {
				mu.Lock()
				defer mu.Unlock()
				if !bytes.Equal(v, values[len(held)]) {
					t.Errorf("value %d not intact inside its handler", len(held))
				}
				held = append(held, v) // the violation under test
				return nil
			}
			pl, err := NewPuller(h, append(opts, WithConnect(ep(t, push)), WithWorkers(1), WithBorrowedValues())...)
			pl = cleanup(t, pl, err)
			waitFor(t, "puller", func() bool { return push.Pullers() == 1 })
			for _, v := range values {
				if err := push.Push(ctxT(t), v); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "deliveries", func() bool { return pl.Stats().Delivered == uint64(len(values)) })
			// The worker frees a message right after its handler returns.
			waitFor(t, "poison", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return poisoned(held[len(held)-1])
			})
			mu.Lock()
			defer mu.Unlock()
			check(t, held, nil)
		})
	}
	t.Run("replier string", func(t *testing.T) {
		var mu sync.Mutex
		var held []string
		rp, err := NewReplier(func(_ context.Context, v string) (string, error) {
			mu.Lock()
			held = append(held, v) // the violation under test
			mu.Unlock()
			return "ok", nil
		}, WithBind(loopback), WithWorkers(1), WithBorrowedValues())
		rp = cleanup(t, rp, err)
		rq, err := NewRequester[string, string](WithConnect(ep(t, rp)))
		rq = cleanup(t, rq, err)
		for _, v := range values {
			if _, err := rq.Request(ctxT(t), string(v)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "poison", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(held) == len(values) && poisoned([]byte(held[len(held)-1]))
		})
		mu.Lock()
		defer mu.Unlock()
		check(t, nil, held)
	})
}
