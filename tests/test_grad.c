/*
 * test_grad.c - the backward pass (engine/backward.h).
 *
 * - Central finite differences in double: for every hook point the
 *   backward names, in every layer, entries spread over the activation
 *   (the last position's among them) are moved by +-eps through a hook
 *   edit and the pass re-run; (metric(+eps) - metric(-eps)) / 2 eps, the
 *   metric read in double from the cache's final row, must match the
 *   gradient to a fraction of the hook's largest gradient (float32 passes
 *   bound how close a difference quotient can come: see FD_TOL, FD_FLOOR).
 * - PyTorch: torch.autograd's gradients at every hook of the fixture's
 *   prompt (tools/make-grad-fixtures: grad.json and grad_*.f32), per hook,
 *   within GRAD_TORCH_TOL of that hook's largest gradient.
 * - Both metrics: logit(answer) - logit(distractor), and with no
 *   distractor logit(answer) - the mean logit.
 * - Attribution patching (analysis/atp.h): each head's estimate is the
 *   derivative of M along the patch, z_clean + a (z_corrupt - z_clean) at
 *   every position, at a = 0 (central differences in a); the exact patch is
 *   that path's value at a = 1; a corrupted prompt equal to the clean one
 *   estimates and patches 0 everywhere.
 * - Over a task (atp_task): each prompt's twin rebuilt here by replacing
 *   the subject's text in the clean prompt, the first pair from the drawn
 *   one with the same token count and another answer token, estimated
 *   alone and averaged: the task's map, prompt and skip counts.
 */
#include "autoconfig.h"

#include "check.h"
#include "fx.h"

#include "analysis/atp.h"
#include "engine/backward.h"
#include "engine/pool.h"

/* A difference quotient of float32 passes is good to about 1e-3 of the
 * largest gradient at eps 3e-3: the pass's rounding / 2 eps, plus eps^2
 * times the third derivative (at 1e-2 the second term, at 1e-3 the first
 * exceed it); the backward itself is float32 too. */
#define FD_EPS 3e-3
#define FD_TOL 3e-3
/* The pass's rounding is absolute, not relative to a hook's gradients: a
 * hook whose gradients are all small (a late layer's scale: 0.04) is held
 * to FD_TOL of FD_FLOOR instead, about 3e-4 absolute, which is what the
 * quotient's noise is in builds with and without -march=native. */
#define FD_FLOOR 0.1
#define FD_SAMPLES 24		/* entries per hook and layer */
#define GRAD_TORCH_TOL 1e-5

static const fl_hook_point fd_points[] = {
	HOOK_EMBED, HOOK_RESID_PRE, HOOK_LN1_SCALE, HOOK_LN1_NORMALIZED, HOOK_Q,
	HOOK_K, HOOK_V, HOOK_ROT_Q, HOOK_ROT_K, HOOK_ATTN_SCORES, HOOK_PATTERN,
	HOOK_Z, HOOK_ATTN_OUT, HOOK_RESID_MID, HOOK_LN2_SCALE, HOOK_LN2_NORMALIZED,
	HOOK_MLP_PRE, HOOK_MLP_PRE_LINEAR, HOOK_MLP_POST, HOOK_MLP_OUT,
	HOOK_RESID_POST, HOOK_LNF_SCALE, HOOK_LNF_NORMALIZED,
};

typedef struct {
	size_t	 at;
	float	 delta;
} nudge;

/* ReLU's kink: a difference quotient across it says nothing about the
 * derivative on either side. The clean pass's pre-activations (L, T, F)
 * are recorded; a nudged pass that flips the sign of one is not used. */
typedef struct {
	float	*pre;		/* (L, T, F) */
	size_t	 per;		/* T F */
	bool	 record, flipped;
} kink_watch;

static int
kink_hook(void *ud, fl_act *a)
{
	kink_watch *k = ud;
	float *p = k->pre + (size_t)a->layer * k->per;

	for (size_t i = 0; i < k->per; i++)
		if (k->record)
			p[i] = a->data[i];
		else if ((p[i] > 0) != (a->data[i] > 0))
			k->flipped = true;
	return FL_HOOK_CONTINUE;
}

static int
nudge_hook(void *ud, fl_act *a)
{
	const nudge *n = ud;

	a->data[n->at] += n->delta;
	return FL_HOOK_CONTINUE;
}

/* The metric of a pass with one entry of (pt, layer) moved by delta. */
static double
metric_nudged(const fl_model *m, fl_run *r, fl_cache *c, const int *ids, int T,
    const float *dir, fl_hook_point pt, int layer, size_t at, float delta,
    kink_watch *kw)
{
	nudge n = { at, delta };
	fl_hook h[2] = { { pt, layer, nudge_hook, &n },
	    { HOOK_MLP_PRE, -1, kink_hook, kw } };
	fl_pass p = { 0 };
	const float *row;
	char *cause = NULL;
	double s = 0;

	p.hooks = h;
	p.n_hooks = kw != NULL ? 2 : 1;
	p.cache = c;
	p.no_logits = true;
	if (run_forward(r, ids, &T, 1, &p, &cause) != 0) {
		check(0, "nudged pass: %s", cause);
		free(cause);
		return NAN;
	}
	row = c->lnf + (size_t)(T - 1) * m->cfg.d_model;
	for (int i = 0; i < m->cfg.d_model; i++)
		s += (double)dir[i] * row[i];
	return s;
}

static bool
point_applies(const fl_model *m, fl_hook_point pt)
{
	const fl_config *c = &m->cfg;

	if ((pt == HOOK_ROT_Q || pt == HOOK_ROT_K) && !c->rotary)
		return false;
	if (pt == HOOK_MLP_PRE_LINEAR && !c->gated_mlp)
		return false;
	if ((pt == HOOK_LNF_SCALE || pt == HOOK_LNF_NORMALIZED) && !c->final_ln)
		return false;
	return true;
}

static bool
point_in_block(fl_hook_point pt)
{
	return pt != HOOK_EMBED && pt != HOOK_POS_EMBED && pt != HOOK_LNF_SCALE &&
	    pt != HOOK_LNF_NORMALIZED;
}

/* Every hook against finite differences, for one metric. */
static void
check_fd(const char *fx, int distractor_rank)
{
	fl_model *m = fx_model(fx);
	int T, *ids = fx_ref_ids(fx, &T), L, answer, distractor = -1;
	fl_run *r;
	fl_cache *c, *work;
	fl_grad *g;
	float *dir;
	char *cause = NULL;
	double worst = 0;
	const char *worst_name = "";
	char name[64];
	kink_watch kink = { 0 }, *kw = NULL;
	int n_used = 0, n_kinked = 0;

	if (m == NULL || ids == NULL)
		goto out_early;
	L = m->cfg.n_layer;
	r = run_new(m, T, T);
	c = fx_cache(m, r, ids, T);
	work = cache_new(m, T, 0);
	/* The answer: the model's own top token; the distractor its
	 * distractor_rank-th (0: none, the mean logit). */
	{
		const float *lg = c->logits;
		int best = 0, second = -1;

		for (int v = 1; v < m->cfg.n_vocab; v++)
			if (lg[v] > lg[best])
				best = v;
		for (int v = 0; v < m->cfg.n_vocab; v++)
			if (v != best && (second < 0 || lg[v] > lg[second]))
				second = v;
		answer = best;
		if (distractor_rank > 0)
			distractor = second;
	}
	dir = xmalloc((size_t)m->cfg.d_model * sizeof *dir);
	g = grad_new(m, T, &cause);
	if (g == NULL || grad_metric_dir(m, answer, distractor, dir, &cause) != 0 ||
	    grad_backward(g, m, c, dir, &cause) != 0) {
		check(0, "%s: backward: %s", fx, cause);
		free(cause);
		goto out;
	}
	if (m->cfg.act == FL_ACT_RELU) {
		kink.per = (size_t)T * m->cfg.d_mlp;
		kink.pre = xmalloc((size_t)L * kink.per * sizeof *kink.pre);
		kink.record = true;
		kw = &kink;
		metric_nudged(m, r, work, ids, T, dir, HOOK_EMBED, -1, 0, 0, kw);
		kink.record = false;
	}
	for (size_t pi = 0; pi < sizeof fd_points / sizeof fd_points[0]; pi++) {
		fl_hook_point pt = fd_points[pi];
		int l0 = point_in_block(pt) ? 0 : -1, l1 = point_in_block(pt) ? L : 0;

		if (!point_applies(m, pt))
			continue;
		for (int l = l0; l < l1; l++) {
			int ndim, sh[3];
			const float *gr = grad_at(g, pt, l, &ndim, sh);
			size_t n = 1, step;
			double maxg = 0, maxd = 0, got_at = 0, want_at = 0;

			hook_point_name(pt, l, name, sizeof name);
			if (gr == NULL) {
				check(0, "%s: %s has a gradient", fx, name);
				continue;
			}
			for (int d = 0; d < ndim; d++)
				n *= (size_t)sh[d];
			for (size_t i = 0; i < n; i++)
				if (fabs(gr[i]) > maxg)
					maxg = fabs(gr[i]);
			/* Spread over the tensor, ending on its last entry (the last
			 * position's last element). */
			step = n / FD_SAMPLES > 0 ? n / FD_SAMPLES : 1;
			for (size_t i = n - 1;; i -= step) {
				double hi, lo, fd, d;

				kink.flipped = false;
				hi = metric_nudged(m, r, work, ids, T, dir, pt, l, i,
				    (float)FD_EPS, kw);
				lo = metric_nudged(m, r, work, ids, T, dir, pt, l, i,
				    (float)-FD_EPS, kw);
				fd = (hi - lo) / (2 * FD_EPS);
				d = fabs(fd - gr[i]);
				if (kink.flipped) {
					n_kinked++;
					d = 0;
				} else
					n_used++;
				if (!(d <= maxd)) {
					maxd = d;
					got_at = gr[i];
					want_at = fd;
				}
				if (i < step)
					break;
			}
			maxd /= maxg > FD_FLOOR ? maxg : FD_FLOOR;
			if (maxd > worst || isnan(maxd)) {
				worst = maxd;
				worst_name = name;
			}
			if (!(maxd <= FD_TOL))
				check(0, "%s: %s vs finite differences: %.3g of the largest "
				    "gradient %.3g or of %g (got %.7g, want %.7g)", fx, name, maxd, maxg,
				    FD_FLOOR, got_at, want_at);
		}
	}
	check(worst <= FD_TOL && n_used > n_kinked, "%s: every hook's gradient (%s) "
	    "matches central differences at %d entries: worst %.2g of the hook's "
	    "largest gradient or %g (tolerance %.0e; %d entries whose nudge flips a ReLU not used)",
	    fx, distractor < 0 ? "answer - mean logit" : "answer - distractor",
	    n_used, worst, FD_FLOOR, FD_TOL, n_kinked);
	(void)worst_name;
out:
	free(kink.pre);
	free(dir);
	grad_free(g);
	cache_free(work);
	cache_free(c);
	run_free(r);
out_early:
	free(ids);
	model_free(m);
}

/* Every hook of grad.json against torch.autograd's gradient. */
/* With kept set, the pass's cache keeps the MLPs' pre-activations
 * (FL_CACHE_MLP_PRE) and the backward reads them instead of recomputing
 * them: both ways must match torch. */
static void
check_torch(const char *fx, bool kept)
{
	fl_model *m = fx_model(fx);
	int T, *ids = fx_ref_ids(fx, &T);
	char *dir_path = fl_path_join(fx_root(), fx);
	char *path = fl_path_join(dir_path, "grad.json");
	char *text = fl_read_file(path, NULL, 0, NULL);
	cJSON *doc = text != NULL ? cJSON_Parse(text) : NULL, *e;
	size_t n_all = 0;
	float *all = NULL, *dir = NULL;
	fl_run *r = NULL;
	fl_cache *c = NULL;
	fl_grad *g = NULL;
	char *cause = NULL;
	double worst = 0;
	char worst_name[64] = "";
	int n_hooks = 0;

	if (m == NULL || ids == NULL || doc == NULL) {
		check(0, "%s: grad.json is readable (tools/make-grad-fixtures)", fx);
		goto out;
	}
	all = fx_read_f32(fx, "grad.f32", &n_all);
	r = run_new(m, T, T);
	if (kept) {
		fl_pass p = { 0 };

		c = cache_new(m, T, FL_CACHE_MLP_PRE);
		p.cache = c;
		run_forward(r, ids, &T, 1, &p, NULL);
		check(c->mlp_pre != NULL && (c->mlp_pre_linear != NULL) ==
		    m->cfg.gated_mlp, "%s: FL_CACHE_MLP_PRE keeps mlp.hook_pre%s", fx,
		    m->cfg.gated_mlp ? " and hook_pre_linear" : "");
	} else
		c = fx_cache(m, r, ids, T);
	dir = xmalloc((size_t)m->cfg.d_model * sizeof *dir);
	g = grad_new(m, T, &cause);
	if (all == NULL || g == NULL || grad_metric_dir(m,
	    cJSON_GetObjectItem(doc, "answer")->valueint,
	    cJSON_GetObjectItem(doc, "distractor")->valueint, dir, &cause) != 0 ||
	    grad_backward(g, m, c, dir, &cause) != 0) {
		check(0, "%s: backward: %s", fx, cause ? cause : "no grad.f32");
		free(cause);
		goto out;
	}
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(doc, "outputs")) {
		fl_hook_point pt;
		int layer, ndim, sh[3];
		const float *got;
		size_t off = (size_t)cJSON_GetObjectItem(e, "offset")->valuedouble, n = 1;
		const cJSON *shape = cJSON_GetObjectItem(e, "shape"), *d;
		double maxw = 0, maxd = 0;
		int k = 0;
		bool same = true;

		if (hook_point_parse(e->string, &pt, &layer) != 0 ||
		    (got = grad_at(g, pt, layer, &ndim, sh)) == NULL) {
			check(0, "%s: %s has a gradient", fx, e->string);
			continue;
		}
		cJSON_ArrayForEach(d, shape) {
			same = same && k < ndim && sh[k] == d->valueint;
			n *= (size_t)d->valueint;
			k++;
		}
		if (!same || k != ndim || off + n > n_all) {
			check(0, "%s: %s: the gradient's shape is the fixture's", fx,
			    e->string);
			continue;
		}
		for (size_t i = 0; i < n; i++)
			if (fabs(all[off + i]) > maxw)
				maxw = fabs(all[off + i]);
		for (size_t i = 0; i < n; i++) {
			double diff = fabs((double)got[i] - all[off + i]);

			if (!(diff <= maxd))
				maxd = diff;
		}
		maxd = maxw > 0 ? maxd / maxw : maxd;
		n_hooks++;
		if (!(maxd <= worst)) {
			worst = maxd;
			snprintf(worst_name, sizeof worst_name, "%s", e->string);
		}
		if (!(maxd <= GRAD_TORCH_TOL))
			check(0, "%s: %s vs torch.autograd: maxdiff %.3g of the largest "
			    "gradient %.3g", fx, e->string, maxd, maxw);
	}
	check(n_hooks > 0 && worst <= GRAD_TORCH_TOL, "%s%s: %d hooks' gradients match "
	    "torch.autograd's: worst maxdiff %.2g of the hook's largest (%s; "
	    "tolerance %.0e)", fx, kept ? " (pre-activations kept)" : "", n_hooks,
	    worst, worst_name, GRAD_TORCH_TOL);
out:
	grad_free(g);
	free(dir);
	cache_free(c);
	run_free(r);
	free(all);
	cJSON_Delete(doc);
	free(text);
	free(path);
	free(dir_path);
	free(ids);
	model_free(m);
}

/* Head h's z at every position moved to z_clean + a (z_corrupt - z_clean). */
typedef struct {
	const float	*z0, *z1;	/* (T, D) the layer's clean and corrupted z */
	int		 col, dh, D;
	double		 a;
} along;

static int
along_hook(void *ud, fl_act *act)
{
	const along *p = ud;

	for (int t = 0; t < act->shape[0]; t++)
		for (int d = 0; d < p->dh; d++) {
			size_t i = (size_t)t * p->D + p->col + d;

			act->data[i] = (float)(p->z0[i] + p->a * ((double)p->z1[i] - p->z0[i]));
		}
	return FL_HOOK_CONTINUE;
}

static double
metric_along(fl_atp *res, along *al, int layer, double a)
{
	fl_hook h = { HOOK_Z, layer, along_hook, al };
	fl_pass p = { 0 };
	const float *lg = res->logits;
	int T = res->n_tok;
	char *cause = NULL;

	al->a = a;
	p.hooks = &h;
	p.n_hooks = 1;
	p.logits = res->logits;
	if (run_forward(res->run, res->ids, &T, 1, &p, &cause) != 0) {
		check(0, "pass along the patch: %s", cause);
		free(cause);
		return NAN;
	}
	return (double)lg[res->o.answer] - lg[res->o.distractor];
}

/* Neuron i of layer l moved to clean + a (corrupt - clean) at every
 * position; the metric minus the mean logit. */
typedef struct {
	const float	*p0, *p1;	/* (T, F) */
	int		 i, F;
	double		 a;
} along_neuron;

static int
along_neuron_hook(void *ud, fl_act *act)
{
	const along_neuron *p = ud;

	for (int t = 0; t < act->shape[0]; t++) {
		size_t k = (size_t)t * p->F + p->i;

		act->data[k] = (float)(p->p0[k] + p->a * ((double)p->p1[k] - p->p0[k]));
	}
	return FL_HOOK_CONTINUE;
}

/* The neurons of layer 1 with the mean-logit metric: each estimate is the
 * derivative along its patch, the exact patch that path's value at 1. */
static void
check_atp_neurons(const fl_atp *pair, const char *fx)
{
	const fl_model *m = pair->m;
	int T = pair->n_tok, F = m->cfg.d_mlp, V = m->cfg.n_vocab, nl = 1;
	int *corrupt = xmalloc((size_t)T * sizeof *corrupt);
	fl_atp res = { 0 };
	fl_atp_opts o = { pair->o.answer, -1, nl };
	char *cause = NULL;
	double worst = 0, worst_ex = 0, maxe = 0;

	/* pair's corrupted prompt is not kept: rebuild it as check_atp did */
	memcpy(corrupt, pair->ids, (size_t)T * sizeof *corrupt);
	corrupt[T / 2] = (corrupt[T / 2] + 7) % V;
	corrupt[T / 2 + 1] = (corrupt[T / 2 + 1] + 11) % V;
	if (atp_estimate(&res, m, pair->ids, corrupt, T, &o, &cause) != 0) {
		check(0, "%s: atp --neurons: %s", fx, cause);
		free(cause);
		goto out;
	}
	for (int i = 0; i < F; i++)
		maxe = fmax(maxe, fabs(res.neurons[i]));
	for (int i = 0; i < F; i += F / 16) {
		along_neuron al = { res.c_clean->mlp_post + (size_t)nl * T * F,
		    res.c_corrupt->mlp_post + (size_t)nl * T * F, i, F, 0 };
		fl_hook h = { HOOK_MLP_POST, nl, along_neuron_hook, &al };
		fl_pass p = { 0 };
		double mv[3], ex;
		const double as[3] = { FD_EPS, -FD_EPS, 1 };

		p.hooks = &h;
		p.n_hooks = 1;
		p.logits = res.logits;
		for (int k = 0; k < 3; k++) {
			double mean = 0;

			al.a = as[k];
			if (run_forward(res.run, res.ids, &T, 1, &p, &cause) != 0) {
				check(0, "%s: pass along a neuron's patch: %s", fx, cause);
				free(cause);
				goto out;
			}
			for (int v = 0; v < V; v++)
				mean += res.logits[v];
			mv[k] = res.logits[o.answer] - mean / V;
		}
		worst = fmax(worst, fabs((mv[0] - mv[1]) / (2 * FD_EPS) - res.neurons[i]));
		if (atp_exact_neuron(&res, i, &ex, &cause) != 0) {
			check(0, "%s: exact neuron patch: %s", fx, cause);
			free(cause);
			goto out;
		}
		worst_ex = fmax(worst_ex, fabs(ex - (mv[2] - res.clean)));
	}
	check(maxe > 1e-4 && worst <= FD_TOL * maxe && worst_ex <= 1e-5, "%s: layer %d's "
	    "neuron estimates (answer - mean logit) are the derivatives along their "
	    "patches: worst %.2g, largest estimate %.3g; exact patches within %.1g",
	    fx, nl, worst, maxe, worst_ex);
out:
	atp_clear(&res);
	free(corrupt);
}

static void
check_atp(const char *fx)
{
	fl_model *m = fx_model(fx);
	int T, *ids = fx_ref_ids(fx, &T), L, H, D, dh;
	int *other;
	fl_atp res = { 0 }, same = { 0 };
	fl_atp_opts o = { 0, 0, 1 };
	char *cause = NULL;
	double worst_est = 0, worst_exact = 0, maxe = 0, zero = 0;

	if (m == NULL || ids == NULL)
		goto out_early;
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	D = m->cfg.d_model;
	dh = m->cfg.d_head;
	/* The corrupted prompt: the same but for two tokens in the middle. */
	other = xmalloc((size_t)T * sizeof *other);
	memcpy(other, ids, (size_t)T * sizeof *ids);
	other[T / 2] = (other[T / 2] + 7) % m->cfg.n_vocab;
	other[T / 2 + 1] = (other[T / 2 + 1] + 11) % m->cfg.n_vocab;
	o.answer = 3;
	o.distractor = 5;
	if (atp_estimate(&res, m, ids, other, T, &o, &cause) != 0 ||
	    atp_estimate(&same, m, ids, ids, T, &o, &cause) != 0) {
		check(0, "%s: atp: %s", fx, cause);
		free(cause);
		goto out;
	}
	for (int i = 0; i < L * H; i++)
		if (fabs(res.heads[i]) > maxe)
			maxe = fabs(res.heads[i]);
	for (int l = 0; l < L; l++)
		for (int h = 0; h < H; h++) {
			along al = { res.c_clean->z + (size_t)l * T * D,
			    res.c_corrupt->z + (size_t)l * T * D, h * dh, dh, D, 0 };
			double hi = metric_along(&res, &al, l, FD_EPS);
			double lo = metric_along(&res, &al, l, -FD_EPS);
			double at1 = metric_along(&res, &al, l, 1), ex, ex0;

			if (fabs((hi - lo) / (2 * FD_EPS) - res.heads[l * H + h]) > worst_est)
				worst_est = fabs((hi - lo) / (2 * FD_EPS) - res.heads[l * H + h]);
			if (atp_exact_head(&res, l, h, &ex, &cause) != 0 ||
			    atp_exact_head(&same, l, h, &ex0, &cause) != 0) {
				check(0, "%s: exact patch: %s", fx, cause);
				free(cause);
				goto out;
			}
			if (fabs(ex - (at1 - res.clean)) > worst_exact)
				worst_exact = fabs(ex - (at1 - res.clean));
			zero = fmax(zero, fmax(fabs(ex0), fabs(same.heads[l * H + h])));
		}
	check(maxe > 1e-3 && worst_est <= FD_TOL * maxe, "%s: every head's AtP estimate "
	    "is the derivative along its patch: worst difference %.2g, largest estimate "
	    "%.3g (tolerance %.0e of it)", fx,
	    worst_est, maxe, FD_TOL);
	check(worst_exact <= 1e-5, "%s: the exact patch is the patched pass's metric "
	    "change: worst %.2g", fx, worst_exact);
	check(zero == 0, "%s: a corrupted prompt equal to the clean one estimates and "
	    "patches 0 (largest %.2g)", fx, zero);
	check_atp_neurons(&res, fx);
out:
	free(other);
	atp_clear(&res);
	atp_clear(&same);
out_early:
	free(ids);
	model_free(m);
}

/* The clean prompt's text with its subject (pair c->pair's) replaced by
 * pair sp's: heap. */
static char *
replace_subject(const fl_task *t, const fl_prompt *c, int sp)
{
	const char *at = strstr(c->text, t->pairs[c->pair].subject);
	size_t pre, n = strlen(t->pairs[c->pair].subject);

	/* the subject's last occurrence: demonstrations come before it */
	for (const char *q = at; q != NULL; q = strstr(q + 1, t->pairs[c->pair].subject))
		at = q;
	pre = (size_t)(at - c->text);
	return xasprintf("%.*s%s%s", (int)pre, c->text, t->pairs[sp].subject,
	    at + n);
}

static void
check_atp_task(const char *fx, int shots)
{
	fl_model *m = fx_model(fx);
	fl_task *t = fx_tiny_task();
	fl_prompt_set clean = { 0 }, drawn = { 0 };
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, shots, 3, false };
	fl_atp_task res = { 0 };
	char *cause = NULL;
	int L, H, n_est = 0, n_skip = 0, n_redraw = 0;
	double *sum = NULL, worst = 0, maxv = 0;

	if (m == NULL || t == NULL)
		goto out;
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	if (task_prompts(&clean, m, t, &po, &cause) != 0 ||
	    (po.corrupt = true, task_prompts(&drawn, m, t, &po, &cause) != 0) ||
	    (po.corrupt = false, atp_task(&res, m, t, &po, &clean, &drawn, -1, NULL,
	    &cause) != 0)) {
		check(0, "%s: atp over the task: %s", fx, cause);
		free(cause);
		goto out;
	}
	sum = xcalloc((size_t)L * H, sizeof *sum);
	for (int i = 0; i < clean.n; i++) {
		const fl_prompt *c = &clean.p[i];
		int np = t->n_pairs, found = 0;

		for (int k = 0; k < np && !found; k++) {
			int sp = (drawn.p[i].subject_pair + k) % np, *ids = NULL, n;
			int dis = clean.p[c->tmpl * np + sp].answer;
			char *text;
			fl_atp one = { 0 };
			fl_atp_opts ao = { c->answer, dis, -1, false };

			if (sp == c->pair || dis == c->answer)
				continue;
			text = replace_subject(t, c, sp);
			n = model_encode(m, text, strlen(text), &ids, &cause);
			free(text);
			if (n == c->n) {
				found = 1;
				n_redraw += k > 0;
				if (atp_estimate(&one, m, c->ids, ids, n, &ao, &cause) != 0) {
					check(0, "%s: atp: %s", fx, cause);
					free(cause);
					cause = NULL;
				} else
					for (int j = 0; j < L * H; j++)
						sum[j] += one.heads[j];
				atp_clear(&one);
			}
			free(ids);
		}
		n_est += found;
		n_skip += !found;
	}
	for (int j = 0; j < L * H && n_est > 0; j++) {
		double want = sum[j] / n_est;

		worst = fmax(worst, fabs(want - res.heads[j]));
		maxv = fmax(maxv, fabs(want));
	}
	check(res.n_prompts == n_est && res.n_skipped == n_skip &&
	    res.n_redrawn == n_redraw && n_est > 0, "%s, %d-shot: atp over the "
	    "task estimates %d prompts, skips %d, redraws %d (rebuilt here: %d, %d, "
	    "%d)", fx, shots, res.n_prompts, res.n_skipped, res.n_redrawn, n_est,
	    n_skip, n_redraw);
	check(maxv > 1e-4 && worst <= 1e-9 * (1 + maxv), "%s, %d-shot: the task's map "
	    "is the mean of each prompt's with the twin rebuilt here: worst "
	    "difference %.3g, largest %.3g", fx, shots, worst, maxv);
out:
	free(sum);
	atp_task_clear(&res);
	prompt_set_clear(&clean);
	prompt_set_clear(&drawn);
	task_free(t);
	model_free(m);
}

/* atp_spearman: without ties, 1 - 6 sum d^2 / (n (n^2 - 1)) of the ranks
 * d apart (permutations drawn here); with ties, a case worked by hand;
 * NANs left out; a constant side gives NAN. */
static void
check_spearman(void)
{
	double x[40], y[40], worst = 0;
	unsigned s = 12345;
	int n = 40;

	for (int trial = 0; trial < 20; trial++) {
		int rx[40], ry[40];
		double d2 = 0, want, got;

		for (int i = 0; i < n; i++)
			rx[i] = ry[i] = i;
		for (int i = n - 1; i > 0; i--) {
			int j, t;

			s = s * 1664525u + 1013904223u;
			j = (int)((s >> 8) % (unsigned)(i + 1));
			t = ry[i];
			ry[i] = ry[j];
			ry[j] = t;
		}
		/* values with those ranks, of unlike scales */
		for (int i = 0; i < n; i++) {
			x[i] = rx[i] * 0.5 - 3;
			y[i] = exp(ry[i] * 0.1) - (trial % 2 ? 5 : 0);
			d2 += (double)(rx[i] - ry[i]) * (rx[i] - ry[i]);
		}
		want = 1 - 6 * d2 / ((double)n * ((double)n * n - 1));
		got = atp_spearman(x, y, n);
		worst = fmax(worst, fabs(got - want));
	}
	check(worst <= 1e-12, "spearman: 1 - 6 sum d^2 / n(n^2 - 1) on 20 "
	    "permutations of 40 (worst %.3g)", worst);
	{
		/* x ranks 1 2 3 4 5, y ranks 1 2.5 2.5 4 5: Pearson of those =
		 * 9.5 / sqrt(10 * 9.5) */
		double a[] = { 1, 2, 3, 4, 5, NAN }, b[] = { -1, 0, 0, 7, 8, 3 };
		double want = 9.5 / sqrt(10 * 9.5), got = atp_spearman(a, b, 6);
		double c[] = { 2, 2, 2 };

		check(fabs(got - want) <= 1e-12, "spearman with ties and a NAN: %.15f "
		    "(want %.15f)", got, want);
		check(isnan(atp_spearman(a, c, 3)) && isnan(atp_spearman(a, b, 1)),
		    "spearman of a constant side, or of one pair: NAN");
	}
}

int
main(void)
{
	static const char *fxs[] = { "gpt2-f32", "gpt2-prefixed", "gpt2-1layer",
	    "opt-f32", "opt350-f32", "opt350-f16", "llama-f32", "llama-bf16" };

	kern_set_threads(1);
	for (size_t i = 0; i < sizeof fxs / sizeof fxs[0]; i++) {
		check_fd(fxs[i], 1);
		if (i == 0)
			check_fd(fxs[i], 0);
	}
	for (int kept = 0; kept <= 1; kept++) {
		check_torch("gpt2-f32", kept);
		check_torch("opt-f32", kept);
		check_torch("opt350-f32", kept);
		check_torch("llama-f32", kept);
	}
	check_spearman();
	check_atp("gpt2-f32");
	check_atp("llama-f32");
	check_atp_task("gpt2-f32", 0);
	check_atp_task("gpt2-f32", 1);
	check_atp_task("llama-f32", 0);
	return check_done();
}
