package socket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recvUp returns the next message an XPUB hands up, as a string ("+t" for a
// subscribe to t, "-t" for a cancel, the frames joined by | otherwise).
func recvUp(t *testing.T, s *Socket) string {
	t.Helper()
	m, err := s.Recv(ctxT(t))
	if err != nil {
		t.Fatalf("XPUB Recv: %v", err)
	}
	return upString(m)
}

func upString(m Msg) string {
	if prefix, on, ok := subscription(m); ok {
		if on {
			return "+" + string(prefix)
		}
		return "-" + string(prefix)
	}
	var parts []string
	for _, f := range m.Frames {
		parts = append(parts, string(f))
	}
	return strings.Join(parts, "|")
}

// noUp checks that the XPUB hands nothing up within a short while.
func noUp(t *testing.T, s *Socket) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if m, err := s.Recv(ctx); err == nil {
		t.Fatalf("XPUB handed up %q, want nothing", upString(m))
	}
}

func waitSubs(t *testing.T, s *Socket, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d subscriptions", n), func() bool {
		total := 0
		for _, ps := range s.Stats().PerPeer {
			total += ps.Subscriptions
		}
		return total == n
	})
}

// TestXPubUniqueSubscriptions: without verbose, a prefix goes up when the
// first peer subscribes and when the last one cancels (or goes); the
// subscriptions filter what is sent, as PUB's do.
func TestXPubUniqueSubscriptions(t *testing.T) {
	x := newSock(t, XPUB)
	ep := bind(t, x)
	a, b := newSock(t, SUB), newSock(t, SUB)
	a.Subscribe("news")
	connect(t, a, ep)
	if got := recvUp(t, x); got != "+news" {
		t.Fatalf("first subscribe: %q", got)
	}
	b.Subscribe("news")
	b.Subscribe("sport")
	connect(t, b, ep)
	if got := recvUp(t, x); got != "+sport" {
		t.Fatalf("b's subscriptions handed up %q, want only +sport", got)
	}
	waitSubs(t, x, 3)
	noUp(t, x)
	send(t, x, "sport", "1")
	send(t, x, "news", "2")
	if got := recvString(t, b); got[1] != "1" {
		t.Fatalf("b got %q", got)
	}
	if got := recvString(t, a); got[1] != "2" {
		t.Fatalf("a got %q (sport must not reach it)", got)
	}
	a.Unsubscribe("news")
	noUp(t, x) // b still holds news
	b.Close()
	got := []string{recvUp(t, x), recvUp(t, x)}
	if !(got[0] == "-news" && got[1] == "-sport" || got[0] == "-sport" && got[1] == "-news") {
		t.Fatalf("b leaving handed up %q, want -news and -sport", got)
	}
}

// TestXPubVerbose: every subscribe goes up (a second peer's, and the same
// peer's again); with unsubscribe too, every cancel.
func TestXPubVerbose(t *testing.T) {
	for _, unsub := range []bool{false, true} {
		t.Run(fmt.Sprint("unsubscribe=", unsub), func(t *testing.T) {
			x := newSock(t, XPUB, WithXPubVerbose(unsub))
			ep := bind(t, x)
			a, b := newSock(t, SUB), newSock(t, SUB)
			connect(t, a, ep)
			connect(t, b, ep)
			waitPeers(t, x, 2)
			a.Subscribe("t")
			if got := recvUp(t, x); got != "+t" {
				t.Fatalf("got %q", got)
			}
			b.Subscribe("t")
			if got := recvUp(t, x); got != "+t" {
				t.Fatalf("second peer's subscribe: %q", got)
			}
			a.Subscribe("t") // counted by a's SUB; sent again
			if got := recvUp(t, x); got != "+t" {
				t.Fatalf("repeated subscribe: %q", got)
			}
			a.Unsubscribe("t") // a still holds one Subscribe: nothing sent
			a.Unsubscribe("t")
			if unsub {
				if got := recvUp(t, x); got != "-t" {
					t.Fatalf("verbose cancel: %q", got)
				}
			} else {
				noUp(t, x)
			}
			b.Unsubscribe("t")
			if got := recvUp(t, x); got != "-t" {
				t.Fatalf("last cancel: %q", got)
			}
		})
	}
}

// TestXPubManual: nothing is subscribed until the application says so, for
// the peer whose subscription it read last or for a peer it names.
func TestXPubManual(t *testing.T) {
	x := newSock(t, XPUB, WithXPubManual())
	if err := x.Subscribe("a"); !errors.Is(err, ErrState) {
		t.Fatalf("Subscribe before any subscription: %v, want ErrState", err)
	}
	ep := bind(t, x)
	a, b := newSock(t, SUB), newSock(t, SUB)
	a.Subscribe("req")
	connect(t, a, ep)
	m, pa, err := x.RecvFrom(ctxT(t))
	if err != nil || upString(m) != "+req" {
		t.Fatalf("RecvFrom: %q, %v", upString(m), err)
	}
	waitSubs(t, x, 0) // manual: the request changed nothing
	// The application grants a different prefix than asked.
	if err := x.Subscribe("granted"); err != nil {
		t.Fatal(err)
	}
	b.Subscribe("req")
	connect(t, b, ep)
	m, pb, err := x.RecvFrom(ctxT(t))
	if err != nil || upString(m) != "+req" || pb == pa {
		t.Fatalf("second RecvFrom: %q, %v", upString(m), err)
	}
	if err := x.SubscribePeer(pb, "req"); err != nil {
		t.Fatal(err)
	}
	a.Subscribe("granted")
	if got := recvUp(t, x); got != "+granted" {
		t.Fatalf("got %q", got)
	}
	waitSubs(t, x, 2)
	send(t, x, "granted", "to a")
	send(t, x, "req", "to b")
	if got := recvString(t, a); got[1] != "to a" {
		t.Fatalf("a got %q", got)
	}
	if got := recvString(t, b); got[1] != "to b" {
		t.Fatalf("b got %q", got)
	}
	if err := x.UnsubscribePeer(pb, "req"); err != nil {
		t.Fatal(err)
	}
	waitSubs(t, x, 1)
	if err := newSock(t, PUB).SubscribePeer(pb, "x"); !errors.Is(err, ErrState) {
		t.Fatalf("SubscribePeer on PUB: %v, want ErrState", err)
	}
	if err := newSock(t, XPUB, WithXPubManual()).SubscribePeer(pb, "x"); !errors.Is(err, ErrNoSuchPeer) {
		t.Fatalf("SubscribePeer with another socket's peer: %v, want ErrNoSuchPeer", err)
	}
	// a peer that goes hands up a cancel for everything it asked for
	a.Close()
	got := []string{recvUp(t, x), recvUp(t, x)}
	if !(got[0] == "-req" && got[1] == "-granted" || got[0] == "-granted" && got[1] == "-req") {
		t.Fatalf("a leaving handed up %q", got)
	}
}

// TestXPubWelcome: every peer gets the welcome message first.
func TestXPubWelcome(t *testing.T) {
	x := newSock(t, XPUB, WithWelcomeMessage([]byte("hello")))
	ep := bind(t, x)
	for i := range 2 {
		s := newSock(t, SUB)
		s.Subscribe("hel")
		connect(t, s, ep)
		if got := recvString(t, s); len(got) != 1 || got[0] != "hello" {
			t.Fatalf("subscriber %d got %q first", i, got)
		}
	}
	if _, err := New(XPUB, WithWelcomeMessage(nil)); err == nil {
		t.Fatal("an empty welcome message was accepted")
	}
}

// TestXPubUpstreamMessages: what a peer sends that is not a subscription is
// handed up as it is, with the peer, in order with its subscriptions.
func TestXPubUpstreamMessages(t *testing.T) {
	x := newSock(t, XPUB)
	xs := newSock(t, XSUB)
	connect(t, xs, bind(t, x))
	waitPeers(t, xs, 1)
	send(t, xs, "\x01t")
	send(t, xs, "hello", "upstream")
	send(t, xs, "\x00t")
	for _, want := range []string{"+t", "hello|upstream", "-t"} {
		if got := recvUp(t, x); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if st := xs.Stats(); st.Drops != 0 {
		t.Fatalf("XSUB drops %d", st.Drops)
	}
}

// TestXPubSubscriptionLimits: oversized prefixes and prefixes beyond the
// per-peer limit are dropped and counted; the peer stays connected.
func TestXPubSubscriptionLimits(t *testing.T) {
	x := newSock(t, XPUB, WithSubscriptionLimits(3, 8))
	xs := newSock(t, XSUB)
	connect(t, xs, bind(t, x))
	waitPeers(t, x, 1)
	send(t, xs, "\x01"+strings.Repeat("x", 9)) // too long
	for i := range 5 {
		send(t, xs, fmt.Sprintf("\x01p%d", i)) // two over the limit
	}
	for i := range 3 {
		if got, want := recvUp(t, x), fmt.Sprintf("+p%d", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	waitFor(t, "refusals counted", func() bool { return x.Stats().Discarded == 3 })
	noUp(t, x)
	if st := x.Stats(); st.Peers != 1 || st.PerPeer[0].Subscriptions != 3 {
		t.Fatalf("peers %d subscriptions %v", st.Peers, st.PerPeer)
	}
	if _, err := New(XPUB, WithSubscriptionLimits(0, 1)); err == nil {
		t.Fatal("a limit of 0 prefixes was accepted")
	}
}

// TestXPubFloodIsBounded: a peer that floods subscribe/cancel pairs at an
// XPUB nobody reads is held back by the receive mark: the XPUB holds at
// most RecvHWM messages, and its other peers still get what is published.
func TestXPubFloodIsBounded(t *testing.T) {
	const hwm = 50
	x := newSock(t, XPUB, WithRecvHWM(hwm))
	ep := bind(t, x)
	good := newSock(t, SUB)
	good.Subscribe("t")
	connect(t, good, ep)
	if got := recvUp(t, x); got != "+t" {
		t.Fatalf("got %q", got)
	}
	flood := newSock(t, XSUB, WithSendHWM(10))
	connect(t, flood, ep)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; err == nil; i++ {
			err = flood.Send(ctx, NewMsgString(fmt.Sprintf("\x01f%d", i)))
			if err == nil {
				err = flood.Send(ctx, NewMsgString(fmt.Sprintf("\x00f%d", i)))
			}
		}
		done <- err
	}()
	waitFor(t, "flood held back", func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		for p := range x.pipes {
			if p.peerType == "XSUB" {
				return p.stats.msgsIn.Load() > hwm
			}
		}
		return false
	})
	xp := x.proto.(*xpubProto)
	for range 20 {
		syncPub(t, x, good, "t")
		xp.mu.Lock()
		n := len(xp.q) - xp.head
		xp.mu.Unlock()
		if n > hwm {
			t.Fatalf("XPUB holds %d messages, mark %d", n, hwm)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("flooder: %v", err)
	}
}

// TestXSubReplaysOnAttach: a publisher that connects (or reconnects) gets
// the union of the XSUB's subscriptions, once each; a cancel is passed on
// only when it removes a prefix.
func TestXSubReplaysOnAttach(t *testing.T) {
	xs := newSock(t, XSUB, WithReconnect(10*time.Millisecond, 50*time.Millisecond))
	send(t, xs, "\x01a")
	send(t, xs, "\x01b")
	send(t, xs, "\x01a") // already there: passed on, nothing new
	send(t, xs, "\x00c") // not there: not passed on
	x := newSock(t, XPUB, WithXPubVerbose(true))
	ep := bind(t, x)
	connect(t, xs, ep)
	got := []string{recvUp(t, x), recvUp(t, x)}
	if !(got[0] == "+a" && got[1] == "+b" || got[0] == "+b" && got[1] == "+a") {
		t.Fatalf("replay: %q", got)
	}
	noUp(t, x)
	send(t, xs, "\x00a")
	if got := recvUp(t, x); got != "-a" {
		t.Fatalf("got %q", got)
	}
	send(t, xs, "\x00a") // gone already
	noUp(t, x)
	// The publisher restarts on the same endpoint: the set comes back.
	x.Close()
	x2 := newSock(t, XPUB)
	if _, err := x2.Bind(ep); err != nil {
		t.Fatal(err)
	}
	if got := recvUp(t, x2); got != "+b" {
		t.Fatalf("after restart: %q", got)
	}
	send(t, x2, "b", "again")
	waitFor(t, "message through", func() bool {
		send(t, x2, "b", "again")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		m, err := xs.Recv(ctx)
		return err == nil && bytes.Equal(m.Frames[1], []byte("again"))
	})
}

// TestPairRefusesSecondPeer: a PAIR has one peer; another connection is
// closed and counted as rejected until the first goes, then it takes over.
func TestPairRefusesSecondPeer(t *testing.T) {
	p := newSock(t, PAIR)
	ep := bind(t, p)
	a := newSock(t, PAIR)
	connect(t, a, ep)
	exchange(t, p, a)
	b := newSock(t, PAIR, WithReconnect(10*time.Millisecond, 20*time.Millisecond))
	connect(t, b, ep)
	waitFor(t, "second peer refused", func() bool { return p.Stats().Rejected >= 2 })
	if n := p.Peers(); n != 1 {
		t.Fatalf("PAIR has %d peers", n)
	}
	exchange(t, p, a)
	first := p.PeerList()[0].ID()
	a.Close()
	// b has taken over when p's one attached peer is another than a's (only
	// b dials now): until a's pipe is gone from p, a message p sends may
	// still go to it and be lost with it, as libzmq's PAIR loses it.
	waitFor(t, "b takes over", func() bool {
		pl := p.PeerList()
		return len(pl) == 1 && pl[0].ID() != first && p.Peers() == 1 && b.Peers() == 1
	})
	exchange(t, p, b)
}

// TestPairSendWaitsForPeer: Send blocks until the peer is there, or fails
// with ErrNoPeers under WithNoBlock.
func TestPairSendWaitsForPeer(t *testing.T) {
	nb := newSock(t, PAIR, WithNoBlock())
	if err := nb.Send(ctxT(t), NewMsgString("x")); !errors.Is(err, ErrNoPeers) {
		t.Fatalf("NoBlock Send: %v", err)
	}
	p := newSock(t, PAIR)
	ep := bind(t, p)
	errc := make(chan error, 1)
	go func() { errc <- p.Send(ctxT(t), NewMsgString("early")) }()
	q := newSock(t, PAIR)
	connect(t, q, ep)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := recvString(t, q); got[0] != "early" {
		t.Fatalf("got %q", got)
	}
}

// SubscriptionsChanged wakes a waiter when a subscription arrives, when the
// subscriber goes and when the socket closes; the subscription is visible
// in Stats once it has fired.
func TestSubscriptionsChangedWakes(t *testing.T) {
	pub := newSock(t, PUB)
	ep := bind(t, pub)
	wake := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("no wake-up for %s", what)
		}
	}
	subscribers := func() int {
		n := 0
		for _, ps := range pub.Stats().PerPeer {
			if ps.Subscriptions > 0 {
				n++
			}
		}
		return n
	}
	sub := newSock(t, SUB)
	if err := sub.Subscribe("news"); err != nil {
		t.Fatal(err)
	}
	ch := pub.SubscriptionsChanged()
	connect(t, sub, ep)
	for { // one wake-up per change: wait until the one that brings the subscription
		wake("the subscription", ch)
		ch = pub.SubscriptionsChanged()
		if subscribers() == 1 {
			break
		}
	}
	ch = pub.SubscriptionsChanged()
	sub.Close()
	wake("the subscriber's leaving", ch)
	waitFor(t, "no subscriber", func() bool { return subscribers() == 0 })
	ch = pub.SubscriptionsChanged()
	pub.Close()
	wake("Close", ch)
}
