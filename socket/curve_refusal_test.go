package socket

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4/security/plain"
)

// Refusals: every bad peer of a CURVE server ends its own connection with a
// reason (an EventRejected and a count in Stats.Rejected), and the server
// goes on answering a good client.

type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) add(ev Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

// rejected returns the reasons of the rejections logged so far.
func (l *eventLog) rejected() []string { return l.rejectedSince(0) }

// mark returns the number of events logged so far.
func (l *eventLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

// rejectedSince returns the reasons of the rejections logged after mark.
func (l *eventLog) rejectedSince(mark int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ev := range l.evs[mark:] {
		if ev.Kind == EventRejected {
			out = append(out, ev.Err.Error())
		}
	}
	return out
}

type curveServerFixture struct {
	rep     *Socket
	ep      string
	kp      KeyPair // server
	good    KeyPair // trusted client
	log     *eventLog
	stopRep func()
}

// newCurveServerFixture binds a REP CURVE server that trusts one client key
// and echoes every request on a goroutine of its own.
func newCurveServerFixture(t *testing.T) *curveServerFixture {
	t.Helper()
	f := &curveServerFixture{log: &eventLog{}}
	f.kp, _ = NewKeyPair()
	f.good, _ = NewKeyPair()
	f.rep = newSock(t, REP, WithCurveServer(f.kp.Secret), WithTrust(NewKeySet(f.good.Public)),
		WithEventHandler(f.log.add), WithHandshakeTimeout(2*time.Second))
	f.ep = bind(t, f.rep)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := f.rep.Recv(ctx)
			if err != nil {
				return
			}
			f.rep.Send(ctx, m)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// stillServes checks that a trusted client gets an answer.
func (f *curveServerFixture) stillServes(t *testing.T) {
	t.Helper()
	req := newSock(t, REQ, WithCurveClient(f.kp.Public, f.good))
	connect(t, req, f.ep)
	send(t, req, "still there?")
	if got := recvString(t, req); len(got) != 1 || got[0] != "still there?" {
		t.Fatalf("good client got %q", got)
	}
	req.Close()
}

// expectRejection waits for a new rejection whose reason contains want.
func (f *curveServerFixture) expectRejection(t *testing.T, before uint64, mark int, want string) {
	t.Helper()
	waitFor(t, "rejection", func() bool { return f.rep.Stats().Rejected > before })
	waitFor(t, "rejection event "+want, func() bool {
		for _, r := range f.log.rejectedSince(mark) {
			if strings.Contains(r, want) {
				return true
			}
		}
		return false
	})
	// Earlier good clients are gone (closed), and a refused peer never
	// attaches: the count drops to zero and stays there.
	waitFor(t, "no peer attached", func() bool { return f.rep.Peers() == 0 })
}

// rawCurve dials the fixture and runs the client handshake by hand, with
// tamper rewriting the commands sent.
func (f *curveServerFixture) rawCurve(t *testing.T, server Key, kp KeyPair, tamper func([]byte) []byte) (net.Conn, *curveCodec, error) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(f.ep, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	h := &hsIO{br: bufio.NewReader(c), w: c, tamper: tamper}
	if err := h.exchangeGreeting("CURVE", false); err != nil {
		return c, nil, err
	}
	codec, _, err := curveClient(h, &server, &kp, ourMeta(nil, REQ, nil))
	return c, codec, err
}

// readsEOF reports whether the server closed c (after an optional ERROR).
func readsEOF(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

func TestCurveRefusals(t *testing.T) {
	f := newCurveServerFixture(t)
	other, _ := NewKeyPair()
	flip := func(at int) func([]byte) []byte {
		return func(b []byte) []byte {
			if len(b) > at {
				b[at] ^= 0x20
			}
			return b
		}
	}
	only := func(name string, fn func([]byte) []byte) func([]byte) []byte {
		return func(b []byte) []byte {
			if bytes.HasPrefix(b[1:], []byte(name)) {
				return fn(b)
			}
			return b
		}
	}
	cases := []struct {
		name   string
		run    func(t *testing.T)
		reason string
	}{
		{"NULL client", func(t *testing.T) {
			c := newSock(t, REQ)
			connect(t, c, f.ep)
			waitFor(t, "client refused", func() bool { return c.Stats().Rejected > 0 })
			c.Close()
		}, "mechanism mismatch"},
		{"PLAIN client", func(t *testing.T) {
			c := newSock(t, REQ, WithSecurity(plain.Security("user", "pass")))
			connect(t, c, f.ep)
			waitFor(t, "client refused", func() bool { return c.Stats().Rejected > 0 })
			c.Close()
		}, "mechanism mismatch"},
		{"client expects another server key", func(t *testing.T) {
			log := &eventLog{}
			c := newSock(t, REQ, WithCurveClient(other.Public, f.good), WithEventHandler(log.add))
			connect(t, c, f.ep)
			waitFor(t, "client refused", func() bool { return c.Stats().Rejected > 0 })
			c.Close()
			if r := log.rejected(); len(r) == 0 || !strings.Contains(r[0], "refused") {
				t.Errorf("client-side reasons %q", r)
			}
		}, "expects another server key"},
		{"untrusted client key", func(t *testing.T) {
			_, _, err := f.rawCurve(t, f.kp.Public, other, nil)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not trusted") {
				t.Errorf("client saw %v, want an ERROR saying not trusted", err)
			}
		}, "not trusted"},
		{"HELLO wrong length", func(t *testing.T) {
			f.rawCurve(t, f.kp.Public, f.good, only("HELLO", func(b []byte) []byte { return append(b, 0) }))
		}, "HELLO of 201 bytes"},
		{"HELLO wrong version", func(t *testing.T) {
			f.rawCurve(t, f.kp.Public, f.good, only("HELLO", func(b []byte) []byte { b[6] = 2; return b }))
		}, "HELLO version 2.0"},
		{"HELLO bad box", func(t *testing.T) {
			f.rawCurve(t, f.kp.Public, f.good, only("HELLO", flip(150)))
		}, "HELLO does not open"},
		{"HELLO key of small order", func(t *testing.T) {
			// C' replaced by a point of order 8: every X25519 product with it
			// is zero, so whoever sent it would know the shared key.
			small := unhex32(t, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
			f.rawCurve(t, f.kp.Public, f.good, only("HELLO", func(b []byte) []byte { copy(b[80:112], small[:]); return b }))
		}, "HELLO's short-term key is a point of small order"},
		{"INITIATE too short", func(t *testing.T) {
			f.rawCurve(t, f.kp.Public, f.good, only("INITIATE", func(b []byte) []byte { return b[:200] }))
		}, "INITIATE of 200 bytes"},
		{"INITIATE bad cookie", func(t *testing.T) {
			f.rawCurve(t, f.kp.Public, f.good, only("INITIATE", flip(40)))
		}, "cookie does not open"},
		{"INITIATE bad box", func(t *testing.T) {
			f.rawCurve(t, f.kp.Public, f.good, only("INITIATE", flip(150)))
		}, "INITIATE box does not open"},
		{"INITIATE bad vouch", func(t *testing.T) {
			// Claims the trusted key but vouches with another secret.
			f.rawCurve(t, f.kp.Public, KeyPair{Public: f.good.Public, Secret: other.Secret}, nil)
		}, "vouch does not open"},
		{"terabyte handshake command", func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(f.ep, "tcp://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			g := greeting("CURVE", false)
			c.Write(g[:])
			c.Write(longHeader(flagCommand, 1<<40))
			if !readsEOF(c) {
				t.Error("server kept the connection")
			}
		}, "handshake command of 1099511627776 bytes"},
		{"replayed MESSAGE nonce", func(t *testing.T) {
			c, codec, err := f.rawCurve(t, f.kp.Public, f.good, nil)
			if err != nil {
				t.Fatal(err)
			}
			first := codec.appendSealed(nil, flagMore, nil)
			first = codec.appendSealed(first, 0, []byte("once"))
			c.Write(first)
			// The reply proves the first copy was taken.
			br := bufio.NewReader(c)
			var hdr [2]byte
			if _, err := br.Read(hdr[:1]); err != nil {
				t.Fatalf("no reply: %v", err)
			}
			c.Write(first)
			if !readsEOF(c) {
				t.Error("server kept the connection")
			}
		}, "replayed or reordered"},
		// A larger MESSAGE's tag is checked over its ciphertext before
		// anything is decrypted: a forged one is refused whether it
		// claims data or a command.
		{"forged large MESSAGE", func(t *testing.T) {
			c, codec, err := f.rawCurve(t, f.kp.Public, f.good, nil)
			if err != nil {
				t.Fatal(err)
			}
			msg := codec.appendSealed(nil, 0, bytes.Repeat([]byte("x"), 4000))
			msg[len(msg)-1] ^= 1
			c.Write(msg)
			if !readsEOF(c) {
				t.Error("server kept the connection")
			}
		}, "MESSAGE box does not open"},
		{"forged large MESSAGE as a command", func(t *testing.T) {
			c, codec, err := f.rawCurve(t, f.kp.Public, f.good, nil)
			if err != nil {
				t.Fatal(err)
			}
			msg := codec.appendSealed(nil, 0, bytes.Repeat([]byte("x"), 4000))
			msg[9+curveMsgHeader+16] ^= boxCommand // the flags byte (long frame header)
			c.Write(msg)
			if !readsEOF(c) {
				t.Error("server kept the connection")
			}
		}, "MESSAGE box does not open"},
		{"terabyte MESSAGE header", func(t *testing.T) {
			c, _, err := f.rawCurve(t, f.kp.Public, f.good, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.Write(longHeader(0, 1<<40))
			if !readsEOF(c) {
				t.Error("server kept the connection")
			}
		}, "frame of 1099511627776 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, mark := f.rep.Stats().Rejected, f.log.mark()
			tc.run(t)
			f.expectRejection(t, before, mark, tc.reason)
			f.stillServes(t)
		})
	}
}

// TestCurveClientRefusesSmallOrderServerKey: a server key of small order
// would fix the HELLO key whatever our secret; the client refuses it
// before it sends anything.
func TestCurveClientRefusesSmallOrderServerKey(t *testing.T) {
	small := Key(*unhex32(t, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"))
	kp, _ := NewKeyPair()
	var sent bytes.Buffer
	h := &hsIO{br: bufio.NewReader(strings.NewReader("")), w: &sent}
	_, _, err := curveClient(h, &small, &kp, ourMeta(nil, REQ, nil))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "small order") {
		t.Errorf("curveClient: %v, want a refusal of the key", err)
	}
	if sent.Len() != 0 {
		t.Errorf("sent %d bytes before refusing", sent.Len())
	}
}

// TestCurveNoDowngrade: a CURVE client never completes a NULL handshake
// with a NULL server, and a NULL server refuses it.
func TestCurveNoDowngrade(t *testing.T) {
	null := newSock(t, REP)
	ep := bind(t, null)
	kp, _ := NewKeyPair()
	c := newSock(t, REQ, WithCurveClient(kp.Public, KeyPair{}))
	connect(t, c, ep)
	waitFor(t, "both sides refuse", func() bool { return c.Stats().Rejected > 0 && null.Stats().Rejected > 0 })
	if c.Peers() != 0 || null.Peers() != 0 {
		t.Fatal("a CURVE client connected to a NULL server")
	}
	if _, err := New(REQ, WithCurveClient(kp.Public, KeyPair{}), WithSecurity(plain.Security("u", "p"))); err == nil {
		t.Fatal("CURVE and PLAIN together were accepted")
	}
}
