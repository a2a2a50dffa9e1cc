package fleet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/harness/netns"
)

// Fleet is a lab of hosts and the processes a test started on them.
type Fleet struct {
	// Lab is the network: Lab.Hosts[i] is host i, its namespace and
	// address.
	Lab *netns.Lab

	mu    sync.Mutex
	procs []*Proc // guarded by mu
}

// New builds a fleet of n hosts, or skips the test when network
// namespaces cannot be built here (not Linux, not root, no ip command).
// The processes still running at the end of the test are killed, then the
// lab is deleted.
func New(t testing.TB, n int) *Fleet {
	t.Helper()
	if err := netns.Check(); err != nil {
		t.Skipf("skipping fleet test: %v (CI runs it as root)", err)
	}
	lab, err := netns.New(n)
	if err != nil {
		t.Fatal(err)
	}
	f := &Fleet{Lab: lab}
	t.Cleanup(func() {
		f.mu.Lock()
		procs := f.procs
		f.mu.Unlock()
		for _, p := range procs {
			p.Kill()
		}
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// Size returns the number of hosts.
func (f *Fleet) Size() int { return len(f.Lab.Hosts) }

// Addr returns host i's IPv4 address.
func (f *Fleet) Addr(i int) string { return f.Lab.Hosts[i].Addr }

// Command is a program to run on a host.
type Command struct {
	// Path is the program; Args its arguments.
	Path string
	Args []string
	// Env is added to the test process's environment.
	Env []string
	// Stderr receives the program's standard error; nil: the test
	// process's.
	Stderr io.Writer
}

// Self returns a Command that runs the test binary itself, running no
// test, with env added to its environment: the test package's TestMain
// recognises the variable and runs a helper instead of the tests.
func Self(env ...string) (Command, error) {
	exe, err := os.Executable()
	if err != nil {
		return Command{}, fmt.Errorf("fleet: %w", err)
	}
	return Command{Path: exe, Args: []string{"-test.run=^$"}, Env: env}, nil
}

// Start runs c on host i. Its standard output is read line by line (see
// Wait and Lines); its standard input stays open until Stop.
func (f *Fleet) Start(i int, c Command) (*Proc, error) {
	if i < 0 || i >= len(f.Lab.Hosts) {
		return nil, fmt.Errorf("fleet: no host %d", i)
	}
	argv := append(f.Lab.Command(i), c.Path)
	argv = append(argv, c.Args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stderr = c.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	// "ip netns exec" enters the namespace and execs the program: the
	// process is the program itself (its pid, its /proc entry, SIGKILL).
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("fleet: start on host %d: %w", i, err)
	}
	p := &Proc{Host: i, cmd: cmd, stdin: stdin, wake: make(chan struct{}), eofCh: make(chan struct{}),
		exited: make(chan struct{})}
	go p.read(stdout)
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	return p, nil
}

// StartEach runs cmd(i) on hosts 0 to n-1, at most parallel starts at a
// time, and returns the processes in host order. ready, if not nil, waits
// for each process to be ready (e.g. p.Wait for its first line) before
// the next start is counted as done. On error the processes already
// started keep running until the test ends.
func (f *Fleet) StartEach(n, parallel int, cmd func(i int) Command, ready func(*Proc) error) ([]*Proc, error) {
	procs := make([]*Proc, n)
	err := Each(n, parallel, func(i int) error {
		p, err := f.Start(i, cmd(i))
		if err == nil && ready != nil {
			err = ready(p)
		}
		procs[i] = p
		return err
	})
	return procs, err
}

// Each calls fn(i) for i from 0 to n-1, at most parallel calls at a time,
// and returns their errors joined once every call has returned.
func Each(n, parallel int, fn func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, max(1, parallel))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Proc is a process running on a host.
type Proc struct {
	// Host is the index of its host.
	Host int

	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu     sync.Mutex
	lines  [][]byte      // guarded by mu: every line printed so far
	next   int           // guarded by mu: the first line Wait has not returned
	wake   chan struct{} // guarded by mu: closed and replaced when a line comes
	eof    bool          // guarded by mu: standard output is closed
	eofCh  chan struct{} // closed when standard output is
	exited chan struct{} // closed when the process has been reaped

	waitOnce sync.Once
	waitErr  error
}

func (p *Proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := bytes.Clone(sc.Bytes())
		p.mu.Lock()
		p.lines = append(p.lines, l)
		close(p.wake)
		p.wake = make(chan struct{})
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.eof = true
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
	close(p.eofCh)
}

// Send writes line, and a newline, to the process's standard input.
func (p *Proc) Send(line string) error {
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Wait returns the next line (after those Wait already returned) for
// which match is true, skipping the others; it fails after timeout or
// when the process closed its output first.
func (p *Proc) Wait(timeout time.Duration, match func(line []byte) bool) ([]byte, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for p.next < len(p.lines) {
			l := p.lines[p.next]
			p.next++
			if match(l) {
				p.mu.Unlock()
				return l, nil
			}
		}
		eof, wake := p.eof, p.wake
		p.mu.Unlock()
		if eof {
			return nil, fmt.Errorf("fleet: host %d: the process ended its output while waited for", p.Host)
		}
		select {
		case <-wake:
		case <-deadline.C:
			return nil, fmt.Errorf("fleet: host %d: no matching line within %v", p.Host, timeout)
		}
	}
}

// Lines returns every line printed so far.
func (p *Proc) Lines() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.lines...)
}

// reap waits for the process. Its output is read to the end first (Wait
// closes the pipe), unless something else holds it open for long.
func (p *Proc) reap() error {
	p.waitOnce.Do(func() {
		select {
		case <-p.eofCh:
		case <-time.After(5 * time.Second):
		}
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	})
	return p.waitErr
}

// Stop closes the process's standard input (a helper's signal to leave
// gracefully) and waits for it to exit, killing it after timeout. It
// returns the process's exit error, or a timeout error.
func (p *Proc) Stop(timeout time.Duration) error {
	p.stdin.Close()
	go p.reap()
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("fleet: host %d: still running %v after its input closed; killed", p.Host, timeout)
	}
}

// Kill kills the process with SIGKILL (no goodbye, no cleanup) and reaps
// it. It is idempotent.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.reap()
}

// Usage is what a process has consumed.
type Usage struct {
	// CPU is the CPU time used so far, user and system.
	CPU time.Duration
	// RSS is the resident memory now.
	RSS int64
}

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// Usage reads the process's CPU time and resident memory from /proc.
func (p *Proc) Usage() (Usage, error) {
	pid := strconv.Itoa(p.Pid())
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return Usage{}, fmt.Errorf("fleet: %w", err)
	}
	// The fields after the command name, which is in parentheses and
	// may hold spaces: state is field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Usage{}, fmt.Errorf("fleet: /proc/%s/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return Usage{}, fmt.Errorf("fleet: /proc/%s/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return Usage{}, fmt.Errorf("fleet: /proc/%s/stat: unexpected format", pid)
	}
	u := Usage{CPU: time.Duration(utime+stime) * clockTick}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return Usage{}, fmt.Errorf("fleet: %w", err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return Usage{}, fmt.Errorf("fleet: /proc/%s/status: VmRSS %q", pid, v)
			}
			u.RSS = kb << 10
		}
	}
	return u, nil
}
