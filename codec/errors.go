package codec

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them, with the
// offending field and detail in the message; test for them with errors.Is.
var (
	// ErrTruncated reports input that ends before a value does: in the
	// middle of a type code or a number, or before all the elements an array
	// or map announced.
	ErrTruncated = errors.New("codec: truncated input")

	// ErrVersion reports an envelope whose version field is not 1.
	ErrVersion = errors.New("codec: unsupported envelope version")

	// ErrMalformed reports input that is not an envelope of the documented
	// shape: a field of the wrong MessagePack type, an integer out of range,
	// an id that is not 16 bytes, a duplicated header, trailing bytes.
	ErrMalformed = errors.New("codec: malformed input")

	// ErrTooLarge reports a declared length or element count larger than
	// the input that remains, nesting deeper than the decoder accepts, or,
	// when encoding, a string or body longer than MessagePack can describe.
	ErrTooLarge = errors.New("codec: length exceeds input or limit")

	// ErrUnknownCodec is returned by Lookup for a name it does not know.
	ErrUnknownCodec = errors.New("codec: unknown codec")
)
