package outbox

import "encoding/binary"

// index maps the live ids to their entries. Ids that share the first 8
// bytes of the first one appended and carry a counter in the last 8 (as
// the acked Pusher's do) sit in a ring of slots indexed by that counter;
// any other id, or one the ring has moved past, in a map. A hash map alone
// with an insert and a delete per record spends its time probing past
// deleted slots.
type index struct {
	prefix [8]byte
	fixed  bool // prefix is set
	slots  []slot
	mask   uint64
	low    uint64 // no ring entry has a smaller counter
	next   uint64 // every ring entry has a smaller counter
	over   map[ID]entry
	n      int
}

type slot struct {
	seq  uint64
	used bool
	e    entry
}

func newIndex(maxMessages int) *index {
	size := 1024
	for size < 2*maxMessages && size < 1<<17 {
		size <<= 1
	}
	return &index{slots: make([]slot, size), mask: uint64(size - 1), over: make(map[ID]entry)}
}

func (x *index) len() int { return x.n }

// ring returns id's counter if id belongs in the ring's window.
func (x *index) ring(id ID) (uint64, bool) {
	if !x.fixed || [8]byte(id[:8]) != x.prefix {
		return 0, false
	}
	s := binary.BigEndian.Uint64(id[8:])
	return s, s >= x.low && s < x.next
}

func (x *index) get(id ID) (entry, bool) {
	if s, ok := x.ring(id); ok {
		if sl := &x.slots[s&x.mask]; sl.used && sl.seq == s {
			return sl.e, true
		}
	}
	if len(x.over) == 0 {
		return entry{}, false
	}
	e, ok := x.over[id]
	return e, ok
}

// put adds or replaces id's entry. The first id put fixes the ring's
// prefix (see putOver for ids that must not).
func (x *index) put(id ID, e entry) {
	if !x.fixed {
		x.fixed = true
		x.prefix = [8]byte(id[:8])
		x.low = binary.BigEndian.Uint64(id[8:])
		x.next = x.low
	}
	s := binary.BigEndian.Uint64(id[8:])
	if [8]byte(id[:8]) != x.prefix || s < x.low {
		x.putOver(id, e)
		return
	}
	if s < x.next {
		if sl := &x.slots[s&x.mask]; sl.used && sl.seq == s {
			sl.e = e
			return
		}
		if _, ok := x.over[id]; ok {
			x.over[id] = e
			return
		}
	}
	if size := uint64(len(x.slots)); s-x.low >= size {
		// Make room: entries older than the new window move to the map.
		low := s - size + 1
		for i := range x.slots {
			if sl := &x.slots[i]; sl.used && sl.seq < low {
				var old ID
				copy(old[:8], x.prefix[:])
				binary.BigEndian.PutUint64(old[8:], sl.seq)
				x.over[old] = sl.e
				*sl = slot{}
			}
		}
		x.low = low
		x.next = max(x.next, low)
	}
	x.slots[s&x.mask] = slot{seq: s, used: true, e: e}
	x.n++
	if s >= x.next {
		x.next = s + 1
	}
}

// putOver adds or replaces id's entry in the map (records found on Open,
// which must not fix the ring's prefix).
func (x *index) putOver(id ID, e entry) {
	if _, ok := x.over[id]; !ok {
		x.n++
	}
	x.over[id] = e
}

// del removes id and returns its entry.
func (x *index) del(id ID) (entry, bool) {
	if s, ok := x.ring(id); ok {
		if sl := &x.slots[s&x.mask]; sl.used && sl.seq == s {
			e := sl.e
			*sl = slot{}
			x.n--
			for x.low < x.next && !x.slots[x.low&x.mask].used {
				x.low++
			}
			return e, true
		}
	}
	e, ok := x.over[id]
	if ok {
		delete(x.over, id)
		x.n--
	}
	return e, ok
}
