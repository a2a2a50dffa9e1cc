package codec

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

type order struct {
	ID    int64             `msgpack:"id"`
	Items []string          `msgpack:"items"`
	Price float64           `msgpack:"price"`
	Tags  map[string]string `msgpack:"tags"`
	Raw   []byte            `msgpack:"raw"`
}

func TestValueRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   any
		out  func() any // new pointer to decode into
	}{
		{"struct", order{ID: 7, Items: []string{"a", "b"}, Price: 9.5, Tags: map[string]string{"x": "y"}, Raw: []byte{0, 1}},
			func() any { return new(order) }},
		{"string", "hello", func() any { return new(string) }},
		{"bytes", []byte{1, 2, 3}, func() any { return new([]byte) }},
		{"int", int64(-3), func() any { return new(int64) }},
		{"slice", []int{1, 2, 3}, func() any { return new([]int) }},
		// One key: Go randomizes map order, and the bytes are compared.
		{"map", map[string]any{"a": []any{int64(1), "b"}}, func() any { return new(map[string]any) }},
		{"time", time.Unix(1700000000, 5).UTC(), func() any { return new(time.Time) }},
		{"nil", nil, func() any { return new(any) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := MarshalValue(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := msgpack.Marshal(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("MarshalValue = % x, msgpack.Marshal = % x", b, want)
			}
			appended, err := AppendValue([]byte("pre"), tc.in)
			if err != nil || !bytes.Equal(appended, append([]byte("pre"), want...)) {
				t.Errorf("AppendValue = % x, %v", appended, err)
			}
			out := tc.out()
			if err := UnmarshalValue(b, out); err != nil {
				t.Fatal(err)
			}
			got := reflect.ValueOf(out).Elem().Interface()
			if tc.in == nil {
				if got != nil {
					t.Errorf("got %#v, want nil", got)
				}
				return
			}
			if tt, ok := tc.in.(time.Time); ok {
				if !got.(time.Time).Equal(tt) {
					t.Errorf("got %v, want %v", got, tt)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.in) {
				t.Errorf("got %#v, want %#v", got, tc.in)
			}
		})
	}
}

func TestStringAndBytesAreWrapped(t *testing.T) {
	b, err := MarshalValue("hi")
	if err != nil || !bytes.Equal(b, []byte{0xa2, 'h', 'i'}) {
		t.Errorf("MarshalValue(string) = % x, %v; want a msgpack str", b, err)
	}
	b, err = MarshalValue([]byte("hi"))
	if err != nil || !bytes.Equal(b, []byte{0xc4, 0x02, 'h', 'i'}) {
		t.Errorf("MarshalValue([]byte) = % x, %v; want a msgpack bin", b, err)
	}
}

func TestMarshalValueError(t *testing.T) {
	dst := []byte("keep")
	out, err := AppendValue(dst, make(chan int))
	if err == nil {
		t.Fatal("AppendValue(chan) succeeded")
	}
	if string(out) != "keep" {
		t.Errorf("dst changed to %q", out)
	}
}

func TestUnmarshalValueRejects(t *testing.T) {
	nested := append(bytes.Repeat([]byte{0x91}, maxDepth+1), 0x00)
	okNested := append(bytes.Repeat([]byte{0x91}, maxDepth), 0x00)
	tests := []struct {
		name string
		data []byte
		into any
		want error
	}{
		{"empty", nil, new(int), ErrTruncated},
		// msgpack/v5 v5.4.1 alone would allocate 2^32-1 elements here.
		{"array32 huge into slice", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, new([]int64), ErrTooLarge},
		{"array32 huge into any", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, new(any), ErrTooLarge},
		{"map32 huge", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, new(map[string]int), ErrTooLarge},
		{"str32 huge", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}, new(string), ErrTooLarge},
		{"bin32 huge", []byte{0xc6, 0x7f, 0xff, 0xff, 0xff}, new([]byte), ErrTooLarge},
		{"ext32 huge", []byte{0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01}, new(any), ErrTooLarge},
		{"nested too deep", nested, new(any), ErrTooLarge},
		{"truncated int", []byte{0xcd, 0x01}, new(int), ErrTruncated},
		{"trailing bytes", []byte{0x01, 0x02}, new(int), ErrMalformed},
		{"invalid code", []byte{0xc1}, new(any), ErrMalformed},
		{"wrong type", []byte{0xa1, 'x'}, new(int), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := UnmarshalValue(tc.data, tc.into)
			if !errors.Is(err, tc.want) {
				t.Fatalf("UnmarshalValue(% x) = %v, want %v", tc.data, err, tc.want)
			}
		})
	}
	var v any
	if err := UnmarshalValue(okNested, &v); err != nil {
		t.Errorf("nesting of exactly %d levels: %v", maxDepth, err)
	}
}

func TestUnmarshalValueTimestamps(t *testing.T) {
	// Instants whose 4- or 8-byte timestamp encoding starts with a map code
	// (0x80-0x8f) or nil (0xc0); UnmarshalValue re-encodes them in the
	// 12-byte form before decoding.
	instants := []time.Time{
		time.Unix(1700000000, 540_000_000), // fixext8, first byte 0x80
		time.Unix(1700000000, 806_000_000), // fixext8, first byte 0xc0
		time.Unix(1700000000, 935_000_000), // fixext8, first byte 0xde
		time.Unix(1<<31+5, 0),              // fixext4, first byte 0x80
		time.Unix(1700000000, 1),           // fixext8, harmless
		time.Unix(1<<34+1, 7),              // 12-byte form
		time.Unix(-1, 999_999_999),         // 12-byte form, negative
		time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	type event struct {
		At   time.Time         `msgpack:"at"`
		Tags map[string]string `msgpack:"tags"`
	}
	for _, tm := range instants {
		t.Run(tm.UTC().Format(time.RFC3339Nano), func(t *testing.T) {
			b, err := MarshalValue(event{At: tm, Tags: map[string]string{"k": "v"}})
			if err != nil {
				t.Fatal(err)
			}
			var got event
			if err := UnmarshalValue(b, &got); err != nil {
				t.Fatalf("UnmarshalValue(% x): %v", b, err)
			}
			if !got.At.Equal(tm) || got.Tags["k"] != "v" {
				t.Errorf("got %v %v, want %v", got.At, got.Tags, tm)
			}
			bt, err := MarshalValue(tm)
			if err != nil {
				t.Fatal(err)
			}
			var any1 any
			if err := UnmarshalValue(bt, &any1); err != nil || !any1.(time.Time).Equal(tm) {
				t.Errorf("into any: %v, %v", any1, err)
			}
			// A timestamp where a map is expected must fail, not be read as
			// a map header.
			var m map[string]any
			if err := UnmarshalValue(bt, &m); err == nil {
				t.Errorf("timestamp decoded into a map: %v", m)
			}
		})
	}
}

func TestUnmarshalValueExtRejected(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"ext type 1", []byte{0xd4, 0x01, 0x00}},
		{"ext8 type 5", []byte{0xc7, 0x02, 0x05, 0x8f, 0x00}},
		{"nodejs time ext 13", []byte{0xd6, 0x0d, 0, 0, 0, 1}},
		{"timestamp of 16 bytes", append([]byte{0xd8, 0xff}, make([]byte, 16)...)},
		{"timestamp ext8 of 8 bytes", append([]byte{0xc7, 0x08, 0xff}, make([]byte, 8)...)},
		{"timestamp96 nanoseconds too large", append([]byte{0xc7, 0x0c, 0xff, 0x80, 0, 0, 0}, make([]byte, 8)...)},
		{"timestamp64 nanoseconds too large", []byte{0xd7, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v any
			if err := UnmarshalValue(tc.data, &v); !errors.Is(err, ErrMalformed) {
				t.Errorf("UnmarshalValue(% x) = %v, want ErrMalformed", tc.data, err)
			}
		})
	}
	// Found by FuzzUnmarshalValue (testdata/fuzz): a valid timestamp whose
	// payload starts df 30 30 30 30, which msgpack/v5 read as a map of 808
	// million entries when decoding into a map. Now: a time as a time, an
	// error as a map.
	crasher := []byte("\xd7\xff\xdf0000000")
	var m map[string]any
	if err := UnmarshalValue(crasher, &m); !errors.Is(err, ErrMalformed) {
		t.Errorf("into map: %v, want ErrMalformed", err)
	}
	var tm time.Time
	if err := UnmarshalValue(crasher, &tm); err != nil {
		t.Errorf("into time.Time: %v", err)
	}
}
