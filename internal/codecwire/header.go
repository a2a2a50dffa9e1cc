package codecwire

import (
	"encoding/binary"
	"math"
)

// AppendBinHeader appends the header of a MessagePack bin of n bytes, in
// its smallest format, as an envelope's body is written. n must be at most
// 2^32-1 (codec.MaxBody).
func AppendBinHeader(dst []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(dst, 0xc4, byte(n))
	case n <= math.MaxUint16:
		return append(dst, 0xc5, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xc6), uint32(n))
}

// AppendStrHeader appends the header of a MessagePack str of n bytes, in
// its smallest format, as an envelope's strings are written. n must be at
// most 2^32-1.
func AppendStrHeader(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return append(dst, 0xda, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdb), uint32(n))
}
