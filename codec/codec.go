package codec

import "fmt"

// A Codec maps an Envelope to the frames of one ZeroMQ message and back. The
// frames are the application part of the message: routing identities and the
// REQ/REP delimiter belong to the socket layer and are not seen here.
type Codec interface {
	// Name returns the name Lookup knows the codec by.
	Name() string
	// AppendFrames appends to dst the frames that carry e.
	AppendFrames(dst [][]byte, e *Envelope) ([][]byte, error)
	// DecodeFrames fills e from the frames of one message. e.Body may
	// alias one of the frames.
	DecodeFrames(frames [][]byte, e *Envelope) error
}

// Msgpack is the envelope codec: one frame holding the MessagePack envelope
// of docs/wire.md.
type Msgpack struct{}

// Name returns "msgpack".
func (Msgpack) Name() string { return "msgpack" }

// AppendFrames appends one newly allocated frame holding Encode(e).
func (Msgpack) AppendFrames(dst [][]byte, e *Envelope) ([][]byte, error) {
	b, err := Encode(e)
	if err != nil {
		return dst, err
	}
	return append(dst, b), nil
}

// DecodeFrames decodes a message of exactly one frame with Decode; e.Body
// aliases that frame.
func (Msgpack) DecodeFrames(frames [][]byte, e *Envelope) error {
	if len(frames) != 1 {
		return fmt.Errorf("codec: msgpack: message has %d frames, an envelope is 1: %w", len(frames), ErrMalformed)
	}
	return Decode(frames[0], e)
}

// Raw is the codec for peers that do not speak the envelope: the body is the
// message, one frame, passed through untouched in both directions. No
// metadata travels: on receipt every field but Body is zero, and on sending
// every field but Body is dropped.
type Raw struct{}

// Name returns "raw".
func (Raw) Name() string { return "raw" }

// AppendFrames appends e.Body itself (not a copy) as one frame.
func (Raw) AppendFrames(dst [][]byte, e *Envelope) ([][]byte, error) {
	return append(dst, e.Body), nil
}

// DecodeFrames sets e to an envelope whose Body is the message's only frame
// (not a copy; nil if the frame is empty). A message of several frames is
// rejected with ErrMalformed rather than joined or truncated; a caller that
// needs multipart raw messages handles the frames itself.
func (Raw) DecodeFrames(frames [][]byte, e *Envelope) error {
	if len(frames) != 1 {
		return fmt.Errorf("codec: raw: message has %d frames, the raw codec carries 1: %w", len(frames), ErrMalformed)
	}
	*e = Envelope{}
	if len(frames[0]) > 0 {
		e.Body = frames[0]
	}
	return nil
}

// Names lists the names Lookup accepts.
func Names() []string { return []string{"msgpack", "raw"} }

// Lookup returns the codec called name: "msgpack" (Msgpack) or "raw" (Raw).
// Any other name, including "", yields an error wrapping ErrUnknownCodec.
func Lookup(name string) (Codec, error) {
	switch name {
	case "msgpack":
		return Msgpack{}, nil
	case "raw":
		return Raw{}, nil
	}
	return nil, fmt.Errorf("codec: %q (want msgpack or raw): %w", name, ErrUnknownCodec)
}
