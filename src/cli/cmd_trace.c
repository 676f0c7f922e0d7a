/* cmd_trace.c - factlens trace: causal tracing of one prompt (the layers x
 * positions map of P(answer) with one state restored in a run whose subject
 * is corrupted by noise) or the average indirect effect over a task; and
 * factlens knockout: P(answer) with the last position's attention to the
 * subject, the relation or itself blocked, per start layer (trace.h). One
 * file: the two share the prompt, subject and answer set-up. */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "analysis/lens.h"
#include "analysis/report.h"
#include "analysis/trace.h"
#include "cli.h"
#include "shard.h"
#include "engine/pool.h"
#include "plot/plot.h"

typedef struct {
	const char	*dir;
	const char	*prompt;
	const char	*answer;
	const char	*subject;
	const char	*task;
	const char	*noise;
	const char	*plot;		/* --plot FILE */
	int		 set;
	int		 kind;		/* trace: fl_trace_kind; knockout: fl_knock_block */
	int		 window;
	int		 samples;
	int		 seed;
	int		 batch;
	int		 threads;
	double		 scale;
	bool		 json;
	bool		 single_token;	/* --single-token */
	bool		 samples_set, seed_set;
	cli_shard	 shard;		/* --shard I/N, --out FILE (with --task) */
} trace_args;

const cli_opt cmd_trace_opts[] = {
	CLI_SHARED_MODEL,
	{ "prompt", 'p', "TEXT", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "the prompt to trace (without --task, required)" },
	{ "answer", 'a', "TEXT", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "the answer, scored on its first token (default: the task's answer for "
	  "the subject, else the clean run's top next token, as ROME does)" },
	{ "subject", 's', "TEXT", 0, CLI_GROUP_OWN,
	  "the subject, a whole word of the prompt, whose tokens the noise "
	  "corrupts (default: the subject of --task, or of the default task, found "
	  "last in the prompt)" },
	{ "kind", 'K', "resid|mlp|attn", 0, CLI_GROUP_OWN,
	  "what each cell restores to its clean value: resid_pre of the layer at "
	  "the position (the default), or the MLP's or attention's output there "
	  "over --window layers" },
	{ "window", 'w', "W", 0, CLI_GROUP_OWN,
	  "with mlp and attn, the layers restored together, centred on the cell's "
	  "layer as ROME centres them (default 10, clipped to the model)" },
	{ "noise", 'n', "FILE", 0, CLI_GROUP_OWN,
	  "the noise to add instead of drawing it: raw little-endian float32, "
	  "[subject tokens x d_model], one sample, added as it is" },
	{ "noise-scale", 'S', "S", CLI_OPT_OR, CLI_GROUP_OWN,
	  "the standard deviation of the drawn noise (default 3 x that of the "
	  "token embedding matrix, ROME's)" },
	{ "samples", 'N', "N", CLI_OPT_NESTED, CLI_GROUP_OWN,
	  "noise samples averaged (default 10)" },
	{ "seed", 'r', "K", CLI_OPT_NESTED, CLI_GROUP_OWN,
	  "the seed of the noise samples (default 1; prompt i of a task uses K + i)" },
	CLI_SHARED_JSON,
	CLI_SHARED_PLOT,
	CLI_SHARED_TASK(0),
	CLI_SHARED_TEMPLATES,
	CLI_SHARED_SINGLE_TOKEN(0),
	CLI_SHARED_BATCH(0),
	CLI_SHARED_SHARD,
	CLI_SHARED_OUT,
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_OPT_END
};

const cli_opt cmd_knockout_opts[] = {
	CLI_SHARED_MODEL,
	{ "prompt", 'p', "TEXT", CLI_OPT_SHORT | CLI_OPT_REQUIRED, CLI_GROUP_OWN,
	  "the prompt to run" },
	{ "answer", 'a', "TEXT", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "the answer, scored on its first token (default: the clean run's top "
	  "next token)" },
	{ "subject", 's', "TEXT", 0, CLI_GROUP_OWN,
	  "the subject, a whole word of the prompt (default: the default task's "
	  "subject found last in the prompt)" },
	{ "block", 'b', "subject|relation|other", 0, CLI_GROUP_OWN,
	  "the keys the last position may not attend to: the subject's tokens "
	  "(the default), every other token before the last (Geva et al.'s "
	  "non-subject positions), or the last token itself" },
	{ "window", 'w', "W", 0, CLI_GROUP_OWN,
	  "the layers blocked together, from each start layer on (default 1)" },
	CLI_SHARED_JSON,
	CLI_SHARED_PLOT,
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_OPT_END
};

static int
trace_parse(trace_args *a, int argc, char **argv, bool knockout)
{
	const char *cmd = knockout ? "knockout" : "trace";
	cli_shared sh = { .dir = &a->dir, .threads = &a->threads, .json = &a->json,
	    .plot = &a->plot };
	int c;

	if (!knockout) {
		sh.task = &a->task;
		sh.set = &a->set;
		sh.batch = &a->batch;
		sh.shard = &a->shard;
		sh.single_token = &a->single_token;
	}
	memset(a, 0, sizeof *a);
	a->window = knockout ? 1 : TRACE_WINDOW;
	a->samples = TRACE_SAMPLES;
	a->seed = 1;
	a->batch = 32;
	optind = 1;
	while ((c = cli_getopt(argc, argv, knockout ? cmd_knockout_opts :
	    cmd_trace_opts, &sh)) != -1) {
		switch (c) {
		case 'p': a->prompt = optarg; break;
		case 'a': a->answer = optarg; break;
		case 's': a->subject = optarg; break;
		case 'K':
			if ((a->kind = trace_kind_parse(optarg)) < 0)
				return cli_fail(2, "--kind takes resid, mlp or attn, not '%s'",
				    optarg);
			break;
		case 'b':
			if ((a->kind = knock_block_parse(optarg)) < 0)
				return cli_fail(2, "--block takes subject, relation or other, "
				    "not '%s'", optarg);
			break;
		case 'w':
			if (cli_int("--window", optarg, 1, 4096, &a->window))
				return 2;
			break;
		case 'n': a->noise = optarg; break;
		case 'S':
			if (cli_parse_double("--noise-scale", optarg, 1e-9, 1e9, &a->scale))
				return 2;
			break;
		case 'N':
			if (cli_int("--samples", optarg, 1, 100000, &a->samples))
				return 2;
			a->samples_set = true;
			break;
		case 'r':
			if (cli_int("--seed", optarg, 0, 1 << 30, &a->seed))
				return 2;
			a->seed_set = true;
			break;
		case CLI_GETOPT_BAD:
			return 2;
		default:
			return cli_fail(2, "%s", cli_usage(cmd));
		}
	}
	if (optind < argc)
		return cli_fail(2, "%s: unexpected argument '%s' (the prompt goes after "
		    "--prompt)", cmd, argv[optind]);
	if (a->noise != NULL && (a->scale > 0 || a->samples_set || a->seed_set))
		return cli_fail(2, "%s: --noise FILE is the one sample: not with "
		    "--noise-scale, --samples or --seed", cmd);
	if (a->task != NULL && a->noise != NULL)
		return cli_fail(2, "%s: --noise FILE fits one prompt's subject, not "
		    "--task's prompts", cmd);
	if (a->task != NULL && (a->prompt != NULL || a->answer != NULL ||
	    a->subject != NULL))
		return cli_fail(2, "%s: --task traces the task's prompts: not with "
		    "--prompt, --answer or --subject", cmd);
	if (a->task == NULL && (a->shard.count > 0 || a->shard.out != NULL))
		return cli_fail(2, "%s: --shard and --out split a --task's prompts: "
		    "not with one --prompt", cmd);
	if (a->shard.out != NULL && a->shard.count == 0)
		return cli_fail(2, "%s: --out FILE writes a partial: it needs --shard "
		    "I/N", cmd);
	if (a->task == NULL && a->prompt == NULL)
		return cli_fail(2, "%s: --prompt TEXT is required%s", cmd, knockout ?
		    "" : " (or --task FILE)");
	if (a->dir == NULL)
		a->dir = fl_default_model();
	return 0;
}

/* The prompt with its subject and answer: the answer given, else the
 * task's for the subject, else the clean run's top token. 0, or 1 after
 * saying why. */
static int
trace_prompt(fl_prompt *p, const fl_model *m, const trace_args *a, bool *top)
{
	fl_task *subjects = NULL;
	const char *answer = a->answer;
	char *cause = NULL;
	int off = -1, len = 0, pair = -1;

	*top = false;
	if (a->subject == NULL && fl_file_exists(fl_default_task()))
		subjects = task_load(fl_default_task(), NULL);
	if (cli_find_subject(subjects, a->prompt, a->subject, &off, &len, &pair) != 0) {
		task_free(subjects);
		return 1;
	}
	if (answer == NULL && pair >= 0 && subjects != NULL)
		answer = subjects->pairs[pair].answer;
	if (prompt_make(p, m, a->prompt, off, len, answer, true, &cause) != 0) {
		task_free(subjects);
		cli_fail(1, "%s", cause);
		free(cause);
		return 1;
	}
	task_free(subjects);
	if (p->answer < 0) {
		fl_run *r = run_new(m, p->n, p->n);
		float *lg = xmalloc((size_t)m->cfg.n_vocab * sizeof *lg);
		fl_pass pass = { 0 };
		int T = p->n, best = -1;

		pass.logits = lg;
		if (run_forward(r, p->ids, &T, 1, &pass, &cause) < 0) {
			cli_fail(1, "%s", cause);
			free(cause);
		} else
			lens_topk(lg, m->cfg.n_vocab, 1, &best, NULL);
		free(lg);
		run_free(r);
		if (best < 0)
			return 1;
		p->answer = best;
		p->answer_tokens = 1;
		*top = true;
	}
	return 0;
}

/* --noise FILE: exactly subject tokens x d_model floats. Heap, or NULL
 * after saying what is wrong with the file. */
static float *
read_noise(const char *path, int subj_len, int D)
{
	char *cause = NULL, *buf;
	size_t len = 0, want = (size_t)subj_len * D * sizeof(float);
	struct stat st;

	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size != want)
		goto wrong_size;
	if ((buf = fl_read_file(path, &len, want, &cause)) == NULL) {
		cli_fail(1, "%s", cause);
		free(cause);
		return NULL;
	}
	if (len == want)
		return (float *)buf;	/* the host is little-endian, as the file */
	free(buf);
	st.st_size = (off_t)len;
wrong_size:
	cli_fail(1, "%s: holds %lld bytes; the noise of the subject's %d token%s x "
	    "d_model %d is %zu bytes of float32", path, (long long)st.st_size,
	    subj_len, subj_len == 1 ? "" : "s", D, want);
	return NULL;
}

static void
print_trace(const trace_args *a, const fl_model *m, const fl_prompt *p,
    const fl_trace *res, bool top, double secs)
{
	int L = res->n_layer, T = res->n_tok;
	char *ans = cli_token_repr(m->tok, p->answer);

	if (res->kind == TRACE_RESID)
		printf("causal trace: resid_pre of the cell's layer restored at its "
		    "token\n");
	else
		printf("causal trace: the %s output restored at the cell's token in "
		    "%d layer%s around its layer\n", res->kind == TRACE_MLP ? "MLP" :
		    "attention", res->window, res->window == 1 ? "" : "s");
	printf("answer  %s%s: P clean %.4f, corrupted %.4f (noise on the subject's "
	    "%d token%s, %s, %d sample%s)\n", ans, top ? " (the clean top token)" : "",
	    res->p_clean, res->p_corrupt, res->subj_len, res->subj_len == 1 ? "" : "s",
	    a->noise ? a->noise : "drawn", res->samples, res->samples == 1 ? "" : "s");
	if (a->noise == NULL)
		printf("        noise std %.4g, seed %d\n", res->scale, a->seed);
	printf("\nP(answer) with the cell restored (rows: tokens, * the subject; "
	    "columns: layers)\n%-3s %-14s", "", "token");
	for (int l = 0; l < L; l++)
		printf(" %6d", l);
	putchar('\n');
	for (int t = 0; t < T; t++) {
		bool subj = t >= res->subj_pos && t < res->subj_pos + res->subj_len;

		printf("%2d%c ", t, subj ? '*' : ' ');
		cli_print_token(m, p->ids[t], 14);
		for (int l = 0; l < L; l++)
			printf(" %6.3f", res->restore[(size_t)l * T + t]);
		putchar('\n');
	}
	printf("\n%.2f s, %d thread%s\n", secs, kern_threads(),
	    kern_threads() == 1 ? "" : "s");
	free(ans);
}

static cJSON *
json_trace(const trace_args *a, const fl_model *m, const fl_prompt *p,
    const fl_trace *res, bool top, double secs)
{
	cJSON *root = cJSON_CreateObject(), *arr, *o;
	int V = m->cfg.n_vocab, T = res->n_tok;
	char name[64];

	cJSON_AddItemToObject(root, "model", report_string(a->dir));
	cJSON_AddItemToObject(root, "prompt", report_string(a->prompt));
	arr = cJSON_AddArrayToObject(root, "tokens");
	for (int i = 0; i < T; i++)
		cJSON_AddItemToArray(arr, report_token(m->tok, p->ids[i], NULL, V));
	o = report_token(m->tok, p->answer, NULL, V);
	cJSON_AddBoolToObject(o, "top_token", top);
	cJSON_AddItemToObject(root, "answer", o);
	o = cJSON_AddObjectToObject(root, "subject");
	cJSON_AddNumberToObject(o, "position", res->subj_pos);
	cJSON_AddNumberToObject(o, "tokens", res->subj_len);
	cJSON_AddStringToObject(root, "kind", trace_kind_name(res->kind));
	cJSON_AddStringToObject(root, "restored", hook_point_name(res->kind ==
	    TRACE_RESID ? HOOK_RESID_PRE : res->kind == TRACE_MLP ? HOOK_MLP_OUT :
	    HOOK_ATTN_OUT, 0, name, sizeof name));
	cJSON_AddNumberToObject(root, "window", res->window);
	o = cJSON_AddObjectToObject(root, "noise");
	if (a->noise != NULL)
		cJSON_AddItemToObject(o, "file", report_string(a->noise));
	else {
		cJSON_AddNumberToObject(o, "scale", res->scale);
		cJSON_AddNumberToObject(o, "seed", a->seed);
	}
	cJSON_AddNumberToObject(o, "samples", res->samples);
	cJSON_AddItemToObject(root, "p_clean", report_number(res->p_clean));
	cJSON_AddItemToObject(root, "p_corrupt", report_number(res->p_corrupt));
	cJSON_AddItemToObject(root, "restore", report_grid_d(res->restore,
	    res->n_layer, T));
	cJSON_AddNumberToObject(root, "seconds", secs);
	cJSON_AddNumberToObject(root, "threads", kern_threads());
	return root;
}

/* A prompt's trace as a partial's line, and back (checked against the
 * merge's prompt: its tokens and subject). */
static cJSON *
trace_row_json(const fl_trace *one, int i)
{
	cJSON *row = cJSON_CreateObject();

	cJSON_AddNumberToObject(row, "prompt", i);
	cJSON_AddNumberToObject(row, "tokens", one->n_tok);
	cJSON_AddNumberToObject(row, "subject_pos", one->subj_pos);
	cJSON_AddNumberToObject(row, "subject_len", one->subj_len);
	cli_json_add_f64(row, "p_clean", &one->p_clean, 1);
	cli_json_add_f64(row, "p_corrupt", &one->p_corrupt, 1);
	cli_json_add_f64(row, "restore", one->restore, (size_t)one->n_layer *
	    one->n_tok);
	return row;
}

static int
trace_row_add(cli_merge *mg, fl_trace_avg *res, const fl_prompt *p, int i)
{
	cJSON *row = cli_merge_row(mg, i);
	fl_trace one = { 0 };
	int rc = 1;

	if (row == NULL)
		return 1;
	if (cli_json_get_int(mg, i, row, "tokens", &one.n_tok) ||
	    cli_json_get_int(mg, i, row, "subject_pos", &one.subj_pos) ||
	    cli_json_get_int(mg, i, row, "subject_len", &one.subj_len))
		goto out;
	if (one.n_tok != p->n || one.subj_pos != p->subj_pos ||
	    one.subj_len != p->subj_len) {
		cli_fail(1, "%s: prompt %d has %d tokens, subject at %d (%d tokens); "
		    "the task makes it %d, at %d (%d)", mg->parts[i % mg->count].path,
		    i, one.n_tok, one.subj_pos, one.subj_len, p->n, p->subj_pos,
		    p->subj_len);
		goto out;
	}
	one.n_layer = res->n_layer;
	one.restore = xmalloc((size_t)one.n_layer * one.n_tok * sizeof *one.restore);
	if (cli_json_get_f64(mg, i, row, "p_clean", &one.p_clean, 1) ||
	    cli_json_get_f64(mg, i, row, "p_corrupt", &one.p_corrupt, 1) ||
	    cli_json_get_f64(mg, i, row, "restore", one.restore,
	    (size_t)one.n_layer * one.n_tok))
		goto out;
	trace_avg_add(res, &one);
	rc = 0;
out:
	free(one.restore);
	cJSON_Delete(row);
	return rc;
}

/* --task: the average indirect effect over the task's prompts; with
 * --shard, a partial of the share's traces; with mg, the merge of the
 * partials (shard.h). */
/* What a trace restores, for a figure's subtitle. Heap. */
static char *
plot_restored(fl_trace_kind kind, int window)
{
	if (kind == TRACE_RESID)
		return xstrdup("resid_pre of the cell's layer restored at the cell's token");
	return xasprintf("the %s output (hook_%s_out) restored at the cell's token in "
	    "a window of %d layer%s around the cell's layer%s", kind == TRACE_MLP ?
	    "MLP" : "attention", kind == TRACE_MLP ? "mlp" : "attn", window,
	    window == 1 ? "" : "s", window > 1 ? ", clipped to the model" : "");
}

/* Writes a trace map to path: 0, or 1 after saying why. */
static int
trace_plot_write(const char *path, const plot_map *pm)
{
	char *cause = NULL;

	if (plot_trace(path, pm, &cause) != 0) {
		cli_fail(1, "%s", cause);
		free(cause);
		return 1;
	}
	return 0;
}

/* trace --plot: the map of P(answer) with each cell restored. 0, or 1
 * after saying why. */
static int
trace_plot(const trace_args *a, const fl_model *m, const fl_prompt *p,
    const fl_trace *res)
{
	int T = res->n_tok, rc;
	char **rows = xcalloc((size_t)T, sizeof *rows);
	bool *mark = xcalloc((size_t)T, sizeof *mark);
	char *ans = cli_plot_token(m, p->answer), *title, *what, *sub;
	plot_map pm = { 0 };

	for (int t = 0; t < T; t++) {
		rows[t] = cli_plot_token(m, p->ids[t]);
		mark[t] = t >= res->subj_pos && t < res->subj_pos + res->subj_len;
	}
	title = xasprintf("causal trace: \"%s\" -> \"%s\"", a->prompt, ans);
	what = plot_restored(res->kind, res->window);
	sub = xasprintf("%s; P(clean) %.4f, P(corrupt) %.4f (noise on the subject's "
	    "%d token%s, %d sample%s)", what, res->p_clean, res->p_corrupt,
	    res->subj_len, res->subj_len == 1 ? "" : "s", res->samples,
	    res->samples == 1 ? "" : "s");
	pm = (plot_map){ title, sub, "colour: P(answer) at the last position with "
	    "the cell restored in the corrupted run, from 0 to the largest; rows "
	    "marked * and framed: the subject's tokens, which the noise corrupts",
	    "token", res->n_layer, T, (const char *const *)rows, mark, res->restore,
	    false };
	rc = trace_plot_write(a->plot, &pm);
	for (int t = 0; t < T; t++)
		free(rows[t]);
	free(rows);
	free(mark);
	free(ans);
	free(title);
	free(what);
	free(sub);
	return rc;
}

/* trace --task --plot: the average indirect effect by position group. */
static int
trace_task_plot(const trace_args *a, const fl_task *t, const fl_trace_avg *res)
{
	const int G = TRACE_POS_COUNT;
	char *rows[TRACE_POS_COUNT], *title, *what, *sub;
	bool mark[TRACE_POS_COUNT];
	plot_map pm;
	int rc;

	for (int g = 0; g < G; g++) {
		rows[g] = xasprintf("%s (%d)", trace_pos_name((fl_trace_pos)g),
		    res->count[g]);
		mark[g] = g == TRACE_POS_SUBJ_FIRST || g == TRACE_POS_SUBJ_MIDDLE ||
		    g == TRACE_POS_SUBJ_LAST;
	}
	title = xasprintf("causal trace over %s: %d prompts", t->name, res->n_prompts);
	what = plot_restored(res->kind, res->window);
	sub = xasprintf("%s; mean P(clean) %.4f, P(corrupt) %.4f (%d sample%s a prompt)",
	    what, res->p_clean, res->p_corrupt, res->samples, res->samples == 1 ? "" : "s");
	pm = (plot_map){ title, sub, "colour: the average indirect effect, P "
	    "restored - P corrupted, over the prompts that have the position (their "
	    "count in brackets); hatched: no prompt has it; rows marked * and "
	    "framed: the subject's tokens", "position", res->n_layer, G,
	    (const char *const *)rows, mark, res->aie, true };
	rc = trace_plot_write(a->plot, &pm);
	for (int g = 0; g < G; g++)
		free(rows[g]);
	free(title);
	free(what);
	free(sub);
	return rc;
}

static int
trace_task(const trace_args *a, const fl_model *m, const fl_trace_opts *o,
    double t0, int argc, char **argv, cli_merge *mg)
{
	fl_task *t = cli_load_task(a->task);
	fl_prompt_set ps = { 0 };
	fl_prompt_opts po = { (fl_template_set)a->set, 0, 1, false,
	    a->single_token, false };
	fl_trace_avg res = { 0 };
	fl_batch *b = NULL;
	cli_progress_state prog;
	char *cause = NULL;
	int rc = 1, L = m->cfg.n_layer, G = TRACE_POS_COUNT, *idx = NULL, k = 0;
	cli_part_writer w;
	double parts_seconds = 0;

	if (t == NULL)
		return 1;
	if (task_prompts(&ps, m, t, &po, &cause) != 0)
		goto fail_cause;
	cli_note_dropped("trace", &po, &ps);
	if (mg != NULL) {
		if (mg->prompts != ps.n) {
			cli_fail(1, "%s: %d prompts in all, but %s makes %d of %s",
			    mg->parts[0].path, mg->prompts, a->task, ps.n, a->dir);
			goto out;
		}
		trace_avg_init(&res, m, o);
		for (int i = 0; i < ps.n; i++)
			if (trace_row_add(mg, &res, &ps.p[i], i) != 0)
				goto out;
		if (cli_merge_end(mg) != 0)
			goto out;
		trace_avg_finish(&res);
		parts_seconds = cli_merge_work_sum(mg, "seconds");
	} else {
		idx = cli_shard_select(&a->shard, ps.n, &k);
		b = batch_new(m, a->batch, ps.max_len);
		cli_progress_init(&prog, "trace");
		b->progress = cli_progress_of(&prog);
		for (int j = 0; j < k; j++)
			b->total += trace_units(m, o, ps.p[idx[j]].n);
		if (a->shard.count > 0 && cli_part_begin(&w, &a->shard, m, "trace",
		    argc, argv, ps.n) != 0)
			goto out;
		cli_interrupt_catch();
		trace_avg_init(&res, m, o);
		rc = 0;
		for (int j = 0; j < k && rc == 0; j++) {
			fl_trace one;

			if ((rc = trace_task_prompt(&one, b, &ps.p[idx[j]], idx[j], o,
			    &cause)) != 0)
				break;
			if (a->shard.count > 0)
				cli_part_row(&w, trace_row_json(&one, idx[j]));
			else
				trace_avg_add(&res, &one);
			trace_clear(&one);
		}
		rc = cli_work_end(&prog, rc, "causal tracing");
		if (rc == 0 && a->shard.count > 0) {
			cJSON *work = cJSON_CreateObject();

			cJSON_AddNumberToObject(work, "seconds", fl_now() - t0);
			rc = cli_part_end(&w, work);
			goto out;
		}
		if (a->shard.count > 0 && rc != 0 && w.f != stdout)
			fclose(w.f);
		if (rc == FL_EXIT_STOPPED)
			goto out;
		if (rc != 0) {
			rc = 1;
			goto fail_cause;
		}
		trace_avg_finish(&res);
	}
	if (a->plot != NULL && trace_task_plot(a, t, &res) != 0) {
		rc = 1;
		goto out;
	}
	rc = 1;
	if (a->json) {
		cJSON *root = cJSON_CreateObject(), *arr, *obj;

		cJSON_AddItemToObject(root, "model", report_string(a->dir));
		obj = cJSON_AddObjectToObject(root, "task");
		cJSON_AddStringToObject(obj, "name", t->name);
		cJSON_AddItemToObject(obj, "file", report_string(a->task));
		cJSON_AddStringToObject(obj, "templates", task_set_name(po.set));
		cli_json_prompt_filters(obj, &po, ps.dropped);
		cJSON_AddNumberToObject(root, "prompts", res.n_prompts);
		cJSON_AddStringToObject(root, "kind", trace_kind_name(res.kind));
		cJSON_AddNumberToObject(root, "window", res.window);
		cJSON_AddNumberToObject(root, "samples", res.samples);
		cJSON_AddNumberToObject(root, "seed", a->seed);
		cJSON_AddItemToObject(root, "p_clean", report_number(res.p_clean));
		cJSON_AddItemToObject(root, "p_corrupt", report_number(res.p_corrupt));
		arr = cJSON_AddArrayToObject(root, "positions");
		for (int g = 0; g < G; g++) {
			cJSON *e = cJSON_CreateObject();

			cJSON_AddStringToObject(e, "name", trace_pos_name((fl_trace_pos)g));
			cJSON_AddNumberToObject(e, "prompts", res.count[g]);
			cJSON_AddItemToArray(arr, e);
		}
		cJSON_AddItemToObject(root, "aie", report_grid_d(res.aie, L, G));
		cJSON_AddNumberToObject(root, "seconds", parts_seconds + fl_now() - t0);
		cJSON_AddNumberToObject(root, "threads", kern_threads());
		rc = cli_json_print(root);
		goto out;
	}
	printf("causal trace over %s: %d prompts, %s restored%s; mean P clean %.4f, "
	    "corrupted %.4f\n\naverage indirect effect, P restored - P corrupted "
	    "(rows: positions; columns: layers)\n%-24s", t->name, res.n_prompts,
	    trace_kind_name(res.kind), res.kind == TRACE_RESID ? "" : " (window)",
	    res.p_clean, res.p_corrupt, "");
	for (int l = 0; l < L; l++)
		printf(" %6d", l);
	putchar('\n');
	for (int g = 0; g < G; g++) {
		printf("%-24s", trace_pos_name((fl_trace_pos)g));
		for (int l = 0; l < L; l++) {
			double v = res.aie[(size_t)l * G + g];

			if (isnan(v))
				printf(" %6s", "-");
			else
				printf(" %6.3f", v);
		}
		putchar('\n');
	}
	printf("\n%.2f s, %d thread%s\n", parts_seconds + fl_now() - t0, kern_threads(),
	    kern_threads() == 1 ? "" : "s");
	rc = 0;
	goto out;
fail_cause:
	cli_fail(1, "%s", cause);
	free(cause);
out:
	free(idx);
	trace_avg_clear(&res);
	batch_free(b);
	prompt_set_clear(&ps);
	task_free(t);
	return rc;
}

static int
trace_main(int argc, char **argv, cli_merge *mg)
{
	trace_args a;
	fl_model *m;
	fl_prompt p = { 0 };
	fl_trace res = { 0 };
	fl_trace_opts o;
	fl_batch *b = NULL;
	float *noise = NULL;
	cli_progress_state prog;
	char *cause = NULL;
	bool top;
	int rc;
	double t0 = fl_now();

	if ((rc = trace_parse(&a, argc, argv, false)) != 0)
		return rc;
	kern_set_threads(a.threads);
	if ((m = mg != NULL ? cli_merge_model(mg, a.dir) : cli_load_model(a.dir)) == NULL)
		return 1;
	o = (fl_trace_opts){ (fl_trace_kind)a.kind, a.window, a.samples, a.scale,
	    (uint64_t)a.seed, NULL, false };
	if (a.task != NULL) {
		rc = trace_task(&a, m, &o, t0, argc, argv, mg);
		model_free(m);
		return rc;
	}
	rc = 1;
	if (trace_prompt(&p, m, &a, &top) != 0)
		goto out;
	if (p.subj_pos < 0) {
		cli_fail(1, "trace: no subject found in \"%s\": give --subject", a.prompt);
		goto out;
	}
	if (a.noise != NULL) {
		if ((o.noise = noise = read_noise(a.noise, p.subj_len,
		    m->cfg.d_model)) == NULL)
			goto out;
	}
	b = batch_new(m, a.batch, p.n);
	cli_progress_init(&prog, "trace");
	b->progress = cli_progress_of(&prog);
	b->total = trace_units(m, &o, p.n);
	cli_interrupt_catch();
	rc = cli_work_end(&prog, trace_run(&res, b, &p, &o, &cause), "causal tracing");
	if (rc == FL_EXIT_STOPPED)
		goto out;
	if (rc != 0) {
		rc = cli_fail(1, "%s", cause);
		free(cause);
		goto out;
	}
	if (a.plot != NULL && trace_plot(&a, m, &p, &res) != 0)
		goto out;
	if (a.json)
		rc = cli_json_print(json_trace(&a, m, &p, &res, top, fl_now() - t0));
	else {
		print_trace(&a, m, &p, &res, top, fl_now() - t0);
		rc = 0;
	}
out:
	trace_clear(&res);
	batch_free(b);
	free(noise);
	prompt_clear(&p);
	model_free(m);
	return rc;
}

int
cmd_trace(int argc, char **argv)
{
	return trace_main(argc, argv, NULL);
}

int
cmd_trace_merge(int argc, char **argv, cli_merge *mg)
{
	return trace_main(argc, argv, mg);
}

int
cmd_knockout(int argc, char **argv)
{
	trace_args a;
	fl_model *m;
	fl_prompt p = { 0 };
	fl_run *r = NULL;
	double *out = NULL, p_clean = 0;
	bool *keys = NULL, top;
	char *cause = NULL;
	int rc, L;
	double t0 = fl_now();

	if ((rc = trace_parse(&a, argc, argv, true)) != 0)
		return rc;
	kern_set_threads(a.threads);
	if ((m = cli_load_model(a.dir)) == NULL)
		return 1;
	L = m->cfg.n_layer;
	rc = 1;
	if (trace_prompt(&p, m, &a, &top) != 0)
		goto out;
	keys = xcalloc((size_t)p.n, sizeof *keys);
	if (knock_keys(&p, (fl_knock_block)a.kind, keys) != 0) {
		cli_fail(1, "knockout: the prompt has no %s tokens to block%s",
		    knock_block_name((fl_knock_block)a.kind), a.kind == KNOCK_SUBJECT ?
		    " (give --subject)" : "");
		goto out;
	}
	r = run_new(m, p.n, p.n);
	out = xcalloc((size_t)L, sizeof *out);
	if (knock_run(out, &p_clean, r, m, &p, keys, a.window, &cause) != 0) {
		cli_fail(1, "%s", cause);
		free(cause);
		goto out;
	}
	if (a.plot != NULL) {
		char *ans = cli_plot_token(m, p.answer), *blocked = xstrdup(""), *title, *sub;
		int prc;

		for (int t = 0; t < p.n; t++)
			if (keys[t]) {
				char *tok = cli_plot_token(m, p.ids[t]), *nb;

				nb = xasprintf("%s%s\"%s\"", blocked, *blocked ? " " : "", tok);
				free(blocked);
				free(tok);
				blocked = nb;
			}
		title = xasprintf("attention knockout: \"%s\" -> \"%s\"", a.prompt, ans);
		sub = xasprintf("P(answer) when the last position may not attend to the "
		    "%s (%s), every head, in %d layer%s from each start layer; P(clean) "
		    "%.4f", knock_block_name((fl_knock_block)a.kind), blocked, a.window,
		    a.window == 1 ? "" : "s", p_clean);
		prc = plot_knockout(a.plot, title, sub, L, out, p_clean, &cause);
		free(ans);
		free(blocked);
		free(title);
		free(sub);
		if (prc != 0) {
			cli_fail(1, "%s", cause);
			free(cause);
			goto out;
		}
	}
	if (a.json) {
		cJSON *root = cJSON_CreateObject(), *arr, *o;
		int V = m->cfg.n_vocab;

		cJSON_AddItemToObject(root, "model", report_string(a.dir));
		cJSON_AddItemToObject(root, "prompt", report_string(a.prompt));
		arr = cJSON_AddArrayToObject(root, "tokens");
		for (int i = 0; i < p.n; i++)
			cJSON_AddItemToArray(arr, report_token(m->tok, p.ids[i], NULL, V));
		o = report_token(m->tok, p.answer, NULL, V);
		cJSON_AddBoolToObject(o, "top_token", top);
		cJSON_AddItemToObject(root, "answer", o);
		cJSON_AddStringToObject(root, "block", knock_block_name((fl_knock_block)a.kind));
		arr = cJSON_AddArrayToObject(root, "blocked");
		for (int t = 0; t < p.n; t++)
			if (keys[t])
				cJSON_AddItemToArray(arr, cJSON_CreateNumber(t));
		cJSON_AddNumberToObject(root, "window", a.window);
		cJSON_AddItemToObject(root, "p_clean", report_number(p_clean));
		arr = cJSON_AddArrayToObject(root, "knockout");
		for (int l = 0; l < L; l++)
			cJSON_AddItemToArray(arr, report_number(out[l]));
		cJSON_AddNumberToObject(root, "seconds", fl_now() - t0);
		cJSON_AddNumberToObject(root, "threads", kern_threads());
		rc = cli_json_print(root);
		goto out;
	}
	{
		char *ans = cli_token_repr(m->tok, p.answer);

		printf("knockout: the last position may not attend to the %s (",
		    knock_block_name((fl_knock_block)a.kind));
		for (int t = 0, first = 1; t < p.n; t++)
			if (keys[t]) {
				printf("%s", first ? "" : " ");
				cli_print_token(m, p.ids[t], 0);
				first = 0;
			}
		printf("), every head, in %d layer%s from each start layer\n",
		    a.window, a.window == 1 ? "" : "s");
		printf("answer  %s%s: P clean %.4f\n\n%6s %-10s %9s\n", ans, top ?
		    " (the clean top token)" : "", p_clean, "layer", "layers", "P");
		free(ans);
	}
	for (int l = 0; l < L; l++) {
		int hi = l + a.window > L ? L : l + a.window;
		char span[32];

		if (hi - l == 1)
			snprintf(span, sizeof span, "%d", l);
		else
			snprintf(span, sizeof span, "%d-%d", l, hi - 1);
		printf("%6d %-10s %9.4f  %+7.1f%%\n", l, span, out[l], p_clean > 0 ?
		    100.0 * (out[l] - p_clean) / p_clean : 0.0);
	}
	rc = 0;
out:
	free(out);
	free(keys);
	run_free(r);
	prompt_clear(&p);
	model_free(m);
	return rc;
}
