package faultsuite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// rssKiB reads a process's resident set size.
func rssKiB(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// TestFaultSubscriberNeverReads: a subscriber process that never reads,
// behind a link cut every few hundred milliseconds (so its publisher
// reconnects again and again), holds bounded memory. Before, each dead
// connection kept a full queue, and memory grew with every reconnect.
func TestFaultSubscriberNeverReads(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read a process's memory")
	}
	run := pick(4*time.Second, 60*time.Second)
	pub := must(pattern.NewPublisher[[]byte](pattern.WithBind("tcp://127.0.0.1:0")))
	closeAtEnd(t, pub)
	px := proxy(t, pub.Endpoints()[0])

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ZPEER_FAULT_IDLE_SUB="+px.Endpoint())
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "the subscriber", 30*time.Second, func() bool { return pub.Subscribers() == 1 })

	body := make([]byte, 1<<10)
	start := time.Now()
	var samples []int
	nextCut := start.Add(300 * time.Millisecond)
	nextSample := start
	cuts := 0
	for time.Since(start) < run {
		// Publish flat out, in bursts between checks of the clock.
		for range 200 {
			if err := pub.Publish(context.Background(), "t", body); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		if now.After(nextCut) {
			px.Cut()
			px.Restore()
			cuts++
			nextCut = now.Add(300 * time.Millisecond)
		}
		if now.After(nextSample) {
			kb, err := rssKiB(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			samples = append(samples, kb)
			nextSample = now.Add(250 * time.Millisecond)
		}
	}
	// After a warm-up quarter, the resident set stays within a few marks
	// of 1,000 1 KiB messages (here 16 MiB) of where it was.
	warm := samples[len(samples)/4]
	peak := 0
	for _, kb := range samples[len(samples)/4:] {
		peak = max(peak, kb)
	}
	if peak > warm+16<<10 {
		t.Fatalf("subscriber RSS grew from %d KiB to %d KiB over %v (%d reconnects): unbounded", warm, peak, run, cuts)
	}
	report(t, "RSS bounded", fmt.Sprintf("never reading for %v, %d reconnects, 1 KiB messages: RSS %d KiB after warm-up, peak %d KiB", run, cuts, warm, peak))
}

// runIdleSubscriber is the subscriber process of
// TestFaultSubscriberNeverReads: it subscribes to everything and never
// calls Recv.
func runIdleSubscriber(ep string) int {
	sub, err := pattern.NewSubscriber[[]byte](pattern.WithConnect(ep), pattern.WithTopics(""),
		pattern.WithSocketOptions(socket.WithReconnect(20*time.Millisecond, 100*time.Millisecond)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sub.Close()
	select {} // never reads; killed by the test
}
