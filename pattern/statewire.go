package pattern

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/codecwire"
)

// What a StateServer and its Mirrors say to each other (see docs/wire.md,
// "Replicated state"). Every message is one codec envelope; the envelope
// Type names the message, the header "zpeer-epoch" names the server's run.
const (
	stateHello     = "zpeer.state.hello"     // Mirror -> server, and its reply
	stateSnapshot  = "zpeer.state.snapshot"  // Mirror -> server, and the reply's parts
	stateChange    = "zpeer.state.change"    // server -> Mirrors, topic "c"
	stateHeartbeat = "zpeer.state.heartbeat" // server -> Mirrors, topic "h"

	hdrEpoch = "zpeer-epoch" // the server's epoch, on everything it sends
	hdrEnd   = "zpeer-end"   // the last part of a snapshot: the number of keys in it
	hdrKeys  = "zpeer-keys"  // the first part of a snapshot: the same, for the receiver to make room
)

// The topic frames of what a StateServer publishes.
var (
	topicChange    = []byte("c")
	topicHeartbeat = []byte("h")
)

// snapshotPart is the body size at which a snapshot is cut into another
// part (one key and value always fit in a part, however large).
const snapshotPart = 64 << 10

// ErrKey is wrapped by the error of a StateServer's Set or Delete given a
// key that cannot be replicated: empty, or not valid UTF-8.
var ErrKey = errors.New("pattern: bad state key")

func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrKey)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrKey, key)
	}
	return nil
}

// helloBody is the body of a StateServer's answer to a hello: where its
// changes are published, per state endpoint.
type helloBody struct {
	// Changes pairs each endpoint the server's snapshot socket is bound
	// to with the endpoint its change socket is bound to beside it.
	Changes [][2]string `msgpack:"changes"`
}

// changesBind returns where a StateServer binds its change socket, beside
// the state endpoint ep (as bound): tcp on the same host, on a port of its
// own; ipc and inproc under the same name with ".changes" appended.
func changesBind(ep string) string {
	scheme, addr, ok := strings.Cut(ep, "://")
	if !ok {
		return ep + ".changes"
	}
	if scheme == "tcp" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			return "tcp://" + net.JoinHostPort(host, "0")
		}
	}
	return ep + ".changes"
}

// changesFor returns the endpoint a Mirror that reached its server at
// state connects to for the changes, from the server's hello pairs: for
// tcp, the change port of the pair whose state port is the one dialled,
// on the host dialled (the server's own address for it may be a wildcard,
// or not the one this side sees); otherwise the pair's change endpoint.
func changesFor(state string, pairs [][2]string) (string, bool) {
	if len(pairs) == 0 {
		return "", false
	}
	scheme, addr, _ := strings.Cut(state, "://")
	if scheme != "tcp" {
		for _, p := range pairs {
			if p[0] == state {
				return p[1], true
			}
		}
		return pairs[0][1], true
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	pick := ""
	for _, p := range pairs {
		_, sa, _ := strings.Cut(p[0], "://")
		_, ca, _ := strings.Cut(p[1], "://")
		_, sp, err1 := net.SplitHostPort(sa)
		_, cp, err2 := net.SplitHostPort(ca)
		if err1 != nil || err2 != nil || !strings.HasPrefix(p[1], "tcp://") {
			continue
		}
		if pick == "" || sp == port {
			pick = cp
		}
		if sp == port {
			break
		}
	}
	if pick == "" {
		return "", false
	}
	return "tcp://" + net.JoinHostPort(host, pick), true
}

// appendChange appends the body of a change: [key, value] for a set
// (value is the encoded value), [key] for a delete.
func appendChange(dst []byte, key string, value []byte, deleted bool) []byte {
	if deleted {
		dst = append(dst, 0x91)
	} else {
		dst = append(dst, 0x92)
	}
	dst = append(codecwire.AppendStrHeader(dst, len(key)), key...)
	return append(dst, value...)
}

// parseChange reads a change body: the key, and the encoded value (nil for
// a delete). The value and key alias body.
func parseChange(body []byte) (key []byte, value []byte, deleted bool, err error) {
	if err := codec.CheckValue(body); err != nil {
		return nil, nil, false, badMessage("state change: %v", err)
	}
	n, p, ok := mpArrayLen(body, 0)
	if !ok || (n != 1 && n != 2) {
		return nil, nil, false, badMessage("state change: not an array of 1 or 2")
	}
	key, p, ok = mpStr(body, p)
	if !ok {
		return nil, nil, false, badMessage("state change: the key is not a str")
	}
	if n == 1 {
		return key, nil, true, nil
	}
	return key, body[p:], false, nil
}

// appendMapHeader32 appends a map 32 header for n entries (its count
// patched in by the caller once known).
func appendMapHeader32(dst []byte, n uint32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, 0xdf), n)
}

// parseSnapshot calls fn for each key and encoded value of a snapshot
// part's body (a map of str to any value); they alias body.
func parseSnapshot(body []byte, fn func(key, value []byte)) (int, error) {
	if err := codec.CheckValue(body); err != nil {
		return 0, badMessage("state snapshot: %v", err)
	}
	n, p, ok := mpMapLen(body, 0)
	if !ok {
		return 0, badMessage("state snapshot: not a map")
	}
	for i := 0; i < n; i++ {
		var key []byte
		if key, p, ok = mpStr(body, p); !ok {
			return i, badMessage("state snapshot: key %d is not a str", i)
		}
		end, err := mpSkip(body, p)
		if err != nil {
			return i, err
		}
		fn(key, body[p:end])
		p = end
	}
	return n, nil
}

func mpArrayLen(b []byte, p int) (n, next int, ok bool) {
	if p >= len(b) {
		return 0, p, false
	}
	switch c := b[p]; {
	case c&0xf0 == 0x90:
		return int(c & 0x0f), p + 1, true
	case c == 0xdc && p+3 <= len(b):
		return int(binary.BigEndian.Uint16(b[p+1:])), p + 3, true
	case c == 0xdd && p+5 <= len(b):
		return int(binary.BigEndian.Uint32(b[p+1:])), p + 5, true
	}
	return 0, p, false
}

func mpMapLen(b []byte, p int) (n, next int, ok bool) {
	if p >= len(b) {
		return 0, p, false
	}
	switch c := b[p]; {
	case c&0xf0 == 0x80:
		return int(c & 0x0f), p + 1, true
	case c == 0xde && p+3 <= len(b):
		return int(binary.BigEndian.Uint16(b[p+1:])), p + 3, true
	case c == 0xdf && p+5 <= len(b):
		return int(binary.BigEndian.Uint32(b[p+1:])), p + 5, true
	}
	return 0, p, false
}

// mpStr reads a str at b[p:].
func mpStr(b []byte, p int) (s []byte, next int, ok bool) {
	if p >= len(b) {
		return nil, p, false
	}
	var n, h int
	switch c := b[p]; {
	case c&0xe0 == 0xa0:
		n, h = int(c&0x1f), 1
	case c == 0xd9 && p+2 <= len(b):
		n, h = int(b[p+1]), 2
	case c == 0xda && p+3 <= len(b):
		n, h = int(binary.BigEndian.Uint16(b[p+1:])), 3
	case c == 0xdb && p+5 <= len(b):
		n, h = int(binary.BigEndian.Uint32(b[p+1:])), 5
	default:
		return nil, p, false
	}
	start := p + h
	if n > len(b)-start {
		return nil, p, false
	}
	return b[start : start+n], start + n, true
}

// mpSkip returns the offset just past the MessagePack value at b[p:]. The
// callers have checked b with codec.CheckValue (bounded lengths, counts
// and nesting); the checks here keep a mistake from reading out of range.
func mpSkip(b []byte, p int) (int, error) {
	for todo := 1; todo > 0; todo-- {
		if p >= len(b) {
			return 0, badMessage("state: truncated value at %d", p)
		}
		c := b[p]
		var size, count int // bytes to skip from p; values that follow
		switch {
		case c <= 0x7f || c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
			size = 1
		case c&0xf0 == 0x80:
			size, count = 1, 2*int(c&0x0f)
		case c&0xf0 == 0x90:
			size, count = 1, int(c&0x0f)
		case c&0xe0 == 0xa0:
			size = 1 + int(c&0x1f)
		case c == 0xc4 || c == 0xd9:
			size = 2 + int(at(b, p+1, 1))
		case c == 0xc5 || c == 0xda:
			size = 3 + int(at(b, p+1, 2))
		case c == 0xc6 || c == 0xdb:
			size = 5 + int(at(b, p+1, 4))
		case c == 0xc7:
			size = 3 + int(at(b, p+1, 1))
		case c == 0xc8:
			size = 4 + int(at(b, p+1, 2))
		case c == 0xc9:
			size = 6 + int(at(b, p+1, 4))
		case c == 0xca:
			size = 5
		case c == 0xcb:
			size = 9
		case c == 0xcc || c == 0xd0:
			size = 2
		case c == 0xcd || c == 0xd1:
			size = 3
		case c == 0xce || c == 0xd2:
			size = 5
		case c == 0xcf || c == 0xd3:
			size = 9
		case c == 0xd4:
			size = 3
		case c == 0xd5:
			size = 4
		case c == 0xd6:
			size = 6
		case c == 0xd7:
			size = 10
		case c == 0xd8:
			size = 18
		case c == 0xdc:
			size, count = 3, int(at(b, p+1, 2))
		case c == 0xdd:
			size, count = 5, int(at(b, p+1, 4))
		case c == 0xde:
			size, count = 3, 2*int(at(b, p+1, 2))
		case c == 0xdf:
			size, count = 5, 2*int(at(b, p+1, 4))
		default:
			return 0, badMessage("state: type code %#x at %d", c, p)
		}
		if size > len(b)-p || count > len(b) {
			return 0, badMessage("state: truncated value at %d", p)
		}
		p += size
		todo += count
	}
	return p, nil
}

// at reads the n-byte big-endian length at b[p:], or a length too large
// to fit when b is too short.
func at(b []byte, p, n int) uint64 {
	if p+n > len(b) {
		return uint64(len(b)) + 1
	}
	switch n {
	case 1:
		return uint64(b[p])
	case 2:
		return uint64(binary.BigEndian.Uint16(b[p:]))
	}
	return uint64(binary.BigEndian.Uint32(b[p:]))
}

// formatCount and parseCount write and read the zpeer-end header.
func formatCount(n int) string { return strconv.Itoa(n) }

func parseCount(b []byte) (int, bool) {
	n, err := strconv.Atoi(string(b))
	return n, err == nil && n >= 0
}
