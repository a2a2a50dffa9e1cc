package socket

import (
	"fmt"
	"runtime"
	"time"

	"github.com/go-zeromq/zmq4"
)

// readBatch is the most messages the reader hands the fair queue at once.
const readBatch = 128

// filterIncoming is implemented by the protocols whose incoming only keeps
// a message (as it is) or drops it, never hands it on nor waits: their
// reader counts messages per batch instead of one by one (see
// flushCounts).
type filterIncoming interface{ incomingFilters() }

// readState is what the reader goroutine carries from frame to frame: the
// message being assembled, the messages not yet handed to the fair queue,
// and the counts not yet added to the pipe's counters.
type readState struct {
	c      carver
	batch  []Msg
	frames [][]byte
	total  int64 // body bytes of the message so far
	pass   bool  // the protocol's incoming passes every message as it is
	filter bool  // ... or only keeps or drops it (see filterIncoming)
	msgs   uint64
	bytes  uint64
}

// readLoop reads frames until the connection fails, assembles them into
// messages, hands each to the socket type's incoming filter and what it
// keeps to the fair queue, in batches. The framer checks every header
// before anything is allocated; the carver provides the memory.
//
// Frames the read buffer holds whole are parsed straight from it
// (parseBuffered), many per read system call; the frame-by-frame path
// reads the rest (a frame cut by the end of the buffer, a large one read
// straight into its memory, commands, CURVE boxes).
//
// It stays long: the hot receive loop, its per-frame state kept in locals
// of one function.
func (p *pipe) readLoop() {
	defer p.s.wg.Done()
	var (
		fr    = &p.fr
		st    readState
		limit = p.s.opts.MaxMsgSize
	)
	_, st.pass = p.s.proto.(passIncoming)
	_, st.filter = p.s.proto.(filterIncoming)
	c := &st.c
	defer c.leave()
	defer p.cipher.wipeRecv()
	c.secret = p.cipher != nil
	fail := func(err error) {
		p.pushBatch(&st)
		// Nothing of the message in progress is delivered; under CURVE
		// its frames are plaintext, cleared here (key hygiene).
		if p.cipher != nil {
			for _, f := range st.frames {
				clear(f)
			}
		}
		p.terminate(p.writeErrorOr(err))
	}
	for {
		// Before a read that may block: deliver what we have, and note the
		// time of the traffic just read for the heartbeat check (once per
		// batch: the clock costs more than parsing a small frame).
		if !fr.buffered() {
			p.flushCounts(&st)
			if len(st.batch) > 0 {
				p.pushBatch(&st)
				// Let the receiver just woken run now, on this P, rather
				// than after our next read (which will find nothing and
				// park us): that read is a system call off the critical
				// path of a request/reply round trip.
				runtime.Gosched()
			}
			p.lastRecv.Store(time.Now().UnixNano())
		} else if p.cipher == nil && p.parseBuffered(&st) {
			continue // more whole frames may follow what it stopped at
		}
		h, err := fr.header()
		if err == nil && p.cipher != nil {
			h, err = p.cipher.unwrap(fr, h)
		}
		if err != nil {
			fail(err)
			return
		}
		if h.command() {
			if h.more() || len(st.frames) > 0 {
				fail(fmt.Errorf("%w: command frame inside a message", ErrProtocol))
				return
			}
			if h.size > handshakeFrameMax {
				fail(fmt.Errorf("%w: command of %d bytes", ErrTooLarge, h.size))
				return
			}
			body := make([]byte, h.size)
			if err := p.readBody(body); err != nil {
				fail(err)
				return
			}
			if err := p.handleCommand(body); err != nil {
				fail(err)
				return
			}
			continue
		}
		if st.total+int64(h.size) > limit {
			fail(fmt.Errorf("%w: peer sent a %d-byte frame (limit %d per message)", ErrTooLarge, h.size, limit))
			return
		}
		if len(st.frames) >= maxFrames {
			// Empty frames cost no body bytes but a slice header each.
			fail(fmt.Errorf("%w: peer sent over %d frames in one message", ErrTooLarge, maxFrames))
			return
		}
		st.total += int64(h.size)
		body := c.frame(int(h.size), p.cipher.fresh())
		if err := p.readBody(body); err != nil {
			fail(err)
			return
		}
		if p.cipher != nil {
			if body, err = p.cipher.open(body); err != nil {
				fail(err)
				return
			}
		}
		st.frames = append(st.frames, body)
		if !h.more() {
			p.deliver(&st)
		}
	}
}

// parseBuffered takes the message frames that the read buffer holds
// whole, straight from it: one copy into the carver's memory each and no
// read call. It stops at the first frame it leaves to the frame-by-frame
// path, which checks it exactly as before: a command, a header with bad
// flags or an oversized size, a frame over the message limit or the frame
// count, a frame not all buffered. It reports whether it took any frame.
// Clear-text pipes only (no cipher).
func (p *pipe) parseBuffered(st *readState) bool {
	br := p.fr.br
	buf, _ := br.Peek(br.Buffered())
	limit := p.s.opts.MaxMsgSize
	off := 0
	for {
		h, hl, err := decodeHeader(buf[off:], p.fr.limit)
		if hl == 0 || err != nil || h.command() || h.size > uint64(len(buf)-off-hl) {
			break
		}
		if st.total+int64(h.size) > limit || len(st.frames) >= maxFrames {
			break
		}
		n := int(h.size)
		off += hl
		if !h.more() && len(st.frames) == 0 && n <= slabFrameMax {
			// the usual message, one small frame: carved, copied and
			// owned in one step
			p.deliverOne(st, buf[off:off+n])
			off += n
			continue
		}
		body := st.c.frame(n, false)
		copy(body, buf[off:off+n])
		off += n
		st.total += int64(n)
		st.frames = append(st.frames, body)
		if !h.more() {
			p.deliver(st)
		}
	}
	if off == 0 {
		return false
	}
	br.Discard(off)
	return true
}

// deliver completes the message of st.frames: counted, filtered by the
// socket type, and queued in the batch for the fair queue.
func (p *pipe) deliver(st *readState) {
	m := st.slot()
	st.c.finishInto(m, st.frames, int(st.total))
	if len(st.frames) == 1 {
		st.frames[0] = nil
	} else {
		clear(st.frames)
	}
	st.frames = st.frames[:0]
	st.msgs++
	st.bytes += uint64(st.total)
	st.total = 0
	p.kept(st, m)
}

// kept passes m, the batch's last message, through the socket type's
// incoming filter, and the batch to the fair queue when it is full.
func (p *pipe) kept(st *readState, m *Msg) {
	if !st.pass {
		if !st.filter {
			// incoming may hand the message on itself, or wait (XPUB):
			// count it first, as every message is counted before anyone
			// can receive it.
			p.flushCounts(st)
		}
		out, ok := p.s.proto.incoming(p, *m)
		if !ok {
			m.Free() // not delivered: the memory can be reused
			*m = Msg{}
			st.batch = st.batch[:len(st.batch)-1]
			return
		}
		*m = out
	}
	if len(st.batch) >= readBatch {
		p.pushBatch(st)
	}
}

// deliverOne is deliver for a message of one frame of at most
// slabFrameMax bytes, b in the read buffer, copied into the carver's slab.
func (p *pipe) deliverOne(st *readState, b []byte) {
	m := st.slot()
	st.c.copyOne(m, b)
	st.msgs++
	st.bytes += uint64(len(b))
	p.kept(st, m)
}

// slot adds a message to the batch, for the caller to fill in place (no
// Msg copied), and returns it.
func (st *readState) slot() *Msg {
	if len(st.batch) == cap(st.batch) {
		st.batch = append(st.batch, Msg{})[:len(st.batch)]
	}
	st.batch = st.batch[:len(st.batch)+1]
	return &st.batch[len(st.batch)-1]
}

// flushCounts adds the messages counted since the last flush to the
// pipe's counters: once per batch, not an atomic add per message. It runs
// before the messages reach the fair queue, so that a receiver never sees
// a message its Stats do not count.
func (p *pipe) flushCounts(st *readState) {
	if st.msgs > 0 {
		p.stats.msgsIn.Add(st.msgs)
		p.stats.bytesIn.Add(st.bytes)
		st.msgs, st.bytes = 0, 0
	}
}

// pushBatch hands the batch to the fair queue (blocking while the pipe's
// inbox is full) and empties it.
func (p *pipe) pushBatch(st *readState) {
	p.flushCounts(st)
	if len(st.batch) > 0 {
		p.s.fq.push(p, st.batch)
		// not cleared: each slot is overwritten whole before it is used
		// again, and clearing pointers costs write barriers while the
		// collector runs
		st.batch = st.batch[:0]
	}
}

// readBody reads the body of the frame just framed into buf, through the
// cipher when there is one.
func (p *pipe) readBody(buf []byte) error {
	if p.cipher != nil {
		return p.cipher.read(&p.fr, buf)
	}
	return p.fr.body(buf)
}

// handleCommand acts on a command frame received after the handshake.
func (p *pipe) handleCommand(body []byte) error {
	name, data, err := parseCommand(body)
	if err != nil {
		return err
	}
	switch name {
	case zmq4.CmdPing:
		// PING: 2-byte TTL then up to 16 bytes of context, echoed in PONG.
		var ctx []byte
		if len(data) > 2 {
			ctx = data[2:min(len(data), 18)]
		}
		return p.command(zmq4.CmdPong, ctx)
	case zmq4.CmdPong:
	case zmq4.CmdSubscribe, "CANCEL":
		p.s.proto.command(p, name, data)
	case zmq4.CmdError:
		reason := ""
		if len(data) > 0 && int(data[0]) <= len(data)-1 {
			reason = string(data[1 : 1+data[0]])
		}
		return &RefusedError{Reason: reason}
	}
	return nil
}
