package socket

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/zpeer/zpeer/internal/crypto/poly1305"
)

// Key hygiene (docs/security.md): what a CURVE connection computes is
// cleared when it ends, and decrypted memory is cleared before a pool may
// hand it to someone else.

// hsRecorder collects what hsWiped sees: per handshake, how many secrets
// it listed and whether all were zero after wipe.
type hsRecorder struct {
	mu    sync.Mutex
	calls []string // "n=7 zero" or "n=7 NOT ZERO"
}

func recordWipes(t *testing.T) *hsRecorder {
	t.Helper()
	r := &hsRecorder{}
	hsWiped = func(keys []*[32]byte) {
		zero := "zero"
		for _, k := range keys {
			if *k != [32]byte{} {
				zero = "NOT ZERO"
			}
		}
		r.mu.Lock()
		r.calls = append(r.calls, fmt.Sprintf("n=%d %s", len(keys), zero))
		r.mu.Unlock()
	}
	t.Cleanup(func() { hsWiped = nil })
	return r
}

func (r *hsRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// codecs returns the CURVE codecs of s's pipes.
func codecs(s *Socket) []*curveCodec {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cs []*curveCodec
	for p := range s.pipes {
		if p.cipher != nil && p.cipher.curve != nil {
			cs = append(cs, p.cipher.curve)
		}
	}
	return cs
}

// wiped reports what key material c still holds ("" when none).
func wiped(c *curveCodec) string {
	var left []string
	for name, zero := range map[string]bool{
		"sendSub":   c.sendSub == [32]byte{},
		"recvSub":   c.recvSub == [32]byte{},
		"sendKS":    c.sendKS == [smallKS]byte{},
		"recvKS":    c.recvKS == [smallKS]byte{},
		"sendAhead": c.sendAhead == ksAhead{},
		"recvAhead": c.recvAhead == ksAhead{},
		"rs":        c.rs == xsalsa{},
		"scratch":   !bytes.ContainsFunc(c.recvCipher[:cap(c.recvCipher)], func(r rune) bool { return r != 0 }),
		"sealed":    c.sealed == nil,
		"sendMAC":   c.sendMAC == poly1305.MAC{},
		"recvMAC":   c.recvMAC == poly1305.MAC{},
		"head":      c.head == [len(c.head)]byte{} && !c.streamed,
	} {
		if !zero {
			left = append(left, name)
		}
	}
	return fmt.Sprint(left)
}

// TestCurveKeysWiped: after a REQ/REP exchange of small and large
// messages (every key stream path, both ways), the client closes (its
// pipe ends by Close) and the server's pipe ends as the peer goes; once
// both sockets are closed (their goroutines done) every codec's key
// material is zero, and so is each socket's copy of its long-term secret.
// Each handshake's temporaries were zero as it returned: the server's
// seven (C'/s, s', the cookie key, the cookie's two halves, C'/S', the
// vouch key), the client's four (c', C'/S, C'/S', the vouch key).
func TestCurveKeysWiped(t *testing.T) {
	rec := recordWipes(t)
	srv, _ := NewKeyPair()
	rep := newSock(t, REP, WithCurveServer(srv.Secret))
	req := newSock(t, REQ, WithCurveClient(srv.Public, KeyPair{}))
	connect(t, req, bind(t, rep))
	for _, n := range []int{10, 200, 3000, 70000, 5} {
		body := bytes.Repeat([]byte{'p'}, n)
		sendMsg(t, req, NewMsg(body))
		m := recvMsg(t, rep)
		sendMsg(t, rep, m)
		recvMsg(t, req)
	}
	all := append(codecs(req), codecs(rep)...)
	if len(all) != 2 {
		t.Fatalf("%d CURVE codecs, want 2", len(all))
	}
	if wiped(all[0]) == "[]" {
		t.Fatal("a live codec holds no key material: the check below proves nothing")
	}
	req.Close()
	waitFor(t, "the server's pipe to end", func() bool { return rep.Peers() == 0 })
	rep.Close()
	for i, c := range all {
		if left := wiped(c); left != "[]" {
			t.Errorf("codec %d still holds %s", i, left)
		}
	}
	for _, s := range []*Socket{req, rep} {
		if !s.opts.CurveKey.Secret.IsZero() {
			t.Errorf("%s: the long-term secret survives Close", s.Type())
		}
	}
	if got := fmt.Sprint(rec.seen()); got != "[n=7 zero n=4 zero]" && got != "[n=4 zero n=7 zero]" {
		t.Errorf("handshake secrets after wipe: %s", got)
	}
}

// TestCurveKeysWipedOnFailedHandshake: a handshake that fails leaves none
// of its secrets behind, on either side: refused after INITIATE (the
// server does not trust the client: all seven server secrets and the
// client's four were made), or at HELLO (the client expects another
// server key: the server made only C'/s, the client c' and C'/S).
func TestCurveKeysWipedOnFailedHandshake(t *testing.T) {
	srv, _ := NewKeyPair()
	other, _ := NewKeyPair()
	for _, tc := range []struct {
		name   string
		server Key
		want   []string // sorted
	}{
		{"untrusted client", srv.Public, []string{"n=4 zero", "n=7 zero"}},
		{"wrong server key", other.Public, []string{"n=1 zero", "n=2 zero"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := recordWipes(t)
			rep := newSock(t, REP, WithCurveServer(srv.Secret), WithTrust(NewKeySet()))
			req := newSock(t, REQ, WithCurveClient(tc.server, KeyPair{}), WithReconnect(time.Minute, time.Minute))
			connect(t, req, bind(t, rep))
			waitFor(t, "the refusal", func() bool { return rep.Stats().Rejected > 0 && req.Stats().Rejected > 0 })
			req.Close()
			rep.Close()
			got := rec.seen()
			slices.Sort(got)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("handshake secrets after wipe: %v, want %v", got, tc.want)
			}
			if len(codecs(rep))+len(codecs(req)) != 0 {
				t.Error("a refused handshake left a pipe")
			}
		})
	}
}

// TestNewBufferNoPlaintext: memory a CURVE connection decrypted large
// frames into goes back to the pool when the messages are freed; the
// Buffers NewBuffer hands out next (mostly that very memory) must not hold
// the plaintext.
func TestNewBufferNoPlaintext(t *testing.T) {
	const n = 20
	srv, _ := NewKeyPair()
	pull := newSock(t, PULL, WithCurveServer(srv.Secret))
	push := newSock(t, PUSH, WithCurveClient(srv.Public, KeyPair{}))
	connect(t, push, bind(t, pull))
	secret := []byte("the plaintext of another connection ")
	body := bytes.Repeat(secret, 8000/len(secret))
	for range n {
		sendMsg(t, push, NewMsg(body))
	}
	var ms []Msg
	freed := map[*byte]bool{}
	for i := range n {
		m := recvMsg(t, pull)
		if !bytes.Equal(m.Frames[0], body) {
			t.Fatalf("message %d: wrong body", i)
		}
		freed[unsafe.SliceData(m.Frames[0])] = true
		ms = append(ms, m)
	}
	for _, m := range ms {
		m.Free()
	}
	reused := 0
	var bufs []*Buffer
	for i := range 2 * n {
		b := NewBuffer(len(body))
		bufs = append(bufs, b)
		mem := b.Bytes()[:cap(b.Bytes())]
		if freed[unsafe.SliceData(mem)] {
			reused++
		}
		if bytes.Contains(mem, secret[:16]) {
			t.Errorf("buffer %d: NewBuffer handed out another connection's plaintext", i)
		}
	}
	for _, b := range bufs {
		b.Release()
	}
	if reused == 0 && !debugMsgs { // zpeerdebug builds never reuse freed memory
		t.Fatal("NewBuffer never reused a received frame's memory: the test proves nothing")
	}
	t.Logf("NewBuffer reused %d of %d freed frames' memory", reused, n)
}

// TestCurveFreeKeepsRoutingID: Msg.Free clears only the memory a CURVE
// message owns: a ROUTER's routing id frame, which its pipe shares with
// every message it receives, survives, and replies keep reaching the
// DEALER.
func TestCurveFreeKeepsRoutingID(t *testing.T) {
	srv, _ := NewKeyPair()
	router := newSock(t, ROUTER, WithCurveServer(srv.Secret))
	dealer := newSock(t, DEALER, WithCurveClient(srv.Public, KeyPair{}))
	connect(t, dealer, bind(t, router))
	for i := range 3 {
		send(t, dealer, fmt.Sprint("request ", i))
		m := recvMsg(t, router)
		reply := NewMsg(bytes.Clone(m.Frames[0]), []byte(fmt.Sprint("reply ", i)))
		m.Free()
		sendMsg(t, router, reply)
		if got := recvString(t, dealer); fmt.Sprint(got) != fmt.Sprintf("[reply %d]", i) {
			t.Fatalf("reply %d: %q", i, got)
		}
	}
}
