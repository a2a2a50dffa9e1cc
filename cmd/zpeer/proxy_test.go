package main

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"regexp"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
	"strings"
	"syscall"
	"testing"
)

func TestPair(t *testing.T) {
	t.Parallel()
	a := start(t, "", "pair", "--bind", local, "--count", "2", "from-a", "again-a")
	ep := a.endpoint()
	b := start(t, "", "pair", "--connect", ep, "--count", "2", "from-b", "again-b")
	a.mustSucceed()
	b.mustSucceed()
	equalLines(t, "a received", a.lines(), "from-b", "again-b")
	equalLines(t, "b received", b.lines(), "from-a", "again-a")
}

// TestProxyPubSub: a publisher and a subscriber that both connect, to the
// two sides of zpeer proxy; Ctrl-C ends the proxy with its counters.
func TestProxyPubSub(t *testing.T) {
	t.Parallel()
	px := start(t, "", "proxy", "--type", "pubsub", "--frontend-bind", local, "--backend-bind", local)
	front, back := px.endpoint(), px.endpoint()
	sub := start(t, "", "sub", "--connect", back, "--topic", "weather", "--count", "3")
	start(t, "sunny\nrainy\nwindy\n", "pub", "--connect", front, "--topic", "weather").mustSucceed()
	sub.mustSucceed()
	equalLines(t, "sub output", sub.lines(), "weather sunny", "weather rainy", "weather windy")
	px.signal(syscall.SIGINT)
	if code := px.wait(); code != 128+int(syscall.SIGINT) {
		t.Fatalf("proxy stopped by SIGINT: exit %d", code)
	}
	// The subscriber's one subscription went up (and its cancel, if the
	// proxy saw it leave before the signal), the 3 messages down.
	summary := regexp.MustCompile(`proxy pubsub: frontend \d+ peers, 3 in, [12] out; backend \d+ peers, [12] in, 3 out; subscriptions 1, cancels [01], drops 0`)
	if s := px.stderr.String(); !summary.MatchString(s) {
		t.Errorf("proxy summary missing; stderr:\n%s", s)
	}
}

func TestProxyQueue(t *testing.T) {
	t.Parallel()
	px := start(t, "", "proxy", "--type", "queue", "--frontend-bind", local, "--backend-bind", local)
	front, back := px.endpoint(), px.endpoint()
	rep := start(t, "", "rep", "--connect", back, "--exec", "tr a-z A-Z", "--count", "2")
	req := start(t, "", "req", "--connect", front, "one", "two")
	req.mustSucceed()
	rep.mustSucceed()
	equalLines(t, "replies", req.lines(), "ONE", "TWO")
	px.signal(syscall.SIGTERM)
	px.wait()
}

func TestProxyPipelineCapture(t *testing.T) {
	t.Parallel()
	px := start(t, "", "proxy", "--type", "pipeline", "--frontend-bind", local, "--backend-bind", local, "--capture", local, "--verbose")
	front, back, capture := px.endpoint(), px.endpoint(), px.endpoint()
	tap := start(t, "", "sub", "--connect", capture, "--count", "5")
	pull := start(t, "", "pull", "--connect", back, "--count", "5")
	waitUntil(t, boundTimeout, "capture subscriber", func() bool { return strings.Contains(px.stderr.String(), "PUB connected") })
	start(t, nlines(5), "push", "--connect", front).mustSucceed()
	pull.mustSucceed()
	tap.mustSucceed()
	equalLines(t, "pulled", pull.lines(), "1", "2", "3", "4", "5")
	equalLines(t, "captured", tap.lines(), "1", "2", "3", "4", "5")
	px.signal(syscall.SIGINT)
	px.wait()
}

func TestProxyUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"proxy", "--frontend-bind", local, "--backend-bind", local},
		{"proxy", "--type", "mesh", "--frontend-bind", local, "--backend-bind", local},
		{"proxy", "--type", "pubsub", "--backend-bind", local},
		{"proxy", "--type", "pubsub", "--frontend-bind", local, "--backend-discover", "no spaces allowed"},
	} {
		if _, stderr, code := zpeer(t, "", args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d; stderr %q", args, code, exitUsage, stderr)
		}
	}
}

// TestPubLastValue: pub --last-value --peers 0 publishes stdin at once; a
// subscriber that joins later gets the last value of the topic first, with
// its sequence number.
func TestPubLastValue(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(zpeerBin, "pub", "--last-value", "--peers", "0", "--bind", local, "--topic", "t")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stderr).ReadString('\n')
	ep, ok := strings.CutPrefix(strings.TrimSpace(line), "bound ")
	if err != nil || !ok {
		t.Fatalf("first stderr line %q (%v)", line, err)
	}
	go io.Copy(io.Discard, stderr)
	if _, err := io.WriteString(stdin, "v1\nv2\nv3\n"); err != nil {
		t.Fatal(err)
	}
	// Join until the first message is the third value: the publisher has
	// read all three lines by then.
	waitUntil(t, 10*time.Second, "the cached third value", func() bool {
		sub, err := socket.New(socket.SUB)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		sub.Subscribe("t")
		sub.Connect(ep)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		m, err := sub.Recv(ctx)
		if err != nil {
			t.Fatalf("no cached value: %v", err)
		}
		var v codec.View
		if len(m.Frames) != 2 || codec.DecodeView(m.Frames[1], &v) != nil {
			t.Fatalf("not a zpeer envelope: %q", m.Frames)
		}
		return v.Seq == 3 && strings.Contains(string(v.Body), "v3")
	})
}

// TestProxyDiscover: two groups joined by a proxy: the publishers' side
// found over mDNS (on lo), the subscribers' side announced over mDNS under
// another name; nobody types an address.
func TestProxyDiscover(t *testing.T) {
	t.Parallel()
	pubs, subs := serviceName("lan-a"), serviceName("lan-b")
	pub := start(t, "", "pub", "--bind", local, "--discover", pubs, "--iface", "lo",
		"--peers", "1", "--timeout", "30s", "--topic", "n", "--count", "2", "hot")
	pub.endpoint()
	px := start(t, "", "proxy", "--type", "pubsub", "--frontend-discover", pubs,
		"--backend-bind", local, "--backend-discover", subs, "--iface", "lo")
	px.endpoint()
	sub := start(t, "", "sub", "--discover", subs, "--iface", "lo", "--count", "2")
	pub.mustSucceed()
	sub.mustSucceed()
	equalLines(t, "sub output", sub.lines(), "n hot", "n hot")
	px.signal(syscall.SIGINT)
	px.wait()
}
