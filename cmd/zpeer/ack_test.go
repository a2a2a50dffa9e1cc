package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 19 item 1: a job acknowledged by pull --ack has its line on
// standard output (the write call returned) before the acknowledgement
// leaves. Workers are killed with SIGKILL in turn while paced jobs stream
// through them; push --ack exits 0 only once every job is acknowledged, so
// every job must then appear in some worker's output. A worker that acked
// lines still sitting in a buffer loses them with its process.
func TestAckKilledWorkersLoseNothing(t *testing.T) {
	t.Parallel()
	const jobs, kills, perWorker = 1500, 5, 120
	push := start(t, nlines(jobs), "push", "--ack", "--bind", local, "--interval", "1ms", "--timeout", "60s")
	ep := push.endpoint()
	var workers []*proc
	for i := range kills {
		// Credit 1 acks each job alone; credit 4 lets acks and lines batch.
		credit := []string{"1", "4"}[i%2]
		w := start(t, "", "pull", "--ack", "--connect", ep, "--credit", credit)
		workers = append(workers, w)
		waitUntil(t, 30*time.Second, fmt.Sprintf("worker %d's %d lines", i+1, perWorker), func() bool {
			return len(w.lines()) >= perWorker
		})
		w.signal(syscall.SIGKILL)
		if code := w.wait(); code != 128+int(syscall.SIGKILL) {
			t.Fatalf("worker %d killed: exit %d", i+1, code)
		}
	}
	last := start(t, "", "pull", "--ack", "--connect", ep)
	workers = append(workers, last)
	push.mustSucceed()
	last.signal(syscall.SIGTERM)
	last.wait()

	got := make(map[string]bool, jobs)
	for _, w := range workers {
		for _, l := range w.lines() {
			got[l] = true
		}
	}
	var missing []string
	for _, want := range strings.Fields(nlines(jobs)) {
		if !got[want] {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("push --ack exited 0, but %d acknowledged jobs are in no worker's output: %v", len(missing), missing)
	}
}
