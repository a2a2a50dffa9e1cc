package codec

import (
	"testing"

	"github.com/zpeer/zpeer/internal/codecwire"
)

// benchEnvelope is a 64-byte message with short strings and no headers.
func benchEnvelope() Envelope {
	return Envelope{
		ID: NewID(), Kind: KindData, Type: "bench.msg", Priority: 1,
		Timestamp: 1_700_000_000_000_000_000, Sender: "node-1", Seq: 123456,
		Topic: "bench", Body: make([]byte, 64),
	}
}

func BenchmarkEncode64(b *testing.B) {
	env := benchEnvelope()
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(env.Body)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		env.Seq++
		if buf, err = env.AppendEncode(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode64Pool(b *testing.B) {
	env := benchEnvelope()
	b.SetBytes(int64(len(env.Body)))
	b.ReportAllocs()
	for b.Loop() {
		bp := codecwire.GetBuffer()
		var err error
		if *bp, err = env.AppendEncode(*bp); err != nil {
			b.Fatal(err)
		}
		codecwire.PutBuffer(bp)
	}
}

func BenchmarkEncode64Headers(b *testing.B) {
	env := benchEnvelope()
	env.Headers = map[string]string{"trace-id": "4bf92f3577b34da6", "content-type": "application/msgpack"}
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(env.Body)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = env.AppendEncode(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode64(b *testing.B) {
	env := benchEnvelope()
	data, err := Encode(&env)
	if err != nil {
		b.Fatal(err)
	}
	var out Envelope
	b.SetBytes(int64(len(env.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode64Headers(b *testing.B) {
	env := benchEnvelope()
	env.Headers = map[string]string{"trace-id": "4bf92f3577b34da6", "content-type": "application/msgpack"}
	data, err := Encode(&env)
	if err != nil {
		b.Fatal(err)
	}
	var out Envelope
	b.SetBytes(int64(len(env.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewID()
	}
}

func BenchmarkDecodeView64(b *testing.B) {
	env := benchEnvelope()
	data, err := Encode(&env)
	if err != nil {
		b.Fatal(err)
	}
	var out View
	b.SetBytes(int64(len(env.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeView(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTemplateEncode64(b *testing.B) {
	env := benchEnvelope()
	tmpl, err := NewTemplate(&env)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(env.Body)))
	b.ReportAllocs()
	for b.Loop() {
		env.Seq++
		buf, _ = tmpl.AppendEncode(buf[:0], env.ID, env.Timestamp, env.Seq, env.Body)
	}
}
