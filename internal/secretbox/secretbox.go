package secretbox

import (
	"crypto/subtle"
	"encoding/binary"

	"github.com/zpeer/zpeer/internal/poly1305"
	"github.com/zpeer/zpeer/internal/salsa20"
)

// TagSize is the size of a Poly1305 tag.
const TagSize = poly1305.TagSize

// Head is how many ciphertext bytes precede the part Seal and Open
// encrypt and decrypt: the box's first 32 bytes, sealed with key stream
// block 0 (whose first 32 bytes key Poly1305).
const Head = 32

// useAsm selects the stitched kernel; tests turn it off to cover the
// two-pass fallback.
var useAsm = salsa20.Stitched()

// Stitching starts from minSealSteps (seal: the first 512-byte step is a
// plain key stream step, the MAC trailing one step behind) and
// minOpenSteps 512-byte steps after the head.
const (
	minSealSteps = 2
	minOpenSteps = 1
)

// Seal writes ct[Head:] = rest XOR the Salsa20 key stream of subKey from
// the block counter on (the 8-byte nonce, then the little-endian 64-bit
// block number: 1 in a box), and the Poly1305 tag of all of ct under
// polyKey into tag. ct[:Head] is the caller's, already sealed. len(ct)
// must be Head+len(rest); rest and ct[Head:] overlap entirely or not at
// all. counter is not modified.
func Seal(tag *[TagSize]byte, ct, rest []byte, counter *[16]byte, subKey, polyKey *[32]byte) {
	if len(ct) != Head+len(rest) {
		panic("secretbox: Seal: len(ct) != Head+len(rest)")
	}
	body := ct[Head:]
	steps := len(rest) / 512
	if !useAsm || steps < minSealSteps {
		salsa20.XORKeyStream(body, rest, counter, subKey)
		poly1305.Sum(tag, ct, polyKey)
		return
	}
	var m poly1305.MAC
	m.Init(polyKey)
	m.Blocks(ct[:Head])
	n := steps * 512
	// Step 0 alone; then step i with the MAC over step i-1's ciphertext.
	salsa20.XORKeyStream(body[:512], rest[:512], counter, subKey)
	ctr := *counter
	addBlocks(&ctr, 512/64)
	salsa20.XORKeyStreamMAC(body[512:n], rest[512:n], &ctr, subKey, body[:n-512], m.Acc())
	m.Blocks(body[n-512 : n])
	if n < len(rest) {
		addBlocks(&ctr, uint64(n-512)/64)
		salsa20.XORKeyStream(body[n:], rest[n:], &ctr, subKey)
	}
	m.Sum(tag, body[n:])
}

// Open writes ct[Head:] XOR the key stream of subKey from counter on into
// out (len(ct)-Head bytes) and reports whether tag is the Poly1305 tag of
// ct under polyKey, in constant time. out is written either way: on a
// mismatch the caller must discard it. out and ct[Head:] overlap entirely
// or not at all. counter is not modified.
func Open(out []byte, tag *[TagSize]byte, ct []byte, counter *[16]byte, subKey, polyKey *[32]byte) bool {
	if len(ct) < Head || len(out) < len(ct)-Head {
		panic("secretbox: Open: short ct or out")
	}
	rest := ct[Head:]
	out = out[:len(rest)]
	steps := len(rest) / 512
	var sum [TagSize]byte
	if !useAsm || steps < minOpenSteps {
		poly1305.Sum(&sum, ct, polyKey)
		salsa20.XORKeyStream(out, rest, counter, subKey)
		return subtle.ConstantTimeCompare(sum[:], tag[:]) == 1
	}
	var m poly1305.MAC
	m.Init(polyKey)
	m.Blocks(ct[:Head])
	n := steps * 512
	salsa20.XORKeyStreamMAC(out[:n], rest[:n], counter, subKey, rest[:n], m.Acc())
	m.Sum(&sum, rest[n:]) // before the tail is decrypted, maybe in place
	if n < len(rest) {
		ctr := *counter
		addBlocks(&ctr, uint64(n)/64)
		salsa20.XORKeyStream(out[n:], rest[n:], &ctr, subKey)
	}
	return subtle.ConstantTimeCompare(sum[:], tag[:]) == 1
}

// addBlocks advances counter's 64-bit block number by n, modulo 2^64.
func addBlocks(counter *[16]byte, n uint64) {
	binary.LittleEndian.PutUint64(counter[8:], binary.LittleEndian.Uint64(counter[8:])+n)
}
