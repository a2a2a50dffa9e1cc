package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/zpeer/zpeer/internal/testutil"
	"github.com/zpeer/zpeer/internal/udpsock"
)

// mdnsSockets returns the process's UDP sockets on port 5353, as the OS
// sees them, and checks that the stack counts as many.
func mdnsSockets(t *testing.T) int {
	t.Helper()
	n, err := udpsock.Count(mdnsPort)
	if errors.Is(err, udpsock.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s := StackStats().Sockets; s != n {
		t.Fatalf("the stack counts %d sockets, the OS %d", s, n)
	}
	return n
}

// TestStackSharedAndRefCounted is not parallel: it runs while no other
// test holds the stack, so it sees the first user open the loopback
// socket and the last one close it.
func TestStackSharedAndRefCounted(t *testing.T) {
	if n := mdnsSockets(t); n != 0 {
		t.Fatalf("%d mDNS sockets before the test", n)
	}
	before := StackStats()
	svc := uniqueService(t)
	var as []*Announcer
	var ws []*Watcher
	for i := range 3 {
		a, err := Announce(svc, "PUB", []string{fmt.Sprintf("tcp://127.0.0.1:%d", 45100+i)}, loopbackOpts(uniqueNode(t, "a"))...)
		if err != nil {
			t.Fatal(err)
		}
		as = append(as, a)
		w, err := NewWatcher(svc, loopbackOpts(uniqueNode(t, "w"))...)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
		if n := mdnsSockets(t); n != 1 {
			t.Fatalf("%d announcers and watchers on loopback hold %d sockets; want 1", 2*(i+1), n)
		}
	}
	for i, w := range ws {
		eventually(t, 5*time.Second, fmt.Sprintf("watcher %d to see 3 peers", i), func() bool { return len(w.Peers()) == 3 })
	}
	// One socket, so the packets that all of them sent and read went
	// through it once: the stack read at least one query per watcher.
	st := StackStats()
	if st.PacketsIn-before.PacketsIn < 3 || st.PacketsOut-before.PacketsOut < 3 {
		t.Fatalf("stack counters moved by in %d, out %d", st.PacketsIn-before.PacketsIn, st.PacketsOut-before.PacketsOut)
	}
	for i, w := range ws {
		if s := w.Stats(); s.PacketsIn == 0 || s.PacketsOut == 0 || s.PeersUp != 3 || s.SendErrors != 0 {
			t.Errorf("watcher %d: %+v", i, s)
		}
	}
	for i, a := range as {
		if s := a.Stats(); s.PacketsIn == 0 || s.PacketsOut == 0 || s.SendErrors != 0 {
			t.Errorf("announcer %d: %+v", i, s)
		}
	}
	// Users leave; the socket stays while one remains.
	as[0].Close()
	ws[0].Close()
	for _, w := range ws[1:] {
		eventually(t, 5*time.Second, "the goodbye", func() bool { return len(w.Peers()) == 2 })
		if s := w.Stats(); s.PeersDown != 1 {
			t.Errorf("PeersDown %d", s.PeersDown)
		}
	}
	if n := mdnsSockets(t); n != 1 {
		t.Fatalf("%d sockets with 4 users left", n)
	}
	for _, a := range as[1:] {
		a.Close()
	}
	for _, w := range ws[1:] {
		w.Close()
	}
	if n := mdnsSockets(t); n != 0 {
		t.Fatalf("%d sockets after the last user left", n)
	}
	// The next user opens it again.
	a, err := Announce(svc, "PUB", []string{"tcp://127.0.0.1:45110"}, loopbackOpts(uniqueNode(t, "a"))...)
	if err != nil {
		t.Fatal(err)
	}
	if n := mdnsSockets(t); n != 1 {
		t.Fatalf("%d sockets after a new user came", n)
	}
	a.Close()
	if n := mdnsSockets(t); n != 0 {
		t.Fatalf("%d sockets at the end", n)
	}
}

func testLogger() (*slog.Logger, *testutil.SyncBuffer) {
	buf := &testutil.SyncBuffer{}
	return slog.New(slog.NewTextHandler(buf, nil)), buf
}

// A watcher whose handler is not running drops what its queue cannot
// hold and counts it, never blocking the stack's reader; its janitor logs
// the drops, at most once per second.
func TestWatcherQueueDropsAndLogs(t *testing.T) {
	t.Parallel()
	log, buf := testLogger()
	o, err := buildOptions([]Option{WithLogger(log)})
	if err != nil {
		t.Fatal(err)
	}
	w := newWatcher(o)
	w.service = "svc"
	s := &mdnsSource{w: w, inbox: make(chan packet, inboxSize)}
	p := packet{msg: new(dns.Msg), ifIndex: 1, at: time.Now()}
	for i := range inboxSize + 10 {
		if kept := s.onResponse(p); kept != (i < inboxSize) {
			t.Fatalf("packet %d: kept %v", i, kept)
		}
	}
	st := w.Stats()
	if st.PacketsIn != inboxSize || st.QueueDrops != 10 {
		t.Fatalf("stats %+v", st)
	}
	// The reader only counts; the watcher's janitor logs.
	if buf.String() != "" {
		t.Fatalf("logged on the reader: %s", buf)
	}
	var l logged
	w.warnDrops(&l)
	s.onResponse(p) // one more drop, within the second: counted, not logged yet
	w.warnDrops(&l)
	if n := strings.Count(buf.String(), "dropped mDNS packets"); n != 1 || !strings.Contains(buf.String(), "dropped=10") {
		t.Fatalf("%d log lines for 11 drops within a second:\n%s", n, buf)
	}
	if !strings.Contains(buf.String(), "level=WARN") {
		t.Fatalf("not a warning: %s", buf)
	}
	if l.packets != 10 || w.Stats().QueueDrops != 11 {
		t.Fatalf("logged %d of %d drops", l.packets, w.Stats().QueueDrops)
	}
}

// A send that fails is counted and logged at warning level; WithLogger(nil)
// discards instead of panicking.
func TestSendErrorsCountedAndLogged(t *testing.T) {
	t.Parallel()
	for _, withLog := range []bool{true, false} {
		t.Run(fmt.Sprint("logger=", withLog), func(t *testing.T) {
			t.Parallel()
			log, buf := testLogger()
			opts := append(loopbackOpts(uniqueNode(t, "a")), WithLogger(log))
			if !withLog {
				opts = append(opts, WithLogger(nil))
			}
			a, err := Announce(uniqueService(t), "REP", []string{"tcp://127.0.0.1:45120"}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			// A legacy unicast query "from" an IPv6 address: the IPv4
			// socket cannot answer it.
			q := new(dns.Msg)
			q.SetQuestion(a.svcName, dns.TypePTR)
			before := a.Stats()
			a.send(a.ifaces[0].Index, recPTR, q, &net.UDPAddr{IP: net.IPv6loopback, Port: 5000})
			if st := a.Stats(); st.SendErrors != before.SendErrors+1 || st.PacketsOut != before.PacketsOut {
				t.Fatalf("before %+v after %+v", before, st)
			}
			logged := strings.Contains(buf.String(), "level=WARN") && strings.Contains(buf.String(), "cannot send")
			if logged != withLog {
				t.Fatalf("logged %v, want %v: %s", logged, withLog, buf)
			}
		})
	}
}

// A watcher tracks at most MaxPeers peers; more are ignored and counted.
func TestWatcherMaxPeers(t *testing.T) {
	t.Parallel()
	w := newManualWatcher(t)
	now := time.Now()
	for i := range MaxPeers + 3 {
		w.seen("mdns", mpeer(fmt.Sprint(i), "PUB", "tcp://h:1"), 1, "x", now)
	}
	if n, st := len(w.Peers()), w.Stats(); n != MaxPeers || st.PeersIgnored != 3 || st.PeersUp != MaxPeers {
		t.Fatalf("%d peers, stats %+v", n, st)
	}
	w.gone("mdns:0", 1, now)
	w.seen("mdns", mpeer("new", "PUB", "tcp://h:1"), 1, "x", now)
	if n := len(w.Peers()); n != MaxPeers {
		t.Fatalf("%d peers after one left and one came", n)
	}
}

func TestInterfaces(t *testing.T) {
	t.Parallel()
	lo, err := Interfaces(WithLoopback())
	if err != nil || len(lo) != 1 || lo[0].Flags&net.FlagLoopback == 0 {
		t.Fatalf("Interfaces(WithLoopback()) = %v, %v", lo, err)
	}
	if _, err := Interfaces(WithInterfaces("zpeer-no-such0")); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("a missing interface: %v", err)
	}
	if _, err := Interfaces(WithLoopback(), WithInterfaces(lo[0].Name)); !errors.Is(err, ErrOption) {
		t.Fatalf("both modes: %v", err)
	}
}
