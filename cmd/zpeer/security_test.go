package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/zpeer/zpeer/socket"
)

func TestKeygen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, stderr, code := zpeer(t, "", "keygen", "--dir", dir, "server")
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	c, err := socket.ReadCertificate(filepath.Join(dir, "server.key_secret"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != c.Public.String() || strings.Contains(out+stderr, c.Secret.Z85()) {
		t.Fatalf("keygen printed %q / %q", out, stderr)
	}
	fi, _ := os.Stat(filepath.Join(dir, "server.key_secret"))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v", fi.Mode().Perm())
	}
	if _, _, code := zpeer(t, "", "keygen", "--dir", dir, "server"); code != 2 {
		t.Fatalf("keygen over existing keys: exit %d, want a usage error", code)
	}
	if c2, err := socket.ReadCertificate(filepath.Join(dir, "server.key_secret")); err != nil || c2.Secret != c.Secret {
		t.Fatal("keygen overwrote a secret key")
	}
	out, _, code = zpeer(t, "", "keygen")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "public-key = ") || !strings.HasPrefix(lines[1], "secret-key = ") {
		t.Fatalf("keygen alone: %q", out)
	}
	pub, err1 := socket.ParseKey(strings.TrimPrefix(lines[0], "public-key = "))
	sec, err2 := socket.ParseSecretKey(strings.TrimPrefix(lines[1], "secret-key = "))
	if err1 != nil || err2 != nil || sec.Public() != pub {
		t.Fatalf("keygen alone printed a pair that does not belong together")
	}
}

func keygen(t *testing.T, dir, name string) string {
	t.Helper()
	if _, stderr, code := zpeer(t, "", "keygen", "--dir", dir, name); code != 0 {
		t.Fatalf("keygen %s: %s", name, stderr)
	}
	return filepath.Join(dir, name)
}

func TestCurveReqRep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, cli, other := keygen(t, dir, "server"), keygen(t, dir, "client"), keygen(t, dir, "other")
	rep := start(t, "", "rep", "--bind", local, "--key", srv+".key_secret", "--trust", cli+".key", "--count", "1", "-v")
	ep := rep.endpoint()
	// An untrusted client is refused; the server keeps serving.
	out, stderr, code := zpeer(t, "", "req", "--connect", ep, "--server-key", srv+".key", "--key", other+".key_secret", "--timeout", "1s", "nope")
	if code == 0 || out != "" {
		t.Fatalf("untrusted client: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code = zpeer(t, "", "req", "--connect", ep, "--server-key", srv+".key", "--key", cli+".key_secret", "hello")
	if code != 0 || strings.TrimSpace(out) != "hello" {
		t.Fatalf("trusted client: exit %d, %q %q", code, out, stderr)
	}
	rep.mustSucceed()
	if !strings.Contains(rep.stderr.String(), "not trusted") {
		t.Errorf("the server did not log the refusal: %s", rep.stderr.String())
	}
}

func TestCurveDiscoverTrust(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, other := keygen(t, dir, "server"), keygen(t, dir, "other")
	svc := serviceName("sec")
	rep := start(t, "", "rep", "--bind", local, "--key", srv+".key_secret", "--discover", svc, "--iface", "lo", "--count", "1")
	rep.endpoint()

	// peers sees the server's announced key, trusted: the first event.
	js, stderr, code := zpeer(t, "", "peers", "--service", svc, "--iface", "lo", "--watch", "--count", "1", "--json", "--trust", srv+".key", "--timeout", "20s")
	var r peerRecord
	if err := json.Unmarshal([]byte(strings.TrimSpace(js)), &r); code != 0 || err != nil {
		t.Fatalf("peers --json: exit %d, %q %v; stderr %q", code, js, err, stderr)
	}
	pub, _ := socket.ReadServerKey(srv + ".key")
	if r.Event != "up" || r.Curve != pub.String() || r.Trusted == nil || !*r.Trusted {
		t.Fatalf("peers shows %s curve %q trusted %v", r.Event, r.Curve, r.Trusted)
	}
	// The Z85 key as it is, <, > and & included (no HTML escapes).
	if !strings.Contains(js, `"curve":"`+pub.String()+`"`) {
		t.Errorf("peers --json does not write the key %s as it is: %s", pub, js)
	}

	// Trusting another key: the server is seen but never connected to.
	// -v logs from discovery's goroutine: a data race there exits 66.
	_, stderr, code = zpeer(t, "", "req", "--discover", svc, "--iface", "lo", "--trust", other+".key", "--timeout", "3s", "-v", "x")
	if code != exitFailure {
		t.Fatalf("untrusting client: exit %d, want 1; stderr %q", code, stderr)
	}
	declined := regexp.MustCompile(`^zpeer: not connecting to tcp://127\.0\.0\.1:\d+ \(.+\): discovery: peer declined: .+key \S+ is not trusted$`)
	// -v adds the library's events as slog lines (docs/operations.md):
	// discovery's "peer up" among them; the command's own lines are the rest.
	var lines, events []string
	for _, l := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if strings.HasPrefix(l, "time=") && strings.Contains(l, " level=") {
			events = append(events, l)
		} else {
			lines = append(lines, l)
		}
	}
	if !slices.ContainsFunc(events, func(l string) bool { return strings.Contains(l, `msg="peer up" service=`+svc) }) {
		t.Errorf("-v: no slog line for the peer discovered:\n%s", stderr)
	}
	if n := len(lines); n < 2 || !declined.MatchString(lines[0]) ||
		lines[n-1] != "zpeer: no peer took the request within 3s, 1 attempt" {
		t.Fatalf("untrusting client's stderr:\n%s", stderr)
	}
	for _, l := range lines[1 : len(lines)-1] {
		if !declined.MatchString(l) && !strings.HasPrefix(l, "zpeer: sent 0, received 0 in ") {
			t.Fatalf("untrusting client's stderr has %q:\n%s", l, stderr)
		}
	}
	out, stderr, code := zpeer(t, "", "req", "--discover", svc, "--iface", "lo", "--trust", srv+".key", "--timeout", "20s", "hello")
	if code != 0 || strings.TrimSpace(out) != "hello" {
		t.Fatalf("trusting client: exit %d, %q %q", code, out, stderr)
	}
	rep.mustSucceed()
}

func TestSecurityFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := keygen(t, dir, "server")
	os.Chmod(srv+".key_secret", 0o644)
	cases := [][]string{
		{"rep", "--bind", local, "--key", srv + ".key_secret"},           // too open
		{"rep", "--bind", local, "--server-key", srv + ".key"},           // server-key on a binder
		{"req", "--connect", "tcp://127.0.0.1:1", "--key", srv + ".key"}, // no secret, no server key
		{"req", "--connect", "tcp://127.0.0.1:1", "--trust", srv + ".key"},
		{"req", "--connect", "tcp://127.0.0.1:1", "--allow", "10.0.0.0/8"},
		{"rep", "--bind", local, "--allow", "not-a-cidr"},
	}
	for _, args := range cases {
		_, stderr, code := zpeer(t, "", args...)
		if code != 2 || stderr == "" {
			t.Errorf("zpeer %s: exit %d, stderr %q; want a usage error", strings.Join(args, " "), code, stderr)
		}
	}
}

// Issue 19 item 5: keygen takes a path as ssh-keygen -f does, and a
// directory that is not there is reported as such.
func TestKeygenPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := zpeer(t, "", "keygen", "--dir", dir, "keys/server")
	if code != 0 {
		t.Fatalf("keygen keys/server: exit %d: %s", code, stderr)
	}
	c, err := socket.ReadCertificate(filepath.Join(dir, "keys", "server.key_secret"))
	if err != nil || strings.TrimSpace(out) != c.Public.String() || c.Metadata["name"] != "server" {
		t.Fatalf("keygen keys/server wrote %+v (%v), printed %q", c, err, out)
	}
	abs := filepath.Join(dir, "keys", "worker")
	if _, stderr, code := zpeer(t, "", "keygen", abs); code != 0 {
		t.Fatalf("keygen %s: exit %d: %s", abs, code, stderr)
	}
	if _, err := socket.ReadCertificate(abs + ".key_secret"); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nonexistent")
	_, stderr, code = zpeer(t, "", "keygen", "--dir", missing, "server")
	if code != exitFailure {
		t.Fatalf("keygen --dir %s: exit %d, want 1", missing, code)
	}
	oneLine(t, stderr, "zpeer: write "+filepath.Join(missing, "server.key")+": no such file or directory")
	_, stderr, code = zpeer(t, "", "keygen", "keys/")
	if code != exitUsage {
		t.Fatalf("keygen keys/: exit %d, want 2", code)
	}
	oneLine(t, stderr, `keygen PATH: "keys/" does not name a file`)
}
