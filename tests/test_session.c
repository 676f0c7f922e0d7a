/*
 * test_session.c - the explorer's state without a terminal: each update
 * does what its flags need and no more (the work counters of session.h),
 * what it computes equals a session that made the same choices from the
 * start, and stopped work leaves the results and the choices as they were.
 * Runs on the gpt2-f32 fixture and the tiny task.
 */
#include "autoconfig.h"

#include <string.h>

#include "check.h"
#include "fx.h"
#include "session/session.h"

/* A progress callback that stops at its first call. */
static bool
stop_now(void *ud, const char *what, long done, long total)
{
	int *calls = ud;

	(void)what;
	(void)done;
	(void)total;
	(*calls)++;
	return true;
}

typedef struct {
	long	passes, last_runs, lens;
} work;

static work
work_of(const ui_session *s)
{
	return (work){ s->n_passes, s->n_last_runs, s->n_lens_products };
}

/* Checks what an update did against what it should have: passes, last
 * layer re-runs, lens products (each -1: any). */
static void
check_work(const char *what, work before, const ui_session *s, long passes,
    long last_runs, long lens)
{
	work w = work_of(s);

	check((passes < 0 || w.passes - before.passes == passes) &&
	    (last_runs < 0 || w.last_runs - before.last_runs == last_runs) &&
	    (lens < 0 || w.lens - before.lens == lens),
	    "%s: %ld passes, %ld last-layer runs, %ld lens products (want %ld, %ld, %ld)",
	    what, w.passes - before.passes, w.last_runs - before.last_runs,
	    w.lens - before.lens, passes, last_runs, lens);
}

static int
update(ui_session *s, int flags, const char *what)
{
	char *cause = NULL;
	int rc = session_update(s, flags, NULL, &cause);

	if (rc != 0) {
		check(0, "%s: update (%s)", what, cause != NULL ? cause : "stopped");
		free(cause);
	}
	return rc;
}

/* A session that made these choices before its first update. */
static ui_session *
fresh(const char *dir, const char *task, int prompt_n, int layer, int head, bool mask)
{
	ui_session *s = session_new();
	char *cause = NULL;
	int flags = session_set_model(s, dir);

	if (session_load_task(s, task, &cause) < 0) {
		check(0, "fresh session: task loads (%s)", cause);
		free(cause);
	}
	s->layer = layer;
	s->head = head;
	s->mask = mask;
	if (update(s, flags, "fresh session: load") != 0)
		return s;
	flags = session_task_prompt(s, prompt_n, &cause);
	if (flags < 0) {
		check(0, "fresh session: task prompt (%s)", cause);
		free(cause);
		return s;
	}
	update(s, flags, "fresh session: run");
	return s;
}

static bool
row_same(const ui_lens_row *a, const ui_lens_row *b)
{
	/* a component's rows have no probability (NAN) */
	bool same = a->rank == b->rank && a->n_top == b->n_top &&
	    (isnan(a->prob) ? isnan(b->prob) : fabs(a->prob - b->prob) <= 1e-6) &&
	    fabsf(a->answer_logit - b->answer_logit) <= 1e-4f;

	for (int i = 0; same && i < a->n_top; i++)
		same = a->top_ids[i] == b->top_ids[i];
	if (!same)
		printf("# rows differ: rank %d/%d, p %.9f/%.9f, logit %.6f/%.6f, top %d/%d\n",
		    a->rank, b->rank, a->prob, b->prob, a->answer_logit, b->answer_logit,
		    a->n_top > 0 ? a->top_ids[0] : -1, b->n_top > 0 ? b->top_ids[0] : -1);
	return same;
}

static bool
streams_same(const ui_session *a, const ui_session *b)
{
	int L = session_layers(a);

	if (L != session_layers(b) || a->n_tok != b->n_tok || a->answer_id != b->answer_id) {
		printf("# sessions differ: %d/%d layers, %d/%d tokens, answer %d/%d\n", L,
		    session_layers(b), a->n_tok, b->n_tok, a->answer_id, b->answer_id);
		return false;
	}
	for (int l = 0; l <= L; l++)
		if (!row_same(&a->streams[l], &b->streams[l]))
			return false;
	return true;
}

static bool
view_same(const ui_session *a, const ui_session *b)
{
	return row_same(&a->view_mid, &b->view_mid) && row_same(&a->view_mlp, &b->view_mlp) &&
	    row_same(&a->view_head, &b->view_head);
}

int
main(void)
{
	char *dir = fl_path_join(fx_root(), "gpt2-f32");
	char *other = fl_path_join(fx_root(), "gpt2-prefixed");
	char *task = fl_path_join(fx_root(), "../tasks/tiny.json");
	ui_session *s = session_new(), *f;
	char *cause = NULL, *kept;
	int flags, rc, calls = 0, n_tok;
	fl_progress stopper = { stop_now, &calls };
	work w;

	/* ---- the setters name what went stale ---- */
	check(session_set_model(s, dir) == (SESSION_LOAD | SESSION_RUN),
	    "set_model: SESSION_LOAD | SESSION_RUN");
	check(session_load_task(s, task, &cause) == (SESSION_TASK | SESSION_LAST),
	    "load_task: SESSION_TASK | SESSION_LAST (%s)", cause != NULL ? cause : "");
	w = work_of(s);
	if (update(s, SESSION_LOAD, "load") != 0)
		return check_done();
	check(s->model != NULL && s->n_tok == 0, "load: a model, no prompt yet");
	check_work("load without a prompt", w, s, 0, 0, 0);

	flags = session_task_prompt(s, 0, &cause);
	check(flags == (SESSION_RUN | SESSION_SUBJECT | SESSION_ANSWER),
	    "task_prompt: SESSION_RUN | SESSION_SUBJECT | SESSION_ANSWER (got %#x)", flags);
	w = work_of(s);
	if (update(s, flags, "first prompt") != 0)
		return check_done();
	check_work("a new prompt", w, s, 1, 0, 1);
	check(session_ready(s) && s->subject_pos >= 0, "the prompt ran, its subject found "
	    "(%d tokens, subject at %d)", s->n_tok, s->subject_pos);

	/* ---- the task's movers: path patching over the task, computed once ---- */
	{
		fl_prompt_set c = { 0 }, x = { 0 };
		fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 1, false, false, false };
		fl_patch ref = { 0 };
		fl_batch *b;
		int L = session_layers(s), H = session_heads(s), bad = 0, nm = 0;
		double d = 0;
		bool *mv = xcalloc((size_t)L * H, sizeof *mv);

		task_prompts(&c, s->model, s->task, &po, NULL);
		po.corrupt = true;
		task_prompts(&x, s->model, s->task, &po, NULL);
		b = batch_new(s->model, 5, 32);
		if (s->task_patch_valid && patch_heads(&ref, b, c.p, c.n, x.p, x.n, NULL,
		    NULL) == 0) {
			nm = patch_movers(&ref, PATCH_MOVER_EFFECT, PATCH_MOVER_R, mv);
			for (int k = 0; k < L * H; k++) {
				d = fmax(d, fabs(ref.effect[k] - s->task_patch.effect[k]));
				bad += mv[k] != s->task_mover[k];
			}
			patch_clear(&ref);
		}
		check(s->task_patch_valid && s->task_patch.n_prompts == c.n && d < 1e-9 &&
		    bad == 0, "task movers: patching over the task's %d prompts, as "
		    "factlens heads does (max effect diff %.2e; %d of %d stars differ, "
		    "%d starred)", c.n, d, bad, L * H, nm);
		batch_free(b);
		free(mv);
		prompt_set_clear(&c);
		prompt_set_clear(&x);
	}

	/* ---- :shots: checked against the task, the fits dropped ---- */
	rc = session_set_shots(s, 5, &cause);
	check(rc == -1 && cause != NULL && strstr(cause, "at most 4") != NULL &&
	    s->shots == 0, "set_shots 5 on a task of 5 pairs: refused (%s)",
	    cause != NULL ? cause : "");
	free(cause);
	cause = NULL;
	check(session_set_shots(s, 0, &cause) == 0, "set_shots to the same number: "
	    "nothing to redo");
	check(session_set_shots(s, 2, &cause) == (SESSION_TASK | SESSION_LAST) &&
	    s->shots == 2 && !s->task_patch_valid, "set_shots 2: SESSION_TASK | "
	    "SESSION_LAST, the task's movers dropped");
	check(session_set_shots(s, 0, &cause) == (SESSION_TASK | SESSION_LAST) &&
	    s->shots == 0, "set_shots back to 0");

	/* ---- each update does no more than its flags need ---- */
	w = work_of(s);
	update(s, 0, "no flags");
	check_work("an update with no flags", w, s, 0, 0, 0);

	s->layer = 1;
	s->head = 2;
	w = work_of(s);
	update(s, SESSION_VIEW, "cursor");
	check_work("a cursor move", w, s, 0, 0, 1);
	f = fresh(dir, task, 0, 1, 2, false);
	check(view_same(s, f) && streams_same(s, f),
	    "after a cursor move, the rows equal a session that started there");
	session_free(f);

	w = work_of(s);
	update(s, SESSION_VIEW, "cursor, again");
	check_work("an update to the cursor where it is", w, s, 0, 0, 0);

	w = work_of(s);
	update(s, session_set_answer_space(s, s->answer_text, s->answer_space),
	    "same answer");
	check_work("an answer change", w, s, 0, 0, 0);

	s->mask = true;
	w = work_of(s);
	update(s, SESSION_LAST, "mask");
	check_work("the mask toggle", w, s, 0, 1, 1);
	f = fresh(dir, task, 0, 1, 2, true);
	check(streams_same(s, f) && view_same(s, f),
	    "with the mask toggled, the rows equal a session that started masked");
	check(f->n_passes == 1 && f->n_last_runs == 1,
	    "a session started masked: one pass, one last-layer run (%ld, %ld)",
	    f->n_passes, f->n_last_runs);
	session_free(f);
	s->mask = false;
	update(s, SESSION_LAST, "mask off");

	/* ---- stopped work leaves everything as it was ---- */
	kept = xstrdup(s->prompt);
	n_tok = s->n_tok;
	w = work_of(s);
	flags = session_set_prompt(s, "So Japan is:");
	rc = session_update(s, flags, &stopper, &cause);
	check(rc == FL_STOPPED && calls > 0, "a stopped prompt run returns FL_STOPPED (%d)", rc);
	check(strcmp(s->prompt, kept) == 0 && s->n_tok == n_tok,
	    "a stopped prompt run: the prompt and its results are the old ones (\"%s\", %d tokens)",
	    s->prompt, s->n_tok);
	check(s->cancelled != NULL && strcmp(s->cancelled, "prompt run") == 0,
	    "a stopped prompt run says what stopped (%s)", s->cancelled ? s->cancelled : "NULL");
	check_work("a stopped prompt run", w, s, 0, 0, 0);
	f = fresh(dir, task, 0, 1, 2, false);
	check(streams_same(s, f), "after a stopped run, the rows still equal the old prompt's");
	session_free(f);
	free(kept);

	calls = 0;
	flags = session_set_model(s, other);
	rc = session_update(s, flags, &stopper, &cause);
	check(rc == FL_STOPPED && strcmp(s->model_dir, dir) == 0 &&
	    session_layers(s) == 2 && s->n_tok == n_tok,
	    "a stopped model load: the old model, directory and results stay (%d layers)",
	    session_layers(s));

	/* The cursor at layer 0: the last layer's fit is not cached by the
	 * MLP pane, so the intercept needs one. */
	f = fresh(dir, task, 0, 0, 0, false);
	calls = 0;
	f->intercept = true;
	w = work_of(f);
	rc = session_update(f, SESSION_LAST, &stopper, &cause);
	check(rc == FL_STOPPED && calls > 0 && !f->intercept && f->intercept_vec == NULL,
	    "a stopped intercept fit: the intercept stays off, nothing fitted (rc %d, %d calls)",
	    rc, calls);
	check_work("a stopped intercept fit", w, f, 0, 0, 0);
	session_free(f);

	calls = 0;
	s->metric = METRIC_PATCH;
	rc = session_update(s, SESSION_GRID, &stopper, &cause);
	check(rc == FL_STOPPED && s->metric != METRIC_PATCH && !s->patch_valid,
	    "a stopped path patching: the grid goes back to its metric (%s)",
	    metric_name(s->metric));

	/* ---- an input the results cannot be made from is taken back ---- */
	{
		char *longp = xmalloc(4096), *old = xstrdup(s->prompt);

		memset(longp, 0, 4096);
		for (int i = 0; i < 200; i++)
			strcat(longp, "So ");
		rc = session_update(s, session_set_prompt(s, longp), NULL, &cause);
		check(rc < 0 && cause != NULL && strstr(cause, "longer than the model's context"),
		    "a prompt too long for the model is an error (%s)", cause ? cause : "none");
		free(cause);
		cause = NULL;
		check(strcmp(s->prompt, old) == 0 && s->n_tok == n_tok,
		    "after a prompt too long, the prompt shown is the one the results are of");
		rc = session_update(s, session_set_model(s, "/nonexistent/model"), NULL, &cause);
		check(rc < 0 && strcmp(s->model_dir, dir) == 0 && session_layers(s) == 2,
		    "a model that does not load: the old model and its directory stay (%s)",
		    cause ? cause : "no error");
		free(cause);
		cause = NULL;
		free(longp);
		free(old);
	}

	/* ---- and the same work, not stopped, completes ---- */
	s->metric = METRIC_PATCH;
	w = work_of(s);
	rc = update(s, SESSION_GRID, "path patching");
	check(rc == 0 && s->patch_valid, "path patching completes when not stopped");
	check_work("path patching", w, s, 0, 0, 0);
	s->intercept = true;
	w = work_of(s);
	rc = update(s, SESSION_LAST, "intercept");
	check(rc == 0 && s->intercept && s->intercept_vec != NULL,
	    "the intercept fit completes when not stopped");
	check_work("the intercept toggle", w, s, 0, 1, 1);

	/* a new model keeps the intercept on, fitted again on it */
	flags = session_set_model(s, other);
	rc = update(s, flags, "another model");
	check(rc == 0 && session_layers(s) == 3 && s->intercept && s->intercept_vec != NULL,
	    "a new model keeps the intercept on, fitted on it (%d layers)", session_layers(s));

	session_free(s);
	free(dir);
	free(other);
	free(task);
	return check_done();
}
