package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
)

// testPeer is an Announcer and a Watcher with one node id, on loopback.
type testPeer struct {
	node string
	ep   string
	a    *Announcer
	w    *Watcher
}

func startPeer(t *testing.T, svc, node, ep string, extra ...Option) *testPeer {
	t.Helper()
	opts := append(loopbackOpts(node), extra...)
	a, err := Announce(svc, "PUB", []string{ep}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(svc, opts...)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	p := &testPeer{node: node, ep: ep, a: a, w: w}
	t.Cleanup(func() { p.close() })
	return p
}

func (p *testPeer) close() {
	p.w.Close()
	p.a.Close()
}

func TestLoopbackPeersFindEachOther(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 5} {
		t.Run(fmt.Sprintf("%d peers", n), func(t *testing.T) {
			t.Parallel()
			svc := uniqueService(t)
			var peers []*testPeer
			want := map[string]string{} // node -> endpoint
			for i := 0; i < n; i++ {
				node := uniqueNode(t, fmt.Sprintf("p%d", i))
				ep := fmt.Sprintf("tcp://127.0.0.1:%d", 40000+i)
				peers = append(peers, startPeer(t, svc, node, ep, WithMeta(map[string]string{"i": fmt.Sprint(i)})))
				want[node] = ep
			}
			for i, p := range peers {
				eventually(t, 5*time.Second, fmt.Sprintf("peer %d to see the %d others", i, n-1), func() bool {
					return len(p.w.Peers()) == n-1
				})
				for _, q := range p.w.Peers() {
					if q.Node == p.node {
						t.Errorf("peer %d sees itself", i)
					}
					if want[q.Node] != q.Endpoint() || q.Type != "PUB" || q.Source != "mdns" || q.Service != svc {
						t.Errorf("peer %d sees %+v", i, q)
					}
					if q.Meta["i"] == "" {
						t.Errorf("peer %d: metadata missing: %v", i, q.Meta)
					}
				}
			}
		})
	}
}

func TestLoopbackGracefulLeave(t *testing.T) {
	t.Parallel()
	svc := uniqueService(t)
	w, err := NewWatcher(svc, loopbackOpts(uniqueNode(t, "w"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	node := uniqueNode(t, "a")
	a, err := Announce(svc, "REP", []string{"tcp://127.0.0.1:41000"}, loopbackOpts(node)...)
	if err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, w.Events(), 5*time.Second, func(e Event) bool { return e.Kind == PeerUp })
	if ev.Peer.Node != node || ev.Peer.Type != "REP" || ev.Peer.Endpoint() != "tcp://127.0.0.1:41000" {
		t.Fatalf("up: %+v", ev.Peer)
	}
	start := time.Now()
	a.Close()
	ev = waitEvent(t, w.Events(), 5*time.Second, func(e Event) bool { return e.Kind == PeerDown })
	if took := time.Since(start); ev.Reason != ReasonGoodbye || took > time.Second {
		t.Fatalf("down after %v, reason %q; want goodbye under 1s", took, ev.Reason)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := a.SetMeta(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetMeta after Close: %v, want ErrClosed", err)
	}
}

func TestLoopbackKilledPeerExpires(t *testing.T) {
	t.Parallel()
	svc := uniqueService(t)
	w, err := NewWatcher(svc, loopbackOpts(uniqueNode(t, "w"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	node := uniqueNode(t, "killed")
	h := startHelper(t, helperConfig{Service: svc, Node: node, Loopback: true, Endpoint: "tcp://127.0.0.1:41001",
		Refresh: testRefresh, Expiry: testExpiry})
	waitEvent(t, w.Events(), 5*time.Second, func(e Event) bool { return e.Kind == PeerUp && e.Peer.Node == node })
	start := time.Now()
	h.kill(t)
	ev := waitEvent(t, w.Events(), 5*time.Second, func(e Event) bool { return e.Kind == PeerDown })
	took := time.Since(start)
	if ev.Reason != ReasonExpired || ev.Peer.Node != node {
		t.Fatalf("down: %+v reason %q", ev.Peer, ev.Reason)
	}
	// Documented: between expiry and expiry plus one check period after
	// the last answer; the last answer came at most one refresh before
	// the kill. The upper bound leaves room for a loaded CI machine.
	if took < testExpiry-testRefresh || took > testExpiry+time.Second {
		t.Fatalf("killed peer reported down after %v; expiry is %v", took, testExpiry)
	}
	t.Logf("killed peer reported down %v after SIGKILL (expiry %v)", took, testExpiry)
}

func TestLoopbackUpdates(t *testing.T) {
	t.Parallel()
	svc := uniqueService(t)
	w, err := NewWatcher(svc, loopbackOpts(uniqueNode(t, "w"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	opts := append(loopbackOpts(uniqueNode(t, "a")), WithMeta(map[string]string{"v": "1"}))
	a, err := Announce(svc, "PUSH", []string{"tcp://*:41002"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ev := waitEvent(t, w.Events(), 5*time.Second, func(e Event) bool { return e.Kind == PeerUp })
	// A wildcard host becomes the announced address.
	if ev.Peer.Endpoint() != "tcp://127.0.0.1:41002" || ev.Peer.Meta["v"] != "1" {
		t.Fatalf("up: %+v", ev.Peer)
	}
	if err := a.SetMeta(map[string]string{"v": "2", "zone": "b"}); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, w.Events(), 2*time.Second, func(e Event) bool { return e.Kind == PeerUpdated })
	if !maps.Equal(ev.Peer.Meta, map[string]string{"v": "2", "zone": "b"}) {
		t.Fatalf("updated meta: %v", ev.Peer.Meta)
	}
	if err := a.SetEndpoints("tcp://127.0.0.1:41003", "ipc:///tmp/zpeer-test.sock"); err != nil {
		t.Fatal(err)
	}
	ev = waitEvent(t, w.Events(), 2*time.Second, func(e Event) bool { return e.Kind == PeerUpdated })
	if !slices.Equal(ev.Peer.Endpoints, []string{"tcp://127.0.0.1:41003", "ipc:///tmp/zpeer-test.sock"}) {
		t.Fatalf("updated endpoints: %v", ev.Peer.Endpoints)
	}
	if err := a.SetMeta(map[string]string{"node": "x"}); !errors.Is(err, ErrInvalidMeta) {
		t.Fatalf("reserved key: %v", err)
	}
}

func TestLoopbackIgnoresOwnNode(t *testing.T) {
	t.Parallel()
	svc := uniqueService(t)
	self := uniqueNode(t, "self")
	w, err := NewWatcher(svc, loopbackOpts(self)...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	own, err := Announce(svc, "PUB", []string{"tcp://127.0.0.1:41004"}, loopbackOpts(self)...)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	other := uniqueNode(t, "other")
	o, err := Announce(svc, "PUB", []string{"tcp://127.0.0.1:41005"}, loopbackOpts(other)...)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	waitEvent(t, w.Events(), 5*time.Second, func(e Event) bool { return e.Kind == PeerUp && e.Peer.Node == other })
	// Our own node announces a change, then the other one does: once the
	// watcher reports the second, it has handled the first.
	if err := own.SetMeta(map[string]string{"k": "1"}); err != nil {
		t.Fatal(err)
	}
	if err := o.SetMeta(map[string]string{"k": "1"}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, w.Events(), 5*time.Second, func(e Event) bool { return e.Kind == PeerUpdated && e.Peer.Node == other })
	for _, p := range w.Peers() {
		if p.Node == self {
			t.Fatalf("watcher reports its own announcement: %+v", p)
		}
	}
	if got := nodesOf(w.Peers()); got != fmt.Sprint([]string{other}) {
		t.Fatalf("peers %s", got)
	}
}

func TestReportUnreachable(t *testing.T) {
	t.Parallel()
	svc := uniqueService(t)
	// A long expiry: only ReportUnreachable can bring the peer down fast.
	opts := []Option{WithLoopback(), WithNodeID(uniqueNode(t, "w")), WithRefresh(testRefresh),
		WithExpiry(time.Minute), WithUnreachableTimeout(500 * time.Millisecond)}
	w, err := NewWatcher(svc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	live, err := Announce(svc, "PULL", []string{"tcp://127.0.0.1:41006"}, loopbackOpts(uniqueNode(t, "live"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead := uniqueNode(t, "dead")
	h := startHelper(t, helperConfig{Service: svc, Node: dead, Loopback: true, Endpoint: "tcp://127.0.0.1:41007",
		Refresh: testRefresh, Expiry: testExpiry})
	eventually(t, 5*time.Second, "both peers up", func() bool { return len(w.Peers()) == 2 })
	h.kill(t)
	start := time.Now()
	w.ReportUnreachable("tcp://127.0.0.1:41007")
	w.ReportUnreachable("tcp://127.0.0.1:41006") // alive: mDNS confirms it
	ev := waitEvent(t, w.Events(), 5*time.Second, func(e Event) bool { return e.Kind == PeerDown })
	took := time.Since(start)
	// The timeout is 500 ms and the expiry a minute; 2 s leaves room for a
	// loaded machine.
	if ev.Peer.Node != dead || ev.Reason != ReasonUnreachable || took > 2*time.Second {
		t.Fatalf("down %+v reason %q after %v", ev.Peer, ev.Reason, took)
	}
	// The live peer survives its unreachable timeout.
	deadline := time.Now().Add(time.Second)
	eventually(t, 3*time.Second, "the unreachable timeout of the live peer to pass", func() bool {
		return time.Now().After(deadline)
	})
	if got := w.Peers(); len(got) != 1 || got[0].Endpoint() != "tcp://127.0.0.1:41006" {
		t.Fatalf("peers after ReportUnreachable on a live one: %v", got)
	}
}

func TestTouchPostponesExpiry(t *testing.T) {
	t.Parallel()
	svc := uniqueService(t)
	w, err := NewWatcher(svc, loopbackOpts(uniqueNode(t, "w"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	node := uniqueNode(t, "touched")
	h := startHelper(t, helperConfig{Service: svc, Node: node, Loopback: true, Endpoint: "tcp://127.0.0.1:41008",
		Refresh: testRefresh, Expiry: testExpiry})
	events := w.Events()
	waitEvent(t, events, 5*time.Second, func(e Event) bool { return e.Kind == PeerUp })
	h.kill(t)
	// The socket layer still hears heartbeats for twice the expiry.
	killed := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tk := time.NewTicker(testExpiry / 5)
	defer tk.Stop()
	for time.Since(killed) < 2*testExpiry {
		w.Touch("tcp://127.0.0.1:41008")
		select {
		case ev := <-events:
			t.Fatalf("event while touched: %v %q", ev.Kind, ev.Reason)
		case <-tk.C:
		case <-ctx.Done():
		}
	}
	ev := waitEvent(t, events, 3*testExpiry, func(e Event) bool { return e.Kind == PeerDown })
	if ev.Reason != ReasonExpired {
		t.Fatalf("reason %q", ev.Reason)
	}
}

func TestSubscribeStartsWithKnownPeers(t *testing.T) {
	t.Parallel()
	svc := uniqueService(t)
	w, err := NewWatcher(svc, loopbackOpts(uniqueNode(t, "w"))...)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Announce(svc, "ROUTER", []string{"tcp://127.0.0.1:41009"}, loopbackOpts(uniqueNode(t, "a"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	eventually(t, 5*time.Second, "the peer", func() bool { return len(w.Peers()) == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	sub := w.Subscribe(ctx)
	ev := waitEvent(t, sub, time.Second, func(Event) bool { return true })
	if ev.Kind != PeerUp || ev.Peer.Type != "ROUTER" {
		t.Fatalf("first event %v %+v", ev.Kind, ev.Peer)
	}
	cancel()
	eventually(t, time.Second, "the subscription to close", func() bool {
		select {
		case _, ok := <-sub:
			return !ok
		default:
			return false
		}
	})
	events := w.Events()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for range events {
	}
	if _, ok := <-w.Subscribe(context.Background()); ok {
		t.Fatal("Subscribe after Close delivered an event")
	}
}

// A Watcher with a logger at info level logs "peer up" and "peer down"
// with the events' fields.
func TestWatcherLogsPeerEvents(t *testing.T) {
	t.Parallel()
	svc := uniqueService(t)
	logs := &testutil.SyncBuffer{}
	w, err := NewWatcher(svc, append(loopbackOpts(uniqueNode(t, "w")), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	node := uniqueNode(t, "a")
	a, err := Announce(svc, "REP", []string{"tcp://127.0.0.1:41001"}, loopbackOpts(node)...)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a peer up line", func() bool {
		return strings.Contains(logs.String(), `level=INFO msg="peer up" service=`+svc+` instance=`)
	})
	if l := logs.String(); !strings.Contains(l, "node="+node) || !strings.Contains(l, "endpoints=[tcp://127.0.0.1:41001]") {
		t.Errorf("peer up line: %q", l)
	}
	a.Close()
	eventually(t, 5*time.Second, "a peer down line", func() bool {
		return strings.Contains(logs.String(), `level=INFO msg="peer down" service=`+svc+` instance=`) &&
			strings.Contains(logs.String(), "reason="+ReasonGoodbye)
	})
}
