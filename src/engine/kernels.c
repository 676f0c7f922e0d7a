/* kernels.c - see kernels.h. */
#include "autoconfig.h"

#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "vec.h"

/* The statistics sum in double, each row's values in order: a chain of
 * dependent adds, as long as the row. LN_ROWS rows go through the loops
 * together, each with its own sums in the same order as alone (the same
 * bits), so that the chains overlap instead of waiting on one another. */
#define LN_ROWS 8

static inline __attribute__((always_inline)) void
ln_stats_rows(float *mean, float *scale, const float *x, int R, int D,
    float eps)
{
	double mu[LN_ROWS], var[LN_ROWS];

	for (int r = 0; r < R; r++)
		mu[r] = var[r] = 0;
	for (int i = 0; i < D; i++)
		for (int r = 0; r < R; r++)
			mu[r] += x[(size_t)r * D + i];
	for (int r = 0; r < R; r++)
		mu[r] /= D;
	for (int i = 0; i < D; i++)
		for (int r = 0; r < R; r++) {
			double d = x[(size_t)r * D + i] - mu[r];

			var[r] += d * d;
		}
	for (int r = 0; r < R; r++) {
		mean[r] = (float)mu[r];
		scale[r] = (float)sqrt(var[r] / D + eps);
	}
}

void
kern_ln_stats(float *mean, float *scale, const float *x, int T, int D, float eps)
{
	int t = 0;

	for (; t + LN_ROWS <= T; t += LN_ROWS)
		ln_stats_rows(mean + t, scale + t, x + (size_t)t * D, LN_ROWS, D, eps);
	for (; t < T; t++)
		ln_stats_rows(mean + t, scale + t, x + (size_t)t * D, 1, D, eps);
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
			yr[i] = ((xr[i] - mu) * r) * w[i] + (b != NULL ? b[i] : 0.0f);
	}
}

static inline __attribute__((always_inline)) void
rms_stats_rows(float *mean, float *scale, const float *x, int R, int D,
    float eps)
{
	double ss[LN_ROWS];

	for (int r = 0; r < R; r++)
		ss[r] = 0;
	for (int i = 0; i < D; i++)
		for (int r = 0; r < R; r++)
			ss[r] += (double)x[(size_t)r * D + i] * x[(size_t)r * D + i];
	for (int r = 0; r < R; r++) {
		mean[r] = 0.0f;
		scale[r] = (float)sqrt(ss[r] / D + eps);
	}
}

void
kern_rms_stats(float *mean, float *scale, const float *x, int T, int D, float eps)
{
	int t = 0;

	for (; t + LN_ROWS <= T; t += LN_ROWS)
		rms_stats_rows(mean + t, scale + t, x + (size_t)t * D, LN_ROWS, D, eps);
	for (; t < T; t++)
		rms_stats_rows(mean + t, scale + t, x + (size_t)t * D, 1, D, eps);
}

/* Below this many tokens the per-head products are plain loops: BLIS's
 * call overhead and threads cost more than they save there. */
#define ATTN_BLAS_MIN KERN_ATTN_BLAS_MIN

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

/* Rows per product of the causal attention with BLIS: row block [i0, i1)
 * needs keys 0..i1-1 only, so the products skip most of the upper
 * triangle (44 % of the work at 1,024 tokens) while each stays large
 * enough for BLIS's kernels. */
#define ATTN_BLOCK 128

void
kern_attn_scores_at(float *sc, const float *q, const float *k, int ld, int n,
    int T, int dh, float scale)
{
	int P = T - n;		/* query i is position P + i */

	if (n >= ATTN_BLAS_MIN)
		for (int i0 = 0; i0 < n; i0 += ATTN_BLOCK) {
			int i1 = i0 + ATTN_BLOCK < n ? i0 + ATTN_BLOCK : n;

			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, i1 - i0,
			    P + i1, dh, scale, q + (size_t)i0 * ld, ld, k, ld, 0.0f,
			    sc + (size_t)i0 * T, T);
		}
	else
		for (int i = 0; i < n; i++)
			for (int j = 0; j <= P + i; j++)
				sc[(size_t)i * T + j] = scale *
				    dot(q + (size_t)i * ld, k + (size_t)j * ld, dh);
	for (int i = 0; i < n; i++)
		for (int j = P + i + 1; j < T; j++)
			sc[(size_t)i * T + j] = -INFINITY;
}

void
kern_attn_scores(float *sc, const float *q, const float *k, int ld, int T,
    int dh, float scale)
{
	kern_attn_scores_at(sc, q, k, ld, T, T, dh, scale);
}

void
kern_attn_mix_at(float *z, const float *Pm, const float *v, int ld, int n, int T,
    int dh, bool causal)
{
	int P = T - n;

	if (n >= ATTN_BLAS_MIN) {
		if (!causal) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dh,
			    T, 1.0f, Pm, T, v, ld, 0.0f, z, ld);
			return;
		}
		for (int i0 = 0; i0 < n; i0 += ATTN_BLOCK) {
			int i1 = i0 + ATTN_BLOCK < n ? i0 + ATTN_BLOCK : n;

			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, i1 - i0,
			    dh, P + i1, 1.0f, Pm + (size_t)i0 * T, T, v, ld, 0.0f,
			    z + (size_t)i0 * ld, ld);
		}
		return;
	}
	/* Each output row in registers, four vectors of it at a time, over
	 * the keys in order: the sums of the scalar loop, fused where
	 * vfmadd fuses (the tail as -ffp-contract=fast leaves it: fmaf
	 * would call libm where there is no FMA), which GCC left
	 * unvectorised (z and v may alias), at 10 GFLOP/s. */
	for (int i = 0; i < n; i++) {
		float *zi = z + (size_t)i * ld;
		const float *pi = Pm + (size_t)i * T;
		int m = causal ? P + i + 1 : T, d = 0;

		for (; d + 4 * VW <= dh; d += 4 * VW) {
			vf a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };

			for (int j = 0; j < m; j++) {
				const float *vj = v + (size_t)j * ld + d;

				if (pi[j] == 0.0f)
					continue;
				a0 = vfmadd(a0, pi[j], vload(vj));
				a1 = vfmadd(a1, pi[j], vload(vj + VW));
				a2 = vfmadd(a2, pi[j], vload(vj + 2 * VW));
				a3 = vfmadd(a3, pi[j], vload(vj + 3 * VW));
			}
			vstore(zi + d, a0);
			vstore(zi + d + VW, a1);
			vstore(zi + d + 2 * VW, a2);
			vstore(zi + d + 3 * VW, a3);
		}
		for (; d + VW <= dh; d += VW) {
			vf a = { 0 };

			for (int j = 0; j < m; j++)
				if (pi[j] != 0.0f)
					a = vfmadd(a, pi[j], vload(v + (size_t)j * ld + d));
			vstore(zi + d, a);
		}
		for (; d < dh; d++) {
			float a = 0.0f;

			for (int j = 0; j < m; j++)
				if (pi[j] != 0.0f)
					a += pi[j] * v[(size_t)j * ld + d];
			zi[d] = a;
		}
	}
}

void
kern_attn_mix(float *z, const float *P, const float *v, int ld, int T, int dh,
    bool causal)
{
	kern_attn_mix_at(z, P, v, ld, T, T, dh, causal);
}
/* exp of VW values, relative error about 2e-7: 2^k times a degree-6
 * polynomial on |r| <= ln2 / 2. Inputs are clamped to [-87, 88]. */
static inline vf
vexp(vf y)
{
	const vf lo = vsplat(-87);
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

/* The activation and its derivative of one value, in double: the
 * reference of kern_activation_grad (and its tail). */
static void
act_grad_one(fl_act_fn act, double v, float *y, float *dy)
{
	double t, u, sg;

	switch (act) {
	case FL_ACT_GELU_TANH:
		u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
		t = tanh(u);
		*y = (float)(0.5 * v * (1 + t));
		*dy = (float)(0.5 * (1 + t) + 0.5 * v * (1 - t * t) *
		    0.7978845608028654 * (1 + 3 * 0.044715 * v * v));
		break;
	case FL_ACT_GELU:
		*y = (float)(0.5 * v * (1 + erf(v * 0.7071067811865476)));
		*dy = (float)(0.5 * (1 + erf(v * 0.7071067811865476)) +
		    v * exp(-0.5 * v * v) * 0.3989422804014327);
		break;
	case FL_ACT_RELU:
		*y = (float)(v > 0 ? v : 0);
		*dy = v > 0 ? 1.0f : 0.0f;
		break;
	case FL_ACT_SILU:
		sg = 1 / (1 + exp(-v));
		*y = (float)(v * sg);
		*dy = (float)(sg * (1 + v * (1 - sg)));
		break;
	}
}

void
kern_activation_grad_ref(float *y, float *dy, const float *x, size_t n,
    fl_act_fn act)
{
	for (size_t i = 0; i < n; i++)
		act_grad_one(act, x[i], &y[i], &dy[i]);
}

void
kern_activation_grad(float *y, float *dy, const float *x, size_t n,
    fl_act_fn act)
{
	size_t i = 0;

	switch (act) {
	case FL_ACT_GELU_TANH:
		/* With s = 1 / (1 + exp(-2u)): 1 + tanh u = 2s and 1 - tanh^2 u
		 * = 4s(1 - s), so y = v s and dy = s + 2 v s (1 - s) u'(v). */
		for (; i + VW <= n; i += VW) {
			vf v = vload(x + i), v2 = v * v;
			vf u = 0.7978845608028654f * (v + 0.044715f * v2 * v);
			vf sg = 1.0f / (1.0f + vexp(-2.0f * u));

			vstore(y + i, v * sg);
			vstore(dy + i, sg + 2.0f * v * sg * (1.0f - sg) *
			    (0.7978845608028654f * (1.0f + 3 * 0.044715f * v2)));
		}
		break;
	case FL_ACT_SILU:
		for (; i + VW <= n; i += VW) {
			vf v = vload(x + i), sg = 1.0f / (1.0f + vexp(-v));

			vstore(y + i, v * sg);
			vstore(dy + i, sg * (1.0f + v * (1.0f - sg)));
		}
		break;
	default:
		break;
	}
	kern_activation_grad_ref(y + i, dy + i, x + i, n - i, act);
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
	case FL_ACT_SILU:
		/* v sigmoid(v) = v / (1 + exp(-v)), sixteen at a time */
		for (i = 0; i + VW <= n; i += VW) {
			vf v = vload(x + i);

			vstore(x + i, v / (1.0f + vexp(-v)));
		}
		for (; i < n; i++)
			x[i] = x[i] / (1.0f + expf(-x[i]));
		break;
	}
}

void
kern_softmax(float *x, int n)
{
	float mx = -INFINITY;
	vf vmx, acc;
	vi vnan;
	double sum = 0;
	bool nan = false;
	int i;

	/* the maximum and whether any value is NaN, VW at a time (the
	 * same maximum as one by one: max does not depend on the order) */
	vmx = (vf){ 0 } - INFINITY;
	vnan = (vi){ 0 };
	for (i = 0; i + VW <= n; i += VW) {
		vf v = vload(x + i);
		vi gt = v > vmx;

		vmx = (vf)(((vi)v & gt) | ((vi)vmx & ~gt));
		vnan |= v != v;
	}
	for (int l = 0; l < VW; l++) {
		if (vmx[l] > mx)
			mx = vmx[l];
		nan |= vnan[l] != 0;
	}
	for (; i < n; i++) {
		if (x[i] > mx)
			mx = x[i];
		nan |= isnan(x[i]);
	}
	if (nan) {
		for (i = 0; i < n; i++)
			x[i] = NAN;
		return;
	}
	if (mx == -INFINITY) {
		memset(x, 0, (size_t)n * sizeof *x);
		return;
	}
	/* Sixteen exponentials at a time, summed in float over blocks of 64
	 * vectors and the blocks in double, as kern_exp_sum does; masked
	 * entries (-INFINITY) and those below exp(-87) give exactly 0. */
	vmx = (vf){ 0 } + mx;
	i = 0;
	while (i + VW <= n) {
		int end = i + 64 * VW <= n ? i + 64 * VW : n - (n - i) % VW;

		acc = (vf){ 0 };
		for (; i < end; i += VW) {
			vf y = vload(x + i) - vmx, e = vexp(y);
			vi keep = y >= -87.0f;

			e = (vf)((vi)e & keep);
			vstore(x + i, e);
			acc += e;
		}
		for (int l = 0; l < VW; l++)
			sum += acc[l];
	}
	for (; i < n; i++) {
		float y = x[i] - mx;

		x[i] = y >= -87.0f ? expf(y) : 0.0f;
		sum += x[i];
	}
	{
		float inv = (float)(1.0 / sum);
		vf vinv = (vf){ 0 } + inv;

		for (i = 0; i + VW <= n; i += VW)
			vstore(x + i, vload(x + i) * vinv);
		for (; i < n; i++)
			x[i] *= inv;
	}
}

double
kern_exp_sum(const float *x, int n, float shift)
{
	double sum = 0;
	int i = 0;

	/* float partial sums over blocks short enough to keep their rounding
	 * near float's, added up in double */
	while (i + VW <= n) {
		vf acc = { 0 };
		int end = i + 64 * VW <= n ? i + 64 * VW : n - (n - i) % VW;

		for (; i < end; i += VW)
			acc += vexp(vload(x + i) - shift);
		for (int l = 0; l < VW; l++)
			sum += acc[l];
	}
	for (; i < n; i++)
		sum += exp((double)x[i] - shift);
	return sum;
}

/* Hugging Face's rotary table, in its float32 steps: inv_freq[i] =
 * 1 / theta^(2i / dh), angle = pos * inv_freq[i]; one (cos, sin) per
 * position and pair i (the two halves of a head share them). */
void
kern_rope_table(float *cs, float *sn, int S, int dh, float theta)
{
	int half = dh / 2;

	for (int i = 0; i < half; i++) {
		float inv = (float)(1.0 / pow((double)theta, (double)(2 * i) / dh));

		for (int t = 0; t < S; t++) {
			float a = (float)t * inv;

			cs[(size_t)t * half + i] = cosf(a);
			sn[(size_t)t * half + i] = sinf(a);
		}
	}
}
