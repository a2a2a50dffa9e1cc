package codec

import (
	"bytes"
	"testing"
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
			head = AppendBinHeader(head, len(e.Body))
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
