package poly1305

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20"
)

// knownAnswer is one external test vector: a one-time key, a message and
// its tag (or, valid false, a tag that must be refused).
type knownAnswer struct {
	name     string
	key      [32]byte
	msg, tag []byte
	valid    bool
}

// checkKnownAnswers runs Sum, the AVX2 kernel at any length where it is in
// use, and Verify over the vectors, in both modes.
func checkKnownAnswers(t *testing.T, vectors []knownAnswer) {
	t.Helper()
	modes(t, func(t *testing.T) {
		for _, v := range vectors {
			var got [TagSize]byte
			Sum(&got, v.msg, &v.key)
			if v.valid && !bytes.Equal(got[:], v.tag) {
				t.Errorf("%s: Sum %x, want %x", v.name, got, v.tag)
			}
			if useAsm {
				sumAsm(&got, v.msg, &v.key)
				if v.valid && !bytes.Equal(got[:], v.tag) {
					t.Errorf("%s: sumAsm %x, want %x", v.name, got, v.tag)
				}
			}
			if ok := Verify((*[TagSize]byte)(v.tag), v.msg, &v.key); ok != v.valid {
				t.Errorf("%s: Verify = %v, want %v", v.name, ok, v.valid)
			}
		}
	})
}

// TestRFC8439 checks the Poly1305 vectors of RFC 8439: the example of
// section 2.5.2 and the eleven of appendix A.3 (edge cases of the final
// reduction and of carries among them), parsed from the RFC's text in
// testdata/rfc8439-poly1305.txt.
func TestRFC8439(t *testing.T) {
	vectors := readRFC8439(t, "testdata/rfc8439-poly1305.txt")
	if len(vectors) != 12 {
		t.Fatalf("%d vectors parsed from the RFC text, want 12", len(vectors))
	}
	checkKnownAnswers(t, vectors)
}

var (
	// "  016  36 e5 f6 ...  6.....`p": an offset, up to 16 bytes, then text.
	hexdumpLine = regexp.MustCompile(`^\s*\d{3}  ((?:[0-9a-f]{2} ){0,15}[0-9a-f]{2})`)
	// "   FF FF ... FF": 16 bytes alone (test vectors #5 to #11).
	bytesLine = regexp.MustCompile(`^\s*((?:[0-9A-F]{2} ){15}[0-9A-F]{2})\s*$`)
)

func readRFC8439(t *testing.T, path string) []knownAnswer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	a3 := strings.Index(text, "\nA.3.  Poly1305 Message Authentication Code")
	if a3 < 0 {
		t.Fatalf("%s: no section A.3", path)
	}
	vectors := []knownAnswer{example252(t, text[:a3])}

	// Appendix A.3: "Test Vector #n", then fields, each a label line and
	// the lines of bytes below it (across page breaks).
	var cur *knownAnswer
	fields := map[string][]byte{}
	field := ""
	flush := func() {
		if cur == nil {
			return
		}
		key := fields["One-time Poly1305 Key:"]
		if key == nil {
			key = append(fields["R:"], fields["S:"]...)
		}
		msg := fields["Text to MAC:"]
		if msg == nil {
			msg = fields["data:"]
		}
		tag := fields["Tag:"]
		if tag == nil {
			tag = fields["tag:"]
		}
		if len(key) != 32 || len(tag) != TagSize || msg == nil {
			t.Fatalf("%s: %s: key %d bytes, message %d, tag %d", path, cur.name, len(key), len(msg), len(tag))
		}
		cur.key, cur.msg, cur.tag, cur.valid = [32]byte(key), msg, tag, true
		vectors = append(vectors, *cur)
		cur, fields, field = nil, map[string][]byte{}, ""
	}
	for _, line := range strings.Split(text[a3:], "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "Test Vector #") {
			flush()
			name, _, _ := strings.Cut(trimmed, ":")
			cur = &knownAnswer{name: "RFC 8439 A.3 " + name}
			continue
		}
		if cur == nil {
			continue
		}
		switch trimmed {
		case "One-time Poly1305 Key:", "Text to MAC:", "Tag:", "R:", "S:", "data:", "tag:":
			field = trimmed
			fields[field] = []byte{}
			continue
		}
		m := hexdumpLine.FindStringSubmatch(line)
		if m == nil {
			m = bytesLine.FindStringSubmatch(line)
		}
		if m == nil || field == "" {
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(m[1], " ", ""))
		if err != nil {
			t.Fatalf("%s: %s: %q: %v", path, cur.name, line, err)
		}
		fields[field] = append(fields[field], b...)
	}
	flush()
	return vectors
}

// example252 reads section 2.5.2's example: the key material (colon hex,
// wrapped mid-byte), the message (a hex dump) and the tag (colon hex).
func example252(t *testing.T, text string) knownAnswer {
	t.Helper()
	colonHex := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(strings.Join(strings.Fields(s), ""), ":", ""))
		if err != nil {
			t.Fatalf("RFC 8439 2.5.2: %q: %v", s, err)
		}
		return b
	}
	_, rest, ok1 := strings.Cut(text, "Key Material:")
	keyText, _, ok2 := strings.Cut(rest, "\n\n")
	_, rest, ok3 := strings.Cut(rest, "Message to be Authenticated:\n")
	dump, _, ok4 := strings.Cut(rest, "\n\n")
	_, rest, ok5 := strings.Cut(rest, "Tag: ")
	tagText, _, ok6 := strings.Cut(rest, "\n")
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		t.Fatal("RFC 8439 2.5.2: example not found")
	}
	var msg []byte
	for _, line := range strings.Split(dump, "\n") {
		m := hexdumpLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("RFC 8439 2.5.2: %q is not a hex dump line", line)
		}
		msg = append(msg, colonHex(m[1])...)
	}
	key := colonHex(keyText)
	tag := colonHex(tagText)
	if len(key) != 32 || len(tag) != TagSize || string(msg) != "Cryptographic Forum Research Group" {
		t.Fatalf("RFC 8439 2.5.2: key %x, message %q, tag %x", key, msg, tag)
	}
	return knownAnswer{name: "RFC 8439 2.5.2", key: [32]byte(key), msg: msg, tag: tag, valid: true}
}

// TestNaClOneTimeAuth checks the NaCl distribution's crypto_onetimeauth
// example (testdata/nacl-onetimeauth.txt): the tag of the secretbox
// example's ciphertext.
func TestNaClOneTimeAuth(t *testing.T) {
	f := readFields(t, "testdata/nacl-onetimeauth.txt")
	if len(f["key"]) != 32 || len(f["tag"]) != TagSize || len(f["msg"]) != 131 {
		t.Fatalf("testdata/nacl-onetimeauth.txt: %d-byte key, %d-byte tag, %d-byte message", len(f["key"]), len(f["tag"]), len(f["msg"]))
	}
	checkKnownAnswers(t, []knownAnswer{{name: "NaCl onetimeauth", key: [32]byte(f["key"]), msg: f["msg"], tag: f["tag"], valid: true}})
}

// readFields reads "name hex" lines, skipping # comments.
func readFields(t *testing.T, path string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		b, err := hex.DecodeString(value)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, name, err)
		}
		out[name] = b
	}
	return out
}

// TestWycheproof runs Project Wycheproof's ChaCha20-Poly1305 vectors
// (testdata/wycheproof: there is no stand-alone Poly1305 or
// XSalsa20-Poly1305 set) through Poly1305 alone: the one-time key is
// ChaCha20's first block (x/crypto's ChaCha20, RFC 8439 section 2.6), the
// message the AEAD's MAC input (section 2.8). Valid vectors must give
// their tag; invalid ones with a 96-bit nonce (modified tags) must be
// refused; other nonce sizes are no concern of Poly1305's.
func TestWycheproof(t *testing.T) {
	data, err := os.ReadFile("testdata/wycheproof/chacha20_poly1305_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Algorithm  string
		TestGroups []struct {
			IvSize int
			Tests  []struct {
				TcID                  int
				Key, Iv, Aad, Ct, Tag string
				Result                string
				Flags                 []string
			}
		}
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	if file.Algorithm != "CHACHA20-POLY1305" {
		t.Fatalf("algorithm %q", file.Algorithm)
	}
	var vectors []knownAnswer
	valid, invalid := 0, 0
	for _, g := range file.TestGroups {
		if g.IvSize != 96 {
			continue
		}
		for _, tc := range g.Tests {
			key, iv, aad, ct, tag := mustHex(t, tc.Key), mustHex(t, tc.Iv), mustHex(t, tc.Aad), mustHex(t, tc.Ct), mustHex(t, tc.Tag)
			c, err := chacha20.NewUnauthenticatedCipher(key, iv)
			if err != nil {
				t.Fatalf("tcId %d: %v", tc.TcID, err)
			}
			var otk [32]byte
			c.XORKeyStream(otk[:], otk[:])
			macData := append(pad16(aad), pad16(ct)...)
			macData = binary.LittleEndian.AppendUint64(macData, uint64(len(aad)))
			macData = binary.LittleEndian.AppendUint64(macData, uint64(len(ct)))
			v := knownAnswer{name: "Wycheproof tcId " + strings.Join(append([]string{strconv.Itoa(tc.TcID)}, tc.Flags...), " "), key: otk, msg: macData, tag: tag}
			switch tc.Result {
			case "valid":
				v.valid = true
				valid++
			case "invalid":
				invalid++
			default:
				t.Fatalf("tcId %d: result %q", tc.TcID, tc.Result)
			}
			vectors = append(vectors, v)
		}
	}
	if valid < 200 || invalid < 50 {
		t.Fatalf("%d valid and %d invalid vectors with a 96-bit nonce, want at least 200 and 50", valid, invalid)
	}
	checkKnownAnswers(t, vectors)
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pad16 is b followed by zeros up to a multiple of 16 bytes.
func pad16(b []byte) []byte {
	out := bytes.Clone(b)
	if r := len(b) % 16; r != 0 {
		out = append(out, make([]byte, 16-r)...)
	}
	return out
}
