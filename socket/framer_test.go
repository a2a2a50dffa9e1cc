package socket

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

// TestFrameHeader: the framer's encoder and decoder agree on short and long
// headers, report a partial header, and refuse reserved flags and sizes
// over the limit.
func TestFrameHeader(t *testing.T) {
	for _, size := range []int{0, 1, 255, 256, 1 << 20} {
		for _, flags := range []byte{0, flagMore, flagCommand} {
			b := appendHeader(nil, flags, size)
			h, n, err := decodeHeader(b, 1<<30)
			if err != nil || n != len(b) || h.size != uint64(size) || h.flags&^flagLong != flags {
				t.Errorf("size %d flags %#x: decoded %+v n=%d err=%v from % x", size, flags, h, n, err, b)
			}
			if _, n, err := decodeHeader(b[:len(b)-1], 1<<30); n != 0 || err != nil {
				t.Errorf("size %d: partial header: n=%d err=%v", size, n, err)
			}
		}
	}
	tests := []struct {
		name  string
		b     []byte
		limit uint64
		want  error
	}{
		{"reserved flags", []byte{0x80, 1}, 10, ErrProtocol},
		{"reserved flags, partial", []byte{0x82}, 10, ErrProtocol},
		{"short over limit", []byte{0, 11}, 10, ErrTooLarge},
		{"long over limit", longHeader(0, 1<<62), 1 << 20, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := decodeHeader(tt.b, tt.limit); !errors.Is(err, tt.want) {
				t.Fatalf("decodeHeader(% x): %v, want %v", tt.b, err, tt.want)
			}
		})
	}
}

// TestFrameReaderBuffered: buffered is true only once a whole frame can be
// read without blocking.
func TestFrameReaderBuffered(t *testing.T) {
	frame := zmtpFrame(0, make([]byte, 300)) // a long header
	for cut := 0; cut <= len(frame); cut++ {
		fr := frameReader{br: bufio.NewReader(bytes.NewReader(frame[:cut])), limit: 1 << 20}
		fr.br.Peek(cut) // fill the buffer with what there is
		if got, want := fr.buffered(), cut == len(frame); got != want {
			t.Fatalf("%d of %d bytes: buffered %v", cut, len(frame), got)
		}
	}
}

// TestCommandCodec: commands round-trip; appendCommand refuses, appending
// nothing, a bad name or a body that does not fit a chunk.
func TestCommandCodec(t *testing.T) {
	var b batch
	defer b.release()
	if err := b.appendCommand("PING", []byte{0, 10}); err != nil {
		t.Fatal(err)
	}
	b.seal()
	fr := frameReader{br: bufio.NewReader(bytes.NewReader(b.segs[0])), limit: 1 << 20}
	h, err := fr.header()
	if err != nil || !h.command() {
		t.Fatalf("header %+v: %v", h, err)
	}
	body := make([]byte, h.size)
	if err := fr.body(body); err != nil {
		t.Fatal(err)
	}
	name, data, err := parseCommand(body)
	if err != nil || name != "PING" || !bytes.Equal(data, []byte{0, 10}) {
		t.Fatalf("parsed %q %v: %v", name, data, err)
	}
	before := len(b.cur)
	if err := b.appendCommand("SUBSCRIBE", make([]byte, chunkSize)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversize command: %v, want ErrTooLarge", err)
	}
	if err := b.appendCommand(string(make([]byte, 256)), nil); err == nil {
		t.Error("a 256-byte command name was accepted")
	}
	if err := b.appendCommand("", nil); err == nil {
		t.Error("an empty command name was accepted")
	}
	if len(b.cur) != before {
		t.Errorf("refused commands appended %d bytes", len(b.cur)-before)
	}
	if _, _, err := parseCommand([]byte{10, 'P'}); !errors.Is(err, ErrProtocol) {
		t.Errorf("malformed command: %v", err)
	}
}

// FuzzDecodeHeader: any bytes decode to a header, a partial header or an
// error, never a panic; what decodes re-encodes to the same header.
func FuzzDecodeHeader(f *testing.F) {
	f.Add([]byte{0, 5}, uint64(10))
	f.Add(longHeader(flagMore, 1<<40), uint64(1<<20))
	f.Add([]byte{0x86, 1, 2}, uint64(10))
	f.Fuzz(func(t *testing.T, b []byte, limit uint64) {
		h, n, err := decodeHeader(b, limit)
		if err != nil || n == 0 {
			return
		}
		if h.size > limit || n > len(b) {
			t.Fatalf("decoded %+v (n=%d) from % x over limit %d", h, n, b, limit)
		}
		if h.size > 1<<40 {
			return // appendHeader takes an int
		}
		h2, n2, err := decodeHeader(appendHeader(nil, h.flags&^flagLong, int(h.size)), limit)
		if err != nil || n2 == 0 || h2.size != h.size || h2.flags&^flagLong != h.flags&^flagLong {
			t.Fatalf("% x decoded to %+v, re-encoded to %+v (%v)", b, h, h2, err)
		}
	})
}
