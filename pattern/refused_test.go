package pattern

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
)

// Issue 12 item 4: an acked Pusher and a fire-and-forget Puller (or the
// reverse) refuse each other at the handshake, and the reason reaches the
// user: the WithOnRefused event, Stats.Refused, a warning in the log, and
// the error of the call that waits (Drain, Push), which no longer hangs.
func TestModeMismatchIsRefused(t *testing.T) {
	t.Run("acked Pusher, plain Puller", func(t *testing.T) {
		var logs testutil.SyncBuffer
		refused := make(chan Refusal, 16)
		push, err := NewPusher[int](WithBind(loopback), WithAck(),
			WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
			WithOnRefused(func(r Refusal) { refused <- r }))
		push = cleanup(t, push, err)
		pl, err := NewPuller(func(context.Context, int) error { return nil }, WithConnect(ep(t, push)))
		pl = cleanup(t, pl, err)
		if err := push.Push(ctxT(t), 1); err != nil {
			t.Fatal(err)
		}
		err = push.Drain(context.Background()) // must not hang
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "PULL") {
			t.Fatalf("Drain: %v, want ErrRefused naming the PULL peer", err)
		}
		select {
		case r := <-refused:
			if !errors.Is(r.Err, ErrRefused) || r.Endpoint != ep(t, push) {
				t.Fatalf("refusal %+v", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no WithOnRefused event")
		}
		if n := push.Stats().Refused; n == 0 {
			t.Fatal("Stats.Refused is 0")
		}
		waitFor(t, "the puller to count its refusal", func() bool { return pl.Stats().Refused > 0 })
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), `msg="handshake refused"`) {
			t.Fatalf("no warning logged: %q", logs.String())
		}
	})
	t.Run("plain Pusher, acked Puller", func(t *testing.T) {
		push, err := NewPusher[int](WithBind(loopback))
		push = cleanup(t, push, err)
		pl, err := NewPuller(func(context.Context, int) error { return nil }, WithConnect(ep(t, push)), WithAck())
		pl = cleanup(t, pl, err)
		err = push.Push(context.Background(), 1) // must not hang
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "DEALER") {
			t.Fatalf("Push: %v, want ErrRefused naming the DEALER peer", err)
		}
		// A deadline ends the wait with both reasons.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := push.Push(ctx, 2); !errors.Is(err, ErrRefused) {
			t.Fatalf("Push with a deadline: %v, want ErrRefused", err)
		}
		waitFor(t, "the puller to count its refusal", func() bool { return pl.Stats().Refused > 0 })
	})
}
