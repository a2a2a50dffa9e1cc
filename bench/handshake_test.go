package bench

import (
	"context"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/zpeer/zpeer/socket"
)

// BenchmarkCurveHandshake is CURVE connections per second, zpeer and libzmq
// side by side: each op opens a client socket with a key pair of its own,
// connects to one long-lived CURVE server (any client let in), completes
// one 64 B request/reply (so the handshake is done on both ends) and
// closes. Both ends run in this process, so it counts the server's and the
// client's work; the connect, the round trip and the close are the same
// for both stacks.
//
//	go test -run '^$' -bench CurveHandshake -benchtime 2s
func BenchmarkCurveHandshake(b *testing.B) {
	b.Run("zpeer", func(b *testing.B) {
		kp, _ := socket.NewKeyPair()
		rep, err := socket.New(socket.REP, socket.WithCurveServer(kp.Secret), socket.WithLinger(0))
		if err != nil {
			b.Fatal(err)
		}
		defer rep.Close()
		ep, err := rep.Bind("tcp://127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
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
		body := make([]byte, 64)
		b.ResetTimer()
		for range b.N {
			ckp, _ := socket.NewKeyPair() // a new client every time, as libzmq's below
			req, err := socket.New(socket.REQ, socket.WithCurveClient(kp.Public, ckp), socket.WithLinger(0),
				socket.WithReconnect(time.Millisecond, 10*time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			if err := req.Connect(ep); err != nil {
				b.Fatal(err)
			}
			if err := req.SendBytes(ctx, body); err != nil {
				b.Fatal(err)
			}
			if _, err := req.Recv(ctx); err != nil {
				b.Fatal(err)
			}
			req.Close()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	})
	b.Run("libzmq", func(b *testing.B) {
		zctx, err := zmq.NewContext()
		if err != nil {
			b.Fatal(err)
		}
		defer zctx.Term()
		spub, ssec, _ := zmq.NewCurveKeypair()
		rep, err := zctx.NewSocket(zmq.REP)
		if err != nil {
			b.Fatal(err)
		}
		rep.SetLinger(0)
		rep.SetCurveServer(1)
		rep.SetCurveSecretkey(ssec)
		rep.SetRcvtimeo(zmqPoll)
		if err := rep.Bind("tcp://127.0.0.1:*"); err != nil {
			b.Fatal(err)
		}
		ep, _ := rep.GetLastEndpoint()
		done := make(chan struct{})
		stop := make(chan struct{})
		go func() { // libzmq sockets are not thread-safe: rep is this goroutine's
			defer close(done)
			defer rep.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				m, err := rep.RecvBytes(0)
				if err != nil {
					continue // the receive time-out: look at stop
				}
				rep.SendBytes(m, 0)
			}
		}()
		defer func() { close(stop); <-done }()
		body := make([]byte, 64)
		b.ResetTimer()
		for range b.N {
			cpub, csec, _ := zmq.NewCurveKeypair()
			req, err := zctx.NewSocket(zmq.REQ)
			if err != nil {
				b.Fatal(err)
			}
			req.SetLinger(0)
			req.SetCurveServerkey(spub)
			req.SetCurvePublickey(cpub)
			req.SetCurveSecretkey(csec)
			if err := req.Connect(ep); err != nil {
				b.Fatal(err)
			}
			if _, err := req.SendBytes(body, 0); err != nil {
				b.Fatal(err)
			}
			if _, err := req.RecvBytes(0); err != nil {
				b.Fatal(err)
			}
			req.Close()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	})
}
