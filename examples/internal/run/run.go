// Package run builds an example program and runs it as a user would, for
// the examples' tests: it starts processes, collects their output line by
// line, waits for lines (bounded in time) and checks exit codes.
package run

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles the main package in dir into a temporary directory and
// returns the binary's path. Call it from TestMain; on failure it exits.
func Build(dir, name string) (bin string, cleanup func()) {
	tmp, err := os.MkdirTemp("", "zpeer-example-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(tmp, name)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building", name+":", err)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	return bin, func() { os.RemoveAll(tmp) }
}

// Timeout bounds every wait of this package.
const Timeout = 30 * time.Second

// Proc is a running program.
type Proc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu    sync.Mutex
	lines []string // stdout and stderr lines, in arrival order
	out   []string // stdout lines only
	more  chan struct{}
	done  chan struct{}
	code  int
}

// Start runs bin with args; name labels it in failure messages.
func Start(t *testing.T, name, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, name: name, more: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go p.read(&wg, stdout, true)
	go p.read(&wg, stderr, false)
	go func() {
		wg.Wait()
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = 128 + int(ws.Signal())
			}
		} else if err != nil {
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
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.Output())
		}
	})
	return p
}

func (p *Proc) read(wg *sync.WaitGroup, r io.Reader, stdout bool) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		if stdout {
			p.out = append(p.out, sc.Text())
		}
		p.mu.Unlock()
		select {
		case p.more <- struct{}{}:
		default:
		}
	}
}

// Output returns everything the program printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// Stdout returns the lines printed on standard output so far.
func (p *Proc) Stdout() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.out...)
}

// WaitLine waits until a line (stdout or stderr) matches re, and returns
// its submatches. It fails the test after Timeout.
func (p *Proc) WaitLine(re string) []string {
	p.t.Helper()
	m, err := p.waitLine(re, Timeout)
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

// Within reports whether a line matching re is printed (or was already)
// within d.
func (p *Proc) Within(re string, d time.Duration) bool {
	m, _ := p.waitLine(re, d)
	return m != nil
}

func (p *Proc) waitLine(re string, d time.Duration) ([]string, error) {
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		lines := p.lines[seen:]
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if m := rx.FindStringSubmatch(l); m != nil {
				return m, nil
			}
		}
		select {
		case <-p.more:
		case <-p.done:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if n == seen {
				return nil, fmt.Errorf("%s exited (%d) without printing a line matching %q", p.name, p.code, re)
			}
		case <-deadline.C:
			return nil, fmt.Errorf("%s printed no line matching %q within %s", p.name, re, d)
		}
	}
}

// Count returns how many lines so far match re.
func (p *Proc) Count(re string) int {
	rx := regexp.MustCompile(re)
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if rx.MatchString(l) {
			n++
		}
	}
	return n
}

// Send writes a line to the program's standard input.
func (p *Proc) Send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("%s: writing stdin: %v", p.name, err)
	}
}

// CloseStdin closes the program's standard input.
func (p *Proc) CloseStdin() { p.stdin.Close() }

// Signal sends sig.
func (p *Proc) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// Pid is the program's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Wait waits for the program to exit and returns its exit code.
func (p *Proc) Wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(2 * Timeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("%s still running after %s: killed", p.name, 2*Timeout)
	}
	return -1
}

// MustSucceed waits for a zero exit code.
func (p *Proc) MustSucceed() {
	p.t.Helper()
	if code := p.Wait(); code != 0 {
		p.t.Fatalf("%s: exit %d", p.name, code)
	}
}
