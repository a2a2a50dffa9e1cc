package pattern

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zpeer/zpeer/socket"
)

// updates publishes n rounds of one update to each of topics t0..t(k-1):
// the value of round r is r.
func updates(t *testing.T, pub *Publisher[int], k, from, n int) {
	t.Helper()
	for r := from; r < from+n; r++ {
		for i := range k {
			if err := pub.Publish(ctxT(t), fmt.Sprint("t", i), r); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func recvN(t *testing.T, sub *Subscriber[int], n int) []Message[int] {
	t.Helper()
	out := make([]Message[int], 0, n)
	for range n {
		m, err := sub.Recv(ctxT(t))
		if err != nil {
			t.Fatalf("Recv after %d: %v", len(out), err)
		}
		out = append(out, m)
	}
	return out
}

// TestLastValueLateSubscriber: a subscriber that joins after 1,000 updates
// to 10 topics gets the 10 current values first, then the live stream,
// with no gap counted, while the publisher keeps publishing.
func TestLastValueLateSubscriber(t *testing.T) {
	p, err := NewPublisher[int](WithBind(loopback), WithLastValue(100), WithName("lvc"))
	pub := cleanup(t, p, err)
	updates(t, pub, 10, 0, 100)

	// Publishing goes on while the subscriber joins.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := 100; ctx.Err() == nil; r++ {
			for i := range 10 {
				if err := pub.Publish(ctx, fmt.Sprint("t", i), r); err != nil && !errors.Is(err, context.Canceled) {
					t.Error(err)
					return
				}
			}
		}
	}()
	s, err := NewSubscriber[int](WithConnect(pub.Endpoints()[0]), WithTopics("t"))
	sub := cleanup(t, s, err)
	first := recvN(t, sub, 10)
	seen := map[string]bool{}
	for _, m := range first {
		if seen[m.Topic] {
			t.Fatalf("topic %s twice among the first 10 messages: the cache did not come first", m.Topic)
		}
		seen[m.Topic] = true
		if m.Seq < 100 || uint64(m.Value) != m.Seq-1 {
			t.Errorf("cached %s: seq %d value %d, want the current value (seq >= 100, value seq-1)", m.Topic, m.Seq, m.Value)
		}
	}
	live := recvN(t, sub, 200)
	cancel()
	wg.Wait()
	last := map[string]uint64{}
	for _, m := range first {
		last[m.Topic] = m.Seq
	}
	for _, m := range live {
		if m.Seq != last[m.Topic]+1 {
			t.Fatalf("%s: seq %d after %d", m.Topic, m.Seq, last[m.Topic])
		}
		last[m.Topic] = m.Seq
	}
	if st := sub.Stats(); st.Gaps != 0 || st.Duplicates != 0 {
		t.Errorf("gaps %d duplicates %d, want none", st.Gaps, st.Duplicates)
	}
}

// TestLastValueBounded: the cache keeps the topics published most recently.
func TestLastValueBounded(t *testing.T) {
	p, err := NewPublisher[int](WithBind(loopback), WithLastValue(3))
	pub := cleanup(t, p, err)
	updates(t, pub, 10, 0, 5)
	s, err := NewSubscriber[int](WithConnect(pub.Endpoints()[0]), WithTopics(""))
	sub := cleanup(t, s, err)
	var got []string
	for _, m := range recvN(t, sub, 3) {
		got = append(got, m.Topic)
	}
	if fmt.Sprint(got) != "[t7 t8 t9]" {
		t.Errorf("cached topics %v, want [t7 t8 t9]", got)
	}
	if _, err := NewPublisher[int](WithLastValue(0)); !errors.Is(err, ErrOption) {
		t.Errorf("WithLastValue(0): %v, want ErrOption", err)
	}
	if _, err := NewSubscriber[int](WithLastValue(1)); !errors.Is(err, ErrOption) {
		t.Errorf("WithLastValue on a Subscriber: %v, want ErrOption", err)
	}
}

// TestLastValueThroughProxy: behind a pub/sub proxy, a subscriber that
// joins late gets the current values; one that was there all along gets
// the cache's copies too, and drops them as duplicates.
func TestLastValueThroughProxy(t *testing.T) {
	p, err := NewPublisher[int](WithBind(loopback), WithLastValue(100), WithName("lvc"))
	pub := cleanup(t, p, err)
	px, backEP := startProxy(t, pub.Endpoints()[0], "tcp://127.0.0.1:0")
	defer px.stop(t)
	fast := socket.WithReconnect(10*time.Millisecond, 50*time.Millisecond)
	s, err := NewSubscriber[int](WithConnect(backEP), WithTopics("t"), WithSocketOptions(fast))
	early := cleanup(t, s, err)
	// The publisher counts the subscription once its cache has served it,
	// and the proxy passed it up after taking it itself: what is
	// published from now on reaches the early subscriber.
	waitFor(t, "early subscriber's subscription at the publisher", func() bool { return pub.Subscribers() == 1 })
	// 500 updates: half the high-water mark, so that the proxy's queues
	// have room for the replay even while their writers have not yet
	// counted the burst as written (a PUB drops at the mark, and so would
	// the replay; the writer counts a batch when its goroutine runs again
	// after the write, which on a busy machine can be after the late
	// subscriber's subscription arrived).
	updates(t, pub, 10, 1000, 50)
	recvN(t, early, 500)

	s, err = NewSubscriber[int](WithConnect(backEP), WithTopics("t"), WithSocketOptions(fast))
	late := cleanup(t, s, err)
	current := recvN(t, late, 10)
	for _, m := range current {
		if m.Value != 1049 {
			t.Errorf("late subscriber's first %s: value %d seq %d, want the current value 1049", m.Topic, m.Value, m.Seq)
		}
	}
	updates(t, pub, 10, 2000, 1)
	for _, m := range recvN(t, late, 10) {
		if m.Value != 2000 {
			t.Errorf("late subscriber's live %s: value %d", m.Topic, m.Value)
		}
	}
	for _, m := range recvN(t, early, 10) {
		if m.Value != 2000 {
			t.Errorf("early subscriber's next %s: value %d, want 2000 (the cache's copies dropped)", m.Topic, m.Value)
		}
	}
	if st := late.Stats(); st.Gaps != 0 {
		t.Errorf("late subscriber counted %d gaps", st.Gaps)
	}
	if st := early.Stats(); st.Gaps != 0 || st.Duplicates != 10 || st.Delivered != 510 {
		t.Errorf("early subscriber: gaps %d duplicates %d delivered %d, want 0, 10 and 510", st.Gaps, st.Duplicates, st.Delivered)
	}
}
