// Package codec turns zpeer messages into bytes and back.
//
// It defines the Envelope, the metadata that travels with every message of
// the pattern layer (id, kind, type, priority, timestamp, sender, per-sender
// sequence number, topic, headers) around an opaque body, and its wire
// format: a single MessagePack array, versioned and specified in
// docs/wire.md so that a Python, C or Java peer decodes it with a stock
// msgpack library.
//
// Encoding appends to a caller-supplied buffer and does not allocate for an
// envelope without headers. Decode keeps the body as a sub-slice of the input
// frame rather than copying it; DecodeView checks the same things as Decode
// but copies nothing, leaving the strings and headers as sub-slices of the
// input for a receiver that needs few of them. Decoding treats its input as
// hostile: malformed, truncated or oversized input yields an error matching
// one of ErrTruncated, ErrVersion, ErrMalformed or ErrTooLarge, never a
// panic, and no allocation is sized from a declared length before that
// length has been checked against the bytes actually present.
//
// MarshalValue, AppendValue and UnmarshalValue encode typed bodies, always as
// MessagePack, so that a peer in another language decodes the body the same
// way it decodes the envelope.
//
// A Codec (Msgpack or Raw, chosen by name with Lookup) maps an Envelope to
// the frames of one ZeroMQ message; Raw sends only the body, for peers that
// do not speak the envelope.
//
// The package is not a transport: it knows nothing of sockets, ZMTP framing,
// routing frames, retries or acknowledgements (see socket and pattern), and
// it does not interpret the Kind or Headers it carries. It is not a general
// MessagePack library either; use github.com/vmihailenco/msgpack/v5 for that.
//
// # Low-level API
//
// Four parts serve code that encodes or decodes envelopes and bodies
// itself, as package pattern does; an application that sends and receives
// through pattern needs none of them:
//
//   - Template (NewTemplate) encodes a stream of envelopes that differ only
//     in id, timestamp, sequence number and body, with the shared fields
//     checked and encoded once; AppendHead writes all but the body, for a
//     body marshalled in place.
//   - Envelope.AppendHead writes an envelope without its body's bytes, for
//     a large body already in place after it (no copy of the body).
//   - CheckValue checks that a body is one whole MessagePack value within
//     UnmarshalValue's bounds, for a decoder of its own (generated code).
//   - UnknownField names a body's first map key that a struct does not
//     have, for a receiver to log a body written for another type.
package codec
