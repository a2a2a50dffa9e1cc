package codec

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// maxDepth is the deepest nesting of arrays and maps the decoder walks
// through, in ignored trailing envelope fields and in bodies given to
// UnmarshalValue. It bounds the recursion of the msgpack library's decoder.
const maxDepth = 256

// Decode decodes the envelope encoded in data into e.
//
// e.Body aliases data: it is a sub-slice of the input, not a copy, so data
// must not be modified or reused (for example returned to a pool) while e.Body
// is in use: clone e.Body when the envelope must outlive data. The string
// fields and headers are copied out of data in a single allocation.
//
// An empty body and an empty or nil header map decode as nil. Trailing array
// elements beyond the 11 of version 1 are checked and ignored. On error e is
// left unchanged and the error wraps ErrTruncated, ErrVersion, ErrMalformed or
// ErrTooLarge.
func Decode(data []byte, e *Envelope) error {
	var v View
	if err := DecodeView(data, &v); err != nil {
		return err
	}
	*e = v.Envelope()
	return nil
}

// View is an envelope decoded without copying or allocating: its byte
// fields are sub-slices of the input, and the headers stay encoded until
// Headers is called. It is for receive paths that use a few fields of each
// message (the pattern package reads the body, the kind and the sequence
// numbers of every message and keeps the strings only when they change).
//
// A View is valid only as long as the input is neither modified nor reused;
// Envelope and the string conversions copy what must outlive it.
type View struct {
	ID        ID
	Kind      Kind
	Type      []byte // empty when the envelope has none
	Priority  uint8
	Timestamp int64
	Sender    []byte
	Seq       uint64
	Topic     []byte
	Body      []byte // nil when empty

	// headers holds the encoded header entries (nHeaders key/value pairs,
	// already validated); strs spans every string of the envelope, from
	// the type to the end of the headers, and the offsets are those of the
	// sender and topic in it.
	headers             []byte
	nHeaders            int
	strs                []byte
	senderOff, topicOff int
}

// DecodeView decodes the envelope in data into v, checking it exactly as
// Decode does (the same input is accepted and rejected, with the same
// errors), but copying nothing. On error v is left unchanged.
func DecodeView(data []byte, v *View) error {
	if decodeViewFast(data, v) {
		return nil
	}
	return decodeViewSlow(data, v)
}

// decodeViewFast decodes the envelopes zpeer writes for small messages
// (short ASCII strings, no headers, nothing after the 11 fields) with
// straight-line code, and returns false, leaving v unchanged, for
// anything else: DecodeView then takes the general path, which accepts a
// superset of what this accepts, decodes it to the same View (a fuzz
// target checks both) and words the errors.
func decodeViewFast(data []byte, v *View) bool {
	// 0x9b (fixarray of 11), version 1, bin8 of 16: the id.
	if len(data) < 4+16+9 || data[0] != 0x90|envelopeFields || data[1] != Version || data[2] != 0xc4 || data[3] != 16 {
		return false
	}
	var out View
	copy(out.ID[:], data[4:20])
	p := 20
	if data[p] > 0x7f { // kind: positive fixint
		return false
	}
	out.Kind = Kind(data[p])
	p++
	typeStart, typeEnd, ok := fastStr(data, p)
	if !ok {
		return false
	}
	p = typeEnd
	if p >= len(data) || data[p] > 0x7f { // priority: positive fixint
		return false
	}
	out.Priority = data[p]
	p++
	ts, p, ok := fastUint(data, p)
	if !ok || ts > math.MaxInt64 {
		return false
	}
	out.Timestamp = int64(ts)
	senderStart, senderEnd, ok := fastStr(data, p)
	if !ok {
		return false
	}
	if out.Seq, p, ok = fastUint(data, senderEnd); !ok {
		return false
	}
	topicStart, topicEnd, ok := fastStr(data, p)
	if !ok {
		return false
	}
	p = topicEnd
	// No headers (nil), then the body: bin8/16/32 spanning the rest.
	if len(data)-p < 2 || data[p] != 0xc0 {
		return false
	}
	p++
	var n int
	switch data[p] {
	case 0xc4:
		if len(data)-p < 2 {
			return false
		}
		n, p = int(data[p+1]), p+2
	case 0xc5:
		if len(data)-p < 3 {
			return false
		}
		n, p = int(binary.BigEndian.Uint16(data[p+1:])), p+3
	case 0xc6:
		if len(data)-p < 5 {
			return false
		}
		n, p = int(binary.BigEndian.Uint32(data[p+1:])), p+5
	default:
		return false
	}
	if len(data)-p != n {
		return false
	}
	out.Type = data[typeStart:typeEnd:typeEnd]
	out.Sender = data[senderStart:senderEnd:senderEnd]
	out.Topic = data[topicStart:topicEnd:topicEnd]
	out.strs = data[typeStart:topicEnd:topicEnd]
	out.senderOff, out.topicOff = senderStart-typeStart, topicStart-typeStart
	if n > 0 {
		out.Body = data[p:len(data):len(data)]
	}
	*v = out
	return true
}

// fastStr reads a fixstr of ASCII at data[p:], for decodeViewFast.
func fastStr(data []byte, p int) (start, end int, ok bool) {
	if p >= len(data) || data[p]&0xe0 != 0xa0 {
		return 0, 0, false
	}
	start, end = p+1, p+1+int(data[p]&0x1f)
	if end > len(data) {
		return 0, 0, false
	}
	for _, c := range data[start:end] {
		if c >= 0x80 {
			return 0, 0, false
		}
	}
	return start, end, true
}

// fastUint reads a positive fixint or a uint 8/16/32/64 at data[p:], for
// decodeViewFast.
func fastUint(data []byte, p int) (v uint64, next int, ok bool) {
	if p >= len(data) {
		return 0, 0, false
	}
	c := data[p]
	if c <= 0x7f {
		return uint64(c), p + 1, true
	}
	var n int
	switch c {
	case 0xcc:
		n = 1
	case 0xcd:
		n = 2
	case 0xce:
		n = 4
	case 0xcf:
		n = 8
	default:
		return 0, 0, false
	}
	if len(data)-p-1 < n {
		return 0, 0, false
	}
	b := data[p+1 : p+1+n]
	switch n {
	case 1:
		v = uint64(b[0])
	case 2:
		v = uint64(binary.BigEndian.Uint16(b))
	case 4:
		v = uint64(binary.BigEndian.Uint32(b))
	default:
		v = binary.BigEndian.Uint64(b)
	}
	return v, p + 1 + n, true
}

// decodeViewSlow is DecodeView's general path.
//
// It stays long: the envelope's fields in wire order, each read and checked.
func decodeViewSlow(data []byte, v *View) error {
	d := reader{data: data}

	n, err := d.arrayLen("envelope")
	if err != nil {
		return err
	}
	if n == 0 {
		return fieldErr("envelope", ErrMalformed, "empty array, not an envelope")
	}
	version, err := d.uint("version")
	if err != nil {
		return err
	}
	if version != Version {
		return fieldErr("version", ErrVersion, "version %d, this decoder reads %d", version, Version)
	}
	if n < envelopeFields {
		return fieldErr("envelope", ErrMalformed, "array of %d elements, version 1 has %d", n, envelopeFields)
	}

	var out View
	idStart, idEnd, isNil, err := d.bin("id")
	if err != nil {
		return err
	}
	if isNil {
		return fieldErr("id", ErrMalformed, "want bin of 16 bytes, got nil")
	}
	if idEnd-idStart != len(out.ID) {
		return fieldErr("id", ErrMalformed, "want bin of 16 bytes, got %d bytes", idEnd-idStart)
	}
	copy(out.ID[:], data[idStart:idEnd])

	kind, err := d.uint("kind")
	if err != nil {
		return err
	}
	if kind > math.MaxUint8 {
		return fieldErr("kind", ErrMalformed, "%d out of range 0-255", kind)
	}
	out.Kind = Kind(kind)
	typeStart, typeEnd, err := d.str("type")
	if err != nil {
		return err
	}
	prio, err := d.uint("priority")
	if err != nil {
		return err
	}
	if prio > math.MaxUint8 {
		return fieldErr("priority", ErrMalformed, "%d out of range 0-255", prio)
	}
	out.Priority = uint8(prio)
	if out.Timestamp, err = d.int("timestamp"); err != nil {
		return err
	}
	senderStart, senderEnd, err := d.str("sender")
	if err != nil {
		return err
	}
	if out.Seq, err = d.uint("seq"); err != nil {
		return err
	}
	topicStart, topicEnd, err := d.str("topic")
	if err != nil {
		return err
	}
	nHeaders, err := d.mapLen("headers")
	if err != nil {
		return err
	}
	headersStart := d.pos
	for range 2 * nHeaders {
		if _, _, err := d.str("headers"); err != nil {
			return err
		}
	}
	headersEnd := d.pos
	bodyStart, bodyEnd, _, err := d.bin("body")
	if err != nil {
		return err
	}
	if n > envelopeFields {
		if err := d.skip("envelope", n-envelopeFields, nil); err != nil {
			return err
		}
	}
	if d.pos != len(data) {
		return fieldErr("envelope", ErrMalformed, "%d trailing bytes after the envelope", len(data)-d.pos)
	}
	if nHeaders > 1 {
		if err := checkHeaderKeys(data[headersStart:headersEnd], nHeaders); err != nil {
			return err
		}
	}

	out.Type = data[typeStart:typeEnd:typeEnd]
	out.Sender = data[senderStart:senderEnd:senderEnd]
	out.Topic = data[topicStart:topicEnd:topicEnd]
	out.strs = data[typeStart:topicEnd:topicEnd]
	if nHeaders > 0 {
		out.headers = data[headersStart:headersEnd:headersEnd]
		out.nHeaders = nHeaders
		out.strs = data[typeStart:headersEnd:headersEnd]
	}
	out.senderOff, out.topicOff = senderStart-typeStart, topicStart-typeStart
	if bodyEnd > bodyStart {
		out.Body = data[bodyStart:bodyEnd:bodyEnd]
	}
	*v = out
	return nil
}

// checkHeaderKeys rejects encoded header entries (validated strs) with a
// duplicate key. A few headers are compared pairwise, without allocating.
func checkHeaderKeys(entries []byte, n int) error {
	var small [8][2]int
	keys := small[:0]
	var seen map[string]struct{}
	if n > len(small) {
		seen = make(map[string]struct{}, n)
	}
	h := reader{data: entries}
	for range n {
		ks, ke, _ := h.str("headers")
		h.str("headers")
		k := entries[ks:ke]
		if seen != nil {
			if _, dup := seen[string(k)]; dup {
				return fieldErr("headers", ErrMalformed, "duplicate key %q", k)
			}
			seen[string(k)] = struct{}{}
			continue
		}
		for _, o := range keys {
			if string(entries[o[0]:o[1]]) == string(k) {
				return fieldErr("headers", ErrMalformed, "duplicate key %q", k)
			}
		}
		keys = append(keys, [2]int{ks, ke})
	}
	return nil
}

// NumHeaders returns the number of headers.
func (v *View) NumHeaders() int { return v.nHeaders }

// Header returns the value of the header key, aliasing the input, and
// whether it is present. It does not allocate.
func (v *View) Header(key string) ([]byte, bool) {
	h := reader{data: v.headers}
	for range v.nHeaders {
		ks, ke, _ := h.str("headers") // validated by DecodeView
		vs, ve, _ := h.str("headers")
		if string(v.headers[ks:ke]) == key {
			return v.headers[vs:ve:ve], true
		}
	}
	return nil, false
}

// Headers returns the headers in a new map, or nil when there are none.
func (v *View) Headers() map[string]string {
	if v.nHeaders == 0 {
		return nil
	}
	out := make(map[string]string, v.nHeaders)
	h := reader{data: v.headers}
	for range v.nHeaders {
		ks, ke, _ := h.str("headers") // validated by DecodeView
		vs, ve, _ := h.str("headers")
		out[string(v.headers[ks:ke])] = string(v.headers[vs:ve])
	}
	return out
}

// Envelope returns the envelope v describes. Its strings and headers are
// copied (in one allocation for all the strings); its Body still aliases
// the input.
func (v *View) Envelope() Envelope {
	e := Envelope{ID: v.ID, Kind: v.Kind, Priority: v.Priority, Timestamp: v.Timestamp, Seq: v.Seq, Body: v.Body}
	if len(v.Type)+len(v.Sender)+len(v.Topic)+v.nHeaders == 0 {
		return e
	}
	// One string holding everything from the type to the end of the
	// headers; each field is a substring of it. The few bytes of integers
	// in between are cheaper than one allocation per field.
	all := string(v.strs)
	e.Type = all[:len(v.Type)]
	e.Sender = all[v.senderOff : v.senderOff+len(v.Sender)]
	e.Topic = all[v.topicOff : v.topicOff+len(v.Topic)]
	if v.nHeaders > 0 {
		e.Headers = make(map[string]string, v.nHeaders)
		h := reader{data: v.strs, pos: len(v.strs) - len(v.headers)}
		for range v.nHeaders {
			ks, ke, _ := h.str("headers") // validated by DecodeView
			vs, ve, _ := h.str("headers")
			e.Headers[all[ks:ke]] = all[vs:ve]
		}
	}
	return e
}

// fieldErr builds the error for a field: "codec: field F: detail: sentinel".
func fieldErr(field string, sentinel error, format string, args ...any) error {
	return fmt.Errorf("codec: field %s: %s: %w", field, fmt.Sprintf(format, args...), sentinel)
}

// reader reads MessagePack values from data, checking every length against
// the bytes that remain before using it. Its methods take the name of the
// field being read, for error messages.
type reader struct {
	data []byte
	pos  int
}

func (d *reader) remaining() int { return len(d.data) - d.pos }

// code reads one type code.
func (d *reader) code(field string) (byte, error) {
	if d.pos >= len(d.data) {
		return 0, fieldErr(field, ErrTruncated, "input ends at byte %d, want a value", d.pos)
	}
	c := d.data[d.pos]
	d.pos++
	return c, nil
}

// fixed reads the n-byte big-endian number that follows a type code.
func (d *reader) fixed(field string, n int) (uint64, error) {
	if d.remaining() < n {
		return 0, fieldErr(field, ErrTruncated, "input ends at byte %d inside a %d-byte number", len(d.data), n)
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	}
	return binary.BigEndian.Uint64(b), nil
}

// integer reads any MessagePack integer. neg reports whether it is negative,
// in which case v holds its two's complement.
func (d *reader) integer(field string) (v uint64, neg bool, err error) {
	c, err := d.code(field)
	if err != nil {
		return 0, false, err
	}
	switch {
	case msgpcode.IsFixedNum(c):
		if c <= msgpcode.PosFixedNumHigh {
			return uint64(c), false, nil
		}
		return uint64(int64(int8(c))), true, nil
	case c == msgpcode.Uint8:
		v, err = d.fixed(field, 1)
		return v, false, err
	case c == msgpcode.Uint16:
		v, err = d.fixed(field, 2)
		return v, false, err
	case c == msgpcode.Uint32:
		v, err = d.fixed(field, 4)
		return v, false, err
	case c == msgpcode.Uint64:
		v, err = d.fixed(field, 8)
		return v, false, err
	case c == msgpcode.Int8:
		v, err = d.fixed(field, 1)
		s := int64(int8(v))
		return uint64(s), s < 0, err
	case c == msgpcode.Int16:
		v, err = d.fixed(field, 2)
		s := int64(int16(v))
		return uint64(s), s < 0, err
	case c == msgpcode.Int32:
		v, err = d.fixed(field, 4)
		s := int64(int32(v))
		return uint64(s), s < 0, err
	case c == msgpcode.Int64:
		v, err = d.fixed(field, 8)
		s := int64(v)
		return uint64(s), s < 0, err
	}
	return 0, false, fieldErr(field, ErrMalformed, "want integer, got %s", describe(c))
}

// uint reads a non-negative integer in any MessagePack integer format.
func (d *reader) uint(field string) (uint64, error) {
	v, neg, err := d.integer(field)
	if err != nil {
		return 0, err
	}
	if neg {
		return 0, fieldErr(field, ErrMalformed, "negative value %d", int64(v))
	}
	return v, nil
}

// int reads a signed 64-bit integer in any MessagePack integer format.
func (d *reader) int(field string) (int64, error) {
	v, neg, err := d.integer(field)
	if err != nil {
		return 0, err
	}
	if !neg && v > math.MaxInt64 {
		return 0, fieldErr(field, ErrMalformed, "%d out of int64 range", v)
	}
	return int64(v), nil
}

// span checks that n bytes remain and returns their bounds.
func (d *reader) span(field string, n uint64) (start, end int, err error) {
	if n > uint64(d.remaining()) {
		return 0, 0, fieldErr(field, ErrTooLarge, "declares %d bytes, %d remain", n, d.remaining())
	}
	start = d.pos
	d.pos += int(n)
	return start, d.pos, nil
}

// str reads a str and returns the bounds of its bytes, which must be UTF-8.
func (d *reader) str(field string) (start, end int, err error) {
	c, err := d.code(field)
	if err != nil {
		return 0, 0, err
	}
	var n uint64
	switch {
	case msgpcode.IsFixedString(c):
		n = uint64(c & msgpcode.FixedStrMask)
	case c == msgpcode.Str8:
		n, err = d.fixed(field, 1)
	case c == msgpcode.Str16:
		n, err = d.fixed(field, 2)
	case c == msgpcode.Str32:
		n, err = d.fixed(field, 4)
	default:
		return 0, 0, fieldErr(field, ErrMalformed, "want str, got %s", describe(c))
	}
	if err != nil {
		return 0, 0, err
	}
	start, end, err = d.span(field, n)
	if err != nil {
		return 0, 0, err
	}
	if !validUTF8Bytes(d.data[start:end]) {
		return 0, 0, fieldErr(field, ErrMalformed, "str is not valid UTF-8")
	}
	return start, end, nil
}

// bin reads a bin, or nil, and returns the bounds of its bytes.
func (d *reader) bin(field string) (start, end int, isNil bool, err error) {
	c, err := d.code(field)
	if err != nil {
		return 0, 0, false, err
	}
	var n uint64
	switch c {
	case msgpcode.Nil:
		return d.pos, d.pos, true, nil
	case msgpcode.Bin8:
		n, err = d.fixed(field, 1)
	case msgpcode.Bin16:
		n, err = d.fixed(field, 2)
	case msgpcode.Bin32:
		n, err = d.fixed(field, 4)
	default:
		return 0, 0, false, fieldErr(field, ErrMalformed, "want bin, got %s", describe(c))
	}
	if err != nil {
		return 0, 0, false, err
	}
	start, end, err = d.span(field, n)
	return start, end, false, err
}

// arrayLen reads an array header. The count is not checked against the
// remaining input: the caller reads the elements one by one.
func (d *reader) arrayLen(field string) (int, error) {
	c, err := d.code(field)
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= msgpcode.FixedArrayLow && c <= msgpcode.FixedArrayHigh:
		return int(c & msgpcode.FixedArrayMask), nil
	case c == msgpcode.Array16:
		n, err = d.fixed(field, 2)
	case c == msgpcode.Array32:
		n, err = d.fixed(field, 4)
	default:
		return 0, fieldErr(field, ErrMalformed, "want array, got %s", describe(c))
	}
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt32 { // keep int(n) positive on 32-bit platforms
		return 0, fieldErr(field, ErrTooLarge, "array of %d elements", n)
	}
	return int(n), nil
}

// mapLen reads a map header, or nil (0 entries), and checks that the input
// has room for the announced entries: at least 2 bytes each.
func (d *reader) mapLen(field string) (int, error) {
	c, err := d.code(field)
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c == msgpcode.Nil:
		return 0, nil
	case c >= msgpcode.FixedMapLow && c <= msgpcode.FixedMapHigh:
		n = uint64(c & msgpcode.FixedMapMask)
	case c == msgpcode.Map16:
		n, err = d.fixed(field, 2)
	case c == msgpcode.Map32:
		n, err = d.fixed(field, 4)
	default:
		return 0, fieldErr(field, ErrMalformed, "want map or nil, got %s", describe(c))
	}
	if err != nil {
		return 0, err
	}
	if 2*n > uint64(d.remaining()) {
		return 0, fieldErr(field, ErrTooLarge, "declares %d entries, %d bytes remain", n, d.remaining())
	}
	return int(n), nil
}

// skip reads and discards count values of any type, checking them as it goes.
// It does not recurse: nesting is tracked in a fixed-size stack and limited to
// maxDepth. A declared length or element count larger than the remaining
// input is ErrTooLarge (an element takes at least one byte).
//
// With vc nil, ext values are skipped as opaque bytes. With vc non-nil the
// input is about to be given to the msgpack library, and ext values are
// checked as described at valueCheck.
//
// It stays long: one switch over every msgpack type code, without recursion.
func (d *reader) skip(field string, count int, vc *valueCheck) error {
	if count == 0 {
		return nil
	}
	if count > d.remaining() {
		return fieldErr(field, ErrTooLarge, "declares %d elements more, %d bytes remain", count, d.remaining())
	}
	var stack [maxDepth + 1]int // elements left at each level
	depth := 0
	stack[0] = count
	for {
		for stack[depth] == 0 {
			if depth == 0 {
				return nil
			}
			depth--
		}
		stack[depth]--

		start := d.pos
		c, err := d.code(field)
		if err != nil {
			return err
		}
		var elems uint64 // elements of an array or map; 2 per map entry
		var fixed int    // bytes of a fixed-size payload: numbers, fixext
		var size uint64  // bytes of a payload whose length is declared
		var err2 error
		switch {
		case c <= msgpcode.PosFixedNumHigh, c >= msgpcode.NegFixedNumLow,
			c == msgpcode.Nil, c == msgpcode.False, c == msgpcode.True:
		case msgpcode.IsFixedString(c):
			size = uint64(c & msgpcode.FixedStrMask)
		case c >= msgpcode.FixedArrayLow && c <= msgpcode.FixedArrayHigh:
			elems = uint64(c & msgpcode.FixedArrayMask)
		case c >= msgpcode.FixedMapLow && c <= msgpcode.FixedMapHigh:
			elems = 2 * uint64(c&msgpcode.FixedMapMask)
		case c == msgpcode.Uint8, c == msgpcode.Int8:
			fixed = 1
		case c == msgpcode.Uint16, c == msgpcode.Int16:
			fixed = 2
		case c == msgpcode.Uint32, c == msgpcode.Int32, c == msgpcode.Float:
			fixed = 4
		case c == msgpcode.Uint64, c == msgpcode.Int64, c == msgpcode.Double:
			fixed = 8
		case c == msgpcode.FixExt1:
			fixed = 1 + 1 // ext type, data
		case c == msgpcode.FixExt2:
			fixed = 1 + 2
		case c == msgpcode.FixExt4:
			fixed = 1 + 4
		case c == msgpcode.FixExt8:
			fixed = 1 + 8
		case c == msgpcode.FixExt16:
			fixed = 1 + 16
		case c == msgpcode.Str8, c == msgpcode.Bin8:
			size, err2 = d.fixed(field, 1)
		case c == msgpcode.Str16, c == msgpcode.Bin16:
			size, err2 = d.fixed(field, 2)
		case c == msgpcode.Str32, c == msgpcode.Bin32:
			size, err2 = d.fixed(field, 4)
		case c == msgpcode.Ext8:
			size, err2 = d.fixed(field, 1)
			if err2 == nil {
				_, err2 = d.fixed(field, 1) // ext type
			}
		case c == msgpcode.Ext16:
			size, err2 = d.fixed(field, 2)
			if err2 == nil {
				_, err2 = d.fixed(field, 1)
			}
		case c == msgpcode.Ext32:
			size, err2 = d.fixed(field, 4)
			if err2 == nil {
				_, err2 = d.fixed(field, 1)
			}
		case c == msgpcode.Array16:
			elems, err2 = d.fixed(field, 2)
		case c == msgpcode.Array32:
			elems, err2 = d.fixed(field, 4)
		case c == msgpcode.Map16:
			elems, err2 = d.fixed(field, 2)
			elems *= 2
		case c == msgpcode.Map32:
			elems, err2 = d.fixed(field, 4)
			elems *= 2
		default: // 0xc1, never used
			return fieldErr(field, ErrMalformed, "invalid type code %#02x at byte %d", c, d.pos-1)
		}
		if err2 != nil {
			return err2
		}
		if fixed > 0 {
			if d.remaining() < fixed {
				return fieldErr(field, ErrTruncated, "input ends at byte %d inside a %d-byte value", len(d.data), fixed)
			}
			d.pos += fixed
		}
		if size > 0 {
			if _, _, err := d.span(field, size); err != nil {
				return err
			}
		}
		if vc != nil && msgpcode.IsExt(c) {
			if err := vc.ext(field, d.data[start:d.pos], start); err != nil {
				return err
			}
		}
		if elems > 0 {
			if elems > uint64(d.remaining()) {
				return fieldErr(field, ErrTooLarge, "declares %d elements, %d bytes remain", elems, d.remaining())
			}
			if depth == maxDepth {
				return fieldErr(field, ErrTooLarge, "nesting deeper than %d", maxDepth)
			}
			depth++
			stack[depth] = int(elems)
		}
	}
}

// describe names the MessagePack type of code c, for error messages.
func describe(c byte) string {
	switch {
	case c <= msgpcode.PosFixedNumHigh:
		return "positive fixint"
	case c >= msgpcode.NegFixedNumLow:
		return "negative fixint"
	case msgpcode.IsFixedString(c), c == msgpcode.Str8, c == msgpcode.Str16, c == msgpcode.Str32:
		return "str"
	case c >= msgpcode.FixedArrayLow && c <= msgpcode.FixedArrayHigh, c == msgpcode.Array16, c == msgpcode.Array32:
		return "array"
	case c >= msgpcode.FixedMapLow && c <= msgpcode.FixedMapHigh, c == msgpcode.Map16, c == msgpcode.Map32:
		return "map"
	case c == msgpcode.Bin8, c == msgpcode.Bin16, c == msgpcode.Bin32:
		return "bin"
	case c == msgpcode.Nil:
		return "nil"
	case c == msgpcode.False, c == msgpcode.True:
		return "bool"
	case c == msgpcode.Float, c == msgpcode.Double:
		return "float"
	case c >= msgpcode.Uint8 && c <= msgpcode.Uint64:
		return "uint"
	case c >= msgpcode.Int8 && c <= msgpcode.Int64:
		return "int"
	case c >= msgpcode.FixExt1 && c <= msgpcode.FixExt16, c >= msgpcode.Ext8 && c <= msgpcode.Ext32:
		return "ext"
	}
	return fmt.Sprintf("invalid code %#02x", c)
}
