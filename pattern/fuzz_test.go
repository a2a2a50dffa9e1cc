package pattern

import (
	"bytes"
	"testing"

	"github.com/zpeer/zpeer/codec"
)

// FuzzBinBody checks the hand-written bin/str readers, which parse bytes
// from the network (bodies, ack id lists), against the msgpack library:
// whatever they accept, codec.UnmarshalValue reads the same way.
func FuzzBinBody(f *testing.F) {
	for _, s := range [][]byte{{0xc0}, {0xc4, 0}, {0xc4, 2, 1, 2}, {0xc5, 0, 1, 9}, {0xa3, 'a', 'b', 'c'}, {0xd9, 1, 'x'}, {0xc6, 0, 0, 0, 1, 7}, {0xc4, 3, 1}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, ok := binBody(data)
		if ok {
			var want []byte
			if err := codec.UnmarshalValue(data, &want); err != nil {
				t.Fatalf("binBody accepted % x, msgpack refuses: %v", data, err)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("% x: binBody %q, msgpack %q", data, b, want)
			}
		}
		if s, err := unmarshalBody[string](data); err == nil {
			var want string
			if err := codec.UnmarshalValue(data, &want); err != nil || s != want {
				t.Fatalf("% x: unmarshalBody[string] %q, msgpack %q %v", data, s, want, err)
			}
		}
	})
}
