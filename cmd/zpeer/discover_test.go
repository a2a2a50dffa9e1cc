package main

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Discovery tests use mDNS on the loopback interface only (--iface lo).

func TestDiscoverPushPull(t *testing.T) {
	t.Parallel()
	svc := serviceName("jobs")
	pull := start(t, "", "pull", "--bind", local, "--discover", svc, "--iface", "lo", "--count", "3")
	pull.endpoint()
	start(t, "a\nb\nc\n", "push", "--discover", svc, "--iface", "lo", "--timeout", "20s").mustSucceed()
	pull.mustSucceed()
	equalLines(t, "pull output", pull.lines(), "a", "b", "c")
}

func TestDiscoverPubSub(t *testing.T) {
	t.Parallel()
	svc := serviceName("news")
	pub := start(t, "", "pub", "--bind", local, "--discover", svc, "--iface", "lo",
		"--peers", "1", "--timeout", "20s", "--topic", "n", "--count", "2", "hot")
	pub.endpoint()
	sub := start(t, "", "sub", "--discover", svc, "--iface", "lo", "--count", "2")
	pub.mustSucceed()
	sub.mustSucceed()
	equalLines(t, "sub output", sub.lines(), "n hot", "n hot")
}

func TestPeersListAndWatch(t *testing.T) {
	t.Parallel()
	svc := serviceName("peers")
	rep := start(t, "", "rep", "--bind", local, "--discover", svc, "--iface", "lo", "--name", "svc-a")
	ep := rep.endpoint()

	out, stderr, code := zpeer(t, "", "peers", "--service", svc, "--iface", "lo", "--wait", "1s", "--json")
	if code != 0 {
		t.Fatalf("peers: exit %d, stderr %q", code, stderr)
	}
	var r peerRecord
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		t.Fatalf("peers --json: %q: %v", out, err)
	}
	if r.Service != svc || r.Type != "REP" || r.Endpoint != ep || r.Node == "" || r.Meta["name"] != "svc-a" ||
		time.Since(r.LastSeen) > time.Minute {
		t.Errorf("peers --json: %+v", r)
	}

	table, _, code := zpeer(t, "", "peers", "--service", svc, "--iface", "lo", "--wait", "1s")
	if code != 0 || !regexp.MustCompile(`(?m)^SERVICE\s+TYPE\s+ENDPOINT\s+NODE\s+LAST SEEN\s+META\s+CURVE KEY\n`+
		regexp.QuoteMeta(svc)+`\s+REP\s+`+regexp.QuoteMeta(ep)+`\s+\S+\s+[\d.]+m?s ago\s+name=svc-a\s+-\n`).MatchString(table) {
		t.Errorf("peers table (exit %d):\n%s", code, table)
	}

	// --watch sees the peer up, then down when it leaves with a goodbye.
	watch := start(t, "", "peers", "--service", svc, "--iface", "lo", "--watch", "--count", "2")
	waitUntil(t, 20*time.Second, "the up event", func() bool { return len(watch.lines()) >= 1 })
	rep.signal(os.Interrupt)
	rep.wait()
	watch.mustSucceed()
	lines := watch.lines()
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "up      "+svc+" REP "+ep) ||
		!strings.HasPrefix(lines[1], "down    "+svc+" REP "+ep) || !strings.HasSuffix(lines[1], "(goodbye)") {
		t.Errorf("peers --watch:\n%s", strings.Join(lines, "\n"))
	}
}

// Issue 12 item 6: peers --watch --json gives a down event the time the
// peer was last seen alive as last_seen, not the time of the event.
func TestPeersWatchDownLastSeen(t *testing.T) {
	t.Parallel()
	svc := serviceName("seen")
	rep := start(t, "", "rep", "--bind", local, "--discover", svc, "--iface", "lo")
	rep.endpoint()
	watch := start(t, "", "peers", "--service", svc, "--iface", "lo", "--watch", "--json", "--count", "2")
	waitUntil(t, 20*time.Second, "the up event", func() bool { return len(watch.lines()) >= 1 })
	stopped := time.Now()
	rep.signal(os.Interrupt)
	rep.wait()
	watch.mustSucceed()
	var up, down peerRecord
	lines := watch.lines()
	if len(lines) != 2 {
		t.Fatalf("peers --watch --json: %q", lines)
	}
	if err := json.Unmarshal([]byte(lines[0]), &up); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &down); err != nil {
		t.Fatal(err)
	}
	if up.Event != "up" || down.Event != "down" || down.Time == nil {
		t.Fatalf("events %+v then %+v", up, down)
	}
	if down.LastSeen.After(stopped) || !down.LastSeen.Before(*down.Time) || down.LastSeen.Before(up.LastSeen) {
		t.Errorf("down event at %s has last_seen %s: want the last sighting (up at %s, before the stop at %s)",
			down.Time, down.LastSeen, up.LastSeen, stopped)
	}
}

// Without --service, peers finds the services announced (the DNS-SD
// meta-query) and lists the peers of each.
func TestPeersEveryService(t *testing.T) {
	t.Parallel()
	svcA, svcB := serviceName("every"), serviceName("every")
	a := start(t, "", "rep", "--bind", local, "--discover", svcA, "--iface", "lo")
	b := start(t, "", "pull", "--bind", local, "--discover", svcB, "--iface", "lo")
	epA, epB := a.endpoint(), b.endpoint()
	out, stderr, code := zpeer(t, "", "peers", "--iface", "lo", "--wait", "1s", "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	seen := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r peerRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		seen[r.Service] = r.Type + " " + r.Endpoint
	}
	if seen[svcA] != "REP "+epA || seen[svcB] != "PULL "+epB {
		t.Errorf("peers saw %v; want %s REP %s and %s PULL %s", seen, svcA, epA, svcB, epB)
	}
}

func TestPeersNoneFound(t *testing.T) {
	t.Parallel()
	out, stderr, code := zpeer(t, "", "peers", "--service", serviceName("nobody"), "--iface", "lo", "--wait", "300ms")
	if code != 0 || out != "" || !strings.Contains(stderr, "no peers of nobody-") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestBench(t *testing.T) {
	t.Parallel()
	out, stderr, code := zpeer(t, "", "bench", "--runs", "1", "--duration", "100ms", "--scenario", "reqrep/64B")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !regexp.MustCompile(`(?m)^\| reqrep/64B \| zpeer \|`).MatchString(out) {
		t.Errorf("no result row:\n%s", out)
	}
	// Not a terminal: a plain progress log, no bar.
	all := regexp.MustCompile(`bench: (\d+)/(\d+) measurements done`).FindAllStringSubmatch(stderr, -1)
	if len(all) == 0 || all[len(all)-1][1] != all[len(all)-1][2] || strings.Contains(stderr, "\r") {
		t.Errorf("progress log:\n%q", stderr)
	}
}

// TestDemo runs the demo as the README says and checks its summary: every
// pattern ran, request/reply and the acked pipeline lost nothing despite
// the peer stopped halfway, and it finished in well under a minute.
func TestDemo(t *testing.T) {
	t.Parallel()
	began := time.Now()
	out, stderr, code := zpeer(t, "", "demo")
	took := time.Since(began)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	t.Logf("zpeer demo (%s):\n%s", took.Round(100*time.Millisecond), out)
	if took > time.Minute {
		t.Errorf("the demo took %s", took)
	}
	row := regexp.MustCompile(`(?m)^(request/reply|publish/subscribe|acked pipeline)\s{2,}.+?\s{2,}(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)/(\d+)\s+([\d.]+)\s+([\d.]+)$`)
	rows := row.FindAllStringSubmatch(out, -1)
	if len(rows) != 3 {
		t.Fatalf("want 3 pattern rows, got %d", len(rows))
	}
	for _, r := range rows {
		name, delivered, sent := r[1], r[6], r[7]
		rel, _ := strconv.ParseFloat(r[8], 64)
		if sent == "0" || delivered == "0" || r[3] == "-" {
			t.Errorf("%s: nothing measured: %q", name, r[0])
		}
		switch name {
		case "request/reply", "acked pipeline":
			if delivered != sent || rel != 1 {
				t.Errorf("%s lost messages: %s/%s", name, delivered, sent)
			}
		case "publish/subscribe":
			if rel < 0.5 {
				t.Errorf("%s: reliability %v", name, rel)
			}
		}
	}
	for _, want := range []string{"replier-2 stopped", "worker-3 stopped", "found each other over mDNS", "thr x lat",
		"talk over CURVE", "the impostor announcing the service with an untrusted key received 0 requests"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	// The subscriber behind the proxy got ticks through it: the proxy
	// passed its subscription up and relayed at least half of what was
	// published (the row's reliability bound, for one subscriber).
	published := regexp.MustCompile(`(\d+) published x`).FindStringSubmatch(out)
	relayed := regexp.MustCompile(`relayed (\d+) messages and (\d+) subscription`).FindStringSubmatch(out)
	if published == nil || relayed == nil {
		t.Fatalf("summary lacks the publication or proxy notes")
	}
	np, _ := strconv.Atoi(published[1])
	nr, _ := strconv.Atoi(relayed[1])
	if nr < np/2 || relayed[2] == "0" {
		t.Errorf("the proxy relayed %d of %d publications, %s subscriptions", nr, np, relayed[2])
	}
}
