package socket

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
)

// BenchmarkPubSubStream is PUB -> 8 SUBs at 64 B as bench/cmd/compare's
// pubsub/8subs drives it: the publisher sends b.N messages as fast as Send
// returns, each subscriber frees what it received. It reports deliveries/s
// (until the last delivery), delivered/sent and the CPU time of the whole
// process per delivery, the figure a loaded machine turns into throughput.
func BenchmarkPubSubStream(b *testing.B) {
	const nsubs, size = 8, 64
	pub, subs := pubWithSubs(b, nsubs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := make([]byte, size)
	n := b.N
	var delivered atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	cpu0 := testutil.CPUTime()
	b.ResetTimer()
	start := time.Now()
	lasts := make([]time.Duration, nsubs)
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got := 0; got < n; got++ {
				m, err := s.Recv(ctx)
				if err != nil {
					return
				}
				m.Free()
				delivered.Add(1)
				if got&63 == 0 {
					lasts[i] = time.Since(start)
				}
			}
			lasts[i] = time.Since(start)
		}()
	}
	for range n {
		pub.Send(ctx, Msg{Frames: [][]byte{body}})
	}
	waitDeliveries(&delivered, int64(n*nsubs), 20*time.Millisecond)
	cancel()
	wg.Wait()
	b.StopTimer()
	d := delivered.Load()
	elapsed := time.Duration(0)
	for _, l := range lasts {
		elapsed = max(elapsed, l)
	}
	b.ReportMetric(float64(d)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(d)/float64(n*nsubs), "delivered/sent")
	b.ReportMetric(float64(testutil.CPUTime()-cpu0)/float64(max(d, 1)), "cpu-ns/delivery")
}
