package codec

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeEnvelope checks that Decode never panics, that every error it
// returns wraps one of the package's sentinels, and that whatever it accepts
// survives an Encode/Decode round trip unchanged.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, tc := range sampleEnvelopes() {
		data, err := Encode(&tc.env)
		if err != nil {
			f.Fatal(err)
		}
		if len(data) > 4096 {
			continue // keep the corpus small; the large cases add nothing
		}
		f.Add(data)
		for _, n := range []int{0, 1, 2, 19, len(data) / 2, len(data) - 1} {
			if n >= 0 && n < len(data) {
				f.Add(data[:n])
			}
		}
	}
	typical := mp(f, fields())
	for n := range len(typical) {
		f.Add(typical[:n])
	}
	f.Add(envelopeBytes(14, mp(f, fields()...), mp(f, "future", map[string]any{"x": []any{1, 2.5, nil}}, []byte{1})))
	f.Add(withField(f, 9, []byte{0xdf, 0xff, 0xff, 0xff, 0xff}))
	f.Add(withField(f, 10, []byte{0xc6, 0xff, 0xff, 0xff, 0xff}))
	f.Add([]byte{0x91, 0x02})

	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		var e Envelope
		err := Decode(data, &e)
		if !bytes.Equal(data, orig) {
			t.Fatal("Decode modified its input")
		}
		// DecodeView's fast path accepts a subset of what its general
		// path accepts, and decodes it the same way.
		var fast, slow View
		if decodeViewFast(data, &fast) {
			if err := decodeViewSlow(data, &slow); err != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("fast path: %+v\ngeneral path: %+v, %v", fast, slow, err)
			}
		}
		if (DecodeView(data, &slow) == nil) != (err == nil) {
			t.Fatalf("DecodeView and Decode disagree; Decode: %v", err)
		}
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrVersion) &&
				!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if !reflect.DeepEqual(e, Envelope{}) {
				t.Fatalf("envelope modified on error: %+v", e)
			}
			return
		}
		if len(e.Body) > 0 && !aliases(data, e.Body) {
			t.Fatal("Body does not alias the input")
		}
		again, err := Encode(&e)
		if err != nil {
			t.Fatalf("Encode of a decoded envelope: %v", err)
		}
		var e2 Envelope
		if err := Decode(again, &e2); err != nil {
			t.Fatalf("Decode(Encode(Decode(data))): %v", err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", e, e2)
		}
	})
}

// aliases reports whether sub lies within data's memory.
func aliases(data, sub []byte) bool {
	if len(sub) == 0 || len(data) == 0 {
		return false
	}
	for i := range data {
		if &data[i] == &sub[0] {
			return i+len(sub) <= len(data)
		}
	}
	return false
}

// FuzzUnmarshalValue checks that UnmarshalValue never panics and never lets a
// declared length drive a large allocation, whatever the target type.
func FuzzUnmarshalValue(f *testing.F) {
	for _, v := range []any{
		order{ID: 1, Items: []string{"a"}, Tags: map[string]string{"k": "v"}, Raw: []byte{1}},
		[]int64{1, 2, 3}, map[string]any{"a": []any{1, "x", 2.5}}, "s", []byte("b"),
	} {
		b, err := MarshalValue(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			o   order
			s   []int64
			a   any
			m   map[string]any
			str string
		)
		for _, v := range []any{&o, &s, &a, &m, &str} {
			err := UnmarshalValue(data, v)
			if err != nil && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
		}
		// Each element takes at least one byte; allow for size-class rounding.
		if cap(s) > 2*len(data)+16 {
			t.Fatalf("decoded slice has capacity %d from %d bytes of input", cap(s), len(data))
		}
	})
}
