package tracing_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	ztest "github.com/zpeer/zpeer/internal/testutil"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/tracing"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const loopback = "tcp://127.0.0.1:0"

func recorder(t *testing.T) (*tracing.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tracing.New(tracing.WithTracerProvider(tp)), rec
}

// span finds the one ended span called name, failing the test otherwise.
func span(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans called %q, want 1 (all: %v)", len(found), name, names(rec))
	}
	return found[0]
}

func names(rec *tracetest.SpanRecorder) []string {
	var n []string
	for _, s := range rec.Ended() {
		n = append(n, s.Name())
	}
	return n
}

func attr(s sdktrace.ReadOnlySpan, k string) attribute.Value {
	for _, a := range s.Attributes() {
		if string(a.Key) == k {
			return a.Value
		}
	}
	return attribute.Value{}
}

// check asserts a span's kind, parent and messaging attributes.
func check(t *testing.T, s sdktrace.ReadOnlySpan, kind trace.SpanKind, parent sdktrace.ReadOnlySpan, opType, opName string) {
	t.Helper()
	if s.SpanKind() != kind {
		t.Errorf("%s: kind %v, want %v", s.Name(), s.SpanKind(), kind)
	}
	if parent == nil {
		if s.Parent().IsValid() {
			t.Errorf("%s: has a parent, want a root", s.Name())
		}
	} else if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("%s: parent %v, want %s's span %v (same trace)", s.Name(), s.Parent().SpanID(), parent.Name(), parent.SpanContext().SpanID())
	}
	for k, want := range map[string]string{
		"messaging.system": "zpeer", "messaging.operation.type": opType, "messaging.operation.name": opName,
	} {
		if got := attr(s, k).AsString(); got != want {
			t.Errorf("%s: %s = %q, want %q", s.Name(), k, got, want)
		}
	}
}

// TestRequestReplyTrace: one trace spans Requester -> Replier -> reply.
func TestRequestReplyTrace(t *testing.T) {
	tr, rec := recorder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	handlerSpan := make(chan trace.SpanContext, 1)
	rep, err := pattern.NewReplier(func(ctx context.Context, q string) (string, error) {
		handlerSpan <- trace.SpanContextFromContext(ctx)
		return q + "!", nil
	}, pattern.WithBind(loopback), pattern.WithTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	req, err := pattern.NewRequester[string, string](pattern.WithConnect(rep.Endpoints()[0]), pattern.WithTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	if got, err := req.Request(ctx, "hi"); err != nil || got != "hi!" {
		t.Fatalf("Request: %q %v", got, err)
	}
	// The replier's reply span ends after its Send returns, which can be
	// after the requester has the reply.
	ztest.Eventually(t, 10*time.Second, "four spans", func() bool { return len(rec.Ended()) == 4 })

	send := span(t, rec, "request")
	process := span(t, rec, "process")
	reply := span(t, rec, "reply")
	receive := span(t, rec, "receive")
	check(t, send, trace.SpanKindProducer, nil, "send", "request")
	check(t, process, trace.SpanKindConsumer, send, "process", "process")
	check(t, reply, trace.SpanKindProducer, process, "send", "reply")
	check(t, receive, trace.SpanKindClient, reply, "receive", "receive")
	if hs := <-handlerSpan; !hs.Equal(process.SpanContext()) {
		t.Errorf("the handler's context carries %v, want the process span %v", hs, process.SpanContext())
	}
	if !attr(send, "messaging.destination.anonymous").AsBool() {
		t.Errorf("request without a service: messaging.destination.anonymous not set")
	}
	if id := attr(process, "messaging.message.id").AsString(); id == "" {
		t.Errorf("process span without messaging.message.id")
	}
}

// TestAckedPipelineTrace: one trace spans Pusher -> Puller -> ack, and a
// failing handler's span records the error.
func TestAckedPipelineTrace(t *testing.T) {
	tr, rec := recorder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	push, err := pattern.NewPusher[string](pattern.WithBind(loopback), pattern.WithAck(), pattern.WithTracer(tr),
		pattern.WithMaxDeliveries(1))
	if err != nil {
		t.Fatal(err)
	}
	defer push.Close()
	pull, err := pattern.NewPuller(func(ctx context.Context, s string) error {
		if s == "bad" {
			return errors.New("no thanks")
		}
		return nil
	}, pattern.WithAck(), pattern.WithConnect(push.Endpoints()[0]), pattern.WithTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	if err := push.Push(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	if err := push.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	ztest.Eventually(t, 10*time.Second, "three spans", func() bool { return len(rec.Ended()) == 3 })
	send := span(t, rec, "push")
	process := span(t, rec, "process")
	ack := span(t, rec, "ack")
	check(t, send, trace.SpanKindProducer, nil, "send", "push")
	check(t, process, trace.SpanKindConsumer, send, "process", "process")
	check(t, ack, trace.SpanKindClient, process, "settle", "ack")
	if attr(send, "zpeer.role").AsString() != "pusher" || attr(process, "zpeer.role").AsString() != "puller" {
		t.Errorf("roles: %v, %v", attr(send, "zpeer.role"), attr(process, "zpeer.role"))
	}

	// A handler error: the process and ack spans say so.
	rec.Reset()
	if err := push.Push(ctx, "bad"); err != nil {
		t.Fatal(err)
	}
	ztest.Eventually(t, 10*time.Second, "three spans", func() bool { return len(rec.Ended()) == 3 })
	process = span(t, rec, "process")
	if process.Status().Code.String() != "Error" || process.Status().Description != "no thanks" {
		t.Errorf("failed handler's span status: %+v", process.Status())
	}
}

// TestPublishTraceAndExtract: a Publisher's span names the topic, and a
// subscriber's code joins the trace with Extract.
func TestPublishTraceAndExtract(t *testing.T) {
	tr, rec := recorder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, err := pattern.NewPublisher[string](pattern.WithBind(loopback), pattern.WithTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := pattern.NewSubscriber[string](pattern.WithConnect(pub.Endpoints()[0]), pattern.WithTopics("prices"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "prices.eur", "1.08"); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := span(t, rec, "publish prices.eur")
	check(t, send, trace.SpanKindProducer, nil, "send", "publish")
	if got := attr(send, "messaging.destination.name").AsString(); got != "prices.eur" {
		t.Errorf("destination %q", got)
	}
	got := trace.SpanContextFromContext(tr.Extract(context.Background(), m.Headers))
	if !got.IsRemote() || got.TraceID() != send.SpanContext().TraceID() || got.SpanID() != send.SpanContext().SpanID() {
		t.Errorf("Extract: %v, want the publish span %v", got, send.SpanContext())
	}
}

// TestNoTracerNoHeaders: without WithTracer nothing is added to envelopes.
func TestNoTracerNoHeaders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, err := pattern.NewPublisher[string](pattern.WithBind(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := pattern.NewSubscriber[string](pattern.WithConnect(pub.Endpoints()[0]), pattern.WithTopics(""))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "t", "x"); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Headers) != 0 {
		t.Errorf("headers without a tracer: %v", m.Headers)
	}
}
