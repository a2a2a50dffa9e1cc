package metrics

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ztest "github.com/zpeer/zpeer/internal/testutil"
	"github.com/zpeer/zpeer/socket"
)

// BenchmarkPushPullScraped is 64 B PUSH->PULL on loopback TCP while a
// registry holding both sockets (and the discovery stack) is gathered
// every interval: "none" is the baseline, and the 10 ms row magnifies a 1 s
// scrape's cost a hundred times. Compare msg/s across rows of one run.
func BenchmarkPushPullScraped(b *testing.B) {
	for _, bc := range []struct {
		name  string
		every time.Duration
	}{{"none", 0}, {"every-1s", time.Second}, {"every-10ms", 10 * time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) {
			pull, err := socket.New(socket.PULL)
			if err != nil {
				b.Fatal(err)
			}
			defer pull.Close()
			ep, err := pull.Bind(loopback)
			if err != nil {
				b.Fatal(err)
			}
			push, err := socket.New(socket.PUSH)
			if err != nil {
				b.Fatal(err)
			}
			defer push.Close()
			if err := push.Connect(ep); err != nil {
				b.Fatal(err)
			}
			c, _ := NewCollector()
			c.AddSocket("pull", pull)
			c.AddSocket("push", push)
			c.AddDiscoveryStack()
			reg := prometheus.NewRegistry()
			reg.MustRegister(c)
			stop := make(chan struct{})
			done := make(chan int)
			go func() {
				n := 0
				if bc.every == 0 {
					<-stop
					done <- n
					return
				}
				tk := time.NewTicker(bc.every)
				defer tk.Stop()
				for {
					select {
					case <-stop:
						done <- n
						return
					case <-tk.C:
						if _, err := reg.Gather(); err != nil {
							b.Error(err)
						}
						n++
					}
				}
			}()
			ztest.Eventually(b, 10*time.Second, "the pusher's peer", func() bool { return push.Peers() == 1 })
			ctx := context.Background()
			body := make([]byte, 64)
			recvd := make(chan error, 1)
			n := b.N
			b.SetBytes(64)
			b.ResetTimer()
			cpu0 := ztest.CPUTime()
			go func() {
				for range n {
					m, err := pull.Recv(ctx)
					if err != nil {
						recvd <- err
						return
					}
					m.Free()
				}
				recvd <- nil
			}()
			msg := socket.Msg{Frames: [][]byte{body}}
			for range n {
				if err := push.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-recvd; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			close(stop)
			scrapes := <-done
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msg/s")
			b.ReportMetric(float64(ztest.CPUTime()-cpu0)/float64(n), "cpu-ns/op")
			b.ReportMetric(float64(scrapes), "scrapes")
		})
	}
}

// BenchmarkGather is the cost of one scrape of a process with a few
// sockets and the discovery stack.
func BenchmarkGather(b *testing.B) {
	c, _ := NewCollector()
	for _, name := range []string{"a", "b", "c", "d"} {
		s, err := socket.New(socket.PUB)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		c.AddSocket(name, s)
	}
	c.AddDiscoveryStack()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
