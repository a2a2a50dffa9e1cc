package socket

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
type Msg struct {
	Frames [][]byte
	// Priority above zero puts the message in the peer's urgent lane: it is
	// written before every ordinary message still waiting in that peer's
	// queue. Receivers see no difference; it is not sent on the wire.
	Priority uint8

	pooled bool  // received: frames over slabFrameMax came from the pool
	size   int   // received: total body bytes
	slab   *slab // received: the slab its small frames were carved from
}

// Free hands a received message's memory back for reuse by later
// receives: its large frames' buffers, and its share of the slab its small
// frames were carved from. It is optional (without it the memory is
// garbage collected), and pays off at high message rates and for messages
// of tens of kilobytes and more. The frames must not be used after Free,
// nor Free called on another copy of the same Msg; Free on a message that
// was not received, or twice on the same variable, is a no-op.
func (m *Msg) Free() {
	if m.pooled {
		for _, f := range m.Frames {
			if len(f) > slabFrameMax {
				putBuffer(f)
			}
		}
	}
	if m.slab != nil {
		m.slab.release(1)
	}
	m.Frames, m.pooled, m.slab = nil, false, nil
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
	n := 0
	for _, f := range m.Frames {
		n += len(f)
	}
	return n
}

// Body returns the last frame, or nil for an empty message.
func (m Msg) Body() []byte {
	if len(m.Frames) == 0 {
		return nil
	}
	return m.Frames[len(m.Frames)-1]
}
