package pattern

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/outbox"
	"github.com/zpeer/zpeer/internal/partition"
)

// OutboxMode says when an outbox's writes reach the disk (see WithOutbox).
type OutboxMode struct{ interval time.Duration }

// OutboxSync: Push returns once the job is written and fsynced. Concurrent
// Pushes share one fsync (group commit), so throughput grows with the
// number of pushing goroutines; one goroutine pushes at most one job per
// fsync.
var OutboxSync = OutboxMode{}

// OutboxBatched: Push returns once the job is buffered; the buffer is
// written and fsynced at most every d. A crash of the process or the
// machine loses the jobs pushed in the last d (plus the fsync then under
// way), even though their Push returned nil.
func OutboxBatched(d time.Duration) OutboxMode { return OutboxMode{interval: d} }

func (m OutboxMode) String() string {
	if m.interval == 0 {
		return "sync"
	}
	return "batched(" + m.interval.String() + ")"
}

// WithOutbox makes an acked Pusher keep every job in a durable outbox in
// dir (created if needed; one Pusher per directory) from Push until it is
// acked or dead, so that a Pusher that crashes loses nothing: a new Pusher
// with the same directory delivers again, from NewPusher on, every job the
// crashed one had not settled. The outbox holds at most WithMaxPending jobs
// and WithOutboxMaxBytes bytes of envelopes; Push blocks while it is full,
// until its context ends (ErrFull). mode is OutboxSync or OutboxBatched.
// A job that went dead is removed too (it was handed to WithOnDead).
func WithOutbox(dir string, mode OutboxMode) Option {
	return func(o *options) error {
		if dir == "" {
			return optErr("WithOutbox: empty directory")
		}
		if mode.interval < 0 {
			return optErr("WithOutbox: negative batch interval %v", mode.interval)
		}
		o.used |= oOutbox
		o.outboxDir, o.outboxMode = dir, mode
		return nil
	}
}

// WithOutboxMaxBytes bounds the envelope bytes an outbox holds (default
// 256 MiB). Its files take at most about twice the jobs held, plus 96 MiB.
func WithOutboxMaxBytes(n int64) Option {
	return func(o *options) error {
		if n < 1 {
			return optErr("WithOutboxMaxBytes(%d): must be at least 1", n)
		}
		o.used |= oOutboxBytes
		o.outboxBytes = n
		return nil
	}
}

// openOutbox opens the outbox and takes custody of the jobs a previous
// Pusher left in it, before any puller is there. It runs in NewPusher.
func (a *ackPusher[T]) openOutbox() error {
	st, err := outbox.Open(a.o.outboxDir, outbox.WithInterval(a.o.outboxMode.interval),
		outbox.WithMaxMessages(a.o.maxPending), outbox.WithMaxBytes(a.o.outboxBytes))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOutbox, err)
	}
	a.store = st
	err = st.Replay(func(id outbox.ID, frame []byte) error {
		key, frame, keyed := splitKeyedRecord(frame)
		var env codec.View
		if codec.DecodeView(frame, &env) != nil || env.Kind != codec.KindData {
			// Not an envelope this Pusher wrote: never deliver it.
			a.o.logger.Warn("pattern: outbox record is not an envelope, dropped", "id", codec.ID(id))
			a.p.c.dropped.Add(1)
			st.Ack(id)
			return nil
		}
		// seq 0 keeps it out of custody's ring of this Pusher's ids.
		it := newItem(codec.ID(id), 0, env.Priority, frame)
		if a.o.onDead != nil {
			if v, err := unmarshalBody[T](env.Body); err == nil {
				it.value = v
			}
		}
		a.mu.Lock()
		a.custody.put(it)
		if keyed {
			a.pushKeyedLocked(it, partition.Hash(key)) // unlocks
		} else {
			a.enqueue(it, false)
			a.mu.Unlock()
		}
		a.recovered++
		return nil
	})
	if a.recovered > 0 {
		a.o.logger.Info("pattern: outbox: jobs taken back for delivery", "dir", a.o.outboxDir, "jobs", a.recovered)
	}
	if s := st.Stats(); s.Corrupt > 0 {
		a.o.logger.Warn("pattern: outbox had torn or corrupt records, skipped", "dir", a.o.outboxDir,
			"records", s.Corrupt, "bytes", s.CorruptBytes)
	}
	return err
}

// storeJob writes a job to the outbox before Push returns.
func (a *ackPusher[T]) storeJob(ctx context.Context, id codec.ID, frame []byte) error {
	err := a.store.Append(ctx, outbox.ID(id), frame)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, outbox.ErrFull):
		return fmt.Errorf("%w: %w", ErrFull, ctxError(ctx))
	case errors.Is(err, outbox.ErrClosed):
		return ErrClosed
	case ctx.Err() != nil:
		a.store.Ack(outbox.ID(id)) // maybe durable: withdraw it
		return ctxError(ctx)
	default:
		return fmt.Errorf("%w: %w", ErrOutbox, err)
	}
}

// settled is called when a job leaves custody: err is nil when it was
// acked, else why it went dead. a.mu is held.
func (a *ackPusher[T]) settled(it *item, err error) {
	if a.store != nil {
		a.store.Ack(outbox.ID(it.id))
	}
	if it.rcpt != nil {
		it.rcpt.settle(err)
		it.rcpt = nil
	}
}

// abandon settles the receipts of jobs still held when the Pusher closes.
// It runs after the Pusher's goroutines stopped.
func (a *ackPusher[T]) abandon() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, it := range a.custody.slots {
		if it != nil && it.rcpt != nil {
			it.rcpt.settle(ErrClosed)
			it.rcpt = nil
		}
	}
	for _, it := range a.custody.over {
		if it.rcpt != nil {
			it.rcpt.settle(ErrClosed)
			it.rcpt = nil
		}
	}
}

// Receipt tells a producer what became of one job pushed with PushAsync.
type Receipt struct {
	id   codec.ID
	done chan struct{}
	err  error
}

func (r *Receipt) settle(err error) {
	r.err = err
	close(r.done)
}

// ID is the job's envelope id, as its Puller sees it.
func (r *Receipt) ID() codec.ID { return r.id }

// Done is closed once the job is settled: acknowledged by a puller, dead,
// or abandoned by Close.
func (r *Receipt) Done() <-chan struct{} { return r.done }

// Err is nil while the job is not settled and after it was acknowledged;
// once Done is closed it is otherwise the reason: an error wrapping ErrDead
// (the same as the DeadLetter's) or ErrClosed (the Pusher closed first; with
// WithOutbox the job stays in the outbox for the next Pusher).
func (r *Receipt) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Wait waits until the job is settled and returns Err, or ctx's error.
func (r *Receipt) Wait(ctx context.Context) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctxError(ctx)
	}
}

// PushAsync is Push for a producer that wants to know when this job is
// settled, to checkpoint its own input without Drain: it returns as Push
// does (once the Pusher, and its outbox, hold the job), with a Receipt
// whose Done is closed when a puller acknowledged the job or it went dead.
// It needs WithAck. A Receipt is closed by the Pusher's receive goroutine,
// which runs no user code: wait on Done from goroutines of your own.
func (p *Pusher[T]) PushAsync(ctx context.Context, v T, opts ...CallOption) (*Receipt, error) {
	if p.ack == nil {
		return nil, optErr("PushAsync needs WithAck")
	}
	r := &Receipt{done: make(chan struct{})}
	if err := p.pushAcked(ctx, v, opts, r); err != nil {
		return nil, err
	}
	return r, nil
}
