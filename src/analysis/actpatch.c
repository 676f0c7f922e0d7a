/* actpatch.c - activation patching grids; see actpatch.h. */
#include "autoconfig.h"

#include "actpatch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/lens.h"
#include "base/util.h"

static const char *hook_names[ACTPATCH_HOOK_COUNT] = {
	"resid_pre", "resid_mid", "attn_out", "mlp_out", "z", "q", "k", "v", "pattern",
};
static const char *metric_names[ACTPATCH_METRIC_COUNT] = { "logit-diff", "prob" };

const fl_actpatch_hook actpatch_every[ACTPATCH_EVERY_COUNT] = {
	ACTPATCH_Z, ACTPATCH_Q, ACTPATCH_K, ACTPATCH_V, ACTPATCH_PATTERN,
};

const char *
actpatch_hook_name(fl_actpatch_hook h)
{
	return h >= 0 && h < ACTPATCH_HOOK_COUNT ? hook_names[h] : "?";
}

int
actpatch_hook_parse(const char *s)
{
	for (int i = 0; i < ACTPATCH_HOOK_COUNT; i++)
		if (strcmp(s, hook_names[i]) == 0)
			return i;
	return -1;
}

fl_hook_point
actpatch_point(const fl_model *m, fl_actpatch_hook h)
{
	switch (h) {
	case ACTPATCH_RESID_MID: return HOOK_RESID_MID;
	case ACTPATCH_ATTN_OUT: return HOOK_ATTN_OUT;
	case ACTPATCH_MLP_OUT: return HOOK_MLP_OUT;
	case ACTPATCH_Z: return HOOK_Z;
	/* the cache's q and k are rotated in a rotary model (actpatch.h) */
	case ACTPATCH_Q: return m->cfg.rotary ? HOOK_ROT_Q : HOOK_Q;
	case ACTPATCH_K: return m->cfg.rotary ? HOOK_ROT_K : HOOK_K;
	case ACTPATCH_V: return HOOK_V;
	case ACTPATCH_PATTERN: return HOOK_PATTERN;
	default: return HOOK_RESID_PRE;
	}
}

bool
actpatch_per_head(fl_actpatch_hook h)
{
	return h == ACTPATCH_Z || h == ACTPATCH_Q || h == ACTPATCH_K ||
	    h == ACTPATCH_V || h == ACTPATCH_PATTERN;
}

int
actpatch_heads(const fl_model *m, fl_actpatch_hook h)
{
	return h == ACTPATCH_K || h == ACTPATCH_V ? m->cfg.n_kv_head : m->cfg.n_head;
}

const char *
actpatch_metric_name(fl_actpatch_metric m)
{
	return m >= 0 && m < ACTPATCH_METRIC_COUNT ? metric_names[m] : "?";
}

int
actpatch_metric_parse(const char *s)
{
	for (int i = 0; i < ACTPATCH_METRIC_COUNT; i++)
		if (strcmp(s, metric_names[i]) == 0)
			return i;
	return -1;
}

double
actpatch_metric(const fl_actpatch_opts *o, const float *logits, int V)
{
	if (o->metric == ACTPATCH_PROB)
		return lens_prob_of(logits, V, o->answer);
	return lens_logit_diff(logits, V, o->answer, o->distractor);
}

int
actpatch_cells(const fl_model *m, const fl_actpatch_opts *o, int T)
{
	int L = m->cfg.n_layer, H = actpatch_heads(m, o->hook);

	if (!actpatch_per_head(o->hook))
		return L * T;
	return o->by_pos ? L * T * H : L * H;
}

long
actpatch_units(const fl_model *m, const fl_actpatch_opts *o, int T)
{
	return 2 + (long)actpatch_cells(m, o, T);
}

long
actpatch_every_units(const fl_model *m, const fl_actpatch_opts *o, int T)
{
	fl_actpatch_opts e = *o;
	long n = 2;	/* one pair of cached runs for all five */

	for (int i = 0; i < ACTPATCH_EVERY_COUNT; i++) {
		e.hook = actpatch_every[i];
		n += actpatch_cells(m, &e, T);
	}
	return n;
}

/* A unit of a patch is (position t, head h) of a layer: for the (T, D)
 * hooks row t (h 0); for q, k, v and z head h's columns of row t (k, v:
 * key/value head h's, the columns of its copies for the query heads of its
 * group, adjacent in the row); for the pattern head h's row of destination
 * t. unit_span gives its offset in the cache's array of the hook
 * (cache_of), its offset in the activation a hook sees at that layer, and
 * its length, in floats. */
static const float *
cache_of(const fl_cache *c, fl_actpatch_hook hook)
{
	switch (hook) {
	case ACTPATCH_RESID_MID: return c->resid_mid;
	case ACTPATCH_ATTN_OUT: return c->attn_out;
	case ACTPATCH_MLP_OUT: return c->mlp_out;
	case ACTPATCH_Z: return c->z;
	case ACTPATCH_Q: return c->q;
	case ACTPATCH_K: return c->k;
	case ACTPATCH_V: return c->v;
	case ACTPATCH_PATTERN: return c->pattern;
	default: return c->resid_pre;
	}
}

static size_t
unit_span(const fl_cache *c, const fl_model *m, fl_actpatch_hook hook, int l,
    int t, int h, size_t *data_at, size_t *n)
{
	size_t T = (size_t)c->n_tok, D = (size_t)c->d_model, H = (size_t)c->n_head;
	size_t dh = D / H, group = H / (size_t)actpatch_heads(m, hook);

	if (hook == ACTPATCH_PATTERN) {
		*data_at = ((size_t)h * T + (size_t)t) * T;
		*n = T;
		return (size_t)l * H * T * T + *data_at;
	}
	*data_at = (size_t)t * D;
	*n = D;
	if (actpatch_per_head(hook)) {
		*data_at += (size_t)h * group * dh;
		*n = group * dh;
	}
	return (size_t)l * T * D + *data_at;
}

/* Which positions and heads a patch covers: one (t, h >= 0) or the set of
 * a mask (NULL: all). */
typedef struct {
	int		 l, t, h;
	const bool	*pos, *heads;
} patch_set;

static bool
set_has(int one, const bool *mask, int i)
{
	return one >= 0 ? i == one : mask == NULL || mask[i];
}

/* The statement after it for every unit (t, h) a set covers at a hook (h
 * 0 outside the head grids). */
#define SET_FOREACH(m, c, hook, s, t, h)				\
	for (int t = 0; t < (c)->n_tok; t++)				\
		if (set_has((s)->t, (s)->pos, t))			\
			for (int h = 0; h < (actpatch_per_head(hook) ?	\
			    actpatch_heads(m, hook) : 1); h++)		\
				if (!actpatch_per_head(hook) ||		\
				    set_has((s)->h, (s)->heads, h))

/* The clean values of a set into data, the activation of one sequence at
 * the set's layer ((T, D), (T, H, dh) or the pattern's (H, T, T)). */
static void
set_patch(const fl_model *m, const fl_cache *clean, fl_actpatch_hook hook,
    const patch_set *s, float *data)
{
	const float *src = cache_of(clean, hook);

	SET_FOREACH(m, clean, hook, s, t, h) {
		size_t at, n, from = unit_span(clean, m, hook, s->l, t, h, &at, &n);

		memcpy(data + at, src + from, n * sizeof(float));
	}
}

/* Whether a set holds the same bits in the two runs (its patch is then the
 * corrupted run itself). */
static bool
set_same(const fl_model *m, const fl_cache *clean, const fl_cache *corrupt,
    fl_actpatch_hook hook, const patch_set *s)
{
	const float *a = cache_of(clean, hook), *b = cache_of(corrupt, hook);

	SET_FOREACH(m, clean, hook, s, t, h) {
		size_t at, n, from = unit_span(clean, m, hook, s->l, t, h, &at, &n);

		if (memcmp(a + from, b + from, n * sizeof(float)) != 0)
			return false;
	}
	return true;
}

/* ---- the grid's runs ---- */

typedef struct {
	int	 idx;		/* in the grid */
	patch_set s;
} actpatch_cell;

typedef struct {
	const fl_batch		*b;
	const fl_actpatch	*res;	/* its patched[] written */
	const actpatch_cell	*cells;	/* sorted by layer */
	int			 first;	/* the current pass's first cell */
	/* actpatch_one: its one set and metric */
	const patch_set		*one;
	double			 one_metric;
} actpatch_ctx;

static const actpatch_cell *
ctx_cell(const actpatch_ctx *x, const fl_act *a)
{
	return &x->cells[x->first + x->b->first + a->seq];
}

/* What one installed patching hook reads: the pass's context and the
 * grid hook it patches (actpatch_many installs several on one context). */
typedef struct {
	const actpatch_ctx	*x;
	fl_actpatch_hook	 hook;
} patch_ud;

static int
hook_patch(void *ud, fl_act *a)
{
	const patch_ud *u = ud;
	const actpatch_ctx *x = u->x;
	const patch_set *s = x->one != NULL ? x->one : &ctx_cell(x, a)->s;

	if (a->layer == s->l)
		set_patch(x->res->m, x->res->c_clean, u->hook, s, a->data);
	return FL_HOOK_CONTINUE;
}

static int
hook_metric(void *ud, fl_act *a)
{
	actpatch_ctx *x = ud;
	double v = actpatch_metric(&x->res->o, a->data, a->shape[1]);

	if (x->one != NULL)
		x->one_metric = v;
	else
		x->res->patched[ctx_cell(x, a)->idx] = v;
	return FL_HOOK_CONTINUE;
}

static void
cell_start(void *ud, int i, fl_resume *at)
{
	const actpatch_ctx *x = ud;
	const fl_cache *c = x->res->c_corrupt;
	int l = x->cells[i].s.l;

	at->layer = l;
	at->rows = c->resid_pre + (size_t)l * c->n_tok * c->d_model;
}

/* A cached run of ids and its metric. */
static int
cached_run(fl_actpatch *res, fl_run *r, const int *ids, fl_cache *c,
    double *metric, char **cause)
{
	fl_pass pass = { 0 };
	int T = res->n_tok;

	pass.cache = c;
	if (run_forward(r, ids, &T, 1, &pass, cause) < 0)
		return -1;
	*metric = actpatch_metric(&res->o, c->logits, res->m->cfg.n_vocab);
	return 0;
}

/* What makes a grid of o impossible with these prompts and b, or 0. */
static int
check_grid(const fl_batch *b, const fl_prompt *clean, const fl_prompt *corrupt,
    const fl_actpatch_opts *o, char **cause)
{
	int V = b->m->cfg.n_vocab;

	if (clean->n != corrupt->n)
		return fl_error(cause, "the clean prompt has %d tokens and the corrupted "
		    "one %d: patching pairs their positions, so the two need the same "
		    "count", clean->n, corrupt->n);
	if (o->hook < 0 || o->hook >= ACTPATCH_HOOK_COUNT)
		return fl_error(cause, "unknown patching hook %d", (int)o->hook);
	if (o->metric < 0 || o->metric >= ACTPATCH_METRIC_COUNT)
		return fl_error(cause, "unknown patching metric %d", (int)o->metric);
	if (o->by_pos && !actpatch_per_head(o->hook))
		return fl_error(cause, "by position splits a head grid (z, q, k, v, "
		    "pattern) by position; the %s grid is by position already",
		    actpatch_hook_name(o->hook));
	if (o->answer < 0 || o->answer >= V || o->distractor >= V)
		return fl_error(cause, "the answer (%d) and the distractor (%d) must be "
		    "tokens of the vocabulary (0 to %d)", o->answer, o->distractor,
		    V - 1);
	if (clean->n > b->max_len)
		return fl_error(cause, "the prompts have %d tokens; the batch was sized "
		    "for %d", clean->n, b->max_len);
	return 0;
}

/* The two cached runs into res (res->o's metric; its caches with flags),
 * each counted in b->done. 0, FL_STOPPED or -1. */
static int
make_caches(fl_actpatch *res, fl_batch *b, const fl_prompt *clean,
    const fl_prompt *corrupt, int flags, char **cause)
{
	const fl_model *m = b->m;
	int T = clean->n;

	res->m = m;
	res->n_layer = m->cfg.n_layer;
	res->n_tok = T;
	res->ids = xmalloc((size_t)T * sizeof *res->ids);
	memcpy(res->ids, corrupt->ids, (size_t)T * sizeof *res->ids);
	res->c_clean = cache_new(m, T, flags);
	res->c_corrupt = cache_new(m, T, flags);
	if (cached_run(res, b->run, clean->ids, res->c_clean, &res->clean, cause) != 0)
		return -1;
	if (batch_report(b, ++b->done))
		return FL_STOPPED;
	if (cached_run(res, b->run, corrupt->ids, res->c_corrupt, &res->corrupt,
	    cause) != 0)
		return -1;
	return batch_report(b, ++b->done) ? FL_STOPPED : 0;
}

/* dst reads src's cached runs (both from make_caches): the model, the
 * shapes, the two metrics, a copy of the ids and the caches, borrowed
 * (actpatch_clear of dst leaves them to src). */
static void
share_caches(fl_actpatch *dst, const fl_actpatch *src)
{
	dst->m = src->m;
	dst->n_layer = src->n_layer;
	dst->n_tok = src->n_tok;
	dst->clean = src->clean;
	dst->corrupt = src->corrupt;
	dst->ids = xmalloc((size_t)src->n_tok * sizeof *dst->ids);
	memcpy(dst->ids, src->ids, (size_t)src->n_tok * sizeof *dst->ids);
	dst->c_clean = src->c_clean;
	dst->c_corrupt = src->c_corrupt;
	dst->borrowed = true;
}

/* The grid of res->o->hook from res's caches: every cell whose clean and
 * corrupted values differ, in passes resumed at its layer. */
static int
run_grid(fl_actpatch *res, fl_batch *b, const fl_prompt *corrupt, char **cause)
{
	const fl_model *m = b->m;
	const fl_actpatch_opts *o = &res->o;
	int T = res->n_tok, H = actpatch_heads(m, o->hook);
	int rc, n = 0, skipped = 0;
	actpatch_cell *cells;
	actpatch_ctx x;
	patch_ud pu = { &x, o->hook };
	fl_hook hooks[2];

	res->n_head = H;
	res->n_cells = actpatch_cells(m, o, T);
	res->patched = xmalloc((size_t)res->n_cells * sizeof *res->patched);
	res->norm = xmalloc((size_t)res->n_cells * sizeof *res->norm);
	cells = xmalloc((size_t)res->n_cells * sizeof *cells);
	for (int i = 0; i < res->n_cells; i++) {
		actpatch_cell *c = &cells[n];

		memset(c, 0, sizeof *c);
		c->idx = i;
		c->s.h = -1;
		if (!actpatch_per_head(o->hook)) {
			c->s.l = i / T;
			c->s.t = i % T;
		} else if (o->by_pos) {
			c->s.l = i / (T * H);
			c->s.t = i / H % T;
			c->s.h = i % H;
		} else {
			c->s.l = i / H;
			c->s.t = -1;
			c->s.h = i % H;
		}
		if (set_same(m, res->c_clean, res->c_corrupt, o->hook, &c->s)) {
			res->patched[i] = res->corrupt;
			skipped++;
		} else
			n++;
	}
	res->n_run = n;
	b->done += skipped;
	memset(&x, 0, sizeof x);
	x.b = b;
	x.res = res;
	x.cells = cells;
	hooks[0] = (fl_hook){ actpatch_point(m, o->hook), -1, hook_patch, &pu };
	hooks[1] = (fl_hook){ HOOK_LOGITS, -1, hook_metric, &x };
	rc = batch_run_resumed(b, corrupt, n, cell_start, &x, hooks, 2, &x.first, cause);
	if (rc == 0) {
		double d = res->clean - res->corrupt;

		for (int i = 0; i < res->n_cells; i++)
			res->norm[i] = d != 0 ? (res->patched[i] - res->corrupt) / d : NAN;
	}
	free(cells);
	return rc;
}

int
actpatch_run(fl_actpatch *res, fl_batch *b, const fl_prompt *clean,
    const fl_prompt *corrupt, const fl_actpatch_opts *o, char **cause)
{
	int rc;

	memset(res, 0, sizeof *res);
	if (check_grid(b, clean, corrupt, o, cause) != 0)
		return -1;
	res->o = *o;
	rc = make_caches(res, b, clean, corrupt,
	    o->hook == ACTPATCH_PATTERN ? FL_CACHE_PATTERN : 0, cause);
	if (rc == 0)
		rc = run_grid(res, b, corrupt, cause);
	if (rc != 0)
		actpatch_clear(res);
	return rc < 0 ? -1 : rc;
}

int
actpatch_run_every(fl_actpatch res[ACTPATCH_EVERY_COUNT], fl_batch *b,
    const fl_prompt *clean, const fl_prompt *corrupt, const fl_actpatch_opts *o,
    char **cause)
{
	int rc = 0;

	memset(res, 0, ACTPATCH_EVERY_COUNT * sizeof *res);
	for (int i = 0; i < ACTPATCH_EVERY_COUNT; i++) {
		res[i].o = *o;
		res[i].o.hook = actpatch_every[i];
		if (check_grid(b, clean, corrupt, &res[i].o, cause) != 0)
			return -1;
	}
	/* one pair of cached runs, with the patterns, for the five grids */
	rc = make_caches(&res[0], b, clean, corrupt, FL_CACHE_PATTERN, cause);
	for (int i = 1; i < ACTPATCH_EVERY_COUNT && rc == 0; i++)
		share_caches(&res[i], &res[0]);
	for (int i = 0; i < ACTPATCH_EVERY_COUNT && rc == 0; i++)
		rc = run_grid(&res[i], b, corrupt, cause);
	if (rc != 0)
		for (int i = 0; i < ACTPATCH_EVERY_COUNT; i++)
			actpatch_clear(&res[i]);
	return rc < 0 ? -1 : rc;
}

int
actpatch_one(const fl_actpatch *res, fl_run *r, fl_actpatch_hook hook, int layer,
    const bool *pos, const bool *heads, double *metric, char **cause)
{
	if (hook < 0 || hook >= ACTPATCH_HOOK_COUNT)
		return fl_error(cause, "unknown patching hook %d", (int)hook);
	return actpatch_many(res, r, 1u << hook, layer, pos, heads, metric, cause);
}

int
actpatch_many(const fl_actpatch *res, fl_run *r, unsigned hooks, int layer,
    const bool *pos, const bool *heads, double *metric, char **cause)
{
	patch_set s = { layer, -1, -1, pos, heads };
	actpatch_ctx x;
	fl_hook hk[ACTPATCH_HOOK_COUNT + 1];
	patch_ud pu[ACTPATCH_HOOK_COUNT];
	fl_pass pass = { 0 };
	int T = res->n_tok, n = 0;

	if (layer < 0 || layer >= res->n_layer)
		return fl_error(cause, "layer %d is outside the model (0 to %d)", layer,
		    res->n_layer - 1);
	if (hooks == 0 || hooks >> ACTPATCH_HOOK_COUNT != 0)
		return fl_error(cause, "the hooks to patch are a mask of 1 << hook for "
		    "hooks 0 to %d, not %#x", ACTPATCH_HOOK_COUNT - 1, hooks);
	if ((hooks & 1u << ACTPATCH_PATTERN) && res->c_clean->pattern == NULL)
		return fl_error(cause, "the pattern is patched from the clean run's "
		    "cache, which holds it only in a pattern grid's result");
	memset(&x, 0, sizeof x);
	x.res = res;
	x.one = &s;
	for (int h = 0; h < ACTPATCH_HOOK_COUNT; h++)
		if (hooks & 1u << h) {
			pu[n] = (patch_ud){ &x, (fl_actpatch_hook)h };
			hk[n] = (fl_hook){ actpatch_point(res->m, pu[n].hook), layer,
			    hook_patch, &pu[n] };
			n++;
		}
	hk[n++] = (fl_hook){ HOOK_LOGITS, -1, hook_metric, &x };
	pass.hooks = hk;
	pass.n_hooks = n;
	pass.start_layer = layer;
	pass.resume = layer > 0 ? res->c_corrupt->resid_pre + (size_t)layer * T *
	    res->c_corrupt->d_model : NULL;
	if (run_forward(r, res->ids, &T, 1, &pass, cause) < 0)
		return -1;
	*metric = x.one_metric;
	return 0;
}

void
actpatch_clear(fl_actpatch *res)
{
	free(res->patched);
	free(res->norm);
	free(res->ids);
	if (!res->borrowed) {
		cache_free(res->c_clean);
		cache_free(res->c_corrupt);
	}
	res->patched = res->norm = NULL;
	res->ids = NULL;
	res->c_clean = res->c_corrupt = NULL;
}
