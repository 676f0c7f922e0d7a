/*
 * flow.c - the flow pane's results: causal tracing's map of the prompt
 * (trace_run, cached per prompt, answer, subject and options), attention
 * knockout's curves (knock_run, one per block), the restored run of a cell
 * looked into, and the lens rows at the lens position. See session.h.
 */
#include "autoconfig.h"

#include "session/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/batch.h"
#include "analysis/lens.h"
#include "base/util.h"

#define FLOW_PER_BATCH 32	/* restored runs per pass: factlens trace's --batch */

static const char *view_names[] = { "off", "trace", "knockout" };

const char *
flow_view_name(ui_flow_view v)
{
	return v >= FLOW_OFF && v <= FLOW_KNOCKOUT ? view_names[v] : "?";
}

static void
entry_clear(ui_flow_entry *e)
{
	free(e->ids);
	trace_clear(&e->tr);
	memset(e, 0, sizeof *e);
}

void
sess_flow_clear(ui_session *s)
{
	for (int i = 0; i < s->flow_n; i++)
		entry_clear(&s->flow_cache[i]);
	s->flow_n = 0;
	s->flow_map = NULL;
	free(s->knock);
	s->knock = NULL;
	s->knock_valid = false;
	free(s->flow_error);
	s->flow_error = NULL;
	s->pos_at = -1;
}

/* The session's prompt as the analyses take it: its subject's tokens
 * [subject_first, subject_pos], its answer. */
static void
flow_prompt(const ui_session *s, fl_prompt *p)
{
	memset(p, 0, sizeof *p);
	p->text = s->prompt;
	p->ids = s->ids;
	p->n = s->n_tok;
	p->pair = p->subject_pair = p->ctx_pair = -1;
	p->ctx_answer = -1;
	p->answer = s->answer_id;
	p->answer_tokens = 1;
	p->subj_pos = s->subject_pos >= 0 ? s->subject_first : -1;
	p->subj_len = s->subject_pos >= 0 ? s->subject_pos - s->subject_first + 1 : 0;
	p->subject = s->subject_pos >= 0 ? s->ids[s->subject_first] : -1;
}

static fl_trace_opts
trace_opts_of(const ui_flow_opts *o)
{
	fl_trace_opts t = { o->kind, o->window, o->samples, 0, o->seed, NULL, false };

	return t;
}

static bool
opts_same(const ui_flow_opts *a, const ui_flow_opts *b)
{
	return a->kind == b->kind && (a->kind == TRACE_RESID || a->window == b->window) &&
	    a->samples == b->samples && a->seed == b->seed;
}

/* The cached map of this prompt, answer, subject and options, or NULL. */
static ui_flow_entry *
flow_lookup(ui_session *s, const fl_prompt *p, const ui_flow_opts *o)
{
	for (int i = 0; i < s->flow_n; i++) {
		ui_flow_entry *e = &s->flow_cache[i];

		if (e->n == p->n && e->answer == p->answer && e->subj_pos == p->subj_pos &&
		    e->subj_len == p->subj_len && opts_same(&e->o, o) &&
		    memcmp(e->ids, p->ids, (size_t)p->n * sizeof *p->ids) == 0)
			return e;
	}
	return NULL;
}

/* Traces the prompt into a new cache entry (the least recently shown one
 * makes room). 0, FL_STOPPED, or -1 with *cause. */
static int
flow_compute(ui_session *s, const fl_prompt *p, const fl_progress *prog,
    ui_flow_entry **out, char **cause)
{
	fl_trace_opts o = trace_opts_of(&s->flow_o);
	fl_batch *b = batch_new(s->model, FLOW_PER_BATCH, p->n);
	fl_trace tr;
	ui_flow_entry *e;
	double t0 = fl_now();
	int rc;

	if (prog != NULL)
		b->progress = *prog;
	b->what = "causal tracing";
	b->total = trace_units(s->model, &o, p->n);
	rc = trace_run(&tr, b, p, &o, cause);
	batch_free(b);
	s->ms_forward += 1000 * (fl_now() - t0);
	if (rc != 0)
		return rc;
	s->n_traces++;
	if (s->flow_n < SESSION_FLOW_CACHE)
		e = &s->flow_cache[s->flow_n++];
	else {
		e = &s->flow_cache[0];
		for (int i = 1; i < s->flow_n; i++)
			if (s->flow_cache[i].used < e->used)
				e = &s->flow_cache[i];
		entry_clear(e);
	}
	e->ids = xmalloc((size_t)p->n * sizeof *e->ids);
	memcpy(e->ids, p->ids, (size_t)p->n * sizeof *e->ids);
	e->n = p->n;
	e->answer = p->answer;
	e->subj_pos = p->subj_pos;
	e->subj_len = p->subj_len;
	e->o = s->flow_o;
	e->tr = tr;
	*out = e;
	return 0;
}

/* The three knockout curves at knock_window. 0, or -1 with *cause. */
static int
knock_compute(ui_session *s, const fl_prompt *p, char **cause)
{
	int L = session_layers(s), T = p->n;
	bool *keys = xcalloc((size_t)T, sizeof *keys);
	double t0 = fl_now();
	int rc = 0;

	if (s->knock == NULL)
		s->knock = xmalloc((size_t)KNOCK_BLOCK_COUNT * L * sizeof *s->knock);
	for (int k = 0; k < KNOCK_BLOCK_COUNT && rc == 0; k++) {
		double *row = s->knock + (size_t)k * L;

		if (knock_keys(p, (fl_knock_block)k, keys) != 0) {
			for (int l = 0; l < L; l++)
				row[l] = NAN;
			continue;
		}
		rc = knock_run(row, &s->knock_clean, s->run, s->model, p, keys,
		    s->knock_window, cause);
	}
	free(keys);
	s->ms_forward += 1000 * (fl_now() - t0);
	if (rc == 0) {
		s->knock_valid = true;
		s->n_knockouts++;
	}
	return rc;
}

static void
flow_error_set(ui_session *s, char *why)
{
	free(s->flow_error);
	s->flow_error = why;
}

int
sess_flow_update(ui_session *s, int flags, const fl_progress *prog)
{
	fl_prompt p;
	char *cause = NULL;
	int rc;

	if (s->lens_pos >= s->n_tok)
		s->lens_pos = -1;	/* a shorter prompt: back to the last */
	if (s->lens_pos >= 0 && (flags != 0 || s->pos_layer != s->layer ||
	    s->pos_at != s->lens_pos))
		sess_pos_rows(s, s->lens_pos);
	if (flags & (SESSION_RUN | SESSION_ANSWER | SESSION_SUBJECT)) {
		s->knock_valid = false;
		flow_error_set(s, NULL);
	}
	flow_prompt(s, &p);
	s->flow_map = NULL;
	if (s->flow == FLOW_TRACE) {
		ui_flow_entry *e = flow_lookup(s, &p, &s->flow_o);

		if (e == NULL && s->flow_error == NULL) {
			if (p.subj_pos < 0)
				flow_error_set(s, xstrdup("causal tracing corrupts the "
				    "subject: this prompt has none (:subject WORD)"));
			else if ((rc = flow_compute(s, &p, prog, &e, &cause)) == FL_STOPPED) {
				/* back to what the pane showed */
				s->flow = s->flow_shown;
				s->flow_o = s->flow_shown_o;
				e = s->flow == FLOW_TRACE ? flow_lookup(s, &p, &s->flow_o) : NULL;
				s->flow_map = e != NULL ? &e->tr : NULL;
				/* a new prompt's map stopped: not started again by
				 * the next key */
				if (s->flow == FLOW_TRACE && e == NULL)
					flow_error_set(s, xstrdup("causal tracing was cancelled "
					    "(:trace runs it again)"));
				return FL_STOPPED;
			} else if (rc != 0)
				flow_error_set(s, cause);
		}
		if (e != NULL) {
			e->used = ++s->flow_clock;
			s->flow_map = &e->tr;
		}
	} else if (s->flow == FLOW_KNOCKOUT && !s->knock_valid && s->flow_error == NULL &&
	    knock_compute(s, &p, &cause) != 0)
		flow_error_set(s, cause);
	s->flow_shown = s->flow;
	s->flow_shown_o = s->flow_o;
	return 0;
}

int
session_set_flow(ui_session *s, ui_flow_view v, const ui_flow_opts *o, char **cause)
{
	if (o != NULL) {
		if (o->kind < 0 || o->kind >= TRACE_KIND_COUNT)
			return fl_error(cause, "trace: the kind is resid, mlp or attn");
		if (o->window < 1 || o->window > 4096)
			return fl_error(cause, "trace: the window is 1 to 4096 layers, not %d",
			    o->window);
		if (o->samples < 1 || o->samples > 1000)
			return fl_error(cause, "trace: 1 to 1000 noise samples, not %d",
			    o->samples);
		/* asked for again (:trace): a cancelled or failed map is retried */
		flow_error_set(s, NULL);
		s->flow_o = *o;
	}
	if (v != s->flow)
		flow_error_set(s, NULL);
	if (s->flow != FLOW_OFF)
		s->flow_last = s->flow;
	s->flow = v;
	return SESSION_VIEW;
}

int
session_set_knockout(ui_session *s, int block, int window, char **cause)
{
	if (block < 0 || block >= KNOCK_BLOCK_COUNT)
		return fl_error(cause, "knockout: the block is subject, relation or other");
	if (window < 1 || window > 4096)
		return fl_error(cause, "knockout: the window is 1 to 4096 layers, not %d",
		    window);
	if (window != s->knock_window) {
		s->knock_valid = false;
		flow_error_set(s, NULL);
	}
	if (s->flow != FLOW_KNOCKOUT)
		flow_error_set(s, NULL);
	if (s->flow != FLOW_OFF)
		s->flow_last = s->flow;
	s->knock_block = block;
	s->knock_window = window;
	s->flow = FLOW_KNOCKOUT;
	return SESSION_VIEW;
}

int
session_set_lens_pos(ui_session *s, int pos, char **cause)
{
	if (pos < -1 || (s->n_tok > 0 && pos >= s->n_tok))
		return fl_error(cause, "position: %d is not in 0..%d", pos, s->n_tok - 1);
	s->lens_pos = pos;
	return SESSION_VIEW;
}

int
session_flow_cell(ui_session *s, int l, int t, const fl_progress *prog,
    ui_lens_row *rows, char **cause)
{
	const fl_model *m = s->model;
	int L = session_layers(s), V, rc;
	fl_prompt p;
	fl_trace_opts o;
	float *probs;

	if (!session_ready(s) || s->flow != FLOW_TRACE || s->flow_map == NULL)
		return fl_error(cause, "no causal trace is shown (:trace runs one)");
	V = m->cfg.n_vocab;
	flow_prompt(s, &p);
	o = trace_opts_of(&s->flow_o);
	probs = xmalloc((size_t)(L + 1) * V * sizeof *probs);
	rc = trace_cell_lens(probs, s->run, m, &p, &o, l, t, prog, cause);
	if (rc == 0) {
		/* each row's statistics from its log probabilities: their
		 * softmax is the mean probability itself */
		for (size_t i = 0; i < (size_t)(L + 1) * V; i++)
			probs[i] = logf(fmaxf(probs[i], 1e-30f));
		for (int k = 0; k <= L; k++)
			sess_row_stats(s, probs + (size_t)k * V, false, &rows[k]);
	}
	free(probs);
	return rc;
}
