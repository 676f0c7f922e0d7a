/* cmd_heads.c - factlens heads: path patching of every head over a task's
 * prompts (the layers x heads effect map) and the mover scatter's Pearson r
 * per head (patch.h). */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/patch.h"
#include "analysis/report.h"
#include "plot/plot.h"
#include "cli.h"
#include "shard.h"
#include "engine/pool.h"

typedef struct {
	const char	*dir;
	const char	*task;
	int		 set;
	int		 shots;
	int		 seed;
	int		 receiver;
	int		 recv;		/* --receiver-input: fl_patch_recv */
	int		 recv_head;	/* --receiver-head */
	int		 metric;	/* --metric: fl_patch_metric */
	int		 batch;
	int		 top;
	int		 threads;
	bool		 single_token;	/* --single-token */
	bool		 counterfactual;	/* --counterfactual */
	bool		 json;
	bool		 csv;		/* --csv */
	const char	*plot;		/* --plot FILE */
	cli_shard	 shard;		/* --shard I/N, --out FILE */
} heads_args;

const cli_opt cmd_heads_opts[] = {
	CLI_SHARED_MODEL,
	CLI_SHARED_TASK(CLI_OPT_REQUIRED),
	CLI_SHARED_TEMPLATES,
	CLI_SHARED_SHOTS(0),
	CLI_SHARED_SINGLE_TOKEN(0),
	CLI_SHARED_COUNTERFACTUAL,
	{ "seed", 'r', "N", 0, CLI_GROUP_OWN,
	  "the seed that draws the corrupted prompts' subjects and the "
	  "demonstrations (default 1)" },
	{ "receiver", 'R', "LAYER", 0, CLI_GROUP_OWN,
	  "read the residual before this layer instead of the final one (with "
	  "--receiver-input q, k or v: the receiving head's layer)" },
	{ "receiver-input", 'I', "resid|q|k|v", 0, CLI_GROUP_OWN,
	  "the receiver: the residual stream (the default), or the query, key or "
	  "value input of head --receiver-head of layer --receiver, whose patched "
	  "value alone is put into a clean run read at the logits" },
	{ "receiver-head", 'E', "H", 0, CLI_GROUP_OWN,
	  "the receiving head of a q, k or v receiver" },
	{ "metric", 'T', "answer|subject", 0, CLI_GROUP_OWN,
	  "what the patched runs are scored on: logit(answer) - mean logit (the "
	  "default) or logit(subject) - mean logit (the heads and MLPs that write "
	  "the subject, \"France\")" },
	CLI_SHARED_BATCH(0),
	{ "top", 'k', "K", 0, CLI_GROUP_OWN,
	  "how many of the strongest heads to list (default 10)" },
	CLI_SHARED_JSON,
	{ "csv", 'C', NULL, 0, CLI_GROUP_OUTPUT,
	  "print CSV instead: a row per head (layer, head, effect, patched, "
	  "pearson)" },
	CLI_SHARED_PLOT,
	CLI_SHARED_SHARD,
	CLI_SHARED_OUT,
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_SHARED_STRICT,
	CLI_OPT_END
};

static int
heads_parse(heads_args *a, int argc, char **argv)
{
	cli_shared sh = { .plot = &a->plot, .dir = &a->dir, .task = &a->task,
	    .set = &a->set, .shots = &a->shots, .batch = &a->batch,
	    .threads = &a->threads, .json = &a->json, .shard = &a->shard,
	    .single_token = &a->single_token, .counterfactual = &a->counterfactual };
	int c;

	memset(a, 0, sizeof *a);
	a->seed = 1;
	a->receiver = -1;
	a->recv_head = -1;
	a->batch = 32;
	a->top = 10;
	optind = 1;
	while ((c = cli_getopt(argc, argv, cmd_heads_opts, &sh)) != -1) {
		switch (c) {
		case 'r':
			if (cli_int("--seed", optarg, 0, 1 << 30, &a->seed))
				return 2;
			break;
		case 'R':
			if (cli_int("--receiver", optarg, 1, 4096, &a->receiver))
				return 2;
			break;
		case 'k':
			if (cli_int("--top", optarg, 1, 10000, &a->top))
				return 2;
			break;
		case 'I':
			if ((a->recv = patch_recv_parse(optarg)) < 0)
				return cli_fail(2, "--receiver-input takes resid, q, k or v, "
				    "not '%s'", optarg);
			break;
		case 'E':
			if (cli_int("--receiver-head", optarg, 0, 4096, &a->recv_head))
				return 2;
			break;
		case 'T':
			if ((a->metric = patch_metric_parse(optarg)) < 0)
				return cli_fail(2, "--metric takes answer or subject, not "
				    "'%s'", optarg);
			break;
		case 'C': a->csv = true; break;
		case CLI_GETOPT_BAD:
			return 2;
		default:
			return cli_fail(2, "%s", cli_usage("heads"));
		}
	}
	if (cli_csv_or_json("heads", a->csv, a->json) != 0)
		return 2;
	if (a->recv != PATCH_RECV_RESID && (a->recv_head < 0 || a->receiver < 0))
		return cli_fail(2, "heads: --receiver-input %s needs --receiver LAYER and "
		    "--receiver-head H (the receiving head)", patch_recv_name(
		    (fl_patch_recv)a->recv));
	if (a->recv == PATCH_RECV_RESID && a->recv_head >= 0)
		return cli_fail(2, "heads: --receiver-head needs --receiver-input q, k "
		    "or v");
	return cli_shared_finish(&sh, "heads", argc, argv);
}

/* Heads ordered by effect, most negative first (NANs last). */
static const double *sort_effect;

static int
cmp_effect(const void *x, const void *y)
{
	double a = sort_effect[*(const int *)x], b = sort_effect[*(const int *)y];

	if (isnan(a) || isnan(b))
		return isnan(a) - isnan(b);
	return a < b ? -1 : a > b;
}

static void
print_grid(const char *title, const double *v, int L, int H, const char *fmt)
{
	printf("%s\n%6s", title, "layer");
	for (int h = 0; h < H; h++)
		printf(" %7d", h);
	putchar('\n');
	for (int l = 0; l < L; l++) {
		printf("%6d", l);
		for (int h = 0; h < H; h++) {
			if (isnan(v[l * H + h]))
				printf(" %7s", "-");
			else
				printf(fmt, v[l * H + h]);
		}
		putchar('\n');
	}
}

/* The effect grid with the MLP column. */
static void
print_grid_mlp(const char *title, const double *v, const double *mlp, int L, int H)
{
	printf("%s\n%6s", title, "layer");
	for (int h = 0; h < H; h++)
		printf(" %7d", h);
	printf(" %7s\n", "mlp");
	for (int l = 0; l < L; l++) {
		printf("%6d", l);
		for (int h = 0; h <= H; h++) {
			double x = h < H ? v[l * H + h] : mlp[l];

			if (isnan(x))
				printf(" %7s", "-");
			else
				printf(" %7.1f", x);
		}
		putchar('\n');
	}
}

/* Prompt i's part of the result (row j of a share's) as a partial's line,
 * and back into row i of the whole. */
static cJSON *
heads_row_json(const fl_patch *r, int j, int i)
{
	cJSON *row = cJSON_CreateObject();
	size_t LH = (size_t)r->n_layer * r->n_head;

	cJSON_AddNumberToObject(row, "prompt", i);
	cli_json_add_f64(row, "clean", r->clean_prompt + j, 1);
	cli_json_add_f64(row, "patched", r->patched_prompt + j * LH, LH);
	cli_json_add_f64(row, "mlp", r->mlp_patched_prompt + (size_t)j * r->n_layer,
	    (size_t)r->n_layer);
	cli_json_add_f32(row, "attn", r->attn + j * LH, LH);
	cli_json_add_f32(row, "proj", r->proj + j * LH, LH);
	return row;
}

static int
heads_row_read(cli_merge *mg, fl_patch *r, int i)
{
	cJSON *row = cli_merge_row(mg, i);
	size_t LH = (size_t)r->n_layer * r->n_head;
	int rc;

	if (row == NULL)
		return 1;
	rc = cli_json_get_f64(mg, i, row, "clean", r->clean_prompt + i, 1) ||
	    cli_json_get_f64(mg, i, row, "patched", r->patched_prompt + i * LH, LH) ||
	    cli_json_get_f64(mg, i, row, "mlp", r->mlp_patched_prompt +
	    (size_t)i * r->n_layer, (size_t)r->n_layer) ||
	    cli_json_get_f32(mg, i, row, "attn", r->attn + i * LH, LH) ||
	    cli_json_get_f32(mg, i, row, "proj", r->proj + i * LH, LH);
	cJSON_Delete(row);
	return rc;
}

/* heads; with mg, its merge (shard.h). A share runs every corrupted prompt
 * (the senders' corrupted means are over all of them) and its own clean
 * prompts and patched runs. */
static int
heads_main(int argc, char **argv, cli_merge *mg)
{
	heads_args a;
	fl_model *m = NULL;
	fl_task *t = NULL;
	fl_prompt_set clean = { 0 }, corrupt = { 0 };
	fl_prompt_opts po;
	fl_patch res = { 0 };
	fl_patch_opts o;
	fl_batch *b = NULL;
	cli_progress_state prog;
	char *cause = NULL;
	int rc, L, H, *order = NULL, *idx = NULL, n_share = 0;
	fl_prompt *share = NULL;
	bool *movers = NULL;
	double t0 = fl_now(), parts_seconds = 0;

	if ((rc = heads_parse(&a, argc, argv)) != 0)
		return rc;
	kern_set_threads(a.threads);
	if ((t = cli_load_task(a.task)) == NULL)
		return 1;
	if ((m = mg != NULL ? cli_merge_model(mg, a.dir) : cli_load_model(a.dir)) == NULL) {
		task_free(t);
		return 1;
	}
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	rc = 1;
	if (a.receiver > L) {
		rc = cli_fail(2, "--receiver takes a layer from 1 to %d (%d: the final "
		    "residual)", L, L);
		goto out;
	}
	if (a.recv != PATCH_RECV_RESID && (a.receiver >= L || a.recv_head >= H)) {
		rc = cli_fail(2, "a %s receiver is a head of layers 1 to %d, heads 0 to "
		    "%d (not %d.%d)", patch_recv_name((fl_patch_recv)a.recv), L - 1,
		    H - 1, a.receiver, a.recv_head);
		goto out;
	}
	po = (fl_prompt_opts){ (fl_template_set)a.set, a.shots, (unsigned)a.seed,
	    false, a.single_token, a.counterfactual };
	if (task_prompts(&clean, m, t, &po, &cause) != 0)
		goto fail_cause;
	cli_note_dropped("heads", &po, &clean);
	po.corrupt = true;
	if (task_prompts(&corrupt, m, t, &po, &cause) != 0)
		goto fail_cause;
	if (mg != NULL) {
		if (mg->prompts != clean.n) {
			cli_fail(1, "%s: %d prompts in all, but %s makes %d of %s",
			    mg->parts[0].path, mg->prompts, a.task, clean.n, a.dir);
			goto out;
		}
		patch_init(&res, m, clean.n, a.receiver < 0 ? L : a.receiver);
		res.recv = (fl_patch_recv)a.recv;
		res.recv_head = a.recv != PATCH_RECV_RESID ? a.recv_head : -1;
		res.metric = (fl_patch_metric)a.metric;
		for (int i = 0; i < clean.n; i++)
			if (heads_row_read(mg, &res, i) != 0)
				goto out;
		if (cli_merge_end(mg) != 0)
			goto out;
		patch_sum_prompts(&res);
		parts_seconds = cli_merge_work_sum(mg, "seconds");
		goto report;
	}
	idx = cli_shard_select(&a.shard, clean.n, &n_share);
	share = xmalloc((size_t)(n_share > 0 ? n_share : 1) * sizeof *share);
	for (int j = 0; j < n_share; j++)
		share[j] = clean.p[idx[j]];
	b = batch_new(m, a.batch, clean.max_len > corrupt.max_len ? clean.max_len :
	    corrupt.max_len);
	cli_progress_init(&prog, "heads");
	b->progress = cli_progress_of(&prog);
	b->total = patch_units(L, n_share, corrupt.n);
	o = (fl_patch_opts){ a.receiver, NULL, (fl_patch_recv)a.recv, a.recv_head,
	    (fl_patch_metric)a.metric, NULL };
	cli_interrupt_catch();
	if (n_share == 0)	/* more shards than prompts: an empty share */
		patch_init(&res, m, 0, a.receiver < 0 ? L : a.receiver);
	else
		rc = cli_work_end(&prog, patch_heads(&res, b, share, n_share, corrupt.p,
		    corrupt.n, &o, &cause), "path patching");
	if (rc == FL_EXIT_STOPPED)
		goto out;
	if (n_share > 0 && rc != 0) {
		rc = 1;
		goto fail_cause;
	}
	if (a.shard.count > 0) {
		cli_part_writer w;
		cJSON *work = cJSON_CreateObject();

		rc = 1;
		if (cli_part_begin(&w, &a.shard, m, "heads", argc, argv, clean.n) != 0) {
			cJSON_Delete(work);
			goto out;
		}
		for (int j = 0; j < n_share; j++)
			cli_part_row(&w, heads_row_json(&res, j, idx[j]));
		cJSON_AddNumberToObject(work, "seconds", fl_now() - t0);
		rc = cli_part_end(&w, work);
		goto out;
	}
report:
	rc = 1;
	movers = xcalloc((size_t)L * H, sizeof *movers);
	patch_movers(&res, PATCH_MOVER_EFFECT, PATCH_MOVER_R, movers);
	order = xcalloc((size_t)L * H, sizeof *order);
	for (int i = 0; i < L * H; i++)
		order[i] = i;
	sort_effect = res.effect;
	qsort(order, (size_t)L * H, sizeof *order, cmp_effect);
	if (a.top > L * H)
		a.top = L * H;
	if (a.plot != NULL) {
		char *title = xasprintf("path patching: %s, %d prompts", t->name, clean.n);

		rc = plot_heads(a.plot, title, "effect on the mean logit difference (%) when "
		    "the head's output at the last position is patched; negative: the "
		    "head carries what the answer needs", res.effect, L, H, true, NULL,
		    &cause);
		free(title);
		if (rc != 0)
			goto fail_cause;
		rc = 1;
	}

	if (a.csv) {
		const char *cols[] = { "effect", "patched", "pearson" };
		const double *grids[] = { res.effect, res.patched, res.pearson };

		report_grid_csv(stdout, NULL, L, H, 3, cols, grids, true);
		rc = cli_csv_done("heads");
		goto out;
	}
	if (a.json) {
		cJSON *root = cJSON_CreateObject(), *o2, *arr;

		cJSON_AddItemToObject(root, "model", report_string(a.dir));
		o2 = cJSON_AddObjectToObject(root, "task");
		cJSON_AddStringToObject(o2, "name", t->name);
		cJSON_AddItemToObject(o2, "file", report_string(a.task));
		cJSON_AddStringToObject(o2, "templates", task_set_name(po.set));
		cJSON_AddNumberToObject(o2, "shots", po.shots);
		cli_json_prompt_filters(o2, &po, clean.dropped);
		cJSON_AddNumberToObject(root, "prompts", clean.n);
		cJSON_AddNumberToObject(root, "corrupted_prompts", corrupt.n);
		cJSON_AddNumberToObject(root, "receiver_layer", res.receiver);
		cJSON_AddStringToObject(root, "receiver", res.recv != PATCH_RECV_RESID ?
		    "a head's input, last position" : res.receiver == L ?
		    "final residual, last position" : "resid_pre, last position");
		cJSON_AddStringToObject(root, "receiver_input", patch_recv_name(res.recv));
		if (res.recv != PATCH_RECV_RESID)
			cJSON_AddNumberToObject(root, "receiver_head", res.recv_head);
		cJSON_AddStringToObject(root, "metric", res.metric == PATCH_METRIC_SUBJECT ?
		    "mean logit(subject) - mean logit" : "mean logit(answer) - mean logit");
		cJSON_AddNumberToObject(root, "clean", res.clean);
		cJSON_AddItemToObject(root, "effect", report_grid_d(res.effect, L, H));
		cJSON_AddItemToObject(root, "patched", report_grid_d(res.patched, L, H));
		cJSON_AddItemToObject(root, "pearson", report_grid_d(res.pearson, L, H));
		cJSON_AddItemToObject(root, "mlp_effect", report_grid_d(res.mlp_effect, L, 1));
		cJSON_AddItemToObject(root, "mlp_patched", report_grid_d(res.mlp_patched, L,
		    1));
		arr = cJSON_AddArrayToObject(root, "top");
		for (int i = 0; i < a.top; i++) {
			cJSON *e = cJSON_CreateObject();
			int k = order[i];

			cJSON_AddNumberToObject(e, "layer", k / H);
			cJSON_AddNumberToObject(e, "head", k % H);
			cJSON_AddItemToObject(e, "effect", report_number(res.effect[k]));
			cJSON_AddItemToObject(e, "pearson", report_number(res.pearson[k]));
			cJSON_AddBoolToObject(e, "mover", movers[k]);
			cJSON_AddItemToArray(arr, e);
		}
		arr = cJSON_AddArrayToObject(root, "movers");
		for (int k = 0; k < L * H; k++)
			if (movers[k]) {
				cJSON *e = cJSON_CreateObject();

				cJSON_AddNumberToObject(e, "layer", k / H);
				cJSON_AddNumberToObject(e, "head", k % H);
				cJSON_AddItemToArray(arr, e);
			}
		cJSON_AddNumberToObject(root, "seconds", parts_seconds + fl_now() - t0);
		cJSON_AddNumberToObject(root, "threads", kern_threads());
		rc = cli_json_print(root);
		goto out;
	}
	printf("model     %s (%s, %d layers x %d heads)\n", a.dir, m->cfg.model_type, L, H);
	printf("task      %s: %d %d-shot prompts, each with a corrupted twin (the "
	    "subject replaced by another pair's)\n", t->name, clean.n, po.shots);
	if (res.recv != PATCH_RECV_RESID)
		printf("receiver  head %d.%d's %s input at the last position, read at the "
		    "logits", res.receiver, res.recv_head, patch_recv_name(res.recv));
	else
		printf("receiver  %s at the last position", res.receiver == L ?
		    "the final residual" : "resid_pre of a layer");
	printf("; metric: mean logit(%s) - mean logit = %.4f clean\n\n",
	    patch_metric_name(res.metric), res.clean);
	if (res.recv == PATCH_RECV_RESID && res.receiver < L)
		printf("          (resid_pre of layer %d)\n\n", res.receiver);
	print_grid_mlp("path-patching effect, % change of the metric (negative: the "
	    "sender carries what the metric needs); mlp: the layer's MLP as the sender",
	    res.effect, res.mlp_effect, L, H);
	putchar('\n');
	print_grid("mover scatter: Pearson r of attention to the subject vs the head's "
	    "output . W_U[subject]", res.pearson, L, H, " %7.2f");
	printf("\nstrongest heads:\n");
	for (int i = 0; i < a.top; i++) {
		int k = order[i];

		printf("  %2d.%-3d effect %8.2f%%   r %6.2f%s\n", k / H, k % H, res.effect[k],
		    res.pearson[k], movers[k] ? "   mover" : "");
	}
	printf("\nmover: effect <= -%.0f%% and r >= %.1f (r undefined: mean attention to "
	    "the subject >= 0.5), as the explorer stars them\n", PATCH_MOVER_EFFECT,
	    PATCH_MOVER_R);
	printf("\n%.2f s, %d thread%s\n", parts_seconds + fl_now() - t0, kern_threads(),
	    kern_threads() == 1 ? "" : "s");
	rc = 0;
	goto out;
fail_cause:
	cli_fail(1, "%s", cause);
	free(cause);
out:
	free(order);
	free(idx);
	free(share);
	free(movers);
	patch_clear(&res);
	batch_free(b);
	prompt_set_clear(&clean);
	prompt_set_clear(&corrupt);
	task_free(t);
	model_free(m);
	return rc;
}

int
cmd_heads(int argc, char **argv)
{
	return heads_main(argc, argv, NULL);
}

int
cmd_heads_merge(int argc, char **argv, cli_merge *mg)
{
	return heads_main(argc, argv, mg);
}
