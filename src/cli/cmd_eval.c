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
	double		 ridge;
	bool		 json;
	bool		 csv;		/* --csv */
	bool		 per_prompt;	/* --per-prompt */
	const char	*plot;		/* --plot FILE */
} eval_args;

const cli_opt cmd_eval_opts[] = {
	CLI_SHARED_MODEL,
	CLI_SHARED_TASK(CLI_OPT_REQUIRED),
	{ "shots", 'k', "K", 0, CLI_GROUP_OWN,
	  "also K-shot: K demonstrations (other subjects of the task) before each "
	  "prompt (default 0: zero-shot only)" },
	CLI_SHARED_TEMPLATES,
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
	    .ridge = &a->ridge, .json = &a->json };
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
	if (a->per_prompt && !a->json)
		return cli_fail(2, "eval: --per-prompt needs --json (--csv always has "
		    "the per-prompt rows)");
	return cli_shared_finish(&sh, "eval", argc, argv);
}

static const char *cond_labels[EVAL_COND_COUNT] = {
	"baseline", "mask (a)", "intercept (b)", "both (a+b)",
};

int
cmd_eval(int argc, char **argv)
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

	memset(res, 0, sizeof res);
	if ((rc = eval_parse(&a, argc, argv)) != 0)
		return rc;
	kern_set_threads(a.threads);
	if ((t = cli_load_task(a.task)) == NULL)
		return 1;
	if ((m = cli_load_model(a.dir)) == NULL) {
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
	cli_interrupt_catch();
	for (int s = 0; s < (a.shots > 0 ? 2 : 1); s++) {
		int shots = s == 0 ? 0 : a.shots, r;

		snprintf(label, sizeof label, "eval %d-shot", shots);
		cli_progress_init(&prog, label);
		pr = cli_progress_of(&prog);
		r = cli_work_end(&prog, eval_task(&res[s], m, t, &o, shots, &pr, &cause),
		    "eval");
		if (r == FL_EXIT_STOPPED) {
			rc = r;
			goto out;
		}
		if (r != 0) {
			cli_fail(1, "%s", cause);
			free(cause);
			goto out;
		}
		n_set++;
	}
	total = fl_now() - t0;
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
	printf("task       %s (%s): %d pairs x %d %s templates = %d prompts; %d with an "
	    "answer of several tokens (scored on its first)\n", t->name, a.task,
	    t->n_pairs, t->n_templates[o.set], task_set_name(o.set), res[0].n,
	    res[0].multi_token);
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
	printf("\n%-6s %-14s %14s %8s %12s\n", "shots", "condition", "mean P(ans)",
	    "top-1", "mean rank");
	for (int s = 0; s < n_set; s++) {
		for (int c = 0; c < EVAL_COND_COUNT; c++)
			printf("%-6d %-14s %13.2f%% %7.1f%% %12.1f\n", res[s].shots,
			    cond_labels[c], 100 * res[s].cond[c].mean_prob,
			    100 * res[s].cond[c].top1, res[s].cond[c].mean_rank);
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
	for (int s = 0; s < 2; s++)
		eval_clear(&res[s]);
	free(heads);
	task_free(t);
	model_free(m);
	return rc;
}
