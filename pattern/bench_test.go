package pattern

// Each typed pattern is measured against its socket-level twin with the same
// socket types and options, for 64-byte payloads:
//
//	BenchmarkTypedReqRep  vs BenchmarkRawReqRep    one request in flight, round trips
//	BenchmarkTypedPubSub  vs BenchmarkRawPubSub    publisher to subscriber throughput,
//	                                               flat out (drops) and paced (none)
//	BenchmarkTypedPipeline, BenchmarkAckedPipeline vs BenchmarkRawPipeline
//	                                               pusher to puller throughput
//
// Throughput benchmarks time b.N messages from the first send to the last
// delivery and report msgs/s; the pub/sub ones also report the drop rate.
// The raw twins free each received message (socket.Msg.Free), as the typed
// patterns do.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/codecwire"
	"github.com/zpeer/zpeer/internal/testutil"
	"github.com/zpeer/zpeer/socket"
)

const benchSize = 64

func benchPayload() []byte {
	b := make([]byte, benchSize)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func reportRate(b *testing.B, n int, start time.Time) {
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkTypedReqRep(b *testing.B) {
	rp, err := NewReplier(func(_ context.Context, v []byte) ([]byte, error) { return v, nil },
		WithBind(loopback), WithWorkers(1))
	rp = cleanup(b, rp, err)
	rq, err := NewRequester[[]byte, []byte](WithConnect(ep(b, rp)))
	rq = cleanup(b, rq, err)
	ctx := context.Background()
	payload := benchPayload()
	if _, err := rq.Request(ctx, payload); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := rq.Request(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	lat := rq.Stats().Latency
	b.ReportMetric(float64(lat.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat.P99.Microseconds()), "p99-µs")
}

// BenchmarkRawReqRep is the twin of BenchmarkTypedReqRep: the same DEALER
// and ROUTER sockets with the same options, 64-byte frames echoed.
func BenchmarkRawReqRep(b *testing.B) {
	router, err := socket.New(socket.ROUTER, socket.WithNoBlock(), socket.WithLowLatency(true))
	router = cleanup(b, router, err)
	rep, _ := router.Bind(loopback)
	dealer, err := socket.New(socket.DEALER, socket.WithNoBlock(), socket.WithLowLatency(true), socket.WithLinger(0))
	dealer = cleanup(b, dealer, err)
	dealer.Connect(rep)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := router.Recv(ctx)
			if err != nil {
				return
			}
			router.Send(ctx, m)
			m.Free()
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	waitFor(b, "connected", func() bool { return dealer.Peers() == 1 })
	payload := benchPayload()
	roundTrip := func() {
		for {
			err := dealer.Send(ctx, socket.Msg{Frames: [][]byte{empty, payload}})
			if err == nil {
				break
			}
			if err != socket.ErrWouldBlock && err != socket.ErrNoPeers {
				b.Fatal(err)
			}
		}
		m, err := dealer.Recv(ctx)
		if err != nil {
			b.Fatal(err)
		}
		m.Free()
	}
	roundTrip()
	b.SetBytes(benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		roundTrip()
	}
}

var benchHWM = socket.WithSendHWM(100000)

func BenchmarkTypedPubSub(b *testing.B)      { benchTypedPubSub(b, false) }
func BenchmarkTypedPubSubPaced(b *testing.B) { benchTypedPubSub(b, true) }

func benchTypedPubSub(b *testing.B, paced bool) {
	pub, err := NewPublisher[[]byte](WithBind(loopback), WithSocketOptions(benchHWM))
	pub = cleanup(b, pub, err)
	sub, err := NewSubscriber[[]byte](WithConnect(ep(b, pub)), WithTopics("bench"))
	sub = cleanup(b, sub, err)
	payload := benchPayload()
	ctx := context.Background()
	for {
		pub.Publish(ctx, "bench", payload)
		wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := sub.Recv(wctx)
		cancel()
		if err == nil {
			break
		}
	}
	benchPubSub(b, paced, func() { pub.Publish(ctx, "bench", payload) },
		func() uint64 { return pub.Stats().Dropped },
		func(ctx context.Context) error {
			_, err := sub.Recv(ctx)
			return err
		})
}

// pubSubWindow is how far a paced publisher may run ahead of its
// subscriber: far below benchHWM, so nothing is dropped.
const pubSubWindow = 10000

// benchPubSub times b.N publishes to one subscriber. Unpaced, the publisher
// goes flat out and the subscriber takes what it can: msgs/s counts
// deliveries, drop-% what the publisher dropped for it. Paced, the
// publisher stays at most pubSubWindow messages ahead, so nothing is
// dropped and msgs/s is the rate the pair sustains.
func benchPubSub(b *testing.B, paced bool, publish func(), dropped func() uint64, recv func(context.Context) error) {
	b.SetBytes(benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var got int
	if paced {
		got = drainPaced(context.Background(), b.N, publish, recv)
	} else {
		got = drainAfter(context.Background(), b.N, func() {
			for range b.N {
				publish()
			}
		}, dropped, recv)
	}
	b.StopTimer()
	reportRate(b, got, start)
	b.ReportMetric(100*float64(b.N-got)/float64(b.N), "drop-%")
}

// drainPaced publishes n messages on a goroutine, never more than
// pubSubWindow ahead of recv, and receives them all.
func drainPaced(ctx context.Context, n int, publish func(), recv func(context.Context) error) int {
	var got atomic.Int64
	more := make(chan struct{}, 1)
	go func() {
		for i := range n {
			if i%64 == 0 {
				for int64(i)-got.Load() > pubSubWindow {
					<-more
				}
			}
			publish()
		}
	}()
	for i := 1; i <= n; i++ {
		if recv(ctx) != nil {
			return i - 1
		}
		if got.Store(int64(i)); i%64 == 0 {
			select {
			case more <- struct{}{}:
			default:
			}
		}
	}
	return n
}

// drainAfter runs publish on a goroutine and calls recv until every
// published message was either received or counted as dropped; it returns
// how many were received.
func drainAfter(ctx context.Context, n int, publish func(), dropped func() uint64, recv func(context.Context) error) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		publish()
		for uint64(got.Load())+dropped() < uint64(n) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	for recv(ctx) == nil {
		got.Add(1)
	}
	<-done
	return int(got.Load())
}

// BenchmarkRawPubSub is the twin of BenchmarkTypedPubSub: PUB and SUB with
// the same options, [topic, 64-byte payload].
func BenchmarkRawPubSub(b *testing.B)      { benchRawPubSub(b, false) }
func BenchmarkRawPubSubPaced(b *testing.B) { benchRawPubSub(b, true) }

func benchRawPubSub(b *testing.B, paced bool) {
	pub, err := socket.New(socket.PUB, benchHWM)
	pub = cleanup(b, pub, err)
	pep, _ := pub.Bind(loopback)
	sub, err := socket.New(socket.SUB)
	sub = cleanup(b, sub, err)
	sub.Subscribe("bench")
	sub.Connect(pep)
	topic, payload := []byte("bench"), benchPayload()
	ctx := context.Background()
	for {
		pub.Send(ctx, socket.Msg{Frames: [][]byte{topic, payload}})
		wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := sub.Recv(wctx)
		cancel()
		if err == nil {
			break
		}
	}
	benchPubSub(b, paced, func() { pub.Send(ctx, socket.Msg{Frames: [][]byte{topic, payload}}) },
		func() uint64 { return pub.Stats().Drops },
		func(ctx context.Context) error {
			m, err := sub.Recv(ctx)
			m.Free()
			return err
		})
}

func benchPipeline(b *testing.B, acked bool, credit int) {
	benchPipelineOf(b, benchPayload(), benchSize, acked, credit)
}

// benchPipelineOf times b.N pushes of v (size bytes of payload, 0 to not
// report bytes) through a Pusher and a one-worker Puller, acknowledged
// with the given credit or fire-and-forget, from the first push until
// every message was handled and, acked, acknowledged.
func benchPipelineOf[T any](b *testing.B, v T, size int64, acked bool, credit int, pullExtra ...Option) {
	var opts, pullOpts []Option
	if acked {
		opts = append(opts, WithAck())
		pullOpts = append(pullOpts, WithCredit(credit))
	}
	push, err := NewPusher[T](append(opts, WithBind(loopback))...)
	push = cleanup(b, push, err)
	var got atomic.Int64
	all := make(chan struct{})
	target := int64(b.N)
	pl, err := NewPuller(func(_ context.Context, _ T) error {
		if got.Add(1) == target {
			close(all)
		}
		return nil
	}, append(append(append(opts, pullOpts...), WithConnect(ep(b, push)), WithWorkers(1)), pullExtra...)...)
	pl = cleanup(b, pl, err)
	waitFor(b, "puller", func() bool { return push.Pullers() == 1 })
	ctx := context.Background()
	if size > 0 {
		b.SetBytes(size)
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := push.Push(ctx, v); err != nil {
			b.Fatal(err)
		}
	}
	<-all
	if acked {
		if err := push.Drain(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, b.N, start)
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkTypedPipeline is a fire-and-forget Pusher and Puller.
func BenchmarkTypedPipeline(b *testing.B) { benchPipeline(b, false, 0) }

// BenchmarkAckedPipeline is an acknowledged Pusher and Puller with the
// default credit (256): every message acknowledged before the clock stops.
func BenchmarkAckedPipeline(b *testing.B) { benchPipeline(b, true, 256) }

// BenchmarkAckedPipelineCredit1024 is BenchmarkAckedPipeline with more
// messages in flight per puller.
func BenchmarkAckedPipelineCredit1024(b *testing.B) { benchPipeline(b, true, 1024) }

// BenchmarkRawPipeline is the socket-level twin: PUSH and PULL, 64-byte
// frames.
func BenchmarkRawPipeline(b *testing.B) { benchRawPipeline(b, benchPayload()) }

// BenchmarkRawPipelineEnvelopeSize is BenchmarkRawPipeline with frames as
// large as the envelope of BenchmarkTypedPipeline (a 64-byte []byte with
// its id, timestamp, sender and sequence number): the difference from
// BenchmarkRawPipeline is what the envelope's bytes alone cost the socket.
func BenchmarkRawPipelineEnvelopeSize(b *testing.B) {
	p, err := NewPusher[[]byte]()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	frame, err := appendFrame(nil, p.tmpl, codec.NewID(), nowNano(), 1<<20, benchPayload())
	if err != nil {
		b.Fatal(err)
	}
	benchRawPipeline(b, frame)
}

func benchRawPipeline(b *testing.B, payload []byte) {
	push, err := socket.New(socket.PUSH)
	push = cleanup(b, push, err)
	pep, _ := push.Bind(loopback)
	pull, err := socket.New(socket.PULL)
	pull = cleanup(b, pull, err)
	pull.Connect(pep)
	waitFor(b, "puller", func() bool { return push.Peers() == 1 })
	ctx := context.Background()
	done := make(chan struct{})
	n := b.N
	b.SetBytes(benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer close(done)
		for range n {
			m, err := pull.Recv(ctx)
			if err != nil {
				return
			}
			m.Free()
		}
	}()
	for range n {
		if err := push.Send(ctx, socket.Msg{Frames: [][]byte{payload}}); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.StopTimer()
	reportRate(b, n, start)
}

// benchJob is a typical application value: a few fields and a 40-byte
// payload, about 64 bytes of MessagePack. It goes through the msgpack
// library's reflection, where []byte and string values do not.
type benchJob struct {
	ID   int64
	Kind string
	Data []byte
}

// BenchmarkTypedPipelineStruct is BenchmarkTypedPipeline carrying a
// benchJob: what the reflective encoding and decoding of a struct add.
func BenchmarkTypedPipelineStruct(b *testing.B) {
	benchPipelineOf(b, benchJob{ID: 1 << 40, Kind: "resize", Data: make([]byte, 40)}, 0, false, 0)
}

// BenchmarkLargePipeline carries large []byte values through a Pusher and
// a one-worker Puller whose handler reads nothing, with the Puller's
// values owned (the default: the received frame is handed over, and the
// socket receives the next one into fresh memory) or borrowed
// (WithBorrowedValues: the frame goes back to the pool when the handler
// returns). The sending side reuses its buffers either way.
func BenchmarkLargePipeline(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20} {
		v := make([]byte, size)
		for _, acked := range []bool{false, true} {
			for _, borrow := range []bool{false, true} {
				name := fmt.Sprintf("%dKiB/acked=%v/borrowed=%v", size>>10, acked, borrow)
				b.Run(name, func(b *testing.B) {
					var extra []Option
					if borrow {
						extra = append(extra, WithBorrowedValues())
					}
					benchPipelineOf(b, v, int64(size), acked, 256, extra...)
				})
			}
		}
	}
}

// BenchmarkPipelineLightLoad and BenchmarkAckedPipelineLightLoad measure
// push-to-handler latency at light load: one job every millisecond (1,000
// jobs/s), an empty handler, one worker. Each job carries the monotonic
// time it was pushed; the handler records how long it took to get there.
// b.N is the number of jobs, so the run takes about b.N milliseconds.
func BenchmarkPipelineLightLoad(b *testing.B)      { benchLightLoad(b, false) }
func BenchmarkAckedPipelineLightLoad(b *testing.B) { benchLightLoad(b, true) }

func benchLightLoad(b *testing.B, acked bool) {
	var opts []Option
	if acked {
		opts = append(opts, WithAck())
	}
	push, err := NewPusher[int64](append(opts, WithBind(loopback))...)
	push = cleanup(b, push, err)
	var lat histogram
	var got atomic.Int64
	pl, err := NewPuller(func(_ context.Context, pushed int64) error {
		if pushed >= 0 { // not the warm-up job
			lat.record(time.Duration(mono() - pushed))
		}
		got.Add(1)
		return nil
	}, append(opts, WithConnect(ep(b, push)), WithWorkers(1))...)
	pl = cleanup(b, pl, err)
	waitFor(b, "puller", func() bool { return push.Pullers() == 1 })
	ctx := context.Background()
	// warm up the connection (and, acked, the puller's credit)
	if err := push.Push(ctx, -1); err != nil {
		b.Fatal(err)
	}
	waitFor(b, "warm-up job", func() bool { return got.Load() == 1 })
	got.Store(0)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		<-tick.C
		if err := push.Push(ctx, mono()); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "every job handled", func() bool { return got.Load() == int64(b.N) })
	b.StopTimer()
	s := lat.snapshot()
	b.ReportMetric(float64(s.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(s.P99.Microseconds()), "p99-µs")
}

// BenchmarkRequesterAttachToSend measures how long a request waiting for a
// replier takes to go out once one connects: from the socket's Attach hook
// (the user's, which runs just before the Requester's) to the return of
// the send, for b.N Requesters each connecting to the same Replier.
func BenchmarkRequesterAttachToSend(b *testing.B) {
	rp, err := NewReplier(func(_ context.Context, s string) (string, error) { return s, nil }, WithBind(loopback))
	rp = cleanup(b, rp, err)
	target := ep(b, rp)
	var lat histogram
	b.ReportAllocs()
	for range b.N {
		var attachedAt, sentAt atomic.Int64
		rq, err := NewRequester[string, string](WithTimeout(10*time.Second),
			WithSocketOptions(socket.WithPeerHooks(socket.PeerHooks{
				Attach: func(*socket.Peer) { attachedAt.Store(mono()) },
			})))
		if err != nil {
			b.Fatal(err)
		}
		rq.sent = func(*socket.Peer) { sentAt.CompareAndSwap(0, mono()) }
		done := make(chan error, 1)
		go func() {
			_, err := rq.Request(context.Background(), "x")
			done <- err
		}()
		waitFor(b, "the request to wait", func() bool { return rq.waits.Load() == 1 })
		if err := rq.Connect(target); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		lat.record(time.Duration(sentAt.Load() - attachedAt.Load()))
		rq.Close()
	}
	s := lat.snapshot()
	b.ReportMetric(float64(s.P50.Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(s.P90.Nanoseconds())/1e3, "p90-µs")
}

// BenchmarkPartitionedPipeline compares, side by side, a Pusher whose
// 64-byte messages carry partition keys (from WithPartitionKey's function,
// or a PartitionKey call option) with the same Pusher unpartitioned,
// fire-and-forget and acked, over two one-worker pullers. The keys take
// turns: 1024 of them (acked, with 512 jobs in flight, a key's next job
// nearly always waits for the one before it), or 65536.
func BenchmarkPartitionedPipeline(b *testing.B) {
	for _, acked := range []bool{false, true} {
		mode := "fire-and-forget"
		if acked {
			mode = "acked"
		}
		for _, keyed := range []string{"none", "func", "option", "func-65536"} {
			b.Run(mode+"/key="+keyed, func(b *testing.B) { benchPartitioned(b, acked, keyed, 2) })
		}
	}
}

// benchKeys are the partition keys BenchmarkPartitionedPipeline cycles
// through: the first 1024, or all.
var benchKeys = func() []string {
	keys := make([]string, 65536)
	for i := range keys {
		keys[i] = fmt.Sprintf("account-%d", i)
	}
	return keys
}()

// kmsg is a 64-byte payload with its partition key.
type kmsg struct {
	key  string
	body []byte
}

func (m kmsg) MarshalMsg(b []byte) ([]byte, error) {
	return append(codecwire.AppendBinHeader(b, len(m.body)), m.body...), nil
}

func benchPartitioned(b *testing.B, acked bool, keyed string, pullers int) {
	opts := []Option{WithBind(loopback)}
	nkeys := 1024
	if keyed == "func-65536" {
		keyed, nkeys = "func", len(benchKeys)
	}
	if keyed == "func" {
		opts = append(opts, WithPartitionKey(func(m kmsg) string { return m.key }))
	}
	var pullOpts []Option
	if acked {
		opts = append(opts, WithAck())
		pullOpts = append(pullOpts, WithAck(), WithCredit(256))
	}
	push, err := NewPusher[kmsg](opts...)
	push = cleanup(b, push, err)
	var got atomic.Int64
	all := make(chan struct{})
	target := int64(b.N)
	for i := range pullers {
		pl, err := NewPuller(func(_ context.Context, _ []byte) error {
			if got.Add(1) == target {
				close(all)
			}
			return nil
		}, append(pullOpts, WithConnect(ep(b, push)), WithWorkers(1), WithName(fmt.Sprint("puller-", i)))...)
		cleanup(b, pl, err)
	}
	waitFor(b, "pullers", func() bool { return len(push.Stats().Peers) == pullers })
	ctx := context.Background()
	payload := benchPayload()
	b.SetBytes(benchSize)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), testutil.CPUTime()
	for i := range b.N {
		m := kmsg{key: benchKeys[i%nkeys], body: payload}
		if keyed == "option" {
			err = push.Push(ctx, m, PartitionKey(m.key))
		} else {
			err = push.Push(ctx, m)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	<-all
	if acked {
		if err := push.Drain(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, b.N, start)
	b.ReportMetric(float64(testutil.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkLargeReqRep is BenchmarkTypedReqRep and its raw twin with 1 MiB
// requests and replies, each round trip timed: the typed Requester and
// Replier (owned values, the default) against a DEALER and a ROUTER that
// echo the frame and free what they receive.
func BenchmarkLargeReqRep(b *testing.B) {
	const size = 1 << 20
	payload := make([]byte, size)
	b.Run("typed", func(b *testing.B) {
		rp, err := NewReplier(func(_ context.Context, v []byte) ([]byte, error) { return v, nil },
			WithBind(loopback), WithWorkers(1))
		rp = cleanup(b, rp, err)
		rq, err := NewRequester[[]byte, []byte](WithConnect(ep(b, rp)))
		rq = cleanup(b, rq, err)
		ctx := context.Background()
		timeRoundTrips(b, size, func() {
			if _, err := rq.Request(ctx, payload); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("raw", func(b *testing.B) {
		router, err := socket.New(socket.ROUTER)
		router = cleanup(b, router, err)
		rep, _ := router.Bind(loopback)
		dealer, err := socket.New(socket.DEALER, socket.WithLinger(0))
		dealer = cleanup(b, dealer, err)
		dealer.Connect(rep)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := router.Recv(ctx)
				if err != nil {
					return
				}
				router.Send(ctx, m)
				m.Free()
			}
		}()
		defer func() { cancel(); wg.Wait() }()
		waitFor(b, "connected", func() bool { return dealer.Peers() == 1 })
		timeRoundTrips(b, size, func() {
			if err := dealer.Send(ctx, socket.Msg{Frames: [][]byte{empty, payload}}); err != nil {
				b.Fatal(err)
			}
			m, err := dealer.Recv(ctx)
			if err != nil {
				b.Fatal(err)
			}
			m.Free()
		})
	})
}

// timeRoundTrips runs rt b.N times (after one untimed), timing each, and
// reports the p50 and p99 round trip and the CPU per round trip.
func timeRoundTrips(b *testing.B, size int, rt func()) {
	rt()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	lat := make([]time.Duration, 0, b.N)
	cpu0 := processCPU()
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		rt()
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}
