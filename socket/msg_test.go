package socket

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unsafe"
	"weak"
)

// recvOne has push send frames and returns what pull receives.
func recvOne(t *testing.T, push, pull *Socket, frames ...[]byte) Msg {
	t.Helper()
	sendMsg(t, push, NewMsg(frames...))
	return recvMsg(t, pull)
}

// mustPanic runs f and returns what it panicked with, failing if it did not.
func mustPanic(t *testing.T, what string, f func()) (v any) {
	t.Helper()
	defer func() {
		v = recover()
		if v == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
	return nil
}

// TestFreeCopyThenOriginal: freeing a copy of a received message frees the
// message; using and freeing the original afterwards is defined: no memory
// is released twice, the original shows no frames (or, under zpeerdebug,
// panics), and Send refuses it.
func TestFreeCopyThenOriginal(t *testing.T) {
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	big := bytes.Repeat([]byte{'b'}, 64<<10) // from the buffer pool
	cases := []struct {
		name   string
		frames [][]byte
	}{
		{"small", [][]byte{[]byte("hello")}},
		{"large", [][]byte{big}},
		{"mixed", [][]byte{[]byte("head"), {}, big}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := recvOne(t, push, pull, tc.frames...)
			c, d := m, m
			sl := m.mem.slab()
			refs := sl.refs.Load()
			c.Free()
			if got := sl.refs.Load(); got != refs-1 {
				t.Fatalf("Free of a copy: slab references %d -> %d, want one fewer", refs, got)
			}
			if c.Frames != nil {
				t.Error("Free left the copy's Frames")
			}
			// The original, used: every frame is gone, not stale.
			if len(m.Frames) != len(tc.frames) {
				t.Fatalf("original has %d frames, want %d", len(m.Frames), len(tc.frames))
			}
			for i, f := range m.Frames {
				if f != nil {
					t.Errorf("original frame %d still holds %d bytes of freed memory", i, len(f))
				}
			}
			if debugMsgs {
				v := mustPanic(t, "Body after Free", func() { m.Body() })
				if !strings.Contains(fmt.Sprint(v), "used after Free") {
					t.Errorf("panic %v does not say what happened", v)
				}
				mustPanic(t, "Send after Free", func() { push.Send(ctxT(t), m) })
			} else {
				if m.Body() != nil || m.Size() != 0 {
					t.Errorf("original after Free: Body %q, Size %d", m.Body(), m.Size())
				}
				if err := push.Send(ctxT(t), m); !errors.Is(err, ErrFreed) {
					t.Errorf("Send of a freed message: %v, want ErrFreed", err)
				}
			}
			// ... and freed: a no-op, as is a third copy's Free.
			m.Free()
			d.Free()
			if got := sl.refs.Load(); got != refs-1 {
				t.Fatalf("Free of the original after its copy: slab references %d -> %d, want %d", refs, got, refs-1)
			}
			if m.Frames != nil {
				t.Error("Free left the original's Frames")
			}
			// Memory released twice would be handed to two messages at once.
			a := recvOne(t, push, pull, []byte("one"), bytes.Repeat([]byte{1}, 64<<10))
			b := recvOne(t, push, pull, []byte("two"), bytes.Repeat([]byte{2}, 64<<10))
			if string(a.Frames[0]) != "one" || a.Frames[1][0] != 1 || a.Frames[1][len(a.Frames[1])-1] != 1 || string(b.Frames[0]) != "two" {
				t.Fatal("two live messages share memory after a double Free")
			}
			a.Free()
			b.Free()
		})
	}
}

// TestFreeStaleCopies: copies of messages freed long ago, whose owners and
// slabs have been reused since, free nothing: messages alive when they are
// freed again stay intact.
func TestFreeStaleCopies(t *testing.T) {
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	ctx := ctxT(t)
	const n = 4 * slabMsgs
	body := func(i int) []byte { return []byte(fmt.Sprintf("%060d", i)) }
	go func() {
		for i := range 3 * n {
			if push.Send(ctx, NewMsg(body(i))) != nil {
				return
			}
		}
	}()
	var stale []Msg
	for range n {
		m := recvMsg(t, pull)
		stale = append(stale, m)
		m.Free()
	}
	live := make(map[int]Msg)
	for i := n; i < 2*n; i++ {
		live[i] = recvMsg(t, pull) // on slabs reused from the freed ones
	}
	for i := range stale {
		stale[i].Free()
	}
	for i := 2 * n; i < 3*n; i++ { // would reuse memory the stale Frees released
		m := recvMsg(t, pull)
		m.Free()
	}
	for i, m := range live {
		if !bytes.Equal(m.Frames[0], body(i)) {
			t.Fatalf("live message %d overwritten after stale copies were freed: %q", i, m.Frames[0])
		}
	}
}

// TestUseAfterFreeDebug: under -tags zpeerdebug, freed memory is poisoned
// and not reused, and using a freed message panics.
func TestUseAfterFreeDebug(t *testing.T) {
	if !debugMsgs {
		t.Skip("use-after-Free checks need -tags zpeerdebug")
	}
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	m := recvOne(t, push, pull, []byte("secret"), bytes.Repeat([]byte{'x'}, 4<<10))
	small, large := m.Frames[0], m.Frames[1] // taken out: not protected
	c := m
	c.Free()
	for _, f := range [][]byte{small, large} {
		if f[0] != poisonByte || f[len(f)-1] != poisonByte {
			t.Errorf("freed frame of %d bytes not poisoned: %q...", len(f), f[:min(len(f), 8)])
		}
	}
	v := mustPanic(t, "Size after Free", func() { m.Size() })
	if !strings.Contains(fmt.Sprint(v), "socket: Msg used after Free") {
		t.Errorf("panic %q", v)
	}
	mustPanic(t, "SendTo after Free", func() {
		push.SendTo(ctxT(t), push.PeerList()[0], m)
	})
	// Not reused: the next message does not land in the freed memory.
	n := recvOne(t, push, pull, []byte("secret"), bytes.Repeat([]byte{'y'}, 4<<10))
	if small[0] != poisonByte || large[0] != poisonByte {
		t.Error("freed memory reused under zpeerdebug")
	}
	n.Free()
}

// TestMsgMemSlab: an owner finds its slab from its own address, and stays
// small.
func TestMsgMemSlab(t *testing.T) {
	s := newSlab()
	defer s.release(slabReserve)
	for i := range s.msgs {
		if got := s.msgs[i].slab(); got != s {
			t.Fatalf("owner %d: slab %p, want %p", i, got, s)
		}
	}
	if n := unsafe.Sizeof(msgMem{}); n > 8 {
		t.Errorf("msgMem is %d bytes: slabs grow by %d bytes", n, slabMsgs*n)
	}
}

// TestTakeFrame: a frame taken from a received message stays intact while
// the socket reuses the rest of the message's memory, and the message is
// freed (Free and a second TakeFrame do nothing); a small frame comes back
// as a copy; a message that was not received gives its frame as it is.
func TestTakeFrame(t *testing.T) {
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	big := bytes.Repeat([]byte{'b'}, 64<<10)
	small := []byte("small frame")
	m := recvOne(t, push, pull, small, big)
	bf := m.TakeFrame(1)
	if !bytes.Equal(bf, big) {
		t.Fatalf("taken frame: %d bytes, want the %d sent", len(bf), len(big))
	}
	if m.Frames != nil {
		t.Errorf("after TakeFrame the message has frames %d", len(m.Frames))
	}
	m.Free() // no-op
	if m.TakeFrame(0) != nil {
		t.Error("a second TakeFrame returned a frame")
	}
	m = recvOne(t, push, pull, small)
	sf := m.TakeFrame(0)
	// Receive (and free) enough to reuse the slab and the pool buffers.
	for i := range 600 {
		fill := bytes.Repeat([]byte{byte(i)}, 64<<10)
		r := recvOne(t, push, pull, []byte("x"), fill)
		r.Free()
	}
	if !bytes.Equal(bf, big) || !bytes.Equal(sf, small) {
		t.Fatal("a taken frame changed while the socket reused memory")
	}
	if sent := NewMsg(small); !bytes.Equal(sent.TakeFrame(0), small) {
		t.Error("TakeFrame on a message not received did not return its frame")
	}
}

// TestTakeFrameRecycled: a large taken frame goes back to the buffer pool
// once nothing references it and the garbage collector has run. (A frame
// at a time, until one is seen back: the race detector's pool drops a
// quarter of what is put in it.)
func TestTakeFrameRecycled(t *testing.T) {
	if debugMsgs {
		t.Skip("zpeerdebug: given-back memory is never reused")
	}
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	const n = 100 << 10
	waitFor(t, "a taken frame back in the pool", func() bool {
		m := recvOne(t, push, pull, make([]byte, n))
		addr := uintptr(unsafe.Pointer(unsafe.SliceData(m.TakeFrame(0))))
		var got [][]byte
		defer func() {
			for _, b := range got {
				putBuffer(b)
			}
		}()
		for range 3 {
			runtime.GC() // finds the frame unreferenced; its finalizer gives it back
			for range 16 {
				b := getBuffer(n)
				got = append(got, b)
				if uintptr(unsafe.Pointer(unsafe.SliceData(b))) == addr {
					return true
				}
			}
		}
		return false
	})
}

// TestTakeFrameUnreferenced: once its taker drops it, a large taken frame
// is referenced by nothing of the socket's, so the garbage collector finds
// it (and its finalizer gives it back to the pool), for every socket type
// that receives large values: a ROUTER, whose messages get a new frame
// slice with the routing id in front, included. Before, the reader's
// carved frame slice kept the frames of the last hundred-odd ROUTER
// messages alive, and every one of those missed the pool.
func TestTakeFrameUnreferenced(t *testing.T) {
	for _, tc := range []struct{ send, recv Type }{{PUSH, PULL}, {DEALER, ROUTER}, {DEALER, DEALER}} {
		t.Run(tc.recv.String(), func(t *testing.T) {
			recv := newSock(t, tc.recv)
			send := newSock(t, tc.send)
			connect(t, send, bind(t, recv))
			m := recvOne(t, send, recv, []byte{}, make([]byte, 100<<10))
			f := m.TakeFrame(len(m.Frames) - 1)
			if len(f) != 100<<10 {
				t.Fatalf("taken frame of %d bytes", len(f))
			}
			wp := weak.Make(&f[0])
			f = nil
			waitFor(t, "the dropped frame collected", func() bool {
				runtime.GC()
				return wp.Value() == nil
			})
		})
	}
}

// TestBigPoolBounded: a class of large buffers holds at most its bound,
// and what is given back beyond it is left to the collector; a trim after
// a collection lets go of the buffers that went unused since the one
// before the last, and keeps those taken in between, and a reserve if any
// was.
func TestBigPoolBounded(t *testing.T) {
	var p bigPool
	const limit = 5
	for i := range limit + 3 {
		p.put(make([]byte, 1, 64<<10)[:0], limit)
		if got, want := p.held(), min(i+1, limit); got != want {
			t.Fatalf("after %d puts the pool holds %d buffers, want %d", i+1, got, want)
		}
	}
	p.trim(0) // a collection: from here on, what goes unused goes
	taken := [][]byte{p.get(), p.get()}
	p.trim(0) // the next: 3 were never taken, and are kept one more cycle
	if got := p.held(); got != 3 {
		t.Fatalf("after one trim the pool holds %d buffers, want the 3 never taken", got)
	}
	p.trim(0) // still never taken: they go
	if got := p.held(); got != 0 {
		t.Fatalf("after two trims the pool holds %d buffers never taken, want 0", got)
	}
	for _, b := range taken {
		p.put(b, limit)
	}
	p.trim(0) // the cycle they were put in (the pool ran dry in it)
	p.trim(0) // one idle cycle
	if got := p.held(); got != 2 {
		t.Fatalf("after one idle cycle the pool holds %d buffers, want 2", got)
	}
	p.trim(0) // a second: they go
	if got := p.held(); got != 0 {
		t.Fatalf("after two idle cycles the pool holds %d buffers, want 0", got)
	}
	// Taken from, a class keeps its reserve; idle, it lets that go too.
	var q bigPool
	for range 5 {
		q.put(make([]byte, 1, 64<<10)[:0], limit)
	}
	q.trim(0)
	q.trim(0) // 5 unused for a cycle
	q.get()   // 4 held, never fewer since the last trim
	q.trim(3) // 4 unused for two cycles: 1 goes, 3 stay
	if got := q.held(); got != 3 {
		t.Fatalf("a class taken from holds %d buffers after a trim keeping 3, want 3", got)
	}
	q.trim(3) // nothing taken in between: the 3 went unused for two cycles
	if got := q.held(); got != 0 {
		t.Fatalf("an idle class holds %d buffers after a trim, want 0", got)
	}
}

// TestPutBufferBounded: what gives pooled memory back (Free, Release, a
// taken frame's finalizer) keeps a large class within its bound. (Buffers
// never written: the test maps in none of their memory. A collection
// meanwhile may trim the class, never grow it.)
func TestPutBufferBounded(t *testing.T) {
	if debugMsgs {
		t.Skip("zpeerdebug: given-back memory is never reused")
	}
	c, size, _ := sizeClass(10 << 20)
	p := &bigPools[c]
	defer func() {
		for p.get() != nil {
		}
	}()
	for range stockHigh(size) + 3 {
		putBuffer(make([]byte, 0, size))
	}
	if got, limit := p.held(), stockHigh(size); got > limit {
		t.Fatalf("the %d-byte class holds %d buffers, over its bound %d", size, got, limit)
	}
}

// TestBigPoolTrimmed: large buffers that go unused from one collection to
// the next are let go, as a sync.Pool's would be.
func TestBigPoolTrimmed(t *testing.T) {
	if debugMsgs {
		t.Skip("zpeerdebug: given-back memory is never reused")
	}
	c, size, _ := sizeClass(10 << 20)
	p := &bigPools[c]
	for range 3 {
		putBuffer(make([]byte, 0, size))
	}
	waitFor(t, "unused buffers let go", func() bool {
		runtime.GC()
		return p.held() == 0
	})
}

// TestTakeFrameRefills: a large frame taken from a received message (it
// leaves the pool until a collection finds it unreferenced) has its class
// topped up to its low mark, ahead of the next frame, with buffers whose
// memory is mapped in already.
func TestTakeFrameRefills(t *testing.T) {
	if debugMsgs {
		t.Skip("zpeerdebug: given-back memory is never reused")
	}
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	const n = 300 << 10
	c, size, _ := sizeClass(n)
	m := recvOne(t, push, pull, make([]byte, n))
	f := m.TakeFrame(0)
	waitFor(t, "the class refilled", func() bool { return bigPools[c].held() >= stockLow(size) })
	runtime.KeepAlive(f)
}
