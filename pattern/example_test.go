package pattern_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/zpeer/zpeer/pattern"
)

func ExampleRequester() {
	type Sum struct{ A, B int }
	rep, err := pattern.NewReplier(func(ctx context.Context, s Sum) (int, error) {
		if s.A < 0 || s.B < 0 {
			return 0, errors.New("negative operand")
		}
		return s.A + s.B, nil
	}, pattern.WithBind("tcp://127.0.0.1:0"), pattern.WithWorkers(4))
	if err != nil {
		panic(err)
	}
	defer rep.Close()

	req, err := pattern.NewRequester[Sum, int](
		pattern.WithConnect(rep.Endpoints()[0]),
		pattern.WithTimeout(time.Second), // per attempt
		pattern.WithRetries(2),           // then up to two more attempts
	)
	if err != nil {
		panic(err)
	}
	defer req.Close()

	ctx := context.Background()
	n, err := req.Request(ctx, Sum{2, 3})
	fmt.Println(n, err)

	_, err = req.Request(ctx, Sum{-1, 3})
	fmt.Println(errors.Is(err, pattern.ErrRemote), err)
	// Output:
	// 5 <nil>
	// true pattern: remote error: negative operand
}

func ExamplePublisher() {
	type Tick struct {
		Symbol string
		Price  float64
	}
	pub, err := pattern.NewPublisher[Tick](pattern.WithBind("tcp://127.0.0.1:0"), pattern.WithName("feed"))
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	sub, err := pattern.NewSubscriber[Tick](pattern.WithConnect(pub.Endpoints()[0]), pattern.WithTopics("eq."))
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	ctx := context.Background()

	// A new subscription takes a moment to reach the publisher, and what is
	// published before then is not for this subscriber (ZeroMQ's slow
	// joiner). Wait for it before publishing.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pub.WaitSubscribers(wctx, 1); err != nil {
		panic(err)
	}

	pub.Publish(ctx, "eq.ACME", Tick{"ACME", 12.5})
	pub.Publish(ctx, "fx.EURUSD", Tick{"EURUSD", 1.08}) // not subscribed
	pub.Publish(ctx, "eq.ACME", Tick{"ACME", 12.75})
	for range 2 {
		m, err := sub.Recv(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s #%d from %s: %.2f\n", m.Topic, m.Seq, m.Sender, m.Value.Price)
	}
	st := sub.Stats()
	fmt.Println("missed:", st.Gaps, "reliability:", st.Sources[0].Reliability)
	// Output:
	// eq.ACME #1 from feed: 12.50
	// eq.ACME #2 from feed: 12.75
	// missed: 0 reliability: 1
}

func ExamplePusher() {
	type Job struct{ N int }
	push, err := pattern.NewPusher[Job](pattern.WithBind("tcp://127.0.0.1:0"), pattern.WithAck(),
		pattern.WithAckTimeout(5*time.Second), pattern.WithMaxDeliveries(3))
	if err != nil {
		panic(err)
	}
	defer push.Close()

	var mu sync.Mutex
	var done []int
	for range 2 {
		pull, err := pattern.NewPuller(func(ctx context.Context, j Job) error {
			mu.Lock()
			done = append(done, j.N)
			mu.Unlock()
			return nil // acknowledged; an error would have it redelivered
		}, pattern.WithConnect(push.Endpoints()[0]), pattern.WithAck(), pattern.WithCredit(4))
		if err != nil {
			panic(err)
		}
		defer pull.Close()
	}

	ctx := context.Background()
	for i := range 10 {
		if err := push.Push(ctx, Job{i}); err != nil {
			panic(err)
		}
	}
	// Wait until every job is acknowledged (or declared dead).
	if err := push.Drain(ctx); err != nil {
		panic(err)
	}
	mu.Lock()
	sort.Ints(done)
	fmt.Println(done)
	mu.Unlock()
	st := push.Stats()
	fmt.Println("sent", st.Sent, "acked", st.Acked, "dead", st.Dead)
	// Output:
	// [0 1 2 3 4 5 6 7 8 9]
	// sent 10 acked 10 dead 0
}

// A dispatcher whose jobs survive its own crash: a durable outbox, and a
// receipt per job to checkpoint the producer's input.
func ExampleWithOutbox() {
	dir, err := os.MkdirTemp("", "outbox-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	type Job struct{ N int }
	push, err := pattern.NewPusher[Job](pattern.WithBind("tcp://127.0.0.1:0"), pattern.WithAck(),
		pattern.WithOutbox(dir, pattern.OutboxSync)) // each Push returns once on disk
	if err != nil {
		panic(err)
	}
	defer push.Close()
	pull, err := pattern.NewPuller(func(ctx context.Context, j Job) error {
		return nil // must be idempotent: a job can come again after a crash
	}, pattern.WithConnect(push.Endpoints()[0]), pattern.WithAck())
	if err != nil {
		panic(err)
	}
	defer pull.Close()

	ctx := context.Background()
	var receipts []*pattern.Receipt
	for i := range 3 {
		r, err := push.PushAsync(ctx, Job{N: i})
		if err != nil {
			panic(err)
		}
		receipts = append(receipts, r)
	}
	for i, r := range receipts {
		fmt.Println("job", i, "settled:", r.Wait(ctx)) // checkpoint i here
	}
	// Output:
	// job 0 settled: <nil>
	// job 1 settled: <nil>
	// job 2 settled: <nil>
}
