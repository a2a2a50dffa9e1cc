package socket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// hookLog records PeerHooks calls and every breach of their contract:
// a peer attached twice, detached without being attached or twice, or an
// ID used twice.
type hookLog struct {
	mu       sync.Mutex
	state    map[*Peer]int // 1 attached, 2 detached
	ids      map[uint64]*Peer
	breaches []string
	attaches int
	detaches int
	ready    chan *Peer
	onAttach func(*Peer) // optional extra check, run in the hook
}

func newHookLog() *hookLog {
	return &hookLog{state: make(map[*Peer]int), ids: make(map[uint64]*Peer), ready: make(chan *Peer, 1024)}
}

func (h *hookLog) hooks() PeerHooks {
	return PeerHooks{
		Attach: func(p *Peer) {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.state[p] != 0 {
				h.breaches = append(h.breaches, fmt.Sprintf("%v attached in state %d", p, h.state[p]))
			}
			if q := h.ids[p.ID()]; q != nil && q != p {
				h.breaches = append(h.breaches, fmt.Sprintf("ID %d given twice", p.ID()))
			}
			h.state[p] = 1
			h.ids[p.ID()] = p
			h.attaches++
			if h.onAttach != nil {
				h.onAttach(p)
			}
		},
		Detach: func(p *Peer, err error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.state[p] != 1 {
				h.breaches = append(h.breaches, fmt.Sprintf("%v detached in state %d (%v)", p, h.state[p], err))
			}
			select {
			case <-p.Done():
			default:
				h.breaches = append(h.breaches, fmt.Sprintf("%v detached before Done", p))
			}
			h.state[p] = 2
			h.detaches++
		},
		Ready: func(p *Peer) {
			select {
			case h.ready <- p:
			default:
			}
		},
	}
}

func (h *hookLog) isAttached(p *Peer) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state[p] == 1
}

func (h *hookLog) counts() (attaches, detaches int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attaches, h.detaches
}

// check fails the test on any breach, and unless some peers may still be
// attached, on a peer attached but never detached.
func (h *hookLog) check(t *testing.T, allDetached bool) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.breaches {
		t.Error(b)
	}
	if allDetached && h.attaches != h.detaches {
		t.Errorf("%d peers attached, %d detached", h.attaches, h.detaches)
	}
}

func waitDone(t *testing.T, p *Peer) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%v not done", p)
	}
}

func peerAt(t *testing.T, s *Socket, ep string) *Peer {
	t.Helper()
	var found *Peer
	waitFor(t, "peer at "+ep, func() bool {
		for _, p := range s.PeerList() {
			if p.Endpoint() == ep {
				found = p
				return true
			}
		}
		return false
	})
	return found
}

// TestPeerAttachBeforeRecv: Attach runs before a message from the peer can
// be received, and RecvFrom names an attached peer with the handshake's
// metadata.
func TestPeerAttachBeforeRecv(t *testing.T) {
	h := newHookLog()
	var pull *Socket
	var early []string
	h.onAttach = func(p *Peer) {
		// The peer sent its message with its handshake: none may be
		// receivable before Attach returns.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if m, _, err := pull.RecvFrom(ctx); err == nil {
			early = append(early, string(m.Body()))
		}
	}
	pull = newSock(t, PULL, WithPeerHooks(h.hooks()))
	ep := bind(t, pull)
	for i := range 20 {
		c := dialRaw(t, ep)
		msg := fmt.Sprintf("m%d", i)
		// greeting, READY and a message in one write
		b := append(zmtpGreeting(), zmtpReady("PUSH", "Identity", msg)...)
		if _, err := c.Write(append(b, zmtpFrame(0, []byte(msg))...)); err != nil {
			t.Fatal(err)
		}
		m, p, err := pull.RecvFrom(ctxT(t))
		if err != nil {
			t.Fatalf("RecvFrom: %v", err)
		}
		if !h.isAttached(p) {
			t.Fatalf("RecvFrom returned %v, not attached", p)
		}
		if string(m.Body()) != msg || string(p.Identity()) != msg || p.Type() != "PUSH" || p.Endpoint() != ep {
			t.Fatalf("got %q from %v (identity %q, endpoint %s)", m.Body(), p, p.Identity(), p.Endpoint())
		}
		c.Close()
		waitDone(t, p)
	}
	h.mu.Lock()
	if len(early) > 0 {
		t.Errorf("received before Attach returned: %q", early)
	}
	h.mu.Unlock()
	pull.Close()
	h.check(t, true)
}

// TestPeerAttachBeforeSend: Send routes only to attached peers, and the
// handle the hook got is the one PeerList gives.
func TestPeerAttachBeforeSend(t *testing.T) {
	h := newHookLog()
	pull := newSock(t, PULL)
	push := newSock(t, PUSH, WithPeerHooks(h.hooks()))
	ep := bind(t, pull)
	connect(t, push, ep)
	send(t, push, "x") // blocks until a peer is ready
	if a, _ := h.counts(); a != 1 {
		t.Fatalf("Send went out with %d peers attached", a)
	}
	pl := push.PeerList()
	if len(pl) != 1 || !h.isAttached(pl[0]) || pl[0].Endpoint() != ep || pl[0].Type() != "PULL" {
		t.Fatalf("PeerList %v", pl)
	}
	if pl[0].ID() != 1 || !pl[0].Ready() {
		t.Errorf("first peer: ID %d ready %v", pl[0].ID(), pl[0].Ready())
	}
	recvString(t, pull)
	push.Close()
	h.check(t, true)
	if len(push.PeerList()) != 0 {
		t.Error("PeerList after Close is not empty")
	}
}

// TestPeerHooksChurn: under connect, disconnect and close churn every
// attached peer is detached exactly once, after it was attached, and IDs
// are never reused. Run it with -race.
func TestPeerHooksChurn(t *testing.T) {
	hr := newHookLog()
	router := newSock(t, ROUTER, WithPeerHooks(hr.hooks()))
	ep := bind(t, router)
	eps := []string{ep, bind(t, router)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // read the handles while they come and go
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, p := range router.PeerList() {
				_ = p.Ready()
				_ = p.Identity()
				_ = p.Stats()
			}
		}
	}()
	for round := range 10 {
		hd := newHookLog()
		dealer, err := New(DEALER, WithPeerHooks(hd.hooks()), WithReconnect(time.Millisecond, 5*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range eps {
			if err := dealer.Connect(e); err != nil {
				t.Fatal(err)
			}
		}
		if round%2 == 0 {
			// Disconnect one endpoint at once, perhaps mid-handshake.
			dealer.Disconnect(eps[1])
			waitPeers(t, dealer, 1)
			sendMsg(t, dealer, NewMsgString("hi"))
			m, p, err := router.RecvFrom(ctxT(t))
			if err != nil || string(m.Body()) != "hi" || string(p.Identity()) != string(m.Frames[0]) {
				t.Fatalf("round %d: %s from %v: %v", round, showMsg(m), p, err)
			}
		}
		dealer.Close()
		hd.check(t, true)
	}
	close(stop)
	wg.Wait()
	router.Close()
	hr.check(t, true)
	if a, _ := hr.counts(); a < 5 {
		t.Errorf("only %d peers attached to the ROUTER", a)
	}
}

// TestSendToGonePeer: SendTo a peer that is gone fails with ErrPeerLost,
// and SendTo is refused where the type cannot choose a peer.
func TestSendToGonePeer(t *testing.T) {
	h := newHookLog()
	router := newSock(t, ROUTER)
	dealer := newSock(t, DEALER, WithPeerHooks(h.hooks()))
	ep := bind(t, router)
	connect(t, dealer, ep)
	p := peerAt(t, dealer, ep)
	if err := dealer.SendTo(ctxT(t), p, NewMsgString("hi")); err != nil {
		t.Fatalf("SendTo: %v", err)
	}
	if m := recvMsg(t, router); string(m.Body()) != "hi" {
		t.Fatalf("ROUTER got %s", showMsg(m))
	}
	router.Close()
	waitDone(t, p)
	if err := dealer.SendTo(ctxT(t), p, NewMsgString("late")); !errors.Is(err, ErrPeerLost) {
		t.Fatalf("SendTo a gone peer: %v, want ErrPeerLost", err)
	}
	if p.Ready() {
		t.Error("a gone peer is Ready")
	}
	h.check(t, false)
	// Done is closed as the peer goes; Detach follows on the goroutine
	// that ended it.
	waitFor(t, "Detach", func() bool { _, d := h.counts(); return d == 1 })

	other := newSock(t, DEALER)
	if err := other.SendTo(ctxT(t), p, NewMsgString("x")); !errors.Is(err, ErrNoSuchPeer) || !errors.Is(err, ErrNoPeer) {
		t.Errorf("SendTo another socket's peer: %v, want ErrNoSuchPeer (and its old name ErrNoPeer)", err)
	} else if errors.Is(err, ErrNoPeers) {
		t.Errorf("SendTo another socket's peer: %v matches ErrNoPeers, which means no peer at all", err)
	}
	for _, typ := range []Type{PULL, SUB, PUB, REP} {
		s := newSock(t, typ)
		if err := s.SendTo(ctxT(t), p, NewMsgString("x")); !errors.Is(err, ErrState) {
			t.Errorf("SendTo on %s: %v, want ErrState", typ, err)
		}
	}
}

// TestSendToBypassesLB: SendTo puts every message on the chosen peer,
// where Send would have spread them.
func TestSendToBypassesLB(t *testing.T) {
	pullA, pullB := newSock(t, PULL), newSock(t, PULL)
	epA, epB := bind(t, pullA), bind(t, pullB)
	push := newSock(t, PUSH)
	connect(t, push, epA)
	connect(t, push, epB)
	a, b := peerAt(t, push, epA), peerAt(t, push, epB)
	for i := range 10 {
		if err := push.SendTo(ctxT(t), a, NewMsgString(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := push.SendTo(ctxT(t), b, NewMsgString("b")); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if got := recvString(t, pullA); got[0] != fmt.Sprint(i) {
			t.Fatalf("A got %q, want %d", got, i)
		}
	}
	if got := recvString(t, pullB); got[0] != "b" {
		t.Fatalf("B got %q first, want b", got)
	}

	t.Run("ROUTER", func(t *testing.T) {
		router := newSock(t, ROUTER)
		dealer := newSock(t, DEALER)
		ep := bind(t, router)
		connect(t, dealer, ep)
		waitPeers(t, router, 1)
		p := router.PeerList()[0]
		// no routing-id frame: the peer is named by p
		if err := router.SendTo(ctxT(t), p, NewMsgString("one", "two")); err != nil {
			t.Fatal(err)
		}
		if got := recvString(t, dealer); len(got) != 2 || got[0] != "one" || got[1] != "two" {
			t.Fatalf("DEALER got %q", got)
		}
	})

	t.Run("REQ", func(t *testing.T) {
		repA, repB := newSock(t, REP), newSock(t, REP)
		epA, epB := bind(t, repA), bind(t, repB)
		req := newSock(t, REQ)
		connect(t, req, epA)
		connect(t, req, epB)
		for range 3 { // plain Send would alternate A and B
			if err := req.SendTo(ctxT(t), peerAt(t, req, epB), NewMsgString("q")); err != nil {
				t.Fatal(err)
			}
			if got := recvString(t, repB); got[0] != "q" {
				t.Fatalf("REP B got %q", got)
			}
			send(t, repB, "r")
			m, p, err := req.RecvFrom(ctxT(t))
			if err != nil || string(m.Body()) != "r" || p.Endpoint() != epB {
				t.Fatalf("REQ got %s from %v: %v", showMsg(m), p, err)
			}
		}
	})
}

// TestRouterIdentityInAttach: a ROUTER's peer has its routing id when the
// Attach hook sees it, the same id its messages carry.
func TestRouterIdentityInAttach(t *testing.T) {
	ids := make(chan []byte, 1)
	router := newSock(t, ROUTER, WithPeerHooks(PeerHooks{Attach: func(p *Peer) { ids <- p.Identity() }}))
	dealer := newSock(t, DEALER)
	connect(t, dealer, bind(t, router))
	send(t, dealer, "hi")
	m := recvMsg(t, router)
	id := <-ids
	if len(id) != 5 || id[0] != 0 || !bytes.Equal(id, m.Frames[0]) {
		t.Fatalf("identity in Attach %x, routing id %x", id, m.Frames[0])
	}
}

// TestPeerReadyHook: a peer at its send high-water mark is not Ready;
// once it drains, the Ready hook fires for it and it is Ready again.
func TestPeerReadyHook(t *testing.T) {
	h := newHookLog()
	push := newSock(t, PUSH, WithSendHWM(4), WithLinger(0), WithNoBlock(), WithPeerHooks(h.hooks()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ep := "tcp://" + ln.Addr().String()
	connect(t, push, ep)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rawHandshake(t, c, "PULL")
	p := peerAt(t, push, ep)
	payload := make([]byte, 256<<10) // fills the kernel's buffers quickly
	for i := 0; ; i++ {
		err := push.SendTo(ctxT(t), p, NewMsg(payload))
		if errors.Is(err, ErrWouldBlock) {
			break
		}
		if err != nil || i > 1000 {
			t.Fatalf("SendTo to a stalled peer after %d: %v", i, err)
		}
	}
	if p.Ready() {
		t.Fatal("a peer at its HWM is Ready")
	}
	select {
	case q := <-h.ready:
		t.Fatalf("Ready hook for %v before the peer drained", q)
	default:
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(io.Discard, c)
	}()
	select {
	case q := <-h.ready:
		if q != p {
			t.Fatalf("Ready hook for %v, want %v", q, p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no Ready hook after the peer drained")
	}
	waitFor(t, "peer ready", p.Ready)
	c.Close()
	<-done
}

// TestRecvFromSender: RecvFrom names the peer that sent each message.
func TestRecvFromSender(t *testing.T) {
	for _, typ := range []Type{PULL, ROUTER} {
		t.Run(typ.String(), func(t *testing.T) {
			s := newSock(t, typ)
			ep := bind(t, s)
			const n = 3
			for i := range n {
				pt := PUSH
				if typ == ROUTER {
					pt = DEALER
				}
				c := newSock(t, pt, WithIdentity([]byte(fmt.Sprintf("peer%d", i))))
				connect(t, c, ep)
				for range 5 {
					send(t, c, fmt.Sprintf("peer%d", i))
				}
			}
			for range 5 * n {
				m, p, err := s.RecvFrom(ctxT(t))
				if err != nil {
					t.Fatal(err)
				}
				if string(p.Identity()) != string(m.Body()) {
					t.Fatalf("%q came from %v, identity %q", m.Body(), p, p.Identity())
				}
				if typ == ROUTER && string(m.Frames[0]) != string(p.Identity()) {
					t.Fatalf("routing id %q, peer identity %q", m.Frames[0], p.Identity())
				}
			}
		})
	}
}

// TestSendToDoneContext: with a context already done, SendTo tries once:
// it queues when the peer has room and fails with the context's error when
// it has none.
func TestSendToDoneContext(t *testing.T) {
	push := newSock(t, PUSH, WithSendHWM(2), WithLinger(0))
	stalledPeer(t, push, "PULL")
	p := push.PeerList()[0]
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := push.SendTo(done, p, NewMsgString("x")); err != nil {
		t.Fatalf("SendTo with room and a done context: %v", err)
	}
	payload := make([]byte, 256<<10)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = push.SendTo(done, p, NewMsg(payload))
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("SendTo to a full peer with a done context: %v, want context.Canceled", err)
	}
}

// TestPeerHooksAdd: WithPeerHooks adds to the hooks set before it (an
// empty PeerHooks changes nothing), and each hook runs those given
// earlier first.
func TestPeerHooksAdd(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	note := func(s string) {
		mu.Lock()
		calls = append(calls, s)
		mu.Unlock()
	}
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(calls)
	}
	push := newSock(t, PUSH,
		WithPeerHooks(PeerHooks{
			Attach: func(*Peer) { note("attach 1") },
			Detach: func(*Peer, error) { note("detach 1") },
		}),
		WithPeerHooks(PeerHooks{}),
		WithPeerHooks(PeerHooks{
			Attach: func(*Peer) { note("attach 2") },
		}),
		WithPeerHooks(PeerHooks{
			Attach: func(*Peer) { note("attach 3") },
			Detach: func(*Peer, error) { note("detach 3") },
		}))
	ep := bind(t, push)
	pull := newSock(t, PULL)
	if err := pull.Connect(ep); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "attach hooks", func() bool { return len(got()) == 3 })
	pull.Close()
	waitFor(t, "detach hooks", func() bool { return len(got()) == 5 })
	want := []string{"attach 1", "attach 2", "attach 3", "detach 1", "detach 3"}
	if c := got(); !slices.Equal(c, want) {
		t.Fatalf("hooks ran %q, want %q", c, want)
	}
}
