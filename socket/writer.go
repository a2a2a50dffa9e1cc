package socket

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The send side of a pipe: messages are encoded into a batch under the
// pipe's wmu and written by one writev per batch, either on the Send
// caller's goroutine (low-latency mode, when the pipe is idle) or by the
// pipe's writer goroutine, which coalesces everything queued since its
// last write.

// bigFrame is the frame size from which a frame is written from the
// caller's memory instead of being copied into the batch.
const bigFrame = 16 << 10

// Notes a flush on a Send caller's goroutine leaves for the pipe's writer
// goroutine, which acts on them: hooks and terminate never run inside Send.
const (
	noteReady = 1 << iota // the send queue left its high-water mark: call the Ready hook
	noteFail              // a write failed (the error is in werr): terminate
)

// chunkSize is the unit of send-queue memory: small frames are copied into
// pooled chunks of this size, so a growing queue never reallocates and
// copies what it already holds.
const chunkSize = 32 << 10

type chunk [chunkSize]byte

var chunkPool = sync.Pool{New: func() any { return new(chunk) }}

// batch is a run of encoded ZMTP frames waiting to be written: small frames
// copied into chunks, large ones referenced where they are. It is written
// with one writev.
type batch struct {
	segs  net.Buffers // sealed segments, in order
	wsegs net.Buffers // segs as writeTo hands them to WriteTo
	cur   []byte      // the chunk being filled; cur[start:] is not sealed yet
	start int
	owned []*chunk  // chunks to recycle after the write
	bufs  [][]byte  // pooled buffers (large sealed frames) to give back after the write
	holds []*Buffer // Buffers referenced by segs, released after the write
	msgs  int
	bytes int64 // message body bytes
}

func (b *batch) empty() bool { return len(b.segs) == 0 && len(b.cur) == b.start }

// room makes sure the current chunk has n free bytes (n <= chunkSize).
func (b *batch) room(n int) {
	if b.cur != nil && cap(b.cur)-len(b.cur) >= n {
		return
	}
	b.seal()
	c := chunkPool.Get().(*chunk)
	b.owned = append(b.owned, c)
	b.cur, b.start = c[:0], 0
}

func (b *batch) seal() {
	if len(b.cur) > b.start {
		b.segs = append(b.segs, b.cur[b.start:])
		b.start = len(b.cur)
	}
}

// appendFrame appends one frame: copied when small, referenced when at
// least bigFrame bytes.
func (b *batch) appendFrame(flags byte, body []byte) {
	if len(body) >= bigFrame {
		b.room(maxHeaderLen)
		b.cur = appendHeader(b.cur, flags, len(body))
		b.seal()
		b.segs = append(b.segs, body)
		return
	}
	b.room(maxHeaderLen + len(body))
	b.cur = appendHeader(b.cur, flags, len(body))
	b.cur = append(b.cur, body...)
}

// appendMsg appends m's frames, in the clear. If a frame is referenced
// rather than copied, the batch holds a reference to m.Buf until written.
func (b *batch) appendMsg(m Msg) {
	last := len(m.Frames) - 1
	big := false
	for i, f := range m.Frames {
		var fl byte
		if i < last {
			fl = flagMore
		}
		b.appendFrame(fl, f)
		big = big || len(f) >= bigFrame
	}
	if big && m.Buf != nil {
		m.Buf.Retain()
		b.holds = append(b.holds, heapBuffer(m.Buf))
	}
}

// releaseHolds drops the batch's references to Buffers.
func (b *batch) releaseHolds() {
	for _, h := range b.holds {
		h.Release()
	}
	clear(b.holds)
	b.holds = b.holds[:0]
}

// maxCommand is the largest command body a batch takes: a command is
// copied whole into one chunk.
const maxCommand = chunkSize - maxHeaderLen

// appendCommand appends a command frame. It fails, appending nothing, for a
// bad name or a body over maxCommand bytes.
func (b *batch) appendCommand(name string, data []byte) error {
	n, err := commandLen(name, data)
	if err != nil {
		return err
	}
	if n > maxCommand {
		return fmt.Errorf("%w: %s command of %d bytes (limit %d)", ErrTooLarge, name, n, maxCommand)
	}
	b.room(maxHeaderLen + n)
	b.cur = appendHeader(b.cur, flagCommand, n)
	b.cur = appendCommandBody(b.cur, name, data)
	return nil
}

// writeTo writes the batch in one writev (or write) call and resets it,
// recycling its chunks.
func (b *batch) writeTo(w io.Writer) error {
	b.seal()
	var err error
	if len(b.segs) == 1 {
		_, err = w.Write(b.segs[0])
	} else {
		b.wsegs = b.segs // (WriteTo consumes it; a local would escape, an allocation per write)
		_, err = b.wsegs.WriteTo(w)
		b.wsegs = nil
	}
	clear(b.segs)
	b.segs = b.segs[:0]
	b.releaseHolds()
	b.reset()
	return err
}

// putBufs gives the batch's pooled buffers back.
func (b *batch) putBufs() {
	for _, buf := range b.bufs {
		putBuffer(buf)
	}
	clear(b.bufs)
	b.bufs = b.bufs[:0]
}

// reset drops the batch's content, keeping its last chunk for reuse.
func (b *batch) reset() {
	b.putBufs()
	keep := len(b.owned) - 1
	for i, c := range b.owned {
		if i != keep {
			chunkPool.Put(c)
		}
	}
	if keep >= 0 {
		c := b.owned[keep]
		clear(b.owned)
		b.owned = append(b.owned[:0], c)
		b.cur, b.start = c[:0], 0
	}
	b.msgs, b.bytes = 0, 0
}

// release gives every chunk back to the pool, and drops the Buffers the
// batch held.
func (b *batch) release() {
	b.releaseHolds()
	b.putBufs()
	for _, c := range b.owned {
		chunkPool.Put(c)
	}
	clear(b.owned)
	b.owned, b.cur, b.start, b.segs = b.owned[:0], nil, 0, nil
	b.msgs, b.bytes = 0, 0
}

// ready reports whether the pipe can take another message without going
// over its high-water mark.
func (p *pipe) ready() bool {
	if p.link != nil {
		return p.link.ready()
	}
	p.wmu.Lock()
	ok := !p.wclosed && !p.fullLocked()
	p.wmu.Unlock()
	return ok
}

// fullLocked reports whether the send queue is at its high-water mark, in
// messages or in bytes. An empty queue is never full.
func (p *pipe) fullLocked() bool {
	return p.queued >= p.s.opts.SendHWM || (p.queued > 0 && p.qbytes >= p.s.opts.SendHWMBytes)
}

// writerBehind reports whether the pipe has something queued that nobody
// is writing: its writer goroutine is woken but has not run yet.
func (p *pipe) writerBehind() bool {
	if p.link != nil {
		return false
	}
	p.wmu.Lock()
	behind := !p.writing && !p.wclosed && !p.sendEmptyLocked()
	p.wmu.Unlock()
	return behind
}

// enqueueRef is enqueue of *m, which it does not keep.
func (p *pipe) enqueueRef(m *Msg, force bool) error {
	if p.link != nil {
		return p.link.send(*m, force)
	}
	return p.enqueue(*m, force)
}

// enqueue adds a message to the send queue. Unless force is set it fails
// with errFull at the high-water mark. It fails with ErrClosed once the
// pipe is gone.
func (p *pipe) enqueue(m Msg, force bool) error {
	if p.link != nil {
		return p.link.send(m, force)
	}
	p.wmu.Lock()
	if p.wclosed {
		p.wmu.Unlock()
		return ErrClosed
	}
	if !force && p.fullLocked() {
		p.wmu.Unlock()
		return errFull
	}
	b := p.out
	if m.Priority > 0 && p.cipher.lanes() {
		b = p.urgent
	}
	if p.cipher != nil {
		if err := p.cipher.seal(b, m); err != nil {
			p.wmu.Unlock()
			return err
		}
	} else {
		b.appendMsg(m)
	}
	size := int64(m.Size())
	b.msgs++
	b.bytes += size
	p.queued++
	p.qbytes += size
	p.sent++
	p.sentB += uint64(size)
	if p.writing {
		p.wmu.Unlock()
		return nil
	}
	if p.lowLat {
		p.writing = true
		p.flushUnlocking() // unlocks
		if p.notes.Load() != 0 {
			p.kickWriter() // the writer acts on what the flush noted
		}
		return nil
	}
	p.wmu.Unlock()
	p.kickWriter()
	return nil
}

func (p *pipe) kickWriter() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// command queues a ZMTP command (PING, PONG, SUBSCRIBE...) in the urgent
// lane, ignoring the high-water mark. It fails for a command the batch
// does not take (see appendCommand); on a pipe that is gone it does
// nothing.
func (p *pipe) command(name string, data []byte) error {
	if p.link != nil {
		return nil // inproc: no commands
	}
	p.wmu.Lock()
	if p.wclosed {
		p.wmu.Unlock()
		return nil
	}
	var err error
	if p.cipher.lanes() {
		err = p.urgent.appendCommand(name, data)
	} else {
		err = p.cipher.command(p.out, name, data)
	}
	writing := p.writing
	p.wmu.Unlock()
	if err == nil && !writing {
		p.kickWriter()
	}
	return err
}

// flushUnlocking writes everything queued, releasing wmu during each write.
// The caller holds wmu and has set p.writing; flushUnlocking returns with wmu
// released and p.writing cleared. It may run on a caller's Send: what must
// not happen there (a hook, terminate) it leaves in p.notes for the writer
// goroutine.
func (p *pipe) flushUnlocking() {
	for (!p.urgent.empty() || !p.out.empty()) && !p.wclosed {
		// Urgent messages (and commands) first: they overtake everything
		// that has not reached the kernel yet.
		var b *batch
		urgent := !p.urgent.empty()
		if urgent {
			b = p.urgent
			p.urgent, p.uspare = p.uspare, nil
		} else {
			b = p.out
			p.out, p.spare = p.spare, nil
		}
		n, nb := b.msgs, b.bytes
		p.wmu.Unlock()

		err := b.writeTo(p.conn)

		p.wmu.Lock()
		if urgent {
			p.uspare = b
		} else {
			p.spare = b
		}
		wasFull := p.fullLocked()
		p.queued -= n
		p.qbytes -= nb
		if err != nil {
			p.writing = false
			p.wclosed = true // nothing more can be written
			if p.werr == nil {
				p.werr = fmt.Errorf("socket: write: %w", err)
			}
			p.notes.Or(noteFail)
			p.wakeFlushedLocked()
			p.wmu.Unlock()
			// Senders blocked on this peer learn at once that it is lost
			// (SendTo fails with ErrPeerLost, Send picks another peer),
			// while the reader goes on to the end of what it sent.
			p.s.signalReady()
			return
		}
		if wasFull && !p.fullLocked() {
			p.s.signalReady()
			if p.s.opts.Hooks.Ready != nil {
				p.notes.Or(noteReady)
			}
		}
	}
	p.writing = false
	p.wakeFlushedLocked()
	p.wmu.Unlock()
}

// sendEmptyLocked reports whether nothing is queued or being written.
func (p *pipe) sendEmptyLocked() bool {
	return p.queued == 0 && p.out.empty() && p.urgent.empty() && !p.writing
}

// flushed returns a channel that is closed once the send queue is empty
// (everything queued before the call has been written to the connection)
// or nothing more can be written; nil when that is already so. The pipe's
// Done channel should be watched beside it. Inproc pipes hand messages
// over in Send: nothing waits.
func (p *pipe) flushed() <-chan struct{} {
	if p.link != nil {
		return nil
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.wclosed || p.sendEmptyLocked() {
		return nil
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	return p.idle
}

// wakeFlushedLocked wakes flushed's waiters when the queue has emptied or
// can no longer be written. The caller holds wmu.
func (p *pipe) wakeFlushedLocked() {
	if p.idle != nil && (p.wclosed || p.sendEmptyLocked()) {
		close(p.idle)
		p.idle = nil
	}
}

func (p *pipe) writeLoop() {
	defer p.s.wg.Done()
	var tick <-chan time.Time
	if ivl := p.s.opts.HeartbeatIvl; ivl > 0 {
		t := time.NewTicker(ivl)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-p.done:
			return
		case <-p.kick:
		case now := <-tick:
			if err := p.heartbeat(now); err != nil {
				p.terminate(err)
				return
			}
		}
		p.wmu.Lock()
		if !p.writing {
			p.writing = true
			p.flushUnlocking()
		} else {
			p.wmu.Unlock()
		}
		if p.notes.Load() != 0 && !p.actOnNotes() {
			return
		}
	}
}

// writeFailGrace bounds how long a pipe whose write failed waits for its
// reader to reach the end of what the peer sent.
const writeFailGrace = 500 * time.Millisecond

// endAfterWriteError ends the pipe after a write failed. Writing has
// stopped (wclosed), but the connection stays open for the reader: a peer
// that closed with our data unread (its kernel then resets the connection)
// may have sent messages just before, acks say, that are still in our
// kernel buffer. The reader reads them up to its own error (EOF, reset),
// which ends the pipe with err as the reason; after writeFailGrace (a
// reader held up by a full receive queue, a peer that keeps sending) the
// pipe ends anyway.
func (p *pipe) endAfterWriteError(err error) {
	t := time.NewTimer(writeFailGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		// A reader still paused by a full receive queue has not reached
		// the end: what it holds unread goes with the connection, as for
		// any paused reader whose peer is gone (memory stays bounded).
		p.terminate(err)
	}
}

// writeErrorOr returns the write error that stopped the pipe's writing, if
// one did (the reason the pipe ends, though its reader ends it), else err.
func (p *pipe) writeErrorOr(err error) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.werr != nil {
		return p.werr
	}
	return err
}

// actOnNotes runs on the writer goroutine what a flush noted. It returns
// false when the pipe is terminated.
func (p *pipe) actOnNotes() bool {
	n := p.notes.Swap(0)
	if n&noteFail != 0 {
		p.wmu.Lock()
		err := p.werr
		p.wmu.Unlock()
		p.endAfterWriteError(err)
		return false
	}
	if n&noteReady != 0 {
		// Under attachMu: only between Attach and Detach, never beside them.
		p.attachMu.Lock()
		if p.attached && !p.isDone() {
			p.s.opts.Hooks.Ready(&p.face)
		}
		p.attachMu.Unlock()
	}
	return true
}

// drain waits until the send queue is empty (or can no longer be written)
// or the deadline passes.
func (p *pipe) drain(deadline time.Time) {
	ch := p.flushed()
	if ch == nil {
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
	case <-p.done:
	case <-t.C:
	}
}
