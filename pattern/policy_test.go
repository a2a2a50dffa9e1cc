package pattern

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zpeer/zpeer/socket"
)

// A security option the pattern cannot enforce is an error, never ignored.
func TestPatternSecurityOptionsFailClosed(t *testing.T) {
	server, _ := socket.NewKeyPair()
	other, _ := socket.NewKeyPair()
	auth := socket.AuthFunc(func(*socket.AuthRequest) error { return nil })
	const ep = "tcp://127.0.0.1:1"
	cases := []struct {
		name string
		opts []Option
		want string
	}{
		{"server key not in the trust set", []Option{WithConnect(ep), WithServerKey(server.Public), WithTrust(socket.NewKeySet(other.Public))}, "not in the WithTrust set"},
		{"trust with explicit endpoints and no server key", []Option{WithConnect(ep), WithTrust(socket.NewKeySet(server.Public))}, "WithServerKey"},
		{"trust on a client without endpoints or discovery", []Option{WithTrust(socket.NewKeySet(server.Public))}, "WithServerKey"},
		{"a CURVE client's endpoint without a server key", []Option{WithConnect(ep), WithKey(socket.KeyPair{})}, "WithServerKey"},
		{"authenticator on a pattern that connects", []Option{WithConnect(ep), WithAuthenticator(auth)}, "binds"},
		{"authenticator on a CURVE client", []Option{WithConnect(ep), WithServerKey(server.Public), WithAuthenticator(auth)}, "binds"},
		{"server key on a pattern that binds", []Option{WithBind(loopback), WithServerKey(server.Public)}, "CURVE server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rq, err := NewRequester[addReq, addResp](tc.opts...)
			if err == nil {
				rq.Close()
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want ErrOption naming %q", err, tc.want)
			}
		})
	}
	// Socket options carrying security go through socket.New's checks.
	_, err := NewPuller(func(context.Context, addReq) error { return nil }, WithBind(loopback), WithSocketOptions(socket.WithTrust(socket.NewKeySet())))
	if !errors.Is(err, socket.ErrOption) {
		t.Errorf("socket.WithTrust on a NULL Puller: %v, want socket.ErrOption", err)
	}
	// A server key in the trust set, and trust with discovery, are fine.
	rq, err := NewRequester[addReq, addResp](WithConnect(ep), WithServerKey(server.Public), WithTrust(socket.NewKeySet(server.Public)))
	cleanup(t, rq, err)
}

// syncBuffer is a log destination tests read while the pattern writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A Requester the replier refuses learns why: its error wraps ErrRefused
// and carries the server's reason (the ERROR command's text), the refusal
// is counted, and the replier logs it with the client's address.
func TestRefusedRequesterLearnsWhy(t *testing.T) {
	server, _ := socket.NewKeyPair()
	client, _ := socket.NewKeyPair()
	stranger, _ := socket.NewKeyPair()
	var srvLog syncBuffer
	rp := newAdder(t, WithKey(server), WithTrust(socket.NewKeySet(client.Public)),
		WithLogger(slog.New(slog.NewTextHandler(&srvLog, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	cases := []struct {
		name string
		opts []Option
		want string
	}{
		{"untrusted key", []Option{WithServerKey(server.Public), WithKey(stranger)},
			"refused this Requester: client key " + stranger.Public.String() + " is not trusted"},
		{"NULL requester", nil, "refused this Requester: mechanism mismatch: the peer speaks CURVE, this socket NULL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Timeouts long enough that a refusal, not a timeout, ends the call.
			rq, err := NewRequester[addReq, addResp](append(tc.opts, WithConnect(ep(t, rp)), WithTimeout(5*time.Second), WithRetries(1))...)
			rq = cleanup(t, rq, err)
			start := time.Now()
			_, err = rq.Request(ctxT(t), addReq{1, 1})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Request: %v, want ErrRefused with %q", err, tc.want)
			}
			if errors.Is(err, ErrTimeout) || time.Since(start) >= 5*time.Second {
				t.Errorf("the refusal came as a timeout, after %v", time.Since(start))
			}
			if rq.Stats().Refused == 0 {
				t.Error("Stats.Refused is 0")
			}
			// Another request while still refused fails at once, the same way.
			if _, err := rq.Request(ctxT(t), addReq{1, 1}); !errors.Is(err, ErrRefused) {
				t.Errorf("second Request: %v", err)
			}
		})
	}
	waitFor(t, "the replier's log of its refusals", func() bool {
		s := srvLog.String()
		return strings.Contains(s, `msg="handshake refused"`) && strings.Contains(s, "is not trusted") &&
			strings.Contains(s, "mechanism mismatch") && strings.Contains(s, "remote=127.0.0.1:")
	})
	if rp.Stats().Delivered != 0 {
		t.Error("the replier handled a refused request")
	}
}

// A client's trusted servers are checked again at every reconnection: a
// server key taken out of the trust set is not connected to again, and is
// once it is back.
func TestServerTrustRecheckedOnReconnect(t *testing.T) {
	server, _ := socket.NewKeyPair()
	trust := socket.NewKeySet(server.Public)
	rp := newAdder(t, WithKey(server))
	addr := ep(t, rp)
	rq, err := NewRequester[addReq, addResp](WithConnect(addr), WithServerKey(server.Public), WithTrust(trust),
		WithTimeout(5*time.Second), WithRetries(0), WithSocketOptions(socket.WithReconnect(10*time.Millisecond, 50*time.Millisecond)))
	rq = cleanup(t, rq, err)
	if got, err := rq.Request(ctxT(t), addReq{2, 3}); err != nil || got.Sum != 5 {
		t.Fatalf("trusted: %v %v", got, err)
	}

	// The server restarts (same key, same address) after its key left
	// the trust set: the requester does not connect to it again.
	trust.Remove(server.Public)
	rp.Close()
	waitFor(t, "the requester to lose its replier", func() bool { return rq.Peers() == 0 })
	rp2 := newAdder(t, WithKey(server), WithBind(addr))
	_, err = rq.Request(ctxT(t), addReq{1, 1})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("Request to an untrusted server: %v, want ErrRefused saying not trusted", err)
	}
	if rq.Peers() != 0 || rp2.Stats().Delivered != 0 {
		t.Fatalf("the requester reconnected to a server it no longer trusts")
	}

	// Trusted again: the next attempt connects.
	trust.Add(server.Public)
	waitFor(t, "the requester to reconnect", func() bool { return rq.Peers() == 1 })
	if got, err := rq.Request(ctxT(t), addReq{3, 4}); err != nil || got.Sum != 7 {
		t.Fatalf("trusted again: %v %v", got, err)
	}
}
