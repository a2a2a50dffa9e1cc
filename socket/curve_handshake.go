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

// curveClient runs the client side of the handshake after the greeting.
// server is the server's long-term public key, kp ours.
func curveClient(h *hsIO, server *Key, kp *KeyPair, meta []byte) (*curveCodec, zmtpMeta, error) {
	if len(meta) > curveMetaMax {
		return nil, zmtpMeta{}, fmt.Errorf("%w: CURVE: our metadata is %d bytes", ErrTooLarge, len(meta))
	}
	var keys hsKeys
	defer keys.wipe()
	cPub, cSec, err := generateKey()
	keys.add(&cSec)
	if err != nil {
		return nil, zmtpMeta{}, err
	}
	sk := (*[32]byte)(server)
	var nonce [24]byte
	var plain [initiateMeta + curveMetaMax]byte

	// HELLO, short nonce 1.
	hello := h.buf[:0]
	hello = append(hello, "\x05HELLO"...)
	hello = append(hello, curveVersionMajor, curveVersionMinor)
	hello = append(hello, plain[:helloClientKey-helloPadding]...) // anti-amplification padding: zeros
	hello = append(hello, cPub[:]...)
	copy(nonce[:], "CurveZMQHELLO---")
	binary.BigEndian.PutUint64(nonce[shortNoncePrefix:], 1)
	hello = append(hello, nonce[shortNoncePrefix:]...)
	// One key for C'->S in HELLO and S->C' in WELCOME: computed once.
	var helloKey [32]byte
	keys.add(&helloKey)
	if !boxKey(&helloKey, sk, &cSec) {
		return nil, zmtpMeta{}, fmt.Errorf("%w: CURVE: the server key %s is a point of small order", ErrRefused, server)
	}
	hello = box.SealAfterPrecomputation(hello, plain[:helloSigLen], &nonce, &helloKey)
	if err := h.writeCommand(hello); err != nil {
		return nil, zmtpMeta{}, err
	}

	// WELCOME: S' and the cookie.
	welcome, err := h.readCommand()
	if err != nil {
		return nil, zmtpMeta{}, err
	}
	switch {
	case bytes.HasPrefix(welcome, []byte("\x05ERROR")):
		return nil, zmtpMeta{}, peerError(welcome)
	case !bytes.HasPrefix(welcome, []byte("\x07WELCOME")):
		return nil, zmtpMeta{}, bad("expected WELCOME, got %q", commandName(welcome))
	case len(welcome) != curveWelcomeSize:
		return nil, zmtpMeta{}, bad("WELCOME of %d bytes (want %d)", len(welcome), curveWelcomeSize)
	}
	copy(nonce[:longNoncePrefix], "WELCOME-")
	copy(nonce[longNoncePrefix:], welcome[welcomeNonce:welcomeBox])
	wp, ok := box.OpenAfterPrecomputation(plain[:0], welcome[welcomeBox:], &nonce, &helloKey)
	if !ok {
		return nil, zmtpMeta{}, fmt.Errorf("%w: CURVE: WELCOME does not open: the server does not hold the secret key of %s", ErrRefused, server)
	}
	var sPrime [keyLen]byte
	var cookie [cookieLen]byte
	copy(sPrime[:], wp[:welcomeCookie])
	copy(cookie[:], wp[welcomeCookie:welcomePlainLen])
	var shared [32]byte
	keys.add(&shared)
	if !boxKey(&shared, &sPrime, &cSec) {
		return nil, zmtpMeta{}, bad("WELCOME's short-term key is a point of small order")
	}

	// INITIATE, short nonce 2: C, the vouch and our metadata.
	var vouchNonce [24]byte
	copy(vouchNonce[:], "VOUCH---")
	if _, err := rand.Read(vouchNonce[longNoncePrefix:]); err != nil {
		return nil, zmtpMeta{}, err
	}
	var vp [2 * keyLen]byte
	copy(vp[:keyLen], cPub[:])
	copy(vp[keyLen:], server[:])
	var vouchKey [32]byte
	keys.add(&vouchKey)
	boxKey(&vouchKey, &sPrime, (*[32]byte)(&kp.Secret)) // sPrime's order was checked above
	var vouch [vouchLen]byte
	box.SealAfterPrecomputation(vouch[:0], vp[:], &vouchNonce, &vouchKey)
	clear(vouchKey[:])
	ip := plain[:0]
	ip = append(ip, kp.Public[:]...)
	ip = append(ip, vouchNonce[longNoncePrefix:]...)
	ip = append(ip, vouch[:]...)
	ip = append(ip, meta...)
	init := h.buf[:0]
	init = append(init, "\x08INITIATE"...)
	init = append(init, cookie[:]...)
	copy(nonce[:], "CurveZMQINITIATE")
	binary.BigEndian.PutUint64(nonce[shortNoncePrefix:], 2)
	init = append(init, nonce[shortNoncePrefix:]...)
	init = box.SealAfterPrecomputation(init, ip, &nonce, &shared)
	if err := h.writeCommand(init); err != nil {
		return nil, zmtpMeta{}, err
	}

	// READY (or ERROR: refused).
	ready, err := h.readCommand()
	if err != nil {
		return nil, zmtpMeta{}, err
	}
	switch {
	case bytes.HasPrefix(ready, []byte("\x05ERROR")):
		return nil, zmtpMeta{}, peerError(ready)
	case !bytes.HasPrefix(ready, []byte("\x05READY")):
		return nil, zmtpMeta{}, bad("expected READY, got %q", commandName(ready))
	case len(ready) < curveReadyMin:
		return nil, zmtpMeta{}, bad("READY of %d bytes (at least %d)", len(ready), curveReadyMin)
	}
	copy(nonce[:], "CurveZMQREADY---")
	copy(nonce[shortNoncePrefix:], ready[readyNonce:readyBox])
	rn := binary.BigEndian.Uint64(ready[readyNonce:readyBox])
	rp, ok := box.OpenAfterPrecomputation(plain[:0], ready[readyBox:], &nonce, &shared)
	if !ok {
		return nil, zmtpMeta{}, bad("READY box does not open")
	}
	pm, err := parseMeta(rp)
	if err != nil {
		return nil, zmtpMeta{}, err
	}
	return newCurveCodec(&shared, false, 2, rn), pm, nil
}

// curveServer runs the server side of the handshake after the greeting.
// authorize sees the client's proven long-term key and metadata and may
// refuse; its error's text is sent to the client in ERROR.
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
	sk := (*[32]byte)(&kp.Secret)
	var nonce [24]byte
	var plain [initiateMeta + curveMetaMax]byte
	var keys hsKeys
	defer keys.wipe()

	// HELLO.
	hello, err := h.readCommand()
	if err != nil {
		return fail(err)
	}
	switch {
	case !bytes.HasPrefix(hello, []byte("\x05HELLO")):
		return fail(bad("expected HELLO, got %q", commandName(hello)))
	case len(hello) != curveHelloSize:
		return fail(bad("HELLO of %d bytes (want %d)", len(hello), curveHelloSize))
	case hello[helloVersion] != curveVersionMajor || hello[helloVersion+1] != curveVersionMinor:
		return fail(bad("HELLO version %d.%d (want 1.0)", hello[helloVersion], hello[helloVersion+1]))
	}
	var cPrime [keyLen]byte
	copy(cPrime[:], hello[helloClientKey:helloNonce])
	copy(nonce[:], "CurveZMQHELLO---")
	copy(nonce[shortNoncePrefix:], hello[helloNonce:helloBox])
	var helloKey [32]byte // C'/s: opens HELLO and seals WELCOME
	keys.add(&helloKey)
	if !boxKey(&helloKey, &cPrime, sk) {
		return fail(bad("HELLO's short-term key is a point of small order"))
	}
	hp, ok := box.OpenAfterPrecomputation(plain[:0], hello[helloBox:curveHelloSize], &nonce, &helloKey)
	if !ok {
		return fail(fmt.Errorf("%w: CURVE: HELLO does not open: the client expects another server key", ErrRefused))
	}
	if subtle.ConstantTimeCompare(hp, make([]byte, helloSigLen)) != 1 {
		return fail(bad("HELLO signature box is not 64 zero bytes"))
	}

	// WELCOME: our short-term key S' and the cookie.
	sPub, sSec, err := generateKey()
	keys.add(&sSec)
	if err != nil {
		return fail(err)
	}
	var cookieKey [32]byte
	keys.add(&cookieKey)
	var cookieNonce [24]byte
	copy(cookieNonce[:], "COOKIE--")
	if _, err := rand.Read(cookieKey[:]); err != nil {
		return fail(err)
	}
	if _, err := rand.Read(cookieNonce[longNoncePrefix:]); err != nil {
		return fail(err)
	}
	var cp [2 * keyLen]byte // the cookie's plaintext, C' + s'
	keys.add((*[32]byte)(cp[:keyLen]), (*[32]byte)(cp[keyLen:]))
	copy(cp[:keyLen], cPrime[:])
	copy(cp[keyLen:], sSec[:])
	var cookie [cookieBoxLen]byte
	secretbox.Seal(cookie[:0], cp[:], &cookieNonce, &cookieKey)
	clear(cp[:])
	wp := plain[:0]
	wp = append(wp, sPub[:]...)
	wp = append(wp, cookieNonce[longNoncePrefix:]...)
	wp = append(wp, cookie[:]...)
	copy(nonce[:], "WELCOME-")
	if _, err := rand.Read(nonce[longNoncePrefix:]); err != nil {
		return fail(err)
	}
	welcome := h.buf[:0]
	welcome = append(welcome, "\x07WELCOME"...)
	welcome = append(welcome, nonce[longNoncePrefix:]...)
	welcome = box.SealAfterPrecomputation(welcome, wp, &nonce, &helloKey)
	if err := h.writeCommand(welcome); err != nil {
		return fail(err)
	}

	// INITIATE.
	init, err := h.readCommand()
	if err != nil {
		return fail(err)
	}
	switch {
	case !bytes.HasPrefix(init, []byte("\x08INITIATE")):
		return fail(bad("expected INITIATE, got %q", commandName(init)))
	case len(init) < curveInitiateMin:
		return fail(bad("INITIATE of %d bytes (at least %d)", len(init), curveInitiateMin))
	}
	copy(cookieNonce[longNoncePrefix:], init[initiateCookie:initiateCookieBox])
	ck, ok := secretbox.Open(cp[:0], init[initiateCookieBox:initiateNonce], &cookieNonce, &cookieKey)
	if !ok {
		return fail(bad("INITIATE cookie does not open"))
	}
	if subtle.ConstantTimeCompare(ck[:keyLen], cPrime[:]) != 1 || subtle.ConstantTimeCompare(ck[keyLen:], sSec[:]) != 1 {
		return fail(bad("INITIATE cookie is not ours"))
	}
	clear(cp[:])
	var shared [32]byte
	keys.add(&shared)
	boxKey(&shared, &cPrime, &sSec) // cPrime's order was checked with HELLO
	copy(nonce[:], "CurveZMQINITIATE")
	copy(nonce[shortNoncePrefix:], init[initiateNonce:initiateBox])
	in := binary.BigEndian.Uint64(init[initiateNonce:initiateBox])
	ip, ok := box.OpenAfterPrecomputation(plain[:0], init[initiateBox:], &nonce, &shared)
	if !ok {
		return fail(bad("INITIATE box does not open"))
	}
	var client Key
	copy(client[:], ip[:initiateVouchNonce])
	var vouchNonce [24]byte
	copy(vouchNonce[:], "VOUCH---")
	copy(vouchNonce[longNoncePrefix:], ip[initiateVouchNonce:initiateVouch])
	var vp [2 * keyLen]byte
	var vouchKey [32]byte
	keys.add(&vouchKey)
	if !boxKey(&vouchKey, (*[32]byte)(&client), &sSec) {
		return fail(bad("INITIATE's client key is a point of small order"))
	}
	vouch, ok := box.OpenAfterPrecomputation(vp[:0], ip[initiateVouch:initiateMeta], &vouchNonce, &vouchKey)
	clear(vouchKey[:])
	if !ok {
		return fail(bad("INITIATE vouch does not open"))
	}
	if subtle.ConstantTimeCompare(vouch[:keyLen], cPrime[:]) != 1 || subtle.ConstantTimeCompare(vouch[keyLen:], kp.Public[:]) != 1 {
		return fail(bad("INITIATE vouch does not vouch for this connection"))
	}
	clear(sSec[:])
	pm, err := parseMeta(ip[initiateMeta:])
	if err != nil {
		return fail(err)
	}
	if authorize != nil {
		if err := authorize(client, pm); err != nil {
			return fail(err)
		}
	}

	// READY, short nonce 1.
	copy(nonce[:], "CurveZMQREADY---")
	binary.BigEndian.PutUint64(nonce[shortNoncePrefix:], 1)
	ready := h.buf[:0]
	ready = append(ready, "\x05READY"...)
	ready = append(ready, nonce[shortNoncePrefix:]...)
	ready = box.SealAfterPrecomputation(ready, meta, &nonce, &shared)
	if err := h.writeCommand(ready); err != nil {
		return fail(err)
	}
	return newCurveCodec(&shared, true, 1, in), pm, client, nil
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
