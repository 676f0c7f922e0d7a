/* decompose.c - see decompose.h. */
#include "autoconfig.h"

#include "decompose.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "analysis/lens.h"
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

/* A sample set's sufficient statistics about a fixed centre: Sxx (J, J),
 * Sx (J, D), Sy (D), Sxy (J). */
typedef struct {
	int	 n;
	double	*Sxx, *Sx, *Sy, *Sxy;
} reg_stats;

static void
stats_init(reg_stats *st, int J, int D)
{
	st->n = 0;
	st->Sxx = xcalloc((size_t)J * J, sizeof *st->Sxx);
	st->Sx = xcalloc((size_t)J * D, sizeof *st->Sx);
	st->Sy = xcalloc((size_t)D, sizeof *st->Sy);
	st->Sxy = xcalloc((size_t)J, sizeof *st->Sxy);
}

static void
stats_free(reg_stats *st)
{
	free(st->Sxx);
	free(st->Sx);
	free(st->Sy);
	free(st->Sxy);
}

/* Adds sample xc (J, D), yc (D), both centred already. */
static void
stats_add(reg_stats *st, const double *xc, const double *yc, int J, int D)
{
	st->n++;
	for (int j = 0; j < J; j++) {
		const double *a = xc + (size_t)j * D;
		double s = 0;

		for (int k = 0; k <= j; k++) {
			const double *b = xc + (size_t)k * D;
			double t = 0;

			for (int i = 0; i < D; i++)
				t += a[i] * b[i];
			st->Sxx[j * J + k] += t;
		}
		for (int i = 0; i < D; i++) {
			st->Sx[(size_t)j * D + i] += a[i];
			s += a[i] * yc[i];
		}
		st->Sxy[j] += s;
	}
	for (int i = 0; i < D; i++)
		st->Sy[i] += yc[i];
}

/* The means over N samples of x (N, J, D) and y (N, D), into mx (J, D)
 * and my (D), zeroed first. */
static void
sample_means(const float *x, const float *y, int N, int J, int D, double *mx,
    double *my)
{
	memset(mx, 0, (size_t)J * D * sizeof *mx);
	memset(my, 0, (size_t)D * sizeof *my);
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
}

int
regress_fit(fl_regress *f, const float *x, const float *y, int N, int J, int D,
    double ridge, char **cause)
{
	double *mx, *my, *G, *r, ss_res = 0, ss_tot = 0, cos_sum = 0;
	double *xc, *yc, base_sum = 0, mm = 0;
	reg_stats st;

	memset(f, 0, sizeof *f);
	if (N < 2 || J < 1 || D < 1)
		return fl_error(cause, "a regression needs at least 2 samples (got %d)", N);
	if (ridge < 0)
		ridge = DECOMP_RIDGE;
	mx = xmalloc((size_t)J * D * sizeof *mx);
	my = xmalloc((size_t)D * sizeof *my);
	xc = xmalloc((size_t)J * D * sizeof *xc);
	yc = xmalloc((size_t)D * sizeof *yc);
	sample_means(x, y, N, J, D, mx, my);
	stats_init(&st, J, D);
	for (int n = 0; n < N; n++) {
		const float *xn = x + (size_t)n * J * D, *yn = y + (size_t)n * D;

		for (size_t i = 0; i < (size_t)J * D; i++)
			xc[i] = xn[i] - mx[i];
		for (int i = 0; i < D; i++)
			yc[i] = yn[i] - my[i];
		stats_add(&st, xc, yc, J, D);
	}
	G = st.Sxx;
	r = st.Sxy;
	st.Sxx = st.Sxy = NULL;
	stats_free(&st);
	for (int j = 0; j < J; j++)
		for (int k = 0; k < j; k++)
			G[k * J + j] = G[j * J + k];
	if (regress_solve(G, r, J, ridge) != 0) {
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
	for (int i = 0; i < D; i++)
		mm += my[i] * my[i];
	for (int n = 0; n < N; n++) {
		const float *xn = x + (size_t)n * J * D, *yn = y + (size_t)n * D;
		double dot = 0, nn = 0, hh = 0, dm = 0;

		for (int i = 0; i < D; i++) {
			double h = my[i], e;

			for (int j = 0; j < J; j++)
				h += f->beta[j] * (xn[(size_t)j * D + i] - mx[(size_t)j * D + i]);
			e = yn[i] - h;
			ss_res += e * e;
			ss_tot += (yn[i] - my[i]) * (yn[i] - my[i]);
			dot += yn[i] * h;
			dm += yn[i] * my[i];
			nn += (double)yn[i] * yn[i];
			hh += h * h;
		}
		cos_sum += nn > 0 && hh > 0 ? dot / sqrt(nn * hh) : 0;
		base_sum += nn > 0 && mm > 0 ? dm / sqrt(nn * mm) : 0;
	}
	f->r2 = ss_tot > 0 ? 1.0 - ss_res / ss_tot : NAN;
	f->mean_cos = cos_sum / N;
	f->baseline_cos = base_sum / N;
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

int
regress_solve(double *A, double *r, int J, double ridge)
{
	double tr = 0;

	for (int j = 0; j < J; j++)
		tr += A[j * J + j];
	for (int j = 0; j < J; j++)
		A[j * J + j] += ridge * (tr > 0 ? tr / J : 1.0);
	return cholesky_solve(A, r, J);
}

/* ---- held out by groups --------------------------------------------- */

/* The fit of the samples in all but not in g: beta (J) and the intercept
 * b (D), about the centre both were summed about. -1 when singular. */
static int
stats_fold_fit(const reg_stats *all, const reg_stats *g, int J, int D,
    double ridge, double *beta, double *b, double *G)
{
	int n = all->n - g->n;

	if (n < 2)
		return -1;
	for (int j = 0; j < J; j++) {
		const double *aj = all->Sx + (size_t)j * D, *gj = g->Sx + (size_t)j * D;
		double r = all->Sxy[j] - g->Sxy[j], t = 0;

		for (int i = 0; i < D; i++)
			t += (aj[i] - gj[i]) * (all->Sy[i] - g->Sy[i]);
		beta[j] = r - t / n;
		for (int k = 0; k <= j; k++) {
			const double *ak = all->Sx + (size_t)k * D;
			const double *gk = g->Sx + (size_t)k * D;
			double u = 0;

			for (int i = 0; i < D; i++)
				u += (aj[i] - gj[i]) * (ak[i] - gk[i]);
			G[j * J + k] = G[k * J + j] = all->Sxx[j * J + k] -
			    g->Sxx[j * J + k] - u / n;
		}
	}
	if (regress_solve(G, beta, J, ridge) != 0)
		return -1;
	for (int i = 0; i < D; i++) {
		double v = (all->Sy[i] - g->Sy[i]) / n;

		for (int j = 0; j < J; j++)
			v -= beta[j] * (all->Sx[(size_t)j * D + i] -
			    g->Sx[(size_t)j * D + i]) / n;
		b[i] = v;
	}
	return 0;
}

/* The distinct values of group (N), in order of first appearance, into
 * vals (N); returns their count. */
static int
group_values(const int *group, int N, int *vals)
{
	int k = 0;

	for (int n = 0; n < N; n++) {
		int i;

		for (i = 0; i < k && vals[i] != group[n]; i++)
			;
		if (i == k)
			vals[k++] = group[n];
	}
	return k;
}

void
regress_heldout(fl_heldout *h, const float *x, const float *y, const int *group,
    int N, int J, int D, double ridge)
{
	double *gx = xcalloc((size_t)J * D, sizeof *gx), *gy = xcalloc((size_t)D, sizeof *gy);
	double *xc = xmalloc((size_t)J * D * sizeof *xc), *yc = xmalloc((size_t)D * sizeof *yc);
	double *beta = xmalloc((size_t)J * sizeof *beta), *b = xmalloc((size_t)D * sizeof *b);
	double *G = xmalloc((size_t)J * J * sizeof *G);
	double sse = 0, sse_base = 0, sst = 0, cos_sum = 0;
	int *vals = xmalloc((size_t)(N > 0 ? N : 1) * sizeof *vals), K;
	bool ok = true;
	reg_stats all;

	h->folds = K = group_values(group, N, vals);
	h->r2 = h->mean_cos = h->baseline_r2 = NAN;
	if (ridge < 0)
		ridge = DECOMP_RIDGE;
	stats_init(&all, J, D);
	if (K < 2)
		goto out;
	sample_means(x, y, N, J, D, gx, gy);
#define CENTRE(n) do { \
		for (size_t i_ = 0; i_ < (size_t)J * D; i_++) \
			xc[i_] = x[(size_t)(n) * J * D + i_] - gx[i_]; \
		for (int i_ = 0; i_ < D; i_++) \
			yc[i_] = y[(size_t)(n) * D + i_] - gy[i_]; \
	} while (0)
	for (int n = 0; n < N; n++) {
		CENTRE(n);
		stats_add(&all, xc, yc, J, D);
		for (int i = 0; i < D; i++)
			sst += yc[i] * yc[i];
	}
	for (int k = 0; k < K && ok; k++) {
		reg_stats g;

		stats_init(&g, J, D);
		for (int n = 0; n < N; n++)
			if (group[n] == vals[k]) {
				CENTRE(n);
				stats_add(&g, xc, yc, J, D);
			}
		if (stats_fold_fit(&all, &g, J, D, ridge, beta, b, G) != 0)
			ok = false;
		for (int n = 0; ok && n < N; n++) {
			double dot = 0, nn = 0, hh = 0;
			int nf = all.n - g.n;

			if (group[n] != vals[k])
				continue;
			CENTRE(n);
			for (int i = 0; i < D; i++) {
				double p = b[i], e, yo = yc[i] + gy[i], po;

				for (int j = 0; j < J; j++)
					p += beta[j] * xc[(size_t)j * D + i];
				e = yc[i] - p;
				sse += e * e;
				e = yc[i] - (all.Sy[i] - g.Sy[i]) / nf;
				sse_base += e * e;
				po = p + gy[i];
				dot += yo * po;
				nn += yo * yo;
				hh += po * po;
			}
			cos_sum += nn > 0 && hh > 0 ? dot / sqrt(nn * hh) : 0;
		}
		stats_free(&g);
	}
#undef CENTRE
	if (ok && sst > 0) {
		h->r2 = 1.0 - sse / sst;
		h->baseline_r2 = 1.0 - sse_base / sst;
		h->mean_cos = cos_sum / N;
	}
out:
	stats_free(&all);
	free(gx);
	free(gy);
	free(xc);
	free(yc);
	free(beta);
	free(b);
	free(G);
	free(vals);
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

void
decomp_intercept_cosines(const float *v, int n, int D, double *cos, double *norm)
{
	double *nn = xcalloc((size_t)(n > 0 ? n : 1), sizeof *nn);

	for (int i = 0; i < n; i++) {
		for (int k = 0; k < D; k++)
			nn[i] += (double)v[(size_t)i * D + k] * v[(size_t)i * D + k];
		nn[i] = sqrt(nn[i]);
		if (norm != NULL)
			norm[i] = nn[i];
	}
	for (int i = 0; i < n; i++)
		for (int j = i; j < n; j++) {
			double dot = 0, c;

			for (int k = 0; k < D; k++)
				dot += (double)v[(size_t)i * D + k] * v[(size_t)j * D + k];
			c = nn[i] > 0 && nn[j] > 0 ? dot / (nn[i] * nn[j]) : NAN;
			cos[(size_t)i * n + j] = cos[(size_t)j * n + i] = c;
		}
	free(nn);
}

void
decomp_data_clear(fl_decomp_data *dd)
{
	if (dd == NULL)
		return;
	free(dd->x);
	free(dd->y);
	free(dd->group);
	free(dd->answer);
	free(dd->subject);
	memset(dd, 0, sizeof *dd);
}

void
decomp_data_init(fl_decomp_data *dd, const fl_model *m, const fl_prompt *p,
    int n, int layer, bool with_resid)
{
	int D = m->cfg.d_model, J = decomp_regressors(m, with_resid);
	size_t n1 = (size_t)(n > 0 ? n : 1);

	memset(dd, 0, sizeof *dd);
	dd->layer = layer;
	dd->n = n;
	dd->J = J;
	dd->H = m->cfg.n_head;
	dd->D = D;
	dd->with_resid = with_resid;
	dd->x = xmalloc(n1 * J * D * sizeof *dd->x);
	dd->y = xmalloc(n1 * D * sizeof *dd->y);
	dd->group = xmalloc(n1 * sizeof *dd->group);
	dd->answer = xmalloc(n1 * sizeof *dd->answer);
	dd->subject = xmalloc(n1 * sizeof *dd->subject);
	for (int i = 0; i < n; i++) {
		dd->group[i] = p[i].subject_pair;
		dd->answer[i] = p[i].answer;
		dd->subject[i] = p[i].subject;
	}
}

int
decomp_collect(fl_decomp_data *dd, fl_batch *b, const fl_prompt *p, int n,
    int layer, bool with_resid, char **cause)
{
	const fl_model *m = b->m;
	int nh, rc;
	fl_decomp_collect c = { 0 };
	fl_hook hooks[4];

	memset(dd, 0, sizeof *dd);
	if (layer < 0 || layer >= m->cfg.n_layer)
		return fl_error(cause, "layer %d: the model has layers 0 to %d", layer,
		    m->cfg.n_layer - 1);
	decomp_data_init(dd, m, p, n, layer, with_resid);
	c.b = b;
	c.layer = layer;
	c.with_resid = with_resid;
	c.x = dd->x;
	c.y = dd->y;
	nh = decomp_hooks(&c, true, hooks);
	if (n > 0 && (rc = batch_run(b, p, n, hooks, nh, NULL, cause)) != 0) {
		decomp_data_clear(dd);
		return rc;
	}
	return 0;
}

int
decomp_fit_data(fl_decomp *d, const fl_decomp_data *dd, double ridge, char **cause)
{
	memset(d, 0, sizeof *d);
	if (regress_fit(&d->fit, dd->x, dd->y, dd->n, dd->J, dd->D, ridge, cause) != 0)
		return -1;
	regress_heldout(&d->heldout, dd->x, dd->y, dd->group, dd->n, dd->J, dd->D,
	    ridge);
	d->layer = dd->layer;
	d->with_resid = dd->with_resid;
	d->n_head = dd->H;
	return 0;
}

int
decomp_fit(fl_decomp *d, fl_batch *b, const fl_prompt *p, int n, int layer,
    bool with_resid, double ridge, char **cause)
{
	fl_decomp_data dd;
	int rc;

	memset(d, 0, sizeof *d);
	if ((rc = decomp_collect(&dd, b, p, n, layer, with_resid, cause)) != 0)
		return rc;
	rc = decomp_fit_data(d, &dd, ridge, cause);
	decomp_data_clear(&dd);
	return rc;
}

/* Rows of the unembedding product at a time: bounds the logits buffer. */
#define DECOMP_LENS_ROWS 64

void
decomp_lens_ranks(const fl_model *m, int layer, const float *u, int n,
    const int *answers, int *ranks)
{
	int D = m->cfg.d_model, V = m->cfg.n_vocab;
	float *lg = xmalloc((size_t)DECOMP_LENS_ROWS * V * sizeof *lg);

	for (int s = 0; s < n; s += DECOMP_LENS_ROWS) {
		int k = n - s < DECOMP_LENS_ROWS ? n - s : DECOMP_LENS_ROWS;

		attrib_vocab(m, NULL, 0, ATTRIB_SITE_MLP(layer), u + (size_t)s * D, k, lg);
		for (int i = 0; i < k; i++)
			ranks[s + i] = lens_rank_of(lg + (size_t)i * V, V, answers[s + i]);
	}
	free(lg);
}

int
decomp_rank_among(const float *v, int n, int k)
{
	int r = 1;

	for (int i = 0; i < n; i++)
		r += v[i] > v[k];
	return r;
}

static int
int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

void
decomp_rank_summary(const int *ranks, int n, double *median, double *mean)
{
	int *s;
	double sum = 0;

	*median = *mean = NAN;
	if (n < 1)
		return;
	s = xmalloc((size_t)n * sizeof *s);
	memcpy(s, ranks, (size_t)n * sizeof *s);
	qsort(s, (size_t)n, sizeof *s, int_cmp);
	for (int i = 0; i < n; i++)
		sum += s[i];
	*median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
	*mean = sum / n;
	free(s);
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
