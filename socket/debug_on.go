//go:build zpeerdebug

package socket

// debugMsgs turns on the checks for received messages used after Free
// (see Msg): built with -tags zpeerdebug.
const debugMsgs = true
