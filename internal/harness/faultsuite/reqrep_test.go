package faultsuite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// replierFigures returns the Requester's figures for the replier at ep.
func replierFigures(t *testing.T, st pattern.Stats, ep string) pattern.PeerStats {
	t.Helper()
	for _, p := range st.Peers {
		if p.Endpoint == ep {
			return p
		}
	}
	t.Fatalf("no figures for %s in %+v", ep, st.Peers)
	return pattern.PeerStats{}
}

// twoRepliers starts repliers a (behind a fault proxy) and b (direct),
// counting the requests each answers, and a Requester connected to both.
func twoRepliers(t *testing.T, timeout time.Duration) (rq *pattern.Requester[int, int], px interface {
	Stall()
	Restore()
}, aEP string, aCalls, bCalls *atomic.Int64) {
	t.Helper()
	aCalls, bCalls = new(atomic.Int64), new(atomic.Int64)
	a := must(pattern.NewReplier(func(_ context.Context, v int) (int, error) { aCalls.Add(1); return v, nil },
		pattern.WithBind("tcp://127.0.0.1:0")))
	closeAtEnd(t, a)
	b := must(pattern.NewReplier(func(_ context.Context, v int) (int, error) { bCalls.Add(1); return v, nil },
		pattern.WithBind("tcp://127.0.0.1:0")))
	closeAtEnd(t, b)
	p := proxy(t, a.Endpoints()[0])
	// Heartbeats long enough that a stalled link is not dropped: the
	// breaker, not a reconnect, is under test.
	rq = must(pattern.NewRequester[int, int](pattern.WithConnect(p.Endpoint()), pattern.WithConnect(b.Endpoints()[0]),
		pattern.WithTimeout(timeout), pattern.WithRetries(3),
		pattern.WithSocketOptions(socket.WithHeartbeat(time.Second, time.Minute))))
	closeAtEnd(t, rq)
	waitFor(t, "both repliers", 10*time.Second, func() bool { return rq.Peers() == 2 })
	return rq, p, p.Endpoint(), aCalls, bCalls
}

// TestFaultReplierStall: a replier whose link stalls for three request
// timeouts, then heals, gets its share of requests back within 5 s. The
// timeout is a second, which the healthy replier never misses even on a
// loaded machine under -race (at 150 ms it could: its breaker opened too).
// The sleep is the stall's length, the fault itself, not a wait.
func TestFaultReplierStall(t *testing.T) {
	const timeout = time.Second
	rq, px, aEP, aCalls, bCalls := twoRepliers(t, timeout)
	request := func() {
		t.Helper()
		if _, err := rq.Request(ctxTimeout(t, 10*time.Second), 1); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		request()
	}
	px.Stall()
	waitFor(t, "a timeout on the stalled replier", 10*time.Second, func() bool {
		request() // each succeeds, on the other replier if need be
		return replierFigures(t, rq.Stats(), aEP).Timeouts > 0
	})
	time.Sleep(3 * timeout) // the rest of the stall
	px.Restore()
	healed := time.Now()
	for {
		a0, b0 := aCalls.Load(), bCalls.Load()
		for range 20 {
			request()
		}
		da, db := aCalls.Load()-a0, bCalls.Load()-b0
		if da*10 >= 3*(da+db) {
			report(t, "share back", fmt.Sprintf("stalled %v (3 timeouts); share back %v after it healed", 3*timeout, time.Since(healed).Round(time.Millisecond)))
			return
		}
		if time.Since(healed) > 5*time.Second {
			t.Fatalf("5 s after the stall the replier gets %d of 20 requests (%+v)", da, rq.Stats().Peers)
		}
	}
}

// TestFaultHungReplier: a replier whose link hangs for good (connection
// open, nothing comes back) costs at most one timed-out request per probe
// interval, plus those in flight when it hung. The timeout is a second,
// which the healthy replier never misses even on a loaded machine under
// -race (at 150 ms it could, and its breaker opened too).
func TestFaultHungReplier(t *testing.T) {
	const (
		timeout     = time.Second
		concurrency = 4
	)
	window := pick(5*time.Second, 20*time.Second)
	rq, px, aEP, _, _ := twoRepliers(t, timeout)
	px.Stall()
	defer px.Restore()
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	end := time.Now().Add(window)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if _, err := rq.Request(ctxTimeout(t, 10*time.Second), 1); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// Probes back off 1, 2, 4... timeouts (capped at 5 s): in the window
	// at most log2(window/timeout)+1 of them, plus the first requests in
	// flight.
	probes := 1
	for d := timeout; d < window; d *= 2 {
		probes++
	}
	timeouts := replierFigures(t, rq.Stats(), aEP).Timeouts
	if max := uint64(concurrency + probes); timeouts > max {
		t.Fatalf("the hung replier cost %d timeouts in %v, want at most %d", timeouts, window, max)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed (retries should have gone to the healthy replier)", failed.Load())
	}
	report(t, fmt.Sprintf("%d timeouts in %v", timeouts, window), fmt.Sprintf("%d requests answered by the healthy replier meanwhile", ok.Load()))
}
