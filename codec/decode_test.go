package codec

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// mp returns the MessagePack encoding of each value, concatenated, with
// compact integers.
func mp(t testing.TB, vals ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	enc.SetSortMapKeys(true)
	for _, v := range vals {
		if err := enc.Encode(v); err != nil {
			t.Fatalf("encode %#v: %v", v, err)
		}
	}
	return buf.Bytes()
}

// fields returns the 11 wire fields of a typical envelope, for tests to alter.
func fields() []any {
	id := fixedID(1)
	return []any{1, id[:], 0, "type", 5, int64(1_700_000_000_000_000_000), "sender", 42, "topic",
		map[string]string{"k": "v"}, []byte("body")}
}

// envelopeBytes encodes an array header for n elements followed by raw.
func envelopeBytes(n int, raw ...[]byte) []byte {
	var out []byte
	switch {
	case n < 16:
		out = []byte{0x90 | byte(n)}
	default:
		out = []byte{0xdc, byte(n >> 8), byte(n)}
	}
	for _, r := range raw {
		out = append(out, r...)
	}
	return out
}

// withField returns the typical envelope with field i replaced by raw bytes.
func withField(t testing.TB, i int, raw []byte) []byte {
	t.Helper()
	f := fields()
	out := envelopeBytes(len(f))
	for j, v := range f {
		if j == i {
			out = append(out, raw...)
		} else {
			out = append(out, mp(t, v)...)
		}
	}
	return out
}

func TestDecodeMalformed(t *testing.T) {
	valid := mp(t, fields())
	var want Envelope
	if err := Decode(valid, &want); err != nil {
		t.Fatalf("valid input: %v", err)
	}
	nested := bytes.Repeat([]byte{0x91}, maxDepth+1)
	nested = append(nested, 0x01)

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty input", nil, ErrTruncated},
		{"nil, not an array", []byte{0xc0}, ErrMalformed},
		{"map, not an array", mp(t, map[string]int{"a": 1}), ErrMalformed},
		{"empty array", []byte{0x90}, ErrMalformed},
		{"truncated array16 header", []byte{0xdc, 0x00}, ErrTruncated},
		{"array header only", []byte{0x9b}, ErrTruncated},
		{"version 2", withField(t, 0, []byte{0x02}), ErrVersion},
		{"version 0", withField(t, 0, []byte{0x00}), ErrVersion},
		{"version 2 short array", []byte{0x91, 0x02}, ErrVersion},
		{"version 2 as uint64", append([]byte{0x91, 0xcf}, 0, 0, 0, 0, 0, 0, 0, 2), ErrVersion},
		{"version as str", withField(t, 0, mp(t, "1")), ErrMalformed},
		{"version negative", withField(t, 0, []byte{0xff}), ErrMalformed},
		{"ten fields", envelopeBytes(10, mp(t, fields()[:10]...)), ErrMalformed},
		{"id of 15 bytes", withField(t, 1, mp(t, make([]byte, 15))), ErrMalformed},
		{"id of 17 bytes", withField(t, 1, mp(t, make([]byte, 17))), ErrMalformed},
		{"id as str", withField(t, 1, mp(t, "0123456789abcdef")), ErrMalformed},
		{"id nil", withField(t, 1, []byte{0xc0}), ErrMalformed},
		{"kind 256", withField(t, 2, mp(t, 256)), ErrMalformed},
		{"kind negative", withField(t, 2, mp(t, -1)), ErrMalformed},
		{"kind bool", withField(t, 2, []byte{0xc3}), ErrMalformed},
		{"type as int", withField(t, 3, mp(t, 7)), ErrMalformed},
		{"type as bin", withField(t, 3, mp(t, []byte("type"))), ErrMalformed},
		{"type nil", withField(t, 3, []byte{0xc0}), ErrMalformed},
		{"type not utf-8", withField(t, 3, []byte{0xa2, 0xc3, 0x28}), ErrMalformed},
		{"priority 300", withField(t, 4, mp(t, 300)), ErrMalformed},
		{"timestamp above int64", withField(t, 5, mp(t, uint64(1<<63))), ErrMalformed},
		{"timestamp float", withField(t, 5, mp(t, 1.5)), ErrMalformed},
		{"sender as array", withField(t, 6, []byte{0x90}), ErrMalformed},
		{"seq negative", withField(t, 7, mp(t, -5)), ErrMalformed},
		{"topic as map", withField(t, 8, []byte{0x80}), ErrMalformed},
		{"headers as array", withField(t, 9, mp(t, []string{"k", "v"})), ErrMalformed},
		{"headers as str", withField(t, 9, mp(t, "k=v")), ErrMalformed},
		{"header value int", withField(t, 9, mp(t, map[string]int{"k": 1})), ErrMalformed},
		{"header key int", withField(t, 9, []byte{0x81, 0x01, 0xa1, 'v'}), ErrMalformed},
		{"header value not utf-8", withField(t, 9, []byte{0x81, 0xa1, 'k', 0xa1, 0xff}), ErrMalformed},
		{"header duplicate key", withField(t, 9, []byte{0x82, 0xa1, 'k', 0xa1, '1', 0xa1, 'k', 0xa1, '2'}), ErrMalformed},
		{"header duplicate empty key", withField(t, 9, []byte{0x82, 0xa0, 0xa0, 0xa0, 0xa0}), ErrMalformed},
		{"header duplicate key among 9", withField(t, 9, []byte{0x89,
			0xa1, 'a', 0xa0, 0xa1, 'b', 0xa0, 0xa1, 'c', 0xa0, 0xa1, 'd', 0xa0, 0xa1, 'e', 0xa0,
			0xa1, 'f', 0xa0, 0xa1, 'g', 0xa0, 0xa1, 'h', 0xa0, 0xa1, 'c', 0xa0}), ErrMalformed},
		{"header map32 count huge", withField(t, 9, []byte{0xdf, 0xff, 0xff, 0xff, 0xff}), ErrTooLarge},
		{"header map16 count beyond input", withField(t, 9, []byte{0xde, 0x01, 0x00}), ErrTooLarge},
		{"header fixmap count beyond input", envelopeBytes(11, mp(t, fields()[:9]...), []byte{0x8f, 0xa0}), ErrTooLarge},
		{"body as str", withField(t, 10, mp(t, "body")), ErrMalformed},
		{"body as int", withField(t, 10, mp(t, 1)), ErrMalformed},
		{"body bin32 length huge", withField(t, 10, []byte{0xc6, 0xff, 0xff, 0xff, 0xff}), ErrTooLarge},
		{"body bin16 length beyond input", withField(t, 10, []byte{0xc5, 0x01, 0x00, 'x'}), ErrTooLarge},
		{"type str32 length huge", withField(t, 3, []byte{0xdb, 0xff, 0xff, 0xff, 0xfe}), ErrTooLarge},
		{"trailing bytes", append(bytes.Clone(valid), 0xc0), ErrMalformed},
		{"second envelope appended", append(bytes.Clone(valid), valid...), ErrMalformed},
		{"truncated after version", valid[:2], ErrTruncated},
		{"truncated before body", envelopeBytes(11, mp(t, fields()[:10]...)), ErrTruncated},
		{"truncated inside timestamp", envelopeBytes(11, mp(t, fields()[:5]...), []byte{0xcf, 0x01, 0x02}), ErrTruncated},
		{"truncated inside body", valid[:len(valid)-1], ErrTooLarge},
		{"extra field invalid code", envelopeBytes(12, mp(t, fields()...), []byte{0xc1}), ErrMalformed},
		{"extra field array32 huge", envelopeBytes(12, mp(t, fields()...), []byte{0xdd, 0xff, 0xff, 0xff, 0xff}), ErrTooLarge},
		{"extra field str beyond input", envelopeBytes(12, mp(t, fields()...), []byte{0xd9, 0x10, 'a'}), ErrTooLarge},
		{"extra field ext truncated", envelopeBytes(12, mp(t, fields()...), []byte{0xc7}), ErrTruncated},
		{"extra fields missing", envelopeBytes(13, mp(t, fields()...), []byte{0x01}), ErrTooLarge},
		{"extra field nested too deep", envelopeBytes(12, mp(t, fields()...), nested), ErrTooLarge},
		{"array16 count huge", append([]byte{0xdc, 0xff, 0xff}, mp(t, fields()...)...), ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := want // Decode must leave e unchanged on error.
			err := Decode(tc.data, &e)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode(% x) = %v, want %v", tc.data, err, tc.want)
			}
			if !reflect.DeepEqual(e, want) {
				t.Errorf("envelope modified on error: %+v", e)
			}
			t.Logf("%v", err)
		})
	}
}

func TestDecodeTruncations(t *testing.T) {
	for _, tc := range sampleEnvelopes() {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Encode(&tc.env)
			if err != nil {
				t.Fatal(err)
			}
			for n := range len(data) {
				var e Envelope
				err := Decode(data[:n], &e)
				if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("Decode(first %d of %d bytes) = %v, want ErrTruncated or ErrTooLarge", n, len(data), err)
				}
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	f := fields()
	var want Envelope
	if err := Decode(mp(t, f), &want); err != nil {
		t.Fatal(err)
	}
	wide := func(v uint64) []byte { // uint64 format regardless of value
		return []byte{0xcf, byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	}
	signed := func(v int64) []byte { // int64 format regardless of value
		return []byte{0xd3, byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	}
	headersMap16 := append([]byte{0xde, 0x00, 0x01}, mp(t, "k", "v")...)
	bodyBin32 := append([]byte{0xc6, 0, 0, 0, 4}, "body"...)
	typeStr32 := append([]byte{0xdb, 0, 0, 0, 4}, "type"...)

	tests := []struct {
		name   string
		data   []byte
		modify func(*Envelope)
	}{
		{"extra trailing fields", envelopeBytes(14, mp(t, f...), mp(t, "future", map[string]any{"x": []any{1, 2.5, nil, true}}, []byte{1})), nil},
		{"extra ext field", envelopeBytes(12, mp(t, f...), []byte{0xd4, 0x01, 0x02}), nil},
		{"array16 header", envelopeBytes(16, mp(t, f...), mp(t, 1, 2, 3, 4, 5)), nil},
		{"array32 header", append([]byte{0xdd, 0, 0, 0, 11}, mp(t, f...)...), nil},
		{"version as uint64", withField(t, 0, wide(1)), nil},
		{"version as int8", withField(t, 0, []byte{0xd0, 0x01}), nil},
		{"kind as int64", withField(t, 2, signed(0)), nil},
		{"priority as uint64", withField(t, 4, wide(5)), nil},
		{"seq as int64", withField(t, 7, signed(42)), nil},
		{"timestamp as uint64", withField(t, 5, wide(1_700_000_000_000_000_000)), nil},
		{"negative timestamp int16", withField(t, 5, []byte{0xd1, 0xff, 0x00}), func(e *Envelope) { e.Timestamp = -256 }},
		{"type as str32", withField(t, 3, typeStr32), nil},
		{"headers map16", withField(t, 9, headersMap16), nil},
		{"headers nil", withField(t, 9, []byte{0xc0}), func(e *Envelope) { e.Headers = nil }},
		{"headers empty map", withField(t, 9, []byte{0x80}), func(e *Envelope) { e.Headers = nil }},
		{"body bin32", withField(t, 10, bodyBin32), nil},
		{"body nil", withField(t, 10, []byte{0xc0}), func(e *Envelope) { e.Body = nil }},
		{"body empty", withField(t, 10, []byte{0xc4, 0x00}), func(e *Envelope) { e.Body = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exp := want
			exp.Headers = map[string]string{"k": "v"}
			if tc.modify != nil {
				tc.modify(&exp)
			}
			var got Envelope
			if err := Decode(tc.data, &got); err != nil {
				t.Fatalf("Decode(% x): %v", tc.data, err)
			}
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("got %+v\nwant %+v", got, exp)
			}
		})
	}
}
