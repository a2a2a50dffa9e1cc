package codec

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// python is the interpreter with Debian's python3-msgpack; CI installs it.
const python = "/usr/bin/python3"

// requirePython skips the test unless python3 with the msgpack module is
// installed.
func requirePython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s not found (%v): install python3 and python3-msgpack to run the cross-language tests", python, err)
	}
	if out, err := exec.Command(python, "-c", "import msgpack").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import msgpack (%v: %s): install python3-msgpack to run the cross-language tests",
			python, err, bytes.TrimSpace(out))
	}
}

// runPython runs a Python program with stdin and returns its standard output.
func runPython(t *testing.T, program string, stdin []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", program)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.Bytes())
	}
	return out
}

// pyDecode decodes each hex-encoded frame of a JSON list with msgpack.unpackb,
// checks the documented types strictly, and prints the fields as JSON along
// with msgpack.packb of the decoded list.
const pyDecode = `
import json, sys, msgpack
out = []
for h in json.load(sys.stdin):
    frame = bytes.fromhex(h)
    v = msgpack.unpackb(frame, raw=False)
    assert isinstance(v, list) and len(v) == 11, v
    version, mid, kind, typ, prio, ts, sender, seq, topic, headers, body = v
    assert version == 1
    assert isinstance(mid, bytes) and len(mid) == 16
    for i in (kind, prio, ts, seq):
        assert isinstance(i, int) and not isinstance(i, bool)
    assert 0 <= kind <= 255 and 0 <= prio <= 255 and seq >= 0
    for s in (typ, sender, topic):
        assert isinstance(s, str)
    assert headers is None or (isinstance(headers, dict) and len(headers) > 0 and
        all(isinstance(k, str) and isinstance(x, str) for k, x in headers.items()))
    assert isinstance(body, bytes)
    out.append(dict(id=mid.hex(), kind=kind, type=typ, priority=prio, timestamp=ts,
        sender=sender, seq=seq, topic=topic, headers=headers, body=body.hex(),
        repacked=msgpack.packb(v).hex()))
json.dump(out, sys.stdout)
`

type pyEnvelope struct {
	ID        string
	Kind      uint8
	Type      string
	Priority  uint8
	Timestamp int64
	Sender    string
	Seq       uint64
	Topic     string
	Headers   map[string]string
	Body      string
	Repacked  string
}

func TestPythonDecodesOurEnvelopes(t *testing.T) {
	requirePython(t)
	samples := sampleEnvelopes()
	frames := make([]string, len(samples))
	for i, tc := range samples {
		b, err := Encode(&tc.env)
		if err != nil {
			t.Fatal(err)
		}
		frames[i] = hex.EncodeToString(b)
	}
	in, err := json.Marshal(frames)
	if err != nil {
		t.Fatal(err)
	}
	var got []pyEnvelope
	if err := json.Unmarshal(runPython(t, pyDecode, in), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(samples) {
		t.Fatalf("python decoded %d envelopes, want %d", len(got), len(samples))
	}
	for i, tc := range samples {
		t.Run(tc.name, func(t *testing.T) {
			e := normalize(tc.env)
			want := pyEnvelope{
				ID: hex.EncodeToString(e.ID[:]), Kind: uint8(e.Kind), Type: e.Type, Priority: e.Priority,
				Timestamp: e.Timestamp, Sender: e.Sender, Seq: e.Seq, Topic: e.Topic,
				Headers: e.Headers, Body: hex.EncodeToString(e.Body), Repacked: frames[i],
			}
			if !reflect.DeepEqual(got[i], want) {
				t.Errorf("python decoded\n%+v\nwant\n%+v", got[i], want)
			}
		})
	}
}

// pyEncode writes envelopes the way a Python peer would, as JSON
// {name: hex}.
const pyEncode = `
import json, sys, msgpack
ID = bytes(range(16))
cases = {
    "basic": [1, ID, 0, "order.created", 5, 1700000000123456789, "py-node", 42, "orders",
              None, msgpack.packb({"qty": 3})],
    "headers and extremes": [1, ID, 1, "t", 0, -(2**63), "py", 2**64 - 1, "",
              {"trace-id": "abc", "ü": "値", "": ""}, b""],
    "empty map, extra fields": [1, ID, 4, "", 255, -1, "", 0, "topic", {}, b"\x00\x01",
              "future", [1, 2.5, None, {"nested": b"x"}], True],
    "string body": [1, ID, 2, "err", 1, 0, "py", 7, "", None, msgpack.packb("boom")],
}
json.dump({k: msgpack.packb(v).hex() for k, v in cases.items()}, sys.stdout)
`

func TestWeDecodePythonEnvelopes(t *testing.T) {
	requirePython(t)
	var frames map[string]string
	if err := json.Unmarshal(runPython(t, pyEncode, nil), &frames); err != nil {
		t.Fatal(err)
	}
	var id ID
	for i := range id {
		id[i] = byte(i)
	}
	tests := []struct {
		name string
		want Envelope
		body any // the body decoded with UnmarshalValue, if not nil
	}{
		{"basic", Envelope{ID: id, Kind: KindData, Type: "order.created", Priority: 5, Timestamp: 1700000000123456789,
			Sender: "py-node", Seq: 42, Topic: "orders", Body: []byte{0x81, 0xa3, 'q', 't', 'y', 0x03}},
			map[string]any{"qty": int8(3)}},
		{"headers and extremes", Envelope{ID: id, Kind: KindReply, Type: "t", Timestamp: -1 << 63, Sender: "py",
			Seq: 1<<64 - 1, Headers: map[string]string{"trace-id": "abc", "ü": "値", "": ""}}, nil},
		{"empty map, extra fields", Envelope{ID: id, Kind: KindNack, Priority: 255, Timestamp: -1, Seq: 0,
			Topic: "topic", Body: []byte{0, 1}}, nil},
		{"string body", Envelope{ID: id, Kind: KindError, Type: "err", Priority: 1, Sender: "py", Seq: 7,
			Body: []byte{0xa4, 'b', 'o', 'o', 'm'}}, "boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame, err := hex.DecodeString(frames[tc.name])
			if err != nil || len(frame) == 0 {
				t.Fatalf("no frame from python for %q: %v", tc.name, err)
			}
			var got Envelope
			if err := Decode(frame, &got); err != nil {
				t.Fatalf("Decode(% x): %v", frame, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
			if tc.body != nil {
				v := reflect.New(reflect.TypeOf(tc.body))
				if err := UnmarshalValue(got.Body, v.Interface()); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(v.Elem().Interface(), tc.body) {
					t.Errorf("body = %#v, want %#v", v.Elem().Interface(), tc.body)
				}
			}
		})
	}
}

// docBlock returns the text between <!-- begin name --> and <!-- end name -->
// in docs/wire.md, without the code fence lines.
func docBlock(t *testing.T, name string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/wire.md")
	if err != nil {
		t.Fatalf("read docs/wire.md: %v", err)
	}
	s := string(doc)
	begin, end := "<!-- begin "+name+" -->", "<!-- end "+name+" -->"
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("docs/wire.md has no %q ... %q block", begin, end)
	}
	var lines []string
	for _, l := range strings.Split(s[i+len(begin):j], "\n") {
		if !strings.HasPrefix(l, "```") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// docExample is the envelope of the example in docs/wire.md.
func docExample(t *testing.T) []byte {
	t.Helper()
	id, err := ParseID("5f3a9c0e12b4d678000000000000002a")
	if err != nil {
		t.Fatal(err)
	}
	body, err := MarshalValue(map[string]int{"qty": 3})
	if err != nil {
		t.Fatal(err)
	}
	e := Envelope{ID: id, Kind: KindData, Type: "order.created", Priority: 5,
		Timestamp: time.Date(2023, 11, 14, 22, 13, 20, 123456789, time.UTC).UnixNano(),
		Sender:    "node-a", Seq: 42, Topic: "orders", Headers: map[string]string{"trace-id": "4bf92f35"}, Body: body}
	b, err := Encode(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWireDocExample(t *testing.T) {
	want := docExample(t)

	// The hex dump: offset, then 16 bytes.
	var dump []byte
	for _, line := range strings.Split(docBlock(t, "example-hex"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		b, err := hex.DecodeString(strings.Join(f[1:], ""))
		if err != nil {
			t.Fatalf("hex dump line %q: %v", line, err)
		}
		dump = append(dump, b...)
	}
	if !bytes.Equal(dump, want) {
		t.Errorf("docs/wire.md hex dump is\n% x\nthe encoder writes\n% x", dump, want)
	}

	// The annotated table: the first column, concatenated.
	var table []byte
	for _, line := range strings.Split(docBlock(t, "example-fields"), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.Contains(cells[1], "`") {
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(strings.Trim(strings.TrimSpace(cells[1]), "`"), " ", ""))
		if err != nil {
			t.Fatalf("table row %q: %v", line, err)
		}
		table = append(table, b...)
	}
	if !bytes.Equal(table, want) {
		t.Errorf("docs/wire.md field table is\n% x\nthe encoder writes\n% x", table, want)
	}
}

func TestWireDocPythonSnippet(t *testing.T) {
	requirePython(t)
	out := runPython(t, docBlock(t, "python-decode"), docExample(t))
	want := "5f3a9c0e12b4d678000000000000002a 0 order.created 5 1700000000123456789 node-a 42 orders {'trace-id': '4bf92f35'} {'qty': 3}\n"
	if string(out) != want {
		t.Errorf("snippet printed\n%q\nwant\n%q", out, want)
	}
}

// The writer snippet of docs/wire.md runs as written and writes an
// envelope the Go decoder reads (issue 12 item 14: it used seq before
// defining it).
func TestWireDocPythonWriter(t *testing.T) {
	requirePython(t)
	out := runPython(t, docBlock(t, "python-encode"), nil)
	var e Envelope
	if err := Decode(out, &e); err != nil {
		t.Fatalf("Decode(% x): %v", out, err)
	}
	var body map[string]int
	if err := UnmarshalValue(e.Body, &body); err != nil {
		t.Fatal(err)
	}
	if e.Kind != KindData || e.Type != "order.created" || e.Priority != 5 || e.Sender != "py-node" ||
		e.Seq != 42 || e.Topic != "orders" || body["qty"] != 3 || time.Since(time.Unix(0, e.Timestamp)) > time.Minute {
		t.Fatalf("decoded %+v, body %v", e, body)
	}
}
