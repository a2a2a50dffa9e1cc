package benchcore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// TypedStack is zpeer's typed patterns under test, carrying []byte values
// in the msgpack envelope (id, sequence number, timestamp): what an
// application built on pattern/ gets, end to end. Pipeline is a Pusher and
// Pullers (one worker each, so that order is kept); PubSub a Publisher and
// Subscribers on one topic; ReqRep a Requester and a Replier whose handler
// echoes. A Puller's handler hands each value to the harness over an
// unbuffered channel, so it returns (and, acked, acknowledges) only once
// the value was taken.
//
// Values are owned, the patterns' default: the handler hands its value to
// the harness and returns at once, whatever the harness does with it.
//
// With Borrowed set ("zpeer-typed-borrowed") Pullers and the Replier
// borrow their values (pattern.WithBorrowedValues), as a service that
// reads a request body in its handler does: a value is valid until the
// handler returns. So that the harness may read it until its next Recv
// (see Receiver), a handler given a value of socket.CopyThreshold bytes or
// more waits for that next Recv before it returns; a smaller value is
// copied and the handler returns at once, as in the owned mode (where the
// pattern makes that copy). PubSub is n/a then: a Subscriber's values are
// always owned.
//
// With Acked set it is the acknowledged pipeline (WithAck on both sides:
// credit, acks, redelivery when a puller goes), and PubSub and ReqRep are
// n/a.
type TypedStack struct {
	Acked    bool
	Borrowed bool
	extra    []pattern.Option // the Pusher's (DurableStack's outbox)
}

// ZpeerTyped returns the typed-pattern stack, values owned.
func ZpeerTyped() *TypedStack { return &TypedStack{} }

// ZpeerTypedBorrowed returns the typed-pattern stack with borrowed values.
func ZpeerTypedBorrowed() *TypedStack { return &TypedStack{Borrowed: true} }

// ZpeerAcked returns the acknowledged-pipeline stack.
func ZpeerAcked() *TypedStack { return &TypedStack{Acked: true} }

// Name implements Stack.
func (t *TypedStack) Name() string {
	switch {
	case t.Acked:
		return "zpeer-acked"
	case t.Borrowed:
		return "zpeer-typed-borrowed"
	}
	return "zpeer-typed"
}

const typedTopic = "bench"

func typedOpts(extra ...pattern.Option) []pattern.Option {
	return append([]pattern.Option{pattern.WithSocketOptions(socket.WithLinger(0))}, extra...)
}

// closers closes in reverse order.
type closers []func() error

func (c closers) close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}

// Pipeline implements Stack.
func (t *TypedStack) Pipeline(ctx context.Context, n int) (*Topology, error) {
	var ack []pattern.Option
	if t.Acked {
		ack = []pattern.Option{pattern.WithAck()}
	}
	push, err := pattern.NewPusher[[]byte](typedOpts(append(append(ack, t.extra...), pattern.WithBind("tcp://127.0.0.1:0"))...)...)
	if err != nil {
		return nil, err
	}
	cs := closers{push.Close}
	fail := func(err error) (*Topology, error) {
		cs.close()
		return nil, err
	}
	eps := push.Endpoints()
	if len(eps) != 1 {
		return fail(fmt.Errorf("%s: pusher endpoints %v", t.Name(), eps))
	}
	top := &Topology{Send: typedPush{push}}
	pullOpts := append(ack, pattern.WithConnect(eps[0]), pattern.WithWorkers(1))
	if t.Borrowed {
		pullOpts = append(pullOpts, pattern.WithBorrowedValues())
	}
	for range n {
		tp := &typedPull{ch: make(chan []byte), next: make(chan struct{}, 1), borrowed: t.Borrowed}
		pull, err := pattern.NewPuller(func(ctx context.Context, v []byte) error {
			large := t.Borrowed && len(v) >= socket.CopyThreshold
			if t.Borrowed && !large {
				v = bytes.Clone(v)
			}
			select {
			case tp.ch <- v:
			case <-ctx.Done():
				return ctx.Err()
			}
			if !large {
				return nil
			}
			select { // the harness reads v until its next Recv
			case <-tp.next:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, typedOpts(pullOpts...)...)
		if err != nil {
			return fail(err)
		}
		tp.p = pull
		cs = append(cs, pull.Close)
		top.Recv = append(top.Recv, tp)
	}
	if err := WaitFor(ctx, func() bool { return push.Pullers() >= n }); err != nil {
		return fail(fmt.Errorf("%s: %d pullers: %w", t.Name(), n, err))
	}
	top.Close = cs.close
	return top, nil
}

type typedPush struct{ p *pattern.Pusher[[]byte] }

func (p typedPush) Send(ctx context.Context, b []byte) error { return p.p.Push(ctx, b) }

type typedPull struct {
	p        *pattern.Puller[[]byte]
	ch       chan []byte
	next     chan struct{} // lets the handler of the borrowed value last received return
	held     bool          // Recv is reading a borrowed value
	borrowed bool          // values are borrowed (the handler of a large one waits for next)
}

func (p *typedPull) Recv(ctx context.Context) ([]byte, error) {
	if p.held {
		p.held = false
		p.next <- struct{}{}
	}
	select {
	case v := <-p.ch:
		p.held = p.borrowed && len(v) >= socket.CopyThreshold
		return v, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *typedPull) Close() error { return p.p.Close() }

// PubSub implements Stack.
func (t *TypedStack) PubSub(ctx context.Context, n int) (*Topology, error) {
	if t.Acked || t.Borrowed {
		return nil, ErrNotSupported
	}
	pub, err := pattern.NewPublisher[[]byte](typedOpts(pattern.WithBind("tcp://127.0.0.1:0"))...)
	if err != nil {
		return nil, err
	}
	cs := closers{pub.Close}
	fail := func(err error) (*Topology, error) {
		cs.close()
		return nil, err
	}
	eps := pub.Endpoints()
	if len(eps) != 1 {
		return fail(fmt.Errorf("zpeer-typed: publisher endpoints %v", eps))
	}
	top := &Topology{Send: typedPub{pub}}
	for range n {
		sub, err := pattern.NewSubscriber[[]byte](typedOpts(pattern.WithConnect(eps[0]), pattern.WithTopics(typedTopic))...)
		if err != nil {
			return fail(err)
		}
		cs = append(cs, sub.Close)
		top.Recv = append(top.Recv, typedSub{sub})
	}
	if err := WaitFor(ctx, func() bool { return pub.Subscribers() >= n }); err != nil {
		return fail(fmt.Errorf("zpeer-typed: %d subscribers: %w", n, err))
	}
	top.Close = cs.close
	return top, nil
}

type typedPub struct{ p *pattern.Publisher[[]byte] }

func (p typedPub) Send(ctx context.Context, b []byte) error {
	return p.p.Publish(ctx, typedTopic, b)
}

type typedSub struct{ s *pattern.Subscriber[[]byte] }

func (s typedSub) Recv(ctx context.Context) ([]byte, error) {
	m, err := s.s.Recv(ctx)
	return m.Value, err
}

func (s typedSub) Close() error { return s.s.Close() }

// ReqRep implements Stack.
func (t *TypedStack) ReqRep(ctx context.Context) (*Topology, error) {
	if t.Acked {
		return nil, ErrNotSupported
	}
	repOpts := []pattern.Option{pattern.WithBind("tcp://127.0.0.1:0")}
	if t.Borrowed {
		repOpts = append(repOpts, pattern.WithBorrowedValues()) // the echo is encoded before the request's memory goes back
	}
	rep, err := pattern.NewReplier(func(_ context.Context, req []byte) ([]byte, error) { return req, nil },
		typedOpts(repOpts...)...)
	if err != nil {
		return nil, err
	}
	cs := closers{rep.Close}
	fail := func(err error) (*Topology, error) {
		cs.close()
		return nil, err
	}
	eps := rep.Endpoints()
	if len(eps) != 1 {
		return fail(fmt.Errorf("zpeer-typed: replier endpoints %v", eps))
	}
	req, err := pattern.NewRequester[[]byte, []byte](typedOpts(pattern.WithConnect(eps[0]))...)
	if err != nil {
		return fail(err)
	}
	cs = append(cs, req.Close)
	// Wait until a request goes through.
	for {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := req.Request(rctx, []byte("ping"))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fail(fmt.Errorf("zpeer-typed: replier not reached: %w", err))
		}
	}
	return &Topology{Client: &typedReq{r: req}, Server: typedRep{}, Close: cs.close}, nil
}

// typedReq: Send keeps the request, Recv makes the call.
type typedReq struct {
	r   *pattern.Requester[[]byte, []byte]
	req []byte
}

func (c *typedReq) Send(_ context.Context, b []byte) error {
	c.req = b
	return nil
}

func (c *typedReq) Recv(ctx context.Context) ([]byte, error) {
	return c.r.Request(ctx, c.req)
}

// typedRep: the Replier answers on its own workers; the harness's echo
// loop has nothing to do but wait.
type typedRep struct{}

func (typedRep) Recv(ctx context.Context) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (typedRep) Send(context.Context, []byte) error { return nil }
