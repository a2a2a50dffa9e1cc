// Command flood measures a CURVE server under a handshake flood, zpeer and
// libzmq (through pebbe/zmq4) side by side in one run: while one child
// process opens CURVE connections at -rate per second, each sending the
// greeting and a valid HELLO (the same one replayed: it costs the flooder
// nothing and the server two Curve25519 operations) and abandoning it
// (never INITIATE; closed after -hold), and another child sends garbage at
// -garbage connections per second, it reports
//
//   - the throughput of an established CURVE peer (a zpeer PUSH sending
//     -size byte messages to the server's PULL), quiet (the mean of a
//     phase before the flood and one after) and under the flood, and
//     their ratio;
//   - the handshake time of new legitimate clients (zpeer CURVE PUSH
//     sockets connecting every 20 ms, from connect to the handshake's end),
//     p50, p99 and worst, quiet and under the flood.
//
// The clients are the same for both servers; only the server differs.
// zpeer's server runs with its default handshake limits (32 per source, 256
// in all). The flood comes from 127.0.1.1, garbage from 127.0.2.1, the
// legitimate clients from 127.0.0.1.
//
//	cd bench && go run ./cmd/flood [-rate 2000] [-garbage 200] [-duration 3s] [-runs 3]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"golang.org/x/crypto/nacl/box"

	"github.com/zpeer/zpeer/socket"
)

func main() {
	var (
		role, target, key   string
		rate, garbage, runs int
		size                int
		dur, hold           time.Duration
		stacks              string
	)
	flag.StringVar(&role, "role", "", "child mode: flooder or garbage (internal)")
	flag.StringVar(&target, "target", "", "child mode: host:port to flood")
	flag.StringVar(&key, "server-key", "", "child mode: the server's public key (Z85)")
	flag.IntVar(&rate, "rate", 2000, "abandoned CURVE connections per second")
	flag.IntVar(&garbage, "garbage", 200, "garbage connections per second")
	flag.IntVar(&runs, "runs", 1, "repetitions (each: zpeer, then libzmq)")
	flag.IntVar(&size, "size", 64, "message size of the established peer")
	flag.DurationVar(&dur, "duration", 3*time.Second, "length of each phase (quiet, flood)")
	flag.DurationVar(&hold, "hold", time.Second, "how long the flooder keeps each abandoned connection")
	flag.StringVar(&stacks, "stacks", "zpeer,libzmq", "servers to measure")
	flag.Parse()
	var err error
	switch role {
	case "flooder", "garbage":
		err = child(role, target, key, rate, hold)
	case "":
		err = drive(strings.Split(stacks, ","), rate, garbage, runs, size, dur, hold)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

// server is a CURVE PULL server under test.
type server interface {
	endpoint() string
	received() uint64
	shed() string
	close()
}

type zpeerServer struct {
	s *socket.Socket
	n atomic.Uint64
}

func newZpeerServer(kp socket.KeyPair) (*zpeerServer, error) {
	s, err := socket.New(socket.PULL, socket.WithCurveServer(kp.Secret), socket.WithLinger(0))
	if err != nil {
		return nil, err
	}
	z := &zpeerServer{s: s}
	if _, err := s.Bind("tcp://127.0.0.1:0"); err != nil {
		return nil, err
	}
	go func() {
		for {
			m, err := s.Recv(context.Background())
			if err != nil {
				return
			}
			m.Free()
			z.n.Add(1)
		}
	}()
	return z, nil
}

func (z *zpeerServer) endpoint() string { return z.s.Endpoints()[0] }
func (z *zpeerServer) received() uint64 { return z.n.Load() }
func (z *zpeerServer) shed() string     { return fmt.Sprint(z.s.Stats().Shed) }
func (z *zpeerServer) close()           { z.s.Close() }

type libzmqServer struct {
	ctx  *zmq.Context
	s    *zmq.Socket
	ep   string
	n    atomic.Uint64
	stop atomic.Bool
	done chan struct{}
}

func newLibzmqServer(kp socket.KeyPair) (*libzmqServer, error) {
	ctx, err := zmq.NewContext()
	if err != nil {
		return nil, err
	}
	s, err := ctx.NewSocket(zmq.PULL)
	if err != nil {
		return nil, err
	}
	l := &libzmqServer{ctx: ctx, s: s, done: make(chan struct{})}
	s.SetLinger(0)
	s.SetRcvtimeo(100 * time.Millisecond)
	s.SetCurveServer(1)
	s.SetCurveSecretkey(kp.Secret.Z85())
	if err := s.Bind("tcp://127.0.0.1:*"); err != nil {
		return nil, err
	}
	if l.ep, err = s.GetLastEndpoint(); err != nil {
		return nil, err
	}
	go func() {
		defer close(l.done)
		for !l.stop.Load() {
			if _, err := s.RecvBytes(0); err == nil {
				l.n.Add(1)
			}
		}
	}()
	return l, nil
}

func (l *libzmqServer) endpoint() string { return l.ep }
func (l *libzmqServer) received() uint64 { return l.n.Load() }
func (l *libzmqServer) shed() string     { return "-" }
func (l *libzmqServer) close() {
	l.stop.Store(true)
	<-l.done
	l.s.Close()
	l.ctx.Term()
}

// phase is what one phase (quiet or flood) measured.
type phase struct {
	rate      float64         // established peer, messages/s
	handshake []time.Duration // legitimate clients' handshakes
	failed    int             // legitimate clients that did not connect within 5s
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func drive(stacks []string, rate, garbage, runs, size int, dur, hold time.Duration) error {
	kp, err := socket.NewKeyPair()
	if err != nil {
		return err
	}
	fmt.Printf("CURVE server under a handshake flood: %d abandoned CURVE connections/s (held %v) + %d garbage connections/s; established peer: %d B messages; phases of %v\n\n",
		rate, hold, garbage, size, dur)
	fmt.Println("| run | server | quiet msg/s | flood msg/s | kept | handshake ms quiet p50/p99/max | handshake ms flood p50/p99/max | failed | flood conns | shed |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for r := 1; r <= runs; r++ {
		for _, st := range stacks {
			var srv server
			switch st {
			case "zpeer":
				srv, err = newZpeerServer(kp)
			case "libzmq":
				srv, err = newLibzmqServer(kp)
			default:
				err = fmt.Errorf("unknown stack %q", st)
			}
			if err != nil {
				return err
			}
			q, f, opened, err := measure(srv, kp.Public, rate, garbage, size, dur, hold)
			shed := srv.shed()
			srv.close()
			if err != nil {
				return err
			}
			ms := func(d []time.Duration, p float64) string {
				return fmt.Sprintf("%.1f", float64(pct(d, p))/float64(time.Millisecond))
			}
			fmt.Printf("| %d | %s | %.0f | %.0f | %.0f%% | %s / %s / %s | %s / %s / %s | %d of %d | %d | %s |\n",
				r, st, q.rate, f.rate, 100*f.rate/q.rate,
				ms(q.handshake, .5), ms(q.handshake, .99), ms(q.handshake, 1),
				ms(f.handshake, .5), ms(f.handshake, .99), ms(f.handshake, 1),
				f.failed, f.failed+len(f.handshake), opened, shed)
		}
	}
	return nil
}

func measure(srv server, pub socket.Key, rate, garbage, size int, dur, hold time.Duration) (quiet, flooded phase, opened int64, err error) {
	ep := srv.endpoint()
	push, err := socket.New(socket.PUSH, socket.WithCurveClient(pub, socket.KeyPair{}), socket.WithLinger(0))
	if err != nil {
		return
	}
	defer push.Close()
	if err = push.Connect(ep); err != nil {
		return
	}
	stopSend := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		body := make([]byte, size)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { <-stopSend; cancel() }()
		for push.Send(ctx, socket.NewMsg(body)) == nil {
		}
	}()
	defer func() { close(stopSend); <-sent }()

	run := func() phase {
		var p phase
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // new legitimate clients, one every 20 ms
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				d, ok := legitHandshake(ep, pub)
				mu.Lock()
				if ok {
					p.handshake = append(p.handshake, d)
				} else {
					p.failed++
				}
				mu.Unlock()
			}
		}()
		n0, t0 := srv.received(), time.Now()
		time.Sleep(dur) // the measurement's length
		p.rate = float64(srv.received()-n0) / time.Since(t0).Seconds()
		close(stop)
		wg.Wait()
		return p
	}
	// Warm up: the peer connected and sending for a second.
	for deadline := time.Now().Add(5 * time.Second); srv.received() == 0; {
		if time.Now().After(deadline) {
			return quiet, flooded, 0, fmt.Errorf("the established peer never got through")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	quiet = run()

	addr := strings.TrimPrefix(ep, "tcp://")
	fl, err := startChild("flooder", addr, pub, rate, hold)
	if err != nil {
		return
	}
	gb, err := startChild("garbage", addr, pub, garbage, hold)
	if err != nil {
		fl.stop()
		return
	}
	flooded = run()
	opened = fl.stop()
	gb.stop()
	// Quiet again: the quiet rate is the mean of before and after, so
	// that a drift of the machine's load over the run weighs on both.
	after := run()
	quiet.rate = (quiet.rate + after.rate) / 2
	quiet.handshake = append(quiet.handshake, after.handshake...)
	quiet.failed += after.failed
	return quiet, flooded, opened, nil
}

// legitHandshake connects a new CURVE client and returns how long its
// handshake took (connect to EventConnected).
func legitHandshake(ep string, pub socket.Key) (time.Duration, bool) {
	connected := make(chan struct{}, 1)
	s, err := socket.New(socket.PUSH, socket.WithCurveClient(pub, socket.KeyPair{}), socket.WithLinger(0),
		socket.WithEventHandler(func(ev socket.Event) {
			if ev.Kind == socket.EventConnected {
				select {
				case connected <- struct{}{}:
				default:
				}
			}
		}))
	if err != nil {
		return 0, false
	}
	defer s.Close()
	start := time.Now()
	if s.Connect(ep) != nil {
		return 0, false
	}
	select {
	case <-connected:
		return time.Since(start), true
	case <-time.After(5 * time.Second):
		return 0, false
	}
}

type childProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
}

func startChild(role, addr string, pub socket.Key, rate int, hold time.Duration) (*childProc, error) {
	c := &childProc{}
	c.cmd = exec.Command(os.Args[0], "-role", role, "-target", addr, "-server-key", pub.String(),
		"-rate", fmt.Sprint(rate), "-hold", hold.String())
	c.cmd.Stdout = &c.out
	c.cmd.Stderr = os.Stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	return c, c.cmd.Start()
}

// stop ends the child (closing its stdin) and returns the connections it
// opened.
func (c *childProc) stop() int64 {
	c.stdin.Close()
	c.cmd.Wait()
	var n int64
	fmt.Sscan(c.out.String(), &n)
	return n
}

// child floods target until its stdin closes, then prints the number of
// connections it opened.
func child(role, target, key string, rate int, hold time.Duration) error {
	server, err := socket.ParseKey(key)
	if err != nil {
		return err
	}
	payload := func() []byte {
		b := make([]byte, 200)
		rand.Read(b)
		return b
	}
	src := "127.0.2.1"
	if role == "flooder" {
		hello, err := helloFrames(server)
		if err != nil {
			return err
		}
		payload = func() []byte { return hello }
		src = "127.0.1.1"
	}
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	var opened atomic.Int64
	var wg sync.WaitGroup
	const workers = 8
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				// Open loop: a dial the server's backlog holds up does
				// not slow the flood down.
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := d.Dial("tcp", target)
					if err != nil {
						return
					}
					opened.Add(1)
					defer c.Close()
					c.Write(payload())
					// Abandoned: read what the server sends until it
					// closes or the hold time passes.
					c.SetReadDeadline(time.Now().Add(hold))
					io.Copy(io.Discard, c)
				}()
			}
		}()
	}
	<-stop
	wg.Wait()
	fmt.Println(opened.Load())
	return nil
}

// helloFrames is a CURVE client's greeting and HELLO command (RFC 26) for
// the server key: 64 bytes of greeting, then a command frame of 200 bytes.
func helloFrames(server socket.Key) ([]byte, error) {
	cPub, cSec, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var g [64]byte
	g[0], g[9], g[10] = 0xFF, 0x7F, 3
	copy(g[12:], "CURVE")
	b := append([]byte(nil), g[:]...)
	b = append(b, 0x04, 200) // command frame, 200 bytes
	b = append(b, "\x05HELLO\x01\x00"...)
	b = append(b, make([]byte, 72)...)
	b = append(b, cPub[:]...)
	var nonce [24]byte
	copy(nonce[:], "CurveZMQHELLO---")
	binary.BigEndian.PutUint64(nonce[16:], 1)
	b = append(b, nonce[16:]...)
	sk := [32]byte(server)
	b = box.Seal(b, make([]byte, 64), &nonce, &sk, cSec)
	if len(b) != 64+2+200 {
		return nil, fmt.Errorf("HELLO of %d bytes", len(b)-66)
	}
	return b, nil
}
