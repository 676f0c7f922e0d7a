/* backward.c - gradients of a metric w.r.t. the activations; see backward.h. */
#include "autoconfig.h"

#include "backward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "linear.h"
#include "pool.h"
#include "readout.h"
#include "base/util.h"

/* What the backward recomputes, for one layer at a time. */
struct fl_grad_scratch {
	float	*in;		/* (T, D) a norm's output, recomputed */
	float	*mean, *scale;	/* (T) */
	float	*pre;		/* (T, F) the MLP's pre-activation */
	float	*up;		/* (T, F) gated MLPs: up(x) */
	float	*act, *dact;	/* (T, F) the activation and its derivative */
	float	*kv;		/* (T, D) the narrow k or v gradient (GQA) */
	float	*tmp;		/* (T, D) a post-LN block's input gradients */
	float	*rope_cos;	/* (T, dh / 2) rotary only */
	float	*rope_sin;
	double	*acc;		/* (D) */
	float	*block;
};

static size_t
grad_layout(fl_grad *g, const fl_model *m, int T)
{
	const fl_config *c = &m->cfg;
	size_t L = (size_t)c->n_layer, D = (size_t)c->d_model, H = (size_t)c->n_head;
	size_t F = (size_t)c->d_mlp, LTD = L * T * D, TT = (size_t)T * T, off = 0;

	g->n_layer = c->n_layer;
	g->n_tok = T;
	g->d_model = c->d_model;
	g->n_head = c->n_head;
	g->d_mlp = c->d_mlp;
#define SLICE(field, size) do { g->field = (size) != 0 && g->block != NULL ? \
	g->block + off : NULL; off += (size); } while (0)
	SLICE(resid_pre, (L + 1) * T * D);
	SLICE(ln1, LTD);
	SLICE(ln2, LTD);
	SLICE(ln1_scale, L * T);
	SLICE(ln2_scale, L * T);
	SLICE(q, LTD);
	SLICE(k, LTD);
	SLICE(v, LTD);
	SLICE(rot_q, c->rotary ? LTD : 0);
	SLICE(rot_k, c->rotary ? LTD : 0);
	SLICE(scores, L * H * TT);
	SLICE(pattern, L * H * TT);
	SLICE(z, LTD);
	SLICE(attn_out, LTD);
	SLICE(resid_mid, LTD);
	SLICE(mlp_pre, L * T * F);
	SLICE(mlp_pre_linear, c->gated_mlp ? L * T * F : 0);
	SLICE(mlp_post, L * T * F);
	SLICE(mlp_out, LTD);
	SLICE(lnf, (size_t)T * D);
	SLICE(lnf_scale, (size_t)T);
#undef SLICE
	return off;
}

fl_grad *
grad_new(const fl_model *m, int T, char **cause)
{
	const fl_config *c = &m->cfg;
	size_t D = (size_t)c->d_model, F = (size_t)c->d_mlp, half = c->d_head / 2;
	size_t n, off = 0;
	fl_grad *g;
	fl_grad_scratch *s;

	if (T < 1) {
		fl_error(cause, "gradients: a prompt of %d tokens", T);
		return NULL;
	}
	g = xcalloc(1, sizeof *g);
	n = grad_layout(g, m, T);
	g->block = xcalloc_huge(n, sizeof(float));
	grad_layout(g, m, T);

	s = g->scratch = xcalloc(1, sizeof *s);
	n = 3 * T * D + 2 * (size_t)T + 4 * T * F + (c->rotary ? 2 * T * half : 0);
	s->block = xcalloc_huge(n, sizeof(float));
#define SLICE(field, size) do { s->field = s->block + off; off += (size); } while (0)
	SLICE(in, T * D);
	SLICE(kv, T * D);
	SLICE(tmp, T * D);
	SLICE(mean, (size_t)T);
	SLICE(scale, (size_t)T);
	SLICE(pre, T * F);
	SLICE(up, T * F);
	SLICE(act, T * F);
	SLICE(dact, T * F);
	if (c->rotary) {
		SLICE(rope_cos, T * half);
		SLICE(rope_sin, T * half);
		kern_rope_table(s->rope_cos, s->rope_sin, T, c->d_head, c->rope_theta);
	}
#undef SLICE
	s->acc = xcalloc(D, sizeof *s->acc);
	return g;
}

void
grad_free(fl_grad *g)
{
	if (g == NULL)
		return;
	if (g->scratch != NULL) {
		free(g->scratch->block);
		free(g->scratch->acc);
		free(g->scratch);
	}
	free(g->block);
	free(g);
}

int
grad_metric_dir(const fl_model *m, int answer, int distractor, float *dir,
    char **cause)
{
	int V = m->cfg.n_vocab, P = m->cfg.d_proj;
	float *u, *row;

	if (answer < 0 || answer >= V)
		return fl_error(cause, "the answer's token id %d is outside the "
		    "vocabulary [0, %d)", answer, V);
	if (distractor >= V)
		return fl_error(cause, "the distractor's token id %d is outside the "
		    "vocabulary [0, %d)", distractor, V);
	u = xmalloc((size_t)P * sizeof *u);
	row = xmalloc((size_t)P * sizeof *row);
	table_row(&m->unembed, answer, u);
	if (distractor >= 0) {
		table_row(&m->unembed, distractor, row);
		for (int i = 0; i < P; i++)
			u[i] -= row[i];
	} else {
		const double *mean = model_unembed_mean(m);

		for (int i = 0; i < P; i++)
			u[i] -= (float)mean[i];
	}
	model_unembed_dir(m, u, dir);
	free(u);
	free(row);
	return 0;
}

/* The transpose of a linear, as a linear of its own (no bias): dx (T, in)
 * = dy (T, out) . W^T is kern_linear of dy by it, whatever the dtype. */
static fl_linear
linear_t(const fl_linear *lin)
{
	fl_linear t = *lin;

	t.in = lin->out;
	t.out = lin->in;
	t.trans = !lin->trans;
	t.b = NULL;
	t.pk = NULL;
	return t;
}

/* dx (T, D) (+= with accumulate) from dy (T, D), the gradient at a norm's
 * output y = (x - mean) / scale * w (+ b); RMSNorm has no mean. dscale
 * (T), when not NULL, gets the gradient at the scale as kern_ln_apply reads
 * it. x is the norm's input; mean and scale are recomputed from it. */
static void
norm_backward(const fl_model *m, fl_grad_scratch *s, float *dx, float *dscale,
    const float *dy, const float *x, const float *w, int T, bool accumulate)
{
	int D = m->cfg.d_model;
	bool rms = m->cfg.rms_norm;

	model_norm_stats(m, s->mean, s->scale, x, T);
	for (int t = 0; t < T; t++) {
		const float *xr = x + (size_t)t * D, *gr = dy + (size_t)t * D;
		float *dr = dx + (size_t)t * D;
		double mu = rms ? 0 : s->mean[t], sc = s->scale[t], mg = 0, mgx = 0;

		for (int i = 0; i < D; i++) {
			double gi = (double)gr[i] * w[i], xh = (xr[i] - mu) / sc;

			mg += gi;
			mgx += gi * xh;
		}
		if (dscale != NULL)
			dscale[t] = (float)(-mgx / sc);
		mg /= D;
		mgx /= D;
		for (int i = 0; i < D; i++) {
			double gi = (double)gr[i] * w[i], xh = (xr[i] - mu) / sc;
			double d = (gi - (rms ? 0 : mg) - xh * mgx) / sc;

			dr[i] = accumulate ? dr[i] + (float)d : (float)d;
		}
	}
}

/* Layer l's MLP from g->mlp_out[l] to the gradient at its input, d_in
 * (T, D): ln2's output in a pre-LN block, resid_mid in a post-LN one. */
static void
mlp_backward(fl_grad *g, const fl_model *m, const fl_cache *c, int l, float *d_in)
{
	const fl_config *cf = &m->cfg;
	const fl_layer *y = &m->layers[l];
	fl_grad_scratch *s = g->scratch;
	int T = g->n_tok, D = cf->d_model, F = cf->d_mlp;
	size_t at = (size_t)l * T * D, atf = (size_t)l * T * F, TF = (size_t)T * F;
	const float *mid = c->resid_mid + at;
	float *dpost = g->mlp_post + atf, *dpre = g->mlp_pre + atf;
	fl_linear tp = linear_t(&y->proj), tf = linear_t(&y->fc);

	const float *in = mid, *pre = s->pre, *up = s->up;

	if (c->mlp_pre != NULL && (!cf->gated_mlp || c->mlp_pre_linear != NULL)) {
		/* kept by the forward (FL_CACHE_MLP_PRE) */
		pre = c->mlp_pre + atf;
		up = cf->gated_mlp ? c->mlp_pre_linear + atf : NULL;
	} else {
		/* The MLP's input and pre-activations, recomputed: the
		 * products of the forward's fc (and up) again. */
		if (cf->ln_before) {
			model_norm_stats(m, s->mean, s->scale, mid, T);
			kern_ln_apply(s->in, mid, s->mean, s->scale, y->ln2_w, y->ln2_b,
			    T, D);
			in = s->in;
		}
		kern_linear(s->pre, F, in, D, &y->fc, T, false);
		if (cf->gated_mlp)
			kern_linear(s->up, F, in, D, &y->up, T, false);
	}

	kern_linear(dpost, F, g->mlp_out + at, D, &tp, T, false);
	kern_activation_grad(s->act, s->dact, pre, TF, cf->act);
	if (cf->gated_mlp)
		for (size_t i = 0; i < TF; i++) {
			g->mlp_pre_linear[atf + i] = dpost[i] * s->act[i];
			dpre[i] = dpost[i] * up[i] * s->dact[i];
		}
	else
		for (size_t i = 0; i < TF; i++)
			dpre[i] = dpost[i] * s->dact[i];
	kern_linear(d_in, D, dpre, F, &tf, T, false);
	if (cf->gated_mlp) {
		fl_linear tu = linear_t(&y->up);

		kern_linear(d_in, D, g->mlp_pre_linear + atf, F, &tu, T, true);
	}
}

/* The inverse rotation of every head of d (T, D) in place: the gradient
 * at hook_q/k from the one at hook_rot_q/k. */
static void
rope_backward(const fl_model *m, fl_grad_scratch *s, float *d, int T)
{
	int D = m->cfg.d_model, dh = m->cfg.d_head, H = m->cfg.n_head, half = dh / 2;

	for (int t = 0; t < T; t++) {
		const float *cs = s->rope_cos + (size_t)t * half;
		const float *sn = s->rope_sin + (size_t)t * half;

		for (int h = 0; h < H; h++) {
			float *a = d + (size_t)t * D + (size_t)h * dh, *b = a + half;

			for (int i = 0; i < half; i++) {
				float ga = a[i], gb = b[i];

				a[i] = ga * cs[i] + gb * sn[i];
				b[i] = gb * cs[i] - ga * sn[i];
			}
		}
	}
}

/* Head h of layer l: from dz to dq, dk, dv (of what attention reads: the
 * rotated q and k) and the pattern's and scores' gradients. P (T, T) and
 * acc (2 dh) are scratch. The sums run over the contiguous head dimension
 * into acc, so that they vectorise. */
static void
head_backward(fl_grad *g, const fl_model *m, const fl_cache *c, int l, int h,
    float *dq, float *dk, float *P, double *acc)
{
	int T = g->n_tok, D = g->d_model, H = g->n_head, dh = m->cfg.d_head;
	size_t at = (size_t)l * T * D + (size_t)h * dh, TT = (size_t)T * T;
	const float *q = c->q + at, *k = c->k + at, *v = c->v + at, *dz = g->z + at;
	float *dP = g->pattern + ((size_t)l * H + h) * TT;
	float *dS = g->scores + ((size_t)l * H + h) * TT, *dv = g->v + at;
	float scale = 1.0f / sqrtf((float)dh);
	double *sv = acc, *sk = acc + dh;

	/* The pattern, recomputed as the forward computes it. */
	kern_attn_scores(P, q, k, D, T, dh, scale);
	for (int i = 0; i < T; i++)
		kern_softmax(P + (size_t)i * T, T);
	for (int i = 0; i < T; i++) {
		const float *dzi = dz + (size_t)i * D;
		double dot = 0;

		/* The mix reads every entry of the pattern (a hook may set one
		 * above the diagonal), so each has a gradient. */
		for (int j = 0; j < T; j++) {
			const float *vj = v + (size_t)j * D;
			double sum = 0;

			for (int d = 0; d < dh; d++)
				sum += (double)dzi[d] * vj[d];
			dP[(size_t)i * T + j] = (float)sum;
			dot += sum * P[(size_t)i * T + j];
		}
		for (int j = 0; j < T; j++)
			dS[(size_t)i * T + j] = (float)(P[(size_t)i * T + j] *
			    (dP[(size_t)i * T + j] - dot));
	}
	for (int j = 0; j < T; j++) {
		for (int d = 0; d < dh; d++)
			sv[d] = sk[d] = 0;
		for (int i = 0; i < T; i++) {
			double p = P[(size_t)i * T + j], ds = dS[(size_t)i * T + j];
			const float *dzi = dz + (size_t)i * D, *qi = q + (size_t)i * D;

			for (int d = 0; d < dh; d++) {
				sv[d] += p * dzi[d];
				sk[d] += ds * qi[d];
			}
		}
		for (int d = 0; d < dh; d++) {
			dv[(size_t)j * D + d] = (float)sv[d];
			dk[(size_t)j * D + (size_t)h * dh + d] = (float)(scale * sk[d]);
		}
	}
	for (int i = 0; i < T; i++) {
		for (int d = 0; d < dh; d++)
			sv[d] = 0;
		for (int j = 0; j <= i; j++) {
			double ds = dS[(size_t)i * T + j];
			const float *kj = k + (size_t)j * D;

			for (int d = 0; d < dh; d++)
				sv[d] += ds * kj[d];
		}
		for (int d = 0; d < dh; d++)
			dq[(size_t)i * D + (size_t)h * dh + d] = (float)(scale * sv[d]);
	}
}

/* Layer l's heads shared among the threads (each writes its own columns
 * and slices). */
typedef struct {
	fl_grad		*g;
	const fl_model	*m;
	const fl_cache	*c;
	int		 l;
	float		*dq, *dk;
} heads_job;

static void
heads_part(void *ctx, int part, int nparts)
{
	const heads_job *j = ctx;
	int T = j->g->n_tok, dh = j->m->cfg.d_head, h0, h1;
	float *P;
	double *acc;

	kern_part_range(j->g->n_head, part, nparts, &h0, &h1);
	if (h0 >= h1)
		return;
	P = xmalloc((size_t)T * T * sizeof *P);
	acc = xmalloc(2 * (size_t)dh * sizeof *acc);
	for (int h = h0; h < h1; h++)
		head_backward(j->g, j->m, j->c, j->l, h, j->dq, j->dk, P, acc);
	free(P);
	free(acc);
}

/* The gradient of a k or v projection's narrow output (T, KV dh) from the
 * per-query-head copies d (T, D): the sum over each group's copies. */
static const float *
kv_narrow(const fl_model *m, fl_grad_scratch *s, const float *d, int T)
{
	int D = m->cfg.d_model, dh = m->cfg.d_head, H = m->cfg.n_head;
	int KV = m->cfg.n_kv_head, group = H / KV;

	if (KV == H)
		return d;
	memset(s->kv, 0, (size_t)T * KV * dh * sizeof(float));
	for (int t = 0; t < T; t++)
		for (int h = 0; h < H; h++)
			for (int i = 0; i < dh; i++)
				s->kv[(size_t)t * KV * dh + (size_t)(h / group) * dh + i] +=
				    d[(size_t)t * D + (size_t)h * dh + i];
	return s->kv;
}

/* Layer l's attention from g->attn_out[l] to the gradient at its input,
 * d_in (T, D): ln1's output in a pre-LN block, resid_pre in a post-LN one. */
static void
attn_backward(fl_grad *g, const fl_model *m, const fl_cache *c, int l, float *d_in)
{
	const fl_config *cf = &m->cfg;
	const fl_layer *y = &m->layers[l];
	fl_grad_scratch *s = g->scratch;
	int T = g->n_tok, D = cf->d_model;
	size_t at = (size_t)l * T * D, TD = (size_t)T * D;
	fl_linear to = linear_t(&y->o), tq = linear_t(&y->q);
	fl_linear tk = linear_t(&y->k), tv = linear_t(&y->v);
	float *dq = cf->rotary ? g->rot_q + at : g->q + at;
	float *dk = cf->rotary ? g->rot_k + at : g->k + at;

	kern_linear(g->z + at, D, g->attn_out + at, D, &to, T, false);
	{
		heads_job j = { g, m, c, l, dq, dk };

		/* the scores of long prompts are a product of BLIS's own threads,
		 * which kern_for's parts must not start */
		if (T < KERN_ATTN_BLAS_MIN)
			kern_for(heads_part, &j, cf->n_head);
		else
			heads_part(&j, 0, 1);
	}
	if (cf->rotary) {
		memcpy(g->q + at, dq, TD * sizeof(float));
		memcpy(g->k + at, dk, TD * sizeof(float));
		rope_backward(m, s, g->q + at, T);
		rope_backward(m, s, g->k + at, T);
	}
	kern_linear(d_in, D, g->q + at, D, &tq, T, false);
	kern_linear(d_in, D, kv_narrow(m, s, g->k + at, T), tk.in, &tk, T, true);
	kern_linear(d_in, D, kv_narrow(m, s, g->v + at, T), tv.in, &tv, T, true);
}

static void
copy_rows(float *dst, const float *src, size_t n)
{
	memcpy(dst, src, n * sizeof(float));
}

/* A pre-LN block, x += attn(ln1(x)); x += mlp(ln2(x)), from d resid_post
 * (g->resid_pre[l + 1]) to d resid_pre. */
static void
block_backward_pre(fl_grad *g, const fl_model *m, const fl_cache *c, int l)
{
	const fl_layer *y = &m->layers[l];
	int T = g->n_tok;
	size_t TD = (size_t)T * g->d_model, at = (size_t)l * TD;
	fl_grad_scratch *s = g->scratch;

	copy_rows(g->mlp_out + at, g->resid_pre + at + TD, TD);
	mlp_backward(g, m, c, l, g->ln2 + at);
	copy_rows(g->resid_mid + at, g->resid_pre + at + TD, TD);
	norm_backward(m, s, g->resid_mid + at, g->ln2_scale + (size_t)l * T,
	    g->ln2 + at, c->resid_mid + at, y->ln2_w, T, true);
	copy_rows(g->attn_out + at, g->resid_mid + at, TD);
	attn_backward(g, m, c, l, g->ln1 + at);
	copy_rows(g->resid_pre + at, g->resid_mid + at, TD);
	norm_backward(m, s, g->resid_pre + at, g->ln1_scale + (size_t)l * T,
	    g->ln1 + at, c->resid_pre + at, y->ln1_w, T, true);
}

/* One LayerNorm on a post-LN stream, y = ln(a + b), taken back: d_sum
 * (T, D) from d_y, the sum recomputed from the cache's a and b. */
static void
post_ln_backward(const fl_model *m, fl_grad_scratch *s, float *d_sum,
    float *dscale, const float *d_y, const float *a, const float *b,
    const float *w, int T)
{
	size_t TD = (size_t)T * m->cfg.d_model;

	for (size_t i = 0; i < TD; i++)
		s->in[i] = a[i] + b[i];
	norm_backward(m, s, d_sum, dscale, d_y, s->in, w, T, false);
}

/* A post-LN block (opt-350m), x = ln1(x + attn(x)); x = ln2(x + mlp(x)),
 * with the hooks of forward.h: ln1's output is resid_mid, ln2's
 * resid_post, so their gradients are the same rows. The gradient reaches
 * each sublayer's input both through the sublayer and around it. */
static void
block_backward_post(fl_grad *g, const fl_model *m, const fl_cache *c, int l)
{
	const fl_layer *y = &m->layers[l];
	int T = g->n_tok;
	size_t TD = (size_t)T * g->d_model, at = (size_t)l * TD;
	fl_grad_scratch *s = g->scratch;

	copy_rows(g->ln2 + at, g->resid_pre + at + TD, TD);
	post_ln_backward(m, s, g->mlp_out + at, g->ln2_scale + (size_t)l * T,
	    g->ln2 + at, c->resid_mid + at, c->mlp_out + at, y->ln2_w, T);
	mlp_backward(g, m, c, l, s->tmp);
	for (size_t i = 0; i < TD; i++)
		g->resid_mid[at + i] = g->mlp_out[at + i] + s->tmp[i];
	copy_rows(g->ln1 + at, g->resid_mid + at, TD);
	post_ln_backward(m, s, g->attn_out + at, g->ln1_scale + (size_t)l * T,
	    g->ln1 + at, c->resid_pre + at, c->attn_out + at, y->ln1_w, T);
	attn_backward(g, m, c, l, s->tmp);
	for (size_t i = 0; i < TD; i++)
		g->resid_pre[at + i] = g->attn_out[at + i] + s->tmp[i];
}

int
grad_backward(fl_grad *g, const fl_model *m, const fl_cache *c, const float *dir,
    char **cause)
{
	const fl_config *cf = &m->cfg;
	int L = cf->n_layer, T = g->n_tok, D = cf->d_model;
	size_t TD = (size_t)T * D;
	fl_grad_scratch *s = g->scratch;

	if (c->n_tok != T || c->valid < L)
		return fl_error(cause, "gradients: the cache holds %d tokens over %d of "
		    "%d layers; the backward needs a full pass over the %d tokens it "
		    "was sized for", c->n_tok, c->valid, L, T);
	memset(g->lnf, 0, TD * sizeof(float));
	memcpy(g->lnf + (size_t)(T - 1) * D, dir, (size_t)D * sizeof(float));
	if (cf->final_ln)
		norm_backward(m, s, g->resid_pre + (size_t)L * TD, g->lnf_scale, g->lnf,
		    c->resid_pre + (size_t)L * TD, m->lnf_w, T, false);
	else {
		memcpy(g->resid_pre + (size_t)L * TD, g->lnf, TD * sizeof(float));
		memset(g->lnf_scale, 0, (size_t)T * sizeof(float));
	}
	for (int l = L - 1; l >= 0; l--)
		if (cf->ln_before)
			block_backward_pre(g, m, c, l);
		else
			block_backward_post(g, m, c, l);
	return 0;
}

const float *
grad_at(const fl_grad *g, fl_hook_point p, int layer, int *ndim, int shape[3])
{
	int L = g->n_layer, T = g->n_tok, D = g->d_model, H = g->n_head;
	int dh = D / H, F = g->d_mlp;
	size_t TD = (size_t)T * D, TF = (size_t)T * F, TT = (size_t)T * T;
	const float *base = NULL;
	size_t per = 0;
	int kind = 0;	/* 0 (T, D); 1 (T, H, dh); 2 (H, T, T); 3 (T, F); 4 (T) */

	shape[0] = shape[1] = shape[2] = 0;
	if (layer >= L)
		return NULL;
	switch (p) {
	case HOOK_EMBED:
	case HOOK_POS_EMBED:
		return *ndim = 2, shape[0] = T, shape[1] = D, g->resid_pre;
	case HOOK_LNF_NORMALIZED:
		return *ndim = 2, shape[0] = T, shape[1] = D, g->lnf;
	case HOOK_LNF_SCALE:
		return *ndim = 1, shape[0] = T, g->lnf_scale;
	case HOOK_RESID_PRE: base = g->resid_pre; per = TD; break;
	case HOOK_RESID_POST: base = g->resid_pre + TD; per = TD; break;
	case HOOK_RESID_MID: base = g->resid_mid; per = TD; break;
	case HOOK_ATTN_OUT: base = g->attn_out; per = TD; break;
	case HOOK_MLP_OUT: base = g->mlp_out; per = TD; break;
	case HOOK_LN1_NORMALIZED: base = g->ln1; per = TD; break;
	case HOOK_LN2_NORMALIZED: base = g->ln2; per = TD; break;
	case HOOK_LN1_SCALE: base = g->ln1_scale; per = (size_t)T; kind = 4; break;
	case HOOK_LN2_SCALE: base = g->ln2_scale; per = (size_t)T; kind = 4; break;
	case HOOK_Q: base = g->q; per = TD; kind = 1; break;
	case HOOK_K: base = g->k; per = TD; kind = 1; break;
	case HOOK_V: base = g->v; per = TD; kind = 1; break;
	case HOOK_ROT_Q: base = g->rot_q; per = TD; kind = 1; break;
	case HOOK_ROT_K: base = g->rot_k; per = TD; kind = 1; break;
	case HOOK_Z: base = g->z; per = TD; kind = 1; break;
	case HOOK_ATTN_SCORES: base = g->scores; per = H * TT; kind = 2; break;
	case HOOK_PATTERN: base = g->pattern; per = H * TT; kind = 2; break;
	case HOOK_MLP_PRE: base = g->mlp_pre; per = TF; kind = 3; break;
	case HOOK_MLP_PRE_LINEAR: base = g->mlp_pre_linear; per = TF; kind = 3; break;
	case HOOK_MLP_POST: base = g->mlp_post; per = TF; kind = 3; break;
	default:
		return NULL;
	}
	if (base == NULL || layer < 0)
		return NULL;
	switch (kind) {
	case 0: *ndim = 2; shape[0] = T; shape[1] = D; break;
	case 1: *ndim = 3; shape[0] = T; shape[1] = H; shape[2] = dh; break;
	case 2: *ndim = 3; shape[0] = H; shape[1] = T; shape[2] = T; break;
	case 3: *ndim = 2; shape[0] = T; shape[1] = F; break;
	default: *ndim = 1; shape[0] = T; break;
	}
	return base + (size_t)layer * per;
}
