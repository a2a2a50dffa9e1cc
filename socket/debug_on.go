//go:build zpeerdebug

package socket

// debugMsgs turns on the checks for received messages used after Free
// (see Msg): built with -tags zpeerdebug.
const debugMsgs = true

// slabDebug records where each message's small frames are in its slab, so
// that Free can poison them.
type slabDebug struct{ regions [slabMsgs][2]uint16 }

func (d *slabDebug) setRegion(i, off, end int) { d.regions[i] = [2]uint16{uint16(off), uint16(end)} }

func (d *slabDebug) region(i int) (off, end int) {
	return int(d.regions[i][0]), int(d.regions[i][1])
}
