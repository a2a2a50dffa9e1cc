package socket

import (
	"math/bits"
	"sync"
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
