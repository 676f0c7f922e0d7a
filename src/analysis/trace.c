/* trace.c - causal tracing and attention knockout; see trace.h. */
#include "autoconfig.h"

#include "trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/lens.h"
#include "base/util.h"

static const char *kind_names[TRACE_KIND_COUNT] = { "resid", "mlp", "attn" };
static const char *pos_names[TRACE_POS_COUNT] = {
	"before subject", "first subject token", "middle subject tokens",
	"last subject token", "first subsequent token", "further tokens",
	"last token",
};
static const char *block_names[KNOCK_BLOCK_COUNT] = { "subject", "relation", "other" };

const char *
trace_kind_name(fl_trace_kind k)
{
	return k >= 0 && k < TRACE_KIND_COUNT ? kind_names[k] : "?";
}

int
trace_kind_parse(const char *s)
{
	for (int i = 0; i < TRACE_KIND_COUNT; i++)
		if (strcmp(s, kind_names[i]) == 0)
			return i;
	return -1;
}

const char *
trace_pos_name(fl_trace_pos g)
{
	return g >= 0 && g < TRACE_POS_COUNT ? pos_names[g] : "?";
}

const char *
knock_block_name(fl_knock_block k)
{
	return k >= 0 && k < KNOCK_BLOCK_COUNT ? block_names[k] : "?";
}

int
knock_block_parse(const char *s)
{
	for (int i = 0; i < KNOCK_BLOCK_COUNT; i++)
		if (strcmp(s, block_names[i]) == 0)
			return i;
	return -1;
}

void
trace_window(fl_trace_kind k, int window, int n_layer, int l, int *lo, int *hi)
{
	if (k == TRACE_RESID) {
		*lo = l;
		*hi = l + 1;
		return;
	}
	/* ROME: range(max(0, layer - window // 2), min(L, layer - (-window // 2))) */
	*lo = l - window / 2 < 0 ? 0 : l - window / 2;
	*hi = l + (window + 1) / 2 > n_layer ? n_layer : l + (window + 1) / 2;
}

double
trace_embed_std(const fl_model *m)
{
	const fl_table *t = &m->wte;
	float *row = xmalloc((size_t)t->cols * sizeof *row);
	double sum = 0, sq = 0, n = (double)t->rows * t->cols, mean;

	for (int r = 0; r < t->rows; r++) {
		double s = 0, s2 = 0;

		table_row(t, r, row);
		for (int c = 0; c < t->cols; c++) {
			s += row[c];
			s2 += (double)row[c] * row[c];
		}
		sum += s;
		sq += s2;
	}
	free(row);
	mean = sum / n;
	return sqrt(fmax(0.0, sq / n - mean * mean) * n / (n > 1 ? n - 1 : 1));
}

/* ---- noise: xoshiro256** seeded by splitmix64, Gaussian by Box-Muller ---- */

typedef struct {
	uint64_t	 s[4];
} trace_rng;

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
rng_seed(trace_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t
rng_next(trace_rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* Uniform in (0, 1]: never 0, so the logarithm is finite. */
static double
rng_unit(trace_rng *r)
{
	return ((double)(rng_next(r) >> 11) + 1.0) * 0x1.0p-53;
}

static void
rng_gauss(trace_rng *r, float *out, size_t n, double scale)
{
	for (size_t i = 0; i < n; i += 2) {
		double u = rng_unit(r), v = rng_unit(r), rad = sqrt(-2.0 * log(u));

		out[i] = (float)(scale * rad * cos(6.283185307179586 * v));
		if (i + 1 < n)
			out[i + 1] = (float)(scale * rad * sin(6.283185307179586 * v));
	}
}

/* ---- the restored runs ---- */

/* One restored run: noise sample s, layer l, position t; its resumed pass
 * starts at layer lo, and it restores layers [lo, hi). */
typedef struct {
	int	 s, l, t, lo, hi;
} trace_cell;

typedef struct {
	const fl_batch		*b;
	const fl_prompt		*p;
	const fl_cache		*clean;
	const float		*noise;		/* (S, subj_len, D) */
	const trace_cell	*cells;		/* sorted by lo */
	int			 first;		/* the current pass's first cell */
	const float		*corrupt;	/* (S, L + 1, T, D) resid_pre */
	const float		*ck, *cv;	/* (S, L, T, D) its keys, values */
	fl_hook_point		 point;
	int			 D;
	double			*restore;	/* (L, T) sums */
	double			 p_last;	/* corrupted run: P */
} trace_ctx;

static const trace_cell *
ctx_cell(const trace_ctx *x, const fl_act *a)
{
	return &x->cells[x->first + x->b->first + a->seq];
}

/* HOOK_EMBED: the cell's noise at the subject's rows. */
static int
hook_noise(void *ud, fl_act *a)
{
	trace_ctx *x = ud;
	int s = x->cells != NULL ? ctx_cell(x, a)->s : 0;
	size_t D = (size_t)x->D, n = (size_t)x->p->subj_len * D;
	float *dst = a->data + (size_t)x->p->subj_pos * D;
	const float *src = x->noise + (size_t)s * n;

	for (size_t i = 0; i < n; i++)
		dst[i] += src[i];
	return FL_HOOK_CONTINUE;
}

/* The restoring point: row t back to its clean value in the cell's
 * layers. */
static int
hook_restore(void *ud, fl_act *a)
{
	trace_ctx *x = ud;
	const trace_cell *c = ctx_cell(x, a);
	const fl_cache *k = x->clean;
	size_t D = (size_t)x->D, T = (size_t)k->n_tok;
	size_t skip = T - (size_t)a->shape[0];	/* rows a suffix pass did not run */
	const float *src;

	if (a->layer < c->lo || a->layer >= c->hi)
		return FL_HOOK_CONTINUE;
	src = x->point == HOOK_RESID_PRE ? k->resid_pre : x->point == HOOK_MLP_OUT ?
	    k->mlp_out : k->attn_out;
	memcpy(a->data + (c->t - skip) * D, src + ((size_t)a->layer * T + c->t) * D,
	    D * sizeof(float));
	return FL_HOOK_CONTINUE;
}

static int
hook_prob(void *ud, fl_act *a)
{
	trace_ctx *x = ud;
	const trace_cell *c = ctx_cell(x, a);
	double p = lens_prob_of(a->data, a->shape[1], x->p->answer);

	x->restore[(size_t)c->l * x->clean->n_tok + c->t] += p;
	return FL_HOOK_CONTINUE;
}

long
trace_units(const fl_model *m, const fl_trace_opts *o, int n_tok)
{
	long S = o->noise != NULL ? 1 : o->samples;

	return 1 + S + S * m->cfg.n_layer * (long)n_tok;
}

/* Pass i of the current cells: it resumes at its lo from its sample's
 * corrupted run, positions t on alone. Nothing before t differs from that
 * run (attention is causal), so their keys and values are its. */
static void
cell_start(void *ud, int i, fl_resume *at)
{
	const trace_ctx *x = ud;
	const trace_cell *c = &x->cells[i];
	size_t TD = (size_t)x->p->n * x->D, L = (size_t)x->clean->n_layer;

	at->layer = c->lo;
	at->rows = x->corrupt + ((size_t)c->s * (L + 1) + c->lo) * TD;
	at->suffix = true;
	at->prefix.rows = c->t;
	at->prefix.ld = x->p->n;
	at->prefix.k = x->ck + (size_t)c->s * L * TD;
	at->prefix.v = x->cv + (size_t)c->s * L * TD;
}

/* Runs the cells (sorted by lo), packed by their start layer: from the
 * corrupted runs' rows, so no noise is added again. */
static int
trace_cells(trace_ctx *x, fl_batch *b, const trace_cell *cells, int n, char **cause)
{
	fl_hook hooks[2] = {
		{ x->point, -1, hook_restore, x },
		{ HOOK_LOGITS, -1, hook_prob, x },
	};

	x->cells = cells;
	return batch_run_resumed(b, x->p, n, cell_start, x, hooks, 2, &x->first,
	    cause);
}

/* The baseline: each cell a whole pass of the prompt from the embeddings,
 * the noise added again, one at a time. */
static int
trace_whole(trace_ctx *x, fl_batch *b, const trace_cell *cells, int n, char **cause)
{
	fl_hook hooks[3] = {
		{ HOOK_EMBED, -1, hook_noise, x },
		{ x->point, -1, hook_restore, x },
		{ HOOK_LOGITS, -1, hook_prob, x },
	};
	fl_pass pass = { 0 };
	int T = x->p->n;

	pass.hooks = hooks;
	pass.n_hooks = 3;
	x->cells = cells;
	b->first = 0;
	for (int i = 0; i < n; i++) {
		x->first = i;
		if (run_forward(b->run, x->p->ids, &T, 1, &pass, cause) < 0)
			return -1;
		b->passes++;
		b->rows += T;
		if (batch_report(b, ++b->done))
			return FL_STOPPED;
	}
	return 0;
}

static int
cmp_cell(const void *a, const void *b)
{
	const trace_cell *x = a, *y = b;

	return x->lo != y->lo ? x->lo - y->lo : x->s != y->s ? x->s - y->s :
	    x->l != y->l ? x->l - y->l : x->t - y->t;
}

/* What trace_run and trace_cell_lens refuse: 0, or -1 with *cause. */
static int
trace_check(const fl_prompt *p, const fl_trace_opts *o, char **cause)
{
	if (p->answer < 0)
		return fl_error(cause, "causal tracing needs an answer");
	if (p->subj_pos < 0 || p->subj_len < 1)
		return fl_error(cause, "causal tracing needs a subject in the prompt "
		    "(the tokens the noise corrupts)");
	if (o->kind < 0 || o->kind >= TRACE_KIND_COUNT)
		return fl_error(cause, "unknown trace kind %d", (int)o->kind);
	if (o->kind != TRACE_RESID && o->window < 1)
		return fl_error(cause, "the window must be at least one layer, not %d",
		    o->window);
	if (o->noise == NULL && o->samples < 1)
		return fl_error(cause, "at least one noise sample is needed, not %d",
		    o->samples);
	return 0;
}

/* The noise of every sample, (S, subj_len, D): o->noise as given, else
 * drawn from o->seed with the std written to *scale (0 with given noise).
 * Heap array. */
static float *
trace_noise(const fl_model *m, const fl_prompt *p, const fl_trace_opts *o,
    double *scale)
{
	size_t nz = (size_t)p->subj_len * m->cfg.d_model;
	int S = o->noise != NULL ? 1 : o->samples;
	float *noise = xmalloc((size_t)S * nz * sizeof *noise);

	*scale = 0;
	if (o->noise != NULL)
		memcpy(noise, o->noise, nz * sizeof *noise);
	else {
		trace_rng rng;

		*scale = o->scale > 0 ? o->scale : TRACE_SCALE_STDS * trace_embed_std(m);
		rng_seed(&rng, o->seed);
		rng_gauss(&rng, noise, (size_t)S * nz, *scale);
	}
	return noise;
}

int
trace_run(fl_trace *res, fl_batch *b, const fl_prompt *p, const fl_trace_opts *o,
    char **cause)
{
	const fl_model *m = b->m;
	int L = m->cfg.n_layer, T = p->n, D = m->cfg.d_model, rc = -1, S, n_cells = 0;
	size_t TD = (size_t)T * D, nz;
	fl_cache *c = NULL;
	float *noise = NULL, *corrupt = NULL, *ck = NULL, *cv = NULL;
	double *p_corrupt = NULL;	/* (S) */
	trace_cell *cells = NULL;
	trace_ctx x;
	fl_hook hook = { HOOK_EMBED, -1, hook_noise, &x };
	fl_pass pass = { 0 };
	fl_cache *clean = NULL;

	memset(res, 0, sizeof *res);
	if (trace_check(p, o, cause) != 0)
		return -1;
	if (T > b->max_len)
		return fl_error(cause, "the prompt has %d tokens; the batch was sized "
		    "for %d", T, b->max_len);
	S = o->noise != NULL ? 1 : o->samples;
	res->kind = o->kind;
	res->n_layer = L;
	res->n_tok = T;
	res->window = o->kind == TRACE_RESID ? 1 : o->window;
	res->samples = S;
	res->subj_pos = p->subj_pos;
	res->subj_len = p->subj_len;

	nz = (size_t)p->subj_len * D;
	noise = trace_noise(m, p, o, &res->scale);
	memset(&x, 0, sizeof x);
	x.b = b;
	x.p = p;
	x.noise = noise;
	x.D = D;
	x.point = o->kind == TRACE_RESID ? HOOK_RESID_PRE : o->kind == TRACE_MLP ?
	    HOOK_MLP_OUT : HOOK_ATTN_OUT;

	/* the clean run, then each sample's corrupted run, cached */
	clean = cache_new(m, T, 0);
	pass.cache = clean;
	if (run_forward(b->run, p->ids, &T, 1, &pass, cause) < 0)
		goto out;
	res->p_clean = lens_prob_of(clean->logits, m->cfg.n_vocab, p->answer);
	x.clean = clean;
	if (batch_report(b, ++b->done)) {
		rc = FL_STOPPED;
		goto out;
	}
	c = cache_new(m, T, 0);
	corrupt = xmalloc((size_t)S * (L + 1) * TD * sizeof *corrupt);
	ck = xmalloc((size_t)S * L * TD * sizeof *ck);
	cv = xmalloc((size_t)S * L * TD * sizeof *cv);
	p_corrupt = xcalloc((size_t)S, sizeof *p_corrupt);
	for (int s = 0; s < S; s++) {
		x.noise = noise + (size_t)s * nz;
		pass.cache = c;
		pass.hooks = &hook;
		pass.n_hooks = 1;
		if (run_forward(b->run, p->ids, &T, 1, &pass, cause) < 0)
			goto out;
		memcpy(corrupt + (size_t)s * (L + 1) * TD, c->resid_pre,
		    (size_t)(L + 1) * TD * sizeof *corrupt);
		memcpy(ck + (size_t)s * L * TD, c->k, (size_t)L * TD * sizeof *ck);
		memcpy(cv + (size_t)s * L * TD, c->v, (size_t)L * TD * sizeof *cv);
		p_corrupt[s] = lens_prob_of(c->logits, m->cfg.n_vocab, p->answer);
		res->p_corrupt += p_corrupt[s] / S;
		if (batch_report(b, ++b->done)) {
			rc = FL_STOPPED;
			goto out;
		}
	}
	x.noise = noise;

	/* A position before the subject holds the same values in the clean
	 * and the corrupted run (attention is causal): restoring it is the
	 * corrupted run, and needs no pass. */
	res->restore = xcalloc((size_t)L * T, sizeof *res->restore);
	cells = xmalloc((size_t)S * L * T * sizeof *cells);
	for (int s = 0; s < S; s++)
		for (int l = 0; l < L; l++)
			for (int t = 0; t < T; t++) {
				trace_cell *e;

				if (t < p->subj_pos) {
					res->restore[(size_t)l * T + t] += p_corrupt[s];
					continue;
				}
				e = &cells[n_cells++];

				e->s = s;
				e->l = l;
				e->t = t;
				trace_window(o->kind, o->window, L, l, &e->lo, &e->hi);
			}
	qsort(cells, (size_t)n_cells, sizeof *cells, cmp_cell);
	x.restore = res->restore;
	b->done += (long)S * L * T - n_cells;
	x.corrupt = corrupt;
	x.ck = ck;
	x.cv = cv;
	rc = o->whole ? trace_whole(&x, b, cells, n_cells, cause) :
	    trace_cells(&x, b, cells, n_cells, cause);
	if (rc == 0)
		for (int i = 0; i < L * T; i++)
			res->restore[i] /= S;
out:
	if (rc != 0)
		trace_clear(res);
	free(cells);
	free(corrupt);
	free(ck);
	free(cv);
	free(p_corrupt);
	free(noise);
	cache_free(c);
	cache_free(clean);
	return rc < 0 ? -1 : rc;
}

void
trace_clear(fl_trace *res)
{
	free(res->restore);
	res->restore = NULL;
}


int
trace_cell_lens(float *probs, fl_run *r, const fl_model *m, const fl_prompt *p,
    const fl_trace_opts *o, int l, int t, const fl_progress *progress,
    char **cause)
{
	int L = m->cfg.n_layer, T = p->n, V = m->cfg.n_vocab, S, rc = -1;
	double scale;
	float *noise = NULL, *logits = NULL;
	fl_cache *clean = NULL, *c = NULL;
	fl_batch fb;
	trace_cell cell;
	trace_ctx x;
	fl_hook hooks[2];
	fl_pass pass = { 0 };

	if (trace_check(p, o, cause) != 0)
		return -1;
	if (l < 0 || l >= L || t < 0 || t >= T)
		return fl_error(cause, "cell (layer %d, position %d) is outside the "
		    "map of %d layers and %d positions", l, t, L, T);
	S = o->noise != NULL ? 1 : o->samples;
	noise = trace_noise(m, p, o, &scale);
	memset(&fb, 0, sizeof fb);
	memset(&x, 0, sizeof x);
	x.b = &fb;		/* one sequence: the cell is cells[0] */
	x.p = p;
	x.noise = noise;
	x.D = m->cfg.d_model;
	x.point = o->kind == TRACE_RESID ? HOOK_RESID_PRE : o->kind == TRACE_MLP ?
	    HOOK_MLP_OUT : HOOK_ATTN_OUT;
	x.cells = &cell;
	cell.l = l;
	cell.t = t;
	trace_window(o->kind, o->window, L, l, &cell.lo, &cell.hi);
	clean = cache_new(m, T, 0);
	pass.cache = clean;
	if (run_forward(r, p->ids, &T, 1, &pass, cause) < 0)
		goto out;
	x.clean = clean;
	c = cache_new(m, T, 0);
	logits = xmalloc((size_t)(L + 1) * V * sizeof *logits);
	memset(probs, 0, (size_t)(L + 1) * V * sizeof *probs);
	hooks[0] = (fl_hook){ HOOK_EMBED, -1, hook_noise, &x };
	hooks[1] = (fl_hook){ x.point, -1, hook_restore, &x };
	pass.cache = c;
	pass.hooks = hooks;
	pass.n_hooks = 2;
	pass.no_logits = true;
	for (int s = 0; s < S; s++) {
		if (fl_progress_report(progress, "the restored run", s, S)) {
			rc = FL_STOPPED;
			goto out;
		}
		cell.s = s;
		if (run_forward(r, p->ids, &T, 1, &pass, cause) < 0)
			goto out;
		lens_streams(m, c, T - 1, logits);
		for (int k = 0; k <= L; k++) {
			const float *lg = logits + (size_t)k * V;
			float *pr = probs + (size_t)k * V, mx = lg[0];
			double sum;

			for (int v = 1; v < V; v++)
				mx = lg[v] > mx ? lg[v] : mx;
			sum = lens_softmax_sum(lg, V, mx);
			for (int v = 0; v < V; v++)
				pr[v] += (float)(exp((double)lg[v] - mx) / sum / S);
		}
	}
	rc = 0;
out:
	free(logits);
	free(noise);
	cache_free(c);
	cache_free(clean);
	return rc;
}

/* ---- averages over prompts ---- */

static void
avg_add(double *sum, int *cnt, int g, const double *row, int a, int z,
    double corrupt)
{
	double s = 0;

	if (z <= a)
		return;
	for (int t = a; t < z; t++)
		s += row[t] - corrupt;
	sum[g] += s / (z - a);
	cnt[g]++;
}

void
trace_avg_init(fl_trace_avg *res, const fl_model *m, const fl_trace_opts *o)
{
	int L = m->cfg.n_layer, G = TRACE_POS_COUNT;

	memset(res, 0, sizeof *res);
	res->kind = o->kind;
	res->n_layer = L;
	res->window = o->kind == TRACE_RESID ? 1 : o->window;
	res->samples = o->noise != NULL ? 1 : o->samples;
	res->aie = xcalloc((size_t)L * G, sizeof *res->aie);
	res->cells = xcalloc((size_t)L * G, sizeof *res->cells);
}

int
trace_task_prompt(fl_trace *one, fl_batch *b, const fl_prompt *p, int i,
    const fl_trace_opts *o, char **cause)
{
	fl_trace_opts oi = *o;
	int rc;

	oi.seed = o->seed + (uint64_t)i;
	if ((rc = trace_run(one, b, p, &oi, cause)) < 0) {
		char *why = *cause;

		*cause = xasprintf("prompt %d (\"%s\"): %s", i, p->text ? p->text : "",
		    why);
		free(why);
	}
	return rc;
}

void
trace_avg_add(fl_trace_avg *res, const fl_trace *one)
{
	int L = res->n_layer, G = TRACE_POS_COUNT, T = one->n_tok;
	int a = one->subj_pos, z = a + one->subj_len;

	res->p_clean += one->p_clean;
	res->p_corrupt += one->p_corrupt;
	for (int l = 0; l < L; l++) {
		const double *row = one->restore + (size_t)l * T;
		double *sum = res->aie + (size_t)l * G;
		int *c = res->cells + (size_t)l * G;
		double pc = one->p_corrupt;

		avg_add(sum, c, TRACE_POS_BEFORE, row, 0, a, pc);
		avg_add(sum, c, TRACE_POS_SUBJ_FIRST, row, a, a + 1, pc);
		avg_add(sum, c, TRACE_POS_SUBJ_MIDDLE, row, a + 1, z - 1, pc);
		avg_add(sum, c, TRACE_POS_SUBJ_LAST, row, z - 1, z, pc);
		if (z < T - 1) {
			avg_add(sum, c, TRACE_POS_AFTER_FIRST, row, z, z + 1, pc);
			avg_add(sum, c, TRACE_POS_FURTHER, row, z + 1, T - 1, pc);
		}
		avg_add(sum, c, TRACE_POS_LAST, row, T - 1, T, pc);
	}
	res->n_prompts++;
}

void
trace_avg_finish(fl_trace_avg *res)
{
	int L = res->n_layer, G = TRACE_POS_COUNT, n = res->n_prompts;

	for (int g = 0; g < G; g++)
		res->count[g] = res->cells[g];
	for (int i = 0; i < L * G; i++)
		res->aie[i] = res->cells[i] > 0 ? res->aie[i] / res->cells[i] : NAN;
	if (n > 0) {
		res->p_clean /= n;
		res->p_corrupt /= n;
	}
	free(res->cells);
	res->cells = NULL;
}

int
trace_average(fl_trace_avg *res, fl_batch *b, const fl_prompt *p, int n,
    const fl_trace_opts *o, char **cause)
{
	int rc = 0;

	trace_avg_init(res, b->m, o);
	for (int i = 0; i < n && rc == 0; i++) {
		fl_trace one;

		if ((rc = trace_task_prompt(&one, b, &p[i], i, o, cause)) != 0)
			break;
		trace_avg_add(res, &one);
		trace_clear(&one);
	}
	if (rc != 0) {
		trace_avg_clear(res);
		return rc;
	}
	trace_avg_finish(res);
	return 0;
}

void
trace_avg_clear(fl_trace_avg *res)
{
	free(res->aie);
	free(res->cells);
	res->aie = NULL;
	res->cells = NULL;
}

/* ---- knockout ---- */

int
knock_keys(const fl_prompt *p, fl_knock_block which, bool *keys)
{
	int T = p->n, a = p->subj_pos, z = p->subj_pos + p->subj_len, any = 0;

	for (int t = 0; t < T; t++) {
		bool subj = a >= 0 && t >= a && t < z;

		keys[t] = which == KNOCK_SUBJECT ? subj : which == KNOCK_RELATION ?
		    !subj && t < T - 1 : t == T - 1;
		any |= keys[t];
	}
	return any ? 0 : -1;
}

int
hook_knock_mask(void *ud, fl_act *a)
{
	const fl_knock_mask *k = ud;
	int H = a->shape[0], Q = a->shape[1], K = a->shape[2];

	if (a->layer < k->lo || a->layer >= k->hi)
		return FL_HOOK_CONTINUE;
	for (int h = 0; h < H; h++) {
		float *row = a->data + ((size_t)h * Q + Q - 1) * K;

		for (int j = 0; j < K; j++)
			if (k->keys[j])
				row[j] = -INFINITY;
	}
	return FL_HOOK_CONTINUE;
}

int
knock_run(double *out, double *p_clean, fl_run *r, const fl_model *m,
    const fl_prompt *p, const bool *keys, int window, char **cause)
{
	int L = m->cfg.n_layer, T = p->n, V = m->cfg.n_vocab, rc = -1;
	fl_cache *c;
	fl_knock_mask km = { keys, 0, 0 };
	fl_hook hook = { HOOK_ATTN_SCORES, -1, hook_knock_mask, &km };
	fl_pass pass = { 0 };

	if (p->answer < 0)
		return fl_error(cause, "knockout needs an answer");
	if (window < 1)
		return fl_error(cause, "the window must be at least one layer, not %d",
		    window);
	c = cache_new(m, T, 0);
	pass.cache = c;
	if (run_forward(r, p->ids, &T, 1, &pass, cause) < 0)
		goto out;
	*p_clean = lens_prob_of(c->logits, V, p->answer);
	/* Each run rewrites the cache's last row from its start layer on, so
	 * the start layers go from the last down: a run at l reads the last
	 * row's resid_pre of l, which the runs of later start layers left
	 * alone, and the other rows (the keys) are never written. */
	pass.hooks = &hook;
	pass.n_hooks = 1;
	pass.last_row_only = true;
	for (int l = L - 1; l >= 0; l--) {
		km.lo = l;
		km.hi = l + window > L ? L : l + window;
		pass.start_layer = l;
		if (run_forward(r, p->ids, &T, 1, &pass, cause) < 0)
			goto out;
		out[l] = lens_prob_of(c->logits, V, p->answer);
	}
	rc = 0;
out:
	cache_free(c);
	return rc;
}
