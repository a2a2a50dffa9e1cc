package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/metrics"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// ackOpts are the flags of the acknowledged pipeline: push --ack and pull
// --ack, over pattern's acked Pusher and Puller. A new flag of either side
// goes here: addFlags declares it, validate checks it, and pusherOptions or
// pullerOptions turns it into pattern options.
type ackOpts struct {
	on            bool
	ackTimeout    time.Duration // push: redeliver a job not acked within
	maxDeliveries int           // push: then report it dead
	credit        int           // pull: jobs held at once
	store         string        // push: the durable outbox's directory
	storeBatch    time.Duration // push: its fsync interval (0: before each job is accepted)
}

func (o *ackOpts) addFlags(f *pflag.FlagSet, typ socket.Type) {
	switch typ {
	case socket.PUSH:
		f.BoolVar(&o.on, "ack", false, "acknowledged jobs: bind, and exit 0 only when \"pull --ack\" workers have acknowledged every job")
		f.DurationVar(&o.ackTimeout, "ack-timeout", 30*time.Second, "--ack: give a job to another worker when its worker has not acknowledged it within `D`")
		f.IntVar(&o.maxDeliveries, "max-deliveries", 5, "--ack: report a job dead after `N` deliveries")
		f.StringVar(&o.store, "store", "", "--ack: keep each job on disk in `DIR` until a worker acknowledges it; the jobs a push that died left there go first in the next push --ack --store DIR")
		f.DurationVar(&o.storeBatch, "store-batch", 0, "--store: write jobs to disk every `D` rather than each before it is taken (faster; a crash loses the jobs of the last D)")
	case socket.PULL:
		f.BoolVar(&o.on, "ack", false, "be a worker of \"push --ack\": connect, acknowledge each job once its line is written to standard output (--exec: once CMD exited 0 and its output is written)")
		f.IntVar(&o.credit, "credit", 1, "--ack: hold up to `N` unacknowledged jobs (1: the others wait at the pusher, free for other workers)")
	}
}

// validate checks the --ack flags; so are the command's other flags.
func (o *ackOpts) validate(sc sockCmd, so *sockOpts) error {
	if !o.on {
		for _, name := range []string{"ack-timeout", "max-deliveries", "credit", "store", "store-batch"} {
			if so.changed[name] {
				return usagef("--%s needs --ack", name)
			}
		}
		return nil
	}
	switch {
	case so.codec == "raw":
		return usagef("--ack needs --codec msgpack: acknowledgements travel in zpeer envelopes")
	case sc.typ == socket.PUSH && len(so.connects) > 0:
		return usagef("push --ack binds (--bind, or --discover with --bind): its workers connect to it")
	case sc.typ == socket.PUSH && len(so.binds) == 0:
		return usagef("push --ack needs --bind: its workers connect to it")
	case sc.typ == socket.PULL && len(so.binds) > 0:
		return usagef("pull --ack connects to its pusher (--connect or --discover), it does not bind")
	case o.ackTimeout <= 0 && sc.typ == socket.PUSH:
		return usagef("--ack-timeout must be positive")
	case o.maxDeliveries < 1 && sc.typ == socket.PUSH:
		return usagef("--max-deliveries must be at least 1")
	case o.credit < 1 && sc.typ == socket.PULL:
		return usagef("--credit must be at least 1")
	case so.changed["store-batch"] && o.store == "":
		return usagef("--store-batch needs --store")
	case o.storeBatch < 0:
		return usagef("--store-batch must not be negative")
	}
	return nil
}

// commonOptions are the pattern options both sides of --ack take from the
// socket command's flags.
func (s *session) commonOptions() []pattern.Option {
	opts := []pattern.Option{
		pattern.WithAck(),
		pattern.WithName(s.o.name),
		pattern.WithOnRefused(func(r pattern.Refusal) { s.refused(r.Endpoint, r.Err) }),
		pattern.WithLogger(s.libraryLogger()),
		// Not WithEventHandler: the acked pipeline's sockets have their own.
		pattern.WithSocketOptions(socket.WithLinger(s.o.linger), socket.WithReconnect(50*time.Millisecond, 2*time.Second)),
	}
	for _, ep := range s.o.binds {
		opts = append(opts, pattern.WithBind(ep))
	}
	for _, ep := range s.o.connects {
		opts = append(opts, pattern.WithConnect(ep))
	}
	if s.o.discover != "" {
		opts = append(opts, pattern.WithService(s.o.discover, append(discoveryOptions(s.o.ifaces), discovery.WithLogger(s.log))...))
	}
	return append(opts, s.patternSecurity()...)
}

// pusherOptions are the pattern options of push --ack.
func (s *session) pusherOptions(onDead func(pattern.DeadLetter)) []pattern.Option {
	opts := append(s.commonOptions(),
		pattern.WithAckTimeout(s.o.ack.ackTimeout),
		pattern.WithMaxDeliveries(s.o.ack.maxDeliveries),
		pattern.WithOnDead(onDead),
		pattern.WithType(s.o.msgType),
		pattern.WithPriority(s.o.priority))
	if s.o.ack.store != "" {
		mode := pattern.OutboxSync
		if s.o.ack.storeBatch > 0 {
			mode = pattern.OutboxBatched(s.o.ack.storeBatch)
		}
		opts = append(opts, pattern.WithOutbox(s.o.ack.store, mode))
	}
	return opts
}

// pullerOptions are the pattern options of pull --ack.
//
// The handler buffers its output (work); WithBeforeAck writes it out
// before each batch of acknowledgements leaves, so a job is acknowledged
// only once its line is out of the process, and a fast stream pays one
// write call per batch rather than one per job.
func (s *session) pullerOptions() []pattern.Option {
	opts := s.commonOptions()
	if s.o.metrics != "" {
		opts = append(opts, pattern.WithHandlerTiming())
	}
	return append(opts, pattern.WithCredit(s.o.ack.credit), pattern.WithWorkers(1),
		pattern.WithBeforeAck(func() error {
			if err := s.out.Out(); err != nil {
				return outputError{err}
			}
			return nil
		}))
}

// runAcked is push --ack and pull --ack.
func (s *session) runAcked(ctx context.Context, args []string) (err error) {
	if s.sc.typ == socket.PUSH {
		return s.runAckPush(ctx, args)
	}
	return s.runAckPull(ctx)
}

// job is what an acked pipeline carries: the envelope body, as the
// encoded MessagePack value (--body says how it was made).
type job = msgpack.RawMessage

// runAckPush pushes every message as a job, then waits until each is
// acknowledged or dead. --timeout bounds the time with jobs waiting and no
// worker connected.
func (s *session) runAckPush(ctx context.Context, args []string) error {
	var dead atomic.Uint64
	push, err := pattern.NewPusher[job](s.pusherOptions(func(d pattern.DeadLetter) {
		dead.Add(1)
		v, _ := d.Value.(job)
		m := &message{env: codec.Envelope{Body: v}}
		s.logf("job %q is dead after %d deliveries: %v", abbrev(m.bodyText()), d.Deliveries, d.Err)
	})...)
	if err != nil {
		return patternError(err)
	}
	if c := s.metrics.collector(); c != nil {
		c.AddPattern(metrics.RolePusher, s.sc.name, push)
	}
	defer push.Close()
	for _, ep := range push.Endpoints() {
		s.a.errorf("bound %s", ep)
	}
	if n := leftInStore(push); n > 0 {
		s.a.errorf("%d jobs left in %s go first", n, s.o.ack.store)
	}
	// --peers N: no job goes out before N workers have said hello (with
	// --key-sep, the keys spread over all of them from the first job). A
	// connection alone is not enough: a puller owns keys only once its
	// hello, with its name and credit, has arrived.
	ready := func() int { return len(push.Stats().Peers) }
	if err := s.waitReady(ctx, s.o.peers, ready); err != nil {
		return err
	}
	var headers []pattern.CallOption
	for k, v := range s.headers {
		headers = append(headers, pattern.Header(k, v))
	}
	src := s.source(args)
	for s.o.count == 0 || s.sent.Load() < uint64(s.o.count) {
		text, ok, err := src.next(ctx)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if s.sent.Load() > 0 {
			if err := s.pause(ctx); err != nil {
				return err
			}
		}
		body, err := encodeBody(false, s.o.body, text)
		if err != nil {
			return err
		}
		if err := push.Push(ctx, job(body), s.keyed(text, headers)...); err != nil {
			return err
		}
		s.sent.Add(1)
	}
	if err := s.awaitAcks(ctx, push); err != nil {
		return err
	}
	if n := push.Stats().Retried; s.o.verbose && n > 0 {
		s.logf("%d redeliveries (jobs whose worker failed, died or timed out)", n)
	}
	if n := dead.Load(); n > 0 {
		return fmt.Errorf("%d of %d jobs dead (never acknowledged)", n, s.sent.Load())
	}
	return nil
}

// leftInStore is how many jobs the Pusher took back from its outbox when it
// started, before this push added any. Workers waiting for the pusher may
// have settled some already (it is bound): those are counted from Acked
// and Dead. Stats reads the counters before Pending, so one sum can miss an
// ack that lands between the two reads: the sum is taken again until the
// Pending of an earlier Stats gives the same total.
func leftInStore(push *pattern.Pusher[job]) int {
	var n int
	for range 100 {
		a, b := push.Stats(), push.Stats()
		settled := int(b.Acked + b.Dead)
		n = b.Pending + settled
		if a.Pending+settled == n { // a.Pending was read before b's counters
			return n
		}
	}
	return n
}

// awaitAcks waits until every job pushed is settled, failing when jobs
// wait with no worker connected for --timeout.
func (s *session) awaitAcks(ctx context.Context, push *pattern.Pusher[job]) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	alone := time.Now() // since when jobs wait and no worker is connected
	for {
		st := push.Stats()
		s.recvd.Store(st.Acked)
		if st.Pending == 0 {
			// Stats reads Acked before Pending: the last ack may have
			// come between the two. Read after it, Acked has them all.
			s.recvd.Store(push.Stats().Acked)
			return nil
		}
		if push.Pullers() > 0 {
			alone = time.Now()
		} else if s.o.timeout > 0 && time.Since(alone) > s.o.timeout {
			return s.noPeerError(fmt.Sprintf("no worker for %s, %d of %d jobs acknowledged", s.o.timeout, st.Acked, s.sent.Load()))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runAckPull processes jobs until --count, or --timeout without one. A
// job is acknowledged (its handler returns nil) once its effect is out of
// the process: its line written to standard output, or --exec exited 0 and
// its output written.
func (s *session) runAckPull(ctx context.Context) error {
	done := make(chan struct{})
	got := make(chan struct{}, 1)
	failed := make(chan error, 1) // standard output failed
	var started atomic.Uint64
	handler := func(hctx context.Context, v job) error {
		if n := started.Add(1); s.o.count > 0 && n > uint64(s.o.count) {
			// Past --count: not ours to process. Closing hands it back.
			<-hctx.Done()
			return hctx.Err()
		}
		m := &message{env: codec.Envelope{Body: v}}
		if err := s.work(hctx, m); err != nil {
			started.Add(^uint64(0))
			if isOutputError(err) {
				select {
				case failed <- err:
				default:
				}
			}
			return err
		}
		if n := s.recvd.Add(1); s.o.count > 0 && n == uint64(s.o.count) {
			close(done)
		}
		select {
		case got <- struct{}{}:
		default:
		}
		return nil
	}
	pull, err := pattern.NewPuller(handler, s.pullerOptions()...)
	if err != nil {
		return patternError(err)
	}
	if c := s.metrics.collector(); c != nil {
		c.AddPattern(metrics.RolePuller, s.sc.name, pull)
	}
	defer pull.Close() // acknowledges what is done; what is not goes back

	idle := s.newIdleTimer()
	defer idle.stop()
	for {
		select {
		case <-done:
			return nil
		case err := <-failed:
			return fmt.Errorf("writing output: %w", err)
		case <-got:
			idle.reset()
		case <-idle.c:
			if s.o.count == 0 && s.recvd.Load() > 0 {
				return nil // the stream has ended (see timeoutRule)
			}
			return fmt.Errorf("no job within %s (processed %d)", s.o.timeout, s.recvd.Load())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// work processes one job of pull --ack: prints it, or runs --exec on it,
// whose output is printed. A nil error acknowledges it once the output is
// out of the process (pullerOptions' WithBeforeAck).
func (s *session) work(ctx context.Context, m *message) error {
	if s.o.exec == "" {
		if err := s.print(m); err != nil {
			return outputError{err}
		}
		return nil
	}
	err := s.execOn(ctx, m, false)
	if err != nil && ctx.Err() == nil && !isOutputError(err) {
		s.logf("--exec: %v; the job goes back to the pusher", err)
	}
	return err
}

// patternError classifies the errors of pattern constructors: a bad
// option or endpoint is the user's to fix.
func patternError(err error) error {
	if errors.Is(err, pattern.ErrOption) {
		return usageError{err}
	}
	return discoveryError(err)
}
