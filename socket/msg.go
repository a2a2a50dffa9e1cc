package socket

import "fmt"

// Msg is one ZeroMQ message: one or more frames sent and received
// atomically. On a ROUTER socket the first frame is the peer's identity: it
// is prepended on receive and consumed on send.
//
// Frames shorter than CopyThreshold are copied into the peer's queue before
// Send returns, so their memory may be reused (a pooled buffer, say) as soon
// as Send returns. Longer frames are written straight from the caller's
// memory, later: the caller must not modify them after Send. Received frames
// belong to the caller; small ones share backing arrays with other received
// messages, so appending to a frame copies it (the capacity is clipped).
//
// # Freeing a received message
//
// A received message may be given back with Free, so that its memory is
// reused by later receives. Msg is a value, and copies of it (an
// assignment, a call, a channel send) are the same message: Free releases
// the message, whichever copy it is called on, exactly once. After it:
//
//   - Free on any copy is a no-op: memory is never released twice.
//   - Every copy's Frames holds nil frames (they share the array of
//     frames, which Free clears), so Body returns nil, Size returns 0, and
//     indexing a frame's bytes panics: reading through a copy finds no
//     stale data.
//   - Send and SendTo of any copy fail with ErrFreed.
//   - A frame slice taken out of the message before Free (b :=
//     m.Frames[0]) is not protected: its bytes may be reused by another
//     message. Copy what you keep.
//
// Built with the zpeerdebug tag (go test -tags zpeerdebug), misuse fails
// loudly instead: freed memory is poisoned with 0xDF bytes and never
// reused, so stale reads see the poison, and Body, Size, Send and SendTo
// on a freed message panic with "socket: Msg used after Free".
type Msg struct {
	Frames [][]byte
	// Priority above zero puts the message in the peer's urgent lane: it is
	// written before every ordinary message still waiting in that peer's
	// queue. Receivers see no difference; it is not sent on the wire.
	Priority uint8
	// Buf, if set, is the Buffer the message's large frames (of
	// CopyThreshold bytes and more) live in: the socket holds a reference
	// to it for as long as it references them, and releases it once they
	// are written (see Buffer). The caller's own reference is its own to
	// release, whatever Send returned. Received messages have none. It
	// must be a Buffer NewBuffer made (never a copy of one): the socket
	// keeps the pointer beyond the call.
	Buf *Buffer

	gen  uint32  // received: mem's generation when the message was made
	size int     // received: total body bytes
	mem  *msgMem // received: what Free releases the memory through
}

// Free gives a received message's memory back for reuse by later receives:
// its large frames' buffers, and its share of the slab its small frames
// were carved from. It is optional (without it the memory is garbage
// collected), and pays off at high message rates and for messages of tens
// of kilobytes and more. Free on a message that was not received is a
// no-op, and so is Free on a message already freed through any copy (see
// Msg). It sets m.Frames to nil. A message received over CURVE is cleared
// first (the frames' memory it owns), so that no later user of that memory
// sees its plaintext.
func (m *Msg) Free() {
	mem, frames := m.mem, m.Frames
	m.Frames, m.mem = nil, nil
	if mem != nil && mem.gen.CompareAndSwap(m.gen, m.gen+1) {
		mem.release(frames)
	}
}

// TakeFrame frees a received message, as Free does, except for its frame
// i, which it returns: that memory is the caller's for good, ordinary Go
// memory valid for as long as anything references it. A frame of up to 1
// KiB (carved from a slab shared with other messages) is returned as a
// copy. A larger one is the received memory itself; from 32 KiB, once the
// garbage collector finds nothing referencing it any more, it goes back to
// the socket's buffer pool (a finalizer on it), so that a receiver which
// keeps large frames as values, and drops them later, does not cost the
// socket fresh memory (zeroed, and page-faulted in) for every message.
// Until then the pool tops its size class up from a goroutine of its own
// (to 8 MiB, for frames of up to 8 MiB); it holds at most 128 MiB of a
// class, and lets go of what went unused between two collections.
// TakeFrame on a message that was not received returns frame i as it is;
// on one freed or taken from already (through any copy), nil.
func (m *Msg) TakeFrame(i int) []byte {
	mem, frames := m.mem, m.Frames
	if mem == nil {
		if frames == nil {
			return nil // taken or freed already
		}
		return frames[i]
	}
	m.Frames, m.mem = nil, nil
	if !mem.gen.CompareAndSwap(m.gen, m.gen+1) {
		return nil
	}
	return mem.take(frames, i)
}

// freed reports whether m is a received message given back with Free.
func (m *Msg) freed() bool { return m.mem != nil && m.mem.gen.Load() != m.gen }

// checkLive panics, in zpeerdebug builds, on a message used after Free.
func (m *Msg) checkLive() {
	if debugMsgs && m.freed() {
		panic(fmt.Sprintf("socket: Msg used after Free (%d frames)", len(m.Frames)))
	}
}

// CopyThreshold is the frame size from which Send stops copying: frames of
// at least this many bytes are referenced until written (see Msg).
const CopyThreshold = bigFrame

// NewMsg returns a message with the given frames.
func NewMsg(frames ...[]byte) Msg { return Msg{Frames: frames} }

// NewMsgString returns a message with one frame per string.
func NewMsgString(frames ...string) Msg {
	m := Msg{Frames: make([][]byte, len(frames))}
	for i, f := range frames {
		m.Frames[i] = []byte(f)
	}
	return m
}

// Size is the total number of body bytes over all frames.
func (m Msg) Size() int {
	m.checkLive()
	n := 0
	for _, f := range m.Frames {
		n += len(f)
	}
	return n
}

// Body returns the last frame, or nil for an empty message.
func (m Msg) Body() []byte {
	m.checkLive()
	if len(m.Frames) == 0 {
		return nil
	}
	return m.Frames[len(m.Frames)-1]
}
