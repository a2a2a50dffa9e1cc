package outbox

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// The ring index agrees with a plain map under random puts and deletes of
// ids with the ring's prefix (in order, with gaps and jumps past the
// window) and of other ids.
func TestIndexMatchesMap(t *testing.T) {
	x := newIndex(100) // a ring of 1024 slots
	ref := map[ID]entry{}
	r := rand.New(rand.NewPCG(1, 2))
	mk := func(prefix, seq uint64) ID {
		var i ID
		binary.BigEndian.PutUint64(i[:8], prefix)
		binary.BigEndian.PutUint64(i[8:], seq)
		return i
	}
	var live []ID
	seq := uint64(5)
	for step := range 200000 {
		switch op := r.IntN(10); {
		case op < 5:
			seq += 1 + uint64(r.IntN(3))
			if r.IntN(5000) == 0 {
				seq += uint64(r.IntN(5000)) // past the window
			}
			id := mk(7, seq)
			if r.IntN(20) == 0 {
				id = mk(uint64(r.IntN(3)), r.Uint64()) // another prefix
			}
			e := entry{seg: uint64(step), size: int64(r.IntN(100))}
			if _, ok := ref[id]; !ok {
				live = append(live, id)
			}
			x.put(id, e)
			ref[id] = e
		case len(live) > 0:
			i := r.IntN(len(live))
			if r.IntN(3) > 0 {
				i = 0 // mostly the oldest, as acks come
			}
			id := live[i]
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
			e, ok := x.del(id)
			if want := ref[id]; !ok || e != want {
				t.Fatalf("step %d: del %x = %v %v, want %v", step, id, e, ok, want)
			}
			delete(ref, id)
			if _, ok := x.get(id); ok {
				t.Fatalf("step %d: %x still there", step, id)
			}
		}
		if x.len() != len(ref) {
			t.Fatalf("step %d: len %d, want %d", step, x.len(), len(ref))
		}
	}
	for id, want := range ref {
		if e, ok := x.get(id); !ok || e != want {
			t.Fatalf("get %x = %v %v, want %v", id, e, ok, want)
		}
	}
}
