package partition

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// owner is the index of the member that owns key among members.
func owner(key string, members []string) int {
	kh := Hash(key)
	best, bs := -1, uint64(0)
	for i, m := range members {
		if s := Score(kh, Hash(m)); best < 0 || Better(s, uint64(i), bs, uint64(best)) {
			best, bs = i, s
		}
	}
	return best
}

// randomNames returns n member names as pattern makes them (16 hex
// digits) or as the CLI does (host-pid), at random.
func randomNames(r *rand.Rand, n int) []string {
	names := make([]string, n)
	for i := range names {
		if r.IntN(2) == 0 {
			names[i] = fmt.Sprintf("%016x", r.Uint64())
		} else {
			names[i] = fmt.Sprintf("host%d-%d", r.IntN(64), r.IntN(1<<22))
		}
	}
	return names
}

// Keys spread evenly: with 20,000 keys over N members every member owns
// within 15% of 20,000/N (the binomial deviation is 2-4% of the mean for
// these N, so the bound is at least 4 deviations), for many random sets
// of member names.
func TestEvenSpread(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const nkeys = 20000
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("account-%d", i)
	}
	for _, n := range []int{2, 4, 8, 16} {
		for trial := range 5 {
			members := randomNames(r, n)
			count := make([]int, n)
			for _, k := range keys {
				count[owner(k, members)]++
			}
			mean := float64(nkeys) / float64(n)
			for i, c := range count {
				if dev := (float64(c) - mean) / mean; dev > 0.15 || dev < -0.15 {
					t.Errorf("N=%d trial %d: member %s owns %d keys, mean %.0f (%+.1f%%)", n, trial, members[i], c, mean, 100*dev)
				}
			}
		}
	}
}

// A member that leaves moves only its own keys; one that joins takes
// about 1/(N+1) of the keys, each from whoever had it.
func TestMinimalMovement(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const nkeys = 10000
	for _, n := range []int{3, 8, 32} {
		members := randomNames(r, n)
		before := make([]string, nkeys)
		for i := range before {
			before[i] = members[owner(fmt.Sprint("k", i), members)]
		}
		gone := members[n/2]
		left := append(append([]string{}, members[:n/2]...), members[n/2+1:]...)
		for i := range before {
			now := left[owner(fmt.Sprint("k", i), left)]
			if before[i] != gone && now != before[i] {
				t.Fatalf("N=%d: key k%d moved from %s to %s when %s left", n, i, before[i], now, gone)
			}
		}
		joined := append(append([]string{}, members...), "newcomer")
		taken := 0
		for i := range before {
			now := joined[owner(fmt.Sprint("k", i), joined)]
			if now != before[i] {
				if now != "newcomer" {
					t.Fatalf("N=%d: key k%d moved from %s to %s on a join", n, i, before[i], now)
				}
				taken++
			}
		}
		want := float64(nkeys) / float64(n+1)
		if dev := (float64(taken) - want) / want; dev > 0.2 || dev < -0.2 {
			t.Errorf("N=%d: the newcomer took %d keys, want about %.0f", n, taken, want)
		}
	}
}

// The hash is a fixed function of the bytes: two processes agree.
func TestHashIsFixed(t *testing.T) {
	if Hash("account-1") != HashBytes([]byte("account-1")) {
		t.Fatal("Hash and HashBytes differ")
	}
	// Known value: FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c, then mixed.
	if got, want := Hash("a"), mix(0xaf63dc4c8601ec8c); got != want {
		t.Fatalf("Hash(a) = %#x, want %#x", got, want)
	}
}

func BenchmarkOwner8(b *testing.B) {
	members := randomNames(rand.New(rand.NewPCG(5, 6)), 8)
	hs := make([]uint64, len(members))
	for i, m := range members {
		hs[i] = Hash(m)
	}
	b.ReportAllocs()
	for i := range b.N {
		kh := Hash("account-12345")
		var bs uint64
		for _, h := range hs {
			if s := Score(kh+uint64(i), h); s > bs {
				bs = s
			}
		}
	}
}
