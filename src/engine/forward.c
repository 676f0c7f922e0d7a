/* forward.c - the instrumented forward pass; see forward.h. */
#include "autoconfig.h"

#include "forward.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "linear.h"
#include "pool.h"
#include "readout.h"
#include "vec.h"
#include "base/util.h"

static const struct {
	const char	*name;	/* after "blocks.L." for block points */
	bool		 block;
} hook_points[HOOK_POINT_COUNT] = {
	[HOOK_EMBED] = { "hook_embed", false },
	[HOOK_POS_EMBED] = { "hook_pos_embed", false },
	[HOOK_RESID_PRE] = { "hook_resid_pre", true },
	[HOOK_LN1_SCALE] = { "ln1.hook_scale", true },
	[HOOK_LN1_NORMALIZED] = { "ln1.hook_normalized", true },
	[HOOK_Q] = { "attn.hook_q", true },
	[HOOK_K] = { "attn.hook_k", true },
	[HOOK_V] = { "attn.hook_v", true },
	[HOOK_ROT_Q] = { "attn.hook_rot_q", true },
	[HOOK_ROT_K] = { "attn.hook_rot_k", true },
	[HOOK_ATTN_SCORES] = { "attn.hook_attn_scores", true },
	[HOOK_PATTERN] = { "attn.hook_pattern", true },
	[HOOK_Z] = { "attn.hook_z", true },
	[HOOK_RESULT] = { "attn.hook_result", true },
	[HOOK_ATTN_OUT] = { "hook_attn_out", true },
	[HOOK_RESID_MID] = { "hook_resid_mid", true },
	[HOOK_LN2_SCALE] = { "ln2.hook_scale", true },
	[HOOK_LN2_NORMALIZED] = { "ln2.hook_normalized", true },
	[HOOK_MLP_PRE] = { "mlp.hook_pre", true },
	[HOOK_MLP_PRE_LINEAR] = { "mlp.hook_pre_linear", true },
	[HOOK_MLP_POST] = { "mlp.hook_post", true },
	[HOOK_MLP_OUT] = { "hook_mlp_out", true },
	[HOOK_RESID_POST] = { "hook_resid_post", true },
	[HOOK_LNF_SCALE] = { "ln_final.hook_scale", false },
	[HOOK_LNF_NORMALIZED] = { "ln_final.hook_normalized", false },
	[HOOK_LOGITS] = { "logits", false },
};

const char *
hook_point_name(fl_hook_point p, int layer, char *buf, size_t n)
{
	if (p >= HOOK_POINT_COUNT)
		snprintf(buf, n, "?");
	else if (hook_points[p].block)
		snprintf(buf, n, "blocks.%d.%s", layer, hook_points[p].name);
	else
		snprintf(buf, n, "%s", hook_points[p].name);
	return buf;
}

int
hook_point_parse(const char *name, fl_hook_point *p, int *layer)
{
	int l = -1, used = 0;
	const char *rest = name;

	if (sscanf(name, "blocks.%d.%n", &l, &used) == 1 && used > 0) {
		if (l < 0)
			return -1;
		rest = name + used;
	}
	for (int i = 0; i < HOOK_POINT_COUNT; i++)
		if (hook_points[i].block == (l >= 0) &&
		    strcmp(rest, hook_points[i].name) == 0) {
			*p = (fl_hook_point)i;
			*layer = l;
			return 0;
		}
	return -1;
}

/* ---- cache ---------------------------------------------------------- */

/* Fills in k's sizes and slices for T tokens over k->block (when it is
 * set) and returns the floats they take. */
static size_t
cache_layout(fl_cache *k, const fl_model *m, int T, int flags)
{
	const fl_config *c = &m->cfg;
	size_t L = (size_t)c->n_layer, D = (size_t)c->d_model, H = (size_t)c->n_head;
	size_t off = 0;
	size_t sz_resid = (L + 1) * T * D, sz_l = L * T * D, sz_scale = L * T;
	size_t sz_pat = (flags & FL_CACHE_PATTERN) ? L * H * T * T : 0;
	size_t sz_post = (flags & FL_CACHE_MLP_POST) ? L * T * (size_t)c->d_mlp : 0;
	size_t sz_pre = (flags & FL_CACHE_MLP_PRE) ? L * T * (size_t)c->d_mlp : 0;
	size_t sz_logits = ((flags & FL_CACHE_LOGITS_ALL) ? (size_t)T : 1) *
	    (size_t)c->n_vocab;

	k->n_layer = c->n_layer;
	k->n_tok = T;
	k->d_model = c->d_model;
	k->n_head = c->n_head;
	k->d_mlp = c->d_mlp;
	k->n_vocab = c->n_vocab;
	k->flags = flags;
	k->valid = 0;
#define SLICE(field, size) do { k->field = (size) != 0 && k->block != NULL ? \
	k->block + off : NULL; off += (size); } while (0)
	SLICE(resid_pre, sz_resid);
	SLICE(resid_mid, sz_l);
	SLICE(attn_out, sz_l);
	SLICE(mlp_out, sz_l);
	SLICE(q, sz_l);
	SLICE(k, sz_l);
	SLICE(v, sz_l);
	SLICE(z, sz_l);
	SLICE(ln1_scale, sz_scale);
	SLICE(ln2_scale, sz_scale);
	SLICE(lnf_scale, (size_t)T);
	SLICE(pattern, sz_pat);
	SLICE(mlp_post, sz_post);
	SLICE(mlp_pre, sz_pre);
	SLICE(mlp_pre_linear, c->gated_mlp ? sz_pre : 0);
	SLICE(lnf, (size_t)T * D);
	SLICE(logits, sz_logits);
#undef SLICE
	return off;
}

fl_cache *
cache_new(const fl_model *m, int T, int flags)
{
	fl_cache *k = xcalloc(1, sizeof *k);

	k->cap = cache_layout(k, m, T, flags);
	k->block = xcalloc_huge(k->cap, sizeof(float));
	k->ids = xcalloc((size_t)T, sizeof *k->ids);
	cache_layout(k, m, T, flags);
	return k;
}

fl_cache *
cache_reuse(fl_cache *k, const fl_model *m, int T, int flags)
{
	fl_cache want = { 0 };
	size_t n = cache_layout(&want, m, T, flags);

	if (k == NULL || k->cap < n || k->cap > 2 * n + (1u << 20)) {
		cache_free(k);
		return cache_new(m, T, flags);
	}
	free(k->ids);
	k->ids = xcalloc((size_t)T, sizeof *k->ids);
	memset(k->block, 0, n * sizeof(float));
	cache_layout(k, m, T, flags);
	return k;
}

void
cache_free(fl_cache *k)
{
	if (k == NULL)
		return;
	free(k->ids);
	free(k->block);
	free(k);
}

/* ---- run state ------------------------------------------------------ */

struct fl_run {
	const fl_model	*m;
	int		 max_rows, max_seq;
	float		*x;		/* (N, D) residual stream */
	float		*ln;		/* (N, D) LayerNorm output */
	float		*q, *k, *v, *z;	/* (N, D) */
	float		*attn;		/* (N, D) attention output */
	float		*mlp_h;		/* (N, F) */
	float		*mlp_up;	/* (N, F) gated MLPs: up(x); else NULL */
	float		*rope_cos;	/* (S, dh / 2) rotary models; else NULL */
	float		*rope_sin;	/* (S, dh / 2) */
	float		*mlp;		/* (N, D) MLP output */
	float		*mean, *scale;	/* (N) */
	float		*scores;	/* (H, S, S) one sequence */
	float		*result;	/* (S, H, D) one sequence, on demand */
	float		*last;		/* (N, D) rows gathered for the unembedding */
	float		*proj;		/* (N, P) token embeddings before project_in,
					   rows after project_out; NULL when P = D */
	float		*logits;	/* (N, V) on demand */
	size_t		 logits_cap;
	float		*block;
	/* The rows this pass computes, within the cached sequence: all of
	 * them (row0 0, tc = rows), or only the last (row0 = tc - 1). */
	int		 row0, tc;
	const fl_prefix	*prefix;	/* the pass's, or NULL */
	float		*kv;		/* (2, S, D) a prefixed sequence's keys and
					   values, on demand */
};

fl_run *
run_new(const fl_model *m, int max_rows, int max_seq)
{
	const fl_config *c = &m->cfg;
	size_t N = (size_t)max_rows, D = (size_t)c->d_model, S = (size_t)max_seq;
	size_t P = c->d_proj != c->d_model ? (size_t)c->d_proj : 0;
	size_t UP = c->gated_mlp ? N * (size_t)c->d_mlp : 0;
	size_t ROPE = c->rotary ? S * (size_t)(c->d_head / 2) : 0;
	size_t off = 0, n;
	fl_run *r = xcalloc(1, sizeof *r);

	r->m = m;
	r->max_rows = max_rows;
	r->max_seq = max_seq;
	n = 10 * N * D + N * (size_t)c->d_mlp + 2 * N + (size_t)c->n_head * S * S + N * P +
	    UP + 2 * ROPE;
	r->block = xcalloc_huge(n, sizeof(float));
#define SLICE(field, size) do { r->field = r->block + off; off += (size); } while (0)
	SLICE(x, N * D);
	SLICE(ln, N * D);
	SLICE(q, N * D);
	SLICE(k, N * D);
	SLICE(v, N * D);
	SLICE(z, N * D);
	SLICE(attn, N * D);
	SLICE(mlp, N * D);
	SLICE(last, N * D);
	SLICE(mlp_h, N * (size_t)c->d_mlp);
	SLICE(mean, N);
	SLICE(scale, N);
	SLICE(scores, (size_t)c->n_head * S * S);
	if (P > 0)
		SLICE(proj, N * P);
	if (UP > 0)
		SLICE(mlp_up, UP);
	if (ROPE > 0) {
		SLICE(rope_cos, ROPE);
		SLICE(rope_sin, ROPE);
		kern_rope_table(r->rope_cos, r->rope_sin, max_seq, c->d_head, c->rope_theta);
	}
#undef SLICE
	return r;
}

void
run_free(fl_run *r)
{
	if (r == NULL)
		return;
	free(r->block);
	free(r->result);
	free(r->logits);
	free(r->kv);
	free(r);
}

/* ---- hooks ---------------------------------------------------------- */

static bool
hook_wanted(const fl_pass *p, fl_hook_point pt, int layer)
{
	for (int i = 0; i < p->n_hooks; i++)
		if (p->hooks[i].point == pt &&
		    (p->hooks[i].layer < 0 || p->hooks[i].layer == layer))
			return true;
	return false;
}

static int
hook_fire(const fl_pass *p, fl_hook_point pt, int layer, int seq, float *data,
    int ndim, int d0, int d1, int d2)
{
	char name[64];
	fl_act a;

	if (!hook_wanted(p, pt, layer))
		return FL_HOOK_CONTINUE;
	a.point = pt;
	a.layer = hook_points[pt].block ? layer : -1;
	a.seq = seq;
	a.name = hook_point_name(pt, layer, name, sizeof name);
	a.data = data;
	a.ndim = ndim;
	a.shape[0] = d0;
	a.shape[1] = d1;
	a.shape[2] = d2;
	for (int i = 0; i < p->n_hooks; i++) {
		const fl_hook *h = &p->hooks[i];

		if (h->point != pt || (h->layer >= 0 && h->layer != layer))
			continue;
		if (h->fn(h->ud, &a) != FL_HOOK_CONTINUE)
			return FL_STOPPED;
	}
	return FL_HOOK_CONTINUE;
}

/* Fires a row-wise point (T, w) for every sequence. */
static int
hook_rows(const fl_pass *p, fl_hook_point pt, int layer, float *buf, int w,
    const int *lens, int n_seq)
{
	int off = 0;

	if (!hook_wanted(p, pt, layer))
		return FL_HOOK_CONTINUE;
	for (int s = 0; s < n_seq; s++) {
		if (hook_fire(p, pt, layer, s, buf + (size_t)off * w, 2, lens[s], w, 0))
			return FL_STOPPED;
		off += lens[s];
	}
	return FL_HOOK_CONTINUE;
}

static int
hook_heads(const fl_pass *p, fl_hook_point pt, int layer, float *buf, int H,
    int dh, const int *lens, int n_seq)
{
	int off = 0;

	if (!hook_wanted(p, pt, layer))
		return FL_HOOK_CONTINUE;
	for (int s = 0; s < n_seq; s++) {
		if (hook_fire(p, pt, layer, s, buf + (size_t)off * H * dh, 3, lens[s], H, dh))
			return FL_STOPPED;
		off += lens[s];
	}
	return FL_HOOK_CONTINUE;
}

static int
hook_scale(const fl_pass *p, fl_hook_point pt, int layer, float *buf,
    const int *lens, int n_seq)
{
	int off = 0;

	if (!hook_wanted(p, pt, layer))
		return FL_HOOK_CONTINUE;
	for (int s = 0; s < n_seq; s++) {
		if (hook_fire(p, pt, layer, s, buf + off, 1, lens[s], 0, 0))
			return FL_STOPPED;
		off += lens[s];
	}
	return FL_HOOK_CONTINUE;
}

int
hook_self_mask(void *ud, fl_act *a)
{
	const fl_self_mask *mk = ud;
	int H = a->shape[0], Q = a->shape[1], T = a->shape[2];

	/* Query row i is position T - Q + i: Q = T in a full pass, 1 when
	 * only the last position is recomputed. */
	for (int h = 0; h < H; h++) {
		if (mk != NULL && mk->heads != NULL && !mk->heads[h])
			continue;
		for (int i = (mk != NULL && mk->all_queries) ? 0 : Q - 1; i < Q; i++) {
			float *row = a->data + ((size_t)h * Q + i) * T;

			for (int j = 0; j < T; j++)
				if (j != T - Q + i)
					row[j] = -INFINITY;
		}
	}
	return FL_HOOK_CONTINUE;
}

/* ---- the pass ------------------------------------------------------- */

static int
check_input(fl_run *r, const int *ids, const int *lens, int n_seq,
    const fl_pass *p, int *rows, char **cause)
{
	const fl_config *c = &r->m->cfg;
	int N = 0;

	if (n_seq < 1)
		return fl_error(cause, "no sequence to run");
	if (p->prefix != NULL && (p->cache != NULL || p->last_row_only ||
	    p->resume == NULL || p->start_layer < 0 || p->start_layer > c->n_layer))
		return fl_error(cause, "a pass with prefixes needs the rows to resume "
		    "from, and no cache or last_row_only");
	if (p->seq_start != NULL) {
		if (p->prefix == NULL)
			return fl_error(cause, "sequences that join at later layers need "
			    "prefixes");
		for (int s = 0; s < n_seq; s++)
			if (p->seq_start[s] < (s > 0 ? p->seq_start[s - 1] : p->start_layer) ||
			    p->seq_start[s] > c->n_layer)
				return fl_error(cause, "sequence %d joins at layer %d: the "
				    "layers must not decrease from %d nor pass %d", s,
				    p->seq_start[s], p->start_layer, c->n_layer);
	}
	for (int s = 0; s < n_seq; s++) {
		int pre = p->prefix != NULL ? p->prefix[s].rows : 0;

		if (lens[s] < 1)
			return fl_error(cause, "sequence %d is empty", s);
		if (pre < 0 || (pre > 0 && (p->prefix[s].ld < pre ||
		    p->prefix[s].k == NULL || p->prefix[s].v == NULL)))
			return fl_error(cause, "sequence %d: a prefix of %d rows without "
			    "their keys and values", s, pre);
		if (lens[s] + pre > c->n_ctx)
			return fl_error(cause, "the prompt is %d tokens, longer than the "
			    "model's context of %d tokens", lens[s] + pre, c->n_ctx);
		if (lens[s] + pre > r->max_seq)
			return fl_error(cause, "sequence %d has %d tokens; the run was "
			    "sized for %d", s, lens[s] + pre, r->max_seq);
		if (lens[s] > c->n_ctx)
			return fl_error(cause, "the prompt is %d tokens, longer than the "
			    "model's context of %d tokens", lens[s], c->n_ctx);
		if (lens[s] > r->max_seq)
			return fl_error(cause, "sequence %d has %d tokens; the run was "
			    "sized for %d", s, lens[s], r->max_seq);
		N += lens[s];
	}
	if (N > r->max_rows)
		return fl_error(cause, "the batch has %d tokens; the run was sized "
		    "for %d", N, r->max_rows);
	for (int i = 0; i < N; i++)
		if (ids[i] < 0 || ids[i] >= c->n_vocab)
			return fl_error(cause, "token id %d at position %d is outside "
			    "the vocabulary [0, %d)", ids[i], i, c->n_vocab);
	if (!c->final_ln)
		for (int i = 0; i < p->n_hooks; i++)
			if (p->hooks[i].point == HOOK_LNF_SCALE ||
			    p->hooks[i].point == HOOK_LNF_NORMALIZED) {
				char name[64];

				return fl_error(cause, "hook point %s: this model has no "
				    "final LayerNorm",
				    hook_point_name(p->hooks[i].point, -1, name, sizeof name));
			}
	for (int i = 0; i < p->n_hooks; i++) {
		fl_hook_point pt = p->hooks[i].point;
		const char *why = NULL;
		char name[64];

		if (c->rotary && pt == HOOK_POS_EMBED)
			why = "rotary positions, no position embedding";
		else if (!c->rotary && (pt == HOOK_ROT_Q || pt == HOOK_ROT_K))
			why = "no rotary positions";
		else if (!c->gated_mlp && pt == HOOK_MLP_PRE_LINEAR)
			why = "no gated MLP";
		if (why != NULL)
			return fl_error(cause, "hook point %s: this model has %s",
			    hook_point_name(pt, 0, name, sizeof name), why);
	}
	if (p->cache != NULL) {
		if (n_seq != 1 || p->cache->n_tok != lens[0])
			return fl_error(cause, "the cache holds %d tokens; the pass has "
			    "%d sequence(s) of %d", p->cache->n_tok, n_seq, lens[0]);
	}
	if (p->prefix != NULL)
		;	/* checked above */
	else if (p->start_layer > 0 && p->resume != NULL) {
		if (p->cache != NULL || p->last_row_only ||
		    p->start_layer > c->n_layer)
			return fl_error(cause, "cannot resume at layer %d from given "
			    "rows with a cache or last_row_only", p->start_layer);
	} else if (p->start_layer > 0 || p->last_row_only) {
		/* last_row_only resumes from the cache even at layer 0 (a
		 * one-layer model's last layer): its resid_pre is cached too. */
		int need = p->start_layer > 0 ? p->start_layer : 1;

		if (p->cache == NULL || p->start_layer > c->n_layer ||
		    p->cache->valid < need ||
		    memcmp(p->cache->ids, ids, (size_t)N * sizeof *ids) != 0)
			return fl_error(cause, "cannot resume at layer %d: the cache does "
			    "not hold this prompt up to that layer", p->start_layer);
	}
	*rows = N;
	return 0;
}

/* Token embeddings into r->ln (through project_in when the model has it,
 * the raw (P) rows staged in r->proj), positions into r->mlp. */
static void
embed(fl_run *r, const int *ids, const int *lens, int n_seq, int N)
{
	const fl_model *m = r->m;
	const fl_config *c = &m->cfg;
	size_t D = (size_t)c->d_model, P = (size_t)c->d_proj;
	float *tok = m->project_in.w != NULL ? r->proj : r->ln;
	int row = 0;

	for (int s = 0; s < n_seq; s++)
		for (int t = 0; t < lens[s]; t++, row++) {
			table_row(&m->wte, ids[row], tok + row * P);
			if (m->wpe != NULL)
				memcpy(r->mlp + row * D, m->wpe + (size_t)(t + c->pos_offset) *
				    D, D * sizeof(float));
			else
				memset(r->mlp + row * D, 0, D * sizeof(float));
		}
	if (m->project_in.w != NULL)
		kern_linear(r->ln, (int)D, r->proj, (int)P, &m->project_in, N, false);
}

/* x += y, VW values at a time (GCC leaves the plain loop scalar at -O2:
 * x and y may alias; at 256 tokens the two residual adds were 2 % of a
 * pass, on one thread). */
static void
add_rows(float *x, const float *y, size_t n)
{
	size_t i = 0;

	for (; i + VW <= n; i += VW)
		vstore(x + i, vload(x + i) + vload(y + i));
	for (; i < n; i++)
		x[i] += y[i];
}

/* From this many values (256 KB) on, a copy into the cache is shared
 * among the threads, in pieces of COPY_GRAIN values (at 256 tokens the
 * copies were 1.2 % of a pass, on one thread while the other waited). */
#define COPY_PARALLEL_MIN ((size_t)1 << 16)
#define COPY_GRAIN 4096

typedef struct {
	float		*dst;
	const float	*src;
	size_t		 n;
} copy_job;

static void
copy_part(void *ctx, int part, int nparts)
{
	const copy_job *j = ctx;
	size_t lo, hi;

	kern_part_span(j->n, COPY_GRAIN, part, nparts, &lo, &hi);
	if (lo < hi)
		memcpy(j->dst + lo, j->src + lo, (hi - lo) * sizeof *j->dst);
}

/* Copies one sequence's rows into a per-layer cache slot. */
static void
cache_put(float *dst, const float *src, size_t n)
{
	copy_job j = { dst, src, n };

	if (dst == NULL)
		return;
	if (n >= COPY_PARALLEL_MIN && kern_threads() > 1)
		kern_for(copy_part, &j, kern_grains(n, COPY_GRAIN));
	else
		memcpy(dst, src, n * sizeof(float));
}

/* The steps of a sequence's attention, head by head: the scores, the
 * softmax of their rows, the mix of the values. */
enum { HEADS_SCORES = 1, HEADS_SOFTMAX = 2, HEADS_MIX = 4 };

typedef struct {
	fl_run		*r;
	float		*sc;		/* (H, n, T) */
	const float	*q, *k, *v;	/* n query rows; T key, value rows (stride D) */
	float		*z;		/* n rows */
	int		 n, T, steps;
	bool		 causal;	/* no hook edited the scores or the pattern */
} heads_job;

/* Heads [h0, h1) of a heads_job: queries at positions T - n .. T - 1. The
 * causal rows' softmax reads only the positions up to the query's (the
 * others are -inf, so 0) unless a hook saw the scores. */
static void
heads_range(const heads_job *j, int h0, int h1)
{
	const fl_config *c = &j->r->m->cfg;
	int dh = c->d_head, D = c->d_model, n = j->n, T = j->T;
	float scale = 1.0f / sqrtf((float)dh);

	for (int h = h0; h < h1; h++) {
		float *sc = j->sc + (size_t)h * n * T;

		if (j->steps & HEADS_SCORES)
			kern_attn_scores_at(sc, j->q + h * dh, j->k + h * dh, D, n, T, dh,
			    scale);
		if (j->steps & HEADS_SOFTMAX)
			for (int i = 0; i < n; i++) {
				float *row = sc + (size_t)i * T;
				int upto = T - n + i + 1;

				if (j->causal) {
					kern_softmax(row, upto);
					memset(row + upto, 0, (size_t)(T - upto) * sizeof *row);
				} else
					kern_softmax(row, T);
			}
		if (j->steps & HEADS_MIX)
			kern_attn_mix_at(j->z + h * dh, sc, j->v + h * dh, D, n, T, dh,
			    j->causal);
	}
}

static void
heads_part(void *ctx, int part, int nparts)
{
	const heads_job *j = ctx;
	int h0, h1;

	kern_part_range(j->r->m->cfg.n_head, part, nparts, &h0, &h1);
	heads_range(j, h0, h1);
}

/* The job of sequence s, whose n rows start at off: its keys and values
 * are the pass's rows, or with a prefix the prefix's of layer l and then
 * the pass's, gathered in kv (2, S, D). */
static void
heads_setup(heads_job *j, fl_run *r, int l, int s, int off, int n, float *sc,
    float *kv)
{
	size_t D = (size_t)r->m->cfg.d_model;
	const fl_prefix *x = r->prefix != NULL ? &r->prefix[s] : NULL;
	int pre = x != NULL ? x->rows : 0;

	memset(j, 0, sizeof *j);
	j->r = r;
	j->sc = sc;
	j->q = r->q + off * D;
	j->z = r->z + off * D;
	j->n = n;
	j->T = n + pre;
	j->k = r->k + off * D;
	j->v = r->v + off * D;
	if (pre > 0) {
		float *K = kv, *V = kv + (size_t)r->max_seq * D;
		size_t at = (size_t)l * x->ld * D;

		memcpy(K, x->k + at, (size_t)pre * D * sizeof *K);
		memcpy(V, x->v + at, (size_t)pre * D * sizeof *V);
		memcpy(K + pre * D, j->k, (size_t)n * D * sizeof *K);
		memcpy(V + pre * D, j->v, (size_t)n * D * sizeof *V);
		j->k = K;
		j->v = V;
	}
}

/* From this many positions on, a sequence's heads are shared among the
 * threads: below it a head's attention takes about a microsecond, less
 * than handing it over. */
#define HEADS_PARALLEL_MIN 24

/* The given steps of a job for every head; on the threads when `parallel`
 * (not from inside a kern_for task) and the sequence is long enough. */
static void
heads_steps(heads_job *j, int steps, bool causal, bool parallel)
{
	j->steps = steps;
	j->causal = causal;
	if (parallel && j->n >= HEADS_PARALLEL_MIN && kern_threads() > 1)
		kern_for(heads_part, j, j->r->m->cfg.n_head);
	else
		heads_range(j, 0, j->r->m->cfg.n_head);
}

/* Attention of one sequence whose n rows start at `off`. The scores are
 * computed where the pattern is cached, when it is, so that the cache
 * needs no copy; the steps between two hooks run as one job. */
static int
attend(fl_run *r, const fl_pass *p, int l, int s, int off, int n)
{
	int H = r->m->cfg.n_head;
	fl_cache *k = p->cache;
	bool hs = hook_wanted(p, HOOK_ATTN_SCORES, l), hp = hook_wanted(p, HOOK_PATTERN, l);
	bool causal = !hs && !hp;
	float *sc = k != NULL && k->pattern != NULL ? k->pattern + (size_t)l * H * n * n :
	    r->scores;
	heads_job j;

	if (r->prefix != NULL && r->kv == NULL)
		r->kv = xmalloc(2 * (size_t)r->max_seq * r->m->cfg.d_model * sizeof(float));
	heads_setup(&j, r, l, s, off, n, sc, r->kv);
	if (hs) {
		heads_steps(&j, HEADS_SCORES, causal, true);
		if (hook_fire(p, HOOK_ATTN_SCORES, l, s, sc, 3, H, n, j.T))
			return FL_STOPPED;
		heads_steps(&j, HEADS_SOFTMAX | (hp ? 0 : HEADS_MIX), causal, true);
	} else
		heads_steps(&j, HEADS_SCORES | HEADS_SOFTMAX | (hp ? 0 : HEADS_MIX),
		    causal, true);
	if (hp) {
		if (hook_fire(p, HOOK_PATTERN, l, s, sc, 3, H, n, j.T))
			return FL_STOPPED;
		heads_steps(&j, HEADS_MIX, causal, true);
	}
	return FL_HOOK_CONTINUE;
}

/* A packed batch's sequences shared among the threads, each part with
 * scores of its own: what a batch of short prompts spends between its
 * products, which the workers otherwise watch. */
typedef struct {
	fl_run		*r;
	const int	*lens;
	int		 n_seq, max_len;	/* max_len: keys, prefixes included */
	int		 l;
} attend_job;

static void
attend_part(void *ctx, int part, int nparts)
{
	const attend_job *j = ctx;
	int s0, s1, off = 0;
	float *sc, *kv;

	kern_part_range(j->n_seq, part, nparts, &s0, &s1);
	if (s0 >= s1)
		return;
	sc = xmalloc((size_t)j->r->m->cfg.n_head * j->max_len * j->max_len *
	    sizeof *sc);
	kv = j->r->prefix != NULL ? xmalloc(2 * (size_t)j->r->max_seq *
	    j->r->m->cfg.d_model * sizeof *kv) : NULL;
	for (int s = 0; s < s0; s++)
		off += j->lens[s];
	for (int s = s0; s < s1; s++) {
		heads_job hj;

		heads_setup(&hj, j->r, j->l, s, off, j->lens[s], sc, kv);
		heads_steps(&hj, HEADS_SCORES | HEADS_SOFTMAX | HEADS_MIX, true, false);
		off += j->lens[s];
	}
	free(kv);
	free(sc);
}

/* Whether a layer's sequences may be attended in parallel: more than one,
 * no hook on the scores or the pattern, no pattern to cache, and short
 * enough for our own kernels (BLIS has threads of its own). */
static bool
attend_parallel(const fl_pass *p, int l, const int *lens, int n_seq,
    int *max_len)
{
	*max_len = 0;
	if (n_seq < 2 || kern_threads() < 2 || hook_wanted(p, HOOK_ATTN_SCORES, l) ||
	    hook_wanted(p, HOOK_PATTERN, l) ||
	    (p->cache != NULL && p->cache->pattern != NULL))
		return false;
	for (int s = 0; s < n_seq; s++) {
		int T = lens[s] + (p->prefix != NULL ? p->prefix[s].rows : 0);

		if (lens[s] >= KERN_ATTN_BLAS_MIN)
			return false;
		if (T > *max_len)
			*max_len = T;
	}
	return true;
}

/* attn_out from per-head results, so that a hook on hook_result can edit
 * what each head writes. */
static int
attn_from_results(fl_run *r, const fl_pass *p, int l, const int *lens, int n_seq)
{
	const fl_config *c = &r->m->cfg;
	const fl_layer *y = &r->m->layers[l];
	int H = c->n_head, dh = c->d_head, D = c->d_model, off = 0;

	if (r->result == NULL)
		r->result = xcalloc((size_t)r->max_seq * H * D, sizeof(float));
	for (int s = 0; s < n_seq; s++) {
		int T = lens[s];

		for (int h = 0; h < H; h++) {
			fl_linear hs = linear_in_rows(&y->o, h * dh, dh);

			kern_linear(r->result + (size_t)h * D, H * D,
			    r->z + (size_t)off * D + h * dh, D, &hs, T, false);
		}
		if (hook_fire(p, HOOK_RESULT, l, s, r->result, 3, T, H, D))
			return FL_STOPPED;
		for (int t = 0; t < T; t++) {
			float *o = r->attn + (size_t)(off + t) * D;

			for (int i = 0; i < D; i++)
				o[i] = y->o.b != NULL ? y->o.b[i] : 0.0f;
			for (int h = 0; h < H; h++)
				add_rows(o, r->result + ((size_t)t * H + h) * D, (size_t)D);
		}
		off += T;
	}
	return FL_HOOK_CONTINUE;
}

/* Attention of the last position alone, its keys and values of the other
 * positions read from the cache (a causal model's earlier rows do not
 * change when only the last one does). Scores and pattern are (H, 1, T). */
static int
attend_last(fl_run *r, const fl_pass *p, int l)
{
	const fl_config *c = &r->m->cfg;
	int H = c->n_head, dh = c->d_head, D = c->d_model, T = r->tc, t = r->row0;
	float scale = 1.0f / sqrtf((float)dh);
	fl_cache *k = p->cache;
	float *K = k->k + (size_t)l * T * D, *Vc = k->v + (size_t)l * T * D;

	memcpy(K + (size_t)t * D, r->k, (size_t)D * sizeof(float));
	memcpy(Vc + (size_t)t * D, r->v, (size_t)D * sizeof(float));
	for (int h = 0; h < H; h++)
		for (int j = 0; j < T; j++)
			r->scores[(size_t)h * T + j] = scale * cblas_sdot(dh,
			    r->q + h * dh, 1, K + (size_t)j * D + h * dh, 1);
	if (hook_fire(p, HOOK_ATTN_SCORES, l, 0, r->scores, 3, H, 1, T))
		return FL_STOPPED;
	for (int h = 0; h < H; h++)
		kern_softmax(r->scores + (size_t)h * T, T);
	if (hook_fire(p, HOOK_PATTERN, l, 0, r->scores, 3, H, 1, T))
		return FL_STOPPED;
	memset(r->z, 0, (size_t)D * sizeof(float));
	for (int h = 0; h < H; h++) {
		if (k->pattern != NULL)
			memcpy(k->pattern + (((size_t)l * H + h) * T + t) * T,
			    r->scores + (size_t)h * T, (size_t)T * sizeof(float));
		for (int j = 0; j < T; j++)
			cblas_saxpy(dh, r->scores[(size_t)h * T + j],
			    Vc + (size_t)j * D + h * dh, 1, r->z + h * dh, 1);
	}
	return FL_HOOK_CONTINUE;
}

#define FIRE(x) do { if ((x) != FL_HOOK_CONTINUE) return FL_STOPPED; } while (0)

/* One of the block's LayerNorms (ln 1 or 2) of the rows of x into out (out
 * may be x), with its scale and normalized hooks; the scale (as the hooks
 * left it) goes to cache_scale when not NULL. */
static int
block_ln(fl_run *r, const fl_pass *p, int l, int ln, float *out, const float *x,
    const int *lens, int n_seq, int N, float *cache_scale)
{
	const fl_config *c = &r->m->cfg;
	const fl_layer *y = &r->m->layers[l];
	int D = c->d_model;

	model_norm_stats_mt(r->m, r->mean, r->scale, x, N);
	FIRE(hook_scale(p, ln == 1 ? HOOK_LN1_SCALE : HOOK_LN2_SCALE, l, r->scale,
	    lens, n_seq));
	model_ln_apply_mt(r->m, out, x, r->mean, r->scale, ln == 1 ? y->ln1_w :
	    y->ln2_w, ln == 1 ? y->ln1_b : y->ln2_b, N);
	FIRE(hook_rows(p, ln == 1 ? HOOK_LN1_NORMALIZED : HOOK_LN2_NORMALIZED, l, out,
	    D, lens, n_seq));
	cache_put(cache_scale, r->scale, (size_t)N);
	return FL_HOOK_CONTINUE;
}

/* k or v of every row into out (N, D), one copy of each key/value head
 * for each query head of its group (Hugging Face's repeat_kv), so that
 * hooks, the cache and attention see n_head heads in every model. The
 * narrow (N, KV dh) product is staged in r->z, free until attention. */
static void
kv_project(fl_run *r, float *out, const fl_linear *lin, const float *in, int N)
{
	const fl_config *c = &r->m->cfg;
	int D = c->d_model, dh = c->d_head, H = c->n_head, KV = c->n_kv_head;
	int group = H / KV;

	if (KV == H) {
		kern_linear(out, D, in, D, lin, N, false);
		return;
	}
	kern_linear(r->z, KV * dh, in, D, lin, N, false);
	for (int t = 0; t < N; t++)
		for (int h = 0; h < H; h++)
			memcpy(out + (size_t)t * D + (size_t)h * dh,
			    r->z + (size_t)t * KV * dh + (size_t)(h / group) * dh,
			    (size_t)dh * sizeof(float));
}

/* Rotates every head of x (N, H, dh) by its row's position, Hugging Face's
 * rotate_half convention: element i pairs with i + dh/2 (the two halves of
 * the head, not neighbours), (a, b) -> (a cos - b sin, b cos + a sin).
 * Positions count from 0 in each sequence; a last-row-only pass computes
 * row row0. */
static void
rope_apply(fl_run *r, float *x, const int *lens, int n_seq)
{
	const fl_config *c = &r->m->cfg;
	int D = c->d_model, dh = c->d_head, H = c->n_head, half = dh / 2, row = 0;

	for (int s = 0; s < n_seq; s++)
		for (int t = 0; t < lens[s]; t++, row++) {
			int pos = r->row0 + t + (r->prefix != NULL ? r->prefix[s].rows : 0);
			const float *cs = r->rope_cos + (size_t)pos * half;
			const float *sn = r->rope_sin + (size_t)pos * half;

			for (int h = 0; h < H; h++) {
				float *a = x + (size_t)row * D + (size_t)h * dh, *b = a + half;

				for (int i = 0; i < half; i++) {
					float x1 = a[i], x2 = b[i];

					a[i] = x1 * cs[i] - x2 * sn[i];
					b[i] = x2 * cs[i] + x1 * sn[i];
				}
			}
		}
}

/* The attention of the block, reading `in` (ln1's output in a pre-LN
 * block, resid_pre itself in a post-LN one), through hook_attn_out: the
 * output is in r->attn. */
static int
block_attn(fl_run *r, const fl_pass *p, int l, const float *in, const int *lens,
    int n_seq, int N)
{
	const fl_config *c = &r->m->cfg;
	const fl_layer *y = &r->m->layers[l];
	size_t D = (size_t)c->d_model, T = (size_t)N;
	size_t at = (size_t)l * r->tc + r->row0;	/* this layer's first cached row */
	fl_cache *k = p->cache;
	int off = 0, max_len;

	kern_linear(r->q, (int)D, in, (int)D, &y->q, N, false);
	kv_project(r, r->k, &y->k, in, N);
	kv_project(r, r->v, &y->v, in, N);
	FIRE(hook_heads(p, HOOK_Q, l, r->q, c->n_head, c->d_head, lens, n_seq));
	FIRE(hook_heads(p, HOOK_K, l, r->k, c->n_head, c->d_head, lens, n_seq));
	FIRE(hook_heads(p, HOOK_V, l, r->v, c->n_head, c->d_head, lens, n_seq));
	if (c->rotary) {
		rope_apply(r, r->q, lens, n_seq);
		rope_apply(r, r->k, lens, n_seq);
		FIRE(hook_heads(p, HOOK_ROT_Q, l, r->q, c->n_head, c->d_head, lens, n_seq));
		FIRE(hook_heads(p, HOOK_ROT_K, l, r->k, c->n_head, c->d_head, lens, n_seq));
	}
	if (r->row0 > 0)
		FIRE(attend_last(r, p, l));
	else if (attend_parallel(p, l, lens, n_seq, &max_len)) {
		attend_job j = { r, lens, n_seq, max_len, l };

		kern_for(attend_part, &j, n_seq);
	} else
		for (int s = 0; s < n_seq; s++) {
			FIRE(attend(r, p, l, s, off, lens[s]));
			off += lens[s];
		}
	FIRE(hook_heads(p, HOOK_Z, l, r->z, c->n_head, c->d_head, lens, n_seq));
	if (k != NULL) {
		cache_put(k->q + at * D, r->q, T * D);
		cache_put(k->k + at * D, r->k, T * D);
		cache_put(k->v + at * D, r->v, T * D);
		cache_put(k->z + at * D, r->z, T * D);
	}
	if (hook_wanted(p, HOOK_RESULT, l))
		FIRE(attn_from_results(r, p, l, lens, n_seq));
	else
		kern_linear(r->attn, (int)D, r->z, (int)D, &y->o, N, false);
	FIRE(hook_rows(p, HOOK_ATTN_OUT, l, r->attn, (int)D, lens, n_seq));
	if (k != NULL)
		cache_put(k->attn_out + at * D, r->attn, T * D);
	return FL_HOOK_CONTINUE;
}

/* The MLP of the block, reading `in` (ln2's output in a pre-LN block,
 * resid_mid itself in a post-LN one), through hook_mlp_out: the output is
 * in r->mlp. */
static int
block_mlp(fl_run *r, const fl_pass *p, int l, const float *in, const int *lens,
    int n_seq, int N)
{
	const fl_config *c = &r->m->cfg;
	const fl_layer *y = &r->m->layers[l];
	size_t D = (size_t)c->d_model, F = (size_t)c->d_mlp, T = (size_t)N;
	size_t at = (size_t)l * r->tc + r->row0;
	fl_cache *k = p->cache;

	kern_linear(r->mlp_h, (int)F, in, (int)D, &y->fc, N, false);
	FIRE(hook_rows(p, HOOK_MLP_PRE, l, r->mlp_h, (int)F, lens, n_seq));
	if (k != NULL && k->mlp_pre != NULL)
		cache_put(k->mlp_pre + at * F, r->mlp_h, T * F);
	if (c->gated_mlp) {
		kern_linear(r->mlp_up, (int)F, in, (int)D, &y->up, N, false);
		FIRE(hook_rows(p, HOOK_MLP_PRE_LINEAR, l, r->mlp_up, (int)F, lens,
		    n_seq));
		if (k != NULL && k->mlp_pre_linear != NULL)
			cache_put(k->mlp_pre_linear + at * F, r->mlp_up, T * F);
	}
	model_activation_mt(r->m, r->mlp_h, c->gated_mlp ? r->mlp_up : NULL, N);
	FIRE(hook_rows(p, HOOK_MLP_POST, l, r->mlp_h, (int)F, lens, n_seq));
	if (k != NULL && k->mlp_post != NULL)
		cache_put(k->mlp_post + at * F, r->mlp_h, T * F);
	kern_linear(r->mlp, (int)D, r->mlp_h, (int)F, &y->proj, N, false);
	FIRE(hook_rows(p, HOOK_MLP_OUT, l, r->mlp, (int)D, lens, n_seq));
	if (k != NULL)
		cache_put(k->mlp_out + at * D, r->mlp, T * D);
	return FL_HOOK_CONTINUE;
}

/* One block on the residual stream r->x. Pre-LN (GPT-2, most OPT):
 *     x += attn(ln1(x));  x += mlp(ln2(x))
 * post-LN (opt-350m):
 *     x = ln1(x + attn(x));  x = ln2(x + mlp(x))
 * with the hook convention of forward.h. */
static int
block(fl_run *r, const fl_pass *p, int l, const int *lens, int n_seq, int N)
{
	const fl_config *c = &r->m->cfg;
	size_t D = (size_t)c->d_model, T = (size_t)N;
	size_t at = (size_t)l * r->tc + r->row0;	/* this layer's first cached row */
	size_t next = (size_t)(l + 1) * r->tc + r->row0;
	fl_cache *k = p->cache;
	bool pre = c->ln_before;

	FIRE(hook_rows(p, HOOK_RESID_PRE, l, r->x, (int)D, lens, n_seq));
	if (k != NULL)
		cache_put(k->resid_pre + at * D, r->x, T * D);

	if (pre)
		FIRE(block_ln(r, p, l, 1, r->ln, r->x, lens, n_seq, N,
		    k != NULL ? k->ln1_scale + at : NULL));
	FIRE(block_attn(r, p, l, pre ? r->ln : r->x, lens, n_seq, N));
	add_rows(r->x, r->attn, T * D);
	if (!pre)
		FIRE(block_ln(r, p, l, 1, r->x, r->x, lens, n_seq, N,
		    k != NULL ? k->ln1_scale + at : NULL));
	FIRE(hook_rows(p, HOOK_RESID_MID, l, r->x, (int)D, lens, n_seq));
	if (k != NULL)
		cache_put(k->resid_mid + at * D, r->x, T * D);

	if (pre)
		FIRE(block_ln(r, p, l, 2, r->ln, r->x, lens, n_seq, N,
		    k != NULL ? k->ln2_scale + at : NULL));
	FIRE(block_mlp(r, p, l, pre ? r->ln : r->x, lens, n_seq, N));
	add_rows(r->x, r->mlp, T * D);
	if (!pre)
		FIRE(block_ln(r, p, l, 2, r->x, r->x, lens, n_seq, N,
		    k != NULL ? k->ln2_scale + at : NULL));
	FIRE(hook_rows(p, HOOK_RESID_POST, l, r->x, (int)D, lens, n_seq));
	if (k != NULL) {
		cache_put(k->resid_pre + next * D, r->x, T * D);
		k->valid = l + 1;
	}
	return FL_HOOK_CONTINUE;
}

/* The unembedding of src (N, D): the final LN's output, or the last
 * resid_post when the model has none. */
static int
unembed(fl_run *r, const fl_pass *p, const float *src_all, const int *lens,
    int n_seq, int N)
{
	const fl_config *c = &r->m->cfg;
	size_t D = (size_t)c->d_model, V = (size_t)c->n_vocab;
	fl_cache *k = p->cache;
	int R = p->logits_all ? N : n_seq, off = 0;
	float *out;
	const float *src = src_all;
	/* A cache of every row's logits while the pass wants only the last
	 * (one sequence, as caches are) */
	bool all_rows_cached = k != NULL && (k->flags & FL_CACHE_LOGITS_ALL) &&
	    !p->logits_all;
	float *slot = k != NULL ? k->logits + (size_t)r->row0 * V : NULL;

	if (p->no_logits ||
	    (p->logits == NULL && k == NULL && !hook_wanted(p, HOOK_LOGITS, -1)))
		return FL_HOOK_CONTINUE;
	if (!p->logits_all) {
		for (int s = 0; s < n_seq; s++) {
			off += lens[s];
			memcpy(r->last + s * D, src_all + (size_t)(off - 1) * D,
			    D * sizeof(float));
		}
		src = r->last;
	}
	out = p->logits;
	if (out == NULL) {
		if (r->logits_cap < (size_t)R * V) {
			free(r->logits);
			r->logits_cap = (size_t)R * V;
			r->logits = xmalloc(r->logits_cap * sizeof(float));
		}
		out = r->logits;
	}
	if (all_rows_cached) {
		/* One product for every row; the pass's own output is the last. */
		model_unembed(r->m, src_all, N, slot, r->proj);
		memcpy(out, slot + (size_t)(N - 1) * V, V * sizeof(float));
	} else
		model_unembed(r->m, src, R, out, r->proj);
	off = 0;
	for (int s = 0; s < n_seq; s++) {
		int rows = p->logits_all ? lens[s] : 1;

		FIRE(hook_fire(p, HOOK_LOGITS, -1, s, out + (size_t)off * V, 2, rows,
		    (int)V, 0));
		off += rows;
	}
	/* The cache keeps what the hooks left. */
	if (all_rows_cached)
		memcpy(slot + (size_t)(N - 1) * V, out, V * sizeof(float));
	else if (k != NULL && (k->flags & FL_CACHE_LOGITS_ALL))
		cache_put(slot, out, (size_t)N * V);
	else if (k != NULL)
		cache_put(k->logits, out + (size_t)(R - 1) * V, V);
	return FL_HOOK_CONTINUE;
}

/* The sequences that join at layer l (seq_start) appended to the active
 * ones: their rows of resume after the active rows. */
static void
join(fl_run *r, const fl_pass *p, int l, const int *lens, int n_all, int *n_seq,
    int *N)
{
	size_t D = (size_t)r->m->cfg.d_model, at = (size_t)*N;

	while (*n_seq < n_all && p->seq_start[*n_seq] <= l)
		*N += lens[(*n_seq)++];
	if ((size_t)*N > at)
		memcpy(r->x + at * D, p->resume + at * D, ((size_t)*N - at) * D *
		    sizeof(float));
}

int
run_forward(fl_run *r, const int *ids, const int *lens, int n_seq,
    const fl_pass *p, char **cause)
{
	const fl_config *c = &r->m->cfg;
	size_t D = (size_t)c->d_model;
	fl_cache *k = p->cache;
	int N = 0, l0 = p->start_layer, one = 1, n_all = 0, N_all = 0;
	const float *fin;

	if (check_input(r, ids, lens, n_seq, p, &N, cause) != 0)
		return -1;
	r->row0 = 0;
	r->tc = N;
	r->prefix = p->prefix;
	if (p->last_row_only) {
		r->row0 = N - 1;
		N = 1;
		lens = &one;
	}
	if (p->seq_start != NULL) {
		/* the sequences join layer by layer: see below */
		n_all = n_seq;
		N_all = N;
		n_seq = N = 0;
	} else if (l0 > 0 || p->last_row_only || p->prefix != NULL)
		memcpy(r->x, p->resume != NULL ? p->resume : k->resid_pre +
		    ((size_t)l0 * r->tc + r->row0) * D, (size_t)N * D * sizeof(float));
	else {
		embed(r, ids, lens, n_seq, N);
		FIRE(hook_rows(p, HOOK_EMBED, -1, r->ln, (int)D, lens, n_seq));
		FIRE(hook_rows(p, HOOK_POS_EMBED, -1, r->mlp, (int)D, lens, n_seq));
		for (size_t i = 0; i < (size_t)N * D; i++)
			r->x[i] = r->ln[i] + r->mlp[i];
		if (k != NULL) {
			memcpy(k->ids, ids, (size_t)N * sizeof *ids);
			k->valid = 0;
		}
	}
	for (int l = l0; l < c->n_layer; l++) {
		if (p->seq_start != NULL)
			join(r, p, l, lens, n_all, &n_seq, &N);
		if (n_seq > 0)
			FIRE(block(r, p, l, lens, n_seq, N));
	}
	if (p->seq_start != NULL) {
		join(r, p, c->n_layer, lens, n_all, &n_seq, &N);
		(void)N_all;
	}

	if (c->final_ln) {
		model_norm_stats_mt(r->m, r->mean, r->scale, r->x, N);
		FIRE(hook_scale(p, HOOK_LNF_SCALE, -1, r->scale, lens, n_seq));
		model_ln_apply_mt(r->m, r->ln, r->x, r->mean, r->scale, r->m->lnf_w,
		    r->m->lnf_b, N);
		FIRE(hook_rows(p, HOOK_LNF_NORMALIZED, -1, r->ln, (int)D, lens, n_seq));
	} else
		for (int i = 0; i < N; i++)
			r->scale[i] = 1.0f;
	fin = c->final_ln ? r->ln : r->x;
	if (k != NULL) {
		cache_put(k->lnf_scale + r->row0, r->scale, (size_t)N);
		cache_put(k->lnf + (size_t)r->row0 * D, fin, (size_t)N * D);
	}
	return unembed(r, p, fin, lens, n_seq, N);
}
