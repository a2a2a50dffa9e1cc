package socket

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
)

// The CURVE handshake (RFC 26 as libzmq 4.3 speaks it) runs here, not in
// zmq4: zmq4.Security writes each frame's plaintext size before encrypting
// it and has no place for CurveZMQ's per-frame MESSAGE boxes, so a CURVE
// socket does its own greeting and handshake and hands the pipe a
// curveCodec for everything after it. NULL and PLAIN sockets keep zmq4.Open.
//
// Sizes, as libzmq checks them (curve_server.cpp, curve_client_tools.hpp):
//
//	HELLO    200 bytes: "\x05HELLO" 1 0 | 72 zero bytes | C' | nonce | Box[64 zeros](C'->S)
//	WELCOME  168 bytes: "\x07WELCOME" | 16-byte nonce | Box[S' + cookie](S->C')
//	INITIATE >= 257:    "\x08INITIATE" | cookie (96) | nonce | Box[C + vouch + metadata](C'->S')
//	READY    >= 30:     "\x05READY" | nonce | Box[metadata](S'->C')
//	ERROR:              "\x05ERROR" | reason length | reason (not encrypted)
//
// The cookie is SecretBox[C' + s'](t) under a cookie key t the server makes
// fresh for each connection (as libzmq does) and forgets once INITIATE is
// checked; the vouch is Box[C' + S](C->S').
//
// Offsets in each command (the body, from its name) and in the plaintext of
// its box, RFC 26's layouts:
const (
	keyLen = 32 // a Curve25519 key, long- or short-term

	// A box's 24-byte nonce is a fixed prefix and then what the command
	// carries: a short nonce of 8 bytes (HELLO, INITIATE, READY) after a
	// 16-byte prefix ("CurveZMQHELLO---"), or a long nonce of 16 bytes
	// (WELCOME, the cookie, the vouch) after an 8-byte one ("WELCOME-").
	shortNoncePrefix = 16
	longNoncePrefix  = 8

	// HELLO: "\x05HELLO" | version (2) | padding (72) | C' | short nonce |
	// Box[64 zeros](C'->S).
	helloVersion   = 6
	helloPadding   = 8
	helloClientKey = helloPadding + 72
	helloNonce     = helloClientKey + keyLen
	helloBox       = helloNonce + 8
	helloSigLen    = 64 // the zeros in HELLO's box

	// WELCOME: "\x07WELCOME" | long nonce | Box[S' + cookie](S->C').
	welcomeNonce = 8
	welcomeBox   = welcomeNonce + 16
	// ... and its box's plaintext: S', then the cookie.
	welcomeCookie   = keyLen
	welcomePlainLen = welcomeCookie + cookieLen

	// The cookie: long nonce | SecretBox[C' + s'](t).
	cookieBoxLen = 2*keyLen + secretbox.Overhead
	cookieLen    = 16 + cookieBoxLen

	// INITIATE: "\x08INITIATE" | cookie | short nonce |
	// Box[C + vouch nonce + vouch + metadata](C'->S').
	initiateCookie    = 9
	initiateCookieBox = initiateCookie + 16
	initiateNonce     = initiateCookie + cookieLen
	initiateBox       = initiateNonce + 8
	// ... and its box's plaintext: C, the vouch's long nonce, the vouch
	// (Box[C' + S](C->S')), then the metadata.
	initiateVouchNonce = keyLen
	initiateVouch      = initiateVouchNonce + 16
	vouchLen           = 2*keyLen + box.Overhead
	initiateMeta       = initiateVouch + vouchLen

	// READY: "\x05READY" | short nonce | Box[metadata](S'->C').
	readyNonce = 6
	readyBox   = readyNonce + 8

	// ERROR: "\x05ERROR" | reason length (1) | reason, in the clear.
	errorLen    = 6
	errorText   = errorLen + 1
	errorMaxLen = 255
)

const (
	curveHelloSize    = helloBox + helloSigLen + box.Overhead       // 200
	curveWelcomeSize  = welcomeBox + welcomePlainLen + box.Overhead // 168
	curveInitiateMin  = initiateBox + initiateMeta + box.Overhead   // 257
	curveReadyMin     = readyBox + box.Overhead                     // 30
	curveCmdMax       = 8 << 10                                     // largest INITIATE or READY (with metadata) accepted
	curveMetaMax      = curveCmdMax - curveInitiateMin
	curveVersionMajor = 1
	curveVersionMinor = 0
)

var (
	errMechanism = errors.New("mechanism mismatch")
)

// hsIO reads and writes the handshake's commands through one fixed buffer:
// nothing is allocated from what the peer announces.
type hsIO struct {
	br   *bufio.Reader
	w    io.Writer
	buf  [curveCmdMax]byte
	wbuf [9 + curveCmdMax]byte

	tamper func(body []byte) []byte // tests: rewrites each command before it is sent
}

// greeting returns the 64-byte ZMTP greeting for mechanism mech.
func greeting(mech string, server bool) [greetingLen]byte {
	var g [greetingLen]byte
	g[0], g[9], g[10], g[11] = 0xFF, 0x7F, 3, 0
	copy(g[12:32], mech)
	if server {
		g[32] = 1
	}
	return g
}

// exchangeGreeting sends our greeting and reads and checks the peer's: a
// ZMTP 3 peer with mechanism mech, or an error naming what the peer offered.
func (h *hsIO) exchangeGreeting(mech string, server bool) error {
	g := greeting(mech, server)
	if _, err := h.w.Write(g[:]); err != nil {
		return err
	}
	peer := h.buf[:greetingLen]
	if n, err := io.ReadFull(h.br, peer); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// libzmq reads our greeting, finds a mechanism it does not
			// speak and closes, often before sending (all of) its own.
			return fmt.Errorf("%w: peer closed after %d of the greeting's 64 bytes (it may not speak %s)", ErrProtocol, n, mech)
		}
		return err
	}
	for i, b := range peer[:11] {
		if err := checkGreetingByte(i, b); err != nil {
			return err
		}
	}
	theirs := string(bytes.TrimRight(peer[12:32], "\x00"))
	if theirs != mech {
		return fmt.Errorf("%w: %w: peer offers %q, this socket requires %s", ErrRefused, errMechanism, theirs, mech)
	}
	return nil
}

// readCommand reads one command frame into the fixed buffer and returns its
// body. A frame announcing more than the buffer is refused unread.
func (h *hsIO) readCommand() ([]byte, error) {
	hdr := h.buf[:2]
	if _, err := io.ReadFull(h.br, hdr); err != nil {
		return nil, err
	}
	flags := hdr[0]
	if flags&^flagsValid != 0 || flags&flagCommand == 0 || flags&flagMore != 0 {
		return nil, fmt.Errorf("%w: CURVE: expected a command frame, got flags 0x%02x", ErrProtocol, flags)
	}
	size := uint64(hdr[1])
	if flags&flagLong != 0 {
		if _, err := io.ReadFull(h.br, h.buf[2:9]); err != nil {
			return nil, err
		}
		size = binary.BigEndian.Uint64(h.buf[1:9])
	}
	if size > curveCmdMax {
		return nil, fmt.Errorf("%w: CURVE: handshake command of %d bytes (limit %d)", ErrTooLarge, size, curveCmdMax)
	}
	body := h.buf[:size]
	if _, err := io.ReadFull(h.br, body); err != nil {
		return nil, err
	}
	return body, nil
}

// writeCommand writes body as one command frame.
func (h *hsIO) writeCommand(body []byte) error {
	if h.tamper != nil {
		body = h.tamper(body)
	}
	b := h.wbuf[:0]
	if len(body) > 255 {
		b = append(b, flagCommand|flagLong)
		b = binary.BigEndian.AppendUint64(b, uint64(len(body)))
	} else {
		b = append(b, flagCommand, byte(len(body)))
	}
	b = append(b, body...)
	_, err := h.w.Write(b)
	return err
}

// sendError writes a ZMTP ERROR command (best effort: the connection is
// being dropped anyway).
func (h *hsIO) sendError(reason string) {
	if len(reason) > errorMaxLen {
		reason = reason[:errorMaxLen]
	}
	var b [errorText + errorMaxLen]byte
	copy(b[:], "\x05ERROR")
	b[errorLen] = byte(len(reason))
	n := errorText + copy(b[errorText:], reason)
	h.writeCommand(b[:n])
}

// commandName returns the name of a command body, or "" when malformed.
func commandName(body []byte) string {
	if len(body) == 0 || int(body[0]) > len(body)-1 {
		return ""
	}
	return string(body[1 : 1+body[0]])
}

// peerError turns a received ERROR command into an error.
func peerError(body []byte) error {
	reason := ""
	if len(body) > errorLen && int(body[errorLen]) <= len(body)-errorText {
		reason = string(body[errorText : errorText+int(body[errorLen])])
	}
	return &RefusedError{Reason: reason}
}

// zmtpMeta is what a handshake learns about the peer from its metadata.
type zmtpMeta struct {
	socketType string
	identity   []byte
}

// appendMeta appends a ZMTP metadata property (name length, name, 4-byte
// value length, value).
func appendMeta(dst []byte, name string, value []byte) []byte {
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(value)))
	return append(dst, value...)
}

// ourMeta is the metadata a socket of type typ with identity id announces.
func ourMeta(dst []byte, typ Type, id []byte) []byte {
	dst = appendMeta(dst, "Socket-Type", []byte(typ.String()))
	return appendMeta(dst, "Identity", id)
}

// parseMeta reads ZMTP metadata, checking every length against the data.
// The identity is copied out (the buffer is reused).
func parseMeta(b []byte) (zmtpMeta, error) {
	var m zmtpMeta
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || 1+n+4 > len(b) {
			return m, fmt.Errorf("%w: malformed metadata", ErrProtocol)
		}
		name := b[1 : 1+n]
		vl := binary.BigEndian.Uint32(b[1+n:])
		b = b[1+n+4:]
		if uint64(vl) > uint64(len(b)) {
			return m, fmt.Errorf("%w: malformed metadata (value of %d bytes, %d left)", ErrProtocol, vl, len(b))
		}
		v := b[:vl]
		b = b[vl:]
		switch {
		case strings.EqualFold(string(name), "Socket-Type"):
			m.socketType = string(v)
		case strings.EqualFold(string(name), "Identity"):
			if len(v) > 255 {
				return m, fmt.Errorf("%w: identity of %d bytes", ErrProtocol, len(v))
			}
			m.identity = append([]byte(nil), v...)
		}
	}
	if m.socketType == "" {
		return m, fmt.Errorf("%w: metadata without Socket-Type", ErrProtocol)
	}
	return m, nil
}

// hsKeys lists the secrets a CURVE handshake computes (the short-term
// secret key, the precomputed box keys, the vouch key, the cookie key and
// the cookie's plaintext): wipe, deferred as each handshake starts, clears
// them however the handshake ends. The MESSAGE sub-keys that outlive it
// are the codec's, cleared when its pipe ends (curveCodec.wipeSend).
type hsKeys struct {
	k [8]*[32]byte
	n int
}

func (h *hsKeys) add(keys ...*[32]byte) {
	for _, k := range keys {
		h.k[h.n] = k
		h.n++
	}
}

func (h *hsKeys) wipe() {
	for _, k := range h.k[:h.n] {
		clear(k[:])
	}
	if hsWiped != nil {
		hsWiped(h.k[:h.n])
	}
}

// hsWiped, when set (by tests, before any socket starts), sees each
// handshake's secrets after wipe.
var hsWiped func(keys []*[32]byte)

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: CURVE: "+format, append([]any{ErrProtocol}, args...)...)
}

// curveClient runs the client side of the handshake after the greeting:
// HELLO, WELCOME, INITIATE, READY (or an ERROR from the server instead of
// WELCOME or READY). server is the server's long-term public key, kp ours.
func curveClient(h *hsIO, server *Key, kp *KeyPair, meta []byte) (*curveCodec, zmtpMeta, error) {
	if len(meta) > curveMetaMax {
		return nil, zmtpMeta{}, fmt.Errorf("%w: CURVE: our metadata is %d bytes", ErrTooLarge, len(meta))
	}
	c := &clientHandshake{h: h, server: server, kp: kp}
	defer c.keys.wipe()
	var plain [initiateMeta + curveMetaMax]byte // each box's plaintext in turn
	if err := c.sendHello(plain[:]); err != nil {
		return nil, zmtpMeta{}, err
	}
	if err := c.readWelcome(plain[:]); err != nil {
		return nil, zmtpMeta{}, err
	}
	if err := c.sendInitiate(plain[:], meta); err != nil {
		return nil, zmtpMeta{}, err
	}
	pm, peerNonce, err := c.readReady(plain[:])
	if err != nil {
		return nil, zmtpMeta{}, err
	}
	return newCurveCodec(&c.shared, false, 2, peerNonce), pm, nil
}

// clientHandshake is what the client side of one handshake carries from
// one command to the next. Its secrets are listed in keys as each is made.
type clientHandshake struct {
	h      *hsIO
	server *Key     // S, the server's long-term key
	kp     *KeyPair // C and c, ours
	keys   hsKeys

	cPub, cSec [32]byte        // C' and c', our short-term keys
	helloKey   [32]byte        // C'->S in HELLO, S->C' in WELCOME: computed once
	sPrime     [keyLen]byte    // S', from WELCOME
	cookie     [cookieLen]byte // from WELCOME, returned in INITIATE
	shared     [32]byte        // C'->S' and back: INITIATE, READY, every MESSAGE
	vouchKey   [32]byte        // C->S', seals the vouch
}

// sendHello makes our short-term key pair and sends HELLO, short nonce 1:
// C' and a box of 64 zeros that only the holder of S's secret opens.
func (c *clientHandshake) sendHello(plain []byte) error {
	var err error
	c.cPub, c.cSec, err = generateKey()
	c.keys.add(&c.cSec)
	if err != nil {
		return err
	}
	var nonce [24]byte
	hello := c.h.buf[:0]
	hello = append(hello, "\x05HELLO"...)
	hello = append(hello, curveVersionMajor, curveVersionMinor)
	clear(plain[:helloClientKey-helloPadding])
	hello = append(hello, plain[:helloClientKey-helloPadding]...) // anti-amplification padding: zeros
	hello = append(hello, c.cPub[:]...)
	copy(nonce[:], "CurveZMQHELLO---")
	binary.BigEndian.PutUint64(nonce[shortNoncePrefix:], 1)
	hello = append(hello, nonce[shortNoncePrefix:]...)
	c.keys.add(&c.helloKey)
	if !boxKey(&c.helloKey, (*[32]byte)(c.server), &c.cSec) {
		return fmt.Errorf("%w: CURVE: the server key %s is a point of small order", ErrRefused, c.server)
	}
	hello = box.SealAfterPrecomputation(hello, plain[:helloSigLen], &nonce, &c.helloKey)
	return c.h.writeCommand(hello)
}

// readWelcome reads WELCOME (or ERROR) and opens it: S' and the cookie.
// A box that does not open means the server does not hold S's secret.
func (c *clientHandshake) readWelcome(plain []byte) error {
	welcome, err := c.h.readCommand()
	if err != nil {
		return err
	}
	switch {
	case bytes.HasPrefix(welcome, []byte("\x05ERROR")):
		return peerError(welcome)
	case !bytes.HasPrefix(welcome, []byte("\x07WELCOME")):
		return bad("expected WELCOME, got %q", commandName(welcome))
	case len(welcome) != curveWelcomeSize:
		return bad("WELCOME of %d bytes (want %d)", len(welcome), curveWelcomeSize)
	}
	var nonce [24]byte
	copy(nonce[:longNoncePrefix], "WELCOME-")
	copy(nonce[longNoncePrefix:], welcome[welcomeNonce:welcomeBox])
	wp, ok := box.OpenAfterPrecomputation(plain[:0], welcome[welcomeBox:], &nonce, &c.helloKey)
	if !ok {
		return fmt.Errorf("%w: CURVE: WELCOME does not open: the server does not hold the secret key of %s", ErrRefused, c.server)
	}
	copy(c.sPrime[:], wp[:welcomeCookie])
	copy(c.cookie[:], wp[welcomeCookie:welcomePlainLen])
	c.keys.add(&c.shared)
	if !boxKey(&c.shared, &c.sPrime, &c.cSec) {
		return bad("WELCOME's short-term key is a point of small order")
	}
	return nil
}

// sendInitiate sends INITIATE, short nonce 2: the cookie back, and in a
// box for S' our long-term key C, the vouch (C' and S boxed from C to S')
// and our metadata.
func (c *clientHandshake) sendInitiate(plain, meta []byte) error {
	var vouchNonce [24]byte
	copy(vouchNonce[:], "VOUCH---")
	if _, err := rand.Read(vouchNonce[longNoncePrefix:]); err != nil {
		return err
	}
	var vp [2 * keyLen]byte
	copy(vp[:keyLen], c.cPub[:])
	copy(vp[keyLen:], c.server[:])
	c.keys.add(&c.vouchKey)
	boxKey(&c.vouchKey, &c.sPrime, (*[32]byte)(&c.kp.Secret)) // sPrime's order was checked with WELCOME
	var vouch [vouchLen]byte
	box.SealAfterPrecomputation(vouch[:0], vp[:], &vouchNonce, &c.vouchKey)
	clear(c.vouchKey[:])
	ip := plain[:0]
	ip = append(ip, c.kp.Public[:]...)
	ip = append(ip, vouchNonce[longNoncePrefix:]...)
	ip = append(ip, vouch[:]...)
	ip = append(ip, meta...)
	var nonce [24]byte
	init := c.h.buf[:0]
	init = append(init, "\x08INITIATE"...)
	init = append(init, c.cookie[:]...)
	copy(nonce[:], "CurveZMQINITIATE")
	binary.BigEndian.PutUint64(nonce[shortNoncePrefix:], 2)
	init = append(init, nonce[shortNoncePrefix:]...)
	init = box.SealAfterPrecomputation(init, ip, &nonce, &c.shared)
	return c.h.writeCommand(init)
}

// readReady reads READY (or ERROR: refused) and returns the server's
// metadata and READY's short nonce, the last the server used.
func (c *clientHandshake) readReady(plain []byte) (zmtpMeta, uint64, error) {
	ready, err := c.h.readCommand()
	if err != nil {
		return zmtpMeta{}, 0, err
	}
	switch {
	case bytes.HasPrefix(ready, []byte("\x05ERROR")):
		return zmtpMeta{}, 0, peerError(ready)
	case !bytes.HasPrefix(ready, []byte("\x05READY")):
		return zmtpMeta{}, 0, bad("expected READY, got %q", commandName(ready))
	case len(ready) < curveReadyMin:
		return zmtpMeta{}, 0, bad("READY of %d bytes (at least %d)", len(ready), curveReadyMin)
	}
	var nonce [24]byte
	copy(nonce[:], "CurveZMQREADY---")
	copy(nonce[shortNoncePrefix:], ready[readyNonce:readyBox])
	rn := binary.BigEndian.Uint64(ready[readyNonce:readyBox])
	rp, ok := box.OpenAfterPrecomputation(plain[:0], ready[readyBox:], &nonce, &c.shared)
	if !ok {
		return zmtpMeta{}, 0, bad("READY box does not open")
	}
	pm, err := parseMeta(rp)
	if err != nil {
		return zmtpMeta{}, 0, err
	}
	return pm, rn, nil
}

// curveServer runs the server side of the handshake after the greeting:
// HELLO, WELCOME, INITIATE, READY, or ERROR to the client in place of
// whichever step failed. authorize sees the client's proven long-term key
// and metadata and may refuse; its error's text is sent to the client in
// ERROR.
func curveServer(h *hsIO, kp *KeyPair, meta []byte, authorize func(client Key, pm zmtpMeta) error) (*curveCodec, zmtpMeta, Key, error) {
	fail := func(err error) (*curveCodec, zmtpMeta, Key, error) {
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			h.sendError(errorReason(err))
		}
		return nil, zmtpMeta{}, Key{}, err
	}
	if len(meta) > curveMetaMax {
		return fail(fmt.Errorf("%w: CURVE: our metadata is %d bytes", ErrTooLarge, len(meta)))
	}
	s := &serverHandshake{h: h, kp: kp}
	defer s.keys.wipe()
	var plain [initiateMeta + curveMetaMax]byte // each box's plaintext in turn
	if err := s.readHello(plain[:]); err != nil {
		return fail(err)
	}
	if err := s.sendWelcome(plain[:]); err != nil {
		return fail(err)
	}
	pm, peerNonce, err := s.readInitiate(plain[:])
	if err != nil {
		return fail(err)
	}
	if authorize != nil {
		if err := authorize(s.client, pm); err != nil {
			return fail(err)
		}
	}
	if err := s.sendReady(meta); err != nil {
		return fail(err)
	}
	return newCurveCodec(&s.shared, true, 1, peerNonce), pm, s.client, nil
}

// serverHandshake is what the server side of one handshake carries from
// one command to the next. Its secrets are listed in keys as each is made.
type serverHandshake struct {
	h    *hsIO
	kp   *KeyPair // S and s, ours
	keys hsKeys

	cPrime      [keyLen]byte     // C', the client's short-term key, from HELLO
	helloKey    [32]byte         // C'/s: opens HELLO and seals WELCOME
	sPub, sSec  [32]byte         // S' and s', our short-term keys
	cookieKey   [32]byte         // t, this connection's cookie key
	cookieNonce [24]byte         // "COOKIE--" and the cookie's long nonce
	cp          [2 * keyLen]byte // the cookie's plaintext, C' + s': cleared once sealed and once checked
	shared      [32]byte         // C'/s': INITIATE, READY, every MESSAGE
	vouchKey    [32]byte         // C/s': opens the vouch
	client      Key              // C, the client's long-term key, proven by the vouch
}

// readHello reads HELLO and opens its box of 64 zeros: a box that does
// not open means the client expects another server key.
func (s *serverHandshake) readHello(plain []byte) error {
	hello, err := s.h.readCommand()
	if err != nil {
		return err
	}
	switch {
	case !bytes.HasPrefix(hello, []byte("\x05HELLO")):
		return bad("expected HELLO, got %q", commandName(hello))
	case len(hello) != curveHelloSize:
		return bad("HELLO of %d bytes (want %d)", len(hello), curveHelloSize)
	case hello[helloVersion] != curveVersionMajor || hello[helloVersion+1] != curveVersionMinor:
		return bad("HELLO version %d.%d (want 1.0)", hello[helloVersion], hello[helloVersion+1])
	}
	copy(s.cPrime[:], hello[helloClientKey:helloNonce])
	var nonce [24]byte
	copy(nonce[:], "CurveZMQHELLO---")
	copy(nonce[shortNoncePrefix:], hello[helloNonce:helloBox])
	s.keys.add(&s.helloKey)
	if !boxKey(&s.helloKey, &s.cPrime, (*[32]byte)(&s.kp.Secret)) {
		return bad("HELLO's short-term key is a point of small order")
	}
	hp, ok := box.OpenAfterPrecomputation(plain[:0], hello[helloBox:curveHelloSize], &nonce, &s.helloKey)
	if !ok {
		return fmt.Errorf("%w: CURVE: HELLO does not open: the client expects another server key", ErrRefused)
	}
	if subtle.ConstantTimeCompare(hp, make([]byte, helloSigLen)) != 1 {
		return bad("HELLO signature box is not 64 zero bytes")
	}
	return nil
}

// sendWelcome makes our short-term key pair and this connection's cookie
// key, and sends WELCOME: S' and the cookie (C' + s' sealed under the
// cookie key), boxed for C'. The server keeps nothing else of the client
// until INITIATE brings the cookie back.
func (s *serverHandshake) sendWelcome(plain []byte) error {
	var err error
	s.sPub, s.sSec, err = generateKey()
	s.keys.add(&s.sSec)
	if err != nil {
		return err
	}
	s.keys.add(&s.cookieKey)
	copy(s.cookieNonce[:], "COOKIE--")
	if _, err := rand.Read(s.cookieKey[:]); err != nil {
		return err
	}
	if _, err := rand.Read(s.cookieNonce[longNoncePrefix:]); err != nil {
		return err
	}
	s.keys.add((*[32]byte)(s.cp[:keyLen]), (*[32]byte)(s.cp[keyLen:]))
	copy(s.cp[:keyLen], s.cPrime[:])
	copy(s.cp[keyLen:], s.sSec[:])
	var cookie [cookieBoxLen]byte
	secretbox.Seal(cookie[:0], s.cp[:], &s.cookieNonce, &s.cookieKey)
	clear(s.cp[:])
	wp := plain[:0]
	wp = append(wp, s.sPub[:]...)
	wp = append(wp, s.cookieNonce[longNoncePrefix:]...)
	wp = append(wp, cookie[:]...)
	var nonce [24]byte
	copy(nonce[:], "WELCOME-")
	if _, err := rand.Read(nonce[longNoncePrefix:]); err != nil {
		return err
	}
	welcome := s.h.buf[:0]
	welcome = append(welcome, "\x07WELCOME"...)
	welcome = append(welcome, nonce[longNoncePrefix:]...)
	welcome = box.SealAfterPrecomputation(welcome, wp, &nonce, &s.helloKey)
	return s.h.writeCommand(welcome)
}

// readInitiate reads INITIATE, checks that its cookie is this connection's
// and that its vouch proves the client's long-term key, and returns the
// client's metadata and INITIATE's short nonce, the last the client used.
func (s *serverHandshake) readInitiate(plain []byte) (zmtpMeta, uint64, error) {
	init, err := s.h.readCommand()
	if err != nil {
		return zmtpMeta{}, 0, err
	}
	switch {
	case !bytes.HasPrefix(init, []byte("\x08INITIATE")):
		return zmtpMeta{}, 0, bad("expected INITIATE, got %q", commandName(init))
	case len(init) < curveInitiateMin:
		return zmtpMeta{}, 0, bad("INITIATE of %d bytes (at least %d)", len(init), curveInitiateMin)
	}
	if err := s.openCookie(init); err != nil {
		return zmtpMeta{}, 0, err
	}
	s.keys.add(&s.shared)
	boxKey(&s.shared, &s.cPrime, &s.sSec) // cPrime's order was checked with HELLO
	var nonce [24]byte
	copy(nonce[:], "CurveZMQINITIATE")
	copy(nonce[shortNoncePrefix:], init[initiateNonce:initiateBox])
	in := binary.BigEndian.Uint64(init[initiateNonce:initiateBox])
	ip, ok := box.OpenAfterPrecomputation(plain[:0], init[initiateBox:], &nonce, &s.shared)
	if !ok {
		return zmtpMeta{}, 0, bad("INITIATE box does not open")
	}
	if err := s.checkVouch(ip); err != nil {
		return zmtpMeta{}, 0, err
	}
	clear(s.sSec[:])
	pm, err := parseMeta(ip[initiateMeta:])
	if err != nil {
		return zmtpMeta{}, 0, err
	}
	return pm, in, nil
}

// openCookie opens the cookie INITIATE returns and checks that it holds
// this connection's C' and s'.
func (s *serverHandshake) openCookie(init []byte) error {
	copy(s.cookieNonce[longNoncePrefix:], init[initiateCookie:initiateCookieBox])
	ck, ok := secretbox.Open(s.cp[:0], init[initiateCookieBox:initiateNonce], &s.cookieNonce, &s.cookieKey)
	if !ok {
		return bad("INITIATE cookie does not open")
	}
	if subtle.ConstantTimeCompare(ck[:keyLen], s.cPrime[:]) != 1 || subtle.ConstantTimeCompare(ck[keyLen:], s.sSec[:]) != 1 {
		return bad("INITIATE cookie is not ours")
	}
	clear(s.cp[:])
	return nil
}

// checkVouch reads the client's long-term key C from INITIATE's
// plaintext ip and opens the vouch, which C boxed for S': it must name
// this connection's C' and our S.
func (s *serverHandshake) checkVouch(ip []byte) error {
	copy(s.client[:], ip[:initiateVouchNonce])
	var vouchNonce [24]byte
	copy(vouchNonce[:], "VOUCH---")
	copy(vouchNonce[longNoncePrefix:], ip[initiateVouchNonce:initiateVouch])
	var vp [2 * keyLen]byte
	s.keys.add(&s.vouchKey)
	if !boxKey(&s.vouchKey, (*[32]byte)(&s.client), &s.sSec) {
		return bad("INITIATE's client key is a point of small order")
	}
	vouch, ok := box.OpenAfterPrecomputation(vp[:0], ip[initiateVouch:initiateMeta], &vouchNonce, &s.vouchKey)
	clear(s.vouchKey[:])
	if !ok {
		return bad("INITIATE vouch does not open")
	}
	if subtle.ConstantTimeCompare(vouch[:keyLen], s.cPrime[:]) != 1 || subtle.ConstantTimeCompare(vouch[keyLen:], s.kp.Public[:]) != 1 {
		return bad("INITIATE vouch does not vouch for this connection")
	}
	return nil
}

// sendReady sends READY, short nonce 1: our metadata, boxed for C'.
func (s *serverHandshake) sendReady(meta []byte) error {
	var nonce [24]byte
	copy(nonce[:], "CurveZMQREADY---")
	binary.BigEndian.PutUint64(nonce[shortNoncePrefix:], 1)
	ready := s.h.buf[:0]
	ready = append(ready, "\x05READY"...)
	ready = append(ready, nonce[shortNoncePrefix:]...)
	ready = box.SealAfterPrecomputation(ready, meta, &nonce, &s.shared)
	return s.h.writeCommand(ready)
}

// errorReason is the text sent in ERROR for err: the refusal's reason,
// without the package's sentinel prefixes.
func errorReason(err error) string {
	s := err.Error()
	for _, p := range []string{ErrRefused.Error() + ": ", ErrProtocol.Error() + ": ", ErrTooLarge.Error() + ": "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}
