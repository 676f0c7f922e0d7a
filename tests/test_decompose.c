/*
 * test_decompose.c - the regression behind the MLP decomposition.
 *
 * On synthetic data with planted coefficients and intercept the closed form
 * recovers them (exactly without noise, closely with it); collinear
 * regressors need the ridge. On the fixtures, the decomposition collected in
 * packed batches equals the one collected a prompt at a time, and its means
 * and fit quality match what each prompt's own cache gives.
 */
#include "autoconfig.h"

#include "check.h"
#include "fx.h"

#include "analysis/decompose.h"
#include "engine/pool.h"

static void
check_planted(void)
{
	enum { N = 64, J = 5, D = 48 };
	static float x[N * J * D], y[N * D], b[D], noise[N * D];
	const double beta[J] = { -1.0, 0.5, 2.0, 0.0, -0.25 };
	fl_regress f;
	char *cause = NULL;
	double maxb = 0, maxi = 0;
	int rc;

	fx_fill(x, (size_t)N * J * D, 1);
	fx_fill(b, D, 2);
	fx_fill(noise, (size_t)N * D, 3);
	for (int n = 0; n < N; n++)
		for (int i = 0; i < D; i++) {
			double v = b[i];

			for (int j = 0; j < J; j++)
				v += beta[j] * x[((size_t)n * J + j) * D + i];
			y[(size_t)n * D + i] = (float)v;
		}
	rc = regress_fit(&f, x, y, N, J, D, 0, &cause);
	check(rc == 0, "planted: the fit runs (%s)", cause ? cause : "ok");
	if (rc != 0)
		return;
	for (int j = 0; j < J; j++)
		if (fabs(f.beta[j] - beta[j]) > maxb)
			maxb = fabs(f.beta[j] - beta[j]);
	for (int i = 0; i < D; i++)
		if (fabs(f.intercept[i] - b[i]) > maxi)
			maxi = fabs(f.intercept[i] - b[i]);
	check(maxb < 1e-6, "planted: coefficients recovered (max error %.2e; beta "
	    "%.6f %.6f %.6f %.6f %.6f)", maxb, f.beta[0], f.beta[1], f.beta[2],
	    f.beta[3], f.beta[4]);
	check(maxi < 1e-5, "planted: the vector intercept recovered (max error %.2e)", maxi);
	check(fabs(f.r2 - 1) < 1e-9 && fabs(f.mean_cos - 1) < 1e-9,
	    "planted: R^2 = 1 and mean cosine = 1 without noise (%.12f, %.12f)",
	    f.r2, f.mean_cos);
	regress_clear(&f);

	/* the default ridge moves them by ~1e-6 */
	regress_fit(&f, x, y, N, J, D, -1, NULL);
	maxb = 0;
	for (int j = 0; j < J; j++)
		if (fabs(f.beta[j] - beta[j]) > maxb)
			maxb = fabs(f.beta[j] - beta[j]);
	check(maxb < 1e-4 && f.ridge == DECOMP_RIDGE, "planted: with the default "
	    "ridge %.0e, coefficients within 1e-4 (%.2e)", f.ridge, maxb);
	regress_clear(&f);

	/* with noise of a third of the regressors' spread */
	for (size_t i = 0; i < (size_t)N * D; i++)
		y[i] += 0.3f * noise[i];
	regress_fit(&f, x, y, N, J, D, 0, NULL);
	maxb = 0;
	for (int j = 0; j < J; j++)
		if (fabs(f.beta[j] - beta[j]) > maxb)
			maxb = fabs(f.beta[j] - beta[j]);
	check(maxb < 0.03 && f.r2 < 0.999 && f.r2 > 0.9 && f.mean_cos < 1,
	    "planted with noise: coefficients within 0.03 (%.3f), R^2 %.4f < 1", maxb,
	    f.r2);
	regress_clear(&f);

	/* regressor 1 = regressor 0: singular without the ridge, split with it */
	for (int n = 0; n < N; n++) {
		memcpy(x + ((size_t)n * J + 1) * D, x + (size_t)n * J * D, D * sizeof *x);
		for (int i = 0; i < D; i++) {
			double v = b[i];

			for (int j = 0; j < J; j++)
				v += beta[j] * x[((size_t)n * J + j) * D + i];
			y[(size_t)n * D + i] = (float)v;
		}
	}
	rc = regress_fit(&f, x, y, N, J, D, 0, &cause);
	check(rc == -1 && cause != NULL && strstr(cause, "singular"),
	    "collinear regressors without ridge: refused (%s)", cause ? cause : "");
	free(cause);
	cause = NULL;
	rc = regress_fit(&f, x, y, N, J, D, 1e-6, &cause);
	check(rc == 0 && fabs(f.beta[0] + f.beta[1] - (beta[0] + beta[1])) < 1e-3 &&
	    fabs(f.beta[0] - f.beta[1]) < 1e-3,
	    "collinear regressors with the ridge: the pair shares its sum "
	    "(%.4f + %.4f, planted sum %.2f)", rc == 0 ? f.beta[0] : 0,
	    rc == 0 ? f.beta[1] : 0, beta[0] + beta[1]);
	regress_clear(&f);
	rc = regress_fit(&f, x, y, 1, J, D, 0, &cause);
	check(rc == -1 && cause != NULL, "one sample is refused (%s)", cause ? cause : "");
	free(cause);
}

static void
check_fixture(const char *fx)
{
	fl_model *m = fx_model(fx);
	fl_task *t = fx_tiny_task();
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 1, false, false, false };
	fl_prompt_set ps;
	char *cause = NULL;

	if (m == NULL || t == NULL || task_prompts(&ps, m, t, &po, &cause) != 0) {
		if (cause)
			check(0, "%s: prompts: %s", fx, cause);
		free(cause);
		task_free(t);
		model_free(m);
		return;
	}
	for (int l = 0; l < m->cfg.n_layer; l++)
		for (int with_resid = 0; with_resid < 2; with_resid++) {
			fl_decomp d1, d4;
			fl_batch *b1 = batch_new(m, 1, ps.max_len), *b4 = batch_new(m, 4, ps.max_len);
			int D = m->cfg.d_model, J = decomp_regressors(m, with_resid);
			int rc1 = decomp_fit(&d1, b1, ps.p, ps.n, l, with_resid, -1, &cause);
			int rc4 = decomp_fit(&d4, b4, ps.p, ps.n, l, with_resid, -1, &cause);
			double db = 0, dm = 0, dc = 0, cos_sum = 0;
			double *mx = xcalloc((size_t)J * D, sizeof *mx);
			float *x = xmalloc((size_t)J * D * sizeof *x);
			fl_run *r = run_new(m, ps.max_len, ps.max_len);

			check(rc1 == 0 && rc4 == 0 && b1->passes == ps.n && b4->passes == 5,
			    "%s layer %d%s: fits a prompt at a time and 4 at a time "
			    "(%ld and %ld passes; %s)", fx, l, with_resid ? " +resid" : "",
			    b1->passes, b4->passes, cause ? cause : "ok");
			if (rc1 != 0 || rc4 != 0) {
				free(cause);
				cause = NULL;
				goto next;
			}
			for (int j = 0; j < J; j++)
				db = fmax(db, fabs(d1.fit.beta[j] - d4.fit.beta[j]));
			check(db < 1e-4 && fabs(d1.fit.r2 - d4.fit.r2) < 1e-5,
			    "%s layer %d%s: batched = one at a time (beta diff %.2e, R^2 "
			    "%.5f vs %.5f)", fx, l, with_resid ? " +resid" : "", db,
			    d1.fit.r2, d4.fit.r2);
			/* means and cosines from each prompt's own cache */
			for (int i = 0; i < ps.n; i++) {
				fl_cache *c = fx_cache(m, r, ps.p[i].ids, ps.p[i].n);
				fl_recon rec;

				decomp_prompt(&d4, m, c, c->n_tok - 1, x, NULL, NULL, &rec, NULL);
				for (size_t k = 0; k < (size_t)J * D; k++)
					mx[k] += x[k] / ps.n;
				cos_sum += rec.cos;
				cache_free(c);
			}
			for (size_t k = 0; k < (size_t)J * D; k++)
				dm = fmax(dm, fabs(mx[k] - d4.fit.mean_x[k]));
			dc = fabs(cos_sum / ps.n - d4.fit.mean_cos);
			check(dm < 1e-5 && dc < 1e-5 && d4.fit.r2 <= 1 && d4.fit.n == ps.n,
			    "%s layer %d%s: the collected regressors and the mean cosine "
			    "match each prompt's cache (%.2e, %.2e; R^2 %.4f, cos %.4f)", fx,
			    l, with_resid ? " +resid" : "", dm, dc, d4.fit.r2, d4.fit.mean_cos);
next:
			decomp_clear(&d1);
			decomp_clear(&d4);
			batch_free(b1);
			batch_free(b4);
			run_free(r);
			free(mx);
			free(x);
		}
	{
		fl_decomp d;
		fl_batch *b = batch_new(m, 4, ps.max_len);
		int rc = decomp_fit(&d, b, ps.p, ps.n, m->cfg.n_layer, false, -1, &cause);

		check(rc == -1 && cause && strstr(cause, "the model has layers 0 to"),
		    "%s: a layer past the last is refused (%s)", fx, cause ? cause : "");
		free(cause);
		batch_free(b);
	}
	prompt_set_clear(&ps);
	task_free(t);
	model_free(m);
}

/* |a - b| / |b|, or |a - b| when b is 0. */
static double
rel_diff(double a, double b)
{
	return b != 0 ? fabs(a - b) / fabs(b) : fabs(a - b);
}

/* max_i |a_i - b_i| / max_i |b_i| over a cJSON array b. */
static double
rel_diff_vec(const double *a, const float *af, const cJSON *b)
{
	double md = 0, mb = 0;
	int i = 0;
	const cJSON *e;

	cJSON_ArrayForEach(e, b) {
		double v = a != NULL ? a[i] : af[i];

		md = fmax(md, fabs(v - e->valuedouble));
		mb = fmax(mb, fabs(e->valuedouble));
		i++;
	}
	return mb > 0 ? md / mb : md;
}

static int *
json_ints(const cJSON *arr, int n)
{
	int *v = xcalloc((size_t)n, sizeof *v), i = 0;
	const cJSON *e;

	cJSON_ArrayForEach(e, arr)
		if (i < n)
			v[i++] = (int)e->valuedouble;
	return v;
}

/* The forms against numpy (tools/decomp-fixture wrote the fixture). */
static void
check_forms_numpy(const char *dir)
{
	char *path = fl_path_join(fx_root(), dir), *file = fl_path_join(path, "expected.json");
	char *text = fl_read_file(file, NULL, 0, NULL), *cause = NULL;
	cJSON *e = text != NULL ? cJSON_Parse(text) : NULL;
	const cJSON *forms;
	fl_model *m = NULL;
	fl_task *t = NULL;
	fl_prompt_set ps = { 0 };
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 1, false, false, false };
	fl_decomp_data dd = { 0 }, got = { 0 };
	fl_batch *b = NULL;
	size_t nx = 0, ny = 0;
	int N, J, D, bad = 0;

	check(e != NULL, "%s/expected.json is readable JSON", dir);
	if (e == NULL)
		goto out;
	N = cJSON_GetObjectItem(e, "n")->valueint;
	J = cJSON_GetObjectItem(e, "J")->valueint;
	D = cJSON_GetObjectItem(e, "D")->valueint;
	forms = cJSON_GetObjectItem(e, "forms");
	dd.layer = cJSON_GetObjectItem(e, "layer")->valueint;
	dd.n = N;
	dd.J = J;
	dd.D = D;
	dd.H = cJSON_GetObjectItem(e, "heads")->valueint;
	dd.with_resid = true;
	dd.x = fx_read_f32(dir, "x.f32", &nx);
	dd.y = fx_read_f32(dir, "y.f32", &ny);
	dd.group = json_ints(cJSON_GetObjectItem(e, "group"), N);
	dd.answer = json_ints(cJSON_GetObjectItem(e, "answer"), N);
	dd.subject = json_ints(cJSON_GetObjectItem(e, "subject"), N);
	check(dd.x != NULL && dd.y != NULL && nx == (size_t)N * J * D &&
	    ny == (size_t)N * D, "%s: x (%zu floats) and y (%zu) are (%d, %d, %d) and "
	    "(%d, %d)", dir, nx, ny, N, J, D, N, D);
	if (dd.x == NULL || dd.y == NULL || nx != (size_t)N * J * D)
		goto out;

	/* factlens' prompts and collection agree with the dump */
	m = fx_model(cJSON_GetObjectItem(e, "fixture")->valuestring);
	t = fx_tiny_task();
	if (m == NULL || t == NULL || task_prompts(&ps, m, t, &po, &cause) != 0)
		goto out;
	for (int n = 0; n < N && n < ps.n; n++)
		bad += ps.p[n].subject_pair != dd.group[n] || ps.p[n].answer != dd.answer[n] ||
		    ps.p[n].subject != dd.subject[n];
	check(ps.n == N && bad == 0, "%s: the %d prompts' subjects, answers and subject "
	    "tokens are the dump's (%d of %d differ)", dir, ps.n, bad, N);
	b = batch_new(m, 4, ps.max_len);
	if (decomp_collect(&got, b, ps.p, ps.n, dd.layer, true, &cause) == 0) {
		double mx = 0, my = 0, sx = 0, sy = 0;

		for (size_t i = 0; i < nx; i++) {
			mx = fmax(mx, fabs(got.x[i] - dd.x[i]));
			sx = fmax(sx, fabs(dd.x[i]));
		}
		for (size_t i = 0; i < ny; i++) {
			my = fmax(my, fabs(got.y[i] - dd.y[i]));
			sy = fmax(sy, fabs(dd.y[i]));
		}
		check(mx <= 1e-5 * sx && my <= 1e-5 * sy, "%s: the collected regressors "
		    "and MLP outputs are the reference forward's (maxdiff %.2e of %.2e, "
		    "%.2e of %.2e)", dir, mx, sx, my, sy);
	} else
		check(0, "%s: decomp_collect (%s)", dir, cause);
	free(cause);
	cause = NULL;

	for (int fo = 0; fo < DECOMP_FORM_COUNT; fo++) {
		const char *name = decomp_form_name(fo);
		const cJSON *x = cJSON_GetObjectItem(forms, name), *a;
		fl_decomp_form_fit f;
		int *rank, rbad = 0;
		double worst = 0;
		const char *worst_key = "";
		static const char *const keys[] = { "r2", "r2_heldout", "mean_cos",
		    "mean_cos_heldout", "baseline_cos", "baseline_r2_heldout" };

		if (x == NULL) {
			check(0, "%s: expected.json has the %s form", dir, name);
			continue;
		}
		if (decomp_form_fit(&f, m, &dd, fo, 0, &cause) != 0) {
			check(0, "%s %s: fits (%s)", dir, name, cause);
			free(cause);
			cause = NULL;
			continue;
		}
		for (int k = 0; k < 6; k++) {
			double v[6] = { f.r2, f.heldout.r2, f.mean_cos, f.heldout.mean_cos,
			    f.baseline_cos, f.heldout.baseline_r2 };
			double d = rel_diff(v[k], cJSON_GetObjectItem(x, keys[k])->valuedouble);

			if (!(d <= worst)) {
				worst = d;
				worst_key = keys[k];
			}
		}
		check(worst <= 1e-6, "%s %s: r2 %.9f, r2_heldout %.9f, the cosines and "
		    "the baseline are numpy's within 1e-6 relative (worst %s, %.2e; numpy "
		    "r2 %.9f, r2_heldout %.9f)", dir, name, f.r2, f.heldout.r2, worst_key,
		    worst, cJSON_GetObjectItem(x, "r2")->valuedouble,
		    cJSON_GetObjectItem(x, "r2_heldout")->valuedouble);
		if (fo == DECOMP_FORM_PER_PROMPT) {
			double md = 0;
			int n = 0;

			cJSON_ArrayForEach(a, cJSON_GetObjectItem(x, "beta_prompt")) {
				md = fmax(md, rel_diff_vec(f.beta_prompt + (size_t)n * f.J, NULL, a));
				n++;
			}
			check(n == N && md <= 1e-6, "%s %s: the %d prompts' coefficients are "
			    "numpy's (max relative diff %.2e)", dir, name, n, md);
		} else {
			double db = rel_diff_vec(f.fit.beta, NULL, cJSON_GetObjectItem(x, "beta"));
			double di = rel_diff_vec(NULL, f.fit.intercept,
			    cJSON_GetObjectItem(x, "intercept"));

			check(db <= 1e-6 && di <= 1e-6, "%s %s: coefficients (beta_0 %.6f) and "
			    "intercept are numpy's within 1e-6 relative (%.2e, %.2e)", dir,
			    name, f.fit.beta[0], db, di);
		}
		rank = json_ints(cJSON_GetObjectItem(x, "rank"), N);
		for (int n = 0; n < N; n++)
			rbad += rank[n] != f.rank[n];
		check(rbad == 0, "%s %s: each prompt's answer rank in the unexplained part "
		    "is numpy's (%d of %d differ; prompt 0: %d vs %d)", dir, name, rbad,
		    N, f.rank[0], rank[0]);
		free(rank);
		decomp_form_clear(&f);
	}
out:
	decomp_data_clear(&dd);
	decomp_data_clear(&got);
	batch_free(b);
	prompt_set_clear(&ps);
	task_free(t);
	model_free(m);
	cJSON_Delete(e);
	free(text);
	free(file);
	free(path);
}

/* A stop request from b's progress callback ends the fit at the next batch:
 * FL_STOPPED, no pass after it, an empty fit, nothing leaked (ASan). */
static void
check_cancel(const char *fx)
{
	fl_model *m = fx_model(fx);
	fl_task *t = fx_tiny_task();
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 1, false, false, false };
	fl_prompt_set ps;
	char *cause = NULL;

	if (m == NULL || t == NULL || task_prompts(&ps, m, t, &po, &cause) != 0) {
		free(cause);
		task_free(t);
		model_free(m);
		return;
	}
	/* 20 prompts in batches of 4: 5 passes */
	for (int stop = 1; stop <= 5; stop += 2) {
		fl_decomp d;
		fl_batch *b = batch_new(m, 4, ps.max_len);
		fx_stopper st = { stop, 0, 0, 0, false };
		int rc;

		b->progress = (fl_progress){ fx_stop_at, &st };
		b->total = ps.n;
		rc = decomp_fit(&d, b, ps.p, ps.n, m->cfg.n_layer - 1, true, -1, &cause);
		check(rc == FL_STOPPED && b->passes == stop && st.calls == stop &&
		    d.fit.beta == NULL && d.fit.intercept == NULL && cause == NULL,
		    "%s: a fit stopped after pass %d of 5 returns FL_STOPPED (%d) "
		    "after %ld passes with an empty fit", fx, stop, rc, b->passes);
		if (rc == 0)
			decomp_clear(&d);
		free(cause);
		cause = NULL;
		batch_free(b);
	}
	prompt_set_clear(&ps);
	task_free(t);
	model_free(m);
}

/* decomp_intercept_cosines on the demo model's last-layer intercepts of two
 * tasks against a cosine summed here in double, one pair at a time. */
static void
check_intercept_cosines(void)
{
	static const char *const names[2] = {
		"../../data/tasks/country_capital.json",
		"../../data/tasks/country_currency.json",
	};
	char *demo = fx_demo_dir(), *cause = NULL;
	fl_model *m;
	float *v;
	double cos[4], norm[2];
	int D, l;

	if (demo == NULL) {
		check(0, "intercept cosines: the demo model is not trained");
		return;
	}
	m = fx_model(demo);
	free(demo);
	if (m == NULL)
		return;
	D = m->cfg.d_model;
	l = m->cfg.n_layer - 1;
	v = xcalloc((size_t)2 * D, sizeof *v);
	for (int i = 0; i < 2; i++) {
		fl_task *t = fx_task(names[i]);
		fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 1, false, false, false };
		fl_prompt_set ps;
		fl_decomp d;
		fl_batch *b;

		if (t == NULL || task_prompts(&ps, m, t, &po, &cause) != 0) {
			check(0, "intercept cosines: %s: %s", names[i], cause ? cause : "no task");
			free(cause);
			task_free(t);
			goto out;
		}
		memset(&d, 0, sizeof d);
		b = batch_new(m, 32, ps.max_len);
		if (decomp_fit(&d, b, ps.p, ps.n, l, true, -1, &cause) != 0) {
			check(0, "intercept cosines: fit %s: %s", names[i], cause ? cause : "");
			free(cause);
		} else
			memcpy(v + (size_t)i * D, d.fit.intercept, (size_t)D * sizeof *v);
		decomp_clear(&d);
		batch_free(b);
		prompt_set_clear(&ps);
		task_free(t);
	}
	decomp_intercept_cosines(v, 2, D, cos, norm);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++) {
			double dot = 0, ni = 0, nj = 0, want;

			for (int k = 0; k < D; k++) {
				double a = v[(size_t)i * D + k], c = v[(size_t)j * D + k];

				dot += a * c;
				ni += a * a;
				nj += c * c;
			}
			want = dot / sqrt(ni * nj);
			check(fabs(cos[i * 2 + j] - want) < 1e-12, "intercept cos[%d][%d] "
			    "%.15f, summed here %.15f", i, j, cos[i * 2 + j], want);
			if (i == j)
				check(fabs(norm[i] - sqrt(ni)) < 1e-9 * sqrt(ni), "intercept "
				    "norm[%d] %.9f, summed here %.9f", i, norm[i], sqrt(ni));
		}
	check(fabs(cos[0] - 1) < 1e-12 && fabs(cos[3] - 1) < 1e-12,
	    "intercept cosine diagonal %.15f %.15f, not 1", cos[0], cos[3]);
	check(cos[1] == cos[2], "intercept cosines not symmetric: %.15f %.15f",
	    cos[1], cos[2]);
	check(cos[1] < 0.999, "capital and currency intercepts at layer %d have "
	    "cosine %.6f: the same vector", l, cos[1]);
	printf("# demo layer %d intercept cosine capital/currency %.4f, norms %.3f %.3f\n",
	    l, cos[1], norm[0], norm[1]);
out:
	free(v);
	model_free(m);
}

int
main(void)
{
	kern_set_threads(2);
	check_intercept_cosines();
	check_cancel("gpt2-f32");
	check_planted();
	check_forms_numpy("decomp-gpt2-f32");
	check_fixture("gpt2-f32");
	check_fixture("opt-f32");
	check_fixture("opt350-f32");
	(void)check_close;
	return check_done();
}
