package socket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
)

// Interop tests: every pattern against a real libzmq peer, driven through
// pyzmq by testdata/zmqpeer.py, in both directions. They skip when
// /usr/bin/python3 or its zmq module is missing; CI installs python3-zmq.

const pyPath = "/usr/bin/python3"

var (
	pyOnce sync.Once
	pyErr  error
)

// needPython skips the test unless /usr/bin/python3 can import zmq.
func needPython(t *testing.T) {
	t.Helper()
	pyOnce.Do(func() {
		if _, err := os.Stat(pyPath); err != nil {
			pyErr = err
			return
		}
		out, err := exec.Command(pyPath, "-c", "import zmq").CombinedOutput()
		if err != nil {
			pyErr = fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
	})
	if pyErr != nil {
		t.Skipf("interop: needs %s with pyzmq (Debian package python3-zmq): %v", pyPath, pyErr)
	}
}

// pyEvent is one JSON line printed by zmqpeer.py.
type pyEvent struct {
	Event    string            `json:"event"`
	Endpoint string            `json:"endpoint"`
	Received int               `json:"received"`
	Bad      []json.RawMessage `json:"bad"`
	Counts   map[string]int    `json:"counts"`
	Foreign  []json.RawMessage `json:"foreign"`
	IDs      []string          `json:"ids"`
	Msg      string            `json:"msg"`
}

// pyPeer is a running zmqpeer.py.
type pyPeer struct {
	name   string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stdin  io.WriteCloser
	events chan pyEvent // closed at the script's end of output
	stderr testutil.SyncBuffer
	waited bool
	werr   error
}

// startPy starts zmqpeer.py with args under a 60 s deadline. The script is
// killed (if still running) and reaped when the test ends.
func startPy(t *testing.T, args ...string) *pyPeer {
	t.Helper()
	needPython(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	p := &pyPeer{name: fmt.Sprint(args), cancel: cancel, events: make(chan pyEvent, 16)}
	p.cmd = exec.CommandContext(ctx, pyPath, append([]string{"testdata/zmqpeer.py"}, args...)...)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start zmqpeer.py: %v", err)
	}
	go func() {
		defer close(p.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev pyEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = pyEvent{Event: "garbage", Msg: sc.Text()}
			}
			p.events <- ev
		}
	}()
	t.Cleanup(func() {
		p.cancel()
		p.wait()
	})
	return p
}

// wait reaps the script, after reading what is left of its output.
func (p *pyPeer) wait() error {
	if !p.waited {
		p.waited = true
		p.stdin.Close()
		for range p.events {
		}
		p.werr = p.cmd.Wait()
	}
	return p.werr
}

// expect returns the next event named want, failing the test on an error
// event, the end of the script's output or a 20 s deadline.
func (p *pyPeer) expect(t *testing.T, want string) pyEvent {
	t.Helper()
	ev, ok := p.next(t, want, 20*time.Second)
	if !ok {
		t.Fatalf("%s: no %q event within 20s; stderr:\n%s", p.name, want, p.stderr.String())
	}
	return ev
}

// next is expect with a timeout that is not fatal: ok is false when it
// passes.
func (p *pyPeer) next(t *testing.T, want string, d time.Duration) (pyEvent, bool) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-p.events:
			switch {
			case !ok:
				t.Fatalf("%s: exited (%v) before %q; stderr:\n%s", p.name, p.wait(), want, p.stderr.String())
			case ev.Event == "error":
				t.Fatalf("%s: %s; stderr:\n%s", p.name, ev.Msg, p.stderr.String())
			case ev.Event == want:
				return ev, true
			}
			t.Logf("%s: skipping %+v", p.name, ev)
		case <-timer.C:
			return pyEvent{}, false
		}
	}
}

// done waits for the script's "done" report, checks it found nothing wrong
// and that it exits cleanly.
func (p *pyPeer) done(t *testing.T, received int) pyEvent {
	t.Helper()
	ev := p.expect(t, "done")
	if len(ev.Bad) > 0 {
		t.Errorf("%s: %d bad messages, first: %s", p.name, len(ev.Bad), ev.Bad[0])
	}
	if received >= 0 && ev.Received != received {
		t.Errorf("%s: received %d messages, want %d", p.name, ev.Received, received)
	}
	if err := p.wait(); err != nil {
		t.Errorf("%s: exit: %v; stderr:\n%s", p.name, err, p.stderr.String())
	}
	return ev
}

// interopMsgs is zmqpeer.py's messages(): n two-frame messages, then (with
// specials) a four-frame message with an empty and a long frame, a 1 MiB
// frame and a lone empty frame.
func interopMsgs(n int, specials bool) []Msg {
	ms := make([]Msg, 0, n+3)
	for i := range n {
		ms = append(ms, NewMsgString("msg", strconv.Itoa(i)))
	}
	if specials {
		ms = append(ms,
			NewMsg([]byte("multi"), []byte{}, []byte("third"), bytes.Repeat([]byte("L"), 300)),
			NewMsg([]byte("big"), bigFrameMiB()),
			NewMsg([]byte{}))
	}
	return ms
}

// bigFrameMiB is bytes(range(256)) * 4096.
func bigFrameMiB() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func sameFrames(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func showMsg(m Msg) string {
	var b bytes.Buffer
	for i, f := range m.Frames {
		if i > 0 {
			b.WriteByte('|')
		}
		if len(f) > 32 {
			fmt.Fprintf(&b, "%q..(%d)", f[:32], len(f))
		} else {
			fmt.Fprintf(&b, "%q", f)
		}
	}
	return b.String()
}

func recvMsg(t *testing.T, s *Socket) Msg {
	t.Helper()
	m, err := s.Recv(ctxT(t))
	if err != nil {
		t.Fatalf("%s Recv: %v", s.Type(), err)
	}
	return m
}

func sendMsg(t *testing.T, s *Socket, m Msg) {
	t.Helper()
	if err := s.Send(ctxT(t), m); err != nil {
		t.Fatalf("%s Send: %v", s.Type(), err)
	}
}

func TestInteropReqToLibzmqRep(t *testing.T) { reqToLibzmqRep(t, 50, nil) }

func TestInteropLibzmqReqToRep(t *testing.T) { libzmqReqToRep(t, 50, nil) }

// reqToLibzmqRep: a zpeer REQ (with opts) sends n messages to a libzmq REP
// (started with pyArgs, its security) and gets each echoed back.
func reqToLibzmqRep(t *testing.T, n int, pyArgs []string, opts ...Option) {
	t.Helper()
	py := startPy(t, append([]string{"rep", "--bind", "tcp://127.0.0.1:*", "--count", fmt.Sprint(n), "--specials"}, pyArgs...)...)
	ep := py.expect(t, "bound").Endpoint
	req := newSock(t, REQ, opts...)
	connect(t, req, ep)
	want := interopMsgs(n, true)
	for i, m := range want {
		sendMsg(t, req, m)
		if got := recvMsg(t, req); !sameFrames(got.Frames, m.Frames) {
			t.Fatalf("reply %d = %s, want %s", i, showMsg(got), showMsg(m))
		}
	}
	py.done(t, len(want))
}

// libzmqReqToRep: a libzmq REQ (with pyArgs) sends n messages to a zpeer
// REP (with opts), which echoes each.
func libzmqReqToRep(t *testing.T, n int, pyArgs []string, opts ...Option) {
	t.Helper()
	rep := newSock(t, REP, opts...)
	ep := bind(t, rep)
	py := startPy(t, append([]string{"req", "--connect", ep, "--count", fmt.Sprint(n), "--specials"}, pyArgs...)...)
	for i, m := range interopMsgs(n, true) {
		got := recvMsg(t, rep)
		if !sameFrames(got.Frames, m.Frames) {
			t.Fatalf("request %d = %s, want %s", i, showMsg(got), showMsg(m))
		}
		sendMsg(t, rep, got)
	}
	py.done(t, n+3)
}

func TestInteropPubToLibzmqSubs(t *testing.T) {
	const count = 100
	pub := newSock(t, PUB)
	ep := bind(t, pub)
	subA := startPy(t, "sub", "--connect", ep, "--topics", "alpha,gamma")
	subB := startPy(t, "sub", "--connect", ep, "--topics", "beta")
	topics := []string{"alpha", "beta", "gamma", "delta"} // nobody takes delta
	waitPeers(t, pub, 2)

	// The slow-joiner dance: publish sync messages until both subscribers
	// have seen one on each of their topics.
	synced := 0
	deadline := time.Now().Add(20 * time.Second)
	for synced < 2 {
		if time.Now().After(deadline) {
			t.Fatal("subscribers never synced")
		}
		for _, tp := range topics {
			sendMsg(t, pub, NewMsgString(tp, "sync"))
		}
		for _, py := range []*pyPeer{subA, subB} {
			if _, ok := py.next(t, "synced", 5*time.Millisecond); ok {
				synced++
			}
		}
	}
	before := pub.Stats().MsgsOut
	for i := range count {
		for _, tp := range topics {
			sendMsg(t, pub, NewMsgString(tp, strconv.Itoa(i)))
		}
	}
	for _, tp := range topics {
		sendMsg(t, pub, NewMsg([]byte(tp), []byte{}, bigFrameMiB()))
		sendMsg(t, pub, NewMsgString(tp, "end"))
	}
	evA, evB := subA.done(t, 2*(count+1)), subB.done(t, count+1)
	for _, c := range []struct {
		ev   pyEvent
		want map[string]int
	}{
		{evA, map[string]int{"alpha": count + 1, "gamma": count + 1}},
		{evB, map[string]int{"beta": count + 1}},
	} {
		if fmt.Sprint(c.ev.Counts) != fmt.Sprint(c.want) || len(c.ev.Foreign) > 0 {
			t.Errorf("subscriber got counts %v (foreign %d), want %v", c.ev.Counts, len(c.ev.Foreign), c.want)
		}
	}
	// The filtering happened on our side: the subscribers were sent only
	// their topics' messages, count+2 per topic (with the 1 MiB one and
	// "end"), and nothing on delta. Without it, 8*(count+2).
	waitFor(t, "subscribers gone", func() bool { return pub.Stats().Disconnects == 2 })
	if got, want := pub.Stats().MsgsOut-before, uint64(3*(count+2)); got != want {
		t.Errorf("PUB sent %d messages to its subscribers after syncing, want %d", got, want)
	}
}

func TestInteropLibzmqPubToSub(t *testing.T) {
	const count = 100
	py := startPy(t, "pub", "--bind", "tcp://127.0.0.1:*", "--count", strconv.Itoa(count), "--topics", "alpha,beta,gamma")
	ep := py.expect(t, "bound").Endpoint
	sub := newSock(t, SUB)
	sub.Subscribe("alpha")
	sub.Subscribe("gam") // a prefix
	connect(t, sub, ep)
	seen := map[string]bool{}
	for len(seen) < 2 {
		m := recvMsg(t, sub)
		seen[string(m.Frames[0])] = true
	}
	if _, err := io.WriteString(py.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	counts, ended := map[string]int{}, map[string]bool{}
	for len(ended) < 2 {
		m := recvMsg(t, sub)
		tp := string(m.Frames[0])
		if tp != "alpha" && tp != "gamma" {
			t.Fatalf("SUB got a message on topic %q", tp)
		}
		switch body := m.Frames[1:]; {
		case len(body) == 1 && string(body[0]) == "sync":
		case len(body) == 1 && string(body[0]) == "end":
			ended[tp] = true
		case len(body) == 2 && len(body[0]) == 0 && bytes.Equal(body[1], bigFrameMiB()):
			counts[tp]++
		case len(body) == 1 && string(body[0]) == strconv.Itoa(counts[tp]):
			counts[tp]++
		default:
			t.Fatalf("topic %s message %d: %s", tp, counts[tp], showMsg(m))
		}
	}
	if counts["alpha"] != count+1 || counts["gamma"] != count+1 {
		t.Errorf("counts %v, want %d each", counts, count+1)
	}
	py.done(t, -1)
}

func TestInteropLibzmqPushToPull(t *testing.T) { libzmqPushToPull(t, 500, nil) }

// libzmqPushToPull: a libzmq PUSH (with pyArgs) sends n messages to a zpeer
// PULL (with opts), in order.
func libzmqPushToPull(t *testing.T, n int, pyArgs []string, opts ...Option) {
	t.Helper()
	pull := newSock(t, PULL, opts...)
	ep := bind(t, pull)
	py := startPy(t, append([]string{"push", "--connect", ep, "--count", fmt.Sprint(n), "--specials"}, pyArgs...)...)
	for i, m := range interopMsgs(n, true) {
		if got := recvMsg(t, pull); !sameFrames(got.Frames, m.Frames) {
			t.Fatalf("message %d = %s, want %s", i, showMsg(got), showMsg(m))
		}
	}
	py.done(t, -1)
}

func TestInteropPushToTwoLibzmqPulls(t *testing.T) {
	const count = 1000
	push := newSock(t, PUSH)
	ep := bind(t, push)
	pulls := []*pyPeer{
		startPy(t, "pull", "--connect", ep, "--count", "-1"),
		startPy(t, "pull", "--connect", ep, "--count", "-1"),
	}
	waitPeers(t, push, 2)
	for i := range count {
		send(t, push, strconv.Itoa(i))
	}
	// One END each ends both pullers when the split is even; send another
	// while one is still waiting (one that has finished is gone).
	send(t, push, "END")
	send(t, push, "END")
	total, finished := 0, make([]bool, len(pulls))
	for round := 0; ; round++ {
		left := 0
		for i, py := range pulls {
			if finished[i] {
				continue
			}
			ev, ok := py.next(t, "done", 200*time.Millisecond)
			if !ok {
				left++
				continue
			}
			finished[i] = true
			total += ev.Received
			if ev.Received < count/2-25 || ev.Received > count/2+25 {
				t.Errorf("puller %d received %d of %d messages, want %d±25", i, ev.Received, count, count/2)
			}
		}
		if left == 0 {
			break
		}
		if round == 50 {
			t.Fatalf("%d pullers never finished", left)
		}
		send(t, push, "END")
	}
	if total != count {
		t.Errorf("pullers received %d messages in all, want %d", total, count)
	}
}

func TestInteropDealerToLibzmqRouter(t *testing.T) {
	py := startPy(t, "router", "--bind", "tcp://127.0.0.1:*", "--count", "50", "--specials", "--expect-id", "go-dealer")
	ep := py.expect(t, "bound").Endpoint
	dealer := newSock(t, DEALER, WithIdentity([]byte("go-dealer")))
	connect(t, dealer, ep)
	for i, m := range interopMsgs(50, true) {
		sendMsg(t, dealer, m)
		if got := recvMsg(t, dealer); !sameFrames(got.Frames, m.Frames) {
			t.Fatalf("echo %d = %s, want %s", i, showMsg(got), showMsg(m))
		}
	}
	ev := py.done(t, 53)
	if len(ev.IDs) != 1 || ev.IDs[0] != hex.EncodeToString([]byte("go-dealer")) {
		t.Errorf("libzmq ROUTER saw routing ids %v, want only go-dealer", ev.IDs)
	}
}

func TestInteropLibzmqDealerToRouter(t *testing.T) {
	router := newSock(t, ROUTER)
	ep := bind(t, router)
	named := startPy(t, "dealer", "--connect", ep, "--identity", "py-dealer", "--count", "50", "--specials")
	anon := startPy(t, "dealer", "--connect", ep, "--count", "50", "--specials")
	want := interopMsgs(50, true)
	next := map[string]int{} // routing id -> index of the next expected message
	for range 2 * len(want) {
		m := recvMsg(t, router)
		id := string(m.Frames[0])
		if id != "py-dealer" && (len(id) != 5 || id[0] != 0) {
			t.Fatalf("routing id %x: want py-dealer or a generated 5-byte id", id)
		}
		i := next[id]
		next[id]++
		if i >= len(want) || !sameFrames(m.Frames[1:], want[i].Frames) {
			t.Fatalf("from %x: message %d = %s", id, i, showMsg(m))
		}
		sendMsg(t, router, m)
	}
	if len(next) != 2 {
		t.Errorf("ROUTER saw %d routing ids, want 2", len(next))
	}
	named.done(t, len(want))
	anon.done(t, len(want))
}

// lastRecv is when the socket's only pipe last read a frame (any frame,
// PINGs and PONGs included).
func lastRecv(s *Socket) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.pipes {
		return time.Unix(0, p.lastRecv.Load())
	}
	return time.Time{}
}

// Heartbeat timeouts in the tests that check that heartbeats keep an idle
// connection up: a second, which a peer process merely not scheduled on a
// loaded machine under -race does not miss (at 100-300 ms it could, and
// the connection dropped), and the idle time is several of them.
const (
	hbIvl     = 100 * time.Millisecond
	hbTimeout = time.Second
	hbIdle    = 3 * hbTimeout
)

// ms formats d in milliseconds, for the Python peer's flags.
func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// idleWithTraffic waits until the connection has been idle of messages but
// alive with heartbeat traffic for d: frames keep arriving and the socket
// never lost its peer.
func idleWithTraffic(t *testing.T, s *Socket, d time.Duration) {
	t.Helper()
	start := time.Now()
	waitFor(t, "heartbeat traffic", func() bool {
		if st := s.Stats(); st.Disconnects > 0 || st.Peers != 1 {
			t.Fatalf("connection dropped while idle: %+v", st)
		}
		return lastRecv(s).Sub(start) >= d
	})
}

// TestInteropLibzmqHeartbeats: libzmq PINGs us every 100 ms and drops the
// connection when nothing comes back within a second. We send no PINGs of
// our own, so only our PONGs keep it up.
func TestInteropLibzmqHeartbeats(t *testing.T) {
	py := startPy(t, "rep", "--bind", "tcp://127.0.0.1:*", "--count", "2", "--hb-ivl", ms(hbIvl), "--hb-timeout", ms(hbTimeout))
	ep := py.expect(t, "bound").Endpoint
	req := newSock(t, REQ, WithHeartbeat(0, 0))
	connect(t, req, ep)
	for i, m := range interopMsgs(2, false) {
		sendMsg(t, req, m)
		if got := recvMsg(t, req); !sameFrames(got.Frames, m.Frames) {
			t.Fatalf("reply %d = %s", i, showMsg(got))
		}
		if i == 0 {
			idleWithTraffic(t, req, hbIdle)
		}
	}
	// The peer exits after its second reply, so a disconnect may follow
	// now; what matters is that heartbeats never caused a reconnect.
	if st := req.Stats(); st.Connects != 1 {
		t.Errorf("connects=%d, want 1 (no reconnect while idle)", st.Connects)
	}
	py.done(t, 2)
}

// TestInteropOurHeartbeats: we PING libzmq every 100 ms and drop it after
// a second of silence; libzmq must answer with PONGs and keep talking.
func TestInteropOurHeartbeats(t *testing.T) {
	py := startPy(t, "router", "--bind", "tcp://127.0.0.1:*", "--count", "2")
	ep := py.expect(t, "bound").Endpoint
	dealer := newSock(t, DEALER, WithHeartbeat(hbIvl, hbTimeout))
	connect(t, dealer, ep)
	want := interopMsgs(2, false)
	for i, m := range want {
		sendMsg(t, dealer, m)
		if got := recvMsg(t, dealer); !sameFrames(got.Frames, m.Frames) {
			t.Fatalf("echo %d = %s", i, showMsg(got))
		}
		if i == 0 {
			idleWithTraffic(t, dealer, hbIdle)
		}
	}
	// The peer exits after its second echo, so a disconnect may follow
	// now; what matters is that heartbeats never caused a reconnect.
	if st := dealer.Stats(); st.Connects != 1 {
		t.Errorf("connects=%d, want 1 (no reconnect while idle)", st.Connects)
	}
	py.done(t, 2)
}
