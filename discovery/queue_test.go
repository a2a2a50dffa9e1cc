package discovery

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func qev(kind EventKind, key, ep string) Event {
	return Event{Kind: kind, Peer: Peer{Key: key, Endpoints: []string{ep}}}
}

// drain pops everything and renders it as "kind key ep" lines.
func drain(q *evQueue) string {
	var out []string
	for {
		ev, ok := q.pop()
		if !ok {
			return strings.Join(out, ", ")
		}
		out = append(out, fmt.Sprint(ev.Kind, " ", ev.Peer.Key, " ", ev.Peer.Endpoint()))
	}
}

func TestEventQueueCoalesces(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		in        []Event
		want      string
		coalesced int
	}{
		{"up then updates", []Event{qev(PeerUp, "a", "1"), qev(PeerUpdated, "a", "2"), qev(PeerUpdated, "a", "3")},
			"up a 3", 2},
		{"up then down: nothing", []Event{qev(PeerUp, "a", "1"), qev(PeerUpdated, "a", "2"), qev(PeerDown, "a", "2")},
			"", 2},
		{"updated then down", []Event{qev(PeerUpdated, "a", "1"), qev(PeerDown, "a", "1")},
			"down a 1", 1},
		{"down then up: both", []Event{qev(PeerDown, "a", "1"), qev(PeerUp, "a", "2"), qev(PeerUpdated, "a", "3")},
			"down a 1, up a 3", 1},
		{"down, up, down: down", []Event{qev(PeerDown, "a", "1"), qev(PeerUp, "a", "2"), qev(PeerDown, "a", "2")},
			"down a 1", 1},
		{"down, up, down, up", []Event{qev(PeerDown, "a", "1"), qev(PeerUp, "a", "2"), qev(PeerDown, "a", "2"), qev(PeerUp, "a", "4")},
			"down a 1, up a 4", 1},
		{"peers keep their order", []Event{qev(PeerUp, "a", "1"), qev(PeerUp, "b", "1"), qev(PeerUpdated, "a", "2"), qev(PeerDown, "c", "1")},
			"up a 2, up b 1, down c 1", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q evQueue
			n := 0
			for _, ev := range tc.in {
				c, d := q.push(ev)
				if d {
					t.Fatal("dropped")
				}
				if c {
					n++
				}
			}
			if got := drain(&q); got != tc.want || n != tc.coalesced {
				t.Fatalf("got %q (%d coalesced), want %q (%d)", got, n, tc.want, tc.coalesced)
			}
			if !q.empty() || len(q.last) != 0 {
				t.Fatalf("queue not empty after draining: live %d, %d keys", q.live, len(q.last))
			}
		})
	}
}

// An event popped between two others of the same peer leaves the queue
// consistent.
func TestEventQueuePopBetween(t *testing.T) {
	t.Parallel()
	var q evQueue
	q.push(qev(PeerDown, "a", "1"))
	q.push(qev(PeerUp, "a", "2"))
	if ev, _ := q.pop(); ev.Kind != PeerDown {
		t.Fatalf("%v", ev.Kind)
	}
	q.push(qev(PeerDown, "a", "2")) // cancels the queued Up
	if got := drain(&q); got != "" {
		t.Fatalf("got %q", got)
	}
}

// The queue holds at most MaxQueuedEvents events, and its memory follows
// the live events, however many came and went.
func TestEventQueueBounded(t *testing.T) {
	t.Parallel()
	var q evQueue
	for i := range MaxQueuedEvents {
		if _, d := q.push(qev(PeerUp, fmt.Sprint(i), "1")); d {
			t.Fatalf("dropped event %d", i)
		}
	}
	if _, d := q.push(qev(PeerUp, "one too many", "1")); !d {
		t.Fatal("not dropped beyond MaxQueuedEvents")
	}
	// A queued peer still coalesces when the queue is full.
	if c, d := q.push(qev(PeerUpdated, "0", "2")); !c || d {
		t.Fatalf("coalesced %v dropped %v", c, d)
	}
	drain(&q)
	// Churn: 64k peers (8 times the bound) come and go while nobody reads.
	for i := range 8 * MaxQueuedEvents {
		k := fmt.Sprint("churn", i)
		q.push(qev(PeerUp, k, "1"))
		q.push(qev(PeerDown, k, "1"))
	}
	if q.live != 0 || len(q.items) > 64 || cap(q.items) > 2*MaxQueuedEvents {
		t.Fatalf("after churn: live %d, len %d, cap %d", q.live, len(q.items), cap(q.items))
	}
}

// A reader that does not read while peers come, change and go finds the
// net result, and Stats counts what was merged.
func TestWatcherEventsCoalesce(t *testing.T) {
	t.Parallel()
	w := newManualWatcher(t)
	ch := w.Subscribe(t.Context())
	now := time.Now()
	// Under w.mu the subscriber's goroutine cannot take events from the
	// queue: they all wait together, as they do for a slow reader.
	w.mu.Lock()
	w.emitLocked(Event{Kind: PeerUp, Peer: mpeer("a", "PUB", "tcp://h:1"), Time: now})
	w.emitLocked(Event{Kind: PeerUpdated, Peer: mpeer("a", "PUB", "tcp://h:2"), Time: now})
	w.emitLocked(Event{Kind: PeerUp, Peer: mpeer("b", "PUB", "tcp://h:3"), Time: now})
	w.emitLocked(Event{Kind: PeerDown, Peer: mpeer("b", "PUB", "tcp://h:3"), Time: now})
	w.emitLocked(Event{Kind: PeerUp, Peer: mpeer("c", "PUB", "tcp://h:4"), Time: now})
	w.mu.Unlock()
	var got []string
	for range 2 {
		ev := waitEvent(t, ch, time.Second, func(Event) bool { return true })
		got = append(got, fmt.Sprint(ev.Kind, " ", ev.Peer.Node, " ", ev.Peer.Endpoint()))
	}
	if s := strings.Join(got, ", "); s != "up a tcp://h:2, up c tcp://h:4" {
		t.Fatalf("got %s", s)
	}
	select {
	case ev := <-ch:
		t.Fatalf("more: %v %+v", ev.Kind, ev.Peer)
	default:
	}
	if st := w.Stats(); st.PeersUp != 3 || st.PeersDown != 1 || st.EventsCoalesced != 2 || st.EventDrops != 0 {
		t.Fatalf("stats %+v", st)
	}
}
