package fleet

import (
	"sync"
	"sync/atomic"
	"time"
)

// Traffic counts the IPv4 UDP packets to one port that the hosts send
// into the lab's bridge (Fleet.CountUDP): each is one frame that the
// bridge floods to every other host. It reads a packet socket on the
// bridge, inside the bridge's namespace, so the hosts' programs are not
// involved.
type Traffic struct {
	port      uint16
	packets   atomic.Uint64
	bytes     atomic.Uint64
	queries   atomic.Uint64 // DNS messages with QR clear
	responses atomic.Uint64 // with QR set
	stop      func()        // stops the reader and waits for it
	closeOnce sync.Once
}

// TrafficCount is a reading of a Traffic's counters.
type TrafficCount struct {
	At                 time.Time
	Packets, Bytes     uint64
	Queries, Responses uint64 // of Packets, read as DNS messages (mDNS)
}

// Sub returns the traffic between an earlier reading and c.
func (c TrafficCount) Sub(earlier TrafficCount) TrafficCount {
	return TrafficCount{
		At:        c.At,
		Packets:   c.Packets - earlier.Packets,
		Bytes:     c.Bytes - earlier.Bytes,
		Queries:   c.Queries - earlier.Queries,
		Responses: c.Responses - earlier.Responses,
	}
}

// Rate returns packets per second between an earlier reading and c.
func (c TrafficCount) Rate(earlier TrafficCount) float64 {
	d := c.At.Sub(earlier.At).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(c.Packets-earlier.Packets) / d
}

// Count reads the counters.
func (t *Traffic) Count() TrafficCount {
	return TrafficCount{
		At:        time.Now(),
		Packets:   t.packets.Load(),
		Bytes:     t.bytes.Load(),
		Queries:   t.queries.Load(),
		Responses: t.responses.Load(),
	}
}

// Close stops counting. It is idempotent.
func (t *Traffic) Close() error {
	t.closeOnce.Do(t.stop)
	return nil
}
