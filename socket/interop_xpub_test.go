package socket

import (
	"fmt"
	"sort"
	"strconv"
	"testing"
)

// Interop for PAIR, XPUB and XSUB against libzmq (pyzmq), both ways.

func TestInteropPair(t *testing.T) {
	for _, side := range []string{"libzmq binds", "zpeer binds"} {
		t.Run(side, func(t *testing.T) {
			pair := newSock(t, PAIR)
			var py *pyPeer
			if side == "libzmq binds" {
				py = startPy(t, "pair", "--bind", "tcp://127.0.0.1:*", "--count", "50", "--specials")
				connect(t, pair, py.expect(t, "bound").Endpoint)
			} else {
				py = startPy(t, "pair", "--connect", bind(t, pair), "--count", "50", "--specials")
			}
			for i, m := range interopMsgs(50, true) {
				sendMsg(t, pair, m)
				if got := recvMsg(t, pair); !sameFrames(got.Frames, m.Frames) {
					t.Fatalf("echo %d = %s, want %s", i, showMsg(got), showMsg(m))
				}
			}
			py.done(t, 53)
		})
	}
}

// TestInteropXPubToLibzmqXSub: a libzmq XSUB subscribes through messages
// and sends one message upstream; our XPUB hands each up in order, filters
// what it publishes by the subscriptions, and hands up the cancels.
func TestInteropXPubToLibzmqXSub(t *testing.T) {
	const count = 100
	x := newSock(t, XPUB)
	py := startPy(t, "xsub", "--connect", bind(t, x), "--topics", "alpha,beta")
	for _, want := range []string{"+alpha", "+beta", "up|hello"} {
		if got := recvUp(t, x); got != want {
			t.Fatalf("XPUB handed up %q, want %q", got, want)
		}
	}
	for i := range count {
		for _, tp := range []string{"alpha", "beta", "gamma"} {
			send(t, x, tp, strconv.Itoa(i))
		}
	}
	send(t, x, "alpha", "end")
	send(t, x, "beta", "end")
	ev := py.done(t, 2*count)
	if fmt.Sprint(ev.Counts) != fmt.Sprint(map[string]int{"alpha": count, "beta": count}) || len(ev.Foreign) > 0 {
		t.Errorf("libzmq XSUB counts %v, foreign %d", ev.Counts, len(ev.Foreign))
	}
	got := []string{recvUp(t, x), recvUp(t, x)}
	sort.Strings(got)
	if fmt.Sprint(got) != "[-alpha -beta]" {
		t.Errorf("cancels handed up: %q", got)
	}
}

// TestInteropLibzmqXPubToXSub: our XSUB subscribes a verbose libzmq XPUB by
// messages, receives what it publishes on that topic only, and cancels.
func TestInteropLibzmqXPubToXSub(t *testing.T) {
	const count = 100
	py := startPy(t, "xpub", "--bind", "tcp://127.0.0.1:*", "--count", strconv.Itoa(count), "--topics", "alpha")
	xs := newSock(t, XSUB)
	send(t, xs, "\x01alpha") // before connecting: sent when the XPUB attaches
	connect(t, xs, py.expect(t, "bound").Endpoint)
	for i := 0; ; i++ {
		got := recvString(t, xs)
		if got[0] != "alpha" {
			t.Fatalf("XSUB got a message on %q", got[0])
		}
		if got[1] == "end" {
			if i != count {
				t.Fatalf("end after %d messages, want %d", i, count)
			}
			break
		}
		if got[1] != strconv.Itoa(i) {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	send(t, xs, "\x00alpha")
	ev := py.done(t, 2)
	if fmt.Sprint(ev.IDs) != "[+alpha -alpha]" {
		t.Errorf("libzmq XPUB saw %q, want [+alpha -alpha]", ev.IDs)
	}
}

// TestInteropLibzmqSubToXPub: a libzmq SUB's subscriptions reach our XPUB's
// application.
func TestInteropLibzmqSubToXPub(t *testing.T) {
	x := newSock(t, XPUB)
	sub := startPy(t, "sub", "--connect", bind(t, x), "--topics", "alpha")
	if got := recvUp(t, x); got != "+alpha" {
		t.Fatalf("XPUB handed up %q", got)
	}
	for i := range 10 {
		send(t, x, "alpha", strconv.Itoa(i))
		send(t, x, "beta", strconv.Itoa(i))
	}
	send(t, x, "alpha", "end")
	sub.done(t, 10)
}

// TestInteropLibzmqAroundProxy: a libzmq XPUB publishes to a libzmq XSUB
// through our pub/sub proxy: the subscription goes up, the data down, the
// cancel up.
func TestInteropLibzmqAroundProxy(t *testing.T) {
	const count = 100
	_, front, back, _, _ := pubsubProxy(t)
	pub := startPy(t, "xpub", "--connect", front, "--count", strconv.Itoa(count), "--topics", "alpha")
	sub := startPy(t, "xsub", "--connect", back, "--topics", "alpha")
	ev := sub.done(t, count)
	if fmt.Sprint(ev.Counts) != fmt.Sprint(map[string]int{"alpha": count}) || len(ev.Foreign) > 0 {
		t.Errorf("libzmq XSUB counts %v, foreign %d", ev.Counts, len(ev.Foreign))
	}
	if ev := pub.done(t, -1); len(ev.IDs) < 2 || ev.IDs[0] != "+alpha" || ev.IDs[len(ev.IDs)-1] != "-alpha" {
		t.Errorf("libzmq XPUB saw %q", ev.IDs)
	}
}

// TestInteropZpeerAroundLibzmqProxy: our XPUB publishes to our XSUB through
// libzmq's zmq_proxy.
func TestInteropZpeerAroundLibzmqProxy(t *testing.T) {
	py := startPy(t, "proxy")
	eps := py.expect(t, "bound").IDs
	if len(eps) != 2 {
		t.Fatalf("proxy endpoints %q", eps)
	}
	x, xs := newSock(t, XPUB), newSock(t, XSUB)
	connect(t, x, eps[0])
	send(t, xs, "\x01alpha")
	connect(t, xs, eps[1])
	if got := recvUp(t, x); got != "+alpha" {
		t.Fatalf("XPUB handed up %q", got)
	}
	for i := range 100 {
		send(t, x, "alpha", strconv.Itoa(i))
		send(t, x, "beta", strconv.Itoa(i))
	}
	for i := range 100 {
		if got := recvString(t, xs); got[0] != "alpha" || got[1] != strconv.Itoa(i) {
			t.Fatalf("XSUB got %q, want alpha %d", got, i)
		}
	}
	send(t, xs, "\x00alpha")
	if got := recvUp(t, x); got != "-alpha" {
		t.Fatalf("XPUB handed up %q", got)
	}
}
