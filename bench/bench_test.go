package bench

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// The Go benchmarks run each stack's sockets directly, b.N messages per
// benchmark, with allocations counted over every goroutine of the process
// (sender, receiver and the stack's own), so allocs/op is the end-to-end
// figure per message:
//
//	go test -run '^$' -bench 'PushPull/zpeer/64B' -benchmem
//	go test -run '^$' -bench . -benchtime 200000x
//
// `go run ./cmd/compare` is the side-by-side table; these are for profiling
// one stack (-cpuprofile, -memprofile) and for benchstat.

var sizes = []int{64, benchcore.KiB, 64 * benchcore.KiB, benchcore.MiB}

func setup(b *testing.B, build func(context.Context) (*benchcore.Topology, error)) *benchcore.Topology {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	top, err := build(ctx)
	if errors.Is(err, benchcore.ErrNotSupported) {
		b.Skip("n/a")
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { top.Close() })
	return top
}

// BenchmarkPushPull: one sender, one receiver; ns/op is per message.
func BenchmarkPushPull(b *testing.B) {
	for _, st := range Stacks() {
		for _, size := range sizes {
			b.Run(st.Name()+"/"+benchcore.SizeName(size), func(b *testing.B) {
				top := setup(b, func(ctx context.Context) (*benchcore.Topology, error) { return st.Pipeline(ctx, 1) })
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				payload := make([]byte, size)
				snd, rcv := top.Send, top.Recv[0]
				if err := snd.Send(ctx, payload); err != nil {
					b.Fatal(err)
				}
				benchcore.Flush(snd)
				if _, err := rcv.Recv(ctx); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				done := make(chan error, 1)
				go func() {
					for i := 0; i < b.N; i++ {
						if _, err := rcv.Recv(ctx); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				for i := 0; i < b.N; i++ {
					if err := snd.Send(ctx, payload); err != nil {
						b.Fatal(err)
					}
				}
				if err := benchcore.Flush(snd); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkReqRep: one round trip per op; reports p50 and p99 too.
func BenchmarkReqRep(b *testing.B) {
	for _, st := range Stacks() {
		for _, size := range []int{64, 4 * benchcore.KiB} {
			b.Run(st.Name()+"/"+benchcore.SizeName(size), func(b *testing.B) {
				top := setup(b, st.ReqRep)
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						m, err := top.Server.Recv(ctx)
						if err == nil {
							err = top.Server.Send(ctx, m)
						}
						if err == nil {
							err = benchcore.Flush(top.Server)
						}
						if err != nil {
							return
						}
					}
				}()
				defer func() { cancel(); wg.Wait() }()
				payload := make([]byte, size)
				rt := func() {
					if err := top.Client.Send(ctx, payload); err != nil {
						b.Fatal(err)
					}
					if err := benchcore.Flush(top.Client); err != nil {
						b.Fatal(err)
					}
					if _, err := top.Client.Recv(ctx); err != nil {
						b.Fatal(err)
					}
				}
				for range 100 {
					rt()
				}
				h := benchcore.NewHistogram()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t := time.Now()
					rt()
					h.RecordValue(max(int64(time.Since(t)), 100))
				}
				b.StopTimer()
				b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-ns")
				b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-ns")
			})
		}
	}
}

// BenchmarkPubSub: one publisher, 8 subscribers, b.N messages published;
// the time includes the subscribers draining. Stacks that drop for slow
// subscribers deliver fewer: deliveries/s and delivered/sent say how many.
func BenchmarkPubSub(b *testing.B) {
	const subs = 8
	for _, st := range Stacks() {
		b.Run(st.Name()+"/8subs", func(b *testing.B) {
			top := setup(b, func(ctx context.Context) (*benchcore.Topology, error) { return st.PubSub(ctx, subs) })
			ctx, cancel := context.WithCancel(context.Background())
			payload := make([]byte, 64)
			var got [subs]atomic.Int64
			var warm [subs]atomic.Bool
			var wg sync.WaitGroup
			for i, r := range top.Recv {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						m, err := r.Recv(ctx)
						if err != nil {
							return
						}
						if len(m) > 0 && m[0] == 'w' {
							warm[i].Store(true)
							continue
						}
						got[i].Add(1)
					}
				}()
			}
			defer func() { cancel(); wg.Wait() }()
			// Warm up until every subscriber is reached.
			wmsg := []byte("w")
			deadline := time.Now().Add(10 * time.Second)
			for i := 0; i < subs; {
				if warm[i].Load() {
					i++
					continue
				}
				if time.Now().After(deadline) {
					b.Fatal("subscribers not reached")
				}
				top.Send.Send(ctx, wmsg)
				benchcore.Flush(top.Send)
				time.Sleep(time.Millisecond)
			}
			total := func() int64 {
				var t int64
				for i := range got {
					t += got[i].Load()
				}
				return t
			}
			b.SetBytes(64)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if err := top.Send.Send(ctx, payload); err != nil {
					b.Fatal(err)
				}
			}
			benchcore.Flush(top.Send)
			// Drain: until all arrived or nothing moved for 100ms.
			last, lastT := total(), time.Now()
			for last < int64(b.N)*subs && time.Since(lastT) < 100*time.Millisecond {
				time.Sleep(200 * time.Microsecond)
				if n := total(); n != last {
					last, lastT = n, time.Now()
				}
			}
			b.StopTimer()
			el := lastT.Sub(start)
			if last >= int64(b.N)*subs {
				el = time.Since(start)
			}
			b.ReportMetric(float64(last)/el.Seconds(), "deliveries/s")
			b.ReportMetric(float64(last)/float64(int64(b.N)*subs), "delivered/sent")
		})
	}
}
