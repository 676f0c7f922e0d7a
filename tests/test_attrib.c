/*
 * test_attrib.c - direct contributions and mover scores.
 *
 * The contributions, with the final LN's scale frozen, must add up (with
 * the embeddings and the biases) to the model's own logit and logit minus
 * mean logit within 1e-3, on every fixture and on the demo model when it
 * exists, with and without the final-layer mask; an intervention outside
 * the components (intercept removal) must show up as `rest` and nothing
 * else. Mover scores must agree with the contributions and the patterns.
 */
#include "check.h"
#include "fx.h"

#include "analysis/attrib.h"
#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "analysis/movers.h"
#include "engine/kernels.h"

#define SUM_TOL 1e-3

static void
check_sums(const char *label, const fl_model *m, const fl_cache *c, int token,
    bool expect_rest)
{
	fl_attrib a, d;
	char *cause = NULL;
	int V = m->cfg.n_vocab, T = c->n_tok;
	double mean = 0;
	const float *lg = c->logits;

	if (attrib_direct(&a, &d, m, c, T - 1, token, &cause) != 0) {
		check(0, "%s: attrib_direct: %s", label, cause);
		free(cause);
		return;
	}
	for (int v = 0; v < V; v++)
		mean += lg[v];
	mean /= V;
	check(fabs(a.logit - lg[token]) < 1e-4 && fabs(d.logit - (lg[token] - mean)) < 1e-4,
	    "%s: the reference values are the run's logit %.5f and logit - mean %.5f "
	    "(got %.5f, %.5f)", label, lg[token], lg[token] - mean, a.logit, d.logit);
	if (!expect_rest) {
		check(fabs(a.sum - a.logit) < SUM_TOL && fabs(a.rest) < SUM_TOL,
		    "%s: contributions sum to the logit: %.6f vs %.6f (diff %.2e, rest %.2e)",
		    label, a.sum, a.logit, a.sum - a.logit, a.rest);
		check(fabs(d.sum - d.logit) < SUM_TOL && fabs(d.rest) < SUM_TOL,
		    "%s: contributions sum to logit - mean: %.6f vs %.6f (diff %.2e)",
		    label, d.sum, d.logit, d.sum - d.logit);
	} else {
		check(fabs(a.sum + a.rest - a.logit) < SUM_TOL && fabs(a.rest) > 1e-2,
		    "%s: with the intercept removed, components + rest = logit "
		    "(%.6f + %.6f vs %.6f)", label, a.sum, a.rest, a.logit);
	}
	attrib_clear(&a);
	attrib_clear(&d);
}

static void
check_model(const char *name, fl_model *m)
{
	fl_prompt p;
	fl_run *r;
	fl_cache *c;
	fl_mitigation mit = { 0 };
	char label[160], *cause = NULL;
	int V = m->cfg.n_vocab, D = m->cfg.d_model, L = m->cfg.n_layer, H = m->cfg.n_head;
	float *icpt;
	int top, rc;

	if (prompt_make(&p, m, "The capital of France is", 15, 6, "Paris", true,
	    &cause) != 0) {
		check(0, "%s: prompt: %s", name, cause);
		free(cause);
		return;
	}
	r = run_new(m, p.n, p.n);
	c = fx_cache(m, r, p.ids, p.n);
	lens_topk(c->logits, V, 1, &top, NULL);
	snprintf(label, sizeof label, "%s: answer token", name);
	check_sums(label, m, c, p.answer, false);
	snprintf(label, sizeof label, "%s: top token", name);
	check_sums(label, m, c, top, false);
	snprintf(label, sizeof label, "%s: last vocabulary id", name);
	check_sums(label, m, c, V - 1, false);

	/* movers agree with the contributions and the patterns */
	{
		fl_mover *mv = xcalloc((size_t)L * H, sizeof *mv);
		fl_attrib a;
		int T = p.n, ok_logit = 1, ok_attn = 1, ok_rank = 1;

		check(movers_score(mv, m, c, T - 1, p.subj_pos, p.subj_len, p.subject,
		    MOVERS_THRESHOLD, &cause) == 0, "%s: movers_score runs", name);
		attrib_direct(&a, NULL, m, c, T - 1, p.subject, NULL);
		for (int l = 0; l < L; l++)
			for (int h = 0; h < H; h++) {
				const fl_mover *o = &mv[l * H + h];
				double want = 0;

				for (int j = 0; j < p.subj_len; j++)
					want += c->pattern[(((size_t)l * H + h) * T + T - 1) * T +
					    p.subj_pos + j];
				if (fabs(o->logit - a.head[l * H + h]) > 1e-4)
					ok_logit = 0;
				if (fabs(o->attn - want) > 1e-6 || o->attn < 0 || o->attn > 1.0001)
					ok_attn = 0;
				if (o->rank < 1 || o->rank > V || o->score < -1e-6 ||
				    o->score > o->attn + 1e-6 ||
				    o->mover != (o->score >= MOVERS_THRESHOLD))
					ok_rank = 0;
			}
		check(ok_logit, "%s: a head's subject logit equals its direct "
		    "contribution to the subject", name);
		check(ok_attn, "%s: attention to the subject is the pattern's sum over "
		    "the subject's tokens", name);
		check(ok_rank, "%s: ranks in 1..V, 0 <= score <= attention, flags follow "
		    "the threshold", name);
		attrib_clear(&a);
		free(mv);
		mv = xcalloc((size_t)L * H, sizeof *mv);
		rc = movers_score(mv, m, c, 1, 2, 1, p.subject, 0.25f, &cause);
		check(rc == -1 && cause != NULL,
		    "%s: a subject after the query is refused (%s)", name, cause ? cause : "");
		free(cause);
		cause = NULL;
		free(mv);
	}

	/* under the final-layer mask */
	mit.mask = true;
	if (mitigate_rerun(r, m, c, &mit, &cause) == 0) {
		snprintf(label, sizeof label, "%s: masked run", name);
		check_sums(label, m, c, p.answer, false);
	} else {
		check(0, "%s: masked re-run: %s", name, cause);
		free(cause);
		cause = NULL;
	}
	/* intercept removal edits the final residual outside the components */
	icpt = xmalloc((size_t)D * sizeof *icpt);
	fx_fill(icpt, (size_t)D, 5);
	for (int i = 0; i < D; i++)
		icpt[i] *= 3.0f;
	mit.mask = false;
	mit.intercept = icpt;
	if (mitigate_rerun(r, m, c, &mit, &cause) == 0) {
		snprintf(label, sizeof label, "%s: intercept removed", name);
		check_sums(label, m, c, p.answer, true);
	} else {
		check(0, "%s: re-run: %s", name, cause);
		free(cause);
	}
	free(icpt);
	rc = attrib_direct(NULL, NULL, m, c, p.n, 0, &cause);
	check(rc == -1 && cause != NULL,
	    "%s: a position past the prompt is refused (%s)", name, cause ? cause : "");
	free(cause);
	cache_free(c);
	run_free(r);
	prompt_clear(&p);
}

int
main(void)
{
	char *demo;

	kern_set_threads(2);
	for (int i = 0; i < FX_COUNT; i++) {
		fl_model *m = fx_model(fx_names[i]);

		if (m != NULL)
			check_model(fx_names[i], m);
		model_free(m);
	}
	if ((demo = fx_demo_dir()) != NULL) {
		fl_model *m = fx_model(demo);

		if (m != NULL)
			check_model("demo", m);
		model_free(m);
		free(demo);
	} else
		printf("# the demo model (data/models/demo) is not there yet: skipped\n");
	{
		double x[4] = { 1, 2, 3, 4 }, y[4] = { 2, 4, 6, 8 }, z[4] = { 8, 6, 4, 2 };
		double k[4] = { 1, 1, 1, 1 };

		check(fabs(movers_pearson(x, y, 4) - 1) < 1e-12 &&
		    fabs(movers_pearson(x, z, 4) + 1) < 1e-12 &&
		    isnan(movers_pearson(x, k, 4)) && isnan(movers_pearson(x, y, 1)),
		    "Pearson's r: 1, -1, and NAN without variance");
	}
	(void)check_close;
	return check_done();
}
