package pattern

import (
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// TestPartitionKeyTable checks the acked Pusher's table of keys against a
// map, through growth, shrinking and deletions from the middle of runs of
// colliding slots (few distinct hashes over a small table make long runs).
func TestPartitionKeyTable(t *testing.T) {
	for _, universe := range []uint64{8, 100, 5000} {
		tab := newKeyTable()
		ref := make(map[uint64]*item)
		rng := rand.New(rand.NewPCG(1, universe))
		for op := range 200000 {
			// Hashes from a small set, some adjacent in the slot order
			// after the seed's mix: spread a little, then dense.
			h := rng.Uint64N(universe) * 0x100000001
			if op%50000 >= 40000 {
				// Phases that mostly delete, so that the table shrinks.
				if ks := ref[h]; ks != nil {
					tab.del(h)
					delete(ref, h)
				}
				continue
			}
			switch ks := ref[h]; {
			case ks == nil && rng.IntN(3) > 0:
				ks = &item{khash: h}
				tab.put(h, ks)
				ref[h] = ks
			case ks != nil && rng.IntN(2) == 0:
				tab.del(h)
				delete(ref, h)
			}
			if got := lastOf(tab.get(h)); got != ref[h] {
				t.Fatalf("universe %d, op %d: get(%x) = %p, want %p", universe, op, h, got, ref[h])
			}
		}
		if tab.n != len(ref) {
			t.Fatalf("universe %d: %d keys in the table, %d in the map", universe, tab.n, len(ref))
		}
		for h, ks := range ref {
			if got := lastOf(tab.get(h)); got != ks {
				t.Fatalf("universe %d: get(%x) = %p, want %p", universe, h, got, ks)
			}
		}
		if len(tab.slots) > minKeySlots && tab.n*8 < len(tab.slots) || tab.n*4 > 3*len(tab.slots) {
			t.Fatalf("universe %d: %d keys in %d slots", universe, tab.n, len(tab.slots))
		}
		tab.del(^uint64(0)) // absent: no change
		if tab.n != len(ref) {
			t.Fatalf("universe %d: deleting an absent key changed the count", universe)
		}
	}
}

// TestPartitionJobRing checks a keyed queue's ring (jobRing) against a
// slice: jobs pushed at either end, taken out of the middle (holes) and
// at the head, through growth, packing and shrinking; the order, the
// first job and every job's position stay right.
func TestPartitionJobRing(t *testing.T) {
	var l jobRing
	var ref []*item
	rng := rand.New(rand.NewPCG(2, 3))
	for op := range 100000 {
		grow := op%20000 < 12000 // phases that mostly grow, then mostly shrink
		switch r := rng.IntN(10); {
		case r < 4 && grow || r < 2:
			it := &item{}
			front := rng.IntN(8) == 0
			l.push(it, front)
			if front {
				ref = slices.Insert(ref, 0, it)
			} else {
				ref = append(ref, it)
			}
		case len(ref) > 0 && r < 7:
			it := ref[0]
			if got := l.first(); got != it {
				t.Fatalf("op %d: first() = %p, want %p", op, got, it)
			}
			l.remove(it)
			ref = ref[1:]
		case len(ref) > 0:
			i := rng.IntN(len(ref))
			l.remove(ref[i])
			ref = slices.Delete(ref, i, i+1)
		}
		if l.n != len(ref) {
			t.Fatalf("op %d: %d jobs, want %d", op, l.n, len(ref))
		}
		if op%997 == 0 || len(ref) < 3 {
			if got := l.jobs(); !slices.Equal(got, ref) {
				t.Fatalf("op %d: jobs out of order (%d, want %d)", op, len(got), len(ref))
			}
			for _, it := range ref {
				if l.slots[uint64(it.deadline)&l.mask()] != it {
					t.Fatalf("op %d: a job is not at its position", op)
				}
			}
			if len(l.slots) > minRingSlots && l.n*8 < len(l.slots) || l.tail-l.head > uint64(len(l.slots)) {
				t.Fatalf("op %d: %d jobs over %d positions in %d slots", op, l.n, l.tail-l.head, len(l.slots))
			}
		}
	}
	if len(ref) == 0 && l.first() != nil {
		t.Fatal("empty ring has a first job")
	}
}

func lastOf(s *keySlot) *item {
	if s == nil {
		return nil
	}
	return s.last
}

// TestPartitionKeyChain drives an acked Pusher's per-key bookkeeping
// without sockets (no puller: queued jobs wait in the homeless queue): a
// key's jobs are released one at a time in push order, a job settled
// before its turn is skipped when its turn comes, and a key is forgotten
// with its last job.
func TestPartitionKeyChain(t *testing.T) {
	a := newAckPusher(&Pusher[[]byte]{})
	defer a.notes.close()
	var seq uint64
	job := func(kh uint64) *item {
		seq++
		it := newItem(a.custody.id(seq), seq, 0, nil)
		a.mu.Lock()
		a.custody.put(it)
		a.pushKeyedLocked(it, kh) // unlocks
		return it
	}
	// settle takes a job out of its state and settles it: acked, or dead
	// with an error.
	settle := func(it *item, err error) {
		a.mu.Lock()
		a.takeOut(it, false)
		a.forget(it, err)
		a.mu.Unlock()
	}
	queued := func() []*item {
		var its []*item
		a.homeless.each(func(it *item) { its = append(its, it) })
		return its
	}
	const ka, kb = 1, 2
	a1, a2, a3, a4 := job(ka), job(ka), job(ka), job(ka)
	b1 := job(kb)
	if got := queued(); !slices.Equal(got, []*item{a1, b1}) || a.keyedQueued != 2 {
		t.Fatalf("queued %v (count %d), want the heads a1, b1", got, a.keyedQueued)
	}
	settle(a3, nil) // before its turn
	settle(a2, nil) // so is this one: two in a row are skipped
	if got := queued(); len(got) != 2 {
		t.Fatalf("settling waiting jobs changed the queue: %d queued", len(got))
	}
	settle(a1, nil)
	if got := queued(); !slices.Equal(got, []*item{b1, a4}) || a4.state != jobQueued {
		t.Fatalf("after a1 settled: queued %v, want b1, a4 (a2 and a3 skipped)", got)
	}
	a5 := job(ka) // chained behind a4, the key's last
	settle(a4, ErrDead)
	if got := queued(); !slices.Equal(got, []*item{b1, a5}) {
		t.Fatalf("after a4 died: queued %v, want b1, a5", got)
	}
	// The key's last job settles while waiting (before the link to it is
	// written, see linkKeys), and the next one pushed is chained behind
	// it all the same.
	a6, a7 := job(ka), job(ka)
	settle(a7, nil)
	a8 := job(ka)
	settle(a5, nil)
	if got := queued(); !slices.Equal(got, []*item{b1, a6}) {
		t.Fatalf("after a5 settled: queued %v, want b1, a6", got)
	}
	settle(a6, nil)
	if got := queued(); !slices.Equal(got, []*item{b1, a8}) || a8.state != jobQueued {
		t.Fatalf("after a6 settled: queued %v, want b1, a8 (a7 skipped)", got)
	}
	settle(b1, nil)
	settle(a8, nil)
	if a.keys.n != 0 || a.keyedQueued != 0 || len(queued()) != 0 || a.custody.len() != 0 || len(a.links) != 0 {
		t.Fatalf("all settled: %d keys, %d/%d queued, %d in custody, %d links",
			a.keys.n, a.keyedQueued, len(queued()), a.custody.len(), len(a.links))
	}
	// A key that comes back starts a new turn.
	if a6 := job(ka); a6.state != jobQueued || !slices.Equal(queued(), []*item{a6}) {
		t.Fatal("a new job of a forgotten key is not its head")
	}
}

// TestItemSize keeps an acked Pusher's item within 256 bytes (its size
// class: four cache lines, aligned), with what a delivery touches in the
// first two (see item).
func TestItemSize(t *testing.T) {
	var it item
	if n := unsafe.Sizeof(it); n > 256 {
		t.Errorf("item takes %d bytes, more than 256", n)
	}
	if end := unsafe.Offsetof(it.buf) + unsafe.Sizeof(it.buf); end > 128 {
		t.Errorf("a delivery's fields end at byte %d of item, past its first two cache lines", end)
	}
}
