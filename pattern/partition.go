package pattern

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/partition"
	"github.com/zpeer/zpeer/socket"
)

// Partitioned pipelines: a Pusher that gives a message a partition key
// (PartitionKey, WithPartitionKey) sends every message of that key to one
// puller, chosen by rendezvous hashing over the pullers connected now (see
// docs/patterns.md, "Partitioned pipelines").
//
// Fire-and-forget, the Pusher keeps the set of its PUSH socket's peers
// (pullerRing, from the socket's peer hooks) and sends a keyed message to
// its key's owner with SendTo. Acked, a key has at most one job in flight:
// its later jobs wait, chained through item.knext behind its head (the
// job being delivered), until the job ahead of them is acknowledged or
// dead; the key's table slot (keyTable) knows only its last job, to chain
// the next one to (the links are written in batches, see linkKeys). A
// key's job that may be delivered waits in its owner's keyQueue (or in
// the homeless queue while no puller is there), so that a puller without
// credit holds up only its own keys.

// PartitionKey gives one pushed message a partition key, overriding the
// Pusher's WithPartitionKey. Every message of a key goes to the same
// puller while the set of pullers does not change, in push order; see
// Pusher. Any string is a key, the empty one included. It applies to
// Pusher.Push and PushAsync only.
func PartitionKey(key string) CallOption {
	return CallOption{kind: callKey, k: key}
}

// WithPartitionKey makes a Pusher of T partition its messages by the key
// fn returns for each value (see Pusher): all messages of a key go to one
// puller, in order. PartitionKey overrides it for one message. fn runs in
// Push, on the caller's goroutine.
func WithPartitionKey[T any](fn func(T) string) Option {
	return func(o *options) error {
		if fn == nil {
			return optErr("WithPartitionKey: nil function")
		}
		o.used |= oPartition
		o.keyFunc = fn
		return nil
	}
}

// keyOf returns the partition key of a message pushed with opts (the
// CallOption's, else keyFn's) and the options left to encode it with:
// none when PartitionKey was the only one, so that the envelope is made
// from the Pusher's template.
func keyOf[T any](keyFn func(T) string, v T, opts []CallOption) (key string, keyed bool, rest []CallOption) {
	rest = opts
	other := false
	for i := range opts {
		switch o := &opts[i]; o.kind {
		case callKey:
			key, keyed = o.k, true // the last one counts
		case callNone:
		default:
			other = true
		}
	}
	if keyed && !other {
		rest = nil
	}
	if !keyed && keyFn != nil {
		key, keyed = keyFn(v), true
	}
	return key, keyed, rest
}

// pullerRing is a fire-and-forget Pusher's set of pullers, kept by its
// PUSH socket's Attach and Detach hooks.
type pullerRing struct {
	snap atomic.Pointer[[]ringMember] // the members now; replaced, never modified

	mu      sync.Mutex
	changed chan struct{} // guarded by mu: closed at the next change, if someone waits
}

type ringMember struct {
	peer *socket.Peer
	hash uint64 // of its identity (partition.PeerID)
	tie  uint64 // its peer id
}

func newPullerRing() *pullerRing {
	r := &pullerRing{}
	r.snap.Store(new([]ringMember))
	return r
}

func (r *pullerRing) attach(sp *socket.Peer) {
	m := ringMember{peer: sp, hash: partition.Hash(partition.PeerID(sp)), tie: sp.ID()}
	r.mu.Lock()
	old := *r.snap.Load()
	ms := append(make([]ringMember, 0, len(old)+1), old...)
	ms = append(ms, m)
	r.snap.Store(&ms)
	r.changedLocked()
	r.mu.Unlock()
}

// detach removes sp; it is called again, harmlessly, by a send that found
// sp gone before its Detach hook ran.
func (r *pullerRing) detach(sp *socket.Peer, _ error) {
	r.mu.Lock()
	old := *r.snap.Load()
	ms := make([]ringMember, 0, len(old))
	for _, m := range old {
		if m.peer != sp {
			ms = append(ms, m)
		}
	}
	if len(ms) != len(old) {
		r.snap.Store(&ms)
		r.changedLocked()
	}
	r.mu.Unlock()
}

func (r *pullerRing) changedLocked() {
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// wait returns a channel closed when the set of pullers next changes.
func (r *pullerRing) wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.changed
}

// owner returns the member that owns the key hashing to kh (nil if there
// is none).
func (r *pullerRing) owner(kh uint64) *socket.Peer {
	var best *socket.Peer
	var bs, bt uint64
	for _, m := range *r.snap.Load() {
		if s := partition.Score(kh, m.hash); best == nil || partition.Better(s, m.tie, bs, bt) {
			best, bs, bt = m.peer, s, m.tie
		}
	}
	return best
}

// send queues m for the owner of the key hashing to kh, waiting while
// there is no puller or the owner's queue is full. closed ends the wait
// with ErrClosed.
func (r *pullerRing) send(ctx context.Context, closed <-chan struct{}, sock *socket.Socket, kh uint64, m socket.Msg) error {
	for {
		p := r.owner(kh)
		if p == nil {
			ch := r.wait()
			if r.owner(kh) != nil {
				continue
			}
			select {
			case <-ch:
				continue
			case <-closed:
				return ErrClosed
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		err := sock.SendTo(ctx, p, m)
		if errors.Is(err, socket.ErrPeerLost) {
			// Gone before its Detach hook ran: its keys have another
			// owner now.
			r.detach(p, err)
			continue
		}
		return err
	}
}

// stats adds the figures per puller: messages sent to it and still
// queued for it (a fire-and-forget Pusher holds no per-key state).
func (r *pullerRing) stats(s *Stats) {
	for _, m := range *r.snap.Load() {
		ps := m.peer.Stats()
		s.Peers = append(s.Peers, PeerStats{Remote: ps.Remote, Identity: partition.PeerID(m.peer),
			Sent: ps.MsgsOut, Reliability: 1, InFlight: ps.Queued})
	}
}

// keyTable is an acked Pusher's keys with jobs in custody, by hash, each
// with its last job in push order: the one its next job is chained to. A
// key is forgotten when its last job settles. A key is known by its 64-bit
// hash: two keys of the same hash (a chance of about n²/2⁶⁵ among n keys)
// would have the same owner anyway, and share their turn.
//
// It is an open-addressing table with linear probing and backward-shift
// deletion (no tombstones), whose slots keep the hash beside the job so
// that a lookup reads one cache line, most of the time. A Pusher's keys come and
// go with every job when it has many of them, which a Go map serves
// slower. The slot is found from the hash mixed with a random seed, so
// that keys chosen to share a slot cannot be known in advance. Its load
// stays between 1/8 and 3/4 (above its minimum size): with many keys
// it is among the largest things the Pusher touches at random, and its
// runs stay short enough at 3/4 that a probe mostly reads one cache line.
type keyTable struct {
	slots []keySlot // power-of-two length; last nil marks an empty slot
	shift uint      // 64 - log2(len(slots))
	seed  uint64
	n     int
}

type keySlot struct {
	hash uint64
	last *item
}

const minKeySlots = 64

func newKeyTable() keyTable {
	var b [8]byte
	rand.Read(b[:])
	return keyTable{seed: binary.LittleEndian.Uint64(b[:]) | 1}
}

// home is the slot where the search for hash h starts.
func (t *keyTable) home(h uint64) uint64 {
	return ((h ^ t.seed) * 0x9e3779b97f4a7c15) >> t.shift
}

// get returns the slot of the key hashing to h (nil if it has none),
// valid until the next put or del.
func (t *keyTable) get(h uint64) *keySlot {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(h); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.last == nil {
			return nil
		}
		if s.hash == h {
			return s
		}
	}
}

// put adds the key hashing to h, which is not there, with its last job.
func (t *keyTable) put(h uint64, last *item) {
	if (t.n+1)*4 > 3*len(t.slots) {
		t.resize(max(minKeySlots, 2*len(t.slots)))
	}
	t.insert(h, last)
	t.n++
}

func (t *keyTable) insert(h uint64, last *item) {
	mask := uint64(len(t.slots) - 1)
	i := t.home(h)
	for t.slots[i].last != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = keySlot{h, last}
}

// del removes the key hashing to h, if it is there.
func (t *keyTable) del(h uint64) {
	if t.n == 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := t.home(h)
	for t.slots[i].hash != h || t.slots[i].last == nil {
		if t.slots[i].last == nil {
			return
		}
		i = (i + 1) & mask
	}
	// Move back, into the hole at i, each later slot of the run whose
	// search would otherwise stop at the hole: one whose home is not
	// (cyclically) in (i, j].
	for j := (i + 1) & mask; t.slots[j].last != nil; j = (j + 1) & mask {
		k := t.home(t.slots[j].hash)
		if i <= j && i < k && k <= j || i > j && (i < k || k <= j) {
			continue
		}
		t.slots[i] = t.slots[j]
		i = j
	}
	t.slots[i] = keySlot{}
	t.n--
	if len(t.slots) > minKeySlots && t.n*8 < len(t.slots) {
		t.resize(len(t.slots) / 2)
	}
}

func (t *keyTable) resize(size int) {
	old := t.slots
	t.slots = make([]keySlot, size)
	t.shift = uint(64 - bits.TrailingZeros(uint(size)))
	for _, s := range old {
		if s.last != nil {
			t.insert(s.hash, s.last)
		}
	}
}

// keyQueue holds the keyed jobs that may be delivered, by priority then in
// queue order, for one puller (owner), or for none yet (the homeless
// queue, owner nil).
//
// Its jobs are in rings of pointers (jobRing), not linked through the
// items as a.levels' are: a job's owner takes about 1/N of the jobs, in
// push order but scattered over custody's memory, and in a full custody
// they are cold. Walking a linked queue would fetch them one after
// another; from a ring, warm fetches those about to be delivered side by
// side.
type keyQueue struct {
	owner    *pullerPeer
	levels   [256]jobRing
	nonEmpty [4]uint64
	n        int
}

func newKeyQueue(owner *pullerPeer) *keyQueue {
	return &keyQueue{owner: owner}
}

func (q *keyQueue) push(it *item, front bool) {
	q.levels[it.prio].push(it, front)
	q.nonEmpty[it.prio>>6] |= 1 << (it.prio & 63)
	q.n++
}

func (q *keyQueue) remove(it *item) {
	l := &q.levels[it.prio]
	l.remove(it)
	if l.n == 0 {
		q.nonEmpty[it.prio>>6] &^= 1 << (it.prio & 63)
	}
	q.n--
}

// top returns the ring of the highest priority with jobs (nil if empty).
func (q *keyQueue) top() *jobRing {
	for w := 3; w >= 0; w-- {
		if b := q.nonEmpty[w]; b != 0 {
			return &q.levels[w<<6+bits.Len64(b)-1]
		}
	}
	return nil
}

// highest returns the first job of the highest priority (nil if empty).
func (q *keyQueue) highest() *item {
	if l := q.top(); l != nil {
		return l.first()
	}
	return nil
}

// warm reads what delivering the next n jobs (of the highest priority)
// will read: each job's first two cache lines and its envelope. The
// loads of one job do not wait for those of the one before, so that they
// are fetched side by side, rather than one after another as each
// delivery touches them. It returns a sum of what it read, for the
// caller to keep (so that the reads are not optimised away).
func (q *keyQueue) warm(n int) uint64 {
	l := q.top()
	if l == nil {
		return 0
	}
	var sum uint64
	for pos := l.head; pos != l.tail && n > 0; pos++ {
		it := l.slots[pos&l.mask()]
		if it == nil {
			continue
		}
		n--
		sum += uint64(it.sends) + uint64(it.deadline)
		if f := it.frame; len(f) > 0 {
			sum += uint64(f[0]) + uint64(f[len(f)-1])
		}
	}
	return sum
}

// each calls fn on every job queued (fn may move the job elsewhere).
func (q *keyQueue) each(fn func(*item)) {
	for i := range q.levels {
		if q.levels[i].n > 0 {
			for _, it := range q.levels[i].jobs() {
				fn(it)
			}
		}
	}
}

// jobRing is a FIFO of jobs from which a job can also be taken out of the
// middle: a ring of slots, slots[pos & mask] for the positions from head
// to tail. A job taken out of the middle leaves a hole (nil), skipped,
// and the ring is compacted once holes take half of it; head and tail are
// always jobs. A queued job's position is in its deadline field, which is
// unused while it is queued.
type jobRing struct {
	slots      []*item // power-of-two length (or none)
	head, tail uint64  // positions: tail-head <= len(slots)
	n          int     // jobs (tail-head less the holes)
}

const minRingSlots = 16

func (l *jobRing) mask() uint64 { return uint64(len(l.slots) - 1) }

// first returns the job at the head (nil if empty).
func (l *jobRing) first() *item {
	if l.n == 0 {
		return nil
	}
	return l.slots[l.head&l.mask()]
}

func (l *jobRing) push(it *item, front bool) {
	if l.tail-l.head == uint64(len(l.slots)) {
		l.resize()
	}
	var pos uint64
	if front {
		l.head--
		pos = l.head
	} else {
		pos = l.tail
		l.tail++
	}
	l.slots[pos&l.mask()] = it
	it.deadline = int64(pos)
	l.n++
}

func (l *jobRing) remove(it *item) {
	pos := uint64(it.deadline)
	if debugChecks && (pos-l.head >= l.tail-l.head || l.slots[pos&l.mask()] != it) {
		panic(fmt.Sprintf("pattern: keyed job %x is not at its position in its queue", it.id))
	}
	l.slots[pos&l.mask()] = nil
	l.n--
	for l.head != l.tail && l.slots[l.head&l.mask()] == nil {
		l.head++
	}
	for l.tail != l.head && l.slots[(l.tail-1)&l.mask()] == nil {
		l.tail--
	}
	if len(l.slots) > minRingSlots && l.n*8 < len(l.slots) {
		l.resize()
	}
}

// resize makes room for a job, or gives memory back: the jobs move to a
// ring of at least twice as many slots as jobs (and minRingSlots),
// keeping their positions; if the holes between them leave too few
// slots for that, they are packed from head on and given new positions.
func (l *jobRing) resize() {
	size := minRingSlots
	for size < 2*l.n {
		size *= 2
	}
	old, oldMask := l.slots, l.mask()
	l.slots = make([]*item, size)
	mask := l.mask()
	if l.tail-l.head < uint64(size) {
		for pos := l.head; pos != l.tail; pos++ {
			l.slots[pos&mask] = old[pos&oldMask]
		}
		return
	}
	to := l.head
	for pos := l.head; pos != l.tail; pos++ {
		if it := old[pos&oldMask]; it != nil {
			l.slots[to&mask] = it
			it.deadline = int64(to)
			to++
		}
	}
	l.tail = to
}

// jobs returns the jobs in order, in a new slice.
func (l *jobRing) jobs() []*item {
	jobs := make([]*item, 0, l.n)
	for pos := l.head; pos != l.tail; pos++ {
		if it := l.slots[pos&l.mask()]; it != nil {
			jobs = append(jobs, it)
		}
	}
	return jobs
}

// ownerOf returns the puller, among those whose hello arrived, that owns
// the key hashing to kh (nil if there is none). a.mu is held.
func (a *ackPusher[T]) ownerOf(kh uint64) *pullerPeer {
	var best *pullerPeer
	var bs uint64
	for _, p := range a.ring {
		if s := partition.Score(kh, p.hash); best == nil || partition.Better(s, p.tie, bs, best.tie) {
			best, bs = p, s
		}
	}
	return best
}

// pushKeyedLocked takes it, a job of the key hashing to kh just put in
// custody, through the key's turn: it is chained behind the key's last
// job if the key has one in custody, else it is the key's head and is sent
// to the key's owner, at once if the owner has credit and no keyed job
// waits for it. a.mu is held, and released.
func (a *ackPusher[T]) pushKeyedLocked(it *item, kh uint64) {
	it.keyed, it.khash = true, kh
	if s := a.keys.get(kh); s != nil {
		it.setState(jobWaiting)
		// s.last.knext = it, written later (linkKeys): s.last is cold
		// when its key has many jobs waiting, or its owner a backlog.
		a.links = append(a.links, keyLink{s.last, it})
		s.last = it
		a.mu.Unlock()
		return
	}
	a.keys.put(kh, it)
	p := a.ownerOf(kh)
	if p != nil && p.credit > 0 && !p.blocked && (p.keyed == nil || p.keyed.n == 0) {
		a.sendNowUnlock(it, p)
		return
	}
	it.setState(jobQueued) // enqueue, knowing the owner
	a.queueOf(p).push(it, false)
	a.keyedQueued++
	a.mu.Unlock()
	a.wake()
}

// keyQueueOf returns the queue for the keyed jobs of the key hashing to
// kh: its owner's, or the homeless queue while there is no puller. A
// queued job is always in its key's, since the ring changes only along
// with joinedLocked and leftLocked, which move the jobs whose owner
// changed. a.mu is held.
func (a *ackPusher[T]) keyQueueOf(kh uint64) *keyQueue {
	return a.queueOf(a.ownerOf(kh))
}

// queueOf returns the queue for the keyed jobs of the keys p owns (the
// homeless queue for nil). a.mu is held.
func (a *ackPusher[T]) queueOf(p *pullerPeer) *keyQueue {
	if p == nil {
		return a.homeless
	}
	if p.keyed == nil {
		p.keyed = newKeyQueue(p)
	}
	return p.keyed
}

// enqueueKeyed queues a key's head for its owner now. a.mu is held.
func (a *ackPusher[T]) enqueueKeyed(it *item, front bool) {
	a.keyQueueOf(it.khash).push(it, front)
	a.keyedQueued++
}

// dequeueKeyed takes a queued keyed job out of its queue. a.mu is held.
func (a *ackPusher[T]) dequeueKeyed(it *item) {
	a.keyQueueOf(it.khash).remove(it)
	a.keyedQueued--
}

// keySettled is called when a keyed job leaves custody (acked, or dead
// when dead is true): the key's next job, if any, becomes its head and is
// queued for the key's owner; without one the key is forgotten. Only the
// settled job and the next are read, not the key's slot, while the key
// has jobs waiting. waited says the job settled while waiting for its
// turn. a.mu is held.
func (a *ackPusher[T]) keySettled(it *item, waited, dead bool) {
	if len(a.links) > 0 {
		a.linkKeys()
	}
	it.keyed = false
	if waited {
		// Settled before its turn (acked by a puller that had it from an
		// earlier Pusher, with the same outbox): rare. It stays in the
		// chain, settled, skipped when its turn comes.
		return
	}
	next := it.knext
	it.knext = nil
	for next != nil && next.state == jobSettled {
		n := next.knext
		next.knext = nil
		next = n
	}
	if next == nil {
		a.keys.del(it.khash)
		return
	}
	a.enqueue(next, false)
	if dead {
		// Not on the acknowledgement path, which assigns queued jobs
		// itself: the dispatcher sends it.
		a.wake()
	}
}

// keyLink is a link of a key's chain of jobs, from a job to the next.
type keyLink struct{ from, to *item }

// linkKeys writes the links of the keys' chains that pushKeyedLocked left
// in a.links: written one at a time as jobs are pushed, each would wait
// for its cold job to be fetched, in turn; written together, they are
// fetched side by side. Every reader of item.knext calls it first. a.mu is
// held.
func (a *ackPusher[T]) linkKeys() {
	for _, l := range a.links {
		l.from.knext = l.to
	}
	clear(a.links)
	a.links = a.links[:0]
}

// touchKeyed reads, for each keyed job acked in ids (16 bytes each), what
// settling it reads next: its key's next job, or the key's table slot.
// Both are cold in a full custody, and read one job at a time each would
// stall in turn; read in a loop that does nothing else, they are fetched
// side by side. a.mu is held.
func (a *ackPusher[T]) touchKeyed(ids []byte) {
	if len(a.links) > 0 {
		a.linkKeys()
	}
	var sum uint64
	for ; len(ids) >= 16; ids = ids[16:] {
		it := a.custody.get(codec.ID(ids[:16]))
		if it == nil || !it.keyed {
			continue
		}
		if n := it.knext; n != nil {
			sum += uint64(n.state) + uint64(n.deadline) // the lines queueing it writes
		} else {
			sum += a.keys.slots[a.keys.home(it.khash)].hash
		}
	}
	a.touched = sum
}

// assignKeyed assigns the keyed jobs queued for pullers with credit, up
// to dispatchBatch deliveries in sends, starting with a different puller
// each time. a.mu is held.
func (a *ackPusher[T]) assignKeyed(sends []delivery, now int64) []delivery {
	n := len(a.ring)
	if n == 0 {
		return sends
	}
	a.keyNext++
	for i := range n {
		p := a.ring[(a.keyNext+i)%n]
		if p.keyed != nil && p.keyed.n > 0 && p.credit > 0 && !p.blocked {
			a.touched += p.keyed.warm(min(p.credit, dispatchBatch-len(sends)))
		}
		for p.keyed != nil && p.keyed.n > 0 && p.credit > 0 && !p.blocked && len(sends) < dispatchBatch {
			it := p.keyed.highest()
			p.keyed.remove(it)
			a.keyedQueued--
			a.assign(it, p, now)
			sends = append(sends, deliveryOf(it, p))
		}
	}
	return sends
}

// joinedLocked moves to p, a puller whose hello just arrived, the queued
// keyed jobs whose keys it now owns: those that score higher with it than
// with their owner, and every homeless one. a.mu is held.
func (a *ackPusher[T]) joinedLocked(p *pullerPeer) {
	if a.keyedQueued == 0 {
		return
	}
	if p.keyed == nil {
		p.keyed = newKeyQueue(p)
	}
	move := func(from *keyQueue) {
		from.each(func(it *item) {
			if o := from.owner; o != nil {
				s, os := partition.Score(it.khash, p.hash), partition.Score(it.khash, o.hash)
				if !partition.Better(s, p.tie, os, o.tie) {
					return
				}
			}
			from.remove(it)
			p.keyed.push(it, false)
		})
	}
	move(a.homeless)
	for _, o := range a.ring {
		if o != p && o.keyed != nil && o.keyed.n > 0 {
			move(o.keyed)
		}
	}
}

// leftLocked gives the keyed jobs queued for p, a puller that left the
// ring, to their keys' new owners. a.mu is held.
func (a *ackPusher[T]) leftLocked(p *pullerPeer) {
	if p.keyed == nil || p.keyed.n == 0 {
		return
	}
	q := p.keyed
	q.each(func(it *item) {
		q.remove(it)
		a.keyedQueued--
		a.enqueueKeyed(it, false)
	})
}

// keysOf counts the keys whose job is queued for p or in flight at it.
// a.mu is held.
func (p *pullerPeer) keysOf() int {
	n := 0
	if p.keyed != nil {
		n = p.keyed.n
	}
	for it := p.held.head; it != nil; it = it.ln[hlinks].next {
		if it.keyed {
			n++
		}
	}
	return n
}

// keyedMark starts an outbox record that holds a keyed job: the byte
// MessagePack never uses, so no envelope starts with it. The key's length
// (a uvarint) and the key follow, then the envelope.
const keyedMark = 0xc1

// keyedRecord is the outbox record of a job of key whose envelope is frame.
func keyedRecord(key string, frame []byte) []byte {
	rec := make([]byte, 0, 1+binary.MaxVarintLen64+len(key)+len(frame))
	rec = append(rec, keyedMark)
	rec = binary.AppendUvarint(rec, uint64(len(key)))
	rec = append(rec, key...)
	return append(rec, frame...)
}

// splitKeyedRecord undoes keyedRecord; a record without the mark is an
// envelope alone.
func splitKeyedRecord(rec []byte) (key string, frame []byte, keyed bool) {
	if len(rec) == 0 || rec[0] != keyedMark {
		return "", rec, false
	}
	n, w := binary.Uvarint(rec[1:])
	if w <= 0 || n > uint64(len(rec)-1-w) {
		return "", rec, false // not ours: the envelope check refuses it
	}
	k := rec[1+w : 1+w+int(n)]
	return string(k), rec[1+w+int(n):], true
}

// checkKeyFunc returns WithPartitionKey's function for a Pusher of T.
func checkKeyFunc[T any](o *options) (func(T) string, error) {
	if o.keyFunc == nil {
		return nil, nil
	}
	fn, ok := o.keyFunc.(func(T) string)
	if !ok {
		return nil, optErr("WithPartitionKey: %T does not take this Pusher's values (want func(%s) string)", o.keyFunc, reflect.TypeFor[T]())
	}
	return fn, nil
}
