package pattern

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkMirrorSnapshot: a mirror joining a state of 100,000 keys of
// 100-byte values on loopback, from NewMirror to WaitSynced (hello,
// subscription, snapshot of about 11 MB in parts, the state built). One
// op is one join; the target is under a second.
func BenchmarkMirrorSnapshot(b *testing.B) {
	for _, keys := range []int{100_000} {
		b.Run(fmt.Sprintf("keys=%d/value=100", keys), func(b *testing.B) {
			s, err := NewStateServer[[]byte](WithBind(loopback))
			s = cleanup(b, s, err)
			val := make([]byte, 100)
			for i := range keys {
				if err := s.Set(fmt.Sprintf("key-%08d", i), val); err != nil {
					b.Fatal(err)
				}
			}
			addr := ep(b, s)
			b.SetBytes(int64(keys * (len(val) + 12)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			for b.Loop() {
				m, err := NewMirror[[]byte](WithConnect(addr))
				if err != nil {
					b.Fatal(err)
				}
				if err := m.WaitSynced(ctxT(b)); err != nil {
					b.Fatal(err)
				}
				if m.Len() != keys {
					b.Fatalf("%d keys", m.Len())
				}
				m.Close()
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
