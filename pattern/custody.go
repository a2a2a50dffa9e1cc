package pattern

import (
	"crypto/rand"
	"encoding/binary"

	"github.com/zpeer/zpeer/codec"
)

// custody holds an acked Pusher's messages by id. The Pusher makes its ids
// itself, 8 random bytes then its 8-byte big-endian sequence number (the
// same shape as codec.NewID), so most lookups are an index into a ring of
// slots instead of a probe into a large hash map. A message still held
// when the ring has moved past it waits in an overflow map.
type custody struct {
	prefix [8]byte
	slots  []*item // power-of-two length
	mask   uint64
	low    uint64 // no ring entry has a smaller seq
	next   uint64 // every ring entry has a smaller seq
	over   map[codec.ID]*item
	n      int
}

func newCustody(maxPending int) *custody {
	size := 1024
	for size < 2*maxPending && size < 1<<18 {
		size <<= 1
	}
	c := &custody{slots: make([]*item, size), mask: uint64(size - 1), low: 1, next: 1,
		over: make(map[codec.ID]*item)}
	rand.Read(c.prefix[:])
	return c
}

// id returns the message id for sequence number seq.
func (c *custody) id(seq uint64) codec.ID {
	var id codec.ID
	copy(id[:8], c.prefix[:])
	binary.BigEndian.PutUint64(id[8:], seq)
	return id
}

func (c *custody) len() int { return c.n }

func (c *custody) get(id codec.ID) *item {
	if [8]byte(id[:8]) == c.prefix {
		if s := binary.BigEndian.Uint64(id[8:]); s >= c.low && s < c.next {
			if it := c.slots[s&c.mask]; it != nil && it.id == id {
				return it
			}
		}
	}
	if len(c.over) == 0 {
		return nil
	}
	return c.over[id]
}

func (c *custody) put(it *item) {
	c.n++
	s := it.seq
	if s < c.low {
		c.over[it.id] = it // a concurrent Push that came late
		return
	}
	for s >= c.low+uint64(len(c.slots)) {
		// The ring is a window of sequence numbers: make room by moving
		// its oldest entry out.
		if old := c.slots[c.low&c.mask]; old != nil {
			c.over[old.id] = old
			c.slots[c.low&c.mask] = nil
		}
		c.low++
	}
	c.slots[s&c.mask] = it
	if s >= c.next {
		c.next = s + 1
	}
}

func (c *custody) del(it *item) {
	c.n--
	s := it.seq
	if s >= c.low && s < c.next && c.slots[s&c.mask] == it {
		c.slots[s&c.mask] = nil
		for c.low < c.next && c.slots[c.low&c.mask] == nil {
			c.low++
		}
		return
	}
	delete(c.over, it.id)
}
