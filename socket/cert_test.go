package socket

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertificateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCertificate(map[string]string{"name": "worker-7", "email": "ops@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	pub, sec, err := WriteCertificate(filepath.Join(dir, "w7"), c)
	if err != nil {
		t.Fatal(err)
	}
	if pub != filepath.Join(dir, "w7.key") || sec != filepath.Join(dir, "w7.key_secret") {
		t.Fatalf("paths %s %s", pub, sec)
	}
	for path, mode := range map[string]os.FileMode{pub: 0o644, sec: 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: mode %v, want %v (%v)", path, fi.Mode().Perm(), mode, err)
		}
	}
	text, _ := os.ReadFile(pub)
	if strings.Contains(string(text), c.Secret.Z85()) || strings.Contains(string(text), "secret-key") {
		t.Fatal("the public certificate holds the secret key")
	}
	got, err := ReadCertificate(sec)
	if err != nil {
		t.Fatal(err)
	}
	if got.Public != c.Public || got.Secret != c.Secret || got.Metadata["name"] != "worker-7" || got.Metadata["email"] != "ops@example.com" {
		t.Fatalf("read back %v %v", got.Public, got.Metadata)
	}
	gp, err := ReadCertificate(pub)
	if err != nil || gp.Public != c.Public || !gp.Secret.IsZero() {
		t.Fatalf("public: %v %v", gp.Public, err)
	}
	os.Chmod(sec, 0o640)
	if _, err := ReadCertificate(sec); !errors.Is(err, ErrCertificate) || !strings.Contains(err.Error(), "too open") {
		t.Fatalf("group-readable secret: %v", err)
	}
	if _, _, err := WriteCertificate(filepath.Join(dir, "x"), Certificate{Public: c.Public, Metadata: map[string]string{"bad": "a\"b"}}); err == nil {
		t.Error("a quote in metadata was written")
	}
}

// A czmq zcert file (quoted metadata, single quotes, comments).
const czmqSecret = `#   ****  Generated on 2024-05-01 10:00:00 by CZMQ  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

metadata
    name = "server"   # a comment
    role = 'broker'
curve
    public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
`

func TestReadCertificateFormats(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	c, err := ReadCertificate(write("czmq.key_secret", czmqSecret, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if c.Public.String() != testServerPublic || c.Secret.Z85() != testServerSecret || c.Metadata["name"] != "server" || c.Metadata["role"] != "broker" {
		t.Fatalf("read %v %v", c.Public, c.Metadata)
	}
	bad := map[string]string{
		"no public key":   "metadata\ncurve\n",
		"short key":       "curve\n    public-key = \"abc\"\n",
		"not z85":         "curve\n    public-key = \"" + strings.Repeat("~", 40) + "\"\n",
		"mismatched pair": strings.Replace(czmqSecret, "rq:rM", "rq:rN", 1),
		"unterminated":    "curve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n",
	}
	for name, text := range bad {
		if _, err := ReadCertificate(write("bad.key_secret", text, 0o600)); !errors.Is(err, ErrCertificate) {
			t.Errorf("%s: %v, want ErrCertificate", name, err)
		}
	}
}

func TestLoadTrust(t *testing.T) {
	dir := t.TempDir()
	var want []Key
	for _, n := range []string{"a", "b"} {
		c, _ := NewCertificate(nil)
		WriteCertificate(filepath.Join(dir, n), c) // .key and .key_secret: only .key counts
		want = append(want, c.Public)
	}
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a certificate"), 0o644)
	extra, _ := NewKeyPair()
	ks, err := LoadTrust(dir, extra.Public.String(), filepath.Join(dir, "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	if ks.Len() != 3 || !ks.Contains(want[0]) || !ks.Contains(want[1]) || !ks.Contains(extra.Public) {
		t.Fatalf("trusted %v", ks.Keys())
	}
	if _, err := LoadTrust("no-such-file"); !errors.Is(err, ErrCertificate) {
		t.Errorf("missing source: %v", err)
	}
	k, err := ReadServerKey(filepath.Join(dir, "b.key"))
	if err != nil || k != want[1] {
		t.Errorf("ReadServerKey: %v %v", k, err)
	}
}
