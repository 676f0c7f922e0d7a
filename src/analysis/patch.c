/* patch.c - see patch.h. */
#include "autoconfig.h"

#include "patch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "analysis/lens.h"
#include "analysis/movers.h"
#include "engine/kernels.h"
#include "engine/readout.h"
#include "base/util.h"

#define PATCH_CHUNK_ROWS 2048	/* rows of the MLP products at once */

void
patch_clear(fl_patch *res)
{
	if (res == NULL)
		return;
	free(res->patched);
	free(res->effect);
	free(res->pearson);
	free(res->mlp_patched);
	free(res->mlp_effect);
	free(res->attn);
	free(res->proj);
	free(res->clean_prompt);
	free(res->mlp_patched_prompt);
	free(res->patched_prompt);
	memset(res, 0, sizeof *res);
}

int
patch_movers(const fl_patch *res, double effect_min, double r_min, bool *out)
{
	int n = 0, LH = res->n_layer * res->n_head;

	for (int i = 0; i < LH; i++) {
		bool copies = res->pearson[i] >= r_min;

		if (isnan(res->pearson[i]) && res->n_prompts > 0) {
			double a = 0;

			for (int p = 0; p < res->n_prompts; p++)
				a += res->attn[(size_t)p * LH + i];
			copies = a / res->n_prompts >= 0.5;
		}
		/* NAN compares false: an undefined effect is no mover */
		out[i] = res->effect[i] <= -effect_min && copies;
		n += out[i];
	}
	return n;
}

static const char *recv_names[] = { "resid", "q", "k", "v" };
static const char *metric_names[] = { "answer", "subject" };

const char *
patch_recv_name(fl_patch_recv r)
{
	return (unsigned)r < 4 ? recv_names[r] : "?";
}

int
patch_recv_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, recv_names[i]) == 0)
			return i;
	return -1;
}

const char *
patch_metric_name(fl_patch_metric m)
{
	return (unsigned)m < 2 ? metric_names[m] : "?";
}

int
patch_metric_parse(const char *s)
{
	for (int i = 0; i < 2; i++)
		if (strcmp(s, metric_names[i]) == 0)
			return i;
	return -1;
}

void
patch_init(fl_patch *res, const fl_model *m, int n, int R)
{
	size_t LH = (size_t)m->cfg.n_layer * m->cfg.n_head;

	memset(res, 0, sizeof *res);
	res->n_layer = m->cfg.n_layer;
	res->n_head = m->cfg.n_head;
	res->n_prompts = n;
	res->receiver = R;
	res->patched = xcalloc(LH, sizeof *res->patched);
	res->effect = xcalloc(LH, sizeof *res->effect);
	res->pearson = xcalloc(LH, sizeof *res->pearson);
	res->mlp_patched = xcalloc((size_t)m->cfg.n_layer, sizeof *res->mlp_patched);
	res->mlp_effect = xcalloc((size_t)m->cfg.n_layer, sizeof *res->mlp_effect);
	res->attn = xcalloc((size_t)n * LH, sizeof *res->attn);
	res->proj = xcalloc((size_t)n * LH, sizeof *res->proj);
	res->clean_prompt = xcalloc((size_t)(n > 0 ? n : 1), sizeof *res->clean_prompt);
	res->mlp_patched_prompt = xcalloc((size_t)(n > 0 ? n : 1) * m->cfg.n_layer,
	    sizeof *res->mlp_patched_prompt);
	res->patched_prompt = xcalloc((size_t)(n > 0 ? n : 1) * LH,
	    sizeof *res->patched_prompt);
}

void
patch_sum_prompts(fl_patch *res)
{
	int LH = res->n_layer * res->n_head, n = res->n_prompts;

	res->clean = 0;
	for (int i = 0; i < n; i++)
		res->clean += res->clean_prompt[i];
	res->clean /= n;
	for (int k = 0; k < LH; k++) {
		double s = 0;

		for (int i = 0; i < n; i++)
			s += res->patched_prompt[(size_t)i * LH + k];
		res->patched[k] = s / n;
	}
	for (int l = 0; l < res->n_layer; l++) {
		double s = 0;

		for (int i = 0; i < n; i++)
			s += res->mlp_patched_prompt[(size_t)i * res->n_layer + l];
		res->mlp_patched[l] = s / n;	/* NAN: no MLP senders */
	}
	patch_finish(res);
}

static double
effect_of(double patched, double clean)
{
	return clean != 0 ? 100.0 * (patched - clean) / clean : NAN;
}

/* effect and Pearson's r from patched, clean, attn and proj. */
void
patch_finish(fl_patch *res)
{
	int LH = res->n_layer * res->n_head, n = res->n_prompts;
	double *x = xmalloc((size_t)n * sizeof *x), *y = xmalloc((size_t)n * sizeof *y);

	for (int k = 0; k < LH; k++) {
		res->effect[k] = effect_of(res->patched[k], res->clean);
		for (int i = 0; i < n; i++) {
			x[i] = res->attn[(size_t)i * LH + k];
			y[i] = res->proj[(size_t)i * LH + k];
		}
		res->pearson[k] = movers_pearson(x, y, n);
	}
	for (int l = 0; l < res->n_layer; l++)
		res->mlp_effect[l] = effect_of(res->mlp_patched[l], res->clean);
	free(x);
	free(y);
}

/* The readout directions of n prompts' tokens (D each, in dirs (n, D)):
 * W_U[:, token] minus the mean row when ubar is given (a metric), or
 * W_U[:, subject] alone (the scatter), as the residual stream sees them
 * (model_unembed_dir). The token is the answer or the subject's first. */
static void
token_dirs(const fl_model *m, const fl_prompt *p, int n, bool subject,
    const float *ubar, float *dirs)
{
	int P = m->cfg.d_proj, D = m->cfg.d_model;
	float *u = xmalloc((size_t)P * sizeof *u);

	for (int i = 0; i < n; i++) {
		table_row(&m->unembed, subject ? p[i].subject : p[i].answer, u);
		if (ubar != NULL)
			for (int k = 0; k < P; k++)
				u[k] -= ubar[k];
		model_unembed_dir(m, u, dirs + (size_t)i * D);
	}
	free(u);
}

/* The token a prompt's metric reads. */
static int
metric_token(const fl_prompt *p, fl_patch_metric metric)
{
	return metric == PATCH_METRIC_SUBJECT ? p->subject : p->answer;
}

/* Attention from the last query to the prompt's subject, every head of one
 * layer: install on HOOK_PATTERN, every layer. */
typedef struct {
	const fl_batch	*b;
	const fl_prompt	*p;
	float		*attn;		/* (N, L, H) */
	int		 L, H;
} subj_attn;

static int
subj_attn_hook(void *ud, fl_act *a)
{
	subj_attn *s = ud;
	int i = s->b->first + a->seq, T = a->shape[1];
	const fl_prompt *q = &s->p[i];

	for (int h = 0; h < s->H; h++) {
		const float *row = a->data + ((size_t)h * T + T - 1) * T;
		double sum = 0;

		for (int j = q->subj_pos; j < q->subj_pos + q->subj_len; j++)
			sum += row[j];
		s->attn[((size_t)i * s->L + a->layer) * s->H + h] = (float)sum;
	}
	return FL_HOOK_CONTINUE;
}

/* Sums the last row of a (T, D) point over the prompts, per layer. */
typedef struct {
	double	*sum;	/* (L, D) */
	int	 D;
} z_sum;

static int
z_sum_hook(void *ud, fl_act *a)
{
	z_sum *s = ud;
	const float *row = a->data + (size_t)(a->shape[0] - 1) * s->D;
	double *dst = s->sum + (size_t)a->layer * s->D;

	for (int i = 0; i < s->D; i++)
		dst[i] += row[i];
	return FL_HOOK_CONTINUE;
}

/* The rest of block l for n rows x (n, D) whose attention output has been
 * added: pre-LN, x += MLP(LN2(x)); post-LN, x = LN1(x), then
 * x = LN2(x + MLP(x)). Scratch ln (n, D), h (n, F), mean, scale (n). */
static void
block_rest(const fl_model *m, int l, float *x, int n, float *ln, float *h,
    float *mean, float *scale)
{
	const fl_layer *y = &m->layers[l];

	if (m->cfg.ln_before) {
		model_norm_stats_mt(m, mean, scale, x, n);
		model_ln_apply_mt(m, ln, x, mean, scale, y->ln2_w, y->ln2_b, n);
		model_mlp(m, l, x, ln, n, h, true);
	} else {
		model_norm_stats_mt(m, mean, scale, x, n);
		model_ln_apply_mt(m, x, x, mean, scale, y->ln1_w, y->ln1_b, n);
		model_mlp(m, l, x, x, n, h, true);
		model_norm_stats_mt(m, mean, scale, x, n);
		model_ln_apply_mt(m, x, x, mean, scale, y->ln2_w, y->ln2_b, n);
	}
}

/* Every clean prompt needs an answer; the scatter needs a subject. */
static int
check_prompts(const fl_model *m, const fl_prompt *p, int n, char **cause)
{
	if (n < 1)
		return fl_error(cause, "path patching needs at least one prompt");
	for (int i = 0; i < n; i++)
		if (p[i].answer < 0 || p[i].answer >= m->cfg.n_vocab ||
		    p[i].subject < 0 || p[i].subject >= m->cfg.n_vocab ||
		    p[i].subj_pos < 0 || p[i].subj_pos + p[i].subj_len > p[i].n)
			return fl_error(cause, "prompt %d has no answer or no subject "
			    "token to patch for", i);
	return 0;
}

static int
receiver_layer(const fl_model *m, const fl_patch_opts *o, char **cause)
{
	int L = m->cfg.n_layer, R = o != NULL ? o->receiver : -1;
	fl_patch_recv rk = o != NULL ? o->recv : PATCH_RECV_RESID;

	if ((unsigned)rk > PATCH_RECV_V)
		return fl_error(cause, "receiver kind %d: expected resid, q, k or v",
		    (int)rk);
	if (o != NULL && (unsigned)o->metric > PATCH_METRIC_SUBJECT)
		return fl_error(cause, "metric %d: expected answer or subject",
		    (int)o->metric);
	if (rk != PATCH_RECV_RESID) {
		if (R < 1 || R > L - 1)
			return fl_error(cause, "a %s receiver is a head of layer 1 to %d "
			    "(the receiver layer), not %d", patch_recv_name(rk), L - 1, R);
		if (o->recv_head < 0 || o->recv_head >= m->cfg.n_head)
			return fl_error(cause, "receiver head %d: the model has heads 0 to "
			    "%d", o->recv_head, m->cfg.n_head - 1);
		return R;
	}
	if (R < 0)
		R = L;
	if (R < 1 || R > L)
		return fl_error(cause, "receiver layer %d: it must be 1 to %d (the "
		    "residual before that layer; %d: the final residual)", R, L, L);
	return R;
}

/* The hook point of a q, k or v receiver: what the cache holds (rotated q
 * and k in rotary models). */
static fl_hook_point
recv_point(const fl_model *m, fl_patch_recv rk)
{
	if (rk == PATCH_RECV_Q)
		return m->cfg.rotary ? HOOK_ROT_Q : HOOK_Q;
	if (rk == PATCH_RECV_K)
		return m->cfg.rotary ? HOOK_ROT_K : HOOK_K;
	return HOOK_V;
}

/* The sender values into *out (L, H, D) and *mlp_out (L, D, or NULL when
 * none can be had): given, or the corrupted runs' mean results and MLP
 * outputs. 0, FL_STOPPED or -1 with *cause; set only on 0. */
static int
sender_means_fast(fl_batch *b, const fl_prompt *corrupt, int n_c,
    const fl_patch_opts *o, float **out, float **mlp_out, char **cause)
{
	const fl_model *m = b->m;
	int L = m->cfg.n_layer, H = m->cfg.n_head, D = m->cfg.d_model, rc;
	float *vals, *z, *mv = NULL;
	z_sum zs, ms;
	fl_hook hooks[2];
	fl_pass pass = { 0 };

	if (o != NULL && o->sender_values != NULL) {
		vals = xmalloc((size_t)L * H * D * sizeof *vals);
		memcpy(vals, o->sender_values, (size_t)L * H * D * sizeof *vals);
		if (o->mlp_values != NULL) {
			mv = xmalloc((size_t)L * D * sizeof *mv);
			memcpy(mv, o->mlp_values, (size_t)L * D * sizeof *mv);
		}
		*out = vals;
		*mlp_out = mv;
		return 0;
	}
	if (corrupt == NULL || n_c < 1)
		return fl_error(cause, "path patching needs corrupted prompts");
	zs = (z_sum){ xcalloc((size_t)L * D, sizeof(double)), D };
	ms = (z_sum){ xcalloc((size_t)L * D, sizeof(double)), D };
	hooks[0] = (fl_hook){ HOOK_Z, -1, z_sum_hook, &zs };
	hooks[1] = (fl_hook){ HOOK_MLP_OUT, -1, z_sum_hook, &ms };
	pass.no_logits = true;
	if ((rc = batch_run(b, corrupt, n_c, hooks, 2, &pass, cause)) != 0) {
		free(zs.sum);
		free(ms.sum);
		return rc;
	}
	/* The result is linear in z: the mean result is the mean z's result. */
	vals = xmalloc((size_t)L * H * D * sizeof *vals);
	mv = xmalloc((size_t)L * D * sizeof *mv);
	z = xmalloc((size_t)D * sizeof *z);
	for (int l = 0; l < L; l++) {
		for (int i = 0; i < D; i++) {
			z[i] = (float)(zs.sum[(size_t)l * D + i] / n_c);
			mv[(size_t)l * D + i] = (float)(ms.sum[(size_t)l * D + i] / n_c);
		}
		for (int h = 0; h < H; h++)
			model_head_result(m, l, h, z, vals + ((size_t)l * H + h) * D);
	}
	free(z);
	free(zs.sum);
	free(ms.sum);
	*out = vals;
	*mlp_out = mv;
	return 0;
}

/* A q, k or v receiver's step 4 for one prompt. */
typedef struct {
	float		*val;	/* (dh) the head's input at the last position */
	int		 col;	/* its first column */
	int		 dh;
	bool		 set;	/* false: take it and stop; true: put it in */
} recv_edit;

static int
recv_edit_hook(void *ud, fl_act *a)
{
	recv_edit *e = ud;
	/* (T, H, dh): a row is H dh floats */
	float *row = a->data + (size_t)(a->shape[0] - 1) * a->shape[1] * a->shape[2] +
	    e->col;

	if (!e->set) {
		memcpy(e->val, row, (size_t)e->dh * sizeof *row);
		return FL_STOPPED;
	}
	memcpy(row, e->val, (size_t)e->dh * sizeof *row);
	return FL_HOOK_CONTINUE;
}

/* logit(token) - mean logit of a logits row. */
static double
logit_metric(const float *lg, int V, int token)
{
	double mean = 0;

	for (int v = 0; v < V; v++)
		mean += lg[v];
	return lg[token] - mean / V;
}

/* Steps 3-4 past the receiver layer for a q, k or v receiver: x is the
 * patched resid_pre of layer R at the last position; clean (T, D) the
 * prompt's clean resid_pre of R (its last row overwritten and restored).
 * Returns the metric. */
static double
recv_metric(fl_run *r, const fl_model *m, const fl_prompt *q, int R,
    const fl_patch_opts *o, float *clean, const float *x, float *lg, float *val)
{
	int D = m->cfg.d_model, T = q->n, dh = D / m->cfg.n_head;
	float *last = clean + (size_t)(T - 1) * D, *keep = lg;	/* lg >= D floats */
	recv_edit e = { val, o->recv_head * dh, dh, false };
	fl_hook hk = { recv_point(m, o->recv), R, recv_edit_hook, &e };
	fl_pass p = { 0 };

	memcpy(keep, last, (size_t)D * sizeof *keep);
	memcpy(last, x, (size_t)D * sizeof *last);
	p.hooks = &hk;
	p.n_hooks = 1;
	p.start_layer = R;
	p.resume = clean;
	p.no_logits = true;
	run_forward(r, q->ids, &T, 1, &p, NULL);	/* stopped by the hook */
	memcpy(last, keep, (size_t)D * sizeof *last);
	e.set = true;
	p.no_logits = false;
	p.logits = lg;
	run_forward(r, q->ids, &T, 1, &p, NULL);
	return logit_metric(lg, m->cfg.n_vocab, metric_token(q, o->metric));
}

int
patch_heads(fl_patch *res, fl_batch *b, const fl_prompt *clean, int n,
    const fl_prompt *corrupt, int n_corrupt, const fl_patch_opts *o,
    char **cause)
{
	const fl_model *m = b->m;
	int L = m->cfg.n_layer, H = m->cfg.n_head, D = m->cfg.d_model;
	int F = m->cfg.d_mlp, V = m->cfg.n_vocab, R, rc = -1, nh = 0, max_len = 1;
	size_t LD = (size_t)L * D;
	float *zc, *rin, *rmid, *aout, *recv, *vals = NULL, *mvals = NULL, *ubar;
	float *res_h, *adir, *sdir, *x, *ln, *hid, *mean, *scale, *rrows = NULL;
	float *lg = NULL, *val = NULL;
	size_t *row_of = NULL, n_rows = 0;
	bool pre = m->cfg.ln_before;
	fl_patch_opts dflt = { -1, NULL, PATCH_RECV_RESID, 0, PATCH_METRIC_ANSWER,
	    NULL };
	bool qkv;
	fl_grab gz, gm, gmid, ga, gr;
	fl_grab_rows grr;
	subj_attn sa;
	fl_hook hooks[7];
	fl_pass pass = { 0 };
	fl_run *run = NULL;

	if (o == NULL)
		o = &dflt;
	if ((R = receiver_layer(m, o, cause)) < 0 ||
	    check_prompts(m, clean, n, cause) != 0)
		return -1;
	qkv = o->recv != PATCH_RECV_RESID;
	patch_init(res, m, n, R);
	res->recv = o->recv;
	res->recv_head = qkv ? o->recv_head : -1;
	res->metric = o->metric;
	zc = xmalloc((size_t)n * LD * sizeof *zc);
	rin = xmalloc((size_t)n * LD * sizeof *rin);
	rmid = pre ? rin : xmalloc((size_t)n * LD * sizeof *rmid);
	aout = xmalloc((size_t)n * LD * sizeof *aout);
	recv = xmalloc((size_t)n * D * sizeof *recv);
	ubar = xmalloc((size_t)m->cfg.d_proj * sizeof *ubar);
	adir = xmalloc((size_t)n * D * sizeof *adir);
	sdir = xmalloc((size_t)n * D * sizeof *sdir);
	x = xmalloc((size_t)PATCH_CHUNK_ROWS * D * sizeof *x);
	ln = xmalloc((size_t)PATCH_CHUNK_ROWS * D * sizeof *ln);
	hid = xmalloc((size_t)PATCH_CHUNK_ROWS * F * sizeof *hid);
	mean = xmalloc((size_t)PATCH_CHUNK_ROWS * sizeof *mean);
	scale = xmalloc((size_t)PATCH_CHUNK_ROWS * sizeof *scale);
	res_h = xmalloc((size_t)D * sizeof *res_h);
	attrib_mean_unembed(m, ubar);
	token_dirs(m, clean, n, o->metric == PATCH_METRIC_SUBJECT, ubar, adir);
	token_dirs(m, clean, n, true, NULL, sdir);
	if (qkv) {
		row_of = xmalloc((size_t)n * sizeof *row_of);
		for (int i = 0; i < n; i++) {
			row_of[i] = n_rows;
			n_rows += (size_t)clean[i].n;
			max_len = clean[i].n > max_len ? clean[i].n : max_len;
		}
		rrows = xmalloc(n_rows * D * sizeof *rrows);
		lg = xmalloc((size_t)(V > D ? V : D) * sizeof *lg);
		val = xmalloc((size_t)D * sizeof *val);
		run = run_new(m, max_len, max_len);
	}

	/* 1. the sender values */
	if ((rc = sender_means_fast(b, corrupt, n_corrupt, o, &vals, &mvals,
	    cause)) != 0)
		goto out;

	/* 2. the clean run: at the last position, z, attn_out and the stream
	 * the patched attention output joins (pre-LN: resid_mid, to which it
	 * has been added; post-LN: resid_pre, since ln1 follows the sum) of
	 * every layer, resid_mid (where an MLP's output joins; pre-LN the same
	 * rows), the receiver, the attention to the subject; with a q, k or v
	 * receiver every row of resid_pre of R */
	gz = (fl_grab){ b, zc, LD, (size_t)D, D };
	gm = (fl_grab){ b, rin, LD, (size_t)D, D };
	gmid = (fl_grab){ b, rmid, LD, (size_t)D, D };
	ga = (fl_grab){ b, aout, LD, (size_t)D, D };
	gr = (fl_grab){ b, recv, (size_t)D, 0, D };
	grr = (fl_grab_rows){ b, rrows, row_of, D };
	sa = (subj_attn){ b, clean, res->attn, L, H };
	hooks[nh++] = (fl_hook){ HOOK_Z, -1, batch_grab_last, &gz };
	hooks[nh++] = (fl_hook){ pre ? HOOK_RESID_MID : HOOK_RESID_PRE, -1,
	    batch_grab_last, &gm };
	if (!pre)
		hooks[nh++] = (fl_hook){ HOOK_RESID_MID, -1, batch_grab_last, &gmid };
	hooks[nh++] = (fl_hook){ HOOK_ATTN_OUT, -1, batch_grab_last, &ga };
	hooks[nh++] = (fl_hook){ HOOK_PATTERN, -1, subj_attn_hook, &sa };
	if (R == L || qkv)
		hooks[nh++] = (fl_hook){ HOOK_RESID_POST, L - 1, batch_grab_last, &gr };
	else
		hooks[nh++] = (fl_hook){ HOOK_RESID_PRE, R, batch_grab_last, &gr };
	if (qkv)
		hooks[nh++] = (fl_hook){ HOOK_RESID_PRE, R, batch_grab_rows, &grr };
	pass.no_logits = true;
	if ((rc = batch_run(b, clean, n, hooks, nh, &pass, cause)) != 0)
		goto out;
	rc = -1;
	for (int i = 0; i < n; i++)
		res->clean_prompt[i] = model_readout_dot(m, recv + (size_t)i * D,
		    adir + (size_t)i * D);

	/* the scatter's y */
	for (int i = 0; i < n; i++)
		for (int l = 0; l < L; l++)
			for (int h = 0; h < H; h++) {
				const float *u = sdir + (size_t)i * D;
				double s = 0;

				model_head_result(m, l, h, zc + (size_t)i * LD + (size_t)l * D, res_h);
				for (int k = 0; k < D; k++)
					s += (double)res_h[k] * u[k];
				res->proj[((size_t)i * L + l) * H + h] = (float)s;
			}

	/* 3-4. per sender layer, all its heads and then its MLP over all
	 * prompts, in chunks of rows (h, i) (h = H: the MLP); each chunk
	 * reports its share of the layer's n units, so a stop request is seen
	 * within one chunk */
	for (int l = 0; l < L; l++) {
		long total = (long)(H + 1) * n;

		if (l >= R) {	/* no path to the receiver */
			for (int i = 0; i < n; i++) {
				for (int h = 0; h < H; h++)
					res->patched_prompt[((size_t)i * L + l) * H + h] =
					    res->clean_prompt[i];
				res->mlp_patched_prompt[(size_t)i * L + l] = mvals != NULL ?
				    res->clean_prompt[i] : NAN;
			}
			b->done += n;
			continue;
		}
		for (long r0 = 0; r0 < total; r0 += PATCH_CHUNK_ROWS) {
			long end = total - r0 < PATCH_CHUNK_ROWS ? total : r0 + PATCH_CHUNK_ROWS;
			/* a chunk holds head rows then MLP rows: carry each part */
			long mlp0 = (long)H * n > r0 ? (long)H * n : r0;
			int rows_h = (int)((mlp0 < end ? mlp0 : end) - r0);
			int rows = (int)(end - r0);

			for (int k = 0; k < rows; k++) {
				int h = (int)((r0 + k) / n), i = (int)((r0 + k) % n);
				float *xr = x + (size_t)k * D;

				if (h < H) {
					const float *v = vals + ((size_t)l * H + h) * D;

					model_head_result(m, l, h, zc + (size_t)i * LD +
					    (size_t)l * D, res_h);
					memcpy(xr, rin + (size_t)i * LD + (size_t)l * D,
					    (size_t)D * sizeof *xr);
					for (int j = 0; j < D; j++)
						xr[j] += v[j] - res_h[j];
				} else {
					/* resid_mid + the replaced MLP output */
					const float *v = mvals != NULL ? mvals + (size_t)l * D :
					    NULL;

					memcpy(xr, rmid + (size_t)i * LD + (size_t)l * D,
					    (size_t)D * sizeof *xr);
					for (int j = 0; v != NULL && j < D; j++)
						xr[j] += v[j];
				}
			}
			if (rows > rows_h && !pre) {	/* the MLP rows' ln2 */
				const fl_layer *y = &m->layers[l];
				float *xm = x + (size_t)rows_h * D;

				model_norm_stats_mt(m, mean, scale, xm, rows - rows_h);
				model_ln_apply_mt(m, xm, xm, mean, scale, y->ln2_w,
				    y->ln2_b, rows - rows_h);
			}
			for (int k2 = l; k2 < R; k2++) {
				/* the head rows finish block l; the MLP rows start at
				 * l + 1 */
				int kn = k2 == l ? rows_h : rows;

				if (kn <= 0)
					continue;
				if (k2 > l || !pre)
					for (int k = 0; k < kn; k++) {
						int i = (int)((r0 + k) % n);
						const float *ao = aout + (size_t)i * LD + (size_t)k2 * D;
						float *xr = x + (size_t)k * D;

						for (int j = 0; j < D; j++)
							xr[j] += ao[j];
					}
				block_rest(m, k2, x, kn, ln, hid, mean, scale);
			}
			for (int k = 0; k < rows; k++) {
				int h = (int)((r0 + k) / n), i = (int)((r0 + k) % n);
				const float *xr = x + (size_t)k * D;

				double met;

				if (h == H && mvals == NULL)
					continue;
				if (qkv)
					met = recv_metric(run, m, &clean[i], R, o,
					    rrows + row_of[i] * D, xr, lg, val);
				else
					met = model_readout_dot(m, xr, adir + (size_t)i * D);
				if (h == H)
					res->mlp_patched_prompt[(size_t)i * L + l] = met;
				else
					res->patched_prompt[((size_t)i * L + l) * H + h] = met;
			}
			if (batch_report(b, b->done + (r0 + rows) / (H + 1))) {
				rc = FL_STOPPED;
				goto out;
			}
		}
		if (mvals == NULL)
			for (int i = 0; i < n; i++)
				res->mlp_patched_prompt[(size_t)i * L + l] = NAN;
		b->done += n;
	}
	patch_sum_prompts(res);
	rc = 0;
out:
	if (rc != 0)
		patch_clear(res);
	free(vals);
	free(mvals);
	free(zc);
	free(rin);
	if (!pre)
		free(rmid);
	free(aout);
	free(recv);
	free(ubar);
	free(adir);
	free(sdir);
	free(x);
	free(ln);
	free(hid);
	free(mean);
	free(scale);
	free(res_h);
	free(rrows);
	free(row_of);
	free(lg);
	free(val);
	run_free(run);
	return rc;
}

/* ---- the reference ---------------------------------------------------- */

int
hook_freeze_qkv(void *ud, fl_act *a)
{
	const fl_cache *c = ud;
	size_t TD = (size_t)c->n_tok * c->d_model;
	const float *src = a->point == HOOK_Q || a->point == HOOK_ROT_Q ? c->q :
	    a->point == HOOK_K || a->point == HOOK_ROT_K ? c->k : c->v;

	memcpy(a->data, src + (size_t)a->layer * TD, TD * sizeof(float));
	return FL_HOOK_CONTINUE;
}

int
patch_freeze_hooks(const fl_model *m, const fl_cache *clean, fl_hook *hooks)
{
	void *ud = (void *)clean;

	/* the cache holds q and k as attention reads them: rotated in rotary
	 * models, where freezing hook_q / hook_k would rotate them twice */
	hooks[0] = (fl_hook){ m->cfg.rotary ? HOOK_ROT_Q : HOOK_Q, -1, hook_freeze_qkv, ud };
	hooks[1] = (fl_hook){ m->cfg.rotary ? HOOK_ROT_K : HOOK_K, -1, hook_freeze_qkv, ud };
	hooks[2] = (fl_hook){ HOOK_V, -1, hook_freeze_qkv, ud };
	return 3;
}

int
hook_patch_head(void *ud, fl_act *a)
{
	const fl_patch_head *p = ud;
	int T = a->shape[0], H = a->shape[1], D = a->shape[2];

	memcpy(a->data + ((size_t)(T - 1) * H + p->head) * D, p->value,
	    (size_t)D * sizeof(float));
	return FL_HOOK_CONTINUE;
}

/* Sums the last row of HOOK_RESULT (H, D) per layer. */
static int
result_sum_hook(void *ud, fl_act *a)
{
	double *sum = ud;
	int T = a->shape[0], H = a->shape[1], D = a->shape[2];
	const float *row = a->data + (size_t)(T - 1) * H * D;
	double *dst = sum + (size_t)a->layer * H * D;

	for (size_t i = 0; i < (size_t)H * D; i++)
		dst[i] += row[i];
	return FL_HOOK_CONTINUE;
}

/* Replaces the last row of a (T, D) point (install on HOOK_MLP_OUT at the
 * sender's layer). */
static int
hook_patch_row(void *ud, fl_act *a)
{
	memcpy(a->data + (size_t)(a->shape[0] - 1) * a->shape[1], ud,
	    (size_t)a->shape[1] * sizeof(float));
	return FL_HOOK_CONTINUE;
}

static int
grab_stop(void *ud, fl_act *a)
{
	memcpy(ud, a->data + (size_t)(a->shape[0] - 1) * a->shape[1],
	    (size_t)a->shape[1] * sizeof(float));
	return FL_STOPPED;
}

/* The freezing hooks below one layer only (q, k, v receivers: the
 * receiver's own layer computes them from the patched stream). */
typedef struct {
	const fl_cache	*c;
	int		 below;
} freeze_below;

static int
hook_freeze_below(void *ud, fl_act *a)
{
	const freeze_below *f = ud;

	return a->layer < f->below ? hook_freeze_qkv((void *)f->c, a) :
	    FL_HOOK_CONTINUE;
}

/* One head's columns of a (T, D) point, every row: taken (and the pass
 * stopped) or put back. */
typedef struct {
	float	*val;	/* (T, dh) */
	int	 col, dh;
	bool	 set;
} head_cols;

static int
hook_head_cols(void *ud, fl_act *a)
{
	head_cols *e = ud;
	int T = a->shape[0], W = a->shape[1] * a->shape[2];	/* (T, H, dh) */

	for (int t = 0; t < T; t++) {
		float *row = a->data + (size_t)t * W + e->col;

		if (e->set)
			memcpy(row, e->val + (size_t)t * e->dh, (size_t)e->dh * sizeof *row);
		else
			memcpy(e->val + (size_t)t * e->dh, row, (size_t)e->dh * sizeof *row);
	}
	return e->set ? FL_HOOK_CONTINUE : FL_STOPPED;
}

/* The metric of one prompt through the engine: logits of the receiver. */
static double
ref_metric(const fl_model *m, int R, const float *logits_or_x, int token)
{
	int V = m->cfg.n_vocab;
	float *lg = NULL;
	const float *use = logits_or_x;
	double d;

	if (R < m->cfg.n_layer) {
		lg = xmalloc((size_t)V * sizeof *lg);
		lens_vectors(m, logits_or_x, 1, lg);
		use = lg;
	}
	d = logit_metric(use, V, token);
	free(lg);
	return d;
}

/* One patched run of the reference: the sender hook (a head's result or
 * an MLP's output at the last position), the freezing hooks, and the
 * receiver: resid_pre of R or the logits, or for a q, k or v receiver the
 * two runs of steps 3 and 4. The metric. -1 with *cause on failure. */
static int
ref_patched(fl_run *r, const fl_model *m, const fl_prompt *q, const fl_cache *c,
    int R, const fl_patch_opts *o, const fl_hook *sender, float *out,
    float *cols, double *metric, char **cause)
{
	int L = m->cfg.n_layer, T = q->n, nh = 0, dh = m->cfg.d_model / m->cfg.n_head;
	int token = metric_token(q, o->metric);
	fl_hook hooks[6];
	fl_pass p = { 0 };
	freeze_below fb = { c, R };
	head_cols hc = { cols, o->recv_head * dh, dh, false };
	fl_hook_point rp = recv_point(m, o->recv);

	if (o->recv == PATCH_RECV_RESID) {
		nh += patch_freeze_hooks(m, c, hooks + nh);
		hooks[nh++] = *sender;
		if (R < L)
			hooks[nh++] = (fl_hook){ HOOK_RESID_PRE, R, grab_stop, out };
		p.hooks = hooks;
		p.n_hooks = nh;
		p.logits = R == L ? out : NULL;
		p.no_logits = R < L;
		if (run_forward(r, q->ids, &T, 1, &p, cause) < 0)
			return -1;
		*metric = ref_metric(m, R, out, token);
		return 0;
	}
	/* step 3: frozen below R, the sender patched; take the receiver's input */
	hooks[nh++] = (fl_hook){ m->cfg.rotary ? HOOK_ROT_Q : HOOK_Q, -1,
	    hook_freeze_below, &fb };
	hooks[nh++] = (fl_hook){ m->cfg.rotary ? HOOK_ROT_K : HOOK_K, -1,
	    hook_freeze_below, &fb };
	hooks[nh++] = (fl_hook){ HOOK_V, -1, hook_freeze_below, &fb };
	hooks[nh++] = *sender;
	hooks[nh++] = (fl_hook){ rp, R, hook_head_cols, &hc };
	p.hooks = hooks;
	p.n_hooks = nh;
	p.no_logits = true;
	if (run_forward(r, q->ids, &T, 1, &p, cause) < 0)
		return -1;
	/* step 4: the clean prompt, only that input replaced */
	hc.set = true;
	memset(&p, 0, sizeof p);
	p.hooks = &hooks[nh - 1];
	p.n_hooks = 1;
	p.logits = out;
	if (run_forward(r, q->ids, &T, 1, &p, cause) < 0)
		return -1;
	*metric = ref_metric(m, L, out, token);
	return 0;
}

int
patch_heads_ref(fl_patch *res, const fl_model *m, const fl_prompt *clean, int n,
    const fl_prompt *corrupt, int n_corrupt, const fl_patch_opts *o,
    char **cause)
{
	int L = m->cfg.n_layer, H = m->cfg.n_head, D = m->cfg.d_model, V = m->cfg.n_vocab;
	int R, rc = -1, max_len = 1;
	double *sum = xcalloc((size_t)L * H * D, sizeof *sum);
	double *msum = xcalloc((size_t)L * D, sizeof *msum);
	float *vals = xmalloc((size_t)L * H * D * sizeof *vals);
	float *mvals = xmalloc((size_t)L * D * sizeof *mvals);
	float *out = xmalloc((size_t)(V > D ? V : D) * sizeof *out), *res_h = NULL;
	float *sdir = xmalloc((size_t)n * D * sizeof *sdir), *cols = NULL;
	bool have_mlp = true;
	fl_patch_opts dflt = { -1, NULL, PATCH_RECV_RESID, 0, PATCH_METRIC_ANSWER,
	    NULL };
	fl_run *r = NULL;

	if (o == NULL)
		o = &dflt;
	patch_init(res, m, n, 0);
	if ((R = receiver_layer(m, o, cause)) < 0 ||
	    check_prompts(m, clean, n, cause) != 0)
		goto fail_early;
	res->receiver = R;
	res->recv = o->recv;
	res->recv_head = o->recv != PATCH_RECV_RESID ? o->recv_head : -1;
	res->metric = o->metric;
	for (int i = 0; i < n; i++)
		max_len = clean[i].n > max_len ? clean[i].n : max_len;
	for (int i = 0; corrupt != NULL && i < n_corrupt; i++)
		max_len = corrupt[i].n > max_len ? corrupt[i].n : max_len;
	r = run_new(m, max_len, max_len);
	res_h = xmalloc((size_t)D * sizeof *res_h);
	cols = xmalloc((size_t)max_len * D * sizeof *cols);
	token_dirs(m, clean, n, true, NULL, sdir);

	if (o->sender_values != NULL) {
		memcpy(vals, o->sender_values, (size_t)L * H * D * sizeof *vals);
		if (o->mlp_values != NULL)
			memcpy(mvals, o->mlp_values, (size_t)L * D * sizeof *mvals);
		have_mlp = o->mlp_values != NULL;
	} else {
		fl_hook hk[2] = { { HOOK_RESULT, -1, result_sum_hook, sum },
		    { HOOK_MLP_OUT, -1, z_sum_hook, &(z_sum){ msum, D } } };
		fl_pass p = { 0 };

		if (corrupt == NULL || n_corrupt < 1) {
			fl_error(cause, "path patching needs corrupted prompts");
			goto out;
		}
		p.hooks = hk;
		p.n_hooks = 2;
		p.no_logits = true;
		for (int i = 0; i < n_corrupt; i++)
			if (run_forward(r, corrupt[i].ids, &corrupt[i].n, 1, &p, cause) < 0)
				goto out;
		for (size_t k = 0; k < (size_t)L * H * D; k++)
			vals[k] = (float)(sum[k] / n_corrupt);
		for (size_t k = 0; k < (size_t)L * D; k++)
			mvals[k] = (float)(msum[k] / n_corrupt);
	}

	for (int i = 0; i < n; i++) {
		const fl_prompt *q = &clean[i];
		int T = q->n;
		fl_cache *c = cache_new(m, T, FL_CACHE_PATTERN);
		fl_pass p = { 0 };
		fl_patch_head ph;
		const float *u = sdir + (size_t)i * D;
		double met;

		p.cache = c;
		if (run_forward(r, q->ids, &T, 1, &p, cause) < 0) {
			cache_free(c);
			goto out;
		}
		res->clean += ref_metric(m, R == L || o->recv != PATCH_RECV_RESID ? L :
		    R, R == L || o->recv != PATCH_RECV_RESID ? c->logits :
		    c->resid_pre + ((size_t)R * T + T - 1) * D, metric_token(q, o->metric));
		for (int l = 0; l < L; l++)
			for (int h = 0; h < H; h++) {
				const float *row = c->pattern + (((size_t)l * H + h) * T + T - 1) * T;
				double a = 0, s = 0;

				for (int j = q->subj_pos; j < q->subj_pos + q->subj_len; j++)
					a += row[j];
				model_head_result(m, l, h, c->z + ((size_t)l * T + T - 1) * D, res_h);
				for (int k = 0; k < D; k++)
					s += (double)res_h[k] * u[k];
				res->attn[((size_t)i * L + l) * H + h] = (float)a;
				res->proj[((size_t)i * L + l) * H + h] = (float)s;
			}
		for (int l = 0; l < L; l++) {
			for (int h = 0; h < H; h++) {
				fl_hook snd;

				ph = (fl_patch_head){ h, vals + ((size_t)l * H + h) * D };
				snd = (fl_hook){ HOOK_RESULT, l, hook_patch_head, &ph };
				if (ref_patched(r, m, q, c, R, o, &snd, out, cols, &met,
				    cause) != 0) {
					cache_free(c);
					goto out;
				}
				res->patched[l * H + h] += met;
			}
			if (have_mlp) {
				fl_hook snd = { HOOK_MLP_OUT, l, hook_patch_row,
				    mvals + (size_t)l * D };

				if (ref_patched(r, m, q, c, R, o, &snd, out, cols, &met,
				    cause) != 0) {
					cache_free(c);
					goto out;
				}
				res->mlp_patched[l] += met;
			}
		}
		cache_free(c);
	}
	res->clean /= n;
	for (int k = 0; k < L * H; k++)
		res->patched[k] /= n;
	for (int l = 0; l < L; l++)
		res->mlp_patched[l] = have_mlp ? res->mlp_patched[l] / n : NAN;
	patch_finish(res);
	rc = 0;
out:
	free(res_h);
	free(cols);
	run_free(r);
fail_early:
	if (rc != 0)
		patch_clear(res);
	free(sum);
	free(msum);
	free(vals);
	free(mvals);
	free(out);
	free(sdir);
	return rc;
}
