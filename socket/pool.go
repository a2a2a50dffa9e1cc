package socket

import (
	"math/bits"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Received frames larger than slabFrameMax, and sent ones in a Buffer,
// come from size classes of reusable buffers: four per doubling (2 KiB,
// 2.5, 3, 3.5, 4, 5, 6, 7, 8 KiB, ...) up to 64 MiB, so that a frame a
// little over a power of two (a 1 MiB value in its envelope) takes 1.25×
// its size, not 2×. Msg.Free and Buffer.Release give them back; a message
// that is never freed is simply collected. From 32 KiB a class is a
// bounded stack of its own (bigPool, below), not a sync.Pool. Reuse
// matters for large messages: a fresh multi-megabyte buffer per message
// costs a page fault per 4 KiB touched (and Go zeroes all of it), which on
// a virtual machine outweighs the copy from the kernel.
const (
	minPoolShift = 11 // 2 KiB, the smallest class
	maxPoolShift = 26 // 64 MiB, the largest; larger frames are allocated and collected
	numClasses   = (maxPoolShift-minPoolShift)*4 + 1
)

var bufPools [numClasses]sync.Pool

// boxes holds the empty *[]byte that carry buffers in bufPools, so that
// putting a buffer back allocates nothing.
var boxes = sync.Pool{New: func() any { return new([]byte) }}

// sizeClass returns the smallest class whose buffers hold n bytes, and
// their size; ok is false above the largest class.
func sizeClass(n int) (class, size int, ok bool) {
	if n <= 1<<minPoolShift {
		return 0, 1 << minPoolShift, true
	}
	k := bits.Len(uint(n)) - 1 // 2^k <= n < 2^(k+1)
	step := 1 << (k - 2)
	q := (n+step-1)/step - 4 // 0..4 quarters over 2^k
	if q == 4 {
		k, q, step = k+1, 0, step*2
	}
	if k > maxPoolShift || (k == maxPoolShift && q > 0) {
		return 0, 0, false
	}
	return (k-minPoolShift)*4 + q, (4 + q) * step, true
}

// classSize returns the size of class c's buffers.
func classSize(c int) int {
	k, q := c/4+minPoolShift, c%4
	return (4 + q) << (k - 2)
}

func getBuffer(n int) []byte {
	c, size, ok := sizeClass(n)
	if !ok {
		return make([]byte, n)
	}
	if size >= bigClassMin {
		if b := bigPools[c].get(); b != nil {
			return b[:n]
		}
		return make([]byte, n, size)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		b := (*p)[:n]
		*p = nil
		boxes.Put(p)
		return b
	}
	return make([]byte, n, size)
}

func putBuffer(b []byte) {
	if debugMsgs {
		return // freed memory stays poisoned, never reused
	}
	c, size, ok := sizeClass(cap(b))
	if !ok || size != cap(b) {
		return // not one of ours
	}
	if size >= bigClassMin {
		bigPools[c].put(b[:0], stockHigh(size))
		return
	}
	p := boxes.Get().(*[]byte)
	*p = b[:0]
	bufPools[c].Put(p)
}

// Buffers from bigClassMin up are pooled in stacks of their own (bigPool)
// rather than a sync.Pool, for frames taken with Msg.TakeFrame: those
// leave the pool for as long as the application keeps them, and come back
// (through a finalizer) only after a collection finds them unreferenced.
// The collector paces itself as if the heap held few of those buffers:
// it does not count the taken ones that wait for their finalizer, and a
// pool that frames are taken from is nearly empty when it starts. Under a
// steady stream of taken frames it runs about once per stockHigh's worth
// of them (every 50 typed 1 MiB round trips), and only allocation makes
// it run. So:
//
//   - While a class that frames are taken from holds fewer than stockLow
//     buffers, a goroutine of its own (refill) allocates more and touches
//     their pages, so that the reader receiving the next frame finds memory
//     already mapped in: a fresh 1 MiB buffer costs 256 page faults, a
//     quarter of a millisecond on a virtual machine, which the collection
//     that gives taken frames back came too seldom to spare.
//   - A class holds at most stockHigh buffers; what is given back beyond
//     that is left to the collector. Without that bound every frame the
//     pool missed joined the buffers circulating for good, and a typed
//     1 MiB round trip's heap grew by 100 MB per thousand messages,
//     without end. With it, the memory of a stream of taken 1 MiB frames
//     stays within about twice the bound. (A lower bound makes the
//     collector run more often, and each run slows the messages it
//     overlaps.)
//   - After each collection a class lets go of the buffers it held unused
//     since the one before the last (as a sync.Pool does), so that memory
//     an idle socket no longer needs goes back to the collector.
const (
	bigClassMin    = takeRecycleMin
	stockLowBytes  = 8 << 20
	stockHighBytes = 128 << 20
	refillMax      = 8 << 20 // larger classes are not refilled ahead
)

// stockLow and stockHigh are a class's refill mark and bound, in buffers.
func stockLow(size int) int  { return max(2, stockLowBytes/size) }
func stockHigh(size int) int { return max(4, stockHighBytes/size) }

// bigPool holds the buffers of one class from bigClassMin up, last in
// first out.
type bigPool struct {
	mu        sync.Mutex
	bufs      [][]byte
	low       int  // the fewest held since the last collection: bufs[:low] went unused
	prevLow   int  // bufs[:prevLow] went unused between the two collections before
	taken     bool // a buffer was taken since the last collection
	refilling bool // a refill goroutine is at work
}

var bigPools [numClasses]bigPool

func (p *bigPool) get() []byte {
	p.mu.Lock()
	n := len(p.bufs) - 1
	if n < 0 {
		p.mu.Unlock()
		return nil
	}
	b := p.bufs[n]
	p.bufs[n] = nil
	p.bufs = p.bufs[:n]
	p.low, p.taken = min(p.low, n), true
	p.mu.Unlock()
	return b
}

// put keeps b unless the pool holds limit buffers already.
func (p *bigPool) put(b []byte, limit int) {
	p.mu.Lock()
	if len(p.bufs) < limit {
		p.bufs = append(p.bufs, b)
	}
	p.mu.Unlock()
}

// held returns the number of buffers the pool holds.
func (p *bigPool) held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.bufs)
}

// trim lets go of the buffers that went unused since the trim before the
// last (two collections: as a sync.Pool's victims), except keep of them if
// any buffer was taken since the last (the reserve a refill keeps, which
// is never reached while it is kept).
func (p *bigPool) trim(keep int) {
	p.mu.Lock()
	k := min(p.low, p.prevLow) // bufs[:k] went unused since the trim before the last
	if p.taken {
		k -= keep
	}
	k = max(k, 0)
	if k > 0 {
		n := copy(p.bufs, p.bufs[k:])
		clear(p.bufs[n:])
		p.bufs = p.bufs[:n]
	}
	p.prevLow, p.low, p.taken = max(p.low-k, 0), len(p.bufs), false
	p.mu.Unlock()
}

// trimAfterGC trims every big pool after each collection, from a
// finalizer that sets itself again.
type gcTick struct{ _ [16]byte } // not from the tiny allocator, whose finalizers may never run

func armTrim() {
	runtime.SetFinalizer(new(gcTick), func(*gcTick) {
		for c := range bigPools {
			bigPools[c].trim(stockLow(classSize(c)))
		}
		armTrim()
	})
}

func init() { armTrim() }

// refill tops the pool of class c (buffers of size bytes) up to its low
// mark from a goroutine of its own, unless one is at it already.
func refill(c, size int) {
	if size > refillMax {
		return
	}
	p := &bigPools[c]
	low := stockLow(size)
	p.mu.Lock()
	if p.refilling || len(p.bufs) >= low {
		p.mu.Unlock()
		return
	}
	p.refilling = true
	p.mu.Unlock()
	go func() {
		page := os.Getpagesize()
		for {
			p.mu.Lock()
			if len(p.bufs) >= low {
				p.refilling = false
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			b := make([]byte, 0, size)
			for i := 0; i < size; i += page {
				b[:size][i] = 0 // mapped in here, not where a frame is read into it
			}
			p.put(b, stockHigh(size))
		}
	}()
}

const (
	slabSize     = 32 << 10 // received small frames are carved from slabs this size
	slabFrameMax = 1 << 10  // ... when they are at most this large
	slabMsgs     = 512      // received messages whose owner one slab holds
)

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
// slabMsgs messages, far fewer than that.
//
// Every received message, small frames or not, has its owner (msgMem) in
// a slab, and holds a reference to that slab: owners come with the slab at
// no allocation, and the 64-byte path stays allocation-free. An owner is 8
// bytes, so that a slab of messages nobody frees is little more garbage
// than its frames.
type slab struct {
	buf  [slabSize]byte
	refs atomic.Int32
	msgs [slabMsgs]msgMem
	dbg  slabDebug // zpeerdebug builds: where each message's small frames are
	// one holds the frame slice of each single-frame message owned here
	// (one[i] for msgs[i]): the common message then costs no frame-slice
	// allocation either, and no garbage for the collector to chase.
	one [slabMsgs][]byte
}

const slabReserve = 1 << 30

var slabPool = sync.Pool{New: func() any {
	s := new(slab)
	for i := range s.msgs {
		s.msgs[i].idx = uint16(i)
	}
	return s
}}

// newSlab returns a slab holding slabReserve references for the reader.
func newSlab() *slab {
	s := slabPool.Get().(*slab)
	s.refs.Store(slabReserve)
	return s
}

// holds reports whether f was carved from s.
func (s *slab) holds(f []byte) bool {
	if len(f) == 0 {
		return false
	}
	base := uintptr(unsafe.Pointer(&s.buf[0]))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(f)))
	return at >= base && at < base+slabSize
}

// release drops n references.
func (s *slab) release(n int32) {
	if s.refs.Add(-n) == 0 && !debugMsgs {
		slabPool.Put(s)
	}
}

// msgMem owns one received message's memory: Msg.Free releases it
// through here, once. It lives in a slab, reused with it; gen counts the
// messages it has owned, so that a Msg (which records gen when made) knows
// whether it is still the live message: Free moves gen on with a
// compare-and-swap, and a copy freed earlier, or a stale copy of a message
// this owner had before, no longer matches.
type msgMem struct {
	gen    atomic.Uint32
	idx    uint16 // o is &o.slab().msgs[idx]
	pooled bool   // some frames over slabFrameMax came from the buffer pool
	secret bool   // the frames were decrypted (CURVE): cleared when released
}

// slab returns the slab o lives in, found from o's address: a pointer in
// every owner would make slabs a third larger.
func (o *msgMem) slab() *slab {
	off := unsafe.Offsetof(slab{}.msgs) + uintptr(o.idx)*unsafe.Sizeof(msgMem{})
	return (*slab)(unsafe.Add(unsafe.Pointer(o), -int(off)))
}

// release gives the memory of a message with frames back; the caller won
// the compare-and-swap on gen.
func (o *msgMem) release(frames [][]byte) {
	s := o.slab()
	if debugMsgs {
		off, end := s.dbg.region(int(o.idx))
		poison(s.buf[off:end])
	}
	if o.secret {
		// Decrypted plaintext never goes back to a pool (nor stays in a
		// reused slab) uncleared: a pooled buffer may next be a
		// NewBuffer's, handed to the application. Only the memory the
		// message owns: frames a socket type added (a ROUTER's routing
		// id, shared by the pipe's messages) are left alone. What the
		// reader wrote is each frame's length: clearing that on every
		// Free keeps every pooled buffer's tail clear of it too.
		for _, f := range frames {
			if (o.pooled && len(f) > slabFrameMax) || s.holds(f) {
				clear(f)
			}
		}
	}
	if o.pooled {
		for _, f := range frames {
			if len(f) > slabFrameMax {
				if debugMsgs {
					poison(f)
				}
				putBuffer(f)
			}
		}
	}
	// every copy of the Msg shares this array: none sees freed memory
	if len(frames) == 1 {
		frames[0] = nil // (clear calls the runtime, which costs more per message)
	} else {
		clear(frames)
	}
	s.release(1)
}

// takeRecycleMin is the frame size from which Msg.TakeFrame puts a
// finalizer on a pooled frame to give it back to the pool.
const takeRecycleMin = 32 << 10

// take releases the memory of a message with frames except frames[i],
// which it returns (Msg.TakeFrame); the caller won the compare-and-swap on
// gen.
func (o *msgMem) take(frames [][]byte, i int) []byte {
	f := frames[i]
	if len(f) <= slabFrameMax {
		f = append([]byte{}, f...) // it lives in the slab: a copy
	} else if o.pooled && !debugMsgs && len(f) >= takeRecycleMin {
		if class, size, ok := sizeClass(cap(f)); ok && size == cap(f) {
			// f starts its allocation (getBuffer). (Were it sliced from
			// there, the runtime would put the finalizer on that inner
			// byte: the rest of the allocation would go back to the pool,
			// and stay alive until reused.)
			runtime.SetFinalizer(&f[0], giveBack[class])
			refill(class, size)
		}
	}
	frames[i] = nil // not given back by release
	o.release(frames)
	return f
}

// giveBack holds each class's finalizer for taken frames, which gives a
// frame's buffer (of the class's size, from p on) back to the pool: made
// once, so that a take allocates no closure.
var giveBack = func() (fs [numClasses]func(*byte)) {
	for c := range fs {
		size := classSize(c)
		fs[c] = func(p *byte) { putBuffer(unsafe.Slice(p, size)) }
	}
	return fs
}()

// poisonByte fills freed memory in zpeerdebug builds.
const poisonByte = 0xDF

func poison(b []byte) {
	for i := range b {
		b[i] = poisonByte
	}
}

// noBytes backs received empty frames: not nil, like every received frame,
// and with no capacity, so appending to one copies it.
var noBytes = []byte{}

// carver is a pipe reader's allocator: it hands out the memory of the
// frames of the message being received (carved from the reader's slab,
// taken from the buffer pool, or allocated) and, once the message is
// complete, its frame slice (carved from a bigger array) and its memory
// fields. Only the reader goroutine uses it.
type carver struct {
	cur    *slab // the slab small frames are carved from, from cur.buf[off:]
	off    int
	nmsgs  int      // owners of cur handed out (cur.msgs[:nmsgs])
	given  int32    // messages holding a reference to cur
	msg    *slab    // the slab holding the current message's small frames, if any
	start  int      // where the current message's small frames start in msg
	pooled bool     // some frame of the current message came from the buffer pool
	secret bool     // the reader decrypts: its messages are cleared when freed
	fslab  [][]byte // frame slices are carved from here
}

// frame returns memory for a received frame body of n bytes: nil-free and
// capacity-clipped, so that appending to a frame copies it. cipher says
// whether the frame is to be decrypted (its memory is then read and
// dropped, and never pooled).
func (c *carver) frame(n int, cipher bool) []byte {
	switch {
	case n == 0:
		return noBytes[:0:0]
	case n <= slabFrameMax:
		return c.small(n)
	case cipher:
		return make([]byte, n)
	default:
		c.pooled = true
		return getBuffer(n)
	}
}

// small carves n bytes from the reader's slab. A message's small frames
// all come from one slab, which also holds its owner and which it holds by
// one reference: when the slab runs out in the middle of a message, the
// rest of its small frames are allocated.
func (c *carver) small(n int) []byte {
	switch {
	case c.msg == nil:
		c.begin(n)
	case slabSize-c.off < n:
		return make([]byte, n)
	}
	b := c.cur.buf[c.off : c.off+n : c.off+n]
	c.off += n
	return b
}

// begin places the current message in the reader's slab, which must have
// n free bytes and an owner left, or is replaced by a fresh one.
func (c *carver) begin(n int) {
	if c.cur == nil || slabSize-c.off < n || c.nmsgs == slabMsgs {
		c.leave()
		c.cur, c.off, c.nmsgs, c.given = newSlab(), 0, 0, 0
	}
	c.msg, c.start = c.cur, c.off
}

// finish makes the message of frames (total body bytes size) and starts
// the next. frames is copied: the caller reuses it.
func (c *carver) finish(frames [][]byte, size int) Msg {
	var m Msg
	c.finishInto(&m, frames, size)
	return m
}

// finishInto is finish into *dst, which it sets field by field.
func (c *carver) finishInto(dst *Msg, frames [][]byte, size int) {
	if len(frames) == 1 {
		c.finishOne(dst, frames[0], size)
		return
	}
	if c.msg == nil { // no small frames: the owner still comes from a slab
		c.begin(0)
	}
	if len(c.fslab) < len(frames) {
		c.fslab = make([][]byte, max(256, len(frames)))
	}
	fs := c.fslab[:len(frames):len(frames)]
	c.fslab = c.fslab[len(frames):]
	copy(fs, frames)
	c.ownInto(dst, fs, size)
}

// finishOne is finishInto for a message of one frame, f.
func (c *carver) finishOne(dst *Msg, f []byte, size int) {
	if c.msg == nil {
		c.begin(0)
	}
	fs := c.cur.one[c.nmsgs : c.nmsgs+1 : c.nmsgs+1]
	fs[0] = f
	c.ownInto(dst, fs, size)
}

// copyOne makes *dst a message of one frame, a copy of b (at most
// slabFrameMax bytes): finishOne of frame(len(b)) with b copied in, in one
// step, for the inproc receiver's usual message.
func (c *carver) copyOne(dst *Msg, b []byte) {
	n := len(b)
	if c.cur == nil || slabSize-c.off < n || c.nmsgs == slabMsgs {
		c.leave()
		c.cur, c.off, c.nmsgs, c.given = newSlab(), 0, 0, 0
	}
	s := c.cur
	f := s.buf[c.off : c.off+n : c.off+n]
	copy(f, b)
	s.dbg.setRegion(c.nmsgs, c.off, c.off+n)
	c.off += n
	fs := s.one[c.nmsgs : c.nmsgs+1 : c.nmsgs+1]
	fs[0] = f
	o := &s.msgs[c.nmsgs]
	c.nmsgs++
	c.given++ // one of the reserved references
	o.pooled = false
	dst.Frames, dst.Priority, dst.Buf = fs, 0, nil
	dst.gen, dst.size, dst.mem = o.gen.Load(), n, o
}

// ownInto makes *dst the message of frames fs, owned by the next owner of
// the current slab.
func (c *carver) ownInto(dst *Msg, fs [][]byte, size int) {
	o := &c.cur.msgs[c.nmsgs]
	c.cur.dbg.setRegion(c.nmsgs, c.start, c.off)
	c.nmsgs++
	c.given++ // one of the reader's reserved references
	o.pooled, o.secret = c.pooled, c.secret
	c.msg, c.pooled = nil, false
	dst.Frames, dst.Priority, dst.Buf = fs, 0, nil
	dst.gen, dst.size, dst.mem = o.gen.Load(), size, o
}

// leave gives back the references to the current slab that the reader
// reserved and did not hand out. The reader calls it when it ends.
func (c *carver) leave() {
	if c.cur != nil {
		c.cur.release(slabReserve - c.given)
		c.cur = nil
	}
}
