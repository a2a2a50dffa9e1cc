package socket

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPushPull(t *testing.T) {
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	for i := range 100 {
		send(t, push, fmt.Sprint(i))
	}
	for i := range 100 {
		if got := recvString(t, pull); got[0] != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
}

// Recv with a cancelled context polls: it returns a waiting message, and
// the context's error when none is waiting.
func TestRecvPolls(t *testing.T) {
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pull.Recv(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv with nothing waiting: %v, want context.Canceled", err)
	}
	send(t, push, "a")
	send(t, push, "b")
	for _, want := range []string{"a", "b"} {
		var m Msg
		waitFor(t, "a message", func() bool {
			var err error
			m, err = pull.Recv(done)
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("Recv(cancelled): %v", err)
			}
			return err == nil
		})
		if string(m.Frames[0]) != want {
			t.Fatalf("Recv(cancelled) = %q, want %q", m.Frames, want)
		}
	}
	if _, err := pull.Recv(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after draining: %v, want context.Canceled", err)
	}
}

func TestPushRoundRobin(t *testing.T) {
	push := newSock(t, PUSH)
	ep := bind(t, push)
	pulls := []*Socket{newSock(t, PULL), newSock(t, PULL), newSock(t, PULL)}
	for _, p := range pulls {
		connect(t, p, ep)
	}
	waitPeers(t, push, 3)
	for i := range 300 {
		send(t, push, fmt.Sprint(i))
	}
	for i, p := range pulls {
		for range 100 {
			recvString(t, p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := p.Recv(ctx)
		cancel()
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("puller %d got more than its share (err=%v)", i, err)
		}
	}
}

func TestReqRep(t *testing.T) {
	rep := newSock(t, REP)
	req := newSock(t, REQ)
	connect(t, req, bind(t, rep))
	for i := range 50 {
		send(t, req, "ping", fmt.Sprint(i))
		got := recvString(t, rep)
		if !slices.Equal(got, []string{"ping", fmt.Sprint(i)}) {
			t.Fatalf("rep got %q", got)
		}
		send(t, rep, "pong", fmt.Sprint(i))
		if got := recvString(t, req); !slices.Equal(got, []string{"pong", fmt.Sprint(i)}) {
			t.Fatalf("req got %q", got)
		}
	}
	// strict alternation
	send(t, req, "x")
	if err := req.Send(ctxT(t), NewMsgString("y")); !errors.Is(err, ErrState) {
		t.Fatalf("second Send: %v, want ErrState", err)
	}
	if err := rep.Send(ctxT(t), NewMsgString("y")); !errors.Is(err, ErrState) {
		t.Fatalf("REP Send before Recv: %v, want ErrState", err)
	}
}

func TestPubSub(t *testing.T) {
	pub := newSock(t, PUB)
	ep := bind(t, pub)
	subA := newSock(t, SUB)
	subB := newSock(t, SUB)
	subA.Subscribe("a.")
	subB.Subscribe("")
	connect(t, subA, ep)
	connect(t, subB, ep)
	waitFor(t, "both subscriptions at the publisher", func() bool {
		st := pub.Stats()
		return len(st.PerPeer) == 2 && st.PerPeer[0].Subscriptions == 1 && st.PerPeer[1].Subscriptions == 1
	})
	// subscriptions travel after the handshake: publish until both see one
	waitFor(t, "subscriptions", func() bool {
		pub.Send(ctxT(t), NewMsgString("a.sync", "x"))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, errA := subA.Recv(ctx)
		_, errB := subB.Recv(ctx)
		return errA == nil && errB == nil
	})
	// drain
	drain := func(s *Socket) {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			_, err := s.Recv(ctx)
			cancel()
			if err != nil {
				return
			}
		}
	}
	drain(subA)
	drain(subB)
	send(t, pub, "b.1", "body")
	send(t, pub, "a.1", "body")
	if got := recvString(t, subA); got[0] != "a.1" {
		t.Fatalf("subA got %q, want a.1 only", got)
	}
	if got := recvString(t, subB); got[0] != "b.1" {
		t.Fatalf("subB got %q first", got)
	}
	if got := recvString(t, subB); got[0] != "a.1" {
		t.Fatalf("subB got %q second", got)
	}
}

func TestDealerRouter(t *testing.T) {
	router := newSock(t, ROUTER)
	ep := bind(t, router)
	d1 := newSock(t, DEALER, WithIdentity([]byte("d1")))
	d2 := newSock(t, DEALER)
	connect(t, d1, ep)
	connect(t, d2, ep)
	send(t, d1, "from1")
	send(t, d2, "from2")
	ids := map[string][]byte{}
	for range 2 {
		m, err := router.Recv(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		ids[string(m.Frames[1])] = m.Frames[0]
	}
	if string(ids["from1"]) != "d1" {
		t.Fatalf("d1 routing id = %q", ids["from1"])
	}
	if len(ids["from2"]) != 5 || ids["from2"][0] != 0 {
		t.Fatalf("generated routing id = %x", ids["from2"])
	}
	if err := router.Send(ctxT(t), NewMsg(ids["from2"], []byte("to2"))); err != nil {
		t.Fatal(err)
	}
	if got := recvString(t, d2); got[0] != "to2" {
		t.Fatalf("d2 got %q", got)
	}
	if err := router.Send(ctxT(t), NewMsg([]byte("nobody"), []byte("x"))); !errors.Is(err, ErrNoSuchPeer) {
		t.Fatalf("send to unknown id: %v", err)
	}
}

// TestRelaxedREQ: after a Recv timeout a relaxed REQ may send again, and the
// late reply to the abandoned request is dropped, not returned for the new
// one.
func TestRelaxedREQ(t *testing.T) {
	rep := newSock(t, REP)
	req := newSock(t, REQ, WithRelaxedREQ())
	connect(t, req, bind(t, rep))

	send(t, req, "first")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := req.Recv(ctx)
	cancel()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Recv before any reply: %v, want ErrTimeout", err)
	}
	send(t, req, "second") // strict REQ would refuse this

	// REP answers both, the abandoned one first
	for _, want := range []string{"first", "second"} {
		if got := recvString(t, rep); got[0] != want {
			t.Fatalf("REP got %q, want %q", got, want)
		}
		send(t, rep, "reply to "+want)
	}
	if got := recvString(t, req); got[0] != "reply to second" {
		t.Fatalf("REQ got %q, want the reply to its current request", got)
	}
	waitFor(t, "stale reply counted as dropped", func() bool { return req.Stats().Discarded == 1 })
}

// TestSendCopiesSmallFrames: the documented ownership contract. A frame
// under CopyThreshold may be overwritten as soon as Send returns; the peer
// still receives what was sent.
func TestSendCopiesSmallFrames(t *testing.T) {
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	waitPeers(t, push, 1)
	buf := make([]byte, CopyThreshold-1)
	for i := range 3 {
		for j := range buf {
			buf[j] = byte(i)
		}
		if err := push.Send(ctxT(t), NewMsg(buf)); err != nil {
			t.Fatal(err)
		}
	}
	clear(buf)
	for i := range 3 {
		m, err := pull.Recv(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if f := m.Frames[0]; len(f) != CopyThreshold-1 || f[0] != byte(i) || f[len(f)-1] != byte(i) {
			t.Fatalf("message %d: frame of %d bytes starting %d, want %d bytes of %d", i, len(f), f[0], CopyThreshold-1, i)
		}
	}
}

// TestCloseKeepsFreshlyAcceptedPeer: a ROUTER that replies and closes at
// once must still deliver the reply. The accept path used to check, after
// the handshake and on its own schedule, whether the listener still
// existed; Close empties the listener set first, so a late check killed a
// pipe that was already carrying the reply (about 1 run in 100 under
// -race).
func TestCloseKeepsFreshlyAcceptedPeer(t *testing.T) {
	for i := range 100 {
		router := newSock(t, ROUTER)
		req := newSock(t, REQ)
		connect(t, req, bind(t, router))
		send(t, req, "via router")
		m, err := router.Recv(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := router.Send(ctxT(t), m); err != nil {
			t.Fatal(err)
		}
		router.Close()
		if _, err := req.Recv(ctxT(t)); err != nil {
			t.Fatalf("round %d: reply lost when the ROUTER closed: %v", i, err)
		}
		req.Close()
	}
}

// Freed messages give their slab memory back for reuse; messages that are
// not freed keep theirs, however much is received after them. Half of
// 20,000 small messages (about 20 slabs' worth) are kept, the other half
// freed; then every kept one is checked.
func TestFreeKeepsUnfreedMessagesIntact(t *testing.T) {
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	ctx := ctxT(t)
	const n = 20000
	body := func(i int) string { return fmt.Sprintf("message %06d %s", i, strings.Repeat("x", i%40)) }
	go func() {
		for i := range n {
			if push.Send(ctx, Msg{Frames: [][]byte{[]byte(body(i)), []byte("second frame")}}) != nil {
				return
			}
		}
	}()
	kept := make(map[int]Msg)
	for i := range n {
		m, err := pull.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if got := string(m.Frames[0]); got != body(i) {
			t.Fatalf("message %d: %q", i, got)
		}
		if i%2 == 0 {
			kept[i] = m
		} else {
			m.Free()
			m.Free() // a second Free of the same variable is a no-op
		}
	}
	for i, m := range kept {
		if got := string(m.Frames[0]); got != body(i) || string(m.Frames[1]) != "second frame" {
			t.Fatalf("kept message %d overwritten: %q %q", i, got, m.Frames[1])
		}
	}
}

// Multi-part messages of every small size, empty frames included, cross
// slab boundaries (where a message's later frames are carved elsewhere);
// receivers keep some messages and free the rest at random, and every kept
// frame is checked at the end.
func TestFreeMultipartAcrossSlabs(t *testing.T) {
	pull := newSock(t, PULL)
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	ctx := ctxT(t)
	const n = 4000
	frames := func(i int) [][]byte {
		var fs [][]byte
		for j := range 1 + i%5 {
			size := (i*131 + j*977) % 1100 // 0 to 1099: around slabFrameMax too
			f := bytes.Repeat([]byte{byte(i + j)}, size)
			if size >= 8 {
				binary.BigEndian.PutUint32(f, uint32(i))
				binary.BigEndian.PutUint32(f[4:], uint32(j))
			}
			fs = append(fs, f)
		}
		return fs
	}
	go func() {
		for i := range n {
			if push.Send(ctx, Msg{Frames: frames(i)}) != nil {
				return
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	kept := make(map[int]Msg)
	for i := range n {
		m, err := pull.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if rng.IntN(3) == 0 {
			kept[i] = m
		} else {
			m.Free()
		}
	}
	for i, m := range kept {
		want := frames(i)
		if len(m.Frames) != len(want) {
			t.Fatalf("message %d: %d frames, want %d", i, len(m.Frames), len(want))
		}
		for j := range want {
			if !bytes.Equal(m.Frames[j], want[j]) {
				t.Fatalf("message %d frame %d (%d bytes) overwritten", i, j, len(want[j]))
			}
		}
	}
}

// A REP socket keeps the request's envelope for the reply: freeing the
// request first, and receiving others meanwhile, does not misroute it.
func TestRepReplyAfterFree(t *testing.T) {
	rep := newSock(t, REP)
	ep := bind(t, rep)
	ctx := ctxT(t)
	const clients = 4
	var reqs []*Socket
	for range clients {
		r := newSock(t, REQ)
		connect(t, r, ep)
		reqs = append(reqs, r)
	}
	for round := range 200 {
		for c, r := range reqs {
			if err := r.Send(ctx, Msg{Frames: [][]byte{[]byte(fmt.Sprintf("%d/%d", c, round))}}); err != nil {
				t.Fatal(err)
			}
		}
		for range clients {
			m, err := rep.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			body := string(m.Frames[0])
			m.Free()
			if err := rep.Send(ctx, Msg{Frames: [][]byte{[]byte("re " + body)}}); err != nil {
				t.Fatal(err)
			}
		}
		for c, r := range reqs {
			m, err := r.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(m.Frames[0]), fmt.Sprintf("re %d/%d", c, round); got != want {
				t.Fatalf("client %d got %q, want %q", c, got, want)
			}
			m.Free()
		}
	}
}
