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
	free(res->attn);
	free(res->proj);
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

static void
patch_alloc(fl_patch *res, const fl_model *m, int n, int R)
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
	res->attn = xcalloc((size_t)n * LH, sizeof *res->attn);
	res->proj = xcalloc((size_t)n * LH, sizeof *res->proj);
}

/* effect and Pearson's r from patched, clean, attn and proj. */
static void
patch_finish(fl_patch *res)
{
	int LH = res->n_layer * res->n_head, n = res->n_prompts;
	double *x = xmalloc((size_t)n * sizeof *x), *y = xmalloc((size_t)n * sizeof *y);

	for (int k = 0; k < LH; k++) {
		res->effect[k] = res->clean != 0 ?
		    100.0 * (res->patched[k] - res->clean) / res->clean : NAN;
		for (int i = 0; i < n; i++) {
			x[i] = res->attn[(size_t)i * LH + k];
			y[i] = res->proj[(size_t)i * LH + k];
		}
		res->pearson[k] = movers_pearson(x, y, n);
	}
	free(x);
	free(y);
}

/* The readout directions of n prompts' tokens (D each, in dirs (n, D)):
 * W_U[:, answer] minus the mean row (the metric), or W_U[:, subject] (the
 * scatter), as the residual stream sees them (model_unembed_dir). */
static void
token_dirs(const fl_model *m, const fl_prompt *p, int n, bool subject,
    const float *ubar, float *dirs)
{
	int P = m->cfg.d_proj, D = m->cfg.d_model;
	float *u = xmalloc((size_t)P * sizeof *u);

	for (int i = 0; i < n; i++) {
		table_row(&m->unembed, subject ? p[i].subject : p[i].answer, u);
		if (!subject)
			for (int k = 0; k < P; k++)
				u[k] -= ubar[k];
		model_unembed_dir(m, u, dirs + (size_t)i * D);
	}
	free(u);
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

/* Sums the last row of HOOK_Z over the prompts, per layer. */
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
	int D = m->cfg.d_model;

	if (m->cfg.ln_before) {
		model_norm_stats(m, mean, scale, x, n);
		kern_ln_apply(ln, x, mean, scale, y->ln2_w, y->ln2_b, n, D);
		model_mlp(m, l, x, ln, n, h, true);
	} else {
		model_norm_stats(m, mean, scale, x, n);
		kern_ln_apply(x, x, mean, scale, y->ln1_w, y->ln1_b, n, D);
		model_mlp(m, l, x, x, n, h, true);
		model_norm_stats(m, mean, scale, x, n);
		kern_ln_apply(x, x, mean, scale, y->ln2_w, y->ln2_b, n, D);
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

	if (R < 0)
		R = L;
	if (R < 1 || R > L)
		return fl_error(cause, "receiver layer %d: it must be 1 to %d (the "
		    "residual before that layer; %d: the final residual)", R, L, L);
	return R;
}

/* The sender values (L, H, D) into *out: given, or the corrupted runs' mean
 * results. 0, FL_STOPPED or -1 with *cause; *out is set only on 0. */
static int
sender_means_fast(fl_batch *b, const fl_prompt *corrupt, int n_c,
    const fl_patch_opts *o, float **out, char **cause)
{
	const fl_model *m = b->m;
	int L = m->cfg.n_layer, H = m->cfg.n_head, D = m->cfg.d_model, rc;
	float *vals, *z;
	z_sum zs;
	fl_hook hook;
	fl_pass pass = { 0 };

	if (o != NULL && o->sender_values != NULL) {
		vals = xmalloc((size_t)L * H * D * sizeof *vals);
		memcpy(vals, o->sender_values, (size_t)L * H * D * sizeof *vals);
		*out = vals;
		return 0;
	}
	if (corrupt == NULL || n_c < 1)
		return fl_error(cause, "path patching needs corrupted prompts");
	zs = (z_sum){ xcalloc((size_t)L * D, sizeof(double)), D };
	hook = (fl_hook){ HOOK_Z, -1, z_sum_hook, &zs };
	pass.no_logits = true;
	if ((rc = batch_run(b, corrupt, n_c, &hook, 1, &pass, cause)) != 0) {
		free(zs.sum);
		return rc;
	}
	/* The result is linear in z: the mean result is the mean z's result. */
	vals = xmalloc((size_t)L * H * D * sizeof *vals);
	z = xmalloc((size_t)D * sizeof *z);
	for (int l = 0; l < L; l++) {
		for (int i = 0; i < D; i++)
			z[i] = (float)(zs.sum[(size_t)l * D + i] / n_c);
		for (int h = 0; h < H; h++)
			model_head_result(m, l, h, z, vals + ((size_t)l * H + h) * D);
	}
	free(z);
	free(zs.sum);
	*out = vals;
	return 0;
}

int
patch_heads(fl_patch *res, fl_batch *b, const fl_prompt *clean, int n,
    const fl_prompt *corrupt, int n_corrupt, const fl_patch_opts *o,
    char **cause)
{
	const fl_model *m = b->m;
	int L = m->cfg.n_layer, H = m->cfg.n_head, D = m->cfg.d_model;
	int F = m->cfg.d_mlp, R, rc = -1, nh = 0;
	size_t LD = (size_t)L * D;
	float *zc, *rin, *aout, *recv, *vals = NULL, *ubar, *res_h, *adir, *sdir;
	float *x, *ln, *hid, *mean, *scale;
	bool pre = m->cfg.ln_before;
	double *sums;
	fl_grab gz, gm, ga, gr;
	subj_attn sa;
	fl_hook hooks[5];
	fl_pass pass = { 0 };

	if ((R = receiver_layer(m, o, cause)) < 0 ||
	    check_prompts(m, clean, n, cause) != 0)
		return -1;
	patch_alloc(res, m, n, R);
	zc = xmalloc((size_t)n * LD * sizeof *zc);
	rin = xmalloc((size_t)n * LD * sizeof *rin);
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
	sums = xcalloc((size_t)H, sizeof *sums);
	attrib_mean_unembed(m, ubar);
	token_dirs(m, clean, n, false, ubar, adir);
	token_dirs(m, clean, n, true, ubar, sdir);

	/* 1. the sender values */
	if ((rc = sender_means_fast(b, corrupt, n_corrupt, o, &vals, cause)) != 0)
		goto out;

	/* 2. the clean run: at the last position, z, attn_out and the stream
	 * the patched attention output joins (pre-LN: resid_mid, to which it
	 * has been added; post-LN: resid_pre, since ln1 follows the sum) of
	 * every layer, the receiver, the attention to the subject */
	gz = (fl_grab){ b, zc, LD, (size_t)D, D };
	gm = (fl_grab){ b, rin, LD, (size_t)D, D };
	ga = (fl_grab){ b, aout, LD, (size_t)D, D };
	gr = (fl_grab){ b, recv, (size_t)D, 0, D };
	sa = (subj_attn){ b, clean, res->attn, L, H };
	hooks[nh++] = (fl_hook){ HOOK_Z, -1, batch_grab_last, &gz };
	hooks[nh++] = (fl_hook){ pre ? HOOK_RESID_MID : HOOK_RESID_PRE, -1,
	    batch_grab_last, &gm };
	hooks[nh++] = (fl_hook){ HOOK_ATTN_OUT, -1, batch_grab_last, &ga };
	hooks[nh++] = (fl_hook){ HOOK_PATTERN, -1, subj_attn_hook, &sa };
	if (R == L)
		hooks[nh++] = (fl_hook){ HOOK_RESID_POST, L - 1, batch_grab_last, &gr };
	else
		hooks[nh++] = (fl_hook){ HOOK_RESID_PRE, R, batch_grab_last, &gr };
	pass.no_logits = true;
	if ((rc = batch_run(b, clean, n, hooks, nh, &pass, cause)) != 0)
		goto out;
	rc = -1;
	res->clean = 0;
	for (int i = 0; i < n; i++)
		res->clean += model_readout_dot(m, recv + (size_t)i * D, adir + (size_t)i * D);
	res->clean /= n;

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

	/* 3-4. per sender layer, all its heads over all prompts, in chunks of
	 * rows (h, i); each chunk reports its share of the layer's n units, so
	 * a stop request is seen within one chunk */
	for (int l = 0; l < L; l++) {
		long total = (long)H * n;

		if (l >= R) {	/* no path to the receiver */
			for (int h = 0; h < H; h++)
				res->patched[l * H + h] = res->clean;
			b->done += n;
			continue;
		}
		memset(sums, 0, (size_t)H * sizeof *sums);
		for (long r0 = 0; r0 < total; r0 += PATCH_CHUNK_ROWS) {
			int rows = (int)(total - r0 < PATCH_CHUNK_ROWS ? total - r0 :
			    PATCH_CHUNK_ROWS);

			for (int k = 0; k < rows; k++) {
				int h = (int)((r0 + k) / n), i = (int)((r0 + k) % n);
				float *xr = x + (size_t)k * D;
				const float *v = vals + ((size_t)l * H + h) * D;

				model_head_result(m, l, h, zc + (size_t)i * LD + (size_t)l * D,
				    res_h);
				memcpy(xr, rin + (size_t)i * LD + (size_t)l * D,
				    (size_t)D * sizeof *xr);
				for (int j = 0; j < D; j++)
					xr[j] += v[j] - res_h[j];
			}
			for (int k2 = l; k2 < R; k2++) {
				if (k2 > l || !pre)
					for (int k = 0; k < rows; k++) {
						int i = (int)((r0 + k) % n);
						const float *ao = aout + (size_t)i * LD + (size_t)k2 * D;
						float *xr = x + (size_t)k * D;

						for (int j = 0; j < D; j++)
							xr[j] += ao[j];
					}
				block_rest(m, k2, x, rows, ln, hid, mean, scale);
			}
			for (int k = 0; k < rows; k++) {
				int h = (int)((r0 + k) / n), i = (int)((r0 + k) % n);

				sums[h] += model_readout_dot(m, x + (size_t)k * D,
				    adir + (size_t)i * D);
			}
			if (batch_report(b, b->done + (r0 + rows) / H)) {
				rc = FL_STOPPED;
				goto out;
			}
		}
		for (int h = 0; h < H; h++)
			res->patched[l * H + h] = sums[h] / n;
		b->done += n;
	}
	patch_finish(res);
	rc = 0;
out:
	if (rc != 0)
		patch_clear(res);
	free(vals);
	free(zc);
	free(rin);
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
	free(sums);
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

static int
grab_stop(void *ud, fl_act *a)
{
	memcpy(ud, a->data + (size_t)(a->shape[0] - 1) * a->shape[1],
	    (size_t)a->shape[1] * sizeof(float));
	return FL_STOPPED;
}

/* The metric of one prompt through the engine: logits of the receiver. */
static double
ref_metric(const fl_model *m, int R, const float *logits_or_x, int answer)
{
	int V = m->cfg.n_vocab;
	float *lg = NULL;
	const float *use = logits_or_x;
	double mean = 0, d;

	if (R < m->cfg.n_layer) {
		lg = xmalloc((size_t)V * sizeof *lg);
		lens_vectors(m, logits_or_x, 1, lg);
		use = lg;
	}
	for (int v = 0; v < V; v++)
		mean += use[v];
	d = use[answer] - mean / V;
	free(lg);
	return d;
}

int
patch_heads_ref(fl_patch *res, const fl_model *m, const fl_prompt *clean, int n,
    const fl_prompt *corrupt, int n_corrupt, const fl_patch_opts *o,
    char **cause)
{
	int L = m->cfg.n_layer, H = m->cfg.n_head, D = m->cfg.d_model, V = m->cfg.n_vocab;
	int R, rc = -1, max_len = 1;
	double *sum = xcalloc((size_t)L * H * D, sizeof *sum);
	float *vals = xmalloc((size_t)L * H * D * sizeof *vals);
	float *out = xmalloc((size_t)(V > D ? V : D) * sizeof *out), *res_h;
	float *sdir = xmalloc((size_t)n * D * sizeof *sdir);
	fl_run *r;

	patch_alloc(res, m, n, 0);
	if ((R = receiver_layer(m, o, cause)) < 0 ||
	    check_prompts(m, clean, n, cause) != 0)
		goto fail_early;
	res->receiver = R;
	for (int i = 0; i < n; i++)
		max_len = clean[i].n > max_len ? clean[i].n : max_len;
	for (int i = 0; corrupt != NULL && i < n_corrupt; i++)
		max_len = corrupt[i].n > max_len ? corrupt[i].n : max_len;
	r = run_new(m, max_len, max_len);
	res_h = xmalloc((size_t)D * sizeof *res_h);
	token_dirs(m, clean, n, true, NULL, sdir);

	if (o != NULL && o->sender_values != NULL)
		memcpy(vals, o->sender_values, (size_t)L * H * D * sizeof *vals);
	else {
		fl_hook hk = { HOOK_RESULT, -1, result_sum_hook, sum };
		fl_pass p = { 0 };

		if (corrupt == NULL || n_corrupt < 1) {
			fl_error(cause, "path patching needs corrupted prompts");
			goto out;
		}
		p.hooks = &hk;
		p.n_hooks = 1;
		p.no_logits = true;
		for (int i = 0; i < n_corrupt; i++)
			if (run_forward(r, corrupt[i].ids, &corrupt[i].n, 1, &p, cause) < 0)
				goto out;
		for (size_t k = 0; k < (size_t)L * H * D; k++)
			vals[k] = (float)(sum[k] / n_corrupt);
	}

	for (int i = 0; i < n; i++) {
		const fl_prompt *q = &clean[i];
		int T = q->n;
		fl_cache *c = cache_new(m, T, FL_CACHE_PATTERN);
		fl_pass p = { 0 };
		fl_hook hooks[5];
		fl_patch_head ph;
		const float *u = sdir + (size_t)i * D;

		p.cache = c;
		if (run_forward(r, q->ids, &T, 1, &p, cause) < 0) {
			cache_free(c);
			goto out;
		}
		res->clean += ref_metric(m, R, R == L ? c->logits :
		    c->resid_pre + ((size_t)R * T + T - 1) * D, q->answer);
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
		for (int l = 0; l < L; l++)
			for (int h = 0; h < H; h++) {
				int nh = 0, rr;

				nh += patch_freeze_hooks(m, c, hooks + nh);
				ph = (fl_patch_head){ h, vals + ((size_t)l * H + h) * D };
				hooks[nh++] = (fl_hook){ HOOK_RESULT, l, hook_patch_head, &ph };
				if (R < L)
					hooks[nh++] = (fl_hook){ HOOK_RESID_PRE, R, grab_stop, out };
				memset(&p, 0, sizeof p);
				p.hooks = hooks;
				p.n_hooks = nh;
				p.logits = R == L ? out : NULL;
				p.no_logits = R < L;
				rr = run_forward(r, q->ids, &T, 1, &p, cause);
				if (rr < 0) {
					cache_free(c);
					goto out;
				}
				res->patched[l * H + h] += ref_metric(m, R, out, q->answer);
			}
		cache_free(c);
	}
	res->clean /= n;
	for (int k = 0; k < L * H; k++)
		res->patched[k] /= n;
	patch_finish(res);
	rc = 0;
out:
	free(res_h);
	run_free(r);
fail_early:
	if (rc != 0)
		patch_clear(res);
	free(sum);
	free(vals);
	free(out);
	free(sdir);
	return rc;
}
