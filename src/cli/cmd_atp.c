/* cmd_atp.c - factlens atp: attribution patching of every head (and of one
 * layer's neurons) from a corrupted prompt into a clean one, with the exact
 * patch beside the strongest estimates; or, with --task, the estimates
 * averaged over a task's prompts (atp.h). */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/atp.h"
#include "analysis/patch.h"
#include "analysis/report.h"
#include "cli.h"
#include "shard.h"
#include "engine/pool.h"

typedef struct {
	const char	*dir;
	const char	*prompt;
	const char	*corrupt;
	const char	*answer;
	const char	*distractor;
	const char	*task;		/* --task FILE */
	int		 set;
	int		 shots;
	int		 seed;
	int		 neurons;	/* --neurons L, or -1 */
	int		 top;
	int		 threads;
	bool		 json;
	bool		 compare;	/* --compare-exact */
	cli_shard	 shard;		/* --shard I/N, --out FILE */
} atp_args;

const cli_opt cmd_atp_opts[] = {
	CLI_SHARED_MODEL,
	{ "prompt", 'p', "CLEAN", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "the clean prompt, where the metric is read (at its last position); "
	  "required without --task" },
	{ "corrupt", 'c', "CORRUPT", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "the corrupted prompt the activations are patched from; as many tokens "
	  "as the clean one; required without --task" },
	{ "answer", 'a', "A", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "the clean prompt's answer, scored on its first token; required without "
	  "--task" },
	{ "distractor", 'd', "D", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "metric logit(answer) - logit(D), typically the corrupted prompt's "
	  "answer (default: logit(answer) - the mean logit)" },
	{ "neurons", 'n', "L", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "also estimate every MLP neuron of layer L (mlp.hook_post)" },
	{ "top", 'k', "K", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "how many of the strongest estimates to list, each with its exact patch "
	  "(one pass each; default 10, 0: estimates only; with --task, listed "
	  "without exact patches)" },
	CLI_SHARED_TASK(0),
	CLI_SHARED_TEMPLATES,
	CLI_SHARED_SHOTS(0),
	{ "seed", 'r', "N", 0, CLI_GROUP_OWN,
	  "with --task: the seed that draws the corrupted prompts' subjects and "
	  "the demonstrations, as heads --seed (default 1)" },
	{ "compare-exact", 'X', NULL, 0, CLI_GROUP_OWN,
	  "with --task: also the exact heads map of path patching (heads --task "
	  "with the same prompts) and Spearman's rank correlation between it and "
	  "the AtP map" },
	CLI_SHARED_SHARD,
	CLI_SHARED_OUT,
	CLI_SHARED_JSON,
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_SHARED_STRICT,
	CLI_OPT_END
};

static int
atp_parse(atp_args *a, int argc, char **argv)
{
	cli_shared sh = { .dir = &a->dir, .threads = &a->threads, .json = &a->json,
	    .task = &a->task, .set = &a->set, .shots = &a->shots,
	    .shard = &a->shard };
	int c;

	memset(a, 0, sizeof *a);
	a->neurons = -1;
	a->seed = 1;
	a->top = 10;
	optind = 1;
	while ((c = cli_getopt(argc, argv, cmd_atp_opts, &sh)) != -1) {
		switch (c) {
		case 'p': a->prompt = optarg; break;
		case 'c': a->corrupt = optarg; break;
		case 'a': a->answer = optarg; break;
		case 'd': a->distractor = optarg; break;
		case 'n':
			if (cli_int("--neurons", optarg, 0, 4095, &a->neurons))
				return 2;
			break;
		case 'k':
			if (cli_int("--top", optarg, 0, 1 << 20, &a->top))
				return 2;
			break;
		case 'r':
			if (cli_int("--seed", optarg, 0, 1 << 30, &a->seed))
				return 2;
			break;
		case 'X': a->compare = true; break;
		case CLI_GETOPT_BAD:
			return 2;
		default:
			return cli_fail(2, "%s", cli_usage("atp"));
		}
	}
	if (optind < argc)
		return cli_fail(2, "atp: unexpected argument '%s'\n%s", argv[optind],
		    cli_usage("atp"));
	if (a->task != NULL && (a->prompt != NULL || a->corrupt != NULL ||
	    a->answer != NULL || a->distractor != NULL))
		return cli_fail(2, "atp: --task takes its prompts, answers and "
		    "corrupted twins from the task: leave out --prompt, --corrupt, "
		    "--answer and --distractor");
	if (a->task == NULL && (a->set != 0 || a->shots != 0))
		return cli_fail(2, "atp: --templates and --shots choose a task's "
		    "prompts: give --task FILE");
	if (a->task == NULL && (a->shard.count > 0 || a->shard.out != NULL))
		return cli_fail(2, "atp: --shard and --out split a --task's prompts: "
		    "not with one --prompt");
	if (a->task == NULL && a->compare)
		return cli_fail(2, "atp: --compare-exact compares over a task: give "
		    "--task FILE (one prompt pair lists its exact patches with --top)");
	if (a->shard.out != NULL && a->shard.count == 0)
		return cli_fail(2, "atp: --out FILE writes a partial: it needs --shard "
		    "I/N");
	if (a->task != NULL) {
		if (a->dir == NULL)
			a->dir = fl_default_model();
		return 0;
	}
	if (a->prompt == NULL || a->corrupt == NULL || a->answer == NULL)
		return cli_fail(2, "atp: --prompt, --corrupt and --answer are required "
		    "(or --task FILE)\n%s", cli_usage("atp"));
	if (a->answer[strspn(a->answer, " \t\n")] == '\0')
		return cli_fail(2, "atp: --answer is empty; give the answer's text");
	if (a->distractor != NULL && a->distractor[strspn(a->distractor, " \t\n")] == '\0')
		return cli_fail(2, "atp: --distractor is empty; give its text, or leave "
		    "it out for the mean logit");
	if (a->dir == NULL)
		a->dir = fl_default_model();
	return 0;
}

/* Indices 0..n-1 ordered by |v|, largest first. */
static const double *sort_v;

static int
cmp_abs(const void *x, const void *y)
{
	double a = fabs(sort_v[*(const int *)x]), b = fabs(sort_v[*(const int *)y]);

	return a > b ? -1 : a < b;
}

static int *
order_by_abs(const double *v, int n)
{
	int *o = xmalloc((size_t)n * sizeof *o);

	for (int i = 0; i < n; i++)
		o[i] = i;
	sort_v = v;
	qsort(o, (size_t)n, sizeof *o, cmp_abs);
	return o;
}

/* The exact patches of the top k of order (heads, or neurons with
 * neurons set) into exact (NAN elsewhere). 0, or -1 with *cause. */
static int
exact_top(fl_atp *r, const int *order, int k, bool neurons, double *exact,
    char **cause)
{
	for (int i = 0; i < k; i++) {
		int j = order[i];
		int rc = neurons ? atp_exact_neuron(r, j, &exact[j], cause) :
		    atp_exact_head(r, j / r->n_head, j % r->n_head, &exact[j], cause);

		if (rc != 0)
			return -1;
	}
	return 0;
}

static cJSON *
json_top(const fl_atp *r, const int *order, int k, const double *est,
    const double *exact, bool neurons)
{
	cJSON *arr = cJSON_CreateArray();

	for (int i = 0; i < k; i++) {
		cJSON *e = cJSON_CreateObject();
		int j = order[i];

		if (neurons)
			cJSON_AddNumberToObject(e, "neuron", j);
		else {
			cJSON_AddNumberToObject(e, "layer", j / r->n_head);
			cJSON_AddNumberToObject(e, "head", j % r->n_head);
		}
		cJSON_AddItemToObject(e, "estimate", report_number(est[j]));
		cJSON_AddItemToObject(e, "exact", report_number(exact[j]));
		cJSON_AddBoolToObject(e, "disagree", atp_disagree(est[j], exact[j]));
		cJSON_AddItemToArray(arr, e);
	}
	return arr;
}

/* The rest of a "layer" header line, the head numbers, then the grid g
 * (L x H), a row per layer. */
static void
print_heads_grid(const double *g, int L, int H)
{
	for (int h = 0; h < H; h++)
		printf(" %8d", h);
	putchar('\n');
	for (int l = 0; l < L; l++) {
		printf("%6d", l);
		for (int h = 0; h < H; h++)
			printf(" %8.3f", g[l * H + h]);
		putchar('\n');
	}
}

static void
print_top(const fl_atp *r, const int *order, int k, const double *est,
    const double *exact, bool neurons)
{
	int flagged = 0;

	printf("  %-9s %10s %10s\n", neurons ? "neuron" : "head", "AtP", "exact");
	for (int i = 0; i < k; i++) {
		int j = order[i];
		bool bad = atp_disagree(est[j], exact[j]);
		char name[32];

		if (neurons)
			snprintf(name, sizeof name, "%d.%d", r->o.neuron_layer, j);
		else
			snprintf(name, sizeof name, "%d.%d", j / r->n_head, j % r->n_head);
		printf("  %-9s %10.4f %10.4f%s\n", name, est[j], exact[j],
		    bad ? "   !! >2x apart" : "");
		flagged += bad;
	}
	if (flagged > 0)
		printf("  !! %d estimate%s more than 2x from the exact patch: the "
		    "first-order estimate misses there (saturated attention, AtP*)\n",
		    flagged, flagged == 1 ? " is" : "s are");
}

/* n values as a JSON array, NAN as null. */
static cJSON *
json_row(const double *v, int n)
{
	cJSON *arr = cJSON_CreateArray();

	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(arr, report_number(v[i]));
	return arr;
}

/* Prompt i's estimates as a partial's line, and back. */
static cJSON *
atp_row_json(const fl_atp_prompt *p, int i, int LH, int F)
{
	cJSON *row = cJSON_CreateObject();

	cJSON_AddNumberToObject(row, "prompt", i);
	cJSON_AddBoolToObject(row, "skipped", p->skipped);
	if (p->skipped)
		return row;
	cJSON_AddBoolToObject(row, "redrawn", p->redrawn);
	cli_json_add_f64(row, "clean", &p->clean, 1);
	cli_json_add_f64(row, "corrupt", &p->corrupt, 1);
	cli_json_add_f64(row, "heads", p->heads, (size_t)LH);
	if (p->neurons != NULL)
		cli_json_add_f64(row, "neurons", p->neurons, (size_t)F);
	return row;
}

static int
atp_row_read(cli_merge *mg, fl_atp_prompt *p, int i, int LH, int F)
{
	cJSON *row = cli_merge_row(mg, i);
	const cJSON *sk, *rd;
	int rc = 1;

	memset(p, 0, sizeof *p);
	if (row == NULL)
		return 1;
	sk = cJSON_GetObjectItemCaseSensitive(row, "skipped");
	rd = cJSON_GetObjectItemCaseSensitive(row, "redrawn");
	if (!cJSON_IsBool(sk) || (!cJSON_IsTrue(sk) && !cJSON_IsBool(rd))) {
		cli_fail(1, "%s: prompt %d: no true/false fields \"skipped\" and "
		    "\"redrawn\"", mg->parts[i % mg->count].path, i);
		goto out;
	}
	p->skipped = cJSON_IsTrue(sk);
	if (p->skipped) {
		rc = 0;
		goto out;
	}
	p->redrawn = cJSON_IsTrue(rd);
	p->heads = xmalloc((size_t)LH * sizeof *p->heads);
	if (F > 0)
		p->neurons = xmalloc((size_t)F * sizeof *p->neurons);
	rc = cli_json_get_f64(mg, i, row, "clean", &p->clean, 1) ||
	    cli_json_get_f64(mg, i, row, "corrupt", &p->corrupt, 1) ||
	    cli_json_get_f64(mg, i, row, "heads", p->heads, (size_t)LH) ||
	    (F > 0 && cli_json_get_f64(mg, i, row, "neurons", p->neurons,
	    (size_t)F));
out:
	cJSON_Delete(row);
	return rc;
}

/* A partial left without its trailer, so that a merge takes it as cut
 * short. */
static void
part_abandon(cli_part_writer *w)
{
	if (w->f != NULL && w->f != stdout)
		fclose(w->f);
	else if (w->f != NULL)
		fflush(w->f);
	w->f = NULL;
}

/* With --compare-exact: heads --task's path-patching map of the same
 * prompts into *pt, and Spearman's rho between it and the AtP map into
 * *rho. 0, FL_EXIT_STOPPED, or 1 after reporting. */
static int
atp_compare_exact(const fl_model *m, const fl_prompt_set *clean,
    const fl_prompt_set *drawn, const fl_atp_task *res, fl_patch *pt,
    double *rho)
{
	int L = m->cfg.n_layer;
	fl_batch *b = batch_new(m, 32, clean->max_len > drawn->max_len ?
	    clean->max_len : drawn->max_len);
	fl_patch_opts o = { -1, NULL, PATCH_RECV_RESID, -1, PATCH_METRIC_ANSWER,
	    NULL };
	cli_progress_state prog;
	char *cause = NULL;
	int rc;

	cli_progress_init(&prog, "atp --compare-exact");
	b->progress = cli_progress_of(&prog);
	b->total = patch_units(L, clean->n, drawn->n);
	rc = cli_work_end(&prog, patch_heads(pt, b, clean->p, clean->n, drawn->p,
	    drawn->n, &o, &cause), "path patching");
	batch_free(b);
	if (rc == FL_EXIT_STOPPED)
		return rc;
	if (rc != 0) {
		cli_fail(1, "atp --compare-exact: %s", cause);
		free(cause);
		return 1;
	}
	*rho = atp_spearman(res->heads, pt->effect, L * m->cfg.n_head);
	return 0;
}

/* atp --task: the estimates averaged over the task's prompts; with
 * --shard, a partial of the share's; with mg, the merge of the partials
 * (shard.h). */
static int
atp_over_task(const atp_args *a, int argc, char **argv, cli_merge *mg)
{
	fl_model *m = NULL;
	fl_task *t = NULL;
	fl_prompt_set clean = { 0 }, drawn = { 0 };
	fl_prompt_opts po;
	fl_atp_task res = { 0 };
	fl_patch pt = { 0 };
	cli_progress_state prog;
	fl_progress pr;
	char *cause = NULL;
	int rc, L, H, F, k, kn = 0, *order = NULL, *norder = NULL, *idx = NULL;
	int n_share = 0;
	double t0 = fl_now(), parts_seconds = 0, rho = NAN;

	if ((t = cli_load_task(a->task)) == NULL)
		return 1;
	if ((m = mg != NULL ? cli_merge_model(mg, a->dir) :
	    cli_load_model(a->dir)) == NULL) {
		task_free(t);
		return 1;
	}
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	rc = 1;
	if (a->neurons >= L) {
		rc = cli_fail(2, "atp: --neurons takes a layer from 0 to %d", L - 1);
		goto out;
	}
	F = a->neurons >= 0 ? m->cfg.d_mlp : 0;
	po = (fl_prompt_opts){ (fl_template_set)a->set, a->shots,
	    (unsigned)a->seed, false, false, false };
	if (task_prompts(&clean, m, t, &po, &cause) != 0)
		goto fail_cause;
	po.corrupt = true;
	if (task_prompts(&drawn, m, t, &po, &cause) != 0)
		goto fail_cause;
	po.corrupt = false;
	atp_task_init(&res, m, a->neurons);
	if (mg != NULL) {
		if (mg->prompts != clean.n) {
			cli_fail(1, "%s: %d prompts in all, but %s makes %d of %s",
			    mg->parts[0].path, mg->prompts, a->task, clean.n, a->dir);
			goto out;
		}
		for (int i = 0; i < clean.n; i++) {
			fl_atp_prompt one;

			if (atp_row_read(mg, &one, i, L * H, F) != 0) {
				atp_prompt_clear(&one);
				goto out;
			}
			atp_task_add(&res, &one);
			atp_prompt_clear(&one);
		}
		if (cli_merge_end(mg) != 0)
			goto out;
		parts_seconds = cli_merge_work_sum(mg, "seconds");
	} else {
		cli_part_writer w;
		bool sharded = a->shard.count > 0;

		idx = cli_shard_select(&a->shard, clean.n, &n_share);
		if (sharded && cli_part_begin(&w, &a->shard, m, "atp", argc, argv,
		    clean.n) != 0)
			goto out;
		cli_progress_init(&prog, "atp");
		pr = cli_progress_of(&prog);
		cli_interrupt_catch();
		for (int j = 0; j < n_share; j++) {
			fl_atp_prompt one;

			if (atp_task_prompt(&one, m, t, &po, &clean, &drawn, idx[j],
			    a->neurons, &cause) != 0) {
				atp_prompt_clear(&one);
				cli_progress_end(&prog);
				if (sharded)
					part_abandon(&w);
				goto fail_cause;
			}
			if (sharded)
				cli_part_row(&w, atp_row_json(&one, idx[j], L * H, F));
			else
				atp_task_add(&res, &one);
			atp_prompt_clear(&one);
			if (fl_progress_report(&pr, "attribution patching", j + 1,
			    n_share)) {
				rc = cli_work_end(&prog, FL_STOPPED,
				    "attribution patching");
				if (sharded)
					part_abandon(&w);
				goto out;
			}
		}
		cli_progress_end(&prog);
		if (sharded) {
			cJSON *work = cJSON_CreateObject();

			cJSON_AddNumberToObject(work, "seconds", fl_now() - t0);
			rc = cli_part_end(&w, work);
			goto out;
		}
	}
	if (atp_task_finish(&res, t->path, &cause) != 0)
		goto fail_cause;
	if (a->compare && (rc = atp_compare_exact(m, &clean, &drawn, &res, &pt,
	    &rho)) != 0)
		goto out;
	rc = 1;
	order = order_by_abs(res.heads, L * H);
	k = a->top < L * H ? a->top : L * H;
	if (res.neurons != NULL) {
		norder = order_by_abs(res.neurons, res.d_mlp);
		kn = a->top < res.d_mlp ? a->top : res.d_mlp;
	}
	if (a->json) {
		cJSON *root = cJSON_CreateObject(), *o2, *arr;

		cJSON_AddItemToObject(root, "model", report_string(a->dir));
		o2 = cJSON_AddObjectToObject(root, "task");
		cJSON_AddStringToObject(o2, "name", t->name);
		cJSON_AddItemToObject(o2, "file", report_string(a->task));
		cJSON_AddStringToObject(o2, "templates", task_set_name(po.set));
		cJSON_AddNumberToObject(o2, "shots", po.shots);
		cJSON_AddNumberToObject(o2, "seed", a->seed);
		cJSON_AddNumberToObject(root, "prompts", res.n_prompts);
		cJSON_AddNumberToObject(root, "skipped", res.n_skipped);
		cJSON_AddNumberToObject(root, "redrawn", res.n_redrawn);
		cJSON_AddStringToObject(root, "metric", "mean over the prompts of "
		    "logit(answer) - logit(corrupted subject's answer), last position");
		cJSON_AddNumberToObject(root, "clean", res.clean);
		cJSON_AddNumberToObject(root, "corrupted", res.corrupt);
		cJSON_AddStringToObject(root, "hook", "blocks.L.attn.hook_z");
		cJSON_AddItemToObject(root, "heads", report_grid_d(res.heads, L, H));
		arr = cJSON_AddArrayToObject(root, "top");
		for (int i = 0; i < k; i++) {
			cJSON *e = cJSON_CreateObject();

			cJSON_AddNumberToObject(e, "layer", order[i] / H);
			cJSON_AddNumberToObject(e, "head", order[i] % H);
			cJSON_AddItemToObject(e, "estimate", report_number(res.heads[order[i]]));
			cJSON_AddItemToArray(arr, e);
		}
		if (res.neurons != NULL) {
			o2 = cJSON_AddObjectToObject(root, "neurons");
			cJSON_AddNumberToObject(o2, "layer", a->neurons);
			cJSON_AddItemToObject(o2, "estimate", json_row(res.neurons,
			    res.d_mlp));
		}
		if (a->compare) {
			o2 = cJSON_AddObjectToObject(root, "compare_exact");
			cJSON_AddStringToObject(o2, "exact", "heads --task: path-patching "
			    "effect (%) of each head's output at the last position on "
			    "mean logit(answer) - mean logit");
			cJSON_AddItemToObject(o2, "effect", report_grid_d(pt.effect, L, H));
			cJSON_AddItemToObject(o2, "spearman", report_number(rho));
		}
		cJSON_AddNumberToObject(root, "seconds", parts_seconds + fl_now() - t0);
		cJSON_AddNumberToObject(root, "threads", kern_threads());
		rc = cli_json_print(root);
		goto out;
	}
	printf("model     %s (%s, %d layers x %d heads)\n", a->dir, m->cfg.model_type,
	    L, H);
	printf("task      %s: %d of %d %d-shot prompts, each with a corrupted twin "
	    "of its length (the subject replaced by another pair's; %d redrawn for "
	    "length, %d without one skipped)\n", t->name, res.n_prompts, clean.n,
	    po.shots, res.n_redrawn, res.n_skipped);
	printf("metric    mean logit(answer) - logit(corrupted subject's answer) at "
	    "the last position: %.4f clean, %.4f corrupted\n\n", res.clean,
	    res.corrupt);
	printf("mean AtP estimate of patching each head's z (every position) from "
	    "the corrupted twin\n%6s", "layer");
	print_heads_grid(res.heads, L, H);
	if (k > 0) {
		printf("\nstrongest heads:\n");
		for (int i = 0; i < k; i++)
			printf("  %2d.%-3d %10.4f\n", order[i] / H, order[i] % H,
			    res.heads[order[i]]);
	}
	if (kn > 0) {
		printf("\nstrongest neurons of layer %d (mlp.hook_post):\n", a->neurons);
		for (int i = 0; i < kn; i++)
			printf("  %d.%-5d %10.4f\n", a->neurons, norder[i],
			    res.neurons[norder[i]]);
	}
	if (a->compare) {
		printf("\nexact heads map (heads --task: path-patching effect, %% of mean "
		    "logit(answer) - mean logit)\n%6s", "layer");
		print_heads_grid(pt.effect, L, H);
		printf("\nSpearman's rho, AtP map vs exact heads map over the %d heads: "
		    "%.3f\n", L * H, rho);
	}
	printf("\n%.2f s, 2 forward passes and 1 backward per prompt, %d thread%s\n",
	    parts_seconds + fl_now() - t0, kern_threads(),
	    kern_threads() == 1 ? "" : "s");
	rc = 0;
	goto out;
fail_cause:
	rc = 1;
	cli_fail(1, "atp: %s", cause);
	free(cause);
out:
	free(order);
	free(norder);
	free(idx);
	atp_task_clear(&res);
	patch_clear(&pt);
	prompt_set_clear(&clean);
	prompt_set_clear(&drawn);
	task_free(t);
	model_free(m);
	return rc;
}

int
cmd_atp(int argc, char **argv)
{
	atp_args a;
	fl_model *m = NULL;
	fl_atp res = { 0 };
	fl_atp_opts o;
	int *clean = NULL, *corrupt = NULL, *order = NULL, *norder = NULL;
	double *exact = NULL, *nexact = NULL;
	char *cause = NULL, *ans = NULL, *dis = NULL;
	int rc, T, L, H, k, kn = 0;
	double t0, t_est, t_exact;

	if ((rc = atp_parse(&a, argc, argv)) != 0)
		return rc;
	kern_set_threads(a.threads);
	if (a.task != NULL)
		return atp_over_task(&a, argc, argv, NULL);
	if ((m = cli_load_model(a.dir)) == NULL)
		return 1;
	rc = 1;
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	if (a.neurons >= L) {
		rc = cli_fail(2, "atp: --neurons takes a layer from 0 to %d", L - 1);
		goto out;
	}
	if ((T = cli_prompt_pair(m, "atp", a.prompt, a.corrupt, a.answer,
	    a.distractor, &clean, &corrupt, &o.answer, &o.distractor, &rc)) < 0)
		goto out;
	o.neuron_layer = a.neurons;
	o.all_neurons = false;
	t0 = fl_now();
	if (atp_estimate(&res, m, clean, corrupt, T, &o, &cause) != 0)
		goto fail_cause;
	t_est = fl_now() - t0;
	order = order_by_abs(res.heads, L * H);
	k = a.top < L * H ? a.top : L * H;
	exact = xmalloc((size_t)L * H * sizeof *exact);
	for (int i = 0; i < L * H; i++)
		exact[i] = NAN;
	t0 = fl_now();
	if (exact_top(&res, order, k, false, exact, &cause) != 0)
		goto fail_cause;
	if (res.neurons != NULL) {
		norder = order_by_abs(res.neurons, res.d_mlp);
		kn = a.top < res.d_mlp ? a.top : res.d_mlp;
		nexact = xmalloc((size_t)res.d_mlp * sizeof *nexact);
		for (int i = 0; i < res.d_mlp; i++)
			nexact[i] = NAN;
		if (exact_top(&res, norder, kn, true, nexact, &cause) != 0)
			goto fail_cause;
	}
	t_exact = fl_now() - t0;
	ans = cli_token_repr(m->tok, o.answer);
	dis = o.distractor >= 0 ? cli_token_repr(m->tok, o.distractor) : NULL;

	if (a.json) {
		cJSON *root = cJSON_CreateObject(), *pos, *n;

		cJSON_AddItemToObject(root, "model", report_string(a.dir));
		cJSON_AddItemToObject(root, "prompt", report_string(a.prompt));
		cJSON_AddItemToObject(root, "corrupt", report_string(a.corrupt));
		cJSON_AddNumberToObject(root, "tokens", T);
		cJSON_AddItemToObject(root, "answer", report_token(m->tok, o.answer,
		    NULL, 0));
		cJSON_AddItemToObject(root, "distractor", o.distractor >= 0 ?
		    report_token(m->tok, o.distractor, NULL, 0) : cJSON_CreateNull());
		cJSON_AddStringToObject(root, "metric", o.distractor >= 0 ?
		    "logit(answer) - logit(distractor), last position" :
		    "logit(answer) - mean logit, last position");
		cJSON_AddNumberToObject(root, "clean", res.clean);
		cJSON_AddNumberToObject(root, "corrupted", res.corrupt);
		cJSON_AddStringToObject(root, "hook", "blocks.L.attn.hook_z");
		cJSON_AddItemToObject(root, "heads", report_grid_d(res.heads, L, H));
		pos = cJSON_AddArrayToObject(root, "heads_by_position");
		for (int i = 0; i < L * H; i++) {
			if (i % H == 0)
				cJSON_AddItemToArray(pos, cJSON_CreateArray());
			cJSON_AddItemToArray(cJSON_GetArrayItem(pos, i / H),
			    json_row(res.heads_pos + (size_t)i * T, T));
		}
		cJSON_AddItemToObject(root, "exact", report_grid_d(exact, L, H));
		cJSON_AddItemToObject(root, "top", json_top(&res, order, k, res.heads,
		    exact, false));
		if (res.neurons != NULL) {
			n = cJSON_AddObjectToObject(root, "neurons");
			cJSON_AddNumberToObject(n, "layer", a.neurons);
			cJSON_AddItemToObject(n, "estimate",
			    json_row(res.neurons, res.d_mlp));
			cJSON_AddItemToObject(n, "top", json_top(&res, norder, kn,
			    res.neurons, nexact, true));
		}
		cJSON_AddNumberToObject(root, "seconds_estimate", t_est);
		cJSON_AddNumberToObject(root, "seconds_exact", t_exact);
		cJSON_AddNumberToObject(root, "threads", kern_threads());
		rc = cli_json_print(root);
		goto out;
	}
	printf("model     %s (%s, %d layers x %d heads)\n", a.dir, m->cfg.model_type, L, H);
	printf("prompts   %d tokens each; clean \"%s\", corrupted \"%s\"\n", T, a.prompt,
	    a.corrupt);
	if (dis != NULL)
		printf("metric    logit(%s) - logit(%s) at the last position: %.4f clean, "
		    "%.4f corrupted\n\n", ans, dis, res.clean, res.corrupt);
	else
		printf("metric    logit(%s) - mean logit at the last position: %.4f "
		    "clean, %.4f corrupted\n\n", ans, res.clean, res.corrupt);
	printf("AtP estimate of patching each head's z (every position) from the "
	    "corrupted run\n%6s", "layer");
	print_heads_grid(res.heads, L, H);
	if (k > 0) {
		printf("\nstrongest heads, with the exact patch (one patched pass each):\n");
		print_top(&res, order, k, res.heads, exact, false);
	}
	if (res.neurons != NULL && kn > 0) {
		printf("\nstrongest neurons of layer %d (mlp.hook_post), with the exact "
		    "patch:\n", a.neurons);
		print_top(&res, norder, kn, res.neurons, nexact, true);
	}
	printf("\nAtP %.3f s (2 forward passes, 1 backward); %d exact patch%s %.3f s; "
	    "%d thread%s\n", t_est, k + kn, k + kn == 1 ? "" : "es", t_exact,
	    kern_threads(), kern_threads() == 1 ? "" : "s");
	rc = 0;
	goto out;
fail_cause:
	rc = 1;
	cli_fail(1, "atp: %s", cause);
	free(cause);
out:
	free(ans);
	free(dis);
	free(exact);
	free(nexact);
	free(order);
	free(norder);
	free(clean);
	free(corrupt);
	atp_clear(&res);
	model_free(m);
	return rc;
}

int
cmd_atp_merge(int argc, char **argv, cli_merge *mg)
{
	atp_args a;
	int rc;

	if ((rc = atp_parse(&a, argc, argv)) != 0)
		return rc;
	kern_set_threads(a.threads);
	if (a.task == NULL)
		return cli_fail(1, "%s: a partial of atp without --task",
		    mg->parts[0].path);
	return atp_over_task(&a, argc, argv, mg);
}
