/* kernels.c - see kernels.h. */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

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

static void
add_bias(float *y, int ldy, const float *b, int T, int n)
{
	if (b == NULL)
		return;
	for (int t = 0; t < T; t++)
		for (int o = 0; o < n; o++)
			y[(size_t)t * ldy + o] += b[o];
}

void
kern_linear(float *y, int ldy, const float *x, int ldx, const fl_linear *lin,
    int T, bool accumulate)
{
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

void
kern_activation(float *x, size_t n, fl_act_fn act)
{
	size_t i;

	switch (act) {
	case FL_ACT_GELU_TANH:
		for (i = 0; i < n; i++) {
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
