package discovery

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS is a unicast DNS server on 127.0.0.1 serving a zone the test can
// change.
type testDNS struct {
	mu      sync.Mutex
	records []dns.RR
	rcode   int // answer every query with this code unless RcodeSuccess
	addr    string
}

func startTestDNS(t *testing.T, zone ...string) *testDNS {
	t.Helper()
	d := &testDNS{}
	d.set(t, zone...)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: d, NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return d
}

// set replaces the zone; each string is one record in zone-file syntax.
func (d *testDNS) set(t *testing.T, zone ...string) {
	t.Helper()
	var rrs []dns.RR
	for _, z := range zone {
		rr, err := dns.NewRR(z)
		if err != nil {
			t.Fatalf("%q: %v", z, err)
		}
		rrs = append(rrs, rr)
	}
	d.mu.Lock()
	d.records, d.rcode = rrs, dns.RcodeSuccess
	d.mu.Unlock()
}

func (d *testDNS) setRcode(rcode int) {
	d.mu.Lock()
	d.rcode = rcode
	d.mu.Unlock()
}

func (d *testDNS) ServeDNS(rw dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rcode != dns.RcodeSuccess {
		m.Rcode = d.rcode
		_ = rw.WriteMsg(m)
		return
	}
	qs := q.Question[0]
	exists := false
	for _, rr := range d.records {
		if !strings.EqualFold(rr.Header().Name, qs.Name) {
			continue
		}
		exists = true
		if rr.Header().Rrtype == qs.Qtype {
			m.Answer = append(m.Answer, rr)
		}
	}
	// Like Consul: the A records of SRV targets marked "extra" in the
	// zone come in the additional section.
	for _, a := range m.Answer {
		if srv, ok := a.(*dns.SRV); ok && strings.HasPrefix(srv.Target, "extra") {
			for _, rr := range d.records {
				if rr.Header().Name == srv.Target && rr.Header().Rrtype == dns.TypeA {
					m.Extra = append(m.Extra, rr)
				}
			}
		}
	}
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	_ = rw.WriteMsg(m)
}

func TestSRVSource(t *testing.T) {
	t.Parallel()
	const name = "_zpeer._tcp.telemetry.test."
	zone := []string{
		name + " 5 IN SRV 0 0 5555 extra-a.telemetry.test.",
		name + " 5 IN SRV 0 0 5556 b.telemetry.test.",
		name + ` 5 IN TXT "zpeer=1" "team=x"`,
		"extra-a.telemetry.test. 5 IN A 127.0.0.11",
		`extra-a.telemetry.test. 5 IN TXT "zpeer=1" "node=na" "type=PUB" "region=eu"`,
		"b.telemetry.test. 5 IN A 127.0.0.12",
	}
	d := startTestDNS(t, zone...)
	w, err := NewWatcher("telemetry", WithoutMDNS(), WithSRV(name, "pub"), WithDNSServer(d.addr),
		WithRefresh(100*time.Millisecond), WithNodeID(uniqueNode(t, "w")))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ev := w.Events()
	eventually(t, 5*time.Second, "two SRV peers", func() bool { return len(w.Peers()) == 2 })
	got := w.Peers()
	b, a := got[0], got[1] // sorted by key
	if a.Key != "srv:extra-a.telemetry.test:5555" || a.Endpoint() != "tcp://127.0.0.11:5555" || a.Node != "na" ||
		a.Type != "PUB" || a.Meta["region"] != "eu" || a.Meta["team"] != "x" || a.Source != "srv" {
		t.Errorf("peer a: %+v", a)
	}
	if b.Key != "srv:b.telemetry.test:5556" || b.Endpoint() != "tcp://127.0.0.12:5556" || b.Type != "PUB" ||
		b.Meta["team"] != "x" || b.Node != "" {
		t.Errorf("peer b: %+v", b)
	}
	for range 2 {
		waitEvent(t, ev, time.Second, func(e Event) bool { return e.Kind == PeerUp })
	}

	// Metadata changes are updates.
	zone[4] = `extra-a.telemetry.test. 5 IN TXT "zpeer=1" "node=na" "type=PUB" "region=us"`
	d.set(t, zone...)
	e := waitEvent(t, ev, 2*time.Second, func(Event) bool { return true })
	if e.Kind != PeerUpdated || e.Peer.Meta["region"] != "us" {
		t.Fatalf("%v %+v", e.Kind, e.Peer)
	}

	// A failing server keeps the last list; its peers do not flap.
	d.setRcode(dns.RcodeServerFailure)
	w.Refresh()
	// ...and a peer no longer listed is removed once the server answers.
	d.set(t, zone[0], zone[2], zone[3], zone[4])
	e = waitEvent(t, ev, 2*time.Second, func(Event) bool { return true })
	if e.Kind != PeerDown || e.Reason != ReasonRemoved || e.Peer.Key != "srv:b.telemetry.test:5556" {
		t.Fatalf("%v %q %+v", e.Kind, e.Reason, e.Peer)
	}

	// NXDOMAIN: the service is gone.
	d.set(t)
	e = waitEvent(t, ev, 2*time.Second, func(Event) bool { return true })
	if e.Kind != PeerDown || e.Peer.Key != "srv:extra-a.telemetry.test:5555" {
		t.Fatalf("%v %+v", e.Kind, e.Peer)
	}
}

func TestSRVSourceKeepsListOnFailure(t *testing.T) {
	t.Parallel()
	const name = "_zpeer._tcp.kept.test."
	d := startTestDNS(t, name+" 5 IN SRV 0 0 7000 k.kept.test.", "k.kept.test. 5 IN A 127.0.0.13")
	w, err := NewWatcher("", WithoutMDNS(), WithSRV(name, "REP"), WithDNSServer(d.addr),
		WithRefresh(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	eventually(t, 5*time.Second, "the SRV peer", func() bool { return len(w.Peers()) == 1 })
	d.setRcode(dns.RcodeServerFailure)
	// Several refresh periods with a failing server.
	until := time.Now().Add(300 * time.Millisecond)
	eventually(t, 2*time.Second, "300ms of failures", func() bool { return time.Now().After(until) })
	if len(w.Peers()) != 1 {
		t.Fatal("a failing DNS server removed the peer")
	}
}

func TestStaticSource(t *testing.T) {
	t.Parallel()
	w, err := NewWatcher("telemetry", WithoutMDNS(), WithStatic(
		Peer{Type: "pub", Endpoints: []string{"tcp://127.0.0.21:1"}, Meta: map[string]string{"k": "v"}},
		Peer{Type: "PUSH", Endpoints: []string{"tcp://127.0.0.22:1"}},
	), WithUnreachableTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ev := w.Events()
	e := waitEvent(t, ev, time.Second, func(Event) bool { return true })
	if e.Kind != PeerUp || e.Peer.Key != "static:tcp://127.0.0.21:1" || e.Peer.Type != "PUB" || e.Peer.Source != "static" || e.Peer.Meta["k"] != "v" {
		t.Fatalf("%v %+v", e.Kind, e.Peer)
	}
	waitEvent(t, ev, time.Second, func(e Event) bool { return e.Kind == PeerUp && e.Peer.Type == "PUSH" })
	f := newFakeConnector()
	runAutoConnect(t, w, f, "SUB")
	wantConnected(t, f, "tcp://127.0.0.21:1")
	// Static peers stay up whatever the socket layer says.
	w.ReportUnreachable("tcp://127.0.0.21:1")
	until := time.Now().Add(200 * time.Millisecond)
	eventually(t, 2*time.Second, "the unreachable timeout to pass", func() bool { return time.Now().After(until) })
	if len(w.Peers()) != 2 {
		t.Fatalf("peers: %v", w.Peers())
	}
}
