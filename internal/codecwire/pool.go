package codecwire

import "sync"

const (
	// bufferSize is the capacity of a new pooled buffer.
	bufferSize = 1 << 10
	// maxPooledBuffer is the largest capacity PutBuffer keeps; larger
	// buffers are left to the garbage collector so that one huge message
	// does not pin its memory in the pool.
	maxPooledBuffer = 64 << 10
)

var bufferPool = sync.Pool{New: func() any {
	b := make([]byte, 0, bufferSize)
	return &b
}}

// GetBuffer returns an empty buffer from a pool, to encode into:
//
//	bp := codecwire.GetBuffer()
//	*bp, err = env.AppendEncode(*bp)
//	... write *bp ...
//	codecwire.PutBuffer(bp)
func GetBuffer() *[]byte {
	b := bufferPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// PutBuffer returns a buffer to the pool. Buffers whose capacity exceeds
// 64 KiB are dropped instead. The caller must not use b, or any slice of it,
// afterwards. PutBuffer(nil) does nothing.
func PutBuffer(b *[]byte) {
	if b == nil || cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	bufferPool.Put(b)
}
