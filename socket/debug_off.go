//go:build !zpeerdebug

package socket

// debugMsgs turns on the checks for received messages used after Free
// (see Msg): built with -tags zpeerdebug.
const debugMsgs = false

// slabDebug is empty unless built with zpeerdebug.
type slabDebug struct{}

func (*slabDebug) setRegion(i, off, end int)   {}
func (*slabDebug) region(i int) (off, end int) { return 0, 0 }
