/* kern_bench.c - times the engine's product kernels on GPT-2 small's
 * shapes at a few row counts, so that a kernel change can be measured on
 * its own before the whole pass: `make bench/kern_bench`, then
 * `bench/kern_bench [THREADS] [ROWS] [f32|f16|bf16|layers] [NAME]` (the dtype
 * of the linears' weights, the unembedding rows are always f32; NAME: only
 * the shapes whose name holds it). Prints, per
 * shape, the median time, GFLOP/s and the weight bytes streamed per
 * second. (in, out) weights and the unembedding's rows are laid out as
 * the model loads them (kern_linear_pack, kern_unembed_pack);
 * FACTLENS_LAYOUT=stored times them as stored. `bench/kern_bench THREADS 0
 * peak` instead times independent fused multiply-adds on THREADS threads:
 * the machine's arithmetic ceiling, which no product reaches (BLIS's
 * sgemm runs below it). */
#include "autoconfig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/linear.h"
#include "engine/pool.h"
#include "engine/vec.h"
#include "base/util.h"

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static float *
random_floats(size_t n, unsigned *s)
{
	float *p = xaligned_alloc(64, (n) * sizeof *p);

	for (size_t i = 0; i < n; i++) {
		*s = *s * 1103515245u + 12345u;
		p[i] = ((float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f) * 0.1f;
	}
	return p;
}

/* Half-precision bits of values of about the same size as random_floats'. */
static void *
random_halves(size_t n, unsigned *s, fl_dtype dt)
{
	unsigned short *p = xmalloc(n * sizeof *p);

	for (size_t i = 0; i < n; i++) {
		unsigned r;

		*s = *s * 1103515245u + 12345u;
		r = *s >> 8;
		p[i] = dt == FL_DTYPE_F16 ?
		    (unsigned short)((r & 0x8000) | (9 + (r >> 16) % 4) << 10 | (r & 0x3ff)) :
		    (unsigned short)((r & 0x8000) | (121 + (r >> 16) % 4) << 7 | (r & 0x7f));
	}
	return p;
}

static bool
stored_layout(void)
{
	const char *e = getenv("FACTLENS_LAYOUT");

	return e != NULL && strcmp(e, "stored") == 0;
}

static const char *only;	/* a piece of the names to time, or NULL: all */

static void
bench_one(const char *name, int T, int in, int out, bool trans, int reps,
    fl_dtype dt)
{
	unsigned s = 7;

	if (only != NULL && strstr(name, only) == NULL)
		return;
	void *w = dt == FL_DTYPE_F32 ? (void *)random_floats((size_t)in * out, &s) :
	    random_halves((size_t)in * out, &s, dt);
	float *b = random_floats((size_t)out, &s);
	float *x = random_floats((size_t)T * in, &s);
	float *y = xmalloc(((size_t)T * out) * sizeof *y);
	double *t = xmalloc(((size_t)reps) * sizeof *t);
	fl_linear lin = { w, trans ? NULL : b, in, out, trans ? in : out, trans, dt,
	    NULL };
	void *laid = NULL;
	double med;

	/* (in, out) weights in the kernels' layout, as the model loads them,
	 * unless FACTLENS_LAYOUT=stored */
	if (!trans && kern_linear_pack_bytes(&lin) > 0 && !stored_layout()) {
		laid = xaligned_alloc(64, kern_linear_pack_bytes(&lin));
		kern_linear_pack(&lin, laid);
	}

	/* (out, in) shapes are the unembedding's: kern_unembed, its rows laid
	 * out as the model loads them (kern_unembed_pack) unless stored */
	fl_table U = { w, out, in, dt, NULL };

	if (trans && !stored_layout()) {
		laid = xaligned_alloc(64, kern_unembed_pack_bytes(&U));
		kern_unembed_pack(&U, laid);
	}
	for (int r = 0; r < reps; r++) {
		double t0 = fl_now();

		if (trans)
			kern_unembed(y, x, &U, T);
		else
			kern_linear(y, out, x, in, &lin, T, false);
		t[r] = fl_now() - t0;
	}
	qsort(t, (size_t)reps, sizeof *t, cmp_double);
	med = t[reps / 2];
	printf("%-22s T=%-3d %5d x %-5d %s  %8.3f ms  %6.1f GFLOP/s  %5.1f GB/s\n",
	    name, T, in, out, trans ? "(out,in)" : "(in,out)", med * 1e3,
	    2.0 * T * in * out / med * 1e-9,
	    (double)fl_dtype_size(dt) * in * out / med * 1e-9);
	free(w);
	free(laid);
	free(b);
	free(x);
	free(y);
	free(t);
}

/* GPT-2 small's Conv1D products for n_layer layers in turn, as a pass
 * walks them: with distinct weights per layer (cold: 340 MB of f32, read
 * from memory as eval reads them) or one layer's weights every time (hot:
 * 28 MB, which the cache can keep), 64-byte aligned or misalign floats
 * past that. `kern_bench THREADS ROWS layers` prints the sweep's median
 * time and GFLOP/s. */
static int misalign;	/* floats past a 64-byte boundary */

static void
bench_layers(int T, int n_layer, bool cold, int reps)
{
	/* q, k, v: column blocks of one (768, 2304) c_attn, as GPT-2 stores
	 * them; then o, fc, proj */
	static const int shape[6][3] = { { 768, 768, 2304 }, { 768, 768, 2304 },
	    { 768, 768, 2304 }, { 768, 768, 768 }, { 768, 3072, 3072 },
	    { 3072, 768, 768 } };
	int nw = cold ? n_layer : 1;
	fl_linear *lin = xmalloc((size_t)nw * 6 * sizeof *lin);
	unsigned s = 7;
	float *x = random_floats((size_t)T * 3072, &s);
	float *y = xmalloc((size_t)T * 3072 * sizeof *y);
	double *t = xmalloc((size_t)reps * sizeof *t), flop = 0, med;

	for (int l = 0; l < nw; l++) {
		float *attn = random_floats((size_t)768 * 2304 + 16, &s) + misalign;

		for (int p = 0; p < 6; p++) {
			int in = shape[p][0], out = shape[p][1];

			lin[l * 6 + p] = (fl_linear){ p < 3 ? attn + p * 768 :
			    random_floats((size_t)in * out + 16, &s) + misalign,
			    random_floats((size_t)out, &s), in, out, shape[p][2],
			    false, FL_DTYPE_F32, NULL };
			if (!stored_layout())
				kern_linear_pack(&lin[l * 6 + p], xaligned_alloc(64,
				    kern_linear_pack_bytes(&lin[l * 6 + p])));
		}
	}
	for (int p = 0; p < 6; p++)
		flop += 2.0 * T * shape[p][0] * shape[p][1] * n_layer;
	for (int r = 0; r < reps; r++) {
		double t0 = fl_now();

		for (int l = 0; l < n_layer; l++)
			for (int p = 0; p < 6; p++) {
				const fl_linear *L = &lin[(cold ? l : 0) * 6 + p];

				kern_linear(y, L->out, x, L->in, L, T, false);
			}
		t[r] = fl_now() - t0;
	}
	qsort(t, (size_t)reps, sizeof *t, cmp_double);
	med = t[reps / 2];
	printf("%d layers, %s weights, %s  T=%-3d  %8.3f ms  %6.1f GFLOP/s\n",
	    n_layer, cold ? "cold" : "hot ", misalign ? "16 bytes off" :
	    "aligned     ", T, med * 1e3, flop / med * 1e-9);
	for (int i = 0; i < nw * 6; i++) {
		free((void *)lin[i].pk);
		if (i % 6 == 0 || i % 6 > 2)
			free((float *)lin[i].w - misalign);
		free((void *)lin[i].b);
	}
	free(lin);
	free(x);
	free(y);
	free(t);
}

/* The arithmetic ceiling: PEAK_ACC independent chains of the kernels' own
 * multiply-add (vfmadd, vec.h) per thread (enough to cover the FMA units' latency), no
 * memory traffic. */
#define PEAK_ACC 12
#define PEAK_ITERS 50000000L

static void *
peak_thread(void *arg)
{
	float *out = arg;
	vf a[PEAK_ACC], m = vsplat(0.5f);

	for (int j = 0; j < PEAK_ACC; j++)
		a[j] = vsplat((float)j);
	for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 12
		for (int j = 0; j < PEAK_ACC; j++)
			a[j] = vfmadd(a[j], 1e-7f, m);
	*out = 0;
	for (int j = 0; j < PEAK_ACC; j++)
		*out += vsum(a[j]);
	return NULL;
}

static void
bench_peak(int threads, int reps)
{
	pthread_t th[64];
	float sink[64];
	double best = 0;
	int fused = 0;

#if defined(__FMA__) || defined(__AVX512F__)
	fused = 1;
#endif
	if (threads < 1 || threads > 64) {
		fprintf(stderr, "kern_bench: peak runs on 1 to 64 threads, not %d\n",
		    threads);
		exit(2);
	}
	for (int r = 0; r < reps; r++) {
		double t0 = fl_now(), dt, g;

		for (int i = 0; i < threads; i++)
			if (pthread_create(&th[i], NULL, peak_thread, &sink[i]) != 0) {
				perror("pthread_create");
				exit(1);
			}
		for (int i = 0; i < threads; i++)
			pthread_join(th[i], NULL);
		dt = fl_now() - t0;
		g = 2.0 * PEAK_ITERS * PEAK_ACC * VW * threads / dt * 1e-9;
		printf("peak  %d threads  %d-float %s  %8.1f ms  %6.1f GFLOP/s\n",
		    threads, VW, fused ? "FMA" : "multiply-add", dt * 1e3, g);
		if (g > best)
			best = g;
	}
	printf("peak  best of %d: %.1f GFLOP/s (%.1f per thread)\n", reps, best,
	    best / threads);
}

int
main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 1;
	int T = argc > 2 ? atoi(argv[2]) : 16;
	const char *dn = argc > 3 ? argv[3] : "f32";
	fl_dtype dt = strcmp(dn, "f16") == 0 ? FL_DTYPE_F16 :
	    strcmp(dn, "bf16") == 0 ? FL_DTYPE_BF16 : FL_DTYPE_F32;

	only = argc > 4 ? argv[4] : NULL;
	if (strcmp(dn, "peak") == 0) {
		bench_peak(threads, 5);
		return 0;
	}
	kern_set_threads(threads);
	if (strcmp(dn, "layers") == 0) {
		printf("threads %d, rows %d\n", threads, T);
		bench_layers(T, 12, false, 9);
		bench_layers(T, 12, true, 9);
		misalign = 4;	/* 16 bytes, as in many safetensors files */
		bench_layers(T, 12, true, 9);
		return 0;
	}
	printf("threads %d, rows %d, linear weights %s\n", threads, T,
	    dt == FL_DTYPE_F16 ? "f16" : dt == FL_DTYPE_BF16 ? "bf16" : "f32");
	bench_one("attn q/k/v/o (Conv1D)", T, 768, 768, false, 200, dt);
	bench_one("mlp fc (Conv1D)", T, 768, 3072, false, 100, dt);
	bench_one("mlp proj (Conv1D)", T, 3072, 768, false, 100, dt);
	bench_one("q/k/v/o (OPT Linear)", T, 768, 768, true, 200, dt);
	bench_one("fc (OPT Linear)", T, 768, 3072, true, 100, dt);
	bench_one("proj (OPT Linear)", T, 3072, 768, true, 100, dt);
	bench_one("unembed (lens rows)", 13, 768, 50257, true, 20, FL_DTYPE_F32);
	bench_one("unembed (1 row)", 1, 768, 50257, true, 20, FL_DTYPE_F32);
	bench_one("unembed (eval's rows)", 128, 768, 50257, true, 5, FL_DTYPE_F32);
	bench_one("unembed (225 rows)", 225, 768, 50257, true, 5, FL_DTYPE_F32);
	bench_one("unembed (64 rows)", 64, 768, 50257, true, 5, FL_DTYPE_F32);
	bench_one("unembed (32 rows, a packed pass)", 32, 768, 50257, true, 5, FL_DTYPE_F32);
	return 0;
}
