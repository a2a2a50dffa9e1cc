package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// keyedLines returns perKey lines for each of nkeys keys, in runs of
// run lines of one key, the keys taking turns: "acct-K:N" is the N-th
// line of key acct-K. (Runs put a key's lines side by side, where a
// pusher that load-balanced would hand them to several workers at once;
// turns spread each key through the stream.)
func keyedLines(nkeys, perKey, run int) string {
	var b strings.Builder
	for n := 0; n < perKey; n += run {
		for k := range nkeys {
			for i := n; i < min(n+run, perKey); i++ {
				fmt.Fprintf(&b, "acct-%d:%d\n", k, i)
			}
		}
	}
	return b.String()
}

// checkKeyOrder fails unless lines, in the order they were done, hold
// every line of every key in order: a line may be repeated right after
// itself (a job done, then redelivered because its worker died before
// acknowledging it), never skipped or done before the one ahead of it.
func checkKeyOrder(t *testing.T, lines []string, nkeys, perKey int) {
	t.Helper()
	next := map[string]int{} // key -> the next line number expected
	for _, l := range lines {
		key, num, ok := strings.Cut(l, ":")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			t.Fatalf("unexpected line %q", l)
		}
		switch want := next[key]; {
		case n == want:
			next[key] = n + 1
		case n == want-1: // a repeat of the line just done
		default:
			t.Fatalf("key %s: line %d done when %d was due", key, n, want)
		}
	}
	for k := range nkeys {
		if got := next[fmt.Sprint("acct-", k)]; got != perKey {
			t.Fatalf("key acct-%d: %d of %d lines done", k, got, perKey)
		}
	}
}

// push --ack --key-sep: four workers (pullers need no flag), one of them
// killed with SIGKILL in the middle of the stream; every job is done,
// and each key's jobs in order, across the kill. The workers append each
// job to one log as they do it, so the log is the order in which jobs
// were done (a key's next job is handed out only once the previous one
// was acknowledged, after its command exited).
func TestPushKeySepAckSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	const nkeys, perKey = 40, 15 // 40 keys: every worker owns some (a given one owns none with odds of 0.75^40)
	log := filepath.Join(t.TempDir(), "done.log")
	push := start(t, keyedLines(nkeys, perKey, 5), "push", "--ack", "--bind", local, "--key-sep", ":", "--timeout", "60s")
	ep := push.endpoint()
	// The victim starts first and is slow: it owns every key until the
	// others join, and a share of them after.
	victim := start(t, "", "pull", "--ack", "--connect", ep, "--exec", "tee -a "+log+"; sleep 0.1")
	waitUntil(t, 20*time.Second, "the victim's first job", func() bool { return len(victim.lines()) >= 1 })
	var workers []*proc
	for range 3 {
		workers = append(workers, start(t, "", "pull", "--ack", "--connect", ep, "--exec", "tee -a "+log, "--timeout", "5s"))
	}
	waitUntil(t, 20*time.Second, "the others working", func() bool {
		n := 0
		for _, w := range workers {
			n += len(w.lines())
		}
		return n >= 3
	})
	n := len(victim.lines())
	waitUntil(t, 20*time.Second, "the victim's next jobs", func() bool { return len(victim.lines()) >= n+2 })
	victim.signal(syscall.SIGKILL)
	victim.wait()
	push.mustSucceed()
	for _, w := range workers {
		w.mustSucceed()
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	checkKeyOrder(t, strings.Split(strings.TrimSpace(string(data)), "\n"), nkeys, perKey)
	// After the kill the victim's keys went to the others: each worker's
	// own output is in key order too, and every key ended on one worker.
	last := map[string]int{}
	for i, w := range workers {
		for _, l := range w.lines() {
			key, _, _ := strings.Cut(l, ":")
			last[key] = i
		}
	}
	if len(last) != nkeys {
		t.Fatalf("the surviving workers did %d keys, want %d", len(last), nkeys)
	}
}

// push --key-sep without --ack: every line of a key goes to one of four
// workers, in order, and the keys spread over all of them.
func TestPushKeySepFireAndForget(t *testing.T) {
	t.Parallel()
	const nkeys, perKey = 41, 10
	var pullers []*proc
	args := []string{"push", "--key-sep", ":", "--peers", "4", "--timeout", "20s"}
	for range 4 {
		pl := start(t, "", "pull", "--bind", local, "--timeout", "3s")
		pullers = append(pullers, pl)
		args = append(args, "--connect", pl.endpoint())
	}
	zpeerOK(t, keyedLines(nkeys, perKey, 1), args...)
	owner := map[string]int{}
	for i, pl := range pullers {
		waitUntil(t, 20*time.Second, "the puller to stop", func() bool {
			select {
			case <-pl.done:
				return true
			default:
				return false
			}
		})
		lines := pl.lines()
		if len(lines) == 0 {
			t.Fatalf("puller %d got no line: the keys did not spread", i)
		}
		checkKeyOrderPartial(t, lines)
		for _, l := range lines {
			key, _, _ := strings.Cut(l, ":")
			if o, ok := owner[key]; ok && o != i {
				t.Fatalf("key %s went to pullers %d and %d", key, o, i)
			}
			owner[key] = i
		}
	}
	if len(owner) != nkeys {
		t.Fatalf("%d keys arrived, want %d", len(owner), nkeys)
	}
}

// checkKeyOrderPartial fails unless the lines of each key in lines are
// consecutive from 0, with none missing.
func checkKeyOrderPartial(t *testing.T, lines []string) {
	t.Helper()
	next := map[string]int{}
	for _, l := range lines {
		key, num, _ := strings.Cut(l, ":")
		if n, err := strconv.Atoi(num); err != nil || n != next[key] {
			t.Fatalf("key %s: got line %q when %d was due", key, l, next[key])
		}
		next[key]++
	}
}

// zpeerOK runs zpeer to completion and fails unless it exits 0.
func zpeerOK(t *testing.T, stdin string, args ...string) {
	t.Helper()
	p := start(t, stdin, args...)
	p.mustSucceed()
}

func TestKeySepUsage(t *testing.T) {
	t.Parallel()
	_, stderr, code := zpeer(t, "", "push", "--connect", "tcp://127.0.0.1:9", "--key-sep", "", "x")
	if code != exitUsage || !strings.Contains(stderr, "--key-sep needs a separator") {
		t.Fatalf("push --key-sep '': exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = zpeer(t, "", "pull", "--bind", local, "--key-sep", ":")
	if code != exitUsage {
		t.Fatalf("pull --key-sep: exit %d, stderr %q", code, stderr)
	}
}

// push --ack --peers N sends no job before N workers are connected: with
// one of two it times out and the worker did nothing; with both, every
// key stays on one worker from its first job to its last.
func TestPushAckPeersWaitsForWorkers(t *testing.T) {
	t.Parallel()
	push := start(t, "", "push", "--ack", "--bind", local, "--peers", "2", "--timeout", "3s", "j1", "j2")
	lone := start(t, "", "pull", "--ack", "--connect", push.endpoint())
	if code := push.wait(); code != exitFailure || !strings.Contains(push.stderr.String(), "of 2 peers ready after 3s") {
		t.Fatalf("push --ack --peers 2 with one worker: exit %d, stderr %q", code, push.stderr.String())
	}
	lone.signal(syscall.SIGKILL)
	lone.wait()
	if got := lone.lines(); len(got) > 0 {
		t.Fatalf("the lone worker did %q before the second was there", got)
	}

	const nkeys, perKey = 8, 5
	push = start(t, keyedLines(nkeys, perKey, 1), "push", "--ack", "--bind", local, "--key-sep", ":", "--peers", "2", "--timeout", "30s")
	ep := push.endpoint()
	var workers []*proc
	for range 2 {
		workers = append(workers, start(t, "", "pull", "--ack", "--connect", ep, "--timeout", "3s"))
	}
	push.mustSucceed()
	owner := map[string]int{}
	for i, w := range workers {
		w.wait()
		checkKeyOrderPartial(t, w.lines())
		for _, l := range w.lines() {
			key, _, _ := strings.Cut(l, ":")
			if o, ok := owner[key]; ok && o != i {
				t.Fatalf("key %s moved between workers: both were connected before its first job", key)
			}
			owner[key] = i
		}
	}
	if len(owner) != nkeys {
		t.Fatalf("%d keys done, want %d", len(owner), nkeys)
	}
}
