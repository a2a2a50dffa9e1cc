//go:build linux

package socket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Handshake floods. The CURVE server runs in a child process (this test
// binary, TestFloodServerHelper) with 512 file descriptors, while this
// process floods it: one goroutine family opens CURVE connections, sends
// the greeting and a valid HELLO (one recorded HELLO, replayed: it costs
// the flooder nothing and the server two Curve25519 operations) and
// abandons them, never sending INITIATE nor closing; another sends
// garbage. A legitimate client must then complete a request/reply within
// the safety net.
//
// Before handshakes were bounded this failed: every abandoned connection
// held a descriptor and a goroutine for the handshake timeout (5s), the
// server ran out of descriptors, stopped accepting, and the legitimate
// client's connection waited in the listen backlog behind a thousand flood
// connections, each taking its turn of 5s per 512 (the same happens at any
// descriptor limit with a flood of limit/5 connections per second: 4000/s
// at the 20000 of CI machines). The low limit keeps the test small.

const floodFDs = 512

// TestFloodServerHelper is the child process: a CURVE REP echo server.
// It is skipped unless started by TestHandshakeFlood.
func TestFloodServerHelper(t *testing.T) {
	if os.Getenv("ZPEER_FLOOD_HELPER") != "1" {
		t.Skip("the flood tests' child process")
	}
	lim := syscall.Rlimit{Cur: floodFDs, Max: floodFDs}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	sec, err := ParseSecretKey(os.Getenv("ZPEER_FLOOD_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	rep := newSock(t, REP, WithCurveServer(sec))
	fmt.Printf("endpoint %s\n", bind(t, rep))
	go func() {
		io.Copy(io.Discard, os.Stdin) // the parent closes stdin: stop
		rep.Close()
	}()
	for {
		m, err := rep.Recv(context.Background())
		if err != nil {
			return
		}
		if err := rep.Send(context.Background(), m); err != nil {
			return
		}
	}
}

// startFloodServer starts the child and returns its endpoint.
func startFloodServer(t *testing.T, sec SecretKey) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFloodServerHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ZPEER_FLOOD_HELPER=1", "ZPEER_FLOOD_KEY="+sec.Z85())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		for range lines {
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("flood server: %v; stderr:\n%s", err, stderr.String())
		}
		cancel()
	})
	for l := range lines {
		if ep, ok := strings.CutPrefix(l, "endpoint "); ok {
			return ep
		}
	}
	t.Fatalf("flood server printed no endpoint; stderr:\n%s", stderr.String())
	return ""
}

// curveHelloFrames returns a client's greeting and a valid HELLO for the
// server key: what a flooder replays on every connection.
func curveHelloFrames(t testing.TB, server Key) []byte {
	t.Helper()
	var out bytes.Buffer
	g := greeting("CURVE", false)
	out.Write(g[:])
	kp, _ := NewKeyPair()
	h := &hsIO{br: bufio.NewReader(bytes.NewReader(nil)), w: &out}
	curveClient(h, &server, &kp, ourMeta(nil, REQ, nil)) // stops at WELCOME: EOF
	return out.Bytes()
}

// flood opens connections to addr at about rate per second from the
// source addresses srcs (in turn), writes payload() on each and keeps it
// open, reading until the server closes it, at most hold at a time. stop
// ends it and waits for its goroutines; opened counts the connections
// made.
type flood struct {
	opened atomic.Int64
	stopCh chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{} // held, guarded by mu
}

func startFlood(addr string, srcs []string, rate, hold int, payload func() []byte) *flood {
	f := &flood{stopCh: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	sem := make(chan struct{}, hold)
	const workers = 8
	for w := range workers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for i := w; ; i += workers {
				select {
				case <-f.stopCh:
					return
				case <-tick.C:
				}
				select {
				case sem <- struct{}{}:
				case <-f.stopCh:
					return
				}
				d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(srcs[i%len(srcs)])}}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					<-sem
					continue
				}
				f.mu.Lock()
				select {
				case <-f.stopCh:
					f.mu.Unlock()
					c.Close()
					<-sem
					return
				default:
				}
				f.conns[c] = struct{}{}
				f.mu.Unlock()
				f.opened.Add(1)
				c.Write(payload())
				f.wg.Add(1)
				go func() {
					defer f.wg.Done()
					io.Copy(io.Discard, c) // until the server closes it (or stop does)
					f.mu.Lock()
					delete(f.conns, c)
					f.mu.Unlock()
					c.Close()
					<-sem
				}()
			}
		}()
	}
	return f
}

func (f *flood) stop() {
	f.mu.Lock()
	close(f.stopCh)
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// TestHandshakeFlood: while one source (or forty, filling the total)
// floods a CURVE server with abandoned handshakes at about 2000 per second
// and another sends garbage, a legitimate client from an address of its
// own completes a request/reply within the safety net.
func TestHandshakeFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a child process")
	}
	srv, _ := NewKeyPair()
	hello := curveHelloFrames(t, srv.Public)
	garbage := func() []byte {
		b := make([]byte, 200)
		rand.Read(b)
		return b
	}
	for _, tc := range []struct {
		name    string
		sources int
	}{
		{"one source", 1},
		{"forty sources", 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := startFloodServer(t, srv.Secret)
			addr := strings.TrimPrefix(ep, "tcp://")
			var srcs []string
			for i := range tc.sources {
				srcs = append(srcs, fmt.Sprintf("127.0.1.%d", 1+i))
			}
			hf := startFlood(addr, srcs, 2000, 2000, func() []byte { return hello })
			defer hf.stop()
			gf := startFlood(addr, []string{"127.0.2.1"}, 200, 200, garbage)
			defer gf.stop()
			// The flood has filled the server (before: its descriptors,
			// and the listen backlog behind them).
			waitFor(t, "the flood to get going", func() bool { return hf.opened.Load() >= 1500 })

			req := newSock(t, REQ, WithCurveClient(srv.Public, KeyPair{}))
			start := time.Now()
			connect(t, req, ep)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := req.Send(ctx, NewMsgString("legit")); err != nil {
				t.Fatalf("legitimate client: Send: %v", err)
			}
			if _, err := req.Recv(ctx); err != nil {
				t.Fatalf("legitimate client locked out: no reply within the 10s safety net (%v); flood connections opened: %d", err, hf.opened.Load())
			}
			t.Logf("legitimate request/reply in %v under a flood of %d connections", time.Since(start).Round(time.Millisecond), hf.opened.Load())
		})
	}
}
