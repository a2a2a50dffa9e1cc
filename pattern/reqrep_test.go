package pattern

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

type addReq struct{ A, B int }
type addResp struct{ Sum int }

func adder(_ context.Context, r addReq) (addResp, error) { return addResp{r.A + r.B}, nil }

func newAdder(t *testing.T, opts ...Option) *Replier[addReq, addResp] {
	t.Helper()
	rp, err := NewReplier(adder, append([]Option{WithBind(loopback)}, opts...)...)
	return cleanup(t, rp, err)
}

func TestRequestReply(t *testing.T) {
	rp := newAdder(t)
	rq, err := NewRequester[addReq, addResp](WithConnect(ep(t, rp)))
	rq = cleanup(t, rq, err)
	for i := range 20 {
		got, err := rq.Request(ctxT(t), addReq{i, 1})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got.Sum != i+1 {
			t.Fatalf("request %d: sum %d", i, got.Sum)
		}
	}
	st := rq.Stats()
	if st.Sent != 20 || st.Delivered != 20 || st.Latency.Count != 20 || st.Latency.P50 <= 0 {
		t.Fatalf("stats: %+v", st)
	}
	waitFor(t, "replier stats", func() bool { rs := rp.Stats(); return rs.Delivered == 20 && rs.Sent == 20 })
}

func TestRequestConcurrent(t *testing.T) {
	rp := newAdder(t, WithWorkers(4))
	rq, err := NewRequester[addReq, addResp](WithConnect(ep(t, rp)))
	rq = cleanup(t, rq, err)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				got, err := rq.Request(ctxT(t), addReq{g * 1000, i})
				if err != nil || got.Sum != g*1000+i {
					bad.Add(1)
					t.Errorf("g%d i%d: %v %v", g, i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() == 0 && rq.Stats().Delivered != 800 {
		t.Fatalf("stats: %+v", rq.Stats())
	}
}

func TestRequestHandlerError(t *testing.T) {
	rp, err := NewReplier(func(_ context.Context, s string) (string, error) {
		switch s {
		case "fail":
			return "", errors.New("no such thing")
		case "panic":
			panic("boom")
		}
		return strings.ToUpper(s), nil
	}, WithBind(loopback))
	rp = cleanup(t, rp, err)
	rq, err := NewRequester[string, string](WithConnect(ep(t, rp)), WithTimeout(5*time.Second))
	rq = cleanup(t, rq, err)

	var re *RemoteError
	_, err = rq.Request(ctxT(t), "fail")
	if !errors.Is(err, ErrRemote) || !errors.As(err, &re) || re.Message != "no such thing" || re.Panic {
		t.Fatalf("handler error: got %v", err)
	}
	_, err = rq.Request(ctxT(t), "panic")
	if !errors.As(err, &re) || !re.Panic || re.Message != "boom" {
		t.Fatalf("panic: got %v", err)
	}
	// the replier survived
	if got, err := rq.Request(ctxT(t), "ok"); err != nil || got != "OK" {
		t.Fatalf("after panic: %q %v", got, err)
	}
	if st := rp.Stats(); st.Panics != 1 || st.Errors != 2 {
		t.Fatalf("replier stats: %+v", st)
	}
}

func TestRequestTimeoutNoReplier(t *testing.T) {
	rq, err := NewRequester[string, string](WithConnect("tcp://127.0.0.1:1"), WithTimeout(50*time.Millisecond), WithRetries(1))
	rq = cleanup(t, rq, err)
	start := time.Now()
	_, err = rq.Request(ctxT(t), "x")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	rq2, err := NewRequester[string, string](WithConnect("tcp://127.0.0.1:1"))
	rq2 = cleanup(t, rq2, err)
	if _, err := rq2.Request(ctx, "x"); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctx deadline: got %v", err)
	}
}

// A replier that hangs: the attempt times out, the retry goes to the other
// replier, and the hung one's late reply is discarded. The timeout is a
// second, which the healthy replier never misses even on a loaded machine
// under -race (at 100 ms it could, and a request then failed).
func TestRequestFailoverOnTimeout(t *testing.T) {
	release := make(chan struct{})
	var hungCalls atomic.Int32
	hung, err := NewReplier(func(ctx context.Context, s string) (string, error) {
		hungCalls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return "late " + s, nil
	}, WithBind(loopback))
	hung = cleanup(t, hung, err)
	good, err := NewReplier(func(_ context.Context, s string) (string, error) { return "good " + s, nil }, WithBind(loopback))
	good = cleanup(t, good, err)

	rq, err := NewRequester[string, string](WithConnect(ep(t, hung)), WithConnect(ep(t, good)),
		WithTimeout(time.Second), WithRetries(3))
	rq = cleanup(t, rq, err)
	waitFor(t, "both repliers", func() bool { return rq.Peers() == 2 })
	for i := range 6 {
		got, err := rq.Request(ctxT(t), fmt.Sprint(i))
		if err != nil || got != "good "+fmt.Sprint(i) {
			t.Fatalf("request %d: %q %v", i, got, err)
		}
	}
	if hungCalls.Load() == 0 {
		t.Fatal("no request went to the hung replier; the test proves nothing")
	}
	close(release)
	waitFor(t, "late replies discarded", func() bool { return rq.Stats().Late >= 1 })
	if st := rq.Stats(); st.Retried == 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// Kill a replier while it holds a request: the request succeeds on the
// other one, well before the attempt timeout, because the lost connection
// fails it over at once.
func TestRequestFailoverOnReplierDeath(t *testing.T) {
	inHandler := make(chan struct{}, 1)
	victim, err := NewReplier(func(ctx context.Context, s string) (string, error) {
		inHandler <- struct{}{}
		<-ctx.Done() // hangs until killed
		return "", ctx.Err()
	}, WithBind(loopback))
	victim = cleanup(t, victim, err)
	rq, err := NewRequester[string, string](WithConnect(ep(t, victim)), WithTimeout(10*time.Second))
	rq = cleanup(t, rq, err)
	waitFor(t, "victim connected", func() bool { return rq.Peers() == 1 })

	type result struct {
		s   string
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		s, err := rq.Request(ctxT(t), "x")
		done <- result{s, err}
	}()
	<-inHandler // the victim holds the request
	survivor := newStringReplier(t, "survivor")
	if err := rq.Connect(ep(t, survivor)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "survivor connected", func() bool { return rq.Peers() == 2 })
	victim.Close()
	res := <-done
	if res.err != nil || res.s != "survivor x" {
		t.Fatalf("got %q, %v", res.s, res.err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("fail-over took %v: it waited for the timeout", d)
	}
	if st := rq.Stats(); st.Retried != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func newStringReplier(t *testing.T, name string) *Replier[string, string] {
	t.Helper()
	rp, err := NewReplier(func(_ context.Context, s string) (string, error) { return name + " " + s, nil }, WithBind(loopback))
	return cleanup(t, rp, err)
}

// A plain REQ socket speaking envelopes gets answers from a Replier:
// [delimiter, envelope] in, the same shape out.
func TestReplierAnswersPlainREQ(t *testing.T) {
	rp := newAdder(t)
	req, err := socket.New(socket.REQ)
	req = cleanup(t, req, err)
	if err := req.Connect(ep(t, rp)); err != nil {
		t.Fatal(err)
	}
	body, _ := codec.MarshalValue(addReq{2, 3})
	env := codec.Envelope{ID: codec.NewID(), Kind: codec.KindData, Body: body}
	frame, _ := codec.Encode(&env)
	if err := req.Send(ctxT(t), socket.NewMsg(frame)); err != nil {
		t.Fatal(err)
	}
	m, err := req.Recv(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Frames) != 1 {
		t.Fatalf("reply has %d frames", len(m.Frames))
	}
	var out codec.Envelope
	if err := codec.Decode(m.Frames[0], &out); err != nil {
		t.Fatal(err)
	}
	var resp addResp
	if err := codec.UnmarshalValue(out.Body, &resp); err != nil {
		t.Fatal(err)
	}
	if out.ID != env.ID || out.Kind != codec.KindReply || resp.Sum != 5 {
		t.Fatalf("reply %+v sum %d", out, resp.Sum)
	}
}

func TestRequesterClose(t *testing.T) {
	rq, err := NewRequester[string, string](WithConnect("tcp://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := rq.Request(context.Background(), "x")
		done <- err
	}()
	waitFor(t, "request waiting", func() bool { return rq.Stats().Sent == 1 })
	rq.Close()
	rq.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
	if _, err := rq.Request(context.Background(), "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestOptionNotApplicable(t *testing.T) {
	if _, err := NewRequester[string, string](WithAck()); !errors.Is(err, ErrOption) {
		t.Fatalf("got %v", err)
	}
}

// peerStats returns the Requester's figures for the replier at endpoint.
func peerStats(t *testing.T, st Stats, endpoint string) PeerStats {
	t.Helper()
	for _, p := range st.Peers {
		if p.Endpoint == endpoint {
			return p
		}
	}
	t.Fatalf("no figures for %s in %+v", endpoint, st.Peers)
	return PeerStats{}
}

// A replier that stalls once, for three times the request timeout, and is
// healthy after: the Requester's circuit breaker opens on the timeout,
// probes it after a back-off, and gives it its share of the requests back
// within 5 s of the stall's end. The timeout is a second, which the healthy
// replier never misses even on a loaded machine under -race.
func TestRequestStalledReplierRecovers(t *testing.T) {
	const timeout = time.Second
	var stall atomic.Bool
	stallDone := make(chan struct{})
	var aCalls, bCalls atomic.Int64
	a, err := NewReplier(func(ctx context.Context, s string) (string, error) {
		aCalls.Add(1)
		if stall.CompareAndSwap(true, false) {
			select { // the handler is slow this once
			case <-time.After(3 * timeout):
			case <-ctx.Done():
			}
			close(stallDone)
		}
		return "a " + s, nil
	}, WithBind(loopback), WithWorkers(1))
	a = cleanup(t, a, err)
	b, err := NewReplier(func(_ context.Context, s string) (string, error) { bCalls.Add(1); return "b " + s, nil },
		WithBind(loopback))
	b = cleanup(t, b, err)
	rq, err := NewRequester[string, string](WithConnect(ep(t, a)), WithConnect(ep(t, b)),
		WithTimeout(timeout), WithRetries(3))
	rq = cleanup(t, rq, err)
	waitFor(t, "both repliers", func() bool { return rq.Peers() == 2 })
	request := func() {
		t.Helper()
		if _, err := rq.Request(ctxT(t), "x"); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		request()
	}
	if aCalls.Load() == 0 || bCalls.Load() == 0 {
		t.Fatalf("not shared before the stall: a %d, b %d", aCalls.Load(), bCalls.Load())
	}

	stall.Store(true)
	waitFor(t, "a timeout on the stalled replier", func() bool {
		request() // each one succeeds, on the other replier if need be
		return peerStats(t, rq.Stats(), ep(t, a)).Timeouts > 0
	})
	<-stallDone
	end := time.Now()
	for {
		a0, b0 := aCalls.Load(), bCalls.Load()
		for range 20 {
			request()
		}
		da, db := aCalls.Load()-a0, bCalls.Load()-b0
		if da*10 >= 3*(da+db) { // at least 30% of a window of 20
			t.Logf("share back %v after the stall: a %d, b %d of the last 20", time.Since(end).Round(time.Millisecond), da, db)
			break
		}
		if time.Since(end) > 5*time.Second {
			t.Fatalf("5 s after the stall the replier gets %d of 20 requests (stats %+v)", da, rq.Stats().Peers)
		}
	}
}

// A replier that hangs for good costs at most one timed-out request per
// probe interval: its breaker stays open, each failed probe doubles the
// back-off, and redials do not reset it. Four goroutines request for 5 s;
// the timeouts counted against the hung replier are those in flight when
// it was first found out (at most four) plus one per probe, and the probe
// intervals (1, 2, 4 s) fit at most three probes in 5 s. Without the
// breaker the hung replier would take about half of the attempts, some
// twenty timeouts.
//
// The timeout is a second, not less: the healthy replier must never miss
// it, even on a loaded machine under -race (at 150 ms it did, which opened
// its breaker too and, after two misses in a row, made the Requester redial
// it, leaving only the hung replier to overrule).
func TestRequestHungReplierBounded(t *testing.T) {
	const (
		timeout     = time.Second
		window      = 5 * time.Second
		concurrency = 4
		maxProbes   = 3
	)
	hung, err := NewReplier(func(ctx context.Context, s string) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}, WithBind(loopback))
	hung = cleanup(t, hung, err)
	good := newStringReplier(t, "good")
	rq, err := NewRequester[string, string](WithConnect(ep(t, hung)), WithConnect(ep(t, good)),
		WithTimeout(timeout), WithRetries(3))
	rq = cleanup(t, rq, err)
	waitFor(t, "both repliers", func() bool { return rq.Peers() == 2 })

	deadline := time.Now().Add(window)
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if got, err := rq.Request(ctxT(t), "x"); err != nil || got != "good x" {
					failed.Add(1)
					t.Errorf("request: %q %v", got, err)
					return
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	st := rq.Stats()
	h := peerStats(t, st, ep(t, hung))
	t.Logf("%d requests in %v; the hung replier: %d attempts, %d timeouts, open %v; %d connections made",
		ok.Load(), window, h.Sent, h.Timeouts, h.Open, rq.sock.Stats().Connects)
	if failed.Load() > 0 {
		return
	}
	if h.Timeouts == 0 || !h.Open {
		t.Fatalf("the hung replier was never found out: %+v", h)
	}
	if h.Timeouts > concurrency+maxProbes {
		t.Fatalf("the hung replier cost %d timeouts in %v (at most %d expected)", h.Timeouts, window, concurrency+maxProbes)
	}
}

// A request waiting for a replier goes out on the wake-up of the replier's
// attach: it waited once, and the first thing it did on waking was send,
// with no poll in between. The time from the attach hook to the send is
// logged (BenchmarkRequesterAttachToSend measures it).
func TestRequesterSendsOnAttach(t *testing.T) {
	var delays []time.Duration
	for range 5 {
		var attachedAt, sentAt atomic.Int64
		rq, err := NewRequester[string, string](WithTimeout(10*time.Second),
			WithSocketOptions(socket.WithPeerHooks(socket.PeerHooks{
				Attach: func(*socket.Peer) { attachedAt.Store(mono()) },
			})))
		rq = cleanup(t, rq, err)
		rq.sent = func(*socket.Peer) { sentAt.CompareAndSwap(0, mono()) }
		done := make(chan error, 1)
		go func() {
			_, err := rq.Request(ctxT(t), "x")
			done <- err
		}()
		waitFor(t, "the request to wait", func() bool { return rq.waits.Load() == 1 })
		rp := newStringReplier(t, "r")
		if err := rq.Connect(ep(t, rp)); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if w := rq.waits.Load(); w != 1 {
			t.Fatalf("the request waited %d times: it did not go out on the attach's wake-up", w)
		}
		if sentAt.Load() < attachedAt.Load() || attachedAt.Load() == 0 {
			t.Fatalf("sent at %d, attached at %d", sentAt.Load(), attachedAt.Load())
		}
		delays = append(delays, time.Duration(sentAt.Load()-attachedAt.Load()))
		rq.Close()
		rp.Close()
	}
	slices.Sort(delays)
	t.Logf("attach to send: median %v (of %v)", delays[len(delays)/2], delays)
}

// A redial does not reset the breaker: it belongs to the endpoint, not
// the connection. Two timeouts in a row (the first attempt, then the
// probe) make the Requester drop the connection and dial again; once the
// new connection is up, the replier is still open.
func TestRequestBreakerSurvivesRedial(t *testing.T) {
	const timeout = 100 * time.Millisecond
	hung, err := NewReplier(func(ctx context.Context, s string) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}, WithBind(loopback))
	hung = cleanup(t, hung, err)
	rq, err := NewRequester[string, string](WithConnect(ep(t, hung)), WithTimeout(timeout), WithRetries(1))
	rq = cleanup(t, rq, err)
	waitFor(t, "replier", func() bool { return rq.Peers() == 1 })
	if _, err := rq.Request(ctxT(t), "x"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v", err)
	}
	waitFor(t, "the redial", func() bool { return rq.sock.Stats().Connects >= 2 && rq.Peers() == 1 })
	if h := peerStats(t, rq.Stats(), ep(t, hung)); !h.Open || h.Timeouts != 2 {
		t.Fatalf("after the redial: %+v", h)
	}
}

// Connect checks for a duplicate and adds the endpoint in one step: of
// many concurrent Connects to one endpoint exactly one succeeds, the
// others fail with socket.ErrEndpoint, as does a Disconnect of an endpoint
// never connected. Disconnect then Connect again works.
func TestRequesterConnectOnce(t *testing.T) {
	rp := newStringReplier(t, "r")
	rq, err := NewRequester[string, string]()
	rq = cleanup(t, rq, err)
	var wg sync.WaitGroup
	var ok, dup atomic.Int32
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := rq.Connect(ep(t, rp)); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, socket.ErrEndpoint):
				dup.Add(1)
			default:
				t.Errorf("Connect: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || dup.Load() != 15 {
		t.Fatalf("%d Connects succeeded, %d were duplicates", ok.Load(), dup.Load())
	}
	waitFor(t, "replier", func() bool { return rq.Peers() == 1 })
	if err := rq.Disconnect("tcp://127.0.0.1:1"); !errors.Is(err, socket.ErrEndpoint) {
		t.Fatalf("Disconnect of an unknown endpoint: %v", err)
	}
	if err := rq.Disconnect(ep(t, rp)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no replier", func() bool { return rq.Peers() == 0 })
	if err := rq.Connect(ep(t, rp)); err != nil {
		t.Fatal(err)
	}
	if got, err := rq.Request(ctxT(t), "x"); err != nil || got != "r x" {
		t.Fatalf("after reconnecting: %q %v", got, err)
	}
	if n := len(rq.Stats().Peers); n != 1 {
		t.Fatalf("%d replier entries in Stats", n)
	}
}

// A replier whose queue is full is skipped, and requests waiting for room
// go out when the socket's Ready hook says there is some: with a send
// high-water mark of 1, many concurrent requests all succeed.
func TestRequestWaitsForRoom(t *testing.T) {
	rp := newAdder(t, WithWorkers(4))
	rq, err := NewRequester[addReq, addResp](WithConnect(ep(t, rp)), WithSocketOptions(socket.WithSendHWM(1)))
	rq = cleanup(t, rq, err)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				got, err := rq.Request(ctxT(t), addReq{g, i})
				if err != nil || got.Sum != g+i {
					t.Errorf("g%d i%d: %v %v", g, i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := rq.Stats(); st.Delivered != 400 || st.Retried != 0 {
		t.Fatalf("stats %+v", st)
	}
}
