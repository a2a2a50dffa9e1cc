package discovery

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
	"github.com/zpeer/zpeer/internal/udpsock"
	"go.uber.org/goleak"
)

// helperEnv selects the helper-process mode of the test binary: the tests
// re-execute themselves as separate peers (to kill one with SIGKILL, or to
// run one inside a network namespace).
const helperEnv = "ZPEER_DISCOVERY_HELPER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(helperMain(cfg))
	}
	goleak.VerifyTestMain(m)
}

// helperConfig is passed to a helper process as JSON in helperEnv.
type helperConfig struct {
	Service  string `json:"service"`
	Node     string `json:"node"`
	Loopback bool   `json:"loopback"`
	Endpoint string `json:"endpoint"`
	Watch    bool   `json:"watch"`
	// Refresh and Expiry: zero leaves the defaults.
	Refresh time.Duration `json:"refresh"`
	Expiry  time.Duration `json:"expiry"`
	// MaxRun is how long the helper runs at most (default two minutes).
	MaxRun time.Duration `json:"max_run,omitempty"`
	// AlsoLoopback adds a second Announcer and Watcher in the
	// single-machine mode (WithLoopback), and reports the mDNS sockets.
	AlsoLoopback bool `json:"also_loopback"`
}

// helperLine is one line a helper prints on stdout.
type helperLine struct {
	Kind     string `json:"kind"` // ready, up, updated, down, error
	Node     string `json:"node,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Err      string `json:"err,omitempty"`
	// Time is when the event was decided, or when leaving started
	// (Unix nanoseconds; helpers share the machine's clock).
	Time int64 `json:"time,omitempty"`
	// CloseNanos is how long the Announcer and Watcher took to close.
	CloseNanos int64 `json:"close_nanos,omitempty"`
	// OSSockets and StackSockets: UDP sockets on port 5353 as the OS and
	// as StackStats count them (in "ready", with AlsoLoopback).
	OSSockets    int `json:"os_sockets,omitempty"`
	StackSockets int `json:"stack_sockets,omitempty"`
	// In "stats": the counters and the nodes of the peers up.
	Announcer Stats    `json:"announcer,omitzero"`
	Watcher   *Stats   `json:"watcher,omitempty"`
	Stack     Stats    `json:"stack,omitzero"`
	Peers     []string `json:"peers,omitempty"`
}

// helperMain announces (and optionally watches) until stdin is closed, then
// closes gracefully. It exits on its own after MaxRun at most.
func helperMain(raw string) int {
	var cfg helperConfig
	out := json.NewEncoder(os.Stdout)
	var mu sync.Mutex
	emit := func(l helperLine) {
		mu.Lock()
		defer mu.Unlock()
		_ = out.Encode(l)
	}
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		emit(helperLine{Kind: "error", Err: err.Error()})
		return 2
	}
	opts := []Option{WithNodeID(cfg.Node)}
	if cfg.Refresh != 0 {
		opts = append(opts, WithRefresh(cfg.Refresh))
	}
	if cfg.Expiry != 0 {
		opts = append(opts, WithExpiry(cfg.Expiry))
	}
	if cfg.MaxRun == 0 {
		cfg.MaxRun = 2 * time.Minute
	}
	if cfg.Loopback {
		opts = append(opts, WithLoopback())
	}
	started := time.Now()
	a, err := Announce(cfg.Service, "PUB", []string{cfg.Endpoint}, opts...)
	if err != nil {
		emit(helperLine{Kind: "error", Err: err.Error()})
		return 2
	}
	var w *Watcher
	var events <-chan Event
	if cfg.Watch {
		if w, err = NewWatcher(cfg.Service, opts...); err != nil {
			emit(helperLine{Kind: "error", Err: err.Error()})
			return 2
		}
		events = w.Events() // subscribed now; printed after "ready"
	}
	ready := helperLine{Kind: "ready", Node: cfg.Node, Time: started.UnixNano()}
	if cfg.AlsoLoopback {
		lopts := append(opts, WithLoopback())
		la, err := Announce(cfg.Service, "PUB", []string{"tcp://127.0.0.1:5556"}, lopts...)
		if err != nil {
			emit(helperLine{Kind: "error", Err: err.Error()})
			return 2
		}
		defer la.Close()
		lw, err := NewWatcher(cfg.Service, lopts...)
		if err != nil {
			emit(helperLine{Kind: "error", Err: err.Error()})
			return 2
		}
		defer lw.Close()
		n, err := udpsock.Count(mdnsPort)
		if err != nil {
			emit(helperLine{Kind: "error", Err: err.Error()})
			return 2
		}
		ready.OSSockets, ready.StackSockets = n, StackStats().Sockets
	}
	emit(ready)
	// Events are printed after "ready", which readers wait for first.
	done := make(chan struct{})
	go func() {
		defer close(done)
		if events == nil {
			return
		}
		for ev := range events {
			emit(helperLine{Kind: ev.Kind.String(), Node: ev.Peer.Node, Endpoint: ev.Peer.Endpoint(), Reason: ev.Reason,
				Time: ev.Time.UnixNano()})
		}
	}()
	// Each line "stats" on stdin prints the counters and the peers seen
	// (a "stats" line); end of input leaves.
	stdin := make(chan struct{})
	go func() {
		defer close(stdin)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() != "stats" {
				continue
			}
			l := helperLine{Kind: "stats", Node: cfg.Node, Announcer: a.Stats(), Stack: StackStats()}
			if w != nil {
				st := w.Stats()
				l.Watcher = &st
				for _, p := range w.Peers() {
					l.Peers = append(l.Peers, p.Node)
				}
			}
			emit(l)
		}
	}()
	select {
	case <-stdin:
	case <-time.After(cfg.MaxRun):
	}
	// Goodbyes first, as a program shutting down should.
	start := time.Now()
	emit(helperLine{Kind: "leaving", Node: cfg.Node, Time: start.UnixNano()})
	a.Close()
	if w != nil {
		w.Close()
	}
	<-done
	emit(helperLine{Kind: "closed", Node: cfg.Node, CloseNanos: int64(time.Since(start))})
	return 0
}

// helperProc is a running helper process.
type helperProc struct {
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	lines     chan helperLine
	announced time.Time  // when it called Announce
	ready     helperLine // its "ready" line
}

// startHelper runs the test binary as a helper peer, prefixed by wrap
// (e.g. "ip netns exec NS") if given. It waits for the helper's "ready".
// The process is killed at the end of the test if still running.
func startHelper(t testing.TB, cfg helperConfig, wrap ...string) *helperProc {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append(append([]string(nil), wrap...), exe, "-test.run=^$")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, stdin: stdin, lines: make(chan helperLine, 256)}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l helperLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				h.lines <- l
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		for range h.lines { // unblock the reader if nobody read
		}
		<-readerDone
	})
	l := h.next(t, 20*time.Second, func(l helperLine) bool { return l.Kind == "ready" || l.Kind == "error" })
	if l.Kind == "error" {
		t.Fatalf("helper %s: %s", cfg.Node, l.Err)
	}
	h.announced = time.Unix(0, l.Time)
	h.ready = l
	return h
}

// next returns the first line matching ok, failing the test after timeout.
func (h *helperProc) next(t testing.TB, timeout time.Duration, ok func(helperLine) bool) helperLine {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case l, open := <-h.lines:
			if !open {
				t.Fatalf("helper exited while waiting")
			}
			if ok(l) {
				return l
			}
		case <-deadline.C:
			t.Fatalf("helper: no matching line within %v", timeout)
		}
	}
}

// stop closes the helper's stdin (graceful close with goodbyes), waits
// for it to exit and returns when it started leaving.
func (h *helperProc) stop(t testing.TB) time.Time {
	t.Helper()
	h.stdin.Close()
	var leaving time.Time
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for open := true; open; {
		select {
		case l, ok := <-h.lines:
			open = ok
			switch l.Kind {
			case "leaving":
				leaving = time.Unix(0, l.Time)
			case "closed":
				// Close takes about a millisecond; the bound is loose
				// for loaded CI machines.
				if d := time.Duration(l.CloseNanos); d > 5*time.Second {
					t.Errorf("helper %s took %v to close", l.Node, d)
				}
			}
		case <-deadline.C:
			_ = h.cmd.Process.Kill()
			t.Errorf("helper did not exit within 20s of stdin closing; killed")
			open = false
		}
	}
	if err := h.cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
	return leaving
}

// kill kills the helper with SIGKILL: no goodbye.
func (h *helperProc) kill(t testing.TB) {
	t.Helper()
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	_ = h.cmd.Wait()
}

// uniqueService returns a service name no other test (or test run) uses:
// "zt" and 10 random hex digits.
func uniqueService(t testing.TB) string {
	t.Helper()
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "zt" + hex.EncodeToString(b[:])
}

// uniqueNode returns a node id for a test peer.
func uniqueNode(t testing.TB, name string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return name + "-" + hex.EncodeToString(b[:])
}

// Test timings on loopback: fast refresh, short expiry.
const (
	testRefresh = 200 * time.Millisecond
	testExpiry  = time.Second
)

func loopbackOpts(node string) []Option {
	return []Option{WithLoopback(), WithNodeID(node), WithRefresh(testRefresh), WithExpiry(testExpiry)}
}

// waitEvent returns the first event from ch that matches ok, failing the
// test after timeout.
func waitEvent(t testing.TB, ch <-chan Event, timeout time.Duration, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("event channel closed while waiting")
			}
			if ok(ev) {
				return ev
			}
		case <-deadline.C:
			t.Fatalf("no matching event within %v", timeout)
			return Event{}
		}
	}
}

// eventually polls cond every 10 ms until it holds, failing the test after
// timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, timeout, what, cond)
}

// nodesOf returns the sorted node ids of peers.
func nodesOf(peers []Peer) string {
	var ns []string
	for _, p := range peers {
		ns = append(ns, p.Node)
	}
	return fmt.Sprint(ns)
}

var _ = strings.TrimSpace
