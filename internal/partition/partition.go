package partition

import (
	"strconv"

	"github.com/zpeer/zpeer/socket"
)

// FNV-1a, 64 bits.
const (
	offset64 = 14695981039346656037
	prime64  = 1099511628211
)

// Hash is the hash of a key or of a member's identity.
func Hash(s string) uint64 {
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return mix(h)
}

// HashBytes is Hash of string(b), without the conversion.
func HashBytes(b []byte) uint64 {
	h := uint64(offset64)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime64
	}
	return mix(h)
}

// mix is MurmurHash3's 64-bit finaliser: every input bit flips each
// output bit with probability about 1/2.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Score is the weight of the member whose identity hashes to member for
// the key that hashes to key: the key's owner is the member with the
// highest score.
func Score(key, member uint64) uint64 { return mix(key ^ member) }

// Better reports whether a member scoring s with tie-break t beats one
// scoring bs with tie-break bt: the higher score wins, and between equal
// scores (members that announced the same identity) the lower tie-break.
func Better(s, t, bs, bt uint64) bool { return s > bs || s == bs && t < bt }

// PeerID is the stable identity of a socket peer: the identity it
// announced in its ZMTP handshake (a zpeer Puller announces its name);
// else its network address, which is the puller's own listening address
// when the pusher dialled it, and stays the same for the life of the
// connection otherwise; else a name made of its peer id.
func PeerID(p *socket.Peer) string {
	if id := p.Identity(); len(id) > 0 && id[0] != 0 {
		return string(id)
	}
	if r := p.Remote(); r != "" {
		return r
	}
	return "peer#" + strconv.FormatUint(p.ID(), 10)
}
