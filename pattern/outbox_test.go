package pattern

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/outbox"
)

func TestOutboxOptions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"no-ack", []Option{WithOutbox(dir, OutboxSync)}},
		{"empty-dir", []Option{WithAck(), WithOutbox("", OutboxSync)}},
		{"negative-interval", []Option{WithAck(), WithOutbox(dir, OutboxBatched(-time.Second))}},
		{"bytes-without-outbox", []Option{WithAck(), WithOutboxMaxBytes(1 << 20)}},
		{"zero-bytes", []Option{WithAck(), WithOutbox(dir, OutboxSync), WithOutboxMaxBytes(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := NewPusher[job](tc.opts...); !errors.Is(err, ErrOption) {
				if p != nil {
					p.Close()
				}
				t.Fatalf("NewPusher: %v, want ErrOption", err)
			}
		})
	}
	if _, err := NewPuller(func(context.Context, job) error { return nil }, WithAck(), WithOutbox(dir, OutboxSync)); !errors.Is(err, ErrOption) {
		t.Fatalf("WithOutbox on a Puller: %v, want ErrOption", err)
	}
	p, err := NewPusher[job](WithAck(), WithOutbox(dir, OutboxSync))
	p = cleanup(t, p, err)
	if p2, err := NewPusher[job](WithAck(), WithOutbox(dir, OutboxSync)); !errors.Is(err, ErrOutbox) {
		if p2 != nil {
			p2.Close()
		}
		t.Fatalf("second Pusher on one outbox: %v, want ErrOutbox", err)
	}
	ff, err := NewPusher[job]()
	ff = cleanup(t, ff, err)
	if _, err := ff.PushAsync(ctxT(t), job{}); !errors.Is(err, ErrOption) {
		t.Fatalf("PushAsync without WithAck: %v", err)
	}
}

// Jobs a Pusher held when it closed (or crashed) are delivered by the next
// Pusher on the same directory; acked jobs are not.
func TestOutboxRestart(t *testing.T) {
	for _, mode := range []OutboxMode{OutboxSync, OutboxBatched(5 * time.Millisecond)} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			got := newTally()
			handler := func(_ context.Context, j job) error { got.add(j.N, "p"); return nil }

			// First life: 20 jobs acked, then 50 with no puller there.
			push, err := NewPusher[job](WithBind(loopback), WithAck(), WithOutbox(dir, mode))
			if err != nil {
				t.Fatal(err)
			}
			pl, err := NewPuller(handler, WithConnect(ep(t, push)), WithAck())
			if err != nil {
				push.Close()
				t.Fatal(err)
			}
			for i := range 20 {
				if err := push.Push(ctxT(t), job{N: i}); err != nil {
					t.Fatal(err)
				}
			}
			if err := push.Drain(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			pl.Close()
			waitFor(t, "the puller gone", func() bool { return push.Pullers() == 0 })
			var rcpts []*Receipt
			for i := 20; i < 70; i++ {
				r, err := push.PushAsync(ctxT(t), job{N: i})
				if err != nil {
					t.Fatal(err)
				}
				rcpts = append(rcpts, r)
			}
			if err := push.Close(); err != nil {
				t.Fatal(err)
			}
			for _, r := range rcpts {
				select {
				case <-r.Done():
				default:
					t.Fatal("a receipt is not done after Close")
				}
				if !errors.Is(r.Err(), ErrClosed) {
					t.Fatalf("receipt of an abandoned job: %v, want ErrClosed", r.Err())
				}
			}

			// Second life: the 50 come back, and only they.
			before := got.distinct()
			push, err = NewPusher[job](WithBind(loopback), WithAck(), WithOutbox(dir, mode))
			push = cleanup(t, push, err)
			if push.ack.recovered != 50 || push.Stats().Pending != 50 {
				t.Fatalf("recovered %d jobs (pending %d), want 50", push.ack.recovered, push.Stats().Pending)
			}
			pl, err = NewPuller(handler, WithConnect(ep(t, push)), WithAck())
			cleanup(t, pl, err)
			if err := push.Drain(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if got.distinct() != 70 || before != 20 {
				t.Fatalf("processed %d distinct jobs (%d before the restart), want 70", got.distinct(), before)
			}
			got.mu.Lock()
			for n, c := range got.seen {
				if n < 20 && c != 1 {
					t.Errorf("acked job %d processed %d times", n, c)
				}
			}
			got.mu.Unlock()
			if st := push.Stats(); st.Acked != 50 || st.Sent != 50 {
				t.Fatalf("second pusher stats %+v", st)
			}
			push.Close()
			// Third life: nothing left.
			push, err = NewPusher[job](WithAck(), WithOutbox(dir, mode))
			push = cleanup(t, push, err)
			if push.ack.recovered != 0 {
				t.Fatalf("third pusher recovered %d jobs", push.ack.recovered)
			}
		})
	}
}

// A record in the outbox that is not a data envelope (another program's
// file, a bug) is dropped and counted, never delivered.
func TestOutboxForeignRecord(t *testing.T) {
	dir := t.TempDir()
	st, err := outbox.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Append(context.Background(), outbox.ID{1}, []byte("not an envelope")); err != nil {
		t.Fatal(err)
	}
	st.Close()
	push, err := NewPusher[job](WithAck(), WithOutbox(dir, OutboxSync))
	push = cleanup(t, push, err)
	if s := push.Stats(); s.Dropped != 1 || s.Pending != 0 || push.ack.recovered != 0 {
		t.Fatalf("stats %+v, recovered %d", s, push.ack.recovered)
	}
	push.Close()
	st, err = outbox.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if s := st.Stats(); s.Recovered != 0 {
		t.Fatalf("the dropped record is still in the outbox: %+v", s)
	}
}

func TestOutboxFull(t *testing.T) {
	push, err := NewPusher[job](WithAck(), WithMaxPending(3), WithOutbox(t.TempDir(), OutboxSync), WithOutboxMaxBytes(1<<20))
	push = cleanup(t, push, err)
	for i := range 3 {
		if err := push.Push(ctxT(t), job{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := push.Push(ctx, job{N: 3}); !errors.Is(err, ErrFull) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Push into a full outbox: %v, want ErrFull and ErrTimeout", err)
	}
	// The bytes bound: a 2 MiB job never fits 1 MiB.
	if err := push.Push(ctxT(t), job{Data: strings.Repeat("x", 2<<20)}); !errors.Is(err, ErrOutbox) {
		t.Fatalf("Push of a job larger than the outbox: %v, want ErrOutbox", err)
	}
}

// A producer learns each job's outcome from its receipt: acked, or dead
// with the dead letter's error.
func TestPushAsyncReceipts(t *testing.T) {
	push, err := NewPusher[job](WithBind(loopback), WithAck(), WithMaxDeliveries(2))
	push = cleanup(t, push, err)
	pl, err := NewPuller(func(_ context.Context, j job) error {
		if j.Data == "poison" {
			return errors.New("cannot digest")
		}
		return nil
	}, WithConnect(ep(t, push)), WithAck())
	cleanup(t, pl, err)
	var rcpts []*Receipt
	for i := range 100 {
		j := job{N: i}
		if i == 42 {
			j.Data = "poison"
		}
		r, err := push.PushAsync(ctxT(t), j)
		if err != nil {
			t.Fatal(err)
		}
		rcpts = append(rcpts, r)
	}
	ids := map[[16]byte]bool{}
	for i, r := range rcpts {
		if err := r.Wait(ctxT(t)); (err != nil) != (i == 42) {
			t.Fatalf("job %d: receipt %v", i, err)
		}
		if i == 42 && !errors.Is(r.Err(), ErrDead) {
			t.Fatalf("poison job's receipt: %v, want ErrDead", r.Err())
		}
		ids[r.ID()] = true
	}
	if len(ids) != 100 {
		t.Fatalf("%d distinct receipt ids", len(ids))
	}
	if st := push.Stats(); st.Acked != 99 || st.Dead != 1 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

const killChildEnv = "ZPEER_OUTBOX_KILL_CHILD"

// killChild is the pusher process that TestOutboxKill9 kills: it pushes
// jobs 0..n-1 from 4 goroutines with a sync outbox, appending each job
// whose Push returned nil to dir/returned.
func killChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	push, err := NewPusher[job](WithBind(loopback), WithAck(), WithOutbox(filepath.Join(dir, "outbox"), OutboxSync))
	if err != nil {
		fail(err)
	}
	tmp := filepath.Join(dir, "endpoint.tmp")
	if err := os.WriteFile(tmp, []byte(push.Endpoints()[0]), 0o644); err != nil {
		fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "endpoint")); err != nil {
		fail(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "returned"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fail(err)
	}
	const n, workers = 50000, 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := push.Push(context.Background(), job{N: i}); err != nil {
					fail(err)
				}
				if _, err := fmt.Fprintf(f, "%d\n", i); err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	select {} // wait to be killed
}

// readReturned parses the jobs the child recorded (a line cut by the kill
// is ignored: its Push returned, but the test only claims recorded ones).
func readReturned(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ns []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, err := strconv.Atoi(sc.Text()); err == nil {
			ns = append(ns, n)
		}
	}
	return ns
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

// A pusher process with a sync outbox is killed (SIGKILL) mid-run while a
// slow puller works through its jobs; a new Pusher on the same directory
// delivers the rest: every job whose Push returned nil is processed at
// least once.
func TestOutboxKill9(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutboxKill9$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	waitFor(t, "the child's endpoint", func() bool {
		_, err := os.Stat(filepath.Join(dir, "endpoint"))
		return err == nil
	})
	epb, err := os.ReadFile(filepath.Join(dir, "endpoint"))
	if err != nil {
		t.Fatal(err)
	}
	got := newTally()
	// The first puller is slower than the pusher (2 ms per job, one
	// worker), so jobs are held unacked when the pusher dies.
	slow, err := NewPuller(func(ctx context.Context, j job) error {
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		got.add(j.N, "first")
		return nil
	}, WithConnect(string(epb)), WithAck(), WithWorkers(1), WithCredit(32))
	slow = cleanup(t, slow, err)
	returned := filepath.Join(dir, "returned")
	// Bounded, and generous: the child fsyncs every push, on a disk other
	// tests share.
	for deadline := time.Now().Add(60 * time.Second); countLines(returned) < 2000; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the child returned %d pushes in 60 s", countLines(returned))
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true
	slow.Close()
	ok := readReturned(t, returned)
	firstLife := got.distinct()

	push, err := NewPusher[job](WithBind(loopback), WithAck(), WithOutbox(filepath.Join(dir, "outbox"), OutboxSync))
	push = cleanup(t, push, err)
	recovered := push.ack.recovered
	pl, err := NewPuller(func(_ context.Context, j job) error { got.add(j.N, "second"); return nil },
		WithConnect(ep(t, push)), WithAck())
	cleanup(t, pl, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := push.Drain(ctx); err != nil {
		t.Fatalf("drain after restart: %v (stats %+v)", err, push.Stats())
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	missing := 0
	for _, n := range ok {
		if got.seen[n] == 0 {
			missing++
		}
	}
	t.Logf("child returned %d pushes before the kill; %d processed before, %d recovered from the outbox, %d processed in all",
		len(ok), firstLife, recovered, len(got.seen))
	if missing > 0 {
		t.Fatalf("%d of %d jobs whose Push returned nil were never processed", missing, len(ok))
	}
	if recovered == 0 || firstLife == 0 {
		t.Fatalf("the kill did not come mid-run: %d processed before it, %d recovered", firstLife, recovered)
	}
}

// BenchmarkDurablePipeline is BenchmarkAckedPipeline with an outbox
// (WithOutbox) in a temporary directory on the test's disk, pushed from
// one goroutine or from 64 (sync mode shares an fsync among concurrent
// pushes).
func BenchmarkDurablePipeline(b *testing.B) {
	for _, bc := range []struct {
		name      string
		mode      OutboxMode
		producers int
		size      int
	}{
		{"sync/1", OutboxSync, 1, benchSize},
		{"sync/64", OutboxSync, 64, benchSize},
		{"batched-10ms/1", OutboxBatched(10 * time.Millisecond), 1, benchSize},
		{"sync/256/1MiB", OutboxSync, 256, 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) { benchDurable(b, bc.mode, bc.producers, bc.size) })
	}
}

func benchDurable(b *testing.B, mode OutboxMode, producers, size int) {
	push, err := NewPusher[[]byte](WithAck(), WithBind(loopback), WithOutbox(b.TempDir(), mode))
	push = cleanup(b, push, err)
	var got atomic.Int64
	all := make(chan struct{})
	target := int64(b.N)
	pl, err := NewPuller(func(_ context.Context, _ []byte) error {
		if got.Add(1) == target {
			close(all)
		}
		return nil
	}, WithAck(), WithConnect(ep(b, push)), WithWorkers(1))
	pl = cleanup(b, pl, err)
	waitFor(b, "puller", func() bool { return push.Pullers() == 1 })
	ctx := context.Background()
	v := make([]byte, size)
	for i := range v {
		v[i] = byte(i)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= target {
				if err := push.Push(ctx, v); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	<-all
	if err := push.Drain(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportRate(b, b.N, start)
	s := push.ack.store.Stats()
	b.ReportMetric(float64(s.Appends)/float64(max(s.Syncs, 1)), "appends/fsync")
	b.ReportMetric(float64(s.Compacted)/float64(max(s.Appends, 1)), "copied/append")
}

// A Pusher reopened on an outbox hands the jobs it took back to a puller
// that was already waiting for it (connected to its endpoint, redialling)
// as soon as the puller is back: the puller's hello grants credit and the
// taken-back jobs go out on it, with no timer in between. (A restarted
// `push --ack --store` was reported taking 15-22 s to hand its old jobs to
// waiting workers; the fixed timers of that size are the heartbeat timeout,
// 15 s by default, which only a half-open connection waits out, and
// discovery's expiry of a crashed peer, about 13 s. Neither is on this
// path: the puller redials from 100 ms on, so a second is plenty on a
// loaded machine, while a path that waited out either timer would take
// over 13 s.)
func TestOutboxReopenFeedsWaitingPuller(t *testing.T) {
	const n = 50
	dir := t.TempDir()
	push, err := NewPusher[job](WithBind(loopback), WithAck(), WithOutbox(dir, OutboxSync))
	if err != nil {
		t.Fatal(err)
	}
	addr := ep(t, push)
	got := newTally()
	first := make(chan time.Time, 1)
	pl, err := NewPuller(func(_ context.Context, j job) error {
		select {
		case first <- time.Now():
		default:
		}
		got.add(j.N, "p")
		return nil
	}, WithConnect(addr), WithAck())
	pl = cleanup(t, pl, err)
	waitFor(t, "the puller", func() bool { return push.Pullers() == 1 })
	// Jobs pushed once the puller has gone stay in the outbox when the
	// pusher goes.
	pl.Disconnect(addr)
	waitFor(t, "the puller gone", func() bool { return push.Pullers() == 0 })
	for i := range n {
		if _, err := push.PushAsync(ctxT(t), job{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := push.Close(); err != nil {
		t.Fatal(err)
	}
	// The puller waits for the pusher: it dials the endpoint, refused.
	if err := pl.Connect(addr); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	push, err = NewPusher[job](WithBind(addr), WithAck(), WithOutbox(dir, OutboxSync))
	push = cleanup(t, push, err)
	if push.ack.recovered != n {
		t.Fatalf("took back %d jobs, want %d", push.ack.recovered, n)
	}
	var at time.Time
	select {
	case at = <-first:
	case <-time.After(30 * time.Second): // a safety net
		t.Fatalf("no job reached the waiting puller in 30 s (pullers %d, stats %+v)", push.Pullers(), push.Stats())
	}
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got.distinct() != n {
		t.Fatalf("processed %d distinct jobs, want %d", got.distinct(), n)
	}
	d := at.Sub(start)
	t.Logf("first taken-back job handled %v after the Pusher reopened", d.Round(time.Millisecond))
	if d > 5*time.Second {
		t.Fatalf("the first taken-back job took %v: something waited for a timer", d)
	}
}
