//go:build amd64 && !purego && gc

#include "textflag.h"

// Salsa20/20 with AVX2. The state of one block is sixteen 32-bit words,
//
//	x0  x1  x2  x3      s0 k0 k1 k2
//	x4  x5  x6  x7  =   k3 s1 n0 n1
//	x8  x9  x10 x11     b0 b1 s2 k4
//	x12 x13 x14 x15     k5 k6 k7 s3
//
// (s: "expand 32-byte k", k: key, n: nonce, b: 64-bit block number), and a
// double round is a column round, quarter rounds on (x0,x4,x8,x12),
// (x5,x9,x13,x1), (x10,x14,x2,x6), (x15,x3,x7,x11), then a row round, on
// (x0,x1,x2,x3), (x5,x6,x7,x4), (x10,x11,x8,x9), (x15,x12,x13,x14). The
// quarter round on (a,b,c,d) is
//
//	b ^= (a+d) <<< 7;  c ^= (b+a) <<< 9;  d ^= (c+b) <<< 13;  a ^= (d+c) <<< 18
//
// AVX2 has no rotate: each step is an add, two shifts and two XORs.

// STEP: dst ^= (x+y) <<< l, with t and u as scratch; r is 32-l.
#define STEP(dst, x, y, l, r, t, u) \
	VPADDD x, y, t; \
	VPSLLD $l, t, u; \
	VPSRLD $r, t, t; \
	VPXOR  u, dst, dst; \
	VPXOR  t, dst, dst

// QR2: two independent quarter rounds (a,b,c,d) and (e,f,g,h), their steps
// interleaved; both use t and u as scratch (the CPU renames them).
#define QR2(a, b, c, d, e, f, g, h, t, u) \
	STEP(b, a, d, 7, 25, t, u); \
	STEP(f, e, h, 7, 25, t, u); \
	STEP(c, b, a, 9, 23, t, u); \
	STEP(g, f, e, 9, 23, t, u); \
	STEP(d, c, b, 13, 19, t, u); \
	STEP(h, g, f, 13, 19, t, u); \
	STEP(a, d, c, 18, 14, t, u); \
	STEP(e, h, g, 18, 14, t, u)

// Two blocks side by side, block n in the low 128-bit lane of each register
// and block n+1 in the high lane, each lane in the diagonal layout that puts
// the four quarter rounds of a column round in the four 32-bit words:
//
//	A = (x0, x5, x10, x15)
//	B = (x4, x9, x14, x3)
//	C = (x8, x13, x2, x7)
//	D = (x12, x1, x6, x11)
//
// so that the column round is B ^= (A+D)<<<7, C ^= (B+A)<<<9,
// D ^= (C+B)<<<13, A ^= (D+C)<<<18. Rotating the words of D, C and B by 1,
// 2 and 3 places turns them into (x1,x6,x11,x12), (x2,x7,x8,x13) and
// (x3,x4,x9,x14), the row round's b, c and d; rotating back restores the
// column layout. This is latency-bound (every step waits for the one
// before), so blocks2x2 runs two such pairs, for two nonces, interleaved,
// in about the time of one.

// IMAGES writes the 16-byte rows of a block pair's input state to the
// frame at base: D at base, then B and C of block n, then B and C of block
// n+1 (they differ in the block number only). SI is the counter, DX the
// key; AX and BX are scratch.
#define IMAGES(base) \
	MOVL 20(DX), AX; \
	MOVL AX, (base+0)(SP); \
	MOVL 0(DX), AX; \
	MOVL AX, (base+4)(SP); \
	MOVL 0(SI), AX; \
	MOVL AX, (base+8)(SP); \
	MOVL 16(DX), AX; \
	MOVL AX, (base+12)(SP); \
	MOVL 12(DX), AX; \
	MOVL AX, (base+16)(SP); \
	MOVL AX, (base+48)(SP); \
	MOVL 28(DX), AX; \
	MOVL AX, (base+24)(SP); \
	MOVL AX, (base+56)(SP); \
	MOVL 8(DX), AX; \
	MOVL AX, (base+28)(SP); \
	MOVL AX, (base+60)(SP); \
	MOVL 24(DX), AX; \
	MOVL AX, (base+36)(SP); \
	MOVL AX, (base+68)(SP); \
	MOVL 4(DX), AX; \
	MOVL AX, (base+40)(SP); \
	MOVL AX, (base+72)(SP); \
	MOVL 4(SI), AX; \
	MOVL AX, (base+44)(SP); \
	MOVL AX, (base+76)(SP); \
	MOVQ 8(SI), AX; \
	MOVL AX, (base+32)(SP); \
	MOVQ AX, BX; \
	SHRQ $32, BX; \
	MOVL BX, (base+20)(SP); \
	ADDQ $1, AX; \
	MOVL AX, (base+64)(SP); \
	SHRQ $32, AX; \
	MOVL AX, (base+52)(SP)

// LOAD loads the pair whose images are at base into A, B, C, D (xb and xc
// are B's and C's low halves).
#define LOAD(base, a, b, c, d, xb, xc) \
	VBROADCASTI128 ·sigma<>(SB), a; \
	VMOVDQU        (base+16)(SP), xb; \
	VINSERTI128    $1, (base+48)(SP), b, b; \
	VMOVDQU        (base+32)(SP), xc; \
	VINSERTI128    $1, (base+64)(SP), c, c; \
	VBROADCASTI128 (base+0)(SP), d

// COLUMN and ROW are a column round and a row round of a pair, each
// leaving the layout the other expects.
#define COLUMN(a, b, c, d, t, u) \
	STEP(b, a, d, 7, 25, t, u); \
	STEP(c, b, a, 9, 23, t, u); \
	STEP(d, c, b, 13, 19, t, u); \
	STEP(a, d, c, 18, 14, t, u); \
	VPSHUFD $0x93, b, b; \
	VPSHUFD $0x4e, c, c; \
	VPSHUFD $0x39, d, d

#define ROW(a, b, c, d, t, u) \
	STEP(d, a, b, 7, 25, t, u); \
	STEP(c, d, a, 9, 23, t, u); \
	STEP(b, c, d, 13, 19, t, u); \
	STEP(a, b, c, 18, 14, t, u); \
	VPSHUFD $0x39, b, b; \
	VPSHUFD $0x4e, c, c; \
	VPSHUFD $0x93, d, d

// OUT adds the input state (the images at base: A is sigma) and stores
// the pair's 128 bytes of key stream at off(DI): rows (x0,x1,x2,x3) =
// (A0,D1,C2,B3), (x4..x7) = (B0,A1,D2,C3), (x8..x11) = (C0,B1,A2,D3) and
// (x12..x15) = (D0,C1,B2,A3), block n from the low lanes, n+1 from the high.
// r0-r3 (x0-x3 their low halves) are scratch.
#define OUT(base, off, a, b, c, d, r0, r1, r2, r3, x0, x1, x2, x3) \
	VBROADCASTI128 ·sigma<>(SB), r0; \
	VPADDD         r0, a, a; \
	VMOVDQU        (base+16)(SP), x1; \
	VINSERTI128    $1, (base+48)(SP), r1, r1; \
	VPADDD         r1, b, b; \
	VMOVDQU        (base+32)(SP), x2; \
	VINSERTI128    $1, (base+64)(SP), r2, r2; \
	VPADDD         r2, c, c; \
	VBROADCASTI128 (base+0)(SP), r3; \
	VPADDD         r3, d, d; \
	VPBLENDD       $0x22, d, a, r0; \
	VPBLENDD       $0x44, c, r0, r0; \
	VPBLENDD       $0x88, b, r0, r0; \
	VPBLENDD       $0x22, a, b, r1; \
	VPBLENDD       $0x44, d, r1, r1; \
	VPBLENDD       $0x88, c, r1, r1; \
	VPBLENDD       $0x22, b, c, r2; \
	VPBLENDD       $0x44, a, r2, r2; \
	VPBLENDD       $0x88, d, r2, r2; \
	VPBLENDD       $0x22, c, d, r3; \
	VPBLENDD       $0x44, b, r3, r3; \
	VPBLENDD       $0x88, a, r3, r3; \
	VMOVDQU        x0, (off+0)(DI); \
	VMOVDQU        x1, (off+16)(DI); \
	VMOVDQU        x2, (off+32)(DI); \
	VMOVDQU        x3, (off+48)(DI); \
	VEXTRACTI128   $1, r0, (off+64)(DI); \
	VEXTRACTI128   $1, r1, (off+80)(DI); \
	VEXTRACTI128   $1, r2, (off+96)(DI); \
	VEXTRACTI128   $1, r3, (off+112)(DI)

// func blocks2(ks *[128]byte, counter *[16]byte, key *[32]byte)
//
// Y0-Y3 A, B, C, D; Y8, Y9 scratch; Y4-Y7 the output rows. DI ks, SI
// counter, DX key, CX double rounds left. Frame: the images (IMAGES).
TEXT ·blocks2(SB), NOSPLIT, $80-24
	MOVQ ks+0(FP), DI
	MOVQ counter+8(FP), SI
	MOVQ key+16(FP), DX
	IMAGES(0)
	LOAD(0, Y0, Y1, Y2, Y3, X1, X2)
	MOVQ $10, CX

loop2:
	COLUMN(Y0, Y1, Y2, Y3, Y8, Y9)
	ROW(Y0, Y1, Y2, Y3, Y8, Y9)
	DECQ CX
	JNZ  loop2

	OUT(0, 0, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, X4, X5, X6, X7)
	VZEROUPPER
	RET

// func blocks2x2(ks *[256]byte, c0, c1 *[16]byte, key *[32]byte)
//
// blocks2 for c0 (Y0-Y3, scratch Y8, Y9, key stream to ks[0:128]) and c1
// (Y4-Y7, scratch Y10, Y11, to ks[128:256]), the steps of the two
// interleaved. Frame: c0's images at 0, c1's at 80.
TEXT ·blocks2x2(SB), NOSPLIT, $160-32
	MOVQ ks+0(FP), DI
	MOVQ key+24(FP), DX
	MOVQ c0+8(FP), SI
	IMAGES(0)
	MOVQ c1+16(FP), SI
	IMAGES(80)
	LOAD(0, Y0, Y1, Y2, Y3, X1, X2)
	LOAD(80, Y4, Y5, Y6, Y7, X5, X6)
	MOVQ $10, CX

loop2x2:
	STEP(Y1, Y0, Y3, 7, 25, Y8, Y9)
	STEP(Y5, Y4, Y7, 7, 25, Y10, Y11)
	STEP(Y2, Y1, Y0, 9, 23, Y8, Y9)
	STEP(Y6, Y5, Y4, 9, 23, Y10, Y11)
	STEP(Y3, Y2, Y1, 13, 19, Y8, Y9)
	STEP(Y7, Y6, Y5, 13, 19, Y10, Y11)
	STEP(Y0, Y3, Y2, 18, 14, Y8, Y9)
	STEP(Y4, Y7, Y6, 18, 14, Y10, Y11)
	VPSHUFD $0x93, Y1, Y1
	VPSHUFD $0x93, Y5, Y5
	VPSHUFD $0x4e, Y2, Y2
	VPSHUFD $0x4e, Y6, Y6
	VPSHUFD $0x39, Y3, Y3
	VPSHUFD $0x39, Y7, Y7
	STEP(Y3, Y0, Y1, 7, 25, Y8, Y9)
	STEP(Y7, Y4, Y5, 7, 25, Y10, Y11)
	STEP(Y2, Y3, Y0, 9, 23, Y8, Y9)
	STEP(Y6, Y7, Y4, 9, 23, Y10, Y11)
	STEP(Y1, Y2, Y3, 13, 19, Y8, Y9)
	STEP(Y5, Y6, Y7, 13, 19, Y10, Y11)
	STEP(Y0, Y1, Y2, 18, 14, Y8, Y9)
	STEP(Y4, Y5, Y6, 18, 14, Y10, Y11)
	VPSHUFD $0x39, Y1, Y1
	VPSHUFD $0x39, Y5, Y5
	VPSHUFD $0x4e, Y2, Y2
	VPSHUFD $0x4e, Y6, Y6
	VPSHUFD $0x93, Y3, Y3
	VPSHUFD $0x93, Y7, Y7
	DECQ CX
	JNZ  loop2x2

	OUT(0, 0, Y0, Y1, Y2, Y3, Y8, Y9, Y10, Y11, X8, X9, X10, X11)
	OUT(80, 128, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, X8, X9, X10, X11)
	VZEROUPPER
	RET

// func blocks8(out, in *byte, n uint64, counter *[16]byte, key *[32]byte)
//
// Eight blocks per step, word i of block j in 32-bit lane j of state vector
// i. Fourteen vectors live in registers and two in the frame: the words
// x3 and x7 share Y10 and Y11 with x12 and x13, the pair not in use waiting
// in the frame (the column round needs x3 and x7 only in its last quarter
// round, the row round x12 and x13 only in its last):
//
//	Y0 x0    Y3 x4    Y6 x8     Y8  x10   Y10 x12 | x3   Y12 x14   Y14 scratch
//	Y1 x1    Y4 x5    Y7 x9     Y9  x11   Y11 x13 | x7   Y13 x15   Y15 scratch
//	Y2 x2    Y5 x6
//
// Other registers: DI out, SI in, DX bytes left, R8 key, R9 the frame's
// 32-byte aligned base, R10 the first block number of the step, CX rounds.
//
// Frame (from R9): 32*i the input state vector i (0 <= i < 16), then at
// 512+32*i the output vector i, whose slots 3, 7, 12 and 13 also hold the
// words waiting out a round.
#define INIT(i) (32*(i))(R9)
#define WORK(i) (512+32*(i))(R9)

// TRANSPOSE_XOR: words w..w+7 of the eight blocks from the frame,
// transposed to eight 32-byte rows (block j's bytes off..off+31), XORed with
// in and stored to out. Y0-Y15 are all scratch here.
#define TRANSPOSE_XOR(w, off) \
	VMOVDQA     WORK(w+0), Y0; \
	VMOVDQA     WORK(w+1), Y1; \
	VMOVDQA     WORK(w+2), Y2; \
	VMOVDQA     WORK(w+3), Y3; \
	VMOVDQA     WORK(w+4), Y4; \
	VMOVDQA     WORK(w+5), Y5; \
	VMOVDQA     WORK(w+6), Y6; \
	VMOVDQA     WORK(w+7), Y7; \
	VPUNPCKLDQ  Y1, Y0, Y8; \
	VPUNPCKHDQ  Y1, Y0, Y9; \
	VPUNPCKLDQ  Y3, Y2, Y10; \
	VPUNPCKHDQ  Y3, Y2, Y11; \
	VPUNPCKLDQ  Y5, Y4, Y12; \
	VPUNPCKHDQ  Y5, Y4, Y13; \
	VPUNPCKLDQ  Y7, Y6, Y14; \
	VPUNPCKHDQ  Y7, Y6, Y15; \
	VPUNPCKLQDQ Y10, Y8, Y0; \
	VPUNPCKHQDQ Y10, Y8, Y1; \
	VPUNPCKLQDQ Y11, Y9, Y2; \
	VPUNPCKHQDQ Y11, Y9, Y3; \
	VPUNPCKLQDQ Y14, Y12, Y4; \
	VPUNPCKHQDQ Y14, Y12, Y5; \
	VPUNPCKLQDQ Y15, Y13, Y6; \
	VPUNPCKHQDQ Y15, Y13, Y7; \
	VPERM2I128  $0x20, Y4, Y0, Y8; \
	VPERM2I128  $0x31, Y4, Y0, Y9; \
	VPERM2I128  $0x20, Y5, Y1, Y10; \
	VPERM2I128  $0x31, Y5, Y1, Y11; \
	VPERM2I128  $0x20, Y6, Y2, Y12; \
	VPERM2I128  $0x31, Y6, Y2, Y13; \
	VPERM2I128  $0x20, Y7, Y3, Y14; \
	VPERM2I128  $0x31, Y7, Y3, Y15; \
	VPXOR       (0*64+off)(SI), Y8, Y8; \
	VMOVDQU     Y8, (0*64+off)(DI); \
	VPXOR       (4*64+off)(SI), Y9, Y9; \
	VMOVDQU     Y9, (4*64+off)(DI); \
	VPXOR       (1*64+off)(SI), Y10, Y10; \
	VMOVDQU     Y10, (1*64+off)(DI); \
	VPXOR       (5*64+off)(SI), Y11, Y11; \
	VMOVDQU     Y11, (5*64+off)(DI); \
	VPXOR       (2*64+off)(SI), Y12, Y12; \
	VMOVDQU     Y12, (2*64+off)(DI); \
	VPXOR       (6*64+off)(SI), Y13, Y13; \
	VMOVDQU     Y13, (6*64+off)(DI); \
	VPXOR       (3*64+off)(SI), Y14, Y14; \
	VMOVDQU     Y14, (3*64+off)(DI); \
	VPXOR       (7*64+off)(SI), Y15, Y15; \
	VMOVDQU     Y15, (7*64+off)(DI)

TEXT ·blocks8(SB), 0, $1056-40
	MOVQ out+0(FP), DI
	MOVQ in+8(FP), SI
	MOVQ n+16(FP), DX
	MOVQ counter+24(FP), AX
	MOVQ key+32(FP), R8
#include "salsa20_blocks8_amd64.h"

// func blocks8VL(out, in *byte, n uint64, counter *[16]byte, key *[32]byte)
//
// blocks8 on CPUs with AVX-512VL, whose VPROLD rotates the eight lanes of
// a YMM register in one instruction: the same code (the same registers,
// frame and steps), each STEP three instructions instead of five, with a
// shorter chain of dependent ones (add, rotate, XOR).
#undef STEP
#define STEP(dst, x, y, l, r, t, u) \
	VPADDD x, y, t; \
	VPROLD $l, t, t; \
	VPXOR  t, dst, dst

TEXT ·blocks8VL(SB), 0, $1056-40
	MOVQ out+0(FP), DI
	MOVQ in+8(FP), SI
	MOVQ n+16(FP), DX
	MOVQ counter+24(FP), AX
	MOVQ key+32(FP), R8
#include "salsa20_blocks8_amd64.h"

// sigma is "expand 32-byte k" as four little-endian words.
DATA ·sigma<>+0(SB)/4, $0x61707865
DATA ·sigma<>+4(SB)/4, $0x3320646e
DATA ·sigma<>+8(SB)/4, $0x79622d32
DATA ·sigma<>+12(SB)/4, $0x6b206574
GLOBL ·sigma<>(SB), RODATA|NOPTR, $16

// lanes0145 and lanes2367: the block offsets blocks8 adds, as quadwords.
DATA ·lanes0145<>+0(SB)/8, $0
DATA ·lanes0145<>+8(SB)/8, $1
DATA ·lanes0145<>+16(SB)/8, $4
DATA ·lanes0145<>+24(SB)/8, $5
GLOBL ·lanes0145<>(SB), RODATA|NOPTR, $32
DATA ·lanes2367<>+0(SB)/8, $2
DATA ·lanes2367<>+8(SB)/8, $3
DATA ·lanes2367<>+16(SB)/8, $6
DATA ·lanes2367<>+24(SB)/8, $7
GLOBL ·lanes2367<>(SB), RODATA|NOPTR, $32
