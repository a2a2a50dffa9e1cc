package main

import (
	"bufio"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
)

// stateServer is a "zpeer state serve" whose standard input the test
// writes to as it goes.
type stateServer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr testutil.SyncBuffer
	bound  chan string
	done   chan struct{}
}

func startStateServe(t *testing.T, args ...string) *stateServer {
	t.Helper()
	s := &stateServer{bound: make(chan string, 4), done: make(chan struct{})}
	s.cmd = exec.Command(zpeerBin, append([]string{"state", "serve", "--verbose"}, args...)...)
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	errPipe, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			s.stderr.Write([]byte(sc.Text() + "\n"))
			if ep, ok := strings.CutPrefix(sc.Text(), "bound "); ok {
				s.bound <- ep
			}
		}
		s.cmd.Wait()
	}()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(procTimeout):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *stateServer) endpoint(t *testing.T) string {
	t.Helper()
	select {
	case ep := <-s.bound:
		return ep
	case <-s.done:
		t.Fatalf("state serve exited before binding:\n%s", s.stderr.String())
	case <-time.After(boundTimeout):
		t.Fatalf("state serve did not bind within %s:\n%s", boundTimeout, s.stderr.String())
	}
	return ""
}

// send writes lines to the server's standard input.
func (s *stateServer) send(t *testing.T, lines string) {
	t.Helper()
	if _, err := io.WriteString(s.stdin, lines); err != nil {
		t.Fatal(err)
	}
}

// endInput closes standard input and waits until the server has applied
// all of it (it says so with --verbose), then checks it still serves.
func (s *stateServer) endInput(t *testing.T) {
	t.Helper()
	s.stdin.Close()
	waitUntil(t, 20*time.Second, "the end of the server's input", func() bool {
		return strings.Contains(s.stderr.String(), "end of input")
	})
}

// state serve applies KEY=VALUE lines (KEY= deletes) and keeps serving at
// the end of its input; state get prints the state sorted by key and exits
// 0; bad lines are reported and skipped.
func TestStateServeGet(t *testing.T) {
	t.Parallel()
	srv := startStateServe(t, "--bind", local)
	ep := srv.endpoint(t)
	srv.send(t, "b=2\na=1\nnot a setting\nc=3\nc=\nd=x=y\n\n")
	srv.endInput(t)
	out, stderr, code := zpeer(t, "", "state", "get", "--connect", ep)
	if code != 0 {
		t.Fatalf("state get: exit %d, stderr %q", code, stderr)
	}
	equalLines(t, "state get", strings.Split(strings.TrimSpace(out), "\n"), "a=1", "b=2", "d=x=y")
	if !strings.Contains(srv.stderr.String(), `line 3: want KEY=VALUE`) {
		t.Errorf("the bad line was not reported: %s", srv.stderr.String())
	}
	select {
	case <-srv.done:
		t.Fatalf("state serve stopped at the end of its input:\n%s", srv.stderr.String())
	default:
	}
	// An empty state prints nothing, and is still a success.
	empty := startStateServe(t, "--bind", local)
	eep := empty.endpoint(t)
	empty.endInput(t)
	if out, stderr, code := zpeer(t, "", "state", "get", "--connect", eep); code != 0 || out != "" {
		t.Fatalf("empty state: exit %d, out %q, stderr %q", code, out, stderr)
	}
}

// state get --watch prints the snapshot, then every change in order, a
// delete as KEY=.
func TestStateGetWatch(t *testing.T) {
	t.Parallel()
	srv := startStateServe(t, "--bind", local)
	ep := srv.endpoint(t)
	srv.send(t, "a=1\nb=2\n")
	waitUntil(t, 20*time.Second, "the first lines applied", func() bool {
		out, _, code := zpeer(t, "", "state", "get", "--connect", ep)
		return code == 0 && out == "a=1\nb=2\n"
	})
	get := start(t, "", "state", "get", "--connect", ep, "--watch", "--count", "4")
	waitUntil(t, 20*time.Second, "the snapshot printed", func() bool { return len(get.lines()) == 2 })
	srv.send(t, "a=9\nb=\nc=3\nc=4\n")
	get.mustSucceed()
	equalLines(t, "state get --watch", get.lines(), "a=1", "b=2", "a=9", "b=", "c=3", "c=4")
}

// A mirror finds its server by service name, under CURVE: the server's key
// comes from its announcement and is checked against --trust.
func TestStateDiscoverCurve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, stderr, code := zpeer(t, "", "keygen", "server", "--dir", dir); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	svc := serviceName("state")
	srv := startStateServe(t, "--bind", local, "--discover", svc, "--iface", "lo",
		"--key", filepath.Join(dir, "server.key_secret"))
	srv.endpoint(t)
	srv.send(t, "secret=42\n")
	srv.endInput(t)
	out, stderr, code := zpeer(t, "", "state", "get", "--discover", svc, "--iface", "lo",
		"--trust", filepath.Join(dir, "server.key"), "--timeout", "20s")
	if code != 0 || out != "secret=42\n" {
		t.Fatalf("state get --discover: exit %d, out %q, stderr %q", code, out, stderr)
	}
}

func TestStateUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"state", "get", "--bind", local},
		{"state", "get"},
		{"state", "serve", "--connect", "tcp://127.0.0.1:1"},
		{"state", "get", "--connect", "tcp://127.0.0.1:1", "--count", "2"},
	} {
		if _, stderr, code := zpeer(t, "", args...); code != exitUsage {
			t.Errorf("zpeer %s: exit %d (%s), want 2", strings.Join(args, " "), code, stderr)
		}
	}
	_, stderr, code := zpeer(t, "", "state", "get", "--connect", "tcp://127.0.0.1:1", "--timeout", "200ms")
	if code != exitFailure || !strings.Contains(stderr, "no state within 200ms") {
		t.Errorf("no server: exit %d, stderr %q", code, stderr)
	}
}
