//go:build amd64 && !purego && gc

package poly1305

import "golang.org/x/sys/cpu"

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
	r := fe26FromR(st.r[0], st.r[1])
	r2 := r.mul(&r)
	r3 := r2.mul(&r)
	r4 := r2.mul(&r2)
	var tab table
	tab.set(0, &r4, &r4, &r4, &r4)
	// The kernel's lanes hold blocks 0, 2, 1 and 3 of each group of four.
	tab.set(9, &r4, &r2, &r3, &r)
	var d [5]uint64
	blocks4(&d, &msg[0], uint64(n), &tab)
	h := carry26(d[0], d[1], d[2], d[3], d[4])
	st.h = h.to64()
	update(&st, msg[n:])
	finalize(out, &st.h, &st.s)
}
