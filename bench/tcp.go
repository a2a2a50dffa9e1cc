package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// TCP is the floor: length-prefixed records (4-byte big-endian length, then
// the payload) on plain TCP connections, each side with a 64 KiB bufio
// buffer. The sender writes on its own goroutine and flushes when its
// buffer fills or the harness pauses; a receiver reads on its own. PUSH is
// round-robin over the connections, PUB writes every record to every
// connection (a slow reader blocks the writer: there is no queue to drop
// from), REQ/REP is an echo with a flush per message.
type TCP struct{}

const tcpBuf = 64 << 10

// maxRecord bounds what a receiver accepts.
const maxRecord = 64 << 20

// Name implements benchcore.Stack.
func (TCP) Name() string { return benchcore.RefTCP }

// pair returns n connected (server side, client side) connection pairs.
func tcpPairs(ctx context.Context, n int) (srv, cli []net.Conn, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	var d net.Dialer
	for range n {
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			closeConns(srv, cli)
			return nil, nil, err
		}
		cli = append(cli, c)
		s, err := ln.Accept()
		if err != nil {
			closeConns(srv, cli)
			return nil, nil, err
		}
		srv = append(srv, s)
	}
	return srv, cli, nil
}

func closeConns(sets ...[]net.Conn) error {
	var errs []error
	for _, cs := range sets {
		for _, c := range cs {
			if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Pipeline implements benchcore.Stack.
func (TCP) Pipeline(ctx context.Context, n int) (*benchcore.Topology, error) {
	return tcpFan(ctx, n, false)
}

// PubSub implements benchcore.Stack.
func (TCP) PubSub(ctx context.Context, n int) (*benchcore.Topology, error) {
	return tcpFan(ctx, n, true)
}

func tcpFan(ctx context.Context, n int, all bool) (*benchcore.Topology, error) {
	srv, cli, err := tcpPairs(ctx, n)
	if err != nil {
		return nil, err
	}
	w := &tcpWriter{all: all}
	for _, c := range srv {
		w.ws = append(w.ws, &tcpOut{c: c, w: bufio.NewWriterSize(c, tcpBuf)})
	}
	w.in.fn = func() { closeConns(srv) }
	t := &benchcore.Topology{Send: w, Close: func() error { return closeConns(srv, cli) }}
	for _, c := range cli {
		t.Recv = append(t.Recv, newTCPReader(c))
	}
	return t, nil
}

type tcpOut struct {
	c    net.Conn
	w    *bufio.Writer
	dead bool
}

// tcpWriter sends records round-robin (all=false) or to every connection.
// A connection whose write fails is dropped; Send fails once none is left.
type tcpWriter struct {
	ws   []*tcpOut
	all  bool
	next int
	hdr  [4]byte
	in   interrupter
}

func (w *tcpWriter) Send(ctx context.Context, b []byte) error {
	if err := w.in.begin(ctx); err != nil {
		return err
	}
	defer w.in.end()
	binary.BigEndian.PutUint32(w.hdr[:], uint32(len(b)))
	if w.all {
		alive := 0
		for _, o := range w.ws {
			if !o.dead && o.write(w.hdr[:], b) == nil {
				alive++
			}
		}
		if alive == 0 {
			return ctxErr(ctx, errors.New("tcp: every connection failed"))
		}
		return nil
	}
	for range w.ws {
		o := w.ws[w.next]
		w.next = (w.next + 1) % len(w.ws)
		if !o.dead && o.write(w.hdr[:], b) == nil {
			return nil
		}
	}
	return ctxErr(ctx, errors.New("tcp: every connection failed"))
}

func (o *tcpOut) write(hdr, b []byte) error {
	_, err := o.w.Write(hdr)
	if err == nil {
		_, err = o.w.Write(b)
	}
	if err != nil {
		o.dead = true
		o.c.Close()
	}
	return err
}

func (w *tcpWriter) Flush() error {
	for _, o := range w.ws {
		if !o.dead && o.w.Flush() != nil {
			o.dead = true
			o.c.Close()
		}
	}
	return nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// tcpReader reads records into a reused buffer.
type tcpReader struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
	in  interrupter
}

func newTCPReader(c net.Conn) *tcpReader {
	t := &tcpReader{c: c, r: bufio.NewReaderSize(c, tcpBuf)}
	t.in.fn = func() { c.Close() }
	return t
}

func (t *tcpReader) Recv(ctx context.Context) ([]byte, error) {
	if err := t.in.begin(ctx); err != nil {
		return nil, err
	}
	defer t.in.end()
	var hdr [4]byte
	if _, err := io.ReadFull(t.r, hdr[:]); err != nil {
		return nil, ctxErr(ctx, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxRecord {
		return nil, fmt.Errorf("tcp: record of %d bytes", n)
	}
	if cap(t.buf) < int(n) {
		t.buf = make([]byte, n)
	}
	b := t.buf[:n]
	if _, err := io.ReadFull(t.r, b); err != nil {
		return nil, ctxErr(ctx, err)
	}
	return b, nil
}

func (t *tcpReader) Close() error {
	t.in.release()
	return t.c.Close()
}

// tcpEcho is one end of the request/reply echo: a reader plus a writer that
// flushes every message.
type tcpEcho struct {
	*tcpReader
	w   *bufio.Writer
	hdr [4]byte
}

func (e *tcpEcho) Send(ctx context.Context, b []byte) error {
	if err := e.in.begin(ctx); err != nil {
		return err
	}
	defer e.in.end()
	binary.BigEndian.PutUint32(e.hdr[:], uint32(len(b)))
	e.w.Write(e.hdr[:])
	e.w.Write(b)
	return ctxErr(ctx, e.w.Flush())
}

// ReqRep implements benchcore.Stack: the bare TCP echo.
func (TCP) ReqRep(ctx context.Context) (*benchcore.Topology, error) {
	srv, cli, err := tcpPairs(ctx, 1)
	if err != nil {
		return nil, err
	}
	mk := func(c net.Conn) *tcpEcho {
		return &tcpEcho{tcpReader: newTCPReader(c), w: bufio.NewWriterSize(c, tcpBuf)}
	}
	return &benchcore.Topology{Client: mk(cli[0]), Server: mk(srv[0]), Close: func() error { return closeConns(srv, cli) }}, nil
}
