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
const (
	curveHelloSize    = 200
	curveWelcomeSize  = 168
	curveInitiateMin  = 257
	curveReadyMin     = 30
	curveCmdMax       = 8 << 10 // largest INITIATE or READY (with metadata) accepted
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
	if len(reason) > 255 {
		reason = reason[:255]
	}
	var b [7 + 255]byte
	n := copy(b[:], "\x05ERROR")
	b[n] = byte(len(reason))
	n++
	n += copy(b[n:], reason)
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
	if len(body) > 6 && int(body[6]) <= len(body)-7 {
		reason = string(body[7 : 7+body[6]])
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
	var plain [128 + curveMetaMax]byte

	// HELLO, short nonce 1.
	hello := h.buf[:0]
	hello = append(hello, "\x05HELLO"...)
	hello = append(hello, curveVersionMajor, curveVersionMinor)
	hello = append(hello, plain[:72]...) // anti-amplification padding: zeros
	hello = append(hello, cPub[:]...)
	copy(nonce[:], "CurveZMQHELLO---")
	binary.BigEndian.PutUint64(nonce[16:], 1)
	hello = append(hello, nonce[16:]...)
	// One key for C'->S in HELLO and S->C' in WELCOME: computed once.
	var helloKey [32]byte
	keys.add(&helloKey)
	if !boxKey(&helloKey, sk, &cSec) {
		return nil, zmtpMeta{}, fmt.Errorf("%w: CURVE: the server key %s is a point of small order", ErrRefused, server)
	}
	hello = box.SealAfterPrecomputation(hello, plain[:64], &nonce, &helloKey)
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
	copy(nonce[:8], "WELCOME-")
	copy(nonce[8:], welcome[8:24])
	wp, ok := box.OpenAfterPrecomputation(plain[:0], welcome[24:], &nonce, &helloKey)
	if !ok {
		return nil, zmtpMeta{}, fmt.Errorf("%w: CURVE: WELCOME does not open: the server does not hold the secret key of %s", ErrRefused, server)
	}
	var sPrime [32]byte
	var cookie [96]byte
	copy(sPrime[:], wp[:32])
	copy(cookie[:], wp[32:128])
	var shared [32]byte
	keys.add(&shared)
	if !boxKey(&shared, &sPrime, &cSec) {
		return nil, zmtpMeta{}, bad("WELCOME's short-term key is a point of small order")
	}

	// INITIATE, short nonce 2: C, the vouch and our metadata.
	var vouchNonce [24]byte
	copy(vouchNonce[:], "VOUCH---")
	if _, err := rand.Read(vouchNonce[8:]); err != nil {
		return nil, zmtpMeta{}, err
	}
	var vp [64]byte
	copy(vp[:32], cPub[:])
	copy(vp[32:], server[:])
	var vouchKey [32]byte
	keys.add(&vouchKey)
	boxKey(&vouchKey, &sPrime, (*[32]byte)(&kp.Secret)) // sPrime's order was checked above
	var vouch [80]byte
	box.SealAfterPrecomputation(vouch[:0], vp[:], &vouchNonce, &vouchKey)
	clear(vouchKey[:])
	ip := plain[:0]
	ip = append(ip, kp.Public[:]...)
	ip = append(ip, vouchNonce[8:]...)
	ip = append(ip, vouch[:]...)
	ip = append(ip, meta...)
	init := h.buf[:0]
	init = append(init, "\x08INITIATE"...)
	init = append(init, cookie[:]...)
	copy(nonce[:], "CurveZMQINITIATE")
	binary.BigEndian.PutUint64(nonce[16:], 2)
	init = append(init, nonce[16:]...)
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
	copy(nonce[16:], ready[6:14])
	rn := binary.BigEndian.Uint64(ready[6:14])
	rp, ok := box.OpenAfterPrecomputation(plain[:0], ready[14:], &nonce, &shared)
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
	var plain [128 + curveMetaMax]byte
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
	case hello[6] != curveVersionMajor || hello[7] != curveVersionMinor:
		return fail(bad("HELLO version %d.%d (want 1.0)", hello[6], hello[7]))
	}
	var cPrime [32]byte
	copy(cPrime[:], hello[80:112])
	copy(nonce[:], "CurveZMQHELLO---")
	copy(nonce[16:], hello[112:120])
	var helloKey [32]byte // C'/s: opens HELLO and seals WELCOME
	keys.add(&helloKey)
	if !boxKey(&helloKey, &cPrime, sk) {
		return fail(bad("HELLO's short-term key is a point of small order"))
	}
	hp, ok := box.OpenAfterPrecomputation(plain[:0], hello[120:200], &nonce, &helloKey)
	if !ok {
		return fail(fmt.Errorf("%w: CURVE: HELLO does not open: the client expects another server key", ErrRefused))
	}
	if subtle.ConstantTimeCompare(hp, make([]byte, 64)) != 1 {
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
	if _, err := rand.Read(cookieNonce[8:]); err != nil {
		return fail(err)
	}
	var cp [64]byte // the cookie's plaintext, C' + s'
	keys.add((*[32]byte)(cp[:32]), (*[32]byte)(cp[32:]))
	copy(cp[:32], cPrime[:])
	copy(cp[32:], sSec[:])
	var cookie [80]byte
	secretbox.Seal(cookie[:0], cp[:], &cookieNonce, &cookieKey)
	clear(cp[:])
	wp := plain[:0]
	wp = append(wp, sPub[:]...)
	wp = append(wp, cookieNonce[8:]...)
	wp = append(wp, cookie[:]...)
	copy(nonce[:], "WELCOME-")
	if _, err := rand.Read(nonce[8:]); err != nil {
		return fail(err)
	}
	welcome := h.buf[:0]
	welcome = append(welcome, "\x07WELCOME"...)
	welcome = append(welcome, nonce[8:]...)
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
	copy(cookieNonce[8:], init[9:25])
	ck, ok := secretbox.Open(cp[:0], init[25:105], &cookieNonce, &cookieKey)
	if !ok {
		return fail(bad("INITIATE cookie does not open"))
	}
	if subtle.ConstantTimeCompare(ck[:32], cPrime[:]) != 1 || subtle.ConstantTimeCompare(ck[32:], sSec[:]) != 1 {
		return fail(bad("INITIATE cookie is not ours"))
	}
	clear(cp[:])
	var shared [32]byte
	keys.add(&shared)
	boxKey(&shared, &cPrime, &sSec) // cPrime's order was checked with HELLO
	copy(nonce[:], "CurveZMQINITIATE")
	copy(nonce[16:], init[105:113])
	in := binary.BigEndian.Uint64(init[105:113])
	ip, ok := box.OpenAfterPrecomputation(plain[:0], init[113:], &nonce, &shared)
	if !ok {
		return fail(bad("INITIATE box does not open"))
	}
	var client Key
	copy(client[:], ip[:32])
	var vouchNonce [24]byte
	copy(vouchNonce[:], "VOUCH---")
	copy(vouchNonce[8:], ip[32:48])
	var vp [64]byte
	var vouchKey [32]byte
	keys.add(&vouchKey)
	if !boxKey(&vouchKey, (*[32]byte)(&client), &sSec) {
		return fail(bad("INITIATE's client key is a point of small order"))
	}
	vouch, ok := box.OpenAfterPrecomputation(vp[:0], ip[48:128], &vouchNonce, &vouchKey)
	clear(vouchKey[:])
	if !ok {
		return fail(bad("INITIATE vouch does not open"))
	}
	if subtle.ConstantTimeCompare(vouch[:32], cPrime[:]) != 1 || subtle.ConstantTimeCompare(vouch[32:], kp.Public[:]) != 1 {
		return fail(bad("INITIATE vouch does not vouch for this connection"))
	}
	clear(sSec[:])
	pm, err := parseMeta(ip[128:])
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
	binary.BigEndian.PutUint64(nonce[16:], 1)
	ready := h.buf[:0]
	ready = append(ready, "\x05READY"...)
	ready = append(ready, nonce[16:]...)
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
