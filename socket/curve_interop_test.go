package socket

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CURVE interop with libzmq 4.3 through pyzmq, both directions, for every
// pattern. Two sets of certificates: "py" written by pyzmq's
// zmq.auth.create_certificates and read by zpeer, "go" written by zpeer's
// WriteCertificate and read by pyzmq. When zpeer is the CURVE server it
// uses the py set; when libzmq is, the go set. Each server trusts only the
// client certificate of its set (zpeer: WithTrust; libzmq: ZAP through
// zmq.auth's ThreadAuthenticator).

type curveCerts struct {
	dir string
	// paths, per set ("py", "go"): NAME.key and NAME.key_secret
	serverPub, serverSec, clientPub, clientSec string
	trustDir                                   string // holds the client's public certificate only
}

func needCurve(t *testing.T) {
	t.Helper()
	needPython(t)
	out, err := exec.Command(pyPath, "-c", "import zmq; print(zmq.has('curve'))").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "True" {
		t.Skipf("interop: libzmq without CURVE (%v: %s)", err, out)
	}
}

// pyCerts has pyzmq write server and client certificates into a fresh
// directory.
func pyCerts(t *testing.T) curveCerts {
	t.Helper()
	needCurve(t)
	dir := t.TempDir()
	out, err := exec.Command(pyPath, "-c", `import sys, zmq.auth
for n in ("server", "client"): zmq.auth.create_certificates(sys.argv[1], n)`, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("create_certificates: %v: %s", err, out)
	}
	return certSet(t, dir)
}

// goCerts has zpeer write server and client certificates.
func goCerts(t *testing.T) curveCerts {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"server", "client"} {
		c, err := NewCertificate(map[string]string{"name": n})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := WriteCertificate(filepath.Join(dir, n), c); err != nil {
			t.Fatal(err)
		}
	}
	return certSet(t, dir)
}

func certSet(t *testing.T, dir string) curveCerts {
	t.Helper()
	c := curveCerts{
		dir:       dir,
		serverPub: filepath.Join(dir, "server.key"), serverSec: filepath.Join(dir, "server.key_secret"),
		clientPub: filepath.Join(dir, "client.key"), clientSec: filepath.Join(dir, "client.key_secret"),
		trustDir: filepath.Join(dir, "trusted"),
	}
	if err := os.Mkdir(c.trustDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(c.clientPub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.trustDir, "client.key"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// readSecret reads a secret certificate, first making it private: pyzmq
// writes secret files with the umask's permissions, which ReadCertificate
// refuses when the group or others may read them.
func readSecret(t *testing.T, path string) Certificate {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if _, err := ReadCertificate(path); !errors.Is(err, ErrCertificate) || !strings.Contains(err.Error(), "too open") {
			t.Fatalf("reading %s with mode %04o: %v, want a too-open refusal", path, fi.Mode().Perm(), err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := ReadCertificate(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// zpeerServerOpts makes a zpeer CURVE server from a set, trusting its client.
func zpeerServerOpts(t *testing.T, c curveCerts) []Option {
	t.Helper()
	srv := readSecret(t, c.serverSec)
	trust, err := LoadTrust(c.trustDir)
	if err != nil || trust.Len() != 1 {
		t.Fatalf("LoadTrust: %v (%d keys)", err, trust.Len())
	}
	return []Option{WithCurveServer(srv.Secret), WithTrust(trust)}
}

// zpeerClientOpts makes a zpeer CURVE client from a set.
func zpeerClientOpts(t *testing.T, c curveCerts) []Option {
	t.Helper()
	server, err := ReadServerKey(c.serverPub)
	if err != nil {
		t.Fatal(err)
	}
	cli := readSecret(t, c.clientSec)
	return []Option{WithCurveClient(server, cli.KeyPair())}
}

func pyServerArgs(c curveCerts) []string {
	return []string{"--curve-cert", c.serverSec, "--curve-trust", c.trustDir}
}

func pyClientArgs(c curveCerts) []string {
	return []string{"--curve-cert", c.clientSec, "--curve-server-cert", c.serverPub}
}

func TestCurveInteropReqToLibzmqRep(t *testing.T) {
	c := goCerts(t)
	reqToLibzmqRep(t, 20, pyServerArgs(c), zpeerClientOpts(t, c)...)
}

func TestCurveInteropLibzmqReqToRep(t *testing.T) {
	c := pyCerts(t)
	libzmqReqToRep(t, 20, pyClientArgs(c), zpeerServerOpts(t, c)...)
}

func TestCurveInteropPushToLibzmqPull(t *testing.T) {
	c := goCerts(t)
	py := startPy(t, append([]string{"pull", "--bind", "tcp://127.0.0.1:*", "--count", "200", "--specials"}, pyServerArgs(c)...)...)
	ep := py.expect(t, "bound").Endpoint
	push := newSock(t, PUSH, zpeerClientOpts(t, c)...)
	connect(t, push, ep)
	for _, m := range interopMsgs(200, true) {
		sendMsg(t, push, m)
	}
	py.done(t, 203)
}

func TestCurveInteropLibzmqPushToPull(t *testing.T) {
	c := pyCerts(t)
	libzmqPushToPull(t, 200, pyClientArgs(c), zpeerServerOpts(t, c)...)
}

// TestCurveInteropPubToLibzmqSub: the libzmq SUB's subscriptions reach the
// zpeer PUB inside MESSAGE boxes, and the PUB filters by them.
func TestCurveInteropPubToLibzmqSub(t *testing.T) {
	const count = 50
	c := pyCerts(t)
	pub := newSock(t, PUB, zpeerServerOpts(t, c)...)
	ep := bind(t, pub)
	sub := startPy(t, append([]string{"sub", "--connect", ep, "--topics", "alpha,gamma"}, pyClientArgs(c)...)...)
	topics := []string{"alpha", "beta", "gamma"}
	waitPeers(t, pub, 1)
	deadline := time.Now().Add(20 * time.Second)
	for synced := false; !synced; {
		if time.Now().After(deadline) {
			t.Fatal("subscriber never synced")
		}
		for _, tp := range topics {
			sendMsg(t, pub, NewMsgString(tp, "sync"))
		}
		_, synced = sub.next(t, "synced", 5*time.Millisecond)
	}
	before := pub.Stats().MsgsOut
	for i := range count {
		for _, tp := range topics {
			sendMsg(t, pub, NewMsgString(tp, strconv.Itoa(i)))
		}
	}
	for _, tp := range topics {
		sendMsg(t, pub, NewMsg([]byte(tp), []byte{}, bigFrameMiB()))
		sendMsg(t, pub, NewMsgString(tp, "end"))
	}
	ev := sub.done(t, 2*(count+1))
	if ev.Counts["alpha"] != count+1 || ev.Counts["gamma"] != count+1 || len(ev.Foreign) > 0 {
		t.Errorf("subscriber counts %v foreign %d", ev.Counts, len(ev.Foreign))
	}
	waitFor(t, "subscriber gone", func() bool { return pub.Stats().Disconnects == 1 })
	if got, want := pub.Stats().MsgsOut-before, uint64(2*(count+2)); got != want {
		t.Errorf("PUB sent %d messages after syncing, want %d (filtered by the encrypted subscriptions)", got, want)
	}
}

func TestCurveInteropLibzmqPubToSub(t *testing.T) {
	const count = 50
	c := goCerts(t)
	py := startPy(t, append([]string{"pub", "--bind", "tcp://127.0.0.1:*", "--count", strconv.Itoa(count), "--topics", "alpha,beta"}, pyServerArgs(c)...)...)
	ep := py.expect(t, "bound").Endpoint
	sub := newSock(t, SUB, zpeerClientOpts(t, c)...)
	sub.Subscribe("alpha")
	connect(t, sub, ep)
	recvMsg(t, sub) // a sync message: the subscription arrived
	if _, err := py.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		m := recvMsg(t, sub)
		if string(m.Frames[0]) != "alpha" {
			t.Fatalf("SUB got topic %q", m.Frames[0])
		}
		if len(m.Frames) == 2 && string(m.Frames[1]) == "end" {
			break
		}
		if len(m.Frames) == 2 && string(m.Frames[1]) == "sync" {
			continue
		}
		n++
	}
	if n != count+1 {
		t.Errorf("SUB got %d alpha messages, want %d", n, count+1)
	}
	py.done(t, -1)
}

func TestCurveInteropDealerToLibzmqRouter(t *testing.T) {
	c := goCerts(t)
	py := startPy(t, append([]string{"router", "--bind", "tcp://127.0.0.1:*", "--count", "20", "--specials", "--expect-id", "go-dealer"}, pyServerArgs(c)...)...)
	ep := py.expect(t, "bound").Endpoint
	dealer := newSock(t, DEALER, append(zpeerClientOpts(t, c), WithIdentity([]byte("go-dealer")))...)
	connect(t, dealer, ep)
	for i, m := range interopMsgs(20, true) {
		sendMsg(t, dealer, m)
		if got := recvMsg(t, dealer); !sameFrames(got.Frames, m.Frames) {
			t.Fatalf("echo %d = %s, want %s", i, showMsg(got), showMsg(m))
		}
	}
	py.done(t, 23)
}

func TestCurveInteropLibzmqDealerToRouter(t *testing.T) {
	c := pyCerts(t)
	router := newSock(t, ROUTER, zpeerServerOpts(t, c)...)
	ep := bind(t, router)
	py := startPy(t, append([]string{"dealer", "--connect", ep, "--identity", "py-dealer", "--count", "20", "--specials"}, pyClientArgs(c)...)...)
	for i, m := range interopMsgs(20, true) {
		got := recvMsg(t, router)
		if string(got.Frames[0]) != "py-dealer" || !sameFrames(got.Frames[1:], m.Frames) {
			t.Fatalf("message %d = %s", i, showMsg(got))
		}
		sendMsg(t, router, got)
	}
	py.done(t, 23)
}

// TestCurveInteropUntrustedLibzmqClient: a libzmq client whose key the
// zpeer server does not trust is refused with a reason and counted.
func TestCurveInteropUntrustedLibzmqClient(t *testing.T) {
	c := pyCerts(t)
	opts := zpeerServerOpts(t, c)
	opts = append(opts[:1], WithTrust(NewKeySet())) // trust nobody
	rep := newSock(t, REP, opts...)
	ep := bind(t, rep)
	startPy(t, append([]string{"req", "--connect", ep, "--count", "1"}, pyClientArgs(c)...)...)
	waitFor(t, "refusal", func() bool { return rep.Stats().Rejected > 0 })
	for {
		ev := <-rep.Events()
		if ev.Kind == EventRejected {
			if !errors.Is(ev.Err, ErrRefused) || !strings.Contains(ev.Err.Error(), "not trusted") {
				t.Fatalf("rejection reason %v", ev.Err)
			}
			break
		}
	}
	if rep.Peers() != 0 {
		t.Fatalf("untrusted peer attached")
	}
}

// TestCurveInteropHeartbeats: PINGs and PONGs travel inside MESSAGE boxes
// both ways. libzmq PINGs every 100 ms and drops us after a second without
// a PONG; we PING every 100 ms and drop it after a second of silence. Three
// idle seconds pass with no reconnect on either side.
func TestCurveInteropHeartbeats(t *testing.T) {
	c := goCerts(t)
	py := startPy(t, append([]string{"router", "--bind", "tcp://127.0.0.1:*", "--count", "2", "--hb-ivl", ms(hbIvl), "--hb-timeout", ms(hbTimeout)}, pyServerArgs(c)...)...)
	ep := py.expect(t, "bound").Endpoint
	dealer := newSock(t, DEALER, append(zpeerClientOpts(t, c), WithHeartbeat(hbIvl, hbTimeout))...)
	connect(t, dealer, ep)
	for i, m := range interopMsgs(2, false) {
		sendMsg(t, dealer, m)
		if got := recvMsg(t, dealer); !sameFrames(got.Frames, m.Frames) {
			t.Fatalf("echo %d = %s", i, showMsg(got))
		}
		if i == 0 {
			idleWithTraffic(t, dealer, hbIdle)
		}
	}
	if st := dealer.Stats(); st.Connects != 1 || st.Rejected != 0 {
		t.Errorf("connects=%d rejected=%d, want 1 and 0 (no reconnect while idle)", st.Connects, st.Rejected)
	}
	py.done(t, 2)
}

// TestCurveInteropLibzmqRefusals: a libzmq NULL client and a libzmq CURVE
// client expecting another server key are refused by a zpeer CURVE server,
// with a reason each, and a good libzmq client is served afterwards.
func TestCurveInteropLibzmqRefusals(t *testing.T) {
	c := pyCerts(t)
	other := pyCerts(t)
	log := &eventLog{}
	rep := newSock(t, REP, append(zpeerServerOpts(t, c), WithEventHandler(log.add))...)
	ep := bind(t, rep)
	for _, tc := range []struct {
		args   []string
		reason string
	}{
		// libzmq closes as soon as it reads our mechanism, before
		// sending its own.
		{nil, "may not speak CURVE"},
		{[]string{"--curve-cert", c.clientSec, "--curve-server-cert", other.serverPub}, "expects another server key"},
	} {
		mark := log.mark()
		py := startPy(t, append([]string{"req", "--connect", ep, "--count", "1"}, tc.args...)...)
		waitFor(t, tc.reason, func() bool {
			for _, r := range log.rejectedSince(mark) {
				if strings.Contains(r, tc.reason) {
					return true
				}
			}
			return false
		})
		py.cancel() // it would retry until its own time-out
		py.wait()
	}
	good := startPy(t, append([]string{"req", "--connect", ep, "--count", "3"}, pyClientArgs(c)...)...)
	for range 3 {
		m := recvMsg(t, rep)
		sendMsg(t, rep, m)
	}
	good.done(t, 3)
}
