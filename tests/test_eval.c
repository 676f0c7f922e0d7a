/*
 * test_eval.c - the grid over a task.
 *
 * Each prompt's numbers do not depend on how prompts are packed into
 * batches; each condition's numbers equal the single-prompt path (a cached
 * pass, then the mitigations re-run from the cache with mitigate.h's
 * hooks), with the intercept refitted independently on the other fold; the
 * calibration folds are disjoint from the scored prompts.
 */
#include "autoconfig.h"

#include "analysis/report.h"
#include "check.h"
#include "fx.h"

#include "analysis/decompose.h"
#include "analysis/eval.h"
#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "engine/pool.h"

static void
check_fixture(const char *fx, fl_eval_split split)
{
	fl_model *m = fx_model(fx);
	fl_task *t = fx_tiny_task();
	fl_eval_opts o;
	fl_eval_result r1, r3, r64;
	fl_prompt_set ps;
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 1, false, false, false };
	char *cause = NULL;
	int V, n, C = EVAL_COND_COUNT;
	const char *sp = eval_split_name(split);

	if (m == NULL || t == NULL)
		goto out;
	V = m->cfg.n_vocab;
	eval_opts_init(&o);
	o.split = split;
	o.batch = 1;
	if (eval_task(&r1, m, t, &o, 0, NULL, &cause) != 0)
		goto out;
	o.batch = 3;
	if (eval_task(&r3, m, t, &o, 0, NULL, &cause) != 0) {
		eval_clear(&r1);
		goto out;
	}
	o.batch = 64;
	if (eval_task(&r64, m, t, &o, 0, NULL, &cause) != 0) {
		eval_clear(&r1);
		eval_clear(&r3);
		goto out;
	}
	n = r1.n;
	check(n == 20 && r1.multi_token == 12 && r1.passes == 40 && r3.passes == 14 &&
	    r64.passes == 2, "%s/%s: 20 prompts, 12 with multi-token answers, 2 x "
	    "ceil(20 / batch) passes (%d, %d; %ld, %ld, %ld)", fx, sp, n,
	    r1.multi_token, r1.passes, r3.passes, r64.passes);
	{
		double dp = 0;
		int dr = 0;

		for (int k = 0; k < n * C; k++) {
			dp = fmax(dp, fabs(r1.prob[k] - r3.prob[k]));
			dp = fmax(dp, fabs(r1.prob[k] - r64.prob[k]));
			dr += r1.rank[k] != r3.rank[k] || r1.rank[k] != r64.rank[k];
		}
		check(dp < 1e-6 && dr == 0, "%s/%s: batches of 1, 3 and 64 give each "
		    "prompt the same P and rank (max P diff %.2e, %d ranks differ)", fx,
		    sp, dp, dr);
	}
	check(r1.calib_n[0] + r1.calib_n[1] == n && r1.calib_n[0] > 0 &&
	    r1.calib_n[1] > 0, "%s/%s: the two calibration folds cover the prompts "
	    "once (%d + %d)", fx, sp, r1.calib_n[0], r1.calib_n[1]);

	/* the single-prompt path, with the intercept fitted again */
	if (task_prompts(&ps, m, t, &po, &cause) == 0) {
		fl_batch *b = batch_new(m, 8, ps.max_len);
		fl_run *run = run_new(m, ps.max_len, ps.max_len);
		fl_decomp dec[2];
		fl_prompt *other = xcalloc((size_t)ps.n, sizeof *other);
		double dmax = 0;
		int rank_bad = 0;

		for (int f = 0; f < 2; f++) {
			int k = 0;

			for (int i = 0; i < ps.n; i++)
				if (eval_fold(&ps.p[i], split) != f)
					other[k++] = ps.p[i];
			check(decomp_fit(&dec[f], b, other, k, m->cfg.n_layer - 1, true, -1,
			    &cause) == 0, "%s/%s: fold %d's intercept refitted on %d prompts",
			    fx, sp, f, k);
		}
		for (int i = 0; i < ps.n; i++) {
			fl_cache *c = fx_cache(m, run, ps.p[i].ids, ps.p[i].n);
			const float *icpt = dec[eval_fold(&ps.p[i], split)].fit.intercept;
			fl_mitigation mits[EVAL_COND_COUNT] = {
				[EVAL_BASELINE] = { false, NULL, NULL },
				[EVAL_MASK] = { true, NULL, NULL },
				[EVAL_INTERCEPT] = { false, NULL, icpt },
				[EVAL_BOTH] = { true, NULL, icpt },
			};

			for (int k = 0; k < C; k++) {
				double p;
				int rank;

				mitigate_rerun(run, m, c, &mits[k], NULL);
				p = lens_prob_of(c->logits, V, ps.p[i].answer);
				rank = lens_rank_of(c->logits, V, ps.p[i].answer);
				dmax = fmax(dmax, fabs(p - r64.prob[(size_t)i * C + k]));
				rank_bad += rank != r64.rank[(size_t)i * C + k];
			}
			cache_free(c);
		}
		check(dmax < 1e-5 && rank_bad == 0, "%s/%s: every condition of every "
		    "prompt = the cached single-prompt run with mitigate's hooks (max P "
		    "diff %.2e, %d ranks differ)", fx, sp, dmax, rank_bad);
		decomp_clear(&dec[0]);
		decomp_clear(&dec[1]);
		free(other);
		run_free(run);
		batch_free(b);
		prompt_set_clear(&ps);
	}
	{
		double mp = 0;

		for (int i = 0; i < n; i++)
			mp += r64.prob[(size_t)i * C + EVAL_BOTH];
		check(fabs(mp / n - r64.cond[EVAL_BOTH].mean_prob) < 1e-9 &&
		    r64.cond[EVAL_BASELINE].top1 >= 0 && r64.cond[EVAL_BASELINE].top1 <= 1 &&
		    r64.cond[EVAL_MASK].mean_rank >= 1, "%s/%s: the table is the mean of "
		    "the prompts", fx, sp);
	}
	eval_clear(&r1);
	eval_clear(&r3);
	eval_clear(&r64);
out:
	if (cause != NULL)
		check(0, "%s: %s", fx, cause);
	free(cause);
	task_free(t);
	model_free(m);
}

static void
check_shots(void)
{
	fl_model *m = fx_model("gpt2-f32");
	fl_task *t = fx_tiny_task();
	fl_eval_opts o;
	fl_eval_result r;
	char *cause = NULL;
	int rc;

	if (m == NULL || t == NULL)
		goto out;
	eval_opts_init(&o);
	rc = eval_task(&r, m, t, &o, 2, NULL, &cause);
	check(rc == 0 && r.n == 20 && r.shots == 2, "2-shot grid runs (%s)",
	    cause ? cause : "ok");
	if (rc == 0)
		eval_clear(&r);
	free(cause);
	cause = NULL;
	rc = eval_task(&r, m, t, &o, 5, NULL, &cause);
	check(rc == -1 && cause != NULL && strstr(cause, "5-shot prompts need"),
	    "5-shot on 5 pairs is refused (%s)", cause ? cause : "");
	free(cause);
	cause = NULL;
	o.set = TASK_TEMPLATES_PARAPHRASE;
	rc = eval_task(&r, m, t, &o, 0, NULL, &cause);
	check(rc == 0 && r.n == 5, "the paraphrase set: 5 prompts (%s)",
	    cause ? cause : "ok");
	if (rc == 0)
		eval_clear(&r);
	free(cause);
out:
	task_free(t);
	model_free(m);
}

/* A progress callback that asks to stop ends the grid at the next batch:
 * FL_STOPPED, no more passes, an empty result, nothing leaked (the ASan
 * build checks that). Stops in the unmasked pass, in the masked one, and at
 * the very last batch; a callback that never stops sees every unit. */
static void
check_cancel(void)
{
	fl_model *m = fx_model("gpt2-f32");
	fl_task *t = fx_tiny_task();
	fl_eval_opts o;
	fl_eval_result r;
	char *cause = NULL;
	/* 20 prompts in batches of 3: 7 batches per pass, 14 in all */
	const int stops[] = { 1, 2, 9, 14 };

	if (m == NULL || t == NULL)
		goto out;
	eval_opts_init(&o);
	o.batch = 3;
	for (size_t k = 0; k < sizeof stops / sizeof stops[0]; k++) {
		fx_stopper st = { stops[k], 0, 0, 0, false };
		int rc = eval_task(&r, m, t, &o, 0, &(fl_progress){ fx_stop_at, &st }, &cause);

		check(rc == FL_STOPPED && st.calls == stops[k] && r.prob == NULL &&
		    r.rank == NULL && r.n == 0 && cause == NULL, "eval stopped at "
		    "batch %d of 14: returns FL_STOPPED (%d), runs no batch after "
		    "(%d progress calls), leaves an empty result (n %d)", stops[k], rc,
		    st.calls, r.n);
		if (rc == 0)
			eval_clear(&r);
		free(cause);
		cause = NULL;
	}
	{
		fx_stopper st = { 0, 0, 0, 0, false };
		int rc = eval_task(&r, m, t, &o, 0, &(fl_progress){ fx_stop_at, &st }, &cause);

		check(rc == 0 && st.calls == 14 && st.done == 40 && st.total == 40 &&
		    !st.backwards && r.n == 20, "a callback that never stops sees 14 "
		    "batches, done rising to total (%ld of %ld), and the grid completes "
		    "(rc %d, %s)", st.done, st.total, rc, cause ? cause : "ok");
		if (rc == 0)
			eval_clear(&r);
		free(cause);
	}
out:
	task_free(t);
	model_free(m);
}

/* The intervals of report.h against values computed by hand. */
static void
check_intervals(void)
{
	double lo, hi, x[] = { 0.1, 0.3, 0.2, 0.4 };

	report_wilson(5, 10, &lo, &hi);
	check(fabs(lo - 0.236593) < 1e-5 && fabs(hi - 0.763407) < 1e-5, "Wilson "
	    "5 of 10: [%.6f, %.6f] (want [0.236593, 0.763407])", lo, hi);
	report_wilson(0, 20, &lo, &hi);
	check(lo == 0 && fabs(hi - 0.161125) < 1e-5, "Wilson 0 of 20: [%g, %.6f] "
	    "(want [0, 0.161125])", lo, hi);
	/* mean 0.25, s = 0.129099, half-width 1.96 s / 2 = 0.126517 */
	report_mean_ci(x, 4, 1, &lo, &hi);
	check(fabs(lo - 0.123483) < 1e-5 && fabs(hi - 0.376517) < 1e-5, "normal "
	    "interval of 4 values: [%.6f, %.6f] (want [0.123483, 0.376517])", lo, hi);
	report_mean_ci(x, 1, 1, &lo, &hi);
	check(isnan(lo) && isnan(hi), "no interval from one value");
}

/* Counterfactual prompts: each prompt's P and rank of the in-context answer
 * equal the single-prompt run's under the baseline and the mask; the
 * single-token filter drops the multi-token answers. */
static void
check_counterfactual(const char *fx)
{
	fl_model *m = fx_model(fx);
	fl_task *t = fx_tiny_task();
	fl_eval_opts o;
	fl_eval_result r = { 0 }, rs = { 0 };
	fl_prompt_set ps = { 0 };
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, 0, 1, false, false, true };
	char *cause = NULL;
	int V, C = EVAL_COND_COUNT, rank_bad = 0, ctx_is_answer = 0;
	double dmax = 0, mean = 0;

	if (m == NULL || t == NULL)
		goto out;
	V = m->cfg.n_vocab;
	eval_opts_init(&o);
	o.counterfactual = true;
	o.batch = 7;
	if (eval_task(&r, m, t, &o, 0, NULL, &cause) != 0 ||
	    task_prompts(&ps, m, t, &po, &cause) != 0)
		goto out;
	{
		fl_run *run = run_new(m, ps.max_len, ps.max_len);

		for (int i = 0; i < ps.n && i < r.n; i++) {
			fl_cache *c = fx_cache(m, run, ps.p[i].ids, ps.p[i].n);
			fl_mitigation mask = { true, NULL, NULL };
			fl_eval_cond conds[2] = { EVAL_BASELINE, EVAL_MASK };

			ctx_is_answer += ps.p[i].ctx_answer == ps.p[i].answer ||
			    r.ctx_pair[i] != ps.p[i].ctx_pair;
			for (int k = 0; k < 2; k++) {
				size_t at = (size_t)i * C + conds[k];

				if (k == 1)
					mitigate_rerun(run, m, c, &mask, NULL);
				dmax = fmax(dmax, fabs(lens_prob_of(c->logits, V,
				    ps.p[i].ctx_answer) - r.ctx_prob[at]));
				rank_bad += lens_rank_of(c->logits, V, ps.p[i].ctx_answer) !=
				    r.ctx_rank[at];
			}
			mean += r.ctx_prob[(size_t)i * C + EVAL_BASELINE];
			cache_free(c);
		}
		run_free(run);
	}
	check(r.counterfactual && r.n == 20 && ps.n == 20 && dmax < 1e-5 &&
	    rank_bad == 0 && ctx_is_answer == 0 &&
	    fabs(mean / r.n - r.cond[EVAL_BASELINE].ctx_mean_prob) < 1e-9,
	    "%s: counterfactual: P and rank of the in-context answer = the "
	    "single-prompt run's, baseline and mask (max P diff %.2e, %d ranks "
	    "differ, %d prompts whose stated answer is the memorised one)", fx, dmax,
	    rank_bad, ctx_is_answer);
	o.counterfactual = false;
	o.single_token = true;
	o.split = EVAL_SPLIT_TEMPLATE;	/* the kept answers may all be of one fold */
	prompt_set_clear(&ps);
	po.counterfactual = false;
	if (task_prompts(&ps, m, t, &po, &cause) != 0)
		goto out;
	if (ps.multi_token == ps.n) {
		int rc = eval_task(&rs, m, t, &o, 0, NULL, &cause);

		check(rc == -1 && cause != NULL && strstr(cause, "dropped every one"),
		    "%s: every answer is several tokens: the single-token filter "
		    "leaves nothing and says so (%s)", fx, cause ? cause : "no error");
		free(cause);
		cause = NULL;
	} else if (eval_task(&rs, m, t, &o, 0, NULL, &cause) == 0)
		check(rs.n + rs.dropped == 20 && rs.dropped == ps.multi_token &&
		    rs.multi_token == 0 && rs.ctx_prob == NULL, "%s: --single-token "
		    "scores %d prompts and drops %d, the multi-token answers (%d)", fx,
		    rs.n, rs.dropped, ps.multi_token);
out:
	if (cause != NULL)
		check(0, "%s: %s", fx, cause);
	free(cause);
	eval_clear(&r);
	eval_clear(&rs);
	prompt_set_clear(&ps);
	task_free(t);
	model_free(m);
}

int
main(void)
{
	kern_set_threads(2);
	check_intervals();
	check_cancel();
	check_fixture("gpt2-f32", EVAL_SPLIT_SUBJECT);
	check_fixture("gpt2-f32", EVAL_SPLIT_TEMPLATE);
	check_fixture("opt-f32", EVAL_SPLIT_SUBJECT);
	check_fixture("opt350-f32", EVAL_SPLIT_SUBJECT);
	check_shots();
	check_counterfactual("gpt2-f32");
	check_counterfactual("opt350-f32");
	check_counterfactual("llama-f32");
	(void)check_close;
	return check_done();
}
