/*
 * test_session.c - the explorer's state without a terminal: each update
 * does what its flags need and no more (the work counters of session.h),
 * what it computes equals a session that made the same choices from the
 * start, and stopped work leaves the results and the choices as they were.
 * The atp metric: its map and exact patch equal atp.h's on the corrupted
 * prompt and distractor rebuilt here (the task's next subject of as many
 * tokens and its answer; a :corrupt prompt and its top prediction).
 * Runs on the gpt2-f32 fixture and the tiny task.
 */
#include "autoconfig.h"

#include <string.h>

#include <math.h>

#include "check.h"
#include "fx.h"
#include "analysis/batch.h"
#include "analysis/lens.h"
#include "analysis/trace.h"
#include "base/util.h"
#include "session/session.h"
#include "engine/forward.h"
#include "engine/readout.h"

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

/* One that stops causal tracing only. */
static bool
stop_tracing(void *ud, const char *what, long done, long total)
{
	(void)ud;
	(void)done;
	(void)total;
	return what != NULL && strcmp(what, "causal tracing") == 0;
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

/* A session on prompt alone, scoring answer (NULL: its top prediction). */
static ui_session *
plain(const char *dir, const char *prompt, const char *answer, bool mask,
    ui_metric metric)
{
	ui_session *s = session_new();
	int flags = session_set_model(s, dir) | session_set_prompt(s, prompt);

	if (answer != NULL)
		flags |= session_set_answer(s, answer);
	s->mask = mask;
	s->metric = metric;
	update(s, flags, "plain session");
	return s;
}

/* s's B-A grid against two sessions run apart. */
static bool
grid_diff_same(const ui_session *s, const ui_session *a, const ui_session *b)
{
	int n = session_layers(s) * session_heads(s);

	for (int i = 0; i < n; i++) {
		float want = b->grid[i] - a->grid[i];

		if (!(fabsf(s->cmp_grid[i] - want) <= 1e-5f)) {
			printf("# head %d.%d: B-A %.7f, apart %.7f - %.7f = %.7f\n",
			    i / session_heads(s), i % session_heads(s), s->cmp_grid[i],
			    b->grid[i], a->grid[i], want);
			return false;
		}
	}
	return true;
}

/* :compare: B equals a session run apart on B's prompt or condition,
 * with A's answer; A stays as it was; B follows A's choices and does no
 * work for A's cursor. */
static void
test_compare(const char *dir)
{
	const char *pa = "The capital of France is", *pb = "The capital of Italy is";
	ui_session *s = plain(dir, pa, "France", false, METRIC_DIRECT);
	ui_session *ra = plain(dir, pa, "France", false, METRIC_DIRECT);
	ui_session *rb = plain(dir, pb, "France", false, METRIC_DIRECT);
	ui_session *rm = plain(dir, pa, "France", true, METRIC_DIRECT);
	char *cause = NULL;
	int rc;
	work w;

	if (!session_ready(s) || !session_ready(rb) || !session_ready(rm))
		goto out;
	s->subject_text = xstrdup("France");
	update(s, SESSION_SUBJECT, "subject");
	rc = session_set_compare(s, COMPARE_PROMPT, pb, &cause);
	check(rc == SESSION_GRID, "set_compare prompt: SESSION_GRID (%d)", rc);
	update(s, rc, "compare prompt");
	check(s->cmp != NULL && streams_same(s->cmp, rb), "compare prompt: B's lens equals "
	    "a session run apart on B's prompt with A's answer");
	check(streams_same(s, ra), "compare prompt: A's lens is as without a comparison");
	check(s->cmp != NULL && grid_diff_same(s, ra, rb), "compare prompt: the heads "
	    "grid's B-A equals the two runs' difference (direct effect)");
	check(s->cmp != NULL && s->cmp->subject_guessed, "compare prompt: A's subject "
	    "France is not in B's prompt: B's is guessed");

	s->layer = 1;
	s->head = 3;
	w = work_of(s->cmp);
	update(s, SESSION_VIEW, "cursor with a comparison");
	check_work("B, when A's cursor moves", w, s->cmp, 0, 0, 0);

	s->metric = METRIC_ATTN_SUBJECT;
	ra->metric = rb->metric = METRIC_ATTN_SUBJECT;
	update(s, SESSION_GRID, "metric with a comparison");
	update(ra, SESSION_GRID, "metric a");
	update(rb, SESSION_GRID, "metric b");
	check(s->cmp != NULL && grid_diff_same(s, ra, rb), "compare prompt: B-A follows "
	    "the metric (attention to the subject)");
	s->metric = ra->metric = rb->metric = METRIC_DIRECT;
	update(s, SESSION_GRID, "metric back");
	update(ra, SESSION_GRID, "metric a back");

	rc = session_set_compare(s, COMPARE_MASK, NULL, &cause);
	update(s, rc, "compare mask");
	check(s->cmp != NULL && s->cmp->mask && streams_same(s->cmp, rm), "compare mask: "
	    "B's lens equals a session run apart with the mask on");
	check(s->cmp != NULL && grid_diff_same(s, ra, rm), "compare mask: B-A of the "
	    "direct effects equals the two runs' difference");
	s->mask = true;
	w = work_of(s->cmp);
	update(s, SESSION_LAST, "A's mask on");
	check(s->cmp != NULL && !s->cmp->mask && streams_same(s->cmp, ra) &&
	    grid_diff_same(s, rm, ra), "compare mask with A's mask on: B has it off");
	check_work("B, when A's mask flips", w, s->cmp, 0, 1, 1);
	s->mask = false;
	update(s, SESSION_LAST, "A's mask off");

	rc = session_set_compare(s, COMPARE_INTERCEPT, NULL, &cause);
	check(rc < 0 && cause != NULL && strstr(cause, "press i") != NULL &&
	    s->compare == COMPARE_MASK, "compare intercept before a fit: refused (%s)",
	    cause != NULL ? cause : "no error");
	free(cause);
	cause = NULL;
	{
		char longp[4096] = "";

		for (int i = 0; i < 200; i++)
			strcat(longp, "So ");
		rc = session_update(s, session_set_compare(s, COMPARE_PROMPT, longp, &cause),
		    NULL, &cause);
	}
	check(rc < 0 && cause != NULL && strstr(cause, "compare: B (prompt)") != NULL &&
	    s->compare == COMPARE_OFF && s->cmp == NULL && session_ready(s),
	    "a B prompt too long for the model: an error, the comparison off, A kept (%s)",
	    cause != NULL ? cause : "no error");
	free(cause);
	cause = NULL;
	rc = session_set_compare(s, COMPARE_PROMPT, "", &cause);
	check(rc < 0 && cause != NULL, "compare with an empty prompt: refused (%s)",
	    cause != NULL ? cause : "no error");
	free(cause);
out:
	session_free(s);
	session_free(ra);
	session_free(rb);
	session_free(rm);
}

/* atp_estimate on (clean ids, the corrupted text), distractor dis, or the
 * corrupted run's top prediction when dis is -2: the largest difference
 * from the session's map; the exact patch of head (1, 2) into *exact. */
static double
atp_differs(const ui_session *s, const char *corrupt, int dis, double *exact)
{
	const fl_model *m = s->model;
	int *ids = NULL, n = model_encode(m, corrupt, strlen(corrupt), &ids, NULL);
	fl_atp a = { 0 };
	fl_atp_opts o = { s->answer_id, dis, -1, false };
	char *cause = NULL;
	double worst = 0;

	if (dis == -2) {
		/* the top prediction, from a pass of our own */
		fl_run *r = run_new(m, n, n);
		float *lg = xmalloc((size_t)m->cfg.n_vocab * sizeof *lg);
		fl_pass p = { 0 };

		p.logits = lg;
		run_forward(r, ids, &n, 1, &p, &cause);
		o.distractor = 0;
		for (int v = 1; v < m->cfg.n_vocab; v++)
			if (lg[v] > lg[o.distractor])
				o.distractor = v;
		if (o.distractor == s->answer_id)
			o.distractor = -1;
		free(lg);
		run_free(r);
	}
	check(n == s->n_tok, "atp: the corrupted prompt '%s' is %d tokens, as the "
	    "prompt (%d)", corrupt, n, s->n_tok);
	if (n != s->n_tok || atp_estimate(&a, m, s->ids, ids, n, &o, &cause) != 0 ||
	    atp_exact_head(&a, 1, 2, exact, &cause) != 0) {
		check(0, "atp: %s", cause != NULL ? cause : "");
		free(cause);
		worst = INFINITY;
	} else {
		check(s->atp.o.distractor == o.distractor, "atp: the distractor is %d "
		    "(the session's %d)", o.distractor, s->atp.o.distractor);
		for (int i = 0; i < session_layers(s) * session_heads(s); i++)
			worst = fmax(worst, fabs(a.heads[i] - s->atp.heads[i]));
	}
	atp_clear(&a);
	free(ids);
	return worst;
}

static void
check_atp_metric(const char *dir, const char *task)
{
	ui_session *s = session_new();
	char *cause = NULL, *want = NULL;
	const fl_task *t;
	double worst, ex;
	int flags;

	session_set_model(s, dir);
	session_load_task(s, task, &cause);
	if (update(s, SESSION_LOAD | SESSION_TASK, "atp: load") != 0 ||
	    (flags = session_task_prompt(s, 0, &cause)) < 0 ||
	    update(s, flags, "atp: prompt") != 0)
		goto out;
	t = s->task;
	s->metric = METRIC_ATP;
	if (update(s, SESSION_GRID, "atp metric") != 0 || !s->atp_valid) {
		check(0, "atp metric: computed (%s)", s->atp_error ? s->atp_error : "");
		goto out;
	}
	/* The corrupted prompt rebuilt: the next pair's subject that keeps the
	 * token count and whose answer starts with another token. */
	for (int k = 1; k < t->n_pairs && want == NULL; k++) {
		int sp = (s->task_pair + k) % t->n_pairs, *ids = NULL, nt;
		const char *at = strstr(s->prompt, t->pairs[s->task_pair].subject);
		char *text = xasprintf("%.*s%s%s", (int)(at - s->prompt), s->prompt,
		    t->pairs[sp].subject, at + strlen(t->pairs[s->task_pair].subject));
		int dis = task_answer_token(s->model, t->pairs[sp].answer,
		    s->answer_space, &nt);

		if (model_encode(s->model, text, strlen(text), &ids, NULL) == s->n_tok &&
		    dis != s->answer_id) {
			want = text;
			worst = atp_differs(s, want, dis, &ex);
			check(worst <= 1e-9, "atp metric from the task: the map equals "
			    "atp_estimate's on '%s' (worst %.3g)", want, worst);
		} else
			free(text);
		free(ids);
	}
	check(want != NULL && strcmp(want, s->atp_corrupt) == 0, "atp metric: the "
	    "corrupted prompt is '%s' (the session's '%s')", want ? want : "none",
	    s->atp_corrupt);
	s->layer = 1;
	s->head = 2;
	if (session_atp_exact(s, &cause) < 0) {
		check(0, "atp exact: %s", cause);
		goto out;
	}
	check(s->atp_exact[1 * session_heads(s) + 2] == ex && isnan(s->atp_exact[0]),
	    "x: head 1.2's exact patch %.6f equals atp_exact_head's %.6f, the "
	    "others not run", s->atp_exact[1 * session_heads(s) + 2], ex);

	/* :corrupt TEXT: its top prediction is the distractor */
	flags = session_set_corrupt(s, "The capital of Japan is:");
	if (update(s, flags, "atp :corrupt") != 0 || !s->atp_valid) {
		check(0, ":corrupt: computed (%s)", s->atp_error ? s->atp_error : "");
		goto out;
	}
	worst = atp_differs(s, "The capital of Japan is:", -2, &ex);
	check(worst <= 1e-9 && s->atp_exact == NULL, ":corrupt: the map equals "
	    "atp_estimate's with the corrupted run's top prediction (worst %.3g), "
	    "no exact patch kept", worst);
	flags = session_set_corrupt(s, "The capital");
	update(s, flags, "atp :corrupt, too short");
	check(!s->atp_valid && s->atp_error != NULL && strstr(s->atp_error,
	    "tokens and the prompt") != NULL && isnan(s->grid[0]), ":corrupt of "
	    "another length: the grid says why (%s)", s->atp_error);
out:
	free(want);
	free(cause);
	session_free(s);
}

/* The flow pane: the session's causal trace equals trace_run's on the
 * prompt rebuilt here (the subject's tokens found by encoding the prompt's
 * words, the answer the clean run's top token), for the same options; a
 * map is computed once per prompt and options; a cell's restored run ends
 * in the map's P; stopped, the pane goes back to the map it showed; the
 * knockout curves equal knock_run's; the lens at a position equals
 * lens_streams' rows there. */
static void
test_flow(const char *dir)
{
	const char *text = "The capital of France is";
	ui_session *s = session_new();
	fl_model *m;
	fl_prompt p = { 0 };
	fl_trace want = { 0 };
	fl_trace_opts to = { TRACE_RESID, 10, 3, 0, 7, NULL, false };
	ui_flow_opts fo = { TRACE_RESID, 10, 3, 7 };
	fl_batch *b = NULL;
	fl_run *r = NULL;
	float *logits = NULL;
	int L, T, V, calls = 0, flags, subj_t;
	double maxd = 0, d;
	char *cause = NULL;
	fl_progress stopper = { stop_now, &calls };
	fl_progress tracing_stopper = { stop_tracing, NULL };
	ui_lens_row *rows = NULL;

	session_set_model(s, dir);
	session_set_prompt(s, text);
	session_set_subject(s, "France");
	if (update(s, SESSION_LOAD | SESSION_RUN | SESSION_SUBJECT, "flow: load") != 0)
		goto out;
	m = s->model;
	L = m->cfg.n_layer;
	V = m->cfg.n_vocab;
	/* the prompt as factlens trace --subject France makes it (its byte
	 * span), without the session */
	if (prompt_make(&p, m, text, 15, 6, NULL, true, &cause) != 0) {
		check(0, "flow: prompt_make (%s)", cause);
		goto out;
	}
	T = p.n;
	r = run_new(m, T, T);
	logits = xmalloc((size_t)V * sizeof *logits);
	{
		fl_pass pass = { 0 };

		pass.logits = logits;
		run_forward(r, p.ids, &T, 1, &pass, &cause);
		lens_topk(logits, V, 1, &p.answer, NULL);
	}
	b = batch_new(m, 5, T);
	if (trace_run(&want, b, &p, &to, &cause) != 0) {
		check(0, "flow: trace_run (%s)", cause);
		goto out;
	}
	flags = session_set_flow(s, FLOW_TRACE, &fo, &cause);
	check(flags == SESSION_VIEW, "flow: set_flow returns SESSION_VIEW (%#x)", flags);
	if (update(s, flags, "flow: trace") != 0)
		goto out;
	check(s->flow_map != NULL && s->n_traces == 1, "flow: one map computed (%ld)",
	    s->n_traces);
	if (s->flow_map == NULL)
		goto out;
	check(s->flow_map->n_tok == T && s->flow_map->subj_pos == p.subj_pos &&
	    s->flow_map->subj_len == p.subj_len && s->answer_id == p.answer,
	    "flow: the map's prompt is trace_run's (%d tokens, subject %d+%d, answer %d; "
	    "want %d, %d+%d, %d)", s->flow_map->n_tok, s->flow_map->subj_pos,
	    s->flow_map->subj_len, s->answer_id, T, p.subj_pos, p.subj_len, p.answer);
	for (int i = 0; i < L * T; i++)
		maxd = fmax(maxd, fabs(s->flow_map->restore[i] - want.restore[i]));
	d = fmax(fabs(s->flow_map->p_clean - want.p_clean), fabs(s->flow_map->p_corrupt -
	    want.p_corrupt));
	check(maxd < 1e-6 && d < 1e-9, "flow: the pane's map equals trace_run's "
	    "(max |diff| %.3g over %d cells, P(clean)/P(corrupt) %.3g)", maxd, L * T, d);
	/* the cursor moves: no new map */
	flags = session_set_lens_pos(s, p.subj_pos, &cause);
	s->layer = 1;
	update(s, flags, "flow: cursor");
	check(s->n_traces == 1 && s->flow_map != NULL, "flow: moving the cell "
	    "computes nothing (%ld maps)", s->n_traces);
	/* the cell's restored run ends in the map's P */
	rows = xcalloc((size_t)L + 1, sizeof *rows);
	subj_t = p.subj_pos + p.subj_len - 1;
	for (int k = 0; k < 2; k++) {
		int t = k == 0 ? subj_t : 0, l = k == 0 ? 1 : 0;

		if (session_flow_cell(s, l, t, NULL, rows, &cause) != 0) {
			check(0, "flow: the cell's run (%s)", cause);
			break;
		}
		d = fabs(rows[L].prob - want.restore[(size_t)l * T + t]);
		check(d < 2e-5, "flow: cell (%d, %d)'s restored run gives the map's P "
		    "(%.6f vs %.6f)", l, t, rows[L].prob, want.restore[(size_t)l * T + t]);
	}
	/* another kind is a second map; back to resid is the first again */
	fo.kind = TRACE_MLP;
	update(s, session_set_flow(s, FLOW_TRACE, &fo, &cause), "flow: mlp");
	fo.kind = TRACE_RESID;
	update(s, session_set_flow(s, FLOW_TRACE, &fo, &cause), "flow: resid again");
	check(s->n_traces == 2 && s->flow_map != NULL && s->flow_map->kind == TRACE_RESID &&
	    s->flow_map->restore[(size_t)1 * T + subj_t] == want.restore[(size_t)1 * T +
	    subj_t], "flow: maps are kept per options (%ld computed for 3 shown)",
	    s->n_traces);
	/* stopped, the pane goes back to the map it showed */
	fo.kind = TRACE_ATTN;
	flags = session_set_flow(s, FLOW_TRACE, &fo, &cause);
	flags = session_update(s, flags, &stopper, &cause);
	check(flags == FL_STOPPED && calls > 0 && s->n_traces == 2 &&
	    s->flow_o.kind == TRACE_RESID && s->flow_map != NULL &&
	    s->flow_map->kind == TRACE_RESID, "flow: a stopped trace leaves the map "
	    "shown before (rc %d, kind %s)", flags, trace_kind_name(s->flow_o.kind));
	/* a new prompt's map stopped: no map, a message, and the next
	 * update does not start it again; :trace does */
	session_set_prompt(s, "The capital of France is not");
	flags = session_update(s, SESSION_RUN, &tracing_stopper, &cause);
	{
		long before = s->n_traces;

		update(s, SESSION_VIEW, "flow: a key after the stop");
		check(flags == FL_STOPPED && s->flow_map == NULL && s->flow_error != NULL &&
		    s->n_traces == before, "flow: a stopped map of a new prompt is not "
		    "started again by the next key (rc %d, %s)", flags, s->flow_error ?
		    s->flow_error : "no message");
		update(s, session_set_flow(s, FLOW_TRACE, &fo, &cause), "flow: :trace again");
		check(s->flow_map != NULL && s->n_traces == before + 1, "flow: :trace "
		    "runs it again (%ld maps)", s->n_traces);
	}
	session_set_prompt(s, text);
	update(s, SESSION_RUN, "flow: the prompt back");
	/* knockout: knock_run's curves */
	update(s, session_set_knockout(s, KNOCK_SUBJECT, 2, &cause), "flow: knockout");
	if (s->knock_valid) {
		bool *keys = xcalloc((size_t)T, sizeof *keys);
		double *kw = xcalloc((size_t)L, sizeof *kw), pc = 0;

		maxd = 0;
		for (int k = 0; k < KNOCK_BLOCK_COUNT; k++) {
			if (knock_keys(&p, (fl_knock_block)k, keys) != 0)
				continue;
			knock_run(kw, &pc, r, m, &p, keys, 2, &cause);
			for (int l = 0; l < L; l++)
				maxd = fmax(maxd, fabs(kw[l] - s->knock[(size_t)k * L + l]));
		}
		check(maxd < 1e-9 && fabs(pc - s->knock_clean) < 1e-9, "flow: the knockout "
		    "curves equal knock_run's (max |diff| %.3g)", maxd);
		free(keys);
		free(kw);
	} else
		check(0, "flow: knockout computed (%s)", s->flow_error ? s->flow_error : "");
	/* the lens at a position: lens_streams' rows at it */
	{
		float *lg = xmalloc((size_t)(L + 1) * V * sizeof *lg);
		int l = s->layer, top;
		double pa;

		lens_streams(m, s->cache, p.subj_pos, lg);
		for (int k = 0; k < 2; k++) {
			const float *row = lg + (size_t)(l + k) * V;
			const ui_lens_row *got = &s->pos_rows[k == 0 ? 0 : 2];

			lens_topk(row, V, 1, &top, NULL);
			pa = lens_prob_of(row, V, s->answer_id);
			check(s->pos_at == p.subj_pos && got->top_ids[0] == top &&
			    fabs(got->prob - pa) < 1e-6, "flow: the lens at position %d, "
			    "layer %d's %s: top %d P %.6f (want %d, %.6f)", p.subj_pos, l,
			    k == 0 ? "resid_pre" : "resid_post", got->top_ids[0], got->prob,
			    top, pa);
		}
		free(lg);
	}
	flags = session_set_lens_pos(s, T, &cause);
	check(flags < 0 && cause != NULL, "flow: a position past the prompt is "
	    "refused (%s)", cause != NULL ? cause : "");
out:
	free(cause);
	free(rows);
	trace_clear(&want);
	batch_free(b);
	run_free(r);
	free(logits);
	prompt_clear(&p);
	session_free(s);
}

/* ---- neuron edits and :neurons search --------------------------------- */

/* Neuron `neuron` of mlp.hook_post scaled by factor in every row, written
 * here (not analysis' hook_neuron_edit), and the (T, F) rows copied out
 * before the scaling when grab is set. */
typedef struct {
	int	 neuron;
	float	 factor;
	float	*grab;
} my_edit;

static int
my_edit_hook(void *ud, fl_act *a)
{
	my_edit *e = ud;
	int T = a->shape[0], F = a->shape[1];

	if (e->grab != NULL)
		memcpy(e->grab, a->data, (size_t)T * F * sizeof(float));
	for (int t = 0; t < T; t++)
		a->data[(size_t)t * F + e->neuron] *= e->factor;
	return FL_HOOK_CONTINUE;
}

/* A pass of the session's prompt with neuron (layer, neuron) scaled by
 * factor: the last position's logits (V) and, with c, the cache; the
 * layer's activations before the edit into act (T, F) when not NULL. */
static void
edited_pass(const ui_session *s, int layer, int neuron, float factor,
    float *logits, fl_cache *c, float *act)
{
	int T = s->n_tok;
	fl_run *r = run_new(s->model, T, T);
	my_edit e = { neuron, factor, act };
	fl_hook h = { HOOK_MLP_POST, layer, my_edit_hook, &e };
	fl_pass p = { 0 };
	char *cause = NULL;

	p.hooks = &h;
	p.n_hooks = 1;
	p.cache = c;
	p.logits = logits;
	if (run_forward(r, s->ids, &T, 1, &p, &cause) != 0) {
		check(0, "edited pass: %s", cause);
		free(cause);
	}
	run_free(r);
}

static double
max_diff(const float *a, const float *b, size_t n, double *scale)
{
	double worst = 0, mx = 0;

	for (size_t i = 0; i < n; i++) {
		worst = fmax(worst, fabs((double)a[i] - b[i]));
		mx = fmax(mx, fabs(b[i]));
	}
	if (scale != NULL)
		*scale = mx;
	return worst;
}

/* :neuron L N zero|half|double|reset: the session's logits after an edit
 * equal a pass of our own with the neuron scaled by a hook written here;
 * half and double change the layer's MLP output by (f - 1) a w at every
 * position (a the activation, w the value vector); reset gives back the
 * unedited logits and MLP outputs bit for bit; each edit is one pass
 * resumed at the edit's layer. */
static void
test_neuron_edits(const char *dir)
{
	ui_session *s = plain(dir, "The capital of France is", NULL, false,
	    METRIC_DIRECT);
	const fl_model *m;
	int L, V, T, D, F, l = 1, n = 5, rc;
	float *orig = NULL, *orig_mlp = NULL, *ref = NULL, *act = NULL, *w = NULL;
	fl_cache *rc_cache = NULL;
	char *cause = NULL;
	static const struct { const char *name; float f; } kinds[] = {
		{ "zero", 0.0f }, { "half", 0.5f }, { "double", 2.0f } };

	if (!session_ready(s))
		goto out;
	m = s->model;
	L = m->cfg.n_layer;
	V = m->cfg.n_vocab;
	T = s->n_tok;
	D = m->cfg.d_model;
	F = m->cfg.d_mlp;
	orig = xmalloc((size_t)V * sizeof *orig);
	memcpy(orig, s->stream_logits + (size_t)L * V, (size_t)V * sizeof *orig);
	orig_mlp = xmalloc((size_t)L * T * D * sizeof *orig_mlp);
	memcpy(orig_mlp, s->cache->mlp_out, (size_t)L * T * D * sizeof *orig_mlp);
	ref = xmalloc((size_t)V * sizeof *ref);
	act = xmalloc((size_t)T * F * sizeof *act);
	w = xmalloc((size_t)D * sizeof *w);
	neurons_value(m, l, n, w);
	rc_cache = cache_new(m, T, 0);

	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		float f = kinds[k].f;
		long resumed = s->n_resumed, passes = s->n_passes;
		double worst, scale, worst_mlp = 0, mx = 0;

		rc = session_neuron_edit(s, l, n, f, &cause);
		check(rc == SESSION_RUN, "neuron %d.%d %s: SESSION_RUN (%d)", l, n,
		    kinds[k].name, rc);
		if (update(s, rc, kinds[k].name) != 0)
			goto out;
		check(s->n_resumed == resumed + 1 && s->n_passes == passes,
		    "neuron %s: one pass resumed at layer %d, no full pass (%ld "
		    "resumed, %ld full)", kinds[k].name, l, s->n_resumed - resumed,
		    s->n_passes - passes);
		edited_pass(s, l, n, f, ref, rc_cache, act);
		worst = max_diff(s->stream_logits + (size_t)L * V, ref, (size_t)V,
		    &scale);
		check(worst <= 1e-6 * (scale > 1 ? scale : 1), "neuron %d.%d %s: the "
		    "session's logits equal a pass with the neuron scaled by %g by a "
		    "hook (worst %.3g, logits up to %.3g)", l, n, kinds[k].name, f,
		    worst, scale);
		worst = max_diff(s->base_logits, ref, (size_t)V, &scale);
		check(worst <= 1e-6 * (scale > 1 ? scale : 1), "neuron %s: and so do "
		    "its base logits (worst %.3g)", kinds[k].name, worst);
		/* the layer's MLP output moved by (f - 1) a_t w at every t */
		for (int t = 0; t < T; t++)
			for (int o = 0; o < D; o++) {
				size_t i = ((size_t)l * T + t) * D + o;
				double want = orig_mlp[i] + (f - 1.0) *
				    act[(size_t)t * F + n] * w[o];

				worst_mlp = fmax(worst_mlp, fabs(s->cache->mlp_out[i] - want));
				mx = fmax(mx, fabs(orig_mlp[i]));
			}
		check(worst_mlp <= 1e-5 * (mx > 1 ? mx : 1), "neuron %d.%d %s: "
		    "hook_mlp_out of layer %d is the unedited one plus (%g - 1) a w "
		    "at every position (worst %.3g of %.3g)", l, n, kinds[k].name, l,
		    f, worst_mlp, mx);
	}

	rc = session_neuron_edit(s, l, n, -1, &cause);
	check(rc == SESSION_RUN, "neuron reset: SESSION_RUN (%d)", rc);
	if (update(s, rc, "reset") != 0)
		goto out;
	check(s->n_edits == 0 && memcmp(s->stream_logits + (size_t)L * V, orig,
	    (size_t)V * sizeof *orig) == 0 && memcmp(s->cache->mlp_out, orig_mlp,
	    (size_t)L * T * D * sizeof *orig_mlp) == 0, "neuron reset: the logits "
	    "and every MLP output are the unedited ones bit for bit (worst logit "
	    "%.3g)", max_diff(s->stream_logits + (size_t)L * V, orig, (size_t)V,
	    NULL));

	/* two edits, then reset them all */
	rc = session_neuron_edit(s, 0, 3, 0, &cause) | session_neuron_edit(s, 1, n,
	    2, &cause);
	update(s, rc, "two edits");
	rc = session_neuron_edit(s, -1, 0, -1, &cause);
	check(rc == SESSION_RUN, "neuron reset of every edit: SESSION_RUN (%d)", rc);
	update(s, rc, "reset all");
	check(s->n_edits == 0 && memcmp(s->stream_logits + (size_t)L * V, orig,
	    (size_t)V * sizeof *orig) == 0, "neuron reset of every edit: the "
	    "unedited logits bit for bit (worst %.3g)", max_diff(s->stream_logits +
	    (size_t)L * V, orig, (size_t)V, NULL));
	rc = session_neuron_edit(s, l, F, 0, &cause);
	check(rc < 0 && cause != NULL && strstr(cause, "neurons 0 to") != NULL,
	    "neuron %d.%d (out of range): refused (%s)", l, F, cause != NULL ?
	    cause : "no error");
	free(cause);
out:
	cache_free(rc_cache);
	free(orig);
	free(orig_mlp);
	free(ref);
	free(act);
	free(w);
	session_free(s);
}

/* :neurons search TOKEN: the hits are exactly the (layer, neuron) whose
 * value vector ranks TOKEN in its top UI_NEURON_SEARCH_K, with that rank,
 * by an independent product here: W_out's row centred, times the final
 * LayerNorm's gain (the unit-scale LN after a pre-LN block's MLP), dotted
 * with every row of W_U in double; each hit's activation is the pass's
 * mlp.hook_post at the last position. */
static void
test_neuron_search(const char *dir)
{
	ui_session *s = plain(dir, "The capital of France is", NULL, false,
	    METRIC_DIRECT);
	const fl_model *m;
	int L, V, D, F, K = UI_NEURON_SEARCH_K, T, token, n = 0, n_want = 0;
	ui_neuron_hit *hits = NULL, *want = NULL;
	double *lg = NULL, *x = NULL;
	float *u = NULL, *w = NULL, *act = NULL, *lgf = NULL;
	char *cause = NULL;
	int rc, bad = 0;

	if (!session_ready(s))
		goto out;
	m = s->model;
	L = m->cfg.n_layer;
	V = m->cfg.n_vocab;
	D = m->cfg.d_model;
	F = m->cfg.d_mlp;
	T = s->n_tok;
	if (!m->cfg.ln_before || !m->cfg.final_ln || m->cfg.d_proj != D) {
		check(0, "neuron search: the fixture is a pre-LN GPT-2 with a final LN");
		goto out;
	}
	lg = xmalloc((size_t)L * F * V * sizeof *lg);
	x = xmalloc((size_t)D * sizeof *x);
	u = xmalloc((size_t)D * sizeof *u);
	w = xmalloc((size_t)D * sizeof *w);
	for (int l = 0; l < L; l++)
		for (int i = 0; i < F; i++) {
			double mean = 0;

			neurons_value(m, l, i, w);
			for (int o = 0; o < D; o++)
				mean += w[o];
			mean /= D;
			for (int o = 0; o < D; o++)
				x[o] = (w[o] - mean) * m->lnf_w[o];
			for (int v = 0; v < V; v++) {
				double d = 0;

				table_row(&m->unembed, v, u);
				for (int o = 0; o < D; o++)
					d += x[o] * u[o];
				lg[((size_t)l * F + i) * V + v] = d;
			}
		}
	/* the token: layer 0 neuron 0's top one */
	token = 0;
	for (int v = 1; v < V; v++)
		if (lg[v] > lg[token])
			token = v;
	act = xmalloc((size_t)T * F * sizeof *act);
	want = xmalloc((size_t)L * F * sizeof *want);
	lgf = xmalloc((size_t)V * sizeof *lgf);
	for (int l = 0; l < L; l++) {
		edited_pass(s, l, 0, 1.0f, lgf, NULL, act);
		for (int i = 0; i < F; i++) {
			const double *row = lg + ((size_t)l * F + i) * V;
			int rank = 1;

			for (int v = 0; v < V; v++)
				rank += row[v] > row[token];
			if (rank <= K)
				want[n_want++] = (ui_neuron_hit){ l, i, rank,
				    act[(size_t)(T - 1) * F + i] };
		}
	}
	/* in the session's order: by rank, then layer, then neuron */
	for (int a = 1; a < n_want; a++)
		for (int b = a; b > 0 && (want[b].rank < want[b - 1].rank ||
		    (want[b].rank == want[b - 1].rank && (want[b].layer <
		    want[b - 1].layer || (want[b].layer == want[b - 1].layer &&
		    want[b].neuron < want[b - 1].neuron)))); b--) {
			ui_neuron_hit t = want[b];

			want[b] = want[b - 1];
			want[b - 1] = t;
		}
	rc = session_neuron_search(s, token, NULL, &hits, &n, &cause);
	check(rc == 0, "neuron search: runs (%s)", cause != NULL ? cause : "");
	for (int k = 0; rc == 0 && k < n && k < n_want; k++)
		if (hits[k].layer != want[k].layer || hits[k].neuron != want[k].neuron ||
		    hits[k].rank != want[k].rank || fabsf(hits[k].act - want[k].act) >
		    1e-5f * (1 + fabsf(want[k].act))) {
			if (bad++ < 3)
				printf("# hit %d: %d.%d rank %d act %.6f; want %d.%d rank %d "
				    "act %.6f\n", k, hits[k].layer, hits[k].neuron,
				    hits[k].rank, hits[k].act, want[k].layer, want[k].neuron,
				    want[k].rank, want[k].act);
		}
	check(rc == 0 && n == n_want && n > 0 && bad == 0, "neuron search for token "
	    "%d: %d hits, an independent W_out W_U product ranks %d (%d differ)",
	    token, n, n_want, bad);
	free(cause);
	cause = NULL;
	free(hits);
	hits = NULL;
	rc = session_neuron_search(s, V, NULL, &hits, &n, &cause);
	check(rc < 0 && cause != NULL, "neuron search for token %d (outside the "
	    "vocabulary): refused (%s)", V, cause != NULL ? cause : "no error");
	free(cause);
out:
	free(hits);
	free(want);
	free(lg);
	free(x);
	free(u);
	free(w);
	free(act);
	free(lgf);
	session_free(s);
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
	test_compare(dir);
	check_atp_metric(dir, task);
	test_flow(dir);
	test_neuron_edits(dir);
	test_neuron_search(dir);
	free(dir);
	free(other);
	free(task);
	return check_done();
}
