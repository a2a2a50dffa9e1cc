package codec

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// fixedID returns a deterministic ID for tests.
func fixedID(b byte) ID {
	var id ID
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

// sampleEnvelopes covers every field at the boundaries of its MessagePack
// encodings (fixint/uint8/.../uint64, fixstr/str8/str16/str32, bin8/16/32,
// fixmap/map16, nil headers).
func sampleEnvelopes() []struct {
	name string
	env  Envelope
} {
	body64 := bytes.Repeat([]byte{0xab}, 64)
	manyHeaders := make(map[string]string, 20)
	for i := range 20 {
		manyHeaders[strings.Repeat("k", i+1)] = strings.Repeat("v", i)
	}
	return []struct {
		name string
		env  Envelope
	}{
		{"zero", Envelope{}},
		{"typical", Envelope{
			ID: fixedID(1), Kind: KindData, Type: "order.created", Priority: 5,
			Timestamp: 1_700_000_000_123_456_789, Sender: "node-a", Seq: 42,
			Topic: "orders", Body: body64,
		}},
		{"headers", Envelope{
			ID: fixedID(2), Kind: KindReply, Type: "t", Timestamp: 1,
			Sender: "s", Seq: 1, Headers: map[string]string{"b": "2", "a": "1", "trace-id": "abc", "": "empty-key"},
			Body: []byte("x"),
		}},
		{"map16 headers", Envelope{ID: fixedID(3), Headers: manyHeaders}},
		{"empty header key and value", Envelope{Headers: map[string]string{"": ""}}},
		{"unicode", Envelope{Type: "тип", Sender: "nœud-ü", Topic: "話題/🚀", Headers: map[string]string{"ключ": "値"}}},
		{"max values", Envelope{
			ID: fixedID(0xf0), Kind: Kind(255), Priority: 255,
			Timestamp: math.MaxInt64, Seq: math.MaxUint64,
		}},
		{"min timestamp", Envelope{Kind: KindNack, Timestamp: math.MinInt64}},
		{"negative fixint timestamp", Envelope{Kind: KindAck, Timestamp: -32}},
		{"int8 timestamp", Envelope{Kind: KindError, Timestamp: -33}},
		{"int16 timestamp", Envelope{Timestamp: -129}},
		{"int32 timestamp", Envelope{Timestamp: -32769}},
		{"uint8 seq", Envelope{Seq: 128}},
		{"uint16 seq", Envelope{Seq: 256}},
		{"uint32 seq", Envelope{Seq: 65536}},
		{"uint64 seq", Envelope{Seq: 1 << 32}},
		{"fixstr 31", Envelope{Type: strings.Repeat("a", 31)}},
		{"str8 32", Envelope{Type: strings.Repeat("a", 32)}},
		{"str8 255", Envelope{Sender: strings.Repeat("b", 255)}},
		{"str16 256", Envelope{Topic: strings.Repeat("c", 256)}},
		{"str32", Envelope{Topic: strings.Repeat("d", 65536)}},
		{"bin8 255", Envelope{Body: bytes.Repeat([]byte{1}, 255)}},
		{"bin16 256", Envelope{Body: bytes.Repeat([]byte{2}, 256)}},
		{"bin32", Envelope{Body: bytes.Repeat([]byte{3}, 70000)}},
	}
}

// normalize maps the encodings that Decode does not distinguish to the form
// it returns: empty body and empty headers are nil.
func normalize(e Envelope) Envelope {
	if len(e.Body) == 0 {
		e.Body = nil
	}
	if len(e.Headers) == 0 {
		e.Headers = nil
	}
	return e
}

// referenceEncode encodes e as the []any of docs/wire.md with the msgpack
// library's generic encoder.
func referenceEncode(t testing.TB, e *Envelope) []byte {
	t.Helper()
	var headers any
	if len(e.Headers) > 0 {
		headers = e.Headers
	}
	body := e.Body
	if body == nil {
		body = []byte{}
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	enc.SetSortMapKeys(true)
	err := enc.Encode([]any{
		uint64(1), e.ID[:], uint64(e.Kind), e.Type, uint64(e.Priority), e.Timestamp,
		e.Sender, e.Seq, e.Topic, headers, body,
	})
	if err != nil {
		t.Fatalf("reference encode: %v", err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range sampleEnvelopes() {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Encode(&tc.env)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if got, want := len(data), tc.env.encodedLen(); got != want || cap(data) != want {
				t.Errorf("len %d cap %d, encodedLen %d", got, cap(data), want)
			}
			var got Envelope
			if err := Decode(data, &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if want := normalize(tc.env); !reflect.DeepEqual(got, want) {
				t.Errorf("Decode(Encode(e)) =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestEncodeMatchesMsgpackLibrary(t *testing.T) {
	for _, tc := range sampleEnvelopes() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(&tc.env)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if want := referenceEncode(t, &tc.env); !bytes.Equal(got, want) {
				t.Errorf("Encode =\n% x\nmsgpack of []any =\n% x", got, want)
			}
			// Decoding with the generic library gives the documented array.
			var arr []any
			if err := msgpack.Unmarshal(got, &arr); err != nil {
				t.Fatalf("msgpack.Unmarshal: %v", err)
			}
			if len(arr) != envelopeFields {
				t.Fatalf("array of %d elements, want %d", len(arr), envelopeFields)
			}
		})
	}
}

func TestAppendEncodeAppends(t *testing.T) {
	env := Envelope{ID: fixedID(9), Type: "t", Body: []byte("body")}
	prefix := []byte("prefix")
	out, err := env.AppendEncode(append([]byte(nil), prefix...))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, prefix) {
		t.Fatalf("prefix lost: % x", out)
	}
	var got Envelope
	if err := Decode(out[len(prefix):], &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, env) {
		t.Errorf("got %+v, want %+v", got, env)
	}
}

// TestAppendHeadThenBody: the head AppendHead writes, followed by the
// body's bytes, is the whole encoding, for every sample envelope; and a
// field AppendEncode refuses, AppendHead refuses too.
func TestAppendHeadThenBody(t *testing.T) {
	for _, tc := range sampleEnvelopes() {
		t.Run(tc.name, func(t *testing.T) {
			want, err := Encode(&tc.env)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			head, err := tc.env.AppendHead([]byte("x"))
			if err != nil {
				t.Fatalf("AppendHead: %v", err)
			}
			if got := append(head[1:], tc.env.Body...); !bytes.Equal(got, want) {
				t.Errorf("AppendHead + body =\n% x\nEncode =\n% x", got, want)
			}
		})
	}
	bad := Envelope{Type: "\xff"}
	if out, err := bad.AppendHead([]byte("x")); !errors.Is(err, ErrMalformed) || len(out) != 1 {
		t.Errorf("AppendHead of an invalid type: %q, %v; want it unchanged and ErrMalformed", out, err)
	}
}

func TestEncodeDeterministic(t *testing.T) {
	env := Envelope{Headers: map[string]string{}}
	for i := range 50 {
		env.Headers[string(rune('a'+i%26))+strings.Repeat("x", i)] = "v"
	}
	first, err := Encode(&env)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := Encode(&env)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatal("two encodings of the same envelope differ")
		}
	}
}

func TestDecodeAliasesBody(t *testing.T) {
	env := Envelope{Type: "t", Body: []byte("hello")}
	data, err := Encode(&env)
	if err != nil {
		t.Fatal(err)
	}
	var aliased Envelope
	if err := Decode(data, &aliased); err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] = '!'
	if string(aliased.Body) != "hell!" {
		t.Errorf("Decode body = %q, want it to alias the input", aliased.Body)
	}
	if aliased.Type != "t" {
		t.Errorf("Type = %q, strings must not alias the input", aliased.Type)
	}
	// Appending to the aliased body must not overwrite the input.
	_ = append(aliased.Body, 'x')
	if cap(aliased.Body) != len(aliased.Body) {
		t.Errorf("aliased body has spare capacity %d", cap(aliased.Body)-len(aliased.Body))
	}
}

func TestDecodeReplacesEveryField(t *testing.T) {
	e := Envelope{ID: fixedID(1), Kind: KindAck, Type: "old", Priority: 9, Timestamp: 9, Sender: "old",
		Seq: 9, Topic: "old", Headers: map[string]string{"old": "1"}, Body: []byte("old")}
	data, err := Encode(&Envelope{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Decode(data, &e); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e, Envelope{}) {
		t.Errorf("got %+v, want zero envelope", e)
	}
}

func TestEncodeRejectsInvalidUTF8(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  Envelope
	}{
		{"type", Envelope{Type: "\xff"}},
		{"sender", Envelope{Sender: "a\xc3"}},
		{"topic", Envelope{Topic: "\xed\xa0\x80"}},
		{"header key", Envelope{Headers: map[string]string{"\xff": "v"}}},
		{"header value", Envelope{Headers: map[string]string{"k": "\xff"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := tc.env.AppendEncode(dst)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if string(out) != "keep" {
				t.Errorf("dst changed to %q", out)
			}
		})
	}
}

func TestEncodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race (sync.Pool drops items)")
	}
	env := Envelope{ID: NewID(), Type: "bench.msg", Priority: 1, Timestamp: 1_700_000_000_000_000_000,
		Sender: "node-1", Seq: 12345, Topic: "bench", Body: make([]byte, 64)}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = env.AppendEncode(buf[:0]); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("AppendEncode without headers: %v allocs, want 0", n)
	}
	env.Headers = map[string]string{"a": "1", "b": "2"}
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = env.AppendEncode(buf[:0]); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("AppendEncode with headers: %v allocs, want 0", n)
	}
}

func TestDecodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, tc := range []struct {
		name string
		env  Envelope
		max  float64
	}{
		{"short strings", Envelope{ID: NewID(), Type: "bench.msg", Sender: "node-1", Topic: "bench", Body: make([]byte, 64)}, 1},
		{"no strings", Envelope{ID: NewID(), Body: make([]byte, 64)}, 0},
		// The map, its buckets, and the one string.
		{"two headers", Envelope{Type: "t", Headers: map[string]string{"a": "1", "b": "2"}}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Encode(&tc.env)
			if err != nil {
				t.Fatal(err)
			}
			var e Envelope
			if n := testing.AllocsPerRun(100, func() {
				if err := Decode(data, &e); err != nil {
					t.Fatal(err)
				}
			}); n > tc.max {
				t.Errorf("Decode: %v allocs, want <= %v", n, tc.max)
			}
		})
	}
}
