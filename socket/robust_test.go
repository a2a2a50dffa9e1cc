package socket

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Robustness: hostile and broken peers speaking raw bytes to a bound
// socket, and the engine's behaviour under reconnects, silence, slow peers,
// close and competing senders.

// --- raw ZMTP, written by hand ---

// zmtpGreeting is a ZMTP 3.0 NULL greeting from a client.
func zmtpGreeting() []byte {
	g := make([]byte, greetingLen)
	g[0], g[9], g[10], g[11] = 0xFF, 0x7F, 3, 0
	copy(g[12:32], "NULL")
	return g
}

// zmtpFrame encodes one frame, short or long.
func zmtpFrame(flags byte, body []byte) []byte {
	if len(body) > 255 {
		return append(longHeader(flags, uint64(len(body))), body...)
	}
	return append([]byte{flags, byte(len(body))}, body...)
}

// longHeader is a long frame header announcing size bytes.
func longHeader(flags byte, size uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{flags | flagLong}, size)
}

// zmtpCommand encodes a command frame.
func zmtpCommand(name string, data []byte) []byte {
	body := append([]byte{byte(len(name))}, name...)
	return zmtpFrame(flagCommand, append(body, data...))
}

// zmtpReady is a READY command announcing socket type typ and the given
// extra property name/value pairs.
func zmtpReady(typ string, props ...string) []byte {
	props = append([]string{"Socket-Type", typ}, props...)
	var b []byte
	for i := 0; i+1 < len(props); i += 2 {
		b = append(b, byte(len(props[i])))
		b = append(b, props[i]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(props[i+1])))
		b = append(b, props[i+1]...)
	}
	return zmtpCommand("READY", b)
}

// dialRaw opens a plain TCP connection to a tcp:// endpoint.
func dialRaw(t testing.TB, ep string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(ep, "tcp://"), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", ep, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readFrame reads one ZMTP frame.
func readFrame(r io.Reader) (flags byte, body []byte, err error) {
	var h [9]byte
	if _, err = io.ReadFull(r, h[:2]); err != nil {
		return 0, nil, err
	}
	size := uint64(h[1])
	if h[0]&flagLong != 0 {
		if _, err = io.ReadFull(r, h[2:9]); err != nil {
			return 0, nil, err
		}
		size = binary.BigEndian.Uint64(h[1:9])
	}
	if size > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", size)
	}
	body = make([]byte, size)
	_, err = io.ReadFull(r, body)
	return h[0], body, err
}

// rawHandshake completes a NULL handshake by hand as a peer of type typ:
// greeting and READY out, the socket's greeting and READY in.
func rawHandshake(t testing.TB, c net.Conn, typ string, props ...string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(append(zmtpGreeting(), zmtpReady(typ, props...)...)); err != nil {
		t.Fatalf("raw handshake: %v", err)
	}
	var g [greetingLen]byte
	if _, err := io.ReadFull(c, g[:]); err != nil {
		t.Fatalf("raw handshake: greeting: %v", err)
	}
	flags, body, err := readFrame(c)
	if err != nil || flags&flagCommand == 0 || !bytes.HasPrefix(body, []byte("\x05READY")) {
		t.Fatalf("raw handshake: want READY, got flags %#x %q (%v)", flags, body, err)
	}
}

// expectClosed reads (and discards) until the socket closes the connection,
// failing if it is still open after d.
func expectClosed(t testing.TB, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
}

// waitEvent returns the next event of the given kind from s.Events().
func waitEvent(t testing.TB, s *Socket, kind EventKind) Event {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case ev := <-s.Events():
			if ev.Kind == kind {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s event within 10s", kind)
		}
	}
}

// stillServes checks that pull, after whatever happened to it, still takes
// a new PUSH peer's messages.
func stillServes(t *testing.T, pull *Socket, ep string) {
	t.Helper()
	push := newSock(t, PUSH)
	connect(t, push, ep)
	send(t, push, "alive")
	if got := recvString(t, pull); got[0] != "alive" {
		t.Fatalf("after the hostile peer: got %q", got)
	}
}

func TestHostileInput(t *testing.T) {
	const maxMsg = 1024
	random := make([]byte, 256)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	random[0] = 0x16 // like a TLS ClientHello; anything but 0xFF
	greeting := zmtpGreeting()
	zmtp2 := zmtpGreeting()
	zmtp2[10] = 1
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	for _, c := range []struct {
		name      string
		handshake bool // complete the handshake before sending stream
		stream    []byte
		want      error // nil: any reason
	}{
		{"2^62-byte frame after READY", true, longHeader(0, 1<<62), ErrTooLarge},
		{"2^62-byte frame with MORE after READY", true, longHeader(flagMore, 1<<62), ErrTooLarge},
		{"2^62-byte command after READY", true, longHeader(flagCommand, 1<<62), ErrTooLarge},
		{"2^62-byte command instead of READY", false, cat(greeting, longHeader(flagCommand, 1<<62)), ErrTooLarge},
		{"2^62-byte message frame instead of READY", false, cat(greeting, longHeader(0, 1<<62)), ErrTooLarge},
		{"frame over WithMaxMsgSize", true, zmtpFrame(0, make([]byte, 2*maxMsg)), ErrTooLarge},
		{"frames adding up over WithMaxMsgSize", true, cat(zmtpFrame(flagMore, make([]byte, 600)), zmtpFrame(0, make([]byte, 600))), ErrTooLarge},
		{"command over WithMaxMsgSize", true, zmtpFrame(flagCommand, append([]byte("\x04PING\x00\x00"), make([]byte, 2*maxMsg)...)), ErrTooLarge},
		{"reserved flag bits after READY", true, []byte{0x80, 1, 'x'}, ErrProtocol},
		{"reserved flag bits instead of READY", false, cat(greeting, []byte{0x84, 1, 'x'}), ErrProtocol},
		{"command inside a message", true, cat(zmtpFrame(flagMore, []byte("a")), zmtpCommand("PING", []byte{0, 0})), ErrProtocol},
		{"malformed command", true, zmtpFrame(flagCommand, []byte{10, 'P'}), ErrProtocol},
		{"READY property cut short", false, cat(greeting, zmtpCommand("READY", []byte("\x08abcdefgh"))), ErrProtocol},
		{"READY value length past the end", false, cat(greeting, zmtpCommand("READY", []byte("\x0bSocket-Type\x00\x00\x10\x00PUSH"))), nil},
		{"HTTP request", false, []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), ErrProtocol},
		{"random bytes", false, random, ErrProtocol},
		{"ZMTP 2.0 greeting", false, zmtp2, ErrProtocol},
	} {
		t.Run(c.name, func(t *testing.T) {
			pull := newSock(t, PULL, WithMaxMsgSize(maxMsg), WithHandshakeTimeout(5*time.Second))
			ep := bind(t, pull)
			raw := dialRaw(t, ep)
			if c.handshake {
				rawHandshake(t, raw, "PUSH")
				waitPeers(t, pull, 1)
			}
			raw.Write(c.stream) // may fail once the socket has hung up
			expectClosed(t, raw, 5*time.Second)
			ev := waitEvent(t, pull, EventRejected)
			if c.want != nil && !errors.Is(ev.Err, c.want) || ev.Err == nil {
				t.Errorf("rejected with %v, want %v", ev.Err, c.want)
			}
			waitFor(t, "peer gone", func() bool { return pull.Peers() == 0 })
			if st := pull.Stats(); st.Rejected != 1 {
				t.Errorf("Stats().Rejected = %d, want 1", st.Rejected)
			} else if c.want != nil && st.RejectedBy != (Rejections{Protocol: 1}) {
				t.Errorf("Stats().RejectedBy = %+v, want one protocol violation", st.RejectedBy)
			}
			stillServes(t, pull, ep)
		})
	}
}

// TestLongHandshakeFrames: a READY over 255 bytes travels in a long frame,
// whose header zmq4 reads in two pieces; the guard must pass it on whole.
// A 255-byte identity (the most WithIdentity allows) makes one.
func TestLongHandshakeFrames(t *testing.T) {
	t.Run("255-byte identity", func(t *testing.T) {
		id := bytes.Repeat([]byte("i"), 255)
		router := newSock(t, ROUTER)
		dealer := newSock(t, DEALER, WithIdentity(id), WithHandshakeTimeout(time.Second))
		connect(t, dealer, bind(t, router))
		send(t, dealer, "hello")
		m := recvMsg(t, router)
		if !bytes.Equal(m.Frames[0], id) || string(m.Body()) != "hello" {
			t.Fatalf("ROUTER got %s", showMsg(m))
		}
		if st := router.Stats(); st.Rejected != 0 {
			t.Errorf("Rejected = %d", st.Rejected)
		}
	})
	t.Run("raw READY with a 300-byte property", func(t *testing.T) {
		pull := newSock(t, PULL)
		raw := dialRaw(t, bind(t, pull))
		rawHandshake(t, raw, "PUSH", "X-Pad", strings.Repeat("p", 300))
		raw.Write(zmtpFrame(0, []byte("hello")))
		if got := recvString(t, pull); got[0] != "hello" {
			t.Fatalf("got %q", got)
		}
	})
}

// TestHostileSilentPeer: connections that stall in the handshake are
// dropped at the handshake timeout.
func TestHostileSilentPeer(t *testing.T) {
	for _, c := range []struct {
		name   string
		stream []byte
	}{
		{"nothing", nil},
		{"half a greeting", zmtpGreeting()[:10]},
		{"greeting, no READY", zmtpGreeting()},
		{"half a READY", append(zmtpGreeting(), zmtpReady("PUSH")[:5]...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			pull := newSock(t, PULL, WithHandshakeTimeout(100*time.Millisecond))
			ep := bind(t, pull)
			raw := dialRaw(t, ep)
			raw.Write(c.stream)
			expectClosed(t, raw, 5*time.Second)
			ev := waitEvent(t, pull, EventRejected)
			var ne net.Error
			if !errors.As(ev.Err, &ne) || !ne.Timeout() {
				t.Errorf("rejected with %v, want a timeout", ev.Err)
			}
			if st := pull.Stats(); st.Rejected != 1 || st.Connects != 0 || st.RejectedBy != (Rejections{Handshake: 1}) {
				t.Errorf("Rejected=%d %+v Connects=%d, want 1 handshake failure and 0", st.Rejected, st.RejectedBy, st.Connects)
			}
			stillServes(t, pull, ep)
		})
	}
}

// floodUntilClosed writes chunk to c again and again until the write fails
// or limit bytes are written, and returns how much went through.
func floodUntilClosed(c net.Conn, chunk []byte, limit int) int {
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	n := 0
	for n < limit {
		k, err := c.Write(chunk)
		n += k
		if err != nil {
			break
		}
	}
	return n
}

// TestHostileHandshakeFrameFlood: during the handshake every frame is a
// single command; a peer that chains command frames with the MORE flag must
// not make the socket buffer them all.
func TestHostileHandshakeFrameFlood(t *testing.T) {
	pull := newSock(t, PULL, WithHandshakeTimeout(5*time.Second))
	ep := bind(t, pull)
	raw := dialRaw(t, ep)
	raw.Write(zmtpGreeting())
	chunk := zmtpFrame(flagCommand|flagMore, make([]byte, 60<<10))
	const limit = 64 << 20
	if n := floodUntilClosed(raw, chunk, limit); n >= limit {
		t.Fatalf("the socket took %d MiB of chained handshake frames without hanging up", n>>20)
	}
	ev := waitEvent(t, pull, EventRejected)
	if !errors.Is(ev.Err, ErrProtocol) {
		t.Errorf("rejected with %v, want ErrProtocol", ev.Err)
	}
	stillServes(t, pull, ep)
}

// TestHostileEmptyFrameFlood: a message of endless empty frames carries no
// bytes, so the size limit alone does not stop it; the socket must still
// hang up before holding an unbounded number of frames.
func TestHostileEmptyFrameFlood(t *testing.T) {
	pull := newSock(t, PULL)
	ep := bind(t, pull)
	raw := dialRaw(t, ep)
	rawHandshake(t, raw, "PUSH")
	chunk := bytes.Repeat([]byte{flagMore, 0}, 32<<10)
	const limit = 16 << 20 // 8M frames
	if n := floodUntilClosed(raw, chunk, limit); n >= limit {
		t.Fatalf("the socket took %d million empty frames in one message without hanging up", n/2/1e6)
	}
	ev := waitEvent(t, pull, EventRejected)
	if !errors.Is(ev.Err, ErrTooLarge) {
		t.Errorf("rejected with %v, want ErrTooLarge", ev.Err)
	}
	stillServes(t, pull, ep)
}

func TestSendTooLarge(t *testing.T) {
	for _, typ := range []Type{PUSH, PUB, DEALER, REQ} {
		s := newSock(t, typ, WithMaxMsgSize(1024), WithNoBlock())
		for _, m := range []Msg{
			NewMsg(make([]byte, 1025)),
			NewMsg(make([]byte, 512), make([]byte, 513)),
			{Frames: make([][]byte, maxFrames+1)}, // empty frames: no bytes, but too many
		} {
			if err := s.Send(ctxT(t), m); !errors.Is(err, ErrTooLarge) {
				t.Errorf("%s: Send of %d bytes in %d frames: %v, want ErrTooLarge", typ, m.Size(), len(m.Frames), err)
			}
		}
	}
	// exactly at the limit crosses
	pull := newSock(t, PULL, WithMaxMsgSize(1024))
	push := newSock(t, PUSH, WithMaxMsgSize(1024))
	connect(t, push, bind(t, pull))
	sendMsg(t, push, NewMsg(make([]byte, 24), make([]byte, 1000)))
	if m := recvMsg(t, pull); m.Size() != 1024 {
		t.Fatalf("received %d bytes", m.Size())
	}
	if st := pull.Stats(); st.Rejected != 0 {
		t.Errorf("Rejected = %d for a message at the limit", st.Rejected)
	}
}

// TestOversizedFromRealPeer: a PUSH with a larger limit sends a message over
// the PULL's limit: the PULL drops that connection, the PUSH reconnects and
// the next message gets through.
func TestOversizedFromRealPeer(t *testing.T) {
	pull := newSock(t, PULL, WithMaxMsgSize(1024))
	ep := bind(t, pull)
	push := newSock(t, PUSH, WithReconnect(10*time.Millisecond, 50*time.Millisecond))
	connect(t, push, ep)
	waitPeers(t, push, 1)
	sendMsg(t, push, NewMsg(make([]byte, 4096)))
	ev := waitEvent(t, pull, EventRejected)
	if !errors.Is(ev.Err, ErrTooLarge) {
		t.Errorf("rejected with %v, want ErrTooLarge", ev.Err)
	}
	waitFor(t, "reconnect", func() bool { return push.Stats().Reconnects > 0 && push.Peers() == 1 })
	send(t, push, "small")
	if got := recvString(t, pull); got[0] != "small" {
		t.Fatalf("got %q", got)
	}
	if st := pull.Stats(); st.Rejected != 1 {
		t.Errorf("Rejected = %d, want 1", st.Rejected)
	}
}

// --- engine behaviours ---

func TestReconnectAfterPeerRestart(t *testing.T) {
	pull, err := New(PULL)
	if err != nil {
		t.Fatal(err)
	}
	ep := bind(t, pull)
	push := newSock(t, PUSH, WithReconnect(10*time.Millisecond, 50*time.Millisecond))
	connect(t, push, ep)
	send(t, push, "before")
	if got := recvString(t, pull); got[0] != "before" {
		t.Fatalf("got %q", got)
	}
	pull.Close()
	waitFor(t, "disconnect", func() bool { return push.Peers() == 0 })

	pull2 := newSock(t, PULL)
	if _, err := pull2.Bind(ep); err != nil {
		t.Fatalf("rebind %s: %v", ep, err)
	}
	waitPeers(t, push, 1)
	for i := range 10 {
		send(t, push, "after", strconv.Itoa(i))
	}
	for i := range 10 {
		if got := recvString(t, pull2); got[1] != strconv.Itoa(i) {
			t.Fatalf("after restart: got %q", got)
		}
	}
	if st := push.Stats(); st.Reconnects == 0 || st.Connects != 2 {
		t.Errorf("Reconnects=%d Connects=%d, want >0 and 2", st.Reconnects, st.Connects)
	}
}

func TestSubscriptionsResentOnReconnect(t *testing.T) {
	pub, err := New(PUB)
	if err != nil {
		t.Fatal(err)
	}
	ep := bind(t, pub)
	sub := newSock(t, SUB, WithReconnect(10*time.Millisecond, 50*time.Millisecond))
	sub.Subscribe("x")
	connect(t, sub, ep)
	syncPub(t, pub, sub, "x")
	pub.Close()
	waitFor(t, "disconnect", func() bool { return sub.Peers() == 0 })

	pub2 := newSock(t, PUB)
	if _, err := pub2.Bind(ep); err != nil {
		t.Fatalf("rebind %s: %v", ep, err)
	}
	// The new PUB knows nothing until the SUB re-sends its subscription.
	syncPub(t, pub2, sub, "x")
	dropsBefore := sub.Stats().Discarded
	for i := range 20 {
		send(t, pub2, "y", strconv.Itoa(i)) // not subscribed: never sent
		send(t, pub2, "x", strconv.Itoa(i))
	}
	for i := range 20 {
		if got := recvString(t, sub); !(got[0] == "x" && got[1] == strconv.Itoa(i)) {
			t.Fatalf("got %q, want x %d", got, i)
		}
	}
	if d := sub.Stats().Discarded - dropsBefore; d != 0 {
		t.Errorf("the new PUB sent %d messages the SUB did not subscribe to", d)
	}
}

// syncPub publishes [topic, "sync"] until sub receives one, then drains
// what else arrived.
func syncPub(t *testing.T, pub, sub *Socket, topic string) {
	t.Helper()
	waitFor(t, "subscription", func() bool {
		send(t, pub, topic, "sync")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := sub.Recv(ctx)
		return err == nil
	})
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := sub.Recv(ctx)
		cancel()
		if err != nil {
			return
		}
	}
}

// TestHeartbeatTimeoutDropsSilentPeer: a peer that completes the handshake
// and then never sends a byte again is dropped after the heartbeat timeout.
func TestHeartbeatTimeoutDropsSilentPeer(t *testing.T) {
	for _, side := range []string{"accepted", "dialled"} {
		t.Run(side, func(t *testing.T) {
			s := newSock(t, PULL, WithHeartbeat(20*time.Millisecond, 100*time.Millisecond))
			var raw net.Conn
			if side == "accepted" {
				raw = dialRaw(t, bind(t, s))
				rawHandshake(t, raw, "PUSH")
			} else {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				connect(t, s, "tcp://"+ln.Addr().String())
				if raw, err = ln.Accept(); err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				rawHandshake(t, raw, "PUSH")
			}
			ev := waitEvent(t, s, EventConnected)
			start := ev.Time
			ev = waitEvent(t, s, EventDisconnected)
			if !errors.Is(ev.Err, errHeartbeat) {
				t.Errorf("disconnected with %v, want a heartbeat timeout", ev.Err)
			}
			// Not before the timeout; the upper bound only tells it from
			// the default 15 s, with room for a loaded machine.
			if d := ev.Time.Sub(start); d < 100*time.Millisecond || d > 10*time.Second {
				t.Errorf("dropped after %v, want about 100ms", d)
			}
			if s.Peers() != 0 {
				t.Errorf("Peers = %d after the heartbeat timeout", s.Peers())
			}
		})
	}
}

// TestHeartbeatKeepsAnsweringPeer: the same silence rule does not drop a
// peer that answers PINGs (here one of ours, with heartbeats off itself).
func TestHeartbeatKeepsAnsweringPeer(t *testing.T) {
	pull := newSock(t, PULL, WithHeartbeat(hbIvl, hbTimeout))
	push := newSock(t, PUSH, WithHeartbeat(0, 0))
	connect(t, push, bind(t, pull))
	waitPeers(t, pull, 1)
	idleWithTraffic(t, pull, hbIdle)
	send(t, push, "still here")
	if got := recvString(t, pull); got[0] != "still here" {
		t.Fatalf("got %q", got)
	}
}

// TestPubNeverBlocks: a subscriber that stops reading fills its queue; PUB
// Send keeps returning at once and counts the drops.
func TestPubNeverBlocks(t *testing.T) {
	pub := newSock(t, PUB, WithSendHWM(10))
	sub := newSock(t, SUB, WithRecvHWM(1))
	sub.Subscribe("")
	connect(t, sub, bind(t, pub))
	syncPub(t, pub, sub, "t")
	payload := make([]byte, 16<<10)
	sent := 0
	for ; sent < 100000 && pub.Stats().Drops == 0; sent++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := pub.Send(ctx, NewMsg([]byte("t"), payload))
		cancel()
		if err != nil {
			t.Fatalf("PUB Send %d: %v", sent, err)
		}
	}
	st := pub.Stats()
	if st.Drops == 0 {
		t.Fatalf("no drops after %d messages to a stalled subscriber", sent)
	}
	if len(st.PerPeer) != 1 || st.PerPeer[0].Drops == 0 || st.PerPeer[0].Queued > 10 {
		t.Errorf("per-peer stats %+v: want drops counted and at most 10 queued", st.PerPeer)
	}
	// and it keeps not blocking
	start := time.Now()
	for range 1000 {
		send(t, pub, "t", "more")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("1000 sends to a full subscriber took %v", d)
	}
}

// stalledPeer is a raw PULL peer that completes the handshake and never
// reads again.
func stalledPeer(t *testing.T, s *Socket, typ string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	connect(t, s, "tcp://"+ln.Addr().String())
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rawHandshake(t, c, typ)
	waitPeers(t, s, 1)
}

// TestPushBlocksAtHWM: with every peer at its high-water mark, Send blocks
// until the context ends; WithNoBlock fails at once with ErrWouldBlock.
func TestPushBlocksAtHWM(t *testing.T) {
	for _, noBlock := range []bool{false, true} {
		t.Run(fmt.Sprintf("noblock=%v", noBlock), func(t *testing.T) {
			opts := []Option{WithSendHWM(4), WithLinger(0)}
			if noBlock {
				opts = append(opts, WithNoBlock())
			}
			push := newSock(t, PUSH, opts...)
			stalledPeer(t, push, "PULL")
			payload := make([]byte, 256<<10) // fills the kernel's buffers quickly
			var err error
			for i := 0; i < 1000 && err == nil; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				err = push.Send(ctx, NewMsg(payload))
				cancel()
			}
			want := ErrTimeout
			if noBlock {
				want = ErrWouldBlock
			}
			if !errors.Is(err, want) {
				t.Fatalf("Send to a stalled peer: %v, want %v", err, want)
			}
			if q := push.Stats().PerPeer[0].Queued; q > 4 {
				t.Errorf("%d messages queued, over the HWM of 4", q)
			}
		})
	}
	t.Run("no peers", func(t *testing.T) {
		push := newSock(t, PUSH, WithNoBlock())
		if err := push.Send(ctxT(t), NewMsgString("x")); !errors.Is(err, ErrNoPeers) {
			t.Fatalf("NoBlock Send with no peers: %v, want ErrNoPeers", err)
		}
	})
}

// TestCloseLinger: messages queued before Close reach a peer that reads
// them; with a stalled peer Close gives up after the linger time.
func TestCloseLinger(t *testing.T) {
	t.Run("delivers", func(t *testing.T) {
		pull := newSock(t, PULL, WithRecvHWM(10))
		push, err := New(PUSH, WithLinger(10*time.Second), WithSendHWM(2000))
		if err != nil {
			t.Fatal(err)
		}
		connect(t, push, bind(t, pull))
		waitPeers(t, push, 1)
		const n = 1000
		payload := make([]byte, 8<<10)
		for i := range n {
			binary.BigEndian.PutUint32(payload, uint32(i))
			sendMsg(t, push, NewMsg(bytes.Clone(payload)))
		}
		got := make(chan int, 1)
		go func() {
			i := 0
			for ; i < n; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				m, err := pull.Recv(ctx)
				cancel()
				if err != nil || binary.BigEndian.Uint32(m.Body()) != uint32(i) {
					break
				}
			}
			got <- i
		}()
		push.Close()
		if i := <-got; i != n {
			t.Fatalf("PULL received %d of %d messages queued before Close", i, n)
		}
	})
	for _, linger := range []time.Duration{0, 200 * time.Millisecond} {
		t.Run(fmt.Sprintf("stalled peer, linger %v", linger), func(t *testing.T) {
			push, err := New(PUSH, WithLinger(linger), WithSendHWM(100))
			if err != nil {
				t.Fatal(err)
			}
			stalledPeer(t, push, "PULL")
			payload := make([]byte, 256<<10)
			for i := 0; i < 100; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				err := push.Send(ctx, NewMsg(payload))
				cancel()
				if err != nil {
					break
				}
			}
			start := time.Now()
			push.Close()
			if d := time.Since(start); d < linger || d > linger+2*time.Second {
				t.Errorf("Close took %v with linger %v", d, linger)
			}
		})
	}
}

// TestFairQueueing: two PUSH peers with plenty queued; the PULL takes from
// both in turn, not all of one and then the other.
func TestFairQueueing(t *testing.T) {
	const n = 1000
	pull := newSock(t, PULL, WithRecvHWM(n))
	ep := bind(t, pull)
	for _, name := range []string{"a", "b"} {
		push := newSock(t, PUSH)
		connect(t, push, ep)
		for i := range n {
			send(t, push, name, strconv.Itoa(i))
		}
	}
	// Wait until everything has been read off both connections, so that
	// the order is the fair queue's choice, not the scheduler's.
	waitFor(t, "both peers' messages in", func() bool {
		pull.fq.mu.Lock()
		defer pull.fq.mu.Unlock()
		held := 0
		for _, p := range pull.fq.active {
			held += p.in.len()
		}
		return len(pull.fq.active) == 2 && held == 2*n
	})
	var seq []byte
	next := map[byte]int{}
	for range 2 * n {
		m := recvString(t, pull)
		src := m[0][0]
		if m[1] != strconv.Itoa(next[src]) {
			t.Fatalf("from %c: got %s, want %d", src, m[1], next[src])
		}
		next[src]++
		seq = append(seq, src)
	}
	for i := 1; i < len(seq); i++ {
		if seq[i] == seq[i-1] {
			t.Fatalf("message %d came from %c like the one before: not fair-queued; sequence from %d: %s", i, seq[i], max(0, i-20), seq[max(0, i-20):min(len(seq), i+20)])
		}
	}
}

// TestCloseDuringHandshake: Close does not wait for a handshake in progress
// to time out.
func TestCloseDuringHandshake(t *testing.T) {
	for _, side := range []string{"accepted", "dialled"} {
		t.Run(side, func(t *testing.T) {
			s, err := New(PULL, WithHandshakeTimeout(10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var raw net.Conn
			if side == "accepted" {
				raw = dialRaw(t, bind(t, s))
			} else {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				connect(t, s, "tcp://"+ln.Addr().String())
				if raw, err = ln.Accept(); err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
			}
			// The socket's greeting arriving means its handshake has begun.
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(raw, make([]byte, greetingLen)); err != nil {
				t.Fatalf("greeting: %v", err)
			}
			start := time.Now()
			s.Close()
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Close took %v waiting for a stalled handshake", d)
			}
		})
	}
}

// --- fuzzing the frame reader ---

// FuzzFrameGuard feeds arbitrary bytes, after a valid greeting, to a
// socket's handshake (through guardConn and zmq4) and, when the bytes make
// a handshake, to its pipe reader. Nothing may panic, and what is allocated
// must stay bounded by the message size limit, whatever sizes the bytes
// announce.
func FuzzFrameGuard(f *testing.F) {
	types := []Type{PULL, PUB, SUB, ROUTER, REP, DEALER, REQ, PUSH}
	peer := map[Type]string{PULL: "PUSH", PUB: "SUB", SUB: "PUB", ROUTER: "DEALER", REP: "REQ", DEALER: "ROUTER", REQ: "REP", PUSH: "PULL"}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for i, typ := range types {
		ready := zmtpReady(peer[typ], "Identity", "fuzz")
		f.Add(uint8(i), cat(ready, zmtpFrame(0, []byte("hello"))))
		f.Add(uint8(i), cat(ready, zmtpFrame(flagMore, nil), zmtpFrame(0, []byte("body"))))
		f.Add(uint8(i), cat(ready, zmtpFrame(0, []byte("\x01topic")), zmtpCommand("SUBSCRIBE", []byte("t")), zmtpCommand("CANCEL", []byte("t"))))
		f.Add(uint8(i), cat(ready, zmtpCommand("PING", []byte("\x00\x10ctx")), zmtpCommand("PONG", nil), zmtpCommand("ERROR", []byte("\x03bad"))))
		f.Add(uint8(i), cat(ready, longHeader(0, 1<<62)))
		f.Add(uint8(i), cat(ready, longHeader(flagMore, 1<<20), []byte("short")))
		f.Add(uint8(i), cat(ready, []byte{0xF0, 0}))
	}
	f.Add(uint8(0), longHeader(flagCommand, 1<<62))
	f.Add(uint8(0), []byte{flagCommand | flagMore, 3, 'a', 'b', 'c'})
	f.Add(uint8(0), []byte("GET / HTTP/1.0\r\n\r\n"))

	const maxMsg = 64 << 10
	f.Fuzz(func(t *testing.T, which uint8, stream []byte) {
		typ := types[int(which)%len(types)]
		// A receive HWM above the number of messages the stream can hold:
		// a REP that is never answered must not block its reader.
		s, err := New(typ, WithMaxMsgSize(maxMsg), WithRecvHWM(len(stream)+1), WithHeartbeat(0, 0), WithLinger(0), WithHandshakeTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc

		ours, theirs := net.Pipe()
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { // the peer: greeting, the fuzzed bytes, hang up
			defer wg.Done()
			theirs.Write(zmtpGreeting())
			theirs.Write(stream)
			theirs.Close()
		}()
		go func() { // swallow what the socket writes
			defer wg.Done()
			io.Copy(io.Discard, theirs)
		}()
		go func() { // and take what it receives
			defer wg.Done()
			for {
				if _, err := s.Recv(context.Background()); err != nil {
					return
				}
			}
		}()
		if p, err := s.handshakeAs(ours, "fuzz", true, nil, nil); err == nil {
			<-p.done
		}
		runtime.ReadMemStats(&ms)
		s.Close()
		wg.Wait()
		if alloc, limit := ms.TotalAlloc-before, uint64(4*maxMsg+2<<20+64*len(stream)); alloc > limit {
			t.Errorf("%s socket allocated %d bytes for a %d-byte stream (limit %d)", typ, alloc, len(stream), limit)
		}
	})
}
