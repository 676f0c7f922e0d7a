/* kernels.c - see kernels.h. */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* From BLIS; Debian ships its header only in the blis-openmp include dir. */
extern void bli_thread_set_num_threads(int64_t n);

static int kern_nthreads = 1;

void
kern_set_threads(int n)
{
	if (n <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		n = c > 0 ? (int)c : 1;
	}
	kern_nthreads = n;
	bli_thread_set_num_threads(n);
}

int
kern_threads(void)
{
	return kern_nthreads;
}


/* ---- a small thread pool ---------------------------------------------
 * BLIS packs the weight matrix before multiplying, which halves the
 * bandwidth on the few-row products of a single prompt, and its OpenMP
 * threads spin badly when the machine is busy. Few-row products therefore
 * go through the streaming kernels below, split over our own workers. */

typedef void (*kern_task)(void *ctx, int part, int nparts);

static struct {
	pthread_mutex_t	 lock;
	pthread_cond_t	 go, done;
	pthread_t	*threads;
	int		 n;		/* workers, besides the caller */
	unsigned	 gen;
	int		 pending;
	kern_task	 fn;
	void		*ctx;
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
	PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, NULL, NULL };

static void *
pool_worker(void *arg)
{
	int part = (int)(intptr_t)arg;
	unsigned seen = 0;

	pthread_mutex_lock(&pool.lock);
	for (;;) {
		while (pool.gen == seen)
			pthread_cond_wait(&pool.go, &pool.lock);
		seen = pool.gen;
		pthread_mutex_unlock(&pool.lock);
		pool.fn(pool.ctx, part, pool.n + 1);
		pthread_mutex_lock(&pool.lock);
		if (--pool.pending == 0)
			pthread_cond_signal(&pool.done);
	}
	return NULL;
}

static void
pool_grow(int workers)
{
	pthread_mutex_lock(&pool.lock);
	if (workers > pool.n) {
		pool.threads = xreallocarray(pool.threads, (size_t)workers,
		    sizeof *pool.threads);
		for (int i = pool.n; i < workers; i++) {
			pthread_attr_t attr;

			pthread_attr_init(&attr);
			pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			if (pthread_create(&pool.threads[i], &attr, pool_worker,
			    (void *)(intptr_t)(i + 1)) != 0)
				fl_fatal("cannot start a worker thread");
			pthread_attr_destroy(&attr);
		}
		pool.n = workers;
	}
	pthread_mutex_unlock(&pool.lock);
}

/* Runs fn(ctx, part, nparts) for every part, the caller taking part 0. The
 * pool only grows: with fewer threads wanted, extra parts are empty work. */
static void
kern_parallel(kern_task fn, void *ctx)
{
	if (kern_nthreads <= 1) {
		fn(ctx, 0, 1);
		return;
	}
	if (pool.n < kern_nthreads - 1)
		pool_grow(kern_nthreads - 1);
	pthread_mutex_lock(&pool.lock);
	pool.fn = fn;
	pool.ctx = ctx;
	pool.pending = pool.n;
	pool.gen++;
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.lock);
	fn(ctx, 0, pool.n + 1);
	pthread_mutex_lock(&pool.lock);
	while (pool.pending > 0)
		pthread_cond_wait(&pool.done, &pool.lock);
	pthread_mutex_unlock(&pool.lock);
}

/* ---- streaming kernels for few rows ----------------------------------
 * Each reads the weights once, in the order they lie in memory, and keeps
 * the few input rows in L1. GCC's vector extension lets -march pick the
 * instructions (AVX-512 here, AVX2 or SSE elsewhere). */

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

#define STREAM_ROWS 32	/* at most this many rows take the streaming path */

typedef struct {
	float		*y;
	int		 ldy;
	const float	*x;
	int		 ldx;
	const float	*w;
	int		 ld;
	const float	*b;
	int		 M, in, out;
	bool		 acc;
} stream_job;

/* Weights stored (out, in): y[m][o] = x[m] . w[o]. A tile is four weight
 * rows by four input rows: 16 accumulators in registers and 8 loads per 16
 * fused multiply-adds. The empty asm keeps each loaded vector in a
 * register: otherwise GCC folds the load into every multiply-add that uses
 * it, and the loop becomes bound by loads instead of arithmetic. */
#if defined(__AVX512F__)
#define KEEP(v) __asm__("" : "+v"(v))
#else
#define KEEP(v) ((void)0)	/* a 64-byte vector spans registers there */
#endif

static inline __attribute__((always_inline)) void
trans_tile(vf a[4][4], const float *const w[4], const float *const x[4], int i0,
    int i1)
{
	for (int i = i0; i < i1; i += VW) {
		vf w0 = vload(w[0] + i), w1 = vload(w[1] + i);
		vf w2 = vload(w[2] + i), w3 = vload(w[3] + i);

		KEEP(w0);
		KEEP(w1);
		KEEP(w2);
		KEEP(w3);
#pragma GCC unroll 4
		for (int k = 0; k < 4; k++) {
			vf xv = vload(x[k] + i);

			KEEP(xv);
			a[k][0] += xv * w0;
			a[k][1] += xv * w1;
			a[k][2] += xv * w2;
			a[k][3] += xv * w3;
		}
	}
}

/* The input rows are walked in chunks of the inner dimension small enough
 * that all M rows' chunks stay in L1 while four weight rows pass over them;
 * partial sums wait in part[] between chunks. */
#define TRANS_L1_BYTES 16384

static void
stream_trans_part(void *ctx, int part, int nparts)
{
	const stream_job *j = ctx;
	int per = (j->out + nparts - 1) / nparts;
	int o0 = part * per, o1 = o0 + per > j->out ? j->out : o0 + per;
	int in = j->in, iv = in - in % VW;
	int chunk = TRANS_L1_BYTES / (j->M * (int)sizeof(float)) / VW * VW;
	vf part_sum[STREAM_ROWS][4];

	if (chunk < 4 * VW)
		chunk = 4 * VW;
	for (int o = o0; o < o1; o += 4) {
		int ob = o1 - o < 4 ? o1 - o : 4;
		const float *w[4];

		for (int q = 0; q < 4; q++)
			w[q] = j->w + (size_t)(o + (q < ob ? q : 0)) * j->ld;
		for (int i0 = 0; i0 < iv || i0 == 0; i0 += chunk) {
			int i1 = i0 + chunk < iv ? i0 + chunk : iv;

			for (int m0 = 0; m0 < j->M; m0 += 4) {
				int mb = j->M - m0 < 4 ? j->M - m0 : 4;
				const float *x[4];
				vf a[4][4];

				for (int k = 0; k < 4; k++) {
					x[k] = j->x + (size_t)(m0 + (k < mb ? k : 0)) * j->ldx;
					for (int q = 0; q < 4; q++)
						a[k][q] = i0 == 0 ? (vf){ 0 } :
						    part_sum[m0 + (k < mb ? k : 0)][q];
				}
				trans_tile(a, w, x, i0, i1);
				for (int k = 0; k < mb; k++)
					for (int q = 0; q < 4; q++)
						part_sum[m0 + k][q] = a[k][q];
			}
			if (i1 >= iv)
				break;
		}
		for (int k = 0; k < j->M; k++)
			for (int q = 0; q < ob; q++) {
				const float *xr = j->x + (size_t)k * j->ldx;
				float *yp = j->y + (size_t)k * j->ldy + o + q;
				float t = vsum(part_sum[k][q]);

				for (int i = iv; i < in; i++)
					t += xr[i] * w[q][i];
				if (j->b != NULL)
					t += j->b[o + q];
				*yp = j->acc ? *yp + t : t;
			}
	}
}

/* Weights stored (in, out) with row stride ld: a strip of PLAIN_NV
 * vectors of output columns times MB input rows (MB a constant, so that the
 * accumulators stay in registers). Rows of the strip are ld apart, usually
 * more than a page: a wide strip reads more bytes per page touched. */
#define PLAIN_NV 4
#define PLAIN_MT 4
#define PLAIN_SW (PLAIN_NV * VW)

static inline __attribute__((always_inline)) void
plain_tile(const stream_job *j, int c, int m0, const int MB,
    float out[PLAIN_MT][PLAIN_SW])
{
	vf a[PLAIN_MT][PLAIN_NV] = { { { 0 } } };
	const float *x = j->x + (size_t)m0 * j->ldx;

	for (int i = 0; i < j->in; i++) {
		const float *wr = j->w + (size_t)i * j->ld + c;
		vf w[PLAIN_NV];

#pragma GCC unroll 8
		for (int v = 0; v < PLAIN_NV; v++) {
			w[v] = vload(wr + v * VW);
			KEEP(w[v]);
		}
#pragma GCC unroll 8
		for (int k = 0; k < MB; k++) {
			float xs = x[(size_t)k * j->ldx + i];

#pragma GCC unroll 8
			for (int v = 0; v < PLAIN_NV; v++)
				a[k][v] += xs * w[v];
		}
	}
#pragma GCC unroll 8
	for (int k = 0; k < MB; k++)
#pragma GCC unroll 8
		for (int v = 0; v < PLAIN_NV; v++)
			vstore(out[k] + v * VW, a[k][v]);
}

static void
stream_plain_part(void *ctx, int part, int nparts)
{
	const stream_job *j = ctx;
	int strips = (j->out + PLAIN_SW - 1) / PLAIN_SW;
	int per = (strips + nparts - 1) / nparts;
	int c0 = part * per * PLAIN_SW, c1 = c0 + per * PLAIN_SW;

	if (c1 > j->out)
		c1 = j->out;
	for (int c = c0; c < c1; c += PLAIN_SW) {
		int cw = c1 - c < PLAIN_SW ? c1 - c : PLAIN_SW;

		for (int m0 = 0; m0 < j->M; m0 += PLAIN_MT) {
			int mb = j->M - m0 < PLAIN_MT ? j->M - m0 : PLAIN_MT;
			float out[PLAIN_MT][PLAIN_SW];

			if (cw == PLAIN_SW) {
				switch (mb) {
				case 1: plain_tile(j, c, m0, 1, out); break;
				case 2: plain_tile(j, c, m0, 2, out); break;
				case 3: plain_tile(j, c, m0, 3, out); break;
				default: plain_tile(j, c, m0, PLAIN_MT, out); break;
				}
			} else {
				memset(out, 0, sizeof out);
				for (int i = 0; i < j->in; i++) {
					const float *wr = j->w + (size_t)i * j->ld + c;

					for (int k = 0; k < mb; k++) {
						float xs = j->x[(size_t)(m0 + k) * j->ldx + i];

						for (int q = 0; q < cw; q++)
							out[k][q] += xs * wr[q];
					}
				}
			}
			for (int k = 0; k < mb; k++) {
				float *yp = j->y + (size_t)(m0 + k) * j->ldy + c;

				for (int q = 0; q < cw; q++) {
					float v = out[k][q] + (j->b != NULL ? j->b[c + q] : 0);

					yp[q] = j->acc ? yp[q] + v : v;
				}
			}
		}
	}
}

static void
add_bias(float *y, int ldy, const float *b, int T, int n);

static void
add_bias(float *y, int ldy, const float *b, int T, int n)
{
	if (b == NULL)
		return;
	for (int t = 0; t < T; t++)
		for (int o = 0; o < n; o++)
			y[(size_t)t * ldy + o] += b[o];
}

/* Below this many multiply-adds a product runs on the calling thread: it
 * takes a few microseconds, less than waking a worker and waiting for it
 * (far less on a busy machine). One head's output, (d_head) x (d_head,
 * d_model), is such a product, and the explorer's heads grid makes one per
 * head. */
#define PARALLEL_MIN_MACS (1L << 17)

void
kern_linear(float *y, int ldy, const float *x, int ldx, const fl_linear *lin,
    int T, bool accumulate)
{
	if (T <= STREAM_ROWS) {
		stream_job j = { y, ldy, x, ldx, lin->w, lin->ld, lin->b, T, lin->in,
		    lin->out, accumulate };
		kern_task fn = lin->trans ? stream_trans_part : stream_plain_part;

		if ((long)T * lin->in * lin->out < PARALLEL_MIN_MACS)
			fn(&j, 0, 1);
		else
			kern_parallel(fn, &j);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, lin->trans ? CblasTrans : CblasNoTrans,
	    T, lin->out, lin->in, 1.0f, x, ldx, lin->w, lin->ld,
	    accumulate ? 1.0f : 0.0f, y, ldy);
	add_bias(y, ldy, lin->b, T, lin->out);
}

void
kern_linear_ref(float *y, int ldy, const float *x, int ldx, const fl_linear *lin,
    int T, bool accumulate)
{
	for (int t = 0; t < T; t++)
		for (int o = 0; o < lin->out; o++) {
			double s = 0;

			for (int i = 0; i < lin->in; i++) {
				float w = lin->trans ? lin->w[(size_t)o * lin->ld + i]
				    : lin->w[(size_t)i * lin->ld + o];

				s += (double)x[(size_t)t * ldx + i] * w;
			}
			if (lin->b != NULL)
				s += lin->b[o];
			if (accumulate)
				y[(size_t)t * ldy + o] += (float)s;
			else
				y[(size_t)t * ldy + o] = (float)s;
		}
}

void
kern_unembed(float *logits, const float *x, const float *U, int T, int D, int V)
{
	if (T <= STREAM_ROWS) {
		stream_job j = { logits, V, x, D, U, D, NULL, T, D, V, false };

		kern_parallel(stream_trans_part, &j);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, V, D, 1.0f, x, D,
	    U, D, 0.0f, logits, V);
}

void
kern_unembed_ref(float *logits, const float *x, const float *U, int T, int D, int V)
{
	for (int t = 0; t < T; t++)
		for (int v = 0; v < V; v++) {
			double s = 0;

			for (int i = 0; i < D; i++)
				s += (double)x[(size_t)t * D + i] * U[(size_t)v * D + i];
			logits[(size_t)t * V + v] = (float)s;
		}
}

void
kern_ln_stats(float *mean, float *scale, const float *x, int T, int D, float eps)
{
	for (int t = 0; t < T; t++) {
		const float *xr = x + (size_t)t * D;
		double mu = 0, var = 0;

		for (int i = 0; i < D; i++)
			mu += xr[i];
		mu /= D;
		for (int i = 0; i < D; i++) {
			double d = xr[i] - mu;

			var += d * d;
		}
		var /= D;
		mean[t] = (float)mu;
		scale[t] = (float)sqrt(var + eps);
	}
}

void
kern_ln_apply(float *out, const float *x, const float *mean,
    const float *scale, const float *w, const float *b, int T, int D)
{
	for (int t = 0; t < T; t++) {
		const float *xr = x + (size_t)t * D;
		float *yr = out + (size_t)t * D;
		float mu = mean[t], r = 1.0f / scale[t];

		for (int i = 0; i < D; i++)
			yr[i] = ((xr[i] - mu) * r) * w[i] + b[i];
	}
}

/* Below this many tokens the per-head products are plain loops: BLIS's
 * call overhead and threads cost more than they save there. */
#define ATTN_BLAS_MIN 96

static float
dot(const float *a, const float *b, int n)
{
	vf acc = { 0 };
	int i = 0;
	float s;

	for (; i + VW <= n; i += VW)
		acc += vload(a + i) * vload(b + i);
	s = vsum(acc);
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

void
kern_attn_scores(float *sc, const float *q, const float *k, int ld, int T,
    int dh, float scale)
{
	if (T >= ATTN_BLAS_MIN)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh, scale,
		    q, ld, k, ld, 0.0f, sc, T);
	else
		for (int i = 0; i < T; i++)
			for (int j = 0; j <= i; j++)
				sc[(size_t)i * T + j] = scale *
				    dot(q + (size_t)i * ld, k + (size_t)j * ld, dh);
	for (int i = 0; i < T; i++)
		for (int j = i + 1; j < T; j++)
			sc[(size_t)i * T + j] = -INFINITY;
}

void
kern_attn_mix(float *z, const float *P, const float *v, int ld, int T, int dh)
{
	if (T >= ATTN_BLAS_MIN) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T, 1.0f,
		    P, T, v, ld, 0.0f, z, ld);
		return;
	}
	for (int i = 0; i < T; i++) {
		float *zi = z + (size_t)i * ld;

		memset(zi, 0, (size_t)dh * sizeof *zi);
		/* P[i][j] is 0 above the diagonal (or a hook's edit); read all. */
		for (int j = 0; j < T; j++) {
			float p = P[(size_t)i * T + j];
			const float *vj = v + (size_t)j * ld;

			if (p == 0.0f)
				continue;
			for (int d = 0; d < dh; d++)
				zi[d] += p * vj[d];
		}
	}
}

/* exp of sixteen values, relative error about 2e-7: 2^k times a degree-6
 * polynomial on |r| <= ln2 / 2. Inputs are clamped to [-87, 88]. */
static inline vf
vexp(vf y)
{
	const vf lo = { -87, -87, -87, -87, -87, -87, -87, -87, -87, -87, -87,
	    -87, -87, -87, -87, -87 };
	const float round = 12582912.0f;	/* 1.5 x 2^23: adding it rounds */
	const vf hi = lo + 175;
	vf t, kf, r, p, two_k;
	vi ki, below = y < lo, above = y > hi;

	/* The clamp as masks (a loop over the lanes compiles to scalar code
	 * through the stack, which cost more than the polynomial). */
	y = (vf)(((vi)y & ~(below | above)) | ((vi)lo & below) | ((vi)hi & above));
	t = y * 1.4426950408889634f;
	kf = (t + round) - round;
	r = y - kf * 0.693145751953125f - kf * 1.428606765330187e-06f;
	p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 +
	    r * (1.0f / 120 + r * (1.0f / 720))))));
	ki = __builtin_convertvector(kf, vi);
	ki = (ki + 127) << 23;
	memcpy(&two_k, &ki, sizeof two_k);
	return p * two_k;
}

void
kern_activation(float *x, size_t n, fl_act_fn act)
{
	size_t i;

	switch (act) {
	case FL_ACT_GELU_TANH:
		/* 0.5 v (1 + tanh u) = v / (1 + exp(-2u)): one exponential per
		 * value and no cancellation, sixteen at a time. */
		for (i = 0; i + VW <= n; i += VW) {
			vf v = vload(x + i);
			vf u = 0.7978845608028654f * (v + 0.044715f * v * v * v);

			vstore(x + i, v / (1.0f + vexp(-2.0f * u)));
		}
		for (; i < n; i++) {
			float v = x[i];

			x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f *
			    (v + 0.044715f * v * v * v)));
		}
		break;
	case FL_ACT_GELU:
		for (i = 0; i < n; i++)
			x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.7071067811865476f));
		break;
	case FL_ACT_RELU:
		for (i = 0; i < n; i++)
			x[i] = x[i] > 0 ? x[i] : 0;
		break;
	}
}

double
kern_exp_sum(const float *x, int n, float shift)
{
	double sum = 0;
	int i = 0;

	/* Each vector's sixteen terms add in float, the vectors in double. */
	for (; i + VW <= n; i += VW)
		sum += vsum(vexp(vload(x + i) - shift));
	for (; i < n; i++)
		sum += expf(x[i] - shift);
	return sum;
}

void
kern_softmax(float *x, int n)
{
	float mx = -INFINITY;
	double sum = 0;

	for (int i = 0; i < n; i++)
		if (x[i] > mx)
			mx = x[i];
	if (mx == -INFINITY) {
		memset(x, 0, (size_t)n * sizeof *x);
		return;
	}
	for (int i = 0; i < n; i++) {
		x[i] = expf(x[i] - mx);
		sum += x[i];
	}
	for (int i = 0; i < n; i++)
		x[i] = (float)(x[i] / sum);
}
