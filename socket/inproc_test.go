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

// bindInproc binds s to an inproc name no other test uses and returns the
// endpoint (bind's inproc twin).
func bindInproc(t testing.TB, s *Socket) string {
	t.Helper()
	ep := inprocName(t)
	if _, err := s.Bind(ep); err != nil {
		t.Fatalf("Bind(%s): %v", ep, err)
	}
	return ep
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
	pull := newSock(t, PULL, WithRecvHWM(10))
	ep := bindInproc(t, pull)
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
	pull := newSock(t, PULL, WithRecvHWM(1))
	ep := bindInproc(t, pull)
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

// TestInprocManySenders: three inproc PUSH sockets and a tcp one feed one
// PULL whose receive mark is small, so every sender blocks on it over and
// over and is woken by the receiver's reads (a lost wake-up hangs the
// test). Each sender's messages arrive complete and in order, and while
// all of them have a backlog the fair queue serves each in turn.
func TestInprocManySenders(t *testing.T) {
	const senders, per, hwm = 4, 2000, 8
	pull := newSock(t, PULL, WithRecvHWM(hwm))
	ep := bindInproc(t, pull)
	tcp := bind(t, pull)
	pushes := make([]*Socket, senders)
	for i := range pushes {
		pushes[i] = newSock(t, PUSH)
		if i == senders-1 {
			connect(t, pushes[i], tcp)
		} else {
			connect(t, pushes[i], ep)
		}
		waitPeers(t, pushes[i], 1)
	}
	// Fill every sender's share of the queue before reading, so that the
	// first messages read show the turn order.
	errc := make(chan error, senders)
	for i, push := range pushes {
		go func() {
			for j := range per {
				if err := push.Send(ctxT(t), NewMsgString(strconv.Itoa(i), strconv.Itoa(j))); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	// An inproc sender has handed its messages over once they are counted;
	// the TCP pipe's reader counts a message when it parses it, before it
	// queues it, so its mark is reached when the reader waits for room.
	waitFor(t, "every sender at the mark", func() bool {
		pull.mu.Lock()
		defer pull.mu.Unlock()
		if len(pull.pipes) != senders {
			return false
		}
		for p := range pull.pipes {
			if p.link != nil && p.counters().MsgsIn < hwm || p.link == nil && !p.paused.Load() {
				return false
			}
		}
		return true
	})
	next := make([]int, senders)
	seen := map[int]bool{}
	for n := range senders * per {
		got := recvString(t, pull)
		i, _ := strconv.Atoi(got[0])
		j, _ := strconv.Atoi(got[1])
		if j != next[i] {
			t.Fatalf("sender %d: got message %d, want %d", i, j, next[i])
		}
		next[i]++
		if n < senders {
			seen[i] = true
		}
	}
	if len(seen) != senders {
		t.Errorf("the first %d messages came from senders %v, want one from each", senders, seen)
	}
	for range senders {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestInprocByteMark: the receiver's byte mark bounds what an inproc
// sender hands over, and one message always fits in an empty queue.
func TestInprocByteMark(t *testing.T) {
	pull := newSock(t, PULL, WithHWMBytes(1<<20, 4096))
	ep := bindInproc(t, pull)
	push := newSock(t, PUSH, WithNoBlock())
	connect(t, push, ep)
	waitPeers(t, push, 1)
	body := make([]byte, 1024)
	n := 0
	for ; n < 100; n++ {
		if err := push.Send(ctxT(t), NewMsg(body)); err != nil {
			if !errors.Is(err, ErrWouldBlock) {
				t.Fatal(err)
			}
			break
		}
	}
	if n != 4 {
		t.Fatalf("sent %d KiB messages before blocking, want 4 (4096 bytes)", n)
	}
	for range n {
		m, err := pull.Recv(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		m.Free()
	}
	big := make([]byte, 10000)
	if err := push.Send(ctxT(t), NewMsg(big)); err != nil {
		t.Fatalf("a message over the byte mark into an empty queue: %v", err)
	}
	if err := push.Send(ctxT(t), NewMsg(body)); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("a message behind it: %v, want ErrWouldBlock", err)
	}
}

// TestInprocStatsExact: each end counts what it handed over and was handed,
// message for message and byte for byte, before the receiver reads, after,
// and in the socket totals once the peer is gone.
func TestInprocStatsExact(t *testing.T) {
	pull := newSock(t, PULL)
	ep := bindInproc(t, pull)
	push, err := New(PUSH)
	if err != nil {
		t.Fatal(err)
	}
	connect(t, push, ep)
	waitPeers(t, push, 1)
	const n = 37
	var bytes uint64
	for i := range n {
		body := make([]byte, i*3)
		bytes += uint64(len(body))
		if err := push.Send(ctxT(t), NewMsg([]byte("x"), body)); err != nil {
			t.Fatal(err)
		}
		bytes++
	}
	check := func(when string, want uint64) {
		t.Helper()
		out, in := push.Stats(), pull.Stats()
		if out.MsgsOut != n || out.BytesOut != bytes || out.MsgsIn != 0 {
			t.Errorf("%s: push stats %+v, want %d messages, %d bytes out", when, out.Counters, n, bytes)
		}
		if in.MsgsIn != want || (want == n && in.BytesIn != bytes) || in.MsgsOut != 0 {
			t.Errorf("%s: pull stats %+v, want %d messages, %d bytes in", when, in.Counters, want, bytes)
		}
		if len(in.PerPeer) == 1 && (in.PerPeer[0].MsgsIn != n || in.PerPeer[0].BytesIn != bytes) {
			t.Errorf("%s: pull's peer stats %+v", when, in.PerPeer[0].Counters)
		}
	}
	check("before any Recv", n)
	for range n {
		m, err := pull.Recv(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		m.Free()
	}
	check("after the Recvs", n)
	push.Close()
	waitFor(t, "PULL sees the peer go", func() bool { return pull.Peers() == 0 })
	if st := pull.Stats(); st.MsgsIn != n || st.BytesIn != bytes {
		t.Errorf("after the peer went: pull stats %+v, want %d messages, %d bytes in", st.Counters, n, bytes)
	}
}

// TestInprocRoomAfterReads: what the receiver read while no sender waited
// is room the sender finds at once: with a mark of 10, 10 sent and 3 read,
// exactly 3 more go without blocking; and a sender blocked then is woken
// once the receiver is down to half the mark.
func TestInprocRoomAfterReads(t *testing.T) {
	pull := newSock(t, PULL, WithRecvHWM(10))
	ep := bindInproc(t, pull)
	push := newSock(t, PUSH, WithNoBlock())
	connect(t, push, ep)
	waitPeers(t, push, 1)
	sendN := func(max int) int {
		n := 0
		for ; n < max; n++ {
			if err := push.Send(ctxT(t), NewMsgString("m")); err != nil {
				if !errors.Is(err, ErrWouldBlock) {
					t.Fatal(err)
				}
				break
			}
		}
		return n
	}
	if n := sendN(100); n != 10 {
		t.Fatalf("sent %d, want the mark, 10", n)
	}
	for range 3 {
		recvString(t, pull)
	}
	if n := sendN(100); n != 3 {
		t.Fatalf("after 3 reads, sent %d more, want 3", n)
	}
	// The sender waits now (it found the peer full): reading down to
	// half the mark signals it, not before.
	wait := push.readyWait()
	for range 4 {
		recvString(t, pull)
	}
	select {
	case <-wait:
		t.Fatal("signalled with 6 held, above half the mark")
	default:
	}
	recvString(t, pull)
	select {
	case <-wait:
	default:
		t.Fatal("not signalled with 5 held, half the mark")
	}
	if n := sendN(100); n != 5 {
		t.Fatalf("after the signal, sent %d, want 5", n)
	}
}

// TestInprocLBOneThenMore: a PUSH with one peer sends to it without taking
// a turn (lb.one); once a second peer joins the turns go round both, and
// once one leaves everything goes to the other again.
func TestInprocLBOneThenMore(t *testing.T) {
	push := newSock(t, PUSH)
	a, b := newSock(t, PULL), newSock(t, PULL)
	epA, epB := inprocName(t), inprocName(t)
	for _, x := range []struct {
		s  *Socket
		ep string
	}{{a, epA}, {b, epB}} {
		if _, err := x.s.Bind(x.ep); err != nil {
			t.Fatal(err)
		}
	}
	recvN := func(s *Socket, n int) {
		t.Helper()
		for range n {
			recvString(t, s)
		}
	}
	connect(t, push, epA)
	waitPeers(t, push, 1)
	for i := range 3 {
		send(t, push, strconv.Itoa(i))
	}
	recvN(a, 3)
	connect(t, push, epB)
	waitPeers(t, push, 2)
	for i := range 10 {
		send(t, push, strconv.Itoa(i))
	}
	waitFor(t, "five each", func() bool {
		return a.Stats().MsgsIn == 8 && b.Stats().MsgsIn == 5
	})
	recvN(a, 5)
	recvN(b, 5)
	if err := push.Disconnect(epA); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, push, 1)
	for i := range 4 {
		send(t, push, strconv.Itoa(i))
	}
	recvN(b, 4)
	if st := push.Stats(); st.Reconnects != 0 {
		t.Errorf("the disconnected endpoint was dialled again (%d reconnects)", st.Reconnects)
	}
	if st := b.Stats(); st.MsgsIn != 9 {
		t.Fatalf("b got %d in all, want 9", st.MsgsIn)
	}
}

// TestInprocChunkReuse streams many times a ring's spare chunks' worth of
// slot-stored messages while the receiver reads, so that the sender takes
// back chunks the receiver has just finished (and writes over their lines
// before use: ringChunk.own): every message arrives whole and in order,
// with sizes filling one and both cache lines of a slot.
func TestInprocChunkReuse(t *testing.T) {
	const n = ringSlots * ringSpares * 8
	pull := newSock(t, PULL, WithRecvHWM(ringSlots/2))
	ep := bindInproc(t, pull)
	push := newSock(t, PUSH)
	connect(t, push, ep)
	waitPeers(t, push, 1)
	fill := func(b []byte, i int) []byte {
		b = b[:1+i%slotBytes]
		for k := range b {
			b[k] = byte(i + k*7)
		}
		return b
	}
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, slotBytes)
		for i := range n {
			if err := push.Send(ctxT(t), Msg{Frames: [][]byte{fill(buf, i)}}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	want := make([]byte, slotBytes)
	for i := range n {
		m, err := pull.Recv(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if w := fill(want, i); string(m.Body()) != string(w) {
			t.Fatalf("message %d: got %d bytes %x..., want %d bytes %x...", i, len(m.Body()), m.Body()[:min(8, len(m.Body()))], len(w), w[:min(8, len(w))])
		}
		m.Free()
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
