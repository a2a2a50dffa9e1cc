package pattern

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// Mirror keeps a copy of a StateServer's state and follows its changes.
//
// It joins as the Clone pattern says: it subscribes to the server's
// changes first, waits until one message (a heartbeat, which the server
// sends to every new subscriber at once) shows they reach it, then asks
// for a snapshot stamped with the sequence number it reflects. Changes
// that arrive meanwhile are kept; once the snapshot is in, those after its
// stamp are applied in order, so nothing is missed or applied twice at the
// join. From then on each change must carry the next sequence number. A
// hole (a change lost on the way: the server drops what a slow mirror has
// no room for) or a heartbeat ahead of the mirror is a gap, and the mirror
// re-synchronises from a new snapshot; so does a new server epoch (a
// restarted server). Until a re-synchronisation completes, Get and Range
// serve the state as it was.
//
// A Mirror connects to the server's state endpoint (WithConnect, or
// WithService to find it by name) with a DEALER socket, and to the change
// endpoint the server names there with a SUB socket. It follows one
// server: a state has one writer, and a service name should have one
// StateServer.
type Mirror[T any] struct {
	o      options
	dealer *socket.Socket // hello and snapshot requests
	sub    *socket.Socket // changes and heartbeats

	// The state as readers see it, guarded by mu; the run goroutine
	// writes it.
	mu      sync.RWMutex
	state   map[string]mirrorEntry[T]
	seq     uint64
	epoch   string
	watches map[*Watch[T]]struct{}

	synced   chan struct{} // closed by the first snapshot
	evMu     sync.Mutex
	evs      []peerEvent   // guarded by evMu: DEALER peers come and gone, for run
	kick     chan struct{} // capacity 1: evs has something
	dealerIn chan inMsg
	subIn    chan inMsg
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup
	disc     *joined
	once     sync.Once
	c        stateCounters
}

type mirrorEntry[T any] struct {
	val T
	raw []byte // the value's encoding, to compare with a new snapshot's
}

// Entry is one key of a state and its value.
type Entry[T any] struct {
	Key   string
	Value T
}

// Change is one change of a mirrored state, as a Watch reports it.
type Change[T any] struct {
	Key     string
	Value   T    // the new value (zero for a delete)
	Deleted bool // the key was deleted
	// Seq is the server's sequence number of the change; for a change
	// found by a re-synchronisation, that of the state it led to.
	Seq uint64
	// Resync marks a change that a re-synchronisation found (comparing
	// the new snapshot with the state before it) rather than one received
	// as such: the intermediate values of the changes missed are not seen,
	// only the net difference.
	Resync bool
}

type inMsg struct {
	m socket.Msg
	p *socket.Peer
}

type peerEvent struct {
	p  *socket.Peer
	up bool
}

// maxPendingChanges bounds the changes a Mirror keeps while it waits for a
// snapshot. Beyond it they are dropped, and another snapshot follows.
const maxPendingChanges = 1 << 16

// NewMirror creates a Mirror. Give it the server's state endpoint with
// WithConnect, or its service with WithService (or WithWatcher,
// WithDiscovery); it does not bind. WaitSynced waits for its first
// snapshot.
//
// Options: WithConnect, WithService, WithWatcher, WithDiscovery,
// WithTimeout (how long it waits for an answer from the server before it
// asks again, default 2s), WithName, WithSocketOptions (for both sockets),
// WithLogger, the CURVE options (WithServerKey, WithKey, WithTrust: both
// sockets are CURVE clients of the server's key).
func NewMirror[T any](opts ...Option) (*Mirror[T], error) {
	o, err := buildOptions("Mirror", oTimeout, opts)
	if err != nil {
		return nil, err
	}
	if len(o.binds) > 0 {
		return nil, optErr("WithBind does not apply to Mirror: it connects to its StateServer")
	}
	m := &Mirror[T]{
		o:        o,
		state:    make(map[string]mirrorEntry[T]),
		watches:  make(map[*Watch[T]]struct{}),
		synced:   make(chan struct{}),
		kick:     make(chan struct{}, 1),
		dealerIn: make(chan inMsg, 16),
		subIn:    make(chan inMsg, 256),
		done:     make(chan struct{}),
	}
	hooks := &socket.PeerHooks{
		Attach: func(p *socket.Peer) { m.peerEvent(p, true) },
		Detach: func(p *socket.Peer, _ error) { m.peerEvent(p, false) },
	}
	if m.dealer, err = newSocket(socket.DEALER, &m.o, hooks); err != nil {
		return nil, err
	}
	if m.sub, err = newSocket(socket.SUB, &m.o, nil); err != nil {
		m.dealer.Close()
		return nil, err
	}
	if err := m.sub.Subscribe(""); err != nil {
		m.closeSockets()
		return nil, err
	}
	m.wg.Add(3)
	go m.read(m.dealer, m.dealerIn)
	go m.read(m.sub, m.subIn)
	go m.run()
	if err := setup(m.dealer, m.o); err != nil {
		m.Close()
		return nil, err
	}
	if m.disc, err = join(&m.o, "DEALER", m, nil); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// peerEvent tells run of a DEALER peer; it runs on an I/O goroutine and
// does not block.
func (m *Mirror[T]) peerEvent(p *socket.Peer, up bool) {
	m.evMu.Lock()
	m.evs = append(m.evs, peerEvent{p, up})
	m.evMu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// read hands what s receives to run, until s closes.
func (m *Mirror[T]) read(s *socket.Socket, ch chan<- inMsg) {
	defer m.wg.Done()
	for {
		msg, p, err := s.RecvFrom(context.Background())
		if err != nil {
			return
		}
		select {
		case ch <- inMsg{msg, p}:
		case <-m.done:
			msg.Free()
			return
		}
	}
}

// Connect connects the Mirror to a StateServer's state endpoint.
func (m *Mirror[T]) Connect(ep string) error { return m.dealer.Connect(ep) }

// Disconnect undoes Connect.
func (m *Mirror[T]) Disconnect(ep string) error { return m.dealer.Disconnect(ep) }

// WaitSynced blocks until the Mirror has its first snapshot. It fails with
// ctx's error (a deadline matches ErrTimeout) or ErrClosed.
func (m *Mirror[T]) WaitSynced(ctx context.Context) error {
	select {
	case <-m.synced:
		return nil
	case <-m.done:
		return ErrClosed
	case <-ctx.Done():
		return ctxError(ctx)
	}
}

// Get returns key's value, and whether the key is there. A []byte value
// is the mirror's own memory, shared with every other reader: do not
// modify it.
func (m *Mirror[T]) Get(key string) (T, bool) {
	m.mu.RLock()
	e, ok := m.state[key]
	m.mu.RUnlock()
	return e.val, ok
}

// Len returns the number of keys.
func (m *Mirror[T]) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.state)
}

// Seq returns the sequence number of the last change the state reflects
// (0 before the first snapshot).
func (m *Mirror[T]) Seq() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.seq
}

// Epoch returns the epoch of the server the state comes from.
func (m *Mirror[T]) Epoch() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.epoch
}

// Range returns the keys that start with prefix ("" for all) and their
// values, sorted by key: a consistent snapshot of the state at Seq.
func (m *Mirror[T]) Range(prefix string) []Entry[T] {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rangeLocked(prefix)
}

func (m *Mirror[T]) rangeLocked(prefix string) []Entry[T] {
	var out []Entry[T]
	for k, e := range m.state {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Entry[T]{k, e.val})
		}
	}
	slices.SortFunc(out, func(a, b Entry[T]) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Watch returns the keys that start with prefix and their values, sorted
// by key (as Range), and a Watch that reports every change to those keys
// after them, in order: the two together never miss or repeat a change.
// Changes found by a re-synchronisation are reported too (Change.Resync).
//
// A Watch holds at most 256 changes not yet taken by Next; beyond that the
// Mirror waits for it (and so falls behind its server, which may cost it a
// re-synchronisation). Close a Watch that is no longer read.
func (m *Mirror[T]) Watch(prefix string) ([]Entry[T], *Watch[T]) {
	w := &Watch[T]{m: m, prefix: prefix, ch: make(chan Change[T], 256), done: make(chan struct{})}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watches[w] = struct{}{}
	return m.rangeLocked(prefix), w
}

// Stats returns the Mirror's counters: Keys, Seq, Epoch, Changes
// (applied as received), Snapshots (applied), Resyncs, Gaps and Dropped
// (messages that did not decode).
func (m *Mirror[T]) Stats() StateStats {
	m.mu.RLock()
	st := StateStats{Keys: len(m.state), Seq: m.seq, Epoch: m.epoch}
	m.mu.RUnlock()
	st.Changes = m.c.changes.Load()
	st.Snapshots = m.c.snapshots.Load()
	st.Resyncs = m.c.resyncs.Load()
	st.Gaps = m.c.gaps.Load()
	st.Dropped = m.c.dropped.Load()
	addSocket(&st.Socket, m.dealer.Stats())
	addSocket(&st.Socket, m.sub.Stats())
	return st
}

// Close stops the Mirror and closes its sockets. Get and Range still
// serve the state it had; Watches return ErrClosed once they have given
// the changes they hold. Close is idempotent.
func (m *Mirror[T]) Close() error {
	var err error
	m.once.Do(func() {
		m.disc.leave()
		close(m.done)
		err = m.closeSockets()
		m.wg.Wait()
	})
	return err
}

func (m *Mirror[T]) closeSockets() error {
	err := m.dealer.Close()
	if serr := m.sub.Close(); err == nil {
		err = serr
	}
	return err
}

// Watch reports the changes of a Mirror's state (see Mirror.Watch).
type Watch[T any] struct {
	m      *Mirror[T]
	prefix string
	ch     chan Change[T]
	done   chan struct{}
	once   sync.Once
}

// Next returns the next change. It fails with ctx's error (a deadline
// matches ErrTimeout), or ErrClosed once the Watch or its Mirror is
// closed and the changes it held are taken.
func (w *Watch[T]) Next(ctx context.Context) (Change[T], error) {
	select {
	case c := <-w.ch:
		return c, nil
	default:
	}
	select {
	case c := <-w.ch:
		return c, nil
	case <-w.done:
		return Change[T]{}, ErrClosed
	case <-w.m.done:
		select {
		case c := <-w.ch:
			return c, nil
		default:
			return Change[T]{}, ErrClosed
		}
	case <-ctx.Done():
		return Change[T]{}, ctxError(ctx)
	}
}

// Close stops the Watch. It is idempotent.
func (w *Watch[T]) Close() {
	w.once.Do(func() {
		w.m.mu.Lock()
		delete(w.m.watches, w)
		w.m.mu.Unlock()
		close(w.done)
	})
}

// What the mirror is asking its server for.
type mirrorPhase uint8

const (
	askNothing  mirrorPhase = iota // no server, or nothing outstanding
	askHello                       // hello sent: where are the changes, what epoch
	askSync                        // subscribed: waiting for a message that proves changes reach us
	askSnapshot                    // snapshot requested; changes kept meanwhile
)

// mirrorRun is the Mirror's protocol state, owned by the run goroutine.
type mirrorRun[T any] struct {
	m     *Mirror[T]
	phase mirrorPhase
	// live: the state reflects every change of epoch up to applied, so
	// the next change in order can be applied as it comes.
	live      bool
	epoch     string
	applied   uint64
	server    *socket.Peer // the DEALER peer followed
	changesEp string       // where sub is connected
	proof     *socket.Peer // the sub peer a message of epoch came from
	foreign   map[string]bool
	req       codec.ID // the request outstanding
	timer     *time.Timer
	snap      map[string]mirrorEntry[T] // the snapshot being received
	snapSeq   uint64
	snapN     int
	pending   []pendingChange // changes received while not live
	overflow  bool            // pending overflowed: another snapshot is needed
	installed bool            // a snapshot was installed
}

type pendingChange struct {
	seq     uint64
	key     string
	raw     []byte
	deleted bool
}

func (m *Mirror[T]) run() {
	defer m.wg.Done()
	r := &mirrorRun[T]{m: m, timer: time.NewTimer(time.Hour), foreign: make(map[string]bool)}
	r.timer.Stop()
	defer r.timer.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-m.kick:
			m.evMu.Lock()
			evs := m.evs
			m.evs = nil
			m.evMu.Unlock()
			for _, ev := range evs {
				r.peer(ev)
			}
		case in := <-m.dealerIn:
			r.replied(in)
			in.m.Free()
		case in := <-m.subIn:
			r.published(in)
			in.m.Free()
		case <-r.timer.C:
			r.expired()
		}
	}
}

func isDone(p *socket.Peer) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// peer follows a DEALER peer that came or went.
func (r *mirrorRun[T]) peer(ev peerEvent) {
	switch {
	case ev.up && (r.server == nil || isDone(r.server)):
		r.server = ev.p
		r.hello()
	case !ev.up && ev.p == r.server:
		r.server = nil
		for _, p := range r.m.dealer.PeerList() {
			if !isDone(p) {
				r.server = p
				break
			}
		}
		r.hello()
	}
}

func (r *mirrorRun[T]) arm() { r.timer.Reset(r.m.o.timeout) }

// ask sends the server a request of type typ, without waiting: one the
// socket has no room for is asked again when the timer expires.
func (r *mirrorRun[T]) ask(typ string) {
	r.req = codec.NewID()
	r.arm()
	frame, err := codec.Encode(&codec.Envelope{ID: r.req, Kind: codec.KindData, Type: typ, Sender: r.m.o.name, Timestamp: nowNano()})
	if err != nil {
		r.m.o.logger.Warn("pattern: mirror request", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a done context: SendTo tries once
	if err := r.m.dealer.SendTo(ctx, r.server, socket.Msg{Frames: [][]byte{empty, frame}}); err != nil {
		r.m.o.logger.Debug("pattern: mirror request not sent", "type", typ, "err", err)
	}
}

// hello asks the server where its changes are, and its epoch.
func (r *mirrorRun[T]) hello() {
	if r.server == nil {
		r.phase = askNothing
		r.timer.Stop()
		return
	}
	r.phase = askHello
	r.ask(stateHello)
}

// requestSnapshot asks for a snapshot; the changes that come meanwhile
// are kept.
func (r *mirrorRun[T]) requestSnapshot() {
	r.live = false
	r.snap, r.snapN, r.snapSeq = nil, 0, 0
	if r.server == nil {
		r.phase = askNothing
		r.timer.Stop()
		return
	}
	r.phase = askSnapshot
	r.ask(stateSnapshot)
}

// expired: no answer within WithTimeout. Ask again.
func (r *mirrorRun[T]) expired() {
	switch r.phase {
	case askHello:
		r.hello()
	case askSync:
		r.m.o.logger.Warn("pattern: mirror: no changes from the state server yet", "changes", r.changesEp, "waited", r.m.o.timeout)
		r.hello()
	case askSnapshot:
		r.requestSnapshot()
	}
}

// replied handles an answer from the server: ["", envelope].
func (r *mirrorRun[T]) replied(in inMsg) {
	var env codec.View
	if len(in.m.Frames) != 2 || len(in.m.Frames[0]) != 0 || codec.DecodeView(in.m.Frames[1], &env) != nil {
		r.m.c.dropped.Add(1)
		return
	}
	if env.ID != r.req || in.p != r.server {
		return // an answer to a request given up on
	}
	switch {
	case env.Kind == codec.KindError:
		msg, _ := unmarshalBody[string](env.Body)
		r.m.o.logger.Warn("pattern: mirror: the state server refused a request", "type", string(env.Type), "err", msg)
	case env.Kind != codec.KindReply:
	case string(env.Type) == stateHello && r.phase == askHello:
		r.helloReply(&env)
	case string(env.Type) == stateSnapshot && r.phase == askSnapshot:
		r.snapshotPart(&env)
	}
}

func (r *mirrorRun[T]) helloReply(env *codec.View) {
	epoch, _ := env.Header(hdrEpoch)
	var hb helloBody
	err := codec.UnmarshalValue(env.Body, &hb)
	ep, ok := changesFor(r.server.Endpoint(), hb.Changes)
	if err != nil || !ok || len(epoch) == 0 {
		r.m.c.dropped.Add(1)
		r.m.o.logger.Warn("pattern: mirror: bad hello from the state server", "server", r.server.Endpoint(), "changes", hb.Changes)
		return // asked again when the timer expires
	}
	if ep != r.changesEp {
		if r.changesEp != "" {
			r.m.sub.Disconnect(r.changesEp)
		}
		if err := r.connectChanges(ep); err != nil {
			r.m.o.logger.Warn("pattern: mirror: cannot connect to the changes", "changes", ep, "err", err)
			return
		}
		r.changesEp, r.proof = ep, nil
	}
	if string(epoch) != r.epoch {
		if r.epoch != "" {
			r.m.o.logger.Info("pattern: mirror: new state server epoch", "was", r.epoch, "now", string(epoch))
		}
		r.epoch = string(epoch)
		r.live, r.proof, r.pending, r.overflow = false, nil, nil, false
		clear(r.foreign)
	}
	if r.live {
		r.phase = askNothing
		r.timer.Stop()
		return
	}
	if r.proof != nil && !isDone(r.proof) {
		r.requestSnapshot()
		return
	}
	r.phase = askSync
	r.arm()
}

// connectChanges connects sub to ep, as a CURVE client of the server's
// key where the server was discovered with its key.
func (r *mirrorRun[T]) connectChanges(ep string) error {
	c := &r.m.o.curve
	if c.client && c.server.IsZero() {
		if key, ok := c.keys.Lookup(r.server.Endpoint()); ok {
			return r.m.sub.ConnectKey(ep, key)
		}
	}
	return r.m.sub.Connect(ep)
}

// snapshotPart takes one part of the snapshot asked for.
func (r *mirrorRun[T]) snapshotPart(env *codec.View) {
	if epoch, _ := env.Header(hdrEpoch); string(epoch) != r.epoch {
		r.hello() // the server restarted since the hello
		return
	}
	if r.snap == nil {
		size := 0
		if b, ok := env.Header(hdrKeys); ok {
			size, _ = parseCount(b)
		}
		r.snap, r.snapSeq = make(map[string]mirrorEntry[T], min(size, 1<<24)), env.Seq
	}
	// The keys and the values' encodings share one allocation per part,
	// which []byte and string values use too (see sharedValue).
	arena := make([]byte, 0, len(env.Body))
	n, err := parseSnapshot(env.Body, func(k, raw []byte) {
		at := len(arena)
		arena = append(append(arena, raw...), k...)
		raw = arena[at : at+len(raw) : at+len(raw)]
		key := unsafe.String(unsafe.SliceData(arena[at+len(raw):]), len(k))
		v, err := sharedValue[T](raw)
		if err != nil {
			r.m.c.dropped.Add(1)
			r.m.o.logger.Warn("pattern: mirror: a value does not decode; key left out", "key", key, "err", err)
			return
		}
		r.snap[key] = mirrorEntry[T]{v, raw}
	})
	r.snapN += n
	if err != nil {
		r.m.c.dropped.Add(1)
		r.m.o.logger.Warn("pattern: mirror: bad snapshot part", "err", err)
		r.requestSnapshot()
		return
	}
	r.arm()
	end, ok := env.Header(hdrEnd)
	if !ok {
		return
	}
	if total, ok := parseCount(end); !ok || total != r.snapN {
		r.m.o.logger.Warn("pattern: mirror: snapshot incomplete", "keys", r.snapN, "announced", string(end))
		r.requestSnapshot()
		return
	}
	r.install()
}

// install makes the snapshot received the state, with the changes kept
// since that come after it, and tells the watches the difference.
func (r *mirrorRun[T]) install() {
	m := r.m
	state, applied := r.snap, r.snapSeq
	r.snap = nil
	gap := false
	var rest []pendingChange
	for i, c := range r.pending {
		if c.seq <= applied {
			continue
		}
		if c.seq != applied+1 {
			m.c.gaps.Add(c.seq - applied - 1)
			gap, rest = true, r.pending[i:]
			break
		}
		if c.deleted {
			delete(state, c.key)
		} else if v, err := sharedValue[T](c.raw); err == nil {
			state[c.key] = mirrorEntry[T]{v, c.raw}
		} else {
			m.c.dropped.Add(1)
		}
		applied = c.seq
	}
	r.pending = rest
	m.mu.Lock()
	old := m.state
	m.state, m.seq, m.epoch = state, applied, r.epoch
	ws := m.watchList()
	m.mu.Unlock()
	if len(ws) > 0 {
		deliver(m, ws, diff(old, state, applied))
	}
	m.c.snapshots.Add(1)
	if r.installed {
		m.c.resyncs.Add(1)
	} else {
		r.installed = true
		close(m.synced)
	}
	r.applied = applied
	r.live, r.phase = true, askNothing
	r.timer.Stop()
	if gap || r.overflow {
		r.overflow = false
		r.requestSnapshot()
	}
}

// sharedValue decodes a value kept in raw, whose memory is the mirror's
// and never modified: a []byte or string value is raw's payload itself
// (a string without a copy), anything else is decoded.
func sharedValue[T any](raw []byte) (v T, err error) {
	switch p := any(&v).(type) {
	case *[]byte:
		if b, ok := binBody(raw); ok {
			*p = b
			return v, nil
		}
	case *string:
		if b, ok := binBody(raw); ok {
			*p = unsafe.String(unsafe.SliceData(b), len(b))
			return v, nil
		}
	}
	return unmarshalBody[T](raw)
}

// watchList returns the watches; the caller holds m.mu.
func (m *Mirror[T]) watchList() []*Watch[T] {
	if len(m.watches) == 0 {
		return nil
	}
	ws := make([]*Watch[T], 0, len(m.watches))
	for w := range m.watches {
		ws = append(ws, w)
	}
	return ws
}

// diff lists what changed from old to state, sorted by key.
func diff[T any](old, state map[string]mirrorEntry[T], seq uint64) []Change[T] {
	var cs []Change[T]
	for k, e := range state {
		if o, ok := old[k]; !ok || !bytes.Equal(o.raw, e.raw) {
			cs = append(cs, Change[T]{Key: k, Value: e.val, Seq: seq, Resync: true})
		}
	}
	for k := range old {
		if _, ok := state[k]; !ok {
			cs = append(cs, Change[T]{Key: k, Deleted: true, Seq: seq, Resync: true})
		}
	}
	slices.SortFunc(cs, func(a, b Change[T]) int { return strings.Compare(a.Key, b.Key) })
	return cs
}

// deliver hands changes to the watches whose prefix they match, waiting
// for room.
func deliver[T any](m *Mirror[T], ws []*Watch[T], cs []Change[T]) {
	for _, w := range ws {
		for _, c := range cs {
			if !strings.HasPrefix(c.Key, w.prefix) {
				continue
			}
			select {
			case w.ch <- c:
			case <-w.done:
			case <-m.done:
				return
			}
		}
	}
}

// published handles what the server published: [topic, envelope].
func (r *mirrorRun[T]) published(in inMsg) {
	m := r.m
	var env codec.View
	if len(in.m.Frames) != 2 || codec.DecodeView(in.m.Frames[1], &env) != nil || env.Kind != codec.KindData {
		m.c.dropped.Add(1)
		return
	}
	typ := string(env.Type)
	if typ != stateChange && typ != stateHeartbeat {
		m.c.dropped.Add(1)
		return
	}
	epoch, _ := env.Header(hdrEpoch)
	if string(epoch) != r.epoch {
		// Another epoch: the server restarted (and the hello on the new
		// connection is under way, or this asks for it), or another
		// server publishes here. Ask once per epoch seen.
		if r.epoch != "" && !r.foreign[string(epoch)] && len(r.foreign) < 16 && r.phase == askNothing {
			r.foreign[string(epoch)] = true
			r.hello()
		}
		return
	}
	if in.p != nil && !isDone(in.p) {
		r.proof = in.p
	}
	if typ == stateHeartbeat {
		switch {
		case r.phase == askSync:
			r.requestSnapshot()
		case r.live && env.Seq > r.applied:
			m.c.gaps.Add(env.Seq - r.applied)
			r.requestSnapshot()
		}
		return
	}
	key, raw, deleted, err := parseChange(env.Body)
	if err != nil {
		m.c.dropped.Add(1)
		m.o.logger.Debug("pattern: mirror dropped a change", "err", err)
		return
	}
	if r.live {
		switch {
		case env.Seq <= r.applied:
			return // had it
		case env.Seq == r.applied+1:
			r.apply(env.Seq, string(key), raw, deleted)
			return
		}
		m.c.gaps.Add(env.Seq - r.applied - 1)
		r.requestSnapshot()
	}
	if len(r.pending) >= maxPendingChanges {
		r.pending, r.overflow = nil, true
	}
	if !r.overflow {
		r.pending = append(r.pending, pendingChange{seq: env.Seq, key: string(key), raw: bytes.Clone(raw), deleted: deleted})
	}
	if r.phase == askSync {
		r.requestSnapshot()
	}
}

// apply applies the next change in order and tells the watches.
func (r *mirrorRun[T]) apply(seq uint64, key string, raw []byte, deleted bool) {
	m := r.m
	c := Change[T]{Key: key, Deleted: deleted, Seq: seq}
	var e mirrorEntry[T]
	if !deleted {
		raw = bytes.Clone(raw)
		v, err := sharedValue[T](raw)
		if err != nil {
			m.c.dropped.Add(1)
			m.o.logger.Warn("pattern: mirror: a value does not decode; key deleted", "key", key, "err", err)
			c.Deleted = true
		} else {
			e, c.Value = mirrorEntry[T]{v, raw}, v
		}
	}
	m.mu.Lock()
	if c.Deleted {
		delete(m.state, key)
	} else {
		m.state[key] = e
	}
	m.seq = seq
	ws := m.watchList()
	m.mu.Unlock()
	r.applied = seq
	m.c.changes.Add(1)
	if len(ws) > 0 {
		deliver(m, ws, []Change[T]{c})
	}
}
