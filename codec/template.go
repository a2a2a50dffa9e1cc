package codec

import (
	"slices"

	"github.com/zpeer/zpeer/internal/codecwire"
)

// Template encodes a stream of envelopes that differ only in their ID,
// Timestamp, Seq and Body, such as the messages one publisher sends on one
// topic. Its output is byte for byte that of Envelope.AppendEncode; the
// fields the envelopes share are checked and encoded once, in NewTemplate,
// instead of once per message.
//
// A Template is immutable and safe for concurrent use. It is part of the
// low-level API (see the package documentation).
type Template struct {
	mid    []byte // kind, type, priority
	sender []byte
	post   []byte // topic, headers
}

// NewTemplate returns a Template for envelopes with e's Kind, Type,
// Priority, Sender, Topic and Headers; e's other fields are ignored. It
// fails as AppendEncode would on those fields.
func NewTemplate(e *Envelope) (*Template, error) {
	shared := Envelope{Kind: e.Kind, Type: e.Type, Priority: e.Priority, Sender: e.Sender, Topic: e.Topic, Headers: e.Headers}
	if err := shared.checkFields(); err != nil {
		return nil, err
	}
	var t Template
	t.mid = appendUint(nil, uint64(e.Kind))
	t.mid = appendStr(t.mid, e.Type)
	t.mid = appendUint(t.mid, uint64(e.Priority))
	t.sender = appendStr(nil, e.Sender)
	t.post = appendStr(nil, e.Topic)
	t.post = appendHeaders(t.post, e.Headers)
	return &t, nil
}

// MaxHeadLen is the most AppendHead writes: the fixed prefix and id (20
// bytes), the shared fields, and at most 9 bytes each for the timestamp
// and sequence number.
func (t *Template) MaxHeadLen() int {
	return 20 + len(t.mid) + 9 + len(t.sender) + 9 + len(t.post)
}

// AppendHead appends the encoding of the envelope with the given ID,
// Timestamp and Seq up to its body. The caller completes it with the body
// as a MessagePack bin: its header, in the smallest format, then its bytes
// (AppendEncode does both; AppendHead is for a body marshalled in place).
func (t *Template) AppendHead(dst []byte, id ID, timestamp int64, seq uint64) []byte {
	dst = slices.Grow(dst, t.MaxHeadLen())
	dst = append(dst, 0x90|envelopeFields, Version, 0xc4, byte(len(id)))
	dst = append(dst, id[:]...)
	dst = append(dst, t.mid...)
	dst = appendInt(dst, timestamp)
	dst = append(dst, t.sender...)
	dst = appendUint(dst, seq)
	return append(dst, t.post...)
}

// AppendEncode appends the encoding of the envelope with the given ID,
// Timestamp, Seq and Body. It fails only with ErrTooLarge, for a body over
// 2^32-1 bytes.
func (t *Template) AppendEncode(dst []byte, id ID, timestamp int64, seq uint64, body []byte) ([]byte, error) {
	if err := checkBodyLen(len(body)); err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, t.MaxHeadLen()+5+len(body))
	dst = t.AppendHead(dst, id, timestamp, seq)
	dst = codecwire.AppendBinHeader(dst, len(body))
	return append(dst, body...), nil
}

// MaxBody is the largest body an envelope can carry: MessagePack's bin
// length field is 32 bits.
const MaxBody = 1<<32 - 1
