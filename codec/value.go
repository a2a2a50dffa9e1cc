package codec

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// MarshalValue encodes v as MessagePack for use as an envelope body. The bytes
// are those of msgpack.Marshal(v) from github.com/vmihailenco/msgpack/v5, with
// its default settings: structs become maps keyed by field name (or the
// `msgpack` tag); int and uint take the smallest integer format, sized types
// (int64, uint32, ...) their full width. A []byte becomes a msgpack bin
// and a string a msgpack str; neither is passed through unwrapped, so a peer
// in another language always decodes a body with msgpack.
func MarshalValue(v any) ([]byte, error) {
	return AppendValue(nil, v)
}

// AppendValue appends the MessagePack encoding of v (see MarshalValue) to dst
// and returns the extended slice. On error dst is returned unchanged in length.
func AppendValue(dst []byte, v any) ([]byte, error) {
	n := len(dst)
	enc := getEncoder(dst)
	enc.enc.UseCompactInts(false)
	err := enc.enc.Encode(v)
	enc.enc.UseCompactInts(true)
	out := enc.release()
	if err != nil {
		return out[:n], fmt.Errorf("codec: marshal value: %w", err)
	}
	return out, nil
}

// UnmarshalValue decodes one MessagePack value from data into v, which must be
// a non-nil pointer, as msgpack.Unmarshal does.
//
// Before handing data to the msgpack library, UnmarshalValue walks it and
// rejects, with ErrTruncated, ErrTooLarge or ErrMalformed, input that is
// truncated, that declares more bytes or elements than it holds, that nests
// deeper than 256 levels, or that is followed by trailing bytes. This bounds
// what the library allocates by the size of data: msgpack/v5 v5.4.x would
// otherwise allocate a slice of the declared length (up to 2^32 elements)
// from a 5-byte input. Errors from the library (a value of the wrong type for
// v) are wrapped together with ErrMalformed.
func UnmarshalValue(data []byte, v any) error {
	if len(data) == 0 {
		return fieldErr("value", ErrTruncated, "no input")
	}
	d := reader{data: data}
	if err := d.skip("value", 1); err != nil {
		return err
	}
	if d.pos != len(data) {
		return fieldErr("value", ErrMalformed, "%d trailing bytes after the value", len(data)-d.pos)
	}
	if err := msgpack.Unmarshal(data, v); err != nil {
		return fmt.Errorf("codec: field value: %w: %w", err, ErrMalformed)
	}
	return nil
}
