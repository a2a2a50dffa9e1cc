package socket

import (
	"bytes"
	"testing"
)

// TestBufferReleasedWhenWritten: a message whose large frame lives in a
// Buffer holds a reference to it until the frame is written, on every
// socket type that sends it as it is or wraps it (PUSH, REQ, REP, ROUTER,
// PUB fan-out to two peers); the receiver gets the bytes intact although
// the sender dropped its own reference right after Send; and once written
// every reference the socket took is dropped.
func TestBufferReleasedWhenWritten(t *testing.T) {
	const n = 64 << 10
	fill := func(b *Buffer, c byte) []byte {
		p := b.Bytes()
		for i := range p {
			p[i] = c + byte(i)
		}
		return p
	}
	want := func(c byte) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = c + byte(i)
		}
		return p
	}
	// released waits until only the test's references are left.
	released := func(t *testing.T, b *Buffer, refs int32) {
		t.Helper()
		waitFor(t, "the socket to release the buffer", func() bool { return b.refs.Load() == refs })
	}

	t.Run("push", func(t *testing.T) {
		pull := newSock(t, PULL)
		push := newSock(t, PUSH)
		connect(t, push, bind(t, pull))
		waitPeers(t, push, 1)
		for i := range 20 {
			b := NewBuffer(n)
			b.Retain() // the test's look at the count
			p := fill(b, byte(i))
			sendMsg(t, push, Msg{Frames: [][]byte{[]byte("head"), p}, Buf: b})
			b.Release()
			m := recvMsg(t, pull)
			if !bytes.Equal(m.Frames[1], want(byte(i))) {
				t.Fatalf("message %d: large frame not intact", i)
			}
			m.Free()
			released(t, b, 1)
			b.Release()
		}
	})
	t.Run("reqrep", func(t *testing.T) {
		rep := newSock(t, REP)
		req := newSock(t, REQ)
		connect(t, req, bind(t, rep))
		waitPeers(t, req, 1)
		b := NewBuffer(n)
		b.Retain()
		sendMsg(t, req, Msg{Frames: [][]byte{fill(b, 1)}, Buf: b})
		m := recvMsg(t, rep)
		if !bytes.Equal(m.Body(), want(1)) {
			t.Fatal("request not intact")
		}
		released(t, b, 2)
		sendMsg(t, rep, Msg{Frames: [][]byte{m.Body()}, Buf: b})
		r := recvMsg(t, req)
		if !bytes.Equal(r.Body(), want(1)) {
			t.Fatal("reply not intact")
		}
		released(t, b, 2)
		b.Release()
		b.Release()
	})
	t.Run("pub", func(t *testing.T) {
		pub := newSock(t, PUB)
		ep := bind(t, pub)
		subs := []*Socket{newSock(t, SUB), newSock(t, SUB)}
		for _, s := range subs {
			if err := s.Subscribe(""); err != nil {
				t.Fatal(err)
			}
			connect(t, s, ep)
		}
		waitFor(t, "subscriptions", func() bool {
			send(t, pub, "warm")
			return allSubscribed(subs)
		})
		b := NewBuffer(n)
		b.Retain()
		sendMsg(t, pub, Msg{Frames: [][]byte{fill(b, 7)}, Buf: b})
		b.Release()
		for _, s := range subs {
			m := recvMsg(t, s)
			for m.Size() != n { // warm-up messages still queued
				m = recvMsg(t, s)
			}
			if !bytes.Equal(m.Body(), want(7)) {
				t.Fatal("published message not intact")
			}
		}
		released(t, b, 1)
		b.Release()
	})
}

// TestBufferSmallFramesHeldNot: a message whose frames are all copied
// (under CopyThreshold) takes no reference: the caller may reuse the
// buffer as soon as Send returns.
func TestBufferSmallFramesHeldNot(t *testing.T) {
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	b := NewBuffer(100)
	copy(b.Bytes(), "small")
	sendMsg(t, push, Msg{Frames: [][]byte{b.Bytes()[:5]}, Buf: b})
	if got := b.refs.Load(); got != 1 {
		t.Fatalf("references after Send of a small frame: %d, want 1", got)
	}
	b.Release()
	if got := recvString(t, pull); len(got) != 1 || got[0] != "small" {
		t.Fatalf("got %q", got)
	}
}

// TestBufferReleaseTooMany: a Release beyond the references panics rather
// than giving the memory back twice.
func TestBufferReleaseTooMany(t *testing.T) {
	b := NewBuffer(1 << 20)
	b.Retain()
	b.Release()
	b.Release()
	mustPanic(t, "a Release too many", b.Release)
}

// TestSizeClasses: every size gets the smallest class that holds it, at
// most 1.25× its size above 2 KiB, and a buffer is recognised as pooled
// exactly when its capacity is a class size.
func TestSizeClasses(t *testing.T) {
	prev := 0
	for _, n := range []int{1, 2048, 2049, 2560, 2561, 4096, 4097, 65536, 65536 + 60, 1 << 20, 1<<20 + 60, 5 << 20, 64 << 20} {
		c, size, ok := sizeClass(n)
		if !ok || size < n || (n > 2048 && float64(size) > 1.25*float64(n)) || c < prev || c >= numClasses {
			t.Fatalf("sizeClass(%d) = %d, %d, %v", n, c, size, ok)
		}
		prev = c
		if c2, size2, _ := sizeClass(size); c2 != c || size2 != size {
			t.Fatalf("class size %d maps to class %d size %d, want %d %d", size, c2, size2, c, size)
		}
		b := getBuffer(n)
		if len(b) != n || cap(b) != size {
			t.Fatalf("getBuffer(%d): len %d cap %d, want cap %d", n, len(b), cap(b), size)
		}
		putBuffer(b)
	}
	if _, _, ok := sizeClass(64<<20 + 1); ok {
		t.Error("a size over 64 MiB has a class")
	}
	if _, size, _ := sizeClass(1<<20 + 60); size != 1<<20+1<<18 {
		t.Errorf("1 MiB + 60 B: class size %d, want 1.25 MiB", size)
	}
}
