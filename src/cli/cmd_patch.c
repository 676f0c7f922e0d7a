/* cmd_patch.c - factlens patch: activation patching from a clean prompt
 * into a corrupted one of the same token count, TransformerLens' patching
 * grids: resid_pre, resid_mid, attn_out or mlp_out at each (layer,
 * position), or each head's z, q, k, v or pattern at every position or at
 * each, or those five one after the other (--hook every; actpatch.h). */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/actpatch.h"
#include "analysis/report.h"
#include "cli.h"
#include "engine/pool.h"
#include "plot/plot.h"

typedef struct {
	const char	*dir;
	const char	*prompt;
	const char	*corrupt;
	const char	*answer;
	const char	*distractor;
	const char	*plot;		/* --plot FILE */
	int		 hook;		/* fl_actpatch_hook */
	int		 metric;	/* fl_actpatch_metric */
	int		 batch;
	int		 threads;
	bool		 by_pos;
	bool		 every;		/* --hook every: z, q, k, v, pattern */
	bool		 json;
} patch_args;

const cli_opt cmd_patch_opts[] = {
	CLI_SHARED_MODEL,
	{ "prompt", 'p', "CLEAN", CLI_OPT_SHORT | CLI_OPT_REQUIRED, CLI_GROUP_OWN,
	  "the clean prompt, whose activations are patched in" },
	{ "clean", 'C', "CLEAN", CLI_OPT_NO_USAGE, CLI_GROUP_OWN,
	  "the same as --prompt" },
	{ "corrupt", 'c', "CORRUPT", CLI_OPT_SHORT | CLI_OPT_REQUIRED, CLI_GROUP_OWN,
	  "the corrupted prompt, run with one activation at a time taken from the "
	  "clean run and read at its last position; as many tokens as the clean "
	  "one" },
	{ "answer", 'a', "A", CLI_OPT_SHORT | CLI_OPT_REQUIRED, CLI_GROUP_OWN,
	  "the clean prompt's answer, scored on its first token" },
	{ "distractor", 'd', "D", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "metric logit(answer) - logit(D), typically the corrupted prompt's "
	  "answer (default: logit(answer) - the mean logit)" },
	{ "hook", 'H', "resid_pre|resid_mid|attn_out|mlp_out|z|q|k|v|pattern|every",
	  0, CLI_GROUP_OWN,
	  "what a cell patches: blocks.L.hook_resid_pre (the default), "
	  "hook_resid_mid, hook_attn_out or hook_mlp_out at one layer and "
	  "position (layers x positions), or one head's attn.hook_z, hook_q, "
	  "hook_k, hook_v (key/value heads) or its whole attn.hook_pattern at "
	  "every position (layers x heads); every: the grids of z, q, k, v and "
	  "pattern one after the other" },
	{ "by-pos", 'B', NULL, CLI_OPT_NESTED, CLI_GROUP_OWN,
	  "with a head --hook (z, q, k, v, pattern, every), a cell per head and "
	  "position (layers x positions x heads); a pattern's cell is the head's "
	  "row for that destination (query) position" },
	{ "metric", 'M', "logit-diff|prob", 0, CLI_GROUP_OWN,
	  "what is read at the last position: the logit difference of --answer "
	  "and --distractor (the default) or P(answer)" },
	CLI_SHARED_JSON,
	CLI_SHARED_PLOT,
	CLI_SHARED_BATCH(0),
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_SHARED_STRICT,
	CLI_OPT_END
};

static int
patch_parse(patch_args *a, int argc, char **argv)
{
	cli_shared sh = { .dir = &a->dir, .threads = &a->threads, .json = &a->json,
	    .plot = &a->plot, .batch = &a->batch };
	int c;

	memset(a, 0, sizeof *a);
	a->hook = ACTPATCH_RESID_PRE;
	a->metric = ACTPATCH_LOGIT_DIFF;
	a->batch = 32;
	optind = 1;
	while ((c = cli_getopt(argc, argv, cmd_patch_opts, &sh)) != -1) {
		switch (c) {
		case 'p':
		case 'C':
			if (a->prompt != NULL)
				return cli_fail(2, "patch: --prompt and --clean name the "
				    "same clean prompt: give it once");
			a->prompt = optarg;
			break;
		case 'c': a->corrupt = optarg; break;
		case 'a': a->answer = optarg; break;
		case 'd': a->distractor = optarg; break;
		case 'H':
			a->every = strcmp(optarg, "every") == 0;
			if (a->every)
				a->hook = ACTPATCH_Z;
			else if ((a->hook = actpatch_hook_parse(optarg)) < 0)
				return cli_fail(2, "--hook takes resid_pre, resid_mid, "
				    "attn_out, mlp_out, z, q, k, v, pattern or every, not "
				    "'%s'", optarg);
			break;
		case 'B': a->by_pos = true; break;
		case 'M':
			if ((a->metric = actpatch_metric_parse(optarg)) < 0)
				return cli_fail(2, "--metric takes logit-diff or prob, not "
				    "'%s'", optarg);
			break;
		case CLI_GETOPT_BAD:
			return 2;
		default:
			return cli_fail(2, "%s", cli_usage("patch"));
		}
	}
	if (optind < argc)
		return cli_fail(2, "patch: unexpected argument '%s' (the prompts go "
		    "after --prompt and --corrupt)\n%s", argv[optind], cli_usage("patch"));
	if (a->prompt == NULL || a->corrupt == NULL || a->answer == NULL)
		return cli_fail(2, "patch: --prompt (or --clean), --corrupt and "
		    "--answer are required\n%s", cli_usage("patch"));
	if (a->answer[strspn(a->answer, " \t\n")] == '\0')
		return cli_fail(2, "patch: --answer is empty; give the answer's text");
	if (a->distractor != NULL && a->distractor[strspn(a->distractor, " \t\n")] == '\0')
		return cli_fail(2, "patch: --distractor is empty; give its text, or leave "
		    "it out for the mean logit");
	if (a->distractor != NULL && a->metric == ACTPATCH_PROB)
		return cli_fail(2, "patch: --distractor is the logit difference's; "
		    "--metric prob reads P(answer) alone");
	if (a->by_pos && !actpatch_per_head(a->hook))
		return cli_fail(2, "patch: --by-pos splits a head grid (--hook z, q, k, "
		    "v, pattern or every) by position; the %s grid is by position "
		    "already", actpatch_hook_name(a->hook));
	if (a->every && a->plot != NULL)
		return cli_fail(2, "patch: --plot draws one grid and --hook every has "
		    "five: give --hook z, q, k, v or pattern");
	if (a->dir == NULL)
		a->dir = fl_default_model();
	return 0;
}

/* What one run of the command has. */
typedef struct {
	const patch_args	*a;
	const fl_model		*m;
	const int		*clean, *corrupt;	/* (T) ids */
	bool			*differ;		/* (T) */
	char			*ans, *dis;		/* quoted tokens; dis NULL */
} patch_state;

static const char *
hook_long_name(fl_actpatch_hook h)
{
	static const char *names[ACTPATCH_HOOK_COUNT] = {
		"blocks.L.hook_resid_pre", "blocks.L.hook_resid_mid",
		"blocks.L.hook_attn_out", "blocks.L.hook_mlp_out",
		"blocks.L.attn.hook_z", "blocks.L.attn.hook_q",
		"blocks.L.attn.hook_k", "blocks.L.attn.hook_v",
		"blocks.L.attn.hook_pattern",
	};

	return h >= 0 && h < ACTPATCH_HOOK_COUNT ? names[h] : "?";
}

/* What a cell of a grid is, after the hook's name. */
static const char *
cell_text(const fl_actpatch *r)
{
	if (!actpatch_per_head(r->o.hook))
		return " at each layer and position";
	if (r->o.hook == ACTPATCH_PATTERN)
		return r->o.by_pos ? " of each head, its row for each destination "
		    "position" : " of each head, its whole pattern";
	if (r->o.hook == ACTPATCH_K || r->o.hook == ACTPATCH_V)
		return r->o.by_pos ? " of each key/value head at each position" :
		    " of each key/value head at every position";
	return r->o.by_pos ? " of each head at each position" :
	    " of each head at every position";
}

/* "heads", or "key/value heads" for k and v where the model has fewer. */
static const char *
heads_word(const patch_state *s, const fl_actpatch *r)
{
	return r->n_head != s->m->cfg.n_head ? "key/value heads" : "heads";
}

/* The metric in words: "logit(" Paris") - logit(" Rome")". Heap. */
static char *
metric_text(const patch_state *s)
{
	if (s->a->metric == ACTPATCH_PROB)
		return xasprintf("P(%s)", s->ans);
	if (s->dis != NULL)
		return xasprintf("logit(%s) - logit(%s)", s->ans, s->dis);
	return xasprintf("logit(%s) - mean logit", s->ans);
}

/* A row label: the position, * where the prompts differ, the clean token. */
static void
print_pos(const patch_state *s, int t)
{
	printf("%3d%c ", t, s->differ[t] ? '*' : ' ');
	cli_print_token(s->m, s->clean[t], 14);
}

/* A cell: "-" where it is undefined. */
static void
print_cell(double v)
{
	if (isnan(v))
		printf(" %7s", "-");
	else
		printf(" %7.3f", v);
}

/* One grid of r's values v as a table. */
static void
print_grid(const patch_state *s, const fl_actpatch *r, const double *v,
    const char *what)
{
	int L = r->n_layer, T = r->n_tok, H = r->n_head;

	if (!actpatch_per_head(r->o.hook)) {
		printf("%s\n(rows: positions, * where the prompts differ; columns: "
		    "layers)\n%-19s", what, "");
		for (int l = 0; l < L; l++)
			printf(" %7d", l);
		putchar('\n');
		for (int t = 0; t < T; t++) {
			print_pos(s, t);
			for (int l = 0; l < L; l++)
				print_cell(v[(size_t)l * T + t]);
			putchar('\n');
		}
		return;
	}
	if (!r->o.by_pos) {
		printf("%s\n(rows: layers; columns: %s)\n%5s", what,
		    heads_word(s, r), "layer");
		for (int h = 0; h < H; h++)
			printf(" %7d", h);
		putchar('\n');
		for (int l = 0; l < L; l++) {
			printf("%5d", l);
			for (int h = 0; h < H; h++)
				print_cell(v[(size_t)l * H + h]);
			putchar('\n');
		}
		return;
	}
	printf("%s\n(for each layer, rows: %spositions, * where the prompts "
	    "differ; columns: %s)\n", what, r->o.hook == ACTPATCH_PATTERN ?
	    "destination " : "", heads_word(s, r));
	for (int l = 0; l < L; l++) {
		printf("layer %-13d", l);
		for (int h = 0; h < H; h++)
			printf(" %7d", h);
		putchar('\n');
		for (int t = 0; t < T; t++) {
			print_pos(s, t);
			for (int h = 0; h < H; h++)
				print_cell(v[((size_t)l * T + t) * H + h]);
			putchar('\n');
		}
	}
}

/* The grids res[0 .. n) (n 5 with --hook every), after one header. */
static void
patch_print(const patch_state *s, const fl_actpatch *res, int n, double secs)
{
	const fl_actpatch *r = &res[0];
	const patch_args *a = s->a;
	char *mt = metric_text(s);
	int T = r->n_tok, nd = 0;

	printf("model     %s (%s, %d layers x %d heads", a->dir, s->m->cfg.model_type,
	    r->n_layer, s->m->cfg.n_head);
	if (s->m->cfg.n_kv_head != s->m->cfg.n_head)
		printf(", %d key/value heads", s->m->cfg.n_kv_head);
	printf(")\n");
	printf("prompts   %d tokens each; clean \"%s\", corrupted \"%s\"\n", T,
	    a->prompt, a->corrupt);
	printf("differ    ");
	for (int t = 0; t < T; t++)
		if (s->differ[t]) {
			printf("%s%d: ", nd++ ? ", " : "at ", t);
			cli_print_token(s->m, s->clean[t], 0);
			printf(" / ");
			cli_print_token(s->m, s->corrupt[t], 0);
		}
	printf("%s\n", nd == 0 ? "nowhere: the prompts are the same" : "");
	printf("metric    %s at the last position: %.4f clean, %.4f corrupted%s\n",
	    mt, r->clean, r->corrupt, r->clean == r->corrupt ? " (equal: the "
	    "normalised cells are undefined, -)" : "");
	for (int i = 0; i < n; i++) {
		r = &res[i];
		if (n > 1)
			printf("%s==== %s\n", i > 0 ? "\n" : "", actpatch_hook_name(r->o.hook));
		printf("patched   %s%s, clean into the corrupted run\n          %d "
		    "cells, %d run", hook_long_name(r->o.hook), cell_text(r),
		    r->n_cells, r->n_run);
		if (r->n_run < r->n_cells)
			printf(" (the other %d hold the same values in both runs: the "
			    "corrupted metric)", r->n_cells - r->n_run);
		printf("\n\n");
		print_grid(s, r, r->norm, "normalised: (patched - corrupted) / (clean - "
		    "corrupted): 1 restores the clean\nmetric, 0 changes nothing");
		putchar('\n');
		print_grid(s, r, r->patched, "the metric with the cell patched");
	}
	printf("\n%.2f s, %d thread%s\n", secs, kern_threads(),
	    kern_threads() == 1 ? "" : "s");
	free(mt);
}

/* A grid as JSON: [layer][position], [layer][head] or
 * [layer][position][head]. */
static cJSON *
json_grid(const fl_actpatch *r, const double *v)
{
	int L = r->n_layer, T = r->n_tok, H = r->n_head;

	if (!actpatch_per_head(r->o.hook))
		return report_grid_d(v, L, T);
	if (!r->o.by_pos)
		return report_grid_d(v, L, H);
	{
		cJSON *arr = cJSON_CreateArray();

		for (int l = 0; l < L; l++)
			cJSON_AddItemToArray(arr, report_grid_d(v + (size_t)l * T * H, T, H));
		return arr;
	}
}

/* One grid's fields into obj: hook, by_pos, dims, heads, patched,
 * normalized, cells, runs. */
static void
json_grid_fields(cJSON *obj, const fl_actpatch *r)
{
	cJSON *arr;

	cJSON_AddStringToObject(obj, "hook", hook_long_name(r->o.hook));
	cJSON_AddBoolToObject(obj, "by_pos", r->o.by_pos);
	arr = cJSON_AddArrayToObject(obj, "dims");
	cJSON_AddItemToArray(arr, cJSON_CreateString("layer"));
	if (!actpatch_per_head(r->o.hook) || r->o.by_pos)
		cJSON_AddItemToArray(arr, cJSON_CreateString("position"));
	if (actpatch_per_head(r->o.hook)) {
		cJSON_AddItemToArray(arr, cJSON_CreateString("head"));
		cJSON_AddNumberToObject(obj, "heads", r->n_head);
	}
	cJSON_AddItemToObject(obj, "patched", json_grid(r, r->patched));
	cJSON_AddItemToObject(obj, "normalized", json_grid(r, r->norm));
	cJSON_AddNumberToObject(obj, "cells", r->n_cells);
	cJSON_AddNumberToObject(obj, "runs", r->n_run);
}

/* The grids res[0 .. n): one grid's fields at the top; with --hook every
 * hook "every" and grids {z: fields, q: ..., pattern: ...}. */
static cJSON *
patch_json(const patch_state *s, const fl_actpatch *res, int n, double secs)
{
	const fl_actpatch *r = &res[0];
	const patch_args *a = s->a;
	const fl_model *m = s->m;
	cJSON *root = cJSON_CreateObject(), *arr;
	int V = m->cfg.n_vocab, T = r->n_tok;
	char *mt = metric_text(s);

	cJSON_AddItemToObject(root, "model", report_string(a->dir));
	cJSON_AddItemToObject(root, "prompt", report_string(a->prompt));
	cJSON_AddItemToObject(root, "corrupt", report_string(a->corrupt));
	arr = cJSON_AddArrayToObject(root, "tokens");
	for (int t = 0; t < T; t++)
		cJSON_AddItemToArray(arr, report_token(m->tok, s->clean[t], NULL, V));
	arr = cJSON_AddArrayToObject(root, "corrupt_tokens");
	for (int t = 0; t < T; t++)
		cJSON_AddItemToArray(arr, report_token(m->tok, s->corrupt[t], NULL, V));
	arr = cJSON_AddArrayToObject(root, "differ");
	for (int t = 0; t < T; t++)
		if (s->differ[t])
			cJSON_AddItemToArray(arr, cJSON_CreateNumber(t));
	cJSON_AddItemToObject(root, "answer", report_token(m->tok, r->o.answer, NULL, 0));
	cJSON_AddItemToObject(root, "distractor", r->o.distractor >= 0 ?
	    report_token(m->tok, r->o.distractor, NULL, 0) : cJSON_CreateNull());
	cJSON_AddStringToObject(root, "metric", actpatch_metric_name(r->o.metric));
	cJSON_AddItemToObject(root, "metric_text", report_string(mt));
	cJSON_AddItemToObject(root, "clean", report_number(r->clean));
	cJSON_AddItemToObject(root, "corrupted", report_number(r->corrupt));
	if (n == 1)
		json_grid_fields(root, r);
	else {
		cJSON *grids;

		cJSON_AddStringToObject(root, "hook", "every");
		cJSON_AddBoolToObject(root, "by_pos", r->o.by_pos);
		grids = cJSON_AddObjectToObject(root, "grids");
		for (int i = 0; i < n; i++) {
			cJSON *g = cJSON_CreateObject();

			json_grid_fields(g, &res[i]);
			cJSON_AddItemToObject(grids, actpatch_hook_name(res[i].o.hook), g);
		}
	}
	cJSON_AddNumberToObject(root, "seconds", secs);
	cJSON_AddNumberToObject(root, "threads", kern_threads());
	free(mt);
	return root;
}

/* --plot: the normalised grid. 0, or 1 after saying why. */
static int
patch_plot(const patch_state *s, const fl_actpatch *r)
{
	const patch_args *a = s->a;
	int L = r->n_layer, T = r->n_tok, H = r->n_head, rc, R;
	bool heads = actpatch_per_head(r->o.hook), by_pos = heads && r->o.by_pos;
	char *ans = cli_plot_token(s->m, r->o.answer), *mt = metric_text(s);
	char *title, *sub, *legend, **rows = NULL, *cause = NULL;
	bool *mark = NULL;

	title = xasprintf("activation patching: \"%s\" -> \"%s\"", a->prompt, ans);
	sub = xasprintf("corrupted \"%s\"; %s%s patched from the clean run into "
	    "the corrupted one; %s at the last position: %.4f clean, %.4f corrupted",
	    a->corrupt, hook_long_name(r->o.hook), !heads ? " at the cell's "
	    "position" : r->o.hook == ACTPATCH_PATTERN ? (by_pos ? " of the head, "
	    "its row for the cell's destination position" : " of the head, its "
	    "whole pattern") : by_pos ? " of the head at the cell's position" :
	    " of the head at every position", mt, r->clean, r->corrupt);
	legend = xstrdup("colour: (patched - corrupted) / (clean - corrupted), 1 "
	    "where the patch restores the clean metric, 0 where it changes nothing; "
	    "rows marked * and framed: positions where the prompts differ");
	if (heads && !by_pos) {
		rc = plot_heads(a->plot, title, "(patched - corrupted) / (clean - "
		    "corrupted)", r->norm, L, H, true, NULL, &cause);
		goto done;
	}
	R = by_pos ? T * H : T;
	rows = xcalloc((size_t)R, sizeof *rows);
	mark = xcalloc((size_t)R, sizeof *mark);
	for (int i = 0; i < R; i++) {
		int t = by_pos ? i / H : i;
		char *tok = cli_plot_token(s->m, s->clean[t]);

		if (s->differ[t]) {
			char *alt = cli_plot_token(s->m, s->corrupt[t]);

			/* right-aligned, the clean token's leading space never shows:
			 * nor does the corrupted one's */
			const char *a2 = alt + strspn(alt, " ");

			rows[i] = by_pos ? xasprintf("%s/%s h%d", tok, a2, i % H) :
			    xasprintf("%s/%s", tok, a2);
			free(alt);
		} else
			rows[i] = by_pos ? xasprintf("%s h%d", tok, i % H) : xstrdup(tok);
		mark[i] = s->differ[t];
		free(tok);
	}
	{
		plot_map pm = { title, sub, legend, by_pos ? "token, head" : "token", L,
		    R, (const char *const *)rows, mark, r->norm, true };

		rc = plot_trace(a->plot, &pm, &cause);
	}
	for (int i = 0; i < R; i++)
		free(rows[i]);
done:
	if (rc != 0) {
		cli_fail(1, "%s", cause);
		free(cause);
	}
	free(rows);
	free(mark);
	free(ans);
	free(mt);
	free(title);
	free(sub);
	free(legend);
	return rc != 0 ? 1 : 0;
}

int
cmd_patch(int argc, char **argv)
{
	patch_args a;
	fl_model *m = NULL;
	fl_actpatch res[ACTPATCH_EVERY_COUNT];
	fl_actpatch_opts o;
	fl_prompt pc = { 0 }, pk = { 0 };
	fl_batch *b = NULL;
	patch_state s = { 0 };
	cli_progress_state prog;
	int *clean = NULL, *corrupt = NULL;
	char *cause = NULL;
	int rc, T, n;
	double t0;

	memset(res, 0, sizeof res);
	if ((rc = patch_parse(&a, argc, argv)) != 0)
		return rc;
	if (a.plot != NULL && plot_check(a.plot, &cause) != 0) {
		rc = cli_fail(2, "patch: --plot: %s", cause);
		free(cause);
		return rc;
	}
	kern_set_threads(a.threads);
	if ((m = cli_load_model(a.dir)) == NULL)
		return 1;
	rc = 1;
	if ((T = cli_prompt_pair(m, "patch", a.prompt, a.corrupt, a.answer,
	    a.distractor, &clean, &corrupt, &o.answer, &o.distractor, &rc)) < 0)
		goto out;
	o.hook = (fl_actpatch_hook)a.hook;
	o.by_pos = a.by_pos;
	o.metric = (fl_actpatch_metric)a.metric;
	if (o.distractor == o.answer) {
		rc = cli_fail(2, "patch: --answer and --distractor start with the same "
		    "token: their logit difference is 0 in every run");
		goto out;
	}
	pc.ids = clean;
	pc.n = T;
	pk.ids = corrupt;
	pk.n = T;
	t0 = fl_now();
	b = batch_new(m, a.batch, T);
	cli_progress_init(&prog, "patch");
	b->progress = cli_progress_of(&prog);
	b->total = a.every ? actpatch_every_units(m, &o, T) : actpatch_units(m, &o, T);
	n = a.every ? ACTPATCH_EVERY_COUNT : 1;
	cli_interrupt_catch();
	rc = cli_work_end(&prog, a.every ? actpatch_run_every(res, b, &pc, &pk, &o,
	    &cause) : actpatch_run(&res[0], b, &pc, &pk, &o, &cause),
	    "activation patching");
	if (rc == FL_EXIT_STOPPED)
		goto out;
	if (rc != 0) {
		rc = cli_fail(1, "patch: %s", cause);
		free(cause);
		goto out;
	}
	s.a = &a;
	s.m = m;
	s.clean = clean;
	s.corrupt = corrupt;
	s.differ = xcalloc((size_t)T, sizeof *s.differ);
	for (int t = 0; t < T; t++)
		s.differ[t] = clean[t] != corrupt[t];
	s.ans = cli_token_repr(m->tok, o.answer);
	s.dis = o.distractor >= 0 ? cli_token_repr(m->tok, o.distractor) : NULL;
	rc = 1;
	if (a.plot != NULL && patch_plot(&s, &res[0]) != 0)
		goto out;
	if (a.json)
		rc = cli_json_print(patch_json(&s, res, n, fl_now() - t0));
	else {
		patch_print(&s, res, n, fl_now() - t0);
		rc = 0;
	}
out:
	free(s.differ);
	free(s.ans);
	free(s.dis);
	for (int i = 0; i < ACTPATCH_EVERY_COUNT; i++)
		actpatch_clear(&res[i]);
	batch_free(b);
	free(clean);
	free(corrupt);
	model_free(m);
	return rc;
}
