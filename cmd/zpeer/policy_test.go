package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/socket"
)

// One rule per security flag: a flag with nothing to apply to is a usage
// error, never ignored.
func TestSecurityFlagRules(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, other := keygen(t, dir, "server"), keygen(t, dir, "other")
	ep := closedPort(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"req", "--connect", ep, "--server-key", srv + ".key", "--trust", other + ".key", "x"}, "is not among the --trust keys"},
		{[]string{"req", "--connect", ep, "--trust", srv + ".key", "x"}, "needs --server-key (for --connect) or --discover"},
		{[]string{"pull", "--ack", "--connect", ep, "--trust", srv + ".key"}, "needs --server-key"},
		{[]string{"rep", "--bind", local, "--trust", other + ".key"}, "needs --key"},
	}
	for _, tc := range cases {
		_, stderr, code := zpeer(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("zpeer %s: exit %d, stderr %q; want a usage error saying %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	// The server key among the trusted ones: a client of that server.
	rep := start(t, "", "rep", "--bind", local, "--key", srv+".key_secret", "--count", "1")
	out, stderr, code := zpeer(t, "", "req", "--connect", rep.endpoint(), "--server-key", srv+".key", "--trust", srv+".key", "--trust", other+".key", "hello")
	if code != 0 || strings.TrimSpace(out) != "hello" {
		t.Fatalf("req --server-key K --trust K: exit %d, %q %q", code, out, stderr)
	}
	rep.mustSucceed()
}

// A refused client says why without -v, and the server logs the refusal
// with the client's address.
func TestRefusalShownWithoutVerbose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, cli, other := keygen(t, dir, "server"), keygen(t, dir, "client"), keygen(t, dir, "other")
	rep := start(t, "", "rep", "--bind", local, "--key", srv+".key_secret", "--trust", cli+".key", "--count", "1")
	ep := rep.endpoint()
	otherKey, _ := socket.ReadServerKey(other + ".key")

	_, stderr, code := zpeer(t, "", "req", "--connect", ep, "--server-key", srv+".key", "--key", other+".key_secret", "--timeout", "1s", "nope")
	if code != exitFailure || !strings.Contains(stderr, ep+" refused this req: client key "+otherKey.String()+" is not trusted") {
		t.Errorf("untrusted client: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = zpeer(t, "", "req", "--connect", ep, "--timeout", "1s", "nope")
	if code != exitFailure || !strings.Contains(stderr, "mechanism mismatch: the peer speaks CURVE, this socket NULL") {
		t.Errorf("NULL client: exit %d, stderr %q", code, stderr)
	}
	waitUntil(t, 10*time.Second, "the server's log of its refusals", func() bool {
		s := rep.stderr.String()
		return strings.Contains(s, "handshake refused at "+ep+" from 127.0.0.1:") && strings.Contains(s, otherKey.String()+" is not trusted") &&
			strings.Contains(s, "mechanism mismatch")
	})
	out, stderr, code := zpeer(t, "", "req", "--connect", ep, "--server-key", srv+".key", "--key", cli+".key_secret", "hello")
	if code != 0 || strings.TrimSpace(out) != "hello" {
		t.Fatalf("trusted client: exit %d, %q %q", code, out, stderr)
	}
	rep.mustSucceed()
}

// The acknowledged pipeline enforces the security flags too.
func TestAckPipelineIsSecured(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, cli := keygen(t, dir, "server"), keygen(t, dir, "client")
	push := start(t, "", "push", "--ack", "--bind", local, "--key", srv+".key_secret", "--trust", cli+".key", "--timeout", "30s", "job")
	ep := push.endpoint()
	_, stderr, code := zpeer(t, "", "pull", "--ack", "--connect", ep, "--timeout", "1s", "--count", "1")
	if code == 0 || !strings.Contains(stderr, "mechanism mismatch") {
		t.Fatalf("NULL pull --ack: exit %d, stderr %q", code, stderr)
	}
	out, stderr, code := zpeer(t, "", "pull", "--ack", "--connect", ep, "--server-key", srv+".key", "--key", cli+".key_secret", "--count", "1", "--timeout", "20s")
	if code != 0 || strings.TrimSpace(out) != "job" {
		t.Fatalf("trusted pull --ack: exit %d, %q %q", code, out, stderr)
	}
	push.mustSucceed()
}

// SIGHUP reloads --trust: a client whose certificate left the trust
// directory has its session closed at once, and the log says which keys
// came and went.
func TestTrustReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, cli, late := keygen(t, dir, "server"), keygen(t, dir, "client"), keygen(t, dir, "late")
	trustDir := filepath.Join(dir, "trusted")
	if err := os.Mkdir(trustDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, cli+".key", filepath.Join(trustDir, "client.key"))
	cliKey, _ := socket.ReadServerKey(cli + ".key")
	lateKey, _ := socket.ReadServerKey(late + ".key")

	pull := start(t, "", "pull", "--bind", local, "--key", srv+".key_secret", "--trust", trustDir, "--timeout", "60s")
	ep := pull.endpoint()
	push := start(t, nlines(3000), "push", "--connect", ep, "--server-key", srv+".key", "--key", cli+".key_secret",
		"--interval", "10ms", "--timeout", "60s")
	waitUntil(t, 20*time.Second, "the trusted client's messages", func() bool { return len(pull.lines()) >= 3 })

	os.Remove(filepath.Join(trustDir, "client.key"))
	copyFile(t, late+".key", filepath.Join(trustDir, "late.key"))
	pull.signal(syscall.SIGHUP)
	waitUntil(t, 10*time.Second, "the reload's log line", func() bool {
		return strings.Contains(pull.stderr.String(), "SIGHUP: --trust reloaded, 1 keys: added "+lateKey.String()+"; removed "+cliKey.String())
	})
	waitUntil(t, 10*time.Second, "the revoked session closed", func() bool {
		return strings.Contains(pull.stderr.String(), "session revoked at "+ep+" from 127.0.0.1:") &&
			strings.Contains(pull.stderr.String(), "client key "+cliKey.String()+" was removed from the trusted keys")
	})
	// Its reconnections are refused, and it is told why.
	waitUntil(t, 10*time.Second, "the client told it is refused", func() bool {
		return strings.Contains(push.stderr.String(), ep+" refused this push: client key "+cliKey.String()+" is not trusted")
	})
	n := len(pull.lines())
	push.signal(syscall.SIGTERM)
	push.wait()
	if got := len(pull.lines()); got != n {
		t.Errorf("the pull received %d messages after the revocation", got-n)
	}
	pull.signal(syscall.SIGTERM)
	pull.wait()
	if strings.Contains(pull.stderr.String(), "panic") {
		t.Fatalf("stderr: %s", pull.stderr.String())
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
