package codec

import (
	"math"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
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

// encoder is a msgpack.Encoder bound to an appendWriter, plus scratch space
// for sorting header keys. It is pooled so that encoding does not allocate.
type encoder struct {
	w    appendWriter
	enc  *msgpack.Encoder
	keys []string
}

var encoderPool = sync.Pool{New: func() any {
	e := new(encoder)
	e.enc = msgpack.NewEncoder(&e.w)
	e.enc.UseCompactInts(true)
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
	clear(e.keys)
	e.keys = e.keys[:0]
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
	n := len(dst)
	enc := getEncoder(dst)
	err := enc.envelope(e)
	out := enc.release()
	if err != nil {
		return out[:n], err
	}
	return out, nil
}

// Encode returns the wire encoding of e in a newly allocated slice of exactly
// the right size.
func Encode(e *Envelope) ([]byte, error) {
	return e.AppendEncode(make([]byte, 0, e.encodedLen()))
}

func (enc *encoder) envelope(e *Envelope) error {
	m := enc.enc
	// The Encoder's methods cannot fail here: appendWriter never returns an
	// error. The errors are still checked, in case that ever changes.
	if err := m.EncodeArrayLen(envelopeFields); err != nil {
		return err
	}
	if err := m.EncodeUint(Version); err != nil {
		return err
	}
	if err := m.EncodeBytesLen(len(e.ID)); err != nil {
		return err
	}
	enc.w.buf = append(enc.w.buf, e.ID[:]...)
	if err := m.EncodeUint(uint64(e.Kind)); err != nil {
		return err
	}
	if err := m.EncodeString(e.Type); err != nil {
		return err
	}
	if err := m.EncodeUint(uint64(e.Priority)); err != nil {
		return err
	}
	if err := m.EncodeInt(e.Timestamp); err != nil {
		return err
	}
	if err := m.EncodeString(e.Sender); err != nil {
		return err
	}
	if err := m.EncodeUint(e.Seq); err != nil {
		return err
	}
	if err := m.EncodeString(e.Topic); err != nil {
		return err
	}
	if err := enc.headers(e.Headers); err != nil {
		return err
	}
	// The body is always bin, even when empty (EncodeBytes would write nil
	// for a nil slice).
	if err := m.EncodeBytesLen(len(e.Body)); err != nil {
		return err
	}
	enc.w.buf = append(enc.w.buf, e.Body...)
	return nil
}

func (enc *encoder) headers(h map[string]string) error {
	m := enc.enc
	if len(h) == 0 {
		return m.EncodeNil()
	}
	if err := m.EncodeMapLen(len(h)); err != nil {
		return err
	}
	keys := enc.keys[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	enc.keys = keys
	for _, k := range keys {
		if err := m.EncodeString(k); err != nil {
			return err
		}
		if err := m.EncodeString(h[k]); err != nil {
			return err
		}
	}
	return nil
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
	for k, v := range e.Headers {
		if err := checkStr("headers", k); err != nil {
			return err
		}
		if err := checkStr("headers", v); err != nil {
			return err
		}
	}
	if uint64(len(e.Body)) > math.MaxUint32 {
		return fieldErr("body", ErrTooLarge, "%d bytes exceed 2^32-1", len(e.Body))
	}
	return nil
}

func checkStr(field, s string) error {
	if uint64(len(s)) > math.MaxUint32 {
		return fieldErr(field, ErrTooLarge, "%d bytes exceed 2^32-1", len(s))
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, ErrMalformed, "%q is not valid UTF-8", s)
	}
	return nil
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
	for k, v := range e.Headers {
		n += strLen(len(k)) + strLen(len(v))
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
