package discovery

import (
	"fmt"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/harness/netns"
)

// newLab builds a lab of n hosts (network namespaces on a bridge), or skips
// the test when that is impossible here (not root, no ip command).
func newLab(t testing.TB, n int) *netns.Lab {
	t.Helper()
	if err := netns.Check(); err != nil {
		t.Skipf("skipping multi-host test: %v (CI runs it as root)", err)
	}
	lab, err := netns.New(n)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the helpers are stopped.
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	return lab
}

// collect waits until the helper has printed a line matching each of
// wants, in any order.
func collect(t *testing.T, h *helperProc, timeout time.Duration, what string, wants ...func(helperLine) bool) {
	t.Helper()
	left := append([]func(helperLine) bool(nil), wants...)
	deadline := time.Now().Add(timeout)
	for len(left) > 0 {
		rest := time.Until(deadline)
		if rest <= 0 {
			t.Fatalf("%s: %d of %d events missing after %v", what, len(left), len(wants), timeout)
		}
		l := h.next(t, rest, func(l helperLine) bool {
			for _, w := range left {
				if w(l) {
					return true
				}
			}
			return false
		})
		for i, w := range left {
			if w(l) {
				left = append(left[:i], left[i+1:]...)
				break
			}
		}
	}
}

func event(kind, node, endpoint, reason string) func(helperLine) bool {
	return func(l helperLine) bool {
		return l.Kind == kind && l.Node == node && (endpoint == "" || l.Endpoint == endpoint) &&
			(reason == "" || l.Reason == reason)
	}
}

// TestMultiHost runs three peers on three "hosts" (network namespaces on
// one bridge), in the default mode: every multicast interface (each host's
// eth0), wildcard endpoints.
func TestMultiHost(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 3)
	svc := uniqueService(t)
	const expiry = 1500 * time.Millisecond
	var hs []*helperProc
	var nodes []string
	for i := range lab.Hosts {
		node := uniqueNode(t, fmt.Sprintf("h%d", i+1))
		nodes = append(nodes, node)
		hs = append(hs, startHelper(t, helperConfig{Service: svc, Node: node, Endpoint: "tcp://*:5555", Watch: true,
			Refresh: testRefresh, Expiry: expiry}, lab.Command(i)...))
	}
	ep := func(i int) string { return "tcp://" + lab.Hosts[i].Addr + ":5555" }
	others := func(i int, kind, reason string) []func(helperLine) bool {
		var out []func(helperLine) bool
		for j := range hs {
			if j != i {
				out = append(out, event(kind, nodes[j], ep(j), reason))
			}
		}
		return out
	}
	for i, h := range hs {
		collect(t, h, 10*time.Second, fmt.Sprintf("host %d discovering the others", i+1), others(i, "up", "")...)
	}

	// Cut host 3 off: the others report it down after the expiry, and it
	// reports them down.
	cut := time.Now()
	if err := lab.SetLink(2, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		collect(t, hs[i], expiry+5*time.Second, fmt.Sprintf("host %d losing host 3", i+1),
			event("down", nodes[2], ep(2), ReasonExpired))
	}
	collect(t, hs[2], expiry+5*time.Second, "host 3 losing the others", others(2, "down", ReasonExpired)...)
	t.Logf("cut-off host reported down after %v (expiry %v)", time.Since(cut), expiry)

	// Link back: everyone finds everyone again at the next refresh.
	back := time.Now()
	if err := lab.SetLink(2, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		collect(t, hs[i], 10*time.Second, fmt.Sprintf("host %d finding host 3 again", i+1), event("up", nodes[2], ep(2), ""))
	}
	collect(t, hs[2], 10*time.Second, "host 3 finding the others again", others(2, "up", "")...)
	t.Logf("host back up after %v", time.Since(back))

	// Host 2 leaves gracefully: goodbyes, seen at once.
	left := hs[1].stop(t)
	for _, i := range []int{0, 2} {
		var seen time.Time
		collect(t, hs[i], 2*time.Second, fmt.Sprintf("host %d seeing host 2 leave", i+1), func(l helperLine) bool {
			if event("down", nodes[1], ep(1), ReasonGoodbye)(l) {
				seen = time.Unix(0, l.Time)
				return true
			}
			return false
		})
		took := seen.Sub(left)
		t.Logf("host %d saw host 2's graceful leave after %v", i+1, took)
		if took > time.Second {
			t.Errorf("graceful leave across hosts seen after %v", took)
		}
	}
	hs[0].stop(t)
	hs[2].stop(t)
}

// TestMultiHostSocketPerInterface: a process that uses two interfaces (an
// Announcer and a Watcher in the default mode on its host's eth0, another
// pair with WithLoopback on lo) holds exactly two mDNS sockets, one per
// interface, and still finds the other host.
func TestMultiHostSocketPerInterface(t *testing.T) {
	t.Parallel()
	lab := newLab(t, 2)
	svc := uniqueService(t)
	n1, n2 := uniqueNode(t, "h1"), uniqueNode(t, "h2")
	cfg := helperConfig{Service: svc, Node: n1, Endpoint: "tcp://*:5555", Watch: true, Refresh: testRefresh,
		Expiry: 1500 * time.Millisecond, AlsoLoopback: true}
	h1 := startHelper(t, cfg, lab.Command(0)...)
	if l := h1.ready; l.OSSockets != 2 || l.StackSockets != 2 {
		t.Fatalf("a process on eth0 and lo holds %d mDNS sockets (stack: %d); want 2", l.OSSockets, l.StackSockets)
	}
	h2 := startHelper(t, helperConfig{Service: svc, Node: n2, Endpoint: "tcp://*:5555", Refresh: testRefresh,
		Expiry: 1500 * time.Millisecond}, lab.Command(1)...)
	collect(t, h1, 10*time.Second, "host 1 finding host 2", event("up", n2, "tcp://"+lab.Hosts[1].Addr+":5555", ""))
	h2.stop(t)
	h1.stop(t)
}
