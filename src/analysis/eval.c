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
eval_task(fl_eval_result *res, const fl_model *m, const fl_task *t,
    const fl_eval_opts *o, int shots, const fl_progress *progress,
    char **cause)
{
	int L = m->cfg.n_layer, D = m->cfg.d_model, J, nh, rc = -1, n;
	fl_prompt_opts po = { o->set, shots, o->seed, false, o->single_token,
	    o->counterfactual };
	fl_prompt_set ps;
	fl_batch *b = NULL;
	fl_decomp_collect col = { 0 };
	fl_mitigation_state ms;
	fl_mitigation mit = { true, o->mask_heads, NULL };
	float *xmid = NULL, *xmlp = NULL, *icpt[2] = { NULL, NULL }, *xlast = NULL;
	size_t *row_of = NULL, rows = 0;
	fl_grab gmid, gmlp;
	fl_grab_rows glast;
	fl_pass plain = { 0 }, resume = { 0 };
	fl_hook hooks[8];
	eval_scratch w = { NULL, NULL, NULL };
	long rows_full;
	double t0 = fl_now();

	memset(res, 0, sizeof *res);
	if (task_prompts(&ps, m, t, &po, cause) != 0)
		return -1;
	n = ps.n;	/* task_prompts gives every prompt its answer */
	res->shots = shots;
	res->n = n;
	res->multi_token = ps.multi_token;
	res->dropped = ps.dropped;
	res->counterfactual = ps.counterfactual;
	res->prob = xcalloc((size_t)n * EVAL_COND_COUNT, sizeof *res->prob);
	res->rank = xcalloc((size_t)n * EVAL_COND_COUNT, sizeof *res->rank);
	res->pair = xcalloc((size_t)n, sizeof *res->pair);
	res->tmpl = xcalloc((size_t)n, sizeof *res->tmpl);
	if (res->counterfactual) {
		res->ctx_prob = xcalloc((size_t)n * EVAL_COND_COUNT, sizeof *res->ctx_prob);
		res->ctx_rank = xcalloc((size_t)n * EVAL_COND_COUNT, sizeof *res->ctx_rank);
		res->ctx_pair = xcalloc((size_t)n, sizeof *res->ctx_pair);
	}
	for (int i = 0; i < n; i++) {
		res->pair[i] = ps.p[i].pair;
		res->tmpl[i] = ps.p[i].tmpl;
		if (res->counterfactual)
			res->ctx_pair[i] = ps.p[i].ctx_pair;
	}
	J = decomp_regressors(m, o->with_resid);
	b = batch_new(m, o->batch, ps.max_len);
	if (progress != NULL)
		b->progress = *progress;
	b->what = "evaluating";
	b->total = 2L * n;
	col.b = b;
	col.layer = L - 1;
	col.with_resid = o->with_resid;
	col.x = xmalloc((size_t)n * J * D * sizeof *col.x);
	col.y = xmalloc((size_t)n * D * sizeof *col.y);
	xmid = xmalloc((size_t)n * D * sizeof *xmid);
	xmlp = xmalloc((size_t)n * D * sizeof *xmlp);
	gmid = (fl_grab){ b, xmid, (size_t)D, 0, D };
	gmlp = (fl_grab){ b, xmlp, (size_t)D, 0, D };
	/* the last layer's input, every row: the masked pass resumes there */
	row_of = xmalloc((size_t)n * sizeof *row_of);
	for (int i = 0; i < n; i++) {
		row_of[i] = rows;
		rows += (size_t)ps.p[i].n;
	}
	xlast = xmalloc(rows * D * sizeof *xlast);
	glast = (fl_grab_rows){ b, xlast, row_of, D };

	/* the unmasked pass: baseline scores, regression data, the last layer's
	 * resid_mid and mlp_out */
	nh = decomp_hooks(&col, false, hooks);
	hooks[nh++] = (fl_hook){ HOOK_RESID_MID, L - 1, batch_grab_last, &gmid };
	hooks[nh++] = (fl_hook){ HOOK_MLP_OUT, L - 1, batch_grab_last, &gmlp };
	hooks[nh++] = (fl_hook){ HOOK_RESID_PRE, L - 1, batch_grab_rows, &glast };
	plain.no_logits = true;
	if ((rc = batch_run(b, ps.p, n, hooks, nh, &plain, cause)) != 0)
		goto out;
	rc = -1;
	w.sub = xmalloc((size_t)EVAL_LENS_ROWS * D * sizeof *w.sub);
	w.rows = xmalloc((size_t)EVAL_LENS_ROWS * D * sizeof *w.rows);
	w.lg = xcalloc_huge((size_t)EVAL_LENS_ROWS * m->cfg.n_vocab, sizeof *w.lg);
	for (int f = 0; f < 2; f++)
		if (eval_fit_fold(res, m, ps.p, n, o, col.x, col.y, f, &icpt[f], cause) != 0)
			goto out;
	eval_score_rows(res, m, ps.p, n, xmid, xmlp, NULL, o->split, EVAL_BASELINE,
	    &w);
	eval_score_rows(res, m, ps.p, n, xmid, xmlp, icpt, o->split, EVAL_INTERCEPT,
	    &w);

	rows_full = b->rows;
	/* the masked pass: the mask changes the last layer only */
	nh = mitigate_hooks(m, &mit, &ms, hooks);
	hooks[nh++] = (fl_hook){ HOOK_RESID_MID, L - 1, batch_grab_last, &gmid };
	hooks[nh++] = (fl_hook){ HOOK_MLP_OUT, L - 1, batch_grab_last, &gmlp };
	resume.no_logits = true;
	resume.start_layer = L - 1;
	resume.resume = xlast;
	if ((rc = batch_run(b, ps.p, n, hooks, nh, L > 1 ? &resume : &plain,
	    cause)) != 0)
		goto out;
	eval_score_rows(res, m, ps.p, n, xmid, xmlp, NULL, o->split, EVAL_MASK,
	    &w);
	eval_score_rows(res, m, ps.p, n, xmid, xmlp, icpt, o->split, EVAL_BOTH,
	    &w);
	eval_stats(res);
	res->passes = b->passes;
	res->rows = b->rows;
	res->rows_resumed = L > 1 ? b->rows - rows_full : 0;
	res->seconds = fl_now() - t0;
	rc = 0;
out:
	if (rc != 0)
		eval_clear(res);
	free(w.sub);
	free(w.rows);
	free(w.lg);
	free(icpt[0]);
	free(icpt[1]);
	free(xmid);
	free(xmlp);
	free(xlast);
	free(row_of);
	free(col.x);
	free(col.y);
	batch_free(b);
	prompt_set_clear(&ps);
	return rc;
}
