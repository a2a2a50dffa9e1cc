package socket

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
)

// routerProto: every received message is prefixed with the sending peer's
// routing id; Send takes the routing id from the first frame and queues the
// rest to that peer (RFC 28 ROUTER). A peer that announced an Identity in its
// handshake is addressed by it (unless another connected peer already has
// it); the others get a generated 5-byte id starting with 0x00, as libzmq
// does.
//
// A peer's id is assigned before the Attach hook sees it (Peer.Identity is
// the routing id from the start), but Send routes to it only once it is
// attached.
type routerProto struct {
	s    *Socket
	mu   sync.Mutex
	ids  map[string]*pipe // guarded by mu: every id assigned, attached or not yet
	byID map[string]*pipe // guarded by mu: the attached peers, by id
	next uint32           // guarded by mu: the last generated id
}

func newRouterProto(s *Socket) *routerProto {
	return &routerProto{s: s, ids: make(map[string]*pipe), byID: make(map[string]*pipe), next: rand.Uint32()}
}

// assignID gives p its routing id: the identity it announced, unless that
// is empty, starts with 0x00 or is taken; a generated one otherwise.
func (r *routerProto) assignID(p *pipe) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := p.identity
	if len(id) == 0 || id[0] == 0 || r.ids[string(id)] != nil {
		id = make([]byte, 5)
		for {
			r.next++
			binary.BigEndian.PutUint32(id[1:], r.next)
			if r.ids[string(id)] == nil {
				break
			}
		}
	}
	p.wmu.Lock() // Stats may read it already: the pipe is in s.pipes
	p.routeID = id
	p.wmu.Unlock()
	r.ids[string(id)] = p
}

func (r *routerProto) attach(p *pipe) {
	if p.routeID == nil { // written only on this path: no lock to read it
		r.assignID(p)
	}
	r.mu.Lock()
	r.byID[string(p.routeID)] = p
	r.mu.Unlock()
}

func (r *routerProto) detach(p *pipe) {
	r.mu.Lock()
	if r.byID[string(p.routeID)] == p {
		delete(r.byID, string(p.routeID))
	}
	if r.ids[string(p.routeID)] == p {
		delete(r.ids, string(p.routeID))
	}
	r.mu.Unlock()
}

func (r *routerProto) command(*pipe, string, []byte) {}

// sendTo sends m, with no routing-id frame, to p.
func (r *routerProto) sendTo(ctx context.Context, p *pipe, m Msg) error {
	return sendTo(ctx, r.s, p, m, ErrPeerLost)
}

func (r *routerProto) incoming(p *pipe, m Msg) (Msg, bool) {
	frames := make([][]byte, 0, len(m.Frames)+1)
	frames = append(append(frames, p.routeID), m.Frames...) // the rest of m stays
	// The reader's frame slice (carved from an array that holds the frames
	// of hundreds of messages) is not m's any more: cleared, so that it
	// does not keep frames alive that m's owner has dropped (a large frame
	// taken with TakeFrame goes back to the pool only once unreferenced).
	clear(m.Frames)
	m.Frames = frames
	m.size += len(p.routeID)
	return m, true
}

func (r *routerProto) recv(ctx context.Context) (Msg, *pipe, error) {
	return r.s.pop(ctx)
}
func (*routerProto) recvIsPop() {}

func (r *routerProto) send(ctx context.Context, m Msg) error {
	if len(m.Frames) < 2 {
		return fmt.Errorf("%w: a ROUTER message needs a routing id frame and a body", ErrEmpty)
	}
	r.mu.Lock()
	p := r.byID[string(m.Frames[0])]
	r.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%w: routing id %x", ErrNoSuchPeer, m.Frames[0])
	}
	if err := sendTo(ctx, r.s, p, Msg{Frames: m.Frames[1:], Buf: m.Buf}, ErrNoSuchPeer); err != nil {
		if err == ErrWouldBlock {
			return err // routine for a non-blocking sender, which retries: no garbage
		}
		return fmt.Errorf("socket: ROUTER send to %x: %w", m.Frames[0], err)
	}
	return nil
}
