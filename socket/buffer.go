package socket

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Buffer is reference-counted memory for the frames of a sent message,
// from the same size-class pools that received large frames come from
// (and that Msg.Free gives them back to). It lets a sender reuse the memory
// of large frames, which Send references until they are written (see
// CopyThreshold), without knowing when that is:
//
//	buf := socket.NewBuffer(n)
//	... fill buf.Bytes() ...
//	err := s.Send(ctx, socket.Msg{Frames: [][]byte{buf.Bytes()}, Buf: buf})
//	buf.Release() // the socket holds its own references until written
//
// NewBuffer returns a Buffer with one reference, the caller's. Send and
// SendTo take a reference of their own for every peer queue a message with
// Buf set is referenced from (by its frames of CopyThreshold bytes and
// more), and drop it once those frames are written, or dropped with a peer
// that is gone. When the last reference is dropped the memory goes back to
// the pool. Retain adds a reference, for a sender that keeps the bytes for
// longer (to send them again, say).
//
// Every reference is released exactly once; the memory must not be read or
// written after the caller's last Release. Built with the zpeerdebug tag,
// released memory is poisoned with 0xDF bytes and never reused, so that a
// stale read fails loudly in tests, and a Release too many panics.
type Buffer struct {
	b    []byte
	refs atomic.Int32
}

var bufferObjs = sync.Pool{New: func() any { return new(Buffer) }}

// NewBuffer returns a Buffer of n bytes (whose content is undefined) with
// one reference.
func NewBuffer(n int) *Buffer {
	b := bufferObjs.Get().(*Buffer)
	b.b = getBuffer(n)
	b.refs.Store(1)
	return b
}

// Bytes returns the buffer's memory: n bytes, with capacity up to the size
// class, so that appending within it does not copy.
func (b *Buffer) Bytes() []byte { return b.b }

// SetLen sets the length of Bytes, within its capacity, and returns it.
func (b *Buffer) SetLen(n int) []byte {
	b.b = b.b[:n]
	return b.b
}

// Retain adds a reference.
func (b *Buffer) Retain() {
	if b.refs.Add(1) <= 1 {
		panic("socket: Buffer retained after its last Release")
	}
}

// Release drops a reference; the last one gives the memory back.
func (b *Buffer) Release() {
	switch n := b.refs.Add(-1); {
	case n > 0:
		return
	case n < 0:
		panic("socket: Buffer released more often than retained")
	}
	mem := b.b
	b.b = nil
	if debugMsgs {
		poison(mem[:cap(mem)])
		return // poisoned memory is never reused, nor is b
	}
	putBuffer(mem)
	bufferObjs.Put(b)
}

// heapBuffer returns b, hidden from the compiler's escape analysis, for a
// sender's queue to keep once it has retained b. The analysis does not
// tell a message's fields apart: were the Buf pointer seen to be kept,
// the array of Frames would be judged kept with it, and every Send of a
// Msg{Frames: [][]byte{b}} built at the call would allocate that array
// (24 bytes) on the heap. It is safe because a Buffer that can be retained
// is on the heap: it came from NewBuffer (Retain panics on a zero Buffer,
// and a Buffer is not to be copied: it holds an atomic counter).
func heapBuffer(b *Buffer) *Buffer { return heapPtr(b) }

// heapPtr returns p, a pointer to memory on the heap, hidden from the
// escape analysis (see heapBuffer).
func heapPtr[T any](p *T) *T {
	x := uintptr(unsafe.Pointer(p))
	q := *(**T)(unsafe.Pointer(&x))
	runtime.KeepAlive(p) // a pointer to it until q is one
	return q
}
