package faultsuite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/pattern"
)

const pusherLifeEnv = "ZPEER_FAULT_PUSHER_LIFE"

// TestFaultPusherCrash: an acked pusher process with a sync outbox
// (pattern.WithOutbox) is killed with SIGKILL mid-run, again and again,
// and restarted on the same directory each time; every job whose Push
// returned nil in any life is processed at least once.
func TestFaultPusherCrash(t *testing.T) {
	if dir := os.Getenv(pusherLifeEnv); dir != "" {
		runPusherLife(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	jobs := pick(6000, 100000)
	kills := pick(3, 10)
	dir := t.TempDir()
	var mu sync.Mutex
	seen := make([]int, jobs)
	handler := func(ctx context.Context, v int) error {
		// Some work, so that the pusher's kills find jobs held.
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		if v >= 0 && v < jobs {
			mu.Lock()
			seen[v]++
			mu.Unlock()
		}
		return nil
	}
	var pullers []*pattern.Puller[int]
	t.Cleanup(func() {
		for _, pl := range pullers {
			pl.Close()
		}
	})
	returned := filepath.Join(dir, "returned")
	life := func(n int, last bool) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFaultPusherCrash$")
		cmd.Env = append(os.Environ(), pusherLifeEnv+"="+dir, "ZPEER_FAULT_JOBS="+strconv.Itoa(jobs),
			"ZPEER_FAULT_LIFE="+strconv.Itoa(n))
		if last {
			cmd.Env = append(cmd.Env, "ZPEER_FAULT_LAST=1")
		}
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		epf := filepath.Join(dir, fmt.Sprintf("endpoint-%d", n))
		waitFor(t, "the pusher's endpoint", 30*time.Second, func() bool { _, err := os.Stat(epf); return err == nil })
		ep := string(must(os.ReadFile(epf)))
		// Two pullers per life: acks go back on the connection the job
		// came on, so each life's pusher gets pullers of its own.
		for range 2 {
			pl := must(pattern.NewPuller(handler, pattern.WithConnect(ep), pattern.WithAck(), pattern.WithWorkers(1)))
			pullers = append(pullers, pl)
		}
		return cmd
	}
	var recovered []string
	for n := range kills {
		cmd := life(n, false)
		before := countLines(returned)
		waitFor(t, "pushes returning", 60*time.Second, func() bool { return countLines(returned) >= before+jobs/(2*kills) })
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		// The dead pusher's pullers go: what they held comes back from
		// the outbox.
		for _, pl := range pullers {
			pl.Close()
		}
		pullers = pullers[:0]
		recovered = append(recovered, readFileString(filepath.Join(dir, fmt.Sprintf("recovered-%d", n))))
	}
	cmd := life(kills, true)
	waitFor(t, "the last life to drain", pick(2*time.Minute, 10*time.Minute), func() bool {
		_, err := os.Stat(filepath.Join(dir, "done"))
		return err == nil
	})
	recovered = append(recovered, readFileString(filepath.Join(dir, fmt.Sprintf("recovered-%d", kills))))
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	ok := returnedSet(returned)
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for i, n := range seen {
		if n == 0 && ok[i] {
			t.Fatalf("job %d: Push returned nil, never processed", i)
		}
		if n > 1 {
			dups += n - 1
		}
	}
	if len(ok) != jobs {
		t.Fatalf("%d of %d jobs returned in the last life", len(ok), jobs)
	}
	for i, r := range recovered[1:] {
		if n, err := strconv.Atoi(r); err != nil || n == 0 {
			t.Fatalf("restart %d took back %q jobs: the kill did not find jobs held", i+1, r)
		}
	}
	report(t, fmt.Sprintf("0 of %d lost", jobs), fmt.Sprintf("pusher killed with SIGKILL %d times, restarted on its outbox (sync); jobs taken back per restart %s; %d processed twice",
		kills, strings.Join(recovered[1:], ", "), dups))
}

func readFileString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// returnedSet reads the jobs whose Push returned nil (whole lines only: a
// line cut by a kill is not claimed).
func returnedSet(path string) map[int]bool {
	ok := map[int]bool{}
	f, err := os.Open(path)
	if err != nil {
		return ok
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, err := strconv.Atoi(sc.Text()); err == nil {
			ok[n] = true
		}
	}
	return ok
}

// runPusherLife is one life of TestFaultPusherCrash's pusher process: it
// opens the outbox (taking back what the previous life left), pushes from
// four goroutines every job no earlier life saw returned, appending each
// returned job to dir/returned, and in the last life drains and writes
// dir/done. It waits to be killed.
func runPusherLife(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "pusher life:", err)
		os.Exit(2)
	}
	jobs, _ := strconv.Atoi(os.Getenv("ZPEER_FAULT_JOBS"))
	n := os.Getenv("ZPEER_FAULT_LIFE")
	before := returnedSet(filepath.Join(dir, "returned"))
	push, err := pattern.NewPusher[int](pattern.WithBind("tcp://127.0.0.1:0"), pattern.WithAck(),
		pattern.WithOutbox(filepath.Join(dir, "outbox"), pattern.OutboxSync))
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "recovered-"+n), []byte(strconv.Itoa(push.Stats().Pending)), 0o644); err != nil {
		fail(err)
	}
	tmp := filepath.Join(dir, "endpoint.tmp")
	if err := os.WriteFile(tmp, []byte(push.Endpoints()[0]), 0o644); err != nil {
		fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "endpoint-"+n)); err != nil {
		fail(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "returned"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fail(err)
	}
	const workers = 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < jobs; i += workers {
				if before[i] {
					continue
				}
				if err := push.Push(context.Background(), i); err != nil {
					fail(err)
				}
				if _, err := fmt.Fprintf(f, "%d\n", i); err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	if os.Getenv("ZPEER_FAULT_LAST") != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := push.Drain(ctx); err != nil {
			fail(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
			fail(err)
		}
	}
	select {} // until killed
}
