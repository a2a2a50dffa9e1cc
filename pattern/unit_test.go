package pattern

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// The fast paths for []byte and string bodies write exactly what
// codec.MarshalValue writes, and read it back.
func TestBodyFastPaths(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 255, 256, 65535, 65536, 70000} {
		b := bytes.Repeat([]byte{'x'}, n)
		want, _ := codec.MarshalValue(b)
		got, _ := marshalBody(nil, b)
		if !bytes.Equal(got, want) {
			t.Fatalf("[]byte of %d: encoding differs", n)
		}
		back, err := unmarshalBody[[]byte](got)
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("[]byte of %d: decoded %d bytes, %v", n, len(back), err)
		}
		s := strings.Repeat("y", n)
		want, _ = codec.MarshalValue(s)
		got, _ = marshalBody(nil, s)
		if !bytes.Equal(got, want) {
			t.Fatalf("string of %d: encoding differs", n)
		}
		sback, err := unmarshalBody[string](got)
		if err != nil || sback != s {
			t.Fatalf("string of %d: %v", n, err)
		}
	}
	want, _ := codec.MarshalValue([]byte(nil))
	if got, _ := marshalBody(nil, []byte(nil)); !bytes.Equal(got, want) {
		t.Fatal("nil []byte encoding differs")
	}
	if _, err := unmarshalBody[[]byte]([]byte{0xc4, 5, 1}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("truncated bin: %v", err)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	if s := h.snapshot(); s.Count != 0 {
		t.Fatalf("empty: %+v", s)
	}
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	s := h.snapshot()
	near := func(got, want time.Duration) bool {
		d := got - want
		return d < want/20 && -d < want/20
	}
	if s.Count != 1000 || s.Min != time.Microsecond || s.Max != time.Millisecond ||
		!near(s.P50, 500*time.Microsecond) || !near(s.P99, 990*time.Microsecond) || !near(s.Mean, 500500*time.Nanosecond) {
		t.Fatalf("%+v", s)
	}
	if s.Sum != 500500*time.Microsecond {
		t.Fatalf("sum %v", s.Sum)
	}
	// Cumulative counts at LatencyBounds: 1..1000 µs, one each, so the
	// bucket at bound b holds about b/1µs of them (within the 3% of the
	// histogram's own buckets), and every bound from 1 ms on holds all.
	if len(s.Buckets) != len(LatencyBounds) {
		t.Fatalf("%d buckets for %d bounds", len(s.Buckets), len(LatencyBounds))
	}
	for i, b := range LatencyBounds {
		want := min(uint64(b/time.Microsecond), 1000)
		got := s.Buckets[i]
		if got > want+want/25+1 || got+want/25+1 < want {
			t.Fatalf("bucket le=%v: %d, want about %d", b, got, want)
		}
		if i > 0 && got < s.Buckets[i-1] {
			t.Fatalf("bucket le=%v: %d below the previous %d", b, got, s.Buckets[i-1])
		}
	}
	if s.Buckets[len(s.Buckets)-1] != 1000 {
		t.Fatalf("last bucket %d", s.Buckets[len(s.Buckets)-1])
	}
	for i := range histBuckets - 1 {
		if histValue(i) >= histValue(i+1) {
			t.Fatalf("bucket %d: values not increasing", i)
		}
	}
	for _, v := range []uint64{0, 1, 31, 32, 33, 1000, 1 << 40, 1<<63 + 12345} {
		if i := histIndex(v); i < 0 || i >= histBuckets {
			t.Fatalf("index of %d: %d", v, i)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	h := func(context.Context, int) error { return nil }
	cases := []struct {
		name string
		err  func() error
	}{
		{"ack on requester", func() error { _, err := NewRequester[int, int](WithAck()); return err }},
		{"topics on publisher", func() error { _, err := NewPublisher[int](WithTopics("x")); return err }},
		{"credit without ack", func() error { _, err := NewPuller(h, WithCredit(3)); return err }},
		{"ack timeout without ack", func() error { _, err := NewPusher[int](WithAckTimeout(time.Second)); return err }},
		{"acked puller binds", func() error { _, err := NewPuller(h, WithAck(), WithBind(loopback)); return err }},
		{"zero workers", func() error { _, err := NewPuller(h, WithWorkers(0)); return err }},
		{"negative retries", func() error { _, err := NewRequester[int, int](WithRetries(-1)); return err }},
		{"nil handler", func() error { _, err := NewPuller[int](nil); return err }},
		{"nil logger", func() error { _, err := NewPusher[int](WithLogger(nil)); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.err(); !errors.Is(err, ErrOption) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// Repliers may connect to a Requester that binds.
func TestRequesterBinds(t *testing.T) {
	rq, err := NewRequester[addReq, addResp](WithBind(loopback), WithTimeout(time.Second))
	rq = cleanup(t, rq, err)
	for range 2 {
		rp, err := NewReplier(adder, WithConnect(ep(t, rq)))
		cleanup(t, rp, err)
	}
	waitFor(t, "repliers", func() bool { return rq.Peers() == 2 })
	for i := range 10 {
		if got, err := rq.Request(ctxT(t), addReq{i, i}); err != nil || got.Sum != 2*i {
			t.Fatalf("%d: %v %v", i, got, err)
		}
	}
}

// A Replier runs WithWorkers handlers at once.
func TestReplierWorkers(t *testing.T) {
	const workers = 4
	var in atomic.Int32
	all := make(chan struct{})
	rp, err := NewReplier(func(ctx context.Context, n int) (int, error) {
		if in.Add(1) == workers {
			close(all)
		}
		select {
		case <-all:
			return n, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, WithBind(loopback), WithWorkers(workers))
	rp = cleanup(t, rp, err)
	rq, err := NewRequester[int, int](WithConnect(ep(t, rp)), WithTimeout(5*time.Second), WithRetries(0))
	rq = cleanup(t, rq, err)
	errs := make(chan error, workers)
	for i := range workers {
		go func() { _, err := rq.Request(ctxT(t), i); errs <- err }()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCloseIdempotentAndErrClosed(t *testing.T) {
	push, err := NewPusher[int](WithBind(loopback))
	if err != nil {
		t.Fatal(err)
	}
	apush, err := NewPusher[int](WithBind(loopback), WithAck())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublisher[int](WithBind(loopback))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := NewPuller(func(context.Context, int) error { return nil }, WithConnect(ep(t, push)))
	if err != nil {
		t.Fatal(err)
	}
	apl, err := NewPuller(func(context.Context, int) error { return nil }, WithConnect(ep(t, apush)), WithAck())
	if err != nil {
		t.Fatal(err)
	}
	rp, err := NewReplier(adder, WithBind(loopback))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []closer{push, apush, pub, pl, apl, rp} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	ctx := context.Background()
	if err := push.Push(ctx, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("push: %v", err)
	}
	if err := apush.Push(ctx, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("acked push: %v", err)
	}
	if err := pub.Publish(ctx, "t", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish: %v", err)
	}
	if err := apush.Drain(ctx); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("drain: %v", err)
	}
}

// A fire-and-forget Puller counts handler errors and panics and goes on.
func TestPullerHandlerFailures(t *testing.T) {
	push, err := NewPusher[string](WithBind(loopback))
	push = cleanup(t, push, err)
	pl, err := NewPuller(func(_ context.Context, s string) error {
		switch s {
		case "err":
			return errors.New("bad")
		case "panic":
			panic("worse")
		}
		return nil
	}, WithConnect(ep(t, push)))
	pl = cleanup(t, pl, err)
	for _, s := range []string{"err", "panic", "ok"} {
		if err := push.Push(ctxT(t), s); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three handled", func() bool { return pl.Stats().Delivered == 3 })
	if st := pl.Stats(); st.Errors != 2 || st.Panics != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// The custody ring moves past messages still held (they go to the
// overflow map) and takes late arrivals below its window.
func TestCustodyRing(t *testing.T) {
	c := newCustody(100) // 1024 slots
	items := map[uint64]*item{}
	add := func(seq uint64) {
		it := &item{id: c.id(seq), seq: seq}
		items[seq] = it
		c.put(it)
	}
	add(1) // stays held throughout
	for s := uint64(3); s <= 5000; s++ {
		add(s)
		if s%3 != 0 { // settle most, keep every third
			c.del(items[s])
			delete(items, s)
		}
	}
	add(2) // a late Push, below the window
	if c.len() != len(items) {
		t.Fatalf("len %d, want %d", c.len(), len(items))
	}
	for seq, it := range items {
		if got := c.get(it.id); got != it {
			t.Fatalf("seq %d: got %v", seq, got)
		}
	}
	if c.get(c.id(4)) != nil || c.get(codec.NewID()) != nil {
		t.Fatal("found a message not held")
	}
	for _, it := range items {
		c.del(it)
	}
	if c.len() != 0 || len(c.over) != 0 {
		t.Fatalf("len %d, overflow %d", c.len(), len(c.over))
	}
}

// A bad socket option fails every constructor with the socket's error and
// leaves no goroutine behind (goleak checks at the end of the package).
func TestBadSocketOption(t *testing.T) {
	bad := WithSocketOptions(socket.WithSendHWM(0))
	h := func(context.Context, int) error { return nil }
	errs := map[string]error{}
	_, errs["Requester"] = NewRequester[int, int](bad)
	_, errs["Replier"] = NewReplier(func(context.Context, int) (int, error) { return 0, nil }, bad)
	_, errs["Pusher"] = NewPusher[int](bad)
	_, errs["Pusher acked"] = NewPusher[int](bad, WithAck())
	_, errs["Puller"] = NewPuller(h, bad)
	_, errs["Puller acked"] = NewPuller(h, bad, WithAck())
	_, errs["Publisher"] = NewPublisher[int](bad)
	_, errs["Subscriber"] = NewSubscriber[int](bad)
	for what, err := range errs {
		if !errors.Is(err, socket.ErrOption) {
			t.Errorf("%s: got %v", what, err)
		}
	}
}

// TestEncodeSendInPlace: a large body marshalSend made is encoded without
// a copy (the frame shares the body's buffer, the envelope's head written in
// front of it) exactly once; a second encoding of it (a retry, with another
// ID) is copied, and leaves the first frame as it was.
func TestEncodeSendInPlace(t *testing.T) {
	value := bytes.Repeat([]byte("0123456789abcdef"), socket.CopyThreshold/16+1)
	body, bmem, err := marshalSend(value)
	if err != nil {
		t.Fatal(err)
	}
	defer bmem.release()
	env := codec.Envelope{ID: codec.NewID(), Kind: codec.KindData, Type: "t", Body: body,
		Headers: map[string]string{"traceparent": strings.Repeat("0", 55)}}
	first, fmem, err := encodeSend(&env, &bmem)
	if err != nil {
		t.Fatal(err)
	}
	defer fmem.release()
	if fmem.sb != bmem.sb {
		t.Fatalf("the first frame is not in the body's buffer: it was copied")
	}
	want, err := codec.Encode(&env)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, want) {
		t.Fatalf("the frame written in place differs from codec.Encode's")
	}
	firstID := env.ID
	env.ID = codec.NewID()
	second, smem, err := encodeSend(&env, &bmem)
	if err != nil {
		t.Fatal(err)
	}
	defer smem.release()
	if smem.sb == bmem.sb {
		t.Fatalf("the second encoding reused the body's buffer, where the first frame may still wait")
	}
	var got codec.Envelope
	if err := codec.Decode(first, &got); err != nil || got.ID != firstID || !bytes.Equal(got.Body, body) {
		t.Fatalf("the first frame changed after a second encoding (err %v, ID %v want %v)", err, got.ID, firstID)
	}
	if err := codec.Decode(second, &got); err != nil || got.ID != env.ID || !bytes.Equal(got.Body, body) {
		t.Fatalf("the second frame: err %v, ID %v want %v", err, got.ID, env.ID)
	}
	var v []byte
	if err := codec.UnmarshalValue(got.Body, &v); err != nil || !bytes.Equal(v, value) {
		t.Fatalf("the body does not decode to the value: %v", err)
	}
}
