package pattern

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/internal/codecwire"
	"github.com/zpeer/zpeer/socket"
)

// bigQueues keeps a publisher from dropping what a test streams in a burst.
var bigQueues = WithSocketOptions(socket.WithSendHWM(1 << 20))

func newServer(t testing.TB, opts ...Option) *StateServer[string] {
	t.Helper()
	s, err := NewStateServer[string](append([]Option{WithBind(loopback)}, opts...)...)
	return cleanup(t, s, err)
}

func newMirror(t testing.TB, opts ...Option) *Mirror[string] {
	t.Helper()
	m, err := NewMirror[string](opts...)
	return cleanup(t, m, err)
}

// serverState reads every key of s.
func serverState(s *StateServer[string]) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.state))
	for k, raw := range s.state {
		v, _ := unmarshalBody[string](raw)
		out[k] = v
	}
	return out
}

func mirrorState(m *Mirror[string]) map[string]string {
	out := make(map[string]string)
	for _, e := range m.Range("") {
		out[e.Key] = e.Value
	}
	return out
}

// caughtUp waits until m reflects s's last change, then checks that the
// two states are equal.
func caughtUp(t *testing.T, s *StateServer[string], m *Mirror[string]) {
	t.Helper()
	waitFor(t, "the mirror to catch up", func() bool {
		return m.Epoch() == s.Epoch() && m.Seq() == s.Seq()
	})
	if want, got := serverState(s), mirrorState(m); !maps.Equal(want, got) {
		t.Fatalf("mirror state at seq %d differs from the server's:\n got %d keys %v\nwant %d keys %v", m.Seq(), len(got), abbrevMap(got), len(want), abbrevMap(want))
	}
}

func abbrevMap(m map[string]string) string {
	s := fmt.Sprint(m)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// A mirror that joins while the server is changing its state gets a
// snapshot from the middle of the stream, applies the changes after it,
// and ends equal to the server, with no gap and no re-synchronisation: the
// join point loses and repeats nothing.
func TestStateMirrorJoinsDuringStream(t *testing.T) {
	s := newServer(t, bigQueues)
	for i := range 500 {
		if err := s.Set(fmt.Sprintf("k%03d", i), "initial"); err != nil {
			t.Fatal(err)
		}
	}
	var joined atomic.Bool
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		after := 0
		for i := 0; i < 1_000_000; i++ {
			key := fmt.Sprintf("k%03d", i%600)
			var err error
			if i%7 == 3 {
				err = s.Delete(key)
			} else {
				err = s.Set(key, fmt.Sprint("v", i))
			}
			if err != nil {
				done <- err
				return
			}
			if joined.Load() {
				if after++; after == 3000 {
					break
				}
			}
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
		}
		done <- nil
	}()
	defer close(stop)
	waitFor(t, "changes under way", func() bool { return s.Seq() > 1000 })
	m := newMirror(t, WithConnect(ep(t, s)), WithSocketOptions(socket.WithRecvHWM(1<<16)))
	if err := m.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	joined.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	caughtUp(t, s, m)
	st := m.Stats()
	// Everything after the snapshot was applied change by change.
	snapAt := s.Seq() - st.Changes
	t.Logf("snapshot at seq %d of %d; %d changes applied after it", snapAt, s.Seq(), st.Changes)
	// (Of the 3000 calls made after the join, a delete of a key already
	// gone changes nothing.)
	if snapAt == 0 || st.Changes < 2000 {
		t.Errorf("the snapshot was at seq %d, %d changes before the end: not from the middle of the stream", snapAt, st.Changes)
	}
	if st.Snapshots != 1 || st.Resyncs != 0 || st.Gaps != 0 {
		t.Errorf("mirror stats %+v: want one snapshot, no gap, no re-sync", st)
	}
}

// A change lost on the way (the test hook drops its publication) is a
// gap: the mirror sees the next change out of order, re-synchronises from
// a snapshot and ends equal; a watch sees the changes before the gap one
// by one and the difference the re-sync found.
func TestStateGapResyncs(t *testing.T) {
	s := newServer(t)
	s.skip = func(seq uint64) bool { return seq == 5 }
	m := newMirror(t, WithConnect(ep(t, s)))
	if err := m.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	initial, w := m.Watch("")
	defer w.Close()
	if len(initial) != 0 {
		t.Fatalf("initial state %v, want empty", initial)
	}
	for i := 1; i <= 8; i++ {
		if err := s.Set(fmt.Sprint("k", i), fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	caughtUp(t, s, m)
	st := m.Stats()
	if st.Gaps != 1 || st.Resyncs != 1 {
		t.Errorf("gaps %d, re-syncs %d; want 1 and 1", st.Gaps, st.Resyncs)
	}
	// The watch: k1..k4 as they came, then k5 (and whatever else the
	// re-sync found) as its difference; applied in order, the state.
	seen := make(map[string]string)
	for i := 1; len(seen) < 8; i++ {
		c, err := w.Next(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if i <= 4 && (c.Resync || c.Seq != uint64(i) || c.Key != fmt.Sprint("k", i)) {
			t.Fatalf("change %d: %+v, want k%d at seq %d as received", i, c, i, i)
		}
		if c.Key == "k5" && !c.Resync {
			t.Fatalf("the lost change came as received: %+v", c)
		}
		seen[c.Key] = c.Value
	}
	if want := serverState(s); !maps.Equal(seen, want) {
		t.Fatalf("watch saw %v, want %v", seen, want)
	}
}

// A lost last change (nothing follows it) is found by the heartbeat.
func TestStateTailGapHeartbeat(t *testing.T) {
	s := newServer(t, WithStateHeartbeat(20*time.Millisecond))
	s.skip = func(seq uint64) bool { return seq == 3 }
	m := newMirror(t, WithConnect(ep(t, s)))
	if err := m.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		s.Set(fmt.Sprint("k", i), "v")
	}
	caughtUp(t, s, m)
	if st := m.Stats(); st.Gaps != 1 || st.Resyncs != 1 {
		t.Errorf("gaps %d, re-syncs %d; want 1 and 1", st.Gaps, st.Resyncs)
	}
}

// A restarted server (a new StateServer at the same endpoint) has a new
// epoch and a new state: the mirror follows it there, and a watch sees the
// difference.
func TestStateServerRestart(t *testing.T) {
	a := newServer(t)
	addr := ep(t, a)
	a.Set("a", "1")
	a.Set("b", "2")
	m := newMirror(t, WithConnect(addr))
	if err := m.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, a, m)
	_, w := m.Watch("")
	defer w.Close()
	a.Close()
	b, err := NewStateServer[string](WithBind(addr))
	b = cleanup(t, b, err)
	b.Set("b", "3")
	b.Set("c", "4")
	caughtUp(t, b, m)
	if st := m.Stats(); st.Resyncs < 1 || m.Epoch() != b.Epoch() {
		t.Errorf("after the restart: %+v, epoch %s, want a re-sync to epoch %s", st, m.Epoch(), b.Epoch())
	}
	got := make(map[string]Change[string])
	for len(got) < 3 {
		c, err := w.Next(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		got[c.Key] = c
	}
	if !got["a"].Deleted || got["b"].Value != "3" || got["c"].Value != "4" || !got["a"].Resync {
		t.Errorf("watch after the restart: %+v", got)
	}
}

// A watch sees every change in order, sets and deletes, and only those of
// its prefix; its initial entries and its changes together never miss or
// repeat one.
func TestStateWatchInOrder(t *testing.T) {
	s := newServer(t, bigQueues)
	s.Set("app.a", "0")
	s.Set("other", "0")
	m := newMirror(t, WithConnect(ep(t, s)), WithSocketOptions(socket.WithRecvHWM(1<<16)))
	if err := m.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	initial, w := m.Watch("app.")
	defer w.Close()
	if len(initial) != 1 || initial[0] != (Entry[string]{"app.a", "0"}) {
		t.Fatalf("initial %v", initial)
	}
	type want struct {
		key, val string
		del      bool
	}
	var wants []want
	base := s.Seq()
	for i := range 2000 {
		key := fmt.Sprintf("app.%d", i%50)
		if i%5 == 4 {
			if _, ok := s.Get(key); ok {
				wants = append(wants, want{key, "", true})
			}
			s.Delete(key)
		} else {
			s.Set(key, fmt.Sprint(i))
			wants = append(wants, want{key, fmt.Sprint(i), false})
		}
		s.Set("other", fmt.Sprint(i)) // not the watch's prefix
	}
	last := uint64(0)
	for i, wt := range wants {
		c, err := w.Next(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if c.Key != wt.key || c.Value != wt.val || c.Deleted != wt.del || c.Resync || c.Seq <= last || c.Seq <= base {
			t.Fatalf("change %d: %+v, want %+v after seq %d", i, c, wt, last)
		}
		last = c.Seq
	}
	caughtUp(t, s, m)
	if st := m.Stats(); st.Resyncs != 0 {
		t.Errorf("%d re-syncs", st.Resyncs)
	}
}

// A mirror finds its server by service name (mDNS on loopback).
func TestStateDiscovery(t *testing.T) {
	svc := svcName("state")
	lo := discovery.WithLoopback()
	s := newServer(t, WithService(svc, lo, node("server")))
	s.Set("x", "1")
	m := newMirror(t, WithService(svc, lo, node("mirror")))
	if err := m.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s.Set("y", "2")
	caughtUp(t, s, m)
}

// Under CURVE both of the mirror's connections are CURVE clients of the
// server's key: given explicitly, or learned from the announcement.
func TestStateCurve(t *testing.T) {
	kp, err := socket.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("explicit", func(t *testing.T) {
		s := newServer(t, WithKey(kp))
		s.Set("secret", "1")
		m := newMirror(t, WithConnect(ep(t, s)), WithServerKey(kp.Public))
		if err := m.WaitSynced(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		s.Set("more", "2")
		caughtUp(t, s, m)
		// A mirror expecting another key is refused at the handshake
		// and gets nothing.
		other, _ := socket.NewKeyPair()
		wrong := newMirror(t, WithConnect(ep(t, s)), WithServerKey(other.Public))
		waitFor(t, "the wrong key refused", func() bool { return s.router.Stats().Rejected > 0 })
		if st := wrong.Stats(); st.Snapshots != 0 || st.Keys != 0 {
			t.Errorf("a mirror with the wrong server key got %+v", st)
		}
	})
	t.Run("discovered", func(t *testing.T) {
		svc := svcName("stcrv")
		lo := discovery.WithLoopback()
		s := newServer(t, WithKey(kp), WithService(svc, lo, node("server")))
		s.Set("secret", "1")
		m := newMirror(t, WithService(svc, lo, node("mirror")), WithTrust(socket.NewKeySet(kp.Public)))
		if err := m.WaitSynced(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		s.Set("more", "2")
		caughtUp(t, s, m)
		if st := s.Stats(); st.Mirrors != 1 {
			t.Errorf("%d change subscribers, want the one mirror", st.Mirrors)
		}
	})
}

// Sets that change nothing publish nothing; bad keys and options fail.
func TestStateServerRules(t *testing.T) {
	s := newServer(t)
	s.Set("k", "v")
	s.Set("k", "v")
	s.Delete("missing")
	if s.Seq() != 1 {
		t.Errorf("seq %d after one real change, want 1", s.Seq())
	}
	if v, ok := s.Get("k"); !ok || v != "v" {
		t.Errorf("Get: %q %v", v, ok)
	}
	if err := s.Set("", "v"); !errors.Is(err, ErrKey) {
		t.Errorf("empty key: %v", err)
	}
	if err := s.Delete("\xff"); !errors.Is(err, ErrKey) {
		t.Errorf("bad UTF-8 key: %v", err)
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"server without bind", func() error { _, err := NewStateServer[int](); return err }()},
		{"server that connects", func() error {
			_, err := NewStateServer[int](WithBind(loopback), WithConnect("tcp://127.0.0.1:1"))
			return err
		}()},
		{"mirror that binds", func() error { _, err := NewMirror[int](WithBind(loopback)); return err }()},
		{"heartbeat on a mirror", func() error { _, err := NewMirror[int](WithStateHeartbeat(time.Second)); return err }()},
	} {
		if !errors.Is(tc.err, ErrOption) {
			t.Errorf("%s: %v, want ErrOption", tc.name, tc.err)
		}
	}
	s.Close()
	if err := s.Set("k", "w"); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close: %v", err)
	}
}

// A mirror of a typed state (a struct) over a large value and many keys:
// snapshot parts are cut and put back together.
func TestStateTypedManyParts(t *testing.T) {
	type conf struct {
		Name  string
		Limit int
		Blob  []byte
	}
	s, err := NewStateServer[conf](WithBind(loopback))
	s = cleanup(t, s, err)
	for i := range 3000 {
		s.Set(fmt.Sprint("k", i), conf{Name: fmt.Sprint("n", i), Limit: i, Blob: make([]byte, i%100)})
	}
	s.Set("huge", conf{Blob: make([]byte, 3*snapshotPart)})
	m, err := NewMirror[conf](WithConnect(ep(t, s)))
	m = cleanup(t, m, err)
	if err := m.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 3001 || m.Seq() != s.Seq() {
		t.Fatalf("mirror has %d keys at seq %d, want 3001 at %d", m.Len(), m.Seq(), s.Seq())
	}
	if v, _ := m.Get("k2999"); v.Name != "n2999" || v.Limit != 2999 || len(v.Blob) != 2999%100 {
		t.Errorf("k2999 = %+v", v)
	}
	if v, _ := m.Get("huge"); len(v.Blob) != 3*snapshotPart {
		t.Errorf("huge has %d bytes", len(v.Blob))
	}
	if st := s.Stats(); st.Snapshots != 1 || st.Keys != 3001 {
		t.Errorf("server stats %+v", st)
	}
}

// The wire helpers: a change and a snapshot part read back what was
// written; mpSkip agrees with codec on where values end.
func TestStateWire(t *testing.T) {
	val, _ := codec.MarshalValue(map[string]any{"a": []any{1, "x", 2.5, nil, true, map[string]int{"n": -7}}, "t": time.Unix(1, 2)})
	body := appendChange(nil, "key", val, false)
	k, v, del, err := parseChange(body)
	if err != nil || string(k) != "key" || string(v) != string(val) || del {
		t.Fatalf("set: %q %x %v %v", k, v, del, err)
	}
	k, v, del, err = parseChange(appendChange(nil, "gone", nil, true))
	if err != nil || string(k) != "gone" || v != nil || !del {
		t.Fatalf("delete: %q %x %v %v", k, v, del, err)
	}
	part := appendMapHeader32(nil, 2)
	part = append(append(codecwire.AppendStrHeader(part, 1), 'x'), val...)
	part = append(append(codecwire.AppendStrHeader(part, 1), 'y'), 0xc0)
	var keys []string
	n, err := parseSnapshot(part, func(k, v []byte) { keys = append(keys, string(k)+"="+fmt.Sprintf("%d", len(v))) })
	if err != nil || n != 2 || strings.Join(keys, ",") != fmt.Sprintf("x=%d,y=1", len(val)) {
		t.Fatalf("snapshot part: %d %v %v", n, keys, err)
	}
	for _, bad := range [][]byte{nil, {0x93, 0xa1, 'k', 1, 2}, {0x92, 1, 2}, {0x91}} {
		if _, _, _, err := parseChange(bad); !errors.Is(err, ErrBadMessage) {
			t.Errorf("parseChange(%x): %v", bad, err)
		}
	}
	for _, tc := range []struct{ state, want string }{
		{"tcp://10.0.0.5:5560", "tcp://10.0.0.5:41000"},
		{"tcp://host:5561", "tcp://host:42000"},
		{"tcp://[::1]:9", "tcp://[::1]:41000"},
		{"ipc:///tmp/s", "ipc:///tmp/s.changes"},
	} {
		pairs := [][2]string{{"tcp://0.0.0.0:5560", "tcp://0.0.0.0:41000"}, {"tcp://127.0.0.1:5561", "tcp://127.0.0.1:42000"}, {"ipc:///tmp/s", "ipc:///tmp/s.changes"}}
		if got, ok := changesFor(tc.state, pairs); !ok || got != tc.want {
			t.Errorf("changesFor(%s) = %s, %v; want %s", tc.state, got, ok, tc.want)
		}
	}
	if got := changesBind("tcp://127.0.0.1:5560"); got != "tcp://127.0.0.1:0" {
		t.Errorf("changesBind: %s", got)
	}
}

// FuzzStateParse: what a mirror parses from the network never panics, and
// what parses is consistent.
func FuzzStateParse(f *testing.F) {
	val, _ := codec.MarshalValue([]any{"v", 1})
	f.Add(appendChange(nil, "k", val, false))
	f.Add(appendChange(nil, "k", nil, true))
	f.Add(append(append(codecwire.AppendStrHeader(appendMapHeader32(nil, 1), 1), 'k'), val...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, v, del, err := parseChange(b); err == nil && (del != (v == nil) || len(k)+len(v) > len(b)) {
			t.Fatalf("parseChange(%x) = %q %x %v", b, k, v, del)
		}
		parseSnapshot(b, func(k, v []byte) {
			if codec.CheckValue(v) != nil {
				t.Fatalf("parseSnapshot(%x) gave a value that is not one: %x", b, v)
			}
		})
	})
}

// Over inproc the changes are at the state endpoint's name plus
// ".changes", which the mirror takes from the hello as it is.
func TestStateInproc(t *testing.T) {
	name := fmt.Sprintf("inproc://state-%d", time.Now().UnixNano())
	s, err := NewStateServer[string](WithBind(name))
	s = cleanup(t, s, err)
	s.Set("a", "1")
	if got := s.ChangesEndpoints(); len(got) != 1 || got[0] != name+".changes" {
		t.Fatalf("changes at %v", got)
	}
	m := newMirror(t, WithConnect(name))
	if err := m.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s.Set("b", "2")
	caughtUp(t, s, m)
}

// TestStateInitialState: WithInitialState's keys are in the first snapshot
// a mirror takes (changes 1 to n), and a map of another value type is an
// option error.
func TestStateInitialState(t *testing.T) {
	srv, err := NewStateServer[int](WithBind(loopback), WithInitialState(map[string]int{"b": 2, "a": 1, "c": 3}))
	srv = cleanup(t, srv, err)
	if srv.Len() != 3 || srv.Seq() != 3 {
		t.Fatalf("server: %d keys at seq %d, want 3 at 3", srv.Len(), srv.Seq())
	}
	m, err := NewMirror[int](WithConnect(ep(t, srv)))
	m = cleanup(t, m, err)
	if err := m.WaitSynced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); m.Len() != 3 || m.Seq() != 3 || st.Snapshots != 1 || st.Changes != 0 {
		t.Fatalf("mirror: %d keys at seq %d, stats %+v; want the 3 keys in its first snapshot", m.Len(), m.Seq(), st)
	}
	if v, ok := m.Get("b"); !ok || v != 2 {
		t.Fatalf("b = %v %v", v, ok)
	}
	if _, err := NewStateServer[string](WithBind(loopback), WithInitialState(map[string]int{"a": 1})); !errors.Is(err, ErrOption) {
		t.Fatalf("a map of ints for a StateServer of strings: %v", err)
	}
	if _, err := NewStateServer[int](WithBind(loopback), WithInitialState(map[string]int{"": 1})); !errors.Is(err, ErrOption) {
		t.Fatalf("an empty key: %v", err)
	}
}
