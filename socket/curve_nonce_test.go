package socket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// A relay in the middle of a CURVE connection cannot read or forge what it
// carries, but it sees the frames (their headers are in the clear) and may
// drop, repeat or move a MESSAGE. These tests put one between a sender and
// a zpeer receiver, libzmq's and zpeer's, and check the receiver ends the
// connection without delivering anything of the message in progress.

// zmtpRelay forwards one TCP connection to target, parsing the ZMTP frames
// after each side's greeting: it records the short nonce of every MESSAGE
// each way, and lets tamper decide what becomes of each client-to-server
// MESSAGE. It accepts one connection only (a reconnecting peer is refused:
// what crossed the first is all there is to check).
type zmtpRelay struct {
	ln     net.Listener
	target string
	// tamper gets the i-th client-to-server MESSAGE (0-based, the whole
	// frame, header included) and returns the frames to forward instead.
	tamper func(i int, frame []byte) [][]byte

	mu     sync.Mutex
	nonces [2][]uint64 // MESSAGE short nonces, [0] client to server, [1] back
	done   chan struct{}
}

func newZMTPRelay(t *testing.T, target string, tamper func(int, []byte) [][]byte) *zmtpRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &zmtpRelay{ln: ln, target: strings.TrimPrefix(target, "tcp://"), tamper: tamper, done: make(chan struct{})}
	go r.run()
	t.Cleanup(func() {
		ln.Close()
		<-r.done
	})
	return r
}

func (r *zmtpRelay) endpoint() string { return "tcp://" + r.ln.Addr().String() }

func (r *zmtpRelay) run() {
	defer close(r.done)
	a, err := r.ln.Accept()
	r.ln.Close()
	if err != nil {
		return
	}
	defer a.Close()
	b, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	defer b.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	pump := func(dst, src net.Conn, dir int, tamper func(int, []byte) [][]byte) {
		defer wg.Done()
		r.pump(dst, src, dir, tamper)
		a.Close()
		b.Close()
	}
	go pump(b, a, 0, r.tamper)
	go pump(a, b, 1, nil)
	wg.Wait()
}

// pump copies the greeting as it comes (libzmq sends it in two parts,
// waiting for the peer's first part), then frame by frame.
func (r *zmtpRelay) pump(dst, src net.Conn, dir int, tamper func(int, []byte) [][]byte) {
	if _, err := io.CopyN(dst, src, greetingLen); err != nil {
		return
	}
	br := bufio.NewReader(src)
	for i := 0; ; {
		frame, err := readRawFrame(br)
		if err != nil {
			return
		}
		out := [][]byte{frame}
		if body := frame[rawHeaderLen(frame):]; bytes.HasPrefix(body, curveMsgName) && len(body) >= curveMsgHeader {
			r.mu.Lock()
			r.nonces[dir] = append(r.nonces[dir], binary.BigEndian.Uint64(body[8:16]))
			r.mu.Unlock()
			if tamper != nil {
				out = tamper(i, frame)
			}
			i++
		}
		for _, f := range out {
			if _, err := dst.Write(f); err != nil {
				return
			}
		}
	}
}

// readRawFrame reads one ZMTP frame, header and body, as it came.
func readRawFrame(br *bufio.Reader) ([]byte, error) {
	flags, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	hdr := []byte{flags}
	var size uint64
	if flags&flagLong != 0 {
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return nil, err
		}
		hdr, size = append(hdr, b[:]...), binary.BigEndian.Uint64(b[:])
	} else {
		n, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		hdr, size = append(hdr, n), uint64(n)
	}
	if size > 64<<20 {
		return nil, fmt.Errorf("relay: frame of %d bytes", size)
	}
	frame := make([]byte, len(hdr)+int(size))
	copy(frame, hdr)
	_, err = io.ReadFull(br, frame[len(hdr):])
	return frame, err
}

func rawHeaderLen(frame []byte) int {
	if frame[0]&flagLong != 0 {
		return 9
	}
	return 2
}

func (r *zmtpRelay) seen(dir int) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.nonces[dir]...)
}

// Relay policies on the client-to-server MESSAGEs. The senders send
// two-frame messages [msg, i], so message k (from 1) is MESSAGEs 2k-2 and
// 2k-1, and MESSAGE 5 is the second frame of message 3.
func relayDrop(k int) func(int, []byte) [][]byte {
	return func(i int, f []byte) [][]byte {
		if i == k {
			return nil
		}
		return [][]byte{f}
	}
}

func relayReplay(k int) func(int, []byte) [][]byte {
	return func(i int, f []byte) [][]byte {
		if i == k {
			return [][]byte{f, f}
		}
		return [][]byte{f}
	}
}

// relayDelay holds MESSAGE k back until MESSAGE k+by has passed.
func relayDelay(k, by int) func(int, []byte) [][]byte {
	var held []byte
	return func(i int, f []byte) [][]byte {
		switch i {
		case k:
			held = f
			return nil
		case k + by:
			return [][]byte{f, held}
		}
		return [][]byte{f}
	}
}

// curveSender starts a CURVE PUSH connected to ep that sends interop
// messages (interopMsgs), with certificates c.
type curveSender struct {
	name  string
	start func(t *testing.T, c curveCerts, ep string)
}

// curveSenders are a libzmq (pyzmq) and a zpeer CURVE PUSH sending count
// interop messages, the multi-frame specials too if asked.
func curveSenders(count int, specials bool) []curveSender {
	return []curveSender{
		{"libzmq", func(t *testing.T, c curveCerts, ep string) {
			args := []string{"push", "--connect", ep, "--count", fmt.Sprint(count)}
			if specials {
				args = append(args, "--specials")
			}
			startPy(t, append(args, pyClientArgs(c)...)...)
		}},
		{"zpeer", func(t *testing.T, c curveCerts, ep string) {
			push := newSock(t, PUSH, append(zpeerClientOpts(t, c), WithHeartbeat(0, 0))...)
			connect(t, push, ep)
			// The PULL may end the connection before the last messages
			// are queued: those then wait for a peer that never comes
			// back (the relay takes one connection). Until the test ends.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, m := range interopMsgs(count, specials) {
					if push.Send(ctx, m) != nil {
						return
					}
				}
			}()
			t.Cleanup(func() { cancel(); <-done })
		}},
	}
}

// tamperedPull has snd send to a zpeer CURVE PULL through a relay that
// applies tamper, and waits for the connection to end: it returns the
// PULL (what it delivered is queued), the relay and the reason the
// connection ended.
func tamperedPull(t *testing.T, snd curveSender, tamper func(int, []byte) [][]byte) (*Socket, *zmtpRelay, error) {
	t.Helper()
	c := pyCerts(t)
	if snd.name == "zpeer" {
		c = goCerts(t)
	}
	ended := make(chan error, 4)
	pull := newSock(t, PULL, append(zpeerServerOpts(t, c), WithHeartbeat(0, 0), WithEventHandler(func(ev Event) {
		if ev.Kind == EventDisconnected {
			ended <- ev.Err
		}
	}))...)
	relay := newZMTPRelay(t, bind(t, pull), tamper)
	snd.start(t, c, relay.endpoint())
	select {
	case why := <-ended:
		return pull, relay, why
	case <-ctxT(t).Done():
		t.Fatalf("the connection did not end; MESSAGE nonces seen: %v", relay.seen(0))
		return nil, nil, nil
	}
}

// TestCurveRelayTampering: a libzmq (pyzmq) or zpeer CURVE PUSH sends six
// two-frame messages [msg, i] through a relay to a zpeer CURVE PULL. The
// relay drops the second frame of message 3, repeats it, or holds it back
// until message 4 has passed. Before MESSAGE nonces had to be consecutive,
// the drop delivered a stitched [msg, msg, 3] (the first frame of message 3
// with message 4) and so did the delay (before it failed on the late
// frame); a repeat was already refused. Now the PULL gets the messages
// before the tampered one, whole, nothing else, and the connection ends
// with errNonce. The relay also shows the first MESSAGE's short nonce:
// INITIATE's (2) plus one, libzmq's as ours.
func TestCurveRelayTampering(t *testing.T) {
	const count = 6
	policies := []struct {
		name   string
		tamper func() func(int, []byte) [][]byte
		want   int // messages delivered
	}{
		{"drop", func() func(int, []byte) [][]byte { return relayDrop(5) }, 2},
		{"replay", func() func(int, []byte) [][]byte { return relayReplay(5) }, 3},
		{"reorder", func() func(int, []byte) [][]byte { return relayDelay(5, 2) }, 2},
	}
	senders := curveSenders(count, false)
	for _, snd := range senders {
		for _, pol := range policies {
			t.Run(snd.name+"/"+pol.name, func(t *testing.T) {
				pull, relay, why := tamperedPull(t, snd, pol.tamper())
				if !errors.Is(why, errNonce) {
					t.Errorf("connection ended with %v, want errNonce", why)
				}
				// Everything the reader delivered is queued before the
				// pipe is detached: a cancelled context only drains it.
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				var got []string
				for {
					m, err := pull.Recv(ctx)
					if err != nil {
						break
					}
					got = append(got, strings.Join(strings.Fields(fmt.Sprintf("%s", m.Frames)), "|"))
				}
				var want []string
				for i := range pol.want {
					want = append(want, fmt.Sprintf("[msg|%d]", i))
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("delivered %v, want %v", got, want)
				}
				if n := pull.Stats().MsgsIn; n != uint64(pol.want) {
					t.Errorf("Stats().MsgsIn = %d, want %d", n, pol.want)
				}
				if ns := relay.seen(0); len(ns) == 0 || ns[0] != 3 {
					t.Errorf("client-to-server MESSAGE nonces %v, want the first to be 3", ns)
				}
			})
		}
	}
}

// TestCurveFirstMessageNonces: short nonces go up by one from the
// handshake's both ways, libzmq's as ours: client to server from
// INITIATE's 2, server to client from READY's 1. A REQ and a REP, one
// libzmq and one zpeer, exchange three requests through a relay that
// records the nonces.
func TestCurveFirstMessageNonces(t *testing.T) {
	const n = 3
	want := func(first uint64, k int) []uint64 {
		var ns []uint64
		for i := range k {
			ns = append(ns, first+uint64(i))
		}
		return ns
	}
	check := func(t *testing.T, r *zmtpRelay) {
		t.Helper()
		// REQ sends [empty, msg, i]: three MESSAGEs per request.
		if got, w := r.seen(0), want(3, 3*n); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("client to server: nonces %v, want %v", got, w)
		}
		if got, w := r.seen(1), want(2, 3*n); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("server to client: nonces %v, want %v", got, w)
		}
	}
	t.Run("libzmq client", func(t *testing.T) {
		c := pyCerts(t)
		rep := newSock(t, REP, append(zpeerServerOpts(t, c), WithHeartbeat(0, 0))...)
		r := newZMTPRelay(t, bind(t, rep), nil)
		py := startPy(t, append([]string{"req", "--connect", r.endpoint(), "--count", fmt.Sprint(n)}, pyClientArgs(c)...)...)
		for range n {
			sendMsg(t, rep, recvMsg(t, rep))
		}
		py.done(t, n)
		check(t, r)
	})
	t.Run("libzmq server", func(t *testing.T) {
		c := goCerts(t)
		py := startPy(t, append([]string{"rep", "--bind", "tcp://127.0.0.1:*", "--count", fmt.Sprint(n)}, pyServerArgs(c)...)...)
		r := newZMTPRelay(t, py.expect(t, "bound").Endpoint, nil)
		req := newSock(t, REQ, append(zpeerClientOpts(t, c), WithHeartbeat(0, 0))...)
		connect(t, req, r.endpoint())
		for _, m := range interopMsgs(n, false) {
			sendMsg(t, req, m)
			recvMsg(t, req)
		}
		py.done(t, n)
		check(t, r)
	})
}
