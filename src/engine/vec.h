/*
 * vec.h - the sixteen-float vectors the kernels compute with (GCC's vector
 * extension, so that -march picks the instructions: AVX-512 here, AVX2 or
 * SSE elsewhere). For linear.c and kernels.c only; static inline, owns
 * nothing.
 */
#ifndef FL_VEC_H
#define FL_VEC_H

#include <string.h>

typedef float vf __attribute__((vector_size(64)));
#define VW 16

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

/* Horizontal sum by halving: four shuffles and adds instead of 15 lane
 * extractions. */
typedef int vi __attribute__((vector_size(64)));

static inline float
vsum(vf v)
{
	v += __builtin_shuffle(v, (vi){ 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7 });
	v += __builtin_shuffle(v, (vi){ 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11 });
	v += __builtin_shuffle(v, (vi){ 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13 });
	v += __builtin_shuffle(v, (vi){ 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14 });
	return v[0];
}

#endif
