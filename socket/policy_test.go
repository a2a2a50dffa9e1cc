package socket

import (
	"bytes"
	"errors"
	"github.com/zpeer/zpeer/internal/eventlog"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4/security/plain"
)

// Security options fail closed: one the socket cannot enforce is an error
// that says what is missing, never ignored.
func TestSecurityOptionsFailClosed(t *testing.T) {
	kp, _ := NewKeyPair()
	ks := NewKeySet(kp.Public)
	users := PlainUsers{"u": "p"}
	auth := AuthFunc(func(*AuthRequest) error { return nil })
	lookup := func(string) (Key, bool) { return kp.Public, true }
	refused := []struct {
		name string
		typ  Type
		opts []Option
		want string
	}{
		{"trust on a NULL socket", PULL, []Option{WithTrust(ks)}, "WithCurveServer"},
		{"trust on a PLAIN socket", PULL, []Option{WithSecurity(plain.Security("u", "p")), WithTrust(ks)}, "WithCurveServer"},
		{"trust on a CURVE client", PUSH, []Option{WithCurveClient(kp.Public, KeyPair{}), WithTrust(ks)}, "CURVE client"},
		{"trust, then the server role taken back", PULL, []Option{WithCurveServer(kp.Secret), WithTrust(ks), WithCurveClientKey(KeyPair{})}, "WithTrust"},
		{"users on a NULL socket", REP, []Option{WithPlainUsers(users)}, "plain.Security"},
		{"users on a CURVE server", REP, []Option{WithCurveServer(kp.Secret), WithPlainUsers(users)}, "CURVE server"},
		{"authenticator on a CURVE client", REQ, []Option{WithCurveClient(kp.Public, KeyPair{}), WithAuthenticator(auth)}, "CURVE client"},
		{"server keys on a NULL socket", REQ, []Option{WithCurveServerKeys(lookup)}, "WithCurveClientKey"},
		{"server keys on a CURVE server", REQ, []Option{WithCurveServer(kp.Secret), WithCurveServerKeys(lookup)}, "CURVE server"},
		{"CURVE and PLAIN", REP, []Option{WithCurveServer(kp.Secret), WithSecurity(plain.Security("u", "p"))}, "exclusive"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.typ, tc.opts...)
			if err == nil {
				s.Close()
				t.Fatal("New accepted it")
			}
			if !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want ErrOption naming %q", err, tc.want)
			}
		})
	}
	// What each can enforce is accepted.
	for name, opts := range map[string][]Option{
		"CURVE server with trust and an authenticator": {WithCurveServer(kp.Secret), WithTrust(ks), WithAuthenticator(auth)},
		"PLAIN server with users":                      {WithSecurity(plain.Security("", "")), WithPlainUsers(users)},
		"NULL server with an authenticator":            {WithAuthenticator(auth)},
		"CURVE client with server keys":                {WithCurveClientKey(KeyPair{}), WithCurveServerKeys(lookup)},
	} {
		s, err := New(REP, opts...)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		s.Close()
	}
}

// A NULL or PLAIN socket checks (user table, Authenticator) only the peers
// it accepts: it refuses to dial one that would skip them. No security
// option applies to inproc, which has no handshake.
func TestSecurityOptionsRefuseWhatSkipsThem(t *testing.T) {
	kp, _ := NewKeyPair()
	auth := AuthFunc(func(*AuthRequest) error { return nil })
	null := newSock(t, REP, WithAuthenticator(auth))
	if err := null.Connect("tcp://127.0.0.1:1"); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "WithAuthenticator") {
		t.Errorf("Connect with an authenticator: %v", err)
	}
	pl := newSock(t, REP, WithSecurity(plain.Security("", "")), WithPlainUsers(PlainUsers{"u": "p"}))
	if err := pl.Connect("tcp://127.0.0.1:1"); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "WithPlainUsers") {
		t.Errorf("Connect with a user table: %v", err)
	}
	srv := newSock(t, REP, WithCurveServer(kp.Secret), WithTrust(NewKeySet()))
	if _, err := srv.Bind("inproc://policy-curve"); !errors.Is(err, ErrEndpoint) {
		t.Errorf("inproc Bind on a CURVE server: %v", err)
	}
	if err := srv.Connect("inproc://policy-curve"); !errors.Is(err, ErrEndpoint) {
		t.Errorf("inproc Connect on a CURVE server: %v", err)
	}
	// A CURVE server checks every connection, dialled ones too.
	if err := srv.Connect("tcp://127.0.0.1:1"); err != nil {
		t.Errorf("Connect on a CURVE server: %v", err)
	}
}

// logRecords is a slog handler that keeps what it is given.
type logRecords struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logRecords) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{l}, &slog.HandlerOptions{Level: level}))
}

type lockedWriter struct{ l *logRecords }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	return w.l.buf.Write(p)
}

func (l *logRecords) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// rejectedErrs returns the errors of the rejections logged so far.
func (l *eventLog) rejectedErrs() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []error
	for _, ev := range l.evs {
		if ev.Kind == EventRejected {
			out = append(out, ev.Err)
		}
	}
	return out
}

// waitRefused waits for the first refusal by the peer among l's events.
func waitRefused(t *testing.T, s *Socket, l *eventLog) *RefusedError {
	t.Helper()
	var ref *RefusedError
	waitFor(t, "a refusal by the peer", func() bool {
		for _, err := range l.rejectedErrs() {
			if errors.As(err, &ref) {
				return true
			}
		}
		return false
	})
	if !errors.Is(ref, ErrRefused) {
		t.Errorf("%v does not wrap ErrRefused", ref)
	}
	if s.Stats().Refused == 0 {
		t.Error("Stats.Refused is 0")
	}
	return ref
}

// A refused client learns why (the server's reason, as a RefusedError,
// counted), and the server logs the refusal with the client's address.
func TestRefusedClientLearnsWhy(t *testing.T) {
	srvLog := &logRecords{}
	skp, _ := NewKeyPair()
	good, _ := NewKeyPair()
	bad, _ := NewKeyPair()
	srv := newSock(t, REP, WithCurveServer(skp.Secret), WithTrust(NewKeySet(good.Public)), WithLogger(srvLog.logger(slog.LevelWarn)))
	ep := bind(t, srv)
	cases := []struct {
		name string
		opts []Option
		want string // in the client's RefusedError
		log  string // in the server's warning
	}{
		{"untrusted key", []Option{WithCurveClient(skp.Public, bad)}, "client key " + bad.Public.String() + " is not trusted", "is not trusted"},
		{"NULL client", nil, "mechanism mismatch: the peer speaks CURVE, this socket NULL", `mechanism mismatch: peer offers \"NULL\"`},
		{"PLAIN client", []Option{WithSecurity(plain.Security("u", "p"))}, "mechanism mismatch: the peer speaks CURVE, this socket PLAIN", `peer offers \"PLAIN\"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := &eventLog{}
			c := newSock(t, REQ, append(tc.opts, WithEventHandler(log.add))...)
			connect(t, c, ep)
			ref := waitRefused(t, c, log)
			if !strings.Contains(ref.Reason, tc.want) {
				t.Errorf("client's reason %q, want %q", ref.Reason, tc.want)
			}
			c.Close()
			waitFor(t, "the server's log line", func() bool {
				for _, l := range srvLog.lines(tc.log) {
					if strings.Contains(l, "level=WARN") && strings.Contains(l, eventlog.HandshakeRefused) && strings.Contains(l, "remote=127.0.0.1:") {
						return true
					}
				}
				return false
			})
		})
	}
}

// The other way round: a CURVE client meeting a NULL server, and a PLAIN
// client whose user the server does not know.
func TestRefusedByNullAndPlainServers(t *testing.T) {
	null := newSock(t, REP)
	ep := bind(t, null)
	kp, _ := NewKeyPair()
	log := &eventLog{}
	c := newSock(t, REQ, WithCurveClient(kp.Public, KeyPair{}), WithEventHandler(log.add))
	connect(t, c, ep)
	if ref := waitRefused(t, c, log); !strings.Contains(ref.Reason, "mechanism mismatch: the peer speaks NULL, this socket CURVE") {
		t.Errorf("CURVE client's reason %q", ref.Reason)
	}

	pl := newSock(t, REP, WithSecurity(plain.Security("", "")), WithPlainUsers(PlainUsers{"alice": "s3cret"}))
	ep = bind(t, pl)
	log = &eventLog{}
	c = newSock(t, REQ, WithSecurity(plain.Security("alice", "guess")), WithEventHandler(log.add))
	connect(t, c, ep)
	if ref := waitRefused(t, c, log); !strings.Contains(ref.Reason, `user "alice": bad user name or password`) {
		t.Errorf("PLAIN client's reason %q", ref.Reason)
	}
}

// A server's refusal log is rate-limited (internal/eventlog's limit): many
// refused clients at once, at most the burst logged.
func TestRefusalLogIsRateLimited(t *testing.T) {
	// On a socket: many refused clients, at most the burst logged at once.
	skp, _ := NewKeyPair()
	recs := &logRecords{}
	srv := newSock(t, PULL, WithCurveServer(skp.Secret), WithTrust(NewKeySet()), WithLogger(recs.logger(slog.LevelInfo)))
	ep := bind(t, srv)
	const n = 3 * eventlog.Burst
	for range n {
		c := newSock(t, PUSH, WithCurveClient(skp.Public, KeyPair{}), WithReconnect(time.Hour, time.Hour))
		connect(t, c, ep)
	}
	waitFor(t, "every client refused", func() bool { return srv.Stats().Rejected >= n })
	if got := len(recs.lines(eventlog.HandshakeRefused)); got < eventlog.Burst || got >= n {
		t.Errorf("%d refusals logged for %d, want the burst (%d) and a few", got, n, eventlog.Burst)
	}
}

// Removing a key from a server's trusted keys closes that key's sessions
// at once (within a second); its reconnections are refused, and the other
// clients stay.
func TestRevokedKeyClosesSession(t *testing.T) {
	skp, _ := NewKeyPair()
	alice, _ := NewKeyPair()
	bob, _ := NewKeyPair()
	ks := NewKeySet(alice.Public, bob.Public)
	recs := &logRecords{}
	srv := newSock(t, ROUTER, WithCurveServer(skp.Secret), WithTrust(ks), WithLogger(recs.logger(slog.LevelWarn)))
	ep := bind(t, srv)
	clients := map[string]*Socket{}
	logs := map[string]*eventLog{}
	for name, kp := range map[string]KeyPair{"alice": alice, "bob": bob} {
		logs[name] = &eventLog{}
		clients[name] = newSock(t, DEALER, WithCurveClient(skp.Public, kp), WithEventHandler(logs[name].add),
			WithReconnect(20*time.Millisecond, 50*time.Millisecond))
		connect(t, clients[name], ep)
	}
	waitPeers(t, srv, 2)
	waitPeers(t, clients["alice"], 1)
	waitPeers(t, clients["bob"], 1)

	mark := logs["alice"].mark()
	removed := time.Now()
	ks.Remove(alice.Public)
	var closed Event
	waitFor(t, "alice's session closed", func() bool {
		logs["alice"].mu.Lock()
		defer logs["alice"].mu.Unlock()
		for _, ev := range logs["alice"].evs[mark:] {
			if ev.Kind == EventDisconnected {
				closed = ev
				return true
			}
		}
		return false
	})
	d := closed.Time.Sub(removed)
	if d > time.Second {
		t.Errorf("alice's session closed %v after the removal, want within a second", d)
	}
	t.Logf("the revoked session closed %v after the removal", d)
	waitFor(t, "the server's log of the revocation", func() bool {
		return len(recs.lines("was removed from the trusted keys")) > 0
	})
	// She is refused from then on, with the reason; bob is still served.
	ref := waitRefused(t, clients["alice"], logs["alice"])
	if !strings.Contains(ref.Reason, "is not trusted") {
		t.Errorf("alice's reason %q", ref.Reason)
	}
	if clients["bob"].Peers() != 1 || srv.Peers() != 1 {
		t.Fatalf("bob %d peers, server %d, want 1 and 1", clients["bob"].Peers(), srv.Peers())
	}
	if err := clients["bob"].Send(ctxT(t), Msg{Frames: [][]byte{[]byte("hi")}}); err != nil {
		t.Fatal(err)
	}
	m, err := srv.Recv(ctxT(t))
	if err != nil || string(m.Frames[1]) != "hi" {
		t.Fatalf("server got %v, %v", m.Frames, err)
	}
	// Trusted again: she gets back in.
	ks.Add(alice.Public)
	waitPeers(t, clients["alice"], 1)
	if clients["alice"].Stats().Connects < 2 {
		t.Error("alice did not reconnect")
	}
}
