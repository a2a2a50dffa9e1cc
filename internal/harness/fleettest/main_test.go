package fleettest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zpeer/zpeer/internal/harness/fleet"
	"github.com/zpeer/zpeer/internal/testutil"
)

// binDir holds the zpeer binary, built by the first test that needs it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zpeer-fleettest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := 0
	func() {
		defer os.RemoveAll(dir)
		code = goleakMain(m)
	}()
	os.Exit(code)
}

// goleakMain runs the tests and then checks that no goroutine outlived
// them (goleak.VerifyTestMain, which would exit before the cleanup).
func goleakMain(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

var build struct {
	once sync.Once
	path string
	err  error
}

// zpeerBinary returns the path of the zpeer command, built once, without
// the race detector: a fleet runs dozens of them on two cores.
func zpeerBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		goTool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if p, err := exec.LookPath("go"); err == nil {
			goTool = p
		}
		path := filepath.Join(binDir, "zpeer")
		out, err := exec.Command(goTool, "build", "-o", path, "github.com/zpeer/zpeer/cmd/zpeer").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("building zpeer: %v\n%s", err, out)
			return
		}
		build.path = path
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// serviceName is a discovery service name unique to this run.
func serviceName(prefix string) string {
	return fmt.Sprintf("%s-%04x", prefix, rand.Uint32()&0xffff)
}

// line is one line a process printed and when the test read it. The
// time is when the line reached the test, a little after it was
// written: good for measuring, not for ordering lines of two processes.
type line struct {
	p    *proc
	text string
	at   time.Time
}

// record gathers the lines of many processes as they come.
type record struct {
	mu    sync.Mutex
	lines []line        // guarded by mu
	wake  chan struct{} // guarded by mu: closed and replaced on each line or exit
}

func newRecord() *record { return &record{wake: make(chan struct{})} }

// proc is a zpeer process on a host, whose output goes to a record.
type proc struct {
	*fleet.Proc
	name    string
	started time.Time // when the test started it (before the fork)
	stderr  *testutil.SyncBuffer
	exited  chan struct{} // closed when its output has ended
}

// start runs zpeer with args on host i, its lines going to r.
func (r *record) start(t *testing.T, f *fleet.Fleet, i int, name string, args ...string) *proc {
	t.Helper()
	p, err := r.launch(f, zpeerBinary(t), i, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startEach runs zpeer on hosts first to first+n-1, eight at a time, with
// the name and arguments args(i) gives host i.
func (r *record) startEach(t *testing.T, f *fleet.Fleet, first, n int, args func(i int) (string, []string)) []*proc {
	t.Helper()
	bin := zpeerBinary(t)
	procs := make([]*proc, n)
	err := fleet.Each(n, 8, func(i int) (err error) {
		name, a := args(first + i)
		procs[i], err = r.launch(f, bin, first+i, name, a...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return procs
}

func (r *record) launch(f *fleet.Fleet, bin string, i int, name string, args ...string) (*proc, error) {
	p := &proc{name: name, stderr: &testutil.SyncBuffer{}, exited: make(chan struct{}), started: time.Now()}
	fp, err := f.Start(i, fleet.Command{Path: bin, Args: args, Stderr: p.stderr})
	if err != nil {
		return nil, err
	}
	p.Proc = fp
	go r.collect(p)
	return p, nil
}

// collect appends p's lines to the record until its output ends.
func (r *record) collect(p *proc) {
	defer func() {
		r.mu.Lock()
		close(p.exited)
		close(r.wake)
		r.wake = make(chan struct{})
		r.mu.Unlock()
	}()
	for {
		l, err := p.Wait(time.Hour, func([]byte) bool { return true })
		if err != nil {
			return
		}
		at := time.Now()
		r.mu.Lock()
		r.lines = append(r.lines, line{p: p, text: string(l), at: at})
		close(r.wake)
		r.wake = make(chan struct{})
		r.mu.Unlock()
	}
}

// await waits until cond holds over the lines read so far (it is called
// again after each new line), failing the test after timeout.
func (r *record) await(t *testing.T, timeout time.Duration, what string, cond func([]line) bool) {
	t.Helper()
	if err := r.wait(timeout, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (r *record) wait(timeout time.Duration, cond func([]line) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, wake := cond(r.lines), r.wake
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-wake:
		case <-deadline.C:
			return fmt.Errorf("not within %v", timeout)
		}
	}
}

// awaitLine waits until p has printed a line for which match holds, and
// returns it; it fails the test after timeout.
func (r *record) awaitLine(t *testing.T, timeout time.Duration, p *proc, what string, match func(string) bool) line {
	t.Helper()
	l, err := r.findLine(timeout, p, match)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", p.name, what, err, stderrs(p))
	}
	return l
}

// findLine is awaitLine's wait, which looks at each line of the record
// once.
func (r *record) findLine(timeout time.Duration, p *proc, match func(string) bool) (line, error) {
	var found *line
	next := 0
	err := r.wait(timeout, func(ls []line) bool {
		for ; next < len(ls) && found == nil; next++ {
			if ls[next].p == p && match(ls[next].text) {
				found = &ls[next]
			}
		}
		return found != nil
	})
	if err != nil {
		return line{}, err
	}
	return *found, nil
}

// snapshot returns the lines read so far.
func (r *record) snapshot() []line {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}

// of returns the lines of p in ls.
func of(ls []line, p *proc) []line {
	var out []line
	for _, l := range ls {
		if l.p == p {
			out = append(out, l)
		}
	}
	return out
}

// durations summarises a sample: least, median and most.
type durations []time.Duration

func (d durations) String() string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %v p50 %v max %v", r(s[0]), r(s[(len(s)-1)/2]), r(s[len(s)-1]))
}

// usage returns the resident memory of processes: least, median and
// most, in MB.
func usage(t *testing.T, ps ...*proc) string {
	t.Helper()
	var mb []float64
	for _, p := range ps {
		u, err := p.Usage()
		if err != nil {
			t.Fatal(err)
		}
		mb = append(mb, float64(u.RSS)/(1<<20))
	}
	slices.Sort(mb)
	return fmt.Sprintf("min %.1f p50 %.1f max %.1f MB", mb[0], mb[(len(mb)-1)/2], mb[len(mb)-1])
}

// stderrs returns the standard error of each process, for a failure.
func stderrs(ps ...*proc) string {
	var b bytes.Buffer
	for _, p := range ps {
		if s := strings.TrimSpace(p.stderr.String()); s != "" {
			fmt.Fprintf(&b, "--- %s (host %d):\n%s\n", p.name, p.Host, s)
		}
	}
	return b.String()
}
