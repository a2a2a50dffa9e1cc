package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// MarshalValue encodes v as MessagePack for use as an envelope body. The bytes
// are those of msgpack.Marshal(v) from github.com/vmihailenco/msgpack/v5, with
// its default settings: structs become maps keyed by field name (or the
// `msgpack` tag); int and uint take the smallest integer format, sized types
// (int64, uint32, ...) their full width; time.Time is the timestamp extension.
// A []byte becomes a msgpack bin and a string a msgpack str; neither is passed
// through unwrapped, so a peer in another language always decodes a body with
// msgpack.
func MarshalValue(v any) ([]byte, error) {
	return AppendValue(nil, v)
}

// AppendValue appends the MessagePack encoding of v (see MarshalValue) to dst
// and returns the extended slice. On error dst is returned unchanged in length.
func AppendValue(dst []byte, v any) ([]byte, error) {
	n := len(dst)
	enc := getEncoder(dst)
	err := enc.enc.Encode(v)
	out := enc.release()
	if err != nil {
		return out[:n], fmt.Errorf("codec: marshal value: %w", err)
	}
	return out, nil
}

// UnmarshalValue decodes one MessagePack value from data into v, which must be
// a non-nil pointer, as msgpack.Unmarshal does.
//
// data may come from anyone, so before handing it to the msgpack library
// UnmarshalValue walks it and rejects input that is truncated (ErrTruncated),
// that declares more bytes or elements than it holds or nests deeper than 256
// levels (ErrTooLarge), that is followed by trailing bytes, or that holds an
// ext value other than the timestamp extension (ErrMalformed). This bounds
// what the library allocates by the size of data; msgpack/v5 v5.4.1 alone
// allocates a slice of the declared length, up to 2^32 elements, from a
// 5-byte input, and reads the payload of an ext value as an unchecked map
// header when a Go map is expected. Errors from the library (a value of the
// wrong type for v) are wrapped together with ErrMalformed.
//
// The guarantee covers the library's own decoding of Go types; a type with its
// own DecodeMsgpack method, or a non-nil value already stored in an interface
// inside v, is decoded by code this package does not control.
func UnmarshalValue(data []byte, v any) error {
	vc, err := checkValue(data)
	if err != nil {
		return err
	}
	if len(vc.rewrite) > 0 {
		data = vc.rewriteTimestamps(data)
	}
	if err := decodeValue(data, v, false); err != nil {
		return fmt.Errorf("codec: field value: %w: %w", err, ErrMalformed)
	}
	return nil
}

// CheckValue checks that data is one whole MessagePack value within
// UnmarshalValue's bounds (see there), without decoding it: for code that
// decodes bodies itself, such as generated decoders (the msgp fast path
// of package pattern). It is part of the low-level API.
func CheckValue(data []byte) error {
	_, err := checkValue(data)
	return err
}

// checkValue walks data as one whole MessagePack value within the bounds,
// noting what UnmarshalValue must rewrite before decoding.
func checkValue(data []byte) (valueCheck, error) {
	var vc valueCheck
	if len(data) == 0 {
		return vc, fieldErr("value", ErrTruncated, "no input")
	}
	d := reader{data: data}
	if err := d.skip("value", 1, &vc); err != nil {
		return vc, err
	}
	if d.pos != len(data) {
		return vc, fieldErr("value", ErrMalformed, "%d trailing bytes after the value", len(data)-d.pos)
	}
	return vc, nil
}

// structTag is the struct tag msgpack/v5 falls back on when a field has no
// `msgpack` tag: a Go struct written for encoding/json (and the zpeer
// command's --body json) keeps its key names.
const structTag = "json"

// decodeValue is msgpack.Unmarshal with the json tag fallback, and with
// unknown map keys an error when strict.
func decodeValue(data []byte, v any, strict bool) error {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(data))
	dec.UsePreallocateValues(true)
	dec.SetCustomStructTag(structTag)
	dec.DisallowUnknownFields(strict)
	return dec.Decode(v)
}

// UnknownField returns the first key of a MessagePack map in data that
// names no field of the struct v points to (as UnmarshalValue matches
// them), or "" when every key is known or data is no such map. UnmarshalValue
// skips unknown keys, so a body written for another type decodes to zero
// values without an error; receivers log what UnknownField finds at debug
// level. v is decoded into, so pass a fresh value; data must have passed
// UnmarshalValue. It is part of the low-level API.
func UnknownField(data []byte, v any) string {
	err := decodeValue(data, v, true)
	if err == nil {
		return ""
	}
	const prefix = "msgpack: unknown field "
	msg := err.Error()
	if i := strings.Index(msg, prefix); i >= 0 {
		if name, err := strconv.Unquote(msg[i+len(prefix):]); err == nil {
			return name
		}
	}
	return ""
}

// timestampExt is the MessagePack timestamp extension type, -1.
const timestampExt = 0xff

// valueCheck makes ext values safe to give to msgpack/v5. Its
// Decoder.DecodeMapLen, used for every Go map target, accepts an ext value in
// place of a map: it skips the ext header and reads the payload as a map
// header and entries, bytes that skip never checked as values. So valueCheck
//   - accepts only the timestamp extension (type -1, payload of 4, 8 or 12
//     bytes, nanoseconds below 1e9), the one ext msgpack/v5 knows by default;
//   - notes each timestamp in the 4- or 8-byte form whose first payload byte
//     is nil or a map code, for rewriteTimestamps to re-encode in the 12-byte
//     form. That form starts with the nanoseconds, whose first byte is at most
//     0x3b, which the library rejects at once as a map header.
type valueCheck struct {
	rewrite []int // offsets of the timestamps to re-encode, in order
}

// ext checks the ext value tok (type code to end of payload) found at offset.
func (vc *valueCheck) ext(field string, tok []byte, offset int) error {
	var typ byte
	var payload []byte
	switch tok[0] {
	case msgpcode.FixExt4, msgpcode.FixExt8:
		typ, payload = tok[1], tok[2:]
	case msgpcode.Ext8:
		typ, payload = tok[2], tok[3:]
	}
	if typ != timestampExt || payload == nil || (tok[0] == msgpcode.Ext8 && len(payload) != 12) {
		return fieldErr(field, ErrMalformed, "ext value at byte %d (type %d, %d bytes): only the timestamp extension is supported",
			offset, int8(typ), len(payload))
	}
	var nsec uint64
	switch len(payload) {
	case 8:
		nsec = binary.BigEndian.Uint64(payload) >> 34
	case 12:
		nsec = uint64(binary.BigEndian.Uint32(payload))
	}
	if nsec >= 1e9 {
		return fieldErr(field, ErrMalformed, "timestamp at byte %d has %d nanoseconds", offset, nsec)
	}
	if b := payload[0]; len(payload) < 12 && (b == msgpcode.Nil || b == msgpcode.Map16 || b == msgpcode.Map32 ||
		(b >= msgpcode.FixedMapLow && b <= msgpcode.FixedMapHigh)) {
		vc.rewrite = append(vc.rewrite, offset)
	}
	return nil
}

// rewriteTimestamps returns a copy of data with the timestamps noted by ext
// re-encoded in the 12-byte form: the same instants, decoded the same way.
func (vc *valueCheck) rewriteTimestamps(data []byte) []byte {
	out := make([]byte, 0, len(data)+9*len(vc.rewrite))
	prev := 0
	for _, off := range vc.rewrite {
		out = append(out, data[prev:off]...)
		var sec, nsec uint64
		if data[off] == msgpcode.FixExt4 {
			sec = uint64(binary.BigEndian.Uint32(data[off+2:]))
			prev = off + 2 + 4
		} else {
			v := binary.BigEndian.Uint64(data[off+2:])
			sec, nsec = v&(1<<34-1), v>>34
			prev = off + 2 + 8
		}
		out = append(out, msgpcode.Ext8, 12, timestampExt)
		out = binary.BigEndian.AppendUint32(out, uint32(nsec))
		out = binary.BigEndian.AppendUint64(out, sec)
	}
	return append(out, data[prev:]...)
}
