package discovery

import (
	"errors"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestServiceType(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"telemetry", "_telemetry._tcp", true},
		{"Telemetry", "_telemetry._tcp", true},
		{"_rpc._tcp", "_rpc._tcp", true},
		{"a1-b2", "_a1-b2._tcp", true},
		{"fifteen-chars-x", "_fifteen-chars-x._tcp", true},
		{"sixteen-chars-xy", "", false},
		{"", "", false},
		{"-a", "", false},
		{"a-", "", false},
		{"a--b", "", false},
		{"123", "", false},
		{"a_b", "", false},
		{"a.b", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ServiceType(tc.in)
			if tc.ok && (err != nil || got != tc.want) {
				t.Fatalf("ServiceType(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidService) {
				t.Fatalf("ServiceType(%q) = %q, %v; want ErrInvalidService", tc.in, got, err)
			}
		})
	}
}

func TestCompatible(t *testing.T) {
	pairs := map[[2]string]bool{
		{"REQ", "REP"}: true, {"REQ", "ROUTER"}: true, {"REP", "DEALER"}: true,
		{"DEALER", "DEALER"}: true, {"DEALER", "ROUTER"}: true, {"ROUTER", "ROUTER"}: true,
		{"PUB", "SUB"}: true, {"PUB", "XSUB"}: true, {"XPUB", "SUB"}: true, {"XPUB", "XSUB"}: true,
		{"PUSH", "PULL"}: true, {"PAIR", "PAIR"}: true,
	}
	types := slices.Sorted(maps.Keys(socketTypes))
	for _, a := range types {
		for _, b := range types {
			want := pairs[[2]string{a, b}] || pairs[[2]string{b, a}]
			if got := Compatible(a, b); got != want {
				t.Errorf("Compatible(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}
	if !Compatible("sub", "pub") {
		t.Error("Compatible ignores case")
	}
	if Compatible("SUB", "BOGUS") || Compatible("", "") {
		t.Error("unknown types are compatible")
	}
}

func TestTXTRoundTrip(t *testing.T) {
	in := txtData{node: "abc", typ: "DEALER", rev: 7,
		endpoints: []string{"tcp://*:5555", "tcp://10.0.0.1:6000", "ipc:///tmp/x"},
		meta:      map[string]string{"region": "eu", "b": "", "x.y": "1=2"}}
	txt, err := encodeTXT(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"zpeer=1", "node=abc", "type=DEALER", "rev=7", "ep=tcp://*:5555", "ep2=tcp://10.0.0.1:6000",
		"ep3=ipc:///tmp/x", "b=", "region=eu", "x.y=1=2"}
	if !slices.Equal(txt, want) {
		t.Fatalf("encode: %q\nwant %q", txt, want)
	}
	out, err := decodeTXT(txt)
	if err != nil {
		t.Fatal(err)
	}
	if out.node != in.node || out.typ != in.typ || out.rev != in.rev ||
		!slices.Equal(out.endpoints, in.endpoints) || !maps.Equal(out.meta, in.meta) {
		t.Fatalf("decode: %+v", out)
	}
}

func TestTXTDecodeRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		txt   []string
		ok    bool
		check func(txtData) bool
	}{
		{"no marker", []string{"node=a", "type=PUB"}, false, nil},
		{"other version", []string{"zpeer=2", "node=a", "type=PUB"}, false, nil},
		{"no node", []string{"zpeer=1", "type=PUB"}, false, nil},
		{"bad type", []string{"zpeer=1", "node=a", "type=FOO"}, false, nil},
		{"first key wins, case-insensitive", []string{"zpeer=1", "NODE=a", "node=b", "Type=pub"}, true,
			func(d txtData) bool { return d.node == "a" && d.typ == "PUB" }},
		{"unknown reserved keys skipped", []string{"zpeer=1", "node=a", "type=SUB", "zpeer-future=x", "ep9=tcp://h:1"}, true,
			func(d txtData) bool { return len(d.meta) == 0 && len(d.endpoints) == 0 }},
		{"bad endpoint dropped", []string{"zpeer=1", "node=a", "type=SUB", "ep=tcp://nope", "ep2=tcp://h:2"}, true,
			func(d txtData) bool { return slices.Equal(d.endpoints, []string{"tcp://h:2"}) }},
		{"boolean key", []string{"zpeer=1", "node=a", "type=SUB", "flag"}, true,
			func(d txtData) bool { v, ok := d.meta["flag"]; return ok && v == "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := decodeTXT(tc.txt)
			if (err == nil) != tc.ok {
				t.Fatalf("decode %q: %v", tc.txt, err)
			}
			if tc.check != nil && !tc.check(d) {
				t.Fatalf("decode %q: %+v", tc.txt, d)
			}
		})
	}
}

func TestTXTLimits(t *testing.T) {
	base := txtData{node: "n", typ: "PUB", rev: 1, endpoints: []string{"tcp://*:1"}}
	for _, tc := range []struct {
		name string
		meta map[string]string
		ep   string
		err  error
	}{
		{"255 bytes fits", map[string]string{"k": strings.Repeat("v", 253)}, "", nil},
		{"256 bytes", map[string]string{"k": strings.Repeat("v", 254)}, "", ErrTXTTooLong},
		{"long endpoint", nil, "tcp://" + strings.Repeat("h", 250) + ":1", ErrTXTTooLong},
		{"record too large", func() map[string]string {
			m := map[string]string{}
			for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
				m[k] = strings.Repeat("v", 250)
			}
			return m
		}(), "", ErrTXTTooLarge},
		{"reserved key", map[string]string{"rev": "1"}, "", ErrInvalidMeta},
		{"reserved ep key", map[string]string{"EP4": "1"}, "", ErrInvalidMeta},
		{"reserved prefix", map[string]string{"zpeer-x": "1"}, "", ErrInvalidMeta},
		{"equals in key", map[string]string{"a=b": "1"}, "", ErrInvalidMeta},
		{"empty key", map[string]string{"": "1"}, "", ErrInvalidMeta},
		{"duplicate ignoring case", map[string]string{"Zone": "1", "zone": "2"}, "", ErrInvalidMeta},
		{"epoch is not reserved", map[string]string{"epoch": "1"}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := base
			d.meta = tc.meta
			if tc.ep != "" {
				d.endpoints = []string{tc.ep}
			}
			_, err := encodeTXT(d)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("encode: %v, want %v", err, tc.err)
			}
		})
	}
	// The option reports the same errors before anything is announced.
	_, err := Announce("svc", "PUB", []string{"tcp://127.0.0.1:1"}, WithLoopback(),
		WithMeta(map[string]string{"k": strings.Repeat("v", 300)}))
	if !errors.Is(err, ErrTXTTooLong) {
		t.Fatalf("Announce with a long entry: %v", err)
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		err  error
	}{
		{"ttl", []Option{WithTTL(time.Millisecond)}, ErrOption},
		{"refresh", []Option{WithRefresh(time.Millisecond)}, ErrOption},
		{"expiry below refresh", []Option{WithRefresh(time.Second), WithExpiry(time.Second)}, ErrOption},
		{"loopback and interfaces", []Option{WithLoopback(), WithInterfaces("eth0")}, ErrOption},
		{"node id", []Option{WithNodeID("a b")}, ErrOption},
		{"instance", []Option{WithInstance(strings.Repeat("x", 64))}, ErrOption},
		{"static type", []Option{WithStatic(Peer{Type: "NOPE", Endpoints: []string{"tcp://h:1"}})}, ErrInvalidSocketType},
		{"static endpoint", []Option{WithStatic(Peer{Type: "PUB", Endpoints: []string{"h:1"}})}, ErrInvalidEndpoint},
		{"missing interface", []Option{WithInterfaces("zpeer-no-such0")}, ErrNoInterface},
		{"dns server", []Option{WithDNSServer("nope")}, ErrOption},
		{"nil option is skipped", []Option{nil, WithLoopback()}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewWatcher("svc", tc.opts...)
			if w != nil {
				w.Close()
			}
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("NewWatcher: %v, want %v", err, tc.err)
			}
		})
	}
	// Every option error wraps ErrOption, beside a more precise one.
	for name, opt := range map[string]Option{
		"static type":     WithStatic(Peer{Type: "NOPE", Endpoints: []string{"tcp://h:1"}}),
		"static endpoint": WithStatic(Peer{Type: "PUB", Endpoints: []string{"h:1"}}),
		"no endpoint":     WithStatic(Peer{Type: "PUB"}),
		"curve key":       WithCurveKey("short"),
	} {
		if _, err := NewWatcher("svc", opt); !errors.Is(err, ErrOption) {
			t.Errorf("%s: %v, want ErrOption", name, err)
		}
	}
	if _, err := Announce("svc", "FOO", []string{"tcp://127.0.0.1:1"}, WithLoopback()); !errors.Is(err, ErrInvalidSocketType) {
		t.Errorf("Announce with a bad type: %v", err)
	}
	if _, err := Announce("svc", "PUB", nil, WithLoopback()); !errors.Is(err, ErrInvalidEndpoint) {
		t.Errorf("Announce without endpoint: %v", err)
	}
	if _, err := Announce("svc", "PUB", []string{"tcp://127.0.0.1"}, WithLoopback()); !errors.Is(err, ErrInvalidEndpoint) {
		t.Errorf("Announce without port: %v", err)
	}
	if _, err := NewWatcher("", WithoutMDNS()); !errors.Is(err, ErrOption) {
		t.Errorf("NewWatcher with no source: %v", err)
	}
	// The old name still matches (a deprecated alias of the same error).
	if _, err := NewWatcher("svc", WithTTL(time.Millisecond)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithTTL(1ms): %v, want it to match ErrInvalidOption too", err)
	}
}

func TestNodeIDStable(t *testing.T) {
	a, b := NodeID(), NodeID()
	if a != b || len(a) != 16 || !validNodeID(a) {
		t.Fatalf("NodeID %q then %q", a, b)
	}
}

func TestEndpointHelpers(t *testing.T) {
	ip := net.IPv4(10, 0, 0, 7)
	for in, want := range map[string]string{
		"tcp://*:5555":          "tcp://10.0.0.7:5555",
		"tcp://0.0.0.0:5555":    "tcp://10.0.0.7:5555",
		"tcp://:5555":           "tcp://10.0.0.7:5555",
		"tcp://[::]:5555":       "tcp://10.0.0.7:5555",
		"tcp://127.0.0.1:5555":  "tcp://127.0.0.1:5555",
		"tcp://host.lan:5555":   "tcp://host.lan:5555",
		"ipc:///tmp/socket.zmq": "ipc:///tmp/socket.zmq",
	} {
		if got := resolveEndpoint(in, ip); got != want {
			t.Errorf("resolveEndpoint(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEscapeLabel(t *testing.T) {
	for _, s := range []string{"plain", "with space", "dots.in.name", `back\slash`, "ünïcode", "tab\there"} {
		esc := escapeLabel(s)
		if got := unescapeLabel(esc); got != s {
			t.Errorf("round trip %q -> %q -> %q", s, esc, got)
		}
		// miekg/dns must read it as one label of the same bytes.
		name := esc + "._svc._tcp.local."
		if _, ok := dns.IsDomainName(name); !ok {
			t.Errorf("%q is not a domain name", name)
		}
		if n := dns.CountLabel(name); n != 4 {
			t.Errorf("%q has %d labels", name, n)
		}
	}
}

// pythonNSECPacket is a response in the shape python-zeroconf sends for a
// host with IPv4 addresses only: an NSEC record with an empty type bitmap
// (saying "no AAAA"), which miekg/dns v1.1.27 refuses to parse.
func pythonNSECPacket(t testing.TB) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.Response = true
	m.Authoritative = true
	m.Answer = []dns.RR{
		&dns.PTR{Hdr: dns.RR_Header{Name: "_svc._tcp.local.", Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 4500}, Ptr: "py._svc._tcp.local."},
		&dns.SRV{Hdr: dns.RR_Header{Name: "py._svc._tcp.local.", Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 120}, Port: 6000, Target: "pyhost.local."},
		&dns.TXT{Hdr: dns.RR_Header{Name: "py._svc._tcp.local.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 4500}, Txt: []string{"zpeer=1", "node=py", "type=REP"}},
		&dns.A{Hdr: dns.RR_Header{Name: "pyhost.local.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 120}, A: net.IPv4(127, 0, 0, 1)},
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	// Append by hand what miekg/dns will not pack: NSEC pyhost.local.
	// with next name pyhost.local. and a bitmap of one empty block
	// (window 0, length 0).
	name := []byte("\x06pyhost\x05local\x00")
	rr := append([]byte{}, name...)
	rr = append(rr, 0, 47, 0x80, 1, 0, 0, 0, 120, 0, byte(len(name)+2))
	rr = append(rr, name...)
	rr = append(rr, 0, 0)
	b = append(b, rr...)
	b[11]++ // ARCOUNT
	return b
}

func TestUnpackEmptyNSEC(t *testing.T) {
	b := pythonNSECPacket(t)
	if err := new(dns.Msg).Unpack(b); err == nil || !strings.Contains(err.Error(), "empty NSEC") {
		t.Fatalf("miekg/dns parsed the packet (%v): the workaround may no longer be needed", err)
	}
	m, err := unpackMDNS(b)
	if err != nil {
		t.Fatal(err)
	}
	obs, _ := observe(m, "_svc._tcp.local.")
	if len(obs) != 1 || !obs[0].hasSRV || obs[0].port != 6000 || len(obs[0].addrs) != 1 || !obs[0].txtLive {
		t.Fatalf("observations: %+v", obs)
	}
}

func TestObserveGoodbye(t *testing.T) {
	m := new(dns.Msg)
	m.Response = true
	m.Answer = []dns.RR{
		&dns.PTR{Hdr: dns.RR_Header{Name: "_svc._tcp.local.", Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 0}, Ptr: "a._svc._tcp.local."},
		&dns.TXT{Hdr: dns.RR_Header{Name: "a._svc._tcp.local.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 0}, Txt: []string{"zpeer=1", "node=n", "type=PUB", "rev=3"}},
		&dns.PTR{Hdr: dns.RR_Header{Name: "_other._tcp.local.", Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 0}, Ptr: "b._other._tcp.local."},
	}
	obs, _ := observe(m, "_svc._tcp.local.")
	if len(obs) != 1 || !obs[0].goodbye || obs[0].txtLive {
		t.Fatalf("observations: %+v", obs)
	}
	if d, ok := parseTXT(obs[0].txt); !ok || d.rev != 3 {
		t.Fatalf("goodbye TXT: %+v", d)
	}
}

func FuzzUnpackMDNS(f *testing.F) {
	f.Add(pythonNSECPacket(f))
	m := new(dns.Msg)
	m.SetQuestion("_svc._tcp.local.", dns.TypePTR)
	q, _ := m.Pack()
	f.Add(q)
	f.Add([]byte{})
	// The packet also goes through the stack's dispatcher (no socket) to
	// an announcer's query handler and a watcher's handlers, as any packet
	// from the network does.
	o, err := buildOptions([]Option{WithNodeID("me")})
	if err != nil {
		f.Fatal(err)
	}
	w := newWatcher(o)
	w.service = "svc"
	src := &mdnsSource{w: w, svcName: "_svc._tcp.local.", nets: map[int][]*net.IPNet{}, cache: map[string]*sighting{},
		pendingQ: map[string]*seenQuery{}, scheds: []*ifSched{{ifIndex: 1}}, inbox: make(chan packet, 1)}
	a := &Announcer{o: o, svcName: "_svc._tcp.local.", instName: "x._svc._tcp.local.", host: "zp-x.local.",
		queries: make(chan query, 1), warn: newWarner(o.logger)}
	c := &ifconn{ifi: net.Interface{Index: 1}, users: []*user{{onQuery: a.onQuery}, {onResponse: src.onResponse, onQuery: src.onQuery}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := unpackMDNS(b)
		if err == nil {
			observe(m, "_svc._tcp.local.")
		}
		neutralizeNSEC(b)
		if len(b) >= 12 {
			c.dispatch(&stackT{}, b, b[2]&0x80 != 0, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}, time.Now())
		}
		select {
		case p := <-src.inbox:
			if p.msg.Response {
				src.handle(p.msg, p.ifIndex, p.at)
			} else {
				src.handleQuery(p)
			}
			src.nextDue()
		case q := <-a.queries:
			var h tcHold
			h.add(q, time.Now())
		default:
		}
	})
}

func FuzzDecodeTXT(f *testing.F) {
	f.Add("zpeer=1\x00node=a\x00type=PUB\x00ep=tcp://*:1\x00k=v")
	f.Add("zpeer=1\x00NODE=a\x00type=sub\x00ep7=tcp://h:1")
	f.Fuzz(func(t *testing.T, s string) {
		txt := strings.Split(s, "\x00")
		d, err := decodeTXT(txt)
		if err != nil {
			return
		}
		for _, ep := range d.endpoints {
			if checkEndpoint(ep) != nil {
				t.Fatalf("decoded a bad endpoint %q", ep)
			}
		}
		if !socketTypes[d.typ] || d.node == "" {
			t.Fatalf("decoded %+v", d)
		}
	})
}

func TestPickAddr(t *testing.T) {
	s := &mdnsSource{nets: map[int][]*net.IPNet{
		2: {{IP: net.IPv4(10, 1, 0, 1).To4(), Mask: net.CIDRMask(24, 32)}},
		3: {{IP: net.IPv4(10, 2, 0, 1).To4(), Mask: net.CIDRMask(24, 32)}},
	}}
	ip := func(s string) net.IP { return net.ParseIP(s).To4() }
	addrs := []net.IP{net.ParseIP("fe80::1"), ip("192.168.9.9"), ip("10.2.0.7"), ip("10.1.0.5")}
	for _, tc := range []struct {
		ifIndex int
		addrs   []net.IP
		want    net.IP
	}{
		{2, addrs, ip("10.1.0.5")},
		{3, addrs, ip("10.2.0.7")},
		{0, addrs, ip("10.2.0.7")},                          // unknown interface: any selected subnet
		{0, []net.IP{ip("192.168.9.9")}, nil},               // ... and nothing else
		{2, []net.IP{ip("192.168.9.9")}, ip("192.168.9.9")}, // it came in on a selected interface
	} {
		if got := s.pickAddr(tc.addrs, tc.ifIndex); !got.Equal(tc.want) {
			t.Errorf("pickAddr(%v, %d) = %v, want %v", tc.addrs, tc.ifIndex, got, tc.want)
		}
	}
	s.loopback = true
	if got := s.pickAddr([]net.IP{ip("10.1.0.5"), ip("127.0.0.1")}, 1); !got.Equal(ip("127.0.0.1")) {
		t.Errorf("loopback mode picked %v", got)
	}
	if got := s.pickAddr([]net.IP{ip("10.1.0.5")}, 1); got != nil {
		t.Errorf("loopback mode picked %v", got)
	}
}

func TestMDNSPeerEndpoints(t *testing.T) {
	w := newWatcher(options{node: "me"})
	w.service = "svc"
	s := &mdnsSource{w: w, svcName: "_svc._tcp.local.", nets: map[int][]*net.IPNet{
		2: {{IP: net.IPv4(10, 1, 0, 1).To4(), Mask: net.CIDRMask(24, 32)}},
	}}
	txt := []string{"zpeer=1", "node=n1", "type=PUB", "rev=4", "ep=ipc:///tmp/s", "ep2=tcp://*:7", "ep3=tcp://h.lan:8"}
	addrs := []net.IP{net.IPv4(10, 1, 0, 9)}
	p, rev, _, ok := s.peer("mdns:x", `a\ b._svc._tcp.local.`, txt, 7, addrs, 2)
	if !ok || rev != 4 || p.Instance != "a b" || p.Node != "n1" ||
		!slices.Equal(p.Endpoints, []string{"tcp://10.1.0.9:7", "tcp://h.lan:8"}) {
		t.Fatalf("peer %+v rev %d ok %v", p, rev, ok)
	}
	s.loopback = true
	p, _, _, _ = s.peer("mdns:x", "a._svc._tcp.local.", txt, 7, []net.IP{net.IPv4(127, 0, 0, 1)}, 1)
	if !slices.Equal(p.Endpoints, []string{"ipc:///tmp/s", "tcp://127.0.0.1:7", "tcp://h.lan:8"}) {
		t.Fatalf("loopback mode endpoints %v", p.Endpoints)
	}
	// No ep at all (another DNS-SD tool): the A record and the SRV port.
	p, _, _, ok = s.peer("mdns:x", "a._svc._tcp.local.", []string{"zpeer=1", "node=n1", "type=REP"}, 9, []net.IP{net.IPv4(127, 0, 0, 1)}, 1)
	if !ok || p.Endpoint() != "tcp://127.0.0.1:9" {
		t.Fatalf("no ep: %+v", p)
	}
	if _, _, _, ok := s.peer("mdns:x", "a._svc._tcp.local.", []string{"zpeer=1", "node=me", "type=REP"}, 9, addrs, 1); ok {
		t.Fatal("own node accepted")
	}
}
