// Package outbox is a durable, bounded store of pending records for the
// acked Pusher's outbox (pattern.WithOutbox): a record is appended when a
// job is pushed and acknowledged (removed) when the job is acked or dead;
// after a crash, Open finds every record not yet acknowledged and Replay
// hands them back.
//
// It is a segmented append-only log, not a key-value store. Records (a put
// with an id and a payload, or an ack naming an id) are framed with their
// length and a CRC-32C and appended to the newest segment file; a segment is
// deleted once every put in it, and in every older segment, is
// acknowledged; the oldest segment's live records are copied forward when
// they are few, or when the files hold over twice the live records (plus
// four segments), so that stuck records do not pin the disk. An index of the live ids (segment, size) stays in memory.
//
// Two modes (WithInterval): sync (the default), where Append returns once
// the record is written and fsynced, concurrent Appends sharing one write
// and one fsync (group commit); and batched, where Append returns once the
// record is buffered in memory and a background goroutine writes and
// fsyncs at most every interval: a crash of the process or of the machine
// loses the records appended in the last interval (plus the fsync in
// progress).
//
// Acks are never waited for: they are written with the next batch, and an
// ack lost in a crash only means that the record is replayed again (the
// outbox is at-least-once).
//
// On Open a record that is torn (the file ends inside it) or corrupt (bad
// length or checksum) is never returned: it is counted in Stats.Corrupt,
// and the rest of that segment is skipped, since its framing can no longer
// be trusted. The newest segment is truncated at its last good record.
//
// It is not a general database or queue: no reads by id, no ordering
// guarantees across a crash beyond append order, one process per directory
// (a lock file enforces it).
package outbox
