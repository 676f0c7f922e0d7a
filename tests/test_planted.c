/*
 * test_planted.c - the analyses find mechanisms planted by hand
 * (tests/fixtures/planted-*, written by tools/make-planted; what each holds
 * is in its planted.json), on the prompts of tests/tasks/planted.json:
 *
 * - planted-intercept = planted-base + c in the last MLP's output bias, c a
 *   frequent-token direction (the unembeddings of " the", ",", "."): the
 *   last layer's fitted intercept moves by a vector with cosine > 0.99 to c,
 *   planting c lowers mean P(answer), and intercept removal brings it back to
 *   planted-base's baseline within 0.5 points;
 * - planted-base's head 0.2 attends to the subject and copies its embedding:
 *   path patching gives it the most negative effect and the mover score
 *   ranks it first (mean over the prompts);
 * - planted-linear's last MLP is exactly sum_h beta_h a_h + gamma resid_pre
 *   + b: the decomposition recovers beta, gamma and b to 1e-6.
 *
 * `test_planted --unplanted` runs the same checks where nothing is planted
 * (planted-base for planted-intercept, planted-linear for the mover,
 * planted-base's last MLP for the linear one, with planted-linear's truth):
 * it must fail, which shows that the checks can.
 */
#include "autoconfig.h"

#include "check.h"
#include "fx.h"

#include "analysis/decompose.h"
#include "analysis/eval.h"
#include "analysis/movers.h"
#include "analysis/patch.h"

static bool unplanted;

static cJSON *
planted_info(const char *fixture)
{
	char *dir = fl_path_join(fx_root(), fixture);
	char *path = fl_path_join(dir, "planted.json");
	char *text = fl_read_file(path, NULL, 0, NULL);
	cJSON *j = text ? cJSON_Parse(text) : NULL;

	check(j != NULL, "%s/planted.json reads", fixture);
	free(text);
	free(path);
	free(dir);
	return j;
}

static int
prompts_of(fl_prompt_set *ps, const fl_model *m, const fl_task *t, bool corrupt)
{
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 1, corrupt, false, false };
	char *cause = NULL;
	int rc = task_prompts(ps, m, t, &po, &cause);

	check(rc == 0, "prompts of the planted task (%s)", cause ? cause : "ok");
	free(cause);
	return rc;
}

/* The last layer's intercept over every prompt of the task, into out (D). */
static int
last_intercept(const fl_model *m, const fl_task *t, float *out)
{
	fl_prompt_set ps;
	fl_decomp d;
	fl_batch *b;
	char *cause = NULL;
	int rc;

	if (prompts_of(&ps, m, t, false) != 0)
		return -1;
	b = batch_new(m, 16, ps.max_len);
	rc = decomp_fit(&d, b, ps.p, ps.n, m->cfg.n_layer - 1, true, -1, &cause);
	check(rc == 0, "the last layer's decomposition fits (%s)", cause ? cause : "ok");
	if (rc == 0) {
		memcpy(out, d.fit.intercept, (size_t)m->cfg.d_model * sizeof *out);
		decomp_clear(&d);
	}
	free(cause);
	batch_free(b);
	prompt_set_clear(&ps);
	return rc;
}

static int
eval_zero_shot(fl_eval_result *r, const fl_model *m, const fl_task *t)
{
	fl_eval_opts o;
	char *cause = NULL;
	int rc;

	eval_opts_init(&o);
	rc = eval_task(r, m, t, &o, 0, NULL, &cause);
	check(rc == 0, "eval runs (%s)", cause ? cause : "ok");
	free(cause);
	return rc;
}

static void
check_intercept(const char *base_fx, const char *planted_fx, const fl_task *t)
{
	fl_model *base = fx_model(base_fx), *pl = fx_model(planted_fx);
	int D, ids_n[3];
	const char *tok[3] = { " the", ",", "." };
	float *b0 = NULL, *b1 = NULL, *row = NULL;
	double c[1024] = { 0 }, dot = 0, nd = 0, nc = 0, cosv;
	fl_eval_result r0, r1;

	if (base == NULL || pl == NULL)
		goto out;
	D = pl->cfg.d_model;
	if (D > 1024) {
		check(0, "planted width %d fits the test's buffer", D);
		goto out;
	}
	row = xcalloc((size_t)D, sizeof *row);
	/* c's direction from the planted model's own unembedding */
	for (int k = 0; k < 3; k++) {
		int *ids = NULL;
		int n = model_encode(pl, tok[k], strlen(tok[k]), &ids, NULL);

		check(n == 1, "\"%s\" is one token of the planted vocabulary (%d)", tok[k], n);
		ids_n[k] = n == 1 ? ids[0] : 0;
		free(ids);
		table_row(&pl->unembed, ids_n[k], row);
		for (int i = 0; i < D; i++)
			c[i] += row[i];
	}
	b0 = xcalloc((size_t)D, sizeof *b0);
	b1 = xcalloc((size_t)D, sizeof *b1);
	if (last_intercept(base, t, b0) != 0 || last_intercept(pl, t, b1) != 0)
		goto out;
	for (int i = 0; i < D; i++) {
		double d = (double)b1[i] - b0[i];

		dot += d * c[i];
		nd += d * d;
		nc += c[i] * c[i];
	}
	cosv = nd > 0 && nc > 0 ? dot / sqrt(nd * nc) : 0;
	check(cosv > 0.99, "%s: the fitted intercept moved by a vector of length "
	    "%.4f with cosine %.6f to c = W_U[the] + W_U[,] + W_U[.] (want > 0.99)",
	    planted_fx, sqrt(nd), cosv);

	if (eval_zero_shot(&r0, base, t) != 0)
		goto out;
	if (eval_zero_shot(&r1, pl, t) != 0) {
		eval_clear(&r0);
		goto out;
	}
	{
		double p0 = r0.cond[EVAL_BASELINE].mean_prob;
		double p1 = r1.cond[EVAL_BASELINE].mean_prob;
		double p1b = r1.cond[EVAL_INTERCEPT].mean_prob;

		check(p0 - p1 > 0.05, "%s: planting c lowers mean P(answer) by more than "
		    "5 points (%.2f%% -> %.2f%%)", planted_fx, 100 * p0, 100 * p1);
		check(fabs(p1b - p0) < 0.005, "%s: intercept removal brings mean P(answer) "
		    "back to %s's baseline within 0.5 points (%.2f%% vs %.2f%%)",
		    planted_fx, base_fx, 100 * p1b, 100 * p0);
	}
	eval_clear(&r0);
	eval_clear(&r1);
out:
	free(row);
	free(b0);
	free(b1);
	model_free(base);
	model_free(pl);
}

static void
check_mover(const char *fx, const char *truth_fx, const fl_task *t)
{
	fl_model *m = fx_model(fx);
	cJSON *info = planted_info(truth_fx), *mv;
	fl_prompt_set clean, corrupt;
	int want_l, want_h, L, H, best = -1, best_s = -1;
	char *cause = NULL;
	double *score = NULL;

	if (m == NULL || info == NULL)
		goto out;
	mv = cJSON_GetObjectItem(info, "mover");
	if (!cJSON_IsArray(mv) || cJSON_GetArraySize(mv) != 2) {
		check(0, "%s/planted.json names the mover head", truth_fx);
		goto out;
	}
	want_l = cJSON_GetArrayItem(mv, 0)->valueint;
	want_h = cJSON_GetArrayItem(mv, 1)->valueint;
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	if (prompts_of(&clean, m, t, false) != 0)
		goto out;
	if (prompts_of(&corrupt, m, t, true) != 0) {
		prompt_set_clear(&clean);
		goto out;
	}
	{
		fl_patch res;
		fl_batch *b = batch_new(m, 16, clean.max_len > corrupt.max_len ?
		    clean.max_len : corrupt.max_len);
		int rc = patch_heads(&res, b, clean.p, clean.n, corrupt.p, corrupt.n,
		    NULL, &cause);

		check(rc == 0, "%s: path patching runs (%s)", fx, cause ? cause : "ok");
		if (rc == 0) {
			double second = INFINITY;

			for (int k = 0; k < L * H; k++)
				if (best < 0 || res.effect[k] < res.effect[best])
					best = k;
			for (int k = 0; k < L * H; k++)
				if (k != best && res.effect[k] < second)
					second = res.effect[k];
			check(best == want_l * H + want_h, "%s: path patching ranks head "
			    "%d.%d first (most negative effect: head %d.%d, %.1f%%; next "
			    "%.1f%%)", fx, want_l, want_h, best / H, best % H,
			    res.effect[best], second);
			{
				bool *mov = xcalloc((size_t)L * H, sizeof *mov);
				int n_mov = patch_movers(&res, PATCH_MOVER_EFFECT,
				    PATCH_MOVER_R, mov);
				int k = want_l * H + want_h;

				check(mov[k] && n_mov >= 1 && n_mov <= 2, "%s: the paper's "
				    "criterion (effect <= -%.0f%%, r >= %.1f) stars the planted "
				    "head (effect %.1f%%, r %.2f) and %d other", fx,
				    PATCH_MOVER_EFFECT, PATCH_MOVER_R, res.effect[k],
				    res.pearson[k], n_mov - mov[k]);
				free(mov);
			}
			patch_clear(&res);
		}
		batch_free(b);
	}
	/* the single-prompt mover score, averaged over the prompts */
	score = xcalloc((size_t)L * H, sizeof *score);
	{
		fl_run *run = run_new(m, clean.max_len, clean.max_len);
		fl_mover *mo = xcalloc((size_t)L * H, sizeof *mo);
		int ok = 0;

		for (int i = 0; i < clean.n; i++) {
			const fl_prompt *p = &clean.p[i];
			fl_cache *c = fx_cache(m, run, p->ids, p->n);

			if (movers_score(mo, m, c, p->n - 1, p->subj_pos, p->subj_len,
			    p->subject, MOVERS_THRESHOLD, NULL) == 0) {
				ok++;
				for (int k = 0; k < L * H; k++)
					score[k] += mo[k].score / clean.n;
			}
			cache_free(c);
		}
		check(ok == clean.n, "%s: mover scores on all %d prompts", fx, clean.n);
		for (int k = 0; k < L * H; k++)
			if (best_s < 0 || score[k] > score[best_s])
				best_s = k;
		{
			double second = -1;

			for (int k = 0; k < L * H; k++)
				if (k != best_s && score[k] > second)
					second = score[k];
			check(best_s == want_l * H + want_h, "%s: the mover score ranks head "
			    "%d.%d first (best: head %d.%d, mean score %.3f; next %.3f)", fx,
			    want_l, want_h, best_s / H, best_s % H, score[best_s], second);
		}
		free(mo);
		run_free(run);
	}
	prompt_set_clear(&clean);
	prompt_set_clear(&corrupt);
out:
	free(cause);
	free(score);
	cJSON_Delete(info);
	model_free(m);
}

static void
check_linear(const char *fx, const char *truth_fx, const fl_task *t)
{
	fl_model *m = fx_model(fx);
	cJSON *info = planted_info(truth_fx);
	fl_prompt_set ps;
	fl_decomp d;
	fl_batch *b;
	char *cause = NULL;
	int rc, layer, H, D;
	double want[64], maxb = 0, maxi = 0;
	const cJSON *beta, *icpt;

	if (m == NULL || info == NULL)
		goto out;
	beta = cJSON_GetObjectItem(info, "beta");
	icpt = cJSON_GetObjectItem(info, "intercept");
	layer = cJSON_GetObjectItem(info, "layer")->valueint;
	if (unplanted)
		layer = m->cfg.n_layer - 1;
	H = m->cfg.n_head;
	D = m->cfg.d_model;
	if (!cJSON_IsArray(beta) || cJSON_GetArraySize(beta) != H || H >= 64 ||
	    !cJSON_IsArray(icpt) || cJSON_GetArraySize(icpt) != D) {
		check(0, "%s/planted.json matches %s's heads and width", truth_fx, fx);
		goto out;
	}
	for (int h = 0; h < H; h++)
		want[h] = cJSON_GetArrayItem(beta, h)->valuedouble;
	want[H] = cJSON_GetObjectItem(info, "gamma")->valuedouble;
	if (prompts_of(&ps, m, t, false) != 0)
		goto out;
	b = batch_new(m, 16, ps.max_len);
	rc = decomp_fit(&d, b, ps.p, ps.n, layer, true, 0, &cause);
	check(rc == 0, "%s: layer %d's decomposition fits without ridge (%s)", fx,
	    layer, cause ? cause : "ok");
	if (rc == 0) {
		for (int j = 0; j <= H; j++)
			maxb = fmax(maxb, fabs(d.fit.beta[j] - want[j]));
		for (int i = 0; i < D; i++)
			maxi = fmax(maxi, fabs(d.fit.intercept[i] -
			    cJSON_GetArrayItem(icpt, i)->valuedouble));
		check(maxb < 1e-6, "%s: the coefficients of the %d heads and resid_pre are "
		    "recovered to 1e-6 (max error %.2e; beta %.7f %.7f %.7f %.7f, gamma "
		    "%.7f)", fx, H, maxb, d.fit.beta[0], d.fit.beta[1 % (H + 1)],
		    d.fit.beta[2 % (H + 1)], d.fit.beta[3 % (H + 1)], d.fit.beta[H]);
		check(maxi < 1e-6, "%s: the intercept is recovered to 1e-6 (max error "
		    "%.2e over %d entries)", fx, maxi, D);
		check(d.fit.r2 > 1 - 1e-9, "%s: R^2 = 1 (1 - R^2 = %.2e, mean cos %.12f)",
		    fx, 1 - d.fit.r2, d.fit.mean_cos);
		decomp_clear(&d);
	}
	free(cause);
	batch_free(b);
	prompt_set_clear(&ps);
out:
	cJSON_Delete(info);
	model_free(m);
}

int
main(int argc, char **argv)
{
	fl_task *t;

	unplanted = argc > 1 && strcmp(argv[1], "--unplanted") == 0;
	t = fx_task("../tasks/planted.json");
	if (t == NULL)
		return check_done();
	if (!unplanted) {
		check_intercept("planted-base", "planted-intercept", t);
		check_mover("planted-base", "planted-base", t);
		check_linear("planted-linear", "planted-linear", t);
	} else {
		puts("# --unplanted: every check below should fail");
		check_intercept("planted-base", "planted-base", t);
		check_mover("planted-linear", "planted-base", t);
		check_linear("planted-base", "planted-linear", t);
	}
	task_free(t);
	return check_done();
}
