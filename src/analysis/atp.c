/* atp.c - attribution patching; see atp.h. */
#include "autoconfig.h"

#include "atp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/lens.h"
#include "base/util.h"

/* The last row of what the unembedding reads (the final LN's output, or
 * the last resid_post without one) copied out of a pass. */
typedef struct {
	float	*dst;		/* (D) */
	int	 D;
} atp_grab;

static int
atp_grab_last(void *ud, fl_act *a)
{
	const atp_grab *g = ud;

	memcpy(g->dst, a->data + (size_t)(a->shape[0] - 1) * g->D,
	    (size_t)g->D * sizeof(float));
	return FL_HOOK_CONTINUE;
}

/* M from that row: x . dir is logit(answer) - logit(distractor) (or minus
 * the mean logit), so no pass needs the unembedding for it. */
static double
atp_metric(const fl_atp *res, const float *x)
{
	double s = 0;

	for (int i = 0; i < res->m->cfg.d_model; i++)
		s += (double)x[i] * res->dir[i];
	return s;
}

/* One pass over ids: into cache c, or without one (a patch, hooks[0..n)
 * installed, resumed at start_layer from the clean run) with the metric in
 * *metric. The logits only when asked for (res->logits). */
static int
atp_pass(fl_atp *res, const int *ids, fl_cache *c, const fl_hook *hooks,
    int n_hooks, int start_layer, bool logits, double *metric, char **cause)
{
	const fl_config *cf = &res->m->cfg;
	fl_pass p = { 0 };
	fl_hook hk[4];
	atp_grab gr = { res->last, cf->d_model };
	int T = res->n_tok;

	if (n_hooks > 3)
		return fl_error(cause, "atp: %d hooks in one pass", n_hooks);
	if (n_hooks > 0)
		memcpy(hk, hooks, (size_t)n_hooks * sizeof *hk);
	if (c == NULL)
		hk[n_hooks++] = cf->final_ln ?
		    (fl_hook){ HOOK_LNF_NORMALIZED, -1, atp_grab_last, &gr } :
		    (fl_hook){ HOOK_RESID_POST, cf->n_layer - 1, atp_grab_last, &gr };
	p.hooks = hk;
	p.n_hooks = n_hooks;
	p.cache = c;
	p.logits = logits ? res->logits : NULL;
	p.no_logits = !logits;
	if (start_layer > 0) {
		p.start_layer = start_layer;
		p.resume = res->c_clean->resid_pre + (size_t)start_layer * T *
		    res->c_clean->d_model;
	}
	if (run_forward(res->run, ids, &T, 1, &p, cause) != 0)
		return -1;
	if (metric != NULL)
		*metric = atp_metric(res, c != NULL ? c->lnf + (size_t)(T - 1) *
		    cf->d_model : res->last);
	return 0;
}

int
atp_estimate(fl_atp *res, const fl_model *m, const int *clean, const int *corrupt,
    int T, const fl_atp_opts *o, char **cause)
{
	const fl_config *c = &m->cfg;
	int L = c->n_layer, H = c->n_head, D = c->d_model, F = c->d_mlp;
	int dh = c->d_head, flags = o->neuron_layer >= 0 ||
	    o->all_neurons ? FL_CACHE_MLP_POST : 0;
	fl_grad *g = NULL;
	float *dir = NULL;
	int rc = -1;

	memset(res, 0, sizeof *res);
	res->n_layer = L;
	res->n_head = H;
	res->n_tok = T;
	res->d_mlp = F;
	res->o = *o;
	res->m = m;
	if (o->neuron_layer >= L)
		return fl_error(cause, "neurons of layer %d: the model has layers 0 "
		    "to %d", o->neuron_layer, L - 1);
	if ((g = grad_new(m, T, cause)) == NULL)
		return -1;
	if (o->answer < 0 || o->answer >= c->n_vocab) {
		fl_error(cause, "answer token %d: the vocabulary has ids 0 to %d",
		    o->answer, c->n_vocab - 1);
		goto out;
	}
	dir = res->dir = xmalloc((size_t)D * sizeof *dir);
	res->last = xmalloc((size_t)D * sizeof *res->last);
	res->ids = xmalloc((size_t)T * sizeof *res->ids);
	memcpy(res->ids, clean, (size_t)T * sizeof *clean);
	res->run = run_new(m, T, T);
	/* the clean run keeps the MLPs' pre-activations for the backward */
	res->c_clean = cache_new(m, T, flags | FL_CACHE_MLP_PRE);
	res->c_corrupt = cache_new(m, T, flags);
	res->logits = xmalloc((size_t)c->n_vocab * sizeof *res->logits);
	/* The corrupted run's logits only to find its top prediction: the
	 * metrics are read through dir (atp_metric). */
	if (o->distractor == ATP_DISTRACTOR_TOP)
		res->o.distractor = -1;
	if (atp_pass(res, corrupt, res->c_corrupt, NULL, 0, 0,
	    o->distractor == ATP_DISTRACTOR_TOP, NULL, cause) != 0)
		goto out;
	if (o->distractor == ATP_DISTRACTOR_TOP) {
		int top = 0;

		for (int v = 1; v < c->n_vocab; v++)
			if (res->logits[v] > res->logits[top])
				top = v;
		if (top != o->answer)
			res->o.distractor = top;
	}
	if (grad_metric_dir(m, o->answer, res->o.distractor, dir, cause) != 0 ||
	    atp_pass(res, clean, res->c_clean, NULL, 0, 0, false, &res->clean,
	    cause) != 0 ||
	    grad_backward(g, m, res->c_clean, dir, cause) != 0)
		goto out;
	res->corrupt = atp_metric(res, res->c_corrupt->lnf + (size_t)(T - 1) * D);

	res->heads = xcalloc((size_t)L * H, sizeof *res->heads);
	res->heads_pos = xcalloc((size_t)L * H * T, sizeof *res->heads_pos);
	for (int l = 0; l < L; l++) {
		size_t at = (size_t)l * T * D;
		const float *z0 = res->c_clean->z + at, *z1 = res->c_corrupt->z + at;
		const float *gz = g->z + at;

		for (int t = 0; t < T; t++)
			for (int h = 0; h < H; h++) {
				size_t i0 = (size_t)t * D + (size_t)h * dh;
				double s = 0;

				for (int d = 0; d < dh; d++)
					s += ((double)z1[i0 + d] - z0[i0 + d]) * gz[i0 + d];
				res->heads_pos[((size_t)l * H + h) * T + t] = s;
				res->heads[(size_t)l * H + h] += s;
			}
	}
	if (o->neuron_layer >= 0) {
		size_t at = (size_t)o->neuron_layer * T * F;
		const float *p0 = res->c_clean->mlp_post + at;
		const float *p1 = res->c_corrupt->mlp_post + at, *gp = g->mlp_post + at;

		res->neurons = xcalloc((size_t)F, sizeof *res->neurons);
		for (int t = 0; t < T; t++)
			for (int i = 0; i < F; i++) {
				size_t k = (size_t)t * F + i;

				res->neurons[i] += ((double)p1[k] - p0[k]) * gp[k];
			}
	}
	if (o->all_neurons) {
		size_t LF = (size_t)L * F;

		res->neurons_all = xcalloc(LF, sizeof *res->neurons_all);
		for (int l = 0; l < L; l++)
			for (int t = 0; t < T; t++) {
				size_t at = ((size_t)l * T + t) * F;
				const float *p0 = res->c_clean->mlp_post + at;
				const float *p1 = res->c_corrupt->mlp_post + at;
				const float *gp = g->mlp_post + at;
				double *out = res->neurons_all + (size_t)l * F;

				for (int i = 0; i < F; i++)
					out[i] += ((double)p1[i] - p0[i]) * gp[i];
			}
	}
	rc = 0;
out:
	grad_free(g);
	return rc;
}

/* Copies columns [col, col + w) of every row from the corrupted run's
 * activation (rows of ld floats): install at the patched point and layer. */
typedef struct {
	const float	*src;		/* (T, ld) */
	int		 ld, col, w;
} atp_cols;

static int
atp_cols_hook(void *ud, fl_act *a)
{
	const atp_cols *p = ud;

	for (int t = 0; t < a->shape[0]; t++)
		memcpy(a->data + (size_t)t * p->ld + p->col, p->src + (size_t)t * p->ld +
		    p->col, (size_t)p->w * sizeof(float));
	return FL_HOOK_CONTINUE;
}

int
atp_exact_head(fl_atp *res, int layer, int head, double *delta, char **cause)
{
	int D = res->m->cfg.d_model, dh = res->m->cfg.d_head, T = res->n_tok;
	atp_cols pc = { res->c_corrupt->z + (size_t)layer * T * D, D, head * dh, dh };
	fl_hook hook = { HOOK_Z, layer, atp_cols_hook, &pc };
	double mp;

	if (layer < 0 || layer >= res->n_layer || head < 0 || head >= res->n_head)
		return fl_error(cause, "head %d.%d: the model has layers 0 to %d and "
		    "heads 0 to %d", layer, head, res->n_layer - 1, res->n_head - 1);
	if (atp_pass(res, res->ids, NULL, &hook, 1, layer, false, &mp, cause) != 0)
		return -1;
	*delta = mp - res->clean;
	return 0;
}

int
atp_exact_neuron(fl_atp *res, int neuron, double *delta, char **cause)
{
	int F = res->d_mlp, T = res->n_tok, l = res->o.neuron_layer;
	atp_cols pc = { NULL, F, neuron, 1 };
	fl_hook hook = { HOOK_MLP_POST, l, atp_cols_hook, &pc };
	double mp;

	if (l < 0 || res->c_corrupt->mlp_post == NULL || neuron < 0 || neuron >= F)
		return fl_error(cause, "neuron %d: no neuron layer was estimated, or "
		    "the layer has neurons 0 to %d", neuron, F - 1);
	pc.src = res->c_corrupt->mlp_post + (size_t)l * T * F;
	if (atp_pass(res, res->ids, NULL, &hook, 1, l, false, &mp, cause) != 0)
		return -1;
	*delta = mp - res->clean;
	return 0;
}

bool
atp_disagree(double est, double exact)
{
	double a = fabs(est), b = fabs(exact);

	if (a < 1e-9 && b < 1e-9)
		return false;
	if ((est < 0) != (exact < 0))
		return true;
	return a > 2 * b || b > 2 * a;
}

void
atp_clear(fl_atp *res)
{
	if (res == NULL)
		return;
	free(res->heads);
	free(res->heads_pos);
	free(res->neurons);
	free(res->neurons_all);
	free(res->ids);
	free(res->logits);
	free(res->dir);
	free(res->last);
	run_free(res->run);
	cache_free(res->c_clean);
	cache_free(res->c_corrupt);
	memset(res, 0, sizeof *res);
}

/* One candidate twin: clean prompt c's pair and template with the subject
 * of pair sp. 0 when it has c's token count and another answer token; 1
 * when not (*out empty); -1 with *cause. */
static int
twin_try(fl_prompt *out, int *distractor, const fl_model *m, const fl_task *t,
    const fl_prompt_opts *o, const fl_prompt_set *clean, const fl_prompt *c,
    int sp, char **cause)
{
	int np = t->n_pairs, off;
	const fl_prompt *other = &clean->p[(size_t)c->tmpl * np + sp];
	bool space;
	char *text;
	int rc;

	if (sp == c->pair || other->answer == c->answer)
		return 1;
	if ((text = task_prompt_text(t, o, c->tmpl, c->pair, sp, &off, &space,
	    cause)) == NULL)
		return -1;
	rc = prompt_make(out, m, text, off, (int)strlen(t->pairs[sp].subject),
	    t->pairs[c->pair].answer, space, cause);
	free(text);
	if (rc != 0)
		return -1;
	if (out->n != c->n) {
		prompt_clear(out);
		return 1;
	}
	out->pair = c->pair;
	out->subject_pair = sp;
	out->tmpl = c->tmpl;
	*distractor = other->answer;
	return 0;
}

int
atp_task_twin(fl_prompt *out, int *distractor, const fl_model *m,
    const fl_task *t, const fl_prompt_opts *o, const fl_prompt_set *clean,
    const fl_prompt_set *drawn, int i, char **cause)
{
	const fl_prompt *c = &clean->p[i];
	int np = t->n_pairs, sp0 = drawn->p[i].subject_pair;
	fl_prompt_opts oc = *o;

	memset(out, 0, sizeof *out);
	oc.corrupt = true;
	if (clean->n != np * t->n_templates[o->set] || drawn->n != clean->n)
		return fl_error(cause, "%s: the prompt sets are not the task's "
		    "pairs x templates", t->path);
	for (int k = 0; k < np; k++) {
		int rc = twin_try(out, distractor, m, t, &oc, clean, c,
		    (sp0 + k) % np, cause);

		if (rc <= 0)
			return rc;
	}
	return 1;
}

void
atp_task_clear(fl_atp_task *res)
{
	if (res == NULL)
		return;
	free(res->heads);
	free(res->neurons);
	memset(res, 0, sizeof *res);
}

void
atp_prompt_clear(fl_atp_prompt *p)
{
	if (p == NULL)
		return;
	free(p->heads);
	free(p->neurons);
	memset(p, 0, sizeof *p);
}

int
atp_task_prompt(fl_atp_prompt *out, const fl_model *m, const fl_task *t,
    const fl_prompt_opts *o, const fl_prompt_set *clean,
    const fl_prompt_set *drawn, int i, int neuron_layer, char **cause)
{
	int LH = m->cfg.n_layer * m->cfg.n_head, F = m->cfg.d_mlp;
	fl_prompt tw;
	fl_atp one;
	fl_atp_opts ao = { clean->p[i].answer, -1, neuron_layer, false };
	int rc;

	memset(out, 0, sizeof *out);
	if (neuron_layer >= m->cfg.n_layer)
		return fl_error(cause, "neurons of layer %d: the model has layers 0 "
		    "to %d", neuron_layer, m->cfg.n_layer - 1);
	rc = atp_task_twin(&tw, &ao.distractor, m, t, o, clean, drawn, i, cause);
	if (rc < 0)
		return -1;
	if (rc == 1) {
		out->skipped = true;
		return 0;
	}
	out->redrawn = tw.subject_pair != drawn->p[i].subject_pair;
	rc = atp_estimate(&one, m, clean->p[i].ids, tw.ids, tw.n, &ao, cause);
	prompt_clear(&tw);
	if (rc != 0) {
		atp_clear(&one);
		return -1;
	}
	out->clean = one.clean;
	out->corrupt = one.corrupt;
	out->heads = xmalloc((size_t)LH * sizeof *out->heads);
	memcpy(out->heads, one.heads, (size_t)LH * sizeof *out->heads);
	if (neuron_layer >= 0) {
		out->neurons = xmalloc((size_t)F * sizeof *out->neurons);
		memcpy(out->neurons, one.neurons, (size_t)F * sizeof *out->neurons);
	}
	atp_clear(&one);
	return 0;
}

void
atp_task_init(fl_atp_task *res, const fl_model *m, int neuron_layer)
{
	int L = m->cfg.n_layer, H = m->cfg.n_head, F = m->cfg.d_mlp;

	memset(res, 0, sizeof *res);
	res->n_layer = L;
	res->n_head = H;
	res->d_mlp = F;
	res->neuron_layer = neuron_layer;
	res->heads = xcalloc((size_t)L * H, sizeof *res->heads);
	if (neuron_layer >= 0)
		res->neurons = xcalloc((size_t)F, sizeof *res->neurons);
}

void
atp_task_add(fl_atp_task *res, const fl_atp_prompt *p)
{
	int LH = res->n_layer * res->n_head;

	if (p->skipped) {
		res->n_skipped++;
		return;
	}
	res->n_redrawn += p->redrawn;
	res->clean += p->clean;
	res->corrupt += p->corrupt;
	for (int k = 0; k < LH; k++)
		res->heads[k] += p->heads[k];
	for (int k = 0; res->neurons != NULL && k < res->d_mlp; k++)
		res->neurons[k] += p->neurons[k];
	res->n_prompts++;
}

int
atp_task_finish(fl_atp_task *res, const char *task_path, char **cause)
{
	int LH = res->n_layer * res->n_head;

	if (res->n_prompts == 0)
		return fl_error(cause, "%s: no prompt has a corrupted twin of its "
		    "token count (another pair's subject of as many tokens)",
		    task_path);
	res->clean /= res->n_prompts;
	res->corrupt /= res->n_prompts;
	for (int k = 0; k < LH; k++)
		res->heads[k] /= res->n_prompts;
	for (int k = 0; res->neurons != NULL && k < res->d_mlp; k++)
		res->neurons[k] /= res->n_prompts;
	return 0;
}

int
atp_task(fl_atp_task *res, const fl_model *m, const fl_task *t,
    const fl_prompt_opts *o, const fl_prompt_set *clean,
    const fl_prompt_set *drawn, int neuron_layer, const fl_progress *p,
    char **cause)
{
	int L = m->cfg.n_layer;

	memset(res, 0, sizeof *res);
	if (neuron_layer >= L)
		return fl_error(cause, "neurons of layer %d: the model has layers 0 "
		    "to %d", neuron_layer, L - 1);
	atp_task_init(res, m, neuron_layer);
	for (int i = 0; i < clean->n; i++) {
		fl_atp_prompt one;

		if (atp_task_prompt(&one, m, t, o, clean, drawn, i, neuron_layer,
		    cause) != 0)
			goto fail;
		atp_task_add(res, &one);
		atp_prompt_clear(&one);
		if (fl_progress_report(p, "attribution patching", i + 1, clean->n)) {
			atp_task_clear(res);
			return FL_STOPPED;
		}
	}
	if (atp_task_finish(res, t->path, cause) != 0)
		goto fail;
	return 0;
fail:
	atp_task_clear(res);
	return -1;
}

/* Ranks from 1 of v[idx[0..n)] into r (ties: their mean rank). */
static const double *rank_v;

static int
cmp_rank(const void *a, const void *b)
{
	double x = rank_v[*(const int *)a], y = rank_v[*(const int *)b];

	return x < y ? -1 : x > y;
}

static void
ranks_of(const double *v, const int *idx, int n, double *r)
{
	int *o = xmalloc((size_t)n * sizeof *o);

	for (int k = 0; k < n; k++)
		o[k] = k;
	/* sort positions k by v[idx[k]] */
	{
		double *w = xmalloc((size_t)n * sizeof *w);

		for (int k = 0; k < n; k++)
			w[k] = v[idx[k]];
		rank_v = w;
		qsort(o, (size_t)n, sizeof *o, cmp_rank);
		for (int a = 0; a < n;) {
			int b = a;

			while (b + 1 < n && w[o[b + 1]] == w[o[a]])
				b++;
			for (int k = a; k <= b; k++)
				r[o[k]] = (a + b) / 2.0 + 1;
			a = b + 1;
		}
		free(w);
	}
	free(o);
}

double
atp_spearman(const double *x, const double *y, int n)
{
	int *idx = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *idx), k = 0;
	double *rx, *ry, mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0, rho;

	for (int i = 0; i < n; i++)
		if (!isnan(x[i]) && !isnan(y[i]))
			idx[k++] = i;
	if (k < 2) {
		free(idx);
		return NAN;
	}
	rx = xmalloc((size_t)k * sizeof *rx);
	ry = xmalloc((size_t)k * sizeof *ry);
	ranks_of(x, idx, k, rx);
	ranks_of(y, idx, k, ry);
	for (int i = 0; i < k; i++) {
		mx += rx[i];
		my += ry[i];
	}
	mx /= k;
	my /= k;
	for (int i = 0; i < k; i++) {
		sxx += (rx[i] - mx) * (rx[i] - mx);
		syy += (ry[i] - my) * (ry[i] - my);
		sxy += (rx[i] - mx) * (ry[i] - my);
	}
	rho = sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
	free(rx);
	free(ry);
	free(idx);
	return rho;
}
