package socket

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
)

var benchSizes = []int{64, 256, 1 << 10, 64 << 10, 1 << 20}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// BenchmarkPushPull measures one-way throughput, one PUSH to one PULL over
// loopback TCP; allocations are counted end to end (both sockets live in
// the benchmark's process).
func BenchmarkPushPull(b *testing.B) {
	benchPushPull(b, func(b *testing.B, pull, push *Socket) { connect(b, push, bind(b, pull)) })
}

// BenchmarkInprocPushPull is BenchmarkPushPull over inproc://: no network,
// messages handed over in memory (target: 5x tcp at 64 B, 0 allocs/op).
func BenchmarkInprocPushPull(b *testing.B) {
	benchPushPull(b, func(b *testing.B, pull, push *Socket) {
		ep := bindInproc(b, pull)
		connect(b, push, ep)
	})
}

func benchPushPull(b *testing.B, link func(b *testing.B, pull, push *Socket)) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			pull := newSock(b, PULL)
			push := newSock(b, PUSH)
			link(b, pull, push)
			pushPullLoop(b, pull, push, size)
		})
	}
}

// pushPullLoop sends b.N messages of size bytes from push to pull, which
// are connected, and reports msgs/s, CPU per message and allocations (the
// sender reuses its message, the receiver frees each one).
func pushPullLoop(b *testing.B, pull, push *Socket, size int) {
	waitPeers(b, push, 1)
	body := make([]byte, size)
	ctx := context.Background()
	done := make(chan error, 1)
	n := b.N
	b.SetBytes(int64(size))
	b.ReportAllocs()
	cpu0 := testutil.CPUTime()
	b.ResetTimer()
	go func() {
		for range n {
			m, err := pull.Recv(ctx)
			if err != nil {
				done <- err
				return
			}
			m.Free()
		}
		done <- nil
	}()
	msg := Msg{Frames: [][]byte{body}}
	for range n {
		if err := push.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msg/s")
	b.ReportMetric(float64(testutil.CPUTime()-cpu0)/float64(n), "cpu-ns/op")
}

// BenchmarkReqRep measures the round trip of one REQ and one REP.
func BenchmarkReqRep(b *testing.B) {
	for _, size := range []int{64, 4 << 10} {
		b.Run(sizeName(size), func(b *testing.B) {
			rep := newSock(b, REP)
			req := newSock(b, REQ)
			connect(b, req, bind(b, rep))
			ctx := context.Background()
			go func() {
				for {
					m, err := rep.Recv(ctx)
					if err != nil {
						return
					}
					if rep.Send(ctx, m) != nil {
						return
					}
				}
			}()
			msg := Msg{Frames: [][]byte{make([]byte, size)}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := req.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
				if _, err := req.Recv(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTCPEcho is the floor for BenchmarkReqRep: a bare TCP round trip
// of a length-prefixed record, in the same process.
func BenchmarkTCPEcho(b *testing.B) {
	for _, size := range []int{64, 4 << 10} {
		b.Run(sizeName(size), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				buf := make([]byte, size)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, size)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPubSub8 measures fan-out: one PUB, eight SUBs; b.N messages
// published as fast as Send returns, each meant for all eight. PUB never
// blocks, so a subscriber that falls behind its high-water mark loses
// messages: the benchmark reports deliveries/s over the time until the last
// delivery, and delivered/sent.
func BenchmarkPubSub8(b *testing.B) {
	benchPubSub(b, 8, 64)
}

// pubWithSubs binds a PUB and connects n SUBs subscribed to everything,
// and returns once a message published reaches each of them, with nothing
// left for them to read.
func pubWithSubs(b *testing.B, n int) (*Socket, []*Socket) {
	pub := newSock(b, PUB)
	ep := bind(b, pub)
	subs := make([]*Socket, n)
	for i := range subs {
		subs[i] = newSock(b, SUB)
		subs[i].Subscribe("")
		connect(b, subs[i], ep)
	}
	waitFor(b, "subscribers", func() bool {
		pub.Send(context.Background(), NewMsgString("sync"))
		return allSubscribed(subs)
	})
	for _, s := range subs {
		drainAll(s)
	}
	return pub, subs
}

func benchPubSub(b *testing.B, nsubs, size int) {
	pub, subs := pubWithSubs(b, nsubs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg := Msg{Frames: [][]byte{make([]byte, size)}}
	n := b.N
	var delivered, last atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got := 0; got < n; got++ {
				if _, err := s.Recv(ctx); err != nil {
					return
				}
				delivered.Add(1)
				last.Store(int64(time.Since(start)))
			}
		}()
	}
	for range n {
		pub.Send(ctx, msg)
	}
	waitDeliveries(&delivered, int64(n*nsubs), 100*time.Millisecond)
	cancel()
	wg.Wait()
	b.StopTimer()
	elapsed := time.Duration(last.Load())
	b.ReportMetric(float64(delivered.Load())/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(delivered.Load())/float64(n*nsubs), "delivered/sent")
}

// BenchmarkTCPStream is the floor for BenchmarkPushPull: length-prefixed
// records over one TCP connection with 64 KiB buffered I/O, one writer and
// one reader, a fresh receive buffer per record as a socket must hand out.
func BenchmarkTCPStream(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			n := b.N
			done := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				r := bufio.NewReaderSize(c, 64<<10)
				var hdr [4]byte
				for range n {
					if _, err := io.ReadFull(r, hdr[:]); err != nil {
						done <- err
						return
					}
					buf := make([]byte, binary.BigEndian.Uint32(hdr[:]))
					if _, err := io.ReadFull(r, buf); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			w := bufio.NewWriterSize(c, 64<<10)
			body := make([]byte, size)
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], uint32(size))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range n {
				w.Write(hdr[:])
				w.Write(body)
			}
			w.Flush()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}

// waitDeliveries waits, once a benchmark's publisher is done, until
// delivered reaches want or stops growing for idle (a subscriber that
// drops at its mark never reaches want).
func waitDeliveries(delivered *atomic.Int64, want int64, idle time.Duration) {
	for prev := int64(-1); ; {
		d := delivered.Load()
		if d == want || d == prev {
			return
		}
		prev = d
		time.Sleep(idle)
	}
}
