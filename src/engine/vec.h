/*
 * vec.h - the vectors the kernels compute with (GCC's vector extension, as
 * wide as the target's registers, so that -march picks the instructions:
 * AVX-512, AVX2 or SSE). For linear.c and kernels.c only; static inline, owns
 * nothing.
 */
#ifndef FL_VEC_H
#define FL_VEC_H

#include <string.h>

/* The widest vectors the target has in registers: 16 floats with
 * AVX-512, 8 with AVX, 4 otherwise (SSE). GCC splits a vector wider than
 * the target's registers into pieces and, in the product kernels' tiles,
 * spills them to the stack: on an AVX2 machine 16-float vectors made the
 * products 20x slower than 8-float ones. VREGS is how many such registers
 * the tiles may plan for. */
#if defined(__AVX512F__)
#define VW 16
#define VREGS 32
#elif defined(__AVX__)
#define VW 8
#define VREGS 16
#else
#define VW 4
#define VREGS 16
#endif

typedef float vf __attribute__((vector_size(VW * 4)));
typedef int vi __attribute__((vector_size(VW * 4)));

static inline vf
vload(const float *p)
{
	vf v;

	memcpy(&v, p, sizeof v);
	return v;
}

static inline void
vstore(float *p, vf v)
{
	memcpy(p, &v, sizeof v);
}

/* A vector of VW copies of x. */
static inline vf
vsplat(float x)
{
	return (vf){ 0 } + x;
}

/* Horizontal sum by halving: log2(VW) shuffles and adds instead of VW - 1
 * lane extractions. */
static inline float
vsum(vf v)
{
#if VW == 16
	v += __builtin_shuffle(v, (vi){ 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7 });
	v += __builtin_shuffle(v, (vi){ 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11 });
	v += __builtin_shuffle(v, (vi){ 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13 });
	v += __builtin_shuffle(v, (vi){ 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14 });
#elif VW == 8
	v += __builtin_shuffle(v, (vi){ 4, 5, 6, 7, 0, 1, 2, 3 });
	v += __builtin_shuffle(v, (vi){ 2, 3, 0, 1, 6, 7, 4, 5 });
	v += __builtin_shuffle(v, (vi){ 1, 0, 3, 2, 5, 4, 7, 6 });
#else
	v += __builtin_shuffle(v, (vi){ 2, 3, 0, 1 });
	v += __builtin_shuffle(v, (vi){ 1, 0, 3, 2 });
#endif
	return v[0];
}

#endif
