package socket

import (
	"fmt"
	"runtime"
	"time"

	"github.com/go-zeromq/zmq4"
)

// readLoop reads frames until the connection fails, assembles them into
// messages, hands each to the socket type's incoming filter and what it
// keeps to the fair queue, in batches. The framer checks every header
// before anything is allocated; the carver provides the memory.
func (p *pipe) readLoop() {
	defer p.s.wg.Done()
	var (
		fr     = &p.fr
		c      carver
		batch  []Msg
		frames [][]byte
		total  int64 // body bytes of the message so far
		limit  = p.s.opts.MaxMsgSize
	)
	defer c.leave()
	defer p.cipher.wipeRecv()
	c.secret = p.cipher != nil
	fail := func(err error) {
		if len(batch) > 0 {
			p.s.fq.push(p, batch)
		}
		// Nothing of the message in progress is delivered; under CURVE
		// its frames are plaintext, cleared here (key hygiene).
		if p.cipher != nil {
			for _, f := range frames {
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
			if len(batch) > 0 {
				p.s.fq.push(p, batch)
				batch = batch[:0]
				// Let the receiver just woken run now, on this P, rather
				// than after our next read (which will find nothing and
				// park us): that read is a system call off the critical
				// path of a request/reply round trip.
				runtime.Gosched()
			}
			p.lastRecv.Store(time.Now().UnixNano())
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
			if h.more() || len(frames) > 0 {
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
		if total+int64(h.size) > limit {
			fail(fmt.Errorf("%w: peer sent a %d-byte frame (limit %d per message)", ErrTooLarge, h.size, limit))
			return
		}
		if len(frames) >= maxFrames {
			// Empty frames cost no body bytes but a slice header each.
			fail(fmt.Errorf("%w: peer sent over %d frames in one message", ErrTooLarge, maxFrames))
			return
		}
		total += int64(h.size)
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
		frames = append(frames, body)
		if h.more() {
			continue
		}
		m := c.finish(frames, int(total))
		clear(frames)
		frames = frames[:0]
		p.stats.msgsIn.Add(1)
		p.stats.bytesIn.Add(uint64(total))
		total = 0
		if out, ok := p.s.proto.incoming(p, m); ok {
			batch = append(batch, out)
			if len(batch) >= 128 {
				p.s.fq.push(p, batch)
				batch = batch[:0]
			}
		} else {
			m.Free() // not delivered: the memory can be reused
		}
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
