/* readout.c - see readout.h. */
#include "autoconfig.h"

#include "readout.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "linear.h"
#include "pool.h"
#include "base/util.h"

/* ---- the final readout ------------------------------------------------ */

void
model_unembed(const fl_model *m, const float *x, int n, float *logits, float *scratch)
{
	int P = m->cfg.d_proj;
	float *own = NULL;

	if (m->project_out.w != NULL) {
		if (scratch == NULL)
			scratch = own = xmalloc((size_t)n * P * sizeof *own);
		kern_linear(scratch, P, x, m->cfg.d_model, &m->project_out, n, false);
		x = scratch;
	}
	kern_unembed(logits, x, &m->unembed, n);
	free(own);
}

void
model_readout(const fl_model *m, const float *x, int n, float *logits)
{
	int D = m->cfg.d_model;
	float *ln, *mean, *scale;

	if (!m->cfg.final_ln) {
		model_unembed(m, x, n, logits, NULL);
		return;
	}
	ln = xmalloc((size_t)n * D * sizeof *ln);
	mean = xmalloc((size_t)n * sizeof *mean);
	scale = xmalloc((size_t)n * sizeof *scale);
	model_norm_stats(m, mean, scale, x, n);
	kern_ln_apply(ln, x, mean, scale, m->lnf_w, m->lnf_b, n, D);
	model_unembed(m, ln, n, logits, NULL);
	free(ln);
	free(mean);
	free(scale);
}

void
model_unembed_dir(const fl_model *m, const float *u, float *dir)
{
	const fl_linear *po = &m->project_out;
	int D = m->cfg.d_model, P = m->cfg.d_proj;
	double *acc;

	if (po->w == NULL) {
		memcpy(dir, u, (size_t)D * sizeof *dir);
		return;
	}
	/* dir[i] = sum_o W[i][o] u[o] over the logical (D, P) matrix, in
	 * double: a product by the transpose, for one row only. */
	acc = xcalloc((size_t)D, sizeof *acc);
	for (int o = 0; o < P; o++)
		for (int i = 0; i < D; i++)
			acc[i] += (double)linear_weight(po, i, o) * u[o];
	for (int i = 0; i < D; i++)
		dir[i] = (float)acc[i];
	free(acc);
}

double
model_readout_dot(const fl_model *m, const float *x, const float *dir)
{
	int D = m->cfg.d_model;
	double mean = 0, var = 0, s = 0;

	if (!m->cfg.final_ln) {
		for (int i = 0; i < D; i++)
			s += (double)x[i] * dir[i];
		return s;
	}
	if (!m->cfg.rms_norm) {
		for (int i = 0; i < D; i++)
			mean += x[i];
		mean /= D;
	}
	for (int i = 0; i < D; i++)
		var += (x[i] - mean) * (x[i] - mean);
	var = sqrt(var / D + m->cfg.ln_eps);
	for (int i = 0; i < D; i++)
		s += ((x[i] - mean) / var * m->lnf_w[i] +
		    (m->lnf_b != NULL ? m->lnf_b[i] : 0)) * dir[i];
	return s;
}

/* ---- a layer's pieces ------------------------------------------------- */

void
model_norm_stats(const fl_model *m, float *mean, float *scale, const float *x, int n)
{
	if (m->cfg.rms_norm)
		kern_rms_stats(mean, scale, x, n, m->cfg.d_model, m->cfg.ln_eps);
	else
		kern_ln_stats(mean, scale, x, n, m->cfg.d_model, m->cfg.ln_eps);
}

/* ---- the work between the products, on the threads -------------------
 * From ROWS_PARALLEL_MIN rows on, the LayerNorms' two steps and the MLP's
 * activation are shared among the pool's threads (below it, handing them
 * over costs about what it saves). Each row's statistics and each value
 * are computed as in one call, so the bits are the same at any thread
 * count: the activation's parts are cut at multiples of ACT_GRAIN values,
 * so that every value takes the same path (vector or tail) as in one
 * call. */
#define ROWS_PARALLEL_MIN 64
#define ACT_GRAIN 64

typedef struct {
	const fl_model	*m;
	float		*mean, *scale;
	const float	*x;
	float		*out;		/* apply: the normalized rows (NULL: stats) */
	const float	*w, *b;
	int		 N;
	float		*h;		/* activation: the values, in place */
	const float	*up;		/* the gated MLP's up projection, or NULL */
	size_t		 n;
} rows_job;

static bool
rows_parallel(int N)
{
	return N >= ROWS_PARALLEL_MIN && kern_threads() > 1;
}

/* Rows [a, b) of a norm's step: the statistics, or with out the apply. */
static void
norm_part(void *ctx, int part, int nparts)
{
	const rows_job *j = ctx;
	size_t D = (size_t)j->m->cfg.d_model;
	int a, b;

	kern_part_range(j->N, part, nparts, &a, &b);
	if (a >= b)
		return;
	if (j->out == NULL)
		model_norm_stats(j->m, j->mean + a, j->scale + a, j->x + a * D, b - a);
	else
		kern_ln_apply(j->out + a * D, j->x + a * D, j->mean + a, j->scale + a,
		    j->w, j->b, b - a, (int)D);
}

void
model_norm_stats_mt(const fl_model *m, float *mean, float *scale, const float *x,
    int N)
{
	rows_job j = { .m = m, .mean = mean, .scale = scale, .x = x, .N = N };

	if (rows_parallel(N))
		kern_for(norm_part, &j, N);
	else
		model_norm_stats(m, mean, scale, x, N);
}

void
model_ln_apply_mt(const fl_model *m, float *out, const float *x, const float *mean,
    const float *scale, const float *w, const float *b, int N)
{
	rows_job j = { .m = m, .mean = (float *)mean, .scale = (float *)scale,
	    .x = x, .out = out, .w = w, .b = b, .N = N };

	if (rows_parallel(N))
		kern_for(norm_part, &j, N);
	else
		kern_ln_apply(out, x, mean, scale, w, b, N, m->cfg.d_model);
}

static void
act_range(const rows_job *j, size_t a, size_t b)
{
	kern_activation(j->h + a, b - a, j->m->cfg.act);
	if (j->up != NULL)
		for (size_t i = a; i < b; i++)
			j->h[i] *= j->up[i];
}

static void
act_part(void *ctx, int part, int nparts)
{
	const rows_job *j = ctx;
	size_t lo, hi;

	kern_part_span(j->n, ACT_GRAIN, part, nparts, &lo, &hi);
	if (lo < hi)
		act_range(j, lo, hi);
}

void
model_activation_mt(const fl_model *m, float *h, const float *up, int N)
{
	rows_job j = { .m = m, .h = h, .up = up,
	    .n = (size_t)N * (size_t)m->cfg.d_mlp };

	if (rows_parallel(N))
		kern_for(act_part, &j, kern_grains(j.n, ACT_GRAIN));
	else
		act_range(&j, 0, j.n);
}

void
model_mlp(const fl_model *m, int l, float *y, const float *x, int n, float *h,
    bool accumulate)
{
	const fl_layer *ly = &m->layers[l];
	int D = m->cfg.d_model, F = m->cfg.d_mlp;
	size_t nf = (size_t)n * F;

	kern_linear(h, F, x, D, &ly->fc, n, false);
	if (m->cfg.gated_mlp) {
		float *up = xmalloc(nf * sizeof *up);

		kern_linear(up, F, x, D, &ly->up, n, false);
		model_activation_mt(m, h, up, n);
		free(up);
	} else
		model_activation_mt(m, h, NULL, n);
	kern_linear(y, D, h, F, &ly->proj, n, accumulate);
}

void
model_head_result(const fl_model *m, int layer, int head, const float *z_row,
    float *out)
{
	int dh = m->cfg.d_head;
	fl_linear s = linear_in_rows(&m->layers[layer].o, head * dh, dh);

	kern_linear(out, m->cfg.d_model, z_row + (size_t)head * dh, dh, &s, 1, false);
}

const double *
model_unembed_mean(const fl_model *m)
{
	fl_model *mm = (fl_model *)m;	/* the cached row only */
	double *mean = atomic_load(&mm->unembed_mean), *none = NULL;
	int V = m->cfg.n_vocab, P = m->cfg.d_proj;
	float *row;

	if (mean != NULL)
		return mean;
	mean = xcalloc((size_t)P, sizeof *mean);
	row = xmalloc((size_t)P * sizeof *row);
	for (int v = 0; v < V; v++) {
		table_row(&m->unembed, v, row);
		for (int i = 0; i < P; i++)
			mean[i] += row[i];
	}
	for (int i = 0; i < P; i++)
		mean[i] /= V;
	free(row);
	/* another thread may have made it meanwhile: keep the first */
	if (!atomic_compare_exchange_strong(&mm->unembed_mean, &none, mean)) {
		free(mean);
		mean = none;
	}
	return mean;
}
