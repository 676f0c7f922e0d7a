/* cmd_decompose.c - factlens decompose: one layer's MLP output at the last
 * position regressed on the layer's head outputs over a task's prompts
 * (decompose.h): a coefficient per head (erased or amplified), the
 * intercept and its top tokens, R^2; with --prompt, how well the fit
 * reconstructs that prompt's MLP output. */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "analysis/decompose.h"
#include "analysis/lens.h"
#include "analysis/report.h"
#include "cli.h"
#include "engine/pool.h"
#include "engine/readout.h"

typedef struct {
	const char	*dir;
	const char	*task;
	const char	*prompt;
	const char	*subject;
	int		 layer;
	int		 set;
	int		 top;
	int		 batch;
	int		 threads;
	bool		 no_resid;
	double		 ridge;
	bool		 json;
} decomp_args;

const cli_opt cmd_decompose_opts[] = {
	CLI_SHARED_MODEL,
	CLI_SHARED_TASK(CLI_OPT_REQUIRED),
	{ "layer", 'l', "L", 0, CLI_GROUP_OWN,
	  "the layer whose MLP is decomposed (default: the last)" },
	CLI_SHARED_TEMPLATES,
	CLI_SHARED_NO_RESID,
	CLI_SHARED_RIDGE,
	{ "top", 'k', "K", 0, CLI_GROUP_OWN,
	  "the top tokens of each component through the lens (default 8)" },
	{ "prompt", 'p', "TEXT", 0, CLI_GROUP_OWN,
	  "also say how well the fit reconstructs this prompt's MLP output" },
	{ "subject", 's', "TEXT", CLI_OPT_NESTED, CLI_GROUP_OWN,
	  "the prompt's subject, a whole word of it (default: the task's subject "
	  "found last in it)" },
	CLI_SHARED_BATCH(0),
	CLI_SHARED_JSON,
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_OPT_END
};

static int
decomp_parse(decomp_args *a, int argc, char **argv)
{
	cli_shared sh = { .dir = &a->dir, .task = &a->task, .set = &a->set,
	    .batch = &a->batch, .threads = &a->threads, .no_resid = &a->no_resid,
	    .ridge = &a->ridge, .json = &a->json };
	int c;

	memset(a, 0, sizeof *a);
	a->layer = -1;
	a->top = 8;
	a->batch = 32;
	a->ridge = -1;
	optind = 1;
	while ((c = cli_getopt(argc, argv, cmd_decompose_opts, &sh)) != -1) {
		switch (c) {
		case 'l':
			if (cli_int("--layer", optarg, 0, 4096, &a->layer))
				return 2;
			break;
		case 'k':
			if (cli_int("--top", optarg, 1, 100, &a->top))
				return 2;
			break;
		case 'p': a->prompt = optarg; break;
		case 's': a->subject = optarg; break;
		case CLI_GETOPT_BAD:
			return 2;
		default:
			return cli_fail(2, "%s", cli_usage("decompose"));
		}
	}
	return cli_shared_finish(&sh, "decompose", argc, argv);
}

/* What the erase/amplify reading says about a coefficient. */
static const char *
beta_reading(double beta)
{
	if (beta <= -0.5)
		return "erased";
	if (beta >= 0.5)
		return "amplified";
	return "kept";
}

/* The regressor's name: "head 3" or "resid_pre". */
static void
regressor_name(char *buf, size_t n, int j, int H)
{
	if (j < H)
		snprintf(buf, n, "head %d", j);
	else
		snprintf(buf, n, "resid_pre");
}

int
cmd_decompose(int argc, char **argv)
{
	decomp_args a;
	fl_model *m = NULL;
	fl_task *t = NULL;
	fl_prompt_set ps = { 0 };
	fl_prompt_opts po;
	fl_prompt one = { 0 };
	fl_decomp d = { 0 };
	fl_decomp_data dd = { 0 };
	fl_batch *b = NULL;
	fl_run *r = NULL;
	fl_cache *c = NULL;
	fl_recon rec = { 0 };
	cli_progress_state prog;
	char *cause = NULL, name[32];
	int rc, L, H, D, V, J, n_ans = 0, *answers = NULL, *ranks = NULL;
	int *rank_unex = NULL;
	float *comp_logits = NULL, *x1 = NULL, *mlp1 = NULL, *mhat1 = NULL, *vecs = NULL;
	float *unex = NULL;
	double unex_median, unex_mean;

	if ((rc = decomp_parse(&a, argc, argv)) != 0)
		return rc;
	kern_set_threads(a.threads);
	if ((t = cli_load_task(a.task)) == NULL)
		return 1;
	if ((m = cli_load_model(a.dir)) == NULL) {
		task_free(t);
		return 1;
	}
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	D = m->cfg.d_model;
	V = m->cfg.n_vocab;
	rc = 1;
	if (a.layer < 0)
		a.layer = L - 1;
	if (a.layer >= L) {
		rc = cli_fail(2, "--layer takes a layer from 0 to %d", L - 1);
		goto out;
	}
	po = (fl_prompt_opts){ (fl_template_set)a.set, 0, 1, false };
	if (task_prompts(&ps, m, t, &po, &cause) != 0)
		goto fail_cause;
	b = batch_new(m, a.batch, ps.max_len);
	cli_progress_init(&prog, "decompose");
	b->progress = cli_progress_of(&prog);
	b->total = ps.n;
	cli_interrupt_catch();
	rc = decomp_collect(&dd, b, ps.p, ps.n, a.layer, !a.no_resid, &cause);
	if (rc == 0)
		rc = decomp_fit_data(&d, &dd, a.ridge, &cause);
	if (rc == FL_STOPPED || cli_interrupted()) {
		rc = cli_cancelled(&prog, "the decomposition fit");
		goto out;
	}
	cli_progress_end(&prog);
	if (rc != 0) {
		rc = 1;
		goto fail_cause;
	}
	rc = 1;
	J = d.fit.J;

	/* every component through the lens (LNs frozen at unit scale, which
	 * changes no rank): each regressor's mean times (1 + beta), written
	 * where the layer's heads write, then the intercept, where its MLP
	 * writes */
	vecs = xmalloc((size_t)(J + 1) * D * sizeof *vecs);
	for (int j = 0; j < J; j++)
		for (int i = 0; i < D; i++)
			vecs[(size_t)j * D + i] = (float)((1 + d.fit.beta[j]) *
			    d.fit.mean_x[(size_t)j * D + i]);
	memcpy(vecs + (size_t)J * D, d.fit.intercept, (size_t)D * sizeof *vecs);
	comp_logits = xmalloc((size_t)(J + 1) * V * sizeof *comp_logits);
	attrib_carry(m, NULL, 0, ATTRIB_SITE_ATTN(a.layer), vecs, J);
	attrib_carry(m, NULL, 0, ATTRIB_SITE_MLP(a.layer), vecs + (size_t)J * D, 1);
	model_unembed(m, vecs, J + 1, comp_logits, NULL);
	/* the ranks of the task's distinct answers in the intercept's lens */
	answers = xcalloc((size_t)ps.n, sizeof *answers);
	ranks = xcalloc((size_t)ps.n, sizeof *ranks);
	for (int i = 0; i < ps.n; i++) {
		int k;

		for (k = 0; k < n_ans && answers[k] != ps.p[i].answer; k++)
			;
		if (k == n_ans) {
			answers[n_ans] = ps.p[i].answer;
			ranks[n_ans++] = lens_rank_of(comp_logits + (size_t)J * V, V,
			    ps.p[i].answer);
		}
	}
	/* each prompt's answer in what the regressors leave unexplained:
	 * m_n - sum_j beta_j x_nj, the intercept plus the prompt's residual */
	unex = xmalloc((size_t)ps.n * D * sizeof *unex);
	rank_unex = xmalloc((size_t)ps.n * sizeof *rank_unex);
	for (int n = 0; n < ps.n; n++)
		for (int i = 0; i < D; i++) {
			double v = dd.y[(size_t)n * D + i];

			for (int j = 0; j < J; j++)
				v -= d.fit.beta[j] * dd.x[((size_t)n * J + j) * D + i];
			unex[(size_t)n * D + i] = (float)v;
		}
	decomp_lens_ranks(m, a.layer, unex, ps.n, dd.answer, rank_unex);
	decomp_rank_summary(rank_unex, ps.n, &unex_median, &unex_mean);

	if (a.prompt != NULL) {
		int off, len, pair;

		if (cli_find_subject(t, a.prompt, a.subject, &off, &len, &pair) != 0)
			goto out;
		if (prompt_make(&one, m, a.prompt, off, len, pair >= 0 ?
		    t->pairs[pair].answer : NULL, true, &cause) != 0)
			goto fail_cause;
		r = run_new(m, one.n, one.n);
		c = cache_new(m, one.n, 0);
		{
			fl_pass p = { 0 };

			p.cache = c;
			p.no_logits = true;
			if (run_forward(r, one.ids, &one.n, 1, &p, &cause) < 0)
				goto fail_cause;
		}
		x1 = xmalloc((size_t)J * D * sizeof *x1);
		mlp1 = xmalloc((size_t)D * sizeof *mlp1);
		mhat1 = xmalloc((size_t)D * sizeof *mhat1);
		decomp_prompt(&d, m, c, one.n - 1, x1, mlp1, mhat1, &rec, NULL);
	}

	if (a.json) {
		cJSON *root = cJSON_CreateObject(), *o2, *arr;

		cJSON_AddItemToObject(root, "model", report_string(a.dir));
		o2 = cJSON_AddObjectToObject(root, "task");
		cJSON_AddStringToObject(o2, "name", t->name);
		cJSON_AddItemToObject(o2, "file", report_string(a.task));
		cJSON_AddStringToObject(o2, "templates", task_set_name(po.set));
		cJSON_AddNumberToObject(root, "layer", a.layer);
		cJSON_AddNumberToObject(root, "prompts", ps.n);
		cJSON_AddNumberToObject(root, "ridge", d.fit.ridge);
		cJSON_AddItemToObject(root, "r2", report_number(d.fit.r2));
		cJSON_AddItemToObject(root, "r2_heldout", report_number(d.heldout.r2));
		cJSON_AddStringToObject(root, "heldout", "leave-one-subject-out");
		cJSON_AddNumberToObject(root, "heldout_folds", d.heldout.groups);
		cJSON_AddItemToObject(root, "mean_cos", report_number(d.fit.mean_cos));
		cJSON_AddItemToObject(root, "mean_cos_heldout",
		    report_number(d.heldout.mean_cos));
		cJSON_AddItemToObject(root, "baseline_cos", report_number(d.fit.baseline_cos));
		cJSON_AddItemToObject(root, "baseline_r2_heldout",
		    report_number(d.heldout.baseline_r2));
		cJSON_AddItemToObject(root, "answer_rank_unexplained",
		    report_number(unex_median));
		cJSON_AddItemToObject(root, "answer_rank_unexplained_mean",
		    report_number(unex_mean));
		arr = cJSON_AddArrayToObject(root, "regressors");
		for (int j = 0; j < J; j++) {
			cJSON *e = cJSON_CreateObject();
			double nrm = 0;

			for (int i = 0; i < D; i++)
				nrm += (double)d.fit.mean_x[(size_t)j * D + i] *
				    d.fit.mean_x[(size_t)j * D + i];
			regressor_name(name, sizeof name, j, H);
			cJSON_AddStringToObject(e, "name", name);
			if (j < H)
				cJSON_AddNumberToObject(e, "head", j);
			cJSON_AddNumberToObject(e, "beta", d.fit.beta[j]);
			cJSON_AddNumberToObject(e, "net", 1 + d.fit.beta[j]);
			cJSON_AddStringToObject(e, "reading", beta_reading(d.fit.beta[j]));
			cJSON_AddNumberToObject(e, "mean_norm", sqrt(nrm));
			cJSON_AddItemToObject(e, "top", report_topk(m->tok, comp_logits +
			    (size_t)j * V, m->cfg.n_vocab, a.top, false));
			cJSON_AddItemToArray(arr, e);
		}
		o2 = cJSON_AddObjectToObject(root, "intercept");
		{
			double nrm = 0;

			for (int i = 0; i < D; i++)
				nrm += (double)d.fit.intercept[i] * d.fit.intercept[i];
			cJSON_AddNumberToObject(o2, "norm", sqrt(nrm));
		}
		cJSON_AddItemToObject(o2, "top", report_topk(m->tok, comp_logits +
		    (size_t)J * V, m->cfg.n_vocab, a.top, false));
		arr = cJSON_AddArrayToObject(o2, "answer_ranks");
		for (int k = 0; k < n_ans; k++) {
			cJSON *e = report_token(m->tok, answers[k], NULL, m->cfg.n_vocab);

			cJSON_AddNumberToObject(e, "rank", ranks[k]);
			cJSON_AddItemToArray(arr, e);
		}
		if (a.prompt != NULL) {
			float *two = xmalloc((size_t)2 * V * sizeof *two), *pair2;

			pair2 = xmalloc((size_t)2 * D * sizeof *pair2);
			memcpy(pair2, mlp1, (size_t)D * sizeof *pair2);
			memcpy(pair2 + D, mhat1, (size_t)D * sizeof *pair2);
			attrib_vocab(m, NULL, 0, ATTRIB_SITE_MLP(a.layer), pair2, 2, two);
			o2 = cJSON_AddObjectToObject(root, "prompt");
			cJSON_AddStringToObject(o2, "text", a.prompt);
			cJSON_AddItemToObject(o2, "cos", report_number(rec.cos));
			cJSON_AddItemToObject(o2, "rel_err", report_number(rec.rel_err));
			cJSON_AddItemToObject(o2, "r2", report_number(rec.r2));
			cJSON_AddItemToObject(o2, "mlp_top", report_topk(m->tok, two, m->cfg.n_vocab, a.top,
			    false));
			cJSON_AddItemToObject(o2, "reconstruction_top", report_topk(m->tok,
			    two + V, m->cfg.n_vocab, a.top, false));
			free(two);
			free(pair2);
		}
		rc = cli_json_print(root);
		goto out;
	}
	printf("model      %s (%s, %d layers x %d heads)\n", a.dir, m->cfg.model_type, L, H);
	printf("task       %s: %d prompts (%s templates), last position\n", t->name,
	    ps.n, task_set_name(po.set));
	snprintf(name, sizeof name, "layer %d", a.layer);
	printf("%-10s mlp_out ~ sum_j beta_j x_j + intercept; R^2 %.4f, mean cos "
	    "%.4f (ridge %.0e)\n", name, d.fit.r2, d.fit.mean_cos, d.fit.ridge);
	printf("%-10s held out (leave-one-subject-out, %d subjects): R^2 %.4f, mean "
	    "cos %.4f\n", "", d.heldout.groups, d.heldout.r2, d.heldout.mean_cos);
	printf("%-10s mean-only baseline: mean cos %.4f, held-out R^2 %.4f\n", "",
	    d.fit.baseline_cos, d.heldout.baseline_r2);
	if (!m->cfg.ln_before)
		printf("%-10s post-LN: the heads reach this MLP through the block's ln1, "
		    "so 1+beta is not\n%-10s their net contribution (see decompose.h)\n",
		    "", "");
	putchar('\n');
	printf("  %-10s %8s %8s  %-10s %s\n", "regressor", "beta", "1+beta", "reading",
	    "top tokens of (1+beta) * mean x_j through the lens");
	for (int j = 0; j < J; j++) {
		regressor_name(name, sizeof name, j, H);
		printf("  %-10s %8.3f %8.3f  %-10s ", name, d.fit.beta[j],
		    1 + d.fit.beta[j], beta_reading(d.fit.beta[j]));
		cli_print_topk(m, comp_logits + (size_t)j * V, a.top);
		putchar('\n');
	}
	printf("  %-10s %29s ", "intercept", "");
	cli_print_topk(m, comp_logits + (size_t)J * V, a.top);
	printf("\n\nthe task's answers in the intercept's lens:");
	for (int k = 0; k < n_ans; k++) {
		char *s = cli_token_repr(m->tok, answers[k]);

		printf(" %s %d", s, ranks[k]);
		free(s);
		if (k + 1 < n_ans)
			putchar(',');
	}
	printf("\nthe answer's rank in the unexplained part (intercept + residual, "
	    "per prompt): median %.1f, mean %.1f of %d\n", unex_median, unex_mean, V);
	if (a.prompt != NULL)
		printf("\nprompt     \"%s\": reconstruction cos %.4f, |m - mhat| / |m| "
		    "%.4f, R^2 %.4f\n", a.prompt, rec.cos, rec.rel_err, rec.r2);
	rc = 0;
	goto out;
fail_cause:
	cli_fail(1, "%s", cause);
	free(cause);
out:
	free(vecs);
	free(unex);
	free(rank_unex);
	decomp_data_clear(&dd);
	free(comp_logits);
	free(answers);
	free(ranks);
	free(x1);
	free(mlp1);
	free(mhat1);
	cache_free(c);
	run_free(r);
	prompt_clear(&one);
	decomp_clear(&d);
	batch_free(b);
	prompt_set_clear(&ps);
	task_free(t);
	model_free(m);
	return rc;
}
