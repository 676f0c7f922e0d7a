/* kern_bench.c - times the engine's product kernels on GPT-2 small's
 * shapes at a few row counts, so that a kernel change can be measured on
 * its own before the whole pass: `make bench/kern_bench`, then
 * `bench/kern_bench [THREADS] [ROWS] [f32|f16|bf16]` (the dtype of the
 * linears' weights; the unembedding rows are always f32). Prints, per
 * shape, the median time, GFLOP/s and the weight bytes streamed per
 * second. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/util.h"

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static float *
random_floats(size_t n, unsigned *s)
{
	float *p = xmalloc((n) * sizeof *p);

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

static void
bench_one(const char *name, int T, int in, int out, bool trans, int reps,
    fl_dtype dt)
{
	unsigned s = 7;
	void *w = dt == FL_DTYPE_F32 ? (void *)random_floats((size_t)in * out, &s) :
	    random_halves((size_t)in * out, &s, dt);
	float *b = random_floats((size_t)out, &s);
	float *x = random_floats((size_t)T * in, &s);
	float *y = xmalloc(((size_t)T * out) * sizeof *y);
	double *t = xmalloc(((size_t)reps) * sizeof *t);
	fl_linear lin = { w, trans ? NULL : b, in, out, trans ? in : out, trans, dt };
	double med;

	for (int r = 0; r < reps; r++) {
		double t0 = fl_now();

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
	free(b);
	free(x);
	free(y);
	free(t);
}

int
main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 1;
	int T = argc > 2 ? atoi(argv[2]) : 16;
	const char *dn = argc > 3 ? argv[3] : "f32";
	fl_dtype dt = strcmp(dn, "f16") == 0 ? FL_DTYPE_F16 :
	    strcmp(dn, "bf16") == 0 ? FL_DTYPE_BF16 : FL_DTYPE_F32;

	kern_set_threads(threads);
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
	return 0;
}
