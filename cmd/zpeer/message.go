package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zpeer/zpeer/codec"
)

// Body formats: how a message's text becomes an envelope body (--body).
const (
	bodyText = "text" // a MessagePack string, as a typed peer's string
	bodyJSON = "json" // the JSON value as MessagePack, as a typed peer's struct or map
	bodyBin  = "bin"  // the bytes as they are
)

// encodeBody turns one message's text into the bytes to send, following the
// codec and the body format.
func encodeBody(raw bool, format string, text []byte) ([]byte, error) {
	if raw {
		return text, nil
	}
	switch format {
	case bodyBin:
		return text, nil
	case bodyJSON:
		v, err := parseJSON(text)
		if err != nil {
			return nil, fmt.Errorf("--body json: %q is not JSON: %w", abbrev(text), err)
		}
		return codec.MarshalValue(v)
	default:
		return codec.MarshalValue(string(text))
	}
}

// parseJSON decodes text keeping integers as integers, so that a typed peer
// expecting an int gets one.
func parseJSON(text []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return fromJSONNumbers(v), nil
}

func fromJSONNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = fromJSONNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = fromJSONNumbers(x[k])
		}
	}
	return v
}

// message is one received message, decoded as far as the codec allows.
type message struct {
	frames    [][]byte       // the application frames: routing id and delimiter removed
	routingID []byte         // ROUTER: the peer's routing id
	topic     []byte         // SUB: the envelope's topic, or else the topic frame
	env       codec.Envelope // msgpack: the decoded envelope; raw: Body only
	raw       bool
	sep       string // raw: what the frames are joined with (--frame-sep; default a space)
}

// decodeMessage decodes the application frames of a received message. sub
// says whether the first of several frames is a topic.
func decodeMessage(frames [][]byte, raw, sub bool) (*message, error) {
	m := &message{frames: frames, raw: raw}
	if len(frames) == 0 {
		return m, nil
	}
	if sub && len(frames) > 1 {
		m.topic = frames[0]
	}
	last := frames[len(frames)-1]
	if raw {
		m.env.Body = last
		return m, nil
	}
	if err := codec.Decode(last, &m.env); err != nil {
		return m, fmt.Errorf("not a zpeer envelope (use --codec raw for plain frames): %w", err)
	}
	if m.env.Topic != "" {
		m.topic = []byte(m.env.Topic)
	}
	return m, nil
}

// bodyValue decodes a msgpack envelope's body for display: a MessagePack
// value when it is one, else the bytes themselves.
func (m *message) bodyValue() (v any, ok bool) {
	if m.raw || len(m.env.Body) == 0 {
		return nil, false
	}
	if err := codec.UnmarshalValue(m.env.Body, &v); err != nil {
		return nil, false
	}
	return v, true
}

// bodyText is the body as zpeer prints it: text as is, bytes as they are,
// any other MessagePack value as compact JSON.
func (m *message) bodyText() []byte {
	if m.raw {
		if len(m.frames) > 1 {
			sep := m.sep
			if sep == "" {
				sep = " "
			}
			return bytes.Join(m.frames, []byte(sep))
		}
		return m.env.Body
	}
	v, ok := m.bodyValue()
	if !ok {
		return m.env.Body
	}
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return []byte(x)
	case []byte:
		return x
	}
	b, err := marshalJSON(jsonable(v))
	if err != nil {
		return []byte(fmt.Sprint(v))
	}
	return b
}

// line is the default one-line output: the body, prefixed by the topic on
// SUB.
func (m *message) line(sub bool) []byte {
	body := m.bodyText()
	if sub && !m.raw && len(m.topic) > 0 {
		return append(append(append([]byte{}, m.topic...), ' '), body...)
	}
	return body
}

// record is the --json output for one message.
type record struct {
	Body       any               `json:"body"`
	BodyBase64 string            `json:"body_base64,omitempty"`
	Topic      string            `json:"topic"`
	ID         string            `json:"id"`
	Kind       string            `json:"kind"`
	Type       string            `json:"type"`
	Priority   uint8             `json:"priority"`
	Timestamp  *string           `json:"timestamp"`
	Sequence   uint64            `json:"sequence"`
	Sender     string            `json:"sender"`
	Headers    map[string]string `json:"headers"`
	RoutingID  string            `json:"routing_id,omitempty"`
	Frames     []any             `json:"frames,omitempty"`
}

func (m *message) record() record {
	r := record{
		Topic:    string(m.topic),
		Type:     m.env.Type,
		Priority: m.env.Priority,
		Sequence: m.env.Seq,
		Sender:   m.env.Sender,
		Headers:  m.env.Headers,
	}
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	if !m.raw {
		r.Kind = m.env.Kind.String()
		if !m.env.ID.IsZero() {
			r.ID = m.env.ID.String()
		}
	}
	if m.env.Timestamp != 0 {
		ts := time.Unix(0, m.env.Timestamp).UTC().Format(time.RFC3339Nano)
		r.Timestamp = &ts
	}
	if m.routingID != nil {
		r.RoutingID = hex.EncodeToString(m.routingID)
	}
	if v, ok := m.bodyValue(); ok {
		r.Body = jsonable(v)
		if b, isBytes := v.([]byte); isBytes && !utf8.Valid(b) {
			r.Body, r.BodyBase64 = nil, base64.StdEncoding.EncodeToString(b)
		}
	} else if utf8.Valid(m.env.Body) {
		r.Body = string(m.env.Body)
	} else {
		r.BodyBase64 = base64.StdEncoding.EncodeToString(m.env.Body)
	}
	if m.raw && len(m.frames) > 1 {
		for _, f := range m.frames {
			r.Frames = append(r.Frames, jsonBytes(f))
		}
	}
	return r
}

// jsonBytes is a frame as a JSON string when it is text, else base64 in an
// object that says so.
func jsonBytes(b []byte) any {
	if utf8.Valid(b) {
		return string(b)
	}
	return map[string]string{"base64": base64.StdEncoding.EncodeToString(b)}
}

// jsonable converts what msgpack decodes into values encoding/json takes:
// maps with non-string keys get string keys, byte slices become text or
// base64.
func jsonable(v any) any {
	switch x := v.(type) {
	case []byte:
		return jsonBytes(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonable(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	}
	return v
}

// abbrev shortens text for an error message.
func abbrev(b []byte) string {
	s := string(b)
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
