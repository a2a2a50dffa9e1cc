package pattern

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
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
	// check finds every value intact. Values are matched by the number
	// they start with: an acked pipeline may deliver out of push order
	// (messages queued before a puller's credit arrives go out from two
	// goroutines).
	check := func(t *testing.T, kept [][]byte) {
		t.Helper()
		if len(kept) != n {
			t.Fatalf("%d values, want %d", len(kept), n)
		}
		seen := make([]bool, n)
		ones := 0 // 1-byte values are all "v"
		for _, v := range kept {
			if len(v) == 1 && v[0] == 'v' {
				ones++
				continue
			}
			var i int
			if _, err := fmt.Sscanf(string(v[:min(len(v), 16)]), "value %d;", &i); err != nil || i < 0 || i >= n || seen[i] ||
				!bytes.Equal(v, memValue(i)) {
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
	collect := func() (func(context.Context, []byte) error, func() [][]byte) {
		var mu sync.Mutex
		var got [][]byte
		done := make(chan struct{})
		h := func(_ context.Context, v []byte) error {
			mu.Lock()
			defer mu.Unlock()
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

	for _, acked := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipeline acked=%v", acked), func(t *testing.T) {
			var opts []Option
			if acked {
				opts = append(opts, WithAck())
			}
			push, err := NewPusher[[]byte](append(opts, WithBind(loopback))...)
			push = cleanup(t, push, err)
			h, wait := collect()
			pl, err := NewPuller(h, append(opts, WithConnect(ep(t, push)), WithWorkers(1))...)
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

	t.Run("reqrep", func(t *testing.T) {
		var mu sync.Mutex
		var reqs [][]byte
		rp, err := NewReplier(func(_ context.Context, v []byte) ([]byte, error) {
			mu.Lock()
			reqs = append(reqs, v)
			mu.Unlock()
			return v, nil
		}, WithBind(loopback), WithWorkers(1))
		rp = cleanup(t, rp, err)
		rq, err := NewRequester[[]byte, []byte](WithConnect(ep(t, rp)))
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
	})
}
