package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
	"go.uber.org/goleak"
)

// zpeerBin is the zpeer binary the tests run, built once by TestMain.
var zpeerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zpeer-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	zpeerBin = filepath.Join(dir, "zpeer")
	args := []string{"build", "-o", zpeerBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command(goTool(), append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building zpeer:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// As goleak.VerifyTestMain does, after the clean-up above: the
		// tests run zpeer in processes of its own, and whatever they run in
		// this one (the commands' code, pattern sockets, the process
		// watchers) must have ended.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: errors on successful test run:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// Bounds of every process a test starts.
const (
	procTimeout  = 60 * time.Second // a zpeer process that runs longer is killed and the test fails
	boundTimeout = 20 * time.Second // time for a binding process to print its endpoint
)

// proc is a zpeer process started by a test.
type proc struct {
	t      *testing.T
	args   []string
	cmd    *exec.Cmd
	stdout testutil.SyncBuffer
	stderr testutil.SyncBuffer
	bound  chan string // endpoints from "bound EP" lines
	done   chan struct{}
	code   int
}

// start runs zpeer with args; stdin is its standard input ("" for none).
func start(t *testing.T, stdin string, args ...string) *proc {
	t.Helper()
	return startBin(t, zpeerBin, stdin, args...)
}

// startBin runs another program the same way.
func startBin(t *testing.T, bin, stdin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, args: args, bound: make(chan string, 8), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdin = strings.NewReader(stdin)
	p.cmd.Stdout = &p.stdout
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			if ep, ok := strings.CutPrefix(line, "bound "); ok {
				p.bound <- ep
			}
		}
		io.Copy(io.Discard, errPipe)
	}()
	go func() {
		<-copied
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = 128 + int(ws.Signal())
			}
		default:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// endpoint waits for the process to print its bound endpoint.
func (p *proc) endpoint() string {
	p.t.Helper()
	select {
	case ep := <-p.bound:
		return ep
	case <-p.done:
		p.t.Fatalf("zpeer %s exited (%d) before binding; stderr:\n%s", strings.Join(p.args, " "), p.code, p.stderr.String())
	case <-time.After(boundTimeout):
		p.t.Fatalf("zpeer %s did not bind within %s; stderr:\n%s", strings.Join(p.args, " "), boundTimeout, p.stderr.String())
	}
	return ""
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(procTimeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("zpeer %s still running after %s; killed. stderr:\n%s", strings.Join(p.args, " "), procTimeout, p.stderr.String())
	}
	return p.code
}

// signal sends sig to the process.
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// mustSucceed waits for a zero exit.
func (p *proc) mustSucceed() {
	p.t.Helper()
	if code := p.wait(); code != 0 {
		p.t.Fatalf("zpeer %s: exit %d; stderr:\n%s", strings.Join(p.args, " "), code, p.stderr.String())
	}
}

// lines returns standard output's lines.
func (p *proc) lines() []string {
	out := strings.TrimRight(p.stdout.String(), "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// zpeer runs zpeer to completion and returns stdout, stderr and the exit
// code.
func zpeer(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	p := start(t, stdin, args...)
	code := p.wait()
	return p.stdout.String(), p.stderr.String(), code
}

// waitUntil polls cond every 10 ms until it holds, failing after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, d, what, cond)
}

// serviceName returns a discovery service name unique to this test run, so
// that parallel tests (and other runs on the machine) do not see each
// other's peers.
func serviceName(prefix string) string {
	return fmt.Sprintf("%s-%04x", prefix, rand.Uint32()&0xffff)
}

// nlines is "1\n2\n...\nn\n".
func nlines(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

func equalLines(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}
