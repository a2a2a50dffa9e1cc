package codec

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/zpeer/zpeer/internal/codecwire"
)

// Version is the envelope wire-format version written by this package and the
// only one its decoder accepts.
const Version = 1

// envelopeFields is the number of array elements in a version 1 envelope.
// Decoders accept longer arrays and ignore the extra trailing elements.
const envelopeFields = 11

// Envelope is one message with its metadata. The field order of the wire
// array is documented in docs/wire.md.
type Envelope struct {
	ID        ID                // unique message id, see NewID
	Kind      Kind              // what the pattern layer uses it for
	Type      string            // application-defined message type
	Priority  uint8             // higher is delivered first
	Timestamp int64             // creation time, Unix nanoseconds
	Sender    string            // node id of the sender
	Seq       uint64            // per-sender sequence number
	Topic     string            // publish/subscribe topic, or ""
	Headers   map[string]string // application metadata; nil when empty
	Body      []byte            // payload, MessagePack by convention (see MarshalValue)
}

// appendWriter is the io.Writer and io.ByteWriter the msgpack Encoder writes
// into: it appends to buf.
type appendWriter struct{ buf []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.buf = append(w.buf, c)
	return nil
}

// encoder is a msgpack.Encoder bound to an appendWriter, for AppendValue. It
// is pooled so that encoding does not allocate.
type encoder struct {
	w   appendWriter
	enc *msgpack.Encoder
}

var encoderPool = sync.Pool{New: func() any {
	e := new(encoder)
	e.enc = msgpack.NewEncoder(&e.w)
	e.enc.SetCustomStructTag(structTag)
	return e
}}

func getEncoder(dst []byte) *encoder {
	e := encoderPool.Get().(*encoder)
	e.w.buf = dst
	return e
}

// release returns the encoded bytes and puts e back in the pool.
func (e *encoder) release() []byte {
	b := e.w.buf
	e.w.buf = nil
	encoderPool.Put(e)
	return b
}

// AppendEncode appends the wire encoding of e to dst and returns the extended
// slice. It does not allocate when e has no headers and dst has enough
// capacity. Header keys are written in sorted order, so the encoding of an
// envelope is deterministic.
//
// It fails, returning dst unchanged in length, with ErrMalformed if a string
// field, header key or header value is not valid UTF-8 (a MessagePack str must
// be), or with ErrTooLarge if a length exceeds 2^32-1.
func (e *Envelope) AppendEncode(dst []byte) ([]byte, error) {
	if err := e.checkFields(); err != nil {
		return dst, err
	}
	return e.appendTo(slices.Grow(dst, e.encodedLen())), nil
}

// AppendHead is AppendEncode without the body's bytes: it appends every
// field of e and the body's length header, so that the caller appending
// exactly e.Body's bytes after it has the whole encoding. It is for a
// large body that is already where the frame ends (pattern writes the head
// in front of it, in place, rather than copying the body); it fails as
// AppendEncode does.
func (e *Envelope) AppendHead(dst []byte) ([]byte, error) {
	if err := e.checkFields(); err != nil {
		return dst, err
	}
	return e.appendHead(slices.Grow(dst, e.encodedLen()-len(e.Body))), nil
}

// Encode returns the wire encoding of e in a newly allocated slice of exactly
// the right size.
func Encode(e *Envelope) ([]byte, error) {
	if err := e.checkFields(); err != nil {
		return nil, err
	}
	return e.appendTo(make([]byte, 0, e.encodedLen())), nil
}

// appendTo appends e's encoding to dst, which the caller has grown by
// e.encodedLen(); e has passed checkFields. It writes
// what msgpack/v5's Encoder writes with UseCompactInts (integers in their
// smallest format), which codec's tests check, without its per-value calls
// through an io.Writer: this is on every message's path.
func (e *Envelope) appendTo(dst []byte) []byte {
	return append(e.appendHead(dst), e.Body...)
}

// appendHead is appendTo without the body's bytes.
func (e *Envelope) appendHead(dst []byte) []byte {
	dst = append(dst, 0x90|envelopeFields, Version, 0xc4, byte(len(e.ID)))
	dst = append(dst, e.ID[:]...)
	dst = appendUint(dst, uint64(e.Kind))
	dst = appendStr(dst, e.Type)
	dst = appendUint(dst, uint64(e.Priority))
	dst = appendInt(dst, e.Timestamp)
	dst = appendStr(dst, e.Sender)
	dst = appendUint(dst, e.Seq)
	dst = appendStr(dst, e.Topic)
	dst = appendHeaders(dst, e.Headers)
	// The body is always bin, even when empty.
	return codecwire.AppendBinHeader(dst, len(e.Body))
}

// appendHeaders writes h as nil when empty, else as a map with its keys in
// ascending order.
func appendHeaders(dst []byte, h map[string]string) []byte {
	switch n := len(h); {
	case n == 0:
		return append(dst, 0xc0)
	case n < 16:
		dst = append(dst, 0x80|byte(n))
	case n <= math.MaxUint16:
		dst = append(dst, 0xde, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xdf)
		dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	}
	var small [8]string
	keys := small[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = appendStr(dst, k)
		dst = appendStr(dst, h[k])
	}
	return dst
}

// appendUint writes v in the smallest MessagePack unsigned format.
func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v <= math.MaxInt8:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return append(dst, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
}

// appendInt writes v in the smallest MessagePack format: the unsigned ones
// for v >= 0, as msgpack/v5 does.
func appendInt(dst []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(dst, uint64(v))
	case v >= -32:
		return append(dst, byte(v))
	case v >= math.MinInt8:
		return append(dst, 0xd0, byte(v))
	case v >= math.MinInt16:
		return append(dst, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

// appendStr writes s as a MessagePack str (checkFields has checked that it
// is UTF-8 and fits).
func appendStr(dst []byte, s string) []byte {
	return append(codecwire.AppendStrHeader(dst, len(s)), s...)
}

// checkFields rejects what the decoder would reject: strings that are not
// UTF-8 (MessagePack str is UTF-8, and peers such as Python's msgpack refuse
// anything else) and lengths beyond the 32-bit length fields of MessagePack.
func (e *Envelope) checkFields() error {
	if err := checkStr("type", e.Type); err != nil {
		return err
	}
	if err := checkStr("sender", e.Sender); err != nil {
		return err
	}
	if err := checkStr("topic", e.Topic); err != nil {
		return err
	}
	if uint64(len(e.Headers)) > math.MaxUint32 {
		return fieldErr("headers", ErrTooLarge, "%d entries exceed 2^32-1", len(e.Headers))
	}
	if len(e.Headers) > 0 {
		if err := checkHeaders(e.Headers); err != nil {
			return err
		}
	}
	return checkBodyLen(len(e.Body))
}

func checkBodyLen(n int) error {
	if uint64(n) > MaxBody {
		return fieldErr("body", ErrTooLarge, "%d bytes exceed 2^32-1", n)
	}
	return nil
}

func checkHeaders(h map[string]string) error {
	for k, v := range h {
		if err := checkStr("headers", k); err != nil {
			return err
		}
		if err := checkStr("headers", v); err != nil {
			return err
		}
	}
	return nil
}

func checkStr(field, s string) error {
	if uint64(len(s)) > math.MaxUint32 {
		return fieldErr(field, ErrTooLarge, "%d bytes exceed 2^32-1", len(s))
	}
	if !validUTF8(s) {
		return fieldErr(field, ErrMalformed, "%q is not valid UTF-8", s)
	}
	return nil
}

// validUTF8 is utf8.ValidString with a quicker path for the short ASCII
// strings an envelope mostly carries (types, node ids, topics).
func validUTF8(s string) bool {
	if len(s) > 32 {
		return utf8.ValidString(s)
	}
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return utf8.ValidString(s[i:])
		}
	}
	return true
}

// validUTF8Bytes is validUTF8 for a []byte.
func validUTF8Bytes(b []byte) bool {
	if len(b) > 32 {
		return utf8.Valid(b)
	}
	for i := range len(b) {
		if b[i] >= utf8.RuneSelf {
			return utf8.Valid(b[i:])
		}
	}
	return true
}

// encodedLen returns the exact length of e's encoding.
func (e *Envelope) encodedLen() int {
	n := 1 + 1 + // fixarray, version
		2 + len(e.ID) +
		uintLen(uint64(e.Kind)) +
		strLen(len(e.Type)) +
		uintLen(uint64(e.Priority)) +
		intLen(e.Timestamp) +
		strLen(len(e.Sender)) +
		uintLen(e.Seq) +
		strLen(len(e.Topic)) +
		binLen(len(e.Body))
	switch h := len(e.Headers); {
	case h == 0:
		n++ // nil
	case h < 16:
		n++
	case h <= math.MaxUint16:
		n += 3
	default:
		n += 5
	}
	if len(e.Headers) > 0 {
		for k, v := range e.Headers {
			n += strLen(len(k)) + strLen(len(v))
		}
	}
	return n
}

func uintLen(v uint64) int {
	switch {
	case v <= math.MaxInt8:
		return 1
	case v <= math.MaxUint8:
		return 2
	case v <= math.MaxUint16:
		return 3
	case v <= math.MaxUint32:
		return 5
	}
	return 9
}

func intLen(v int64) int {
	switch {
	case v >= 0:
		return uintLen(uint64(v))
	case v >= -32:
		return 1
	case v >= math.MinInt8:
		return 2
	case v >= math.MinInt16:
		return 3
	case v >= math.MinInt32:
		return 5
	}
	return 9
}

func strLen(n int) int {
	switch {
	case n < 32:
		return 1 + n
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}

func binLen(n int) int {
	switch {
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}
