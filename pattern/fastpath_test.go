package pattern

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/codecwire"
)

// fastJob is benchJob with the methods github.com/tinylib/msgp generates
// (MarshalMsg, UnmarshalMsg), written out here so that the test needs no
// generator: the struct fast path (MsgMarshaler, MsgUnmarshaler). Its
// encoding is the msgpack library's for benchJob: a map keyed by field
// name, int64 at full width.
type fastJob struct {
	ID   int64
	Kind string
	Data []byte
}

func (j fastJob) MarshalMsg(b []byte) ([]byte, error) {
	b = append(b, 0x83, 0xa2, 'I', 'D', 0xd3)
	b = binary.BigEndian.AppendUint64(b, uint64(j.ID))
	b = append(b, 0xa4, 'K', 'i', 'n', 'd')
	b = append(codecwire.AppendStrHeader(b, len(j.Kind)), j.Kind...)
	b = append(b, 0xa4, 'D', 'a', 't', 'a')
	if j.Data == nil {
		return append(b, 0xc0), nil
	}
	return append(codecwire.AppendBinHeader(b, len(j.Data)), j.Data...), nil
}

var errFastJob = errors.New("fastJob: bad encoding")

// msgpStr reads a str or bin (or nil) at the start of b.
func msgpStr(b []byte) (v, rest []byte, err error) {
	if len(b) == 0 {
		return nil, nil, errFastJob
	}
	var n, h int
	switch c := b[0]; {
	case c == 0xc0:
		return nil, b[1:], nil
	case c&0xe0 == 0xa0:
		n, h = int(c&0x1f), 1
	case (c == 0xd9 || c == 0xc4) && len(b) >= 2:
		n, h = int(b[1]), 2
	case (c == 0xda || c == 0xc5) && len(b) >= 3:
		n, h = int(binary.BigEndian.Uint16(b[1:])), 3
	case (c == 0xdb || c == 0xc6) && len(b) >= 5:
		n, h = int(binary.BigEndian.Uint32(b[1:])), 5
	default:
		return nil, nil, errFastJob
	}
	if len(b)-h < n {
		return nil, nil, errFastJob
	}
	return b[h : h+n], b[h+n:], nil
}

func (j *fastJob) UnmarshalMsg(b []byte) ([]byte, error) {
	if len(b) == 0 || b[0]&0xf0 != 0x80 {
		return nil, errFastJob
	}
	n := int(b[0] & 0x0f)
	b = b[1:]
	*j = fastJob{}
	for range n {
		k, rest, err := msgpStr(b)
		if err != nil {
			return nil, err
		}
		b = rest
		switch string(k) {
		case "ID":
			switch {
			case len(b) >= 9 && b[0] == 0xd3:
				j.ID, b = int64(binary.BigEndian.Uint64(b[1:])), b[9:]
			case len(b) >= 1 && b[0] < 0x80:
				j.ID, b = int64(b[0]), b[1:]
			default:
				return nil, errFastJob
			}
		case "Kind", "Data":
			v, rest, err := msgpStr(b)
			if err != nil {
				return nil, err
			}
			if string(k) == "Kind" {
				j.Kind = string(v)
			} else if v != nil {
				j.Data = bytes.Clone(v)
			}
			b = rest
		default:
			return nil, errFastJob
		}
	}
	return b, nil
}

// TestStructFastPath: a type with msgp's methods is encoded by them, to
// the same bytes the reflective path writes for the same struct, and
// decoded by them; a peer decoding with the msgpack library reads it; a
// malformed body is refused before the generated code sees it.
func TestStructFastPath(t *testing.T) {
	v := fastJob{ID: 1 << 40, Kind: "resize", Data: []byte("pixels")}
	fast, err := marshalBody(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := codec.MarshalValue(benchJob(v))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fast, slow) {
		t.Fatalf("fast path bytes %x, reflection %x", fast, slow)
	}
	got, err := unmarshalBody[fastJob](slow)
	if err != nil || got.ID != v.ID || got.Kind != v.Kind || !bytes.Equal(got.Data, v.Data) {
		t.Fatalf("fast decode: %+v, %v", got, err)
	}
	if _, err := unmarshalBody[fastJob](append(bytes.Clone(slow), 0xc0)); err == nil {
		t.Error("trailing bytes accepted")
	}
	if _, err := unmarshalBody[fastJob](slow[:len(slow)-1]); err == nil {
		t.Error("truncated body accepted")
	}

	// End to end through a pipeline.
	push, err := NewPusher[fastJob](WithBind(loopback))
	push = cleanup(t, push, err)
	ch := make(chan fastJob, 1)
	pl, err := NewPuller(func(_ context.Context, j fastJob) error { ch <- j; return nil }, WithConnect(ep(t, push)))
	cleanup(t, pl, err)
	waitFor(t, "puller", func() bool { return push.Pullers() == 1 })
	if err := push.Push(ctxT(t), v); err != nil {
		t.Fatal(err)
	}
	if j := <-ch; j.ID != v.ID || j.Kind != v.Kind || !bytes.Equal(j.Data, v.Data) {
		t.Fatalf("received %+v", j)
	}
}

// BenchmarkStructCodec: encoding and decoding a typical struct body,
// reflection (msgpack library) against the msgp fast path.
func BenchmarkStructCodec(b *testing.B) {
	job := benchJob{ID: 1 << 40, Kind: "resize", Data: make([]byte, 40)}
	b.Run("reflection", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 256)
		for b.Loop() {
			out, err := marshalBody(buf[:0], job)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := unmarshalBody[benchJob](out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msgp", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 256)
		fj := fastJob(job)
		for b.Loop() {
			out, err := marshalBody(buf[:0], fj)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := unmarshalBody[fastJob](out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTypedPipelineStructFast is BenchmarkTypedPipelineStruct with the
// msgp fast path.
func BenchmarkTypedPipelineStructFast(b *testing.B) {
	benchPipelineOf(b, fastJob{ID: 1 << 40, Kind: "resize", Data: make([]byte, 40)}, 0, false, 0)
}

// TestMaxPendingBytes: an acked Pusher with no puller holds one message
// larger than its byte bound, and then blocks Push (ErrFull when ctx
// ends) rather than holding more.
func TestMaxPendingBytes(t *testing.T) {
	push, err := NewPusher[[]byte](WithAck(), WithBind(loopback), WithMaxPendingBytes(100<<10))
	push = cleanup(t, push, err)
	big := make([]byte, 150<<10)
	if err := push.Push(ctxT(t), big); err != nil {
		t.Fatalf("first message over the bound, nothing held: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 50*time.Millisecond)
	defer cancel()
	if err := push.Push(ctx, []byte("small")); !errors.Is(err, ErrFull) {
		t.Fatalf("Push over the byte bound: %v, want ErrFull", err)
	}
	if _, err := NewPusher[[]byte](WithAck(), WithMaxPendingBytes(0)); err == nil {
		t.Error("WithMaxPendingBytes(0) accepted")
	}
}
