package discovery

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/harness/fleet"
)

// fleetEnv turns TestFleet into the measurement of docs/scaling.md:
// ZPEER_FLEET=8,16,32,64 runs each size twice, with one watcher and with
// every host watching (about a minute per run):
//
//	ZPEER_FLEET=8,16,32,64 go test -count=1 -run TestFleet -v -timeout 30m ./discovery/
//
// Without it, TestFleet runs 32 hosts, every one watching.
const fleetEnv = "ZPEER_FLEET"

// Fleet timings. The traffic window opens fleetSettle after the last host
// started (by then its browse queries, at 1, 2 and 4 s after its start,
// have reached the refresh period) and lasts two record lifetimes.
const (
	fleetSettle = 10 * time.Second
	fleetWindow = 2 * DefaultTTL
)

// TestFleet is discovery's proof on a fleet of hosts (network namespaces
// on one bridge), each running a peer with the default timings: an
// Announcer and, on every host (or on one), a Watcher. It checks that
// discovery converges, that a host that joins is seen by all within 2 s,
// that the mDNS traffic into the bridge stays within N/2+5 packets/s with
// every host watching, that no peer is reported down while all are
// alive, and that a peer killed without a goodbye is reported down by
// every watcher within its records' TTL (15 s). It logs one FLEET line of
// figures per run.
func TestFleet(t *testing.T) {
	sizes, modes := []int{32}, []bool{true}
	if v := os.Getenv(fleetEnv); v != "" {
		sizes, modes = nil, []bool{false, true}
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 4 || n > 199 {
				t.Fatalf("%s=%q: want sizes of 4 to 199 hosts, comma-separated", fleetEnv, v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		for _, all := range modes {
			watching := "one"
			if all {
				watching = "all"
			}
			t.Run(fmt.Sprintf("%d-hosts-%s-watching", n, watching), func(t *testing.T) { runFleet(t, n, all) })
		}
	}
}

// fleetHost is one host's peer process.
type fleetHost struct {
	p     *fleet.Proc
	node  string
	watch bool
	ready time.Time // when it called Announce
}

// await reads the host's events until each of nodes has had one of kind
// (and reason, if given), and returns when each came.
func (h *fleetHost) await(deadline time.Time, kind, reason string, nodes ...string) (map[string]time.Time, error) {
	left := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		left[n] = true
	}
	got := make(map[string]time.Time, len(nodes))
	for len(left) > 0 {
		raw, err := h.p.Wait(time.Until(deadline), func(raw []byte) bool {
			var l helperLine
			return json.Unmarshal(raw, &l) == nil && l.Kind == kind && left[l.Node] && (reason == "" || l.Reason == reason)
		})
		if err != nil {
			var missing []string
			for n := range left {
				missing = append(missing, n)
			}
			return got, fmt.Errorf("host %s: %s events missing for %v: %w", h.node, kind, missing, err)
		}
		var l helperLine
		_ = json.Unmarshal(raw, &l)
		delete(left, l.Node)
		got[l.Node] = time.Unix(0, l.Time)
	}
	return got, nil
}

// durations summarises a sample: least, median and most.
type durations []time.Duration

func (d durations) String() string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	return fmt.Sprintf("min %v p50 %v max %v", r(s[0]), r(s[(len(s)-1)/2]), r(s[len(s)-1]))
}

func (d durations) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

func runFleet(t *testing.T, n int, allWatch bool) {
	// One host more than n: it joins once the others have converged.
	f := fleet.New(t, n+1)
	tr, err := f.CountUDP(mdnsPort)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	svc := uniqueService(t)
	hosts := make([]*fleetHost, n+1)
	for i := range hosts {
		hosts[i] = &fleetHost{node: uniqueNode(t, fmt.Sprintf("f%d", i)), watch: allWatch || i == 0}
	}
	command := func(i int) fleet.Command {
		raw, _ := json.Marshal(helperConfig{Service: svc, Node: hosts[i].node, Endpoint: "tcp://*:5555",
			Watch: hosts[i].watch, MaxRun: 10 * time.Minute})
		c, err := fleet.Self(helperEnv + "=" + string(raw))
		if err != nil {
			t.Error(err)
		}
		return c
	}
	ready := func(p *fleet.Proc) error {
		raw, err := p.Wait(60*time.Second, func(raw []byte) bool {
			var l helperLine
			return json.Unmarshal(raw, &l) == nil && (l.Kind == "ready" || l.Kind == "error")
		})
		if err != nil {
			return err
		}
		var l helperLine
		_ = json.Unmarshal(raw, &l)
		if l.Kind == "error" {
			return fmt.Errorf("host %d: %s", p.Host, l.Err)
		}
		hosts[p.Host].p, hosts[p.Host].ready = p, time.Unix(0, l.Time)
		return nil
	}

	// Start n hosts, eight at a time.
	began := time.Now()
	if _, err := f.StartEach(n, 8, command, ready); err != nil {
		t.Fatal(err)
	}
	first, last := hosts[0].ready, hosts[0].ready
	for _, h := range hosts[:n] {
		first, last = minTime(first, h.ready), maxTime(last, h.ready)
	}
	nodes := func(hs []*fleetHost, except *fleetHost) []string {
		var out []string
		for _, h := range hs {
			if h != except {
				out = append(out, h.node)
			}
		}
		return out
	}
	watchers := func(hs []*fleetHost) []*fleetHost {
		var out []*fleetHost
		for _, h := range hs {
			if h.watch {
				out = append(out, h)
			}
		}
		return out
	}

	// Convergence: every watcher sees every other host.
	var converged time.Time
	deadline := time.Now().Add(30 * time.Second)
	for _, h := range watchers(hosts[:n]) {
		got, err := h.await(deadline, "up", "", nodes(hosts[:n], h)...)
		if err != nil {
			t.Error(err)
			logStats(t, hosts[:n])
			t.FailNow()
		}
		for _, at := range got {
			converged = maxTime(converged, at)
		}
	}
	t.Logf("%d hosts started in %v; converged %v after the last start", n, last.Sub(first).Round(time.Millisecond),
		converged.Sub(last).Round(time.Millisecond))
	startup := tr.Count()

	// A host joins: every watcher sees it within 2 s, from its first
	// announcement.
	joiner := hosts[n]
	if err := func() error {
		p, err := f.Start(n, command(n))
		if err != nil {
			return err
		}
		return ready(p)
	}(); err != nil {
		t.Fatal(err)
	}
	var join durations
	deadline = time.Now().Add(10 * time.Second)
	for _, h := range watchers(hosts[:n]) {
		got, err := h.await(deadline, "up", "", joiner.node)
		if err != nil {
			t.Fatal(err)
		}
		join = append(join, got[joiner.node].Sub(joiner.ready))
	}
	if joiner.watch {
		if _, err := joiner.await(time.Now().Add(10*time.Second), "up", "", nodes(hosts[:n], nil)...); err != nil {
			t.Fatal(err)
		}
	}
	if m := join.max(); m > 2*time.Second {
		t.Errorf("a joining host was seen after %v by the slowest watcher; want within 2 s", m)
	}

	// Steady state: the mDNS packets every host receives, and what each
	// peer costs. The window is a measurement period, not a wait for an
	// event: it opens once the last host's browse gaps reached the
	// refresh period.
	all := hosts
	time.Sleep(time.Until(joiner.ready.Add(fleetSettle)))
	c0 := tr.Count()
	u0 := usage(t, all)
	time.Sleep(fleetWindow)
	c1 := tr.Count()
	u1 := usage(t, all)
	steady := c1.Sub(c0)
	rate := c1.Rate(c0)
	bound := float64(len(all))/2 + 5
	var cpu, rss []float64
	for i := range all {
		cpu = append(cpu, 100*float64(u1[i].CPU-u0[i].CPU)/float64(c1.At.Sub(c0.At)))
		rss = append(rss, float64(u1[i].RSS)/(1<<20))
	}
	if allWatch && rate > bound {
		t.Errorf("mDNS traffic %.1f packets/s with %d hosts watching; want at most N/2+5 = %.1f", rate, len(all), bound)
	}
	// Nobody was reported down while every host was alive.
	for _, h := range watchers(all) {
		for _, raw := range h.p.Lines() {
			var l helperLine
			if json.Unmarshal(raw, &l) == nil && l.Kind == "down" {
				t.Errorf("host %s reported %s down (%s) while it was alive", h.node, l.Node, l.Reason)
			}
		}
	}

	// Two hosts crash (SIGKILL, no goodbye), 5 s apart so that they die
	// at two phases of the record refresh cycle: every watcher reports
	// them down within their records' TTL.
	victims := []*fleetHost{hosts[1], hosts[2]}
	killed := make(map[string]time.Time)
	for i, v := range victims {
		if i > 0 {
			time.Sleep(5 * time.Second) // the spacing of the kills, not a wait for an event
		}
		killed[v.node] = time.Now()
		v.p.Kill()
	}
	var crash durations
	deadline = time.Now().Add(DefaultTTL + 15*time.Second)
	for _, h := range watchers(all) {
		if slices.Contains(victims, h) {
			continue
		}
		got, err := h.await(deadline, "down", ReasonExpired, victims[0].node, victims[1].node)
		if err != nil {
			t.Fatal(err)
		}
		for node, at := range got {
			crash = append(crash, at.Sub(killed[node]))
		}
	}
	if m := crash.max(); m > DefaultTTL+2*time.Second {
		t.Errorf("a crashed host was reported down after %v; want within its TTL (%v) and a check period", m, DefaultTTL)
	}
	watching := "one watcher"
	if allWatch {
		watching = "every host watching"
	}
	t.Logf("FLEET %d hosts, %s | converge %v after the last start | join %v | mDNS %.1f packets/s (%d queries, %d responses in %v; bound N/2+5 = %.1f); startup %d packets | crash detection %v | CPU per peer mean %.2f%% max %.2f%% | RSS mean %.1f MB max %.1f MB | run %v",
		len(all), watching, converged.Sub(last).Round(time.Millisecond), join, rate, steady.Queries, steady.Responses,
		c1.At.Sub(c0.At).Round(time.Second), bound, startup.Packets, crash, mean(cpu), slices.Max(cpu), mean(rss), slices.Max(rss),
		time.Since(began).Round(time.Second))
}

// logStats logs every host's discovery counters and peers, for a failure.
func logStats(t *testing.T, hs []*fleetHost) {
	t.Helper()
	for _, h := range hs {
		if err := h.p.Send("stats"); err != nil {
			t.Logf("host %s: %v", h.node, err)
			continue
		}
		raw, err := h.p.Wait(5*time.Second, func(raw []byte) bool { return strings.Contains(string(raw), `"kind":"stats"`) })
		if err != nil {
			t.Logf("host %s: %v", h.node, err)
			continue
		}
		var l helperLine
		_ = json.Unmarshal(raw, &l)
		t.Logf("host %s: %d peers; announcer %+v; watcher %+v; stack %+v", h.node, len(l.Peers), l.Announcer, l.Watcher, l.Stack)
	}
}

func usage(t *testing.T, hs []*fleetHost) []fleet.Usage {
	t.Helper()
	out := make([]fleet.Usage, len(hs))
	for i, h := range hs {
		u, err := h.p.Usage()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = u
	}
	return out
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
