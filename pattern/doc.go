// Package pattern is zpeer's typed messaging API: request/reply,
// publish/subscribe and pipelines over the socket engine (package socket)
// and the message envelope (package codec), each carrying the whole message
// lifecycle: create, send, receive, process, acknowledge, clean up.
//
//	Requester[Req, Resp] / Replier[Req, Resp]   request/reply with timeouts, retries, fail-over
//	Publisher[T] / Subscriber[T]                topics, per-topic sequence numbers, gap detection
//	Pusher[T] / Puller[T]                       work queues, fire-and-forget or acknowledged
//	StateServer[T] / Mirror[T]                  replicated state: snapshot, ordered changes, re-sync (one writer)
//
// Values travel as MessagePack (codec.MarshalValue) in the Body of a
// codec.Envelope, whose id, kind, priority, timestamp, sender and sequence
// number the pattern fills in. Every pattern is created with typed options
// (WithBind, WithConnect, WithTimeout, ...), takes a context.Context in its
// blocking calls, is safe for concurrent use, counts what it does (Stats:
// sent, delivered, acked, retried, dropped, dead, gaps, latency
// percentiles) and stops cleanly on Close, which is idempotent. User
// callbacks (handlers, WithOnDead) never run on an I/O goroutine. Endpoints
// are given explicitly (WithBind, WithConnect) or found by package discovery
// (WithService, WithWatcher), and WithDiscovery plugs in any other way.
//
// # Delivery semantics
//
// Request/reply is at-least-once per attempt: an unanswered attempt is
// abandoned after WithTimeout and the request sent again, up to WithRetries
// times, preferably to another replier; handlers should be idempotent.
// Replies are matched to attempts by envelope id, so a late reply is
// dropped, never handed to another call.
//
// Publish/subscribe is at-most-once: a slow subscriber misses messages
// rather than slowing the publisher down. Both sides count what was lost:
// the publisher its drops, the subscriber the holes in the sequence numbers
// (its gaps), and so delivered / sent per publisher. A subscriber that joins
// late starts with the next message published.
//
// A fire-and-forget pipeline is at-most-once; an acknowledged one
// (WithAck) is at-least-once with duplicate suppression at the puller:
// messages are redelivered until acknowledged, and after WithMaxDeliveries
// reported dead. Across a puller crash nothing is lost (what it held is
// redelivered), but its dedup window was in its memory: handlers must be
// idempotent across puller restarts. Across a pusher crash, everything the
// pusher held is lost, unless it has a durable outbox (WithOutbox): then
// the next Pusher on the directory delivers every job not yet acked (in
// OutboxBatched(d) mode, but for the jobs pushed in the last d). PushAsync's
// Receipt tells a producer when each job was acked or went dead.
// Both ends must use the same mode: an acked end and a
// fire-and-forget one refuse each other at the handshake and say so (see
// Refusal and ErrRefused) rather than wait in silence.
//
// Partitioned pipelines: a Pusher given partition keys (PartitionKey,
// WithPartitionKey) sends every message of a key to one puller, chosen by
// rendezvous hashing on the pullers' names, so keys spread evenly and a
// puller that leaves moves only its own keys. Acknowledged, a key has one
// job in flight at a time, so its jobs are processed in order across
// redeliveries and changes of owner. It orders one pusher's messages; it
// is not consensus (docs/patterns.md).
//
// Priority: an envelope's Priority (WithPriority, or Priority per message)
// orders the queues on the sending side. Above 0 a message goes in the
// socket's urgent lane, written before every ordinary message queued for
// that peer; an acked Pusher's own queue is ordered by priority too.
// Nothing reorders messages already in the network or the receiver.
//
// # Wire shapes
//
// Every envelope is one frame in the format of docs/wire.md. Frames, as
// seen by the receiving application (ROUTER prepends the routing id):
//
//	Requester (DEALER) -> Replier (ROUTER)    ["", envelope{Kind: data}]
//	Replier -> Requester                      ["", envelope{Kind: reply or error, ID: the request's ID}]
//	Publisher (PUB) -> Subscriber (SUB)       [topic, envelope{Kind: data, Topic, Seq: per topic}]
//	Pusher (PUSH) -> Puller (PULL)            [envelope{Kind: data}]
//	acked Pusher (ROUTER) -> Puller (DEALER)  ["", envelope{Kind: data}]
//	acked Puller -> Pusher                    ["", envelope{Kind: ack, Body: bin of n 16-byte ids}]
//	                                          ["", envelope{Kind: ack, no ids, Headers: {"zpeer-credit": "N", "zpeer-start": "1"}}]  (hello)
//	                                          ["", envelope{Kind: nack, ID: the message's ID, Body: str reason}]
//	                                          ["", envelope{Kind: start, Body: bin of 16-byte ids}]  (handler started)
//	Mirror (DEALER) -> StateServer (ROUTER)   ["", envelope{Kind: data, Type: zpeer.state.hello or zpeer.state.snapshot}]
//	StateServer -> Mirror                     ["", envelope{Kind: reply, ID: the request's, Seq, Headers: {"zpeer-epoch"}}]  (snapshot: parts, the last with "zpeer-end")
//	StateServer (XPUB) -> Mirror (SUB)        ["c", envelope{Seq, Body: [key, value] or [key]}], ["h", envelope{Seq: the latest}]  (change, heartbeat)
//
// The empty delimiter frame follows the REQ/REP convention, so a plain
// ZeroMQ REQ socket that sends envelopes gets answers from a Replier
// (libzmq REQ adds and strips the delimiter itself), and a Replier answers
// whatever routing frames came in front of the envelope. An error reply's
// body is the handler's error text as a MessagePack str; the header
// "zpeer-panic" marks a recovered panic. A Publisher's messages can be
// filtered by topic by any ZeroMQ SUB. A fire-and-forget Pusher is a plain
// PUSH: any PULL peer can receive from it.
//
// In the acknowledged pipeline each Puller connection opens with a hello
// that grants the Pusher credit for N messages. Each message delivered on
// the connection uses one credit; each id acknowledged or nacked on it
// returns one. Acks are batched: one ack envelope carries every id
// acknowledged since the previous one was sent. The Pusher learns of lost
// connections from its socket's Detach hook and redelivers their messages
// at once. A redelivered message carries the header "zpeer-start"; a
// Puller whose hello said "zpeer-start" reports, with a start envelope,
// that its handler starts on such a message before running it, so that a
// lost connection counts against WithMaxDeliveries only when the handler
// had started.
//
// Each pattern role is one socket. Patterns that choose their peer (the
// Requester's fail-over, the acked Pusher's credit) do it through the
// socket's peer handles and its synchronous attach and detach hooks, with
// no goroutine per peer and no polling.
//
// # Memory
//
// A received value owns its memory: a []byte or string is a copy of the
// bytes that came in, except that a []byte of 4 KiB or more is the received
// frame itself (handed over with socket.Msg.TakeFrame: reused only once the
// garbage collector finds it unreferenced). Everything else of a received
// message goes back to the socket for reuse (socket.Msg.Free) as soon as
// it is decoded, so a busy receiver makes little garbage. With
// WithBorrowedValues a Puller's or Replier's []byte or string value is
// borrowed instead, like a net/http request body: valid only while the
// handler runs, its memory reused afterwards; for large values that is
// about twice the throughput. Large values sent are encoded into
// socket.Buffers that are reused once written (or, acked, once
// acknowledged). Struct types with msgp's MarshalMsg and UnmarshalMsg
// methods (MsgMarshaler, MsgUnmarshaler) skip the msgpack library's
// reflection.
//
// # Options and errors
//
// Option is func(*options) error with the struct unexported, where socket
// exports its Options: a pattern's option state (resolved CURVE keys,
// discovery wiring, which options were used, for "does not apply to"
// errors) is not API, and exporting it would freeze it. Nothing outside
// the package reads it; socket options pass through WithSocketOptions.
// Otherwise the convention is socket's: applied in order, nil skipped,
// first error returned, every option error wraps ErrOption.
//
// # What this package is not
//
// Replicated state (StateServer and Mirror, see docs/patterns.md) is
// replication from one writer, not consensus: no election, no quorum, and
// a mirror converges to whatever its one server holds.
//
// It is not a broker: it keeps nothing on disk but an acked Pusher's
// outbox (WithOutbox), which only that Pusher (or its successor on the
// directory) reads. A Puller's dedup window is in memory. It does not reorder what a receiver has already taken, does not
// replay missed publications, and does not encrypt (see socket's
// WithSecurity, through WithSocketOptions).
package pattern
