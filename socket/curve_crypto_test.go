package socket

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/nacl/secretbox"
)

// Tests of the MESSAGE box against golang.org/x/crypto and external known
// answers; internal/crypto/salsa20 and internal/crypto/poly1305 check their kernels the
// same way. ./test.sh runs them with and without -tags purego.

// TestCurveBoxNaClVector opens the NaCl distribution's box example
// (testdata/nacl-secretbox.txt names the source) with the codec: the
// precomputed key from alice's secret and bob's public key (boxKey: our
// X25519 and HSalsa20), then the box, whose plaintext's first byte is the
// flags byte. Any bit flipped in the box is refused.
func TestCurveBoxNaClVector(t *testing.T) {
	v := readHexFields(t, "testdata/nacl-secretbox.txt")
	var key [32]byte
	if !boxKey(&key, (*[32]byte)(v["bobpk"]), (*[32]byte)(v["alicesk"])) || key != [32]byte(v["key"]) {
		t.Fatalf("precomputed key %x, want %x", key, v["key"])
	}
	nonce := [24]byte(v["nonce"])
	msg := append(append([]byte("\x07MESSAGE"), nonce[16:]...), v["c"]...)
	// The vector's nonce prefix is not CURVE's: give the codec its sub-key.
	codec := func() *curveCodec {
		c := newCurveCodec(&key, true, 0, binary.BigEndian.Uint64(nonce[16:])-1)
		copy(c.recvNonce[:16], nonce[:16])
		c.recvSub = hsalsa(&key, nonce[:16])
		return c
	}
	flags, body, err := codec().open(msg)
	if err != nil || flags != frameFlags(v["m"][0]) || !bytes.Equal(body, v["m"][1:]) {
		t.Fatalf("open: flags %x, body %x, %v; want flags %x, body %x", flags, body, err, frameFlags(v["m"][0]), v["m"][1:])
	}
	for at := 16; at < len(msg); at++ {
		for _, mask := range []byte{0x01, 0x80} {
			if _, _, err := codec().open(flip(msg, at, mask)); !errors.Is(err, ErrProtocol) {
				t.Fatalf("byte %d ^ %#x: open = %v, want ErrProtocol", at, mask, err)
			}
		}
	}
}

// choppyReader returns data in pieces, the next of choppySizes (cycled)
// at most per Read, as a connection does when the bytes arrive over time.
type choppyReader struct {
	data []byte
	i    int
}

var choppySizes = []int{1, 700, 5000, 3, 200 << 10, 64 << 10, 513, 70 << 10}

func (r *choppyReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), choppySizes[r.i%len(choppySizes)])
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// open reads one MESSAGE (the ZMTP frame's body) as a connection's reader
// does, from a choppyReader: unwrap, then read into fresh memory. When
// read fails, body is the destination it cleared.
func (c *curveCodec) open(msg []byte) (flags byte, body []byte, err error) {
	fr := &frameReader{br: bufio.NewReaderSize(&choppyReader{data: msg}, readBufSize), limit: ^uint64(0)}
	h, err := c.unwrap(fr, frameHeader{size: uint64(len(msg))})
	if err != nil {
		return 0, nil, err
	}
	body = make([]byte, h.size)
	if err := c.read(fr, body); err != nil {
		return 0, body, err
	}
	return h.flags, body, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// readHexFields reads "name hex" lines, skipping # comments.
func readHexFields(t *testing.T, path string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		if out[name], err = hex.DecodeString(value); err != nil {
			t.Fatalf("%s: %s: %v", path, name, err)
		}
	}
	return out
}

func flip(b []byte, at int, mask byte) []byte {
	b = bytes.Clone(b)
	b[at] ^= mask
	return b
}

// curveNonce is the 24-byte nonce of short nonce n in the direction prefix
// names ("CurveZMQMESSAGEC": client to server).
func curveNonce(prefix string, n uint64) *[24]byte {
	var nonce [24]byte
	copy(nonce[:], prefix)
	binary.BigEndian.PutUint64(nonce[16:], n)
	return &nonce
}

// FuzzCurveBox seals a frame with the codec and compares the MESSAGE with
// nacl/secretbox's box of the flags byte and body under the same key and
// nonce (CURVE's box after precomputation is crypto_secretbox), opens
// it, then changes one byte anywhere in it: the codec must refuse that,
// and x/crypto too where the change is inside the box. grow lengthens the
// body cheaply, so that the fuzzer reaches the eight-block Salsa20 kernel
// (past 543 bytes) and the AVX2 Poly1305 one (past 2 KiB).
func FuzzCurveBox(f *testing.F) {
	f.Add([]byte("key"), uint64(1), byte(0), []byte("hello"), uint16(0), uint32(0), byte(1))
	f.Add([]byte{}, uint64(1<<40), byte(flagMore), []byte{}, uint16(600), uint32(40), byte(0x80))
	f.Add([]byte("k"), uint64(7), byte(flagCommand), []byte("x"), uint16(5000), uint32(1<<20), byte(2))
	f.Add([]byte{0xff, 0xff}, uint64(1<<64-1), byte(flagMore|flagCommand), bytes.Repeat([]byte{0xff}, 95), uint16(0), uint32(16), byte(0xff))
	f.Add([]byte("tail"), uint64(2), byte(0), []byte("y"), uint16(2100), uint32(1<<31), byte(4))
	f.Fuzz(func(t *testing.T, keyBytes []byte, n uint64, flags byte, body []byte, grow uint16, at uint32, mask byte) {
		var key [32]byte
		copy(key[:], keyBytes)
		if n == 0 {
			n = 1 // short nonces start at 1
		}
		flags &= flagMore | flagCommand
		body = bytes.Clone(body)
		for i := range int(grow) {
			body = append(body, byte(i*31+i>>8))
		}

		frame := newCurveCodec(&key, false, n-1, 0).appendSealed(nil, flags, body)
		msg := frame[2:]
		if frame[0]&flagLong != 0 {
			msg = frame[9:]
		}
		nonce := curveNonce("CurveZMQMESSAGEC", n)
		want := naclClientMessage(&key, n, boxFlags(flags), body)
		if !bytes.Equal(msg, want) {
			t.Fatalf("len %d: sealed MESSAGE differs from nacl/secretbox's at byte %d", len(body), firstDifference(msg, want))
		}
		gotFlags, got, err := newCurveCodec(&key, true, 0, n-1).open(want)
		if err != nil || gotFlags != flags || !bytes.Equal(got, body) {
			t.Fatalf("len %d: open of nacl/secretbox's MESSAGE: flags %x, %v, body equal %v", len(body), gotFlags, err, bytes.Equal(got, body))
		}

		if mask == 0 {
			mask = 1
		}
		i := int(at % uint32(len(want)))
		bad := flip(want, i, mask)
		if _, _, err := newCurveCodec(&key, true, 0, n-1).open(bad); !errors.Is(err, ErrProtocol) {
			t.Fatalf("len %d, byte %d ^ %#x: open = %v, want ErrProtocol", len(body), i, mask, err)
		}
		if i >= curveMsgHeader {
			if _, ok := secretbox.Open(nil, bad[curveMsgHeader:], nonce, &key); ok {
				t.Fatalf("len %d, byte %d ^ %#x: nacl/secretbox opens it", len(body), i, mask)
			}
		}
	})
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// naclClientMessage is the MESSAGE body (no ZMTP header) a client sends
// with short nonce n, sealed by nacl/secretbox.
func naclClientMessage(key *[32]byte, n uint64, flags byte, body []byte) []byte {
	nonce := curveNonce("CurveZMQMESSAGEC", n)
	return secretbox.Seal(append([]byte("\x07MESSAGE"), nonce[16:]...), append([]byte{flags}, body...), nonce, key)
}

// fuzzOpenKey is the session key of FuzzCurveOpen's receiver (a server: it
// opens "CurveZMQMESSAGEC" boxes). The committed seeds in
// testdata/fuzz/FuzzCurveOpen are streams sealed under it with
// nacl/secretbox: a genuine one and damaged ones (tags, ciphertexts, flags,
// names and nonces changed; replays, gaps, reordering; a box with no flags
// byte; the other direction's nonce; a truncated stream).
var fuzzOpenKey = func() (k [32]byte) {
	for i := range k {
		k[i] = byte(7*i + 1)
	}
	return k
}()

// openStream runs data through the MESSAGE decoder as a connection's
// reader does (frameReader header, then curveCodec.unwrap and read), the
// bytes arriving in pieces of varied sizes (choppyReader), until
// the first error or the end, checking each frame against nacl/secretbox:
// a frame the codec delivers must be one x/crypto opens, with the same
// flags and body; a MESSAGE x/crypto opens that carries the next short
// nonce, a flags byte and no MORE flag outside must be delivered. It
// returns the bodies delivered and the error that ended the stream.
func openStream(t *testing.T, data []byte) (bodies [][]byte, err error) {
	t.Helper()
	key := fuzzOpenKey
	c := newCurveCodec(&key, true, 0, 0)
	fr := &frameReader{br: bufio.NewReaderSize(&choppyReader{data: data}, readBufSize), limit: 1 << 16}
	off := 0
	var last uint64
	for {
		h, err := fr.header()
		if err != nil {
			return bodies, err
		}
		hl := headerLen(data[off])
		var raw []byte // the MESSAGE as sent, when all of it is there
		if end := off + hl + int(h.size); end <= len(data) {
			raw = data[off+hl : end]
		}
		off += hl + int(h.size)
		var plain []byte
		opened := false
		if len(raw) >= curveMsgHeader && string(raw[:8]) == "\x07MESSAGE" {
			plain, opened = secretbox.Open(nil, raw[curveMsgHeader:], curveNonce("CurveZMQMESSAGEC", binary.BigEndian.Uint64(raw[8:16])), &key)
		}
		inner, err := c.unwrap(fr, h)
		var body []byte
		if err == nil {
			body = make([]byte, inner.size)
			if err = c.read(fr, body); err != nil && !isZero(body) {
				t.Fatalf("frame %d: read failed (%v) and left plaintext in the destination", len(bodies), err)
			}
		}
		if err != nil {
			if opened && len(plain) > 0 && !h.more() && binary.BigEndian.Uint64(raw[8:16]) == last+1 {
				t.Fatalf("frame %d: a genuine MESSAGE with the next nonce refused: %v", len(bodies), err)
			}
			return bodies, err
		}
		if !opened {
			t.Fatalf("frame %d: delivered a MESSAGE nacl/secretbox does not open", len(bodies))
		}
		if inner.flags != frameFlags(plain[0]) || int(inner.size) != len(plain)-1 {
			t.Fatalf("frame %d: flags %x, size %d; the box holds flags %x and %d bytes", len(bodies), inner.flags, inner.size, plain[0], len(plain)-1)
		}
		if !bytes.Equal(body, plain[1:]) {
			t.Fatalf("frame %d: body differs from nacl/secretbox's at byte %d", len(bodies), firstDifference(body, plain[1:]))
		}
		last = binary.BigEndian.Uint64(raw[8:16])
		bodies = append(bodies, body)
	}
}

// FuzzCurveOpen feeds arbitrary bytes to the MESSAGE decoder as a peer's
// stream after the handshake (see openStream): it must never panic, never
// deliver what nacl/secretbox does not open (a bad tag, a forged flags
// byte or size), and never refuse a genuine MESSAGE in sequence.
func FuzzCurveOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add(longHeader(0, 1<<40))
	f.Add(zmtpFrame(0, []byte("\x07MESSAGE")))
	f.Add(zmtpFrame(0, append([]byte("\x07MESSAGE\x00\x00\x00\x00\x00\x00\x00\x01"), make([]byte, 17)...)))
	// A genuine large MESSAGE (opened as it is read), then a small one.
	key := fuzzOpenKey
	large := zmtpFrame(0, naclClientMessage(&key, 1, boxMore, bytes.Repeat([]byte("large "), 1000)))
	f.Add(append(large, zmtpFrame(0, naclClientMessage(&key, 2, 0, []byte("small")))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		openStream(t, data)
	})
}

// TestCurveOpenSeeds: the committed seeds of FuzzCurveOpen do what their
// names say: the genuine stream delivers its four frames and ends cleanly;
// each damaged one delivers what comes before the damage, nothing of the
// damaged frame, and ends with ErrProtocol (io.EOF for the truncated one).
// Short nonces 1, 3, 2 ("gap" is 1, 3) stop at 3 where each nonce must be
// the last plus one, at 2 (after 3) where it need only be larger.
func TestCurveOpenSeeds(t *testing.T) {
	key := fuzzOpenKey
	_, _, err := newCurveCodec(&key, true, 0, 0).open(naclClientMessage(&key, 2, 0, []byte("b")))
	consecutive := err != nil
	gap, reordered := 1, 1
	if !consecutive {
		gap, reordered = 2, 2
	}
	want := map[string]int{ // frames delivered before the stream ends
		"genuine-stream":        4,
		"truncated-stream":      3,
		"tag-flipped-large":     0,
		"ciphertext-tail-5000":  0,
		"ciphertext-mid-5000":   0,
		"flags-to-command":      0,
		"replay":                1,
		"gap":                   gap,
		"reordered":             reordered,
		"nonce-zero":            0,
		"outer-more":            0,
		"empty-box":             0,
		"wrong-name":            0,
		"wrong-direction":       0,
		"nonce-field-flipped":   0,
		"large-then-small-fake": 1,
	}
	dir := "testdata/fuzz/FuzzCurveOpen"
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d seeds in %s, want %d", len(files), dir, len(want))
	}
	for _, fi := range files {
		t.Run(fi.Name(), func(t *testing.T) {
			n, ok := want[fi.Name()]
			if !ok {
				t.Fatalf("seed %s not described here", fi.Name())
			}
			data := readFuzzSeed(t, filepath.Join(dir, fi.Name()))
			bodies, err := openStream(t, data)
			if len(bodies) != n {
				t.Fatalf("%d frames delivered, want %d (%v)", len(bodies), n, err)
			}
			switch name := fi.Name(); {
			case name == "genuine-stream" || name == "truncated-stream" || name == "gap" && !consecutive:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("ended with %v, want io.EOF", err)
				}
			case !errors.Is(err, ErrProtocol):
				t.Fatalf("ended with %v, want ErrProtocol", err)
			}
		})
	}
}

// readFuzzSeed reads a one-[]byte corpus file of go test's fuzzing format.
func readFuzzSeed(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	header, rest, _ := strings.Cut(string(data), "\n")
	lit, ok := strings.CutPrefix(strings.TrimSpace(rest), "[]byte(")
	lit, ok2 := strings.CutSuffix(lit, ")")
	if header != "go test fuzz v1" || !ok || !ok2 {
		t.Fatalf("%s: not a []byte corpus file", path)
	}
	s, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}
