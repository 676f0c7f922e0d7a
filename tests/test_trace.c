/*
 * test_trace.c - causal tracing and attention knockout.
 *
 * - Against PyTorch (tests/fixtures/gpt2-f32/trace-ref.json, tools/make-trace-fixture, in
 *   float64 with the same noise file): p_clean, p_corrupt and the restore
 *   grids of resid, mlp (windows 1 and 3) and attn (window 3) on gpt2-f32;
 *   the knockout curves of the subject, relation and last-token blocks
 *   (windows 1 and 2). Within 1e-4.
 * - Invariants on every fixture: restoring a position before the subject
 *   changes nothing (p_corrupt); restoring a one-token subject's resid_pre
 *   at layer 0 gives the clean run; an empty knockout changes nothing (to
 *   1e-6: its runs recompute the last row alone); knocking out
 *   every key but the last query itself in the last layer gives the
 *   final-layer mask's logits (logits_final_mask.f32).
 * - Packing: one prompt per pass and four per pass give the same grid.
 * - Drawn noise: the same seed gives the same grid, another seed another.
 * - Stopping: a progress callback that asks to stop gives FL_STOPPED.
 */
#include "autoconfig.h"

#include "check.h"
#include "fx.h"

#include "analysis/lens.h"
#include "analysis/trace.h"
#include "engine/pool.h"

/* The fixture's own prompt with the subject "France" and the clean run's
 * top token as the answer. 0, or -1 after a failed check. */
static int
fx_prompt(const char *fx, fl_model *m, fl_prompt *p)
{
	char *dir = fl_path_join(fx_root(), fx), *path = fl_path_join(dir, "ref.json");
	char *text = fl_read_file(path, NULL, 0, NULL), *cause = NULL;
	cJSON *ref = text ? cJSON_Parse(text) : NULL;
	const char *prompt = ref ? cJSON_GetStringValue(cJSON_GetObjectItem(ref, "text")) : NULL;
	int rc = -1, off;

	free(path);
	free(dir);
	if (prompt == NULL || (off = prompt_find_word(prompt, "France")) < 0) {
		check(0, "%s: ref.json has a prompt with France", fx);
		goto out;
	}
	if (prompt_make(p, m, prompt, off, 6, NULL, true, &cause) != 0) {
		check(0, "%s: prompt_make: %s", fx, cause);
		free(cause);
		goto out;
	}
	{
		fl_run *r = run_new(m, p->n, p->n);
		float *lg = xmalloc((size_t)m->cfg.n_vocab * sizeof *lg);
		fl_pass pass = { 0 };
		int T = p->n, best;

		pass.logits = lg;
		run_forward(r, p->ids, &T, 1, &pass, NULL);
		lens_topk(lg, m->cfg.n_vocab, 1, &best, NULL);
		p->answer = best;
		free(lg);
		run_free(r);
	}
	rc = 0;
out:
	cJSON_Delete(ref);
	free(text);
	return rc;
}

static float *
json_floats(const cJSON *a, size_t *n)
{
	size_t cap = 64;
	float *out = xmalloc(cap * sizeof *out);
	const cJSON *e, *f;

	*n = 0;
	cJSON_ArrayForEach(e, a) {
		if (cJSON_IsArray(e)) {
			cJSON_ArrayForEach(f, e) {
				if (*n == cap)
					out = xrealloc(out, (cap *= 2) * sizeof *out);
				out[(*n)++] = (float)f->valuedouble;
			}
		} else {
			if (*n == cap)
				out = xrealloc(out, (cap *= 2) * sizeof *out);
			out[(*n)++] = (float)e->valuedouble;
		}
	}
	return out;
}

static void
check_grid(const char *what, const double *got, const cJSON *want, size_t n)
{
	size_t k;
	float *w = json_floats(want, &k), *g = xmalloc(n * sizeof *g);

	for (size_t i = 0; i < n; i++)
		g[i] = (float)got[i];
	if (k != n)
		check(0, "%s: the reference has %zu values, the grid %zu", what, k, n);
	else
		check_close(what, g, w, n, 1e-4);
	free(g);
	free(w);
}

static void
check_pytorch(void)
{
	fl_model *m = fx_model("gpt2-f32");
	char *text = NULL, *path = fl_path_join(fx_root(), "gpt2-f32/trace-ref.json");
	cJSON *ref = NULL, *grids, *knock;
	fl_prompt p = { 0 };
	fl_batch *b = NULL;
	float *noise = NULL;
	size_t nn = 0;
	char *cause = NULL;
	static const struct { const char *name; fl_trace_kind kind; int window; } runs[] = {
		{ "resid", TRACE_RESID, 1 }, { "mlp_w1", TRACE_MLP, 1 },
		{ "mlp_w3", TRACE_MLP, 3 }, { "attn_w3", TRACE_ATTN, 3 },
	};
	static const struct { const char *name; fl_knock_block block; int window; } knocks[] = {
		{ "subject_w1", KNOCK_SUBJECT, 1 }, { "relation_w1", KNOCK_RELATION, 1 },
		{ "other_w1", KNOCK_OTHER, 1 }, { "subject_w2", KNOCK_SUBJECT, 2 },
	};

	text = fl_read_file(path, NULL, 0, NULL);
	ref = text ? cJSON_Parse(text) : NULL;
	if (m == NULL || ref == NULL || fx_prompt("gpt2-f32", m, &p) != 0) {
		check(0, "gpt2-f32/trace-ref.json and gpt2-f32 load");
		goto out;
	}
	noise = fx_read_f32("gpt2-f32", "trace-noise.f32", &nn);
	check(p.subj_pos == cJSON_GetObjectItem(ref, "subj_pos")->valueint &&
	    p.subj_len == cJSON_GetObjectItem(ref, "subj_len")->valueint &&
	    p.answer == cJSON_GetObjectItem(ref, "answer")->valueint,
	    "gpt2-f32: the subject's tokens [%d, +%d) and the answer %d are the "
	    "reference's", p.subj_pos, p.subj_len, p.answer);
	if (noise == NULL || nn != (size_t)p.subj_len * m->cfg.d_model) {
		check(0, "trace-noise.f32 holds subject tokens x d_model floats");
		goto out;
	}
	b = batch_new(m, 4, p.n);
	grids = cJSON_GetObjectItem(ref, "restore");
	for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
		fl_trace_opts o = { runs[i].kind, runs[i].window, 1, 0, 0, noise, false };
		fl_trace res;
		char label[96];

		if (trace_run(&res, b, &p, &o, &cause) != 0) {
			check(0, "trace %s: %s", runs[i].name, cause);
			free(cause);
			continue;
		}
		if (i == 0) {
			check(fabs(res.p_clean - cJSON_GetObjectItem(ref, "p_clean")->valuedouble)
			    < 1e-4 && fabs(res.p_corrupt - cJSON_GetObjectItem(ref,
			    "p_corrupt")->valuedouble) < 1e-4, "gpt2-f32: p_clean %.6f, "
			    "p_corrupt %.6f = PyTorch", res.p_clean, res.p_corrupt);
		}
		snprintf(label, sizeof label, "gpt2-f32: trace %s window %d = PyTorch",
		    trace_kind_name(runs[i].kind), runs[i].window);
		check_grid(label, res.restore, cJSON_GetObjectItem(grids, runs[i].name),
		    (size_t)res.n_layer * res.n_tok);
		trace_clear(&res);
	}
	knock = cJSON_GetObjectItem(ref, "knockout");
	for (size_t i = 0; i < sizeof knocks / sizeof knocks[0]; i++) {
		int L = m->cfg.n_layer;
		double *out = xcalloc((size_t)L, sizeof *out), pc = 0;
		bool *keys = xcalloc((size_t)p.n, sizeof *keys);
		char label[96];

		knock_keys(&p, knocks[i].block, keys);
		if (knock_run(out, &pc, b->run, m, &p, keys, knocks[i].window, &cause) != 0) {
			check(0, "knockout: %s", cause);
			free(cause);
		} else {
			snprintf(label, sizeof label, "gpt2-f32: knockout %s window %d = "
			    "PyTorch", knock_block_name(knocks[i].block), knocks[i].window);
			check_grid(label, out, cJSON_GetObjectItem(knock, knocks[i].name),
			    (size_t)L);
		}
		free(keys);
		free(out);
	}
out:
	free(noise);
	batch_free(b);
	prompt_clear(&p);
	cJSON_Delete(ref);
	free(text);
	free(path);
	model_free(m);
}

static void
check_invariants(const char *fx)
{
	fl_model *m = fx_model(fx);
	fl_prompt p = { 0 };
	fl_batch *b1 = NULL, *b4 = NULL;
	fl_trace one = { 0 }, four = { 0 }, again = { 0 }, other = { 0 };
	fl_trace_opts o = { TRACE_RESID, 1, 2, 0, 7, NULL, false };
	char *cause = NULL;
	int L, T, V;

	if (m == NULL || fx_prompt(fx, m, &p) != 0)
		goto out;
	L = m->cfg.n_layer;
	T = p.n;
	V = m->cfg.n_vocab;
	b1 = batch_new(m, 1, T);
	b4 = batch_new(m, 4, T);
	if (trace_run(&one, b1, &p, &o, &cause) != 0 ||
	    trace_run(&four, b4, &p, &o, &cause) != 0) {
		check(0, "%s: trace: %s", fx, cause);
		free(cause);
		goto out;
	}
	{
		double d = 0, before = 0;

		for (int i = 0; i < L * T; i++)
			d = fmax(d, fabs(one.restore[i] - four.restore[i]));
		check(d < 1e-6, "%s: one prompt per pass = four per pass (max %.2g)", fx, d);
		for (int l = 0; l < L; l++)
			for (int t = 0; t < p.subj_pos; t++)
				before = fmax(before, fabs(one.restore[l * T + t] - one.p_corrupt));
		check(before < 1e-6, "%s: restoring a position before the subject "
		    "changes nothing (max %.2g)", fx, before);
		if (p.subj_len == 1)
			check(fabs(one.restore[p.subj_pos] - one.p_clean) < 1e-6,
			    "%s: the subject's resid_pre restored at layer 0 is the clean "
			    "run (%.7f vs %.7f)", fx, one.restore[p.subj_pos], one.p_clean);
		check(fabs(one.p_corrupt - one.p_clean) > 1e-4, "%s: the noise moves "
		    "P (%.5f -> %.5f)", fx, one.p_clean, one.p_corrupt);
	}
	/* The packed cells run the positions from the restored one on alone,
	 * over the corrupted run's keys and values of the earlier ones; each
	 * cell run whole (trace_cell_lens: a full restored pass from the
	 * embeddings, the noise added again) must agree. */
	for (int kind = 0; kind < 2; kind++) {
		fl_trace_opts ok = o;
		fl_trace g = { 0 };
		float *probs = xmalloc((size_t)(L + 1) * V * sizeof *probs);
		double d = 0;
		int bad = 0;

		ok.kind = kind == 0 ? TRACE_RESID : TRACE_MLP;
		ok.window = 3;
		if (trace_run(&g, b4, &p, &ok, &cause) != 0) {
			check(0, "%s: trace: %s", fx, cause);
			free(cause);
			cause = NULL;
			free(probs);
			continue;
		}
		for (int l = 0; l < L; l++)
			for (int t = p.subj_pos; t < T; t++) {
				if (trace_cell_lens(probs, b4->run, m, &p, &ok, l, t, NULL,
				    &cause) != 0) {
					free(cause);
					cause = NULL;
					bad++;
					continue;
				}
				d = fmax(d, fabs(probs[(size_t)L * V + p.answer] -
				    g.restore[l * T + t]));
			}
		check(bad == 0 && d < 1e-5, "%s: %s cells packed from their positions "
		    "on = each run whole (max %.2g over %d layers x %d positions)", fx,
		    trace_kind_name(ok.kind), d, L, T - p.subj_pos);
		trace_clear(&g);
		free(probs);
	}

	if (trace_run(&again, b4, &p, &o, &cause) == 0) {
		o.seed = 8;
		trace_run(&other, b4, &p, &o, &cause);
		check(again.restore != NULL && other.restore != NULL &&
		    memcmp(again.restore, four.restore, (size_t)L * T * sizeof(double)) == 0 &&
		    again.p_corrupt == four.p_corrupt && other.p_corrupt != four.p_corrupt,
		    "%s: seed 7 twice gives one grid, seed 8 another (p_corrupt %.6f, %.6f)",
		    fx, four.p_corrupt, other.p_corrupt);
	}

	/* knockout: nothing blocked, and the final-layer mask */
	{
		double *out = xcalloc((size_t)L, sizeof *out), pc = 0;
		bool *keys = xcalloc((size_t)T, sizeof *keys);
		size_t n = 0;
		float *fm = NULL;

		knock_run(out, &pc, b4->run, m, &p, keys, 1, NULL);
		/* the last row alone goes through other matmul shapes: rounding */
		check(fabs(out[0] - pc) < 1e-6 && fabs(out[L - 1] - pc) < 1e-6,
		    "%s: an empty knockout changes nothing (%.7f, %.7f vs %.7f)", fx,
		    out[0], out[L - 1], pc);
		for (int t = 0; t < T - 1; t++)
			keys[t] = true;
		knock_run(out, &pc, b4->run, m, &p, keys, 1, NULL);
		int nref = 0, *ref = fx_ref_ids(fx, &nref);

		/* the fixture's logits are of its ids: the same prompt */
		if (nref == T && memcmp(ref, p.ids, (size_t)T * sizeof *ref) == 0)
			fm = fx_read_f32(fx, "logits_final_mask.f32", &n);
		else
			check(0, "%s: the prompt's ids are ref.json's", fx);
		free(ref);
		if (fm != NULL && n == (size_t)T * V) {
			double want = lens_prob_of(fm + (size_t)(T - 1) * V, V, p.answer);

			check(fabs(out[L - 1] - want) < 1e-5, "%s: every key but the last "
			    "blocked in the last layer = the final-layer mask (%.7f vs %.7f)",
			    fx, out[L - 1], want);
		}
		free(fm);
		free(keys);
		free(out);
	}
out:
	trace_clear(&one);
	trace_clear(&four);
	trace_clear(&again);
	trace_clear(&other);
	batch_free(b1);
	batch_free(b4);
	prompt_clear(&p);
	model_free(m);
}

static void
check_stop(void)
{
	fl_model *m = fx_model("gpt2-f32");
	fl_prompt p = { 0 };
	fl_batch *b;
	fl_trace res;
	fx_stopper st = { 3, 0, 0, 0, false };
	fl_trace_opts o = { TRACE_MLP, 3, 2, 0, 1, NULL, false };
	int rc;

	if (m == NULL || fx_prompt("gpt2-f32", m, &p) != 0)
		return;
	b = batch_new(m, 4, p.n);
	b->progress = (fl_progress){ fx_stop_at, &st };
	b->total = trace_units(m, &o, p.n);
	rc = trace_run(&res, b, &p, &o, NULL);
	check(rc == FL_STOPPED && res.restore == NULL && !st.backwards,
	    "gpt2-f32: a progress callback that asks to stop gives FL_STOPPED (%d) "
	    "and no grid", rc);
	b->done = 0;
	st = (fx_stopper){ 0, 0, 0, 0, false };
	rc = trace_run(&res, b, &p, &o, NULL);
	check(rc == 0 && st.done == st.total && st.total == b->total,
	    "gpt2-f32: progress reaches its total (%ld of %ld)", st.done, st.total);
	trace_clear(&res);
	batch_free(b);
	prompt_clear(&p);
	model_free(m);
}

int
main(void)
{
	kern_set_threads(2);
	check_pytorch();
	for (int i = 0; i < FX_COUNT; i++)
		check_invariants(fx_names[i]);
	check_stop();
	return check_done();
}
