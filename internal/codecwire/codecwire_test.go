package codecwire

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// Each header, at every size-class boundary, takes MessagePack's smallest
// format and is read back by the msgpack library as a str or bin of n
// bytes.
func TestHeaders(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		append func([]byte, int) []byte
		sizes  map[int]int // n: header bytes
	}{
		{"str", AppendStrHeader, map[int]int{0: 1, 31: 1, 32: 2, 255: 2, 256: 3, 65535: 3, 65536: 5}},
		{"bin", AppendBinHeader, map[int]int{0: 2, 31: 2, 32: 2, 255: 2, 256: 3, 65535: 3, 65536: 5}},
	} {
		for n, want := range tc.sizes {
			t.Run(fmt.Sprintf("%s/%d", tc.kind, n), func(t *testing.T) {
				h := tc.append([]byte("prefix"), n)[len("prefix"):]
				if len(h) != want {
					t.Errorf("header of %d bytes, want %d", len(h), want)
				}
				var got any
				if err := msgpack.Unmarshal(append(h, bytes.Repeat([]byte{'x'}, n)...), &got); err != nil {
					t.Fatalf("msgpack: %v", err)
				}
				switch v := got.(type) {
				case string:
					if tc.kind != "str" || len(v) != n {
						t.Errorf("decoded a string of %d bytes", len(v))
					}
				case []byte:
					if tc.kind != "bin" || len(v) != n {
						t.Errorf("decoded a bin of %d bytes", len(v))
					}
				default:
					t.Errorf("decoded %T", got)
				}
			})
		}
	}
}

// A buffer from the pool is empty, even one given back with data in it.
func TestPool(t *testing.T) {
	bp := GetBuffer()
	if len(*bp) != 0 || cap(*bp) < bufferSize {
		t.Fatalf("new buffer: len %d cap %d", len(*bp), cap(*bp))
	}
	*bp = append(*bp, "data"...)
	PutBuffer(bp)
	if got := GetBuffer(); len(*got) != 0 {
		t.Errorf("pooled buffer has %d bytes", len(*got))
	}
	PutBuffer(nil) // does nothing
}
