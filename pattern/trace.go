package pattern

import (
	"context"
	"maps"
	"slices"

	"github.com/zpeer/zpeer/codec"
)

// Tracer is called around the messages a pattern sends and handles, so
// that a tracing system can follow one message across peers: the sender's
// Start may write a trace context into the envelope's headers, and the
// receiver's Start reads it back. Package github.com/zpeer/zpeer/tracing
// implements it with OpenTelemetry (W3C trace context, the messaging
// semantic conventions).
//
// Without WithTracer a pattern pays one nil check per message. Start runs
// on the caller's goroutine (Push, Publish, Request) or a worker's (a
// handler), never on an I/O goroutine; it must not block.
type Tracer interface {
	// Start begins the span of op and returns the context the operation
	// runs in (a handler receives it) and the function that ends the
	// span with the operation's outcome. For OpSend, c writes headers into
	// the message being sent; for OpProcess and OpReceive, c reads the
	// headers of the message received; for OpSettle it is empty.
	Start(ctx context.Context, op Operation, c Carrier) (context.Context, func(error))
}

// OpKind says what a traced operation does.
type OpKind uint8

// The traced operations.
const (
	// OpSend: Push, Publish and Request sending a message, and a Replier
	// sending its reply. The span ends when the call returns: for an
	// acked Push, once the Pusher has custody of the job; for a Request,
	// when the reply is there (so it spans the round trip).
	OpSend OpKind = iota + 1
	// OpProcess: a Replier's or a Puller's handler running on a message.
	OpProcess
	// OpReceive: a Requester's reply arriving (a point in time).
	OpReceive
	// OpSettle: an acked Puller acknowledging (or refusing) a job after
	// its handler returned; the ack is queued to the pusher.
	OpSettle
)

func (k OpKind) String() string {
	switch k {
	case OpSend:
		return "send"
	case OpProcess:
		return "process"
	case OpReceive:
		return "receive"
	case OpSettle:
		return "settle"
	}
	return "unknown"
}

// Operation describes a traced operation.
type Operation struct {
	Kind OpKind
	// Role is the pattern role doing it: "requester", "replier",
	// "publisher", "subscriber", "pusher" or "puller".
	Role string
	// Destination is the topic (Publisher) or the discovery service name
	// (WithService), or "" when the peers are reached by endpoint only.
	Destination string
	// MessageID is the envelope id, where it is known when the span
	// starts (all but a fire-and-forget Push, Publish and Request, which
	// give it an id while sending).
	MessageID codec.ID
}

// Carrier reads and writes a message's envelope headers. Its method set is
// that of OpenTelemetry's propagation.TextMapCarrier, so a propagator
// injects into and extracts from it directly.
type Carrier interface {
	Get(key string) string
	Set(key, value string)
	Keys() []string
}

// WithTracer makes the pattern call t around every message it sends and
// every handler it runs (see Tracer). A nil t is an error.
func WithTracer(t Tracer) Option {
	return func(o *options) error {
		if t == nil {
			return optErr("WithTracer: nil tracer")
		}
		o.used |= oTracer
		o.tracer = t
		return nil
	}
}

// headerCarrier collects the headers a Tracer sets on a message being sent.
type headerCarrier map[string]string

func (h headerCarrier) Get(k string) string { return h[k] }
func (h headerCarrier) Set(k, v string)     { h[k] = v }
func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// addTo adds the headers the Tracer set to dst (made if nil) and returns it.
func (h headerCarrier) addTo(dst map[string]string) map[string]string {
	if dst == nil && len(h) > 0 {
		dst = make(map[string]string, len(h))
	}
	maps.Copy(dst, h)
	return dst
}

// viewCarrier reads the headers of a received envelope; Set does nothing.
type viewCarrier struct{ v *codec.View }

func (c viewCarrier) Get(k string) string {
	b, _ := c.v.Header(k)
	return string(b)
}
func (viewCarrier) Set(string, string) {}
func (c viewCarrier) Keys() []string {
	keys := make([]string, 0, c.v.NumHeaders())
	for k := range c.v.Headers() {
		keys = append(keys, k)
	}
	return keys
}

// noCarrier is the empty Carrier of OpSettle.
type noCarrier struct{}

func (noCarrier) Get(string) string  { return "" }
func (noCarrier) Set(string, string) {}
func (noCarrier) Keys() []string     { return nil }

func nopEnd(error) {}

// startSend begins an OpSend span for a message sent with opts: it returns
// the context, opts with the tracer's headers added (a new slice: the
// caller's is not written to) and the end function. Without a tracer it
// returns its arguments and a no-op.
func (o *options) startSend(ctx context.Context, role, dest string, id codec.ID, opts []CallOption) (context.Context, []CallOption, func(error)) {
	if o.tracer == nil {
		return ctx, opts, nopEnd
	}
	h := headerCarrier{}
	ctx, end := o.tracer.Start(ctx, Operation{Kind: OpSend, Role: role, Destination: dest, MessageID: id}, h)
	if len(h) > 0 {
		opts = append(slices.Clip(opts), CallOption{kind: callHeaders, h: h})
	}
	return ctx, opts, end
}

// startRecv begins an OpProcess or OpReceive span for the received env.
// The carrier reads a copy of env, so that env itself (on the caller's
// stack) does not escape.
func (o *options) startRecv(ctx context.Context, kind OpKind, role string, env *codec.View) (context.Context, func(error)) {
	if o.tracer == nil {
		return ctx, nopEnd
	}
	v := *env
	return o.tracer.Start(ctx, Operation{Kind: kind, Role: role, Destination: o.service, MessageID: v.ID}, viewCarrier{&v})
}
