package socket

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/salsa20/salsa"

	"github.com/zpeer/zpeer/internal/crypto/poly1305"
	"github.com/zpeer/zpeer/internal/crypto/salsa20"
)

// Key is a CURVE public key (Curve25519, 32 bytes). Its String is the Z85
// text libzmq, pyzmq and czmq use.
type Key [32]byte

// SecretKey is a CURVE secret key. Its String never shows the key: call Z85
// to get the text (for writing a certificate file, not for logs).
type SecretKey [32]byte

// KeyPair is a long-term CURVE key pair.
type KeyPair struct {
	Public Key
	Secret SecretKey
}

func (k Key) String() string {
	s, _ := Z85Encode(k[:])
	return s
}

// IsZero reports whether k is all zero bytes (no key).
func (k Key) IsZero() bool { return k == Key{} }

// String hides the key.
func (SecretKey) String() string { return "[secret key]" }

// GoString hides the key from %#v too.
func (SecretKey) GoString() string { return "socket.SecretKey{...}" }

// Z85 returns the secret key's Z85 text.
func (k SecretKey) Z85() string {
	s, _ := Z85Encode(k[:])
	return s
}

// IsZero reports whether k is all zero bytes (no key).
func (k SecretKey) IsZero() bool { return k == SecretKey{} }

// Public returns the public key that belongs to k.
func (k SecretKey) Public() Key {
	var pub Key
	x25519Base((*[32]byte)(&pub), (*[32]byte)(&k))
	return pub
}

// IsZero reports whether kp holds no key.
func (kp KeyPair) IsZero() bool { return kp.Secret.IsZero() }

// NewKeyPair makes a fresh long-term key pair from crypto/rand.
func NewKeyPair() (KeyPair, error) {
	pub, sec, err := generateKey()
	if err != nil {
		return KeyPair{}, fmt.Errorf("socket: generate key pair: %w", err)
	}
	return KeyPair{Public: Key(pub), Secret: SecretKey(sec)}, nil
}

// KeyPairFromSecret returns the key pair whose secret key is sec.
func KeyPairFromSecret(sec SecretKey) KeyPair {
	return KeyPair{Public: sec.Public(), Secret: sec}
}

// ParseKey reads a public key from its 40-character Z85 text.
func ParseKey(s string) (Key, error) {
	b, err := parseKey32(s)
	return Key(b), err
}

// ParseSecretKey reads a secret key from its 40-character Z85 text. The
// error never quotes the text.
func ParseSecretKey(s string) (SecretKey, error) {
	s = strings.TrimSpace(s)
	if len(s) != 40 {
		return SecretKey{}, fmt.Errorf("%w: a Z85 key is 40 characters, got %d", ErrKey, len(s))
	}
	b, err := Z85Decode(s)
	if err != nil {
		return SecretKey{}, fmt.Errorf("%w: secret key is not valid Z85", ErrKey)
	}
	return SecretKey(b), nil
}

func parseKey32(s string) ([32]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) != 40 {
		return [32]byte{}, fmt.Errorf("%w: a Z85 key is 40 characters, got %d (%q)", ErrKey, len(s), s)
	}
	b, err := Z85Decode(s)
	if err != nil {
		return [32]byte{}, err
	}
	return [32]byte(b), nil
}

// The flags byte inside a MESSAGE box carries libzmq's message flags, not
// ZMTP's frame flags: MORE is 0x01 as in ZMTP, but COMMAND is 0x02 (ZMTP's
// 0x04). libzmq ignores the other bits; so does frameFlags.
const (
	boxMore    = 0x01
	boxCommand = 0x02
)

// boxFlags maps ZMTP frame flags to the flags byte of a MESSAGE box.
func boxFlags(f byte) byte {
	var b byte
	if f&flagMore != 0 {
		b |= boxMore
	}
	if f&flagCommand != 0 {
		b |= boxCommand
	}
	return b
}

// frameFlags maps a MESSAGE box's flags byte to ZMTP frame flags.
func frameFlags(b byte) byte {
	var f byte
	if b&boxMore != 0 {
		f |= flagMore
	}
	if b&boxCommand != 0 {
		f |= flagCommand
	}
	return f
}

// CurveZMQ MESSAGE framing, as libzmq 4.3 writes it (curve_mechanism_base):
// a ZMTP frame with no flags set (LONG when needed) whose body is
//
//	"\x07MESSAGE" | short nonce (8, big-endian) | Box[flags (1) + frame body]
//
// where the box is NaCl crypto_box under the connection's precomputed key
// with the nonce prefix "CurveZMQMESSAGEC" (client to server) or
// "CurveZMQMESSAGES" (server to client) and the flags byte carries the
// frame's MORE (0x01) and COMMAND (0x02, see boxCommand) bits. Every ZMTP
// frame after the handshake, commands included, travels this way.
const (
	curveMsgHeader   = 16                      // "\x07MESSAGE" + short nonce
	curveMsgOverhead = curveMsgHeader + 16 + 1 // + MAC + flags byte
)

var curveMsgName = []byte("\x07MESSAGE")

// curveCodec seals and opens one connection's MESSAGE boxes. The send half
// is used under the pipe's write lock, the receive half by its reader only.
//
// The box is NaCl's crypto_box after precomputation: XSalsa20 keyed by the
// shared key and the 24-byte nonce, the first 32 bytes of its key stream
// keying Poly1305 over the ciphertext, the tag first. It is computed here
// from Salsa20 and Poly1305 (internal/crypto/salsa20 and internal/crypto/poly1305: AVX2
// kernels where the CPU has them, x/crypto's code elsewhere and for short
// tags) rather than through box.Seal and box.Open so that the flags byte
// and the frame body need not be copied together first, and so that a body
// is decrypted straight into the memory it is delivered in: no scratch
// copy either way.
//
// A MESSAGE of up to scratchKeep bytes is read whole into a scratch
// buffer and its tag checked by openHeader before a byte of it is
// decrypted. A larger one is never held whole twice: unwrap reads its
// head (name, nonce, tag, flags byte), and read reads its body straight
// into the destination, chunk by chunk as it arrives, each chunk
// authenticated (streaming Poly1305) then decrypted in place while it is
// in the cache; sealing likewise encrypts a chunk and authenticates it
// while it is hot (boxChunk). The tag of such a MESSAGE is known good only
// after its last chunk: until then the reader holds the destination back
// (the frame is not delivered before read returns), and a bad tag, or a
// connection that ends mid-MESSAGE, clears the destination and ends the
// connection: nothing of a forged MESSAGE reaches the user, and its
// plaintext does not stay in memory. TestCurveBoxMatchesNaCl checks both
// directions against nacl/box, TestCurveOpenLargeForged and FuzzCurveOpen
// that nothing forged is delivered.
type curveCodec struct {
	// XSalsa20's sub-key depends on the key and the nonce's first 16
	// bytes only, and every MESSAGE nonce of one direction starts with
	// the same 16-byte prefix ("CurveZMQMESSAGEC" or "...S"): so the
	// sub-key is computed once per direction, not once per message, and
	// the precomputed box key (the C'/S' shared secret) is not kept.
	sendSub, recvSub [32]byte

	sendNonce [24]byte // prefix | counter
	sendCount uint64   // last short nonce sent
	recvNonce [24]byte
	recvCount uint64        // last short nonce received; the next must be recvCount+1
	sendKS    [smallKS]byte // a small MESSAGE's key stream, for appendSealed

	// the next short nonce's key stream, made with this one's
	sendAhead, recvAhead ksAhead

	sendMAC poly1305.MAC // a large MESSAGE's tag, chunk by chunk

	// receive: the key stream state of the MESSAGE last checked by
	// openHeader, for decryptTo: a small MESSAGE's whole key stream in
	// recvKS (recvSmall set), a larger one's first block and counter in
	// rs; or that of the MESSAGE whose head unwrapHead read (streamed
	// set), which read reads on.
	rs         xsalsa
	recvKS     [smallKS]byte
	recvSmall  bool
	recvCipher []byte // scratch for boxed frame bodies up to scratchKeep
	sealed     []byte // the MESSAGE unwrap checked, for read

	streamed bool                          // read reads the body of a large MESSAGE
	head     [curveMsgHeader + 16 + 1]byte // its name, short nonce, tag and flags byte
	recvMAC  poly1305.MAC                  // its tag so far
	recvNext uint64                        // its short nonce, recvCount once the tag checks
}

// boxChunk is how much of a large MESSAGE is sealed (encrypted, then
// authenticated) or opened (authenticated, then decrypted) at a time: a
// piece that stays in the L1 cache between the two passes, so that the
// second costs no memory traffic. A multiple of the 512 bytes the Salsa20
// kernel makes per step.
const boxChunk = 16 << 10

// boxRead is the most read asks the connection for at a time while it
// reads a large MESSAGE: at least the bufio.Reader's size, so that the
// kernel copies straight into the destination, and little enough that
// what it returns is still in the cache when it is opened.
const boxRead = 2 * readBufSize

// smallKS is the key stream a small MESSAGE is sealed or opened with, made
// in one call: Poly1305's key, the flags byte's pad and up to
// smallKS-33 body bytes' pads. Up to 128 bytes (a body of up to 95 bytes)
// it comes from a two-block kernel call shared with the next nonce
// (ksAhead); beyond, from one eight-block call into a buffer: either costs
// less than making the first block and the rest apart, as larger MESSAGEs
// do.
const smallKS = 9 * 64

// smallKeyStream writes at least the first n bytes of the key stream of
// short nonce nonce into ks.
func smallKeyStream(ks *[smallKS]byte, n int, ahead *ksAhead, subKey *[32]byte, nonce uint64) {
	if n <= 128 {
		ahead.keyStream128((*[128]byte)(ks[:128]), subKey, nonce)
		return
	}
	var counter [16]byte
	binary.BigEndian.PutUint64(counter[:8], nonce)
	k := ks[:n]
	clear(k)
	salsa20.XORKeyStream(k, k, &counter, subKey)
}

// ksAhead keeps the first 128 bytes of the key stream of one direction's
// next short nonce, made together with the current one's by one
// KeyStream128x2 call, which costs little more than one nonce's (the
// kernel waits on the latency of its steps, not on the CPU's width).
// Short nonces go up by one per MESSAGE, in libzmq as here, so a stream of
// small MESSAGEs makes one call per two; a nonce that was not foreseen is
// made afresh, with its successor.
type ksAhead struct {
	ks    [256]byte // [0:128] scratch, [128:256] the key stream of next
	next  uint64
	valid bool
}

// keyStream128 writes the first 128 bytes of the key stream of short
// nonce n into dst.
func (a *ksAhead) keyStream128(dst *[128]byte, subKey *[32]byte, n uint64) {
	if a.valid && a.next == n {
		a.valid = false
		*dst = [128]byte(a.ks[128:])
		return
	}
	var c0, c1 [16]byte
	binary.BigEndian.PutUint64(c0[:8], n)
	binary.BigEndian.PutUint64(c1[:8], n+1)
	salsa20.KeyStream128x2(&a.ks, &c0, &c1, subKey)
	*dst = [128]byte(a.ks[:128])
	a.next, a.valid = n+1, n+1 != 0
}

// xsalsa is XSalsa20 set up for one nonce: the sub-key, the counter block
// and the first 64 bytes of key stream (Poly1305's key, then the pad of the
// first 32 plaintext bytes).
type xsalsa struct {
	subKey  [32]byte
	counter [16]byte
	first   [64]byte
}

func (x *xsalsa) setup(subKey *[32]byte, nonce *[24]byte) {
	x.subKey = *subKey
	x.counter = [16]byte{}
	copy(x.counter[:8], nonce[16:])
	x.first = [64]byte{}
	salsa20.XORKeyStream(x.first[:], x.first[:], &x.counter, &x.subKey)
	x.counter[8] = 1 // the rest of the stream starts at block 1
}

// seal encrypts in into out (as long) with the key stream from x's
// counter on, and writes the ciphertext to mac, boxChunk bytes at a time:
// each chunk is authenticated while it is in the cache. The counter moves
// past what it used (whole blocks but for the end of the stream).
func (x *xsalsa) seal(out, in []byte, mac *poly1305.MAC) {
	for len(in) > 0 {
		n := min(len(in), boxChunk)
		salsa20.XORKeyStream(out[:n], in[:n], &x.counter, &x.subKey)
		mac.Write(out[:n])
		x.advance(n)
		out, in = out[n:], in[n:]
	}
}

// open writes ct to mac and decrypts it into out (as long; the same memory
// or apart), boxChunk bytes at a time. ct's length is a multiple of 64
// but at the end of the stream.
func (x *xsalsa) open(out, ct []byte, mac *poly1305.MAC) {
	for len(ct) > 0 {
		n := min(len(ct), boxChunk)
		mac.Write(ct[:n])
		salsa20.XORKeyStream(out[:n], ct[:n], &x.counter, &x.subKey)
		x.advance(n)
		out, ct = out[n:], ct[n:]
	}
}

// advance moves the block counter past n bytes of key stream.
func (x *xsalsa) advance(n int) {
	b := binary.LittleEndian.Uint64(x.counter[8:])
	binary.LittleEndian.PutUint64(x.counter[8:], b+uint64((n+63)/64))
}

func newCurveCodec(key *[32]byte, server bool, sent, received uint64) *curveCodec {
	c := &curveCodec{sendCount: sent, recvCount: received}
	send, recv := "CurveZMQMESSAGEC", "CurveZMQMESSAGES"
	if server {
		send, recv = recv, send
	}
	copy(c.sendNonce[:16], send)
	copy(c.recvNonce[:16], recv)
	c.sendSub = hsalsa(key, c.sendNonce[:16])
	c.recvSub = hsalsa(key, c.recvNonce[:16])
	return c
}

// hsalsa is XSalsa20's sub-key for key and a 16-byte nonce prefix.
func hsalsa(key *[32]byte, prefix []byte) [32]byte {
	var in [16]byte
	copy(in[:], prefix)
	var out [32]byte
	salsa.HSalsa20(&out, &in, key, &salsa.Sigma)
	return out
}

// scratchKeep is the size of the ciphertext scratch buffer each CURVE
// connection keeps (small frames: a slab-sized frame plus the MESSAGE
// overhead); larger MESSAGEs are read into their destination
// (unwrapHead, readBox), so an idle connection holds no more than this.
const scratchKeep = 2 << 10

// sealedSize is the ZMTP body size of the MESSAGE carrying n body bytes.
func sealedSize(n int) int { return curveMsgOverhead + n }

// appendSealed appends to dst the whole ZMTP frame (header included) that
// carries one frame with the given flags (flagMore, flagCommand) and body.
func (c *curveCodec) appendSealed(dst []byte, flags byte, body []byte) []byte {
	size := sealedSize(len(body))
	if size > 255 {
		dst = append(dst, flagLong)
		dst = binary.BigEndian.AppendUint64(dst, uint64(size))
	} else {
		dst = append(dst, 0, byte(size))
	}
	c.sendCount++
	binary.BigEndian.PutUint64(c.sendNonce[16:], c.sendCount)
	dst = append(dst, curveMsgName...)
	dst = append(dst, c.sendNonce[16:]...)
	n := len(dst)
	dst = slices.Grow(dst, 16+1+len(body))[:n+16+1+len(body)]
	ct := dst[n+16:]
	var tag [16]byte
	if len(ct)+32 <= smallKS {
		k := c.sendKS[:32+len(ct)]
		smallKeyStream(&c.sendKS, len(k), &c.sendAhead, &c.sendSub, c.sendCount)
		ct[0] = boxFlags(flags) ^ k[32]
		subtle.XORBytes(ct[1:], body, k[33:])
		poly1305.Sum(&tag, ct, (*[32]byte)(k[:32]))
		copy(dst[n:], tag[:])
		return dst
	}
	var x xsalsa
	x.setup(&c.sendSub, &c.sendNonce)
	ct[0] = boxFlags(flags) ^ x.first[32]
	// Larger than smallKS: the body is longer than 31 bytes. Encrypted
	// (AVX2, eight blocks per step) and authenticated (AVX2 Poly1305) a
	// chunk at a time.
	subtle.XORBytes(ct[1:32], body[:31], x.first[33:64])
	mac := &c.sendMAC
	mac.Init((*[32]byte)(x.first[:32]))
	mac.Write(ct[:32])
	x.seal(ct[32:], body[31:], mac)
	mac.Sum(&tag)
	copy(dst[n:], tag[:])
	x = xsalsa{}
	return dst
}

// openHeader checks one MESSAGE body (the ZMTP frame's body): its name, its
// short nonce (the last one plus one: a gap, a replay or a reordering
// fails, see nonceError) and its tag, over the ciphertext, whatever the
// size. It returns the frame's flags and body length, authenticated;
// decryptTo then writes the body. Nothing is decrypted before the tag is
// checked, and a MESSAGE that fails leaves no plaintext anywhere.
func (c *curveCodec) openHeader(msg []byte) (flags byte, n int, err error) {
	if len(msg) < curveMsgOverhead {
		return 0, 0, malformedMessage(len(msg))
	}
	nonce, err := c.checkHead(msg, len(msg))
	if err != nil {
		return 0, 0, err
	}
	ct := msg[32:]
	var first []byte // Poly1305's key, then the flags byte's pad
	c.recvSmall = len(ct)+32 <= smallKS
	if c.recvSmall {
		k := c.recvKS[:32+len(ct)]
		smallKeyStream(&c.recvKS, len(k), &c.recvAhead, &c.recvSub, nonce)
		first = k
	} else {
		c.rs.setup(&c.recvSub, &c.recvNonce)
		first = c.rs.first[:]
	}
	if !poly1305.Verify((*[16]byte)(msg[16:32]), ct, (*[32]byte)(first[:32])) {
		return 0, 0, errBoxOpen
	}
	c.recvCount = nonce
	return frameFlags(ct[0] ^ first[32]), len(ct) - 1, nil
}

// checkHead checks the name and short nonce at the start of head, the
// first 16 bytes (at least) of a MESSAGE of size bytes, and sets the
// receive nonce for its key stream. The nonce counts as received only once
// the tag checks.
func (c *curveCodec) checkHead(head []byte, size int) (nonce uint64, err error) {
	if subtle.ConstantTimeCompare(head[:8], curveMsgName) != 1 {
		return 0, malformedMessage(size)
	}
	nonce = binary.BigEndian.Uint64(head[8:16])
	if nonce != c.recvCount+1 || nonce == 0 {
		return 0, nonceError(nonce, c.recvCount)
	}
	copy(c.recvNonce[16:], head[8:16])
	return nonce, nil
}

func malformedMessage(size int) error {
	return fmt.Errorf("%w: CURVE: malformed MESSAGE (%d bytes)", ErrProtocol, size)
}

var errBoxOpen = fmt.Errorf("%w: CURVE: MESSAGE box does not open", ErrProtocol)

// errNonce is the cause of a MESSAGE whose short nonce is not the next one.
var errNonce = errors.New("CURVE: MESSAGE out of sequence")

// nonceError says how MESSAGE nonce got after last: short nonces go up by
// one per MESSAGE in each direction, from the handshake's (INITIATE's
// client to server, READY's server to client; libzmq numbers them so, as
// curve_mechanism_base's get_and_inc_nonce), so any other value is a
// MESSAGE lost, removed, replayed or moved on the way. A gap is not
// tolerated: TCP loses nothing, so only a relay in the middle makes one,
// and a receiver that skipped it would stitch the frames on either side
// of the gap into one message.
func nonceError(nonce, last uint64) error {
	what := "replayed or reordered"
	if nonce > last {
		what = fmt.Sprintf("%d MESSAGE(s) missing: removed in transit", nonce-last-1)
	}
	return fmt.Errorf("%w: %w: nonce %d, expected %d (%s)", ErrProtocol, errNonce, nonce, last+1, what)
}

// decryptTo writes the body of the MESSAGE openHeader last checked into
// dst, whose length is the n it returned. It cannot fail: openHeader has
// checked the tag.
func (c *curveCodec) decryptTo(dst, msg []byte) {
	ct := msg[32:]
	if c.recvSmall {
		subtle.XORBytes(dst, ct[1:], c.recvKS[33:33+len(ct)-1])
		return
	}
	// Larger than smallKS: the body is longer than 31 bytes.
	subtle.XORBytes(dst[:31], ct[1:32], c.rs.first[33:64])
	salsa20.XORKeyStream(dst[31:], ct[32:], &c.rs.counter, &c.rs.subKey)
}

// wipeSend clears the send half's key material (the sub-key and key
// streams of this direction) once the pipe's writers are done with
// it: under the pipe's write lock, after it is closed to senders.
func (c *curveCodec) wipeSend() {
	clear(c.sendSub[:])
	clear(c.sendKS[:])
	c.sendAhead = ksAhead{}
	c.sendMAC.Clear()
}

// wipeRecv clears the receive half's (its sub-key, key streams, the last
// MESSAGE's setup and the ciphertext scratch) once the reader is done with
// it, and gives back a pooled MESSAGE it still held.
func (c *curveCodec) wipeRecv() {
	clear(c.recvSub[:])
	clear(c.recvKS[:])
	c.recvAhead = ksAhead{}
	c.rs = xsalsa{}
	c.sealed = nil
	clear(c.recvCipher[:cap(c.recvCipher)])
	c.streamed = false
	c.head = [len(c.head)]byte{}
	c.recvMAC.Clear()
}

// wipe is wipeSend and wipeRecv, for a codec no goroutine uses.
func (c *curveCodec) wipe() {
	c.wipeSend()
	c.wipeRecv()
}

// unwrap reads the MESSAGE whose outer header is h from fr (its size
// already checked against the socket's limit plus the MESSAGE overhead)
// and returns the header of the frame inside. A MESSAGE of up to
// scratchKeep bytes is read whole and checked, tag included; of a larger
// one, only the head is read and checked (unwrapHead), and its flags are
// not yet authenticated. Either way the body is read by read, into the
// memory the reader picks for it, and nothing of the frame may be used
// before read returns nil.
func (c *curveCodec) unwrap(fr *frameReader, h frameHeader) (frameHeader, error) {
	if h.more() {
		return h, fmt.Errorf("%w: CURVE: MESSAGE frame with MORE set", ErrProtocol)
	}
	if h.size < curveMsgOverhead {
		return h, fmt.Errorf("%w: CURVE: MESSAGE of %d bytes", ErrProtocol, h.size)
	}
	n := int(h.size)
	if n > scratchKeep {
		return c.unwrapHead(fr, n)
	}
	if cap(c.recvCipher) < n {
		c.recvCipher = make([]byte, scratchKeep)
	}
	buf := c.recvCipher[:n]
	if err := fr.body(buf); err != nil {
		return h, err
	}
	flags, size, err := c.openHeader(buf)
	if err != nil {
		return h, err
	}
	c.sealed = buf
	return frameHeader{flags: flags, size: uint64(size)}, nil
}

// unwrapHead reads the head of a MESSAGE of n bytes (larger than
// scratchKeep), checks its name and short nonce, and starts its key stream
// and tag for readBox. The flags byte it decodes is checked with the tag,
// at the end of readBox; until then it only tells a message frame (MORE
// or not: the reader holds the frame until read returns) from a command,
// which is checked whole here.
func (c *curveCodec) unwrapHead(fr *frameReader, n int) (frameHeader, error) {
	if err := fr.body(c.head[:]); err != nil {
		return frameHeader{}, err
	}
	nonce, err := c.checkHead(c.head[:], n)
	if err != nil {
		return frameHeader{}, err
	}
	c.rs.setup(&c.recvSub, &c.recvNonce)
	flags := frameFlags(c.head[32] ^ c.rs.first[32])
	if flags&flagCommand != 0 {
		// A command is acted on as soon as it is read, and its flag
		// decides how the reader treats the frame: a large one (no
		// genuine peer sends one; PING and PONG are small) is read whole
		// and checked first, as a small MESSAGE is, so that a forged flag
		// fails as a forged box.
		buf := make([]byte, n)
		copy(buf, c.head[:])
		if err := fr.body(buf[len(c.head):]); err != nil {
			return frameHeader{}, err
		}
		flags, size, err := c.openHeader(buf)
		if err != nil {
			return frameHeader{}, err
		}
		c.sealed = buf
		return frameHeader{flags: flags, size: uint64(size)}, nil
	}
	c.recvMAC.Init((*[32]byte)(c.rs.first[:32]))
	c.recvMAC.Write(c.head[32:])
	c.recvNext = nonce
	c.streamed = true
	return frameHeader{flags: flags, size: uint64(n - curveMsgOverhead)}, nil
}

// read writes the body of the MESSAGE unwrap last returned into dst (as
// long as its header said). It fails only for a large MESSAGE (see
// readBox): then dst is cleared, and the connection must end.
func (c *curveCodec) read(fr *frameReader, dst []byte) error {
	if !c.streamed {
		c.decryptTo(dst, c.sealed)
		c.sealed = nil
		return nil
	}
	c.streamed = false
	if err := c.readBox(fr, dst); err != nil {
		clear(dst)
		c.recvMAC.Clear()
		return err
	}
	return nil
}

// readBox reads the body of the MESSAGE whose head unwrapHead read into
// dst as it arrives, and opens it there: each piece read, cut at the key
// stream's 512-byte steps, is authenticated and decrypted in place while
// it is in the cache (xsalsa.open). It fails, with dst partly decrypted
// (read clears it), if the connection ends first or the tag is wrong.
func (c *curveCodec) readBox(fr *frameReader, dst []byte) error {
	// Body bytes 0-30 take the first key stream block's last 31 bytes
	// (its first 33 went to Poly1305's key and the flags byte); the rest
	// take whole blocks from block 1 on.
	const lead = 31
	if err := fr.body(dst[:lead]); err != nil {
		return err
	}
	c.recvMAC.Write(dst[:lead])
	subtle.XORBytes(dst[:lead], dst[:lead], c.rs.first[64-lead:])
	done, got := lead, lead
	for done < len(dst) {
		if got < len(dst) {
			m, err := fr.br.Read(dst[got:min(len(dst), got+boxRead)])
			got += m
			if err != nil && got < len(dst) {
				return readErr(err)
			}
		}
		end := got
		if end < len(dst) {
			end = done + (got-done)&^511
		}
		c.rs.open(dst[done:end], dst[done:end], &c.recvMAC)
		done = end
	}
	if !c.recvMAC.Verify((*[16]byte)(c.head[16:32])) {
		return errBoxOpen
	}
	c.recvCount = c.recvNext
	return nil
}

// appendCurve queues m's frames as MESSAGE boxes. Large frames are sealed
// into a pooled buffer of their own, which the batch gives back once
// written.
func appendCurve(b *batch, c *curveCodec, m Msg) {
	last := len(m.Frames) - 1
	for i, f := range m.Frames {
		var fl byte
		if i < last {
			fl = flagMore
		}
		n := 9 + sealedSize(len(f))
		if n > chunkSize {
			b.seal()
			buf := c.appendSealed(getBuffer(n)[:0], fl, f)
			b.bufs = append(b.bufs, buf)
			b.segs = append(b.segs, buf)
			continue
		}
		b.room(n)
		b.cur = c.appendSealed(b.cur, fl, f)
	}
}

// appendCurveCommand queues a ZMTP command (PING, PONG) as a MESSAGE box
// whose flags byte has COMMAND set. It fails, appending nothing, where
// appendCommand does.
func (b *batch) appendCurveCommand(c *curveCodec, name string, data []byte) error {
	n, err := commandLen(name, data)
	if err != nil {
		return err
	}
	if n+curveMsgOverhead > maxCommand {
		return fmt.Errorf("%w: %s command of %d bytes (limit %d)", ErrTooLarge, name, n, maxCommand-curveMsgOverhead)
	}
	var cmd [256 + 64]byte
	body := cmd[:0]
	if n > len(cmd) {
		body = make([]byte, 0, n)
	}
	body = appendCommandBody(body, name, data)
	b.room(maxHeaderLen + sealedSize(n))
	b.cur = c.appendSealed(b.cur, flagCommand, body)
	return nil
}
