/* actpatch.c - activation patching grids; see actpatch.h. */
#include "autoconfig.h"

#include "actpatch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/lens.h"
#include "base/util.h"

static const char *hook_names[ACTPATCH_HOOK_COUNT] = {
	"resid_pre", "resid_mid", "attn_out", "mlp_out", "z",
};
static const char *metric_names[ACTPATCH_METRIC_COUNT] = { "logit-diff", "prob" };

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
actpatch_point(fl_actpatch_hook h)
{
	switch (h) {
	case ACTPATCH_RESID_MID: return HOOK_RESID_MID;
	case ACTPATCH_ATTN_OUT: return HOOK_ATTN_OUT;
	case ACTPATCH_MLP_OUT: return HOOK_MLP_OUT;
	case ACTPATCH_Z: return HOOK_Z;
	default: return HOOK_RESID_PRE;
	}
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
	int L = m->cfg.n_layer, H = m->cfg.n_head;

	if (o->hook != ACTPATCH_Z)
		return L * T;
	return o->by_pos ? L * T * H : L * H;
}

long
actpatch_units(const fl_model *m, const fl_actpatch_opts *o, int T)
{
	return 2 + (long)actpatch_cells(m, o, T);
}

/* Row t of layer l at a grid's hook in a cache: (D) floats (z: every
 * head's, head h in columns [h dh, (h+1) dh)). */
static const float *
cache_row(const fl_cache *c, fl_actpatch_hook hook, int l, int t)
{
	size_t at = ((size_t)l * c->n_tok + t) * c->d_model;

	switch (hook) {
	case ACTPATCH_RESID_MID: return c->resid_mid + at;
	case ACTPATCH_ATTN_OUT: return c->attn_out + at;
	case ACTPATCH_MLP_OUT: return c->mlp_out + at;
	case ACTPATCH_Z: return c->z + at;
	default: return c->resid_pre + at;
	}
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

/* The span of row t a set covers at a hook: [*a, *a + *n) floats, for
 * head h (z) or the whole row. */
static void
set_span(const fl_cache *c, fl_actpatch_hook hook, int h, size_t *a, size_t *n)
{
	size_t dh = (size_t)c->d_model / c->n_head;

	*a = hook == ACTPATCH_Z ? (size_t)h * dh : 0;
	*n = hook == ACTPATCH_Z ? dh : (size_t)c->d_model;
}

/* The statement after it for every (t, h) a set covers (h 0 outside z). */
#define SET_FOREACH(c, hook, s, t, h)					\
	for (int t = 0; t < (c)->n_tok; t++)				\
		if (set_has((s)->t, (s)->pos, t))			\
			for (int h = 0; h < ((hook) == ACTPATCH_Z ?	\
			    (c)->n_head : 1); h++)			\
				if ((hook) != ACTPATCH_Z ||		\
				    set_has((s)->h, (s)->heads, h))

/* The clean values of a set into data, the activation (T, D) of one
 * sequence at the set's layer. */
static void
set_patch(const fl_cache *clean, fl_actpatch_hook hook, const patch_set *s,
    float *data)
{
	size_t D = (size_t)clean->d_model;

	SET_FOREACH(clean, hook, s, t, h) {
		size_t a, n;

		set_span(clean, hook, h, &a, &n);
		memcpy(data + (size_t)t * D + a, cache_row(clean, hook, s->l, t) + a,
		    n * sizeof(float));
	}
}

/* Whether a set holds the same bits in the two runs (its patch is then the
 * corrupted run itself). */
static bool
set_same(const fl_cache *clean, const fl_cache *corrupt, fl_actpatch_hook hook,
    const patch_set *s)
{
	SET_FOREACH(clean, hook, s, t, h) {
		size_t a, n;

		set_span(clean, hook, h, &a, &n);
		if (memcmp(cache_row(clean, hook, s->l, t) + a,
		    cache_row(corrupt, hook, s->l, t) + a, n * sizeof(float)) != 0)
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
	fl_actpatch		*res;
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

static int
hook_patch(void *ud, fl_act *a)
{
	actpatch_ctx *x = ud;
	const patch_set *s = x->one != NULL ? x->one : &ctx_cell(x, a)->s;

	if (a->layer == s->l)
		set_patch(x->res->c_clean, x->res->o.hook, s, a->data);
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

int
actpatch_run(fl_actpatch *res, fl_batch *b, const fl_prompt *clean,
    const fl_prompt *corrupt, const fl_actpatch_opts *o, char **cause)
{
	const fl_model *m = b->m;
	int L = m->cfg.n_layer, H = m->cfg.n_head, V = m->cfg.n_vocab, T = clean->n;
	int rc = -1, n = 0, skipped = 0;
	actpatch_cell *cells = NULL;
	actpatch_ctx x;
	fl_hook hooks[2];

	memset(res, 0, sizeof *res);
	if (clean->n != corrupt->n)
		return fl_error(cause, "the clean prompt has %d tokens and the corrupted "
		    "one %d: patching pairs their positions, so the two need the same "
		    "count", clean->n, corrupt->n);
	if (o->hook < 0 || o->hook >= ACTPATCH_HOOK_COUNT)
		return fl_error(cause, "unknown patching hook %d", (int)o->hook);
	if (o->metric < 0 || o->metric >= ACTPATCH_METRIC_COUNT)
		return fl_error(cause, "unknown patching metric %d", (int)o->metric);
	if (o->by_pos && o->hook != ACTPATCH_Z)
		return fl_error(cause, "by position splits z's heads by position; the "
		    "%s grid is by position already", actpatch_hook_name(o->hook));
	if (o->answer < 0 || o->answer >= V || o->distractor >= V)
		return fl_error(cause, "the answer (%d) and the distractor (%d) must be "
		    "tokens of the vocabulary (0 to %d)", o->answer, o->distractor,
		    V - 1);
	if (T > b->max_len)
		return fl_error(cause, "the prompts have %d tokens; the batch was sized "
		    "for %d", T, b->max_len);
	res->o = *o;
	res->m = m;
	res->n_layer = L;
	res->n_tok = T;
	res->n_head = H;
	res->n_cells = actpatch_cells(m, o, T);
	res->ids = xmalloc((size_t)T * sizeof *res->ids);
	memcpy(res->ids, corrupt->ids, (size_t)T * sizeof *res->ids);
	res->c_clean = cache_new(m, T, 0);
	res->c_corrupt = cache_new(m, T, 0);
	if (cached_run(res, b->run, clean->ids, res->c_clean, &res->clean, cause) != 0)
		goto out;
	if ((rc = batch_report(b, ++b->done) ? FL_STOPPED : 0) != 0)
		goto out;
	rc = -1;
	if (cached_run(res, b->run, corrupt->ids, res->c_corrupt, &res->corrupt,
	    cause) != 0)
		goto out;
	if ((rc = batch_report(b, ++b->done) ? FL_STOPPED : 0) != 0)
		goto out;

	res->patched = xmalloc((size_t)res->n_cells * sizeof *res->patched);
	res->norm = xmalloc((size_t)res->n_cells * sizeof *res->norm);
	cells = xmalloc((size_t)res->n_cells * sizeof *cells);
	for (int i = 0; i < res->n_cells; i++) {
		actpatch_cell *c = &cells[n];

		memset(c, 0, sizeof *c);
		c->idx = i;
		c->s.h = -1;
		if (o->hook != ACTPATCH_Z) {
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
		if (set_same(res->c_clean, res->c_corrupt, o->hook, &c->s)) {
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
	hooks[0] = (fl_hook){ actpatch_point(o->hook), -1, hook_patch, &x };
	hooks[1] = (fl_hook){ HOOK_LOGITS, -1, hook_metric, &x };
	rc = batch_run_resumed(b, corrupt, n, cell_start, &x, hooks, 2, &x.first, cause);
	if (rc == 0) {
		double d = res->clean - res->corrupt;

		for (int i = 0; i < res->n_cells; i++)
			res->norm[i] = d != 0 ? (res->patched[i] - res->corrupt) / d : NAN;
	}
out:
	free(cells);
	if (rc != 0)
		actpatch_clear(res);
	return rc < 0 ? -1 : rc;
}

int
actpatch_one(const fl_actpatch *res, fl_run *r, fl_actpatch_hook hook, int layer,
    const bool *pos, const bool *heads, double *metric, char **cause)
{
	fl_actpatch view = *res;
	patch_set s = { layer, -1, -1, pos, heads };
	actpatch_ctx x;
	fl_hook hooks[2];
	fl_pass pass = { 0 };
	int T = res->n_tok;

	if (layer < 0 || layer >= res->n_layer)
		return fl_error(cause, "layer %d is outside the model (0 to %d)", layer,
		    res->n_layer - 1);
	view.o.hook = hook;
	memset(&x, 0, sizeof x);
	x.res = &view;
	x.one = &s;
	hooks[0] = (fl_hook){ actpatch_point(hook), layer, hook_patch, &x };
	hooks[1] = (fl_hook){ HOOK_LOGITS, -1, hook_metric, &x };
	pass.hooks = hooks;
	pass.n_hooks = 2;
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
	cache_free(res->c_clean);
	cache_free(res->c_corrupt);
	res->patched = res->norm = NULL;
	res->ids = NULL;
	res->c_clean = res->c_corrupt = NULL;
}
