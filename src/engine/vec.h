/*
 * vec.h - the vectors the kernels compute with (GCC's vector extension, as
 * wide as the target's registers, so that -march picks the instructions:
 * AVX-512, AVX2 or SSE). For the kernels (linear.c, kernels.c) and
 * bench/kern_bench only; static inline, owns nothing.
 */
#ifndef FL_VEC_H
#define FL_VEC_H

#include <string.h>

#if defined(__F16C__) || defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

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

/* Keeps v in a register as the compiler sees it: no value is assumed
 * across it (stops loads being folded or products being fused). */
#if defined(__AVX512F__)
#define KEEP(v) __asm__("" : "+v"(v))
#elif defined(__SSE__)
#define KEEP(v) __asm__("" : "+x"(v))
#else
#define KEEP(v) ((void)0)
#endif

/* a + x w, one rounding where the hardware fuses: explicit, so that every
 * instantiation of a kernel (each dtype, each tile size) rounds the same
 * way. Left to -ffp-contract=fast, GCC fused the one-row, one-vector f32
 * tile and not the f16 one, so f16 weights stopped giving the numbers of
 * their f32 conversion in a narrow last strip. The broadcast is set1, not
 * vsplat (whose 0 + x is not a bare broadcast to GCC): with vsplat,
 * kern_bench 2 16 f32 ran 1.28x slower. */
static inline __attribute__((always_inline)) vf
vfmadd(vf a, float x, vf w)
{
#if defined(__AVX512F__) && VW == 16
	return (vf)_mm512_fmadd_ps(_mm512_set1_ps(x), (__m512)w, (__m512)a);
#elif defined(__FMA__) && VW == 8
	return (vf)_mm256_fmadd_ps(_mm256_set1_ps(x), (__m256)w, (__m256)a);
#elif defined(__FMA__) && VW == 4
	return (vf)_mm_fmadd_ps(_mm_set1_ps(x), (__m128)w, (__m128)a);
#else
	vf p = x * w;

	KEEP(p);	/* no fusing without the instruction */
	return a + p;
#endif
}

#endif
