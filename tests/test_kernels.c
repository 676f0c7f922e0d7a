/*
 * test_kernels.c - the numeric kernels against their naive twins or plain
 * double-precision sums: the weight products (linear.h) for every dtype,
 * orientation and tile size, the exact widening of f16 and bf16, attention,
 * the norms' statistics, GELU and the sum of exponentials (kernels.h), on two threads (pool.h).
 */
#include "autoconfig.h"

#include <stdint.h>
#include <string.h>

#include "check.h"
#include "engine/kernels.h"
#include "engine/linear.h"
#include "engine/pool.h"
#include "engine/st.h"
#include "base/util.h"

static float
frand(unsigned *s)
{
	*s = *s * 1664525u + 1013904223u;
	return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* A random half-precision value's bits: |v| in [2^-6, 1) for f16 (exponent
 * 9 .. 14), the same range for bf16 (exponent 121 .. 126), either sign,
 * every mantissa bit random. */
static uint16_t
hrand(unsigned *s, fl_dtype dt)
{
	unsigned r;

	*s = *s * 1664525u + 1013904223u;
	r = *s >> 8;
	if (dt == FL_DTYPE_F16)
		return (uint16_t)((r & 0x8000) | (9 + (r >> 16) % 6) << 10 | (r & 0x3ff));
	return (uint16_t)((r & 0x8000) | (121 + (r >> 16) % 6) << 7 | (r & 0x7f));
}

static const char *const dtype_names[] = { "f32", "f16", "bf16" };

/* The fast kernels (streamed for few rows, packed for many) against the
 * naive ones, in both weight orientations, with strided weights (as
 * c_attn's q, k, v), column tails and accumulation; for weights stored as
 * f32, and as f16 and bf16 (widened in the kernels, FL_WEIGHTS_STORED). */
/* Which kernels test_linear checks: "" the streaming ones, "BLIS from 48
 * rows, " the sgemm path (kern_blas_rows_set). */
static const char *linear_path = "";

static void
test_linear(void)
{
	enum { MAXT = 130, MAXIN = 300, MAXOUT = 268, V = 41 };
	static float x[MAXT * MAXIN], w[MAXIN * 3 * MAXOUT], b[MAXOUT];
	static uint16_t wh[MAXIN * 3 * MAXOUT], wb[MAXIN * 3 * MAXOUT];
	static float y1[MAXT * MAXOUT], y2[MAXT * MAXOUT], U[V * MAXIN];
	static float l1[MAXT * V], l2[MAXT * V];
	static float laid[MAXIN * MAXOUT] __attribute__((aligned(64)));
	/* Row counts for every tile size, the largest streamed (out, in)
	 * product (32) and packed ones beyond; inner sizes with a vector tail
	 * and longer than one cache block; outputs with a partial strip (of one
	 * or two vectors, or not a whole number of them: whole vectors for
	 * AVX-512's 48-column strips at 64 and 80, AVX2's 16 at 264, SSE's 8
	 * at 268, which the kernels' layout holds too). With BLIS from 48
	 * rows, f32 products go to it in blocks of 128 columns: 70 and 130
	 * rows, and 264 and 268 outputs (two whole blocks and a partial one),
	 * test that path. */
	const int Ts[] = { 1, 2, 3, 5, 7, 8, 13, 16, 29, 32, 40, 70, 130 };
	const int ins[] = { 35, 300 }, outs[] = { 19, 64, 80, 264, 268 };
	unsigned s = 7;

	for (size_t i = 0; i < sizeof x / sizeof *x; i++)
		x[i] = frand(&s);
	for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
		w[i] = frand(&s);
		wh[i] = hrand(&s, FL_DTYPE_F16);
		wb[i] = hrand(&s, FL_DTYPE_BF16);
	}
	for (size_t i = 0; i < MAXOUT; i++)
		b[i] = frand(&s);
	for (size_t i = 0; i < sizeof U / sizeof *U; i++)
		U[i] = frand(&s);
	for (int dt = FL_DTYPE_F32; dt <= FL_DTYPE_BF16; dt++)
	for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++)
		for (int ii = 0; ii < 2; ii++)
			for (int oi = 0; oi < 5; oi++)
				/* trans 2: (in, out) in the kernels' layout */
				for (int trans = 0; trans < 3; trans++)
					for (int acc = 0; acc < 3; acc++) {
						int T = Ts[ti], IN = ins[ii], OUT = outs[oi];
						const void *wd = dt == FL_DTYPE_F16 ? (const void *)(wh + OUT) :
						    dt == FL_DTYPE_BF16 ? (const void *)(wb + OUT) :
						    (const void *)(w + OUT);
						/* acc 1: accumulate, no bias; 2: with */
						fl_linear lin = { wd, acc == 1 ? NULL : b, IN, OUT,
						    trans == 1 ? IN : 3 * OUT, trans == 1, (fl_dtype)dt, NULL };
						char name[160];

						if (trans == 2)
							kern_linear_pack(&lin, laid);
						for (int i = 0; i < T * OUT; i++)
							y1[i] = y2[i] = (float)i * 0.01f;
						kern_linear(y1, OUT, x, IN, &lin, T, acc != 0);
						kern_linear_ref(y2, OUT, x, IN, &lin, T, acc != 0);
						snprintf(name, sizeof name, "kern_linear = naive "
						    "(%s%s, %d rows, %d in, %d out, %s weights%s)",
						    linear_path, dtype_names[dt], T, IN, OUT, trans == 1 ?
						    "(out, in)" : trans == 2 ? "(in, out) strided, laid out" :
						    "(in, out) strided", acc == 1 ?
						    ", accumulate, no bias" : acc == 2 ?
						    ", accumulate with bias" : "");
						check_close(name, y1, y2, (size_t)T * OUT, 1e-4);
					}
	/* the unembedding as stored and laid out (kern_unembed_pack): V
	 * tokens leave a strip and a vector and a column (AVX2) or two
	 * vectors and nine columns (AVX-512); 32, whole strips or vectors */
	for (int dt = FL_DTYPE_F32; dt <= FL_DTYPE_BF16; dt++)
	for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++)
		for (int ii = 0; ii < 2; ii++)
			for (int lay = 0; lay < 2; lay++)
				for (int nv = V; nv >= 32; nv -= V - 32) {
			const void *ud = dt == FL_DTYPE_F16 ? (const void *)wh :
			    dt == FL_DTYPE_BF16 ? (const void *)wb : (const void *)U;
			fl_table t = { ud, nv, ins[ii], (fl_dtype)dt, NULL };
			char name[100];

			if (lay) {
				if (kern_unembed_pack_bytes(&t) > sizeof laid) {
					check(false, "the test's laid buffer holds the unembedding");
					return;
				}
				kern_unembed_pack(&t, laid);
				check(t.pk == laid || kern_unembed_pack_bytes(&t) == 0,
				    "kern_unembed_pack sets U->pk");
			}
			kern_unembed(l1, x, &t, Ts[ti]);
			kern_unembed_ref(l2, x, &t, Ts[ti]);
			snprintf(name, sizeof name, "kern_unembed = naive (%s%s, %d rows, "
			    "width %d, %d tokens%s)", linear_path, dtype_names[dt], Ts[ti],
			    ins[ii], nv, lay ? ", laid out" : "");
			check_close(name, l1, l2, (size_t)Ts[ti] * nv, 1e-4);
		}
}

/* The kernels widen every finite f16 and bf16 value exactly: all of them
 * as weights (16 inputs by N outputs, both orientations), multiplied by
 * the identity, come out as st_to_f32 gives them. */
static void
test_widen_exact(void)
{
	enum { IN = 16 };
	static float x[IN * IN], want[65536], y[65536];
	static uint16_t wt[65536], wp[65536];

	for (int i = 0; i < IN; i++)
		x[i * IN + i] = 1.0f;
	for (int dt = FL_DTYPE_F16; dt <= FL_DTYPE_BF16; dt++) {
		unsigned emask = dt == FL_DTYPE_F16 ? 0x7c00 : 0x7f80;
		int n = 0, N;

		for (unsigned h = 0; h < 65536; h++)
			if ((h & emask) != emask)	/* not Inf or NaN */
				wt[n++] = (uint16_t)h;
		N = n / IN;
		n = N * IN;
		st_to_f32(want, (const uint8_t *)wt, dt == FL_DTYPE_F16 ?
		    ST_DTYPE_F16 : ST_DTYPE_BF16, (size_t)n);
		for (int trans = 0; trans < 2; trans++) {
			/* (out, in): row o holds values o*IN .. o*IN+15; (in, out):
			 * the transpose, so that y[i][o] is the same value */
			fl_linear lin = { trans ? (const void *)wt : (const void *)wp, NULL,
			    IN, N, trans ? IN : N, trans, (fl_dtype)dt, NULL };
			int bad = 0;

			for (int o = 0; o < N; o++)
				for (int i = 0; i < IN; i++)
					wp[i * N + o] = wt[o * IN + i];
			kern_linear(y, N, x, IN, &lin, IN, false);
			for (int i = 0; i < IN && bad == 0; i++)
				for (int o = 0; o < N; o++)
					if (y[i * N + o] != want[o * IN + i]) {
						bad = o * IN + i + 1;
						break;
					}
			check(bad == 0, "kern_linear widens all %d finite %s values "
			    "exactly, %s weights%s", n, dtype_names[dt], trans ?
			    "(out, in)" : "(in, out)", bad ? " (first difference "
			    "at a value)" : "");
			if (bad)
				printf("    value %u: got %.9g, want %.9g\n", wt[bad - 1],
				    y[((bad - 1) % IN) * N + (bad - 1) / IN], want[bad - 1]);
		}
	}
}

/* Attention scores and mixing, loop path and BLIS path, against plain
 * double-precision sums. */
static void
test_attention(void)
{
	enum { DH = 83, LD = 90 };	/* 83: every path of the mix (4 vectors, 1, scalar) */
	/* 300 rows: three of BLIS's row blocks, the last one partial */
	const int Ts[] = { 5, 120, 300 };
	unsigned s = 11;

	for (int ti = 0; ti < 3; ti++) {
		int T = Ts[ti];
		float *q = xmalloc((size_t)T * LD * sizeof *q), *k = xmalloc((size_t)T * LD * 4);
		float *v = xmalloc((size_t)T * LD * 4), *sc = xmalloc((size_t)T * T * 4);
		float *want = xmalloc((size_t)T * T * 4), *z = xcalloc((size_t)T * LD, 4);
		float *zw = xcalloc((size_t)T * LD, 4);
		char name[96];
		bool masked = true;

		for (int i = 0; i < T * LD; i++) {
			q[i] = frand(&s);
			k[i] = frand(&s);
			v[i] = frand(&s);
		}
		kern_attn_scores(sc, q, k, LD, T, DH, 0.5f);
		for (int i = 0; i < T; i++)
			for (int j = 0; j < T; j++) {
				double d = 0;

				for (int e = 0; e < DH; e++)
					d += (double)q[i * LD + e] * k[j * LD + e];
				want[i * T + j] = j <= i ? (float)(0.5 * d) : 0.0f;
				if (j > i) {
					masked &= isinf(sc[i * T + j]) && sc[i * T + j] < 0;
					sc[i * T + j] = 0.0f;
				}
			}
		snprintf(name, sizeof name, "attention scores = naive (%d tokens)", T);
		check_close(name, sc, want, (size_t)T * T, 1e-5);
		check(masked, "future positions are -inf (%d tokens)", T);
		/* the softmax of the masked rows against exp in double */
		kern_attn_scores(sc, q, k, LD, T, DH, 0.5f);
		for (int i = 0; i < T; i++) {
			double mx = -INFINITY, sum = 0;

			for (int j = 0; j <= i; j++)
				mx = fmax(mx, want[i * T + j]);
			for (int j = 0; j <= i; j++)
				sum += exp((double)want[i * T + j] - mx);
			for (int j = 0; j < T; j++)
				want[i * T + j] = j <= i ?
				    (float)(exp((double)want[i * T + j] - mx) / sum) : 0.0f;
			kern_softmax(sc + (size_t)i * T, T);
		}
		snprintf(name, sizeof name, "softmax of masked rows = exp in double "
		    "(%d tokens)", T);
		check_close(name, sc, want, (size_t)T * T, 1e-6);
		for (int causal = 1; causal >= 0; causal--) {
			/* not causal: a hook's edit above the diagonal counts */
			if (!causal)
				for (int i = 0; i + 1 < T; i++)
					want[i * T + T - 1] = 0.25f;
			kern_attn_mix(z, want, v, LD, T, DH, causal);
			for (int i = 0; i < T; i++)
				for (int e = 0; e < DH; e++) {
					double d = 0;

					for (int j = 0; j < T; j++)
						d += (double)want[i * T + j] * v[j * LD + e];
					zw[i * LD + e] = (float)d;
				}
			snprintf(name, sizeof name, "attention mix = naive (%d tokens, %s)",
			    T, causal ? "causal" : "pattern edited above the diagonal");
			check_close(name, z, zw, (size_t)T * LD, 1e-5);
		}
		free(q);
		free(k);
		free(v);
		free(sc);
		free(want);
		free(z);
		free(zw);
	}
}

/* LayerNorm's and RMSNorm's statistics of 19 rows (two blocks of the rows
 * summed together, three alone) against the formulas in double, and each
 * row's bits equal to the row's statistics computed alone. */
static void
test_norm_stats(void)
{
	enum { T = 19, D = 37 };
	static float x[T * D], mean[T], scale[T], m1, s1;
	unsigned seed = 7;
	double worst = 0;
	int same = 0;

	for (int i = 0; i < T * D; i++)
		x[i] = frand(&seed) * (float)(1 + i / D) + 0.25f * (float)(i / D);
	for (int rms = 0; rms < 2; rms++) {
		if (rms)
			kern_rms_stats(mean, scale, x, T, D, 1e-5f);
		else
			kern_ln_stats(mean, scale, x, T, D, 1e-5f);
		for (int t = 0; t < T; t++) {
			const float *xr = x + (size_t)t * D;
			double mu = 0, var = 0;

			for (int i = 0; i < D; i++)
				mu += rms ? 0 : xr[i];
			mu /= D;
			for (int i = 0; i < D; i++)
				var += (xr[i] - mu) * (xr[i] - mu);
			var = sqrt(var / D + 1e-5);
			worst = fmax(worst, fabs(mean[t] - mu) / (fabs(mu) + 1) +
			    fabs(scale[t] - var) / var);
			if (rms)
				kern_rms_stats(&m1, &s1, xr, 1, D, 1e-5f);
			else
				kern_ln_stats(&m1, &s1, xr, 1, D, 1e-5f);
			same += memcmp(&m1, &mean[t], sizeof m1) == 0 &&
			    memcmp(&s1, &scale[t], sizeof s1) == 0;
		}
	}
	check(worst < 1e-6, "norm stats = the formulas in double (worst %.3g)", worst);
	check(same == 2 * T, "norm stats: each row's bits as computed alone (%d of %d)",
	    same, 2 * T);
}

/* The vectorised GELU against the formula in double precision, from
 * -30 to 30 (the exponential is clamped past +-87). */
static void
test_gelu(void)
{
	enum { N = 6001 };
	static float got[N], want[N];
	double maxrel = 0;

	for (int i = 0; i < N; i++) {
		double v = -30.0 + 60.0 * i / (N - 1);

		got[i] = (float)v;
		want[i] = (float)(0.5 * v * (1 + tanh(0.7978845608028654 *
		    (v + 0.044715 * v * v * v))));
	}
	kern_activation(got, N, FL_ACT_GELU_TANH);
	for (int i = 0; i < N; i++) {
		double d = fabs((double)got[i] - want[i]) / (fabs(want[i]) + 1e-6);

		if (d > maxrel)
			maxrel = d;
	}
	check(maxrel < 1e-5, "gelu (tanh form) = formula on [-30, 30]: max relative "
	    "difference %.3g", maxrel);
}

/* The activations' derivatives for the backward pass (vectorised GELU-tanh
 * and SiLU, the others the reference's own) against the formulas in double
 * from -30 to 30, on a length with a vector tail; and the activation beside
 * each equals kern_activation's within 1e-5. */
static void
test_activation_grad(void)
{
	enum { N = 6001 };
	static float x[N], y[N], dy[N], ry[N], rdy[N], fwd[N];
	static const fl_act_fn acts[] = { FL_ACT_GELU_TANH, FL_ACT_SILU, FL_ACT_GELU,
	    FL_ACT_RELU };
	static const char *names[] = { "gelu (tanh)", "silu", "gelu (erf)", "relu" };

	for (int i = 0; i < N; i++)
		x[i] = (float)(-30.0 + 60.0 * i / (N - 1));
	for (size_t k = 0; k < sizeof acts / sizeof *acts; k++) {
		double wy = 0, wd = 0, wf = 0;

		kern_activation_grad(y, dy, x, N, acts[k]);
		for (int i = 0; i < N; i++) {
			double v = x[i], t, sg, want_d;

			switch (acts[k]) {
			case FL_ACT_GELU_TANH:
				t = tanh(0.7978845608028654 * (v + 0.044715 * v * v * v));
				want_d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) *
				    0.7978845608028654 * (1 + 3 * 0.044715 * v * v);
				break;
			case FL_ACT_SILU:
				sg = 1 / (1 + exp(-v));
				want_d = sg * (1 + v * (1 - sg));
				break;
			case FL_ACT_GELU:
				want_d = 0.5 * (1 + erf(v / sqrt(2))) + v * exp(-0.5 * v * v) /
				    sqrt(2 * M_PI);
				break;
			default:
				want_d = v > 0;
				break;
			}
			/* relative to 1 + |dy|, as for the activation below: where
			 * the derivative crosses zero (x near -0.75) its float
			 * terms of about 1 cancel, and without FMA (the portable
			 * build) a few ulps of them were 1.8e-5 of a 1e-3 floor */
			wd = fmax(wd, fabs(dy[i] - want_d) / (fabs(want_d) + 1));
		}
		kern_activation_grad_ref(ry, rdy, x, N, acts[k]);
		memcpy(fwd, x, sizeof fwd);
		kern_activation(fwd, N, acts[k]);
		for (int i = 0; i < N; i++) {
			wy = fmax(wy, fabs(y[i] - ry[i]) / (fabs(ry[i]) + 1e-6));
			/* (kern_activation's float erf cancels far below 0) */
			wf = fmax(wf, fabs(y[i] - fwd[i]) / (fabs(fwd[i]) + 1));
		}
		check(wd < 1e-5 && wy < 1e-5 && wf < 1e-5, "%s: derivative = formula "
		    "on [-30, 30] (%.3g of 1 + |dy|), activation = the reference's "
		    "(%.3g) and kern_activation's (%.3g of 1 + |y|)", names[k], wd, wy,
		    wf);
	}
}

/* The vectorised sum of exponentials against libm in double, over lengths
 * with and without a vector tail and one long enough for several blocks,
 * and with a -inf entry (a masked logit). */
static void
test_exp_sum(void)
{
	enum { N = 50257 };
	static float x[N];
	const int ns[] = { 1, 15, 16, 17, 1000, N };
	unsigned s = 11;

	for (int i = 0; i < N; i++)
		x[i] = 8.0f * frand(&s);
	x[3] = -INFINITY;
	for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
		double want = 0, got = kern_exp_sum(x, ns[k], 8.0f);

		for (int i = 0; i < ns[k]; i++)
			want += exp((double)x[i] - 8.0);
		check(fabs(got - want) <= 1e-6 * want, "kern_exp_sum = libm (%d values): "
		    "%.9g vs %.9g, relative %.2e", ns[k], got, want, fabs(got - want) / want);
	}
}

/* A NaN anywhere in a row makes the row NaN, as torch.softmax does; a row
 * of -inf alone (every key masked) stays zeros. */
static void
test_softmax_nan(void)
{
	float row[4] = { 1.0f, NAN, -INFINITY, 2.0f };
	float all_nan[3] = { NAN, NAN, NAN };
	float masked[3] = { -INFINITY, -INFINITY, -INFINITY };
	int nan = 0, zero = 0;

	kern_softmax(row, 4);
	kern_softmax(all_nan, 3);
	kern_softmax(masked, 3);
	for (int i = 0; i < 4; i++)
		nan += isnan(row[i]);
	for (int i = 0; i < 3; i++) {
		nan += isnan(all_nan[i]);
		zero += masked[i] == 0.0f;
	}
	check(nan == 7, "softmax: a NaN makes its row NaN, as torch.softmax "
	    "(%d of 7 NaN)", nan);
	check(zero == 3, "softmax: a row of -inf alone stays zeros (%d of 3)", zero);

	/* rows of 37, past the vectors (the maximum and the NaN test go VW at
	 * a time, then one by one): a NaN among the vectors or in the tail,
	 * a masked row, and the formula in double with the maximum among the
	 * vectors and in the tail */
	{
		enum { N = 37 };
		float a[N], b[N], c[N], d[N];
		unsigned seed = 11;
		double worst = 0;
		int nn = 0, zz = 0;

		for (int i = 0; i < N; i++) {
			a[i] = b[i] = 0.5f * (float)i;
			c[i] = -INFINITY;
		}
		a[3] = NAN;
		b[N - 2] = NAN;
		kern_softmax(a, N);
		kern_softmax(b, N);
		kern_softmax(c, N);
		for (int i = 0; i < N; i++) {
			nn += isnan(a[i]) + isnan(b[i]);
			zz += c[i] == 0.0f;
		}
		check(nn == 2 * N && zz == N, "softmax, %d values: a NaN among the "
		    "vectors or in the tail makes the row NaN (%d of %d), a masked "
		    "row stays zeros (%d of %d)", N, nn, 2 * N, zz, N);
		for (int at = 0; at < 2; at++) {
			double mx = -INFINITY, sum = 0;

			for (int i = 0; i < N; i++)
				d[i] = 4.0f * frand(&seed);
			d[at == 0 ? 5 : N - 1] = 9.0f;
			for (int i = 0; i < N; i++)
				mx = fmax(mx, d[i]);
			for (int i = 0; i < N; i++)
				sum += exp(d[i] - mx);
			memcpy(a, d, sizeof a);
			kern_softmax(a, N);
			for (int i = 0; i < N; i++)
				worst = fmax(worst, fabs(a[i] - exp(d[i] - mx) / sum));
		}
		check(worst < 1e-6, "softmax, %d values, the maximum among the "
		    "vectors and in the tail: the formula in double within %.3g",
		    N, worst);
	}
}

int
main(void)
{
	kern_set_threads(2);
	kern_blas_rows_set(0);
	test_linear();
	kern_blas_rows_set(48);
	linear_path = "BLIS from 48 rows, ";
	test_linear();
	kern_blas_rows_set(0);
	test_widen_exact();
	test_attention();
	test_norm_stats();
	test_gelu();
	test_activation_grad();
	test_exp_sum();
	test_softmax_nan();
	return check_done();
}
