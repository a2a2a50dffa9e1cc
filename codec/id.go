package codec

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync/atomic"
)

// ID identifies a message. NewID builds it from 8 random bytes chosen once per
// process followed by an 8-byte big-endian counter, so ids are unique across
// processes with overwhelming probability, strictly increasing within one,
// and cheap to make. The zero ID means "no id".
type ID [16]byte

var (
	idPrefix  [8]byte
	idCounter atomic.Uint64
)

func init() {
	// crypto/rand.Read never returns an error since Go 1.24.
	_, _ = rand.Read(idPrefix[:])
}

// NewID returns a new process-unique ID. It is safe for concurrent use and
// does not allocate.
func NewID() ID {
	var id ID
	copy(id[:8], idPrefix[:])
	binary.BigEndian.PutUint64(id[8:], idCounter.Add(1))
	return id
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// String returns id as 32 lower-case hex digits.
func (id ID) String() string {
	var buf [32]byte
	hex.Encode(buf[:], id[:])
	return string(buf[:])
}

// MarshalText implements encoding.TextMarshaler (32 hex digits).
func (id ID) MarshalText() ([]byte, error) {
	return hex.AppendEncode(make([]byte, 0, 32), id[:]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; see ParseID.
func (id *ID) UnmarshalText(text []byte) error {
	v, err := parseID(text)
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseID parses the 32 hex digits written by ID.String. The error wraps
// ErrMalformed.
func ParseID(s string) (ID, error) {
	return parseID([]byte(s))
}

func parseID(s []byte) (ID, error) {
	var id ID
	if len(s) != 32 {
		return id, fmt.Errorf("codec: parse id %q: want 32 hex digits, got %d characters: %w", s, len(s), ErrMalformed)
	}
	if _, err := hex.Decode(id[:], s); err != nil {
		return ID{}, fmt.Errorf("codec: parse id %q: %v: %w", s, err, ErrMalformed)
	}
	return id, nil
}

// Kind tells the pattern layer what an envelope is for. The codec carries it
// without interpreting it. Values 6 to 255 are reserved for future use.
type Kind uint8

// Kinds defined by the pattern layer, documented in docs/wire.md.
const (
	KindData  Kind = 0 // an application message: request, publication, work item
	KindReply Kind = 1 // a reply to a request
	KindError Kind = 2 // an error reply; the body describes the error
	KindAck   Kind = 3 // positive acknowledgement of a delivered message
	KindNack  Kind = 4 // negative acknowledgement: not processed, redeliver
	KindStart Kind = 5 // a handler started on delivered messages (acked pipeline)
)

var kindNames = [...]string{"data", "reply", "error", "ack", "nack", "start"}

// String returns the kind's name ("data", "reply", ...) or "kind(N)".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}
