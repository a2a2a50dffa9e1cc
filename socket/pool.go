package socket

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Received frames larger than slabFrameMax come from power-of-two size
// classes of reusable buffers. Msg.Free gives them back; a message that is
// never freed is simply collected. Reuse matters for large messages: a
// fresh multi-megabyte buffer per message costs a page fault per 4 KiB
// touched, which on a virtual machine outweighs the copy from the kernel.
const (
	minPoolClass = 11 // 2 KiB
	maxPoolClass = 26 // 64 MiB; larger frames are allocated and collected
)

var bufPools [maxPoolClass + 1]sync.Pool

func sizeClass(n int) int {
	if n <= 1<<minPoolClass {
		return minPoolClass
	}
	return bits.Len(uint(n - 1))
}

func getBuffer(n int) []byte {
	c := sizeClass(n)
	if c > maxPoolClass {
		return make([]byte, n)
	}
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

func putBuffer(b []byte) {
	c := bits.Len(uint(cap(b))) - 1
	if c < minPoolClass || c > maxPoolClass || cap(b) != 1<<c {
		return // not one of ours
	}
	b = b[:0]
	bufPools[c].Put(&b)
}

// slab is the memory that received frames of 1 to slabFrameMax bytes are
// carved from, one after the other. Each message carved from it holds a
// reference, and so does the reader while it is carving. When every
// reference is released (the messages freed with Msg.Free, the reader on
// to another slab) the slab is reused; a slab some message is never freed
// from is simply collected. Reuse spares the garbage collector a slab per
// few hundred small messages, and the virtual machine the page faults of
// fresh memory.
//
// The reader does not count the references it hands out one by one, which
// would bounce the counter's cache line between its core and the
// receivers': it takes slabReserve references up front and gives back the
// ones it did not hand out when it leaves the slab. A slab holds at most
// slabSize messages (every one has a byte in it), far fewer than that.
type slab struct {
	buf  [slabSize]byte
	refs atomic.Int32
}

const slabReserve = 1 << 30

var slabPool = sync.Pool{New: func() any { return new(slab) }}

// newSlab returns a slab holding slabReserve references for the reader.
func newSlab() *slab {
	s := slabPool.Get().(*slab)
	s.refs.Store(slabReserve)
	return s
}

// release drops n references.
func (s *slab) release(n int32) {
	if s.refs.Add(-n) == 0 {
		slabPool.Put(s)
	}
}
