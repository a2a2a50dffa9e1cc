package pattern

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// memValue is value i of the memory tests: sizes on both sides of
// aliasMin and of the socket's slab and copy thresholds, contents unique.
func memValue(i int) []byte {
	sizes := []int{1, 64, 1000, aliasMin - 10, aliasMin + 10, 20 << 10, 70 << 10}
	v := bytes.Repeat([]byte{byte(i)}, sizes[i%len(sizes)])
	copy(v, fmt.Sprintf("value %d;", i))
	return v
}

// Every value a handler or Recv was given stays intact after the patterns
// have freed their received messages and reused the memory for thousands
// more: small values are copies, large ones own the frame they came in.
func TestReceivedValuesOwnTheirMemory(t *testing.T) {
	const n = 3000
	// intact reports whether v is one of the values, matched by the number
	// it starts with: an acked pipeline may deliver out of push order
	// (messages queued before a puller's credit arrives go out from two
	// goroutines). It returns the value's number (-1 for the one-byte
	// values, which are all "v").
	intact := func(v []byte) (int, bool) {
		if len(v) == 1 && v[0] == 'v' {
			return -1, true
		}
		var i int
		if _, err := fmt.Sscanf(string(v[:min(len(v), 16)]), "value %d;", &i); err != nil || i < 0 || i >= n {
			return 0, false
		}
		return i, bytes.Equal(v, memValue(i))
	}
	// check finds every value intact, each once.
	check := func(t *testing.T, kept [][]byte) {
		t.Helper()
		if len(kept) != n {
			t.Fatalf("%d values, want %d", len(kept), n)
		}
		seen := make([]bool, n)
		ones := 0 // 1-byte values are all "v"
		for _, v := range kept {
			i, ok := intact(v)
			if ok && i < 0 {
				ones++
				continue
			}
			if !ok || seen[i] {
				t.Fatalf("a value changed after later receives (%d bytes, starts %q)", len(v), v[:min(len(v), 12)])
			}
			seen[i] = true
		}
		for i, ok := range seen {
			if !ok && len(memValue(i)) != 1 {
				t.Fatalf("value %d missing", i)
			}
		}
		if want := (n + 6) / 7; ones != want {
			t.Fatalf("%d one-byte values, want %d", ones, want)
		}
	}
	// collect's handler keeps every value; a borrowed one (valid only
	// while the handler runs) is checked there and kept as a copy.
	collect := func(borrowed bool) (func(context.Context, []byte) error, func() [][]byte) {
		var mu sync.Mutex
		var got [][]byte
		done := make(chan struct{})
		h := func(_ context.Context, v []byte) error {
			mu.Lock()
			defer mu.Unlock()
			if borrowed {
				if _, ok := intact(v); !ok {
					t.Errorf("borrowed value (%d bytes, starts %q) not intact while its handler runs", len(v), v[:min(len(v), 12)])
				}
				v = bytes.Clone(v)
			}
			if got = append(got, v); len(got) == n {
				close(done)
			}
			return nil
		}
		wait := func() [][]byte {
			<-done
			mu.Lock()
			defer mu.Unlock()
			return got
		}
		return h, wait
	}

	for _, tc := range []struct{ acked, borrowed bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		acked, borrowed := tc.acked, tc.borrowed
		t.Run(fmt.Sprintf("pipeline acked=%v borrowed=%v", acked, borrowed), func(t *testing.T) {
			var opts []Option
			if acked {
				opts = append(opts, WithAck())
			}
			push, err := NewPusher[[]byte](append(opts, WithBind(loopback))...)
			push = cleanup(t, push, err)
			h, wait := collect(borrowed)
			popts := append(opts, WithConnect(ep(t, push)), WithWorkers(1))
			if borrowed {
				popts = append(popts, WithBorrowedValues())
			}
			pl, err := NewPuller(h, popts...)
			cleanup(t, pl, err)
			waitFor(t, "puller", func() bool { return push.Pullers() == 1 })
			for i := range n {
				if err := push.Push(ctxT(t), memValue(i)); err != nil {
					t.Fatal(err)
				}
			}
			check(t, wait())
		})
	}

	t.Run("pubsub", func(t *testing.T) {
		pub, err := NewPublisher[[]byte](WithBind(loopback), WithSocketOptions(benchHWM))
		pub = cleanup(t, pub, err)
		sub, err := NewSubscriber[[]byte](WithConnect(ep(t, pub)), WithTopics("m"))
		sub = cleanup(t, sub, err)
		waitFor(t, "subscription", func() bool { return pub.Subscribers() == 1 })
		// In lockstep: a publisher drops what a subscriber's queue cannot
		// take, and these values add up to more than its byte limit.
		var kept [][]byte
		for i := range n {
			if err := pub.Publish(ctxT(t), "m", memValue(i)); err != nil {
				t.Fatal(err)
			}
			m, err := sub.Recv(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			kept = append(kept, m.Value)
		}
		check(t, kept)
	})

	for _, borrowed := range []bool{false, true} {
		t.Run(fmt.Sprintf("reqrep borrowed=%v", borrowed), func(t *testing.T) {
			testReqRepMemory(t, n, borrowed, intact, check)
		})
	}
}

// testReqRepMemory: a Replier's handler keeps every request (a copy when
// borrowed, checked while it runs) and echoes it; the Requester keeps
// every reply.
//
// A request is resent when its reply takes longer than the Requester's
// timeout, which a loaded machine running -race can exceed with the
// default 2 s; the replier would then see it twice. This test is about
// memory, not retries: the timeout is a safety net of a minute, longer
// than any request may take (ctxT ends each after 20 s), so every request
// reaches the replier once. The borrowed check still matches each request
// by its contents, not by its position among those received.
func testReqRepMemory(t *testing.T, n int, borrowed bool, intact func([]byte) (int, bool), check func(*testing.T, [][]byte)) {
	{
		var mu sync.Mutex
		var reqs [][]byte
		opts := []Option{WithBind(loopback), WithWorkers(1)}
		if borrowed {
			opts = append(opts, WithBorrowedValues())
		}
		rp, err := NewReplier(func(_ context.Context, v []byte) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			if borrowed {
				if _, ok := intact(v); !ok {
					t.Errorf("borrowed request (%d bytes, starts %q) not intact while its handler runs", len(v), v[:min(len(v), 12)])
				}
				reqs = append(reqs, bytes.Clone(v))
				return v, nil // echoing a borrowed value is allowed
			}
			reqs = append(reqs, v)
			return v, nil
		}, opts...)
		rp = cleanup(t, rp, err)
		rq, err := NewRequester[[]byte, []byte](WithConnect(ep(t, rp)), WithTimeout(time.Minute))
		rq = cleanup(t, rq, err)
		var reps [][]byte
		for i := range n {
			r, err := rq.Request(ctxT(t), memValue(i))
			if err != nil {
				t.Fatal(err)
			}
			reps = append(reps, r)
		}
		check(t, reps)
		mu.Lock()
		defer mu.Unlock()
		check(t, reqs)
	}
}

// TestAckedRedeliveryKeepsLargeValues: an acked Pusher keeps a large
// value's encoded memory (a reused socket.Buffer) until the ack: a value
// nacked twice (its handler fails) is redelivered intact, after other
// large values have been sent, acknowledged and their memory reused.
// Under zpeerdebug a buffer given back too early is poisoned, so a
// redelivery from it fails loudly.
func TestAckedRedeliveryKeepsLargeValues(t *testing.T) {
	push, err := NewPusher[[]byte](WithAck(), WithBind(loopback))
	push = cleanup(t, push, err)
	const n = 40
	value := func(i int) []byte {
		v := bytes.Repeat([]byte{byte(i)}, 100<<10)
		copy(v, fmt.Sprintf("value %d;", i))
		return v
	}
	var mu sync.Mutex
	tries := map[int]int{}
	done := make(chan struct{})
	handled := 0
	pl, err := NewPuller(func(_ context.Context, v []byte) error {
		var i int
		if _, err := fmt.Sscanf(string(v[:12]), "value %d;", &i); err != nil || !bytes.Equal(v, value(i)) {
			t.Errorf("delivery not intact: starts %q", v[:min(len(v), 12)])
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		tries[i]++
		if i%4 == 0 && tries[i] < 3 {
			return fmt.Errorf("fail %d, try %d", i, tries[i]) // nack: redelivered
		}
		if handled++; handled == n {
			close(done)
		}
		return nil
	}, WithAck(), WithConnect(ep(t, push)), WithWorkers(1), WithBorrowedValues())
	cleanup(t, pl, err)
	waitFor(t, "puller", func() bool { return push.Pullers() == 1 })
	for i := range n {
		if err := push.Push(ctxT(t), value(i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-ctxT(t).Done():
		t.Fatal("not every value was handled")
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < n; i += 4 {
		if tries[i] != 3 {
			t.Errorf("value %d: %d deliveries, want 3", i, tries[i])
		}
	}
}
