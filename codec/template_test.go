package codec

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/zpeer/zpeer/internal/codecwire"
)

// A Template writes exactly what AppendEncode writes, for every sample
// envelope, through both AppendEncode and AppendHead + AppendBinHeader.
func TestTemplateMatchesAppendEncode(t *testing.T) {
	for _, tc := range sampleEnvelopes() {
		t.Run(tc.name, func(t *testing.T) {
			want, err := Encode(&tc.env)
			if err != nil {
				t.Fatal(err)
			}
			tmpl, err := NewTemplate(&tc.env)
			if err != nil {
				t.Fatal(err)
			}
			e := &tc.env
			got, err := tmpl.AppendEncode([]byte("prefix"), e.ID, e.Timestamp, e.Seq, e.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
				t.Fatalf("Template.AppendEncode:\n% x\nwant\n% x", got, want)
			}
			head := tmpl.AppendHead(nil, e.ID, e.Timestamp, e.Seq)
			head = codecwire.AppendBinHeader(head, len(e.Body))
			if got := append(head, e.Body...); !bytes.Equal(got, want) {
				t.Fatalf("AppendHead + AppendBinHeader:\n% x\nwant\n% x", got, want)
			}
		})
	}
}

func TestTemplateRejectsWhatEncodeRejects(t *testing.T) {
	for _, e := range []Envelope{
		{Type: "\xff"}, {Sender: "\xc3"}, {Topic: "a\x80"}, {Headers: map[string]string{"k": "\xff"}},
	} {
		if _, err := NewTemplate(&e); err == nil {
			t.Errorf("NewTemplate(%+v) succeeded; Encode: %v", e, func() error { _, err := Encode(&e); return err }())
		}
	}
}

func TestTemplateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	env := benchEnvelope()
	tmpl, err := NewTemplate(&env)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		buf, _ = tmpl.AppendEncode(buf[:0], env.ID, env.Timestamp, env.Seq, env.Body)
	}); n != 0 {
		t.Errorf("%v allocs, want 0", n)
	}
}

// DecodeView reads what Decode reads, without copying: its byte fields are
// sub-slices of the input, Header finds one header without building the
// map, and Envelope copies the strings out.
func TestDecodeView(t *testing.T) {
	env := Envelope{ID: NewID(), Kind: KindAck, Type: "t", Priority: 3, Timestamp: -5, Sender: "s",
		Seq: 9, Topic: "top", Headers: map[string]string{"a": "1", "credit": "256"}, Body: []byte("body")}
	data, err := Encode(&env)
	if err != nil {
		t.Fatal(err)
	}
	var v View
	if err := DecodeView(data, &v); err != nil {
		t.Fatal(err)
	}
	if string(v.Type) != "t" || string(v.Sender) != "s" || string(v.Topic) != "top" || string(v.Body) != "body" ||
		v.ID != env.ID || v.Kind != KindAck || v.Priority != 3 || v.Timestamp != -5 || v.Seq != 9 || v.NumHeaders() != 2 {
		t.Fatalf("view %+v", v)
	}
	if !aliases(data, v.Body) || !aliases(data, v.Sender) {
		t.Error("the view's fields do not alias the input")
	}
	if c, ok := v.Header("credit"); !ok || string(c) != "256" {
		t.Errorf("Header(credit) = %q, %v", c, ok)
	}
	if _, ok := v.Header("missing"); ok {
		t.Error("Header(missing) found")
	}
	var d Envelope
	if err := Decode(data, &d); err != nil {
		t.Fatal(err)
	}
	if got := v.Envelope(); !reflect.DeepEqual(got, d) {
		t.Errorf("View.Envelope() = %+v, Decode = %+v", got, d)
	}
	if n := testing.AllocsPerRun(100, func() { DecodeView(data, &v) }); n != 0 && !raceEnabled {
		t.Errorf("DecodeView: %v allocs", n)
	}
	var bad View
	if err := DecodeView(data[:len(data)-1], &bad); !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTooLarge) {
		t.Errorf("truncated input: %v", err)
	}
}
