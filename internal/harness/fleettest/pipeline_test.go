package fleettest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/harness/fleet"
)

// The partitioned pipeline on a fleet: how many of each, and how long
// any one wait may take before the test fails.
const (
	pipePushers  = 2
	pipePullers  = 32 // a quarter of them are killed
	pipeKeys     = 64 // per pusher
	pipePerKey   = 16 // jobs per key
	pipeDeadline = 2 * time.Minute
)

// TestFleetPartitionedPipeline runs a partitioned acknowledged pipeline
// on 34 hosts with the zpeer command: two pushers (push --ack --key-sep
// --discover, each with keys of its own) and 32 pullers (pull --ack
// --discover) on hosts of their own, finding each other over mDNS. Each
// puller does a job by appending its line to one log shared by every
// host (the lab's hosts share the file system), with O_APPEND: the log is
// the order in which jobs were done, across hosts, since a key's next job
// is handed out only after the one before it was acknowledged, and a
// puller acknowledges a job only after its command has exited. A third
// of the way through, a quarter of the pullers are killed with SIGKILL.
//
// It checks that both pushers exit 0 (every job acknowledged, none
// dead), that every job is in the log and in some puller's output, and
// that in the log each key's jobs are first done in push order: a job
// may be done twice (its puller died before acknowledging it), but never
// before the job ahead of it. It logs a PIPELINE line of figures.
func TestFleetPartitionedPipeline(t *testing.T) {
	f := fleet.New(t, pipePushers+pipePullers)
	rec := newRecord() // the pullers' lines: the jobs they did
	svc := serviceName("fleetjobs")
	logPath := filepath.Join(t.TempDir(), "done.log")
	began := time.Now()

	// The pushers bind and announce; each waits for all the pullers
	// (--peers), so that its keys spread over all of them from the first
	// job.
	pushers := make([]*proc, pipePushers)
	for i := range pushers {
		pushers[i] = newRecord().start(t, f, i, fmt.Sprintf("pusher%d", i),
			"push", "--ack", "--bind", "tcp://*:5557", "--discover", svc, "--iface", "eth0",
			"--key-sep", " ", "--peers", strconv.Itoa(pipePullers), "--timeout", "60s",
			"--name", fmt.Sprintf("pusher%d", i), "--verbose")
	}
	pullers := rec.startEach(t, f, pipePushers, pipePullers, func(i int) (string, []string) {
		name := fmt.Sprintf("puller%02d", i-pipePushers)
		return name, []string{"pull", "--ack", "--discover", svc, "--iface", "eth0", "--name", name,
			"--exec", "tee -a " + logPath}
	})
	lastStart := pushers[0].started
	for _, p := range append(pullers, pushers...) {
		lastStart = maxTime(lastStart, p.started)
	}

	// The jobs: "pP-kK N" is the N-th job of key pP-kK (its text before
	// the space). Keys take turns, so that each is spread through the
	// stream; every line goes in at once and waits at its pusher.
	results := make(chan error, pipePushers)
	for i, p := range pushers {
		var b strings.Builder
		for n := range pipePerKey {
			for k := range pipeKeys {
				fmt.Fprintf(&b, "p%d-k%d %d\n", i, k, n)
			}
		}
		go func() {
			err := p.Send(strings.TrimSuffix(b.String(), "\n"))
			if err == nil {
				err = p.Stop(pipeDeadline)
			}
			if err != nil {
				err = fmt.Errorf("%s: %w", p.name, err)
			}
			results <- err
		}()
	}
	total := pipePushers * pipeKeys * pipePerKey

	await := func(what string, cond func([]line) bool) {
		t.Helper()
		if err := rec.wait(pipeDeadline, cond); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, stderrs(pushers...))
		}
	}
	// The first job done: its pusher had all the pullers connected.
	await("the first job done", func(ls []line) bool { return len(ls) > 0 })
	firstJob := rec.snapshot()[0].at

	// A third of the way, a quarter of the pullers die: among those that
	// have done a job (they own keys), every len/8-th in host order.
	await("a third of the jobs done", func(ls []line) bool { return len(ls) >= total/3 })
	worked := workedPullers(rec.snapshot(), pullers)
	nv := pipePullers / 4
	if len(worked) < nv {
		t.Fatalf("only %d pullers did jobs before the kill; want at least %d", len(worked), nv)
	}
	var victims []*proc
	for i := range nv {
		victims = append(victims, worked[i*len(worked)/nv])
	}
	rss := usage(t, pullers...)
	doneAtKill := len(rec.snapshot())
	killed := time.Now()
	for _, v := range victims {
		v.Kill()
	}

	// Every job is acknowledged: both pushers exit 0.
	var pushErr []error
	for range pushers {
		if err := <-results; err != nil {
			pushErr = append(pushErr, err)
		}
	}
	drained := time.Now()
	if len(pushErr) > 0 {
		t.Fatalf("%v\n%s", pushErr, stderrs(pushers...))
	}
	// Their final counts (--verbose): every job sent was acknowledged;
	// and how many jobs they delivered again.
	want := fmt.Sprintf("zpeer: sent %d, received %d in ", pipeKeys*pipePerKey, pipeKeys*pipePerKey)
	redelivered := 0
	for _, p := range pushers {
		stderr := p.stderr.String()
		if !strings.Contains(stderr, want) {
			t.Fatalf("%s: no %q in its standard error:\n%s", p.name, want, stderr)
		}
		for _, l := range strings.Split(stderr, "\n") {
			var n int
			if _, err := fmt.Sscanf(l, "zpeer: %d redeliveries", &n); err == nil {
				redelivered += n
			}
		}
	}

	// The log: every job, each key in order.
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	done := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	dups := checkPartitionLog(t, done, pipePushers, pipeKeys, pipePerKey)
	if dups > redelivered {
		t.Errorf("%d jobs were done twice, but the pushers redelivered %d", dups, redelivered)
	}

	// Every job is in some puller's output too (a puller prints a job's
	// output before acknowledging it).
	printed := map[string]bool{}
	for _, l := range rec.snapshot() {
		printed[l.text] = true
	}
	for i := range pipePushers {
		for k := range pipeKeys {
			for n := range pipePerKey {
				if j := fmt.Sprintf("p%d-k%d %d", i, k, n); !printed[j] {
					t.Fatalf("job %q is in the log but no puller printed it", j)
				}
			}
		}
	}

	// The keys spread over the pullers.
	worked = workedPullers(rec.snapshot(), pullers)
	if len(worked) < pipePullers*3/4 {
		t.Errorf("only %d of %d pullers did jobs: the keys did not spread", len(worked), pipePullers)
	}

	// How the victims' keys moved: the time from the kill to the first
	// job of each of their keys done by another puller.
	owner := map[string]*proc{}
	for _, l := range rec.snapshot() {
		if l.at.Before(killed) {
			owner[jobKey(l.text)] = l.p
		}
	}
	isVictim := map[*proc]bool{}
	for _, v := range victims {
		isVictim[v] = true
	}
	var moved durations
	seen := map[string]bool{}
	for _, l := range rec.snapshot() {
		key := jobKey(l.text)
		if l.at.After(killed) && isVictim[owner[key]] && !isVictim[l.p] && !seen[key] {
			seen[key] = true
			moved = append(moved, l.at.Sub(killed))
		}
	}
	t.Logf("PIPELINE %d hosts: %d pushers, %d pullers (%d did jobs), %d keys, %d jobs | converge: first job %v after the last start | %d jobs done at the kill of %d pullers | drain %v after the kill, stream %v | %d keys moved, first job elsewhere %v after the kill | %d jobs redelivered, %d of them done twice | RSS per puller %s | run %v",
		f.Size(), pipePushers, pipePullers, len(worked), pipePushers*pipeKeys, total,
		firstJob.Sub(lastStart).Round(time.Millisecond), doneAtKill, len(victims),
		drained.Sub(killed).Round(time.Millisecond), drained.Sub(firstJob).Round(time.Millisecond),
		len(moved), moved, redelivered, dups, rss, time.Since(began).Round(time.Second))
}

// jobKey returns the key of a job line, "pP-kK N".
func jobKey(job string) string {
	key, _, _ := strings.Cut(job, " ")
	return key
}

// workedPullers returns the pullers that printed a job, in host order.
func workedPullers(ls []line, pullers []*proc) []*proc {
	did := map[*proc]bool{}
	for _, l := range ls {
		did[l.p] = true
	}
	var out []*proc
	for _, p := range pullers {
		if did[p] {
			out = append(out, p)
		}
	}
	return out
}

// checkPartitionLog fails unless the log of jobs done holds every job of
// every key, and each key's jobs are first done in order: a job done
// again (redelivered after its puller died) may come at any later point,
// a job done before the one ahead of it never. It returns the number of
// jobs done more than once.
func checkPartitionLog(t *testing.T, done []string, pushers, keys, perKey int) int {
	t.Helper()
	next := map[string]int{} // key -> the next job number due
	dups := 0
	for i, l := range done {
		key, num, ok := strings.Cut(l, " ")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			t.Fatalf("log line %d: unexpected %q", i+1, l)
		}
		switch want := next[key]; {
		case n == want:
			next[key] = n + 1
		case n < want:
			dups++
		default:
			t.Fatalf("log line %d: key %s: job %d done before job %d", i+1, key, n, want)
		}
	}
	for p := range pushers {
		for k := range keys {
			key := fmt.Sprintf("p%d-k%d", p, k)
			if got := next[key]; got != perKey {
				t.Fatalf("key %s: %d of %d jobs done", key, got, perKey)
			}
		}
	}
	if len(next) != pushers*keys {
		t.Fatalf("%d keys in the log, want %d", len(next), pushers*keys)
	}
	return dups
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
