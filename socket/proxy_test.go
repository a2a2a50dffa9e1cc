package socket

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// runProxy runs a proxy until the end of the test and returns it with the
// channel Run's result arrives on.
func runProxy(t *testing.T, front, back *Socket, opts ...ProxyOption) (*Proxy, <-chan error) {
	t.Helper()
	px, err := NewProxy(front, back, opts...)
	if err != nil {
		t.Fatalf("NewProxy: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, finished := make(chan error, 1), make(chan struct{})
	go func() {
		done <- px.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return px, done
}

// pubsubProxy is a forwarder: XSUB bound for publishers, verbose XPUB bound
// for subscribers.
func pubsubProxy(t *testing.T, opts ...ProxyOption) (px *Proxy, front, back string, xsub, xpub *Socket) {
	t.Helper()
	xsub = newSock(t, XSUB)
	xpub = newSock(t, XPUB, WithXPubVerbose(false))
	front, back = bind(t, xsub), bind(t, xpub)
	px, _ = runProxy(t, xsub, xpub, opts...)
	return px, front, back, xsub, xpub
}

func TestProxyPubSub(t *testing.T) {
	px, front, back, _, _ := pubsubProxy(t)
	pub := newSock(t, PUB)
	connect(t, pub, front)
	subs := []*Socket{newSock(t, SUB), newSock(t, SUB)}
	subs[0].Subscribe("a")
	subs[1].Subscribe("b")
	for _, s := range subs {
		connect(t, s, back)
	}
	syncPub(t, pub, subs[0], "a")
	syncPub(t, pub, subs[1], "b")
	for i := range 100 {
		send(t, pub, "a", strconv.Itoa(i))
		send(t, pub, "b", strconv.Itoa(i))
		send(t, pub, "c", strconv.Itoa(i)) // nobody: filtered at the publisher
	}
	for _, s := range subs {
		for i := range 100 {
			if got := recvString(t, s); got[1] != strconv.Itoa(i) {
				t.Fatalf("got %q, want message %d", got, i)
			}
		}
	}
	st := px.Stats()
	if st.Subscriptions != 2 || st.Backend.MsgsIn != 2 {
		t.Errorf("stats %+v: want the 2 subscriptions passed up", st)
	}
	if pst := pub.Stats(); pst.PerPeer[0].Subscriptions != 2 {
		t.Errorf("publisher sees %d subscriptions, want 2", pst.PerPeer[0].Subscriptions)
	}
}

// TestProxySubscriptionsSurviveRestarts: a publisher that restarts gets the
// union of the subscriptions again; a proxy that restarts gets them back
// from its subscribers and passes them to the publisher; nobody acts.
func TestProxySubscriptionsSurviveRestarts(t *testing.T) {
	fast := WithReconnect(10*time.Millisecond, 50*time.Millisecond)
	xsub, xpub := newSock(t, XSUB, fast), newSock(t, XPUB, WithXPubVerbose(false))
	front, back := bind(t, xsub), bind(t, xpub)
	ctx, cancel := context.WithCancel(context.Background())
	px, _ := NewProxy(xsub, xpub)
	done := make(chan error, 1)
	go func() { done <- px.Run(ctx) }()

	pub := newSock(t, PUB)
	pubEP := bind(t, pub)
	if err := xsub.Connect(pubEP); err != nil {
		t.Fatal(err)
	}
	subs := make([]*Socket, 3)
	for i := range subs {
		subs[i] = newSock(t, SUB, fast)
		subs[i].Subscribe(fmt.Sprint("t", i))
		connect(t, subs[i], back)
	}
	through := func(pub *Socket) {
		t.Helper()
		for i, s := range subs {
			syncPub(t, pub, s, fmt.Sprint("t", i))
		}
	}
	through(pub)

	// The publisher restarts on the same endpoint.
	pub.Close()
	pub = newSock(t, PUB)
	if _, err := pub.Bind(pubEP); err != nil {
		t.Fatal(err)
	}
	waitSubs(t, pub, 3)
	through(pub)

	// The proxy restarts on the same endpoints.
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	xsub.Close()
	xpub.Close()
	waitFor(t, "subscribers see the proxy gone", func() bool {
		for _, s := range subs {
			if s.Peers() != 0 {
				return false
			}
		}
		return pub.Peers() == 0
	})
	xsub, xpub = newSock(t, XSUB, fast), newSock(t, XPUB, WithXPubVerbose(false))
	if _, err := xpub.Bind(back); err != nil {
		t.Fatal(err)
	}
	runProxy(t, xsub, xpub)
	if err := xsub.Connect(pubEP); err != nil {
		t.Fatal(err)
	}
	waitSubs(t, pub, 3)
	through(pub)
	_ = front
}

// TestProxyNoLeakedSubscriptions: subscribers come, subscribe, flood
// subscribe/cancel pairs and go; once they are gone the publisher holds no
// prefix but those of the subscriber still there.
func TestProxyNoLeakedSubscriptions(t *testing.T) {
	px, front, back, _, _ := pubsubProxy(t)
	pub := newSock(t, PUB)
	connect(t, pub, front)
	stay := newSock(t, SUB)
	stay.Subscribe("keep")
	connect(t, stay, back)
	waitSubs(t, pub, 1)
	for round := range 3 {
		a, b := newSock(t, SUB), newSock(t, SUB)
		a.Subscribe("x")
		b.Subscribe("x")
		b.Subscribe("keep")
		connect(t, a, back)
		connect(t, b, back)
		waitPeers(t, a, 1)
		for i := range 200 {
			a.Subscribe(fmt.Sprint("f", i))
			a.Unsubscribe(fmt.Sprint("f", i))
		}
		a.Subscribe("x") // counted twice: a cancel follows only when both are undone
		a.Unsubscribe("x")
		waitFor(t, "flood through", func() bool { return px.Stats().Unsubscriptions >= uint64(200*(round+1)) })
		a.Close()
		b.Unsubscribe("x")
		b.Close()
		waitFor(t, "only keep left", func() bool {
			st := pub.Stats()
			return len(st.PerPeer) == 1 && st.PerPeer[0].Subscriptions == 1
		})
		syncPub(t, pub, stay, "keep")
	}
}

// TestProxySlowSubscriber: a subscriber that never reads does not hold up
// the others; its drops are counted at the proxy's XPUB.
func TestProxySlowSubscriber(t *testing.T) {
	xsub := newSock(t, XSUB)
	xpub := newSock(t, XPUB, WithSendHWM(100))
	front, back := bind(t, xsub), bind(t, xpub)
	runProxy(t, xsub, xpub)
	pub := newSock(t, PUB)
	connect(t, pub, front)
	slow := newSock(t, SUB, WithRecvHWM(10))
	slow.Subscribe("")
	connect(t, slow, back)
	fast := newSock(t, SUB)
	fast.Subscribe("t")
	connect(t, fast, back)
	syncPub(t, pub, fast, "t")
	// The publisher keeps at most a window of messages ahead of the fast
	// subscriber, so that only the slow one can fall behind.
	const n, window = 3000, 50
	recvd := make(chan int, window)
	go func() {
		for i := 0; i < n; i++ {
			m, err := fast.Recv(context.Background())
			if err != nil {
				close(recvd)
				return
			}
			if string(m.Frames[1][:len(strconv.Itoa(i))]) != strconv.Itoa(i) {
				close(recvd)
				return
			}
			recvd <- i
		}
		close(recvd)
	}()
	body := make([]byte, 8<<10)
	got := 0
	timeout := time.After(60 * time.Second)
	for i := 0; got < n; {
		if i < n && i-got < window {
			copy(body, strconv.Itoa(i))
			if err := pub.Send(ctxT(t), NewMsg([]byte("t"), body)); err != nil {
				t.Fatal(err)
			}
			i++
			continue
		}
		select {
		case _, ok := <-recvd:
			if !ok {
				t.Fatalf("fast subscriber stopped after %d messages", got)
			}
			got++
		case <-timeout:
			t.Fatalf("fast subscriber got %d of %d", got, n)
		}
	}
	if d := xpub.Stats().Drops; d == 0 {
		t.Errorf("no drops counted for the slow subscriber")
	}
}

func TestProxyQueue(t *testing.T) {
	router, dealer := newSock(t, ROUTER, WithNoBlock()), newSock(t, DEALER)
	front, back := bind(t, router), bind(t, dealer)
	runProxy(t, router, dealer)
	for i := range 2 {
		rep := newSock(t, REP)
		connect(t, rep, back)
		go func() {
			for {
				m, err := rep.Recv(context.Background())
				if err != nil {
					return
				}
				m.Frames = append(m.Frames, []byte(strconv.Itoa(i)))
				if rep.Send(context.Background(), m) != nil {
					return
				}
			}
		}()
	}
	waitPeers(t, dealer, 2)
	reqs := []*Socket{newSock(t, REQ), newSock(t, REQ)}
	by := map[string]int{}
	for _, r := range reqs {
		connect(t, r, front)
	}
	for i := range 20 {
		r := reqs[i%2]
		send(t, r, strconv.Itoa(i))
		got := recvString(t, r)
		if got[0] != strconv.Itoa(i) {
			t.Fatalf("reply %q to request %d", got, i)
		}
		by[got[1]]++
	}
	if by["0"] != 10 || by["1"] != 10 {
		t.Errorf("repliers served %v, want 10 each", by)
	}
}

func TestProxyPipeline(t *testing.T) {
	pull, push := newSock(t, PULL), newSock(t, PUSH)
	front, back := bind(t, pull), bind(t, push)
	runProxy(t, pull, push)
	src, sink := newSock(t, PUSH), newSock(t, PULL)
	connect(t, src, front)
	connect(t, sink, back)
	for i := range 1000 {
		send(t, src, strconv.Itoa(i))
	}
	for i := range 1000 {
		if got := recvString(t, sink); got[0] != strconv.Itoa(i) {
			t.Fatalf("got %q, want %d", got, i)
		}
	}
	if _, err := NewProxy(push, pull); !errors.Is(err, ErrState) {
		t.Errorf("NewProxy(PUSH, PULL): %v, want ErrState", err)
	}
}

// TestProxySteering: PAUSE, RESUME, STATISTICS, TERMINATE and unknown
// commands through a control socket, from PAIR and from REP.
func TestProxySteering(t *testing.T) {
	for _, ctlType := range []Type{PAIR, REP} {
		t.Run(ctlType.String(), func(t *testing.T) {
			pull, push := newSock(t, PULL), newSock(t, PUSH)
			front, back := bind(t, pull), bind(t, push)
			ctl := newSock(t, ctlType)
			ctlEP := bind(t, ctl)
			px, done := runProxy(t, pull, push, WithControl(ctl))
			peerType := PAIR
			if ctlType == REP {
				peerType = REQ
			}
			steer := newSock(t, peerType)
			connect(t, steer, ctlEP)
			command := func(cmd string) []string {
				send(t, steer, cmd)
				if ctlType == REP || cmd == "STATISTICS" {
					return recvString(t, steer)
				}
				return nil
			}
			src, sink := newSock(t, PUSH), newSock(t, PULL)
			connect(t, src, front)
			connect(t, sink, back)
			send(t, src, "one")
			if got := recvString(t, sink); got[0] != "one" {
				t.Fatalf("got %q", got)
			}
			if r := command("PAUSE"); ctlType == REP && r[0] != "OK" {
				t.Fatalf("PAUSE answered %q", r)
			}
			waitFor(t, "paused", func() bool { return px.Stats().Paused })
			send(t, src, "two")
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			if m, err := sink.Recv(ctx); err == nil {
				t.Fatalf("paused proxy forwarded %q", m.Frames)
			}
			cancel()
			if r := command("NONSENSE"); ctlType == REP && r[0] != "ERROR" {
				t.Fatalf("unknown command answered %q", r)
			}
			command("RESUME")
			if got := recvString(t, sink); got[0] != "two" {
				t.Fatalf("got %q", got)
			}
			// The proxy counts a message out when its Send returns, which
			// can be after the sink has it.
			waitFor(t, "two counted out", func() bool { return px.Stats().Backend.MsgsOut == 2 })
			stats := command("STATISTICS")
			if len(stats) != 8 {
				t.Fatalf("STATISTICS: %d frames", len(stats))
			}
			if in := binary.LittleEndian.Uint64([]byte(stats[0])); in != 2 {
				t.Errorf("frontend messages in = %d, want 2", in)
			}
			if out := binary.LittleEndian.Uint64([]byte(stats[6])); out != 2 {
				t.Errorf("backend messages out = %d, want 2", out)
			}
			if st := px.Stats(); st.BadCommands != 1 {
				t.Errorf("bad commands %d, want 1", st.BadCommands)
			}
			command("TERMINATE")
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run after TERMINATE: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("TERMINATE did not end Run")
			}
		})
	}
}

// TestProxyCaptureStalled: a capture peer that stops reading costs copies,
// counted, and never holds the proxy up.
func TestProxyCaptureStalled(t *testing.T) {
	pull, push := newSock(t, PULL), newSock(t, PUSH)
	capture := newSock(t, PUSH, WithSendHWM(5))
	front, back, capEP := bind(t, pull), bind(t, push), bind(t, capture)
	px, _ := runProxy(t, pull, push, WithCapture(capture))
	stalled := newSock(t, PULL, WithRecvHWM(5))
	connect(t, stalled, capEP)
	waitPeers(t, capture, 1)
	src, sink := newSock(t, PUSH), newSock(t, PULL)
	connect(t, src, front)
	connect(t, sink, back)
	const n = 2000
	for i := range n {
		send(t, src, strconv.Itoa(i))
	}
	for i := range n {
		if got := recvString(t, sink); got[0] != strconv.Itoa(i) {
			t.Fatalf("got %q, want %d", got, i)
		}
	}
	if st := px.Stats(); st.CaptureDropped == 0 {
		t.Errorf("no capture drops counted: %+v", st)
	}
	// what the capture peer does read is a copy, in order
	if got := recvString(t, stalled); got[0] != "0" {
		t.Errorf("capture's first message %q", got)
	}
}
