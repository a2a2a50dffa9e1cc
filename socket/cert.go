package socket

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Certificates are the ZPL files (ZeroMQ RFC 4) that czmq's zcert and
// pyzmq's zmq.auth.create_certificates write: NAME.key holds the public
// key, NAME.key_secret both keys:
//
//	#   ****  Generated on 2026-01-02 03:04:05 by zpeer  ****
//	#   ZeroMQ CURVE **Secret** Certificate
//	#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.
//
//	metadata
//	    name = "worker-7"
//	curve
//	    public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
//	    secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
//
// Secret files are written mode 0600, and reading one that the group or
// others may read fails, as ssh refuses such a private key.

// Certificate is a CURVE certificate: a public key, the secret key when it
// is a secret certificate, and free-form metadata.
type Certificate struct {
	Public   Key
	Secret   SecretKey // zero in a public certificate
	Metadata map[string]string
}

// KeyPair returns the certificate's keys.
func (c Certificate) KeyPair() KeyPair { return KeyPair{Public: c.Public, Secret: c.Secret} }

// NewCertificate makes a certificate with a fresh key pair.
func NewCertificate(meta map[string]string) (Certificate, error) {
	kp, err := NewKeyPair()
	if err != nil {
		return Certificate{}, err
	}
	return Certificate{Public: kp.Public, Secret: kp.Secret, Metadata: meta}, nil
}

// ReadCertificate reads a public or secret certificate file. A file with a
// secret key must not be readable by group or others.
func ReadCertificate(path string) (Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	if !fi.Mode().IsRegular() {
		return Certificate{}, fmt.Errorf("%w: %s is not a regular file", ErrCertificate, path)
	}
	if fi.Size() > 64<<10 {
		return Certificate{}, fmt.Errorf("%w: %s: %d bytes is too large for a certificate", ErrCertificate, path, fi.Size())
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return Certificate{}, fmt.Errorf("%w: %s: %w", ErrCertificate, path, err)
	}
	c, hasSecret, err := parseCertificate(data)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: %s: %w", ErrCertificate, path, err)
	}
	if hasSecret && fi.Mode().Perm()&0o077 != 0 {
		return Certificate{}, fmt.Errorf("%w: permissions %04o on %s are too open: a secret key file must not be accessible by group or others (chmod 600 %s)", ErrCertificate, fi.Mode().Perm(), path, path)
	}
	return c, nil
}

// parseCertificate reads the ZPL text of a certificate.
func parseCertificate(data []byte) (Certificate, bool, error) {
	c := Certificate{Metadata: map[string]string{}}
	var pub, sec string
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		indent := len(line) - len(trimmed)
		name, value, hasValue := strings.Cut(trimmed, "=")
		name = strings.TrimSpace(name)
		if indent == 0 {
			section = name
			continue
		}
		if !hasValue {
			continue // a deeper section: certificates have none we use
		}
		v, err := zplValue(strings.TrimSpace(value))
		if err != nil {
			return c, false, fmt.Errorf("line %d: %w", ln, err)
		}
		switch section {
		case "metadata":
			c.Metadata[name] = v
		case "curve":
			switch name {
			case "public-key":
				pub = v
			case "secret-key":
				sec = v
			}
		}
	}
	if pub == "" {
		return c, false, errors.New("no curve public-key")
	}
	k, err := ParseKey(pub)
	if err != nil {
		return c, false, fmt.Errorf("public-key: %w", err)
	}
	c.Public = k
	if sec == "" {
		return c, false, nil
	}
	s, err := ParseSecretKey(sec)
	if err != nil {
		return c, true, fmt.Errorf("secret-key: %w", err)
	}
	if s.Public() != k {
		return c, true, errors.New("the secret key does not belong to the public key")
	}
	c.Secret = s
	return c, true, nil
}

// zplValue unquotes a ZPL value ("x", 'x' or x up to a comment).
func zplValue(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if q := v[0]; q == '"' || q == '\'' {
		end := strings.IndexByte(v[1:], q)
		if end < 0 {
			return "", fmt.Errorf("unterminated quoted value %s", v)
		}
		return v[1 : 1+end], nil
	}
	if i := strings.IndexByte(v, '#'); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return v, nil
}

const (
	certPublicBanner = `#   ****  Generated on %s by zpeer  ****
#   ZeroMQ CURVE Public Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange. Store public certificates in your home
#   directory, in the .curve subdirectory.

`
	certSecretBanner = `#   ****  Generated on %s by zpeer  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

`
)

// encodeCertificate returns the ZPL text of c, with the secret key when
// secret is set.
func encodeCertificate(c Certificate, secret bool) []byte {
	var b bytes.Buffer
	now := time.Now().Format("2006-01-02 15:04:05")
	if secret {
		fmt.Fprintf(&b, certSecretBanner, now)
	} else {
		fmt.Fprintf(&b, certPublicBanner, now)
	}
	b.WriteString("metadata\n")
	keys := make([]string, 0, len(c.Metadata))
	for k := range c.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "    %s = \"%s\"\n", k, c.Metadata[k])
	}
	b.WriteString("curve\n")
	fmt.Fprintf(&b, "    public-key = \"%s\"\n", c.Public)
	if secret {
		fmt.Fprintf(&b, "    secret-key = \"%s\"\n", c.Secret.Z85())
	}
	return b.Bytes()
}

// WriteCertificate writes c as base+".key" (public, mode 0644) and, when c
// has a secret key, base+".key_secret" (mode 0600), the names czmq and
// pyzmq use. It returns the paths written. Metadata names and values must
// be printable and free of quotes.
func WriteCertificate(base string, c Certificate) (public, secret string, err error) {
	for k, v := range c.Metadata {
		if !zplName(k) || strings.ContainsAny(v, "\"\n\r") {
			return "", "", fmt.Errorf("%w: metadata %q = %q cannot be written in ZPL", ErrCertificate, k, v)
		}
	}
	public = base + ".key"
	if err := writeFileMode(public, encodeCertificate(c, false), 0o644); err != nil {
		return "", "", err
	}
	if c.Secret.IsZero() {
		return public, "", nil
	}
	secret = base + ".key_secret"
	if err := writeFileMode(secret, encodeCertificate(c, true), 0o600); err != nil {
		return public, "", err
	}
	return public, secret, nil
}

func zplName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("$-_@.&+/", r)) {
			return false
		}
	}
	return true
}

// writeFileMode writes data to path with exactly mode perm (the umask
// notwithstanding): through a temporary file renamed into place, so that a
// secret never sits in a file with wider permissions.
func writeFileMode(path string, data []byte, perm fs.FileMode) error {
	fail := func(err error) error {
		// An I/O error, not a bad certificate: said with the file's name,
		// not the temporary one's.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("socket: write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail(err)
	}
	return nil
}

// LoadTrust builds a key set from sources, each a 40-character Z85 public
// key, a certificate file (public or secret: only the public key is used),
// or a directory whose *.key files are public certificates (the layout of
// pyzmq's zmq.auth and czmq's zcertstore; other files are skipped).
func LoadTrust(sources ...string) (*KeySet, error) {
	ks := NewKeySet()
	for _, src := range sources {
		keys, err := trustSource(src)
		if err != nil {
			return nil, err
		}
		ks.Add(keys...)
	}
	return ks, nil
}

func trustSource(src string) ([]Key, error) {
	fi, statErr := os.Stat(src)
	if statErr != nil {
		if len(strings.TrimSpace(src)) == 40 {
			k, err := ParseKey(src)
			if err == nil {
				return []Key{k}, nil
			}
		}
		return nil, fmt.Errorf("%w: trust %q: neither a Z85 key nor a readable file: %w", ErrCertificate, src, statErr)
	}
	if !fi.IsDir() {
		c, err := readPublic(src)
		if err != nil {
			return nil, err
		}
		return []Key{c.Public}, nil
	}
	paths, err := filepath.Glob(filepath.Join(src, "*.key"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	sort.Strings(paths)
	var keys []Key
	for _, p := range paths {
		c, err := readPublic(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, c.Public)
	}
	return keys, nil
}

// readPublic reads a certificate for its public key only: the secret key,
// if any, is neither needed nor checked.
func readPublic(path string) (Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	if len(data) > 64<<10 {
		return Certificate{}, fmt.Errorf("%w: %s is too large for a certificate", ErrCertificate, path)
	}
	c, _, err := parseCertificate(data)
	if err != nil {
		return Certificate{}, fmt.Errorf("%w: %s: %w", ErrCertificate, path, err)
	}
	c.Secret = SecretKey{}
	return c, nil
}

// ReadServerKey reads a CURVE server's public key from a 40-character Z85
// key or a certificate file.
func ReadServerKey(s string) (Key, error) {
	if _, err := os.Stat(s); err != nil && len(strings.TrimSpace(s)) == 40 {
		return ParseKey(s)
	}
	c, err := readPublic(s)
	if err != nil {
		return Key{}, err
	}
	return c.Public, nil
}
