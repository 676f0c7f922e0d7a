/* eval.c - see eval.h. */
#include "autoconfig.h"

#include "eval.h"

#include <stdlib.h>
#include <string.h>

#include "analysis/decompose.h"
#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "engine/pool.h"
#include "base/util.h"

#define EVAL_LENS_ROWS 256	/* final residuals unembedded at once */

static const char *cond_names[EVAL_COND_COUNT] = {
	"baseline", "mask", "intercept", "both",
};

const char *
eval_cond_name(fl_eval_cond c)
{
	return c < EVAL_COND_COUNT ? cond_names[c] : "?";
}

const char *
eval_split_name(fl_eval_split s)
{
	return s == EVAL_SPLIT_TEMPLATE ? "template" : "subject";
}

void
eval_opts_init(fl_eval_opts *o)
{
	memset(o, 0, sizeof *o);
	o->set = TASK_TEMPLATES_MAIN;
	o->seed = 1;
	o->split = EVAL_SPLIT_SUBJECT;
	o->with_resid = true;
	o->ridge = -1;
	o->batch = 32;
}

int
eval_fold(const fl_prompt *p, fl_eval_split split)
{
	return (split == EVAL_SPLIT_TEMPLATE ? p->tmpl : p->pair) & 1;
}

void
eval_clear(fl_eval_result *res)
{
	if (res == NULL)
		return;
	free(res->prob);
	free(res->rank);
	free(res->ctx_prob);
	free(res->ctx_rank);
	free(res->ctx_pair);
	free(res->pair);
	free(res->tmpl);
	memset(res, 0, sizeof *res);
}

static void
eval_score(fl_eval_result *res, int i, fl_eval_cond cond, const float *logits,
    int V, const fl_prompt *p)
{
	size_t k = (size_t)i * EVAL_COND_COUNT + cond;

	res->prob[k] = lens_prob_of(logits, V, p->answer);
	res->rank[k] = lens_rank_of(logits, V, p->answer);
	if (res->counterfactual) {
		res->ctx_prob[k] = lens_prob_of(logits, V, p->ctx_answer);
		res->ctx_rank[k] = lens_rank_of(logits, V, p->ctx_answer);
	}
}

/* Rows of logits scored on the threads: each row's softmax normaliser and
 * rank read all V logits, 900 rows in all for the zero-shot grid. */
typedef struct {
	fl_eval_result	*res;
	const fl_prompt	*p;
	const float	*lg;
	int		 i0, k, V;
	fl_eval_cond	 cond;
} score_job;

static void
score_part(void *ctx, int part, int nparts)
{
	const score_job *j = ctx;
	int a, b;

	kern_part_range(j->k, part, nparts, &a, &b);
	for (int r = a; r < b; r++)
		eval_score(j->res, j->i0 + r, j->cond, j->lg + (size_t)r * j->V, j->V,
		    &j->p[j->i0 + r]);
}

/* The scoring's buffers, allocated once for the four conditions: a new
 * (EVAL_LENS_ROWS, V) logits buffer per condition cost a page fault per 4
 * KB of its 26 MB each time (as long as the product it holds). */
typedef struct {
	float	*sub, *rows, *lg;
} eval_scratch;

/* Scores every prompt from the last layer's resid_mid and mlp_out at its
 * last position (mid, mlp: (n, D)): the final residual, less the intercept
 * of its fold with icpt (mitigate_final_resid), through the final readout.
 * One product per EVAL_LENS_ROWS prompts instead of one per batch reads the
 * unembedding a few times in all. */
static void
eval_score_rows(fl_eval_result *res, const fl_model *m, const fl_prompt *p,
    int n, const float *mid, const float *mlp, float *const icpt[2],
    fl_eval_split split, fl_eval_cond cond, const eval_scratch *w)
{
	int D = m->cfg.d_model, V = m->cfg.n_vocab;

	memset(w->sub, 0, (size_t)EVAL_LENS_ROWS * D * sizeof *w->sub);
	for (int i0 = 0; i0 < n; i0 += EVAL_LENS_ROWS) {
		int k = n - i0 < EVAL_LENS_ROWS ? n - i0 : EVAL_LENS_ROWS;
		score_job sj = { res, p, w->lg, i0, k, V, cond };

		if (icpt != NULL)
			for (int j = 0; j < k; j++)
				memcpy(w->sub + (size_t)j * D, icpt[eval_fold(&p[i0 + j],
				    split)], (size_t)D * sizeof *w->sub);
		mitigate_final_resid(m, mid + (size_t)i0 * D, mlp + (size_t)i0 * D,
		    w->sub, k, w->rows);
		lens_vectors(m, w->rows, k, w->lg);
		kern_for(score_part, &sj, k);
	}
}

/* Fits the intercept of fold f on the prompts of the other fold. */
static int
eval_fit_fold(fl_eval_result *res, const fl_model *m, const fl_prompt *p, int n,
    const fl_eval_opts *o, const float *x, const float *y, int f, float **icpt,
    char **cause)
{
	int D = m->cfg.d_model, J = decomp_regressors(m, o->with_resid), k = 0;
	float *cx = xmalloc((size_t)n * J * D * sizeof *cx);
	float *cy = xmalloc((size_t)n * D * sizeof *cy);
	fl_regress fit;
	char *why = NULL;
	int rc;

	for (int i = 0; i < n; i++) {
		if (eval_fold(&p[i], o->split) == f)
			continue;
		memcpy(cx + (size_t)k * J * D, x + (size_t)i * J * D,
		    (size_t)J * D * sizeof *cx);
		memcpy(cy + (size_t)k * D, y + (size_t)i * D, (size_t)D * sizeof *cy);
		k++;
	}
	rc = regress_fit(&fit, cx, cy, k, J, D, o->ridge, &why);
	free(cx);
	free(cy);
	if (rc != 0) {
		fl_error(cause, "calibrating the intercept for fold %d (split by %s, "
		    "%d prompts): %s", f, eval_split_name(o->split), k, why);
		free(why);
		return -1;
	}
	res->calib_r2[f] = fit.r2;
	res->calib_n[f] = k;
	*icpt = fit.intercept;
	fit.intercept = NULL;
	regress_clear(&fit);
	return 0;
}

static void
eval_stats(fl_eval_result *res)
{
	for (int c = 0; c < EVAL_COND_COUNT; c++) {
		double p = 0, top = 0, rank = 0;

		for (int i = 0; i < res->n; i++) {
			size_t k = (size_t)i * EVAL_COND_COUNT + c;

			p += res->prob[k];
			top += res->rank[k] == 1;
			rank += res->rank[k];
		}
		res->cond[c].mean_prob = p / res->n;
		res->cond[c].top1 = top / res->n;
		res->cond[c].mean_rank = rank / res->n;
		if (!res->counterfactual)
			continue;
		p = top = rank = 0;
		for (int i = 0; i < res->n; i++) {
			size_t k = (size_t)i * EVAL_COND_COUNT + c;

			p += res->ctx_prob[k];
			top += res->ctx_rank[k] == 1;
			rank += res->ctx_rank[k];
		}
		res->cond[c].ctx_mean_prob = p / res->n;
		res->cond[c].ctx_top1 = top / res->n;
		res->cond[c].ctx_mean_rank = rank / res->n;
	}
}

int
eval_prompts(fl_prompt_set *ps, const fl_model *m, const fl_task *t,
    const fl_eval_opts *o, int shots, char **cause)
{
	fl_prompt_opts po = { o->set, shots, o->seed, false, o->single_token,
	    o->counterfactual };

	return task_prompts(ps, m, t, &po, cause);
}

void
eval_rows_init(fl_eval_rows *r, const fl_model *m, const fl_eval_opts *o, int k)
{
	int D = m->cfg.d_model, J = decomp_regressors(m, o->with_resid);
	size_t k1 = (size_t)(k > 0 ? k : 1);

	memset(r, 0, sizeof *r);
	r->k = k;
	r->J = J;
	r->D = D;
	r->idx = xcalloc(k1, sizeof *r->idx);
	r->x = xmalloc(k1 * J * D * sizeof *r->x);
	for (int c = 0; c < 2; c++) {
		r->mid[c] = xmalloc(k1 * D * sizeof *r->mid[c]);
		r->mlp[c] = xmalloc(k1 * D * sizeof *r->mlp[c]);
	}
}

void
eval_rows_clear(fl_eval_rows *r)
{
	if (r == NULL)
		return;
	free(r->idx);
	free(r->x);
	for (int c = 0; c < 2; c++) {
		free(r->mid[c]);
		free(r->mlp[c]);
	}
	memset(r, 0, sizeof *r);
}

int
eval_collect(fl_eval_rows *r, const fl_model *m, const fl_prompt_set *ps,
    const int *idx, int k, const fl_eval_opts *o, const fl_progress *progress,
    char **cause)
{
	int L = m->cfg.n_layer, D = m->cfg.d_model, nh, rc = -1, max_len = 1;
	fl_prompt *p;
	fl_batch *b = NULL;
	fl_decomp_collect col = { 0 };
	fl_mitigation_state ms;
	fl_mitigation mit = { true, o->mask_heads, NULL, NULL, 0 };
	float *xlast = NULL;
	size_t *row_of = NULL, rows = 0;
	fl_grab gmid, gmlp;
	fl_grab_rows glast;
	fl_pass plain = { 0 }, resume = { 0 };
	fl_hook hooks[8];
	long rows_full;
	double t0 = fl_now();

	if (idx == NULL)
		k = ps->n;
	eval_rows_init(r, m, o, k);
	/* the prompts of the share, in order: batches index them from 0 */
	p = xmalloc((size_t)(k > 0 ? k : 1) * sizeof *p);
	for (int j = 0; j < k; j++) {
		r->idx[j] = idx != NULL ? idx[j] : j;
		p[j] = ps->p[r->idx[j]];
		if (p[j].n > max_len)
			max_len = p[j].n;
	}
	b = batch_new(m, o->batch, max_len);
	if (progress != NULL)
		b->progress = *progress;
	b->what = "evaluating";
	b->total = 2L * k;
	col.b = b;
	col.layer = L - 1;
	col.with_resid = o->with_resid;
	col.x = r->x;
	col.y = r->mlp[0];
	gmid = (fl_grab){ b, r->mid[0], (size_t)D, 0, D };
	/* the last layer's input, every row: the masked pass resumes there */
	row_of = xmalloc((size_t)(k > 0 ? k : 1) * sizeof *row_of);
	for (int j = 0; j < k; j++) {
		row_of[j] = rows;
		rows += (size_t)p[j].n;
	}
	xlast = xmalloc((rows > 0 ? rows : 1) * D * sizeof *xlast);
	glast = (fl_grab_rows){ b, xlast, row_of, D };

	/* the unmasked pass: the regression data (whose target is the last
	 * layer's mlp_out) and the last layer's resid_mid */
	nh = decomp_hooks(&col, false, hooks);
	hooks[nh++] = (fl_hook){ HOOK_RESID_MID, L - 1, batch_grab_last, &gmid };
	hooks[nh++] = (fl_hook){ HOOK_RESID_PRE, L - 1, batch_grab_rows, &glast };
	plain.no_logits = true;
	if (k > 0 && (rc = batch_run(b, p, k, hooks, nh, &plain, cause)) != 0)
		goto out;
	rows_full = b->rows;
	/* the masked pass: the mask changes the last layer only */
	gmid = (fl_grab){ b, r->mid[1], (size_t)D, 0, D };
	gmlp = (fl_grab){ b, r->mlp[1], (size_t)D, 0, D };
	nh = mitigate_hooks(m, &mit, &ms, hooks);
	hooks[nh++] = (fl_hook){ HOOK_RESID_MID, L - 1, batch_grab_last, &gmid };
	hooks[nh++] = (fl_hook){ HOOK_MLP_OUT, L - 1, batch_grab_last, &gmlp };
	resume.no_logits = true;
	resume.start_layer = L - 1;
	resume.resume = xlast;
	if (k > 0 && (rc = batch_run(b, p, k, hooks, nh, L > 1 ? &resume : &plain,
	    cause)) != 0)
		goto out;
	r->passes = b->passes;
	r->rows = b->rows;
	r->rows_resumed = L > 1 ? b->rows - rows_full : 0;
	r->seconds = fl_now() - t0;
	rc = 0;
out:
	if (rc != 0)
		eval_rows_clear(r);
	free(p);
	free(xlast);
	free(row_of);
	batch_free(b);
	return rc;
}

int
eval_finish(fl_eval_result *res, const fl_model *m, const fl_prompt_set *ps,
    const fl_eval_rows *r, const fl_eval_opts *o, int shots, char **cause)
{
	int D = m->cfg.d_model, n = ps->n, rc = -1;
	float *icpt[2] = { NULL, NULL };
	eval_scratch w = { NULL, NULL, NULL };
	double t0 = fl_now();

	memset(res, 0, sizeof *res);
	if (r->k != n)
		return fl_error(cause, "eval: %d prompts collected of the setting's %d",
		    r->k, n);
	for (int i = 0; i < n; i++)
		if (r->idx[i] != i)
			return fl_error(cause, "eval: collected row %d is prompt %d, "
			    "not %d", i, r->idx[i], i);
	res->shots = shots;
	res->n = n;
	res->multi_token = ps->multi_token;
	res->dropped = ps->dropped;
	res->counterfactual = ps->counterfactual;
	res->prob = xcalloc((size_t)(n > 0 ? n : 1) * EVAL_COND_COUNT, sizeof *res->prob);
	res->rank = xcalloc((size_t)(n > 0 ? n : 1) * EVAL_COND_COUNT, sizeof *res->rank);
	res->pair = xcalloc((size_t)(n > 0 ? n : 1), sizeof *res->pair);
	res->tmpl = xcalloc((size_t)(n > 0 ? n : 1), sizeof *res->tmpl);
	if (res->counterfactual) {
		res->ctx_prob = xcalloc((size_t)(n > 0 ? n : 1) * EVAL_COND_COUNT,
		    sizeof *res->ctx_prob);
		res->ctx_rank = xcalloc((size_t)(n > 0 ? n : 1) * EVAL_COND_COUNT,
		    sizeof *res->ctx_rank);
		res->ctx_pair = xcalloc((size_t)(n > 0 ? n : 1), sizeof *res->ctx_pair);
	}
	for (int i = 0; i < n; i++) {
		res->pair[i] = ps->p[i].pair;
		res->tmpl[i] = ps->p[i].tmpl;
		if (res->counterfactual)
			res->ctx_pair[i] = ps->p[i].ctx_pair;
	}
	w.sub = xmalloc((size_t)EVAL_LENS_ROWS * D * sizeof *w.sub);
	w.rows = xmalloc((size_t)EVAL_LENS_ROWS * D * sizeof *w.rows);
	w.lg = xcalloc_huge((size_t)EVAL_LENS_ROWS * m->cfg.n_vocab, sizeof *w.lg);
	for (int f = 0; f < 2; f++)
		if (eval_fit_fold(res, m, ps->p, n, o, r->x, r->mlp[0], f, &icpt[f],
		    cause) != 0)
			goto out;
	eval_score_rows(res, m, ps->p, n, r->mid[0], r->mlp[0], NULL, o->split,
	    EVAL_BASELINE, &w);
	eval_score_rows(res, m, ps->p, n, r->mid[0], r->mlp[0], icpt, o->split,
	    EVAL_INTERCEPT, &w);
	eval_score_rows(res, m, ps->p, n, r->mid[1], r->mlp[1], NULL, o->split,
	    EVAL_MASK, &w);
	eval_score_rows(res, m, ps->p, n, r->mid[1], r->mlp[1], icpt, o->split,
	    EVAL_BOTH, &w);
	eval_stats(res);
	res->passes = r->passes;
	res->rows = r->rows;
	res->rows_resumed = r->rows_resumed;
	res->seconds = r->seconds + (fl_now() - t0);
	rc = 0;
out:
	if (rc != 0)
		eval_clear(res);
	free(w.sub);
	free(w.rows);
	free(w.lg);
	free(icpt[0]);
	free(icpt[1]);
	return rc;
}

int
eval_task(fl_eval_result *res, const fl_model *m, const fl_task *t,
    const fl_eval_opts *o, int shots, const fl_progress *progress,
    char **cause)
{
	fl_prompt_set ps;
	fl_eval_rows r;
	int rc;

	memset(res, 0, sizeof *res);
	if (eval_prompts(&ps, m, t, o, shots, cause) != 0)
		return -1;
	if ((rc = eval_collect(&r, m, &ps, NULL, 0, o, progress, cause)) == 0) {
		rc = eval_finish(res, m, &ps, &r, o, shots, cause);
		eval_rows_clear(&r);
	}
	prompt_set_clear(&ps);
	return rc;
}
