/* linear.c - see linear.h. */
#include "autoconfig.h"

#include "linear.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "vec.h"
#include "base/util.h"

/* ---- product kernels -------------------------------------------------
 * For the few rows of a prompt, each reads the weights once, in the order
 * they lie in memory, and keeps the input rows in L1; batches of many rows
 * reuse each block of weights from L1 or L2 for all of them. GCC's vector
 * extension lets -march pick the instructions (AVX-512 here, AVX2 or SSE
 * elsewhere). */

/* ---- weights as stored ------------------------------------------------
 * F16 and BF16 weights are read as stored and widened to f32 in registers,
 * sixteen at a time, as the products load them; the sums are f32 as for
 * f32 weights. The kernels below take the dtype as a constant (each is
 * instantiated once per dtype), so that the f32 path is unchanged. */

typedef unsigned short vh __attribute__((vector_size(VW * 2)));
typedef unsigned int vu __attribute__((vector_size(VW * 4)));

/* VW weights from element i of w: f16 by the hardware conversion
 * (vcvtph2ps), bf16 by moving each value to the high half of a float. */
static inline __attribute__((always_inline)) vf
wload(const void *w, size_t i, const fl_dtype dt)
{
	const unsigned char *p = (const unsigned char *)w + i * fl_dtype_size(dt);
	vf v;

	switch (dt) {
	case FL_DTYPE_F16:
#if defined(__AVX512F__)
		v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
#elif defined(__F16C__) && VW == 8
		{
			__m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));

			memcpy(&v, &f, sizeof v);
		}
#elif defined(__F16C__) && VW == 4
		{
			__m128 f = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)p));

			memcpy(&v, &f, sizeof v);
		}
#else
		for (int l = 0; l < VW; l++)
			v[l] = st_f16_to_f32((unsigned short)(p[2 * l] | p[2 * l + 1] << 8));
#endif
		return v;
	case FL_DTYPE_BF16:
#if defined(__AVX512F__)
		v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(
		    _mm256_loadu_si256((const __m256i *)(const void *)p)), 16));
#else
		{
			vh h;
			vu u;

			memcpy(&h, p, sizeof h);
			u = __builtin_convertvector(h, vu) << 16;
			memcpy(&v, &u, sizeof v);
		}
#endif
		return v;
	default:
		memcpy(&v, p, sizeof v);
		return v;
	}
}

bool
kern_f16_hardware(void)
{
#if defined(__F16C__) || defined(__AVX512F__)
	return true;
#else
	return false;
#endif
}

/* One weight, element i of w. */
static inline __attribute__((always_inline)) float
wone(const void *w, size_t i, const fl_dtype dt)
{
	const unsigned char *p = (const unsigned char *)w + i * fl_dtype_size(dt);
	unsigned short h;
	unsigned int u;
	float f;

	switch (dt) {
	case FL_DTYPE_F16:
		memcpy(&h, p, sizeof h);
#if defined(__F16C__)
		return _cvtsh_ss(h);
#else
		return st_f16_to_f32(h);
#endif
	case FL_DTYPE_BF16:
		memcpy(&h, p, sizeof h);
		u = (unsigned int)h << 16;
		memcpy(&f, &u, sizeof f);
		return f;
	default:
		memcpy(&f, p, sizeof f);
		return f;
	}
}

/* w advanced by n elements of dt. */
static inline const void *
wskip(const void *w, size_t n, fl_dtype dt)
{
	return (const unsigned char *)w + n * fl_dtype_size(dt);
}

typedef struct {
	float		*y;
	int		 ldy;
	const float	*x;
	int		 ldx;
	const void	*w;	/* elements of dt */
	int		 ld;	/* in elements */
	const float	*b;
	int		 M, in, out;
	bool		 acc;
	fl_dtype	 dt;
	bool		 trans;	/* w is (out, in); only blas_part reads it */
	const void	*pk;	/* full strips, contiguous (kern_linear_pack) */
} stream_job;

/* Weights stored (out, in): y[m][o] = x[m] . w[o]. A tile is TRANS_WR
 * weight rows by up to TRANS_MT input rows: with 32 registers (AVX-512),
 * four by six, 24 accumulators and 10 loads per 24 fused multiply-adds;
 * with 16 (AVX2), two by six, 12 accumulators and 8 loads per 12 (four
 * by two had 6 per 8 and ran the 13-row lens at 40 GFLOP/s a thread). The
 * empty asm keeps each loaded vector in a register: otherwise GCC folds
 * the load into every multiply-add that uses it, and the loop becomes
 * bound by loads instead of arithmetic. */
#if VREGS >= 32
#define TRANS_WR 4		/* weight rows per tile */
#else
#define TRANS_WR 2
#endif
#define TRANS_MT 6		/* input rows per tile */
#define TRANS_TILE_MAX 6	/* the largest tile trans_rows_dt's switch names */
#define TRANS_L1_BYTES 32768	/* weight and input chunks kept in L1 */
#define TRANS_ROWS 32		/* input rows per pass over the weights */

/* One tile: MB input rows (a constant, so that the accumulators stay in
 * registers) by the TRANS_WR weight rows w[], over inner columns [i0, i1).
 * The partial sums live in ps (MB x TRANS_WR vectors) between chunks. With
 * pf, the tile also prefetches the weight rows pf elements further on (the
 * next rows), so that memory streams while the other tiles compute from L1
 * (single-threaded, the 13-row lens unembedding went from 16.5 to 12.8 ms
 * with it). */
static inline __attribute__((always_inline)) void
trans_tile(vf *ps, const void *const w[TRANS_WR], const float *x, size_t ldx,
    int i0, int i1, const int MB, bool first, size_t pf, const bool PF,
    const fl_dtype dt)
{
	vf a[TRANS_TILE_MAX][TRANS_WR];

#pragma GCC unroll 8
	for (int k = 0; k < MB; k++)
#pragma GCC unroll 4
		for (int q = 0; q < TRANS_WR; q++)
			a[k][q] = first ? (vf){ 0 } : ps[k * TRANS_WR + q];
	for (int i = i0; i < i1; i += VW) {
		vf wv[TRANS_WR];

#pragma GCC unroll 4
		for (int q = 0; q < TRANS_WR; q++) {
			wv[q] = wload(w[q], (size_t)i, dt);
			KEEP(wv[q]);
		}
		if (PF)
#pragma GCC unroll 4
			for (int q = 0; q < TRANS_WR; q++)
				__builtin_prefetch(wskip(w[q], pf + (size_t)i, dt));
#pragma GCC unroll 8
		for (int k = 0; k < MB; k++) {
			vf xv = vload(x + (size_t)k * ldx + i);

			KEEP(xv);
#pragma GCC unroll 4
			for (int q = 0; q < TRANS_WR; q++)
				a[k][q] += xv * wv[q];
		}
	}
#pragma GCC unroll 8
	for (int k = 0; k < MB; k++)
#pragma GCC unroll 4
		for (int q = 0; q < TRANS_WR; q++)
			ps[k * TRANS_WR + q] = a[k][q];
}

/* The TRANS_WR sums of TRANS_WR vectors into out[]: with four of sixteen
 * lanes, three halving steps of shuffles and adds instead of four
 * vsum()s. */
static inline void
vsum_rows(const vf a[TRANS_WR], float out[TRANS_WR])
{
#if VW == 16 && TRANS_WR == 4
	vf b0 = __builtin_shuffle(a[0], a[1], (vi){ 0, 1, 2, 3, 4, 5, 6, 7,
	    16, 17, 18, 19, 20, 21, 22, 23 }) + __builtin_shuffle(a[0], a[1],
	    (vi){ 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31 });
	vf b1 = __builtin_shuffle(a[2], a[3], (vi){ 0, 1, 2, 3, 4, 5, 6, 7,
	    16, 17, 18, 19, 20, 21, 22, 23 }) + __builtin_shuffle(a[2], a[3],
	    (vi){ 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31 });
	vf c = __builtin_shuffle(b0, b1, (vi){ 0, 1, 2, 3, 8, 9, 10, 11,
	    16, 17, 18, 19, 24, 25, 26, 27 }) + __builtin_shuffle(b0, b1,
	    (vi){ 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31 });

	c += __builtin_shuffle(c, (vi){ 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9,
	    14, 15, 12, 13 });
	c += __builtin_shuffle(c, (vi){ 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10,
	    13, 12, 15, 14 });
	for (int q = 0; q < 4; q++)
		out[q] = c[4 * q];
#else
	for (int q = 0; q < TRANS_WR; q++)
		out[q] = vsum(a[q]);
#endif
}

/* TRANS_WR weight rows at a time: every tile of input rows runs over the
 * same chunk of them, which stays in L1 after the first tile brings it
 * from memory; a chunk is short enough that it and the input rows' chunks
 * fit in L1 together. Rows are split into tiles of nearly equal size. */
/* Rows m0 .. m0 + M - 1 against weight rows [o0, o1). */
static inline __attribute__((always_inline)) void
trans_rows_dt(const stream_job *j, int m0, int M, int o0, int o1,
    const fl_dtype dt)
{
	int in = j->in, iv = in - in % VW;
	int chunk = TRANS_L1_BYTES / ((M + TRANS_WR) * (int)sizeof(float)) / VW * VW;
	int ntile = (M + TRANS_MT - 1) / TRANS_MT;
	size_t ldx = (size_t)j->ldx;
	const float *xb = j->x + (size_t)m0 * ldx;
	vf ps[TRANS_ROWS * TRANS_WR];

	if (chunk < 4 * VW)
		chunk = 4 * VW;
	for (int o = o0; o < o1; o += TRANS_WR) {
		int ob = o1 - o < TRANS_WR ? o1 - o : TRANS_WR;
		const void *w[TRANS_WR];

		for (int q = 0; q < TRANS_WR; q++)
			w[q] = wskip(j->w, (size_t)(o + (q < ob ? q : 0)) * j->ld, dt);
		for (int i0 = 0; i0 < iv || i0 == 0; i0 += chunk) {
			int i1 = i0 + chunk < iv ? i0 + chunk : iv;
			bool first = i0 == 0;

			for (int t = 0, r = 0; t < ntile; t++) {
				int mb = (M - r) / (ntile - t);
				const float *x = xb + (size_t)r * ldx;
				vf *p = ps + r * TRANS_WR;
				size_t pf = t == 0 && o + TRANS_WR < o1 ?
				    (size_t)TRANS_WR * j->ld : 0;

				/* the prefetching tile (the first) and the others
				 * made apart, so that no tile tests pf in its loop */
				switch (mb * 2 + (pf != 0)) {
				case 2: trans_tile(p, w, x, ldx, i0, i1, 1, first, pf, false, dt); break;
				case 3: trans_tile(p, w, x, ldx, i0, i1, 1, first, pf, true, dt); break;
				case 4: trans_tile(p, w, x, ldx, i0, i1, 2, first, pf, false, dt); break;
				case 5: trans_tile(p, w, x, ldx, i0, i1, 2, first, pf, true, dt); break;
				case 6: trans_tile(p, w, x, ldx, i0, i1, 3, first, pf, false, dt); break;
				case 7: trans_tile(p, w, x, ldx, i0, i1, 3, first, pf, true, dt); break;
				case 8: trans_tile(p, w, x, ldx, i0, i1, 4, first, pf, false, dt); break;
				case 9: trans_tile(p, w, x, ldx, i0, i1, 4, first, pf, true, dt); break;
				case 10: trans_tile(p, w, x, ldx, i0, i1, 5, first, pf, false, dt); break;
				case 11: trans_tile(p, w, x, ldx, i0, i1, 5, first, pf, true, dt); break;
				case TRANS_MT * 2 + 1:
					trans_tile(p, w, x, ldx, i0, i1, TRANS_MT, first, pf, true, dt);
					break;
				default:
					trans_tile(p, w, x, ldx, i0, i1, TRANS_MT, first, pf, false, dt);
					break;
				}
				r += mb;
			}
			if (i1 >= iv)
				break;
		}
		for (int k = 0; k < M; k++) {
			const float *xr = xb + (size_t)k * ldx;
			float *yp = j->y + (size_t)(m0 + k) * j->ldy + o;
			float s[TRANS_WR];

			vsum_rows(ps + k * TRANS_WR, s);
			for (int q = 0; q < ob; q++) {
				float t = s[q];

				for (int i = iv; i < in; i++)
					t += xr[i] * wone(w[q], (size_t)i, dt);
				if (j->b != NULL)
					t += j->b[o + q];
				yp[q] = j->acc ? yp[q] + t : t;
			}
		}
	}
}

static void
trans_rows(const stream_job *j, int m0, int M, int o0, int o1)
{
	switch (j->dt) {
	case FL_DTYPE_F16: trans_rows_dt(j, m0, M, o0, o1, FL_DTYPE_F16); break;
	case FL_DTYPE_BF16: trans_rows_dt(j, m0, M, o0, o1, FL_DTYPE_BF16); break;
	default: trans_rows_dt(j, m0, M, o0, o1, FL_DTYPE_F32); break;
	}
}

/* Every input row against weight rows [o0, o1): more than TRANS_ROWS input
 * rows are taken TRANS_ROWS at a time, the weight rows then coming again
 * from the caches or memory for each block. */
static void
trans_all_rows(const stream_job *j, int o0, int o1)
{
	for (int m0 = 0; m0 < j->M; m0 += TRANS_ROWS)
		trans_rows(j, m0, j->M - m0 < TRANS_ROWS ? j->M - m0 : TRANS_ROWS,
		    o0, o1);
}

/* Each part takes a share of the weight rows. */
static void
stream_trans_part(void *ctx, int part, int nparts)
{
	const stream_job *j = ctx;
	int per = (j->out + nparts - 1) / nparts;
	int o0 = part * per, o1 = o0 + per > j->out ? j->out : o0 + per;

	trans_all_rows(j, o0, o1);
}

/* Weights stored (in, out) with row stride ld: a strip of PLAIN_NV vectors
 * of output columns, walked PLAIN_KC weight rows at a time; every tile of
 * up to PLAIN_MT input rows (a constant, so that the accumulators stay in
 * registers) runs over the same block, which stays in L1 after the first
 * tile brings it from memory. Partial sums wait in acc[] between blocks.
 * With pf (elements, not 0), the tile also prefetches the weights pf on
 * from each it reads. */
#if VREGS >= 32
#define PLAIN_NV 3		/* 24 accumulators, 3 weight vectors */
#define PLAIN_MT 8
#else
#define PLAIN_NV 2		/* 12 accumulators, 2 weight vectors */
#define PLAIN_MT 6
#endif
#define PLAIN_TILE_MAX 8	/* the largest tile plain_tiles' switch names */
#define PLAIN_KC 128
_Static_assert(PLAIN_MT <= PLAIN_TILE_MAX, "plain_tiles lists tiles of 1 to 7 rows");
#define PLAIN_SW (PLAIN_NV * VW)

static inline __attribute__((always_inline)) void
plain_tile(vf *acc, const void *w, size_t ld, const float *x, size_t ldx,
    int kn, const int MB, const int NV, bool first, size_t pf, const fl_dtype dt)
{
	vf a[PLAIN_TILE_MAX][PLAIN_NV];

#pragma GCC unroll 8
	for (int k = 0; k < MB; k++)
#pragma GCC unroll 8
		for (int v = 0; v < NV; v++)
			a[k][v] = first ? (vf){ 0 } : acc[k * NV + v];
	for (int i = 0; i < kn; i++) {
		vf wv[PLAIN_NV];

#pragma GCC unroll 8
		for (int v = 0; v < NV; v++) {
			wv[v] = wload(w, (size_t)i * ld + (size_t)v * VW, dt);
			KEEP(wv[v]);
		}
		if (pf != 0)
#pragma GCC unroll 8
			for (int v = 0; v < NV; v++)
				__builtin_prefetch(wskip(w, pf + (size_t)i * ld +
				    (size_t)v * VW, dt));
#pragma GCC unroll 8
		for (int k = 0; k < MB; k++) {
			float xs = x[(size_t)k * ldx + i];

#pragma GCC unroll 8
			for (int v = 0; v < NV; v++)
				a[k][v] = vfmadd(a[k][v], xs, wv[v]);
		}
	}
#pragma GCC unroll 8
	for (int k = 0; k < MB; k++)
#pragma GCC unroll 8
		for (int v = 0; v < NV; v++)
			acc[k * NV + v] = a[k][v];
}

/* A strip narrower than PLAIN_SW and not a whole number of vectors (the
 * last one, when out is not a multiple of 16): plain loops. */
static void
plain_edge(const stream_job *j, int c, int cw)
{
	for (int m = 0; m < j->M; m++) {
		const float *xr = j->x + (size_t)m * j->ldx;
		float *yp = j->y + (size_t)m * j->ldy + c;
		float out[PLAIN_SW] = { 0 };

		for (int i = 0; i < j->in; i++) {
			size_t at = (size_t)i * j->ld + c;

			for (int q = 0; q < cw; q++)
				out[q] += xr[i] * wone(j->w, at + (size_t)q, j->dt);
		}
		for (int q = 0; q < cw; q++) {
			float v = out[q] + (j->b != NULL ? j->b[c + q] : 0);

			yp[q] = j->acc ? yp[q] + v : v;
		}
	}
}

/* One tile of mb rows (1 .. PLAIN_MT) by NV vectors, the row count made a
 * constant; pf as plain_tile's. */
static inline __attribute__((always_inline)) void
plain_tiles(vf *a, const void *w, size_t wld, const float *x, size_t ldx,
    int kn, int mb, const int NV, bool first, size_t pf, const fl_dtype dt)
{
	switch (mb) {
	case 1: plain_tile(a, w, wld, x, ldx, kn, 1, NV, first, pf, dt); break;
	case 2: plain_tile(a, w, wld, x, ldx, kn, 2, NV, first, pf, dt); break;
	case 3: plain_tile(a, w, wld, x, ldx, kn, 3, NV, first, pf, dt); break;
	case 4: plain_tile(a, w, wld, x, ldx, kn, 4, NV, first, pf, dt); break;
	case 5: plain_tile(a, w, wld, x, ldx, kn, 5, NV, first, pf, dt); break;
	case 6: plain_tile(a, w, wld, x, ldx, kn, 6, NV, first, pf, dt); break;
	case 7: plain_tile(a, w, wld, x, ldx, kn, 7, NV, first, pf, dt); break;
	default: plain_tile(a, w, wld, x, ldx, kn, PLAIN_MT, NV, first, pf, dt); break;
	}
}

/* Transposes VW vectors in place: v[i][l] becomes the old v[l][i]. Each
 * butterfly stage swaps blocks of s lanes between rows s apart, s halving
 * from VW / 2 to 1: lane l of the low row takes a[l] where l & s is 0 and
 * b[l - s] where not; the high row a[l + s] and b[l]. */
static inline void
transpose_vw(vf v[VW])
{
#if VW == 16
	static const vi lo[4] = {
		{ 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23 },
		{ 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27 },
		{ 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29 },
		{ 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30 },
	};
	static const vi hi[4] = {
		{ 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31 },
		{ 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31 },
		{ 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31 },
		{ 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31 },
	};
#elif VW == 8
	static const vi lo[3] = {
		{ 0, 1, 2, 3, 8, 9, 10, 11 },
		{ 0, 1, 8, 9, 4, 5, 12, 13 },
		{ 0, 8, 2, 10, 4, 12, 6, 14 },
	};
	static const vi hi[3] = {
		{ 4, 5, 6, 7, 12, 13, 14, 15 },
		{ 2, 3, 10, 11, 6, 7, 14, 15 },
		{ 1, 9, 3, 11, 5, 13, 7, 15 },
	};
#else
	static const vi lo[2] = { { 0, 1, 4, 5 }, { 0, 4, 2, 6 } };
	static const vi hi[2] = { { 2, 3, 6, 7 }, { 1, 5, 3, 7 } };
#endif

	for (int st = 0, s = VW / 2; s > 0; st++, s >>= 1)
		for (int i = 0; i < VW; i++) {
			if (i & s)
				continue;
			vf a = v[i], b = v[i + s];

			v[i] = __builtin_shuffle(a, b, lo[st]);
			v[i + s] = __builtin_shuffle(a, b, hi[st]);
		}
}

/* pack (kn, PLAIN_SW) = the transpose of PLAIN_SW rows of w (row stride
 * ld), kn columns each, widened to f32: VW x VW blocks through registers,
 * the columns beyond a multiple of VW one by one. */
static inline __attribute__((always_inline)) void
pack_block(float *pack, const void *w, size_t ld, int kn, const fl_dtype dt)
{
	int kv = kn - kn % VW;

	for (int q0 = 0; q0 < PLAIN_SW; q0 += VW) {
		for (int i0 = 0; i0 < kv; i0 += VW) {
			vf v[VW];

			for (int r = 0; r < VW; r++)
				v[r] = wload(w, (size_t)(q0 + r) * ld + (size_t)i0, dt);
			transpose_vw(v);
			for (int r = 0; r < VW; r++)
				vstore(pack + (size_t)(i0 + r) * PLAIN_SW + q0, v[r]);
		}
		for (int q = q0; q < q0 + VW; q++)
			for (int i = kv; i < kn; i++)
				pack[i * PLAIN_SW + q] = wone(w, (size_t)q * ld + (size_t)i, dt);
	}
}

/* Prefetches kn elements of each of PLAIN_SW rows, ld apart. */
static inline __attribute__((always_inline)) void
prefetch_rows(const void *w, size_t ld, int kn, const fl_dtype dt)
{
	int step = 64 / (int)fl_dtype_size(dt);	/* elements per cache line */

	for (int q = 0; q < PLAIN_SW; q++)
		for (int i = 0; i < kn; i += step)
			__builtin_prefetch(wskip(w, (size_t)q * ld + (size_t)i, dt));
}

/* pack (kn, PLAIN_SW) = kn rows of PLAIN_SW weights each, ld apart,
 * widened to f32. A block of a plain strip is kn short pieces a whole
 * weight row apart: with GPT-2's row strides (3 KB, 9 KB, 12 KB) they fall
 * in a few of L1's sets and evict one another before the next tile of
 * input rows reads them again (the tiles stalled on those loads). Copied
 * together they stay in L1 for every tile. */
static inline __attribute__((always_inline)) void
copy_block(float *pack, const void *w, size_t ld, int kn, const fl_dtype dt)
{
	for (int i = 0; i < kn; i++)
		for (int v = 0; v < PLAIN_NV; v++)
			vstore(pack + (size_t)i * PLAIN_SW + (size_t)v * VW,
			    wload(w, (size_t)i * ld + (size_t)v * VW, dt));
}

/* All rows against the full strip of PLAIN_SW output columns starting at
 * c, accumulating in acc (M x PLAIN_NV vectors). With packed, the weights
 * are stored (out, in) and each block is first transposed into pack[] (as
 * BLIS packs its panels), which pays once enough rows share it; the tiles
 * then read f32 whatever the weights' dtype. */
static inline __attribute__((always_inline)) void
strip_run_dt(const stream_job *j, int c, vf *acc, bool packed, float *pack,
    const int NV, const fl_dtype dt)
{
	int ntile = (j->M + PLAIN_MT - 1) / PLAIN_MT;
	size_t ld = (size_t)j->ld, ldx = (size_t)j->ldx;
	/* the strip's weights: in the kernels' layout (rows as wide as the
	 * strip: PLAIN_SW, or the narrower last strip's NV vectors) or as
	 * stored */
	bool laid = !packed && j->pk != NULL && (NV == PLAIN_NV ||
	    c + NV * VW == j->out);
	const void *ws = laid ? wskip(j->pk, (size_t)(c / PLAIN_SW) * j->in *
	    PLAIN_SW, dt) : wskip(j->w, (size_t)c, dt);
	size_t wld = laid ? (size_t)NV * VW : ld;

	for (int k0 = 0; k0 < j->in; k0 += PLAIN_KC) {
		int kn = j->in - k0 < PLAIN_KC ? j->in - k0 : PLAIN_KC;
		const void *w = wskip(ws, (size_t)k0 * wld, dt);
		bool first = k0 == 0;
		bool copied = !packed && !laid && pack != NULL && ntile > 1 &&
		    NV == PLAIN_NV;

		if (copied)
			copy_block(pack, w, ld, kn, dt);
		if (packed) {
			pack_block(pack, wskip(j->w, (size_t)c * ld + (size_t)k0, dt), ld,
			    kn, dt);
			/* PLAIN_SW rows are too many streams for the hardware
			 * prefetcher: ask for the next block while this one
			 * computes */
			if (k0 + PLAIN_KC < j->in)
				prefetch_rows(wskip(j->w, (size_t)c * ld + (size_t)(k0 +
				    PLAIN_KC), dt), ld, j->in - k0 - PLAIN_KC < PLAIN_KC ?
				    j->in - k0 - PLAIN_KC : PLAIN_KC, dt);
			else if (c + 2 * PLAIN_SW <= j->out)
				prefetch_rows(wskip(j->w, (size_t)(c + PLAIN_SW) * ld, dt),
				    ld, j->in < PLAIN_KC ? j->in : PLAIN_KC, dt);
		}
		for (int t = 0, r = 0; t < ntile; t++) {
			int mb = (j->M - r) / (ntile - t);
			const float *x = j->x + (size_t)r * ldx + k0;
			vf *a = acc + r * NV;

			if (packed || copied)
				plain_tiles(a, pack, PLAIN_SW, x, ldx, kn, mb, PLAIN_NV,
				    first, 0, FL_DTYPE_F32);
			else
				/* laid out, the next block (or the next strip's
				 * first) lies kn rows on: the first tile asks for it
				 * as it reads this one, so that memory streams while
				 * the tiles compute (the hardware's prefetcher alone
				 * left the two apart: at 16 rows, GPT-2 small's pass
				 * took the sum of its memory and arithmetic times) */
				plain_tiles(a, w, wld, x, ldx, kn, mb, NV, first,
				    laid && t == 0 ? (size_t)kn * wld : 0, dt);
			r += mb;
		}
	}
	for (int m = 0; m < j->M; m++) {
		float *yp = j->y + (size_t)m * j->ldy + c;

		for (int v = 0; v < NV; v++) {
			vf r = acc[m * NV + v];

			if (j->b != NULL)
				r += vload(j->b + c + v * VW);
			if (j->acc)
				r += vload(yp + v * VW);
			vstore(yp + v * VW, r);
		}
	}
}

static void
strip_run(const stream_job *j, int c, vf *acc, bool packed, float *pack)
{
	switch (j->dt) {
	case FL_DTYPE_F16:
		strip_run_dt(j, c, acc, packed, pack, PLAIN_NV, FL_DTYPE_F16);
		break;
	case FL_DTYPE_BF16:
		strip_run_dt(j, c, acc, packed, pack, PLAIN_NV, FL_DTYPE_BF16);
		break;
	default:
		strip_run_dt(j, c, acc, packed, pack, PLAIN_NV, FL_DTYPE_F32);
		break;
	}
}

/* The last strip of (in, out) weights when it is one or two vectors wide
 * (out = 1024 leaves 16 columns after 21 strips, 1280 and 5120 leave 32):
 * the strip kernel, narrower. In plain loops it took a quarter of GPT-2
 * medium's (4096, 1024) product. */
static void
strip_run_narrow(const stream_job *j, int c, int nv, vf *acc)
{
	switch (j->dt * 2 + (nv == 2)) {
	case FL_DTYPE_F16 * 2:
		strip_run_dt(j, c, acc, false, NULL, 1, FL_DTYPE_F16);
		break;
	case FL_DTYPE_F16 * 2 + 1:
		strip_run_dt(j, c, acc, false, NULL, 2, FL_DTYPE_F16);
		break;
	case FL_DTYPE_BF16 * 2:
		strip_run_dt(j, c, acc, false, NULL, 1, FL_DTYPE_BF16);
		break;
	case FL_DTYPE_BF16 * 2 + 1:
		strip_run_dt(j, c, acc, false, NULL, 2, FL_DTYPE_BF16);
		break;
	case FL_DTYPE_F32 * 2 + 1:
		strip_run_dt(j, c, acc, false, NULL, 2, FL_DTYPE_F32);
		break;
	default:
		strip_run_dt(j, c, acc, false, NULL, 1, FL_DTYPE_F32);
		break;
	}
}

#define STRIP_STACK_ROWS 32	/* accumulators of up to this many rows on
				   the stack, more on the heap */

/* Each part takes a share of the strips (PLAIN_SW columns of (in, out)
 * weights, or PLAIN_SW rows of (out, in) ones with packed); the narrower
 * last strip goes through plain loops or trans_rows. */
static void
strips_part(const stream_job *j, int part, int nparts, bool packed)
{
	int strips = (j->out + PLAIN_SW - 1) / PLAIN_SW;
	int per = (strips + nparts - 1) / nparts;
	int c0 = part * per * PLAIN_SW, c1 = c0 + per * PLAIN_SW;
	vf small[STRIP_STACK_ROWS * PLAIN_NV];
	vf *acc = small;
	float *pack = NULL;

	if (c1 > j->out)
		c1 = j->out;
	if (c0 >= c1)
		return;
	if (j->M > STRIP_STACK_ROWS)
		acc = xaligned_alloc(64, (size_t)j->M * PLAIN_NV * sizeof *acc);
	/* the transposed blocks of packed, or copy_block's for weights as
	 * stored with more than one tile of rows; laid-out weights need none */
	if (packed || (j->pk == NULL && j->M > PLAIN_MT))
		pack = xaligned_alloc(64, PLAIN_KC * PLAIN_SW * sizeof *pack);
	for (int c = c0; c < c1; c += PLAIN_SW) {
		if (c1 - c >= PLAIN_SW)
			strip_run(j, c, acc, packed, pack);
		else if (packed)
			trans_all_rows(j, c, c1);
		else if ((c1 - c) % VW == 0)
			strip_run_narrow(j, c, (c1 - c) / VW, acc);
		else
			plain_edge(j, c, c1 - c);
	}
	if (acc != small)
		free(acc);
	free(pack);
}

static void
stream_plain_part(void *ctx, int part, int nparts)
{
	strips_part(ctx, part, nparts, false);
}

static void
packed_trans_part(void *ctx, int part, int nparts)
{
	strips_part(ctx, part, nparts, true);
}

/* The kernel for a product: the Conv1D (in, out) orientation always
 * streams strips; (out, in) weights stream dot products up to TRANS_ROWS
 * rows and are packed strip by strip beyond. */
static kern_task
linear_task(bool trans, int T)
{
	if (!trans)
		return stream_plain_part;
	return T <= TRANS_ROWS ? stream_trans_part : packed_trans_part;
}

/* The pieces a product can be cut into: strips, or groups of 64 weight
 * rows for stream_trans_part. */
static int
linear_units(const stream_job *j, kern_task fn)
{
	if (fn == stream_trans_part)
		return (j->out + 63) / 64;
	return (j->out + PLAIN_SW - 1) / PLAIN_SW;
}

/* ---- many rows: BLIS, when asked -------------------------------------
 * From FACTLENS_BLAS_ROWS rows on (kern_blas_rows_set), products of f32
 * weights and the unembedding call BLIS's packed, cache-blocked sgemm
 * instead, single-threaded inside each of our parts: a part is a block of
 * BLAS_NB output columns, so that the pool's threads share the product as
 * they share the streamed ones. Off by default: measured alternating on
 * GPT-2 small's shape (bench/kern_bench, factlens bench at 64-1024 rows),
 * the streaming kernels were as fast or faster at every row count, on AVX2
 * (Zen 3, BLIS's zen3 kernels) and on AVX-512 (Zen 5, skx). F16 and BF16
 * weights always stream (sgemm reads f32 only). */
#define BLAS_NB 128		/* output columns per unit of work */
#define BLAS_NEVER (1 << 30)

static int blas_min_rows = -1;	/* -1: not yet read from the environment */

void
kern_blas_rows_set(int rows)
{
	blas_min_rows = rows <= 0 ? BLAS_NEVER : rows;
}

static void
blas_part(void *ctx, int part, int nparts)
{
	const stream_job *j = ctx;
	int units = (j->out + BLAS_NB - 1) / BLAS_NB, u0, u1;
	int c0, c1;
	const float *w;

	kern_part_range(units, part, nparts, &u0, &u1);
	c0 = u0 * BLAS_NB;
	c1 = u1 * BLAS_NB < j->out ? u1 * BLAS_NB : j->out;
	if (c0 >= c1)
		return;
	if (j->b != NULL && !j->acc)
		for (int m = 0; m < j->M; m++)
			memcpy(j->y + (size_t)m * j->ldy + c0, j->b + c0,
			    (size_t)(c1 - c0) * sizeof *j->y);
	w = (const float *)j->w + (j->trans ? (size_t)c0 * j->ld : (size_t)c0);
	cblas_sgemm(CblasRowMajor, CblasNoTrans,
	    j->trans ? CblasTrans : CblasNoTrans, j->M, c1 - c0, j->in, 1.0f,
	    j->x, j->ldx, w, j->ld, j->b != NULL || j->acc ? 1.0f : 0.0f,
	    j->y + c0, j->ldy);
	if (j->b != NULL && j->acc)
		for (int m = 0; m < j->M; m++) {
			float *y = j->y + (size_t)m * j->ldy;

			for (int o = c0; o < c1; o++)
				y[o] += j->b[o];
		}
}

static bool
blas_takes(const stream_job *j)
{
	if (blas_min_rows < 0) {
		const char *e = getenv("FACTLENS_BLAS_ROWS");
		char *end;
		long v = e != NULL ? strtol(e, &end, 10) : 0;

		kern_blas_rows_set(e != NULL && *e != '\0' && *end == '\0' &&
		    v > 0 && v < BLAS_NEVER ? (int)v : 0);
	}
	return j->dt == FL_DTYPE_F32 && j->M >= blas_min_rows;
}

static void
blas_run(stream_job *j)
{
	kern_for(blas_part, j, (j->out + BLAS_NB - 1) / BLAS_NB);
}

/* Input rows of in floats that fit in half of a 1 MB L2, in whole tiles. */
#define PLAIN_CHUNK_BYTES (512 * 1024)

static int
plain_chunk_rows(int in)
{
	int rows = PLAIN_CHUNK_BYTES / (in * (int)sizeof(float)) / PLAIN_MT * PLAIN_MT;

	return rows < 4 * PLAIN_MT ? 4 * PLAIN_MT : rows;
}

/* Below this many multiply-adds a product runs on the calling thread: it
 * takes a few microseconds, less than waking a worker and waiting for it
 * (far less on a busy machine). One head's output, (d_head) x (d_head,
 * d_model), is such a product, and the explorer's heads grid makes one per
 * head. */
#define PARALLEL_MIN_MACS (1L << 17)

/* A product on the streaming kernels: on the calling thread when small,
 * else shared among the pool's threads. */
static void
stream_run(stream_job *j, kern_task fn)
{
	int T = j->M;

	if ((long)T * j->in * j->out < PARALLEL_MIN_MACS)
		fn(j, 0, 1);
	else if (fn == stream_plain_part && T > plain_chunk_rows(j->in)) {
		/* many rows: a chunk at a time, whose input rows stay in L2
		 * while every strip of weights passes over them (each strip
		 * reads all of them; from L3 the tiles waited for them: GPT-2's
		 * (3072, 768) projection at 256 rows ran at half the rate of
		 * the (768, 768) ones) */
		int step = plain_chunk_rows(j->in);

		for (int m0 = 0; m0 < T; m0 += step) {
			stream_job c = *j;

			c.M = T - m0 < step ? T - m0 : step;
			c.x = j->x + (size_t)m0 * j->ldx;
			c.y = j->y + (size_t)m0 * j->ldy;
			kern_for(fn, &c, linear_units(&c, fn));
		}
	} else
		kern_for(fn, j, linear_units(j, fn));
}

void
kern_linear(float *y, int ldy, const float *x, int ldx, const fl_linear *lin,
    int T, bool accumulate)
{
	stream_job j = { y, ldy, x, ldx, lin->w, lin->ld, lin->b, T, lin->in,
	    lin->out, accumulate, lin->dtype, lin->trans, lin->pk };

	if (blas_takes(&j))
		blas_run(&j);
	else
		stream_run(&j, linear_task(lin->trans, T));
}

/* The strips of the kernels' layout: the full ones, and the narrower
 * last one when it is a whole number of vectors (strip_run_narrow reads
 * it); columns past those (plain_edge's) stay in lin->w. */
static int
pack_tail(const fl_linear *lin)
{
	int tail = lin->out % PLAIN_SW;

	return tail % VW == 0 ? tail : 0;
}

size_t
kern_linear_pack_bytes(const fl_linear *lin)
{
	size_t cols = lin->trans ? 0 : (size_t)(lin->out / PLAIN_SW * PLAIN_SW +
	    pack_tail(lin));

	return cols * (size_t)lin->in * fl_dtype_size(lin->dtype);
}

typedef struct {
	const fl_linear	*lin;
	unsigned char	*dst;
} pack_job;

#define PACK_ROWS 32	/* weight rows read together: they stay in L2 while
			   every strip takes its piece of them */

/* Strip s (the last may be the narrower tail) of rows [i0, i1): strip s
 * starts at s full strips in, its rows as wide as the strip. */
static inline __attribute__((always_inline)) void
pack_rows(const pack_job *pj, int s0, int s1, int i0, int i1, const size_t es)
{
	const fl_linear *lin = pj->lin;
	int full = lin->out / PLAIN_SW;
	size_t strip = (size_t)lin->in * PLAIN_SW * es;

	for (int s = s0; s < s1; s++) {
		size_t width = s < full ? PLAIN_SW : (size_t)pack_tail(lin);

		for (int i = i0; i < i1; i++)
			memcpy(pj->dst + (size_t)s * strip + (size_t)i * width * es,
			    (const unsigned char *)lin->w + ((size_t)i * lin->ld +
			    (size_t)s * PLAIN_SW) * es, width * es);
	}
}

static int
pack_strips(const fl_linear *lin)
{
	return lin->out / PLAIN_SW + (pack_tail(lin) > 0);
}

/* Each part copies a share of the strips, PACK_ROWS weight rows at a time,
 * so that the reads stream and each strip's writes are contiguous. */
static void
pack_part(void *ctx, int part, int nparts)
{
	const pack_job *pj = ctx;
	int s0, s1, in = pj->lin->in;

	kern_part_range(pack_strips(pj->lin), part, nparts, &s0, &s1);
	for (int i0 = 0; i0 < in; i0 += PACK_ROWS) {
		int i1 = in - i0 < PACK_ROWS ? in : i0 + PACK_ROWS;

		if (fl_dtype_size(pj->lin->dtype) == 4)
			pack_rows(pj, s0, s1, i0, i1, 4);
		else
			pack_rows(pj, s0, s1, i0, i1, 2);
	}
}

void
kern_linear_pack(fl_linear *lin, void *dst)
{
	pack_job pj = { lin, dst };

	if (kern_linear_pack_bytes(lin) == 0)
		return;
	kern_for(pack_part, &pj, pack_strips(lin));
	lin->pk = dst;
}

void
kern_linear_ref(float *y, int ldy, const float *x, int ldx, const fl_linear *lin,
    int T, bool accumulate)
{
	for (int t = 0; t < T; t++)
		for (int o = 0; o < lin->out; o++) {
			double s = 0;

			for (int i = 0; i < lin->in; i++) {
				s += (double)x[(size_t)t * ldx + i] *
				    linear_weight(lin, i, o);
			}
			if (lin->b != NULL)
				s += lin->b[o];
			if (accumulate)
				y[(size_t)t * ldy + o] += (float)s;
			else
				y[(size_t)t * ldy + o] = (float)s;
		}
}

/* ---- the unembedding ---------------------------------------------------
 * U is stored a row per token, (out, in). Read so, few rows take dot
 * products (trans_rows: 64-72 GFLOP/s on 2 Zen 3 threads at the 13 rows of
 * a lens) and many transpose each block first. Laid out once as the
 * columns of an (in, out) linear (kern_unembed_pack), every row count runs
 * the strip kernels, at the layers' rate; the columns past the last whole
 * vector (GPT-2's 50257th token) are still dot products of U's rows. */

/* The columns of U's layout: its full strips and the whole vectors after. */
static int
unembed_laid_cols(const fl_table *U)
{
	return U->rows / PLAIN_SW * PLAIN_SW + U->rows % PLAIN_SW / VW * VW;
}

size_t
kern_unembed_pack_bytes(const fl_table *U)
{
	return (size_t)unembed_laid_cols(U) * (size_t)U->cols *
	    fl_dtype_size(U->dtype);
}

typedef struct {
	const fl_table	*U;
	unsigned char	*dst;
} unembed_pack_job;

/* Strips [s0, s1): strip s holds, input by input, the weights of tokens
 * s PLAIN_SW .. + its width (PLAIN_SW, or the narrower last one's). Each
 * strip's rows (PLAIN_SW of them, 48 KB for GPT-2) stay in L2 while they
 * are read along and written across. */
static inline __attribute__((always_inline)) void
unembed_pack_strips(const unembed_pack_job *pj, int s0, int s1, const size_t es)
{
	const fl_table *U = pj->U;
	size_t D = (size_t)U->cols, vl = (size_t)unembed_laid_cols(U);

	for (int s = s0; s < s1; s++) {
		size_t c0 = (size_t)s * PLAIN_SW;
		size_t width = vl - c0 < PLAIN_SW ? vl - c0 : PLAIN_SW;
		unsigned char *d = pj->dst + c0 * D * es;

		for (size_t c = 0; c < width; c++) {
			const unsigned char *row = (const unsigned char *)U->w +
			    (c0 + c) * D * es;

			for (size_t i = 0; i < D; i++)
				memcpy(d + (i * width + c) * es, row + i * es, es);
		}
	}
}

static void
unembed_pack_part(void *ctx, int part, int nparts)
{
	const unembed_pack_job *pj = ctx;
	int strips = (unembed_laid_cols(pj->U) + PLAIN_SW - 1) / PLAIN_SW, s0, s1;

	kern_part_range(strips, part, nparts, &s0, &s1);
	if (fl_dtype_size(pj->U->dtype) == 4)
		unembed_pack_strips(pj, s0, s1, 4);
	else
		unembed_pack_strips(pj, s0, s1, 2);
}

void
kern_unembed_pack(fl_table *U, void *dst)
{
	unembed_pack_job pj = { U, dst };

	if (kern_unembed_pack_bytes(U) == 0)
		return;
	kern_for(unembed_pack_part, &pj, (unembed_laid_cols(U) + PLAIN_SW - 1) /
	    PLAIN_SW);
	U->pk = dst;
}

void
kern_unembed(float *logits, const float *x, const fl_table *U, int T)
{
	int D = U->cols, V = U->rows, vl;
	stream_job j = { logits, V, x, D, U->w, D, NULL, T, D, V, false, U->dtype,
	    true, NULL };

	if (blas_takes(&j)) {
		blas_run(&j);
		return;
	}
	if (U->pk == NULL) {
		stream_run(&j, linear_task(true, T));
		return;
	}
	vl = unembed_laid_cols(U);
	j.w = NULL;
	j.out = vl;
	j.trans = false;
	j.pk = U->pk;
	stream_run(&j, stream_plain_part);
	if (vl < V) {
		stream_job t = { logits + vl, V, x, D, wskip(U->w, (size_t)vl * D,
		    U->dtype), D, NULL, T, D, V - vl, false, U->dtype, true, NULL };

		trans_all_rows(&t, 0, V - vl);
	}
}

void
kern_unembed_ref(float *logits, const float *x, const fl_table *U, int T)
{
	int D = U->cols, V = U->rows;
	float *u = xmalloc((size_t)D * sizeof *u);

	for (int v = 0; v < V; v++) {
		table_row(U, v, u);
		for (int t = 0; t < T; t++) {
			double s = 0;

			for (int i = 0; i < D; i++)
				s += (double)x[(size_t)t * D + i] * u[i];
			logits[(size_t)t * V + v] = (float)s;
		}
	}
	free(u);
}
