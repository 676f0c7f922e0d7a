/*
 * test_patch.c - path patching.
 *
 * - The hooks that path patching is made of (q, k, v frozen to a clean run,
 *   one head's last-position result replaced) give PyTorch's logits for the
 *   same patched run (logits_path_patch.f32, written by tools/make-fixtures).
 * - The fast path (MLPs only, over rows) equals the hook-based reference
 *   for every head, receiver and fixture.
 * - The other patchings of the paper's code (an MLP sender; q, k, v
 *   receivers; the subject metric) give PyTorch's numbers (patch-*.f32,
 *   written by tools/make-patch-fixture) in both paths.
 * - No path, no effect: with the receiver at resid_pre of the last layer,
 *   every head of the last layer has exactly zero effect in both paths (the
 *   reference really patches them; the receiver is read before them), while
 *   earlier heads do move it.
 * - A corrupted set equal to the clean prompt patches nothing: effect 0.
 */
#include "autoconfig.h"

#include "check.h"
#include "fx.h"

#include "analysis/attrib.h"
#include "analysis/patch.h"
#include "engine/pool.h"

/* Replaces the last row of a (T, D) point. */
static int
hook_patch_row_for_tests(void *ud, fl_act *a)
{
	memcpy(a->data + (size_t)(a->shape[0] - 1) * a->shape[1], ud,
	    (size_t)a->shape[1] * sizeof(float));
	return FL_HOOK_CONTINUE;
}

/* The patched run of the fixture's own prompt, by hand, with the hooks. */
static void
check_pytorch(const char *fx)
{
	fl_model *m = fx_model(fx);
	int T, V, D, L, H;
	int *ids = fx_ref_ids(fx, &T);
	size_t n = 0;
	float *want = NULL, *got, *zero, *free_run;
	fl_run *r;
	fl_cache *c;
	fl_hook hooks[4];
	fl_patch_head ph;
	fl_pass p = { 0 };
	char label[128];

	if (m == NULL || ids == NULL)
		goto out_early;
	V = m->cfg.n_vocab;
	D = m->cfg.d_model;
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	want = fx_read_f32(fx, "logits_path_patch.f32", &n);
	if (want == NULL || n != (size_t)V) {
		check(0, "%s: logits_path_patch.f32 has %d floats", fx, V);
		goto out_early;
	}
	r = run_new(m, T, T);
	c = fx_cache(m, r, ids, T);
	got = xmalloc((size_t)V * sizeof *got);
	free_run = xmalloc((size_t)V * sizeof *free_run);
	zero = xcalloc((size_t)D, sizeof *zero);
	ph = (fl_patch_head){ 1, zero };
	patch_freeze_hooks(m, c, hooks);
	hooks[3] = (fl_hook){ HOOK_RESULT, 0, hook_patch_head, &ph };
	p.hooks = hooks;
	p.n_hooks = 4;
	p.logits = got;
	run_forward(r, ids, &T, 1, &p, NULL);
	snprintf(label, sizeof label, "%s: head (0, 1) zeroed at the last position, "
	    "q/k/v frozen = PyTorch", fx);
	check_close(label, got, want, (size_t)V, 1e-4);

	/* without the freeze the later heads react: another result (a
	 * one-layer model has no later heads to react) */
	if (m->cfg.n_layer >= 2) {
		double d = 0;

		p.hooks = hooks + 3;
		p.n_hooks = 1;
		p.logits = free_run;
		run_forward(r, ids, &T, 1, &p, NULL);
		for (int v = 0; v < V; v++)
			d = fmax(d, fabs(free_run[v] - want[v]));
		check(d > 1e-3, "%s: without freezing q/k/v the logits differ (max %.3g)",
		    fx, d);
	}

	/* the fast path's metric for that sender on this one prompt */
	{
		fl_prompt q = { 0 };
		fl_patch res;
		fl_patch_opts o = { -1, NULL, PATCH_RECV_RESID, 0, PATCH_METRIC_ANSWER,
		    NULL };
		float *vals = xcalloc((size_t)L * H * D, sizeof *vals);
		fl_batch *b = batch_new(m, 1, T);
		double mean = 0, want_metric;
		char *cause = NULL;

		for (int v = 0; v < V; v++)
			mean += want[v];
		q.ids = ids;
		q.n = T;
		q.answer = 5;
		q.subject = 6;
		q.subj_pos = 1;
		q.subj_len = 1;
		want_metric = want[q.answer] - mean / V;
		/* only head (0, 1) gets zeros; the others keep... zeros too, but
		 * only (0, 1) is compared */
		o.sender_values = vals;
		if (patch_heads(&res, b, &q, 1, NULL, 0, &o, &cause) == 0) {
			check(fabs(res.patched[1] - want_metric) < 1e-4,
			    "%s: fast path, sender (0, 1) zeroed: metric %.6f = PyTorch's "
			    "%.6f", fx, res.patched[1], want_metric);
			patch_clear(&res);
		} else {
			check(0, "%s: patch_heads: %s", fx, cause);
			free(cause);
		}
		batch_free(b);
		free(vals);
	}
	free(got);
	free(free_run);
	free(zero);
	cache_free(c);
	run_free(r);
out_early:
	free(want);
	free(ids);
	model_free(m);
}

/* The paper's code's other patchings against PyTorch (patch-*.f32, written
 * by tools/make-patch-fixture): an MLP sender by hand with the hooks and by
 * both paths, and q, k, v receivers by both paths, each metric. */
static void
check_pytorch_paper(const char *fx)
{
	fl_model *m = fx_model(fx);
	int T, V, D, L, H;
	int *ids = fx_ref_ids(fx, &T);
	static const char *files[] = { "patch-mlp.f32", "patch-q.f32", "patch-k.f32",
	    "patch-v.f32" };
	float *want[4] = { NULL }, *got = NULL, *zero = NULL, *zeros_h = NULL;
	size_t n = 0;

	if (m == NULL || ids == NULL)
		goto out;
	V = m->cfg.n_vocab;
	D = m->cfg.d_model;
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	for (int f = 0; f < 4; f++)
		if ((want[f] = fx_read_f32(fx, files[f], &n)) == NULL || n != (size_t)V) {
			check(0, "%s: %s has %d floats", fx, files[f], V);
			goto out;
		}
	zero = xcalloc((size_t)L * D, sizeof *zero);
	zeros_h = xcalloc((size_t)L * H * D, sizeof *zeros_h);
	got = xmalloc((size_t)V * sizeof *got);
	{	/* MLP 0 zeroed at the last position, q/k/v frozen: the hooks */
		fl_run *r = run_new(m, T, T);
		fl_cache *c = fx_cache(m, r, ids, T);
		fl_hook hooks[4];
		fl_pass p = { 0 };
		char label[128];

		patch_freeze_hooks(m, c, hooks);
		hooks[3] = (fl_hook){ HOOK_MLP_OUT, 0, hook_patch_row_for_tests, zero };
		p.hooks = hooks;
		p.n_hooks = 4;
		p.logits = got;
		run_forward(r, ids, &T, 1, &p, NULL);
		snprintf(label, sizeof label, "%s: MLP 0 zeroed at the last position, "
		    "q/k/v frozen = PyTorch", fx);
		check_close(label, got, want[0], (size_t)V, 1e-4);
		cache_free(c);
		run_free(r);
	}
	/* both paths' metrics: MLP 0 into the final residual, sender (0, 1) into
	 * head (L-1, 1)'s q, k, v; the answer metric, and the subject's */
	for (int f = 0; f < 4; f++)
		for (int met = 0; met < 2; met++) {
			fl_prompt q = { 0 };
			fl_patch res, ref;
			fl_patch_opts o = { f == 0 ? -1 : L - 1, zeros_h,
			    f == 0 ? PATCH_RECV_RESID : (fl_patch_recv)f, 1,
			    (fl_patch_metric)met, zero };
			fl_batch *b = batch_new(m, 1, T);
			double mean = 0, w, g1 = NAN, g2 = NAN;
			char *cause = NULL;
			int rc1, rc2;

			if (f > 0 && L < 2) {
				batch_free(b);
				continue;
			}
			q.ids = ids;
			q.n = T;
			q.answer = 5;
			q.subject = 6;
			q.subj_pos = 1;
			q.subj_len = 1;
			for (int v = 0; v < V; v++)
				mean += want[f][v];
			w = want[f][met ? q.subject : q.answer] - mean / V;
			rc1 = patch_heads(&res, b, &q, 1, NULL, 0, &o, &cause);
			rc2 = rc1 == 0 ? patch_heads_ref(&ref, m, &q, 1, NULL, 0, &o, &cause) :
			    -1;
			if (rc1 == 0 && rc2 == 0) {
				g1 = f == 0 ? res.mlp_patched[0] : res.patched[1];
				g2 = f == 0 ? ref.mlp_patched[0] : ref.patched[1];
			}
			check(rc1 == 0 && rc2 == 0 && fabs(g1 - w) < 1e-4 && fabs(g2 - w) < 1e-4,
			    "%s: %s, metric %s: fast %.6f, reference %.6f = PyTorch's %.6f "
			    "(%s)", fx, f == 0 ? "MLP 0 zeroed into the final residual" :
			    f == 1 ? "head (0, 1) zeroed into head L-1.1's q" : f == 2 ?
			    "head (0, 1) zeroed into head L-1.1's k" :
			    "head (0, 1) zeroed into head L-1.1's v", patch_metric_name(
			    (fl_patch_metric)met), g1, g2, w, cause ? cause : "ok");
			free(cause);
			if (rc1 == 0)
				patch_clear(&res);
			if (rc2 == 0)
				patch_clear(&ref);
			batch_free(b);
		}
out:
	for (int f = 0; f < 4; f++)
		free(want[f]);
	free(got);
	free(zero);
	free(zeros_h);
	free(ids);
	model_free(m);
}

static double
max_abs_diff(const double *a, const double *b, int n, bool skip_nan)
{
	double d = 0;

	for (int i = 0; i < n; i++) {
		if (skip_nan && isnan(a[i]) && isnan(b[i]))
			continue;
		d = fmax(d, isnan(a[i] - b[i]) ? INFINITY : fabs(a[i] - b[i]));
	}
	return d;
}

static void
check_fast_vs_ref(const char *fx)
{
	fl_model *m = fx_model(fx);
	fl_task *t = fx_tiny_task();
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 3, false, false, false };
	fl_prompt_set clean, corrupt;
	char *cause = NULL;
	int L, H;

	if (m == NULL || t == NULL)
		goto out;
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	if (task_prompts(&clean, m, t, &po, &cause) != 0)
		goto out;
	po.corrupt = true;
	if (task_prompts(&corrupt, m, t, &po, &cause) != 0) {
		prompt_set_clear(&clean);
		goto out;
	}
	/* every receiver the paper's code has: the final residual and resid_pre
	 * of the first layer, each head input of a head of the last layer, and
	 * the subject metric */
	struct { int R; fl_patch_recv recv; int head; fl_patch_metric metric; } cf[] = {
		{ L, PATCH_RECV_RESID, 0, PATCH_METRIC_ANSWER },
		{ 1, PATCH_RECV_RESID, 0, PATCH_METRIC_ANSWER },
		{ L, PATCH_RECV_RESID, 0, PATCH_METRIC_SUBJECT },
		{ L - 1, PATCH_RECV_Q, 1, PATCH_METRIC_ANSWER },
		{ L - 1, PATCH_RECV_K, 2, PATCH_METRIC_ANSWER },
		{ L - 1, PATCH_RECV_V, 1, PATCH_METRIC_SUBJECT },
	};
	for (size_t ci = 0; ci < sizeof cf / sizeof cf[0]; ci++) {
		fl_patch fast, ref;
		int R = cf[ci].R;
		fl_patch_opts o = { R, NULL, cf[ci].recv, cf[ci].head % H, cf[ci].metric,
		    NULL };
		fl_batch *b;
		int rc1, rc2;
		double dp, dm, dr, maxeff = 0;
		bool zero = true;
		char what[96];

		if (R < 1 || (R == 1 && L == 1 && ci == 1))
			continue;
		if (cf[ci].recv != PATCH_RECV_RESID)
			snprintf(what, sizeof what, "receiver head %d.%d's %s, metric %s", R,
			    o.recv_head, patch_recv_name(cf[ci].recv),
			    patch_metric_name(cf[ci].metric));
		else
			snprintf(what, sizeof what, "receiver resid_pre %d, metric %s", R,
			    patch_metric_name(cf[ci].metric));
		b = batch_new(m, 4, clean.max_len > corrupt.max_len ? clean.max_len :
		    corrupt.max_len);
		rc1 = patch_heads(&fast, b, clean.p, clean.n, corrupt.p, corrupt.n, &o,
		    &cause);
		rc2 = rc1 == 0 ? patch_heads_ref(&ref, m, clean.p, clean.n, corrupt.p,
		    corrupt.n, &o, &cause) : -1;
		check(rc1 == 0 && rc2 == 0, "%s, %s: both paths run (%s)", fx, what,
		    cause ? cause : "ok");
		if (rc1 != 0 || rc2 != 0) {
			if (rc1 == 0)
				patch_clear(&fast);
			free(cause);
			cause = NULL;
			batch_free(b);
			continue;
		}
		dp = max_abs_diff(fast.patched, ref.patched, L * H, false);
		dm = max_abs_diff(fast.mlp_patched, ref.mlp_patched, L, false);
		dr = max_abs_diff(fast.pearson, ref.pearson, L * H, true);
		check(fabs(fast.clean - ref.clean) < 1e-4 && dp < 1e-4 && dm < 1e-4,
		    "%s, %s: fast = reference: M_clean %.6f vs %.6f, M_patched max diff "
		    "%.2e over %d heads, %.2e over %d MLPs", fx, what, fast.clean,
		    ref.clean, dp, L * H, dm, L);
		if (ci == 0)
			check(dr < 1e-3, "%s: the mover scatter's r agrees (max diff "
			    "%.2e)", fx, dr);
		for (int l = 0; l < L; l++) {
			for (int h = 0; h < H; h++) {
				double e = fast.effect[l * H + h];

				if (l >= R && (e != 0 || ref.effect[l * H + h] != 0))
					zero = false;
				if (l < R)
					maxeff = fmax(maxeff, fabs(e));
			}
			if (l >= R && (fast.mlp_effect[l] != 0 ||
			    fabs(ref.mlp_effect[l]) > 1e-9))
				zero = false;
			if (l < R)
				maxeff = fmax(maxeff, fabs(fast.mlp_effect[l]));
		}
		if (R < L)
			check(zero && maxeff > 0.1, "%s, %s: senders of layers >= %d have "
			    "effect 0 in both paths; earlier heads and MLPs up to %.2f%%",
			    fx, what, R, maxeff);
		else
			check(maxeff > 0.1, "%s, %s: heads and MLPs move the metric (up to "
			    "%.2f%%)", fx, what, maxeff);
		patch_clear(&fast);
		patch_clear(&ref);
		batch_free(b);
	}

	/* corrupted = clean, one prompt: the mean is the clean value */
	{
		fl_patch fast, ref;
		fl_batch *b = batch_new(m, 2, clean.max_len);
		double d1 = 0, d2 = 0;

		patch_heads(&fast, b, clean.p, 1, clean.p, 1, NULL, NULL);
		patch_heads_ref(&ref, m, clean.p, 1, clean.p, 1, NULL, NULL);
		for (int k = 0; k < L * H; k++) {
			d1 = fmax(d1, fabs(fast.patched[k] - fast.clean));
			d2 = fmax(d2, fabs(ref.patched[k] - ref.clean));
		}
		check(d1 < 1e-5 && d2 < 1e-5, "%s: the clean prompt as its own corrupted "
		    "set: no effect (max |M_patched - M_clean| %.2e fast, %.2e reference)",
		    fx, d1, d2);
		patch_clear(&fast);
		patch_clear(&ref);
		batch_free(b);
	}
	{
		fl_patch res;
		fl_batch *b = batch_new(m, 2, clean.max_len);
		fl_patch_opts o = { L + 1, NULL, PATCH_RECV_RESID, 0,
		    PATCH_METRIC_ANSWER, NULL };
		int rc = patch_heads(&res, b, clean.p, clean.n, corrupt.p, corrupt.n, &o,
		    &cause);

		check(rc == -1 && cause != NULL && strstr(cause, "receiver layer"),
		    "%s: a receiver past the output is refused (%s)", fx, cause ? cause : "");
		free(cause);
		cause = NULL;
		batch_free(b);
	}
	prompt_set_clear(&clean);
	prompt_set_clear(&corrupt);
out:
	if (cause != NULL)
		check(0, "%s: %s", fx, cause);
	free(cause);
	task_free(t);
	model_free(m);
}

/* A stop request ends path patching at the next batch of the corrupted or
 * the clean run, or at the next chunk of patched rows: FL_STOPPED, no
 * pass after it, an empty result, nothing leaked (ASan). */
static void
check_cancel(const char *fx)
{
	fl_model *m = fx_model(fx);
	fl_task *t = fx_tiny_task();
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 3, false, false, false };
	fl_prompt_set clean, corrupt;
	char *cause = NULL;
	int L, n_full, max_len;

	if (m == NULL || t == NULL || task_prompts(&clean, m, t, &po, &cause) != 0)
		goto out;
	po.corrupt = true;
	if (task_prompts(&corrupt, m, t, &po, &cause) != 0) {
		prompt_set_clear(&clean);
		goto out;
	}
	L = m->cfg.n_layer;
	max_len = clean.max_len > corrupt.max_len ? clean.max_len : corrupt.max_len;
	/* batches of 4: 5 corrupted passes, 5 clean ones, then one chunk of
	 * rows per sender layer (L * H * 20 rows fit in one) */
	n_full = 5 + 5 + L;
	for (int stop = 1; stop <= n_full; stop++) {
		fl_patch res;
		fl_batch *b = batch_new(m, 4, max_len);
		fx_stopper st = { stop, 0, 0, 0, false };
		int rc;

		b->progress = (fl_progress){ fx_stop_at, &st };
		b->total = (long)clean.n + corrupt.n + (long)L * clean.n;
		rc = patch_heads(&res, b, clean.p, clean.n, corrupt.p, corrupt.n, NULL,
		    &cause);
		check(rc == FL_STOPPED && st.calls == stop &&
		    b->passes == (stop < 10 ? stop : 10) && res.patched == NULL &&
		    res.effect == NULL && res.attn == NULL && cause == NULL,
		    "%s: path patching stopped at step %d of %d (%s) returns "
		    "FL_STOPPED (%d) after %ld passes with an empty result", fx, stop,
		    n_full, stop <= 5 ? "corrupted run" : stop <= 10 ? "clean run" :
		    "patched rows", rc, b->passes);
		if (rc == 0)
			patch_clear(&res);
		free(cause);
		cause = NULL;
		batch_free(b);
	}
	{
		fl_patch res;
		fl_batch *b = batch_new(m, 4, max_len);
		fx_stopper st = { 0, 0, 0, 0, false };
		int rc;

		b->progress = (fl_progress){ fx_stop_at, &st };
		b->total = (long)clean.n + corrupt.n + (long)L * clean.n;
		rc = patch_heads(&res, b, clean.p, clean.n, corrupt.p, corrupt.n, NULL,
		    &cause);
		check(rc == 0 && st.calls == n_full && st.done == st.total &&
		    !st.backwards, "%s: a callback that never stops sees %d steps, done "
		    "rising to total (%ld of %ld; rc %d)", fx, st.calls, st.done,
		    st.total, rc);
		if (rc == 0)
			patch_clear(&res);
		batch_free(b);
	}
	prompt_set_clear(&clean);
	prompt_set_clear(&corrupt);
out:
	if (cause != NULL)
		check(0, "%s: %s", fx, cause);
	free(cause);
	task_free(t);
	model_free(m);
}

int
main(void)
{
	kern_set_threads(2);
	check_cancel("gpt2-f32");
	for (int i = 0; i < FX_COUNT; i++)
		check_pytorch(fx_names[i]);
	check_pytorch_paper("gpt2-f32");
	check_pytorch_paper("opt-f32");
	check_pytorch_paper("opt350-f32");
	check_pytorch_paper("llama-f32");
	check_fast_vs_ref("gpt2-f32");
	check_fast_vs_ref("gpt2-prefixed");
	check_fast_vs_ref("opt-f32");
	check_fast_vs_ref("opt350-f32");
	check_fast_vs_ref("llama-f32");
	return check_done();
}
