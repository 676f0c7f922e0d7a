/* decompose_forms.c - the forms of the MLP decomposition to compare: see
 * decompose.h, "the forms". */
#include "autoconfig.h"

#include "decompose.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "engine/tensor.h"
#include "base/util.h"

static const char *const form_names[DECOMP_FORM_COUNT] = {
	"pooled", "per-prompt", "subject-dir", "logit",
};

const char *
decomp_form_name(fl_decomp_form form)
{
	return form >= 0 && form < DECOMP_FORM_COUNT ? form_names[form] : "?";
}

int
decomp_form_parse(const char *name)
{
	for (int f = 0; f < DECOMP_FORM_COUNT; f++)
		if (strcmp(name, form_names[f]) == 0)
			return f;
	return -1;
}

void
decomp_form_clear(fl_decomp_form_fit *f)
{
	if (f == NULL)
		return;
	regress_clear(&f->fit);
	free(f->beta_prompt);
	free(f->answers);
	free(f->rank);
	memset(f, 0, sizeof *f);
}

/* W_U[:, token] carried back to `site` at unit scale (D). */
static void
site_dir(const fl_model *m, int site, int token, double *dirs, float *u_vocab,
    double *out)
{
	int D = m->cfg.d_model;

	table_row(&m->unembed, token, u_vocab);
	attrib_site_dirs(m, NULL, 0, u_vocab, dirs);
	memcpy(out, dirs + (size_t)site * D, (size_t)D * sizeof *out);
}

void
decomp_subject_dir(const fl_model *m, int layer, int token, float *u)
{
	int D = m->cfg.d_model;
	double *dirs = xmalloc((size_t)2 * m->cfg.n_layer * D * sizeof *dirs);
	double *e = xmalloc((size_t)D * sizeof *e), nn = 0;
	float *uv = xmalloc((size_t)m->cfg.d_proj * sizeof *uv);

	site_dir(m, ATTRIB_SITE_MLP(layer), token, dirs, uv, e);
	for (int i = 0; i < D; i++)
		nn += e[i] * e[i];
	nn = nn > 0 ? sqrt(nn) : 1;
	for (int i = 0; i < D; i++)
		u[i] = (float)(e[i] / nn);
	free(dirs);
	free(e);
	free(uv);
}

/* The shared-fit forms: regress y on x (both in the form's space), held
 * out by subject, and the unexplained part y - sum_j beta_j x_j into u. */
static int
form_shared(fl_decomp_form_fit *f, const float *x, const float *y, const int *group,
    int N, int J, int D, double ridge, float *u, char **cause)
{
	if (regress_fit(&f->fit, x, y, N, J, D, ridge, cause) != 0)
		return -1;
	regress_heldout(&f->heldout, x, y, group, N, J, D, ridge);
	f->r2 = f->fit.r2;
	f->mean_cos = f->fit.mean_cos;
	f->baseline_cos = f->fit.baseline_cos;
	f->heldout_how = "leave-one-subject-out";
	for (int n = 0; n < N; n++)
		for (int i = 0; i < D; i++) {
			double v = y[(size_t)n * D + i];

			for (int j = 0; j < J; j++)
				v -= f->fit.beta[j] * x[((size_t)n * J + j) * D + i];
			u[(size_t)n * D + i] = (float)v;
		}
	return 0;
}

static double
cos_d(const double *a, const float *b, int D)
{
	double ab = 0, aa = 0, bb = 0;

	for (int i = 0; i < D; i++) {
		ab += a[i] * b[i];
		aa += a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

/* Prompt n's fit on the coordinates i with (i % K != fold) (fold < 0:
 * all): beta (J). -1 when singular. */
static int
prompt_fit(const float *x, const float *y, int J, int D, int K, int fold,
    double ridge, double *G, double *beta)
{
	memset(G, 0, (size_t)J * J * sizeof *G);
	memset(beta, 0, (size_t)J * sizeof *beta);
	for (int j = 0; j < J; j++) {
		const float *a = x + (size_t)j * D;

		for (int k = 0; k <= j; k++) {
			const float *b = x + (size_t)k * D;
			double s = 0;

			for (int i = 0; i < D; i++)
				if (fold < 0 || i % K != fold)
					s += (double)a[i] * b[i];
			G[j * J + k] = G[k * J + j] = s;
		}
		for (int i = 0; i < D; i++)
			if (fold < 0 || i % K != fold)
				beta[j] += (double)a[i] * y[i];
	}
	return regress_solve(G, beta, J, ridge);
}

/* The per-prompt form; u (n, D) receives each prompt's residual. */
static int
form_per_prompt(fl_decomp_form_fit *f, const fl_decomp_data *dd, double ridge,
    float *u, char **cause)
{
	int N = dd->n, J = dd->J, D = dd->D, K = DECOMP_COORD_FOLDS;
	double *G = xmalloc((size_t)J * J * sizeof *G), *beta = xmalloc((size_t)J * sizeof *beta);
	double *h = xmalloc((size_t)D * sizeof *h), *ho = xcalloc((size_t)D, sizeof *ho);
	double *my = xcalloc((size_t)D, sizeof *my), *mg = xmalloc((size_t)D * sizeof *mg);
	double r2 = 0, cs = 0, bcs = 0, r2h = 0, csh = 0, br2 = 0;
	int *vals = xmalloc((size_t)N * sizeof *vals), n_groups = 0;
	bool ho_ok = D - (D + K - 1) / K >= J, base_ok;
	int rc = -1;

	if (N < 1) {
		fl_error(cause, "the per-prompt form needs a prompt");
		goto out;
	}
	for (int n = 0; n < N; n++) {
		int g;

		for (int i = 0; i < D; i++)
			my[i] += dd->y[(size_t)n * D + i] / N;
		for (g = 0; g < n_groups && vals[g] != dd->group[n]; g++)
			;
		if (g == n_groups)
			vals[n_groups++] = dd->group[n];
	}
	base_ok = n_groups >= 2;
	f->beta_prompt = xmalloc((size_t)N * J * sizeof *f->beta_prompt);
	for (int n = 0; n < N; n++) {
		const float *xn = dd->x + (size_t)n * J * D, *yn = dd->y + (size_t)n * D;
		double mean = 0, sst = 0, sse = 0, sse_ho = 0, sse_b = 0;
		int ng = 0;

		if (prompt_fit(xn, yn, J, D, K, -1, ridge, G, beta) != 0) {
			fl_error(cause, "the per-prompt fit of prompt %d is singular: its "
			    "%d regressors are not independent over the %d coordinates", n,
			    J, D);
			goto out;
		}
		memcpy(f->beta_prompt + (size_t)n * J, beta, (size_t)J * sizeof *beta);
		for (int i = 0; i < D; i++) {
			h[i] = 0;
			for (int j = 0; j < J; j++)
				h[i] += beta[j] * xn[(size_t)j * D + i];
			u[(size_t)n * D + i] = (float)(yn[i] - h[i]);
			mean += yn[i];
		}
		mean /= D;
		for (int fo = 0; ho_ok && fo < K; fo++) {
			if (prompt_fit(xn, yn, J, D, K, fo, ridge, G, beta) != 0) {
				ho_ok = false;
				break;
			}
			for (int i = fo; i < D; i += K) {
				ho[i] = 0;
				for (int j = 0; j < J; j++)
					ho[i] += beta[j] * xn[(size_t)j * D + i];
			}
		}
		/* the other subjects' mean */
		memset(mg, 0, (size_t)D * sizeof *mg);
		for (int k = 0; base_ok && k < N; k++)
			if (dd->group[k] != dd->group[n]) {
				ng++;
				for (int i = 0; i < D; i++)
					mg[i] += dd->y[(size_t)k * D + i];
			}
		for (int i = 0; i < D; i++) {
			double e = yn[i] - h[i];

			sst += (yn[i] - mean) * (yn[i] - mean);
			sse += e * e;
			if (ho_ok)
				sse_ho += (yn[i] - ho[i]) * (yn[i] - ho[i]);
			if (base_ok)
				sse_b += (yn[i] - mg[i] / ng) * (yn[i] - mg[i] / ng);
		}
		r2 += sst > 0 ? 1 - sse / sst : NAN;
		r2h += sst > 0 ? 1 - sse_ho / sst : NAN;
		br2 += sst > 0 ? 1 - sse_b / sst : NAN;
		cs += cos_d(h, yn, D);
		csh += cos_d(ho, yn, D);
		bcs += cos_d(my, yn, D);
	}
	f->r2 = r2 / N;
	f->mean_cos = cs / N;
	f->baseline_cos = bcs / N;
	f->heldout.folds = K;
	f->heldout.r2 = ho_ok ? r2h / N : NAN;
	f->heldout.mean_cos = ho_ok ? csh / N : NAN;
	f->heldout.baseline_r2 = base_ok ? br2 / N : NAN;
	f->heldout_how = "coordinates i mod 8: leave-one-subject-out does not "
	    "apply to fits that see one prompt";
	rc = 0;
out:
	free(G);
	free(beta);
	free(h);
	free(ho);
	free(my);
	free(mg);
	free(vals);
	return rc;
}

int
decomp_form_fit(fl_decomp_form_fit *f, const fl_model *m, const fl_decomp_data *dd,
    fl_decomp_form form, double ridge, char **cause)
{
	int N = dd->n, J = dd->J, D = dd->D, A = 0, rc = -1, L2 = 2 * m->cfg.n_layer;
	float *u = NULL, *x2 = NULL, *y2 = NULL;

	memset(f, 0, sizeof *f);
	if (ridge < 0)
		ridge = DECOMP_RIDGE;
	f->form = form;
	f->n = N;
	f->answers = xmalloc((size_t)(N > 0 ? N : 1) * sizeof *f->answers);
	for (int n = 0; n < N; n++) {
		int k;

		for (k = 0; k < A && f->answers[k] != dd->answer[n]; k++)
			;
		if (k == A)
			f->answers[A++] = dd->answer[n];
	}
	f->n_answers = A;
	f->rank = xcalloc((size_t)(N > 0 ? N : 1), sizeof *f->rank);
	f->rank_of = m->cfg.n_vocab;
	f->J = J;
	f->D = D;
	switch (form) {
	case DECOMP_FORM_POOLED:
		u = xmalloc((size_t)N * D * sizeof *u);
		rc = form_shared(f, dd->x, dd->y, dd->group, N, J, D, ridge, u, cause);
		break;
	case DECOMP_FORM_PER_PROMPT:
		u = xmalloc((size_t)N * D * sizeof *u);
		rc = form_per_prompt(f, dd, ridge, u, cause);
		break;
	case DECOMP_FORM_SUBJECT_DIR:
		f->J = 1;
		u = xmalloc((size_t)N * D * sizeof *u);
		x2 = xmalloc((size_t)N * D * sizeof *x2);
		for (int n = 0; n < N; n++) {
			int k;

			/* one direction per subject token: reuse the earlier prompt's */
			for (k = 0; k < n && dd->subject[k] != dd->subject[n]; k++)
				;
			if (k < n)
				memcpy(x2 + (size_t)n * D, x2 + (size_t)k * D,
				    (size_t)D * sizeof *x2);
			else
				decomp_subject_dir(m, dd->layer, dd->subject[n],
				    x2 + (size_t)n * D);
		}
		rc = form_shared(f, x2, dd->y, dd->group, N, 1, D, ridge, u, cause);
		break;
	case DECOMP_FORM_LOGIT: {
		double *dirs = xmalloc((size_t)L2 * D * sizeof *dirs);
		double *ea = xmalloc((size_t)A * D * sizeof *ea);
		double *em = xmalloc((size_t)A * D * sizeof *em);
		float *uv = xmalloc((size_t)m->cfg.d_proj * sizeof *uv);

		for (int a = 0; a < A; a++) {
			site_dir(m, ATTRIB_SITE_ATTN(dd->layer), f->answers[a], dirs, uv,
			    ea + (size_t)a * D);
			memcpy(em + (size_t)a * D, dirs + (size_t)ATTRIB_SITE_MLP(dd->layer) *
			    D, (size_t)D * sizeof *em);
		}
		x2 = xmalloc((size_t)N * J * (A > 0 ? A : 1) * sizeof *x2);
		y2 = xmalloc((size_t)N * (A > 0 ? A : 1) * sizeof *y2);
		for (int n = 0; n < N; n++)
			for (int a = 0; a < A; a++) {
				const double *da = ea + (size_t)a * D, *dm = em + (size_t)a * D;
				const float *yn = dd->y + (size_t)n * D;
				double s = 0;

				for (int i = 0; i < D; i++)
					s += dm[i] * yn[i];
				y2[(size_t)n * A + a] = (float)s;
				for (int j = 0; j < J; j++) {
					const float *xj = dd->x + ((size_t)n * J + j) * D;

					s = 0;
					for (int i = 0; i < D; i++)
						s += da[i] * xj[i];
					x2[((size_t)n * J + j) * A + a] = (float)s;
				}
			}
		free(dirs);
		free(ea);
		free(em);
		free(uv);
		f->D = A;
		f->rank_of = A;
		u = xmalloc((size_t)N * (A > 0 ? A : 1) * sizeof *u);
		rc = form_shared(f, x2, y2, dd->group, N, J, A, ridge, u, cause);
		if (rc == 0)
			for (int n = 0; n < N; n++) {
				int k;

				for (k = 0; f->answers[k] != dd->answer[n]; k++)
					;
				f->rank[n] = decomp_rank_among(u + (size_t)n * A, A, k);
			}
		break;
	}
	default:
		rc = fl_error(cause, "no decomposition form %d", (int)form);
	}
	if (rc == 0 && form != DECOMP_FORM_LOGIT)
		decomp_lens_ranks(m, dd->layer, u, N, dd->answer, f->rank);
	free(u);
	free(x2);
	free(y2);
	if (rc != 0)
		decomp_form_clear(f);
	return rc;
}
