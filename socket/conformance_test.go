package socket

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4/security/null"
)

// Conformance: the same checks run against every socket type, in the style
// of mangos' VerifyCooked helpers, so that a new type gets them for free.

var allTypes = []Type{REQ, REP, DEALER, ROUTER, PUB, SUB, PUSH, PULL, PAIR, XPUB, XSUB}

// peerOf is the type each type talks to in these tests.
var peerOf = map[Type]Type{REQ: REP, REP: REQ, DEALER: ROUTER, ROUTER: DEALER, PUB: SUB, SUB: PUB, PUSH: PULL, PULL: PUSH,
	PAIR: PAIR, XPUB: SUB, XSUB: PUB}

func canSend(t Type) bool { return t != PULL && t != SUB }
func canRecv(t Type) bool { return t != PUSH && t != PUB }

// exchange proves that a and b, connected, talk: a message each way where
// the pattern has both ways, one message otherwise.
func exchange(t *testing.T, a, b *Socket) {
	t.Helper()
	waitPeers(t, a, 1)
	waitPeers(t, b, 1)
	switch a.Type() {
	case REP, PULL, SUB, ROUTER:
		exchange(t, b, a)
	case REQ:
		send(t, a, "ping")
		if got := recvString(t, b); got[0] != "ping" {
			t.Fatalf("REP got %q", got)
		}
		send(t, b, "pong")
		if got := recvString(t, a); got[0] != "pong" {
			t.Fatalf("REQ got %q", got)
		}
	case PUSH:
		send(t, a, "hello")
		if got := recvString(t, b); got[0] != "hello" {
			t.Fatalf("PULL got %q", got)
		}
	case PUB:
		b.Subscribe("t")
		syncPub(t, a, b, "t")
		send(t, a, "t", "hello")
		if got := recvString(t, b); got[1] != "hello" {
			t.Fatalf("SUB got %q", got)
		}
	case XPUB:
		b.Subscribe("t")
		for {
			if got := recvString(t, a); len(got) == 1 && got[0] == "\x01t" {
				break
			}
		}
		syncPub(t, a, b, "t")
		send(t, a, "t", "hello")
		if got := recvString(t, b); got[1] != "hello" {
			t.Fatalf("SUB got %q", got)
		}
	case XSUB:
		if err := a.Subscribe("t"); err != nil {
			t.Fatalf("XSUB Subscribe: %v", err)
		}
		syncPub(t, b, a, "t")
		send(t, b, "t", "hello")
		send(t, b, "u", "not subscribed")
		send(t, b, "t", "again")
		if got := recvString(t, a); got[1] != "hello" {
			t.Fatalf("XSUB got %q", got)
		}
		if got := recvString(t, a); got[1] != "again" {
			t.Fatalf("XSUB got %q, want the second t message", got)
		}
	case PAIR:
		send(t, a, "hello")
		if got := recvString(t, b); got[0] != "hello" {
			t.Fatalf("PAIR got %q", got)
		}
		send(t, b, "back")
		if got := recvString(t, a); got[0] != "back" {
			t.Fatalf("PAIR got %q", got)
		}
	case DEALER:
		send(t, a, "hello")
		m := recvMsg(t, b)
		if len(m.Frames) != 2 || string(m.Frames[1]) != "hello" {
			t.Fatalf("ROUTER got %s", showMsg(m))
		}
		sendMsg(t, b, NewMsg(m.Frames[0], []byte("back")))
		if got := recvString(t, a); got[0] != "back" {
			t.Fatalf("DEALER got %q", got)
		}
	default:
		t.Fatalf("exchange: no rule for %s", a.Type())
	}
}

func TestConformance(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(typ.String(), func(t *testing.T) {
			t.Run("options", func(t *testing.T) { verifyOptions(t, typ) })
			t.Run("bind tcp", func(t *testing.T) { verifyBindTCP(t, typ) })
			t.Run("bind ipc", func(t *testing.T) { verifyBindIPC(t, typ) })
			t.Run("connect before bind", func(t *testing.T) { verifyConnectFirst(t, typ) })
			t.Run("disconnect", func(t *testing.T) { verifyDisconnect(t, typ) })
			t.Run("close", func(t *testing.T) { verifyClose(t, typ) })
			t.Run("not allowed", func(t *testing.T) { verifyNotAllowed(t, typ) })
			t.Run("recv deadline", func(t *testing.T) { verifyRecvDeadline(t, typ) })
			t.Run("send deadline", func(t *testing.T) { verifySendDeadline(t, typ) })
		})
	}
}

// verifyOptions: New takes each option (and all of them together), and the
// socket still talks to its peer.
func verifyOptions(t *testing.T, typ Type) {
	opts := []struct {
		name string
		opt  Option
	}{
		{"nil", nil},
		{"SendHWM", WithSendHWM(10)},
		{"RecvHWM", WithRecvHWM(10)},
		{"MaxMsgSize", WithMaxMsgSize(1 << 20)},
		{"Reconnect", WithReconnect(10*time.Millisecond, 100*time.Millisecond)},
		{"Heartbeat", WithHeartbeat(50*time.Millisecond, 200*time.Millisecond)},
		{"HeartbeatOff", WithHeartbeat(0, 0)},
		{"HandshakeTimeout", WithHandshakeTimeout(time.Second)},
		{"Linger", WithLinger(0)},
		{"NoBlock", WithNoBlock()},
		{"Identity", WithIdentity([]byte("conformance"))},
		{"Security", WithSecurity(null.Security())},
		{"Logger", WithLogger(slog.New(slog.DiscardHandler))},
		{"EventHandler", WithEventHandler(func(Event) {})},
		{"LowLatency", WithLowLatency(true)},
		{"Throughput", WithLowLatency(false)},
	}
	all := make([]Option, 0, len(opts))
	for _, o := range opts {
		all = append(all, o.opt)
	}
	opts = append(opts, struct {
		name string
		opt  Option
	}{"all", func(o *Options) error {
		for _, opt := range all {
			if opt != nil {
				if err := opt(o); err != nil {
					return err
				}
			}
		}
		return nil
	}})
	for _, o := range opts {
		t.Run(o.name, func(t *testing.T) {
			s := newSock(t, typ, o.opt)
			if s.Type() != typ {
				t.Fatalf("Type() = %s", s.Type())
			}
			peer := newSock(t, peerOf[typ])
			connect(t, peer, bind(t, s))
			exchange(t, s, peer)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

func verifyBindTCP(t *testing.T, typ Type) {
	s := newSock(t, typ)
	ep := bind(t, s)
	if !strings.HasPrefix(ep, "tcp://127.0.0.1:") || strings.HasSuffix(ep, ":0") {
		t.Fatalf("Bind returned %q, want tcp://127.0.0.1:<port>", ep)
	}
	if eps := s.Endpoints(); len(eps) != 1 || eps[0] != ep {
		t.Fatalf("Endpoints() = %q, want [%s]", eps, ep)
	}
	if _, err := s.Bind(ep); err == nil {
		t.Fatalf("second Bind of %s succeeded", ep)
	}
	peer := newSock(t, peerOf[typ], WithReconnect(10*time.Millisecond, 50*time.Millisecond))
	connect(t, peer, ep)
	exchange(t, s, peer)

	if err := s.Unbind(ep); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
	if eps := s.Endpoints(); len(eps) != 0 {
		t.Fatalf("Endpoints() after Unbind = %q", eps)
	}
	waitFor(t, "connections of the unbound endpoint closed", func() bool { return s.Peers() == 0 && peer.Peers() == 0 })
	if err := s.Unbind(ep); !errors.Is(err, ErrEndpoint) {
		t.Fatalf("second Unbind: %v, want ErrEndpoint", err)
	}
	// Bound again, the peer's dialer finds it.
	if _, err := s.Bind(ep); err != nil {
		t.Fatalf("Bind after Unbind: %v", err)
	}
	exchange(t, s, peer)
}

func verifyBindIPC(t *testing.T, typ Type) {
	path := filepath.Join(t.TempDir(), "s.sock")
	s := newSock(t, typ)
	ep, err := s.Bind("ipc://" + path)
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	if ep != "ipc://"+path {
		t.Fatalf("Bind returned %q", ep)
	}
	peer := newSock(t, peerOf[typ])
	connect(t, peer, ep)
	exchange(t, s, peer)
	if err := s.Unbind(ep); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file still there after Unbind (%v)", err)
	}
}

// freeEndpoint returns a tcp endpoint nobody listens on (yet).
func freeEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := "tcp://" + ln.Addr().String()
	ln.Close()
	return ep
}

// verifyConnectFirst: Connect to an endpoint that nobody listens on yet
// succeeds; the dial is retried and connects once the peer binds.
func verifyConnectFirst(t *testing.T, typ Type) {
	for _, tr := range []string{"tcp", "ipc"} {
		t.Run(tr, func(t *testing.T) {
			ep := freeEndpoint(t)
			if tr == "ipc" {
				ep = "ipc://" + filepath.Join(t.TempDir(), "later.sock")
			}
			s := newSock(t, typ, WithReconnect(10*time.Millisecond, 50*time.Millisecond))
			connect(t, s, ep)
			if err := s.Connect(ep); !errors.Is(err, ErrEndpoint) {
				t.Fatalf("second Connect to %s: %v, want ErrEndpoint", ep, err)
			}
			ev := waitEvent(t, s, EventRetry)
			if ev.Endpoint != ep || ev.Err == nil {
				t.Fatalf("retry event %v", ev)
			}
			peer := newSock(t, peerOf[typ])
			if _, err := peer.Bind(ep); err != nil {
				t.Fatalf("late Bind: %v", err)
			}
			exchange(t, s, peer)
			if st := s.Stats(); st.Reconnects == 0 || st.Connects != 1 {
				t.Errorf("Reconnects=%d Connects=%d, want >0 and 1", st.Reconnects, st.Connects)
			}
		})
	}
}

func verifyDisconnect(t *testing.T, typ Type) {
	peer := newSock(t, peerOf[typ])
	ep := bind(t, peer)
	s := newSock(t, typ)
	connect(t, s, ep)
	exchange(t, s, peer)
	if err := s.Disconnect(ep); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	waitFor(t, "disconnected", func() bool { return s.Peers() == 0 && peer.Peers() == 0 })
	if err := s.Disconnect(ep); !errors.Is(err, ErrEndpoint) {
		t.Fatalf("second Disconnect: %v, want ErrEndpoint", err)
	}
	ev := waitEvent(t, s, EventDisconnected)
	if ev.Endpoint != ep {
		t.Errorf("disconnected event for %q, want %q", ev.Endpoint, ep)
	}
	// and the endpoint can be connected again
	connect(t, s, ep)
	exchange(t, s, peer)
}

func verifyClose(t *testing.T, typ Type) {
	peer := newSock(t, peerOf[typ])
	ep := bind(t, peer)
	s, err := New(typ)
	if err != nil {
		t.Fatal(err)
	}
	connect(t, s, ep)
	exchange(t, s, peer)
	if typ == REQ {
		send(t, s, "unanswered") // so that Recv is allowed and would block
	}
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if err := s.Send(ctxT(t), NewMsgString("x", "y")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if canRecv(typ) {
		if _, err := s.Recv(ctxT(t)); !errors.Is(err, ErrClosed) {
			t.Errorf("Recv after Close: %v, want ErrClosed", err)
		}
	}
	if _, err := s.Bind("tcp://127.0.0.1:0"); !errors.Is(err, ErrClosed) {
		t.Errorf("Bind after Close: %v, want ErrClosed", err)
	}
	if err := s.Connect(ep); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close: %v, want ErrClosed", err)
	}
	if s.Peers() != 0 {
		t.Errorf("Peers() = %d after Close", s.Peers())
	}
	waitFor(t, "peer sees the close", func() bool { return peer.Peers() == 0 })
}

// verifyNotAllowed: operations the type does not have fail with ErrState.
func verifyNotAllowed(t *testing.T, typ Type) {
	s := newSock(t, typ, WithNoBlock())
	if !canSend(typ) {
		if err := s.Send(ctxT(t), NewMsgString("x")); !errors.Is(err, ErrState) {
			t.Errorf("Send: %v, want ErrState", err)
		}
	}
	if !canRecv(typ) {
		if _, err := s.Recv(ctxT(t)); !errors.Is(err, ErrState) {
			t.Errorf("Recv: %v, want ErrState", err)
		}
	}
	if typ != SUB && typ != XSUB {
		if err := s.Subscribe("x"); !errors.Is(err, ErrState) {
			t.Errorf("Subscribe: %v, want ErrState", err)
		}
		if err := s.Unsubscribe("x"); !errors.Is(err, ErrState) {
			t.Errorf("Unsubscribe: %v, want ErrState", err)
		}
	}
	switch typ {
	case REQ:
		if _, err := s.Recv(ctxT(t)); !errors.Is(err, ErrState) {
			t.Errorf("REQ Recv before Send: %v, want ErrState", err)
		}
	case REP:
		if err := s.Send(ctxT(t), NewMsgString("x")); !errors.Is(err, ErrState) {
			t.Errorf("REP Send before Recv: %v, want ErrState", err)
		}
	case ROUTER:
		if err := s.Send(ctxT(t), NewMsgString("only-an-id")); !errors.Is(err, ErrEmpty) {
			t.Errorf("ROUTER Send without a body: %v, want ErrEmpty", err)
		}
		if err := s.Send(ctxT(t), NewMsgString("nobody", "x")); !errors.Is(err, ErrNoSuchPeer) {
			t.Errorf("ROUTER Send to an unknown id: %v, want ErrNoSuchPeer", err)
		}
	}
	if err := s.Send(ctxT(t), Msg{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("Send of no frames: %v, want ErrEmpty", err)
	}
}

// verifyRecvDeadline: a blocked Recv returns when its context ends.
func verifyRecvDeadline(t *testing.T, typ Type) {
	if !canRecv(typ) {
		t.Skipf("%s does not receive", typ)
	}
	s := newSock(t, typ)
	if typ == REQ { // Recv needs a request out that is never answered
		rep := newSock(t, REP)
		connect(t, s, bind(t, rep))
		send(t, s, "unanswered")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.Recv(ctx)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv: %v, want ErrTimeout wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("Recv returned after %v, before its deadline", d)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := s.Recv(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv with a cancelled context: %v, want context.Canceled", err)
	}
}

// verifySendDeadline: a Send that must wait for a peer returns when its
// context ends (or at once with WithNoBlock); PUB never waits.
func verifySendDeadline(t *testing.T, typ Type) {
	switch typ {
	case PUSH, DEALER, REQ, PAIR:
	case PUB, XPUB, XSUB:
		s := newSock(t, typ)
		if err := s.Send(ctxT(t), NewMsgString("nobody listens")); err != nil {
			t.Fatalf("PUB Send with no peers: %v", err)
		}
		return
	default:
		t.Skipf("%s does not wait for a peer to send", typ)
	}
	s := newSock(t, typ)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Send(ctx, NewMsgString("x")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Send with no peers: %v, want ErrTimeout", err)
	}
	nb := newSock(t, typ, WithNoBlock())
	if err := nb.Send(ctxT(t), NewMsgString("x")); !errors.Is(err, ErrNoPeers) {
		t.Fatalf("NoBlock Send with no peers: %v, want ErrNoPeers", err)
	}
	if typ == REQ { // a failed Send leaves REQ ready to send again
		rep := newSock(t, REP)
		connect(t, s, bind(t, rep))
		exchange(t, s, rep)
	}
}

// TestRecvAfterCloseReturnsQueued: messages received before Close are
// still handed out after it, then ErrClosed.
func TestRecvAfterCloseReturnsQueued(t *testing.T) {
	pull, err := New(PULL)
	if err != nil {
		t.Fatal(err)
	}
	push := newSock(t, PUSH)
	connect(t, push, bind(t, pull))
	send(t, push, "queued")
	waitFor(t, "message in", func() bool { return pull.Stats().MsgsIn == 1 })
	pull.Close()
	if got := recvString(t, pull); got[0] != "queued" {
		t.Fatalf("got %q", got)
	}
	if _, err := pull.Recv(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Recv after Close: %v, want ErrClosed", err)
	}
}

func TestOptionErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  Option
	}{
		{"SendHWM 0", WithSendHWM(0)},
		{"RecvHWM 0", WithRecvHWM(0)},
		{"MaxMsgSize 0", WithMaxMsgSize(0)},
		{"Reconnect 0", WithReconnect(0, time.Second)},
		{"Reconnect max < min", WithReconnect(time.Second, time.Millisecond)},
		{"Heartbeat negative", WithHeartbeat(-time.Second, time.Second)},
		{"Heartbeat timeout < interval", WithHeartbeat(time.Second, time.Millisecond)},
		{"HandshakeTimeout 0", WithHandshakeTimeout(0)},
		{"Linger negative", WithLinger(-time.Second)},
		{"Identity empty", WithIdentity(nil)},
		{"Identity 256 bytes", WithIdentity(bytes.Repeat([]byte("i"), 256))},
		{"Identity starting with 0", WithIdentity([]byte{0, 'x'})},
		{"Security nil", WithSecurity(nil)},
		{"Logger nil", WithLogger(nil)},
		{"SubscriptionLimits 0", WithSubscriptionLimits(0, -1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, typ := range allTypes {
				s, err := New(typ, c.opt)
				if err == nil {
					s.Close()
					t.Fatalf("New(%s) accepted it", typ)
				}
				if !errors.Is(err, ErrOption) {
					t.Fatalf("New(%s): %v, want ErrOption", typ, err)
				}
			}
		})
	}
	for _, typ := range []Type{0, XSUB + 1, 255} {
		if s, err := New(typ); err == nil {
			s.Close()
			t.Errorf("New(%d) accepted an unknown type", typ)
		} else if !errors.Is(err, ErrOption) {
			t.Errorf("New(%d): %v, want ErrOption", typ, err)
		}
	}
}

func TestEndpointErrors(t *testing.T) {
	s := newSock(t, PULL)
	for _, ep := range []string{"", "127.0.0.1:5555", "udp://127.0.0.1:5555", "tcp://127.0.0.1", "tcp://127.0.0.1:http", "tcp://127.0.0.1:70000", "ipc://"} {
		if _, err := s.Bind(ep); !errors.Is(err, ErrEndpoint) {
			t.Errorf("Bind(%q): %v, want ErrEndpoint", ep, err)
		}
	}
	for _, ep := range []string{"tcp://*:5555", "tcp://127.0.0.1:0", "tcp://:5555", "inproc://", "inproc://*"} {
		if err := s.Connect(ep); !errors.Is(err, ErrEndpoint) {
			t.Errorf("Connect(%q): %v, want ErrEndpoint", ep, err)
		}
	}
	if err := s.Disconnect("tcp://127.0.0.1:1"); !errors.Is(err, ErrEndpoint) {
		t.Errorf("Disconnect of an endpoint never connected: %v, want ErrEndpoint", err)
	}
	if err := s.Unbind("tcp://127.0.0.1:1"); !errors.Is(err, ErrEndpoint) {
		t.Errorf("Unbind of an endpoint never bound: %v, want ErrEndpoint", err)
	}
}

func TestTypeNames(t *testing.T) {
	for _, typ := range allTypes {
		got, err := ParseType(strings.ToLower(typ.String()))
		if err != nil || got != typ {
			t.Errorf("ParseType(%q) = %v, %v", strings.ToLower(typ.String()), got, err)
		}
		if !typ.Compatible(peerOf[typ].String()) {
			t.Errorf("%s not compatible with %s", typ, peerOf[typ])
		}
		if typ.Compatible(typ.String()) && typ != DEALER && typ != ROUTER && typ != PAIR {
			t.Errorf("%s compatible with itself", typ)
		}
	}
	if _, err := ParseType("XREQ"); !errors.Is(err, ErrOption) {
		t.Errorf("ParseType(XREQ): %v, want ErrOption", err)
	}
}
