package socket

import (
	"context"
	"runtime"
	"testing"
)

// TestSendNoAlloc: a Send of a message built at the call, as an
// application writes it (socket.Msg{Frames: [][]byte{b}}), allocates
// nothing on the paths that call no socket type's method through an
// interface: PUSH over tcp:// and inproc://, and PUB. The frames array
// escaped to the heap while the message went through an interface method
// (the pipe's link, the socket type's send), or while the Buffer pointer
// beside it was kept: 24 bytes per message, and a collection every few
// milliseconds at millions of messages a second.
func TestSendNoAlloc(t *testing.T) {
	if raceEnabled || debugMsgs {
		t.Skip("allocation counts differ under -race and zpeerdebug")
	}
	const runs = 200 // below every send mark: Send never waits
	body := make([]byte, 64)
	ctx := context.Background()
	check := func(t *testing.T, s *Socket) {
		t.Helper()
		n := testing.AllocsPerRun(runs, func() {
			if err := s.Send(ctx, Msg{Frames: [][]byte{body}}); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("Send of a message built at the call: %v allocations, want 0", n)
		}
		n = testing.AllocsPerRun(runs, func() {
			if err := s.SendBytes(ctx, body); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("SendBytes: %v allocations, want 0", n)
		}
	}
	t.Run("push-tcp", func(t *testing.T) {
		pull := newSock(t, PULL, WithRecvHWM(10*runs))
		push := newSock(t, PUSH, WithSendHWM(10*runs))
		connect(t, push, bind(t, pull))
		waitPeers(t, push, 1)
		check(t, push)
	})
	t.Run("push-inproc", func(t *testing.T) {
		pull := newSock(t, PULL, WithRecvHWM(10*runs))
		push := newSock(t, PUSH)
		ep := bindInproc(t, pull)
		connect(t, push, ep)
		waitPeers(t, push, 1)
		check(t, push)
	})
	t.Run("pub-tcp", func(t *testing.T) {
		pub := newSock(t, PUB, WithSendHWM(10*runs))
		sub := newSock(t, SUB, WithRecvHWM(10*runs))
		if err := sub.Subscribe(""); err != nil {
			t.Fatal(err)
		}
		connect(t, sub, bind(t, pub))
		waitFor(t, "subscription", func() bool {
			st := pub.Stats()
			return len(st.PerPeer) == 1 && st.PerPeer[0].Subscriptions > 0
		})
		check(t, pub)
	})
}

// TestSpinWait: the inproc sender's watch before it blocks on a full
// peer (spinWait) reports a ready channel closed already, gives up, after
// a few microseconds, on a receiver that makes no progress (a busy
// machine, where it is not running): it does not spin for as long as the
// wait lasts; and it returns when the send is stopped.
func TestSpinWait(t *testing.T) {
	if spinProcs < 2 {
		t.Skip("one processor: spinWait never watches")
	}
	var r inprocRing
	ch := make(chan struct{})
	if spinWait(ch, &r) {
		t.Fatal("spinWait reported an open channel closed")
	}
	// stopped (the send's context ended) while the receiver makes
	// progress, it returns without reporting the channel closed
	stop := make(chan struct{})
	ret := make(chan bool)
	go func() { ret <- spinWait(ch, &r, nil, stop) }()
	for range 1000 {
		r.progress.Add(1)
		runtime.Gosched()
	}
	close(stop)
	if <-ret {
		t.Fatal("spinWait stopped reported an open channel closed")
	}
	close(ch)
	if !spinWait(ch, &r) {
		t.Fatal("spinWait did not see a closed channel")
	}
}
