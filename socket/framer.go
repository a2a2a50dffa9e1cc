package socket

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/go-zeromq/zmq4"
)

// The framer is the one ZMTP 3 frame codec (RFC 23): every frame header
// this package reads or writes is decoded or encoded here, by the pipe's
// reader and writer and by the handshake guard. A frame is a header (a
// flags byte, then the body size in one byte, or in eight with flagLong)
// and a body; a command frame's body is a name (one length byte, then the
// name) and data.
//
// Security mechanisms that transform message frames sit beside it, in
// frameCipher: today any zmq4.Security other than NULL and PLAIN, where
// CURVE's MESSAGE boxes will go.

// ZMTP 3 framing constants.
const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
	flagsValid  = flagMore | flagLong | flagCommand

	maxHeaderLen = 9 // a long header: flags and an 8-byte size

	greetingLen       = 64
	handshakeFrameMax = 64 << 10 // READY/HELLO/... commands during the handshake
	readBufSize       = 64 << 10
)

// frameHeader is a decoded frame header.
type frameHeader struct {
	flags byte
	size  uint64
}

func (h frameHeader) more() bool    { return h.flags&flagMore != 0 }
func (h frameHeader) command() bool { return h.flags&flagCommand != 0 }

// headerLen is the length of a header whose first byte is flags.
func headerLen(flags byte) int {
	if flags&flagLong != 0 {
		return maxHeaderLen
	}
	return 2
}

// appendHeader appends the header of a frame of size bytes: short up to 255
// bytes, long above.
func appendHeader(b []byte, flags byte, size int) []byte {
	if size > 255 {
		b = append(b, flags|flagLong)
		return binary.BigEndian.AppendUint64(b, uint64(size))
	}
	return append(b, flags, byte(size))
}

// decodeHeader decodes the header at the start of b. It returns n == 0 and
// no error when b holds only part of it. It fails with ErrProtocol for
// reserved flag bits, and with ErrTooLarge for a size over limit, before
// anything is allocated for the body.
func decodeHeader(b []byte, limit uint64) (h frameHeader, n int, err error) {
	if len(b) < 1 {
		return h, 0, nil
	}
	h.flags = b[0]
	if h.flags&^flagsValid != 0 {
		return h, 0, fmt.Errorf("%w: reserved frame flag bits set (0x%02x)", ErrProtocol, h.flags)
	}
	n = headerLen(h.flags)
	if len(b) < n {
		return h, 0, nil
	}
	if n == 2 {
		h.size = uint64(b[1])
	} else {
		h.size = binary.BigEndian.Uint64(b[1:9])
	}
	if h.size > limit {
		return h, 0, fmt.Errorf("%w: frame of %d bytes (limit %d)", ErrTooLarge, h.size, limit)
	}
	return h, n, nil
}

// maxCommandName is the longest command name the one length byte allows.
const maxCommandName = 255

// commandLen is the body length of a command frame, or an error for a name
// that does not fit its length byte.
func commandLen(name string, data []byte) (int, error) {
	if len(name) == 0 || len(name) > maxCommandName {
		return 0, fmt.Errorf("%w: command name of %d bytes (want 1..%d)", ErrProtocol, len(name), maxCommandName)
	}
	return 1 + len(name) + len(data), nil
}

// appendCommandBody appends a command frame's body (checked by commandLen).
func appendCommandBody(b []byte, name string, data []byte) []byte {
	b = append(b, byte(len(name)))
	b = append(b, name...)
	return append(b, data...)
}

// parseCommand splits a command frame's body into its name and data.
func parseCommand(body []byte) (name string, data []byte, err error) {
	if len(body) == 0 || int(body[0]) > len(body)-1 {
		return "", nil, fmt.Errorf("%w: malformed command", ErrProtocol)
	}
	return string(body[1 : 1+body[0]]), body[1+body[0]:], nil
}

// frameReader reads frames from a connection's buffered reader, for the
// pipe's reader goroutine. Its methods return io.EOF for a connection that
// ends, even mid-frame.
type frameReader struct {
	br    *bufio.Reader
	limit uint64 // the largest frame accepted (the socket's MaxMsgSize)
	hdr   [maxHeaderLen]byte
}

// header reads the next frame header.
func (r *frameReader) header() (frameHeader, error) {
	if err := readFull(r.br, r.hdr[:2]); err != nil {
		return frameHeader{}, readErr(err)
	}
	if n := headerLen(r.hdr[0]); n > 2 {
		if r.hdr[0]&^flagsValid == 0 { // a bad flags byte fails without reading on
			if err := readFull(r.br, r.hdr[2:n]); err != nil {
				return frameHeader{}, readErr(err)
			}
		}
	}
	h, _, err := decodeHeader(r.hdr[:], r.limit)
	return h, err
}

// body reads a frame body into buf.
func (r *frameReader) body(buf []byte) error {
	return readErr(readFull(r.br, buf))
}

// buffered reports whether a whole next frame is already buffered, so that
// reading it cannot block.
func (r *frameReader) buffered() bool {
	n := r.br.Buffered()
	if n < 2 {
		return false
	}
	b, _ := r.br.Peek(min(n, maxHeaderLen))
	h, hl, err := decodeHeader(b, ^uint64(0))
	if err != nil {
		return true // reading it fails at once
	}
	return hl > 0 && uint64(n-hl) >= h.size
}

// readFull is io.ReadFull on the concrete reader, so that the buffer does
// not escape to the heap.
func readFull(r *bufio.Reader, buf []byte) error {
	for n := 0; n < len(buf); {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			if n == len(buf) {
				return nil
			}
			if n > 0 && err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	return err
}

// frameCipher encrypts and decrypts frames for a security mechanism that
// requires it (not NULL or PLAIN, which send frames as they are): CURVE's
// MESSAGE boxes (curve.go), or a zmq4.Security that encrypts frame bodies.
// A nil *frameCipher is the plain-text case.
//
// CURVE wraps every frame, commands included, in a MESSAGE whose box holds
// the frame's flags: unwrap reads one and returns the header of the frame
// inside it, read decrypts its body into the memory the reader chose. Each
// frame takes the next nonce as it is queued, so under CURVE nothing may
// overtake what is queued: there is one lane (lanes).
type frameCipher struct {
	sec   zmq4.Security
	curve *curveCodec
}

// newFrameCipher returns the cipher for sec, or nil when sec sends frames
// in the clear.
func newFrameCipher(sec zmq4.Security) *frameCipher {
	if t := sec.Type(); t == zmq4.NullSecurity || t == zmq4.PlainSecurity {
		return nil
	}
	return &frameCipher{sec: sec}
}

// seal appends m's frames to b, encrypted.
func (c *frameCipher) seal(b *batch, m Msg) error {
	if c.curve != nil {
		appendCurve(b, c.curve, m)
		return nil
	}
	last := len(m.Frames) - 1
	for i, f := range m.Frames {
		var buf bytes.Buffer
		if _, err := c.sec.Encrypt(&buf, f); err != nil {
			return fmt.Errorf("socket: encrypt: %w", err)
		}
		var fl byte
		if i < last {
			fl = flagMore
		}
		b.appendFrame(fl, buf.Bytes())
	}
	return nil
}

// command appends a command frame to b, encrypted.
func (c *frameCipher) command(b *batch, name string, data []byte) error {
	if c.curve == nil {
		return b.appendCommand(name, data)
	}
	return b.appendCurveCommand(c.curve, name, data)
}

// lanes reports whether urgent messages and commands may overtake queued
// ones (not under CURVE; always in the clear).
func (c *frameCipher) lanes() bool { return c == nil || c.curve == nil }

// fresh reports whether a received frame must be read into fresh memory
// (open replaces it) rather than memory from the slabs and the pool.
func (c *frameCipher) fresh() bool { return c != nil && c.curve == nil }

// unwrap reads the MESSAGE that header h starts (CURVE) and returns the
// header of the frame inside; otherwise it returns h.
func (c *frameCipher) unwrap(fr *frameReader, h frameHeader) (frameHeader, error) {
	if c.curve == nil {
		return h, nil
	}
	return c.curve.unwrap(fr, h)
}

// read reads the body of the frame whose header unwrap returned into buf.
func (c *frameCipher) read(fr *frameReader, buf []byte) error {
	if c.curve == nil {
		return fr.body(buf)
	}
	return c.curve.read(fr, buf)
}

// wipeSend and wipeRecv clear the key material of CURVE's send and receive
// halves (see curveCodec.wipeSend): the first under the pipe's write lock
// once it is closed to senders, the second by the reader as it ends. wipe
// is both, for a pipe that never started.
func (c *frameCipher) wipeSend() {
	if c != nil && c.curve != nil {
		c.curve.wipeSend()
	}
}

func (c *frameCipher) wipeRecv() {
	if c != nil && c.curve != nil {
		c.curve.wipeRecv()
	}
}

func (c *frameCipher) wipe() {
	c.wipeSend()
	c.wipeRecv()
}

// open decrypts a received frame body.
func (c *frameCipher) open(body []byte) ([]byte, error) {
	if c.curve != nil {
		return body, nil // read decrypted it in place
	}
	var buf bytes.Buffer
	if _, err := c.sec.Decrypt(&buf, body); err != nil {
		return nil, fmt.Errorf("%w: decrypt: %v", ErrProtocol, err)
	}
	return buf.Bytes(), nil
}
