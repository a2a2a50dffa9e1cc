package pattern

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/socket"
)

func TestCurveExplicitEndpoints(t *testing.T) {
	server, _ := socket.NewKeyPair()
	client, _ := socket.NewKeyPair()
	stranger, _ := socket.NewKeyPair()
	rp := newAdder(t, WithKey(server), WithTrust(socket.NewKeySet(client.Public)))

	rq, err := NewRequester[addReq, addResp](WithConnect(ep(t, rp)), WithServerKey(server.Public), WithKey(client))
	rq = cleanup(t, rq, err)
	got, err := rq.Request(ctxT(t), addReq{40, 2})
	if err != nil || got.Sum != 42 {
		t.Fatalf("trusted client: %v %v", got, err)
	}

	bad, err := NewRequester[addReq, addResp](WithConnect(ep(t, rp)), WithServerKey(server.Public), WithKey(stranger),
		WithTimeout(200*time.Millisecond), WithRetries(0))
	bad = cleanup(t, bad, err)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := bad.Request(ctx, addReq{1, 1}); err == nil {
		t.Fatal("an untrusted client got an answer")
	}
	if n := rp.Stats().Delivered; n != 1 {
		t.Fatalf("replier handled %d requests, want 1 (the trusted one)", n)
	}

	if _, err := NewRequester[addReq, addResp](WithBind(loopback), WithServerKey(server.Public)); err == nil {
		t.Error("WithServerKey on a binding pattern was accepted")
	}
}

// TestCurveServiceTrust: on lo, a trusted replier, an untrusted one and an
// impostor that announces the trusted key without holding its secret. A
// requester trusting one key sends every request to the trusted replier;
// the impostor receives nothing.
func TestCurveServiceTrust(t *testing.T) {
	svc := svcName("secure")
	lo := discovery.WithLoopback()
	fast := discovery.WithRefresh(200 * time.Millisecond)
	trusted, _ := socket.NewKeyPair()
	untrusted, _ := socket.NewKeyPair()
	var byTrusted, byUntrusted atomic.Int64
	handler := func(n *atomic.Int64) func(context.Context, addReq) (addResp, error) {
		return func(_ context.Context, r addReq) (addResp, error) { n.Add(1); return addResp{r.A + r.B}, nil }
	}
	rpA, err := NewReplier(handler(&byTrusted), WithBind(loopback), WithKey(trusted), WithService(svc, lo, node("a")))
	cleanup(t, rpA, err)
	rpB, err := NewReplier(handler(&byUntrusted), WithBind(loopback), WithKey(untrusted), WithService(svc, lo, node("b")))
	cleanup(t, rpB, err)

	// The impostor: a CURVE server with a key of its own that announces the
	// trusted key.
	own, _ := socket.NewKeyPair()
	imp, err := socket.New(socket.ROUTER, socket.WithCurveServer(own.Secret))
	imp = cleanup(t, imp, err)
	impEP, err := imp.Bind(loopback)
	if err != nil {
		t.Fatal(err)
	}
	ann, err := discovery.Announce(svc, "ROUTER", []string{impEP}, lo, node("imp"), discovery.WithCurveKey(trusted.Public.String()))
	cleanup(t, ann, err)

	rq, err := NewRequester[addReq, addResp](WithService(svc, lo, fast, node("req")), WithKey(socket.KeyPair{}),
		WithTrust(socket.NewKeySet(trusted.Public)), WithTimeout(time.Second))
	rq = cleanup(t, rq, err)
	waitFor(t, "the requester to reach the trusted replier", func() bool { return rq.Peers() == 1 })
	waitFor(t, "the impostor's handshake to fail", func() bool { return imp.Stats().Rejected > 0 })
	for i := range 20 {
		got, err := rq.Request(ctxT(t), addReq{i, 1})
		if err != nil || got.Sum != i+1 {
			t.Fatalf("request %d: %v %v", i, got, err)
		}
	}
	if byTrusted.Load() != 20 || byUntrusted.Load() != 0 {
		t.Fatalf("trusted handled %d, untrusted %d", byTrusted.Load(), byUntrusted.Load())
	}
	if st := imp.Stats(); st.MsgsIn != 0 || st.Connects != 0 {
		t.Fatalf("the impostor got %d messages over %d connections", st.MsgsIn, st.Connects)
	}
	if rq.Peers() != 1 {
		t.Fatalf("requester has %d peers", rq.Peers())
	}
}

// ServerKeys is the one rule for which discovered CURVE servers a client
// connects to (patterns and the CLI share it).
func TestServerKeysAdmit(t *testing.T) {
	a, _ := socket.NewKeyPair()
	b, _ := socket.NewKeyPair()
	tests := []struct {
		name   string
		server socket.Key
		trust  *socket.KeySet
		curve  string
		ok     bool
	}{
		{"any key", socket.Key{}, nil, a.Public.String(), true},
		{"no key", socket.Key{}, nil, "", false},
		{"bad key", socket.Key{}, nil, "not-z85", false},
		{"trusted", socket.Key{}, socket.NewKeySet(a.Public), a.Public.String(), true},
		{"untrusted", socket.Key{}, socket.NewKeySet(a.Public), b.Public.String(), false},
		{"the server key", a.Public, nil, a.Public.String(), true},
		{"another server", a.Public, nil, b.Public.String(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := NewServerKeys(tc.server, tc.trust)
			err := k.Admit(discovery.Peer{Instance: "p", Curve: tc.curve}, "tcp://127.0.0.1:1")
			got, found := k.Lookup("tcp://127.0.0.1:1")
			if tc.ok {
				if err != nil || !found || got.String() != tc.curve {
					t.Fatalf("Admit: %v; Lookup: %v %v", err, got, found)
				}
				return
			}
			// Not admitted: the endpoint has no key but the one given to
			// NewServerKeys (for endpoints named by hand).
			if !errors.Is(err, discovery.ErrDeclined) || (found && got != tc.server) {
				t.Fatalf("Admit: %v (want ErrDeclined); Lookup found %v %v", err, got, found)
			}
		})
	}
}
