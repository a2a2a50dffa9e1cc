// Package asyncq runs a callback on each queued item, in order, on a
// goroutine of its own, so that the goroutine that queues (an engine's I/O
// goroutine, a pattern's delivery loop) never waits for user code. socket/
// delivers its events to the event handler through it, pattern/ its
// dead-letter callbacks. It is not a data path: items are connection
// changes and failures, so a slice and a mutex serve.
//
// discovery/ keeps its own queue (discovery/queue.go): its subscribers read
// events from a channel at their own pace, and its queue coalesces them per
// peer (an Up then a Down cancel), which a run-in-order queue must not do.
package asyncq
