package discovery

// Bounds of a Watcher's memory.
const (
	// MaxPeers is the most peers a Watcher tracks (and the most mDNS
	// instances it gathers records for). Announcements of further peers
	// are ignored, counted (Stats.PeersIgnored) and logged until some
	// peer goes.
	MaxPeers = 4096
	// MaxQueuedEvents is the most events waiting in one subscriber's queue
	// (Events, Subscribe). Coalescing keeps a queue at one event per peer,
	// two for a peer that went down and came back, so this bound is a
	// last resort; beyond it events are dropped, counted
	// (Stats.EventDrops) and logged, and Peers tells the current state.
	MaxQueuedEvents = 2 * MaxPeers
)

// evQueue is one subscriber's queue of events, coalesced per peer (by
// Peer.Key) while they wait. For a peer with an event still queued, a new
// event merges with it:
//
//	queued    new        queued afterwards
//	Up        Updated    Up, with the new state
//	Up        Down       nothing: the reader never saw the peer
//	Updated   Updated    Updated, with the new state
//	Updated   Down       Down
//	Down      Up         Down, then Up (the reader sees the restart)
//
// so the reader always ends with the peers the Watcher has, and sees every
// peer it was told about go down. Time and LastSeen are the newest event's.
type evQueue struct {
	items []*qent
	head  int
	last  map[string]*qent // the newest queued event of each peer
	live  int              // queued events not cancelled
}

type qent struct {
	ev   Event
	dead bool  // cancelled (an Up followed by a Down)
	prev *qent // an earlier queued Down of the same peer, when ev is Up
}

// push queues ev. It returns coalesced when ev merged into a queued event,
// dropped when the queue was full.
func (q *evQueue) push(ev Event) (coalesced, dropped bool) {
	if q.last == nil {
		q.last = make(map[string]*qent)
	}
	k := ev.Peer.Key
	p := q.last[k]
	if p != nil {
		switch {
		case p.ev.Kind == PeerUp && ev.Kind == PeerDown:
			p.dead = true
			p.ev = Event{}
			q.live--
			if p.prev != nil {
				q.last[k] = p.prev
			} else {
				delete(q.last, k)
			}
			return true, false
		case p.ev.Kind == PeerDown && ev.Kind == PeerUp:
			// Queued below, after the Down.
		default:
			kind := p.ev.Kind
			if ev.Kind == PeerDown {
				kind = PeerDown
			}
			p.ev = ev
			p.ev.Kind = kind
			return true, false
		}
	}
	if q.live >= MaxQueuedEvents {
		return false, true
	}
	e := &qent{ev: ev}
	if p != nil {
		e.prev = p
	}
	q.compact()
	q.items = append(q.items, e)
	q.last[k] = e
	q.live++
	return false, false
}

// pop returns the oldest queued event.
func (q *evQueue) pop() (Event, bool) {
	for q.head < len(q.items) {
		e := q.items[q.head]
		q.items[q.head] = nil
		q.head++
		if e.dead {
			continue
		}
		q.live--
		k := e.ev.Peer.Key
		if q.last[k] == e {
			delete(q.last, k)
		} else if n := q.last[k]; n != nil && n.prev == e {
			n.prev = nil
		}
		q.compact()
		return e.ev, true
	}
	q.items, q.head = q.items[:0], 0
	return Event{}, false
}

// compact drops the spent and cancelled entries from the queue's array
// once they are as many as the live ones (and at least 64), so that its
// memory follows the number of live events, whatever the churn.
func (q *evQueue) compact() {
	if len(q.items) < 64 || len(q.items) < 2*q.live {
		return
	}
	n := 0
	for _, e := range q.items[q.head:] {
		if !e.dead {
			q.items[n] = e
			n++
		}
	}
	clear(q.items[n:])
	q.items, q.head = q.items[:n], 0
}

func (q *evQueue) empty() bool { return q.live == 0 }
