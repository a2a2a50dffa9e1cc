package socket

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/zpeer/zpeer/internal/testutil"
)

// BenchmarkMechPushPull runs PUSH to PULL over loopback under NULL and
// CURVE side by side (b.ReportAllocs counts both ends: the encrypted path
// aims at one allocation per 64 B message at most).
func BenchmarkMechPushPull(b *testing.B) {
	for _, mech := range []string{"NULL", "CURVE"} {
		for _, size := range []int{64, 1 << 20} {
			b.Run(mech+"/"+sizeName(size), func(b *testing.B) {
				var srv, cli []Option
				if mech == "CURVE" {
					kp, _ := NewKeyPair()
					srv = []Option{WithCurveServer(kp.Secret)}
					cli = []Option{WithCurveClient(kp.Public, KeyPair{})}
				}
				pull := newSock(b, PULL, srv...)
				push := newSock(b, PUSH, cli...)
				connect(b, push, bind(b, pull))
				pushPullLoop(b, pull, push, size)
			})
		}
	}
}

// BenchmarkMechReqRep is the 64 B round trip under NULL and CURVE.
func BenchmarkMechReqRep(b *testing.B) {
	for _, mech := range []string{"NULL", "CURVE"} {
		b.Run(mech, func(b *testing.B) {
			var srv, cli []Option
			if mech == "CURVE" {
				kp, _ := NewKeyPair()
				srv = []Option{WithCurveServer(kp.Secret)}
				cli = []Option{WithCurveClient(kp.Public, KeyPair{})}
			}
			rep := newSock(b, REP, srv...)
			req := newSock(b, REQ, cli...)
			connect(b, req, bind(b, rep))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				for {
					m, err := rep.Recv(ctx)
					if err != nil || rep.Send(ctx, m) != nil {
						return
					}
				}
			}()
			msg := Msg{Frames: [][]byte{make([]byte, 64)}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := req.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
				m, err := req.Recv(ctx)
				if err != nil {
					b.Fatal(err)
				}
				m.Free()
			}
		})
	}
}

// BenchmarkCurveHandshake is one complete CURVE handshake (greeting,
// HELLO, WELCOME, INITIATE, READY), client and server both computed in
// this process over loopback TCP: the cost a server pays per connection
// plus the client's share.
func BenchmarkCurveHandshake(b *testing.B) {
	skp, _ := NewKeyPair()
	ckp, _ := NewKeyPair()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	errs := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h := &hsIO{br: bufio.NewReader(c), w: c}
			err = h.exchangeGreeting("CURVE", true)
			if err == nil {
				_, _, _, err = curveServer(h, &skp, ourMeta(nil, PULL, nil), nil)
			}
			c.Close()
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}
	}()
	meta := ourMeta(nil, PUSH, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		h := &hsIO{br: bufio.NewReader(c), w: c}
		err = h.exchangeGreeting("CURVE", false)
		if err == nil {
			_, _, err = curveClient(h, &skp.Public, &ckp, meta)
		}
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// BenchmarkCurveSealOpen is the per-message cost of the MESSAGE box: seal
// on one side, unwrap and read (check and decrypt) on the other, from
// memory through a bufio.Reader as a connection's reader does.
func BenchmarkCurveSealOpen(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			var key [32]byte
			key[0] = 7
			tx := newCurveCodec(&key, false, 0, 0)
			rx := newCurveCodec(&key, true, 0, 0)
			body := make([]byte, size)
			out := make([]byte, size)
			var frame []byte
			src := bytes.NewReader(nil)
			fr := &frameReader{br: bufio.NewReaderSize(src, readBufSize), limit: 1 << 30}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			cpu0 := testutil.CPUTime()
			for b.Loop() {
				frame = tx.appendSealed(frame[:0], 0, body)
				src.Reset(frame)
				fr.br.Reset(src)
				h, err := fr.header()
				if err == nil {
					h, err = rx.unwrap(fr, h)
				}
				if err == nil {
					err = rx.read(fr, out[:h.size])
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(testutil.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
