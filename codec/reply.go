package codec

// Header names zpeer's patterns reserve on the wire (docs/wire.md). A
// compatible revision may add more, all beginning with "zpeer-".
const (
	// HeaderPanic marks an error reply (KindError) whose handler panicked
	// and was recovered; its value is "1".
	HeaderPanic = "zpeer-panic"
	// HeaderCredit carries the credit an acked puller grants in its hello.
	HeaderCredit = "zpeer-credit"
	// HeaderStart says, in an acked puller's hello, that it reports when a
	// handler starts on a redelivered job, and marks such a job.
	HeaderStart = "zpeer-start"
)

// Reply returns the start of the reply to the request v: kind KindReply
// (set KindError for a failed request), the request's ID (the requester
// matches replies by it), priority and sequence number. The replier fills
// in Sender, Type, Timestamp, Headers and Body. pattern's Replier and
// `zpeer rep` both build their replies with it.
func (v *View) Reply() Envelope {
	return Envelope{ID: v.ID, Kind: KindReply, Priority: v.Priority, Seq: v.Seq}
}

// Reply is View.Reply for a decoded Envelope.
func (e *Envelope) Reply() Envelope {
	return Envelope{ID: e.ID, Kind: KindReply, Priority: e.Priority, Seq: e.Seq}
}
