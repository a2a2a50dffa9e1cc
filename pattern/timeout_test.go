package pattern

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Issue 12 item 10: every pattern call that timed out matches ErrTimeout
// (and context.DeadlineExceeded), whichever layer noticed the deadline.
func TestCallsTimeOutWithErrTimeout(t *testing.T) {
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	sub, err := NewSubscriber[string](WithBind(loopback), WithTopics(""))
	sub = cleanup(t, sub, err)
	pub, err := NewPublisher[string](WithBind(loopback))
	pub = cleanup(t, pub, err)
	push, err := NewPusher[string](WithConnect(closedEndpoint(t)))
	push = cleanup(t, push, err)
	apush, err := NewPusher[string](WithBind(loopback), WithAck())
	apush = cleanup(t, apush, err)
	if err := apush.Push(ctxT(t), "never pulled"); err != nil {
		t.Fatal(err)
	}
	req, err := NewRequester[string, string](WithConnect(closedEndpoint(t)), WithTimeout(time.Hour))
	req = cleanup(t, req, err)

	for _, tc := range []struct {
		name string
		call func(context.Context) error
	}{
		{"Subscriber.Recv", func(ctx context.Context) error { _, err := sub.Recv(ctx); return err }},
		{"Publisher.WaitSubscribers", func(ctx context.Context) error { return pub.WaitSubscribers(ctx, 1) }},
		{"Pusher.Push", func(ctx context.Context) error { return push.Push(ctx, "x") }},
		{"Pusher.Drain (acked)", func(ctx context.Context) error { return apush.Drain(ctx) }},
		{"Requester.Request", func(ctx context.Context) error { _, err := req.Request(ctx, "x"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(short())
			if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want ErrTimeout wrapping context.DeadlineExceeded", err)
			}
		})
	}
}

// closedEndpoint is a tcp endpoint nothing listens on.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	s, err := NewPuller(func(context.Context, string) error { return nil }, WithBind(loopback))
	if err != nil {
		t.Fatal(err)
	}
	ep := s.Endpoints()[0]
	s.Close()
	return ep
}
