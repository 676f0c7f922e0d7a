/* cmd_bench.c - factlens bench: the engine's speed and memory figures on a
 * model directory (the README's performance section comes from here). */
#include "autoconfig.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "analysis/atp.h"
#include "analysis/batch.h"
#include "analysis/lens.h"
#include "analysis/trace.h"
#include "cli.h"
#include "engine/pool.h"
#include "base/util.h"


static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double
peak_rss_mb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

/* Deterministic pseudo-random prompt ids. */
static void
bench_ids(int *ids, int n, int V, int bos)
{
	unsigned s = 12345;

	for (int i = 0; i < n; i++) {
		s = s * 1103515245u + 12345u;
		ids[i] = (int)((s >> 8) % (unsigned)V);
	}
	if (bos >= 0)
		ids[0] = bos;
}

/* One full pass with the cache and the lens of every stream at the last
 * position; the final stream's lens row is the logits. */
static int
bench_forward(fl_model *m, fl_run *r, fl_cache *c, const int *ids, int n,
    float *lens, const fl_pass *base)
{
	fl_pass p = *base;
	char *cause = NULL;

	p.cache = c;
	p.no_logits = true;
	if (run_forward(r, ids, &n, 1, &p, &cause) < 0) {
		cli_fail(1, "%s", cause);
		free(cause);
		return -1;
	}
	lens_streams(m, c, n - 1, lens);
	return 0;
}

/* --atp: a bare forward pass (the cache as atp fills it, the logits of the
 * last position, no lens) and attribution patching of every head and every
 * layer's neurons (2 forwards, 1 backward), interleaved, reps of each: the
 * medians into fwd and atp (ms). The corrupted prompt is the clean one with
 * its middle token changed. 0, or -1 reported. */
static int
bench_atp(fl_model *m, const int *ids, int n, int reps, double *fwd, double *atp)
{
	int *bad = xmalloc((size_t)n * sizeof *bad);
	double *tf = xcalloc((size_t)reps, sizeof *tf), *ta = xcalloc((size_t)reps,
	    sizeof *ta);
	fl_run *r = run_new(m, n, n);
	fl_cache *c = cache_new(m, n, FL_CACHE_MLP_POST);
	float *logits = xmalloc((size_t)m->cfg.n_vocab * sizeof *logits);
	fl_atp_opts o = { ids[n - 1] == 0 ? 1 : 0, -1, -1, true };
	char *cause = NULL;
	int rc = 0;

	memcpy(bad, ids, (size_t)n * sizeof *bad);
	bad[n / 2] = (bad[n / 2] + 1) % m->cfg.n_vocab;
	for (int i = -1; i < reps && rc == 0; i++) {
		fl_pass p = { 0 };
		fl_atp res;
		double t0 = fl_now();

		p.cache = c;
		p.logits = logits;
		if (run_forward(r, ids, &n, 1, &p, &cause) < 0)
			rc = -1;
		if (i >= 0)
			tf[i] = (fl_now() - t0) * 1e3;
		t0 = fl_now();
		if (rc == 0 && atp_estimate(&res, m, ids, bad, n, &o, &cause) != 0)
			rc = -1;
		if (i >= 0)
			ta[i] = (fl_now() - t0) * 1e3;
		atp_clear(&res);
	}
	if (rc != 0) {
		cli_fail(1, "bench --atp: %s", cause);
		free(cause);
	} else {
		*fwd = median(tf, reps);
		*atp = median(ta, reps);
	}
	free(bad);
	free(tf);
	free(ta);
	free(logits);
	run_free(r);
	cache_free(c);
	return rc;
}

/* --trace: the full resid map of one prompt (trace_run, one noise sample:
 * L x T restored runs less those before the subject) three ways,
 * alternating, reps of each, medians into ms[]: [0] packed 32 to a pass
 * (factlens trace's default --batch), [1] the same resumed runs one at a
 * time (--batch 1), [2] each run a whole pass from the embeddings, one at
 * a time (as ROME's trace_with_patch runs a cell). The subject is the
 * prompt's second and third tokens (a subject early in the prompt, as in
 * "The Eiffel Tower is in": nearly every cell runs), the answer token 0.
 * The three maps must agree. 0, or -1 reported. */
static int
bench_trace(fl_model *m, const int *ids, int n, int reps, double ms[3], int *cells)
{
	double *t[3];
	fl_batch *bp = batch_new(m, 32, n), *bs = batch_new(m, 1, n);
	fl_trace_opts o = { TRACE_RESID, 1, 1, 0, 1, NULL, false };
	fl_prompt p = { 0 };
	char *cause = NULL;
	int rc = 0;

	for (int k = 0; k < 3; k++)
		t[k] = xcalloc((size_t)reps, sizeof *t[k]);
	p.ids = (int *)ids;
	p.n = n;
	p.answer = 0;
	p.subj_pos = n > 1 ? 1 : 0;
	p.subj_len = p.subj_pos + 2 <= n ? 2 : 1;
	*cells = m->cfg.n_layer * (n - p.subj_pos);
	for (int i = 0; i < reps && rc == 0; i++) {
		fl_trace map[3];

		memset(map, 0, sizeof map);
		for (int k = 0; k < 3 && rc == 0; k++) {
			double t0 = fl_now();

			o.whole = k == 2;
			if (trace_run(&map[k], k == 0 ? bp : bs, &p, &o, &cause) != 0)
				rc = -1;
			t[k][i] = (fl_now() - t0) * 1e3;
		}
		for (int k = 1; k < 3 && rc == 0; k++)
			for (int c = 0; c < m->cfg.n_layer * n; c++)
				if (fabs(map[0].restore[c] - map[k].restore[c]) > 1e-4) {
					cause = xasprintf("the packed and the %s runs differ "
					    "at cell %d: %g against %g", k == 1 ? "single" :
					    "whole", c, map[0].restore[c], map[k].restore[c]);
					rc = -1;
					break;
				}
		for (int k = 0; k < 3; k++)
			trace_clear(&map[k]);
	}
	if (rc != 0) {
		cli_fail(1, "bench --trace: %s", cause);
		free(cause);
	} else
		for (int k = 0; k < 3; k++)
			ms[k] = median(t[k], reps);
	batch_free(bp);
	batch_free(bs);
	for (int k = 0; k < 3; k++)
		free(t[k]);
	return rc;
}

const cli_opt cmd_bench_opts[] = {
	CLI_SHARED_MODEL,
	{ "tokens", 'n', "N", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "the prompt's length in tokens (default 16)" },
	{ "reps", 'r', "N", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "timed passes of each kind (default 20)" },
	CLI_SHARED_THREADS,
	{ "idle", 'i', "MS", 0, CLI_GROUP_OWN,
	  "a pause of MS milliseconds before each timed pass" },
	{ "atp", 'a', NULL, 0, CLI_GROUP_OWN,
	  "also time attribution patching of every head and every layer's "
	  "neurons against a bare forward pass (no lens), interleaved" },
	{ "trace", 'X', NULL, 0, CLI_GROUP_OWN,
	  "also time causal tracing's full resid map (one noise sample), its "
	  "restored runs packed 32 to a pass against the same runs one at a "
	  "time and against each run a whole pass one at a time, alternating "
	  "(3 of each unless --reps)" },
	CLI_SHARED_JSON,
	CLI_SHARED_WEIGHTS,
	CLI_SHARED_STRICT,
	CLI_OPT_END
};

int
cmd_bench(int argc, char **argv)
{
	const char *dir = NULL;
	int tokens = 16, reps = 20, threads = 2, c, L, V, rss_tokens = 64, idle = 0;
	bool json = false, atp = false, trace = false, reps_set = false;
	double atp_fwd_ms = 0, atp_ms = 0, tr[3] = { 0, 0, 0 };
	int tr_cells = 0;
	cli_shared sh = { .dir = &dir, .threads = &threads, .json = &json };
	double *t_fwd, *t_last, t_load[5], load_ms, fwd_ms, last_ms, rss;
	fl_model *m;
	fl_run *r;
	fl_cache *cache;
	float *lens;
	int *ids;
	fl_self_mask mask = { 0 };
	fl_hook hook = { HOOK_ATTN_SCORES, -1, hook_self_mask, &mask };
	fl_pass p0 = { 0 }, pm = { 0 };
	char *cause = NULL;

	optind = 1;
	while ((c = cli_getopt(argc, argv, cmd_bench_opts, &sh)) != -1) {
		switch (c) {
		case 'n': if (cli_int("--tokens", optarg, 1, 1 << 16, &tokens)) return 2; break;
		case 'r':
			if (cli_int("--reps", optarg, 1, 100000, &reps))
				return 2;
			reps_set = true;
			break;
		case 'X': trace = true; break;
		case 'i': if (cli_int("--idle", optarg, 1, 60000, &idle)) return 2; break;
		case 'a': atp = true; break;
		case CLI_GETOPT_BAD: return 2;
		default:
			return cli_fail(2, "%s", cli_usage("bench"));
		}
	}
	if (dir == NULL)
		dir = fl_default_model();
	kern_set_threads(threads);

	for (int i = 0; i < 5; i++) {
		double t0 = fl_now();

		m = model_load(dir, cli_model_opts(), &cause);
		if (m == NULL) {
			cli_fail(1, "%s", cause);
			free(cause);
			return 1;
		}
		t_load[i] = (fl_now() - t0) * 1e3;
		if (i < 4)
			model_free(m);
	}
	load_ms = median(t_load, 5);
	L = m->cfg.n_layer;
	V = m->cfg.n_vocab;
	if (tokens > m->cfg.n_ctx)
		tokens = m->cfg.n_ctx;
	if (rss_tokens > m->cfg.n_ctx)
		rss_tokens = m->cfg.n_ctx;

	ids = xcalloc((size_t)rss_tokens > (size_t)tokens ? (size_t)rss_tokens :
	    (size_t)tokens, sizeof *ids);
	bench_ids(ids, tokens, V, m->cfg.bos_id);
	r = run_new(m, tokens, tokens);
	cache = cache_new(m, tokens, FL_CACHE_PATTERN);
	lens = xmalloc((size_t)(L + 1) * V * sizeof *lens);
	t_fwd = xcalloc((size_t)reps, sizeof *t_fwd);
	t_last = xcalloc((size_t)reps, sizeof *t_last);

	hook.layer = L - 1;
	pm.hooks = &hook;
	pm.n_hooks = 1;
	pm.cache = cache;
	pm.start_layer = L - 1;
	pm.last_row_only = true;
	pm.logits = lens + (size_t)L * V;
	for (int i = -2; i < reps; i++) {	/* two warm-up passes */
		double t0;

		/* With --idle, each full pass follows a pause, as the explorer's
		 * follow the user's keys. */
		if (idle > 0) {
			struct timespec ts = { idle / 1000, (long)(idle % 1000) * 1000000L };

			nanosleep(&ts, NULL);
		}
		t0 = fl_now();

		if (bench_forward(m, r, cache, ids, tokens, lens, &p0) != 0)
			return 1;
		if (i >= 0)
			t_fwd[i] = (fl_now() - t0) * 1e3;
		t0 = fl_now();
		if (run_forward(r, ids, &tokens, 1, &pm, &cause) < 0) {
			cli_fail(1, "%s", cause);
			free(cause);
			return 1;
		}
		if (i >= 0)
			t_last[i] = (fl_now() - t0) * 1e3;
	}
	fwd_ms = median(t_fwd, reps);
	last_ms = median(t_last, reps);
	run_free(r);
	cache_free(cache);
	if (atp && bench_atp(m, ids, tokens, reps, &atp_fwd_ms, &atp_ms) != 0)
		return 1;
	if (trace && bench_trace(m, ids, tokens, reps_set ? reps : 3, tr,
	    &tr_cells) != 0)
		return 1;

	/* Peak memory at rss_tokens with the full cache and the lens. */
	bench_ids(ids, rss_tokens, V, m->cfg.bos_id);
	r = run_new(m, rss_tokens, rss_tokens);
	cache = cache_new(m, rss_tokens, FL_CACHE_PATTERN);
	bench_forward(m, r, cache, ids, rss_tokens, lens, &p0);
	rss = peak_rss_mb();
	run_free(r);
	cache_free(cache);

	if (json) {
		printf("{\"model\": \"%s\", \"threads\": %d, \"tokens\": %d, \"reps\": %d, "
		    "\"weights_mb\": %.1f, \"load_ms\": %.2f, \"forward_lens_ms\": %.2f, "
		    "\"last_layer_ms\": %.2f, \"last_layer_ratio\": %.3f, "
		    "\"peak_rss_mb\": %.1f, \"rss_tokens\": %d, \"blas_kernels\": \"%s\", "
		    "\"weights\": \"%s\", \"converted_mb\": %.1f, \"stored_mb\": %.1f",
		    dir, threads, tokens, reps, m->weight_bytes / 1048576.0, load_ms,
		    fwd_ms, last_ms, last_ms / fwd_ms, rss, rss_tokens, kern_blas_kernels(),
		    model_weights_name(m->weights_mode),
		    m->owned_floats * 4 / 1048576.0, m->stored_bytes / 1048576.0);
		if (atp)
			printf(", \"forward_ms\": %.2f, \"atp_ms\": %.2f, "
			    "\"atp_ratio\": %.3f, \"atp_lens_ratio\": %.3f", atp_fwd_ms,
			    atp_ms, atp_ms / atp_fwd_ms, atp_ms / fwd_ms);
		if (trace)
			printf(", \"trace_cells\": %d, \"trace_packed_ms\": %.1f, "
			    "\"trace_single_ms\": %.1f, \"trace_ratio\": %.3f, "
			    "\"trace_whole_ms\": %.1f, \"trace_whole_ratio\": %.3f",
			    tr_cells, tr[0], tr[1], tr[1] / tr[0], tr[2], tr[2] / tr[0]);
		printf("}\n");
	} else {
		printf("model            %s (%d layers, d_model %d, vocab %d, %.1f MB "
		    "of weights)\n", dir, L, m->cfg.d_model, V, m->weight_bytes / 1048576.0);
		if (m->weights_mode == FL_WEIGHTS_COPY)
			printf("weights          copy: %.1f MB copied at load (%.1f MB "
			    "of it f16/bf16, as stored)\n", m->owned_floats * 4 /
			    1048576.0, m->stored_bytes / 1048576.0);
		else
			printf("weights          %s: %.1f MB converted to f32 at load, "
			    "%.1f MB of f16/bf16 weights used as stored\n",
			    model_weights_name(m->weights_mode),
			    m->owned_floats * 4 / 1048576.0, m->stored_bytes / 1048576.0);
		printf("threads          %d (BLIS kernels: %s, single-threaded "
		    "inside them)\n", threads, kern_blas_kernels());
		printf("load             %.2f ms (open, validate, map%s; median of 5)\n",
		    load_ms, m->weights_mode == FL_WEIGHTS_COPY ? ", copy" : "");
		printf("forward + lens   %.2f ms (%d tokens, full cache, lens of %d "
		    "streams; median of %d%s)\n", fwd_ms, tokens, L + 1, reps,
		    idle > 0 ? ", each after a pause" : "");
		printf("last layer only  %.2f ms (%.1f%% of the full pass: the mask "
		    "toggle)\n", last_ms, 100 * last_ms / fwd_ms);
		if (atp) {
			printf("forward alone    %.2f ms (%d tokens, the cache atp keeps, "
			    "last position's logits, no lens)\n", atp_fwd_ms, tokens);
			printf("atp              %.2f ms (every head and every layer's "
			    "neurons: 2 forwards + 1 backward): %.2fx the forward alone, "
			    "%.2fx forward + lens\n", atp_ms, atp_ms / atp_fwd_ms,
			    atp_ms / fwd_ms);
		}
		if (trace) {
			printf("trace, packed    %.1f ms (the full resid map: %d layers x "
			    "%d positions, %d restored runs, 32 to a pass; median of "
			    "%d)\n", tr[0], L, tokens, tr_cells, reps_set ? reps : 3);
			printf("trace, single    %.1f ms (the same resumed runs one at a "
			    "time): %.2fx the packed map\n", tr[1], tr[1] / tr[0]);
			printf("trace, whole     %.1f ms (each run a whole pass from the "
			    "embeddings, one at a time): %.2fx the packed map\n", tr[2],
			    tr[2] / tr[0]);
		}
		printf("peak RSS         %.1f MB (after a %d-token pass)\n", rss, rss_tokens);
	}
	free(lens);
	free(ids);
	free(t_fwd);
	free(t_last);
	model_free(m);
	return 0;
}
