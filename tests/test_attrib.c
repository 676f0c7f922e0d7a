/*
 * test_attrib.c - direct contributions and mover scores.
 *
 * The contributions, with the LayerNorms' scales frozen (the final LN in a
 * pre-LN model, every block LN in a post-LN one), must add up (with the
 * embeddings and the biases) to the model's own logit and logit minus mean
 * logit within 1e-3, on every fixture and on the demo model when it
 * exists, with and without the final-layer mask. Each must also be what the
 * engine itself gives when that one component is removed with every LN
 * scale frozen and every later component held at its clean output - the
 * claim of attrib.h, checked through hooks rather than by the same
 * algebra. Intercept removal must show up as `rest` in a pre-LN model and
 * in the last MLP's term in a post-LN one (mitigate.h). Mover scores must
 * agree with the contributions and the patterns.
 */
#include "autoconfig.h"

#include "check.h"
#include "fx.h"

#include "analysis/attrib.h"
#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "analysis/movers.h"
#include "engine/pool.h"
#include "engine/readout.h"

#define SUM_TOL 1e-3

/* The largest difference between two attributions over every field: 0 when
 * they agree to the bit. */
static double
attrib_maxdiff(const fl_attrib *x, const fl_attrib *y)
{
	int L = x->n_layer, H = x->n_head;
	double maxd = 0;

#define NOTE(u, v) do {							\
	double d_ = fabs((u) - (v));					\
	if (isnan(d_) || d_ > maxd)					\
		maxd = isnan(d_) ? INFINITY : d_;			\
} while (0)
	if (y->n_layer != L || y->n_head != H)
		return INFINITY;
	NOTE(x->embed, y->embed);
	NOTE(x->pos_embed, y->pos_embed);
	for (int i = 0; i < L * H; i++)
		NOTE(x->head[i], y->head[i]);
	for (int l = 0; l < L; l++) {
		NOTE(x->attn_bias[l], y->attn_bias[l]);
		NOTE(x->mlp[l], y->mlp[l]);
	}
	NOTE(x->ln_bias, y->ln_bias);
	NOTE(x->rest, y->rest);
	NOTE(x->sum, y->sum);
	NOTE(x->logit, y->logit);
#undef NOTE
	return maxd;
}

/* attrib_direct with the caller's mean unembedding row must give, to the
 * bit, what it gives computing the row itself (d, from a NULL call); and
 * the row must be the one used: a zero row makes logit - mean the logit. */
static void
check_given_mean(const char *label, const fl_model *m, const fl_cache *c,
    int token, const fl_attrib *a, const fl_attrib *d)
{
	fl_attrib a2, d2, z;
	float *ubar = xmalloc((size_t)m->cfg.d_proj * sizeof *ubar);
	float *zero = xcalloc((size_t)m->cfg.d_proj, sizeof *zero);
	int T = c->n_tok;
	char *cause = NULL;

	attrib_mean_unembed(m, ubar);
	if (attrib_direct(&a2, &d2, m, c, T - 1, token, ubar, &cause) != 0 ||
	    attrib_direct(NULL, &z, m, c, T - 1, token, zero, &cause) != 0) {
		check(0, "%s: attrib_direct with a given mean: %s", label, cause);
		free(cause);
		free(zero);
		free(ubar);
		return;
	}
	check(attrib_maxdiff(a, &a2) == 0 && attrib_maxdiff(d, &d2) == 0,
	    "%s: a given mean unembedding row gives what NULL gives, to the bit "
	    "(maxdiff %.3g to the logit, %.3g to logit - mean)", label,
	    attrib_maxdiff(a, &a2), attrib_maxdiff(d, &d2));
	check(attrib_maxdiff(a, &z) == 0,
	    "%s: the given row is the one used: a zero row gives the logit's "
	    "attribution (maxdiff %.3g)", label, attrib_maxdiff(a, &z));
	attrib_clear(&z);
	attrib_clear(&d2);
	attrib_clear(&a2);
	free(zero);
	free(ubar);
}

static void
check_sums(const char *label, const fl_model *m, const fl_cache *c, int token,
    bool expect_rest)
{
	fl_attrib a, d;
	char *cause = NULL;
	int V = m->cfg.n_vocab, T = c->n_tok;
	double mean = 0;
	const float *lg = c->logits;

	if (attrib_direct(&a, &d, m, c, T - 1, token, NULL, &cause) != 0) {
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
	} else if (m->cfg.ln_before) {
		check(fabs(a.sum + a.rest - a.logit) < SUM_TOL && fabs(a.rest) > 1e-2,
		    "%s: with the intercept removed, components + rest = logit "
		    "(%.6f + %.6f vs %.6f)", label, a.sum, a.rest, a.logit);
	} else {
		check(fabs(a.sum - a.logit) < SUM_TOL && fabs(a.rest) < SUM_TOL,
		    "%s: post-LN, the intercept comes off the last MLP's output: the "
		    "components still sum to the logit (%.6f vs %.6f, rest %.2e)", label,
		    a.sum, a.logit, a.rest);
	}
	check_given_mean(label, m, c, token, &a, &d);
	attrib_clear(&a);
	attrib_clear(&d);
}

/* Hooks that hold a pass to a clean run: every LayerNorm scale frozen at
 * the cache's, every attention and MLP output from layer `from` on (the
 * MLP of `from` included when mlp_too) restored to the cache's, at every
 * position. What is left of a removal is its direct effect. */
typedef struct {
	const fl_cache	*c;
	int		 from;
	bool		 attn_too;	/* restore attn_out of `from` as well */
	bool		 mlp_too;
} freeze;

static int
freeze_scale(void *ud, fl_act *a)
{
	const freeze *f = ud;
	const float *src = a->point == HOOK_LN1_SCALE ? f->c->ln1_scale :
	    a->point == HOOK_LN2_SCALE ? f->c->ln2_scale : f->c->lnf_scale;
	int T = a->shape[0];

	if (a->layer >= 0)
		src += (size_t)a->layer * T;
	memcpy(a->data, src, (size_t)T * sizeof *a->data);
	return FL_HOOK_CONTINUE;
}

static int
freeze_out(void *ud, fl_act *a)
{
	const freeze *f = ud;
	int l = a->layer, T = a->shape[0], D = a->shape[1];
	bool attn = a->point == HOOK_ATTN_OUT;

	if (l < f->from || (l == f->from && attn && !f->attn_too) ||
	    (l == f->from && !attn && !f->mlp_too))
		return FL_HOOK_CONTINUE;
	memcpy(a->data, (attn ? f->c->attn_out : f->c->mlp_out) + (size_t)l * T * D,
	    (size_t)T * D * sizeof *a->data);
	return FL_HOOK_CONTINUE;
}

/* Zeroes the last row of the activation, or one head's last row of a
 * (T, H, D) result. */
static int
zero_last(void *ud, fl_act *a)
{
	const int *head = ud;
	size_t w = (size_t)a->shape[1] * (a->ndim == 3 ? (size_t)a->shape[2] : 1);
	float *row = a->data + (size_t)(a->shape[0] - 1) * w;

	if (head != NULL)
		memset(row + (size_t)*head * a->shape[2], 0, (size_t)a->shape[2] * sizeof *row);
	else
		memset(row, 0, w * sizeof *row);
	return FL_HOOK_CONTINUE;
}

/* The logit of `token` when head (l, h) (or, with h < 0, the MLP of l) is
 * removed at the last position, every LN scale frozen and every later
 * component held: logit - contribution, if attrib.h is right. */
static double
logit_without(const fl_model *m, fl_run *r, const fl_cache *c, int l, int h,
    int token)
{
	int T = c->n_tok, n = 0;
	/* a head's removal keeps its layer's MLP clean; an MLP's does not */
	freeze f = { c, l, false, h >= 0 };
	fl_hook hooks[8];
	fl_pass p = { 0 };
	float *lg = xmalloc((size_t)m->cfg.n_vocab * sizeof *lg);
	double v;

	hooks[n++] = (fl_hook){ HOOK_LN1_SCALE, -1, freeze_scale, &f };
	hooks[n++] = (fl_hook){ HOOK_LN2_SCALE, -1, freeze_scale, &f };
	if (m->cfg.final_ln)
		hooks[n++] = (fl_hook){ HOOK_LNF_SCALE, -1, freeze_scale, &f };
	if (h >= 0)
		hooks[n++] = (fl_hook){ HOOK_RESULT, l, zero_last, &h };
	else
		hooks[n++] = (fl_hook){ HOOK_MLP_OUT, l, zero_last, NULL };
	/* after the removal at the same point, so its own output stays zero */
	hooks[n++] = (fl_hook){ HOOK_ATTN_OUT, -1, freeze_out, &f };
	hooks[n++] = (fl_hook){ HOOK_MLP_OUT, -1, freeze_out, &f };
	p.hooks = hooks;
	p.n_hooks = n;
	p.logits = lg;
	run_forward(r, c->ids, &T, 1, &p, NULL);
	v = lg[token];
	free(lg);
	return v;
}

/* Each component's contribution, by the removal above and by carrying its
 * vector forward through the frozen LNs (attrib_vocab), against the
 * direction attrib_direct carries back. */
static void
check_direct_effects(const char *name, const fl_model *m, fl_run *r,
    const fl_cache *c, int token)
{
	int L = m->cfg.n_layer, H = m->cfg.n_head, D = m->cfg.d_model, T = c->n_tok;
	int V = m->cfg.n_vocab;
	fl_attrib a;
	double dmax = 0, fmax_ = 0, logit;
	float *lg = xmalloc((size_t)V * sizeof *lg), *res = xmalloc((size_t)D * sizeof *res);

	if (attrib_direct(&a, NULL, m, c, T - 1, token, NULL, NULL) != 0) {
		check(0, "%s: attrib_direct for the removals", name);
		free(lg);
		free(res);
		return;
	}
	logit = a.logit;
	for (int l = 0; l < L; l++) {
		for (int h = -1; h < H; h++) {
			double want = h < 0 ? a.mlp[l] : a.head[l * H + h];
			double got = logit - logit_without(m, r, c, l, h, token);

			dmax = fmax(dmax, fabs(got - want));
			if (h < 0)
				attrib_vocab(m, c, T - 1, ATTRIB_SITE_MLP(l),
				    c->mlp_out + ((size_t)l * T + T - 1) * D, 1, lg);
			else {
				model_head_result(m, l, h, c->z + ((size_t)l * T + T - 1) * D, res);
				attrib_vocab(m, c, T - 1, ATTRIB_SITE_ATTN(l), res, 1, lg);
			}
			fmax_ = fmax(fmax_, fabs(lg[token] - want));
		}
	}
	check(dmax < 1e-4, "%s: every head's and MLP's contribution = the logit it "
	    "takes away when removed, LN scales frozen and later components held "
	    "(max diff %.2e)", name, dmax);
	check(fmax_ < 1e-4, "%s: and = its vector carried forward through the frozen "
	    "LNs to the logits (max diff %.2e)", name, fmax_);
	attrib_clear(&a);
	free(lg);
	free(res);
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
	check_direct_effects(name, m, r, c, p.answer);

	/* movers agree with the contributions and the patterns */
	{
		fl_mover *mv = xcalloc((size_t)L * H, sizeof *mv);
		fl_attrib a;
		int T = p.n, ok_logit = 1, ok_attn = 1, ok_rank = 1;

		check(movers_score(mv, m, c, T - 1, p.subj_pos, p.subj_len, p.subject,
		    MOVERS_THRESHOLD, &cause) == 0, "%s: movers_score runs", name);
		attrib_direct(&a, NULL, m, c, T - 1, p.subject, NULL, NULL);
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
	rc = attrib_direct(NULL, NULL, m, c, p.n, 0, NULL, &cause);
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
