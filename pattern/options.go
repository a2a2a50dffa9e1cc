package pattern

import (
	"errors"
	"fmt"
	"github.com/zpeer/zpeer/internal/eventlog"
	"log/slog"
	"runtime"
	"time"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/socket"
)

// Option configures a pattern. Constructors start from the documented
// defaults, apply the options in order, skip nil ones and return the first
// error. An option that does not apply to the pattern being built (WithAck on
// a Requester, say) is an error wrapping ErrOption rather than silently
// ignored.
type Option func(*options) error

type optBit uint64

const (
	oBind optBit = 1 << iota
	oConnect
	oSocket
	oTimeout
	oRetries
	oWorkers
	oAck
	oAckTimeout
	oMaxDeliveries
	oDedup
	oCredit
	oMaxPending
	oName
	oPriority
	oType
	oTopics
	oOnGap
	oOnDead
	oLogger
	oDiscovery
	oCurve
	oOnRefused
	oBorrow
	oOutbox
	oOutboxBytes
	oLastValue
	oHandlerTiming
	oTracer
	oBeforeAck
	oInitialState
	oHeartbeat
	oPartition
)

var optNames = map[optBit]string{
	oBind: "WithBind", oConnect: "WithConnect", oSocket: "WithSocketOptions",
	oTimeout: "WithTimeout", oRetries: "WithRetries", oWorkers: "WithWorkers",
	oAck: "WithAck", oAckTimeout: "WithAckTimeout", oMaxDeliveries: "WithMaxDeliveries",
	oDedup: "WithDedupWindow", oCredit: "WithCredit", oMaxPending: "WithMaxPending",
	oName: "WithName", oPriority: "WithPriority", oType: "WithType", oTopics: "WithTopics",
	oOnGap: "WithOnGap", oOnDead: "WithOnDead", oLogger: "WithLogger", oDiscovery: "WithDiscovery",
	oCurve: "WithKey", oOnRefused: "WithOnRefused", oOutbox: "WithOutbox", oOutboxBytes: "WithOutboxMaxBytes",
	oLastValue: "WithLastValue",
	oBorrow:    "WithBorrowedValues", oHandlerTiming: "WithHandlerTiming",
	oTracer:    "WithTracer",
	oHeartbeat: "WithStateHeartbeat",
	oPartition: "WithPartitionKey",
	oBeforeAck: "WithBeforeAck", oInitialState: "WithInitialState",
}

// options common to every pattern.
const oCommon = oBind | oConnect | oSocket | oName | oLogger | oDiscovery | oCurve | oTracer

type options struct {
	used            optBit
	binds           []string
	connects        []string
	sockOpts        []socket.Option
	timeout         time.Duration
	retries         int
	workers         int
	borrow          bool
	handlerTiming   bool
	tracer          Tracer // nil: no tracing
	beforeAck       func() error
	initialState    any // StateServer: WithInitialState's map[string]T
	ack             bool
	ackTimeout      time.Duration
	maxDeliveries   int
	dedupWindow     int
	credit          int
	maxPending      int
	maxPendingBytes int
	name            string
	priority        uint8
	msgType         string
	topics          []string
	onGap           func(Gap)
	onDead          func(DeadLetter)
	onRefused       func(Refusal)
	logger          *slog.Logger
	elog            *eventlog.Logger // logger's events, rate-limited (set by buildOptions)
	discovery       Discovery
	service         string
	serviceOpts     []discovery.Option
	watcher         *discovery.Watcher
	outboxDir       string
	outboxMode      OutboxMode
	outboxBytes     int64
	curve           curveOpts
	lastValue       int // Publisher: topics in the last-value cache (0: none)
	// StateServer: the interval between heartbeats (WithStateHeartbeat)
	heartbeat time.Duration
	keyFunc   any // Pusher: WithPartitionKey's func(T) string
}

func defaultOptions() options {
	return options{
		timeout:         2 * time.Second,
		retries:         2,
		workers:         runtime.GOMAXPROCS(0),
		ackTimeout:      30 * time.Second,
		maxDeliveries:   5,
		dedupWindow:     4096,
		credit:          256,
		maxPending:      65536,
		maxPendingBytes: 64 << 20,
		outboxBytes:     256 << 20,
		heartbeat:       time.Second,
		logger:          slog.New(slog.DiscardHandler),
	}
}

// buildOptions applies opts over the defaults and checks that each one
// applies to the pattern called what (allowed is its set of options).
func buildOptions(what string, allowed optBit, opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		before := o.used
		if err := opt(&o); err != nil {
			if !errors.Is(err, ErrOption) { // the contract, for an option written elsewhere
				err = fmt.Errorf("%w: %w", ErrOption, err)
			}
			return o, err
		}
		if extra := (o.used &^ before) &^ (allowed | oCommon); extra != 0 {
			return o, fmt.Errorf("%w: %s does not apply to %s", ErrOption, optNames[extra&-extra], what)
		}
	}
	if o.name == "" {
		o.name = newName()
	}
	o.elog = eventlog.New(o.logger)
	if err := o.resolveCurve(); err != nil {
		return o, err
	}
	return o, nil
}

func optErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrOption}, args...)...)
}

// WithBind makes the pattern's socket listen on ep (tcp://127.0.0.1:0 picks
// a free port; the pattern's Endpoints method tells which). May be repeated.
func WithBind(ep string) Option {
	return func(o *options) error {
		if ep == "" {
			return optErr("WithBind: empty endpoint")
		}
		o.used |= oBind
		o.binds = append(o.binds, ep)
		return nil
	}
}

// WithConnect makes the pattern connect to ep. Connecting is asynchronous:
// the peer need not be up yet, and a lost connection is re-dialled. May be
// repeated.
func WithConnect(ep string) Option {
	return func(o *options) error {
		if ep == "" {
			return optErr("WithConnect: empty endpoint")
		}
		o.used |= oConnect
		o.connects = append(o.connects, ep)
		return nil
	}
}

// WithSocketOptions passes options to every socket the pattern creates,
// after the pattern's own (so they win): high-water marks, heartbeats,
// security, identity, low-latency mode.
func WithSocketOptions(opts ...socket.Option) Option {
	return func(o *options) error {
		o.used |= oSocket
		o.sockOpts = append(o.sockOpts, opts...)
		return nil
	}
}

// WithTimeout sets how long a Requester waits for the reply to one attempt
// before it abandons it and tries again (default 2s). The Request's context
// bounds the whole call, retries included.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return optErr("WithTimeout(%v): must be positive", d)
		}
		o.used |= oTimeout
		o.timeout = d
		return nil
	}
}

// WithRetries sets how many times a Requester resends a request after the
// first attempt went unanswered (default 2, so 3 attempts in all). 0 means a
// single attempt.
func WithRetries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return optErr("WithRetries(%d): must not be negative", n)
		}
		o.used |= oRetries
		o.retries = n
		return nil
	}
}

// WithWorkers sets how many handler calls a Replier or Puller runs at once
// (default GOMAXPROCS).
func WithWorkers(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return optErr("WithWorkers(%d): must be at least 1", n)
		}
		o.used |= oWorkers
		o.workers = n
		return nil
	}
}

// WithBorrowedValues makes a Puller's or a Replier's handler borrow the
// []byte and string values it is given, the way a net/http handler
// borrows its request body: such a value is valid only while the handler
// runs. It is the received frame's own memory, which goes back to the
// socket's pool when the handler returns, to be reused by a later receive.
// A handler that keeps the value, or any part of it, past its return (in a
// struct, on a channel, in a goroutine) must copy it: what it kept will
// hold another message's bytes. A Replier's handler may return the value
// as its reply: the reply is encoded before the memory is given back.
//
// Without it (the default) every value owns its memory. Borrowing saves an
// allocation per message, and for large values (tens of kilobytes and
// more) most of the cost of receiving them: fresh memory page-faults on
// first touch, reused memory does not. Only []byte and string values
// borrow; struct values are decoded into memory of their own either way.
// Built with -tags zpeerdebug, returned memory is poisoned with 0xDF bytes
// and never reused, so that a value kept by mistake reads as garbage in
// tests rather than as some other message.
func WithBorrowedValues() Option {
	return func(o *options) error {
		o.used |= oBorrow
		o.borrow = true
		return nil
	}
}

// WithAck selects the acknowledged (at-least-once) pipeline for a Pusher or
// Puller. Both ends must agree: an acked Pusher speaks ROUTER and an acked
// Puller DEALER, which a fire-and-forget PUSH or PULL peer refuses at the
// handshake.
func WithAck() Option {
	return func(o *options) error {
		o.used |= oAck
		o.ack = true
		return nil
	}
}

// WithAckTimeout sets how long an acked Pusher waits for a message's
// acknowledgement before it redelivers it (default 30s). Make it longer
// than the slowest handler: a message redelivered while still being
// processed is processed again elsewhere (the first puller suppresses its
// own duplicate).
func WithAckTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return optErr("WithAckTimeout(%v): must be positive", d)
		}
		o.used |= oAckTimeout
		o.ackTimeout = d
		return nil
	}
}

// WithMaxDeliveries sets how many deliveries of a message an acked Pusher
// makes before it declares it dead (default 5). Only deliveries that a
// handler started count, as far as the Pusher can tell: one that was
// nacked or whose ack timed out counts; one lost with its puller's
// connection counts when the handler had started on it. Pullers report
// the start of a redelivered message; a first delivery lost with its
// connection counts, as the Pusher cannot tell. So a message that crashes
// every worker it reaches is dead after n starts, and pullers that come and
// go without starting it cost it one counted delivery at most.
func WithMaxDeliveries(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return optErr("WithMaxDeliveries(%d): must be at least 1", n)
		}
		o.used |= oMaxDeliveries
		o.maxDeliveries = n
		return nil
	}
}

// WithDedupWindow sets how many recently processed message ids an acked
// Puller remembers to drop redelivered duplicates (default 4096). The window
// is in the Puller's memory: a restarted Puller, or another one, processes
// a redelivered message again, so handlers must be idempotent.
func WithDedupWindow(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return optErr("WithDedupWindow(%d): must be at least 1", n)
		}
		o.used |= oDedup
		o.dedupWindow = n
		return nil
	}
}

// WithCredit sets how many unacknowledged messages an acked Puller accepts
// from each Pusher at a time (default 256). A Pusher sends only to pullers
// with free credit, so a busy puller gets no more work until it catches up.
func WithCredit(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 1<<20 {
			return optErr("WithCredit(%d): must be 1..1048576", n)
		}
		o.used |= oCredit
		o.credit = n
		return nil
	}
}

// WithMaxPending bounds how many messages an acked Pusher holds, queued and
// unacknowledged together (default 65536). Push blocks while it is full.
func WithMaxPending(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return optErr("WithMaxPending(%d): must be at least 1", n)
		}
		o.used |= oMaxPending
		o.maxPending = n
		return nil
	}
}

// WithMaxPendingBytes bounds the envelope bytes an acked Pusher holds,
// queued and unacknowledged together (default 64 MiB): Push blocks while
// they would go over it, unless nothing is held (so that one message
// larger than n still goes). With large values this is the bound that
// matters: 65536 pending messages of 1 MiB would be 64 GiB. Memory whose
// message was acknowledged is reused by later Pushes.
func WithMaxPendingBytes(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return optErr("WithMaxPendingBytes(%d): must be at least 1", n)
		}
		o.used |= oMaxPending
		o.maxPendingBytes = n
		return nil
	}
}

// WithName sets the sender name stamped in every envelope (default: 16
// random hex digits, new for every pattern). A Subscriber tells publishers
// apart by it, so two publishers must not share a name.
func WithName(name string) Option {
	return func(o *options) error {
		o.used |= oName
		o.name = name
		return nil
	}
}

// WithPriority sets the default priority of what the pattern sends (default
// 0). Higher goes first where messages queue on the sender; see Priority for
// one message.
func WithPriority(p uint8) Option {
	return func(o *options) error {
		o.used |= oPriority
		o.priority = p
		return nil
	}
}

// WithType sets the envelope Type stamped on what the pattern sends (default
// empty).
func WithType(t string) Option {
	return func(o *options) error {
		o.used |= oType
		o.msgType = t
		return nil
	}
}

// WithTopics subscribes a Subscriber to topic prefixes from the start (""
// is every topic). Subscribe adds more later.
func WithTopics(prefixes ...string) Option {
	return func(o *options) error {
		o.used |= oTopics
		o.topics = append(o.topics, prefixes...)
		return nil
	}
}

// WithOnGap registers a function a Subscriber calls when it sees that it
// missed messages of a publisher's topic. It runs on the goroutine that
// called Recv, before Recv returns the message that revealed the gap.
func WithOnGap(fn func(Gap)) Option {
	return func(o *options) error {
		o.used |= oOnGap
		o.onGap = fn
		return nil
	}
}

// WithOnDead registers a function an acked Pusher calls for every message it
// gives up on. It runs on a goroutine of its own, in order, never on an I/O
// goroutine.
func WithOnDead(fn func(DeadLetter)) Option {
	return func(o *options) error {
		o.used |= oOnDead
		o.onDead = fn
		return nil
	}
}

// WithBeforeAck makes an acked Puller call fn before it sends a batch of
// acknowledgements, and send them only if fn succeeds: fn makes durable
// what the handlers of those messages did (flushes a buffered writer,
// fsyncs a file), so that a handler can buffer its output and a fast
// stream still pays one flush per batch rather than one per message. An
// acknowledgement tells the pusher the job is done: without WithBeforeAck
// the handler's return is that moment, so it must make its effect durable
// itself before returning. fn runs on a worker goroutine, one call at a
// time; when it fails the acknowledgements wait for the next call, and
// the pusher redelivers what stays unacknowledged past its ack timeout.
func WithBeforeAck(fn func() error) Option {
	return func(o *options) error {
		if fn == nil {
			return optErr("WithBeforeAck: nil function")
		}
		o.used |= oBeforeAck
		o.beforeAck = fn
		return nil
	}
}

// WithHandlerTiming makes a Replier or a Puller time every handler call,
// into Stats.Handler (off by default: two clock readings and a histogram
// update per message cost a fast pipeline a few percent). The metrics
// package's handler-time histogram reads it.
func WithHandlerTiming() Option {
	return func(o *options) error {
		o.used |= oHandlerTiming
		o.handlerTiming = true
		return nil
	}
}

// WithLogger sets the logger for handler errors, recovered panics, dead
// messages and dropped malformed input (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return optErr("WithLogger: nil logger")
		}
		o.used |= oLogger
		o.logger = l
		return nil
	}
}
