package socket

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
)

var benchSizes = []int{64, 1 << 10, 64 << 10, 1 << 20}

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
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			pull := newSock(b, PULL)
			push := newSock(b, PUSH)
			connect(b, push, bind(b, pull))
			waitPeers(b, push, 1)
			body := make([]byte, size)
			ctx := context.Background()
			done := make(chan error, 1)
			n := b.N
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				for range n {
					if _, err := pull.Recv(ctx); err != nil {
						done <- err
						return
					}
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
		})
	}
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
// published, each delivered eight times.
func BenchmarkPubSub8(b *testing.B) {
	pub := newSock(b, PUB, WithSendHWM(100000))
	ep := bind(b, pub)
	subs := make([]*Socket, 8)
	for i := range subs {
		subs[i] = newSock(b, SUB, WithRecvHWM(100000))
		subs[i].Subscribe("")
		connect(b, subs[i], ep)
	}
	ctx := context.Background()
	// wait until every subscriber receives
	waitFor(b, "subscribers", func() bool {
		pub.Send(ctx, NewMsgString("sync"))
		return pub.Stats().PerPeer != nil && len(pub.Stats().PerPeer) == 8 && allSubscribed(subs)
	})
	for _, s := range subs {
		drainAll(s)
	}
	msg := Msg{Frames: [][]byte{make([]byte, 64)}}
	n := b.N
	done := make(chan int, len(subs))
	b.ReportAllocs()
	b.ResetTimer()
	for _, s := range subs {
		go func() {
			got := 0
			for got < n {
				c, cancel := context.WithTimeout(ctx, timeoutFor(n))
				_, err := s.Recv(c)
				cancel()
				if err != nil {
					break
				}
				got++
			}
			done <- got
		}()
	}
	for range n {
		pub.Send(ctx, msg)
	}
	total := 0
	for range subs {
		total += <-done
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(total)/float64(n*len(subs)), "delivered/sent")
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
