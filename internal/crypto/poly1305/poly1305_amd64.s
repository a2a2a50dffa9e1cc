//go:build amd64 && !purego && gc

#include "textflag.h"

// func blocks4(d *[5]uint64, msg *byte, n uint64, tab *table)
//
// Four Poly1305 accumulators, one per 64-bit lane, each in five 26-bit
// limbs (the low 32 bits of each lane, which VPMULUDQ multiplies). Lane
// 0, 1, 2, 3 takes block 0, 2, 1, 3 of every 64 bytes (the order
// VPUNPCKLQDQ leaves them in), and runs h = (h + m) * r^4 but for the last
// group, where the lanes are multiplied by r^4, r^2, r^3 and r (table
// entries 9-17) and summed.
//
//	Y0-Y4   h, limbs 0-4          Y12  2^26-1 in each lane
//	Y5-Y9   h * r, limbs 0-4      Y13  2^24 in each lane (the 2^128 bit)
//	Y10-Y11 scratch               Y14-Y15  the message's low and high halves
//
// DI d, SI msg, CX bytes left, DX tab (entry i at 32*i).

// MUL: Y5-Y9 = Y0-Y4 times the number whose limbs are at tab entries
// b..b+4 and whose limbs 1-4 times 5 are at b+5..b+8, unreduced.
#define R(b, k) (32*((b)+(k)))(DX)
#define S(b, k) (32*((b)+4+(k)))(DX)
#define MUL(b) \
	VPMULUDQ R(b, 0), Y0, Y5; \
	VPMULUDQ R(b, 1), Y0, Y6; \
	VPMULUDQ R(b, 2), Y0, Y7; \
	VPMULUDQ R(b, 3), Y0, Y8; \
	VPMULUDQ R(b, 4), Y0, Y9; \
	VPMULUDQ S(b, 4), Y1, Y10; \
	VPADDQ   Y10, Y5, Y5; \
	VPMULUDQ R(b, 0), Y1, Y11; \
	VPADDQ   Y11, Y6, Y6; \
	VPMULUDQ R(b, 1), Y1, Y10; \
	VPADDQ   Y10, Y7, Y7; \
	VPMULUDQ R(b, 2), Y1, Y11; \
	VPADDQ   Y11, Y8, Y8; \
	VPMULUDQ R(b, 3), Y1, Y10; \
	VPADDQ   Y10, Y9, Y9; \
	VPMULUDQ S(b, 3), Y2, Y11; \
	VPADDQ   Y11, Y5, Y5; \
	VPMULUDQ S(b, 4), Y2, Y10; \
	VPADDQ   Y10, Y6, Y6; \
	VPMULUDQ R(b, 0), Y2, Y11; \
	VPADDQ   Y11, Y7, Y7; \
	VPMULUDQ R(b, 1), Y2, Y10; \
	VPADDQ   Y10, Y8, Y8; \
	VPMULUDQ R(b, 2), Y2, Y11; \
	VPADDQ   Y11, Y9, Y9; \
	VPMULUDQ S(b, 2), Y3, Y10; \
	VPADDQ   Y10, Y5, Y5; \
	VPMULUDQ S(b, 3), Y3, Y11; \
	VPADDQ   Y11, Y6, Y6; \
	VPMULUDQ S(b, 4), Y3, Y10; \
	VPADDQ   Y10, Y7, Y7; \
	VPMULUDQ R(b, 0), Y3, Y11; \
	VPADDQ   Y11, Y8, Y8; \
	VPMULUDQ R(b, 1), Y3, Y10; \
	VPADDQ   Y10, Y9, Y9; \
	VPMULUDQ S(b, 1), Y4, Y11; \
	VPADDQ   Y11, Y5, Y5; \
	VPMULUDQ S(b, 2), Y4, Y10; \
	VPADDQ   Y10, Y6, Y6; \
	VPMULUDQ S(b, 3), Y4, Y11; \
	VPADDQ   Y11, Y7, Y7; \
	VPMULUDQ S(b, 4), Y4, Y10; \
	VPADDQ   Y10, Y8, Y8; \
	VPMULUDQ R(b, 0), Y4, Y11; \
	VPADDQ   Y11, Y9, Y9

// CARRY: the carry of limb a into limb b (a's bits above 26 to b).
#define CARRY(a, b, t) \
	VPSRLQ $26, a, t; \
	VPAND  Y12, a, a; \
	VPADDQ t, b, b

// HSUM: the sum of y's four lanes to off(DI); x is y's low half.
#define HSUM(y, x, off) \
	VEXTRACTI128 $1, y, X10; \
	VPADDQ       X10, x, x; \
	VPSHUFD      $0x4e, x, X11; \
	VPADDQ       X11, x, x; \
	VMOVQ        x, off(DI)

TEXT ·blocks4(SB), NOSPLIT, $0-32
	MOVQ d+0(FP), DI
	MOVQ msg+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ tab+24(FP), DX

	VPBROADCASTQ ·mask26<>(SB), Y12
	VPBROADCASTQ ·bit24<>(SB), Y13
	VPXOR        Y0, Y0, Y0
	VPXOR        Y1, Y1, Y1
	VPXOR        Y2, Y2, Y2
	VPXOR        Y3, Y3, Y3
	VPXOR        Y4, Y4, Y4

loop:
	// h += the next four blocks, split into limbs
	VMOVDQU     0(SI), Y10
	VMOVDQU     32(SI), Y11
	VPUNPCKLQDQ Y11, Y10, Y14
	VPUNPCKHQDQ Y11, Y10, Y15
	VPAND       Y12, Y14, Y10
	VPADDQ      Y10, Y0, Y0
	VPSRLQ      $26, Y14, Y10
	VPAND       Y12, Y10, Y10
	VPADDQ      Y10, Y1, Y1
	VPSRLQ      $52, Y14, Y10
	VPSLLQ      $12, Y15, Y11
	VPOR        Y11, Y10, Y10
	VPAND       Y12, Y10, Y10
	VPADDQ      Y10, Y2, Y2
	VPSRLQ      $14, Y15, Y10
	VPAND       Y12, Y10, Y10
	VPADDQ      Y10, Y3, Y3
	VPSRLQ      $40, Y15, Y10
	VPOR        Y13, Y10, Y10
	VPADDQ      Y10, Y4, Y4

	ADDQ $64, SI
	SUBQ $64, CX
	JZ   last

	// h *= r^4, and the carries, two chains at a time
	MUL(0)
	CARRY(Y8, Y9, Y10)
	CARRY(Y5, Y6, Y11)
	VPSRLQ $26, Y9, Y10
	VPAND  Y12, Y9, Y9
	VPSLLQ $2, Y10, Y11
	VPADDQ Y11, Y10, Y10
	VPADDQ Y10, Y5, Y5
	CARRY(Y6, Y7, Y11)
	CARRY(Y7, Y8, Y10)
	CARRY(Y5, Y6, Y11)
	CARRY(Y8, Y9, Y10)
	VMOVDQA Y5, Y0
	VMOVDQA Y6, Y1
	VMOVDQA Y7, Y2
	VMOVDQA Y8, Y3
	VMOVDQA Y9, Y4
	JMP     loop

last:
	// join the lanes: times r^4, r^2, r^3, r, summed
	MUL(9)
	HSUM(Y5, X5, 0)
	HSUM(Y6, X6, 8)
	HSUM(Y7, X7, 16)
	HSUM(Y8, X8, 24)
	HSUM(Y9, X9, 32)
	VZEROUPPER
	RET

DATA ·mask26<>+0(SB)/8, $0x3ffffff
GLOBL ·mask26<>(SB), RODATA|NOPTR, $8
DATA ·bit24<>+0(SB)/8, $0x1000000
GLOBL ·bit24<>(SB), RODATA|NOPTR, $8
