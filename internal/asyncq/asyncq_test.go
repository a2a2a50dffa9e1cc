package asyncq

import (
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunsInOrderAndCloseRunsWhatIsQueued(t *testing.T) {
	var got []int
	q := New(func(v int) { got = append(got, v) }, 0, nil)
	for i := range 1000 {
		if !q.Post(i) {
			t.Fatalf("Post(%d) dropped", i)
		}
	}
	q.Close()
	q.Close() // idempotent
	if len(got) != 1000 {
		t.Fatalf("ran %d of 1000", len(got))
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("item %d is %d: out of order", i, v)
		}
	}
	if q.Post(1) {
		t.Fatal("Post after Close accepted")
	}
}

func TestBoundShrinksThenDrops(t *testing.T) {
	block := make(chan struct{})
	var mu sync.Mutex
	var got []int
	q := New(func(v int) {
		<-block
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
	}, 2, func(items []int) []int { // drop the odd items
		out := items[:0]
		for _, v := range items {
			if v%2 == 0 {
				out = append(out, v)
			}
		}
		return out
	})
	// The goroutine may take the first item at once, or not: post until
	// a post is dropped, which must happen with 2 waiting.
	posted := 0
	for v := 0; v < 10; v += 2 {
		if !q.Post(v) {
			break
		}
		posted++
	}
	if posted > 3 {
		t.Fatalf("%d items accepted with a bound of 2 (and one running)", posted)
	}
	close(block)
	q.Close()
	if len(got) != posted {
		t.Fatalf("ran %d, accepted %d", len(got), posted)
	}
	q2 := New(func(int) {}, 1, func([]int) []int { return nil })
	defer q2.Close()
	for i := range 10 {
		if !q2.Post(i) {
			t.Fatalf("Post(%d) dropped although shrink makes room", i)
		}
	}
}
