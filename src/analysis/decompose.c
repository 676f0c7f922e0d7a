/* decompose.c - see decompose.h. */
#include "autoconfig.h"

#include "decompose.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/readout.h"
#include "base/util.h"

void
regress_clear(fl_regress *f)
{
	if (f == NULL)
		return;
	free(f->beta);
	free(f->intercept);
	free(f->mean_x);
	free(f->mean_y);
	memset(f, 0, sizeof *f);
}

/* Solves A beta = r for symmetric positive definite A (J, J) in place by
 * Cholesky. -1 when A is not positive definite. */
static int
cholesky_solve(double *A, double *r, int J)
{
	for (int j = 0; j < J; j++) {
		double d = A[j * J + j];

		for (int k = 0; k < j; k++)
			d -= A[j * J + k] * A[j * J + k];
		if (!(d > 0))
			return -1;
		d = sqrt(d);
		A[j * J + j] = d;
		for (int i = j + 1; i < J; i++) {
			double v = A[i * J + j];

			for (int k = 0; k < j; k++)
				v -= A[i * J + k] * A[j * J + k];
			A[i * J + j] = v / d;
		}
	}
	for (int i = 0; i < J; i++) {	/* L y = r */
		for (int k = 0; k < i; k++)
			r[i] -= A[i * J + k] * r[k];
		r[i] /= A[i * J + i];
	}
	for (int i = J - 1; i >= 0; i--) {	/* L^T beta = y */
		for (int k = i + 1; k < J; k++)
			r[i] -= A[k * J + i] * r[k];
		r[i] /= A[i * J + i];
	}
	return 0;
}

int
regress_fit(fl_regress *f, const float *x, const float *y, int N, int J, int D,
    double ridge, char **cause)
{
	double *mx, *my, *G, *r, tr = 0, ss_res = 0, ss_tot = 0, cos_sum = 0;
	double *xc, *yc;

	memset(f, 0, sizeof *f);
	if (N < 2 || J < 1 || D < 1)
		return fl_error(cause, "a regression needs at least 2 samples (got %d)", N);
	if (ridge < 0)
		ridge = DECOMP_RIDGE;
	mx = xcalloc((size_t)J * D, sizeof *mx);
	my = xcalloc((size_t)D, sizeof *my);
	G = xcalloc((size_t)J * J, sizeof *G);
	r = xcalloc((size_t)J, sizeof *r);
	xc = xmalloc((size_t)J * D * sizeof *xc);
	yc = xmalloc((size_t)D * sizeof *yc);
	for (int n = 0; n < N; n++) {
		for (size_t i = 0; i < (size_t)J * D; i++)
			mx[i] += x[(size_t)n * J * D + i];
		for (int i = 0; i < D; i++)
			my[i] += y[(size_t)n * D + i];
	}
	for (size_t i = 0; i < (size_t)J * D; i++)
		mx[i] /= N;
	for (int i = 0; i < D; i++)
		my[i] /= N;
	for (int n = 0; n < N; n++) {
		const float *xn = x + (size_t)n * J * D, *yn = y + (size_t)n * D;

		for (size_t i = 0; i < (size_t)J * D; i++)
			xc[i] = xn[i] - mx[i];
		for (int i = 0; i < D; i++)
			yc[i] = yn[i] - my[i];
		for (int j = 0; j < J; j++) {
			const double *a = xc + (size_t)j * D;

			for (int k = 0; k <= j; k++) {
				const double *b = xc + (size_t)k * D;
				double s = 0;

				for (int i = 0; i < D; i++)
					s += a[i] * b[i];
				G[j * J + k] += s;
			}
			{
				double s = 0;

				for (int i = 0; i < D; i++)
					s += a[i] * yc[i];
				r[j] += s;
			}
		}
	}
	for (int j = 0; j < J; j++) {
		for (int k = 0; k < j; k++)
			G[k * J + j] = G[j * J + k];
		tr += G[j * J + j];
	}
	for (int j = 0; j < J; j++)
		G[j * J + j] += ridge * (tr > 0 ? tr / J : 1.0);
	if (cholesky_solve(G, r, J) != 0) {
		fl_error(cause, "the regression is singular: the %d regressors do not "
		    "vary independently over the %d samples", J, N);
		goto fail;
	}
	f->n = N;
	f->J = J;
	f->D = D;
	f->ridge = ridge;
	f->beta = r;
	r = NULL;
	f->intercept = xmalloc((size_t)D * sizeof *f->intercept);
	f->mean_x = xmalloc((size_t)J * D * sizeof *f->mean_x);
	f->mean_y = xmalloc((size_t)D * sizeof *f->mean_y);
	for (int i = 0; i < D; i++) {
		double b = my[i];

		for (int j = 0; j < J; j++)
			b -= f->beta[j] * mx[(size_t)j * D + i];
		f->intercept[i] = (float)b;
		f->mean_y[i] = (float)my[i];
	}
	for (size_t i = 0; i < (size_t)J * D; i++)
		f->mean_x[i] = (float)mx[i];
	/* fit quality, with the intercept in double */
	for (int n = 0; n < N; n++) {
		const float *xn = x + (size_t)n * J * D, *yn = y + (size_t)n * D;
		double dot = 0, nn = 0, hh = 0;

		for (int i = 0; i < D; i++) {
			double h = my[i], e;

			for (int j = 0; j < J; j++)
				h += f->beta[j] * (xn[(size_t)j * D + i] - mx[(size_t)j * D + i]);
			e = yn[i] - h;
			ss_res += e * e;
			ss_tot += (yn[i] - my[i]) * (yn[i] - my[i]);
			dot += yn[i] * h;
			nn += (double)yn[i] * yn[i];
			hh += h * h;
		}
		cos_sum += nn > 0 && hh > 0 ? dot / sqrt(nn * hh) : 0;
	}
	f->r2 = ss_tot > 0 ? 1.0 - ss_res / ss_tot : NAN;
	f->mean_cos = cos_sum / N;
	free(mx);
	free(my);
	free(G);
	free(xc);
	free(yc);
	return 0;
fail:
	free(mx);
	free(my);
	free(G);
	free(r);
	free(xc);
	free(yc);
	return -1;
}

void
regress_predict(const fl_regress *f, const float *x, float *yhat)
{
	for (int i = 0; i < f->D; i++) {
		double h = f->intercept[i];

		for (int j = 0; j < f->J; j++)
			h += f->beta[j] * x[(size_t)j * f->D + i];
		yhat[i] = (float)h;
	}
}

/* ---- the MLP decomposition -------------------------------------------- */

int
decomp_regressors(const fl_model *m, bool with_resid)
{
	return m->cfg.n_head + (with_resid ? 1 : 0);
}

/* HOOK_Z at the layer: the heads' results at the last position. */
static int
decomp_z_hook(void *ud, fl_act *a)
{
	fl_decomp_collect *c = ud;
	const fl_model *m = c->b->m;
	int H = m->cfg.n_head, D = m->cfg.d_model;
	int J = H + (c->with_resid ? 1 : 0), T = a->shape[0];
	float *dst = c->x + (size_t)(c->b->first + a->seq) * J * D;

	for (int h = 0; h < H; h++)
		model_head_result(m, c->layer, h, a->data + (size_t)(T - 1) * D,
		    dst + (size_t)h * D);
	return FL_HOOK_CONTINUE;
}

int
decomp_hooks(fl_decomp_collect *c, bool stop, fl_hook *hooks)
{
	const fl_model *m = c->b->m;
	int H = m->cfg.n_head, D = m->cfg.d_model, J = H + (c->with_resid ? 1 : 0);
	int n = 0;

	hooks[n++] = (fl_hook){ HOOK_Z, c->layer, decomp_z_hook, c };
	if (c->with_resid) {
		c->g_resid = (fl_grab){ c->b, c->x + (size_t)H * D, (size_t)J * D, 0, D };
		hooks[n++] = (fl_hook){ HOOK_RESID_PRE, c->layer, batch_grab_last,
		    &c->g_resid };
	}
	c->g_mlp = (fl_grab){ c->b, c->y, (size_t)D, 0, D };
	hooks[n++] = (fl_hook){ HOOK_MLP_OUT, c->layer, batch_grab_last, &c->g_mlp };
	if (stop)
		hooks[n++] = (fl_hook){ HOOK_MLP_OUT, c->layer, batch_stop_after,
		    (void *)c->b };
	return n;
}

void
decomp_clear(fl_decomp *d)
{
	if (d == NULL)
		return;
	regress_clear(&d->fit);
	memset(d, 0, sizeof *d);
}

int
decomp_fit(fl_decomp *d, fl_batch *b, const fl_prompt *p, int n, int layer,
    bool with_resid, double ridge, char **cause)
{
	const fl_model *m = b->m;
	int D = m->cfg.d_model, J = decomp_regressors(m, with_resid), nh, rc;
	fl_decomp_collect c = { 0 };
	fl_hook hooks[4];

	memset(d, 0, sizeof *d);
	if (layer < 0 || layer >= m->cfg.n_layer)
		return fl_error(cause, "layer %d: the model has layers 0 to %d", layer,
		    m->cfg.n_layer - 1);
	c.b = b;
	c.layer = layer;
	c.with_resid = with_resid;
	c.x = xmalloc((size_t)n * J * D * sizeof *c.x);
	c.y = xmalloc((size_t)n * D * sizeof *c.y);
	nh = decomp_hooks(&c, true, hooks);
	rc = batch_run(b, p, n, hooks, nh, NULL, cause);
	if (rc == 0)
		rc = regress_fit(&d->fit, c.x, c.y, n, J, D, ridge, cause);
	free(c.x);
	free(c.y);
	if (rc != 0)
		return rc;
	d->layer = layer;
	d->with_resid = with_resid;
	d->n_head = m->cfg.n_head;
	return 0;
}

int
decomp_prompt(const fl_decomp *d, const fl_model *m, const fl_cache *c, int pos,
    float *x, float *mlp, float *mhat, fl_recon *out, char **cause)
{
	int D = m->cfg.d_model, T = c->n_tok, H = m->cfg.n_head, l = d->layer;
	int J = d->fit.J;
	float *xx = x != NULL ? x : xmalloc((size_t)J * D * sizeof *xx);
	float *hh = mhat != NULL ? mhat : xmalloc((size_t)D * sizeof *hh);
	const float *mm = c->mlp_out + ((size_t)l * T + pos) * D;
	double dot = 0, n_m = 0, n_h = 0, err = 0, mean = 0, var = 0;

	if (pos < 0 || pos >= T || c->valid <= l) {
		if (x == NULL)
			free(xx);
		if (mhat == NULL)
			free(hh);
		return fl_error(cause, "the cache does not hold layer %d at position %d",
		    l, pos);
	}
	for (int h = 0; h < H; h++)
		model_head_result(m, l, h, c->z + ((size_t)l * T + pos) * D,
		    xx + (size_t)h * D);
	if (d->with_resid)
		memcpy(xx + (size_t)H * D, c->resid_pre + ((size_t)l * T + pos) * D,
		    (size_t)D * sizeof *xx);
	regress_predict(&d->fit, xx, hh);
	if (mlp != NULL)
		memcpy(mlp, mm, (size_t)D * sizeof *mlp);
	for (int i = 0; i < D; i++)
		mean += mm[i];
	mean /= D;
	for (int i = 0; i < D; i++) {
		dot += (double)mm[i] * hh[i];
		n_m += (double)mm[i] * mm[i];
		n_h += (double)hh[i] * hh[i];
		err += ((double)mm[i] - hh[i]) * ((double)mm[i] - hh[i]);
		var += (mm[i] - mean) * (mm[i] - mean);
	}
	out->cos = n_m > 0 && n_h > 0 ? dot / sqrt(n_m * n_h) : 0;
	out->rel_err = n_m > 0 ? sqrt(err / n_m) : NAN;
	out->r2 = var > 0 ? 1.0 - err / var : NAN;
	if (x == NULL)
		free(xx);
	if (mhat == NULL)
		free(hh);
	return 0;
}
