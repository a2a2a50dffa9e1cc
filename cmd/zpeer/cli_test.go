package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/socket"
)

const local = "tcp://127.0.0.1:0"

func TestReqRep(t *testing.T) {
	t.Parallel()
	rep := start(t, "", "rep", "--bind", local, "--count", "2")
	ep := rep.endpoint()
	req := start(t, "", "req", "--connect", ep, "hello", "wide world")
	req.mustSucceed()
	rep.mustSucceed()
	equalLines(t, "req output", req.lines(), "hello", "wide world")
	equalLines(t, "rep output", rep.lines(), "hello", "wide world")
}

// A reply follows the library's reply rule (codec's Reply, as
// pattern.Replier): the request's id, priority and sequence number.
func TestRepReplyCarriesTheRequest(t *testing.T) {
	t.Parallel()
	rep := start(t, "", "rep", "--bind", local, "--count", "2", "--name", "server")
	ep := rep.endpoint()
	req := start(t, "", "req", "--connect", ep, "--priority", "5", "--json", "a", "b")
	req.mustSucceed()
	rep.mustSucceed()
	lines := req.lines()
	if len(lines) != 2 {
		t.Fatalf("%d replies: %q", len(lines), lines)
	}
	for i, line := range lines {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Kind != "reply" || r.Priority != 5 || r.Sequence != uint64(i+1) || r.Sender != "server" || r.ID == "" {
			t.Errorf("reply %d: %+v", i, r)
		}
	}
}

func TestReqRepExecStdin(t *testing.T) {
	t.Parallel()
	rep := start(t, "", "rep", "--bind", local, "--exec", "tr a-z A-Z")
	ep := rep.endpoint()
	req := start(t, "one\ntwo\r\nthree\n", "req", "--connect", ep)
	req.mustSucceed()
	equalLines(t, "replies", req.lines(), "ONE", "TWO", "THREE")
	rep.signal(syscall.SIGTERM)
	if code := rep.wait(); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("rep stopped by SIGTERM: exit %d, want %d", code, 128+int(syscall.SIGTERM))
	}
}

func TestReqExecFailureIsAnErrorReply(t *testing.T) {
	t.Parallel()
	rep := start(t, "", "rep", "--bind", local, "--count", "1", "--exec", "echo boom >&2; exit 3")
	ep := rep.endpoint()
	_, stderr, code := zpeer(t, "", "req", "--connect", ep, "x")
	if code != exitFailure || !strings.Contains(stderr, "error reply from the peer") || !strings.Contains(stderr, "boom") {
		t.Fatalf("req got exit %d, stderr %q; want 1 and the peer's error", code, stderr)
	}
	rep.mustSucceed()
}

// A replier that takes requests and never answers: req must retry on a
// fresh connection, then give up with exit 1 and one line.
func TestReqNoReplyRetries(t *testing.T) {
	t.Parallel()
	rep, err := socket.New(socket.REP)
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	ep, err := rep.Bind(local)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code := zpeer(t, "", "req", "--connect", ep, "--timeout", "300ms", "--retries", "2", "ping")
	if code != exitFailure {
		t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
	}
	oneLine(t, stderr, "no reply within 300ms (3 attempts)")
	// Each attempt came on its own connection.
	if st := rep.Stats(); st.Connects < 3 {
		t.Errorf("replier saw %d connections, want 3 (one per attempt)", st.Connects)
	}
}

func TestReqFailsOverToSecondReplier(t *testing.T) {
	t.Parallel()
	dead, err := socket.New(socket.REP) // takes the request, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	deadEP, err := dead.Bind(local)
	if err != nil {
		t.Fatal(err)
	}
	live := start(t, "", "rep", "--bind", local, "--exec", "echo pong")
	liveEP := live.endpoint()
	// The first request goes to whichever replier connected first; with
	// retries, every request ends up answered by the live one.
	out, stderr, code := zpeer(t, "", "req", "--connect", deadEP, "--connect", liveEP, "--peers", "2",
		"--timeout", "1s", "--retries", "3", "a", "b", "c")
	if code != 0 {
		t.Fatalf("exit %d; stderr %q", code, stderr)
	}
	equalLines(t, "replies", strings.Split(strings.TrimSpace(out), "\n"), "pong", "pong", "pong")
}

func TestReqUnreachable(t *testing.T) {
	t.Parallel()
	ep := closedPort(t)
	_, stderr, code := zpeer(t, "", "req", "--connect", ep, "--timeout", "300ms", "hello")
	if code != exitFailure {
		t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
	}
	oneLine(t, stderr, "cannot reach "+ep+": connection refused")
}

func TestPushUnreachable(t *testing.T) {
	t.Parallel()
	ep := closedPort(t)
	_, stderr, code := zpeer(t, "", "push", "--connect", ep, "--timeout", "300ms", "hello")
	if code != exitFailure {
		t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
	}
	oneLine(t, stderr, "cannot reach "+ep+": connection refused")
}

func TestPubSubTopics(t *testing.T) {
	t.Parallel()
	sub := start(t, "", "sub", "--bind", local, "--topic", "weather", "--count", "3")
	ep := sub.endpoint()
	// news is filtered out by the publisher, weather gets through.
	start(t, "", "pub", "--connect", ep, "--topic", "news", "ignored").mustSucceed()
	start(t, "sunny\nrainy\nwindy\n", "pub", "--connect", ep, "--topic", "weather").mustSucceed()
	sub.mustSucceed()
	equalLines(t, "sub output", sub.lines(), "weather sunny", "weather rainy", "weather windy")
}

func TestPubBindWaitsForSubscribers(t *testing.T) {
	t.Parallel()
	pub := start(t, "", "pub", "--bind", local, "--peers", "2", "--timeout", "30s", "--topic", "t", "x", "y")
	ep := pub.endpoint()
	a := start(t, "", "sub", "--connect", ep, "--count", "2")
	b := start(t, "", "sub", "--connect", ep, "--count", "2", "--json")
	pub.mustSucceed()
	a.mustSucceed()
	b.mustSucceed()
	equalLines(t, "first subscriber", a.lines(), "t x", "t y")
	for i, line := range b.lines() {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Topic != "t" || r.Body != []string{"x", "y"}[i] || r.Sequence != uint64(i+1) {
			t.Errorf("second subscriber, message %d: %+v", i, r)
		}
	}
}

func TestPushPull(t *testing.T) {
	t.Parallel()
	pull := start(t, "", "pull", "--bind", local, "--count", "200")
	ep := pull.endpoint()
	start(t, nlines(200), "push", "--connect", ep).mustSucceed()
	pull.mustSucceed()
	equalLines(t, "pull output", pull.lines(), strings.Split(strings.TrimSpace(nlines(200)), "\n")...)
}

func TestPushLoadBalances(t *testing.T) {
	t.Parallel()
	a := start(t, "", "pull", "--bind", local)
	b := start(t, "", "pull", "--bind", local)
	epA, epB := a.endpoint(), b.endpoint()
	start(t, "", "push", "--connect", epA, "--connect", epB, "--peers", "2", "--count", "10", "job").mustSucceed()
	waitUntil(t, 10*time.Second, "10 jobs pulled", func() bool {
		return len(a.lines())+len(b.lines()) == 10
	})
	if len(a.lines()) == 0 || len(b.lines()) == 0 {
		t.Fatalf("jobs not shared: %d and %d", len(a.lines()), len(b.lines()))
	}
	a.signal(os.Interrupt)
	b.signal(os.Interrupt)
	for _, p := range []*proc{a, b} {
		if code := p.wait(); code != 130 {
			t.Errorf("pull after Ctrl-C: exit %d, want 130", code)
		}
		if !regexp.MustCompile(`interrupted \(SIGINT\): sent 0, received \d+ in `).MatchString(p.stderr.String()) {
			t.Errorf("pull after Ctrl-C: stderr %q lacks the summary", p.stderr.String())
		}
	}
}

func TestDealerRouter(t *testing.T) {
	t.Parallel()
	router := start(t, "", "router", "--bind", local, "--count", "3", "--json", "--exec", "rev")
	ep := router.endpoint()
	dealer := start(t, "", "dealer", "--connect", ep, "--identity", "me", "abc", "def", "ghi")
	dealer.mustSucceed()
	router.mustSucceed()
	equalLines(t, "dealer output", dealer.lines(), "cba", "fed", "ihg")
	for _, line := range router.lines() {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.RoutingID != hex.EncodeToString([]byte("me")) {
			t.Errorf("routing id %q, want hex of \"me\"", r.RoutingID)
		}
	}
}

func TestReqToRouter(t *testing.T) {
	t.Parallel()
	router := start(t, "", "router", "--bind", local, "--count", "1")
	ep := router.endpoint()
	out, stderr, code := zpeer(t, "", "req", "--connect", ep, "via router")
	if code != 0 || out != "via router\n" {
		t.Fatalf("exit %d, output %q, stderr %q", code, out, stderr)
	}
	router.mustSucceed()
}

func TestJSONOutput(t *testing.T) {
	t.Parallel()
	pull := start(t, "", "pull", "--bind", local, "--count", "3", "--json")
	ep := pull.endpoint()
	start(t, "", "push", "--connect", ep, "--name", "tester", "--type", "greeting", "--priority", "3",
		"-H", "lang=en", "-H", "k=v=w", "hi", "ho").mustSucceed()
	start(t, "", "push", "--connect", ep, "--body", "json", `{"a":1,"b":[true,"x"]}`).mustSucceed()
	pull.mustSucceed()
	lines := pull.lines()
	if len(lines) != 3 {
		t.Fatalf("got %d lines: %q", len(lines), lines)
	}
	var recs []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		for _, k := range []string{"body", "topic", "id", "type", "priority", "timestamp", "sequence", "sender", "headers"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%q lacks %q", l, k)
			}
		}
		recs = append(recs, m)
	}
	for i, want := range []string{"hi", "ho"} {
		r := recs[i]
		if r["body"] != want || r["type"] != "greeting" || r["priority"] != 3.0 || r["sender"] != "tester" ||
			r["sequence"] != float64(i+1) || r["kind"] != "data" {
			t.Errorf("record %d: %v", i, r)
		}
		h, _ := r["headers"].(map[string]any)
		if h["lang"] != "en" || h["k"] != "v=w" {
			t.Errorf("record %d headers: %v", i, h)
		}
		if id, _ := r["id"].(string); len(id) != 32 {
			t.Errorf("record %d id %q", i, id)
		}
		ts, _ := r["timestamp"].(string)
		if when, err := time.Parse(time.RFC3339Nano, ts); err != nil || time.Since(when) > time.Minute {
			t.Errorf("record %d timestamp %q: %v", i, ts, err)
		}
	}
	body, _ := json.Marshal(recs[2]["body"])
	if string(body) != `{"a":1,"b":[true,"x"]}` {
		t.Errorf("--body json arrived as %s", body)
	}
}

func TestRawCodec(t *testing.T) {
	t.Parallel()
	pull := start(t, "", "pull", "--bind", local, "--codec", "raw", "--count", "2", "--json")
	ep := pull.endpoint()
	start(t, "", "push", "--connect", ep, "--codec", "raw", "plain", "frames").mustSucceed()
	pull.mustSucceed()
	for i, want := range []string{"plain", "frames"} {
		var r record
		if err := json.Unmarshal([]byte(pull.lines()[i]), &r); err != nil {
			t.Fatal(err)
		}
		if r.Body != want || r.ID != "" || r.Sequence != 0 {
			t.Errorf("raw message %d: %+v", i, r)
		}
	}
}

func TestIPC(t *testing.T) {
	t.Parallel()
	ep := "ipc://" + filepath.Join(t.TempDir(), "zpeer.sock")
	pull := start(t, "", "pull", "--bind", ep, "--count", "1")
	if got := pull.endpoint(); got != ep {
		t.Fatalf("bound %q, want %q", got, ep)
	}
	start(t, "", "push", "--connect", ep, "over ipc").mustSucceed()
	pull.mustSucceed()
	equalLines(t, "pull output", pull.lines(), "over ipc")
}

func TestBoundPrintsRealPort(t *testing.T) {
	t.Parallel()
	for _, ep := range []string{"tcp://127.0.0.1:0", "tcp://127.0.0.1:*"} {
		p := start(t, "", "pull", "--bind", ep, "--timeout", "50ms")
		got := p.endpoint()
		host, port, err := net.SplitHostPort(strings.TrimPrefix(got, "tcp://"))
		if n, _ := strconv.Atoi(port); err != nil || host != "127.0.0.1" || n == 0 {
			t.Errorf("--bind %s printed %q", ep, got)
		}
		p.wait()
	}
}

func TestReceiveTimeout(t *testing.T) {
	t.Parallel()
	_, stderr, code := zpeer(t, "", "pull", "--bind", local, "--timeout", "200ms")
	if code != exitFailure {
		t.Fatalf("exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "bound ") || lines[1] != "zpeer: no message within 200ms (received 0)" {
		t.Fatalf("stderr %q", stderr)
	}
}

func TestBindInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ep := "tcp://" + ln.Addr().String()
	_, stderr, code := zpeer(t, "", "pull", "--bind", ep)
	if code != exitFailure {
		t.Fatalf("exit %d, want 1", code)
	}
	oneLine(t, stderr, "address already in use")
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"req", "--frob"}, "unknown flag: --frob"},
		{"bad flag value", []string{"pull", "--bind", local, "--count", "many"}, `invalid argument "many"`},
		{"bad endpoint", []string{"req", "--connect", "127.0.0.1:5555", "x"}, `bad endpoint "127.0.0.1:5555": want tcp://host:port or ipc://path`},
		{"bad transport", []string{"pull", "--bind", "udp://127.0.0.1:1"}, `unsupported transport "udp"`},
		{"connect to port 0", []string{"push", "--connect", "tcp://127.0.0.1:0", "x"}, "connect needs a host and a non-zero port"},
		{"unknown codec", []string{"push", "--connect", "tcp://127.0.0.1:9", "--codec", "json", "x"}, `unknown codec "json" (want msgpack or raw)`},
		{"no endpoint", []string{"pull"}, "pull needs --bind, --connect or --discover"},
		{"message to a receiver", []string{"pull", "--bind", local, "hello"}, "pull takes no MESSAGE arguments"},
		{"bad header", []string{"push", "--connect", "tcp://127.0.0.1:9", "-H", "novalue", "x"}, `bad --header "novalue": want KEY=VALUE`},
		{"bad body", []string{"push", "--connect", "tcp://127.0.0.1:9", "--body", "xml", "x"}, `unknown --body "xml"`},
		{"negative count", []string{"pull", "--bind", local, "--count", "-1"}, "cannot be negative"},
		{"two pub topics", []string{"pub", "--bind", local, "-t", "a", "-t", "b"}, "pub publishes under one --topic"},
		{"iface without discover", []string{"pull", "--bind", local, "--iface", "lo"}, "--iface needs --discover"},
		{"bad service", []string{"pull", "--bind", local, "--discover", "no_underscores", "--iface", "lo"}, "invalid service name"},
		{"peers bad service", []string{"peers", "--service", "a_b"}, "invalid service name"},
		{"bench unknown scenario", []string{"bench", "-s", "nope"}, `no scenario matches`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := zpeer(t, "", tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want 2; stderr %q", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			oneLine(t, stderr, tc.want)
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"", "req", "rep", "pub", "sub", "push", "pull", "dealer", "router", "peers", "demo", "bench", "version"} {
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			args := []string{"--help"}
			if cmd != "" {
				args = []string{cmd, "--help"}
			}
			out, stderr, code := zpeer(t, "", args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			_, examples, ok := strings.Cut(out, "Examples:\n")
			examples, _, _ = strings.Cut(examples, "\n\n")
			if !ok || !strings.Contains(examples, strings.TrimSpace("zpeer "+cmd)) {
				t.Errorf("help lacks an example:\n%s", out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, _, code := zpeer(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "zpeer ") || !strings.Contains(out, "go1.") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	out2, _, code := zpeer(t, "", "--version")
	if code != 0 || out2 != out {
		t.Fatalf("--version: exit %d, %q; zpeer version printed %q", code, out2, out)
	}
}

// oneLine checks that stderr is exactly one line, a zpeer error containing
// want, with no Go stack trace.
func oneLine(t *testing.T, stderr, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "zpeer: ") || !strings.Contains(lines[0], want) {
		t.Fatalf("stderr should be one line containing %q, got:\n%s", want, stderr)
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
		t.Fatalf("stack trace on stderr:\n%s", stderr)
	}
}

// closedPort returns a tcp endpoint on 127.0.0.1 that nothing listens on
// until the test ends: a socket bound to it without SO_REUSEADDR and not
// listening holds the port (no parallel test can bind it, the kernel does
// not hand it out), and a connection to it is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("tcp://127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

var _ = context.Background

// The root help names every socket command (pair was once left out).
func TestRootHelpListsSocketCommands(t *testing.T) {
	t.Parallel()
	out, _, code := zpeer(t, "", "--help")
	m := regexp.MustCompile(`The socket commands \(([a-z ]+)\)`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("root help (exit %d) has no list of socket commands:\n%s", code, out)
	}
	listed := strings.Fields(m[1])
	for _, c := range (&app{}).socketCommands() {
		if !slices.Contains(listed, c.Name()) {
			t.Errorf("root help's socket commands %q leave out %s", listed, c.Name())
		}
	}
	if !slices.Contains(listed, "pair") {
		t.Errorf("root help's socket commands %q leave out pair", listed)
	}
}
