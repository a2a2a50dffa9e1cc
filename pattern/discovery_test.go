package pattern

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zpeer/zpeer/discovery"
)

// svcName returns a service name no other test run uses.
func svcName(prefix string) string { return fmt.Sprintf("%s-%06x", prefix, rand.Uint32()&0xffffff) }

// node gives one side of a test its own discovery node id: a watcher
// ignores announcements from its own node.
func node(name string) discovery.Option {
	return discovery.WithNodeID(name + fmt.Sprint(rand.Uint32()))
}

// A Replier that binds announces itself; a Requester joined to the same
// service name finds it and connects, with no endpoint given. When the
// replier goes, the requester disconnects.
func TestServiceRequestReply(t *testing.T) {
	svc := svcName("calc")
	lo := discovery.WithLoopback()
	fast := discovery.WithRefresh(200 * time.Millisecond)
	rp, err := NewReplier(adder, WithBind("tcp://127.0.0.1:0"), WithService(svc, lo, node("rep")))
	rp = cleanup(t, rp, err)
	rq, err := NewRequester[addReq, addResp](WithService(svc, lo, fast, node("req")), WithTimeout(time.Second))
	rq = cleanup(t, rq, err)
	waitFor(t, "requester to find the replier", func() bool { return rq.Peers() == 1 })
	got, err := rq.Request(ctxT(t), addReq{40, 2})
	if err != nil || got.Sum != 42 {
		t.Fatalf("got %v %v", got, err)
	}
	rp.Close() // says goodbye: the requester drops the endpoint
	waitFor(t, "requester to forget the replier", func() bool {
		rq.mu.Lock()
		defer rq.mu.Unlock()
		return len(rq.peers) == 0
	})
}

func TestServiceAckedPipeline(t *testing.T) {
	svc := svcName("work")
	lo := discovery.WithLoopback()
	push, err := NewPusher[int](WithBind("tcp://127.0.0.1:0"), WithAck(), WithService(svc, lo, node("push")))
	push = cleanup(t, push, err)
	got := make(chan int, 10)
	pl, err := NewPuller(func(_ context.Context, v int) error { got <- v; return nil },
		WithAck(), WithService(svc, lo, node("pull")))
	cleanup(t, pl, err)
	if err := push.Push(ctxT(t), 7); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != 7 {
			t.Fatalf("got %d", v)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the puller never found the pusher")
	}
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// WithDiscovery runs any peer-finding function with the pattern as its
// Connector.
func TestCustomDiscovery(t *testing.T) {
	pub, err := NewPublisher[string](WithBind(loopback))
	pub = cleanup(t, pub, err)
	sub, err := NewSubscriber[string](WithTopics(""), WithDiscovery(func(ctx context.Context, c Connector) error {
		if err := c.Connect(ep(t, pub)); err != nil {
			return err
		}
		<-ctx.Done()
		return c.Disconnect(ep(t, pub))
	}))
	sub = cleanup(t, sub, err)
	if m := syncSub(t, pub, sub, "x", "hello"); m.Value != "hello" {
		t.Fatalf("got %+v", m)
	}
}

// Issue 12 item 2: a Replier and a Requester joined to one service in one
// program find each other with no discovery.WithNodeID, as the README's
// WithService("calc", discovery.WithLoopback()) line has them.
func TestServiceSameProcessNoNodeID(t *testing.T) {
	svc := svcName("calc")
	rp, err := NewReplier(adder, WithBind("tcp://127.0.0.1:0"), WithService(svc, discovery.WithLoopback()))
	cleanup(t, rp, err)
	rq, err := NewRequester[addReq, addResp](WithService(svc, discovery.WithLoopback()), WithTimeout(time.Second), WithRetries(10))
	rq = cleanup(t, rq, err)
	got, err := rq.Request(ctxT(t), addReq{40, 2})
	if err != nil || got.Sum != 42 {
		t.Fatalf("got %v %v", got, err)
	}
}

// An acked Puller joined to a service sends the acks due before discovery
// disconnects it on Close: the pusher sees every processed message acked.
func TestServiceAckedPullerCloseAcks(t *testing.T) {
	svc := svcName("work")
	lo := discovery.WithLoopback()
	push, err := NewPusher[int](WithBind("tcp://127.0.0.1:0"), WithAck(), WithService(svc, lo))
	push = cleanup(t, push, err)
	got := make(chan int, 10)
	// The last handler finishes only as the Puller closes, and still
	// succeeds: its ack is due while Close runs.
	pl, err := NewPuller(func(ctx context.Context, v int) error {
		got <- v
		if v == 2 {
			<-ctx.Done()
		}
		return nil
	}, WithAck(), WithService(svc, lo), WithCredit(100), WithWorkers(1))
	pl = cleanup(t, pl, err)
	for i := range 3 {
		if err := push.Push(ctxT(t), i); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		select {
		case <-got:
		case <-time.After(15 * time.Second):
			t.Fatal("the puller never got the messages")
		}
	}
	pl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := push.Drain(ctx); err != nil {
		t.Fatalf("Drain after the puller closed: %v (stats %+v)", err, push.Stats())
	}
}

// A reply that had arrived when the replier said goodbye answers its
// request: the goodbye makes the Requester disconnect the endpoint, but the
// request is not failed (and resent, or reported lost) while the reply it
// waits for is still to be taken. Here the Requester's receive loop holds
// the reply until the goodbye has disconnected the replier.
func TestServiceGoodbyeAfterReplyKeepsReply(t *testing.T) {
	svc := svcName("bye")
	lo := discovery.WithLoopback()
	rp, err := NewReplier(adder, WithBind("tcp://127.0.0.1:0"))
	rp = cleanup(t, rp, err)
	ann, err := discovery.Announce(svc, "REP", rp.Endpoints(), lo, node("rep"))
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Close()
	// One attempt: a request failed by the disconnect would not be
	// retried into success. The timeout is only a safety net.
	rq, err := NewRequester[addReq, addResp](WithService(svc, lo, node("req")), WithTimeout(20*time.Second), WithRetries(0))
	rq = cleanup(t, rq, err)
	waitFor(t, "requester to find the replier", func() bool { return rq.Peers() == 1 })

	hold := make(chan struct{})
	rq.hold.Store(&hold)
	type result struct {
		resp addResp
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := rq.Request(ctxT(t), addReq{40, 2})
		done <- result{resp, err}
	}()
	waitFor(t, "the reply to arrive", func() bool { return rq.sock.Stats().MsgsIn >= 1 })
	ann.Close() // goodbye: the requester disconnects the endpoint
	waitFor(t, "the goodbye to disconnect the replier", func() bool { return rq.Peers() == 0 })
	rq.hold.Store(nil)
	close(hold)
	select {
	case r := <-done:
		if r.err != nil || r.resp.Sum != 42 {
			t.Fatalf("Request: %v %v, want the reply that had arrived before the goodbye", r.resp, r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Request did not return")
	}
	if st := rq.Stats(); st.Retried != 0 || st.Late != 0 {
		t.Fatalf("retried %d, late %d: the reply should answer the first attempt", st.Retried, st.Late)
	}
}
