/*
 * fits.c - what is fitted on the loaded task: the MLP decomposition for
 * the pane, the final MLP's intercept (mitigation b), path patching. See
 * session.h.
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

/* ---- the task's analyses ------------------------------------------- */

int
session_load_task(ui_session *s, const char *name, char **cause)
{
	char *path = fl_task_path(name);
	fl_task *t = task_load(path, cause);

	free(path);
	if (t == NULL)
		return -1;
	sess_task_fits_clear(s);
	sess_eval_drop(s);
	task_free(s->task);
	s->task = t;
	s->task_pair = -1;
	/* The intercept went with the old task: re-run the last layer without. */
	return SESSION_TASK | SESSION_LAST;
}

void
sess_eval_drop(ui_session *s)
{
	if (s->eval_valid)
		eval_clear(&s->eval);
	s->eval_valid = false;
}

int
session_eval(ui_session *s, const fl_eval_opts *opts, int shots,
    const fl_progress *progress, char **cause)
{
	fl_eval_result r;
	int rc;

	if (s->model == NULL || s->task == NULL)
		return fl_error(cause, "eval: needs a model and a task");
	sess_eval_drop(s);
	s->eval_opts = *opts;
	rc = eval_task(&r, s->model, s->task, &s->eval_opts, shots, progress, cause);
	if (rc != 0)
		return rc;
	s->eval = r;
	s->eval_valid = true;
	return 0;
}

/* The task's prompts as the session fits and loads them. */
static fl_prompt_opts
task_opts(const ui_session *s)
{
	return (fl_prompt_opts){ TASK_TEMPLATES_MAIN, s->shots, 1, false, false,
	    false };
}

/* Whether task t can have k demonstrations: 0, or -1 with *cause. */
static int
shots_check(const fl_task *t, int k, char **cause)
{
	if (k > 0 && t->fewshot == NULL)
		return fl_error(cause, "shots: task %s has no fewshot_format", t->name);
	if (k > t->n_pairs - 1)
		return fl_error(cause, "shots: task %s has %d pairs: at most %d "
		    "demonstrations besides the prompt's own", t->name, t->n_pairs,
		    t->n_pairs - 1);
	return 0;
}

int
session_set_shots(ui_session *s, int shots, char **cause)
{
	bool on = s->intercept;

	if (shots < 0 || shots > 64)
		return fl_error(cause, "shots: expected 0 to 64, not %d", shots);
	if (s->task != NULL && shots_check(s->task, shots, cause) != 0)
		return -1;
	if (shots == s->shots)
		return 0;
	s->shots = shots;
	sess_eval_drop(s);
	if (s->task == NULL)
		return 0;
	sess_task_fits_clear(s);
	s->intercept = on;
	return SESSION_TASK | SESSION_LAST;
}

int
session_task_prompts(const ui_session *s)
{
	if (s->task == NULL)
		return 0;
	return s->task->n_pairs * s->task->n_templates[TASK_TEMPLATES_MAIN];
}

int
session_fit_prompts(const ui_session *s, int *pair)
{
	*pair = sess_task_pair_of(s);
	if (s->task == NULL)
		return 0;
	return session_task_prompts(s) - (*pair >= 0 ?
	    s->task->n_templates[TASK_TEMPLATES_MAIN] : 0);
}

int
session_task_prompt(ui_session *s, int n, char **cause)
{
	const fl_task *t = s->task;
	int total = session_task_prompts(s), pair, tmpl, off;
	fl_prompt_opts po;
	bool space;
	char *text, *subj;

	if (t == NULL)
		return fl_error(cause, "task: no task loaded");
	if (n < 0 || n >= total)
		return fl_error(cause, "task: %s has prompts 0 to %d, not %d", t->name,
		    total - 1, n);
	tmpl = n / t->n_pairs;
	pair = n % t->n_pairs;
	po = task_opts(s);
	if ((text = task_prompt_text(t, &po, tmpl, pair, pair, &off, &space,
	    cause)) == NULL)
		return -1;
	/* The subject as #POS would need the tokens: name it by its word. */
	subj = xstrdup(t->pairs[pair].subject);
	sess_set_str(&s->prompt, text);
	sess_set_str(&s->subject_text, subj);
	sess_set_str(&s->answer_text, t->pairs[pair].answer);
	s->answer_space = space;
	free(text);
	free(subj);
	return SESSION_RUN | SESSION_SUBJECT | SESSION_ANSWER;
}

/* The task's main prompts without those of pair `pair`: *use points into
 * ps. 0, or -1 with *cause. */
int
sess_task_fit_prompts(const ui_session *s, int pair, fl_prompt_set *ps, fl_prompt **use,
    int *k, bool corrupt, char **cause)
{
	fl_prompt_opts po = task_opts(s);

	po.corrupt = corrupt;
	if (task_prompts(ps, s->model, s->task, &po, cause) != 0)
		return -1;
	*use = task_prompts_except(ps, corrupt ? -1 : pair, k);
	return 0;
}

/* Fits layer l's MLP decomposition as factlens run --task --layer l does
 * (resid_pre as a regressor, the default ridge) on the task's prompts
 * without pair's. 0, FL_STOPPED (*d empty) or -1 with *cause. */
static int
decomp_fit_task(const ui_session *s, int l, int pair, const fl_progress *p,
    const char *what, fl_decomp *d, char **cause)
{
	fl_prompt_set ps;
	fl_prompt *use;
	fl_batch *b;
	int k, rc;

	memset(d, 0, sizeof *d);
	if (sess_task_fit_prompts(s, pair, &ps, &use, &k, false, cause) != 0)
		return -1;
	b = batch_new(s->model, 32, ps.max_len);
	if (p != NULL)
		b->progress = *p;
	b->what = what;
	b->total = k;
	rc = decomp_fit(d, b, use, k, l, true, -1, cause);
	batch_free(b);
	free(use);
	prompt_set_clear(&ps);
	return rc == FL_STOPPED ? FL_STOPPED : rc;
}

int
session_task_intercept(ui_session *s, const char *path, int l, const fl_progress *p,
    float *icpt, int *top, int *n_prompts, char **cause)
{
	const fl_model *m = s->model;
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 1, false, false, false };
	fl_prompt_set ps;
	fl_decomp d;
	fl_batch *b;
	fl_task *t;
	float *lg;
	char *what;
	int rc, V;

	if (m == NULL)
		return fl_error(cause, "intercepts: no model loaded");
	if (l < 0 || l >= m->cfg.n_layer)
		return fl_error(cause, "intercepts: layers are 0 to %d, not %d",
		    m->cfg.n_layer - 1, l);
	if ((t = task_load(path, cause)) == NULL)
		return -1;
	if (task_prompts(&ps, m, t, &po, cause) != 0) {
		task_free(t);
		return -1;
	}
	b = batch_new(m, 32, ps.max_len);
	if (p != NULL)
		b->progress = *p;
	what = xasprintf("fitting the intercept of %s", t->name);
	b->what = what;
	b->total = ps.n;
	memset(&d, 0, sizeof d);
	rc = decomp_fit(&d, b, ps.p, ps.n, l, true, -1, cause);
	batch_free(b);
	free(what);
	*n_prompts = ps.n;
	prompt_set_clear(&ps);
	task_free(t);
	if (rc != 0)
		return rc == FL_STOPPED ? FL_STOPPED : -1;
	memcpy(icpt, d.fit.intercept, (size_t)m->cfg.d_model * sizeof *icpt);
	decomp_clear(&d);
	V = m->cfg.n_vocab;
	lg = xmalloc((size_t)V * sizeof *lg);
	attrib_vocab(m, NULL, 0, ATTRIB_SITE_MLP(l), icpt, 1, lg);
	for (int k = 0; k < 3; k++) {
		top[k] = -1;
		for (int v = 0; v < V; v++) {
			bool taken = false;

			for (int j = 0; j < k; j++)
				taken |= top[j] == v;
			if (!taken && (top[k] < 0 || lg[v] > lg[top[k]]))
				top[k] = v;
		}
	}
	free(lg);
	return 0;
}

/* Layer l's decomposition for the cursor's pane, fitted once per task and
 * left-out pair. 0, FL_STOPPED or -1 with *cause. */
static int
decomp_ensure(ui_session *s, int l, const fl_progress *p, char **cause)
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
int
sess_task_pair_of(const ui_session *s)
{
	const fl_task *t = s->task;
	int off, len;

	if (t == NULL || s->prompt == NULL)
		return -1;
	if (s->subject_text != NULL && s->subject_text[0] != '#' &&
	    sess_find_last(s->prompt, s->subject_text, true) != NULL)
		return task_find_pair(t, s->subject_text);
	return task_find_subject(t, s->prompt, &off, &len);
}

/* The intercept of mitigation (b) is the last layer's decomposition
 * intercept, fitted without the prompt's pair. Before the prompt runs: when
 * the intercept is on and there is none for pair, fit it into *icpt (or
 * find it cached). 0 (*icpt holds a fit, or is empty when none was
 * needed), FL_STOPPED, or -1 with *cause. */
int
sess_intercept_prepare(ui_session *s, int pair, const fl_progress *p, fl_decomp *icpt,
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

/* Installs the fit sess_intercept_prepare made (or the cached one) as the
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
 * retried at this layer: the fit would fail again. FL_STOPPED when
 * Ctrl-C stopped the fit (the pane says so; moving to another layer and
 * back fits it again), else 0. */
int
sess_decomp_view(ui_session *s, const fl_progress *p)
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
		if (rc == FL_STOPPED)
			cause = xstrdup("the fit was cancelled (Ctrl-C); move to another "
			    "layer and back to fit it");
		s->decomp_error = cause != NULL ? cause : xstrdup("the fit failed");
		s->decomp_error_layer = l;
		return rc == FL_STOPPED ? rc : 0;
	}
	lg = xmalloc((size_t)V * sizeof *lg);
	attrib_vocab(m, NULL, 0, ATTRIB_SITE_MLP(l), s->decomp[l].fit.intercept, 1, lg);
	sess_row_stats(s, lg, true, &s->decomp_icpt);
	free(lg);
	s->recon_layer = l;
	return 0;
}

/* Path patching with this prompt as the only clean prompt and the task's
 * corrupted prompts as D_new. A failure is kept for the grid. 0, or
 * FL_STOPPED when Ctrl-C stopped it (nothing is kept). */
int
sess_patch_compute(ui_session *s, const fl_progress *p)
{
	const fl_model *m = s->model;
	fl_prompt clean = { 0 };
	fl_prompt_set ps = { 0 };
	fl_prompt *use = NULL;
	fl_patch_opts po = { -1, NULL, PATCH_RECV_RESID, 0, PATCH_METRIC_ANSWER,
	    NULL };
	fl_batch *b = NULL;
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
	if (sess_task_fit_prompts(s, s->task_pair, &ps, &use, &k, true, &cause) != 0)
		goto out;
	b = batch_new(m, 32, ps.max_len > clean.n ? ps.max_len : clean.n);
	if (p != NULL)
		b->progress = *p;
	b->what = "path patching";
	b->total = 1 + k + (long)m->cfg.n_layer;
	rc = patch_heads(&s->patch, b, &clean, 1, use, k, &po, &cause);
	s->patch_valid = rc == 0;
out:
	if (rc != 0 && rc != FL_STOPPED)
		s->patch_error = cause != NULL ? cause : xstrdup("path patching failed");
	else
		free(cause);
	batch_free(b);
	free(use);
	if (ps.p != NULL)
		prompt_set_clear(&ps);
	prompt_clear(&clean);
	return rc == FL_STOPPED ? FL_STOPPED : 0;
}

int
sess_task_patch_compute(ui_session *s, const fl_progress *p)
{
	const fl_model *m = s->model;
	fl_prompt_set clean = { 0 }, corrupt = { 0 };
	fl_prompt *uc = NULL, *ux = NULL;
	fl_patch_opts po = { -1, NULL, PATCH_RECV_RESID, 0, PATCH_METRIC_ANSWER,
	    NULL };
	fl_batch *b = NULL;
	char *cause = NULL;
	int nc = 0, nx = 0, rc = -1;

	free(s->task_patch_error);
	s->task_patch_error = NULL;
	if (session_task_prompts(s) > SESSION_TASK_MOVERS_MAX) {
		s->task_patch_error = xasprintf("task movers: %d prompts, more than %d "
		    "(factlens heads patches them all)", session_task_prompts(s),
		    SESSION_TASK_MOVERS_MAX);
		return 0;
	}
	if (sess_task_fit_prompts(s, -1, &clean, &uc, &nc, false, &cause) != 0 ||
	    sess_task_fit_prompts(s, -1, &corrupt, &ux, &nx, true, &cause) != 0)
		goto out;
	b = batch_new(m, 32, clean.max_len > corrupt.max_len ? clean.max_len :
	    corrupt.max_len);
	if (p != NULL)
		b->progress = *p;
	b->what = "path patching over the task";
	b->total = (long)nc + nx + (long)m->cfg.n_layer * nc;
	rc = patch_heads(&s->task_patch, b, uc, nc, ux, nx, &po, &cause);
	if (rc == 0) {
		s->task_patch_valid = true;
		s->task_mover = xcalloc((size_t)m->cfg.n_layer * m->cfg.n_head,
		    sizeof *s->task_mover);
		patch_movers(&s->task_patch, PATCH_MOVER_EFFECT, PATCH_MOVER_R,
		    s->task_mover);
	}
out:
	if (rc == FL_STOPPED)
		s->task_patch_error = xstrdup("task movers cancelled (Ctrl-C): :task "
		    "again to compute them");
	else if (rc != 0)
		s->task_patch_error = cause != NULL ? cause :
		    xstrdup("path patching over the task failed");
	if (rc == 0 || rc == FL_STOPPED)
		free(cause);
	batch_free(b);
	free(uc);
	free(ux);
	if (clean.p != NULL)
		prompt_set_clear(&clean);
	if (corrupt.p != NULL)
		prompt_set_clear(&corrupt);
	return rc == FL_STOPPED ? FL_STOPPED : 0;
}

/* What the task's analyses need after an update with these flags, the
 * prompt's left-out pair being `pair`: a new pair drops the fits of the old
 * one; the intercept fitted before the run is installed. */
int
sess_task_update(ui_session *s, int flags, int pair, fl_decomp *icpt)
{
	if (s->task == NULL)
		return flags;
	if (pair != s->task_pair) {
		bool on = s->intercept;

		sess_task_fits_clear(s);
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

/* The atp metric's corrupted prompt made from the task: the subject's text
 * replaced by the subject of the next pair after this prompt's own (or of
 * the first) whose prompt has as many tokens and whose answer starts with
 * another token. Heap text, its ids in *ids and the distractor in *dis; or
 * NULL with *why. */
static char *
atp_task_corrupt(const ui_session *s, int **ids, int *dis, char **why)
{
	const fl_model *m = s->model;
	const fl_task *t = s->task;
	int np = t->n_pairs, start = s->task_pair >= 0 ? s->task_pair : -1;
	int off = s->subject_first > 0 ? s->tok_end[s->subject_first - 1] : 0;
	int end = s->tok_end[s->subject_pos];

	/* the subject's tokens may carry the space before it */
	while (off < end && isspace((unsigned char)s->prompt[off]))
		off++;
	for (int k = 1; k <= np; k++) {
		int sp = (start + k + np) % np, n, ntok;
		char *text;

		if (sp == s->task_pair)
			continue;
		*dis = task_answer_token(m, t->pairs[sp].answer, s->answer_space, &ntok);
		if (*dis < 0 || *dis == s->answer_id)
			continue;
		text = xasprintf("%.*s%s%s", off, s->prompt, t->pairs[sp].subject,
		    s->prompt + end);
		n = model_encode(m, text, strlen(text), ids, NULL);
		if (n == s->n_tok)
			return text;
		free(*ids);
		*ids = NULL;
		free(text);
	}
	*why = xasprintf("attribution patching: no subject of %s gives a prompt "
	    "of %d tokens; give one with :corrupt TEXT", t->name, s->n_tok);
	return NULL;
}

/* The atp metric: AtP of every head from the corrupted prompt. A failure
 * is kept for the grid. */
void
sess_atp_compute(ui_session *s)
{
	const fl_model *m = s->model;
	fl_atp_opts o = { s->answer_id, ATP_DISTRACTOR_TOP, -1, false };
	char *text = NULL, *cause = NULL;
	int *ids = NULL, n;

	sess_atp_clear(s);
	if (s->corrupt_text != NULL) {
		text = xstrdup(s->corrupt_text);
		if ((n = model_encode(m, text, strlen(text), &ids, &cause)) < 0)
			goto fail;
		if (n != s->n_tok) {
			cause = xasprintf("attribution patching: the corrupted prompt is "
			    "%d tokens and the prompt %d; positions are paired, so they "
			    "need as many", n, s->n_tok);
			goto fail;
		}
	} else if (s->task == NULL || s->subject_pos < 0) {
		cause = xstrdup("attribution patching needs a corrupted prompt: "
		    ":corrupt TEXT, or a task (:task NAME) and a subject");
		goto fail;
	} else if ((text = atp_task_corrupt(s, &ids, &o.distractor, &cause)) == NULL)
		goto fail;
	if (atp_estimate(&s->atp, m, s->ids, ids, s->n_tok, &o, &cause) != 0) {
		atp_clear(&s->atp);
		goto fail;
	}
	s->n_passes += 2;
	s->atp_valid = true;
	s->atp_corrupt = text;
	{
		char *a = session_token_label(s, s->answer_id, " ", "\\n");
		char *d = s->atp.o.distractor >= 0 ? session_token_label(s,
		    s->atp.o.distractor, " ", "\\n") : xstrdup("the mean logit");
		size_t at = strlen(s->note);

		snprintf(s->note + at, sizeof s->note - at, "%satp from \"%s\": "
		    "logit('%s') - %s%s%s, %.2f clean, %.2f corrupted", at > 0 ? "; " :
		    "", text, a, s->atp.o.distractor >= 0 ? "logit('" : "", d,
		    s->atp.o.distractor >= 0 ? "')" : "", s->atp.clean, s->atp.corrupt);
		free(a);
		free(d);
	}
	free(ids);
	return;
fail:
	s->atp_error = cause != NULL ? cause : xstrdup("attribution patching failed");
	free(text);
	free(ids);
}
