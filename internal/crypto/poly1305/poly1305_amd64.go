//go:build amd64 && !purego && gc

package poly1305

import (
	"math/bits"

	"golang.org/x/sys/cpu"
)

var hasAsm = cpu.X86.HasAVX2

// table is what blocks4 multiplies by, each entry a limb in all four
// 64-bit lanes: at 0, r^4's limbs 0-4 and then limbs 1-4 times 5 (for
// Horner's rule in every lane); at 9, the same for the powers that join
// the lanes.
type table [18][4]uint64

func (t *table) set(at int, l0, l1, l2, l3 *fe26) {
	for k := range 5 {
		t[at+k] = [4]uint64{l0[k], l1[k], l2[k], l3[k]}
	}
	for k := 1; k < 5; k++ {
		t[at+4+k] = [4]uint64{5 * l0[k], 5 * l1[k], 5 * l2[k], 5 * l3[k]}
	}
}

// blocks4 adds the Poly1305 polynomial of msg (n bytes, a positive multiple
// of 64) evaluated at r, as h would be after n/16 blocks starting from 0,
// into d as five unreduced 26-bit-radix limbs.
//
//go:noescape
func blocks4(d *[5]uint64, msg *byte, n uint64, tab *table)

// sumAsm is Sum on the AVX2 kernel.
func sumAsm(out *[TagSize]byte, msg []byte, key *[32]byte) {
	var st macState
	initialize(key, &st)
	n := len(msg) &^ 63
	if n == 0 {
		update(&st, msg)
		finalize(out, &st.h, &st.s)
		return
	}
	var v vecState
	v.setup(&st)
	var d [5]uint64
	blocks4(&d, &msg[0], uint64(n), &v.tab)
	h := carry26(d[0], d[1], d[2], d[3], d[4])
	st.h = h.to64()
	update(&st, msg[n:])
	finalize(out, &st.h, &st.s)
}

// vecState is what MAC keeps for the AVX2 kernel: r, the table of its
// powers blocks4 multiplies by, and the last r^k a piece of k blocks
// needed (pieces tend to be of one size).
type vecState struct {
	ready bool // r and tab are set
	r     fe26
	tab   table
	k     uint64 // the power in rk; 0 before the first
	rk    fe26
}

// setup makes r, from st's key, and the table of its powers.
func (v *vecState) setup(st *macState) {
	v.r = fe26FromR(st.r[0], st.r[1])
	r2 := v.r.mul(&v.r)
	r3 := r2.mul(&v.r)
	r4 := r2.mul(&r2)
	v.tab.set(0, &r4, &r4, &r4, &r4)
	// The kernel's lanes hold blocks 0, 2, 1 and 3 of each group of four.
	v.tab.set(9, &r4, &r2, &r3, &v.r)
	v.ready = true
}

// blocks runs the Poly1305 update of st over p (a positive multiple of 64
// bytes) on the kernel: the kernel evaluates p's k blocks from a zero
// accumulator, so st's accumulator h becomes h·r^k plus that.
func (v *vecState) blocks(st *macState, p []byte) {
	if !v.ready {
		v.setup(st)
	}
	var d [5]uint64
	blocks4(&d, &p[0], uint64(len(p)), &v.tab)
	poly := carry26(d[0], d[1], d[2], d[3], d[4])
	h := fe26From64(&st.h)
	h = h.mul(v.pow(uint64(len(p) / TagSize)))
	h = carry26(h[0]+poly[0], h[1]+poly[1], h[2]+poly[2], h[3]+poly[3], h[4]+poly[4])
	st.h = h.to64()
}

// pow returns r^k (k > 0), by squaring and multiplying: the branches
// depend on k, a length, not on the key.
func (v *vecState) pow(k uint64) *fe26 {
	if v.k != k {
		acc := v.r
		for i := bits.Len64(k) - 2; i >= 0; i-- {
			acc = acc.mul(&acc)
			if k>>uint(i)&1 == 1 {
				acc = acc.mul(&v.r)
			}
		}
		v.k, v.rk = k, acc
	}
	return &v.rk
}

// clear erases r and its powers.
func (v *vecState) clear() { *v = vecState{} }
