package socket

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"
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
	curve25519.ScalarBaseMult((*[32]byte)(&pub), (*[32]byte)(&k))
	return pub
}

// IsZero reports whether kp holds no key.
func (kp KeyPair) IsZero() bool { return kp.Secret.IsZero() }

// NewKeyPair makes a fresh long-term key pair from crypto/rand.
func NewKeyPair() (KeyPair, error) {
	pub, sec, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("socket: generate key pair: %w", err)
	}
	return KeyPair{Public: Key(*pub), Secret: SecretKey(*sec)}, nil
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

// CurveZMQ MESSAGE framing, as libzmq 4.3 writes it (curve_mechanism_base):
// a ZMTP frame with no flags set (LONG when needed) whose body is
//
//	"\x07MESSAGE" | short nonce (8, big-endian) | Box[flags (1) + frame body]
//
// where the box is NaCl crypto_box under the connection's precomputed key
// with the nonce prefix "CurveZMQMESSAGEC" (client to server) or
// "CurveZMQMESSAGES" (server to client) and the flags byte carries the
// frame's MORE (0x01) and COMMAND (0x04) bits. Every ZMTP frame after the
// handshake, commands included, travels this way.
const (
	curveMsgHeader   = 16                      // "\x07MESSAGE" + short nonce
	curveMsgOverhead = curveMsgHeader + 16 + 1 // + MAC + flags byte
)

var curveMsgName = []byte("\x07MESSAGE")

// curveCodec seals and opens one connection's MESSAGE boxes. The send half
// is used under the pipe's write lock, the receive half by its reader only.
type curveCodec struct {
	key [32]byte // precomputed box key (C'/S' shared secret)

	sendNonce  [24]byte // prefix | counter
	sendCount  uint64   // last short nonce sent
	plain      []byte   // send scratch: flags + body
	recvNonce  [24]byte
	recvCount  uint64 // last short nonce received; the next must be larger
	recvPlain  []byte // receive scratch
	recvCipher []byte // receive scratch for the boxed frame body
}

func newCurveCodec(key *[32]byte, server bool, sent, received uint64) *curveCodec {
	c := &curveCodec{key: *key, sendCount: sent, recvCount: received}
	send, recv := "CurveZMQMESSAGEC", "CurveZMQMESSAGES"
	if server {
		send, recv = recv, send
	}
	copy(c.sendNonce[:16], send)
	copy(c.recvNonce[:16], recv)
	return c
}

// scratchKeep is the largest scratch buffer a codec keeps between frames;
// a larger one served a large frame and is dropped after it.
const scratchKeep = 64 << 10

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
	plain := append(c.plain[:0], flags&(flagMore|flagCommand))
	plain = append(plain, body...)
	dst = box.SealAfterPrecomputation(dst, plain, &c.sendNonce, &c.key)
	if cap(plain) <= scratchKeep {
		c.plain = plain[:0]
	} else {
		c.plain = nil
	}
	return dst
}

// open checks and decrypts one MESSAGE body (the ZMTP frame's body). It
// returns the frame's flags and body; the body is valid until the next
// open. A short nonce not larger than the last one is a replay or a
// reordering and fails.
func (c *curveCodec) open(msg []byte) (flags byte, body []byte, err error) {
	if len(msg) < curveMsgOverhead || subtle.ConstantTimeCompare(msg[:8], curveMsgName) != 1 {
		return 0, nil, fmt.Errorf("%w: CURVE: malformed MESSAGE (%d bytes)", ErrProtocol, len(msg))
	}
	n := binary.BigEndian.Uint64(msg[8:16])
	if n <= c.recvCount {
		return 0, nil, fmt.Errorf("%w: CURVE: MESSAGE nonce %d after %d (replayed or reordered)", ErrProtocol, n, c.recvCount)
	}
	copy(c.recvNonce[16:], msg[8:16])
	plain, ok := box.OpenAfterPrecomputation(c.recvPlain[:0], msg[16:], &c.recvNonce, &c.key)
	if !ok {
		return 0, nil, fmt.Errorf("%w: CURVE: MESSAGE box does not open", ErrProtocol)
	}
	c.recvCount = n
	if cap(plain) <= scratchKeep {
		c.recvPlain = plain[:0]
	} else {
		c.recvPlain = nil
	}
	// libzmq masks the other bits away rather than refusing them.
	return plain[0] & (flagMore | flagCommand), plain[1:], nil
}

// cipherBuf returns a scratch buffer of n bytes to read a MESSAGE body into.
func (c *curveCodec) cipherBuf(n int) []byte {
	if cap(c.recvCipher) >= n {
		return c.recvCipher[:n]
	}
	b := make([]byte, n)
	if n <= scratchKeep {
		c.recvCipher = b
	}
	return b
}

// appendCurve queues m's frames as MESSAGE boxes. Large frames are sealed
// into memory of their own, referenced by the batch until written.
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
			b.segs = append(b.segs, c.appendSealed(make([]byte, 0, n), fl, f))
			continue
		}
		b.room(n)
		b.cur = c.appendSealed(b.cur, fl, f)
	}
}

// appendCurveCommand queues a ZMTP command (PING, PONG) as a MESSAGE box
// whose flags byte has COMMAND set.
func (b *batch) appendCurveCommand(c *curveCodec, name string, body []byte) {
	var cmd [1 + 255 + 32]byte
	if len(name) > 255 || len(body) > 32 {
		return // commands we send are tiny; never happens
	}
	n := copy(cmd[1:], name)
	cmd[0] = byte(n)
	n += 1 + copy(cmd[1+n:], body)
	b.room(9 + sealedSize(n))
	b.cur = c.appendSealed(b.cur, flagCommand, cmd[:n])
}
