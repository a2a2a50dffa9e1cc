package pattern

import (
	"math/rand/v2"
	"testing"
)

// TestPartitionKeyTable checks the acked Pusher's table of keys against a
// map, through growth, shrinking and deletions from the middle of runs of
// colliding slots (few distinct hashes over a small table make long runs).
func TestPartitionKeyTable(t *testing.T) {
	for _, universe := range []uint64{8, 100, 5000} {
		tab := newKeyTable()
		ref := make(map[uint64]*keyState)
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
				ks = &keyState{hash: h}
				tab.put(h, ks)
				ref[h] = ks
			case ks != nil && rng.IntN(2) == 0:
				tab.del(h)
				delete(ref, h)
			}
			if got := tab.get(h); got != ref[h] {
				t.Fatalf("universe %d, op %d: get(%x) = %p, want %p", universe, op, h, got, ref[h])
			}
		}
		if tab.n != len(ref) {
			t.Fatalf("universe %d: %d keys in the table, %d in the map", universe, tab.n, len(ref))
		}
		for h, ks := range ref {
			if got := tab.get(h); got != ks {
				t.Fatalf("universe %d: get(%x) = %p, want %p", universe, h, got, ks)
			}
		}
		if len(tab.slots) > minKeySlots && tab.n*8 < len(tab.slots) || tab.n*2 > len(tab.slots) {
			t.Fatalf("universe %d: %d keys in %d slots", universe, tab.n, len(tab.slots))
		}
		tab.del(^uint64(0)) // absent: no change
		if tab.n != len(ref) {
			t.Fatalf("universe %d: deleting an absent key changed the count", universe)
		}
	}
}
