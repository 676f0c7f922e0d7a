/*
 * session.c - the session's life (new, free, the setters) and
 * session_update, which recomputes what the flags name and rolls the
 * choices back when work is stopped. See session.h.
 */
#include "autoconfig.h"

#include "session/internal.h"

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
	[METRIC_ATP] = { "atp", "AtP estimate", true },
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
	s->icpt_layer = -1;
	s->resume_layer = -1;
	s->kept.answer_space = true;
	s->answer_pin = -1;
	s->flow_o = (ui_flow_opts){ TRACE_RESID, TRACE_WINDOW, TRACE_SAMPLES, 1 };
	s->flow_shown_o = s->flow_o;
	s->knock_window = 1;
	s->lens_pos = -1;
	s->pos_at = -1;
	return s;
}

static void choices_clear(ui_choices *k);

void
sess_atp_clear(ui_session *s)
{
	if (s->atp_valid)
		atp_clear(&s->atp);
	s->atp_valid = false;
	free(s->atp_error);
	free(s->atp_corrupt);
	free(s->atp_exact);
	s->atp_error = s->atp_corrupt = NULL;
	s->atp_exact = NULL;
}

int
session_set_corrupt(ui_session *s, const char *text)
{
	sess_set_str(&s->corrupt_text, text);
	sess_atp_clear(s);
	return SESSION_GRID;
}

int
session_atp_exact(ui_session *s, char **cause)
{
	int H = session_heads(s), i = s->layer * H + s->head;

	if (!s->atp_valid)
		return fl_error(cause, "the exact patch goes beside the atp metric's "
		    "estimate: :metric atp first%s%s", s->atp_error != NULL ? " (" : "",
		    s->atp_error != NULL ? s->atp_error : "");
	if (s->atp_exact == NULL) {
		int n = session_layers(s) * H;

		s->atp_exact = xmalloc((size_t)n * sizeof *s->atp_exact);
		for (int k = 0; k < n; k++)
			s->atp_exact[k] = NAN;
	}
	if (atp_exact_head(&s->atp, s->layer, s->head, &s->atp_exact[i], cause) != 0)
		return -1;
	s->n_passes++;
	return SESSION_GRID;
}

/* Drops the results of the last run (the choices stay). */
void
sess_results_clear(ui_session *s)
{
	sess_atp_clear(s);
	neurons_clear(&s->neurons);
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
void
sess_task_fits_clear(ui_session *s)
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
	free(s->icpt_mean_act);
	s->icpt_mean_act = NULL;
	s->icpt_layer = -1;
	if (s->patch_valid)
		patch_clear(&s->patch);
	s->patch_valid = false;
	free(s->patch_error);
	s->patch_error = NULL;
	if (s->task_patch_valid)
		patch_clear(&s->task_patch);
	s->task_patch_valid = false;
	free(s->task_patch_error);
	s->task_patch_error = NULL;
	free(s->task_mover);
	s->task_mover = NULL;
}

void
sess_model_clear(ui_session *s)
{
	sess_compare_drop(s);		/* B runs on this model */
	sess_task_fits_clear(s);	/* while the model still gives L */
	sess_value_top_clear(s);
	sess_neurons_clear(s);
	free(s->edits);
	s->edits = NULL;
	s->n_edits = 0;
	s->resume_layer = -1;
	sess_eval_drop(s);
	sess_flow_clear(s);
	sess_results_clear(s);
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
	if (!s->model_borrowed) {
		model_free(s->model);
		free(s->unembed_mean);
	}
	s->model = NULL;
	s->unembed_mean = NULL;
	free(s->mask_heads);	/* of the old model's heads */
	s->mask_heads = NULL;
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
	sess_model_clear(s);
	task_free(s->task);
	free(s->model_dir);
	free(s->model_name);
	free(s->prompt);
	free(s->answer_text);
	free(s->subject_text);
	free(s->compare_prompt);
	free(s->corrupt_text);
	choices_clear(&s->kept);
	free(s);
}

/* Copies before it frees: src may be *dst itself. */
void
sess_set_str(char **dst, const char *src)
{
	char *copy = src != NULL ? xstrdup(src) : NULL;

	free(*dst);
	*dst = copy;
}

int
session_set_model(ui_session *s, const char *dir)
{
	sess_set_str(&s->model_dir, dir);
	return SESSION_LOAD | SESSION_RUN;
}

int
session_set_prompt(ui_session *s, const char *prompt)
{
	sess_set_str(&s->prompt, prompt);
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
	sess_set_str(&s->answer_text, text);
	s->answer_space = space;
	return SESSION_ANSWER;
}

int
session_set_subject(ui_session *s, const char *text)
{
	sess_set_str(&s->subject_text, text);
	return SESSION_SUBJECT;
}

/* ---- the choices a cancelled update goes back to ------------------ */

static void
choices_save(ui_session *s)
{
	ui_choices *k = &s->kept;

	sess_set_str(&k->model_dir, s->model_dir);
	sess_set_str(&k->prompt, s->prompt);
	sess_set_str(&k->answer_text, s->answer_text);
	sess_set_str(&k->subject_text, s->subject_text);
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
 * still show: after stopped work (session_cancel) and after an input the
 * results could not be made from (a prompt too long, a model that does not
 * load), so that the screen never shows a choice beside older results. */
static void
choices_restore(ui_session *s)
{
	const ui_choices *k = &s->kept;

	sess_set_str(&s->model_dir, k->model_dir);
	sess_set_str(&s->prompt, k->prompt);
	sess_set_str(&s->answer_text, k->answer_text);
	sess_set_str(&s->subject_text, k->subject_text);
	s->answer_space = k->answer_space;
	s->mask = k->mask;
	s->intercept = k->intercept && s->intercept_vec != NULL;
	s->layer = k->layer;
	s->head = k->head;
	s->metric = k->metric;
}

/* what names the work that was stopped. */
static int
session_cancel(ui_session *s, const char *what)
{
	choices_restore(s);
	s->cancelled = what;
	return FL_STOPPED;
}

int
session_update(ui_session *s, int flags, const fl_progress *p, char **cause)
{
	fl_decomp icpt = { 0 };
	char *icpt_error = NULL, *cmp_error = NULL;
	int rc = 0, pair;
	double t0 = fl_now();

	s->ms_forward = s->ms_lens = 0;
	s->cancelled = NULL;
	s->note[0] = '\0';
	if (flags & SESSION_LOAD) {
		if ((rc = sess_load_model(s, p, cause)) == FL_STOPPED)
			return session_cancel(s, "model load");
		if (rc != 0) {
			if (s->model != NULL)
				choices_restore(s);	/* the old model stays */
			return rc;
		}
		if (s->prompt != NULL && s->prompt[0] != '\0')
			flags |= SESSION_RUN;
		else
			flags &= ~SESSION_RUN;
	}
	if (s->model == NULL)
		return flags & ~SESSION_VIEW ? fl_error(cause, "no model loaded: use "
		    "--model DIR or :model DIR") : 0;
	sess_clamp_cursor(s);

	/* The long work the new results need comes first, before anything
	 * replaces the old ones: stopped here, nothing has changed. A failed
	 * intercept fit turns the intercept off, and is reported once the
	 * rest is up to date. */
	pair = sess_task_pair_of(s);
	rc = sess_intercept_prepare(s, pair, p, &icpt, &icpt_error);
	if (rc == FL_STOPPED)
		return session_cancel(s, "intercept fit");
	if (rc != 0)
		s->intercept = false;
	if (flags & SESSION_RUN) {
		if ((rc = sess_run_prompt(s, p, cause)) != 0) {
			decomp_clear(&icpt);
			free(icpt_error);
			if (rc == FL_STOPPED)
				return session_cancel(s, "prompt run");
			if (s->n_tok > 0)
				choices_restore(s);	/* the old prompt's results stay */
			return rc;
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
		    sess_subject_find(s, s->subject_text, &first, &last, cause) != 0)
			goto out;
		s->subject_guessed = s->subject_text == NULL;
		if (s->subject_text != NULL) {
			s->subject_pos = last;
			s->subject_first = first;
		} else
			s->subject_pos = sess_subject_guess(s, &s->subject_first);
		flags |= SESSION_GRID;
	}
	if (flags & SESSION_ANSWER) {
		int a;

		if (s->answer_pin >= 0)
			a = s->answer_pin;	/* B: A's answer */
		else if (s->answer_text != NULL) {
			if ((a = sess_answer_find(s, s->answer_text, s->answer_space, cause)) < 0)
				goto out;
		} else {
			/* The top prediction without interventions. */
			a = s->base_final.n_top > 0 ? s->base_final.top_ids[0] : 0;
		}
		s->answer_id = a;
		flags |= SESSION_GRID;
	}
	flags = sess_task_update(s, flags, pair, &icpt);
	if (flags & SESSION_LAST) {
		if (sess_rerun_last(s, cause) != 0)
			goto out;
		sess_lens_product(s, LENS_FINAL | LENS_VIEW);
		flags |= SESSION_GRID;
	} else if ((flags & SESSION_VIEW) &&
	    (s->view_layer != s->layer || s->view_head_h != s->head)) {
		sess_lens_product(s, LENS_VIEW);
	}
	if (flags & SESSION_ANSWER) {
		sess_stats_all(s);
		sess_row_stats(s, s->base_logits, false, &s->base_final);
	} else if (flags & SESSION_LAST)
		sess_stats_rows(s, STATS_FINAL | STATS_VIEW);
	else if (flags & SESSION_VIEW)
		sess_stats_rows(s, STATS_VIEW);
	/* Mover scores depend on the cache and the subject, not the answer. */
	if (flags & (SESSION_RUN | SESSION_LAST | SESSION_SUBJECT))
		s->movers_valid = false;
	/* Work on demand for a pane, after the results: stopped, the grid goes
	 * back to the metric it showed, the MLP pane says so. */
	if (flags & (SESSION_ANSWER | SESSION_SUBJECT | SESSION_TASK))
		sess_atp_clear(s);
	if (s->metric == METRIC_ATP && !s->atp_valid && s->atp_error == NULL) {
		sess_atp_compute(s);
		flags |= SESSION_GRID;
	}
	if (s->metric == METRIC_PATCH && !s->patch_valid && s->patch_error == NULL) {
		if (sess_patch_compute(s, p) == FL_STOPPED) {
			s->metric = s->kept.metric != METRIC_PATCH ? s->kept.metric :
			    METRIC_ATTN_SUBJECT;
			s->cancelled = "path patching";
		}
		flags |= SESSION_GRID;
	}
	if (s->task != NULL && !s->task_patch_valid && s->task_patch_error == NULL &&
	    s->cancelled == NULL) {
		if (sess_task_patch_compute(s, p) == FL_STOPPED)
			s->cancelled = "path patching over the task";
		flags |= SESSION_GRID;
	}
	if (flags & (SESSION_GRID | SESSION_LAST | SESSION_SUBJECT | SESSION_TASK))
		sess_grid_compute(s);
	if (s->task != NULL && s->recon_layer != s->layer && s->cancelled == NULL &&
	    !(s->decomp_error != NULL && s->decomp_error_layer == s->layer) &&
	    sess_decomp_view(s, p) == FL_STOPPED)
		s->cancelled = "MLP decomposition fit";
	/* B after A: it takes A's answer and is compared with A's grid */
	if (s->cancelled == NULL && (rc = sess_compare_sync(s, p, &cmp_error)) != 0) {
		if (rc == FL_STOPPED)
			s->cancelled = "comparison";
	}
	if (s->neurons_on && s->cancelled == NULL && (flags || s->neurons.act == NULL) &&
	    sess_neurons_view(s, p) == FL_STOPPED)
		s->cancelled = "mean neuron activations";
	if (s->cancelled == NULL && sess_flow_update(s, flags, p) == FL_STOPPED)
		s->cancelled = "causal tracing";
done:
	choices_save(s);
	s->ms_update = 1000 * (fl_now() - t0);
	rc = s->cancelled != NULL ? FL_STOPPED : 0;
out:
	decomp_clear(&icpt);
	if (rc >= 0 && icpt_error != NULL) {
		fl_error(cause, "%s", icpt_error);
		rc = -1;
	} else if (rc >= 0 && cmp_error != NULL) {
		fl_error(cause, "%s", cmp_error);
		rc = -1;
	}
	free(icpt_error);
	free(cmp_error);
	return rc;
}
