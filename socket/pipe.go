package socket

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
)

const (
	bigFrame     = 16 << 10 // frames at least this large are written from the caller's memory
	slabSize     = 32 << 10 // received small frames are carved from slabs this size
	slabFrameMax = 1 << 10  // ... when they are at most this large
	maxFrames    = 1 << 16  // frames in one message, sent or received
)

// noBytes backs received empty frames: not nil, like every received frame,
// and with no capacity, so appending to one copies it.
var noBytes = []byte{}

var (
	errHeartbeat = errors.New("socket: heartbeat timeout")
	errPeerError = errors.New("socket: peer sent ERROR")
	errFull      = errors.New("socket: peer queue full")
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
	cur   []byte      // the chunk being filled; cur[start:] is not sealed yet
	start int
	owned []*chunk // chunks to recycle after the write
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

func (b *batch) appendHeader(flags byte, size int) {
	if size > 255 {
		b.cur = append(b.cur, flags|flagLong)
		b.cur = binary.BigEndian.AppendUint64(b.cur, uint64(size))
	} else {
		b.cur = append(b.cur, flags, byte(size))
	}
}

func (b *batch) appendFrame(flags byte, body []byte) {
	if len(body) >= bigFrame {
		b.room(9)
		b.appendHeader(flags, len(body))
		b.seal()
		b.segs = append(b.segs, body)
		return
	}
	b.room(9 + len(body))
	b.appendHeader(flags, len(body))
	b.cur = append(b.cur, body...)
}

func (b *batch) appendCommand(name string, body []byte) {
	n := 1 + len(name) + len(body)
	if n+9 > chunkSize {
		return // commands we send are tiny; never happens
	}
	b.room(9 + n)
	b.appendHeader(flagCommand, n)
	b.cur = append(b.cur, byte(len(name)))
	b.cur = append(b.cur, name...)
	b.cur = append(b.cur, body...)
}

// writeTo writes the batch in one writev (or write) call and resets it,
// recycling its chunks.
func (b *batch) writeTo(w io.Writer) error {
	b.seal()
	var err error
	if len(b.segs) == 1 {
		_, err = w.Write(b.segs[0])
	} else {
		segs := b.segs
		_, err = segs.WriteTo(w)
	}
	clear(b.segs)
	b.segs = b.segs[:0]
	b.reset()
	return err
}

// reset drops the batch's content, keeping its last chunk for reuse.
func (b *batch) reset() {
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

// release gives every chunk back to the pool.
func (b *batch) release() {
	for _, c := range b.owned {
		chunkPool.Put(c)
	}
	clear(b.owned)
	b.owned, b.cur, b.start, b.segs = b.owned[:0], nil, 0, nil
	b.msgs, b.bytes = 0, 0
}

// pipe is one connected peer.
type pipe struct {
	s        *Socket
	conn     net.Conn
	br       *bufio.Reader
	sec      zmq4.Security
	encrypt  bool
	curve    *curveCodec // CURVE: every frame is a MESSAGE box (curve.go)
	endpoint string
	remote   string
	peerType string
	identity []byte // peer's announced identity (ROUTER: routing id)
	lowLat   bool
	listener *listener // the listener that accepted the peer, if any

	// send side, guarded by wmu
	wmu     sync.Mutex
	out     *batch
	spare   *batch
	urgent  *batch // messages with Priority > 0: written before out
	uspare  *batch
	queued  int // messages in out plus those being written
	qbytes  int64
	writing bool
	wclosed bool
	kick    chan struct{}

	// receive side, guarded by the socket's fair queue mutex
	inq      []Msg
	inHead   int
	inActive bool
	inBytes  int64
	inGone   bool // the pipe is gone: what it has queued counts as orphans
	space    chan struct{}

	hdr      [9]byte // frame header being read (reader goroutine only)
	lastRecv atomic.Int64
	// paused is set while the reader waits for room in the receive queue:
	// it reads nothing then, so silence from the peer proves nothing.
	paused atomic.Bool
	done   chan struct{}
	once   sync.Once
	err    error
	stats  counters

	// routing state owned by the socket type
	subs    subscriptions // PUB: what this peer subscribed to
	routeID []byte        // ROUTER: the id this peer is addressed by
}

func newPipe(s *Socket, c net.Conn, br *bufio.Reader, pi peerInfo, endpoint string) *pipe {
	p := &pipe{
		s:        s,
		conn:     c,
		br:       br,
		sec:      s.opts.Security,
		endpoint: endpoint,
		remote:   c.RemoteAddr().String(),
		peerType: pi.peerType,
		identity: pi.identity,
		curve:    pi.curve,
		lowLat:   s.lowLatency,
		out:      &batch{},
		spare:    &batch{},
		urgent:   &batch{},
		uspare:   &batch{},
		kick:     make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if p.sec == nil {
		// CURVE: the codec seals and opens; no zmq4.Security.
	} else if t := p.sec.Type(); t != zmq4.NullSecurity && t != zmq4.PlainSecurity {
		p.encrypt = true
	}
	p.lastRecv.Store(time.Now().UnixNano())
	return p
}

// start runs the pipe's reader and writer goroutines.
func (p *pipe) start() {
	p.s.wg.Add(2)
	go p.readLoop()
	go p.writeLoop()
}

// terminate closes the connection and removes the pipe from its socket. The
// first error given is the reason reported.
func (p *pipe) terminate(err error) {
	p.once.Do(func() {
		p.err = err
		p.wmu.Lock()
		p.wclosed = true
		p.out.release()
		p.urgent.release()
		p.wmu.Unlock()
		p.conn.Close()
		close(p.done)
		p.s.detach(p, err)
	})
}

// resume notes that the reader reads again after a pause: the heartbeat
// clock restarts from now.
func (p *pipe) resume() {
	p.lastRecv.Store(time.Now().UnixNano())
	p.paused.Store(false)
}

func (p *pipe) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ready reports whether the pipe can take another message without going
// over its high-water mark.
func (p *pipe) ready() bool {
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

// enqueue adds a message to the send queue. Unless force is set it fails
// with errFull at the high-water mark. It fails with ErrClosed once the
// pipe is gone.
func (p *pipe) enqueue(m Msg, force bool) error {
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
	if m.Priority > 0 && p.curve == nil {
		// Under CURVE every frame takes the next nonce as it is queued, so
		// nothing may overtake: urgent messages share the one lane.
		b = p.urgent
	}
	if p.curve != nil {
		appendCurve(b, p.curve, m)
	} else if p.encrypt {
		if err := appendEncrypted(b, p.sec, m); err != nil {
			p.wmu.Unlock()
			return err
		}
	} else {
		last := len(m.Frames) - 1
		for i, f := range m.Frames {
			var fl byte
			if i < last {
				fl = flagMore
			}
			b.appendFrame(fl, f)
		}
	}
	size := int64(m.Size())
	b.msgs++
	b.bytes += size
	p.queued++
	p.qbytes += size
	p.stats.msgsOut.Add(1)
	p.stats.bytesOut.Add(uint64(size))
	if p.writing {
		p.wmu.Unlock()
		return nil
	}
	if p.lowLat {
		p.writing = true
		p.flushLocked() // unlocks
		return nil
	}
	p.wmu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

func appendEncrypted(b *batch, sec zmq4.Security, m Msg) error {
	last := len(m.Frames) - 1
	for i, f := range m.Frames {
		var buf bytes.Buffer
		if _, err := sec.Encrypt(&buf, f); err != nil {
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

// command queues a ZMTP command (PING, PONG, SUBSCRIBE...), ignoring the
// high-water mark.
func (p *pipe) command(name string, body []byte) {
	p.wmu.Lock()
	if p.wclosed {
		p.wmu.Unlock()
		return
	}
	if p.curve != nil {
		p.out.appendCurveCommand(p.curve, name, body)
	} else {
		p.urgent.appendCommand(name, body)
	}
	writing := p.writing
	p.wmu.Unlock()
	if !writing {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// flushLocked writes everything queued, releasing wmu during each write.
// The caller holds wmu and has set p.writing; flushLocked returns with wmu
// released and p.writing cleared.
func (p *pipe) flushLocked() {
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
			p.wmu.Unlock()
			p.terminate(fmt.Errorf("socket: write: %w", err))
			return
		}
		if wasFull && !p.fullLocked() {
			p.s.signalReady()
		}
	}
	p.writing = false
	p.wmu.Unlock()
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
			// Liveness is judged on what the peer sends, and only while
			// we read it: a reader paused by our own full receive queue
			// (the application not calling Recv) is back-pressure, not a
			// dead peer. The clock restarts when the reader resumes.
			if !p.paused.Load() && now.Sub(time.Unix(0, p.lastRecv.Load())) > p.s.opts.HeartbeatTimeout {
				p.terminate(fmt.Errorf("%w: no traffic for %v", errHeartbeat, p.s.opts.HeartbeatTimeout))
				return
			}
			ttl := make([]byte, 2)
			binary.BigEndian.PutUint16(ttl, uint16(min(p.s.opts.HeartbeatTimeout/(100*time.Millisecond), 0xFFFF)))
			p.command(zmq4.CmdPing, ttl)
		}
		p.wmu.Lock()
		if p.writing {
			p.wmu.Unlock()
			continue
		}
		p.writing = true
		p.flushLocked()
	}
}

// drain waits until the send queue is empty or the deadline passes.
func (p *pipe) drain(deadline time.Time) {
	for {
		p.wmu.Lock()
		empty := p.queued == 0 && p.out.empty() && p.urgent.empty() && !p.writing
		p.wmu.Unlock()
		if empty || p.isDone() || !time.Now().Before(deadline) {
			return
		}
		select {
		case <-p.done:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// readLoop reads messages until the connection fails, handing them to the
// socket type's incoming filter and then to the fair queue in batches.
func (p *pipe) readLoop() {
	defer p.s.wg.Done()
	var (
		batch  []Msg
		frames [][]byte
		total  int64
		pooled bool  // some frame of the message came from the buffer pool
		cur    *slab // the slab small frames are carved from, from cur.buf[off:]
		off    int
		given  int32 // messages holding a reference to cur
		mslab  *slab // the slab holding the message's small frames, if any
		fslab  [][]byte
		limit  = p.s.opts.MaxMsgSize
	)
	defer func() {
		if cur != nil {
			cur.release(slabReserve - given)
		}
	}()
	fail := func(err error) {
		if len(batch) > 0 {
			p.s.fq.push(p, batch)
		}
		p.terminate(err)
	}
	for {
		// Before a read that may block: deliver what we have, and note the
		// time of the traffic just read for the heartbeat check (once per
		// batch: the clock costs more than parsing a small frame).
		if !p.frameBuffered() {
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
		hdr := p.hdr[:]
		if err := readFull(p.br, hdr[:2]); err != nil {
			fail(readErr(err))
			return
		}
		flags := hdr[0]
		if flags&^flagsValid != 0 {
			fail(fmt.Errorf("%w: reserved frame flag bits set (0x%02x)", ErrProtocol, flags))
			return
		}
		size := uint64(hdr[1])
		if flags&flagLong != 0 {
			if err := readFull(p.br, hdr[2:9]); err != nil {
				fail(readErr(err))
				return
			}
			size = binary.BigEndian.Uint64(hdr[1:9])
		}
		var sealed []byte // CURVE: the checked MESSAGE, decrypted into the frame's memory below
		var sealedPooled bool
		if p.curve != nil {
			if flags&flagMore != 0 {
				fail(fmt.Errorf("%w: CURVE: MESSAGE frame with MORE set", ErrProtocol))
				return
			}
			if size < curveMsgOverhead || size-curveMsgOverhead > uint64(limit) || total+int64(size-curveMsgOverhead) > limit {
				fail(fmt.Errorf("%w: peer sent a %d-byte CURVE MESSAGE (limit %d per message)", ErrTooLarge, size, limit))
				return
			}
			cb, pooledCB := p.curve.cipherBuf(int(size))
			err := readFull(p.br, cb)
			fl, n := byte(0), 0
			if err == nil {
				fl, n, err = p.curve.openHeader(cb)
			} else {
				err = readErr(err)
			}
			if err != nil {
				if pooledCB {
					putBuffer(cb)
				}
				fail(err)
				return
			}
			flags, size, sealed, sealedPooled = fl, uint64(n), cb, pooledCB
		}
		if flags&flagCommand != 0 {
			if flags&flagMore != 0 || len(frames) > 0 {
				fail(fmt.Errorf("%w: command frame inside a message", ErrProtocol))
				return
			}
			if size > uint64(min(limit, handshakeFrameMax)) {
				fail(fmt.Errorf("%w: command of %d bytes", ErrTooLarge, size))
				return
			}
			body := make([]byte, size)
			if sealed != nil {
				p.curve.decryptTo(body, sealed)
				if sealedPooled {
					putBuffer(sealed)
				}
			} else if err := readFull(p.br, body); err != nil {
				fail(readErr(err))
				return
			}
			if err := p.handleCommand(body); err != nil {
				fail(err)
				return
			}
			continue
		}
		if size > uint64(limit) || total+int64(size) > limit {
			fail(fmt.Errorf("%w: peer sent a %d-byte frame (limit %d per message)", ErrTooLarge, size, limit))
			return
		}
		if len(frames) >= maxFrames {
			// Empty frames cost no body bytes but a slice header each.
			fail(fmt.Errorf("%w: peer sent over %d frames in one message", ErrTooLarge, maxFrames))
			return
		}
		total += int64(size)
		var body []byte
		switch {
		case size == 0:
			body = noBytes[:0:0]
		case size <= slabFrameMax:
			n := int(size)
			if cur == nil || slabSize-off < n {
				if mslab != nil {
					// The message has frames in this slab already and
					// holds it by one reference: the rest go elsewhere.
					body = make([]byte, n)
					break
				}
				if cur != nil {
					cur.release(slabReserve - given)
				}
				cur, off, given = newSlab(), 0, 0
			}
			body = cur.buf[off : off+n : off+n]
			off += n
			mslab = cur
		case p.encrypt:
			body = make([]byte, size)
		default:
			body = getBuffer(int(size))
			pooled = true
		}
		if sealed != nil {
			p.curve.decryptTo(body, sealed)
			if sealedPooled {
				putBuffer(sealed)
			}
		} else if err := readFull(p.br, body); err != nil {
			fail(readErr(err))
			return
		}
		if p.encrypt {
			var buf bytes.Buffer
			if _, err := p.sec.Decrypt(&buf, body); err != nil {
				fail(fmt.Errorf("%w: decrypt: %v", ErrProtocol, err))
				return
			}
			body = buf.Bytes()
		}
		frames = append(frames, body)
		if flags&flagMore != 0 {
			continue
		}
		// A complete message: carve its frame slice from a slab too.
		if len(fslab) < len(frames) {
			fslab = make([][]byte, max(256, len(frames)))
		}
		fs := fslab[:len(frames):len(frames)]
		fslab = fslab[len(frames):]
		copy(fs, frames)
		clear(frames)
		frames = frames[:0]
		p.stats.msgsIn.Add(1)
		p.stats.bytesIn.Add(uint64(total))
		m := Msg{Frames: fs, pooled: pooled, size: int(total), slab: mslab}
		if mslab != nil {
			given++ // one of the reader's reserved references
		}
		total, pooled, mslab = 0, false, nil
		if out, ok := p.s.r.incoming(p, m); ok {
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

// frameBuffered reports whether a whole next frame is already buffered, so
// that reading it cannot block.
func (p *pipe) frameBuffered() bool {
	n := p.br.Buffered()
	if n < 2 {
		return false
	}
	h, _ := p.br.Peek(min(n, 9))
	size := uint64(h[1])
	hl := 2
	if h[0]&flagLong != 0 {
		if len(h) < 9 {
			return false
		}
		hl = 9
		size = binary.BigEndian.Uint64(h[1:9])
	}
	return uint64(n-hl) >= size
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	return err
}

func (p *pipe) handleCommand(body []byte) error {
	if len(body) == 0 || int(body[0]) > len(body)-1 {
		return fmt.Errorf("%w: malformed command", ErrProtocol)
	}
	name := string(body[1 : 1+body[0]])
	data := body[1+body[0]:]
	switch name {
	case zmq4.CmdPing:
		// PING: 2-byte TTL then up to 16 bytes of context, echoed in PONG.
		var ctx []byte
		if len(data) > 2 {
			ctx = data[2:min(len(data), 18)]
		}
		p.command(zmq4.CmdPong, ctx)
	case zmq4.CmdPong:
	case zmq4.CmdSubscribe, "CANCEL":
		p.s.r.command(p, name, data)
	case zmq4.CmdError:
		reason := ""
		if len(data) > 0 && int(data[0]) <= len(data)-1 {
			reason = string(data[1 : 1+data[0]])
		}
		return fmt.Errorf("%w: %q", errPeerError, reason)
	}
	return nil
}

// discard counts n received messages that the socket type threw away.
func (p *pipe) discard(n uint64) {
	p.stats.discarded.Add(n)
	p.s.stats.discarded.Add(n)
}

func (p *pipe) peerStats() PeerStats {
	p.wmu.Lock()
	q, id := p.queued, p.routeID
	p.wmu.Unlock()
	subs := 0
	if snap := p.subs.snap.Load(); snap != nil {
		subs = len(snap.prefixes)
	}
	return PeerStats{Endpoint: p.endpoint, Remote: p.remote, PeerType: p.peerType, Identity: id, Queued: q, Subscriptions: subs, Counters: p.stats.snapshot()}
}
