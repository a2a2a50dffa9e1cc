package codec

import (
	"errors"
	"reflect"
	"testing"
)

func TestLookup(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			c, err := Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			if c.Name() != name {
				t.Errorf("Lookup(%q).Name() = %q", name, c.Name())
			}
		})
	}
	for _, name := range []string{"", "json", "MSGPACK", "raw "} {
		t.Run("unknown "+name, func(t *testing.T) {
			c, err := Lookup(name)
			if !errors.Is(err, ErrUnknownCodec) || c != nil {
				t.Errorf("Lookup(%q) = %v, %v; want ErrUnknownCodec", name, c, err)
			}
		})
	}
}

func TestMsgpackCodec(t *testing.T) {
	var c Codec = Msgpack{}
	in := Envelope{ID: NewID(), Type: "t", Headers: map[string]string{"a": "b"}, Body: []byte("body")}
	frames, err := c.AppendFrames(nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 1 {
		t.Fatalf("%d frames, want 1", len(frames))
	}
	var out Envelope
	if err := c.DecodeFrames(frames, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("got %+v, want %+v", out, in)
	}
	for _, n := range []int{0, 2} {
		if err := c.DecodeFrames(make([][]byte, n), &out); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d frames: %v, want ErrMalformed", n, err)
		}
	}
	if err := c.DecodeFrames([][]byte{{0x92, 0x02}}, &out); !errors.Is(err, ErrVersion) {
		t.Errorf("bad frame: %v, want ErrVersion", err)
	}
	bad := Envelope{Type: "\xff"}
	if frames, err := c.AppendFrames(nil, &bad); !errors.Is(err, ErrMalformed) || len(frames) != 0 {
		t.Errorf("invalid envelope: %v, %d frames", err, len(frames))
	}
}

func TestRawCodec(t *testing.T) {
	var c Codec = Raw{}
	in := Envelope{ID: NewID(), Type: "dropped", Body: []byte("payload")}
	frames, err := c.AppendFrames([][]byte{[]byte("first")}, &in)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 2 || string(frames[1]) != "payload" || &frames[1][0] != &in.Body[0] {
		t.Fatalf("frames = %q, want the body appended as is", frames)
	}
	out := Envelope{Type: "stale", Seq: 3}
	if err := c.DecodeFrames(frames[1:], &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, Envelope{Body: []byte("payload")}) {
		t.Errorf("got %+v, want only the body", out)
	}
	if err := c.DecodeFrames([][]byte{{}}, &out); err != nil || out.Body != nil {
		t.Errorf("empty frame: %+v, %v", out, err)
	}
	for _, n := range []int{0, 2} {
		if err := c.DecodeFrames(make([][]byte, n), &out); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d frames: %v, want ErrMalformed", n, err)
		}
	}
}
