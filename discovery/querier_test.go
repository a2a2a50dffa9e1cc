package discovery

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func knownPTR(svc string, i int, ttl uint32) dns.RR {
	return &dns.PTR{Hdr: dns.RR_Header{Name: svc, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl},
		Ptr: fmt.Sprintf("pub-%016x-%d.%s", i, i, svc)}
}

// A query with more known answers than fit in one packet goes out in
// several, each within maxQueryBytes: the question in the first, the TC
// bit on all but the last, every known answer once, in order.
func TestQueryPacketsSplit(t *testing.T) {
	t.Parallel()
	const svc = "_telemetry._tcp.local."
	for _, n := range []int{0, 1, 30, 100} {
		var known []dns.RR
		for i := range n {
			known = append(known, knownPTR(svc, i, 15))
		}
		pkts, err := queryPackets(svc, known)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, b := range pkts {
			if len(b) > maxQueryBytes {
				t.Fatalf("%d known: packet %d is %d bytes", n, i, len(b))
			}
			m := new(dns.Msg)
			if err := m.Unpack(b); err != nil {
				t.Fatal(err)
			}
			if m.Response || m.Truncated != (i < len(pkts)-1) || (len(m.Question) == 1) != (i == 0) {
				t.Fatalf("%d known: packet %d of %d: response %v, TC %v, %d questions", n, i, len(pkts), m.Response, m.Truncated, len(m.Question))
			}
			for _, rr := range m.Answer {
				got = append(got, rr.(*dns.PTR).Ptr)
			}
		}
		if len(got) != n {
			t.Fatalf("%d known answers sent as %d", n, len(got))
		}
		for i, rr := range known {
			if got[i] != rr.(*dns.PTR).Ptr {
				t.Fatalf("known answer %d: %s, want %s", i, got[i], rr.(*dns.PTR).Ptr)
			}
		}
		if n == 100 && len(pkts) < 3 {
			t.Fatalf("100 known answers in %d packets", len(pkts))
		}
	}
}

// Browse gaps double from 1 s up to the refresh period, each with a random
// extra below half its length; a query seen from another host right after
// a round belongs to it; a fresh browse starts over.
func TestBrowseGapsDouble(t *testing.T) {
	t.Parallel()
	const limit = 5 * time.Second
	var q ifSched
	q.restart(limit)
	if !q.full {
		t.Fatal("a fresh browse lists known answers")
	}
	now := time.Unix(1000, 0)
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, limit, limit} {
		q.round(now, true, limit)
		gap := q.browseDue().Sub(now)
		if gap < want || gap >= want+want/2 {
			t.Fatalf("gap %d: %v, want %v plus less than half", i, gap, want)
		}
		// The echo of our own query, or another host's on the same
		// timer: same round.
		q.round(now.Add(time.Millisecond), false, limit)
		if g := q.browseDue().Sub(now.Add(time.Millisecond)); g != gap {
			t.Fatalf("gap %d after a query of the same round: %v, was %v", i, g, gap)
		}
		now = now.Add(gap)
	}
	// A query seen later from another host is a round of its own: the
	// next browse is due a gap after it.
	seen := now.Add(-time.Second)
	q.round(seen, false, limit)
	if d := q.browseDue(); d.Before(seen.Add(limit)) {
		t.Fatalf("browse due %v after a query seen; want at least the gap after it", d.Sub(seen))
	}
	q.restart(limit)
	q.round(now, true, limit)
	if gap := q.browseDue().Sub(now); gap >= 1500*time.Millisecond {
		t.Fatalf("after restart: gap %v", gap)
	}
	// A refresh period under 1 s caps the first gap too.
	q.restart(200 * time.Millisecond)
	q.round(now, true, 200*time.Millisecond)
	if gap := q.browseDue().Sub(now); gap >= 300*time.Millisecond {
		t.Fatalf("refresh 200ms: first gap %v", gap)
	}
}

// A record is queried for at 80, 85, 90 and 95 % of its lifetime (plus
// its jitter), unless a query round covered the point.
func TestRefreshPoints(t *testing.T) {
	t.Parallel()
	at := time.Unix(1000, 0)
	const life = 10 * time.Second
	sec := func(s float64) time.Time { return at.Add(time.Duration(s * float64(time.Second))) }
	for _, c := range []struct {
		last time.Time
		want time.Time
		ok   bool
	}{
		{time.Time{}, sec(8.1), true},
		{sec(5), sec(8.1), true},
		{sec(7.8), sec(8.6), true}, // 0.3 s before the 80 % point: it covers it
		{sec(8.1), sec(8.6), true}, // our own query at 80 %
		{sec(9.1), sec(9.6), true},
		{sec(9.6), time.Time{}, false},
	} {
		got, ok := refreshDue(at, life, 0.01, c.last)
		if ok != c.ok || !got.Equal(c.want) {
			t.Fatalf("last round %v: next point %v %v, want %v %v", c.last.Sub(at), got.Sub(at), ok, c.want.Sub(at), c.ok)
		}
	}
}

// newTestSource returns an mdnsSource with no socket, for its handler's
// rules: one interface, index 1, refresh 5 s.
func newTestSource(t *testing.T) *mdnsSource {
	t.Helper()
	o, err := buildOptions([]Option{WithNodeID("me")})
	if err != nil {
		t.Fatal(err)
	}
	w := newWatcher(o)
	w.service = "svc"
	s := &mdnsSource{w: w, svcName: "_svc._tcp.local.", nets: map[int][]*net.IPNet{}, cache: map[string]*sighting{},
		pendingQ: map[string]*seenQuery{}, inbox: make(chan packet, inboxSize)}
	q := &ifSched{ifIndex: 1}
	q.restart(o.refresh)
	s.scheds = []*ifSched{q}
	return s
}

// Queries list the records held with more than half their lifetime left,
// with the TTL they have left, but not those of suspects; a query seen on
// the link counts as the Watcher's own only if it is multicast, asks the
// same question as QM and lists no known answer the Watcher would not.
func TestKnownAnswersAndDuplicateQuestions(t *testing.T) {
	t.Parallel()
	s := newTestSource(t)
	now := time.Unix(1000, 0)
	add := func(name string, age time.Duration, ifIndex int) {
		s.cache["mdns:"+name+"._svc._tcp.local."] = &sighting{name: name + "._svc._tcp.local.", at: now.Add(-age),
			ttl: 15, life: 15 * time.Second, ifIndex: ifIndex, peer: true}
	}
	add("fresh", 2500*time.Millisecond, 1)
	add("old", 8*time.Second, 1)
	add("suspect", time.Second, 1)
	add("elsewhere", time.Second, 2)
	known := s.knownAnswers(1, now, map[string]bool{"mdns:suspect._svc._tcp.local.": true})
	if len(known) != 1 || known[0].(*dns.PTR).Ptr != "fresh._svc._tcp.local." || known[0].Header().Ttl != 13 {
		t.Fatalf("known answers %v", known)
	}

	src := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 9), Port: mdnsPort}
	query := func(at time.Time, qclass uint16, from *net.UDPAddr, tc bool, question bool, known ...string) packet {
		m := new(dns.Msg)
		if question {
			m.SetQuestion(s.svcName, dns.TypePTR)
			m.Question[0].Qclass = qclass
		}
		m.Truncated = tc
		for _, k := range known {
			m.Answer = append(m.Answer, &dns.PTR{Hdr: dns.RR_Header{Name: s.svcName, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 10},
				Ptr: k + "._svc._tcp.local."})
		}
		return packet{msg: m, ifIndex: 1, src: from, at: at}
	}
	q := s.scheds[0]
	q.full = false
	q.round(now.Add(-time.Hour), true, s.w.o.refresh)
	q.round(now.Add(-time.Hour+time.Second), true, s.w.o.refresh)
	counts := func(what string, p packet, want bool) {
		t.Helper()
		before := q.last
		if !wantsQuery(p.msg, s.svcName) {
			if want {
				t.Fatalf("%s: filtered out on the reader", what)
			}
			return
		}
		s.handleQuery(p)
		if got := !q.last.Equal(before); got != want {
			t.Fatalf("%s: counted as a round %v, want %v", what, got, want)
		}
	}
	counts("a query listing an instance we do not hold fresh", query(now, dns.ClassINET, src, false, true, "fresh", "old"), false)
	counts("a QU query", query(now, dns.ClassINET|1<<15, src, false, true), false)
	counts("a legacy unicast query", query(now, dns.ClassINET, &net.UDPAddr{IP: src.IP, Port: 40000}, false, true), false)
	counts("a query listing part of what we hold", query(now, dns.ClassINET, src, false, true, "fresh"), true)

	// A query in two packets counts when its last packet came, if the
	// two together list nothing we would not.
	later := now.Add(10 * time.Second)
	add("fresh2", 0, 1)
	s.cache["mdns:fresh._svc._tcp.local."].at = later
	s.cache["mdns:fresh2._svc._tcp.local."].at = later
	counts("the first packet of a TC query", query(later, dns.ClassINET, src, true, true, "fresh"), false)
	counts("its last packet", query(later.Add(time.Millisecond), dns.ClassINET, src, false, false, "fresh2"), true)
	later = later.Add(time.Minute)
	s.cache["mdns:fresh._svc._tcp.local."].at = later
	s.cache["mdns:fresh2._svc._tcp.local."].at = later
	counts("the first packet of another TC query", query(later, dns.ClassINET, src, true, true, "fresh"), false)
	counts("its last packet, listing a stale record", query(later.Add(time.Millisecond), dns.ClassINET, src, false, false, "old"), false)
}

// The announcer holds its answer to a query with the TC bit until the
// sender's last packet, and leaves its PTR record out if a continuation
// lists it; at most 400-500 ms.
func TestAnnouncerWaitsForKnownAnswers(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	a := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: mdnsPort}
	b := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: mdnsPort}
	var h tcHold
	check := func(what string, gotIf, gotWant, wantIf, wantWant int) {
		t.Helper()
		if gotIf != wantIf || gotWant != wantWant {
			t.Fatalf("%s: answer %b on %d, want %b on %d", what, gotWant, gotIf, wantWant, wantIf)
		}
	}
	i, w := h.add(query{want: recPTR, ifIndex: 1, src: a}, now)
	check("a query without TC", i, w, 1, recPTR)
	i, w = h.add(query{want: recPTR, ifIndex: 1, src: a, more: true}, now)
	check("the first packet of a TC query", i, w, 0, 0)
	i, w = h.add(query{want: recPTR, ifIndex: 1, src: b, more: true}, now)
	check("another sender's TC query", i, w, 0, 0)
	i, w = h.add(query{ifIndex: 1, src: a, more: true, known: true, cont: true}, now)
	check("a continuation listing us", i, w, 0, 0)
	i, w = h.add(query{ifIndex: 1, src: a, cont: true}, now)
	check("the last packet: nothing left to answer", i, w, 1, 0)
	i, w = h.add(query{ifIndex: 1, src: a, known: true, cont: true}, now)
	check("a continuation of nothing held", i, w, 0, 0)
	if next := h.next(); next.Before(now.Add(400*time.Millisecond)) || next.After(now.Add(500*time.Millisecond)) {
		t.Fatalf("held until %v", next.Sub(now))
	}
	if got := h.expired(now.Add(300 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("released early: %v", got)
	}
	got := h.expired(now.Add(time.Second))
	if len(got) != 1 || got[0].want != recPTR || got[0].ifIndex != 1 || !h.next().IsZero() {
		t.Fatalf("after the wait: %+v", got)
	}
}

// End to end on loopback: a watcher that holds the records of 45 peers
// lists them as known answers in queries of two packets (TC), and none of
// the 45 answers while their records have more than half their TTL left,
// whichever packet lists them.
func TestKnownAnswersAcrossPackets(t *testing.T) {
	t.Parallel()
	svc := uniqueService(t)
	const peers = 45
	var as []*Announcer
	for i := range peers {
		a, err := Announce(svc, "PUB", []string{fmt.Sprintf("tcp://127.0.0.1:%d", 46000+i)},
			WithLoopback(), WithNodeID(uniqueNode(t, "a")), WithInstance(fmt.Sprintf("peer-with-a-long-instance-name-%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		as = append(as, a)
	}
	sent := func() uint64 {
		n := uint64(0)
		for _, a := range as {
			n += a.Stats().PacketsOut
		}
		return n
	}
	// The second announcements, one second after the first.
	eventually(t, 10*time.Second, "every announcer's second announcement", func() bool { return sent() >= 2*peers })
	w, err := NewWatcher(svc, WithLoopback(), WithNodeID(uniqueNode(t, "w")), WithRefresh(200*time.Millisecond),
		WithExpiry(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	eventually(t, 10*time.Second, "the watcher to see every peer", func() bool { return len(w.Peers()) == peers })
	// The answers to the first query; the watcher's next queries list
	// all 45. Queries sent before the watcher knew them all may still
	// draw answers (an announcer holds a TC query's answer up to 500 ms
	// for the rest of its known answers, longer on a loaded machine):
	// eight more query packets (four rounds, 200 ms apart at least) let
	// those go out before counting.
	eventually(t, 5*time.Second, "the answers to the first query", func() bool { return sent() >= 3*peers })
	settle := w.Stats().PacketsOut
	eventually(t, 10*time.Second, "four more query rounds", func() bool { return w.Stats().PacketsOut >= settle+8 })
	before, queries := sent(), w.Stats().PacketsOut
	// Ten more query packets: at least four query rounds of two
	// packets, spanning over 500 ms, the most an announcer holds a TC
	// query's answer.
	eventually(t, 10*time.Second, "ten more query packets", func() bool { return w.Stats().PacketsOut >= queries+10 })
	if d := sent() - before; d != 0 {
		t.Fatalf("%d answers to queries that listed every peer as known", d)
	}
	if st := w.Stats(); st.PacketsOut-queries < 10 || st.SendErrors != 0 {
		t.Fatalf("watcher stats %+v", st)
	}
}
