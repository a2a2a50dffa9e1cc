package main

// Tests of issue 12, "a newcomer's first hour": each runs the built zpeer
// as a user would and fails on the behaviour the issue reported.

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/socket"
)

// Item 1: a binding pub given messages waits for a subscriber, says so,
// and fails when none comes; the help's own example then delivers.
func TestPubBindWaitsForASubscriber(t *testing.T) {
	t.Parallel()
	stdout, stderr, code := zpeer(t, "", "pub", "--bind", local, "--topic", "weather", "--timeout", "300ms", "sunny")
	if code != exitFailure || stdout != "" {
		t.Fatalf("pub with nobody subscribed: exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	if !strings.Contains(stderr, "zpeer: waiting for 1 subscriber (up to 300ms)") ||
		!strings.Contains(stderr, "zpeer: nothing published: 0 of 1 subscriber ready after 300ms") {
		t.Fatalf("stderr %q lacks the wait and the failure", stderr)
	}

	pub := start(t, "", "pub", "--bind", local, "--topic", "weather", "--interval", "10ms", "--timeout", "20s", "sunny")
	ep := pub.endpoint()
	sub := start(t, "", "sub", "--connect", ep, "--topic", "weather", "--count", "1")
	pub.mustSucceed()
	sub.mustSucceed()
	equalLines(t, "sub output", sub.lines(), "weather sunny")
}

// Item 5: req fails when it cannot read the reply, and says which codec
// would.
func TestReqUndecodableReplyFails(t *testing.T) {
	t.Parallel()
	rep := start(t, "", "rep", "--bind", local, "--codec", "raw", "--count", "1", "--exec", "echo pong")
	ep := rep.endpoint()
	stdout, stderr, code := zpeer(t, "", "req", "--connect", ep, "hello")
	if code != exitFailure || stdout != "" {
		t.Fatalf("req to a raw replier: exit %d, stdout %q; want 1", code, stdout)
	}
	oneLine(t, stderr, "cannot read the reply: not a zpeer envelope (use --codec raw")
	rep.mustSucceed()
}

// Item 5, receivers: a message skipped because it did not decode makes the
// command fail at the end.
func TestPullSkippedMessageFails(t *testing.T) {
	t.Parallel()
	pull := start(t, "", "pull", "--bind", local, "--count", "1")
	ep := pull.endpoint()
	start(t, "", "push", "--connect", ep, "--codec", "raw", "not an envelope").mustSucceed()
	waitUntil(t, 20*time.Second, "the skip notice", func() bool {
		return strings.Contains(pull.stderr.String(), "skipped a message")
	})
	start(t, "", "push", "--connect", ep, "fine").mustSucceed()
	if code := pull.wait(); code != exitFailure {
		t.Fatalf("exit %d, want 1", code)
	}
	equalLines(t, "pull output", pull.lines(), "fine")
	if !strings.Contains(pull.stderr.String(), "1 of 2 messages were not zpeer envelopes and were skipped (--codec raw prints them)") {
		t.Fatalf("stderr %q", pull.stderr.String())
	}
}

// Item 7: --timeout has one documented meaning, and an idle end after
// messages, with no --count, is a success.
//
// The pusher runs first and waits, bound, for its peer: pull's --timeout
// then measures the idle time after the messages, not how long a cold
// process takes to start and connect.
func TestIdleEndAfterMessagesSucceeds(t *testing.T) {
	t.Parallel()
	push := start(t, "", "push", "--bind", local, "--timeout", "20s", "one", "two")
	pull := start(t, "", "pull", "--connect", push.endpoint(), "--timeout", "1s")
	push.mustSucceed()
	pull.mustSucceed()
	equalLines(t, "pull output", pull.lines(), "one", "two")

	// With --count, the same idle end is a failure.
	push = start(t, "", "push", "--bind", local, "--timeout", "20s", "one")
	pull = start(t, "", "pull", "--connect", push.endpoint(), "--timeout", "1s", "--count", "3")
	push.mustSucceed()
	if code := pull.wait(); code != exitFailure {
		t.Fatalf("pull --count 3 after 1 message: exit %d, want 1", code)
	}
	oneLine(t, pull.stderr.String(), "zpeer: no message within 1s (received 1)")
	for _, cmd := range []string{"req", "pub", "sub", "push", "pull", "rep"} {
		out, _, _ := zpeer(t, "", cmd, "--help")
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(timeoutRule), " ")) {
			t.Errorf("%s --help does not state the --timeout rule", cmd)
		}
	}
}

// Item 9: the topic defaults are said in the help.
func TestSubTopicDefaultInHelp(t *testing.T) {
	t.Parallel()
	out, _, _ := zpeer(t, "", "sub", "--help")
	text := strings.Join(strings.Fields(out), " ")
	if !strings.Contains(text, "With no --topic it subscribes to everything") ||
		!strings.Contains(text, "receives nothing until it subscribes") {
		t.Fatalf("sub --help does not say the topic defaults:\n%s", out)
	}
}

// Item 11: -v is --verbose on subcommands and nothing at the root.
func TestVersionIsLongOnly(t *testing.T) {
	t.Parallel()
	_, stderr, code := zpeer(t, "", "-v")
	if code != exitUsage {
		t.Fatalf("zpeer -v: exit %d, want 2; stderr %q", code, stderr)
	}
	out, _, code := zpeer(t, "", "--version")
	if code != 0 || !strings.HasPrefix(out, "zpeer ") {
		t.Fatalf("zpeer --version: exit %d, %q", code, out)
	}
	out, _, _ = zpeer(t, "", "--help")
	if strings.Contains(out, "-v, --version") {
		t.Fatalf("root help still offers -v:\n%s", out)
	}
}

// Item 12: the acked pipeline from the command line. Workers ack a job
// when --exec exits 0; a worker killed mid-run has its jobs redelivered to
// the other one; push exits 0 once every job is acknowledged.
func TestAckPipelineSurvivesAKilledWorker(t *testing.T) {
	t.Parallel()
	push := start(t, nlines(12), "push", "--ack", "--bind", local, "--timeout", "30s")
	ep := push.endpoint()
	slow := start(t, "", "pull", "--ack", "--connect", ep, "--exec", "cat; sleep 0.2")
	waitUntil(t, 20*time.Second, "the slow worker's first job", func() bool { return len(slow.lines()) >= 1 })
	fast := start(t, "", "pull", "--ack", "--connect", ep, "--exec", "cat", "--timeout", "3s")
	waitUntil(t, 20*time.Second, "the slow worker's second job", func() bool { return len(slow.lines()) >= 2 })
	slow.signal(syscall.SIGKILL)
	slow.wait()
	push.mustSucceed()
	fast.mustSucceed()
	got := map[string]bool{}
	for _, l := range append(slow.lines(), fast.lines()...) {
		got[l] = true
	}
	var missing []string
	for _, want := range strings.Fields(nlines(12)) {
		if !got[want] {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("jobs never done: %v (slow did %q, fast %q)", missing, slow.lines(), fast.lines())
	}
}

// Item 12: a job whose --exec fails is nacked, redelivered, and after
// --max-deliveries reported dead by push, which exits 1.
func TestAckPipelineDeadJob(t *testing.T) {
	t.Parallel()
	push := start(t, "", "push", "--ack", "--bind", local, "--max-deliveries", "2", "--timeout", "30s", "good", "bad", "fine")
	ep := push.endpoint()
	pull := start(t, "", "pull", "--ack", "--connect", ep, "--exec", `read x; [ "$x" != bad ] && echo "did $x"`, "--timeout", "2s")
	if code := push.wait(); code != exitFailure {
		t.Fatalf("push --ack with a dead job: exit %d, want 1; stderr %q", code, push.stderr.String())
	}
	stderr := push.stderr.String()
	if !strings.Contains(stderr, `job "bad" is dead after 2 deliveries`) || !strings.Contains(stderr, "1 of 3 jobs dead") {
		t.Fatalf("push stderr %q", stderr)
	}
	pull.mustSucceed()
	lines := pull.lines()
	sort.Strings(lines)
	equalLines(t, "worker output", lines, "did fine", "did good")
}

// Item 12: pull --ack --count stops after N jobs; the jobs it had not
// started go to the next worker.
func TestAckPullCount(t *testing.T) {
	t.Parallel()
	push := start(t, nlines(5), "push", "--ack", "--bind", local, "--timeout", "30s")
	ep := push.endpoint()
	first := start(t, "", "pull", "--ack", "--connect", ep, "--count", "2")
	first.mustSucceed()
	second := start(t, "", "pull", "--ack", "--connect", ep, "--count", "3")
	second.mustSucceed()
	push.mustSucceed()
	equalLines(t, "first worker", first.lines(), "1", "2")
	equalLines(t, "second worker", second.lines(), "3", "4", "5")
}

func TestAckUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"push", "--ack", "--connect", "tcp://127.0.0.1:9", "x"}, "push --ack binds"},
		{[]string{"pull", "--ack", "--bind", local}, "pull --ack connects to its pusher"},
		{[]string{"push", "--ack", "--bind", local, "--codec", "raw", "x"}, "--ack needs --codec msgpack"},
		{[]string{"push", "--bind", local, "--max-deliveries", "3", "x"}, "--max-deliveries needs --ack"},
		{[]string{"pull", "--connect", "tcp://127.0.0.1:9", "--credit", "3"}, "--credit needs --ack"},
	} {
		_, stderr, code := zpeer(t, "", tc.args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want 2", tc.args, code)
		}
		oneLine(t, stderr, tc.want)
	}
}

// Item 13: raw multipart messages, split and joined at --frame-sep.
func TestRawMultipart(t *testing.T) {
	t.Parallel()
	pull := start(t, "", "pull", "--bind", local, "--codec", "raw", "--count", "1", "--json")
	ep := pull.endpoint()
	start(t, "", "push", "--connect", ep, "--codec", "raw", "--frame-sep", "|", "env|id-7|payload").mustSucceed()
	pull.mustSucceed()
	var r record
	if err := json.Unmarshal([]byte(pull.lines()[0]), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Frames) != 3 || r.Frames[0] != "env" || r.Frames[1] != "id-7" || r.Frames[2] != "payload" {
		t.Fatalf("frames %v, want [env id-7 payload]", r.Frames)
	}

	// A raw ZeroMQ PULL sees the frames; zpeer pull joins them with --frame-sep.
	raw, err := socket.New(socket.PULL)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rawEP, err := raw.Bind(local)
	if err != nil {
		t.Fatal(err)
	}
	start(t, "", "push", "--connect", rawEP, "--codec", "raw", "--frame-sep", ",", "a,b").mustSucceed()
	m, err := raw.Recv(ctxTimeout(t, 20*time.Second))
	if err != nil || len(m.Frames) != 2 || string(m.Frames[0]) != "a" || string(m.Frames[1]) != "b" {
		t.Fatalf("raw PULL got %q, %v", m.Frames, err)
	}
	pull = start(t, "", "pull", "--bind", local, "--codec", "raw", "--frame-sep", ",", "--count", "1")
	ep = pull.endpoint()
	start(t, "", "push", "--connect", ep, "--codec", "raw", "--frame-sep", ",", "x,y,z").mustSucceed()
	pull.mustSucceed()
	equalLines(t, "pull output", pull.lines(), "x,y,z")

	_, stderr, code := zpeer(t, "", "push", "--connect", ep, "--frame-sep", ",", "x")
	if code != exitUsage {
		t.Fatalf("--frame-sep without --codec raw: exit %d", code)
	}
	oneLine(t, stderr, "--frame-sep needs --codec raw")
}

// ctxTimeout is a context that ends after d or with the test.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Item 4, from the command line: a push --ack and a plain pull refuse each
// other, and both say so instead of waiting in silence.
func TestAckMismatchSaysWhy(t *testing.T) {
	t.Parallel()
	// The timeouts leave a cold pull process time to start and be refused.
	push := start(t, "", "push", "--ack", "--bind", local, "--timeout", "5s", "job")
	ep := push.endpoint()
	pull := start(t, "", "pull", "--connect", ep, "--timeout", "5s")
	if code := push.wait(); code != exitFailure {
		t.Fatalf("push --ack: exit %d, want 1", code)
	}
	pull.wait()
	if s := push.stderr.String(); !strings.Contains(s, "an acked Pusher (ROUTER) refused a PULL peer") {
		t.Errorf("push --ack stderr %q does not say why", s)
	}
	if s := pull.stderr.String(); !strings.Contains(s, "refused a peer of the wrong socket type") {
		t.Errorf("pull stderr %q does not say why", s)
	}
}

// pull --exec without --ack: CMD's output is pull's.
func TestPullExec(t *testing.T) {
	t.Parallel()
	pull := start(t, "", "pull", "--bind", local, "--count", "2", "--exec", "tr a-z A-Z")
	ep := pull.endpoint()
	start(t, "", "push", "--connect", ep, "one", "two").mustSucceed()
	pull.mustSucceed()
	equalLines(t, "pull --exec output", pull.lines(), "ONE", "TWO")
}

// Item 12 with discovery: push --ack announces, pull --ack finds it.
func TestAckPipelineDiscover(t *testing.T) {
	t.Parallel()
	svc := serviceName("ackjobs")
	push := start(t, "", "push", "--ack", "--bind", local, "--discover", svc, "--iface", "lo", "--timeout", "30s", "j1", "j2")
	push.endpoint()
	pull := start(t, "", "pull", "--ack", "--discover", svc, "--iface", "lo", "--count", "2")
	pull.mustSucceed()
	push.mustSucceed()
	equalLines(t, "worker output", pull.lines(), "j1", "j2")
}
