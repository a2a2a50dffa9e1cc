package socket

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/go-zeromq/zmq4/security/plain"
)

func TestAddressFilters(t *testing.T) {
	cases := []struct {
		name   string
		opts   []Option
		reason string // "" when the client gets in
	}{
		{"deny loopback", []Option{WithDeny("127.0.0.0/8")}, "is denied"},
		{"allow elsewhere", []Option{WithAllow("10.0.0.0/8", "192.168.1.7")}, "not in the allow list"},
		{"allow this host", []Option{WithAllow("127.0.0.1")}, ""},
		{"deny wins", []Option{WithAllow("127.0.0.0/8"), WithDeny("127.0.0.1/32")}, "is denied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := &eventLog{}
			rep := newSock(t, REP, append(tc.opts, WithEventHandler(log.add))...)
			ep := bind(t, rep)
			req := newSock(t, REQ)
			connect(t, req, ep)
			if tc.reason == "" {
				waitPeers(t, rep, 1)
				return
			}
			waitFor(t, "refusal", func() bool {
				r := log.rejected()
				return len(r) > 0 && strings.Contains(r[0], tc.reason)
			})
			if st := rep.Stats(); rep.Peers() != 0 || st.Rejected == 0 || st.RejectedBy != (Rejections{Refused: st.Rejected}) {
				t.Fatalf("peers %d, rejected %d %+v, want all refused by access control", rep.Peers(), st.Rejected, st.RejectedBy)
			}
		})
	}
	if _, err := New(REP, WithAllow("not-an-address")); err == nil {
		t.Error("a malformed CIDR was accepted")
	}
}

func TestPlainUsers(t *testing.T) {
	log := &eventLog{}
	rep := newSock(t, REP, WithSecurity(plain.Security("", "")), WithPlainUsers(PlainUsers{"alice": "s3cret"}), WithEventHandler(log.add))
	ep := bind(t, rep)

	bad := newSock(t, REQ, WithSecurity(plain.Security("alice", "guess")))
	connect(t, bad, ep)
	waitFor(t, "refusal", func() bool {
		r := log.rejected()
		return len(r) > 0 && strings.Contains(r[0], "bad user name or password")
	})
	waitFor(t, "client told", func() bool { return bad.Stats().Rejected > 0 })
	bad.Close()

	good := newSock(t, REQ, WithSecurity(plain.Security("alice", "s3cret")))
	connect(t, good, ep)
	send(t, good, "hi")
	if got := recvString(t, rep); len(got) != 1 || got[0] != "hi" {
		t.Fatalf("got %q", got)
	}
}

func TestAuthenticatorSeesTheRequest(t *testing.T) {
	skp, _ := NewKeyPair()
	ckp, _ := NewKeyPair()
	var mu sync.Mutex
	var seen []AuthRequest
	auth := AuthFunc(func(r *AuthRequest) error {
		mu.Lock()
		seen = append(seen, *r)
		mu.Unlock()
		if string(r.Identity) == "mallory" {
			return errors.New("no mallory here")
		}
		return nil
	})
	log := &eventLog{}
	router := newSock(t, ROUTER, WithCurveServer(skp.Secret), WithAuthenticator(auth), WithEventHandler(log.add))
	ep := bind(t, router)

	m := newSock(t, DEALER, WithCurveClient(skp.Public, KeyPair{}), WithIdentity([]byte("mallory")))
	connect(t, m, ep)
	waitFor(t, "refusal", func() bool {
		r := log.rejected()
		return len(r) > 0 && strings.Contains(r[0], "no mallory here")
	})
	m.Close()

	d := newSock(t, DEALER, WithCurveClient(skp.Public, ckp), WithIdentity([]byte("dave")))
	connect(t, d, ep)
	send(t, d, "hello")
	if got := recvString(t, router); len(got) != 2 || got[0] != "dave" {
		t.Fatalf("router got %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	last := seen[len(seen)-1]
	if last.Mechanism != "CURVE" || last.ClientKey != ckp.Public || last.SocketType != ROUTER || last.PeerType != "DEALER" ||
		!strings.HasPrefix(last.Remote, "127.0.0.1:") || last.Endpoint != ep {
		t.Errorf("authenticator saw %+v", last)
	}
}

func TestAuthenticatorNULL(t *testing.T) {
	log := &eventLog{}
	rep := newSock(t, REP, WithAuthenticator(AuthFunc(func(r *AuthRequest) error {
		if r.Mechanism != "NULL" || r.PeerType != "REQ" {
			return errors.New("unexpected request")
		}
		if string(r.Identity) == "bad" {
			return errors.New("go away")
		}
		return nil
	})), WithEventHandler(log.add))
	ep := bind(t, rep)
	bad := newSock(t, REQ, WithIdentity([]byte("bad")))
	connect(t, bad, ep)
	waitFor(t, "refusal", func() bool {
		r := log.rejected()
		return len(r) > 0 && strings.Contains(r[0], "go away")
	})
	bad.Close()
	good := newSock(t, REQ)
	connect(t, good, ep)
	send(t, good, "hi")
	if got := recvString(t, rep); len(got) != 1 || got[0] != "hi" {
		t.Fatalf("got %q", got)
	}
}

// Bad security options fail New with ErrOption (and ErrKey for keys).
func TestSecurityOptionErrors(t *testing.T) {
	kp, _ := NewKeyPair()
	other, _ := NewKeyPair()
	cases := map[string][]Option{
		"zero server secret":    {WithCurveServer(SecretKey{})},
		"zero server key":       {WithCurveClient(Key{}, kp)},
		"mismatched pair":       {WithCurveClient(kp.Public, KeyPair{Public: other.Public, Secret: kp.Secret})},
		"nil trust":             {WithTrust(nil)},
		"nil users":             {WithPlainUsers(nil)},
		"nil authenticator":     {WithAuthenticator(nil)},
		"bad CIDR":              {WithAllow("10.0.0.0/33")},
		"CURVE and PLAIN":       {WithCurveServer(kp.Secret), WithSecurity(plain.Security("u", "p"))},
		"nil server key lookup": {WithCurveServerKeys(nil)},
	}
	for name, opts := range cases {
		if _, err := New(REP, opts...); !errors.Is(err, ErrOption) {
			t.Errorf("%s: %v, want ErrOption", name, err)
		}
	}
	if _, err := New(REP, WithCurveServer(SecretKey{})); !errors.Is(err, ErrKey) {
		t.Errorf("zero secret: %v, want ErrKey too", err)
	}
}
