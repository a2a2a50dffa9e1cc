package socket

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
)

var inprocN atomic.Uint64

// inprocName returns an inproc endpoint no other test uses.
func inprocName(t testing.TB) string {
	return fmt.Sprintf("inproc://%s-%d", t.Name(), inprocN.Add(1))
}

// TestInprocConformance: every type talks to its peer type over inproc,
// binding first and connecting first.
func TestInprocConformance(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(typ.String(), func(t *testing.T) {
			for _, first := range []string{"bind", "connect"} {
				t.Run(first+" first", func(t *testing.T) {
					ep := inprocName(t)
					s, peer := newSock(t, typ), newSock(t, peerOf[typ])
					if first == "connect" {
						connect(t, peer, ep)
					}
					if got, err := s.Bind(ep); err != nil || got != ep {
						t.Fatalf("Bind: %q, %v", got, err)
					}
					if first == "bind" {
						connect(t, peer, ep)
					}
					exchange(t, s, peer)
					if st := s.Stats(); st.PerPeer[0].Remote != "inproc" || st.PerPeer[0].PeerType != peerOf[typ].String() {
						t.Errorf("peer stats %+v", st.PerPeer[0])
					}
				})
			}
		})
	}
}

func TestInprocBindTaken(t *testing.T) {
	ep := inprocName(t)
	a, b := newSock(t, PULL), newSock(t, PULL)
	if _, err := a.Bind(ep); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Bind(ep); !errors.Is(err, ErrEndpoint) {
		t.Fatalf("second Bind of %s: %v, want ErrEndpoint", ep, err)
	}
	a.Close()
	if _, err := b.Bind(ep); err != nil {
		t.Fatalf("Bind after the first socket closed: %v", err)
	}
}

// TestInprocHWMAndClose: a PUSH to a PULL that does not read fills the
// PULL's receive mark, then blocks; what was handed over stays deliverable
// after the sender closes, and the receiver sees its peer go.
func TestInprocHWMAndClose(t *testing.T) {
	ep := inprocName(t)
	pull := newSock(t, PULL, WithRecvHWM(10))
	if _, err := pull.Bind(ep); err != nil {
		t.Fatal(err)
	}
	push, err := New(PUSH, WithNoBlock())
	if err != nil {
		t.Fatal(err)
	}
	connect(t, push, ep)
	waitPeers(t, push, 1)
	n := 0
	for ; n < 100; n++ {
		if err := push.Send(ctxT(t), NewMsgString(strconv.Itoa(n))); err != nil {
			if !errors.Is(err, ErrWouldBlock) {
				t.Fatal(err)
			}
			break
		}
	}
	if n != 10 {
		t.Fatalf("sent %d before blocking, want the receive mark, 10", n)
	}
	// Reading one makes room for one.
	if got := recvString(t, pull); got[0] != "0" {
		t.Fatalf("got %q", got)
	}
	if err := push.Send(ctxT(t), NewMsgString("10")); err != nil {
		t.Fatalf("Send after a Recv made room: %v", err)
	}
	push.Close()
	waitFor(t, "PULL sees the peer go", func() bool { return pull.Peers() == 0 })
	for i := 1; i <= 10; i++ {
		if got := recvString(t, pull); got[0] != strconv.Itoa(i) {
			t.Fatalf("after close: got %q, want %d", got, i)
		}
	}
}

// TestInprocBlockedSendWakes: a Send blocked on a full receiver returns
// once the receiver reads.
func TestInprocBlockedSendWakes(t *testing.T) {
	ep := inprocName(t)
	pull := newSock(t, PULL, WithRecvHWM(1))
	if _, err := pull.Bind(ep); err != nil {
		t.Fatal(err)
	}
	push := newSock(t, PUSH)
	connect(t, push, ep)
	send(t, push, "a")
	errc := make(chan error, 1)
	go func() { errc <- push.Send(ctxT(t), NewMsgString("b")) }()
	if got := recvString(t, pull); got[0] != "a" {
		t.Fatalf("got %q", got)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := recvString(t, pull); got[0] != "b" {
		t.Fatalf("got %q", got)
	}
}

// TestInprocRebind: a connected socket follows the name to a new binder.
func TestInprocRebind(t *testing.T) {
	ep := inprocName(t)
	push := newSock(t, PUSH)
	connect(t, push, ep)
	for i := range 2 {
		pull := newSock(t, PULL)
		if _, err := pull.Bind(ep); err != nil {
			t.Fatal(err)
		}
		send(t, push, strconv.Itoa(i))
		if got := recvString(t, pull); got[0] != strconv.Itoa(i) {
			t.Fatalf("binder %d got %q", i, got)
		}
		pull.Close()
		waitFor(t, "push sees the binder go", func() bool { return push.Peers() == 0 })
	}
}

// TestInprocPubSubProxy: a whole forwarder in one process.
func TestInprocPubSubProxy(t *testing.T) {
	front, back := inprocName(t), inprocName(t)
	xsub, xpub := newSock(t, XSUB), newSock(t, XPUB)
	if _, err := xsub.Bind(front); err != nil {
		t.Fatal(err)
	}
	if _, err := xpub.Bind(back); err != nil {
		t.Fatal(err)
	}
	runProxy(t, xsub, xpub)
	pub, sub := newSock(t, PUB), newSock(t, SUB)
	connect(t, pub, front)
	sub.Subscribe("t")
	connect(t, sub, back)
	syncPub(t, pub, sub, "t")
	send(t, pub, "t", "through")
	if got := recvString(t, sub); got[1] != "through" {
		t.Fatalf("got %q", got)
	}
}
