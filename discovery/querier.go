package discovery

import (
	"math/rand/v2"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// A Watcher's queries follow RFC 6762's rules for continuous querying, so
// that the traffic of a LAN where every host watches grows with the number
// of peers, not with its square:
//
//   - Browse (section 5.2). The first query goes out at start; the next
//     after 1 s, then 2 s, 4 s ..., doubling up to the refresh period
//     (WithRefresh). Each gap gets a random extra of up to half its length,
//     so that hosts that heard the same query do not all ask again at the
//     same instant. Refresh starts over from 1 s with a query that lists
//     no known answers.
//   - Cache maintenance (section 5.2). A peer's records live min(TTL,
//     expiry) from the last answer that carried them (its lifetime). At
//     80 %, 85 %, 90 % and 95 % of it (plus a random 0-2 %) the Watcher
//     queries, unless a query went out shortly before; a peer that
//     answered none of them is reported down when the lifetime ends.
//   - Known answers (sections 7.1 and 7.2). Every query lists the PTR
//     records the Watcher holds with more than half their lifetime left,
//     so only peers whose records are getting old, and peers it does not
//     know, answer. Lists longer than one packet (maxQueryBytes) go out
//     in several packets, all but the last with the TC bit.
//   - Duplicate questions (section 7.3). A query from anyone on the link
//     that asks the same question and lists no known answer this Watcher
//     would not list draws every answer this Watcher needs (answers are
//     multicast), so it counts as this Watcher's own query: the next
//     browse is scheduled from it, and refresh points it covers are not
//     asked again. So a link where every host watches a service carries
//     about one query round per refresh period, whoever sends it.
//
// Everything here runs on the mdnsSource's one goroutine.

const (
	// firstGap is the gap after the first query of a browse.
	firstGap = time.Second
	// maxQueryBytes bounds the DNS message of one query packet: a query
	// and its known answers fit in one Ethernet frame.
	maxQueryBytes = 1400
	// tcWait is how long the continuation of a query with the TC bit is
	// awaited (RFC 6762 section 7.2 has responders wait 400-500 ms).
	tcWait = 500 * time.Millisecond
	// roundGap: a query seen less than this after the last round belongs
	// to that round (another host's answer to the same timer, or the echo
	// of this Watcher's own query): it does not double the gap again.
	roundGap = 250 * time.Millisecond
	// refreshJitter is the random part of a refresh point, as a fraction
	// of the lifetime (RFC 6762 section 5.2: 2 %).
	refreshJitter = 0.02
	// refreshCover: a query round at most this fraction of the lifetime
	// before a refresh point stands for it (the points are 5 % apart; the
	// hosts holding a record reach a point within refreshJitter of each
	// other, and the first one's query serves them all).
	refreshCover = 0.04
)

// refreshPoints are the fractions of a record's lifetime at which it is
// queried for, unless it was answered meanwhile (RFC 6762 section 5.2).
var refreshPoints = [...]float64{0.80, 0.85, 0.90, 0.95}

// ifSched is the query schedule of one interface.
type ifSched struct {
	ifIndex  int
	last     time.Time     // the last query round: this Watcher's query, or an equivalent one seen
	lastSent time.Time     // this Watcher's last query
	gap      time.Duration // from last to the next browse, before jitter
	next     time.Duration // the gap after the next round
	jitter   float64       // drawn per round, in [0, 0.5): the browse is due at last + gap*(1+jitter)
	full     bool          // the next query lists no known answers (a fresh browse)
	asap     bool          // a query is wanted now (ReportUnreachable)
}

// round records a query round at time at: this Watcher's (own) or one
// seen on the link that stands for it.
func (q *ifSched) round(at time.Time, own bool, limit time.Duration) {
	if !own && !q.last.IsZero() && at.Sub(q.last) < min(roundGap, limit/2) {
		if at.After(q.last) {
			q.last = at
		}
		return
	}
	q.last = at
	q.gap = q.next
	q.next = min(2*q.next, limit)
	q.jitter = rand.Float64() / 2
}

// restart begins a fresh browse: a query now without known answers, then
// gaps from firstGap again.
func (q *ifSched) restart(limit time.Duration) {
	q.last = time.Time{}
	q.gap = 0
	q.next = min(firstGap, limit)
	q.full = true
}

// browseDue is when the next browse query is due.
func (q *ifSched) browseDue() time.Time {
	return q.last.Add(q.gap + time.Duration(float64(q.gap)*q.jitter))
}

// refreshDue returns the next refresh point of a record seen at at with
// the given lifetime and jitter that no query round has covered yet, and
// false when all four are past.
func refreshDue(at time.Time, life time.Duration, jitter float64, last time.Time) (time.Time, bool) {
	cover := time.Duration(refreshCover * float64(life))
	for _, f := range refreshPoints {
		p := at.Add(time.Duration((f + jitter) * float64(life)))
		if last.IsZero() || p.Sub(last) > cover {
			return p, true
		}
	}
	return time.Time{}, false
}

// due returns when interface q next needs a query.
func (s *mdnsSource) due(q *ifSched) time.Time {
	if q.asap || q.full {
		return q.lastSent.Add(minBrowseGap)
	}
	d := q.browseDue()
	for _, c := range s.cache {
		if !c.peer || c.ifIndex != q.ifIndex {
			continue
		}
		if p, ok := refreshDue(c.at, c.life, c.jitter, q.last); ok && p.Before(d) {
			d = p
		}
	}
	return d
}

// nextDue returns when the earliest interface needs a query.
func (s *mdnsSource) nextDue() time.Time {
	var d time.Time
	for _, q := range s.scheds {
		if t := s.due(q); d.IsZero() || t.Before(d) {
			d = t
		}
	}
	return d
}

// queryDue sends the queries that are due at now.
func (s *mdnsSource) queryDue(now time.Time) {
	var suspects map[string]bool
	for _, q := range s.scheds {
		if s.due(q).After(now) {
			continue
		}
		var known []dns.RR
		if !q.full {
			if suspects == nil {
				suspects = s.w.suspects()
			}
			known = s.knownAnswers(q.ifIndex, now, suspects)
		}
		s.sendQuery(q.ifIndex, known)
		q.full, q.asap = false, false
		q.lastSent = now
		q.round(now, true, s.w.o.refresh)
	}
}

// knownAnswers returns the PTR records held for interface ifIndex with
// more than half their lifetime left at now, except those of suspects:
// the responders of the others need not answer.
func (s *mdnsSource) knownAnswers(ifIndex int, now time.Time, suspects map[string]bool) []dns.RR {
	var out []dns.RR
	for key, c := range s.cache {
		if c.ifIndex != ifIndex || suspects[key] {
			continue
		}
		age := now.Sub(c.at)
		if age < 0 {
			age = 0
		}
		if age >= c.life/2 {
			continue
		}
		ttl := int64(c.ttl) - int64(age/time.Second)
		if ttl < 1 {
			ttl = 1
		}
		out = append(out, &dns.PTR{
			Hdr: dns.RR_Header{Name: s.svcName, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: uint32(ttl)},
			Ptr: c.name,
		})
	}
	return out
}

// knownSet returns the names knownAnswers would list at time at, lower
// case.
func (s *mdnsSource) knownSet(ifIndex int, at time.Time) map[string]bool {
	out := make(map[string]bool)
	for _, rr := range s.knownAnswers(ifIndex, at, nil) {
		out[strings.ToLower(rr.(*dns.PTR).Ptr)] = true
	}
	return out
}

// queryPackets packs a PTR query for svcName with the known answers: as
// many as fit in maxQueryBytes per packet, the question in the first
// packet, the TC bit on every packet but the last (RFC 6762 section 7.2).
func queryPackets(svcName string, known []dns.RR) ([][]byte, error) {
	var out [][]byte
	m := newQuery(svcName)
	for i := 0; ; {
		for ; i < len(known); i++ {
			m.Answer = append(m.Answer, known[i])
			if m.Len() > maxQueryBytes && len(m.Answer) > 1 {
				m.Answer = m.Answer[:len(m.Answer)-1]
				break
			}
		}
		m.Truncated = i < len(known)
		b, err := m.Pack()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		if i >= len(known) {
			return out, nil
		}
		m = new(dns.Msg)
		m.Compress = true
	}
}

func newQuery(svcName string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(svcName, dns.TypePTR)
	m.RecursionDesired = false
	m.Compress = true
	return m
}

// sendQuery multicasts one query, in as many packets as its known answers
// need, on one interface.
func (s *mdnsSource) sendQuery(ifIndex int, known []dns.RR) {
	pkts, err := queryPackets(s.svcName, known)
	if err != nil { // a valid service name and PTR records always pack
		s.w.warn.warn("discovery: cannot build the browse query", "service", s.w.service, "err", err)
		return
	}
	for _, b := range pkts {
		if err := s.link.multicast(b, ifIndex); err != nil {
			s.w.stats.sendErrors.Add(1)
			s.w.warn.warn("discovery: watcher cannot send its query", "service", s.w.service, "err", err)
			return
		}
		s.w.stats.packetsOut.Add(1)
	}
}

// seenQuery is a query for the service seen on the link, its known
// answers gathered over its packets.
type seenQuery struct {
	at      time.Time
	ifIndex int
	known   []string // lower case instance names
}

// asksUs reports whether m asks for the service's PTR records as a QM
// question (answered by multicast, so everyone on the link hears the
// answers).
func asksUs(m *dns.Msg, svcName string) bool {
	for _, q := range m.Question {
		if q.Qclass&(1<<15) != 0 {
			continue // QU: the answers may go by unicast
		}
		if c := q.Qclass; c != dns.ClassINET && c != dns.ClassANY {
			continue
		}
		if (q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY) && strings.EqualFold(q.Name, svcName) {
			return true
		}
	}
	return false
}

// knownIn returns the instances whose PTR record for svcName m lists as
// known answers, lower case.
func knownIn(m *dns.Msg, svcName string) []string {
	var out []string
	for _, rr := range m.Answer {
		if p, ok := rr.(*dns.PTR); ok && strings.EqualFold(p.Hdr.Name, svcName) {
			out = append(out, strings.ToLower(p.Ptr))
		}
	}
	return out
}

// wantsQuery is the stack reader's filter: queries that ask for the
// service, and the continuations of multi-packet queries (no question,
// known answers for the service).
func wantsQuery(m *dns.Msg, svcName string) bool {
	if m.Response || m.Opcode != dns.OpcodeQuery {
		return false
	}
	if len(m.Question) == 0 {
		for _, rr := range m.Answer {
			if p, ok := rr.(*dns.PTR); ok && strings.EqualFold(p.Hdr.Name, svcName) {
				return true
			}
		}
		return false
	}
	return asksUs(m, svcName)
}

// handleQuery takes a query seen on the link (duplicate question
// suppression). Only multicast queries from port 5353 count: others get
// unicast answers that nobody else hears.
func (s *mdnsSource) handleQuery(p packet) {
	if p.src == nil || p.src.Port != mdnsPort {
		return
	}
	for k, sq := range s.pendingQ {
		if p.at.Sub(sq.at) > tcWait {
			delete(s.pendingQ, k)
		}
	}
	m := p.msg
	key := p.src.String()
	if asksUs(m, s.svcName) {
		sq := &seenQuery{at: p.at, ifIndex: p.ifIndex, known: knownIn(m, s.svcName)}
		if m.Truncated {
			s.pendingQ[key] = sq
			return
		}
		delete(s.pendingQ, key)
		s.equivalent(sq)
		return
	}
	sq := s.pendingQ[key]
	if len(m.Question) != 0 || sq == nil || sq.ifIndex != p.ifIndex {
		return
	}
	sq.known = append(sq.known, knownIn(m, s.svcName)...)
	if !m.Truncated {
		delete(s.pendingQ, key)
		s.equivalent(sq)
	}
}

// equivalent counts a complete query seen on the link as a query round of
// this Watcher if it lists no known answer this Watcher would not list:
// it then draws every answer this Watcher's own query would.
func (s *mdnsSource) equivalent(sq *seenQuery) {
	q := s.schedOf(sq.ifIndex)
	if q == nil {
		return
	}
	if len(sq.known) > 0 {
		ours := s.knownSet(sq.ifIndex, sq.at)
		for _, n := range sq.known {
			if !ours[n] {
				return
			}
		}
	}
	q.round(sq.at, false, s.w.o.refresh)
}

func (s *mdnsSource) schedOf(ifIndex int) *ifSched {
	for _, q := range s.scheds {
		if q.ifIndex == ifIndex {
			return q
		}
	}
	return nil
}
