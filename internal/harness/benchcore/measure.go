package benchcore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// StampRing is how many buffers the stamped scenarios rotate through (see
// Sender).
const StampRing = 4096

// warmFlag marks warm-up messages in stamped scenarios; receivers skip them.
const warmFlag = 1 << 63

// Measure builds the scenario's topology on st, makes one bounded
// measurement and closes the topology.
func Measure(ctx context.Context, st Stack, p Params) (Sample, error) {
	sc := p.Scenario
	sctx, cancel := context.WithTimeout(ctx, p.Setup)
	defer cancel()
	var top *Topology
	var err error
	switch {
	case sc.Proxy:
		ps, ok := st.(ProxyStack)
		if !ok {
			return Sample{}, ErrNotSupported
		}
		top, err = ps.ProxyPubSub(sctx, sc.Peers)
	case sc.Kind == RoundTrip:
		top, err = st.ReqRep(sctx)
	case sc.Kind == FanOut || sc.Fault == FaultSlowSub:
		top, err = st.PubSub(sctx, sc.Peers)
	default:
		top, err = st.Pipeline(sctx, sc.Peers)
	}
	if err != nil {
		return Sample{}, err
	}
	defer top.Close()
	// Bound every blocking call of the measurement, whatever happens.
	mctx, mcancel := context.WithTimeout(ctx, p.Setup+p.Duration+p.Drain+p.Idle)
	defer mcancel()
	runtime.GC()
	switch sc.Kind {
	case Throughput:
		return stream(mctx, top, p)
	case RoundTrip:
		return roundTrip(mctx, top, p)
	case FanOut:
		return fanOut(mctx, top, p)
	case Fault:
		return fault(mctx, top, p)
	}
	return Sample{}, fmt.Errorf("benchcore: unknown scenario kind %q", sc.Kind)
}

// Flush flushes s if it is a Flusher.
func Flush(s Sender) error { return flush(s) }

func flush(s Sender) error {
	if f, ok := s.(Flusher); ok {
		return f.Flush()
	}
	return nil
}

func makePayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// sampleEvery is how often a throughput run timestamps a message: often
// enough for stable percentiles, rarely enough not to slow small messages.
func sampleEvery(size int) int64 {
	switch {
	case size <= 4*KiB:
		return 64
	case size < 256*KiB:
		return 8
	}
	return 1
}

// waitDrain waits, once sending stopped, until total reaches target, no
// progress was seen for p.Idle, or p.Drain passed. It returns the time from
// base to the last progress (or completion).
func waitDrain(ctx context.Context, total func() int64, target int64, base time.Time, p Params) time.Duration {
	start := time.Now()
	prev, last := total(), start
	tick := time.NewTicker(500 * time.Microsecond)
	defer tick.Stop()
	for {
		n := total()
		now := time.Now()
		if n >= target {
			return now.Sub(base)
		}
		if n != prev {
			prev, last = n, now
		}
		if now.Sub(last) > p.Idle || now.Sub(start) > p.Drain || ctx.Err() != nil {
			return last.Sub(base)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
}

// stream: one sender, one receiver, as fast as possible. Latency is sampled
// without touching the payload: the sender notes the time of every k-th
// send, the receiver of every k-th receive, and a lossless in-order stream
// pairs them up.
func stream(ctx context.Context, top *Topology, p Params) (Sample, error) {
	size := p.Scenario.Size
	payload := makePayload(size)
	snd, rcv := top.Send, top.Recv[0]

	wctx, wcancel := context.WithTimeout(ctx, p.Setup)
	err := snd.Send(wctx, payload)
	if err == nil {
		err = flush(snd)
	}
	if err == nil {
		_, err = rcv.Recv(wctx)
	}
	wcancel()
	if err != nil {
		return Sample{}, fmt.Errorf("warm-up: %w", err)
	}

	every := sampleEvery(size)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	var got atomic.Int64
	recvTimes := make([]int64, 0, 4096)
	rdone := make(chan error, 1)
	base := time.Now()
	go func() {
		var n int64
		for {
			if _, err := rcv.Recv(rctx); err != nil {
				if rctx.Err() != nil {
					err = nil
				}
				rdone <- err
				return
			}
			n++
			got.Store(n)
			if n%every == 0 {
				recvTimes = append(recvTimes, int64(time.Since(base)))
			}
		}
	}()

	sendTimes := make([]int64, 0, 4096)
	var sent int64
	var serr error
	for sent < int64(p.MaxMsgs) {
		if err := snd.Send(ctx, payload); err != nil {
			serr = err
			break
		}
		sent++
		if sent%every == 0 {
			now := time.Since(base)
			sendTimes = append(sendTimes, int64(now))
			if now >= p.Duration {
				break
			}
		}
	}
	if err := flush(snd); err != nil && serr == nil {
		serr = err
	}
	// Every stack's PUSH->PULL is lossless: wait for all of it up to Drain,
	// however long the receiver is starved (a loaded machine), rather than
	// call a pause a loss.
	lossless := p
	lossless.Idle = p.Drain
	elapsed := waitDrain(ctx, got.Load, sent, base, lossless)
	rcancel()
	rerr := <-rdone

	s := Sample{Sent: uint64(sent), Delivered: uint64(got.Load()), Elapsed: elapsed}
	s.Bytes = s.Delivered * uint64(size)
	if s.Delivered == s.Sent {
		h := NewHistogram()
		for i := 0; i < len(sendTimes) && i < len(recvTimes); i++ {
			record(h, time.Duration(recvTimes[i]-sendTimes[i]))
		}
		s.Latency = h
	} else {
		s.Detail = fmt.Sprintf("received %d of %d sent; latency not sampled", s.Delivered, s.Sent)
	}
	if err := errors.Join(serr, rerr); err != nil {
		return s, err
	}
	return s, nil
}

// roundTrip: one request in flight; every round trip is timed.
func roundTrip(ctx context.Context, top *Topology, p Params) (Sample, error) {
	size := p.Scenario.Size
	payload := makePayload(size)
	sctx, scancel := context.WithCancel(ctx)
	sdone := make(chan error, 1)
	go func() {
		for {
			b, err := top.Server.Recv(sctx)
			if err == nil {
				err = top.Server.Send(sctx, b)
			}
			if err == nil {
				err = flush(top.Server)
			}
			if err != nil {
				if sctx.Err() != nil {
					err = nil
				}
				sdone <- err
				return
			}
		}
	}()
	var serr error
	defer func() {
		scancel()
		if e := <-sdone; serr == nil {
			serr = e
		}
	}()

	c := top.Client
	rt := func(ctx context.Context) error {
		if err := c.Send(ctx, payload); err != nil {
			return err
		}
		if err := flush(c); err != nil {
			return err
		}
		b, err := c.Recv(ctx)
		if err == nil && len(b) != size {
			err = fmt.Errorf("benchcore: reply of %d bytes to a %d-byte request", len(b), size)
		}
		return err
	}
	wctx, wcancel := context.WithTimeout(ctx, p.Setup)
	err := rt(wctx)
	wstart := time.Now()
	for i := 0; err == nil && i < 1000 && time.Since(wstart) < p.Duration/10; i++ {
		err = rt(wctx)
	}
	wcancel()
	if err != nil {
		return Sample{}, fmt.Errorf("warm-up: %w", err)
	}

	h := NewHistogram()
	base := time.Now()
	var n int64
	for n < int64(p.MaxMsgs) {
		t := time.Now()
		if err := rt(ctx); err != nil {
			serr = err
			break
		}
		d := time.Since(t)
		record(h, d)
		n++
		if t.Add(d).Sub(base) >= p.Duration {
			break
		}
	}
	elapsed := time.Since(base)
	s := Sample{Sent: uint64(n), Delivered: uint64(n), Elapsed: elapsed, Bytes: uint64(n) * uint64(size), Latency: h}
	return s, serr
}

// stampRing hands out message buffers for the stamped scenarios.
type stampRing struct {
	bufs [][]byte
	i    int
}

func newStampRing(size int) *stampRing {
	size = max(size, 16)
	r := &stampRing{bufs: make([][]byte, StampRing)}
	for i := range r.bufs {
		r.bufs[i] = makePayload(size)
	}
	return r
}

// next returns the next buffer, stamped with seq and the send time ts
// (nanoseconds since the run's base; 0 for "not timed").
func (r *stampRing) next(seq uint64, ts int64) []byte {
	b := r.bufs[r.i]
	r.i = (r.i + 1) % len(r.bufs)
	binary.LittleEndian.PutUint64(b[0:8], seq)
	binary.LittleEndian.PutUint64(b[8:16], uint64(ts))
	return b
}

func unstamp(b []byte) (seq uint64, ts int64, ok bool) {
	if len(b) < 16 {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(b[0:8]), int64(binary.LittleEndian.Uint64(b[8:16])), true
}

// warmUp sends flagged messages, one a millisecond, until ready says every
// receiver has seen one: connections are up and subscriptions in place.
func warmUp(ctx context.Context, snd Sender, ring *stampRing, ready func() bool, p Params) error {
	deadline := time.Now().Add(p.Setup)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for i := uint64(0); !ready(); i++ {
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: not every receiver reached within %v", p.Setup)
		}
		if err := snd.Send(wctx, ring.next(warmFlag|i, 0)); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if err := flush(snd); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// rx is one receiver's state in the stamped scenarios.
type rx struct {
	warm  atomic.Bool
	n     atomic.Int64 // measured messages received (duplicates included)
	uniq  atomic.Int64 // first receptions of a sequence number, if tracked
	hist  *hdrhistogram.Histogram
	bad   int64
	err   error
	note  string
	stall func(base time.Time) // called after each measured message
}

// receive runs r's receive loop until ctx ends. seen, if not nil, is a
// bitmap over sequence numbers shared by all receivers.
func (x *rx) receive(ctx context.Context, r Receiver, base time.Time, seen []atomic.Uint64) {
	done := ctx.Done()
	for {
		// Stop on time even where messages keep coming and the stack's
		// Recv looks at ctx only when it has to wait.
		select {
		case <-done:
			return
		default:
		}
		b, err := r.Recv(ctx)
		if err != nil {
			if ctx.Err() == nil {
				x.err = err
			}
			return
		}
		seq, ts, ok := unstamp(b)
		if !ok {
			x.bad++
			continue
		}
		if seq&warmFlag != 0 {
			x.warm.Store(true)
			continue
		}
		if ts != 0 {
			record(x.hist, time.Since(base)-time.Duration(ts))
		}
		x.n.Add(1)
		if seen != nil && seq/64 < uint64(len(seen)) {
			bit := uint64(1) << (seq % 64)
			if seen[seq/64].Or(bit)&bit == 0 {
				x.uniq.Add(1)
			}
		}
		if x.stall != nil {
			x.stall(base)
		}
	}
}

func startReceivers(ctx context.Context, top *Topology, base time.Time, seen []atomic.Uint64, setup func(i int, x *rx, r Receiver) (context.Context, func())) ([]*rx, *sync.WaitGroup) {
	xs := make([]*rx, len(top.Recv))
	var wg sync.WaitGroup
	for i, r := range top.Recv {
		x := &rx{hist: NewHistogram()}
		xs[i] = x
		rctx, after := ctx, func() {}
		if setup != nil {
			rctx, after = setup(i, x, r)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			x.receive(rctx, r, base, seen)
			after()
		}()
	}
	return xs, &wg
}

func allWarm(xs []*rx) func() bool {
	return func() bool {
		for _, x := range xs {
			if !x.warm.Load() {
				return false
			}
		}
		return true
	}
}

// fanOut: one publisher as fast as it goes, n subscribers.
func fanOut(ctx context.Context, top *Topology, p Params) (Sample, error) {
	size := p.Scenario.Size
	ring := newStampRing(size)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	base := time.Now()
	xs, wg := startReceivers(rctx, top, base, nil, nil)
	stop := func() { rcancel(); wg.Wait() }
	if err := warmUp(ctx, top.Send, ring, allWarm(xs), p); err != nil {
		stop()
		return Sample{}, err
	}
	total := func() int64 {
		var t int64
		for _, x := range xs {
			t += x.n.Load()
		}
		return t
	}
	every := sampleEvery(size)
	start := time.Now()
	var sent int64
	var serr error
	for sent < int64(p.MaxMsgs) {
		var ts int64
		if sent%every == 0 {
			d := time.Since(base)
			if d-start.Sub(base) >= p.Duration {
				break
			}
			ts = int64(d)
		}
		if err := top.Send.Send(ctx, ring.next(uint64(sent), ts)); err != nil {
			serr = err
			break
		}
		sent++
	}
	if err := flush(top.Send); err != nil && serr == nil {
		serr = err
	}
	elapsed := waitDrain(ctx, total, sent*int64(len(xs)), start, p)
	stop()

	s := Sample{Sent: uint64(sent), Delivered: uint64(total()), Elapsed: elapsed, Latency: NewHistogram()}
	s.Bytes = s.Delivered * uint64(size)
	lo, hi := int64(-1), int64(0)
	var errs []error
	for _, x := range xs {
		s.Latency.Merge(x.hist)
		n := x.n.Load()
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
		errs = append(errs, x.err)
	}
	if sent > 0 {
		s.Detail = fmt.Sprintf("per subscriber %.0f%%–%.0f%% of %d sent", 100*float64(lo)/float64(sent), 100*float64(hi)/float64(sent), sent)
	}
	return s, errors.Join(append(errs, serr)...)
}

// fault: a paced stream with one receiver failing in the middle.
func fault(ctx context.Context, top *Topology, p Params) (Sample, error) {
	sc := p.Scenario
	if len(top.Recv) < 2 {
		return Sample{}, fmt.Errorf("benchcore: %s needs 2 receivers", sc.Name)
	}
	ring := newStampRing(sc.Size)
	scheduled := int64(float64(p.Rate) * p.Duration.Seconds())
	limit := min(int64(p.MaxMsgs), scheduled+int64(p.Rate/10)+16)
	seen := make([]atomic.Uint64, limit/64+1)

	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	victimCtx, kill := context.WithCancel(rctx)
	defer kill()
	var stallFrom, stallTo atomic.Int64 // since base; 0: not armed
	base := time.Now()
	xs, wg := startReceivers(rctx, top, base, seen, func(i int, x *rx, r Receiver) (context.Context, func()) {
		if i != 1 {
			return rctx, func() {}
		}
		if sc.Fault == FaultSlowSub {
			x.stall = func(base time.Time) {
				from, to := stallFrom.Load(), stallTo.Load()
				now := int64(time.Since(base))
				if from == 0 || now < from || now >= to {
					return
				}
				t := time.NewTimer(time.Duration(to - now))
				defer t.Stop()
				select {
				case <-t.C:
				case <-rctx.Done():
				}
			}
			return rctx, func() {}
		}
		return victimCtx, func() {
			if c, ok := r.(Closer); ok && rctx.Err() == nil {
				c.Close()
				x.note = "closed"
			}
		}
	})
	stop := func() { rcancel(); wg.Wait() }
	if err := warmUp(ctx, top.Send, ring, allWarm(xs), p); err != nil {
		stop()
		return Sample{}, err
	}

	start := time.Now()
	switch sc.Fault {
	case FaultPullerKilled:
		time.AfterFunc(p.Duration/2, kill)
	case FaultSlowSub:
		from := start.Sub(base) + p.Duration/4
		stallTo.Store(int64(from + p.Duration/2))
		stallFrom.Store(int64(from))
	}
	var sent int64
	var serr error
	for sent < limit {
		el := time.Since(start)
		if el >= p.Duration {
			break
		}
		due := int64(el.Seconds()*float64(p.Rate)) + 1
		if sent >= due {
			if err := flush(top.Send); err != nil {
				serr = err
				break
			}
			next := time.Duration(float64(sent) / float64(p.Rate) * float64(time.Second))
			time.Sleep(max(next-el, 50*time.Microsecond))
			continue
		}
		if err := top.Send.Send(ctx, ring.next(uint64(sent), int64(time.Since(base)))); err != nil {
			serr = err
			break
		}
		sent++
	}
	if err := flush(top.Send); err != nil && serr == nil {
		serr = err
	}

	s := Sample{Sent: uint64(sent)}
	pct := func(n int64) float64 { return 100 * float64(n) / float64(max(sent, 1)) }
	switch sc.Fault {
	case FaultPullerKilled:
		uniq := func() int64 { return xs[0].uniq.Load() + xs[1].uniq.Load() }
		s.Elapsed = waitDrain(ctx, uniq, sent, start, p)
		stop()
		s.Delivered = uint64(uniq())
		s.Latency = xs[0].hist
		s.Latency.Merge(xs[1].hist)
		dups := xs[0].n.Load() + xs[1].n.Load() - uniq()
		s.Detail = fmt.Sprintf("survivor %.1f%%, killed puller %.1f%% of %d sent", pct(xs[0].n.Load()), pct(xs[1].n.Load()), sent)
		if xs[1].note == "" {
			s.Detail += " (receiver not closable: it only stopped reading)"
		}
		if dups > 0 {
			s.Detail += fmt.Sprintf("; %d duplicates", dups)
		}
	case FaultSlowSub:
		both := func() int64 { return xs[0].n.Load() + xs[1].n.Load() }
		s.Elapsed = waitDrain(ctx, both, 2*sent, start, p)
		stop()
		s.Delivered = uint64(xs[0].n.Load())
		s.Latency = xs[0].hist
		s.Detail = fmt.Sprintf("stalled subscriber %.1f%%; publisher sent %.1f%% of its %d-message schedule", pct(xs[1].n.Load()), 100*float64(sent)/float64(max(scheduled, 1)), scheduled)
	}
	s.Bytes = s.Delivered * uint64(sc.Size)
	errs := []error{serr}
	for i, x := range xs {
		if x.err != nil && !(i == 1 && x.note == "closed") {
			errs = append(errs, x.err)
		}
	}
	return s, errors.Join(errs...)
}
