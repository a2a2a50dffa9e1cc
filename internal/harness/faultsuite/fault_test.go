package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zpeer/zpeer/internal/harness/faultnet"
	"github.com/zpeer/zpeer/internal/testutil"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

func TestMain(m *testing.M) {
	if ep := os.Getenv("ZPEER_FAULT_WORKER"); ep != "" {
		os.Exit(runWorker(ep, os.Getenv("ZPEER_FAULT_COLLECT")))
	}
	if ep := os.Getenv("ZPEER_FAULT_IDLE_SUB"); ep != "" {
		os.Exit(runIdleSubscriber(ep))
	}
	goleak.VerifyTestMain(m)
}

// long reports whether the long form was asked for (ZPEER_FAULT=long).
func long() bool { return os.Getenv("ZPEER_FAULT") == "long" }

func pick[T any](short, lng T) T {
	if long() {
		return lng
	}
	return short
}

// report logs the scenario's line for docs/faults.md.
func report(t *testing.T, held, figure string) {
	t.Helper()
	form := "short"
	if long() {
		form = "long"
	}
	t.Logf("FAULT %s (%s) | %s | %s", t.Name(), form, held, figure)
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, d, what, cond)
}

// must is for set-up steps that do not fail on loopback: if one does, the
// panic names it and ends the run.
func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("faultsuite set-up: %v", err))
	}
	return v
}

func closeAtEnd(t testing.TB, c interface{ Close() error }) {
	t.Cleanup(func() { c.Close() })
}

func proxy(t *testing.T, ep string) *faultnet.Proxy {
	t.Helper()
	p, err := faultnet.New(ep[len("tcp://"):])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// disconnects counts a socket's disconnect events.
type disconnects struct{ n atomic.Int64 }

func (d *disconnects) option() pattern.Option {
	return pattern.WithSocketOptions(socket.WithEventHandler(func(ev socket.Event) {
		if ev.Kind == socket.EventDisconnected {
			d.n.Add(1)
		}
	}))
}

// TestFaultReaderPause: a puller whose handler stops for many heartbeat
// timeouts keeps its connection and loses nothing the pusher accepted.
func TestFaultReaderPause(t *testing.T) {
	pause := pick(4*time.Second, 25*time.Second)
	hb := pick([]time.Duration{100 * time.Millisecond, time.Second}, []time.Duration{5 * time.Second, 15 * time.Second})
	var pullDisc, pushDisc disconnects
	gate := make(chan struct{})
	var mu sync.Mutex
	got := map[int]int{}
	pull := must(pattern.NewPuller(func(ctx context.Context, v int) error {
		<-gate
		mu.Lock()
		got[v]++
		mu.Unlock()
		return nil
	}, pattern.WithBind("tcp://127.0.0.1:0"), pullDisc.option(),
		pattern.WithSocketOptions(socket.WithHeartbeat(hb[0], hb[1]), socket.WithRecvHWM(100))))
	closeAtEnd(t, pull)
	// The pusher's timeout is generous: what is under test is the paused
	// side's judgement, and on a loaded machine PINGs can be 100 ms late.
	push := must(pattern.NewPusher[int](pattern.WithConnect(pull.Endpoints()[0]), pushDisc.option(),
		pattern.WithSocketOptions(socket.WithHeartbeat(hb[0], 15*time.Second), socket.WithSendHWM(100))))
	closeAtEnd(t, push)
	waitFor(t, "connection", 10*time.Second, func() bool { return push.Pullers() == 1 })

	// 1,000 pushes a second for the pause and a bit; Push blocks at the
	// mark and gives up on a push after 20 ms, which is then not accepted.
	accepted := 0
	end := time.Now().Add(pause + pause/4)
	tick := time.NewTicker(time.Millisecond)
	for time.Now().Before(end) {
		<-tick.C
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := push.Push(ctx, accepted)
		cancel()
		if err == nil {
			accepted++
		} else if !errors.Is(err, pattern.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Push: %v", err)
		}
	}
	tick.Stop()
	close(gate)
	waitFor(t, "delivery", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == accepted
	})
	for i := 0; i < accepted; i++ {
		if got[i] == 0 {
			t.Fatalf("message %d of %d accepted by Push never arrived", i, accepted)
		}
	}
	if n := pullDisc.n.Load() + pushDisc.n.Load(); n != 0 {
		t.Fatalf("%d disconnects while both peers lived", n)
	}
	report(t, "0 lost, 0 disconnects", fmt.Sprintf("reader paused %v, %d pushes accepted", pause, accepted))
}

// TestFaultAckedLinkCut: an acked pipeline over delayed, lossy links, one
// of them cut for a while, delivers every job at least once.
func TestFaultAckedLinkCut(t *testing.T) {
	jobs := pick(3000, 100000)
	cut := pick(time.Second, 20*time.Second)
	push := must(pattern.NewPusher[int](pattern.WithBind("tcp://127.0.0.1:0"), pattern.WithAck(),
		pattern.WithAckTimeout(2*time.Second)))
	closeAtEnd(t, push)
	var mu sync.Mutex
	seen := make([]int, jobs)
	handler := func(ctx context.Context, v int) error {
		mu.Lock()
		seen[v]++
		mu.Unlock()
		return nil
	}
	var links []*faultnet.Proxy
	for i := 0; i < 2; i++ {
		px := proxy(t, push.Endpoints()[0])
		px.SetDelay(20 * time.Millisecond)
		px.SetLoss(0.05, 200*time.Millisecond)
		links = append(links, px)
		pl := must(pattern.NewPuller(handler, pattern.WithConnect(px.Endpoint()), pattern.WithAck(),
			pattern.WithSocketOptions(socket.WithReconnect(50*time.Millisecond, 500*time.Millisecond))))
		closeAtEnd(t, pl)
	}
	waitFor(t, "pullers", 10*time.Second, func() bool { return push.Pullers() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 0; i < jobs; i++ {
		if i == jobs/3 {
			links[0].Cut()
			time.AfterFunc(cut, links[0].Restore)
		}
		if err := push.Push(ctx, i); err != nil {
			t.Fatalf("Push %d: %v", i, err)
		}
	}
	if err := push.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v (stats %+v)", err, push.Stats())
	}
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for i, n := range seen {
		if n == 0 {
			t.Fatalf("job %d never processed", i)
		}
		dups += n - 1
	}
	st := push.Stats()
	if st.Dead != 0 {
		t.Fatalf("%d dead letters", st.Dead)
	}
	report(t, "0 of "+strconv.Itoa(jobs)+" lost, 0 dead", fmt.Sprintf("20 ms delay, 5%% loss, %v cut; %d redelivered, %d processed twice", cut, st.Retried, dups))
}

// TestFaultPubSubLinkCut: a subscriber behind a delayed, lossy link that
// is cut counts exactly the messages it missed as gaps.
func TestFaultPubSubLinkCut(t *testing.T) {
	cut := pick(time.Second, 20*time.Second)
	pub := must(pattern.NewPublisher[int](pattern.WithBind("tcp://127.0.0.1:0")))
	closeAtEnd(t, pub)
	px := proxy(t, pub.Endpoints()[0])
	px.SetDelay(20 * time.Millisecond)
	px.SetLoss(0.05, 200*time.Millisecond)
	sub := must(pattern.NewSubscriber[int](pattern.WithConnect(px.Endpoint()), pattern.WithTopics("t"),
		pattern.WithSocketOptions(socket.WithReconnect(50*time.Millisecond, 500*time.Millisecond))))
	closeAtEnd(t, sub)
	waitFor(t, "subscriber", 10*time.Second, func() bool { return pub.Subscribers() == 1 })

	// Publish 1,000 a second until told to stop.
	stop := make(chan struct{})
	pubDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				pubDone <- nil
				return
			case <-tick.C:
			}
			if err := pub.Publish(context.Background(), "t", i); err != nil {
				pubDone <- err
				return
			}
		}
	}()
	var seqs []uint64
	recv := func(until func() bool) {
		for !until() {
			m, err := sub.Recv(ctxTimeout(t, 30*time.Second))
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			seqs = append(seqs, m.Seq)
		}
	}
	recv(func() bool { return len(seqs) >= 300 })
	px.Cut()
	time.Sleep(cut) // the outage itself
	px.Restore()
	cutAt := len(seqs)
	recv(func() bool { return len(seqs) >= cutAt+300 })
	close(stop)
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	missed := uint64(0)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("sequence went %d -> %d", seqs[i-1], seqs[i])
		}
		missed += seqs[i] - seqs[i-1] - 1
	}
	st := sub.Stats()
	if st.Gaps != missed {
		t.Fatalf("subscriber counted %d gaps, %d messages were missed", st.Gaps, missed)
	}
	if missed == 0 {
		t.Fatalf("nothing missed across a %v cut: the test did not cut", cut)
	}
	report(t, "gaps = missed messages exactly", fmt.Sprintf("%v cut at 1,000 msg/s: %d missed, %d gaps", cut, missed, st.Gaps))
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestFaultFanIn: many pushers into one puller, every message arrives.
func TestFaultFanIn(t *testing.T) {
	peers, each := pick(50, 200), 20
	var got atomic.Int64
	pull := must(pattern.NewPuller(func(ctx context.Context, v int) error { got.Add(1); return nil },
		pattern.WithBind("tcp://127.0.0.1:0")))
	closeAtEnd(t, pull)
	var wg sync.WaitGroup
	errs := make(chan error, peers)
	start := time.Now()
	for i := 0; i < peers; i++ {
		push, err := pattern.NewPusher[int](pattern.WithConnect(pull.Endpoints()[0]))
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, push)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for j := 0; j < each; j++ {
				if err := push.Push(ctx, j); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := int64(peers * each)
	waitFor(t, "all messages", time.Minute, func() bool { return got.Load() == want })
	if n := pull.Pushers(); n != peers {
		t.Errorf("%d pushers connected, want %d", n, peers)
	}
	report(t, fmt.Sprintf("%d of %d delivered", got.Load(), want), fmt.Sprintf("%d pushers into 1 puller in %v", peers, time.Since(start).Round(time.Millisecond)))
}

// TestFaultFanOut: one publisher to many subscribers, paced: every
// subscriber gets every message.
func TestFaultFanOut(t *testing.T) {
	peers, msgs := pick(50, 200), 100
	pub := must(pattern.NewPublisher[int](pattern.WithBind("tcp://127.0.0.1:0")))
	closeAtEnd(t, pub)
	subs := make([]*pattern.Subscriber[int], peers)
	for i := range subs {
		subs[i] = must(pattern.NewSubscriber[int](pattern.WithConnect(pub.Endpoints()[0]), pattern.WithTopics("")))
		closeAtEnd(t, subs[i])
	}
	waitFor(t, "subscribers", time.Minute, func() bool { return pub.Subscribers() == peers })
	counts := make([]int, peers)
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for counts[i] < msgs {
				if _, err := s.Recv(ctx); err != nil {
					return
				}
				counts[i]++
			}
		}()
	}
	for i := 0; i < msgs; i++ {
		if err := pub.Publish(context.Background(), "t", i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // pacing: 1,000 msg/s, the load under test
	}
	wg.Wait()
	total := 0
	for i, n := range counts {
		if n != msgs {
			t.Errorf("subscriber %d got %d of %d (gaps %d)", i, n, msgs, subs[i].Stats().Gaps)
		}
		total += n
	}
	report(t, fmt.Sprintf("%d of %d delivered", total, peers*msgs), fmt.Sprintf("1 publisher to %d subscribers at 1,000 msg/s", peers))
}

// TestFaultWorkerKillStorm: worker processes killed with SIGKILL, again
// and again, while an acked pipeline runs: every job is processed at least
// once and none goes dead.
func TestFaultWorkerKillStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	jobs := pick(3000, 100000)
	kills := pick(4, 16)
	every := pick(400*time.Millisecond, 2*time.Second)

	// The collector: workers report each job here (REQ/REP, so a report
	// has arrived before the worker acks the job).
	col := must(socket.New(socket.REP))
	closeAtEnd(t, col)
	colEP := must(col.Bind("tcp://127.0.0.1:0"))
	var mu sync.Mutex
	seen := make([]int, jobs)
	colDone := make(chan struct{})
	go func() {
		defer close(colDone)
		for {
			m, err := col.Recv(context.Background())
			if err != nil {
				return
			}
			v, err := strconv.Atoi(string(m.Body()))
			if err == nil && v >= 0 && v < jobs {
				mu.Lock()
				seen[v]++
				mu.Unlock()
			}
			// A reply to a worker killed meanwhile is lost with it; the
			// collector serves the others.
			if err := col.Send(context.Background(), socket.NewMsgString("ok")); errors.Is(err, socket.ErrClosed) {
				return
			}
		}
	}()
	t.Cleanup(func() { col.Close(); <-colDone })

	push := must(pattern.NewPusher[int](pattern.WithBind("tcp://127.0.0.1:0"), pattern.WithAck(),
		pattern.WithAckTimeout(5*time.Second), pattern.WithMaxDeliveries(1000)))
	closeAtEnd(t, push)
	ep := push.Endpoints()[0]

	var wmu sync.Mutex
	var workers []*exec.Cmd
	startWorker := func() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ZPEER_FAULT_WORKER="+ep, "ZPEER_FAULT_COLLECT="+colEP)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wmu.Lock()
		workers = append(workers, cmd)
		wmu.Unlock()
	}
	t.Cleanup(func() {
		wmu.Lock()
		defer wmu.Unlock()
		for _, w := range workers {
			w.Process.Kill()
			w.Wait()
		}
	})
	for i := 0; i < 3; i++ {
		startWorker()
	}
	waitFor(t, "workers", 30*time.Second, func() bool { return push.Pullers() == 3 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Jobs are pushed, per thousand a second, until the storm is over (at
	// most jobs of them), so the kills always land on a running pipeline.
	per := pick(1, 4)
	var pushed atomic.Int64
	stormOver := make(chan struct{})
	pushErr := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; i < jobs; i++ {
			if i%per == 0 {
				select {
				case <-stormOver:
					pushErr <- push.Drain(ctx)
					return
				case <-tick.C:
				}
			}
			if err := push.Push(ctx, i); err != nil {
				pushErr <- fmt.Errorf("Push %d: %w", i, err)
				return
			}
			pushed.Add(1)
		}
		pushErr <- push.Drain(ctx)
	}()
	for killed := 0; killed < kills; killed++ {
		time.Sleep(every) // the storm's rhythm
		wmu.Lock()
		w := workers[killed%len(workers)]
		wmu.Unlock()
		w.Process.Signal(syscall.SIGKILL)
		w.Wait()
		startWorker()
	}
	close(stormOver)
	if err := <-pushErr; err != nil {
		t.Fatalf("%v (stats %+v)", err, push.Stats())
	}
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	n := int(pushed.Load())
	for i, c := range seen[:n] {
		if c == 0 {
			t.Fatalf("job %d of %d never processed", i, n)
		}
		dups += c - 1
	}
	st := push.Stats()
	if st.Dead != 0 {
		t.Fatalf("%d dead letters", st.Dead)
	}
	report(t, fmt.Sprintf("0 of %d lost, 0 dead", n), fmt.Sprintf("%d workers killed with SIGKILL every %v; %d redelivered, %d processed twice", kills, every, st.Retried, dups))
}

// runWorker is a worker process of TestFaultWorkerKillStorm: an acked
// puller that reports each job to the collector, then acks it.
func runWorker(ep, collect string) int {
	rep, err := socket.New(socket.REQ)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := rep.Connect(collect); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	pl, err := pattern.NewPuller(func(ctx context.Context, v int) error {
		mu.Lock()
		defer mu.Unlock()
		if err := rep.Send(ctx, socket.NewMsgString(strconv.Itoa(v))); err != nil {
			return err
		}
		if _, err := rep.Recv(ctx); err != nil {
			return err
		}
		time.Sleep(500 * time.Microsecond) // some work, so that kills land mid-job
		return nil
	}, pattern.WithConnect(ep), pattern.WithAck(), pattern.WithWorkers(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pl.Close()
	select {} // until killed
}
