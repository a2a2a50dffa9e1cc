package socket

import (
	"context"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
)

// newSock creates a socket closed at the end of the test.
func newSock(t testing.TB, typ Type, opts ...Option) *Socket {
	t.Helper()
	s, err := New(typ, opts...)
	if err != nil {
		t.Fatalf("New(%s): %v", typ, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// bind binds s to a free loopback port and returns the endpoint.
func bind(t testing.TB, s *Socket) string {
	t.Helper()
	ep, err := s.Bind("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	return ep
}

func connect(t testing.TB, s *Socket, ep string) {
	t.Helper()
	if err := s.Connect(ep); err != nil {
		t.Fatalf("Connect(%s): %v", ep, err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, cond)
}

func waitPeers(t testing.TB, s *Socket, n int) {
	t.Helper()
	waitFor(t, "peers", func() bool { return s.Peers() >= n })
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func recvString(t testing.TB, s *Socket) []string {
	t.Helper()
	m, err := s.Recv(ctxT(t))
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	out := make([]string, len(m.Frames))
	for i, f := range m.Frames {
		out[i] = string(f)
	}
	return out
}

func send(t testing.TB, s *Socket, frames ...string) {
	t.Helper()
	if err := s.Send(ctxT(t), NewMsgString(frames...)); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func allSubscribed(subs []*Socket) bool {
	for _, s := range subs {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := s.Recv(ctx)
		cancel()
		if err != nil {
			return false
		}
	}
	return true
}

func drainAll(s *Socket) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := s.Recv(ctx)
		cancel()
		if err != nil {
			return
		}
	}
}

func timeoutFor(n int) time.Duration { return 2*time.Second + time.Duration(n)*time.Microsecond }
