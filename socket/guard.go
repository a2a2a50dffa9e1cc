package socket

import (
	"bufio"
	"bytes"
	"fmt"
	"net"

	"github.com/go-zeromq/zmq4"
)

// guardConn is the net.Conn handed to zmq4.Open. It buffers reads and, while
// zmq4 performs the greeting and security handshake, parses the ZMTP stream
// as it passes: the greeting signature is checked byte by byte and every
// frame header's declared size is checked before zmq4 sees it (zmq4 would
// otherwise allocate whatever size a header announces). Reads never cross a
// frame boundary, so once the handshake is done the bytes that follow it are
// still in br for the pipe's own frame reader.
type guardConn struct {
	net.Conn
	br  *bufio.Reader
	src *connReader // what br reads from (leave.go)

	greetPos int // bytes of the greeting already passed through
	hdr      [maxHeaderLen]byte
	hdrLen   int // size of the pending header (0: none parsed)
	hdrPos   int // bytes of hdr already returned
	bodyLeft uint64

	// What the peer said, for the error of a handshake zmq4 failed: the
	// mechanism in its greeting, and the start of the last command it
	// sent (an ERROR's reason).
	mech  [20]byte
	inCmd bool
	cmd   []byte
}

// cmdKeep is how much of a command the guard keeps: an ERROR in full.
const cmdKeep = 7 + 255

func newGuardConn(c net.Conn) *guardConn {
	src := &connReader{c: c}
	return &guardConn{Conn: c, br: bufio.NewReaderSize(src, readBufSize), src: src}
}

func (g *guardConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	switch {
	case g.greetPos < greetingLen:
		return g.readGreeting(p)
	case g.bodyLeft > 0 && g.hdrLen == 0: // the header first, even when read in pieces
		if uint64(len(p)) > g.bodyLeft {
			p = p[:g.bodyLeft]
		}
		n, err := g.br.Read(p)
		g.bodyLeft -= uint64(n)
		if g.inCmd && len(g.cmd) < cmdKeep {
			g.cmd = append(g.cmd, p[:min(n, cmdKeep-len(g.cmd))]...)
		}
		return n, err
	}
	if g.hdrLen == 0 {
		if err := g.parseHeader(); err != nil {
			return 0, err
		}
	}
	n := copy(p, g.hdr[g.hdrPos:g.hdrLen])
	g.hdrPos += n
	if g.hdrPos == g.hdrLen {
		g.hdrLen, g.hdrPos = 0, 0
	}
	return n, nil
}

func (g *guardConn) readGreeting(p []byte) (int, error) {
	if want := greetingLen - g.greetPos; len(p) > want {
		p = p[:want]
	}
	n, err := g.br.Read(p)
	for i := 0; i < n; i++ {
		if err := checkGreetingByte(g.greetPos+i, p[i]); err != nil {
			return 0, err
		}
		if pos := g.greetPos + i; pos >= 12 && pos < 32 {
			g.mech[pos-12] = p[i]
		}
	}
	g.greetPos += n
	return n, err
}

// checkGreetingByte validates the parts of a ZMTP greeting that tell a ZMTP
// peer from anything else: the signature (0xFF, 8 bytes, 0x7F) and major
// version 3 or later.
func checkGreetingByte(pos int, b byte) error {
	switch {
	case pos == 0 && b != 0xFF:
		return fmt.Errorf("%w: not a ZMTP greeting (first byte 0x%02x)", ErrProtocol, b)
	case pos == 9 && b&0x01 == 0:
		return fmt.Errorf("%w: not a ZMTP greeting (signature byte 0x%02x)", ErrProtocol, b)
	case pos == 10 && b < 3:
		return fmt.Errorf("%w: ZMTP version %d not supported (need 3)", ErrProtocol, b)
	}
	return nil
}

// parseHeader decodes the next frame header with the framer, checking it
// before zmq4 reads it, and holds it in g.hdr for Read to pass on.
func (g *guardConn) parseHeader() error {
	b, err := g.br.Peek(1)
	if err != nil {
		return err
	}
	if b[0]&flagMore != 0 && b[0]&^flagsValid == 0 {
		// Only single-frame commands belong in a handshake; zmq4 would
		// gather chained frames without limit.
		return fmt.Errorf("%w: multi-frame message during the handshake", ErrProtocol)
	}
	b, err = g.br.Peek(headerLen(b[0]))
	if err != nil && len(b) == 0 {
		return err
	}
	h, hl, err2 := decodeHeader(b, handshakeFrameMax)
	switch {
	case err2 != nil:
		return fmt.Errorf("handshake: %w", err2)
	case hl == 0:
		return err // the connection ended inside the header
	}
	copy(g.hdr[:], b[:hl])
	g.br.Discard(hl)
	g.hdrLen, g.hdrPos, g.bodyLeft = hl, 0, h.size
	g.inCmd, g.cmd = h.command(), g.cmd[:0]
	return nil
}

// peerMechanism is the mechanism the peer's greeting named, or "" when
// the greeting did not get that far.
func (g *guardConn) peerMechanism() string {
	if g.greetPos < 32 {
		return ""
	}
	return string(bytes.TrimRight(g.mech[:], "\x00"))
}

// peerRefusal is the ERROR the peer sent, if the last command it sent
// during the handshake was one.
func (g *guardConn) peerRefusal() error {
	if g.inCmd && bytes.HasPrefix(g.cmd, []byte("\x05ERROR")) {
		return peerError(g.cmd)
	}
	return nil
}

// Write goes straight to the connection: during the handshake only zmq4
// writes, and afterwards only the pipe's writer does.
func (g *guardConn) Write(p []byte) (int, error) { return g.Conn.Write(p) }

// openZMTP runs zmq4's greeting and security handshake over g. zmq4 parses
// what the peer sends in the handshake (metadata properties, PLAIN
// credentials) without checking every length against the data, so a
// malformed READY from any client can panic it (a property whose value
// length is cut off indexes past the end). Such a panic is confined to this
// connection's handshake: it becomes a protocol error, not a crash.
func openZMTP(g *guardConn, sec zmq4.Security, typ zmq4.SocketType, id []byte, server bool) (zc *zmq4.Conn, err error) {
	defer func() {
		if r := recover(); r != nil {
			zc, err = nil, fmt.Errorf("%w: malformed handshake (%v)", ErrProtocol, r)
		}
	}()
	return zmq4.Open(g, sec, typ, zmq4.SocketIdentity(id), server, nil)
}
