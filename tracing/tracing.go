// Package tracing traces zpeer's messages with OpenTelemetry.
//
// New returns a pattern.Tracer: give it to a pattern role with
// pattern.WithTracer and the role starts a span for every message it sends
// (Push, Publish, Request, a Replier's reply) and every handler it runs,
// carrying W3C trace context (traceparent, tracestate) in the envelope's
// headers so that the receiving peer's spans join the sender's trace:
//
//	tr := tracing.New() // the global TracerProvider and propagator
//	req, err := pattern.NewRequester[Q, A](pattern.WithService("orders"), pattern.WithTracer(tr))
//
// Spans follow OpenTelemetry's messaging semantic conventions, named
// "{operation} {destination}": a PRODUCER span around each send ("push",
// "publish", "request", "reply"), a CONSUMER span "process" around each
// handler (its parent is the sender's span, so one request or job is one
// trace across peers), a CLIENT span "receive" when a Requester's reply
// arrives and "ack" (operation type settle) when an acked Puller
// acknowledges a job;
// messaging.system is "zpeer", with messaging.operation.type and .name,
// messaging.destination.name (the topic or the discovery service; else
// messaging.destination.anonymous), messaging.message.id and error.type.
// A handler's context carries its span: spans it starts are children.
//
// A Subscriber has no handler: Extract gives a received message's trace
// context to the code that processes it.
//
// The package lives beside the core: the library packages do not link
// OpenTelemetry unless a program imports this one, and a pattern without
// WithTracer pays one nil check per message.
package tracing

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/zpeer/zpeer/pattern"
)

// ScopeName is the instrumentation scope of zpeer's spans.
const ScopeName = "github.com/zpeer/zpeer/tracing"

// System is the value of messaging.system on zpeer's spans.
const System = "zpeer"

// Option configures New.
type Option func(*Tracer)

// WithTracerProvider sets the TracerProvider spans come from (default: the
// global one, otel.GetTracerProvider, read at each span).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(t *Tracer) { t.tp = tp }
}

// WithPropagator sets how trace context travels in envelope headers
// (default: W3C trace context and baggage).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(t *Tracer) { t.prop = p }
}

// Tracer implements pattern.Tracer with OpenTelemetry.
type Tracer struct {
	tp   trace.TracerProvider // nil: the global provider
	prop propagation.TextMapPropagator
}

var _ pattern.Tracer = (*Tracer)(nil)

// New returns a Tracer.
func New(opts ...Option) *Tracer {
	t := &Tracer{prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	for _, o := range opts {
		if o != nil {
			o(t)
		}
	}
	return t
}

func (t *Tracer) tracer() trace.Tracer {
	tp := t.tp
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(ScopeName)
}

// operation names per role and kind: what the role does, in the
// messaging.operation.name attribute.
func opName(op pattern.Operation) string {
	switch op.Kind {
	case pattern.OpSend:
		switch op.Role {
		case "pusher":
			return "push"
		case "publisher":
			return "publish"
		case "requester":
			return "request"
		case "replier":
			return "reply"
		}
		return "send"
	case pattern.OpSettle:
		return "ack"
	}
	return op.Kind.String()
}

// Start implements pattern.Tracer.
func (t *Tracer) Start(ctx context.Context, op pattern.Operation, c pattern.Carrier) (context.Context, func(error)) {
	var kind trace.SpanKind
	var opType attribute.KeyValue
	switch op.Kind {
	case pattern.OpSend:
		kind, opType = trace.SpanKindProducer, semconv.MessagingOperationTypeSend
	case pattern.OpProcess:
		kind, opType = trace.SpanKindConsumer, semconv.MessagingOperationTypeProcess
		ctx = t.prop.Extract(ctx, c)
	case pattern.OpReceive:
		kind, opType = trace.SpanKindClient, semconv.MessagingOperationTypeReceive
		ctx = t.prop.Extract(ctx, c)
	case pattern.OpSettle:
		kind, opType = trace.SpanKindClient, semconv.MessagingOperationTypeSettle
	default:
		return ctx, func(error) {}
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(System),
		opType,
		semconv.MessagingOperationName(opName(op)),
		attribute.String("zpeer.role", op.Role),
	}
	name := opName(op)
	if op.Destination != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(op.Destination))
		name += " " + op.Destination
	} else {
		attrs = append(attrs, semconv.MessagingDestinationAnonymous(true))
	}
	if !op.MessageID.IsZero() {
		attrs = append(attrs, semconv.MessagingMessageID(op.MessageID.String()))
	}
	ctx, span := t.tracer().Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	if op.Kind == pattern.OpSend {
		t.prop.Inject(ctx, c)
	}
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		}
		span.End()
	}
}

// Extract returns ctx with the trace context of a received message's
// headers (pattern.Message.Headers), for code that processes a message a
// Subscriber returned: spans started from it join the publisher's trace.
func (t *Tracer) Extract(ctx context.Context, headers map[string]string) context.Context {
	return t.prop.Extract(ctx, propagation.MapCarrier(headers))
}

// errorType is the low-cardinality error.type of err: the name of the
// pattern error it wraps, or "_OTHER".
func errorType(err error) string {
	var re *pattern.RemoteError
	switch {
	case errors.As(err, &re):
		return "remote_error"
	case errors.Is(err, pattern.ErrTimeout):
		return "timeout"
	case errors.Is(err, pattern.ErrClosed):
		return "closed"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	return "_OTHER"
}
