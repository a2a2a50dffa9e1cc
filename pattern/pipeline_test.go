package pattern

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/testutil"
	"github.com/zpeer/zpeer/socket"
)

type job struct {
	N    int
	Data string
}

// tally records which jobs a handler saw, and how often.
type tally struct {
	mu   sync.Mutex
	seen map[int]int
	by   map[string]int
}

func newTally() *tally { return &tally{seen: map[int]int{}, by: map[string]int{}} }

func (t *tally) add(n int, who string) {
	t.mu.Lock()
	t.seen[n]++
	t.by[who]++
	t.mu.Unlock()
}

func (t *tally) distinct() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen)
}

func (t *tally) count(who string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.by[who]
}

func TestPushPullFireAndForget(t *testing.T) {
	push, err := NewPusher[job](WithBind(loopback))
	push = cleanup(t, push, err)
	got := newTally()
	var pullers []*Puller[job]
	for i := range 3 {
		name := fmt.Sprint("p", i)
		pl, err := NewPuller(func(_ context.Context, j job) error { got.add(j.N, name); return nil },
			WithConnect(ep(t, push)), WithWorkers(2))
		pullers = append(pullers, cleanup(t, pl, err))
	}
	waitFor(t, "pullers", func() bool { return push.Pullers() == 3 })
	const n = 300
	for i := range n {
		if err := push.Push(ctxT(t), job{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all processed", func() bool { return got.distinct() == n })
	for i := range 3 {
		if c := got.count(fmt.Sprint("p", i)); c < n/10 {
			t.Errorf("puller %d got %d of %d: not load-balanced", i, c, n)
		}
	}
	if st := push.Stats(); st.Sent != n {
		t.Fatalf("pusher stats %+v", st)
	}
	var delivered uint64
	for _, pl := range pullers {
		delivered += pl.Stats().Delivered
	}
	if delivered != n {
		t.Fatalf("delivered %d", delivered)
	}
}

// A fire-and-forget Pusher is a plain PUSH socket sending one envelope
// frame.
func TestPusherWireShape(t *testing.T) {
	push, err := NewPusher[string](WithBind(loopback))
	push = cleanup(t, push, err)
	pull, err := socket.New(socket.PULL)
	pull = cleanup(t, pull, err)
	pull.Connect(ep(t, push))
	if err := push.Push(ctxT(t), "hi"); err != nil {
		t.Fatal(err)
	}
	m, err := pull.Recv(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var env codec.Envelope
	var s string
	if len(m.Frames) != 1 || codec.Decode(m.Frames[0], &env) != nil || codec.UnmarshalValue(env.Body, &s) != nil || s != "hi" {
		t.Fatalf("frames %q", m.Frames)
	}
}

func TestAckedPipeline(t *testing.T) {
	push, err := NewPusher[job](WithBind(loopback), WithAck())
	push = cleanup(t, push, err)
	got := newTally()
	for i := range 2 {
		name := fmt.Sprint("p", i)
		pl, err := NewPuller(func(_ context.Context, j job) error { got.add(j.N, name); return nil },
			WithConnect(ep(t, push)), WithAck(), WithCredit(8))
		cleanup(t, pl, err)
	}
	// Both pullers' credit has arrived: the work can be shared.
	waitFor(t, "both pullers' hellos", func() bool { return len(push.Stats().Peers) == 2 })
	const n = 500
	for i := range n {
		if err := push.Push(ctxT(t), job{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	st := push.Stats()
	if st.Acked != n || st.Sent != n || st.Pending != 0 || st.Dead != 0 || st.Latency.Count != n {
		t.Fatalf("pusher stats %+v", st)
	}
	if got.distinct() != n || got.count("p0") == 0 || got.count("p1") == 0 {
		t.Fatalf("processed %d distinct, p0 %d p1 %d", got.distinct(), got.count("p0"), got.count("p1"))
	}
}

// Kill a puller that holds unacknowledged work: every message is processed
// at least once, none is lost, and the pusher redelivers at once rather
// than after the ack timeout.
func TestAckedPullerKilled(t *testing.T) {
	push, err := NewPusher[job](WithBind(loopback), WithAck(), WithAckTimeout(time.Minute))
	push = cleanup(t, push, err)
	got := newTally()
	holding := make(chan struct{}, 100)
	victim, err := NewPuller(func(ctx context.Context, j job) error {
		holding <- struct{}{}
		<-ctx.Done() // never finishes: killed while holding the work
		return ctx.Err()
	}, WithConnect(ep(t, push)), WithAck(), WithCredit(4), WithWorkers(4))
	victim = cleanup(t, victim, err)
	waitFor(t, "victim's credit", func() bool { st := push.Stats(); return len(st.Peers) == 1 && st.Peers[0].Credit == 4 })

	const n = 200
	for i := range n {
		if err := push.Push(ctxT(t), job{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		<-holding
	}
	survivor, err := NewPuller(func(_ context.Context, j job) error { got.add(j.N, "survivor"); return nil },
		WithConnect(ep(t, push)), WithAck(), WithCredit(16))
	survivor = cleanup(t, survivor, err)
	waitFor(t, "survivor working", func() bool { return got.distinct() > 0 })
	start := time.Now()
	victim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := push.Drain(ctx); err != nil {
		t.Fatalf("drain: %v (stats %+v)", err, push.Stats())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("redelivery took %v", d)
	}
	if got.distinct() != n {
		t.Fatalf("processed %d of %d", got.distinct(), n)
	}
	st := push.Stats()
	if st.Acked != n || st.Dead != 0 || st.Retried < 4 {
		t.Fatalf("pusher stats %+v", st)
	}
}

// A redelivered message that the puller already processed (its ack was
// too slow) is acknowledged again but not processed twice.
func TestAckedDuplicatesSuppressed(t *testing.T) {
	push, err := NewPusher[job](WithBind(loopback), WithAck(), WithAckTimeout(100*time.Millisecond))
	push = cleanup(t, push, err)
	got := newTally()
	slow := make(chan struct{})
	pl, err := NewPuller(func(ctx context.Context, j job) error {
		if j.N == 0 {
			<-slow // slower than the ack timeout: it is redelivered meanwhile
		}
		got.add(j.N, "p")
		return nil
	}, WithConnect(ep(t, push)), WithAck(), WithWorkers(4))
	pl = cleanup(t, pl, err)
	for i := range 5 {
		if err := push.Push(ctxT(t), job{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a duplicate", func() bool { return pl.Stats().Duplicates >= 1 })
	close(slow)
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	for n, c := range got.seen {
		if c != 1 {
			t.Errorf("job %d processed %d times", n, c)
		}
	}
	if len(got.seen) != 5 {
		t.Fatalf("processed %d jobs", len(got.seen))
	}
	if st := push.Stats(); st.Retried == 0 || st.Acked != 5 {
		t.Fatalf("pusher stats %+v", st)
	}
}

// A message whose handler always fails is retried elsewhere, then reported
// dead after the maximum deliveries.
func TestAckedDeadLetter(t *testing.T) {
	deadCh := make(chan DeadLetter, 1)
	logs := &testutil.SyncBuffer{}
	push, err := NewPusher[job](WithBind(loopback), WithAck(), WithMaxDeliveries(3),
		WithOnDead(func(d DeadLetter) { deadCh <- d }), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	push = cleanup(t, push, err)
	var calls atomic.Int32
	for range 2 {
		pl, err := NewPuller(func(_ context.Context, j job) error {
			if j.Data == "poison" {
				calls.Add(1)
				return errors.New("cannot digest")
			}
			return nil
		}, WithConnect(ep(t, push)), WithAck())
		cleanup(t, pl, err)
	}
	if err := push.Push(ctxT(t), job{N: 1, Data: "poison"}); err != nil {
		t.Fatal(err)
	}
	if err := push.Push(ctxT(t), job{N: 2}); err != nil {
		t.Fatal(err)
	}
	var d DeadLetter
	select {
	case d = <-deadCh:
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter")
	}
	if v, ok := d.Value.(job); !ok || v.N != 1 || d.Deliveries != 3 || !errors.Is(d.Err, ErrDead) {
		t.Fatalf("dead letter %+v", d)
	}
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st := push.Stats(); st.Dead != 1 || st.Acked != 1 || st.Retried != 2 || calls.Load() != 3 {
		t.Fatalf("stats %+v, handler calls %d", st, calls.Load())
	}
	// The events, with their fields: two redeliveries, then the dead letter.
	l := logs.String()
	id := fmt.Sprint("id=", d.ID)
	if strings.Count(l, "level=INFO msg=redelivery "+id) != 2 || !strings.Contains(l, "deliveries=3 reason=\"puller: cannot digest\"") ||
		!strings.Contains(l, "level=WARN msg=\"dead letter\" "+id+" deliveries=3 reason=") {
		t.Errorf("redelivery and dead letter events: %q", l)
	}
}

// A high-priority message pushed behind 10,000 queued low-priority ones
// overtakes them: the pusher's queue is ordered by priority.
func TestAckedPriorityOvertakes(t *testing.T) {
	push, err := NewPusher[job](WithBind(loopback), WithAck())
	push = cleanup(t, push, err)
	gate := make(chan struct{})
	var mu sync.Mutex
	var order []int
	pl, err := NewPuller(func(_ context.Context, j job) error {
		<-gate
		mu.Lock()
		order = append(order, j.N)
		mu.Unlock()
		return nil
	}, WithConnect(ep(t, push)), WithAck(), WithCredit(1), WithWorkers(1))
	pl = cleanup(t, pl, err)
	waitFor(t, "puller credit", func() bool { return len(push.Stats().Peers) == 1 })

	const n = 10000
	for i := range n {
		if err := push.Push(ctxT(t), job{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := push.Push(ctxT(t), job{N: -1}, Priority(9)); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	pos := -1
	for i, v := range order {
		if v == -1 {
			pos = i
		}
	}
	// Only what the puller already held (its credit, 1) may come first.
	if pos < 0 || pos > 1 {
		t.Fatalf("the urgent message came at position %d of %d", pos, len(order))
	}
}

// The same with a fire-and-forget Pusher: the urgent message skips the
// socket's queue of ordinary messages for the peer.
func TestPriorityOvertakesSocketQueue(t *testing.T) {
	push, err := NewPusher[[]byte](WithBind(loopback), WithSocketOptions(socket.WithSendHWM(20000)))
	push = cleanup(t, push, err)
	gate := make(chan struct{})
	var mu sync.Mutex
	var order []byte
	pl, err := NewPuller(func(_ context.Context, b []byte) error {
		<-gate
		mu.Lock()
		order = append(order, b[0])
		mu.Unlock()
		return nil
	}, WithConnect(ep(t, push)), WithWorkers(1), WithSocketOptions(socket.WithRecvHWM(10)))
	pl = cleanup(t, pl, err)
	waitFor(t, "puller", func() bool { return push.Pullers() == 1 })

	const n = 10000
	bulk := make([]byte, 2<<10) // 20 MB in all: more than the kernel buffers hold
	for range n {
		if err := push.Push(ctxT(t), bulk); err != nil {
			t.Fatal(err)
		}
	}
	if err := push.Push(ctxT(t), []byte{1}, Priority(1)); err != nil {
		t.Fatal(err)
	}
	close(gate)
	waitFor(t, "all delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == n+1 })
	mu.Lock()
	defer mu.Unlock()
	for i, b := range order {
		if b == 1 {
			t.Logf("urgent message delivered at position %d of %d", i, n+1)
			if i > n/2 {
				t.Fatalf("urgent message at position %d: it did not overtake the queue", i)
			}
			return
		}
	}
	t.Fatal("urgent message lost")
}

// A puller whose credit exceeds the pusher socket's high-water mark: sends
// that find the queue full are retried, nothing stalls.
func TestAckedCreditAboveHWM(t *testing.T) {
	push, err := NewPusher[int](WithBind(loopback), WithAck(), WithSocketOptions(socket.WithSendHWM(5)))
	push = cleanup(t, push, err)
	var n atomic.Int32
	pl, err := NewPuller(func(context.Context, int) error { n.Add(1); return nil },
		WithConnect(ep(t, push)), WithAck(), WithCredit(200), WithWorkers(1))
	cleanup(t, pl, err)
	waitFor(t, "credit", func() bool { return len(push.Stats().Peers) == 1 })
	for i := range 3000 {
		if err := push.Push(ctxT(t), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatalf("%v (stats %+v)", err, push.Stats())
	}
	if st := push.Stats(); st.Acked != 3000 || n.Load() < 3000 {
		t.Fatalf("stats %+v, handled %d", st, n.Load())
	}
}

// Puller churn with no handler failure sends no message dead: pullers come,
// take a window of work, handle a little of it and go, again and again, so
// most messages are delivered several times before a handler starts on
// them. Only deliveries a handler started count towards
// WithMaxDeliveries(2): a message lost on its first delivery may count once
// (its start is not reported), a redelivery only if its start was. (The
// limit was 3 while the engine could lose a closing puller's last acks: a
// pusher whose write failed closed the connection before reading them, 1
// run in 30 at 2. Since a pipe whose write fails lets its reader finish
// (socket.TestWriteErrorKeepsWhatThePeerSent), 40 runs of 40 pass at 2.
// Counting every lost delivery, as before, sends messages dead here every
// time.)
func TestAckedChurnNoDeadLetters(t *testing.T) {
	const (
		n      = 300
		cycles = 30
	)
	var dead atomic.Int32
	push, err := NewPusher[job](WithBind(loopback), WithAck(), WithMaxDeliveries(2), WithAckTimeout(time.Minute),
		WithOnDead(func(DeadLetter) { dead.Add(1) }))
	push = cleanup(t, push, err)
	for i := range n {
		if err := push.Push(ctxT(t), job{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	got := newTally()
	handler := func(_ context.Context, j job) error {
		got.add(j.N, "")
		time.Sleep(200 * time.Microsecond) // some work: most of the window waits
		return nil
	}
	for range cycles {
		before := got.distinct()
		pl, err := NewPuller(handler, WithConnect(ep(t, push)), WithAck(), WithCredit(32), WithWorkers(1))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the puller to work", func() bool { return got.distinct() >= min(n, before+2) || dead.Load() > 0 })
		pl.Close() // holding most of its window, unstarted
		if dead.Load() > 0 {
			t.Fatalf("%d messages dead, with no handler failure", dead.Load())
		}
	}
	lost := push.Stats().Retried
	pl, err := NewPuller(handler, WithConnect(ep(t, push)), WithAck(), WithWorkers(4))
	cleanup(t, pl, err)
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	st := push.Stats()
	t.Logf("%d messages, %d redeliveries during the churn, %d in all", n, lost, st.Retried)
	if lost < n {
		t.Fatalf("only %d redeliveries during the churn: the test proves nothing", lost)
	}
	if st.Dead != 0 || dead.Load() != 0 || st.Acked != n || got.distinct() != n {
		t.Fatalf("stats %+v, dead letters %d, handled %d", st, dead.Load(), got.distinct())
	}
}

// A poison message that kills every worker it is given (here: its handler
// never returns, and the puller is closed under it, as a crash would end
// its connection) is dead after WithMaxDeliveries handler starts, and the
// messages pushed with it are all processed.
func TestAckedPoisonDeadAfterStarts(t *testing.T) {
	const maxDeliveries = 3
	deadCh := make(chan DeadLetter, 1)
	push, err := NewPusher[job](WithBind(loopback), WithAck(), WithMaxDeliveries(maxDeliveries),
		WithAckTimeout(time.Minute), WithOnDead(func(d DeadLetter) { deadCh <- d }))
	push = cleanup(t, push, err)
	got := newTally()
	crashed := make(chan struct{}, 1)
	var starts atomic.Int32
	handler := func(ctx context.Context, j job) error {
		if j.Data == "poison" {
			starts.Add(1)
			crashed <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		got.add(j.N, "")
		return nil
	}
	if err := push.Push(ctxT(t), job{N: -1, Data: "poison"}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := push.Push(ctxT(t), job{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	var d DeadLetter
	for d.Deliveries == 0 {
		pl, err := NewPuller(handler, WithConnect(ep(t, push)), WithAck(), WithCredit(4), WithWorkers(2))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-crashed:
			pl.Close() // the worker dies with the poison in its handler
		case d = <-deadCh:
			pl.Close()
		case <-time.After(10 * time.Second):
			pl.Close()
			t.Fatalf("no crash and no dead letter; %d starts, stats %+v", starts.Load(), push.Stats())
		}
		if starts.Load() > maxDeliveries {
			t.Fatalf("the poison was started %d times", starts.Load())
		}
	}
	if v, ok := d.Value.(job); !ok || v.Data != "poison" || d.Deliveries != maxDeliveries || !errors.Is(d.Err, ErrDead) {
		t.Fatalf("dead letter %+v", d)
	}
	if s := starts.Load(); s != maxDeliveries {
		t.Fatalf("the poison was started %d times, dead after %d", s, d.Deliveries)
	}
	pl, err := NewPuller(handler, WithConnect(ep(t, push)), WithAck())
	cleanup(t, pl, err)
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st := push.Stats(); st.Dead != 1 || st.Acked != 20 || got.distinct() != 20 {
		t.Fatalf("stats %+v, handled %d", st, got.distinct())
	}
}

// A fire-and-forget Drain waits on the socket's Flush (no polling): it
// cannot return while a puller that reads nothing holds up the queue, and
// returns once the puller reads; on a closed Pusher it fails with ErrClosed.
func TestFireAndForgetDrainWaitsForTheQueue(t *testing.T) {
	push, err := NewPusher[[]byte](WithBind(loopback))
	push = cleanup(t, push, err)
	pull, err := socket.New(socket.PULL, socket.WithRecvHWM(1))
	pull = cleanup(t, pull, err)
	pull.Connect(ep(t, push))
	waitFor(t, "the puller", func() bool { return push.Pullers() == 1 })
	const n = 300
	body := make([]byte, 64<<10) // n of them: more than the kernel's buffers
	for range n {
		if err := push.Push(ctxT(t), body); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err = push.Drain(ctx)
	cancel()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Drain while the puller reads nothing: %v, want ErrTimeout", err)
	}
	go func() {
		for range n {
			m, err := pull.Recv(context.Background())
			if err != nil {
				return
			}
			m.Free()
		}
	}()
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	for _, ps := range push.sock.Stats().PerPeer {
		if ps.Queued != 0 {
			t.Fatalf("%d queued after Drain", ps.Queued)
		}
	}
	push.Close()
	if err := push.Drain(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Drain after Close: %v, want ErrClosed", err)
	}
}

// WithBeforeAck: a job is acknowledged only after the function ran on its
// handler's effect (here: moved it from a buffer to "durable"); when the
// function fails, the acks wait and go out after a later success.
func TestBeforeAckGatesAcknowledgements(t *testing.T) {
	push, err := NewPusher[int](WithBind(loopback), WithAck())
	push = cleanup(t, push, err)
	var mu sync.Mutex
	var buffered, durable []int
	calls, failures := 0, 3
	pl, err := NewPuller(func(_ context.Context, v int) error {
		mu.Lock()
		buffered = append(buffered, v)
		mu.Unlock()
		return nil
	}, WithConnect(ep(t, push)), WithAck(), WithCredit(8), WithBeforeAck(func() error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= failures {
			return errors.New("disk full")
		}
		durable = append(durable, buffered...)
		buffered = buffered[:0]
		return nil
	}))
	cleanup(t, pl, err)
	const n = 200
	receipts := make([]*Receipt, n)
	for i := range n {
		r, err := push.PushAsync(ctxT(t), i)
		if err != nil {
			t.Fatal(err)
		}
		receipts[i] = r
	}
	for i, r := range receipts {
		if err := r.Wait(ctxT(t)); err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		mu.Lock()
		ok := slices.Contains(durable, i)
		mu.Unlock()
		if !ok {
			t.Fatalf("job %d acknowledged before its effect was made durable", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls <= failures {
		t.Fatalf("the function ran %d times", calls)
	}
	if _, err := NewPuller(func(context.Context, int) error { return nil }, WithBeforeAck(func() error { return nil })); !errors.Is(err, ErrOption) {
		t.Errorf("WithBeforeAck without WithAck: %v", err)
	}
}
