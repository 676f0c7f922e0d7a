/*
 * passes.c - the passes: loading the model, running the prompt with its
 * cache, and re-running the last layer for a toggle. See session.h.
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

/* ---- passes ------------------------------------------------------ */

typedef struct {
	const fl_progress	*p;
	int			 L;
	const char		*what;
} progress_hook_ud;

static int
progress_hook(void *ud, fl_act *a)
{
	progress_hook_ud *u = ud;

	return fl_progress_report(u->p, u->what, a->layer + 1, u->L) ?
	    FL_STOPPED : FL_HOOK_CONTINUE;
}

int
sess_load_model(ui_session *s, const fl_progress *p, char **cause)
{
	fl_model *m;
	const char *base;

	if (s->model_dir == NULL)
		return fl_error(cause, "no model: use --model DIR or :model DIR");
	(void)fl_progress_report(p, "loading the model", 0, 0);
	if ((m = model_load(s->model_dir, &s->model_opts, cause)) == NULL)
		return -1;
	if (fl_progress_report(p, "loading the model", 0, 0)) {
		model_free(m);
		return FL_STOPPED;
	}
	{
		/* The intercept is fitted again on the new model, not dropped. */
		bool intercept = s->intercept;

		sess_model_clear(s);
		s->intercept = intercept && s->task != NULL;
	}
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

void
sess_clamp_cursor(ui_session *s)
{
	int L = session_layers(s), H = session_heads(s);

	if (s->layer >= L) s->layer = L - 1;
	if (s->layer < 0) s->layer = 0;
	if (s->head >= H) s->head = H - 1;
	if (s->head < 0) s->head = 0;
}

/* Re-runs the last layer from the cache with the current toggles. */
int
sess_rerun_last(ui_session *s, char **cause)
{
	fl_mitigation mit = { 0 };
	double t0 = fl_now();

	mit.mask = s->mask;
	mit.mask_heads = s->mask_heads;
	mit.intercept = s->intercept ? s->intercept_vec : NULL;
	mit.extra = s->n_edits > 0 ? xmalloc((size_t)s->n_edits * sizeof *mit.extra) :
	    NULL;
	mit.n_extra = s->n_edits > 0 ? sess_edit_hooks(s, (fl_hook *)mit.extra) : 0;
	if (mitigate_rerun(s->run, s->model, s->cache, &mit, cause) != 0) {
		free((fl_hook *)mit.extra);
		return -1;
	}
	free((fl_hook *)mit.extra);
	s->n_last_runs++;
	s->ms_forward += 1000 * (fl_now() - t0);
	return 0;
}

/* A choice the last prompt's results were made with, still set. */
static bool
carried(const char *kept, const char *now)
{
	return kept != NULL && now != NULL && strcmp(kept, now) == 0;
}

/* A neuron edit on the prompt that ran: the pass resumed at the edit's
 * layer from the cache, with every edit; the lens and the statistics
 * again (the answer stays). 0, or -1 with *cause. */
static int
sess_resume(ui_session *s, char **cause)
{
	const fl_model *m = s->model;
	int T = s->n_tok, L = m->cfg.n_layer, V = m->cfg.n_vocab;
	fl_hook *hooks = xmalloc((size_t)(s->n_edits + 1) * sizeof *hooks);
	fl_pass pass = { 0 };
	double t0 = fl_now();
	int rc;

	pass.hooks = hooks;
	pass.n_hooks = sess_edit_hooks(s, hooks);
	pass.cache = s->cache;
	pass.start_layer = s->resume_layer;
	pass.no_logits = true;
	s->resume_layer = -1;
	rc = run_forward(s->run, s->ids, &T, 1, &pass, cause);
	free(hooks);
	if (rc != 0)
		return -1;
	s->n_resumed++;
	s->ms_forward += 1000 * (fl_now() - t0);
	s->view_layer = -1;
	s->movers_valid = false;
	for (int l = 0; s->near_head != NULL && l < L; l++)
		s->near_head[l] = -1;
	sess_lens_product(s, LENS_STREAMS | LENS_VIEW);
	sess_stats_all(s);
	s->base_final = s->streams[L];
	memcpy(s->base_logits, s->stream_logits + (size_t)L * V,
	    (size_t)V * sizeof *s->base_logits);
	return 0;
}

int
sess_run_prompt(ui_session *s, const fl_progress *p, char **cause)
{
	const fl_model *m = s->model;
	int *ids = NULL, T, L = m->cfg.n_layer, H = m->cfg.n_head, V = m->cfg.n_vocab;
	fl_cache *cache;
	progress_hook_ud pu = { p, L, "running the prompt" };
	fl_hook *hooks;
	fl_pass pass = { 0 };
	int rc, subj = -1, subj_first = -1, ans = -1;
	double t0 = fl_now();

	if (s->resume_layer >= 0 && s->n_tok > 0 && s->cache != NULL &&
	    s->kept.prompt != NULL && s->prompt != NULL &&
	    strcmp(s->kept.prompt, s->prompt) == 0)
		return sess_resume(s, cause);
	s->resume_layer = -1;

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
	hooks = xmalloc((size_t)(s->n_edits + 1) * sizeof *hooks);
	hooks[0] = (fl_hook){ HOOK_RESID_POST, -1, progress_hook, &pu };
	pass.hooks = hooks;
	pass.n_hooks = 1 + sess_edit_hooks(s, hooks + 1);
	pass.cache = cache;
	pass.no_logits = true;
	rc = run_forward(s->run, ids, &T, 1, &pass, cause);
	free(hooks);
	if (rc != 0) {
		s->spare_cache = cache;
		free(ids);
		return rc == FL_STOPPED ? FL_STOPPED : -1;
	}
	s->n_passes++;
	s->ms_forward += 1000 * (fl_now() - t0);

	/* The pass succeeded: the new results replace the old. */
	s->spare_cache = s->cache;
	s->cache = NULL;
	sess_results_clear(s);
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
	/* one buffer, written in place by sess_lens_product: a new one per prompt
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

	/* The subject and answer the user named for an earlier prompt may not
	 * fit this one: kept when they do, dropped when not, and either way
	 * said (s->note). Those set with this prompt (a task's) are not news. */
	if (s->subject_text != NULL) {
		bool fits = sess_subject_find(s, s->subject_text, &subj_first, &subj,
		    NULL) == 0;

		if (carried(s->kept.subject_text, s->subject_text))
			snprintf(s->note, sizeof s->note, "subject '%s' %s", s->subject_text,
			    fits ? "kept from the last prompt" :
			    "is not in this prompt: guessed");
		if (!fits)
			sess_set_str(&s->subject_text, NULL);
	}
	if (s->answer_pin >= 0)
		ans = s->answer_pin;	/* B: A's answer */
	else if (s->answer_text != NULL) {
		size_t n = strlen(s->note);

		ans = sess_answer_find(s, s->answer_text, s->answer_space, NULL);
		if (carried(s->kept.answer_text, s->answer_text))
			snprintf(s->note + n, sizeof s->note - n, "%sanswer '%s' %s",
			    n > 0 ? "; " : "", s->answer_text, ans >= 0 ?
			    "kept (:answer top for the top prediction)" :
			    "cannot be scored: the top prediction");
		if (ans < 0)
			sess_set_str(&s->answer_text, NULL);
	}
	s->subject_guessed = s->subject_text == NULL;
	if (s->subject_text != NULL) {
		s->subject_pos = subj;
		s->subject_first = subj_first;
	} else
		s->subject_pos = sess_subject_guess(s, &s->subject_first);

	sess_lens_product(s, LENS_STREAMS | LENS_VIEW);
	if (ans < 0) {
		int top;

		lens_topk(s->stream_logits + (size_t)L * V, V, 1, &top, NULL);
		ans = top;
	}
	s->answer_id = ans;
	sess_stats_all(s);
	s->base_final = s->streams[L];
	memcpy(s->base_logits, s->stream_logits + (size_t)L * V, (size_t)V * sizeof *s->base_logits);
	return 0;
}
