/* session.c - see session.h. */
#include "autoconfig.h"

#include "session.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "analysis/batch.h"
#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "analysis/movers.h"
#include "engine/kernels.h"
#include "engine/pool.h"
#include "engine/readout.h"
#include "base/paths.h"
#include "base/util.h"

static const struct {
	const char	*name, *title;
	bool		 is_signed;
} metrics[METRIC_COUNT] = {
	[METRIC_ATTN_SUBJECT] = { "attn", "attention to subject", false },
	[METRIC_DIRECT] = { "direct", "direct effect on answer", true },
	[METRIC_MOVER] = { "mover", "mover score", false },
	[METRIC_PATCH] = { "patch", "path-patching effect", true },
};

const char *metric_name(ui_metric m) { return metrics[m].name; }
const char *metric_title(ui_metric m) { return metrics[m].title; }
bool metric_signed(ui_metric m) { return metrics[m].is_signed; }

int
metric_parse(const char *s)
{
	for (int i = 0; i < METRIC_COUNT; i++)
		if (strcmp(s, metrics[i].name) == 0)
			return i;
	return -1;
}

ui_session *
session_new(void)
{
	ui_session *s = xcalloc(1, sizeof *s);

	s->topk = 10;
	s->subject_pos = -1;
	s->answer_id = -1;
	s->view_layer = -1;
	s->answer_space = true;
	s->task_pair = -1;
	s->intercept_pair = -1;
	s->recon_layer = -1;
	s->decomp_error_layer = -1;
	s->kept.answer_space = true;
	return s;
}

static void choices_clear(ui_choices *k);

/* Drops the results of the last run (the choices stay). */
static void
results_clear(ui_session *s)
{
	free(s->ids);
	free(s->tok_end);
	cache_free(s->cache);
	free(s->streams);
	free(s->base_logits);
	free(s->grid);
	free(s->attn_subj);
	free(s->direct);
	free(s->direct_subj);
	free(s->mover);
	free(s->is_mover);
	s->ids = s->tok_end = NULL;
	s->cache = NULL;
	s->stream_logits = s->view_logits = s->base_logits = NULL;
	s->streams = NULL;
	s->grid = s->attn_subj = s->direct = s->direct_subj = s->mover = NULL;
	s->is_mover = NULL;
	s->n_tok = 0;
	s->view_layer = -1;
}

/* Drops everything fitted on the task (the task stays). */
static void
task_fits_clear(ui_session *s)
{
	for (int l = 0; s->decomp_valid != NULL && l < session_layers(s); l++)
		if (s->decomp_valid[l]) {
			decomp_clear(&s->decomp[l]);
			s->decomp_valid[l] = false;
		}
	s->recon_layer = -1;
	free(s->decomp_error);
	s->decomp_error = NULL;
	free(s->intercept_vec);
	s->intercept_vec = NULL;
	s->intercept_pair = -1;
	s->intercept = false;
	if (s->patch_valid)
		patch_clear(&s->patch);
	s->patch_valid = false;
	free(s->patch_error);
	s->patch_error = NULL;
}

static void
model_clear(ui_session *s)
{
	task_fits_clear(s);	/* while the model still gives L */
	results_clear(s);
	run_free(s->run);
	s->run = NULL;
	s->run_rows = 0;
	free(s->near_logits);
	free(s->near_head);
	s->near_logits = NULL;
	s->near_head = NULL;
	cache_free(s->spare_cache);
	s->spare_cache = NULL;
	free(s->lens_logits);
	s->lens_logits = NULL;
	model_free(s->model);
	s->model = NULL;
	free(s->unembed_mean);
	s->unembed_mean = NULL;
	free(s->decomp);
	free(s->decomp_valid);
	s->decomp = NULL;
	s->decomp_valid = NULL;
}

void
session_free(ui_session *s)
{
	if (s == NULL)
		return;
	model_clear(s);
	task_free(s->task);
	free(s->model_dir);
	free(s->model_name);
	free(s->prompt);
	free(s->answer_text);
	free(s->subject_text);
	choices_clear(&s->kept);
	free(s);
}

static void
set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src != NULL ? xstrdup(src) : NULL;
}

int
session_set_model(ui_session *s, const char *dir)
{
	set_str(&s->model_dir, dir);
	return SESSION_LOAD | SESSION_RUN;
}

int
session_set_prompt(ui_session *s, const char *prompt)
{
	set_str(&s->prompt, prompt);
	return SESSION_RUN;
}

int
session_set_answer(ui_session *s, const char *text)
{
	return session_set_answer_space(s, text, true);
}

int
session_set_answer_space(ui_session *s, const char *text, bool space)
{
	set_str(&s->answer_text, text);
	s->answer_space = space;
	return SESSION_ANSWER;
}

int
session_set_subject(ui_session *s, const char *text)
{
	set_str(&s->subject_text, text);
	return SESSION_SUBJECT;
}

/* ---- tokens ------------------------------------------------------- */

char *
session_token_label(const ui_session *s, int id, const char *g_space,
    const char *g_newline)
{
	size_t n, o = 0, cap;
	const char *b = s->model != NULL ? tok_token_bytes(s->model->tok, id, &n) : NULL;
	char *out;

	if (b == NULL)
		return xasprintf("<%d>", id);
	cap = 8 * n + strlen(g_space) * n + strlen(g_newline) * n + 1;
	out = xmalloc(cap);
	for (size_t i = 0; i < n;) {
		const unsigned char *u = (const unsigned char *)b + i;
		size_t need = u[0] < 0x80 ? 1 : (u[0] & 0xe0) == 0xc0 ? 2 :
		    (u[0] & 0xf0) == 0xe0 ? 3 : (u[0] & 0xf8) == 0xf0 ? 4 : 0;
		bool ok = need > 0 && need <= n - i;

		for (size_t k = 1; ok && k < need; k++)
			ok = (u[k] & 0xc0) == 0x80;
		if (u[0] == ' ')
			o += (size_t)snprintf(out + o, cap - o, "%s", g_space);
		else if (u[0] == '\n')
			o += (size_t)snprintf(out + o, cap - o, "%s", g_newline);
		else if (!ok || u[0] < 0x20 || u[0] == 0x7f)
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", u[0]);
		else {
			/* A whole UTF-8 character: a token may end mid-character,
			 * then the bytes show as escapes above. */
			memcpy(out + o, u, need);
			o += need;
			i += need;
			continue;
		}
		i++;
	}
	out[o] = '\0';
	return out;
}

/* The token holding byte `at` of the prompt. */
static int
token_at_byte(const ui_session *s, size_t at)
{
	for (int t = 0; t < s->n_tok; t++)
		if ((size_t)s->tok_end[t] > at)
			return t;
	return s->n_tok - 1;
}

static int
token_start(const ui_session *s, int t)
{
	return t == 0 ? 0 : s->tok_end[t - 1];
}

static bool
word_byte(unsigned char c)
{
	return isalnum(c) || c >= 0x80 || c == '-';
}

/* The subject when the user named none: the last capitalised word before the
 * last token, not counting a sentence-initial one; else the token before the
 * last. */
static int
subject_guess(const ui_session *s, int *first_tok)
{
	const char *p = s->prompt;
	size_t lim = (size_t)token_start(s, s->n_tok - 1), i = 0;
	int best = -1, first = -1, best_first = -1, first_first = -1;

	while (i < lim) {
		size_t j;

		if (!word_byte((unsigned char)p[i])) {
			i++;
			continue;
		}
		for (j = i; j < lim && word_byte((unsigned char)p[j]); j++)
			;
		if (isupper((unsigned char)p[i])) {
			if (i == 0 || (i >= 2 && p[i - 2] == '.')) {
				first = token_at_byte(s, j - 1);
				first_first = token_at_byte(s, i);
			} else {
				best = token_at_byte(s, j - 1);
				best_first = token_at_byte(s, i);
			}
		}
		i = j;
	}
	if (best < 0) {
		best = first;
		best_first = first_first;
	}
	if (best < 0 || best >= s->n_tok - 1) {
		best = s->n_tok >= 2 ? s->n_tok - 2 : -1;
		best_first = best;
	}
	*first_tok = best_first;
	return best;
}

static const char *
find_last(const char *hay, const char *needle, bool fold)
{
	size_t n = strlen(needle), h = strlen(hay);
	const char *found = NULL;

	if (n == 0 || n > h)
		return NULL;
	for (size_t i = 0; i + n <= h; i++)
		if (fold ? strncasecmp(hay + i, needle, n) == 0 : strncmp(hay + i, needle, n) == 0)
			found = hay + i;
	return found;
}

static int
subject_find(const ui_session *s, const char *text, int *first, int *last, char **cause)
{
	const char *at;
	size_t off;

	if (text[0] == '#') {
		char *end;
		long v = strtol(text + 1, &end, 10);

		if (*end != '\0' || v < 0 || v >= s->n_tok)
			return fl_error(cause, "subject: position '%s' is not in 0..%d", text + 1,
			    s->n_tok - 1);
		*first = *last = (int)v;
		return 0;
	}
	if ((at = find_last(s->prompt, text, false)) == NULL &&
	    (at = find_last(s->prompt, text, true)) == NULL)
		return fl_error(cause, "subject: no '%s' in the prompt", text);
	off = (size_t)(at - s->prompt);
	*first = token_at_byte(s, off);
	*last = token_at_byte(s, off + strlen(text) - 1);
	return 0;
}

/* The answer's token: the first token of the text as a continuation (with a
 * leading space unless it has one). */
static int
answer_find(const ui_session *s, const char *text, bool space, char **cause)
{
	char *t = text[0] == ' ' || !space ? xstrdup(text) :
	    xasprintf(" %s", text);
	int *ids = NULL, n, id;

	n = tok_encode(s->model->tok, t, strlen(t), &ids, cause);
	id = n > 0 ? ids[0] : -1;
	free(ids);
	free(t);
	if (n == 0)
		return fl_error(cause, "answer: '%s' encodes to no token", text);
	return id;
}

/* ---- the lens rows ---------------------------------------------- */

static void
row_stats(const ui_session *s, const float *lg, bool component, ui_lens_row *r)
{
	int V = s->model->cfg.n_vocab, k = UI_TOPK_MAX;
	int a = s->answer_id;
	float mx;
	double sum = 0;

	/* One softmax normaliser for the top tokens and the answer: the
	 * exponentials over the vocabulary are most of this function's time. */
	r->n_top = lens_topk(lg, V, k, r->top_ids, NULL);
	mx = r->n_top > 0 ? lg[r->top_ids[0]] : 0;
	if (!component && r->n_top > 0)
		sum = lens_softmax_sum(lg, V, mx);
	for (int i = 0; i < r->n_top; i++)
		r->top_val[i] = component ? lg[r->top_ids[i]] :
		    (float)(exp((double)lg[r->top_ids[i]] - mx) / sum);
	if (a >= 0) {
		r->prob = component ? NAN : exp((double)lg[a] - mx) / sum;
		r->rank = lens_rank_of(lg, V, a);
		r->answer_logit = lg[a];
	} else {
		r->prob = NAN;
		r->rank = 0;
		r->answer_logit = NAN;
	}
}

static double
row_mean(const float *x, int n)
{
	double m = 0;

	for (int i = 0; i < n; i++)
		m += x[i];
	return m / n;
}

/* A component's vector as the output sees it inside the sum: carried
 * through the LayerNorms after its write site, each frozen at the run's
 * scale at the last position (attrib.h), ready for model_unembed. */
static void
component_prep(const ui_session *s, int site, const float *x, float *out)
{
	memcpy(out, x, (size_t)s->model->cfg.d_model * sizeof *out);
	attrib_carry(s->model, s->cache, s->n_tok - 1, site, out, 1);
}

/* A residual stream vector through the final LN, when the model has one,
 * ready for model_unembed. */
static void
stream_prep(const ui_session *s, const float *x, float *out)
{
	const fl_model *m = s->model;
	float mean, scale;

	if (!m->cfg.final_ln) {
		memcpy(out, x, (size_t)m->cfg.d_model * sizeof *out);
		return;
	}
	model_norm_stats(m, &mean, &scale, x, 1);
	kern_ln_apply(out, x, &mean, &scale, m->lnf_w, m->lnf_b, 1, m->cfg.d_model);
}

static const float *
at_last(const ui_session *s, const float *base, int layer)
{
	int T = s->n_tok, D = s->model->cfg.d_model;

	return base + ((size_t)layer * T + (T - 1)) * D;
}

enum { LENS_STREAMS = 1, LENS_FINAL = 2, LENS_VIEW = 4 };

/* The cursor's view rows of layer vl and head h, ready for
 * model_unembed: resid_mid through the final LN, then the MLP's and the
 * head's outputs as the output sees them. */
static void
view_prep(const ui_session *s, int vl, int h, float *x)
{
	const fl_model *m = s->model;
	int D = m->cfg.d_model;
	float *head = xmalloc((size_t)D * sizeof *head);

	stream_prep(s, at_last(s, s->cache->resid_mid, vl), x);
	component_prep(s, ATTRIB_SITE_MLP(vl), at_last(s, s->cache->mlp_out, vl),
	    x + D);
	model_head_result(m, vl, h, at_last(s, s->cache->z, vl), head);
	component_prep(s, ATTRIB_SITE_ATTN(vl), head, x + 2 * (size_t)D);
	free(head);
}

/* Layers whose view rows a layer step makes, its own and the next in the
 * step's direction: reading the unembedding from memory dominates a few
 * rows, so 6 cost about what 3 do (GPT-2 small's shape: 6.1-7.2 ms against
 * 6.7-7.0), and the next step then takes 1 ms; 5 layers' 15 rows took
 * 10-11 ms. */
#define NEAR_LAYERS 2

/* Reads the unembedding once for every row that `what` asks for. */
static void
lens_product(ui_session *s, int what)
{
	const fl_model *m = s->model;
	int L = m->cfg.n_layer, D = m->cfg.d_model, V = m->cfg.n_vocab;
	int n = 0, first = (what & LENS_STREAMS) ? 0 : L, n_stream = 0;
	int vl = s->layer, a = vl, b = vl + 1;
	bool view = (what & LENS_VIEW) != 0;
	float *x;
	double t0 = fl_now();

	if (s->near_logits == NULL) {
		s->near_logits = xcalloc_huge((size_t)L * 3 * V, sizeof *s->near_logits);
		s->near_head = xmalloc((size_t)L * sizeof *s->near_head);
		for (int l = 0; l < L; l++)
			s->near_head[l] = -1;
	}
	if (what & (LENS_STREAMS | LENS_FINAL)) {
		/* a new prompt or a toggle: every layer's rows change */
		n_stream = L + 1 - first;
		for (int l = 0; l < L; l++)
			s->near_head[l] = -1;
	} else if (view && s->near_head[vl] == s->head) {
		memcpy(s->view_logits, s->near_logits + (size_t)vl * 3 * V,
		    3 * (size_t)V * sizeof *s->view_logits);
		what = 0;
	} else if (s->view_layer >= 0 && s->view_layer != vl) {
		if (vl > s->view_layer)
			b = vl + NEAR_LAYERS < L ? vl + NEAR_LAYERS : L;
		else
			a = vl - NEAR_LAYERS + 1 > 0 ? vl - NEAR_LAYERS + 1 : 0;
	}
	if (what != 0) {
		x = xmalloc((size_t)(n_stream + 3 * (b - a)) * D * sizeof *x);
		for (int l = first; l <= L && n_stream > 0; l++)
			stream_prep(s, at_last(s, s->cache->resid_pre, l),
			    x + (size_t)n++ * D);
		if (view)
			for (int l = a; l < b; l++, n += 3)
				view_prep(s, l, s->head, x + (size_t)n * D);
		if (n_stream > 0) {
			/* the stream rows end at row L and the view rows
			 * follow: one product writes them all in place */
			model_unembed(m, x, n, s->stream_logits + (size_t)first * V,
			    NULL);
			if (view)
				memcpy(s->near_logits + (size_t)vl * 3 * V,
				    s->view_logits, 3 * (size_t)V * sizeof *s->view_logits);
		} else {
			model_unembed(m, x, n, s->near_logits + (size_t)a * 3 * V, NULL);
			memcpy(s->view_logits, s->near_logits + (size_t)vl * 3 * V,
			    3 * (size_t)V * sizeof *s->view_logits);
		}
		if (view)
			for (int l = a; l < b; l++)
				s->near_head[l] = s->head;
		free(x);
	}
	if (view) {
		s->view_layer = s->layer;
		s->view_head_h = s->head;
	}
	s->ms_lens += 1000 * (fl_now() - t0);
}

enum { STATS_STREAMS = 1, STATS_FINAL = 2, STATS_VIEW = 4, STATS_ALL = 7 };
#define UI_STATS_ROWS_MAX 64	/* rows per kern_for; more go in several */

/* Rows whose statistics are wanted, shared among the threads: each is a
 * top-k, a softmax normaliser and a rank over the vocabulary. */
typedef struct {
	const ui_session	*s;
	const float		*lg[UI_STATS_ROWS_MAX];
	bool			 component[UI_STATS_ROWS_MAX];
	ui_lens_row		*out[UI_STATS_ROWS_MAX];
	int			 n;
} stats_job;

static void
stats_part(void *ctx, int part, int nparts)
{
	const stats_job *j = ctx;
	int a, b;

	kern_part_range(j->n, part, nparts, &a, &b);
	for (int i = a; i < b; i++)
		row_stats(j->s, j->lg[i], j->component[i], j->out[i]);
}

static void
stats_add(stats_job *j, const float *lg, bool component, ui_lens_row *out)
{
	if (j->n == UI_STATS_ROWS_MAX) {
		kern_for(stats_part, j, j->n);
		j->n = 0;
	}
	j->lg[j->n] = lg;
	j->component[j->n] = component;
	j->out[j->n++] = out;
}

/* Statistics of the rows `what` names: the streams (or only the final
 * one) and the cursor's view rows. */
static void
stats_rows(ui_session *s, int what)
{
	int L = s->model->cfg.n_layer, V = s->model->cfg.n_vocab;
	stats_job j = { .s = s };

	for (int l = (what & STATS_STREAMS) ? 0 : L;
	    l <= L && (what & (STATS_STREAMS | STATS_FINAL)); l++)
		stats_add(&j, s->stream_logits + (size_t)l * V, false, &s->streams[l]);
	if ((what & STATS_VIEW) && s->view_layer >= 0) {
		const float *v = s->view_logits;

		stats_add(&j, v, false, &s->view_mid);
		stats_add(&j, v + V, true, &s->view_mlp);
		stats_add(&j, v + 2 * (size_t)V, true, &s->view_head);
		s->mlp_direct = s->answer_id >= 0 ?
		    (float)(v[V + s->answer_id] - row_mean(v + V, V)) : NAN;
		s->head_direct = s->answer_id >= 0 ?
		    (float)(v[2 * V + s->answer_id] - row_mean(v + 2 * V, V)) : NAN;
	}
	if (j.n > 0)
		kern_for(stats_part, &j, j.n);
}

static void
stats_all(ui_session *s)
{
	stats_rows(s, STATS_ALL);
}

/* The heads grid at the last position: attention to the subject's tokens
 * (from the cached patterns), direct contributions to the answer
 * (attrib.h), and - only while the grid shows them, since each head's rank
 * of the subject takes a product over the whole vocabulary - mover scores
 * (movers.h). */
static void
grid_compute(ui_session *s)
{
	const fl_model *m = s->model;
	int L = m->cfg.n_layer, H = m->cfg.n_head, T = s->n_tok, n = L * H;
	bool have_subj = s->subject_pos >= 0 && s->subject_first >= 0 &&
	    s->subject_pos < T - 1;
	fl_attrib diff = { 0 };
	bool have_direct;

	/* logit minus mean logit, with the mean unembedding row computed once
	 * per model (load_model) rather than once per call */
	have_direct = s->answer_id >= 0 && attrib_direct(NULL, &diff, m,
	    s->cache, T - 1, s->answer_id, s->unembed_mean, NULL) == 0;
	if (s->metric == METRIC_MOVER && !s->movers_valid && have_subj) {
		fl_mover *mv = xcalloc((size_t)n, sizeof *mv);

		if (movers_score(mv, m, s->cache, T - 1, s->subject_first,
		    s->subject_pos - s->subject_first + 1, s->ids[s->subject_first],
		    MOVERS_THRESHOLD, NULL) == 0) {
			for (int i = 0; i < n; i++) {
				s->mover[i] = mv[i].score;
				s->direct_subj[i] = mv[i].logit;
				s->is_mover[i] = mv[i].mover;
			}
			s->movers_valid = true;
		}
		free(mv);
	}
	for (int i = 0; i < n; i++) {
		int l = i / H, h = i % H;
		float a = 0;

		for (int t = s->subject_first; have_subj && t <= s->subject_pos; t++)
			a += s->cache->pattern[(((size_t)l * H + h) * T + (T - 1)) * T + t];
		s->attn_subj[i] = have_subj ? a : NAN;
		s->direct[i] = have_direct ? (float)diff.head[i] : NAN;
		if (!s->movers_valid) {
			s->mover[i] = s->direct_subj[i] = NAN;
			s->is_mover[i] = false;
		}
		switch (s->metric) {
		case METRIC_ATTN_SUBJECT: s->grid[i] = s->attn_subj[i]; break;
		case METRIC_DIRECT: s->grid[i] = s->direct[i]; break;
		case METRIC_MOVER: s->grid[i] = s->mover[i]; break;
		case METRIC_PATCH: s->grid[i] = s->patch_valid ?
		    (float)s->patch.effect[i] : NAN; break;
		default: s->grid[i] = NAN; break;
		}
	}
	attrib_clear(&diff);
}

/* ---- passes ------------------------------------------------------ */

typedef struct {
	const ui_progress	*p;
	int			 L;
	const char		*what;
} progress_hook_ud;

static int
progress_hook(void *ud, fl_act *a)
{
	progress_hook_ud *u = ud;

	if (u->p == NULL)
		return FL_HOOK_CONTINUE;
	if (u->p->report != NULL)
		u->p->report(u->p->ud, u->what, a->layer + 1, u->L);
	if (u->p->cancelled != NULL && u->p->cancelled(u->p->ud))
		return FL_HOOK_STOP;
	return FL_HOOK_CONTINUE;
}

static int
load_model(ui_session *s, const ui_progress *p, char **cause)
{
	fl_model *m;
	const char *base;

	if (s->model_dir == NULL)
		return fl_error(cause, "no model: use --model DIR or :model DIR");
	if (p != NULL && p->report != NULL)
		p->report(p->ud, "loading the model", 0, 0);
	if ((m = model_load(s->model_dir, &s->model_opts, cause)) == NULL)
		return -1;
	if (p != NULL && p->cancelled != NULL && p->cancelled(p->ud)) {
		model_free(m);
		return SESSION_CANCELLED;
	}
	model_clear(s);
	s->model = m;
	{
		/* The directory's last component, trailing slashes ignored. */
		char *d = xstrdup(s->model_dir);
		size_t n = strlen(d);

		while (n > 1 && d[n - 1] == '/')
			d[--n] = '\0';
		base = strrchr(d, '/');
		free(s->model_name);
		s->model_name = xstrdup(base != NULL && base[1] != '\0' ? base + 1 : d);
		free(d);
	}
	s->unembed_mean = xcalloc((size_t)m->cfg.d_proj, sizeof *s->unembed_mean);
	attrib_mean_unembed(m, s->unembed_mean);
	return 0;
}

static void
clamp_cursor(ui_session *s)
{
	int L = session_layers(s), H = session_heads(s);

	if (s->layer >= L) s->layer = L - 1;
	if (s->layer < 0) s->layer = 0;
	if (s->head >= H) s->head = H - 1;
	if (s->head < 0) s->head = 0;
}

/* Re-runs the last layer from the cache with the current toggles. */
static int
rerun_last(ui_session *s, char **cause)
{
	fl_mitigation mit = { 0 };
	double t0 = fl_now();

	mit.mask = s->mask;
	mit.intercept = s->intercept ? s->intercept_vec : NULL;
	if (mitigate_rerun(s->run, s->model, s->cache, &mit, cause) != 0)
		return -1;
	s->ms_forward += 1000 * (fl_now() - t0);
	return 0;
}

static int
run_prompt(ui_session *s, const ui_progress *p, char **cause)
{
	const fl_model *m = s->model;
	int *ids = NULL, T, L = m->cfg.n_layer, H = m->cfg.n_head, V = m->cfg.n_vocab;
	fl_cache *cache;
	progress_hook_ud pu = { p, L, "running the prompt" };
	fl_hook hook = { HOOK_RESID_POST, -1, progress_hook, &pu };
	fl_pass pass = { 0 };
	int rc, subj = -1, subj_first = -1, ans = -1;
	double t0 = fl_now();

	if (s->prompt == NULL || s->prompt[0] == '\0')
		return fl_error(cause, "the prompt is empty: type one with e (or :prompt TEXT)");
	if ((T = model_encode(m, s->prompt, strlen(s->prompt), &ids, cause)) < 0)
		return -1;
	if (T == 0 || (T == 1 && m->cfg.bos_id >= 0)) {
		free(ids);
		return fl_error(cause, "the prompt is empty");
	}
	if (T > m->cfg.n_ctx) {
		free(ids);
		return fl_error(cause, "the prompt is %d tokens, longer than the model's "
		    "context of %d tokens", T, m->cfg.n_ctx);
	}
	if (s->run_rows < T) {
		run_free(s->run);
		s->run_rows = T < 64 ? (m->cfg.n_ctx < 64 ? m->cfg.n_ctx : 64) : T;
		s->run = run_new(m, s->run_rows, s->run_rows);
	}
	/* the cache before last, reused: its pages are in RAM already */
	cache = cache_reuse(s->spare_cache, m, T, FL_CACHE_PATTERN);
	s->spare_cache = NULL;
	pass.hooks = &hook;
	pass.n_hooks = 1;
	pass.cache = cache;
	pass.no_logits = true;
	rc = run_forward(s->run, ids, &T, 1, &pass, cause);
	if (rc != 0) {
		s->spare_cache = cache;
		free(ids);
		return rc == FL_HOOK_STOP ? SESSION_CANCELLED : -1;
	}
	s->ms_forward += 1000 * (fl_now() - t0);

	/* The pass succeeded: the new results replace the old. */
	s->spare_cache = s->cache;
	s->cache = NULL;
	results_clear(s);
	s->n_tok = T;
	s->ids = ids;
	s->cache = cache;
	s->tok_end = xcalloc((size_t)T, sizeof *s->tok_end);
	for (int t = 0, off = 0; t < T; t++) {
		size_t bl = 0;

		if (!(t == 0 && m->cfg.bos_id >= 0))
			tok_token_bytes(m->tok, ids[t], &bl);
		off += (int)bl;
		s->tok_end[t] = off;
	}
	/* one buffer, written in place by lens_product: a new one per prompt
	 * would cost a page fault per 4 KB of it (3 MB for GPT-2) */
	if (s->lens_logits == NULL)
		s->lens_logits = xmalloc((size_t)(L + 4) * V * sizeof *s->lens_logits);
	s->stream_logits = s->lens_logits;
	s->view_logits = s->lens_logits + (size_t)(L + 1) * V;
	s->base_logits = xmalloc((size_t)V * sizeof *s->base_logits);
	s->streams = xcalloc((size_t)L + 1, sizeof *s->streams);
	s->grid = xcalloc((size_t)L * H, sizeof *s->grid);
	s->attn_subj = xcalloc((size_t)L * H, sizeof *s->attn_subj);
	s->direct = xcalloc((size_t)L * H, sizeof *s->direct);
	s->direct_subj = xcalloc((size_t)L * H, sizeof *s->direct_subj);
	s->mover = xcalloc((size_t)L * H, sizeof *s->mover);
	s->is_mover = xcalloc((size_t)L * H, sizeof *s->is_mover);

	/* The subject and answer the user named may not fit the new prompt. */
	if (s->subject_text != NULL &&
	    subject_find(s, s->subject_text, &subj_first, &subj, NULL) != 0)
		set_str(&s->subject_text, NULL);
	if (s->answer_text != NULL && (ans = answer_find(s, s->answer_text, s->answer_space, NULL)) < 0)
		set_str(&s->answer_text, NULL);
	s->subject_guessed = s->subject_text == NULL;
	if (s->subject_text != NULL) {
		s->subject_pos = subj;
		s->subject_first = subj_first;
	} else
		s->subject_pos = subject_guess(s, &s->subject_first);

	lens_product(s, LENS_STREAMS | LENS_VIEW);
	if (ans < 0) {
		int top;

		lens_topk(s->stream_logits + (size_t)L * V, V, 1, &top, NULL);
		ans = top;
	}
	s->answer_id = ans;
	stats_all(s);
	s->base_final = s->streams[L];
	memcpy(s->base_logits, s->stream_logits + (size_t)L * V, (size_t)V * sizeof *s->base_logits);
	return 0;
}


/* ---- the task's analyses ------------------------------------------- */

int
session_load_task(ui_session *s, const char *name, char **cause)
{
	char *path = fl_task_path(name);
	fl_task *t = task_load(path, cause);

	free(path);
	if (t == NULL)
		return -1;
	task_fits_clear(s);
	task_free(s->task);
	s->task = t;
	s->task_pair = -1;
	/* The intercept went with the old task: re-run the last layer without. */
	return SESSION_TASK | SESSION_LAST;
}

static const fl_prompt_opts task_opts = { TASK_TEMPLATES_MAIN, 0, 1, false };

int
session_task_prompts(const ui_session *s)
{
	if (s->task == NULL)
		return 0;
	return s->task->n_pairs * s->task->n_templates[TASK_TEMPLATES_MAIN];
}

int
session_task_prompt(ui_session *s, int n, char **cause)
{
	const fl_task *t = s->task;
	int total = session_task_prompts(s), pair, tmpl, off;
	bool space;
	char *text, *subj;

	if (t == NULL)
		return fl_error(cause, "task: no task loaded");
	if (n < 0 || n >= total)
		return fl_error(cause, "task: %s has prompts 0 to %d, not %d", t->name,
		    total - 1, n);
	tmpl = n / t->n_pairs;
	pair = n % t->n_pairs;
	if ((text = task_prompt_text(t, &task_opts, tmpl, pair, pair, &off, &space,
	    cause)) == NULL)
		return -1;
	/* The subject as #POS would need the tokens: name it by its word. */
	subj = xstrdup(t->pairs[pair].subject);
	set_str(&s->prompt, text);
	set_str(&s->subject_text, subj);
	set_str(&s->answer_text, t->pairs[pair].answer);
	s->answer_space = space;
	free(text);
	free(subj);
	return SESSION_RUN | SESSION_SUBJECT | SESSION_ANSWER;
}

typedef struct {
	const ui_progress	*p;
	const char		*what;
} batch_progress_ud;

/* Reports a batch to the explorer, and stops when Ctrl-C was pressed. */
static bool
batch_progress(void *ud, long done, long total)
{
	batch_progress_ud *u = ud;

	if (u->p == NULL)
		return false;
	if (u->p->report != NULL)
		u->p->report(u->p->ud, u->what, (int)done, (int)total);
	return u->p->cancelled != NULL && u->p->cancelled(u->p->ud);
}

/* The task's main prompts without those of pair `pair`: *use points into
 * ps. 0, or -1 with *cause. */
static int
task_fit_prompts(const ui_session *s, int pair, fl_prompt_set *ps, fl_prompt **use,
    int *k, bool corrupt, char **cause)
{
	fl_prompt_opts po = task_opts;

	po.corrupt = corrupt;
	if (task_prompts(ps, s->model, s->task, &po, cause) != 0)
		return -1;
	*use = xcalloc((size_t)ps->n, sizeof **use);
	*k = 0;
	for (int i = 0; i < ps->n; i++)
		if (corrupt || ps->p[i].pair != pair)
			(*use)[(*k)++] = ps->p[i];
	return 0;
}

/* Fits layer l's MLP decomposition as factlens run --task --layer l does
 * (resid_pre as a regressor, the default ridge) on the task's prompts
 * without pair's. 0, SESSION_CANCELLED (*d empty) or -1 with *cause. */
static int
decomp_fit_task(const ui_session *s, int l, int pair, const ui_progress *p,
    const char *what, fl_decomp *d, char **cause)
{
	fl_prompt_set ps;
	fl_prompt *use;
	fl_batch *b;
	batch_progress_ud bu = { p, what };
	int k, rc;

	memset(d, 0, sizeof *d);
	if (task_fit_prompts(s, pair, &ps, &use, &k, false, cause) != 0)
		return -1;
	b = batch_new(s->model, 32, ps.max_len);
	b->progress = batch_progress;
	b->progress_ud = &bu;
	b->total = k;
	rc = decomp_fit(d, b, use, k, l, true, -1, cause);
	batch_free(b);
	free(use);
	prompt_set_clear(&ps);
	return rc == FL_CANCELLED ? SESSION_CANCELLED : rc;
}

/* Layer l's decomposition for the cursor's pane, fitted once per task and
 * left-out pair. 0, SESSION_CANCELLED or -1 with *cause. */
static int
decomp_ensure(ui_session *s, int l, const ui_progress *p, char **cause)
{
	int L = session_layers(s), rc;

	if (s->decomp == NULL) {
		s->decomp = xcalloc((size_t)L, sizeof *s->decomp);
		s->decomp_valid = xcalloc((size_t)L, sizeof *s->decomp_valid);
	}
	if (s->decomp_valid[l])
		return 0;
	rc = decomp_fit_task(s, l, s->task_pair, p, "fitting the MLP decomposition",
	    &s->decomp[l], cause);
	if (rc == 0)
		s->decomp_valid[l] = true;
	return rc;
}

/* The pair whose prompts the fits leave out: the chosen subject's, else the
 * task's subject found latest in the prompt (as factlens run --task). Read
 * from the prompt's text, so it is known before the prompt runs; a chosen
 * subject that is not in the prompt is dropped by the run, and so ignored
 * here too. */
static int
task_pair_of(const ui_session *s)
{
	const fl_task *t = s->task;
	int off = -1, len = 0, pair = -1;

	if (t == NULL || s->prompt == NULL)
		return -1;
	if (s->subject_text != NULL && s->subject_text[0] != '#' &&
	    find_last(s->prompt, s->subject_text, true) != NULL)
		return task_find_pair(t, s->subject_text);
	for (int i = 0; i < t->n_pairs; i++) {
		int at = prompt_find_word(s->prompt, t->pairs[i].subject);
		int n = (int)strlen(t->pairs[i].subject);

		if (at >= 0 && (at > off || (at == off && n > len))) {
			off = at;
			len = n;
			pair = i;
		}
	}
	return pair;
}

/* The intercept of mitigation (b) is the last layer's decomposition
 * intercept, fitted without the prompt's pair. Before the prompt runs: when
 * the intercept is on and there is none for pair, fit it into *icpt (or
 * find it cached). 0 (*icpt holds a fit, or is empty when none was
 * needed), SESSION_CANCELLED, or -1 with *cause. */
static int
intercept_prepare(ui_session *s, int pair, const ui_progress *p, fl_decomp *icpt,
    char **cause)
{
	int L = session_layers(s);

	memset(icpt, 0, sizeof *icpt);
	if (s->task == NULL || !s->intercept ||
	    (s->intercept_vec != NULL && s->intercept_pair == pair))
		return 0;
	if (pair == s->task_pair && s->decomp_valid != NULL && s->decomp_valid[L - 1])
		return 0;	/* intercept_install takes the cached fit */
	return decomp_fit_task(s, L - 1, pair, p, "fitting the intercept", icpt, cause);
}

/* Installs the fit intercept_prepare made (or the cached one) as the
 * intercept, once the fits are for task_pair. */
static void
intercept_install(ui_session *s, fl_decomp *icpt)
{
	int L = session_layers(s), D = s->model->cfg.d_model;

	if (icpt->fit.intercept != NULL) {
		if (s->decomp == NULL) {
			s->decomp = xcalloc((size_t)L, sizeof *s->decomp);
			s->decomp_valid = xcalloc((size_t)L, sizeof *s->decomp_valid);
		}
		if (s->decomp_valid[L - 1])
			decomp_clear(&s->decomp[L - 1]);
		s->decomp[L - 1] = *icpt;
		s->decomp_valid[L - 1] = true;
		memset(icpt, 0, sizeof *icpt);
	}
	if (!s->intercept || (s->intercept_vec != NULL &&
	    s->intercept_pair == s->task_pair))
		return;
	if (s->decomp_valid == NULL || !s->decomp_valid[L - 1]) {
		s->intercept = false;	/* the fit failed: reported already */
		return;
	}
	if (s->intercept_vec == NULL)
		s->intercept_vec = xcalloc((size_t)D, sizeof *s->intercept_vec);
	memcpy(s->intercept_vec, s->decomp[L - 1].fit.intercept,
	    (size_t)D * sizeof *s->intercept_vec);
	s->intercept_pair = s->task_pair;
}

/* The cursor layer's fit, its intercept's top tokens and this prompt's
 * reconstruction. A failure is kept for the pane, not returned, and not
 * retried at this layer: the fit would fail again. SESSION_CANCELLED when
 * Ctrl-C stopped the fit (the pane says so; moving to another layer and
 * back fits it again), else 0. */
static int
decomp_view(ui_session *s, const ui_progress *p)
{
	const fl_model *m = s->model;
	int l = s->layer, V = m->cfg.n_vocab, rc;
	char *cause = NULL;
	float *lg;

	free(s->decomp_error);
	s->decomp_error = NULL;
	s->recon_layer = -1;
	rc = decomp_ensure(s, l, p, &cause);
	if (rc == 0)
		rc = decomp_prompt(&s->decomp[l], m, s->cache, s->n_tok - 1, NULL, NULL,
		    NULL, &s->recon, &cause);
	if (rc != 0) {
		if (rc == SESSION_CANCELLED)
			cause = xstrdup("the fit was cancelled (Ctrl-C); move to another "
			    "layer and back to fit it");
		s->decomp_error = cause != NULL ? cause : xstrdup("the fit failed");
		s->decomp_error_layer = l;
		return rc == SESSION_CANCELLED ? rc : 0;
	}
	lg = xmalloc((size_t)V * sizeof *lg);
	attrib_vocab(m, NULL, 0, ATTRIB_SITE_MLP(l), s->decomp[l].fit.intercept, 1, lg);
	row_stats(s, lg, true, &s->decomp_icpt);
	free(lg);
	s->recon_layer = l;
	return 0;
}

/* Path patching with this prompt as the only clean prompt and the task's
 * corrupted prompts as D_new. A failure is kept for the grid. 0, or
 * SESSION_CANCELLED when Ctrl-C stopped it (nothing is kept). */
static int
patch_compute(ui_session *s, const ui_progress *p)
{
	const fl_model *m = s->model;
	fl_prompt clean = { 0 };
	fl_prompt_set ps = { 0 };
	fl_prompt *use = NULL;
	fl_patch_opts po = { -1, NULL };
	fl_batch *b = NULL;
	batch_progress_ud bu = { p, "path patching" };
	char *cause = NULL;
	int k = 0, subj_off, rc = -1;

	free(s->patch_error);
	s->patch_error = NULL;
	if (s->patch_valid)
		patch_clear(&s->patch);
	s->patch_valid = false;
	if (s->task == NULL) {
		s->patch_error = xstrdup("path patching needs a task: :task NAME");
		return 0;
	}
	if (s->subject_pos < 0) {
		s->patch_error = xstrdup("path patching needs a subject in the prompt");
		return 0;
	}
	/* The clean prompt: the session's tokens, answer and subject. */
	subj_off = s->subject_first > 0 ? s->tok_end[s->subject_first - 1] : 0;
	if (prompt_make(&clean, m, s->prompt, subj_off,
	    s->tok_end[s->subject_pos] - subj_off, NULL, true, &cause) != 0)
		goto out;
	clean.answer = s->answer_id;
	clean.answer_tokens = 1;
	if (task_fit_prompts(s, s->task_pair, &ps, &use, &k, true, &cause) != 0)
		goto out;
	b = batch_new(m, 32, ps.max_len > clean.n ? ps.max_len : clean.n);
	b->progress = batch_progress;
	b->progress_ud = &bu;
	b->total = 1 + k + (long)m->cfg.n_layer;
	rc = patch_heads(&s->patch, b, &clean, 1, use, k, &po, &cause);
	s->patch_valid = rc == 0;
out:
	if (rc != 0 && rc != FL_CANCELLED)
		s->patch_error = cause != NULL ? cause : xstrdup("path patching failed");
	else
		free(cause);
	batch_free(b);
	free(use);
	if (ps.p != NULL)
		prompt_set_clear(&ps);
	prompt_clear(&clean);
	return rc == FL_CANCELLED ? SESSION_CANCELLED : 0;
}

/* What the task's analyses need after an update with these flags, the
 * prompt's left-out pair being `pair`: a new pair drops the fits of the old
 * one; the intercept fitted before the run is installed. */
static int
task_update(ui_session *s, int flags, int pair, fl_decomp *icpt)
{
	if (s->task == NULL)
		return flags;
	if (pair != s->task_pair) {
		bool on = s->intercept;

		task_fits_clear(s);
		s->intercept = on;
		s->task_pair = pair;
		flags |= SESSION_TASK;
	}
	if (s->intercept && (s->intercept_vec == NULL ||
	    s->intercept_pair != s->task_pair)) {
		intercept_install(s, icpt);
		flags |= SESSION_LAST;
	}
	if ((flags & (SESSION_RUN | SESSION_LAST | SESSION_TASK | SESSION_ANSWER |
	    SESSION_SUBJECT))) {
		if (s->patch_valid)
			patch_clear(&s->patch);
		s->patch_valid = false;
		free(s->patch_error);
		s->patch_error = NULL;
	}
	if (flags & (SESSION_RUN | SESSION_SUBJECT | SESSION_ANSWER | SESSION_TASK))
		s->recon_layer = -1;
	return flags;
}

/* ---- the choices a cancelled update goes back to ------------------ */

static void
choices_save(ui_session *s)
{
	ui_choices *k = &s->kept;

	set_str(&k->model_dir, s->model_dir);
	set_str(&k->prompt, s->prompt);
	set_str(&k->answer_text, s->answer_text);
	set_str(&k->subject_text, s->subject_text);
	k->answer_space = s->answer_space;
	k->mask = s->mask;
	k->intercept = s->intercept;
	k->layer = s->layer;
	k->head = s->head;
	k->metric = s->metric;
}

static void
choices_clear(ui_choices *k)
{
	free(k->model_dir);
	free(k->prompt);
	free(k->answer_text);
	free(k->subject_text);
	memset(k, 0, sizeof *k);
}

/* Back to the choices of the last completed update, which the results
 * still show; what names the work that was cancelled. */
static int
session_cancel(ui_session *s, const char *what)
{
	const ui_choices *k = &s->kept;

	set_str(&s->model_dir, k->model_dir);
	set_str(&s->prompt, k->prompt);
	set_str(&s->answer_text, k->answer_text);
	set_str(&s->subject_text, k->subject_text);
	s->answer_space = k->answer_space;
	s->mask = k->mask;
	s->intercept = k->intercept && s->intercept_vec != NULL;
	s->layer = k->layer;
	s->head = k->head;
	s->metric = k->metric;
	s->cancelled = what;
	return SESSION_CANCELLED;
}

int
session_update(ui_session *s, int flags, const ui_progress *p, char **cause)
{
	fl_decomp icpt = { 0 };
	char *icpt_error = NULL;
	int rc = 0, pair;
	double t0 = fl_now();

	s->ms_forward = s->ms_lens = 0;
	s->cancelled = NULL;
	if (flags & SESSION_LOAD) {
		if ((rc = load_model(s, p, cause)) == SESSION_CANCELLED)
			return session_cancel(s, "model load");
		if (rc != 0)
			return rc;
		if (s->prompt != NULL && s->prompt[0] != '\0')
			flags |= SESSION_RUN;
		else
			flags &= ~SESSION_RUN;
	}
	if (s->model == NULL)
		return flags & ~SESSION_VIEW ? fl_error(cause, "no model loaded: use "
		    "--model DIR or :model DIR") : 0;
	clamp_cursor(s);

	/* The long work the new results need comes first, before anything
	 * replaces the old ones: stopped here, nothing has changed. A failed
	 * intercept fit turns the intercept off, and is reported once the
	 * rest is up to date. */
	pair = task_pair_of(s);
	rc = intercept_prepare(s, pair, p, &icpt, &icpt_error);
	if (rc == SESSION_CANCELLED)
		return session_cancel(s, "intercept fit");
	if (rc != 0)
		s->intercept = false;
	if (flags & SESSION_RUN) {
		if ((rc = run_prompt(s, p, cause)) != 0) {
			decomp_clear(&icpt);
			free(icpt_error);
			return rc == SESSION_CANCELLED ?
			    session_cancel(s, "prompt run") : rc;
		}
		flags |= SESSION_GRID;
		if (s->mask || (s->intercept && s->intercept_vec != NULL))
			flags |= SESSION_LAST;
	}
	rc = -1;
	if (!session_ready(s))
		goto done;
	if (flags & SESSION_SUBJECT) {
		int first = -1, last = -1;

		if (s->subject_text != NULL &&
		    subject_find(s, s->subject_text, &first, &last, cause) != 0)
			goto out;
		s->subject_guessed = s->subject_text == NULL;
		if (s->subject_text != NULL) {
			s->subject_pos = last;
			s->subject_first = first;
		} else
			s->subject_pos = subject_guess(s, &s->subject_first);
		flags |= SESSION_GRID;
	}
	if (flags & SESSION_ANSWER) {
		int a;

		if (s->answer_text != NULL) {
			if ((a = answer_find(s, s->answer_text, s->answer_space, cause)) < 0)
				goto out;
		} else {
			/* The top prediction without interventions. */
			a = s->base_final.n_top > 0 ? s->base_final.top_ids[0] : 0;
		}
		s->answer_id = a;
		flags |= SESSION_GRID;
	}
	flags = task_update(s, flags, pair, &icpt);
	if (flags & SESSION_LAST) {
		if (rerun_last(s, cause) != 0)
			goto out;
		lens_product(s, LENS_FINAL | LENS_VIEW);
		flags |= SESSION_GRID;
	} else if ((flags & SESSION_VIEW) &&
	    (s->view_layer != s->layer || s->view_head_h != s->head)) {
		lens_product(s, LENS_VIEW);
	}
	if (flags & SESSION_ANSWER) {
		stats_all(s);
		row_stats(s, s->base_logits, false, &s->base_final);
	} else if (flags & SESSION_LAST)
		stats_rows(s, STATS_FINAL | STATS_VIEW);
	else if (flags & SESSION_VIEW)
		stats_rows(s, STATS_VIEW);
	/* Mover scores depend on the cache and the subject, not the answer. */
	if (flags & (SESSION_RUN | SESSION_LAST | SESSION_SUBJECT))
		s->movers_valid = false;
	/* Work on demand for a pane, after the results: stopped, the grid goes
	 * back to the metric it showed, the MLP pane says so. */
	if (s->metric == METRIC_PATCH && !s->patch_valid && s->patch_error == NULL) {
		if (patch_compute(s, p) == SESSION_CANCELLED) {
			s->metric = s->kept.metric != METRIC_PATCH ? s->kept.metric :
			    METRIC_ATTN_SUBJECT;
			s->cancelled = "path patching";
		}
		flags |= SESSION_GRID;
	}
	if (flags & (SESSION_GRID | SESSION_LAST | SESSION_SUBJECT | SESSION_TASK))
		grid_compute(s);
	if (s->task != NULL && s->recon_layer != s->layer && s->cancelled == NULL &&
	    !(s->decomp_error != NULL && s->decomp_error_layer == s->layer) &&
	    decomp_view(s, p) == SESSION_CANCELLED)
		s->cancelled = "MLP decomposition fit";
done:
	choices_save(s);
	s->ms_update = 1000 * (fl_now() - t0);
	rc = s->cancelled != NULL ? SESSION_CANCELLED : 0;
out:
	decomp_clear(&icpt);
	if (rc >= 0 && icpt_error != NULL) {
		fl_error(cause, "%s", icpt_error);
		rc = -1;
	}
	free(icpt_error);
	return rc;
}

/* ---- export ------------------------------------------------------- */

static cJSON *
json_token(const ui_session *s, int id)
{
	cJSON *o = cJSON_CreateObject();
	size_t n;
	const char *b = tok_token_bytes(s->model->tok, id, &n);
	char *t = b != NULL ? xstrndup(b, n) : xstrdup("");

	cJSON_AddNumberToObject(o, "id", id);
	cJSON_AddStringToObject(o, "token", t);
	free(t);
	return o;
}

static cJSON *
json_row(const ui_session *s, const ui_lens_row *r, bool component)
{
	cJSON *o = cJSON_CreateObject(), *top = cJSON_AddArrayToObject(o, "top");

	for (int i = 0; i < r->n_top; i++) {
		cJSON *t = json_token(s, r->top_ids[i]);

		cJSON_AddNumberToObject(t, component ? "logit" : "prob", r->top_val[i]);
		cJSON_AddItemToArray(top, t);
	}
	if (!component && !isnan(r->prob))
		cJSON_AddNumberToObject(o, "answer_prob", r->prob);
	cJSON_AddNumberToObject(o, "answer_rank", r->rank);
	return o;
}

static cJSON *
json_grid(const float *g, int L, int H)
{
	cJSON *rows = cJSON_CreateArray();

	for (int l = 0; l < L; l++) {
		cJSON *row = cJSON_CreateArray();

		for (int h = 0; h < H; h++)
			cJSON_AddItemToArray(row, isnan(g[l * H + h]) ? cJSON_CreateNull() :
			    cJSON_CreateNumber(g[l * H + h]));
		cJSON_AddItemToArray(rows, row);
	}
	return rows;
}

int
session_export(const ui_session *s, const char *path, char **cause)
{
	cJSON *root, *arr, *o;
	char *text;
	FILE *f;
	int L, H, rc = 0;

	if (!session_ready(s))
		return fl_error(cause, "export: nothing to export yet (no model or prompt)");
	L = s->model->cfg.n_layer;
	H = s->model->cfg.n_head;
	root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "model", s->model_dir);
	cJSON_AddStringToObject(root, "prompt", s->prompt);
	arr = cJSON_AddArrayToObject(root, "tokens");
	for (int t = 0; t < s->n_tok; t++)
		cJSON_AddItemToArray(arr, json_token(s, s->ids[t]));
	o = json_token(s, s->answer_id);
	cJSON_AddBoolToObject(o, "top_prediction", s->answer_text == NULL);
	cJSON_AddNumberToObject(o, "prob", s->streams[L].prob);
	cJSON_AddNumberToObject(o, "rank", s->streams[L].rank);
	cJSON_AddNumberToObject(o, "base_prob", s->base_final.prob);
	cJSON_AddNumberToObject(o, "base_rank", s->base_final.rank);
	cJSON_AddItemToObject(root, "answer", o);
	if (s->subject_pos >= 0) {
		o = json_token(s, s->ids[s->subject_pos]);
		cJSON_AddNumberToObject(o, "position", s->subject_pos);
		cJSON_AddItemToObject(root, "subject", o);
	}
	cJSON_AddBoolToObject(root, "final_mask", s->mask);
	cJSON_AddBoolToObject(root, "intercept_removed", s->intercept && s->intercept_vec != NULL);
	arr = cJSON_AddArrayToObject(root, "lens");
	for (int l = 0; l <= L; l++) {
		o = json_row(s, &s->streams[l], false);
		cJSON_AddStringToObject(o, "stream", l < L ? "resid_pre" : "resid_post");
		cJSON_AddNumberToObject(o, "layer", l < L ? l : L - 1);
		cJSON_AddItemToArray(arr, o);
	}
	o = cJSON_AddObjectToObject(root, "heads");
	cJSON_AddItemToObject(o, "attn_to_subject", json_grid(s->attn_subj, L, H));
	cJSON_AddItemToObject(o, "direct_to_answer", json_grid(s->direct, L, H));
	cJSON_AddItemToObject(o, "direct_to_subject", json_grid(s->direct_subj, L, H));
	o = cJSON_AddObjectToObject(root, "cursor");
	cJSON_AddNumberToObject(o, "layer", s->layer);
	cJSON_AddNumberToObject(o, "head", s->head);
	if (s->view_layer >= 0) {
		cJSON_AddItemToObject(o, "resid_mid", json_row(s, &s->view_mid, false));
		cJSON_AddItemToObject(o, "mlp_out", json_row(s, &s->view_mlp, true));
		cJSON_AddItemToObject(o, "head_out", json_row(s, &s->view_head, true));
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if ((f = fopen(path, "w")) == NULL) {
		rc = fl_error(cause, "export: %s: cannot create: %s", path, strerror(errno));
	} else {
		fputs(text, f);
		fputc('\n', f);
		if (fclose(f) != 0)
			rc = fl_error(cause, "export: %s: write error", path);
	}
	free(text);
	return rc;
}

int
session_subject_check(const ui_session *s, const char *text, char **cause)
{
	int first, last;

	if (!session_ready(s))
		return 0;
	return subject_find(s, text, &first, &last, cause);
}

int
session_answer_check(const ui_session *s, const char *text, char **cause)
{
	if (s->model == NULL)
		return 0;
	return answer_find(s, text, true, cause) < 0 ? -1 : 0;
}
