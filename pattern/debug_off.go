//go:build !zpeerdebug

package pattern

// debugChecks turns on internal consistency checks that panic (an acked
// Pusher's illegal job transitions, say): built with -tags zpeerdebug.
const debugChecks = false
