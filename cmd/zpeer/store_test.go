package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
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
