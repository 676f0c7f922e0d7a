/* session.c - see session.h. */
#include "session.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "analysis/movers.h"
#include "engine/kernels.h"
#include "engine/util.h"

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
	return s;
}

/* Drops the results of the last run (the choices stay). */
static void
results_clear(ui_session *s)
{
	free(s->ids);
	free(s->tok_end);
	cache_free(s->cache);
	free(s->stream_logits);
	free(s->streams);
	free(s->view_logits);
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

static void
model_clear(ui_session *s)
{
	results_clear(s);
	run_free(s->run);
	s->run = NULL;
	s->run_rows = 0;
	model_free(s->model);
	s->model = NULL;
	free(s->unembed_mean);
	s->unembed_mean = NULL;
	free(s->intercept_vec);
	s->intercept_vec = NULL;
	s->intercept = false;
}

void
session_free(ui_session *s)
{
	if (s == NULL)
		return;
	model_clear(s);
	free(s->model_dir);
	free(s->model_name);
	free(s->prompt);
	free(s->answer_text);
	free(s->subject_text);
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
	set_str(&s->answer_text, text);
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
answer_find(const ui_session *s, const char *text, char **cause)
{
	char *t = text[0] == ' ' ? xstrdup(text) : xasprintf(" %s", text);
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

	r->n_top = lens_topk(lg, V, k, r->top_ids, component ? NULL : r->top_val);
	if (component)
		for (int i = 0; i < r->n_top; i++)
			r->top_val[i] = lg[r->top_ids[i]];
	if (a >= 0) {
		r->prob = component ? NAN : lens_prob_of(lg, V, a);
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

/* A component's vector as the final LN sees it inside the sum: centred and
 * scaled by the full residual's final-LN scale at the last position. */
static void
component_prep(const ui_session *s, const float *x, float *out)
{
	const fl_model *m = s->model;
	int D = m->cfg.d_model;
	float mean = (float)row_mean(x, D), scale = s->cache->lnf_scale[s->n_tok - 1];

	for (int d = 0; d < D; d++)
		out[d] = (x[d] - mean) / scale * m->lnf_w[d];
}

static void
stream_prep(const ui_session *s, const float *x, float *out)
{
	const fl_model *m = s->model;
	float mean, scale;

	kern_ln_stats(&mean, &scale, x, 1, m->cfg.d_model, m->cfg.ln_eps);
	kern_ln_apply(out, x, &mean, &scale, m->lnf_w, m->lnf_b, 1, m->cfg.d_model);
}

static const float *
at_last(const ui_session *s, const float *base, int layer)
{
	int T = s->n_tok, D = s->model->cfg.d_model;

	return base + ((size_t)layer * T + (T - 1)) * D;
}

enum { LENS_STREAMS = 1, LENS_FINAL = 2, LENS_VIEW = 4 };

/* Reads the unembedding once for every row that `what` asks for. */
static void
lens_product(ui_session *s, int what)
{
	const fl_model *m = s->model;
	int L = m->cfg.n_layer, D = m->cfg.d_model, V = m->cfg.n_vocab;
	int n = 0, first = (what & LENS_STREAMS) ? 0 : L, n_stream = 0;
	float *x, *out;
	double t0 = fl_now();

	if (what & (LENS_STREAMS | LENS_FINAL))
		n_stream = L + 1 - first;
	x = xmalloc((size_t)(n_stream + 3) * D * sizeof *x);
	for (int l = first; l <= L && n_stream > 0; l++)
		stream_prep(s, at_last(s, s->cache->resid_pre, l), x + (size_t)n++ * D);
	if (what & LENS_VIEW) {
		int vl = s->layer, H = m->cfg.n_head;
		float *head = xmalloc((size_t)D * sizeof *head);

		(void)H;
		stream_prep(s, at_last(s, s->cache->resid_mid, vl), x + (size_t)n++ * D);
		component_prep(s, at_last(s, s->cache->mlp_out, vl), x + (size_t)n++ * D);
		model_head_result(m, vl, s->head, at_last(s, s->cache->z, vl), head);
		component_prep(s, head, x + (size_t)n++ * D);
		free(head);
	}
	out = xmalloc((size_t)n * V * sizeof *out);
	kern_unembed(out, x, m->unembed, n, D, V);
	memcpy(s->stream_logits + (size_t)first * V, out, (size_t)n_stream * V * sizeof *out);
	if (what & LENS_VIEW) {
		memcpy(s->view_logits, out + (size_t)n_stream * V, 3 * (size_t)V * sizeof *out);
		s->view_layer = s->layer;
		s->view_head_l = s->layer;
		s->view_head_h = s->head;
	}
	free(x);
	free(out);
	s->ms_lens += 1000 * (fl_now() - t0);
}

enum { STATS_STREAMS = 1, STATS_FINAL = 2, STATS_VIEW = 4, STATS_ALL = 7 };

/* Statistics of the rows `what` names: the streams (or only the final
 * one) and the cursor's view rows. */
static void
stats_rows(ui_session *s, int what)
{
	int L = s->model->cfg.n_layer, V = s->model->cfg.n_vocab;

	for (int l = (what & STATS_STREAMS) ? 0 : L; l <= L && (what & (STATS_STREAMS | STATS_FINAL)); l++)
		row_stats(s, s->stream_logits + (size_t)l * V, false, &s->streams[l]);
	if ((what & STATS_VIEW) && s->view_layer >= 0) {
		const float *v = s->view_logits;

		row_stats(s, v, false, &s->view_mid);
		row_stats(s, v + V, true, &s->view_mlp);
		row_stats(s, v + 2 * (size_t)V, true, &s->view_head);
		s->mlp_direct = s->answer_id >= 0 ?
		    (float)(v[V + s->answer_id] - row_mean(v + V, V)) : NAN;
		s->head_direct = s->answer_id >= 0 ?
		    (float)(v[2 * V + s->answer_id] - row_mean(v + 2 * V, V)) : NAN;
	}
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
	int D = m->cfg.d_model;
	bool have_direct = s->answer_id >= 0;
	bool have_subj = s->subject_pos >= 0 && s->subject_first >= 0 &&
	    s->subject_pos < T - 1;

	/* The same numbers as attrib_direct's to_diff, with the mean
	 * unembedding computed once per model rather than once per call. */
	float *g = xmalloc((size_t)D * sizeof *g), *res = xmalloc((size_t)n * D * sizeof *res);

	if (have_direct) {
		const float *u = m->unembed + (size_t)s->answer_id * D;

		for (int d = 0; d < D; d++)
			g[d] = m->lnf_w[d] * (u[d] - s->unembed_mean[d]);
		for (int l = 0; l < L; l++)
			for (int h = 0; h < H; h++)
				model_head_result(m, l, h, at_last(s, s->cache->z, l),
				    res + (size_t)(l * H + h) * D);
	}
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
		s->direct[i] = have_direct ? (float)attrib_project(res + (size_t)i * D, g, D,
		    s->cache->lnf_scale[T - 1]) : NAN;
		if (!s->movers_valid) {
			s->mover[i] = s->direct_subj[i] = NAN;
			s->is_mover[i] = false;
		}
		switch (s->metric) {
		case METRIC_ATTN_SUBJECT: s->grid[i] = s->attn_subj[i]; break;
		case METRIC_DIRECT: s->grid[i] = s->direct[i]; break;
		case METRIC_MOVER: s->grid[i] = s->mover[i]; break;
		default: s->grid[i] = NAN; break;	/* ANALYSIS HOOK: patch_heads */
		}
	}
	free(res);
	free(g);
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
	int D;

	if (s->model_dir == NULL)
		return fl_error(cause, "no model: use --model DIR or :model DIR");
	if (p != NULL && p->report != NULL)
		p->report(p->ud, "loading model", 0, 1);
	if ((m = model_load(s->model_dir, cause)) == NULL)
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
	D = m->cfg.d_model;
	s->unembed_mean = xcalloc((size_t)D, sizeof *s->unembed_mean);
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
	progress_hook_ud pu = { p, L, "forward" };
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
	cache = cache_new(m, T, FL_CACHE_PATTERN);
	pass.hooks = &hook;
	pass.n_hooks = 1;
	pass.cache = cache;
	pass.no_logits = true;
	rc = run_forward(s->run, ids, &T, 1, &pass, cause);
	if (rc != 0) {
		cache_free(cache);
		free(ids);
		return rc == FL_HOOK_STOP ? SESSION_CANCELLED : -1;
	}
	s->ms_forward += 1000 * (fl_now() - t0);

	/* The pass succeeded: the new results replace the old. */
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
	s->stream_logits = xmalloc((size_t)(L + 1) * V * sizeof *s->stream_logits);
	s->view_logits = xmalloc(3 * (size_t)V * sizeof *s->view_logits);
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
	if (s->answer_text != NULL && (ans = answer_find(s, s->answer_text, NULL)) < 0)
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

int
session_update(ui_session *s, int flags, const ui_progress *p, char **cause)
{
	int rc = 0;
	double t0 = fl_now();

	s->ms_forward = s->ms_lens = 0;
	if (flags & SESSION_LOAD) {
		if ((rc = load_model(s, p, cause)) != 0)
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
	if (flags & SESSION_RUN) {
		if ((rc = run_prompt(s, p, cause)) != 0)
			return rc;
		flags |= SESSION_GRID;
		if (s->mask || (s->intercept && s->intercept_vec != NULL))
			flags |= SESSION_LAST;
	}
	if (!session_ready(s))
		return 0;
	if (flags & SESSION_SUBJECT) {
		int first = -1, last = -1;

		if (s->subject_text != NULL &&
		    subject_find(s, s->subject_text, &first, &last, cause) != 0)
			return -1;
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
			if ((a = answer_find(s, s->answer_text, cause)) < 0)
				return -1;
		} else {
			/* The top prediction without interventions. */
			a = s->base_final.n_top > 0 ? s->base_final.top_ids[0] : 0;
		}
		s->answer_id = a;
		flags |= SESSION_GRID;
	}
	if (flags & SESSION_LAST) {
		if (rerun_last(s, cause) != 0)
			return -1;
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
	if (flags & (SESSION_GRID | SESSION_LAST | SESSION_SUBJECT))
		grid_compute(s);
	s->ms_update = 1000 * (fl_now() - t0);
	return 0;
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
	return answer_find(s, text, cause) < 0 ? -1 : 0;
}
