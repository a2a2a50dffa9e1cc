package socket

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/nacl/box"
)

// libzmq's test keys (tests/testutil_security.cpp), known to belong together.
const (
	testClientPublic = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
	testClientSecret = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"
	testServerPublic = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
	testServerSecret = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
)

func TestZ85Vectors(t *testing.T) {
	// RFC 32's test vector.
	raw := []byte{0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B}
	s, err := Z85Encode(raw)
	if err != nil || s != "HelloWorld" {
		t.Fatalf("encode = %q, %v; want HelloWorld", s, err)
	}
	b, err := Z85Decode("HelloWorld")
	if err != nil || !bytes.Equal(b, raw) {
		t.Fatalf("decode = %x, %v", b, err)
	}
	for _, bad := range []string{"Hell", "Hello World", "HelloWorl\x00", "%%%%%"} {
		if _, err := Z85Decode(bad); !errors.Is(err, ErrKey) {
			t.Errorf("decode %q: err %v, want ErrKey", bad, err)
		}
	}
	if _, err := Z85Encode([]byte{1, 2, 3}); !errors.Is(err, ErrKey) {
		t.Errorf("encode 3 bytes: %v", err)
	}
}

func TestKeysFromLibzmqTests(t *testing.T) {
	for _, kp := range [][2]string{{testClientPublic, testClientSecret}, {testServerPublic, testServerSecret}} {
		pub, err := ParseKey(kp[0])
		if err != nil {
			t.Fatal(err)
		}
		sec, err := ParseSecretKey(kp[1])
		if err != nil {
			t.Fatal(err)
		}
		if sec.Public() != pub {
			t.Errorf("public of %s = %s, want %s", kp[1], sec.Public(), pub)
		}
		if pub.String() != kp[0] || sec.Z85() != kp[1] {
			t.Errorf("round trip: %s %s", pub, sec.Z85())
		}
		if s := sec.String(); s == kp[1] {
			t.Errorf("SecretKey.String shows the key")
		}
	}
	if _, err := ParseKey("short"); !errors.Is(err, ErrKey) {
		t.Errorf("short key: %v", err)
	}
}

// handshakePair runs curveClient and curveServer against each other over an
// in-memory connection.
func handshakePair(t *testing.T, serverKP, clientKP KeyPair, expect Key, authorize func(Key, zmtpMeta) error) (cli, srv *curveCodec, cerr, serr error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h := &hsIO{br: bufio.NewReader(b), w: b}
		srv, _, _, serr = curveServer(h, &serverKP, ourMeta(nil, REP, nil), authorize)
		if serr != nil {
			b.Close()
		}
	}()
	h := &hsIO{br: bufio.NewReader(a), w: a}
	cli, _, cerr = curveClient(h, &expect, &clientKP, ourMeta(nil, REQ, []byte("me")))
	if cerr != nil {
		a.Close()
	}
	<-done
	return
}

func TestCurveHandshakeAndMessages(t *testing.T) {
	skp, _ := NewKeyPair()
	ckp, _ := NewKeyPair()
	var seen Key
	cli, srv, cerr, serr := handshakePair(t, skp, ckp, skp.Public, func(k Key, pm zmtpMeta) error {
		seen = k
		if pm.socketType != "REQ" || string(pm.identity) != "me" {
			t.Errorf("server saw metadata %+v", pm)
		}
		return nil
	})
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	if seen != ckp.Public {
		t.Fatalf("server saw client key %s, want %s", seen, ckp.Public)
	}
	// client -> server, several frames; then a replay fails.
	var frames [][]byte
	for _, body := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte("x"), 300)} {
		frames = append(frames, cli.appendSealed(nil, flagMore, body))
	}
	var first []byte
	for i, f := range frames {
		hl := 2
		if f[0]&flagLong != 0 {
			hl = 9
		}
		if i == 0 {
			first = append([]byte(nil), f[hl:]...)
		}
		fl, body, err := srv.open(f[hl:])
		if err != nil || fl != flagMore || len(body) != []int{0, 5, 300}[i] {
			t.Fatalf("frame %d: flags %x len %d err %v", i, fl, len(body), err)
		}
	}
	if _, _, err := srv.open(first); !errors.Is(err, ErrProtocol) {
		t.Fatalf("replayed nonce: %v, want ErrProtocol", err)
	}
	// server -> client direction, and tampering.
	f := srv.appendSealed(nil, flagCommand, []byte("\x04PING\x00\x10"))
	f[len(f)-1] ^= 1
	if _, _, err := cli.open(f[2:]); !errors.Is(err, ErrProtocol) {
		t.Fatalf("tampered box: %v", err)
	}
}

func TestCurveHandshakeRefusals(t *testing.T) {
	skp, _ := NewKeyPair()
	ckp, _ := NewKeyPair()
	other, _ := NewKeyPair()
	t.Run("wrong server key", func(t *testing.T) {
		_, _, cerr, serr := handshakePair(t, skp, ckp, other.Public, nil)
		if !errors.Is(serr, ErrRefused) || cerr == nil {
			t.Fatalf("client %v, server %v", cerr, serr)
		}
	})
	t.Run("refused client", func(t *testing.T) {
		_, _, cerr, serr := handshakePair(t, skp, ckp, skp.Public, func(Key, zmtpMeta) error {
			return errors.New("client key not trusted")
		})
		if serr == nil || !errors.Is(cerr, ErrRefused) || !bytes.Contains([]byte(cerr.Error()), []byte("not trusted")) {
			t.Fatalf("client %v, server %v", cerr, serr)
		}
	})
}

func TestCurveSocketsTalk(t *testing.T) {
	skp, _ := NewKeyPair()
	rep := newSock(t, REP, WithCurveServer(skp.Secret))
	ep := bind(t, rep)
	req := newSock(t, REQ, WithCurveClient(skp.Public, KeyPair{}))
	connect(t, req, ep)
	for i := 0; i < 3; i++ {
		send(t, req, "ping", "two")
		if got := recvString(t, rep); len(got) != 2 || got[0] != "ping" {
			t.Fatalf("rep got %q", got)
		}
		send(t, rep, "pong")
		if got := recvString(t, req); len(got) != 1 || got[0] != "pong" {
			t.Fatalf("req got %q", got)
		}
	}
}

// relay copies TCP bytes between a client and ep, recording everything
// that passes in both directions.
type relay struct {
	ln   net.Listener
	mu   sync.Mutex
	seen bytes.Buffer
	wg   sync.WaitGroup
}

func newRelay(t *testing.T, ep string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	target := strings.TrimPrefix(ep, "tcp://")
	var conns []net.Conn
	var cmu sync.Mutex
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, a, b)
			cmu.Unlock()
			for _, pair := range [][2]net.Conn{{a, b}, {b, a}} {
				r.wg.Add(1)
				go func(src, dst net.Conn) {
					defer r.wg.Done()
					buf := make([]byte, 32<<10)
					for {
						n, err := src.Read(buf)
						if n > 0 {
							r.mu.Lock()
							r.seen.Write(buf[:n])
							r.mu.Unlock()
							dst.Write(buf[:n])
						}
						if err != nil {
							dst.Close()
							return
						}
					}
				}(pair[0], pair[1])
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *relay) endpoint() string { return "tcp://" + r.ln.Addr().String() }

func (r *relay) contains(b []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Contains(r.seen.Bytes(), b)
}

// TestCurveNoPlaintextOnTheWire relays an encrypted PUB/SUB and REQ/REP
// exchange and finds none of the payloads, topics or subscriptions in the
// bytes; the same exchange over NULL shows them (the check can fail).
func TestCurveNoPlaintextOnTheWire(t *testing.T) {
	secrets := [][]byte{[]byte("TOPIC-very-secret"), []byte("PAYLOAD-the-launch-codes"), bytes.Repeat([]byte("LARGE-PAYLOAD-"), 5000)}
	for _, curve := range []bool{true, false} {
		var srvOpts, cliOpts []Option
		if curve {
			kp, _ := NewKeyPair()
			srvOpts = []Option{WithCurveServer(kp.Secret)}
			cliOpts = []Option{WithCurveClient(kp.Public, KeyPair{})}
		}
		rep := newSock(t, REP, srvOpts...)
		r := newRelay(t, bind(t, rep))
		req := newSock(t, REQ, cliOpts...)
		connect(t, req, r.endpoint())
		sendMsg(t, req, NewMsg(secrets[0], secrets[1], secrets[2]))
		m := recvMsg(t, rep)
		if !sameFrames(m.Frames, secrets) {
			t.Fatalf("REP got %s", showMsg(m))
		}
		sendMsg(t, rep, m)
		recvMsg(t, req)

		pub := newSock(t, PUB, srvOpts...)
		rp := newRelay(t, bind(t, pub))
		sub := newSock(t, SUB, cliOpts...)
		sub.Subscribe(string(secrets[0]))
		connect(t, sub, rp.endpoint())
		waitFor(t, "subscription", func() bool { st := pub.Stats(); return len(st.PerPeer) == 1 && st.PerPeer[0].Subscriptions == 1 })
		sendMsg(t, pub, NewMsg(secrets[0], secrets[1]))
		recvMsg(t, sub)
		for _, s := range secrets {
			// secrets[2] only went through the REQ/REP relay.
			if got := r.contains(s[:16]) || rp.contains(s[:16]); got == curve {
				t.Errorf("curve=%v: %q on the wire: %v", curve, s[:16], got)
			}
		}
		for _, s := range []*Socket{req, rep, sub, pub} {
			s.Close()
		}
	}
}

// naclMessage is the server-to-client MESSAGE body nacl/box seals under key
// for short nonce n, the box flags byte flags and body.
func naclMessage(key *[32]byte, n uint64, flags byte, body []byte) []byte {
	var nonce [24]byte
	copy(nonce[:], "CurveZMQMESSAGES")
	binary.BigEndian.PutUint64(nonce[16:], n)
	msg := append([]byte("\x07MESSAGE"), nonce[16:]...)
	return box.SealAfterPrecomputation(msg, append([]byte{flags}, body...), &nonce, key)
}

// crossNaCl checks one MESSAGE both ways against nacl/box: what enc seals
// for flags and body opens with nacl/box (with the short nonce want, when
// not 0), and what nacl/box seals with the next nonce dec opens.
func crossNaCl(t *testing.T, what string, key *[32]byte, enc, dec *curveCodec, flags byte, body []byte, want uint64) {
	t.Helper()
	frame := enc.appendSealed(nil, flags, body)
	hl := 2
	if frame[0]&flagLong != 0 {
		hl = 9
	}
	msg := frame[hl:]
	var nonce [24]byte
	copy(nonce[:], "CurveZMQMESSAGEC")
	copy(nonce[16:], msg[8:16])
	if got := binary.BigEndian.Uint64(nonce[16:]); want != 0 && got != want {
		t.Fatalf("%s: short nonce %d, want %d", what, got, want)
	}
	plain, ok := box.OpenAfterPrecomputation(nil, msg[16:], &nonce, key)
	if !ok || plain[0] != boxFlags(flags) || !bytes.Equal(plain[1:], body) {
		t.Fatalf("%s: nacl cannot open ours (ok %v)", what, ok)
	}
	fl, got, err := dec.open(naclMessage(key, binary.BigEndian.Uint64(nonce[16:]), boxFlags(flags), body))
	if err != nil || fl != flags || !bytes.Equal(got, body) {
		t.Fatalf("%s: we cannot open nacl's: %v", what, err)
	}
}

// TestCurveBoxMatchesNaCl checks the codec's split XSalsa20-Poly1305
// against nacl/box in both directions, at every length around the 31-byte
// first-block boundary and beyond.
func TestCurveBoxMatchesNaCl(t *testing.T) {
	var key [32]byte
	rand.Read(key[:])
	// libzmq's box flags: MORE 0x01, COMMAND 0x02 (not ZMTP's 0x04).
	if boxFlags(flagMore|flagCommand) != 0x03 || frameFlags(0xFF) != flagMore|flagCommand {
		t.Fatal("box flag mapping")
	}
	lengths := []int{0, 1, 30, 31, 32, 33, 63, 64, 65, 95, 96, 97, 127, 128, 200, 478, 479, 480, 510, 511, 542, 543, 544, 545, 1000, 4096, 100000}
	for _, n := range lengths {
		body := make([]byte, n)
		rand.Read(body)
		for _, flags := range []byte{0, flagMore, flagCommand} {
			enc, dec := newCurveCodec(&key, false, 0, 0), newCurveCodec(&key, false, 0, 0)
			crossNaCl(t, fmt.Sprintf("len %d flags %x", n, flags), &key, enc, dec, flags, body, 1)
		}
	}
}

// TestCurveBoxSequenceMatchesNaCl seals and opens MESSAGEs of changing
// sizes on one codec pair (the small path reuses its key stream buffers:
// what a larger MESSAGE left in them must not leak into a smaller one's),
// each checked against nacl/box with the nonce it carries.
func TestCurveBoxSequenceMatchesNaCl(t *testing.T) {
	var key [32]byte
	rand.Read(key[:])
	enc := newCurveCodec(&key, false, 0, 0)
	dec := newCurveCodec(&key, false, 0, 0)
	lengths := []int{64, 543, 64, 200, 95, 96, 1 << 16, 0, 300, 64, 128, 1, 542, 97, 10, 20, 30, 95, 0, 5, 64}
	for i, n := range lengths {
		body := make([]byte, n)
		rand.Read(body)
		crossNaCl(t, fmt.Sprintf("message %d (len %d)", i, n), &key, enc, dec, flagMore, body, uint64(i+1))
	}
}

// TestCurveOpenNonceSequence: MESSAGE nonces must go up by one. A gap, a
// replay or an earlier nonce fails with errNonce and uses up nothing, so
// the expected MESSAGE still opens after; so does the genuine one after a
// forgery. The receiver makes the next nonce's key stream with each small
// MESSAGE's (ksAhead): a small MESSAGE after a large one (nothing
// foreseen) and a refused one must not lead it astray.
func TestCurveOpenNonceSequence(t *testing.T) {
	var key [32]byte
	rand.Read(key[:])
	dec := newCurveCodec(&key, false, 0, 0)
	seal := func(n uint64, body []byte) []byte { return naclMessage(&key, n, 0, body) }
	big := bytes.Repeat([]byte("B"), 3000)
	steps := []struct {
		nonce uint64
		body  []byte
		ok    bool
	}{
		{1, nil, true}, {2, nil, true}, {4, nil, false}, {1, nil, false}, {2, nil, false},
		{3, big, true}, {4, nil, true}, {6, big, false}, {5, nil, true}, {1 << 40, nil, false},
		{5, nil, false}, {6, nil, true},
	}
	for i, st := range steps {
		body := st.body
		if body == nil {
			body = []byte(fmt.Sprintf("message %d", st.nonce))
		}
		if st.ok && st.nonce == 4 {
			forged := seal(st.nonce, body)
			forged[len(forged)-1] ^= 1
			if _, _, err := dec.open(forged); err == nil || errors.Is(err, errNonce) {
				t.Fatalf("step %d: a forged MESSAGE: %v", i, err)
			}
		}
		_, got, err := dec.open(seal(st.nonce, body))
		switch {
		case st.ok && (err != nil || !bytes.Equal(got, body)):
			t.Fatalf("step %d, nonce %d: %.20q, %v", i, st.nonce, got, err)
		case !st.ok && !errors.Is(err, errNonce):
			t.Fatalf("step %d, nonce %d out of sequence: %v, want errNonce", i, st.nonce, err)
		}
	}
}

// TestConnectKey: a CURVE client without a server key of its own connects
// each endpoint with the key its server must hold; the wrong key never
// connects, and plain Connect is refused.
func TestConnectKey(t *testing.T) {
	a, _ := NewKeyPair()
	b, _ := NewKeyPair()
	repA := newSock(t, REP, WithCurveServer(a.Secret))
	epA := bind(t, repA)
	repB := newSock(t, REP, WithCurveServer(b.Secret))
	epB := bind(t, repB)
	req := newSock(t, DEALER, WithCurveClientKey(KeyPair{}))
	if err := req.Connect(epA); !errors.Is(err, ErrKey) {
		t.Fatalf("Connect without a key: %v", err)
	}
	if err := req.ConnectKey(epA, a.Public); err != nil {
		t.Fatal(err)
	}
	if err := req.ConnectKey(epB, a.Public); err != nil { // B does not hold a's secret
		t.Fatal(err)
	}
	waitFor(t, "refusal by B's handshake", func() bool { return repB.Stats().Rejected > 0 && req.Stats().Rejected > 0 })
	waitPeers(t, repA, 1)
	waitPeers(t, req, 1)
	if req.Peers() != 1 || repA.Peers() != 1 || repB.Peers() != 0 {
		t.Fatalf("peers: req %d, A %d, B %d", req.Peers(), repA.Peers(), repB.Peers())
	}
	if k, ok := repA.CurvePublicKey(); !ok || k != a.Public {
		t.Fatalf("CurvePublicKey = %v %v", k, ok)
	}
}

// TestCurveOpenLargeForged: a forged MESSAGE (any bit flipped: tag, flags
// byte, head, body, tail) fails with ErrProtocol and does not use up its
// nonce. One of up to scratchKeep bytes fails before anything is
// decrypted; a larger one is opened as it is read, and its destination is
// all zeros when the tag fails at the end (or the connection ends first):
// nothing of it is delivered or left behind. The genuine one then opens,
// and a replay of it does not.
func TestCurveOpenLargeForged(t *testing.T) {
	var key [32]byte
	rand.Read(key[:])
	dec := newCurveCodec(&key, false, 0, 0)
	seal := func(n uint64, body []byte) []byte { return naclMessage(&key, n, 0, body) }
	nonce := uint64(0)
	for _, size := range []int{544, 545, 1100, scratchKeep - curveMsgOverhead, scratchKeep - curveMsgOverhead + 1, 4000, 1<<16 + 5, 1<<20 + 100} {
		body := make([]byte, size)
		rand.Read(body)
		nonce++
		good := seal(nonce, body)
		for _, at := range []int{16, 31, 32, 33, 64, 65, 600, len(good) / 2, len(good) - 513, len(good) - 1} {
			if at >= len(good) {
				continue
			}
			forged := bytes.Clone(good)
			forged[at] ^= 0x10
			_, got, err := dec.open(forged)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("size %d, byte %d flipped: open = %v, want ErrProtocol", size, at, err)
			}
			if got != nil && !isZero(got) {
				t.Fatalf("size %d, byte %d flipped: plaintext left in the destination", size, at)
			}
		}
		if len(good) > scratchKeep {
			// The connection ends one byte short of the MESSAGE.
			fr := &frameReader{br: bufio.NewReaderSize(&choppyReader{data: good[:len(good)-1]}, readBufSize)}
			h, err := dec.unwrap(fr, frameHeader{size: uint64(len(good))})
			if err != nil {
				t.Fatalf("size %d: unwrap of the head: %v", size, err)
			}
			got := make([]byte, h.size)
			err = dec.read(fr, got)
			if !errors.Is(err, io.EOF) || !isZero(got) {
				t.Fatalf("size %d, one byte short: open = %v, destination cleared %v; want io.EOF and all zeros", size, err, isZero(got))
			}
		}
		_, got, err := dec.open(good)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("size %d: the genuine MESSAGE after forged ones: %v", size, err)
		}
		if _, _, err := dec.open(good); !errors.Is(err, ErrProtocol) {
			t.Fatalf("size %d: replay: %v, want ErrProtocol", size, err)
		}
	}
}
