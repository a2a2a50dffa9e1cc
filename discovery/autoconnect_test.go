package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeConnector records Connect and Disconnect calls.
type fakeConnector struct {
	mu    sync.Mutex
	calls []string
	conns map[string]bool
	fail  map[string]int // endpoint -> Connects left to fail
}

func newFakeConnector() *fakeConnector {
	return &fakeConnector{conns: make(map[string]bool), fail: make(map[string]int)}
}

func (f *fakeConnector) Connect(ep string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "connect "+ep)
	if f.fail[ep] > 0 {
		f.fail[ep]--
		return errors.New("refused")
	}
	f.conns[ep] = true
	return nil
}

func (f *fakeConnector) Disconnect(ep string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "disconnect "+ep)
	delete(f.conns, ep)
	return nil
}

func (f *fakeConnector) connected() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for ep := range f.conns {
		out = append(out, ep)
	}
	slices.Sort(out)
	return out
}

func (f *fakeConnector) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// nopSource feeds nothing: tests drive the watcher's sink directly.
type nopSource struct{}

func (nopSource) run(ctx context.Context) { <-ctx.Done() }
func (nopSource) refresh(bool)            {}

func newManualWatcher(t *testing.T) *Watcher {
	t.Helper()
	o, err := buildOptions([]Option{WithNodeID("me"), WithExpiry(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	w := newWatcher(o)
	w.service = "svc"
	w.sources = []source{nopSource{}}
	w.start()
	t.Cleanup(func() { w.Close() })
	return w
}

func mpeer(key, typ string, eps ...string) Peer {
	return Peer{Key: "mdns:" + key, Source: "mdns", Node: key, Type: typ, Endpoints: eps}
}

// runAutoConnect starts AutoConnect and returns a function that stops it
// and returns its error.
func runAutoConnect(t *testing.T, w *Watcher, c Connector, typ string) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- AutoConnect(ctx, w, c, typ) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func wantConnected(t *testing.T, f *fakeConnector, want ...string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, 2*time.Second, fmt.Sprintf("connected to %v", want), func() bool {
		return slices.Equal(f.connected(), want)
	})
}

func TestAutoConnectRoles(t *testing.T) {
	t.Parallel()
	types := []string{"REQ", "REP", "DEALER", "ROUTER", "PUB", "SUB", "PUSH", "PULL"}
	for _, local := range types {
		t.Run(local, func(t *testing.T) {
			t.Parallel()
			w := newManualWatcher(t)
			f := newFakeConnector()
			stop := runAutoConnect(t, w, f, local)
			var want []string
			now := time.Now()
			for i, remote := range types {
				ep := fmt.Sprintf("tcp://127.0.0.1:%d", 42000+i)
				w.seen("mdns", mpeer(remote, remote, ep), 1, remote, now)
				if Compatible(local, remote) {
					want = append(want, ep)
				}
			}
			if len(want) == 0 {
				t.Fatalf("%s is compatible with nothing", local)
			}
			wantConnected(t, f, want...)
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("AutoConnect returned %v, want context.Canceled", err)
			}
			if got := f.connected(); len(got) != 0 {
				t.Fatalf("still connected after AutoConnect returned: %v", got)
			}
		})
	}
}

func TestAutoConnectLifecycle(t *testing.T) {
	t.Parallel()
	w := newManualWatcher(t)
	now := time.Now()
	// Known before AutoConnect starts: connected from the snapshot.
	w.seen("mdns", mpeer("a", "PUB", "tcp://127.0.0.1:1"), 1, "a1", now)
	f := newFakeConnector()
	runAutoConnect(t, w, f, "SUB")
	wantConnected(t, f, "tcp://127.0.0.1:1")

	// A new endpoint: disconnect the old one, connect the new one.
	w.seen("mdns", mpeer("a", "PUB", "tcp://127.0.0.1:2"), 2, "a2", now)
	wantConnected(t, f, "tcp://127.0.0.1:2")

	// Two peers at one endpoint share a connection.
	w.seen("mdns", mpeer("b", "PUB", "tcp://127.0.0.1:2"), 1, "b1", now)
	w.seen("mdns", mpeer("c", "PUB", "tcp://127.0.0.1:3"), 1, "c1", now)
	wantConnected(t, f, "tcp://127.0.0.1:2", "tcp://127.0.0.1:3")
	w.gone("mdns:a", 2, now)
	w.gone("mdns:c", 1, now)
	wantConnected(t, f, "tcp://127.0.0.1:2")
	w.gone("mdns:b", 1, now)
	wantConnected(t, f)

	want := []string{"connect tcp://127.0.0.1:1", "disconnect tcp://127.0.0.1:1", "connect tcp://127.0.0.1:2",
		"connect tcp://127.0.0.1:3", "disconnect tcp://127.0.0.1:3", "disconnect tcp://127.0.0.1:2"}
	if got := f.log(); !slices.Equal(got, want) {
		t.Fatalf("calls:\n%q\nwant\n%q", got, want)
	}

	// A peer that turns incompatible is disconnected.
	w.seen("mdns", mpeer("d", "PUB", "tcp://127.0.0.1:4"), 1, "d1", now)
	wantConnected(t, f, "tcp://127.0.0.1:4")
	w.seen("mdns", mpeer("d", "PUSH", "tcp://127.0.0.1:4"), 2, "d2", now)
	wantConnected(t, f)
}

func TestAutoConnectRetriesFailedConnect(t *testing.T) {
	t.Parallel()
	w := newManualWatcher(t)
	f := newFakeConnector()
	f.fail["tcp://127.0.0.1:5"] = 1
	runAutoConnect(t, w, f, "PUSH")
	w.seen("mdns", mpeer("a", "PULL", "tcp://127.0.0.1:5"), 1, "a", time.Now())
	eventually(t, 3*AutoConnectRetry, "the retried connect", func() bool {
		return slices.Equal(f.connected(), []string{"tcp://127.0.0.1:5"})
	})
	if got := f.log(); len(got) != 2 {
		t.Fatalf("calls %q, want one failed and one good connect", got)
	}
}

func TestAutoConnectEnds(t *testing.T) {
	t.Parallel()
	w := newManualWatcher(t)
	f := newFakeConnector()
	errc := make(chan error, 1)
	go func() { errc <- AutoConnect(context.Background(), w, f, "REQ") }()
	w.seen("mdns", mpeer("a", "REP", "tcp://127.0.0.1:6"), 1, "a", time.Now())
	wantConnected(t, f, "tcp://127.0.0.1:6")
	w.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("AutoConnect after Watcher.Close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("AutoConnect did not return when the watcher closed")
	}
	if got := f.connected(); len(got) != 0 {
		t.Fatalf("still connected: %v", got)
	}
	if err := AutoConnect(context.Background(), w, f, "NOPE"); !errors.Is(err, ErrInvalidSocketType) {
		t.Fatalf("bad type: %v", err)
	}
}

func TestWatcherSinkRules(t *testing.T) {
	t.Parallel()
	w := newManualWatcher(t)
	ev := w.Events()
	now := time.Now()
	next := func() Event { return waitEvent(t, ev, time.Second, func(Event) bool { return true }) }

	w.seen("mdns", mpeer("me", "PUB", "tcp://h:1"), 1, "x", now) // own node: ignored
	w.seen("mdns", mpeer("a", "PUB", "tcp://h:1"), 2, "v2", now)
	if e := next(); e.Kind != PeerUp || e.Peer.Node != "a" {
		t.Fatalf("%v %+v", e.Kind, e.Peer)
	}
	w.seen("mdns", mpeer("a", "PUB", "tcp://h:9"), 1, "v1", now) // older revision
	w.gone("mdns:a", 1, now)                                     // goodbye of an older revision
	w.seen("mdns", mpeer("a", "PUB", "tcp://h:2"), 3, "v3", now)
	if e := next(); e.Kind != PeerUpdated || e.Peer.Endpoint() != "tcp://h:2" {
		t.Fatalf("%v %+v", e.Kind, e.Peer)
	}
	w.gone("mdns:a", 3, now)
	if e := next(); e.Kind != PeerDown || e.Reason != ReasonGoodbye {
		t.Fatalf("%v %q", e.Kind, e.Reason)
	}
	// An answer sent before the goodbye and handled after it does not
	// bring the peer back; a new revision does.
	w.seen("mdns", mpeer("a", "PUB", "tcp://h:2"), 3, "v3", now.Add(time.Millisecond))
	w.seen("mdns", mpeer("a", "PUB", "tcp://h:2"), 4, "v4", now.Add(2*time.Millisecond))
	if e := next(); e.Kind != PeerUp || e.Peer.Endpoint() != "tcp://h:2" {
		t.Fatalf("%v %+v", e.Kind, e.Peer)
	}
	// Listing sources: up, updated, removed.
	w.replace("list", []Peer{{Key: "srv:x:1", Type: "PUB", Endpoints: []string{"tcp://x:1"}}}, false, now)
	if e := next(); e.Kind != PeerUp || e.Peer.Key != "srv:x:1" {
		t.Fatalf("%v %+v", e.Kind, e.Peer)
	}
	w.replace("list", []Peer{{Key: "srv:x:1", Type: "PUB", Endpoints: []string{"tcp://x:1"}, Meta: map[string]string{"k": "v"}}}, false, now)
	if e := next(); e.Kind != PeerUpdated || e.Peer.Meta["k"] != "v" {
		t.Fatalf("%v %+v", e.Kind, e.Peer)
	}
	w.replace("list", nil, false, now)
	if e := next(); e.Kind != PeerDown || e.Reason != ReasonRemoved {
		t.Fatalf("%v %q", e.Kind, e.Reason)
	}
}
