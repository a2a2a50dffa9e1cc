package pattern

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/internal/udpsock"
)

// Issue 10 item 4: ten pattern roles joined to services in one process
// share one mDNS socket per interface (here one: loopback), opened by the
// first and closed by the last, and still find each other.
func TestServiceRolesShareOneMDNSSocket(t *testing.T) {
	before, err := udpsock.Count(5353)
	if errors.Is(err, udpsock.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	lo := discovery.WithLoopback()
	fast := discovery.WithRefresh(200 * time.Millisecond)
	calc, feed, work := svcName("calc"), svcName("feed"), svcName("work")
	var roles []closer
	add := func(c closer, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		roles = append(roles, c)
	}
	t.Cleanup(func() {
		for _, r := range roles {
			r.Close()
		}
	})
	// Two repliers and two requesters.
	for range 2 {
		add(NewReplier(adder, WithBind(loopback), WithService(calc, lo)))
	}
	var rqs []*Requester[addReq, addResp]
	for range 2 {
		rq, err := NewRequester[addReq, addResp](WithService(calc, lo, fast), WithTimeout(time.Second), WithRetries(10))
		add(rq, err)
		rqs = append(rqs, rq)
	}
	// A publisher and two subscribers.
	pub, err := NewPublisher[string](WithBind(loopback), WithService(feed, lo))
	add(pub, err)
	var subs []*Subscriber[string]
	for range 2 {
		sub, err := NewSubscriber[string](WithTopics(""), WithService(feed, lo, fast))
		add(sub, err)
		subs = append(subs, sub)
	}
	// A pusher and two pullers.
	push, err := NewPusher[int](WithBind(loopback), WithService(work, lo))
	add(push, err)
	var pulled [2]atomic.Int64
	for i := range 2 {
		add(NewPuller(func(_ context.Context, v int) error { pulled[i].Add(1); return nil }, WithService(work, lo, fast)))
	}
	if len(roles) != 10 {
		t.Fatalf("%d roles", len(roles))
	}

	// One socket on port 5353 for the lot (other tests of this package
	// running at the same time share it too: the stack is per process).
	now, err := udpsock.Count(5353)
	if err != nil {
		t.Fatal(err)
	}
	if now != 1 {
		t.Fatalf("%d UDP sockets bound to 5353 with 10 roles on loopback (%d before); want 1", now, before)
	}
	if st := discovery.StackStats(); st.Sockets != 1 {
		t.Fatalf("the stack counts %d sockets, the OS %d", st.Sockets, now)
	}

	// They find each other.
	for i, rq := range rqs {
		got, err := rq.Request(ctxT(t), addReq{i, 40})
		if err != nil || got.Sum != i+40 {
			t.Fatalf("requester %d: %v %v", i, got, err)
		}
	}
	for i, sub := range subs {
		if m := syncSub(t, pub, sub, "t", fmt.Sprint("hello ", i)); m.Value == "" {
			t.Fatalf("subscriber %d: %+v", i, m)
		}
	}
	waitFor(t, "both pullers to get work", func() bool {
		if err := push.Push(ctxT(t), 1); err != nil {
			t.Fatal(err)
		}
		return pulled[0].Load() > 0 && pulled[1].Load() > 0
	})

	// The last to leave closes the socket (unless another test of this
	// package still holds it: then it stays open, and one).
	for _, r := range roles {
		r.Close()
	}
	roles = nil
	after, err := udpsock.Count(5353)
	if err != nil {
		t.Fatal(err)
	}
	if after > 1 {
		t.Fatalf("%d sockets after closing every role", after)
	}
}
