package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/pattern"
)

// outboxHolds reports whether the segment files in dir contain every job's
// text (a short msgpack string is its bytes).
func outboxHolds(dir string, jobs []string) bool {
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	var all []byte
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		all = append(all, b...)
	}
	for _, j := range jobs {
		if !bytes.Contains(all, []byte(j)) {
			return false
		}
	}
	return true
}

// push --ack --store: the jobs of a push killed with SIGKILL before any
// worker came go first in the next push --ack --store on the directory,
// which exits 0 once they are acknowledged; then nothing is left.
func TestAckPushStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	jobs := []string{"job-alpha", "job-bravo", "job-charlie", "job-delta", "job-echo"}
	push := start(t, strings.Join(jobs, "\n")+"\n", "push", "--ack", "--bind", local, "--store", dir, "--timeout", "60s")
	push.endpoint()
	waitUntil(t, 20*time.Second, "the five jobs on disk", func() bool { return outboxHolds(dir, jobs) })
	push.signal(syscall.SIGKILL)
	push.wait()

	next := start(t, "", "push", "--ack", "--bind", local, "--store", dir, "--timeout", "30s")
	ep := next.endpoint()
	pull := start(t, "", "pull", "--ack", "--connect", ep, "--count", "5")
	pull.mustSucceed()
	next.mustSucceed()
	got := pull.lines()
	sort.Strings(got)
	equalLines(t, "worker output", got, jobs...)
	if !strings.Contains(next.stderr.String(), "5 jobs left in "+dir+" go first") {
		t.Errorf("second push's stderr %q", next.stderr.String())
	}

	_, stderr, code := zpeer(t, "", "push", "--ack", "--bind", local, "--store", dir, "--store-batch", "5ms", "--timeout", "5s")
	if code != 0 || strings.Contains(stderr, "jobs left") {
		t.Fatalf("third push: exit %d, stderr %q", code, stderr)
	}
}

func TestAckStoreUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"push", "--bind", local, "--store", dir, "x"}, "--store needs --ack"},
		{[]string{"push", "--ack", "--bind", local, "--store-batch", "10ms", "x"}, "--store-batch needs --store"},
		{[]string{"push", "--ack", "--bind", local, "--store", dir, "--store-batch", "-1s", "x"}, "--store-batch must not be negative"},
		{[]string{"pull", "--ack", "--connect", "tcp://127.0.0.1:9", "--store", dir}, "unknown flag: --store"},
	} {
		_, stderr, code := zpeer(t, "", tc.args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want 2", tc.args, code)
		}
		oneLine(t, stderr, tc.want)
	}
}

// Issue 19 item 5: a restarted push --ack --store says how many jobs the
// outbox held, even when workers waiting for it (here on an ipc endpoint
// they dial until it is back) settle some before it says so.
func TestAckPushStoreCountsJobsLeft(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ep, store := "ipc://"+filepath.Join(dir, "push.sock"), filepath.Join(dir, "store")
	var jobs []string
	for i := 1; i <= 40; i++ {
		jobs = append(jobs, fmt.Sprintf("job-%03d", i))
	}
	push := start(t, strings.Join(jobs, "\n")+"\n", "push", "--ack", "--bind", ep, "--store", store, "--timeout", "60s")
	push.endpoint()
	waitUntil(t, 20*time.Second, "the jobs on disk", func() bool { return outboxHolds(store, jobs) })
	push.signal(syscall.SIGKILL)
	push.wait()

	var workers []*proc
	for range 3 {
		workers = append(workers, start(t, "", "pull", "--ack", "--connect", ep, "--credit", "4"))
	}
	next := start(t, "", "push", "--ack", "--bind", ep, "--store", store, "--timeout", "30s")
	next.mustSucceed()
	done := map[string]bool{}
	for _, w := range workers {
		w.signal(syscall.SIGTERM)
		w.wait()
		for _, l := range w.lines() {
			done[l] = true
		}
	}
	if want := fmt.Sprintf("%d jobs left in %s go first", len(jobs), store); !strings.Contains(next.stderr.String(), want) {
		t.Errorf("the restarted push's stderr %q lacks %q", next.stderr.String(), want)
	}
	if len(done) != len(jobs) {
		t.Errorf("the workers did %d jobs of %d", len(done), len(jobs))
	}
}

// Two pushes on one outbox: the second fails at once and says why, once.
func TestAckPushStoreInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := start(t, "", "push", "--ack", "--bind", local, "--store", dir, "--timeout", "60s", "job")
	first.endpoint()
	_, stderr, code := zpeer(t, "", "push", "--ack", "--bind", local, "--store", dir, "--timeout", "1s", "job")
	if code != exitFailure {
		t.Fatalf("second push on %s: exit %d, want 1; stderr %q", dir, code, stderr)
	}
	oneLine(t, stderr, "zpeer: outbox: directory in use: "+dir)
	first.signal(syscall.SIGTERM)
	first.wait()
}

// leftInStore counts the jobs an outbox held at start, also once workers
// have settled some of them (Stats().Pending alone then says fewer).
func TestLeftInStoreCountsSettledJobs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 30
	first, err := pattern.NewPusher[job](pattern.WithAck(), pattern.WithBind(local), pattern.WithOutbox(dir, pattern.OutboxSync))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		b, _ := codec.MarshalValue(fmt.Sprintf("job %d", i))
		if err := first.Push(context.Background(), job(b)); err != nil {
			t.Fatal(err)
		}
	}
	first.Close() // no worker came: the jobs stay in the outbox

	next, err := pattern.NewPusher[job](pattern.WithAck(), pattern.WithBind(local), pattern.WithOutbox(dir, pattern.OutboxSync))
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	worker, err := pattern.NewPuller(func(context.Context, job) error { return nil },
		pattern.WithAck(), pattern.WithConnect(next.Endpoints()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	waitUntil(t, 20*time.Second, "some jobs acknowledged", func() bool { return next.Stats().Acked >= 5 })
	if got := leftInStore(next); got != n {
		t.Fatalf("leftInStore says %d jobs, the outbox held %d (Stats: %+v)", got, n, next.Stats())
	}
}
