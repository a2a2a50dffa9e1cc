package pattern

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/codecwire"
	"github.com/zpeer/zpeer/socket"
)

// StateServer holds a replicated state, keyed values of type T, and serves
// it to Mirrors: the Clone pattern of the ZeroMQ guide, or a key-value
// bucket that needs no server of its own beyond the process that writes it.
//
// It is the one writer of its state: Set and Delete change it, and each
// change gets the next sequence number (1, 2, 3, ...) and is published at
// once to every Mirror. A Mirror that joins asks for a snapshot stamped
// with the sequence number it reflects, then applies the changes after it;
// a Mirror that misses a change re-synchronises from a new snapshot. This
// is replication from one writer, not consensus: there is no election, no
// quorum, and nothing survives the server but what its mirrors hold (a
// restarted server starts a new, empty state under a new epoch, and its
// mirrors follow it there).
//
// A StateServer has two sockets: a ROUTER at the endpoints given with
// WithBind (and announced with WithService), which answers mirrors'
// requests for a snapshot, and an XPUB beside each one (tcp: the same host
// on a port of its own; ipc and inproc: the name with ".changes"
// appended), which publishes the changes; a mirror learns where it is from
// the ROUTER. Its heartbeat (WithStateHeartbeat, default every second)
// carries the latest sequence number, so that a mirror that missed the last
// change before a quiet spell notices.
type StateServer[T any] struct {
	o      options
	router *socket.Socket // hello and snapshot requests
	pub    *socket.Socket // changes and heartbeats; subscriptions come up
	epoch  string
	change *codec.Template // changes: topic "c"
	beat   *codec.Template // heartbeats: topic "h"
	hello  []byte          // the body of every hello reply

	// The state, guarded by mu, which also orders what is published: a
	// change is published under mu, so changes and heartbeats go out in
	// sequence order.
	mu     sync.Mutex
	state  map[string][]byte // key -> the encoded value; never modified in place
	seq    uint64
	closed bool

	snapMu sync.Mutex
	snaps  map[*socket.Peer]*context.CancelFunc // guarded by snapMu: the snapshot being sent to each mirror

	ctx    context.Context // ends when Close starts
	cancel context.CancelFunc
	wg     sync.WaitGroup
	disc   *joined
	once   sync.Once
	c      stateCounters

	// skip, set by tests before the first Set, makes the change with a
	// given sequence number go unpublished (a dropped change).
	skip func(seq uint64) bool
}

type stateCounters struct {
	changes, snapshots, resyncs, gaps, dropped atomic.Uint64
}

// StateStats are a StateServer's or a Mirror's counters.
type StateStats struct {
	// Keys is the number of keys in the state (as the mirror has it).
	Keys int
	// Seq is the sequence number of the last change the state reflects.
	Seq uint64
	// Epoch names the server's run: a restarted server has a new one.
	Epoch string
	// Changes counts changes published (server) or received and applied
	// in order (mirror).
	Changes uint64
	// Snapshots counts snapshots sent (server) or applied (mirror: the
	// first, and one per re-synchronisation).
	Snapshots uint64
	// Resyncs counts a mirror's snapshots after its first: after a gap,
	// a server restart, or a change of server.
	Resyncs uint64
	// Gaps counts changes a mirror knows it missed (holes in the sequence
	// numbers, each followed by a re-synchronisation).
	Gaps uint64
	// Dropped counts, on a server, changes not queued for a mirror whose
	// queue was full (once per mirror); on a mirror, messages that did not
	// decode.
	Dropped uint64
	// Mirrors is, on a server, the number of connected subscribers to its
	// changes.
	Mirrors int
	// Socket is the sockets' traffic, added together.
	Socket socket.Counters
}

// NewStateServer creates a StateServer with an empty state. It needs
// WithBind; it does not connect.
//
// Options: WithBind, WithStateHeartbeat, WithName, WithSocketOptions (for
// both sockets), WithLogger, WithService, the CURVE options (WithKey,
// WithTrust, WithAuthenticator: both sockets are the CURVE server with the
// one key).
func NewStateServer[T any](opts ...Option) (*StateServer[T], error) {
	o, initial, err := stateServerOptions[T](opts)
	if err != nil {
		return nil, err
	}
	s := &StateServer[T]{o: o, state: make(map[string][]byte), snaps: make(map[*socket.Peer]*context.CancelFunc)}
	if err := s.loadInitial(initial); err != nil {
		return nil, err
	}
	s.epoch = newEpoch()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	hdr := map[string]string{hdrEpoch: s.epoch}
	if s.change, err = codec.NewTemplate(&codec.Envelope{Kind: codec.KindData, Type: stateChange, Sender: o.name, Headers: hdr}); err != nil {
		return nil, optErr("WithName: %v", err)
	}
	if s.beat, err = codec.NewTemplate(&codec.Envelope{Kind: codec.KindData, Type: stateHeartbeat, Sender: o.name, Headers: hdr}); err != nil {
		return nil, optErr("WithName: %v", err)
	}
	if err := s.openSockets(); err != nil {
		return nil, err
	}
	s.wg.Add(3)
	go s.serveRequests()
	go s.serveSubscriptions()
	go s.heartbeat()
	if s.disc, err = join(&s.o, "ROUTER", s, s.Endpoints()); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// stateServerOptions builds a StateServer's options and checks what only
// a StateServer asks of them; it returns the initial state, of type T.
func stateServerOptions[T any](opts []Option) (options, map[string]T, error) {
	o, err := buildOptions("StateServer", oHeartbeat|oInitialState, opts)
	if err != nil {
		return o, nil, err
	}
	var initial map[string]T
	if o.initialState != nil {
		var ok bool
		if initial, ok = o.initialState.(map[string]T); !ok {
			return o, nil, optErr("WithInitialState: a %T for a StateServer of %T values", o.initialState, *new(T))
		}
	}
	switch {
	case len(o.binds) == 0:
		return o, nil, optErr("a StateServer needs WithBind: mirrors connect to it")
	case len(o.connects) > 0:
		return o, nil, optErr("WithConnect does not apply to StateServer: mirrors connect to it")
	case o.watcher != nil || o.discovery != nil:
		return o, nil, optErr("WithWatcher and WithDiscovery do not apply to StateServer: it announces (WithService)")
	}
	return o, initial, nil
}

// loadInitial puts the initial state in place before anything is served:
// a mirror's first snapshot already holds it (changes 1 to n, in key
// order).
func (s *StateServer[T]) loadInitial(initial map[string]T) error {
	for _, k := range slices.Sorted(maps.Keys(initial)) {
		if err := checkKey(k); err != nil {
			return optErr("WithInitialState: %v", err)
		}
		raw, err := marshalBody(nil, initial[k])
		if err != nil {
			return optErr("WithInitialState: %s: %v", k, err)
		}
		s.state[k] = raw
		s.seq++
	}
	return nil
}

// openSockets opens the ROUTER mirrors ask for snapshots and the XPUB
// that publishes changes, binds both on every WithBind endpoint, and
// encodes the hello that tells a mirror where each endpoint's changes
// are.
func (s *StateServer[T]) openSockets() error {
	var err error
	if s.router, err = newSocket(socket.ROUTER, &s.o, nil); err != nil {
		return err
	}
	// Verbose: every subscription comes up, so that each new mirror gets
	// a heartbeat at once (see serveSubscriptions).
	if s.pub, err = newSocket(socket.XPUB, &s.o, nil, socket.WithXPubVerbose(false)); err != nil {
		s.router.Close()
		return err
	}
	var hello helloBody
	for _, ep := range s.o.binds {
		real, err := s.router.Bind(ep)
		if err == nil {
			var ch string
			if ch, err = s.pub.Bind(changesBind(real)); err == nil {
				hello.Changes = append(hello.Changes, [2]string{real, ch})
			}
		}
		if err != nil {
			s.closeSockets()
			return err
		}
	}
	if s.hello, err = codec.MarshalValue(hello); err != nil {
		s.closeSockets()
		return err
	}
	return nil
}

// WithInitialState gives a StateServer the state it starts with, in place
// before it serves or announces anything, so that no mirror ever sees it
// empty first (a restarted configuration server, say, would otherwise
// have its mirrors remove every setting and add it back). The keys count
// as changes 1 to len(state), in key order. state's values must be of the
// server's value type.
func WithInitialState[T any](state map[string]T) Option {
	return func(o *options) error {
		o.used |= oInitialState
		o.initialState = maps.Clone(state)
		return nil
	}
}

// WithStateHeartbeat sets how often a StateServer publishes its latest
// sequence number (default every second): a mirror that missed the last
// changes notices within that time, and re-synchronises.
func WithStateHeartbeat(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return optErr("WithStateHeartbeat(%v): must be positive", d)
		}
		o.used |= oHeartbeat
		o.heartbeat = d
		return nil
	}
}

func newEpoch() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// Set sets key to v and publishes the change. A Set that leaves the value
// as it was (the same encoding) changes nothing and publishes nothing. It
// does not wait for mirrors: one whose queue is full misses the change and
// re-synchronises. It fails with ErrKey for an empty or non-UTF-8 key, with
// ErrClosed after Close.
func (s *StateServer[T]) Set(key string, v T) error {
	if err := checkKey(key); err != nil {
		return err
	}
	raw, err := marshalBody(nil, v)
	if err != nil {
		return err
	}
	return s.apply(key, raw, false)
}

// Delete removes key and publishes the change (a key that is not there
// publishes nothing). It fails with ErrKey or ErrClosed as Set does.
func (s *StateServer[T]) Delete(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.apply(key, nil, true)
}

func (s *StateServer[T]) apply(key string, raw []byte, deleted bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	old, had := s.state[key]
	if (deleted && !had) || (!deleted && had && bytes.Equal(old, raw)) {
		return nil
	}
	seq := s.seq + 1
	bp := codecwire.GetBuffer()
	defer codecwire.PutBuffer(bp)
	*bp = appendChange((*bp)[:0], key, raw, deleted)
	frame, err := s.change.AppendEncode(nil, codec.NewID(), nowNano(), seq, *bp)
	if err != nil {
		return err
	}
	if s.skip == nil || !s.skip(seq) {
		if err := s.pub.Send(context.Background(), socket.Msg{Frames: [][]byte{topicChange, frame}}); err != nil {
			return callError(err)
		}
	}
	if deleted {
		delete(s.state, key)
	} else {
		s.state[key] = raw
	}
	s.seq = seq
	s.c.changes.Add(1)
	return nil
}

// Get returns key's value, and whether the key is there.
func (s *StateServer[T]) Get(key string) (T, bool) {
	s.mu.Lock()
	raw, ok := s.state[key]
	s.mu.Unlock()
	if !ok {
		var zero T
		return zero, false
	}
	v, err := unmarshalBody[T](raw)
	return v, err == nil
}

// Len returns the number of keys.
func (s *StateServer[T]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.state)
}

// Seq returns the sequence number of the last change.
func (s *StateServer[T]) Seq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// Epoch returns the name of this run of the server (16 hex digits, new for
// every StateServer): mirrors start again from a snapshot when it changes.
func (s *StateServer[T]) Epoch() string { return s.epoch }

// Endpoints returns the state endpoints (the snapshot socket's), with real
// port numbers: the ones mirrors connect to.
func (s *StateServer[T]) Endpoints() []string { return s.router.Endpoints() }

// ChangesEndpoints returns the endpoints the changes are published at,
// which mirrors learn from the state endpoints.
func (s *StateServer[T]) ChangesEndpoints() []string { return s.pub.Endpoints() }

// Connect is not supported: mirrors connect to a StateServer. It is here
// for the Connector that discovery drives, and fails.
func (s *StateServer[T]) Connect(string) error {
	return optErr("a StateServer does not connect: mirrors connect to it")
}

// Disconnect is not supported (see Connect).
func (s *StateServer[T]) Disconnect(string) error { return s.Connect("") }

// Stats returns the server's counters: Keys, Seq, Epoch, Changes
// (published), Snapshots (sent), Dropped (changes not queued for a slow
// mirror) and Mirrors.
func (s *StateServer[T]) Stats() StateStats {
	s.mu.Lock()
	st := StateStats{Keys: len(s.state), Seq: s.seq, Epoch: s.epoch}
	s.mu.Unlock()
	st.Changes = s.c.changes.Load()
	st.Snapshots = s.c.snapshots.Load()
	ps := s.pub.Stats()
	st.Dropped = ps.Drops
	for _, p := range ps.PerPeer {
		if p.Subscriptions > 0 {
			st.Mirrors++
		}
	}
	addSocket(&st.Socket, ps)
	addSocket(&st.Socket, s.router.Stats())
	return st
}

// Close stops the server: it leaves discovery, stops answering, and closes
// both sockets, giving queued changes the socket's linger time. Mirrors
// keep the state they have. Close is idempotent.
func (s *StateServer[T]) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.disc.leave()
		s.cancel()
		err = s.closeSockets()
		s.wg.Wait()
	})
	return err
}

func (s *StateServer[T]) closeSockets() error {
	err := s.router.Close()
	if perr := s.pub.Close(); err == nil {
		err = perr
	}
	return err
}

// serveRequests answers mirrors' requests until the socket closes.
func (s *StateServer[T]) serveRequests() {
	defer s.wg.Done()
	for {
		m, peer, err := s.router.RecvFrom(s.ctx)
		if err != nil {
			return
		}
		s.request(m, peer)
	}
}

// request answers one request: [routing id, "", envelope].
func (s *StateServer[T]) request(m socket.Msg, peer *socket.Peer) {
	defer m.Free()
	var env codec.View
	if len(m.Frames) != 3 || len(m.Frames[1]) != 0 || codec.DecodeView(m.Frames[2], &env) != nil || env.Kind != codec.KindData {
		s.o.logger.Debug("pattern: state server dropped a malformed request", "peer", peer)
		return
	}
	id := env.ID
	switch string(env.Type) {
	case stateHello:
		s.mu.Lock()
		seq := s.seq
		s.mu.Unlock()
		s.reply(peer, &codec.Envelope{ID: id, Kind: codec.KindReply, Type: stateHello, Seq: seq, Body: s.hello})
	case stateSnapshot:
		s.startSnapshot(peer, id)
	default:
		body := mustMarshalString("unknown state request type " + string(env.Type))
		s.reply(peer, &codec.Envelope{ID: id, Kind: codec.KindError, Type: string(env.Type), Body: body})
	}
}

func mustMarshalString(s string) []byte {
	b, _ := codec.MarshalValue(s)
	return b
}

// reply sends one small answer to peer without waiting: a mirror whose
// queue is full asks again later, and the others are not held up.
func (s *StateServer[T]) reply(peer *socket.Peer, env *codec.Envelope) {
	env.Sender = s.o.name
	env.Timestamp = nowNano()
	if env.Headers == nil {
		env.Headers = map[string]string{hdrEpoch: s.epoch}
	}
	frame, err := codec.Encode(env)
	if err != nil {
		s.o.logger.Warn("pattern: state server reply", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	cancel() // a done context: SendTo tries once
	if err := s.router.SendTo(ctx, peer, socket.Msg{Frames: [][]byte{empty, frame}}); err != nil && s.ctx.Err() == nil {
		s.o.logger.Debug("pattern: state server reply not sent", "peer", peer, "err", err)
	}
}

// startSnapshot sends peer a snapshot on a goroutine of its own, in place
// of any snapshot it was still being sent.
func (s *StateServer[T]) startSnapshot(peer *socket.Peer, id codec.ID) {
	// Taken here, on the request's goroutine: the snapshot reflects every
	// change published before the request was read.
	s.mu.Lock()
	seq := s.seq
	keys := make([]string, 0, len(s.state))
	vals := make([][]byte, 0, len(s.state))
	for k, v := range s.state {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(s.ctx)
	mine := &cancel
	s.snapMu.Lock()
	if prev := s.snaps[peer]; prev != nil {
		(*prev)()
	}
	s.snaps[peer] = mine
	s.snapMu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.snapMu.Lock()
			if s.snaps[peer] == mine {
				delete(s.snaps, peer)
			}
			s.snapMu.Unlock()
			cancel()
		}()
		if err := s.sendSnapshot(ctx, peer, id, seq, keys, vals); err != nil {
			if s.ctx.Err() == nil {
				s.o.logger.Debug("pattern: state snapshot not sent", "peer", peer, "err", err)
			}
			return
		}
		s.c.snapshots.Add(1)
	}()
}

// sendSnapshot sends the parts of one snapshot: each a map of keys to
// values of about snapshotPart bytes, the last with the header zpeer-end.
// SendTo waits while the mirror's queue is full, so a large snapshot goes
// at the pace the mirror reads it.
func (s *StateServer[T]) sendSnapshot(ctx context.Context, peer *socket.Peer, id codec.ID, seq uint64, keys []string, vals [][]byte) error {
	count := formatCount(len(keys))
	hdr := map[string]string{hdrEpoch: s.epoch, hdrKeys: count}
	last := map[string]string{hdrEpoch: s.epoch, hdrEnd: count}
	i, first := 0, true
	for {
		body := appendMapHeader32(make([]byte, 0, snapshotPart+1024), 0)
		n := uint32(0)
		for ; i < len(keys) && (n == 0 || len(body) < snapshotPart); i++ {
			body = append(codecwire.AppendStrHeader(body, len(keys[i])), keys[i]...)
			body = append(body, vals[i]...)
			n++
		}
		binary.BigEndian.PutUint32(body[1:], n)
		env := codec.Envelope{ID: id, Kind: codec.KindReply, Type: stateSnapshot, Sender: s.o.name,
			Timestamp: nowNano(), Seq: seq, Headers: hdr, Body: body}
		done := i == len(keys)
		if done {
			env.Headers = last
		}
		if done && first {
			env.Headers[hdrKeys] = count // the first part is the last
		}
		frame, err := codec.Encode(&env)
		if err != nil {
			return err
		}
		if err := s.router.SendTo(ctx, peer, socket.Msg{Frames: [][]byte{empty, frame}}); err != nil {
			return err
		}
		if done {
			return nil
		}
		hdr, first = map[string]string{hdrEpoch: s.epoch}, false
	}
}

// serveSubscriptions publishes a heartbeat whenever a subscription comes
// up: the subscriber that sent it (a mirror joining) then knows, when the
// heartbeat reaches it, that it receives every change after it.
func (s *StateServer[T]) serveSubscriptions() {
	defer s.wg.Done()
	for {
		m, err := s.pub.Recv(s.ctx)
		if err != nil {
			return
		}
		sub := len(m.Frames) == 1 && len(m.Frames[0]) > 0 && m.Frames[0][0] == 1
		m.Free()
		if sub {
			s.publishHeartbeat()
		}
	}
}

// heartbeat publishes the latest sequence number every WithStateHeartbeat.
func (s *StateServer[T]) heartbeat() {
	defer s.wg.Done()
	t := time.NewTicker(s.o.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.publishHeartbeat()
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *StateServer[T]) publishHeartbeat() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	frame, err := s.beat.AppendEncode(nil, codec.NewID(), nowNano(), s.seq, nil)
	if err == nil {
		err = s.pub.Send(context.Background(), socket.Msg{Frames: [][]byte{topicHeartbeat, frame}})
	}
	if err != nil && !errors.Is(err, socket.ErrClosed) {
		s.o.logger.Debug("pattern: state heartbeat", "err", err)
	}
}
