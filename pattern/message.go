package pattern

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"
	"unsafe"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/codecwire"
	"github.com/zpeer/zpeer/socket"
)

// Message is a received value with the envelope metadata it came with.
type Message[T any] struct {
	Value     T
	ID        codec.ID
	Type      string
	Topic     string
	Priority  uint8
	Sender    string // the sending pattern's name (WithName)
	Seq       uint64 // per-sender sequence number (per topic for a Publisher)
	Timestamp time.Time
	Headers   map[string]string
}

// CallOption adjusts one message sent by Request, Publish or Push: made by
// Priority, Header, MsgType or PartitionKey. It is a value, so that passing
// one costs no allocation; the zero CallOption changes nothing.
type CallOption struct {
	kind callKind
	prio uint8
	k, v string            // Header's key and value; MsgType's type; PartitionKey's key
	h    map[string]string // callHeaders: headers to add (a Tracer's)
}

type callKind uint8

const (
	callNone callKind = iota
	callPriority
	callHeader
	callHeaders
	callType
	callKey
)

// apply adds the option to c.
func (o *CallOption) apply(c *callOpts) {
	switch o.kind {
	case callPriority:
		c.priority, c.prioritySet = o.prio, true
	case callHeader:
		if c.headers == nil {
			c.headers = make(map[string]string)
		}
		c.headers[o.k] = o.v
	case callHeaders:
		c.headers = headerCarrier(o.h).addTo(c.headers)
	case callType:
		c.msgType, c.typeSet = o.k, true
	case callKey:
		c.key, c.keyed = o.k, true
	}
}

type callOpts struct {
	priority    uint8
	prioritySet bool
	msgType     string
	typeSet     bool
	headers     map[string]string
	key         string // PartitionKey
	keyed       bool
}

// Priority sends one message at priority p, overriding WithPriority. Where
// messages queue on the sender (a peer's send queue, an acked Pusher's
// queue) higher priorities go first; p > 0 also puts the message in the
// socket's urgent lane, ahead of every ordinary message queued for the peer.
func Priority(p uint8) CallOption {
	return CallOption{kind: callPriority, prio: p}
}

// Header adds an envelope header to one message.
func Header(key, value string) CallOption {
	return CallOption{kind: callHeader, k: key, v: value}
}

// MsgType sets the envelope Type of one message, overriding WithType.
func MsgType(t string) CallOption {
	return CallOption{kind: callType, k: t}
}

// stamp fills the envelope's metadata from the pattern's options and the
// call's options; now is its creation time.
func stamp(e *codec.Envelope, now time.Time, o *options, opts []CallOption) {
	e.Priority = o.priority
	e.Type = o.msgType
	e.Sender = o.name
	e.Timestamp = now.UnixNano()
	if len(opts) == 0 {
		return
	}
	var c callOpts
	for i := range opts {
		opts[i].apply(&c)
	}
	if c.prioritySet {
		e.Priority = c.priority
	}
	if c.typeSet {
		e.Type = c.msgType
	}
	e.Headers = c.headers
}

func newName() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// encodeEnvelope returns e's wire encoding in a new slice of exactly the
// right size: the socket takes ownership of what it is given.
func encodeEnvelope(e *codec.Envelope) ([]byte, error) {
	return codec.Encode(e)
}

// sendMem is the memory an encoded frame lives in: a pooled buffer (bp),
// for a frame under socket.CopyThreshold, which the socket copies before
// Send returns; or a socket.Buffer (sb), for a larger frame, which the
// socket references until written and is sent with it (socket.Msg.Buf).
// Either may be nil: the frame is then in memory of its own.
type sendMem struct {
	bp *[]byte
	sb *socket.Buffer
	// head, for a body marshalSend put in sb, is the room left in front of
	// it (the body starts at sb.Bytes()[head]) for encodeSend to write the
	// rest of the envelope into; zero once used, or when there is none.
	head int
}

// bodyHeadroom is the room marshalSend leaves in front of a large body for
// the envelope's other fields: an ID, a type, a sender, a topic and a
// trace context's headers fit; an envelope whose head does not is copied.
const bodyHeadroom = 512

// release gives the caller's reference back, once Send has returned.
func (m sendMem) release() {
	codecwire.PutBuffer(m.bp)
	if m.sb != nil {
		m.sb.Release()
	}
}

// marshalSend marshals v as a body to encode into an envelope (see
// encodeSend), in memory the caller releases once that is done: a pooled
// buffer, or for a []byte or string of socket.CopyThreshold bytes and more
// a socket.Buffer, so that a large body costs no fresh memory (codec's
// pool does not keep buffers that large).
func marshalSend[T any](v T) (body []byte, mem sendMem, err error) {
	if n := bodyLen(v); n >= socket.CopyThreshold {
		sb := socket.NewBuffer(bodyHeadroom + n)
		if body, err = marshalBody(sb.Bytes()[bodyHeadroom:bodyHeadroom], v); err != nil {
			sb.Release()
			return nil, sendMem{}, err
		}
		return body, sendMem{sb: sb, head: bodyHeadroom}, nil
	}
	bp := codecwire.GetBuffer()
	if body, err = marshalBody(*bp, v); err != nil {
		codecwire.PutBuffer(bp)
		return nil, sendMem{}, err
	}
	*bp = body
	return body, sendMem{bp: bp}, nil
}

// encodeSend encodes e for socket.Send. An envelope whose body is
// socket.CopyThreshold bytes or more is encoded into a socket.Buffer, sent
// with the frame (socket.Msg.Buf) and released by the caller once Send has
// returned (mem.release): the socket holds it until written, and then it
// is reused, where a new slice per message would be fresh memory, zeroed
// and page-faulted in. Anything else is in a new slice (mem is empty).
//
// A body marshalSend made (body, its memory) is not copied: the rest of the
// envelope is written in front of it, into the room marshalSend left, and
// the frame shares its buffer. That happens once per body: a second
// encoding (a retry, with a new ID) is copied, since the first may still be
// waiting to be written.
func encodeSend(e *codec.Envelope, body *sendMem) (frame []byte, mem sendMem, err error) {
	if len(e.Body) < socket.CopyThreshold {
		frame, err = encodeEnvelope(e)
		return frame, sendMem{}, err
	}
	if body != nil && body.head > 0 {
		if b := body.sb.Bytes(); unsafe.SliceData(e.Body) == &b[body.head] {
			var hb [bodyHeadroom]byte
			head, err := e.AppendHead(hb[:0])
			if err != nil {
				return nil, sendMem{}, err
			}
			if start := body.head - len(head); start >= 0 {
				copy(b[start:], head)
				end := body.head + len(e.Body)
				body.head = 0
				body.sb.Retain()
				return b[start:end], sendMem{sb: body.sb}, nil
			}
		}
	}
	// room for every field but the body, generously: it is rounded up to
	// a size class anyway
	n := len(e.Body) + 256 + len(e.Sender) + len(e.Type) + len(e.Topic)
	for k, v := range e.Headers {
		n += len(k) + len(v) + 10
	}
	sb := socket.NewBuffer(n)
	buf := sb.Bytes()[:0]
	if frame, err = e.AppendEncode(buf); err != nil {
		sb.Release()
		return nil, sendMem{}, err
	}
	if unsafe.SliceData(frame) != unsafe.SliceData(buf) {
		sb.Release() // it did not fit after all: frame is a new slice
		return frame, sendMem{}, nil
	}
	return sb.SetLen(len(frame)), sendMem{sb: sb}, nil
}

// encodePooled encodes e into a pooled buffer, for a frame that goes
// straight to socket.Send (see sendMem). A larger encoding is copied into
// a socket.Buffer, reused once the socket has written it.
func encodePooled(e *codec.Envelope) (mem sendMem, frame []byte, err error) {
	bp := codecwire.GetBuffer()
	frame, err = e.AppendEncode((*bp)[:0])
	if err != nil {
		codecwire.PutBuffer(bp)
		return sendMem{}, nil, err
	}
	*bp = frame
	if len(frame) >= socket.CopyThreshold {
		sb := socket.NewBuffer(len(frame))
		frame = sb.SetLen(copy(sb.Bytes(), frame))
		codecwire.PutBuffer(bp)
		return sendMem{sb: sb}, frame, nil
	}
	return sendMem{bp: bp}, frame, nil
}

// newTemplate returns the codec.Template for the envelopes a pattern sends
// with its options (WithType, WithPriority, WithName) on topic.
func newTemplate(o *options, kind codec.Kind, topic string) (*codec.Template, error) {
	return codec.NewTemplate(&codec.Envelope{Kind: kind, Type: o.msgType, Priority: o.priority, Sender: o.name, Topic: topic})
}

// encodeMsg encodes the envelope of one message sent by a pattern with
// options o: from tmpl (the pattern's template for kind and topic) when
// the call has no options, else field by field with opts applied. frame
// and mem are as for encodeFrame; prio is the message's priority.
func encodeMsg[T any](o *options, tmpl *codec.Template, kind codec.Kind, topic string, id codec.ID, seq uint64, v T, opts []CallOption) (frame []byte, mem sendMem, prio uint8, err error) {
	if len(opts) == 0 {
		frame, mem, err = encodeFrame(tmpl, id, nowNano(), seq, v)
		return frame, mem, o.priority, err
	}
	body := codecwire.GetBuffer()
	defer codecwire.PutBuffer(body)
	b, err := marshalBody((*body)[:0], v)
	if err != nil {
		return nil, sendMem{}, 0, err
	}
	*body = b
	env := codec.Envelope{ID: id, Kind: kind, Topic: topic, Seq: seq, Body: b}
	stamp(&env, now(), o, opts)
	if mem, frame, err = encodePooled(&env); err != nil {
		return nil, sendMem{}, 0, err
	}
	return frame, mem, env.Priority, nil
}

// encodeFrame encodes the envelope made from tmpl with v as its body, in
// memory the caller releases (mem.release) once Send has returned. A large
// []byte or string (socket.CopyThreshold and more) is encoded into a
// socket.Buffer, which the caller sends with the frame (socket.Msg.Buf):
// the socket holds it until written, and then it is reused. Anything else
// is encoded into a pooled buffer, which is handed over rather than copied
// (mem is empty) if the frame turns out large.
func encodeFrame[T any](tmpl *codec.Template, id codec.ID, ts int64, seq uint64, v T) (frame []byte, mem sendMem, err error) {
	if n := bodyLen(v); n >= socket.CopyThreshold {
		sb := socket.NewBuffer(tmpl.MaxHeadLen() + 5 + n)
		if frame, err = appendFrame(sb.Bytes()[:0], tmpl, id, ts, seq, v); err != nil {
			sb.Release()
			return nil, sendMem{}, err
		}
		return frame, sendMem{sb: sb}, nil
	}
	bp := codecwire.GetBuffer()
	if frame, err = appendFrame((*bp)[:0], tmpl, id, ts, seq, v); err != nil {
		codecwire.PutBuffer(bp)
		return nil, sendMem{}, err
	}
	if len(frame) >= socket.CopyThreshold {
		return frame, sendMem{}, nil // bp is not given back: frame may be in it
	}
	*bp = frame
	return frame, sendMem{bp: bp}, nil
}

// bodyLen is the length of v's MessagePack encoding when it is cheap to
// know ([]byte and string: the bytes and at most 5 of header), else -1.
func bodyLen[T any](v T) int {
	switch x := any(v).(type) {
	case []byte:
		return len(x) + 5
	case string:
		return len(x) + 5
	}
	return -1
}

// appendFrame appends a whole envelope made from tmpl with v as its body,
// marshalled in place: room for the largest bin header is reserved, v is
// marshalled after it, and then the header is written and the body moved
// up against it. On error dst is returned unchanged in length.
func appendFrame[T any](dst []byte, tmpl *codec.Template, id codec.ID, ts int64, seq uint64, v T) ([]byte, error) {
	n0 := len(dst)
	dst = tmpl.AppendHead(dst, id, ts, seq)
	mark := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0)
	dst, err := marshalBody(dst, v)
	if err != nil {
		return dst[:n0], err
	}
	n := len(dst) - mark - 5
	if uint64(n) > codec.MaxBody {
		return dst[:n0], fmt.Errorf("pattern: body of %d bytes: %w", n, codec.ErrTooLarge)
	}
	var hb [5]byte
	h := codecwire.AppendBinHeader(hb[:0], n)
	if len(h) < 5 { // a bin32 header (a body of 64 KiB and more) fills the room: nothing moves
		copy(dst[mark+len(h):], dst[mark+5:])
	}
	copy(dst[mark:], h)
	return dst[:mark+len(h)+n], nil
}

// marshalBody appends v's MessagePack encoding to dst. []byte and string
// values are written directly (the same bytes codec.MarshalValue writes,
// without its reflection); everything else goes through codec.AppendValue.
func marshalBody[T any](dst []byte, v T) ([]byte, error) {
	switch x := any(v).(type) {
	case []byte:
		if x == nil {
			return append(dst, 0xc0), nil
		}
		return append(codecwire.AppendBinHeader(dst, len(x)), x...), nil
	case string:
		return append(codecwire.AppendStrHeader(dst, len(x)), x...), nil
	}
	return marshalValue(dst, v)
}

// marshalValue is marshalBody for the other types, apart so that only they
// pay for v in an interface: MsgMarshaler's fast path, or reflection.
func marshalValue[T any](dst []byte, v T) ([]byte, error) {
	if m, ok := any(v).(MsgMarshaler); ok {
		return m.MarshalMsg(dst)
	}
	return codec.AppendValue(dst, v)
}

// MsgMarshaler is the fast path for encoding struct values: a type whose
// value has this method is encoded by it instead of by the msgpack
// library's reflection. It is the method github.com/tinylib/msgp generates
// (go:generate msgp), so generated code needs no glue; it must append one
// MessagePack value to b, encoded as a peer decoding with a stock msgpack
// library expects (msgp encodes a struct as a map keyed by field name, or
// by the `msg` tag, as the msgpack library does with the `msgpack` tag).
type MsgMarshaler interface {
	MarshalMsg(b []byte) ([]byte, error)
}

// MsgUnmarshaler is the fast path for decoding struct values: when *T has
// this method, a received body is checked (codec.CheckValue: one whole
// value, within the same bounds as the reflective decoder) and decoded by
// it. It is the method github.com/tinylib/msgp generates; it must decode
// one value from the start of b and return what follows it.
type MsgUnmarshaler interface {
	UnmarshalMsg(b []byte) ([]byte, error)
}

// aliasMin is the body size from which a []byte value is handed over in
// the received frame's own memory instead of copied (see takeBody). Below
// it a copy is cheap, and a kept frame would pin the 32 KiB receive slab
// it shares with other messages.
const aliasMin = 4 << 10

// takeBody decodes a body as a T. A []byte value of at least aliasMin bytes
// is the body itself, a sub-slice of data, and kept reports it: the caller
// must then not free the received message, whose memory the value now
// owns. Otherwise the value is a copy (see unmarshalBody).
func takeBody[T any](data []byte) (v T, kept bool, err error) {
	return takeBodyMode[T](data, false)
}

// takeBodyMode is takeBody, or with borrow set (WithBorrowedValues) it
// decodes a []byte or string of any size as the body itself, borrowed:
// kept is false, and the caller frees the received message once the
// handler it gives the value to has returned.
func takeBodyMode[T any](data []byte, borrow bool) (v T, kept bool, err error) {
	if borrow {
		switch p := any(&v).(type) {
		case *[]byte:
			if b, ok := binBody(data); ok {
				*p = b
				return v, false, nil
			}
		case *string:
			if b, ok := binBody(data); ok {
				*p = unsafe.String(unsafe.SliceData(b), len(b))
				return v, false, nil
			}
		}
	}
	if p, ok := any(&v).(*[]byte); ok && len(data) >= aliasMin {
		if b, ok := binBody(data); ok {
			*p = b
			return v, true, nil
		}
	}
	v, err = unmarshalBody[T](data)
	return v, false, err
}

// unmarshalBody decodes a body as a T, which never aliases data (the
// received message is freed for reuse). A []byte or string target takes a
// bin (or str) body without going through reflection; everything else goes
// through codec.UnmarshalValue, which bounds what it allocates.
func unmarshalBody[T any](data []byte) (v T, err error) {
	switch p := any(&v).(type) {
	case *[]byte:
		if b, ok := binBody(data); ok {
			if b != nil {
				*p = append(make([]byte, 0, len(b)), b...)
			}
			return v, nil
		}
	case *string:
		if b, ok := binBody(data); ok {
			*p = string(b)
			return v, nil
		}
	}
	return unmarshalValue[T](data)
}

// unmarshalValue is the reflective path of unmarshalBody, apart so that
// only it pays for the heap-allocated target.
func unmarshalValue[T any](data []byte) (T, error) {
	p := new(T)
	if u, ok := any(p).(MsgUnmarshaler); ok {
		if err := codec.CheckValue(data); err != nil {
			var zero T
			return zero, badMessage("body: %v", err)
		}
		if rest, err := u.UnmarshalMsg(data); err != nil || len(rest) != 0 {
			var zero T
			if err == nil {
				err = fmt.Errorf("%d bytes after the value", len(rest))
			}
			return zero, badMessage("body: %v", err)
		}
		return *p, nil
	}
	if err := codec.UnmarshalValue(data, p); err != nil {
		var zero T
		return zero, badMessage("body: %v", err)
	}
	return *p, nil
}

// binBody returns the payload of a msgpack bin or str value that spans all
// of data (a sub-slice of data, capacity clipped), or nil for msgpack nil.
func binBody(data []byte) ([]byte, bool) {
	if len(data) == 0 {
		return nil, false
	}
	var n, h int
	switch c := data[0]; {
	case c == 0xc0 && len(data) == 1:
		return nil, true
	case c == 0xc4 || c == 0xd9:
		if len(data) < 2 {
			return nil, false
		}
		n, h = int(data[1]), 2
	case c == 0xc5 || c == 0xda:
		if len(data) < 3 {
			return nil, false
		}
		n, h = int(binary.BigEndian.Uint16(data[1:])), 3
	case c == 0xc6 || c == 0xdb:
		if len(data) < 5 {
			return nil, false
		}
		n, h = int(binary.BigEndian.Uint32(data[1:])), 5
	case c&0xe0 == 0xa0:
		n, h = int(c&0x1f), 1
	default:
		return nil, false
	}
	if len(data)-h != n {
		return nil, false
	}
	return data[h:len(data):len(data)], true
}
