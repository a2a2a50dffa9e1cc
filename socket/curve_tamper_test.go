package socket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// relayFlip flips the mask bits of one byte of the client-to-server
// MESSAGE k, at the offset at picks from the frame's length.
func relayFlip(k int, at func(n int) int, mask byte) func(int, []byte) [][]byte {
	return func(i int, f []byte) [][]byte {
		if i == k {
			f = bytes.Clone(f)
			f[at(len(f))] ^= mask
		}
		return [][]byte{f}
	}
}

// TestCurveLargeTampered: a libzmq (pyzmq) or zpeer CURVE PUSH sends two
// messages [msg, i], a four-frame one, then [big, 1 MiB] through a relay
// that flips one byte of the 1 MiB MESSAGE: in its tag, its flags byte
// (MORE, or COMMAND: a command is checked whole before the reader acts on
// it, so that too fails as a forged box), the middle of its body or its
// last byte. A large MESSAGE is opened as
// it arrives and its tag compared at the end, so the receiver has
// decrypted most of it when it finds the damage: the zpeer PULL delivers
// the three messages before it, nothing of [big, ...], and the connection
// ends with the box refused (ErrProtocol).
func TestCurveLargeTampered(t *testing.T) {
	const count = 2
	const big = 9 // MESSAGEs: 2 per [msg, i], 4 for the multi-frame one, then "big" and its 1 MiB
	spots := []struct {
		name string
		at   func(n int) int // n: the frame's length, header (9 bytes) included
		mask byte
	}{
		{"tag", func(int) int { return 9 + 16 + 3 }, 0x20},
		{"flags-more", func(int) int { return 9 + 32 }, boxMore},
		{"flags-command", func(int) int { return 9 + 32 }, boxCommand},
		{"middle", func(n int) int { return n / 2 }, 0x20},
		{"last", func(n int) int { return n - 1 }, 0x20},
	}
	senders := curveSenders(count, true)
	for _, snd := range senders {
		for _, spot := range spots {
			t.Run(snd.name+"/"+spot.name, func(t *testing.T) {
				pull, _, why := tamperedPull(t, snd, relayFlip(big, spot.at, spot.mask))
				if !errors.Is(why, ErrProtocol) || !strings.Contains(why.Error(), "does not open") {
					t.Errorf("connection ended with %v, want the box refused (ErrProtocol)", why)
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				var got []string
				for {
					m, err := pull.Recv(ctx)
					if err != nil {
						break
					}
					got = append(got, fmt.Sprintf("%d frames, first %q", len(m.Frames), m.Frames[0]))
					m.Free()
				}
				want := []string{`2 frames, first "msg"`, `2 frames, first "msg"`, `4 frames, first "multi"`}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("delivered %v, want %v", got, want)
				}
			})
		}
	}
}
