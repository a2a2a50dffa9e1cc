package socket

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
)

// maxFrames bounds the frames in one message, sent or received.
const maxFrames = 1 << 16

var (
	errHeartbeat = errors.New("socket: heartbeat timeout")
	errFull      = errors.New("socket: peer queue full")
)

// pipe is one connected peer: its connection, a send queue written by the
// batch writer (writer.go), a reader goroutine that frames what arrives
// (reader.go) into its inbox in the socket's fair queue (fairqueue.go), and
// its lifecycle (here): start, heartbeat, terminate. Peer is its public
// face.
//
// Lock convention (the whole package): a field a mutex guards says so, with
// "guarded by mu" on its line or on the comment opening its block; fields
// set before the pipe is shared and never written again need no lock. The
// order locks are taken in is written down in doc.go.
type pipe struct {
	s        *Socket
	id       uint64 // Peer.ID
	face     Peer   // the pipe's public handle, &face for its whole life
	conn     net.Conn
	fr       frameReader  // the reader goroutine's only
	cipher   *frameCipher // nil unless the mechanism encrypts frames
	endpoint string
	remote   string
	peerType string
	identity []byte // the identity the peer announced in its handshake
	client   Key    // on a CURVE server: the client's long-term key, proven by the handshake
	lowLat   bool
	listener *listener // the listener that accepted the peer, if any

	// The send side (writer.go), guarded by wmu.
	wmu     sync.Mutex
	out     *batch
	spare   *batch
	urgent  *batch // messages with Priority > 0: written before out
	uspare  *batch
	queued  int // messages in out plus those being written
	qbytes  int64
	writing bool
	wclosed bool
	werr    error         // the write error a caller's flush hit, for the writer to act on
	sent    uint64        // messages queued, ever (Counters.MsgsOut): under wmu, which enqueue holds anyway, not an atomic add per message
	sentB   uint64        // ... and their body bytes (Counters.BytesOut)
	idle    chan struct{} // closed when the queue is next empty or unwritable; nil when nobody waits (see flushed)
	routeID []byte        // ROUTER: the id this peer is addressed by (set once, on attach)

	kick  chan struct{}
	notes atomic.Uint32 // noteReady | noteFail, for the writer goroutine

	// attachMu orders the socket's attach (Attach hook, routing), the Ready
	// hook and the detach. attached is guarded by attachMu and the
	// socket's mu both: written holding both, read holding either
	// (PeerList holds mu).
	attachMu sync.Mutex
	attached bool

	// received messages waiting for Recv, guarded by the fair queue's mu;
	// on cache lines of its own, as Recv writes it per message
	_  [64]byte
	in inbox
	_  [64]byte

	lastRecv atomic.Int64
	// paused is set while the reader waits for room in the receive queue:
	// it reads nothing then, so silence from the peer proves nothing.
	paused atomic.Bool
	done   chan struct{}
	once   sync.Once
	err    error // why the pipe ended: written once, in terminate
	stats  counters

	// src is what the reader reads from (leave.go); nil for inproc.
	src *connReader
	// leaveCh is closed when the pipe starts to leave (leave.go): a reader
	// waiting for room in the receive queue gives up then.
	leaveCh chan struct{}
	// ended is closed once terminate has detached the pipe.
	ended chan struct{}

	subs subscriptions // PUB, XPUB: what this peer subscribed to

	// inproc (inproc.go): the other end, in the other socket, this end's
	// sending side (the pipe's link) and its receiving side (what the
	// other end hands over, for the fair queue); nil for a network peer.
	peer *pipe
	link *inprocLink // concrete, not the link interface: a call through an interface would make every sent message escape to the heap
	ring *inprocRing
}

// newPipeBase is what every pipe starts with, over the network or inproc.
func newPipeBase(s *Socket, endpoint, remote, peerType string, identity []byte) *pipe {
	p := &pipe{
		s:        s,
		id:       s.peerIDs.Add(1),
		endpoint: endpoint,
		remote:   remote,
		peerType: peerType,
		identity: identity,
		out:      &batch{},
		spare:    &batch{},
		urgent:   &batch{},
		uspare:   &batch{},
		kick:     make(chan struct{}, 1),
		in:       inbox{space: make(chan struct{}, 1)},
		done:     make(chan struct{}),
		leaveCh:  make(chan struct{}),
		ended:    make(chan struct{}),
	}
	p.face.p = p
	return p
}

func newPipe(s *Socket, c net.Conn, br *bufio.Reader, src *connReader, pi peerInfo, endpoint string) *pipe {
	p := newPipeBase(s, endpoint, c.RemoteAddr().String(), pi.peerType, pi.identity)
	p.conn = c
	p.src = src
	p.fr = frameReader{br: br, limit: uint64(s.opts.MaxMsgSize)}
	p.lowLat = s.lowLatency
	if pi.curve != nil {
		if s.opts.CurveServer {
			p.client = pi.key
		}
		p.cipher = &frameCipher{curve: pi.curve}
		p.fr.limit += curveMsgOverhead // a MESSAGE is its frame plus 33 bytes
	} else {
		p.cipher = newFrameCipher(s.opts.Security)
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

// heartbeat runs on the writer goroutine at every heartbeat tick: it fails
// when the peer has been silent for the heartbeat timeout, and otherwise
// queues a PING.
//
// Liveness is judged on what the peer sends, and only while we read it: a
// reader paused by our own full receive queue (the application not calling
// Recv) is back-pressure, not a dead peer. The clock restarts when the
// reader resumes.
func (p *pipe) heartbeat(now time.Time) error {
	if !p.paused.Load() && now.Sub(time.Unix(0, p.lastRecv.Load())) > p.s.opts.HeartbeatTimeout {
		return fmt.Errorf("%w: no traffic for %v", errHeartbeat, p.s.opts.HeartbeatTimeout)
	}
	var ttl [2]byte
	binary.BigEndian.PutUint16(ttl[:], uint16(min(p.s.opts.HeartbeatTimeout/(100*time.Millisecond), 0xFFFF)))
	return p.command(zmq4.CmdPing, ttl[:])
}

// terminate closes the connection and removes the pipe from its socket. The
// first error given is the reason reported.
func (p *pipe) terminate(err error) {
	first := false
	p.once.Do(func() {
		first = true
		p.err = err
		p.wmu.Lock()
		p.wclosed = true
		p.out.release()
		p.urgent.release()
		p.cipher.wipeSend() // no sender seals with it any more
		p.wmu.Unlock()
		if p.conn != nil {
			p.conn.Close()
		}
		close(p.done)
		p.s.detach(p, err)
		close(p.ended)
	})
	if first && p.link != nil {
		p.link.closed(err)
	}
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

// discard counts n received messages that the socket type threw away.
func (p *pipe) discard(n uint64) {
	p.stats.discarded.Add(n)
	p.s.stats.discarded.Add(n)
}

func (p *pipe) peerStats() PeerStats {
	p.wmu.Lock()
	q, id := p.queued, p.routeID
	p.wmu.Unlock()
	return PeerStats{Endpoint: p.endpoint, Remote: p.remote, PeerType: p.peerType, Identity: id, Queued: q, Subscriptions: p.subs.len(), Counters: p.counters()}
}

// counters is a snapshot of the pipe's counters. A link counts messages
// and bytes itself (an inproc sender counts what it hands over under the
// lock it holds anyway), and so does a network pipe's send side, under
// wmu.
func (p *pipe) counters() Counters {
	c := p.stats.snapshot()
	if p.link != nil {
		p.link.counts(&c)
		return c
	}
	p.wmu.Lock()
	c.MsgsOut += p.sent
	c.BytesOut += p.sentB
	p.wmu.Unlock()
	return c
}
