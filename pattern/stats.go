package pattern

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// Stats is a snapshot of a pattern's counters. Every pattern fills the
// fields that mean something for it and leaves the others zero; each field
// says who counts it.
type Stats struct {
	// Sent counts messages handed to the socket for the first time:
	// requests (not retries), publications, pushed messages, replies.
	Sent uint64
	// Delivered counts messages that reached the application: replies
	// returned by Request, requests handed to a Replier's handler,
	// messages returned by Subscriber.Recv, messages a Puller's handler
	// finished with (successfully or not).
	Delivered uint64
	// Acked counts messages an acked Pusher saw acknowledged, or an acked
	// Puller acknowledged.
	Acked uint64
	// Retried counts resends: Request attempts after the first, acked
	// redeliveries (after a timeout, a nack or a lost puller).
	Retried uint64
	// Dropped counts messages lost on this side: a Publisher's messages
	// not queued for a slow subscriber (once per subscriber), replies whose
	// requester had gone, malformed input, and a Subscriber's or Puller's
	// undecodable messages.
	Dropped uint64
	// Dead counts messages an acked Pusher gave up on after
	// WithMaxDeliveries deliveries (each was reported to WithOnDead).
	Dead uint64
	// Gaps counts messages a Subscriber knows it missed, from holes in
	// publishers' per-topic sequence numbers.
	Gaps uint64
	// Duplicates counts redelivered messages an acked Puller recognised and
	// did not process again.
	Duplicates uint64
	// Late counts replies a Requester discarded because their attempt had
	// been abandoned (timed out or failed over), or acks an acked Pusher
	// received for messages already settled.
	Late uint64
	// Errors counts failed calls: Request errors, handler errors (Replier,
	// Puller) and recovered handler panics (also counted in Panics).
	Errors uint64
	// Panics counts handler panics that were recovered.
	Panics uint64
	// Refused counts peer connections refused at the handshake: by a
	// Pusher or Puller because the peer cannot take part (see Refusal), or
	// by the peer a Requester, Pusher or Puller connected to (its reason:
	// an untrusted key, another mechanism), or not made because the
	// server's key is not trusted (any more).
	Refused uint64
	// Pending is, for an acked Pusher, the number of messages it holds:
	// waiting for credit or delivered and not yet acknowledged. For a
	// Requester, the requests in flight.
	Pending int
	// Latency is the distribution of round trips, where the pattern
	// measures them: Request to reply (Requester), Push to ack (acked
	// Pusher).
	Latency LatencyStats
	// Handler is, for a Replier or a Puller built WithHandlerTiming, the
	// distribution of handler run times.
	Handler LatencyStats
	// Sources is, for a Subscriber, the delivery figures per publisher.
	Sources []SourceStats
	// Peers is, for a Publisher, the delivery figures per subscriber, and
	// for a Pusher, per puller.
	Peers []PeerStats
	// Socket aggregates the counters of the pattern's sockets.
	Socket socket.Counters
	// Outbox is, for an acked Pusher with WithOutbox, what its durable
	// outbox holds and has written; nil without one.
	Outbox *OutboxStats
}

// OutboxStats are a durable outbox's figures (see WithOutbox).
type OutboxStats struct {
	Jobs      int    // jobs held: pushed, not yet acknowledged or dead
	Bytes     int64  // their envelope bytes
	Segments  int    // segment files on disk
	Appends   uint64 // jobs written
	Acks      uint64 // jobs removed (acknowledged or dead)
	Writes    uint64 // write calls
	Syncs     uint64 // fsyncs
	Recovered int    // jobs taken back from the directory when the Pusher started
	Corrupt   int    // torn or corrupt records skipped when the Pusher started
}

// SourceStats are a Subscriber's figures for one publisher (one sender
// name), over all its topics.
type SourceStats struct {
	Sender    string
	Delivered uint64 // messages received from it
	Gaps      uint64 // messages it sent (as its sequence numbers show) that were missed
	// Reliability is Delivered / (Delivered + Gaps): delivered over sent,
	// counted from the first message this subscriber saw on each topic.
	Reliability float64
}

// PeerStats are a sender's figures for one peer.
type PeerStats struct {
	Remote   string // its network address, while connected
	Endpoint string // Requester: the replier endpoint ("" for one that dialled in)
	Sent     uint64 // messages queued for the peer (Requester: attempts)
	Dropped  uint64 // messages not queued because its queue was full
	// Reliability is Sent / (Sent + Dropped).
	Reliability float64
	Credit      int    // acked Pusher: how many more messages the puller accepts now
	InFlight    int    // acked Pusher: delivered to it, not yet acknowledged; Requester: attempts waiting for a reply
	Timeouts    uint64 // Requester: attempts that got no reply in time
	Open        bool   // Requester: its circuit breaker is open (it gets only probes)
	// Identity is, for a Pusher, the puller's identity that partition
	// keys are hashed on: its name (WithName) as it announced it.
	Identity string
	// Keys is, for an acked Pusher, the partition keys whose next job is
	// queued for the puller or in flight at it (a fire-and-forget Pusher
	// keeps no per-key state).
	Keys int
}

// LatencyStats summarises a latency histogram. Percentiles are accurate to
// about 3%.
type LatencyStats struct {
	Count               uint64
	Min, Mean, Max      time.Duration
	P50, P90, P99, P999 time.Duration
	// Sum is the total of the recorded durations.
	Sum time.Duration
	// Buckets is the distribution at the fixed bounds of LatencyBounds, as
	// a Prometheus histogram has it: Buckets[i] counts the durations at
	// most LatencyBounds[i] (cumulative), each placed by its histogram
	// bucket's midpoint, so to within about 3%. Count covers the rest.
	Buckets []uint64
}

// LatencyBounds are the upper bounds of LatencyStats.Buckets: 25 µs to
// 10 s in steps of about 2.5x, which covers a loopback round trip and a
// redelivery after an ack timeout alike.
var LatencyBounds = []time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
	2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Gap is reported by a Subscriber when sequence numbers show that it missed
// messages.
type Gap struct {
	Sender   string
	Topic    string
	From, To uint64 // the missed sequence numbers, inclusive
	Missed   uint64 // To - From + 1
}

// DeadLetter is a message an acked Pusher gave up on.
type DeadLetter struct {
	ID         codec.ID
	Value      any // the value given to Push
	Priority   uint8
	Deliveries int   // how many times it was delivered
	Err        error // wraps ErrDead; says the last puller's error when it nacked
}

func ratio(ok, bad uint64) float64 {
	if ok+bad == 0 {
		return 1
	}
	return float64(ok) / float64(ok+bad)
}

// counters are the atomic counters behind Stats.
type counters struct {
	sent, delivered, acked, retried, dropped, dead, gaps, dups, late, errors, panics atomic.Uint64
}

func (c *counters) fill(s *Stats) {
	s.Sent = c.sent.Load()
	s.Delivered = c.delivered.Load()
	s.Acked = c.acked.Load()
	s.Retried = c.retried.Load()
	s.Dropped = c.dropped.Load()
	s.Dead = c.dead.Load()
	s.Gaps = c.gaps.Load()
	s.Duplicates = c.dups.Load()
	s.Late = c.late.Load()
	s.Errors = c.errors.Load()
	s.Panics = c.panics.Load()
}

func addSocket(dst *socket.Counters, st socket.Stats) {
	dst.MsgsIn += st.MsgsIn
	dst.MsgsOut += st.MsgsOut
	dst.BytesIn += st.BytesIn
	dst.BytesOut += st.BytesOut
	dst.Drops += st.Drops
}

// histogram is a lock-free log-linear histogram of durations: each power of
// two is split into 32 linear buckets, so a recorded value is known to
// within 1/32.
type histogram struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Uint64
	sum     atomic.Uint64
	min     atomic.Int64
	max     atomic.Int64
}

const (
	histSub     = 5
	histBuckets = (64 - histSub + 1) << histSub
)

func histIndex(v uint64) int {
	if v < 1<<histSub {
		return int(v)
	}
	k := bits.Len64(v) - 1 // 2^k <= v < 2^(k+1)
	sub := (v >> (k - histSub)) & (1<<histSub - 1)
	return (k-histSub+1)<<histSub + int(sub)
}

// histValue returns the midpoint of bucket i.
func histValue(i int) uint64 {
	if i < 1<<histSub {
		return uint64(i)
	}
	k := i>>histSub + histSub - 1
	sub := uint64(i & (1<<histSub - 1))
	lo := (1<<histSub + sub) << (k - histSub)
	return lo + (uint64(1)<<(k-histSub))/2
}

func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.buckets[histIndex(uint64(v))].Add(1)
	h.count.Add(1)
	h.sum.Add(uint64(v))
	for { // min holds the minimum plus one; 0 means none yet
		m := h.min.Load()
		if (m != 0 && v+1 >= m) || h.min.CompareAndSwap(m, v+1) {
			break
		}
	}
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

func (h *histogram) snapshot() LatencyStats {
	var counts [histBuckets]uint64
	var total uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return LatencyStats{}
	}
	s := LatencyStats{
		Count: total,
		Min:   time.Duration(max(h.min.Load()-1, 0)),
		Max:   time.Duration(h.max.Load()),
		Mean:  time.Duration(h.sum.Load() / max(h.count.Load(), 1)),
	}
	q := func(p float64) time.Duration {
		want := uint64(math.Ceil(p * float64(total)))
		var seen uint64
		for i, c := range counts {
			seen += c
			if seen >= want && c > 0 {
				return min(time.Duration(histValue(i)), s.Max)
			}
		}
		return s.Max
	}
	s.P50, s.P90, s.P99, s.P999 = q(0.5), q(0.9), q(0.99), q(0.999)
	s.Sum = time.Duration(h.sum.Load())
	s.Buckets = make([]uint64, len(LatencyBounds))
	b := 0
	var seen uint64
	for i, c := range counts {
		for b < len(LatencyBounds) && time.Duration(histValue(i)) > LatencyBounds[b] {
			s.Buckets[b] = seen
			b++
		}
		seen += c
	}
	for ; b < len(LatencyBounds); b++ {
		s.Buckets[b] = seen
	}
	return s
}
