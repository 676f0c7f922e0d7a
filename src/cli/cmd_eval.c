/* cmd_eval.c - factlens eval: the paper's grid over a task - mean
 * P(answer), top-1 accuracy and mean rank for baseline, the final-layer
 * mask, intercept removal and both, zero-shot and k-shot (eval.h). */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/decompose.h"
#include "analysis/eval.h"
#include "analysis/report.h"
#include "plot/plot.h"
#include "cli.h"
#include "shard.h"
#include "engine/pool.h"

typedef struct {
	const char	*dir;
	const char	*task;
	const char	*mask_heads;
	int		 shots;
	int		 threads;
	int		 batch;
	int		 seed;
	int		 set;
	int		 split;
	bool		 no_resid;
	bool		 single_token;	/* --single-token */
	bool		 counterfactual;	/* --counterfactual */
	double		 ridge;
	bool		 json;
	bool		 csv;		/* --csv */
	bool		 per_prompt;	/* --per-prompt */
	const char	*plot;		/* --plot FILE */
	cli_shard	 shard;		/* --shard I/N, --out FILE */
} eval_args;

const cli_opt cmd_eval_opts[] = {
	CLI_SHARED_MODEL,
	CLI_SHARED_TASK(CLI_OPT_REQUIRED),
	{ "shots", 'k', "K", 0, CLI_GROUP_OWN,
	  "also K-shot: K demonstrations (other subjects of the task) before each "
	  "prompt (default 0: zero-shot only)" },
	CLI_SHARED_TEMPLATES,
	CLI_SHARED_SINGLE_TOKEN(0),
	CLI_SHARED_COUNTERFACTUAL,
	{ "split", 's', "subject|template", 0, CLI_GROUP_OWN,
	  "how the intercept's fit is kept apart from the prompts it scores: by "
	  "subject (the default) or by template" },
	{ "seed", 'r', "N", 0, CLI_GROUP_OWN,
	  "the seed that draws the demonstrations (default 1)" },
	CLI_SHARED_NO_RESID,
	CLI_SHARED_RIDGE,
	{ "mask-heads", 'H', "LIST", 0, CLI_GROUP_OWN,
	  "the heads of the last layer mask (a) masks, e.g. 0,3,5 (default: all)" },
	CLI_SHARED_BATCH(0),
	CLI_SHARED_JSON,
	{ "csv", 'C', NULL, 0, CLI_GROUP_OUTPUT,
	  "print CSV instead: a row per prompt and condition (P(answer), rank, "
	  "top-1), then the grid's rows with 95% intervals (Wilson for top-1, the "
	  "normal approximation for mean P)" },
	{ "per-prompt", 'R', NULL, 0, CLI_GROUP_OUTPUT,
	  "with --json, add the per-prompt rows (as --csv prints them)" },
	CLI_SHARED_PLOT,
	CLI_SHARED_SHARD,
	CLI_SHARED_OUT,
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_SHARED_STRICT,
	CLI_OPT_END
};

static int
eval_parse(eval_args *a, int argc, char **argv)
{
	cli_shared sh = { .plot = &a->plot, .dir = &a->dir, .task = &a->task, .set = &a->set,
	    .batch = &a->batch, .threads = &a->threads, .no_resid = &a->no_resid,
	    .ridge = &a->ridge, .json = &a->json, .shard = &a->shard,
	    .single_token = &a->single_token, .counterfactual = &a->counterfactual };
	int c;

	memset(a, 0, sizeof *a);
	a->batch = 32;
	a->seed = 1;
	a->ridge = -1;
	optind = 1;
	while ((c = cli_getopt(argc, argv, cmd_eval_opts, &sh)) != -1) {
		switch (c) {
		case 'k':
			if (cli_int("--shots", optarg, 0, 64, &a->shots))
				return 2;
			break;
		case 's':
			if (strcmp(optarg, "subject") == 0)
				a->split = EVAL_SPLIT_SUBJECT;
			else if (strcmp(optarg, "template") == 0)
				a->split = EVAL_SPLIT_TEMPLATE;
			else
				return cli_fail(2, "--split takes subject or template, not "
				    "'%s'", optarg);
			break;
		case 'r':
			if (cli_int("--seed", optarg, 0, 1 << 30, &a->seed))
				return 2;
			break;
		case 'H': a->mask_heads = optarg; break;
		case 'C': a->csv = true; break;
		case 'R': a->per_prompt = true; break;
		case CLI_GETOPT_BAD:
			return 2;
		default:
			return cli_fail(2, "%s", cli_usage("eval"));
		}
	}
	if (cli_csv_or_json("eval", a->csv, a->json) != 0)
		return 2;
	if (a->csv && a->counterfactual)
		return cli_fail(2, "eval: --counterfactual has no CSV form (the "
		    "in-context answer's columns); use --json --per-prompt");
	if (a->per_prompt && !a->json)
		return cli_fail(2, "eval: --per-prompt needs --json (--csv always has "
		    "the per-prompt rows)");
	return cli_shared_finish(&sh, "eval", argc, argv);
}

static const char *cond_labels[EVAL_COND_COUNT] = {
	"baseline", "mask (a)", "intercept (b)", "both (a+b)",
};

/* The rows of prompt i of every setting in a partial's line, and back. */
static cJSON *
eval_row_json(const fl_eval_rows *r, int n_set, int j)
{
	cJSON *row = cJSON_CreateObject(), *arr;
	size_t J = (size_t)r[0].J, D = (size_t)r[0].D;

	cJSON_AddNumberToObject(row, "prompt", r[0].idx[j]);
	arr = cJSON_AddArrayToObject(row, "settings");
	for (int s = 0; s < n_set; s++) {
		cJSON *o = cJSON_CreateObject();

		cli_json_add_f32(o, "x", r[s].x + j * J * D, J * D);
		cli_json_add_f32(o, "resid_mid", r[s].mid[0] + j * D, D);
		cli_json_add_f32(o, "mlp_out", r[s].mlp[0] + j * D, D);
		cli_json_add_f32(o, "resid_mid_masked", r[s].mid[1] + j * D, D);
		cli_json_add_f32(o, "mlp_out_masked", r[s].mlp[1] + j * D, D);
		cJSON_AddItemToArray(arr, o);
	}
	return row;
}

static int
eval_row_read(cli_merge *mg, fl_eval_rows *r, int n_set, int i)
{
	cJSON *row = cli_merge_row(mg, i), *arr;
	size_t J = (size_t)r[0].J, D = (size_t)r[0].D;
	int rc = 1;

	if (row == NULL)
		return 1;
	arr = cJSON_GetObjectItemCaseSensitive(row, "settings");
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n_set) {
		cli_fail(1, "%s: prompt %d: \"settings\" is not an array of %d",
		    mg->parts[i % mg->count].path, i, n_set);
		goto out;
	}
	for (int s = 0; s < n_set; s++) {
		const cJSON *o = cJSON_GetArrayItem(arr, s);

		r[s].idx[i] = i;
		if (cli_json_get_f32(mg, i, o, "x", r[s].x + i * J * D, J * D) ||
		    cli_json_get_f32(mg, i, o, "resid_mid", r[s].mid[0] + i * D, D) ||
		    cli_json_get_f32(mg, i, o, "mlp_out", r[s].mlp[0] + i * D, D) ||
		    cli_json_get_f32(mg, i, o, "resid_mid_masked", r[s].mid[1] + i * D, D) ||
		    cli_json_get_f32(mg, i, o, "mlp_out_masked", r[s].mlp[1] + i * D, D))
			goto out;
	}
	rc = 0;
out:
	cJSON_Delete(row);
	return rc;
}

/* The share's work, in the trailer; summed by the merge. */
static cJSON *
eval_work_json(const fl_eval_rows *r, int n_set)
{
	cJSON *w = cJSON_CreateObject();
	char key[32];

	for (int s = 0; s < n_set; s++) {
		snprintf(key, sizeof key, "seconds_%d", s);
		cJSON_AddNumberToObject(w, key, r[s].seconds);
		snprintf(key, sizeof key, "passes_%d", s);
		cJSON_AddNumberToObject(w, key, (double)r[s].passes);
		snprintf(key, sizeof key, "rows_%d", s);
		cJSON_AddNumberToObject(w, key, (double)r[s].rows);
		snprintf(key, sizeof key, "rows_resumed_%d", s);
		cJSON_AddNumberToObject(w, key, (double)r[s].rows_resumed);
	}
	return w;
}

static void
eval_work_read(const cli_merge *mg, fl_eval_rows *r, int n_set)
{
	char key[32];

	for (int s = 0; s < n_set; s++) {
		snprintf(key, sizeof key, "seconds_%d", s);
		r[s].seconds = cli_merge_work_sum(mg, key);
		snprintf(key, sizeof key, "passes_%d", s);
		r[s].passes = (long)cli_merge_work_sum(mg, key);
		snprintf(key, sizeof key, "rows_%d", s);
		r[s].rows = (long)cli_merge_work_sum(mg, key);
		snprintf(key, sizeof key, "rows_resumed_%d", s);
		r[s].rows_resumed = (long)cli_merge_work_sum(mg, key);
	}
}

/* eval; with mg, its merge: the rows read from the partials instead of
 * collected (shard.h). */
static int
eval_main(int argc, char **argv, cli_merge *mg)
{
	eval_args a;
	fl_model *m = NULL;
	fl_task *t = NULL;
	fl_eval_opts o;
	fl_eval_result res[2];
	cli_progress_state prog;
	fl_progress pr;
	bool *heads = NULL;
	char *cause = NULL, label[64];
	int rc, n_set = 0, H;
	double t0 = fl_now(), total;

	fl_prompt_set ps[2];
	fl_eval_rows rows[2];
	int *idx = NULL, k = 0;

	memset(res, 0, sizeof res);
	memset(ps, 0, sizeof ps);
	memset(rows, 0, sizeof rows);
	if ((rc = eval_parse(&a, argc, argv)) != 0)
		return rc;
	kern_set_threads(a.threads);
	if ((t = cli_load_task(a.task)) == NULL)
		return 1;
	if ((m = mg != NULL ? cli_merge_model(mg, a.dir) : cli_load_model(a.dir)) == NULL) {
		task_free(t);
		return 1;
	}
	H = m->cfg.n_head;
	rc = 1;
	if (a.mask_heads != NULL && cli_parse_heads("--mask-heads", a.mask_heads, H,
	    &heads) != 0) {
		rc = 2;
		goto out;
	}
	eval_opts_init(&o);
	o.set = (fl_template_set)a.set;
	o.seed = (unsigned)a.seed;
	o.split = (fl_eval_split)a.split;
	o.with_resid = !a.no_resid;
	o.ridge = a.ridge;
	o.batch = a.batch;
	o.mask_heads = heads;
	o.single_token = a.single_token;
	o.counterfactual = a.counterfactual;
	n_set = a.shots > 0 ? 2 : 1;
	for (int s = 0; s < n_set; s++) {
		if (eval_prompts(&ps[s], m, t, &o, s == 0 ? 0 : a.shots, &cause) != 0) {
			cli_fail(1, "%s", cause);
			free(cause);
			goto out;
		}
		if (a.single_token)
			fprintf(stderr, "factlens eval: %d-shot: --single-token kept %d of "
			    "%d prompts, dropped %d (answers of several tokens for this "
			    "model)\n", s == 0 ? 0 : a.shots, ps[s].n,
			    ps[s].n + ps[s].dropped, ps[s].dropped);
	}
	if (mg != NULL) {
		if (mg->prompts != ps[0].n) {
			cli_fail(1, "%s: %d prompts in all, but %s makes %d of %s",
			    mg->parts[0].path, mg->prompts, a.task, ps[0].n, a.dir);
			goto out;
		}
		for (int s = 0; s < n_set; s++)
			eval_rows_init(&rows[s], m, &o, ps[s].n);
		for (int i = 0; i < ps[0].n; i++)
			if (eval_row_read(mg, rows, n_set, i) != 0)
				goto out;
		if (cli_merge_end(mg) != 0)
			goto out;
		eval_work_read(mg, rows, n_set);
	} else {
		idx = cli_shard_select(&a.shard, ps[0].n, &k);
		cli_interrupt_catch();
		for (int s = 0; s < n_set; s++) {
			int r;

			snprintf(label, sizeof label, "eval %d-shot", s == 0 ? 0 : a.shots);
			cli_progress_init(&prog, label);
			pr = cli_progress_of(&prog);
			r = cli_work_end(&prog, eval_collect(&rows[s], m, &ps[s], idx, k,
			    &o, &pr, &cause), "eval");
			if (r == FL_EXIT_STOPPED) {
				rc = r;
				goto out;
			}
			if (r != 0) {
				cli_fail(1, "%s", cause);
				free(cause);
				goto out;
			}
		}
	}
	if (a.shard.count > 0) {
		cli_part_writer w;

		if (cli_part_begin(&w, &a.shard, m, "eval", argc, argv, ps[0].n) != 0)
			goto out;
		for (int j = 0; j < k; j++)
			cli_part_row(&w, eval_row_json(rows, n_set, j));
		rc = cli_part_end(&w, eval_work_json(rows, n_set));
		goto out;
	}
	for (int s = 0; s < n_set; s++)
		if (eval_finish(&res[s], m, &ps[s], &rows[s], &o, s == 0 ? 0 : a.shots,
		    &cause) != 0) {
			cli_fail(1, "%s", cause);
			free(cause);
			goto out;
		}
	total = fl_now() - t0;
	if (mg != NULL)	/* the parts' work and the merge's */
		for (int s = 0; s < n_set; s++)
			total += rows[s].seconds;
	if (a.plot != NULL) {
		int *shots = xcalloc((size_t)n_set + 1, sizeof *shots);
		double *prob = xcalloc((size_t)n_set * EVAL_COND_COUNT + 1, sizeof *prob);
		const char *base = strrchr(a.dir, '/') != NULL && strrchr(a.dir, '/')[1] != '\0' ?
		    strrchr(a.dir, '/') + 1 : a.dir;
		char *title = xasprintf("%s on %s, %d prompts", t->name, base, res[0].n),
		    *pcause = NULL;
		int prc;

		for (int s = 0; s < n_set; s++) {
			shots[s] = res[s].shots;
			for (int c = 0; c < EVAL_COND_COUNT; c++)
				prob[s * EVAL_COND_COUNT + c] = res[s].cond[c].mean_prob;
		}
		prc = plot_eval(a.plot, title, n_set, shots, EVAL_COND_COUNT, cond_labels,
		    prob, &pcause);
		free(title);
		free(shots);
		free(prob);
		if (prc != 0) {
			cli_fail(1, "%s", pcause);
			free(pcause);
			rc = 1;
			goto out;
		}
	}

	if (a.json) {
		cJSON *root = report_eval_json(a.dir, m, t, &o, res, n_set, a.per_prompt);

		cJSON_AddNumberToObject(root, "batch", a.batch);
		cJSON_AddNumberToObject(root, "threads", kern_threads());
		cJSON_AddNumberToObject(root, "seconds", total);
		rc = cli_json_print(root);
		goto out;
	}
	if (a.csv) {
		report_eval_csv(stdout, res, n_set, t);
		rc = cli_csv_done("eval");
		goto out;
	}
	printf("model      %s (%s, %d layers x %d heads)\n", a.dir, m->cfg.model_type,
	    m->cfg.n_layer, H);
	if (o.single_token)
		printf("task       %s (%s): %d pairs x %d %s templates, %d prompts kept "
		    "by --single-token, %d dropped\n", t->name, a.task, t->n_pairs,
		    t->n_templates[o.set], task_set_name(o.set), res[0].n,
		    res[0].dropped);
	else
		printf("task       %s (%s): %d pairs x %d %s templates = %d prompts; %d "
		    "with an answer of several tokens (scored on its first)\n",
		    t->name, a.task, t->n_pairs, t->n_templates[o.set],
		    task_set_name(o.set), res[0].n, res[0].multi_token);
	if (o.counterfactual)
		printf("context    each prompt opens with \"%s\" stating another "
		    "pair's answer: P(memorised) is the true answer's, P(in-context) "
		    "the stated one's\n", t->counterfactual);
	printf("intercept  the last layer's MLP intercept, fitted on the other fold "
	    "(2 folds by %s); regressors: %d heads%s\n", eval_split_name(o.split), H,
	    o.with_resid ? " + resid_pre" : "");
	if (heads != NULL) {
		printf("mask       heads");
		for (int h = 0; h < H; h++)
			if (heads[h])
				printf(" %d", h);
		printf(" of the last layer\n");
	}
	if (o.counterfactual)
		printf("\n%-6s %-14s %14s %8s %12s %15s %8s\n", "shots", "condition",
		    "P(memorised)", "top-1", "mean rank", "P(in-context)", "top-1");
	else
		printf("\n%-6s %-14s %14s %8s %12s\n", "shots", "condition",
		    "mean P(ans)", "top-1", "mean rank");
	for (int s = 0; s < n_set; s++) {
		for (int c = 0; c < EVAL_COND_COUNT; c++) {
			printf("%-6d %-14s %13.2f%% %7.1f%% %12.1f", res[s].shots,
			    cond_labels[c], 100 * res[s].cond[c].mean_prob,
			    100 * res[s].cond[c].top1, res[s].cond[c].mean_rank);
			if (o.counterfactual)
				printf(" %14.2f%% %7.1f%%", 100 * res[s].cond[c].ctx_mean_prob,
				    100 * res[s].cond[c].ctx_top1);
			putchar('\n');
		}
		printf("%-6s intercept fits: R^2 %.3f / %.3f on %d / %d calibration "
		    "prompts\n", "", res[s].calib_r2[0], res[s].calib_r2[1],
		    res[s].calib_n[0], res[s].calib_n[1]);
		printf("%-6s %.2f s, %ld passes: %ld tokens through every layer, %ld "
		    "resumed at the last\n", "", res[s].seconds, res[s].passes,
		    res[s].rows - res[s].rows_resumed, res[s].rows_resumed);
	}
	printf("\n%.2f s in all, %d thread%s, batches of %d prompt%s\n", total,
	    kern_threads(), kern_threads() == 1 ? "" : "s", a.batch,
	    a.batch == 1 ? "" : "s");
	rc = 0;
out:
	for (int s = 0; s < 2; s++) {
		eval_clear(&res[s]);
		eval_rows_clear(&rows[s]);
		prompt_set_clear(&ps[s]);
	}
	free(idx);
	free(heads);
	task_free(t);
	model_free(m);
	return rc;
}

int
cmd_eval(int argc, char **argv)
{
	return eval_main(argc, argv, NULL);
}

int
cmd_eval_merge(int argc, char **argv, cli_merge *mg)
{
	return eval_main(argc, argv, mg);
}
