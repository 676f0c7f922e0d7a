/* cmd_decompose.c - factlens decompose: one layer's MLP output at the last
 * position regressed on the layer's head outputs over a task's prompts
 * (decompose.h): a coefficient per head (erased or amplified), the
 * intercept and its top tokens, R^2 in-sample and held out beside the
 * mean-only baseline; --form picks the reading (pooled, per-prompt,
 * subject-dir, logit); with --prompt, how well the pooled fit reconstructs
 * that prompt's MLP output. */
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
#include "shard.h"
#include "engine/pool.h"
#include "engine/readout.h"

typedef struct {
	const char	*dir;
	const char	*task;
	const char	*prompt;
	const char	*subject;
	int		 layer;
	int		 set;
	int		 shots;
	int		 top;
	int		 batch;
	int		 threads;
	bool		 no_resid;
	bool		 single_token;	/* --single-token */
	bool		 counterfactual;	/* --counterfactual */
	double		 ridge;
	bool		 json;
	fl_decomp_form	 form;
	cli_shard	 shard;		/* --shard I/N, --out FILE */
} decomp_args;

const cli_opt cmd_decompose_opts[] = {
	CLI_SHARED_MODEL,
	CLI_SHARED_TASK(CLI_OPT_REQUIRED),
	{ "layer", 'l', "L", 0, CLI_GROUP_OWN,
	  "the layer whose MLP is decomposed (default: the last)" },
	{ "form", 'f', "pooled|per-prompt|subject-dir|logit", 0, CLI_GROUP_OWN,
	  "the regression: pooled (the default: one coefficient per regressor, "
	  "one vector intercept), per-prompt (each prompt on its own heads "
	  "across the coordinates), subject-dir (onto the subject's unembedding "
	  "direction) or logit (in the space of the task's answer logits); see "
	  "Decomposition forms" },
	CLI_SHARED_TEMPLATES,
	CLI_SHARED_SHOTS(0),
	CLI_SHARED_SINGLE_TOKEN(0),
	CLI_SHARED_COUNTERFACTUAL,
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
	CLI_SHARED_SHARD,
	CLI_SHARED_OUT,
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_SHARED_STRICT,
	CLI_OPT_END
};

static int
decomp_parse(decomp_args *a, int argc, char **argv)
{
	cli_shared sh = { .dir = &a->dir, .task = &a->task, .set = &a->set,
	    .shots = &a->shots, .batch = &a->batch, .threads = &a->threads, .no_resid = &a->no_resid,
	    .ridge = &a->ridge, .json = &a->json, .shard = &a->shard,
	    .single_token = &a->single_token, .counterfactual = &a->counterfactual };
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
		case 'f':
			if ((c = decomp_form_parse(optarg)) < 0)
				return cli_fail(2, "--form takes pooled, per-prompt, "
				    "subject-dir or logit, not '%s'", optarg);
			a->form = (fl_decomp_form)c;
			break;
		case 'p': a->prompt = optarg; break;
		case 's': a->subject = optarg; break;
		case CLI_GETOPT_BAD:
			return 2;
		default:
			return cli_fail(2, "%s", cli_usage("decompose"));
		}
	}
	if (a->prompt != NULL && a->form != DECOMP_FORM_POOLED)
		return cli_fail(2, "--prompt reconstructs with the pooled form, not "
		    "--form %s", decomp_form_name(a->form));
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


/* What each form fits, in a line. */
static const char *
form_equation(fl_decomp_form f)
{
	switch (f) {
	case DECOMP_FORM_PER_PROMPT:
		return "mlp_out_n ~ sum_j beta_nj x_nj per prompt, no intercept";
	case DECOMP_FORM_SUBJECT_DIR:
		return "mlp_out ~ alpha u(subject) + intercept, one alpha";
	case DECOMP_FORM_LOGIT:
		return "answer logits of mlp_out ~ sum_j beta_j (x_j's) + intercept";
	default:
		return "mlp_out ~ sum_j beta_j x_j + intercept";
	}
}

/* Regressor j's mean and standard deviation of the per-prompt betas. */
static void
beta_prompt_stats(const fl_decomp_form_fit *f, int j, double *mean, double *sd)
{
	double s = 0, ss = 0;

	for (int n = 0; n < f->n; n++)
		s += f->beta_prompt[(size_t)n * f->J + j];
	*mean = s / f->n;
	for (int n = 0; n < f->n; n++) {
		double e = f->beta_prompt[(size_t)n * f->J + j] - *mean;

		ss += e * e;
	}
	*sd = f->n > 1 ? sqrt(ss / (f->n - 1)) : 0;
}

/* The figures every form reports (decompose.h, the forms). */
static void
form_json(cJSON *root, const fl_decomp_form_fit *f, double rk_med, double rk_mean,
    double rk_mlp)
{
	cJSON_AddStringToObject(root, "form", decomp_form_name(f->form));
	cJSON_AddItemToObject(root, "r2", report_number(f->r2));
	cJSON_AddItemToObject(root, "r2_heldout", report_number(f->heldout.r2));
	cJSON_AddStringToObject(root, "heldout", f->heldout_how);
	cJSON_AddNumberToObject(root, "heldout_folds", f->heldout.folds);
	cJSON_AddItemToObject(root, "mean_cos", report_number(f->mean_cos));
	cJSON_AddItemToObject(root, "mean_cos_heldout", report_number(f->heldout.mean_cos));
	cJSON_AddItemToObject(root, "baseline_cos", report_number(f->baseline_cos));
	cJSON_AddItemToObject(root, "baseline_r2_heldout",
	    report_number(f->heldout.baseline_r2));
	cJSON_AddItemToObject(root, "answer_rank_unexplained", report_number(rk_med));
	cJSON_AddItemToObject(root, "answer_rank_unexplained_mean", report_number(rk_mean));
	cJSON_AddNumberToObject(root, "answer_rank_among", f->rank_of);
	cJSON_AddItemToObject(root, "answer_rank_mlp", report_number(rk_mlp));
}

/* The regressors of the shared fits and per-prompt, as JSON. */
static cJSON *
regressors_json(const fl_model *m, const fl_decomp_form_fit *f,
    const float *comp_logits, int top)
{
	cJSON *arr = cJSON_CreateArray();
	int H = m->cfg.n_head, V = m->cfg.n_vocab, D = m->cfg.d_model;
	char name[32];

	for (int j = 0; j < f->J; j++) {
		cJSON *e = cJSON_CreateObject();

		regressor_name(name, sizeof name, j, H);
		cJSON_AddStringToObject(e, "name", name);
		if (j < H)
			cJSON_AddNumberToObject(e, "head", j);
		if (f->form == DECOMP_FORM_PER_PROMPT) {
			double mean, sd;

			beta_prompt_stats(f, j, &mean, &sd);
			cJSON_AddNumberToObject(e, "beta_mean", mean);
			cJSON_AddNumberToObject(e, "beta_sd", sd);
			cJSON_AddStringToObject(e, "reading", beta_reading(mean));
			cJSON_AddItemToArray(arr, e);
			continue;
		}
		cJSON_AddNumberToObject(e, "beta", f->fit.beta[j]);
		cJSON_AddNumberToObject(e, "net", 1 + f->fit.beta[j]);
		cJSON_AddStringToObject(e, "reading", beta_reading(f->fit.beta[j]));
		if (comp_logits != NULL) {
			double nrm = 0;

			for (int i = 0; i < D; i++)
				nrm += (double)f->fit.mean_x[(size_t)j * D + i] *
				    f->fit.mean_x[(size_t)j * D + i];
			cJSON_AddNumberToObject(e, "mean_norm", sqrt(nrm));
			cJSON_AddItemToObject(e, "top", report_topk(m->tok, comp_logits +
			    (size_t)j * V, V, top, false));
		}
		cJSON_AddItemToArray(arr, e);
	}
	return arr;
}

/* The intercept: in the residual space, its norm, top tokens and the
 * answers' ranks; in the logit form, its value on each answer. */
static cJSON *
intercept_json(const fl_model *m, const fl_decomp_form_fit *f,
    const float *icpt_logits, int top)
{
	cJSON *o = cJSON_CreateObject(), *arr;
	int V = m->cfg.n_vocab;
	double nrm = 0;

	for (int i = 0; i < f->D; i++)
		nrm += (double)f->fit.intercept[i] * f->fit.intercept[i];
	cJSON_AddNumberToObject(o, "norm", sqrt(nrm));
	if (f->form == DECOMP_FORM_LOGIT) {
		arr = cJSON_AddArrayToObject(o, "answers");
		for (int k = 0; k < f->n_answers; k++) {
			cJSON *e = report_token(m->tok, f->answers[k], NULL, V);

			cJSON_AddNumberToObject(e, "value", f->fit.intercept[k]);
			cJSON_AddNumberToObject(e, "rank", decomp_rank_among(
			    f->fit.intercept, f->n_answers, k));
			cJSON_AddItemToArray(arr, e);
		}
		return o;
	}
	cJSON_AddItemToObject(o, "top", report_topk(m->tok, icpt_logits, V, top, false));
	arr = cJSON_AddArrayToObject(o, "answer_ranks");
	for (int k = 0; k < f->n_answers; k++) {
		cJSON *e = report_token(m->tok, f->answers[k], NULL, V);

		cJSON_AddNumberToObject(e, "rank", lens_rank_of(icpt_logits, V,
		    f->answers[k]));
		cJSON_AddItemToArray(arr, e);
	}
	return o;
}

/* The text report of a form's fit. */
static void
form_print(const fl_model *m, const fl_decomp_form_fit *f, const float *comp_logits,
    int top, double rk_med, double rk_mean, double rk_mlp)
{
	int H = m->cfg.n_head, V = m->cfg.n_vocab, J = f->J;
	char name[32];

	printf("%-10s R^2 %.4f in-sample, %.4f held out (%s, %d folds)\n", "", f->r2,
	    f->heldout.r2, f->heldout_how, f->heldout.folds);
	printf("%-10s mean cos %.4f (held out %.4f); mean-only baseline: mean cos "
	    "%.4f, held-out R^2 %.4f\n", "", f->mean_cos, f->heldout.mean_cos,
	    f->baseline_cos, f->heldout.baseline_r2);
	printf("%-10s the answer's rank in the unexplained part, over prompts: "
	    "median %.1f, mean %.1f of %d\n", "", rk_med, rk_mean, f->rank_of);
	if (f->form != DECOMP_FORM_LOGIT)
		printf("%-10s (in the MLP output itself: median %.1f)\n", "", rk_mlp);
	if (!m->cfg.ln_before && f->form != DECOMP_FORM_SUBJECT_DIR)
		printf("%-10s post-LN: the heads reach this MLP through the block's ln1, "
		    "so 1+beta is not\n%-10s their net contribution (see decompose.h)\n",
		    "", "");
	putchar('\n');
	switch (f->form) {
	case DECOMP_FORM_PER_PROMPT:
		printf("  %-10s %9s %8s  %s\n", "regressor", "mean beta", "sd", "reading");
		for (int j = 0; j < J; j++) {
			double mean, sd;

			beta_prompt_stats(f, j, &mean, &sd);
			regressor_name(name, sizeof name, j, H);
			printf("  %-10s %9.3f %8.3f  %s\n", name, mean, sd,
			    beta_reading(mean));
		}
		return;
	case DECOMP_FORM_LOGIT:
		printf("  %-10s %8s %8s  %s\n", "regressor", "beta", "1+beta", "reading");
		for (int j = 0; j < J; j++) {
			regressor_name(name, sizeof name, j, H);
			printf("  %-10s %8.3f %8.3f  %s\n", name, f->fit.beta[j],
			    1 + f->fit.beta[j], beta_reading(f->fit.beta[j]));
		}
		printf("\nthe intercept on the task's answers:");
		for (int k = 0; k < f->n_answers; k++) {
			char *s = cli_token_repr(m->tok, f->answers[k]);

			printf(" %s %+.2f%s", s, f->fit.intercept[k],
			    k + 1 < f->n_answers ? "," : "\n");
			free(s);
		}
		return;
	case DECOMP_FORM_SUBJECT_DIR:
		printf("  alpha %.4f along the subject's unit unembedding direction\n",
		    f->fit.beta[0]);
		break;
	default:
		printf("  %-10s %8s %8s  %-10s %s\n", "regressor", "beta", "1+beta",
		    "reading", "top tokens of (1+beta) * mean x_j through the lens");
		for (int j = 0; j < J; j++) {
			regressor_name(name, sizeof name, j, H);
			printf("  %-10s %8.3f %8.3f  %-10s ", name, f->fit.beta[j],
			    1 + f->fit.beta[j], beta_reading(f->fit.beta[j]));
			cli_print_topk(m, comp_logits + (size_t)j * V, top);
			putchar('\n');
		}
	}
	printf("  %-10s %29s ", "intercept", "");
	cli_print_topk(m, comp_logits + (size_t)(f->form == DECOMP_FORM_POOLED ? J : 0) *
	    V, top);
	printf("\n\nthe task's answers in the intercept's lens:");
	for (int k = 0; k < f->n_answers; k++) {
		char *s = cli_token_repr(m->tok, f->answers[k]);
		const float *lg = comp_logits + (size_t)(f->form == DECOMP_FORM_POOLED ?
		    J : 0) * V;

		printf(" %s %d%s", s, lens_rank_of(lg, V, f->answers[k]),
		    k + 1 < f->n_answers ? "," : "");
		free(s);
	}
	putchar('\n');
}

/* The components through the lens (LNs frozen at unit scale, which changes
 * no rank): pooled, each regressor's mean times (1 + beta), written where
 * the layer's heads write, then the intercept, where its MLP writes; for
 * subject-dir the intercept alone. NULL for the other forms. (n, V) heap. */
static float *
component_logits(const fl_model *m, const fl_decomp_form_fit *f, int layer)
{
	int D = m->cfg.d_model, J = f->J, nv;
	float *vecs, *lg;

	if (f->form != DECOMP_FORM_POOLED && f->form != DECOMP_FORM_SUBJECT_DIR)
		return NULL;
	nv = f->form == DECOMP_FORM_POOLED ? J + 1 : 1;
	vecs = xmalloc((size_t)nv * D * sizeof *vecs);
	if (f->form == DECOMP_FORM_POOLED)
		for (int j = 0; j < J; j++)
			for (int i = 0; i < D; i++)
				vecs[(size_t)j * D + i] = (float)((1 + f->fit.beta[j]) *
				    f->fit.mean_x[(size_t)j * D + i]);
	memcpy(vecs + (size_t)(nv - 1) * D, f->fit.intercept, (size_t)D * sizeof *vecs);
	lg = xmalloc((size_t)nv * m->cfg.n_vocab * sizeof *lg);
	if (nv > 1)
		attrib_carry(m, NULL, 0, ATTRIB_SITE_ATTN(layer), vecs, nv - 1);
	attrib_carry(m, NULL, 0, ATTRIB_SITE_MLP(layer), vecs + (size_t)(nv - 1) * D, 1);
	model_unembed(m, vecs, nv, lg, NULL);
	free(vecs);
	return lg;
}

/* decompose; with mg, its merge (shard.h): each prompt's regressors and
 * MLP output are all the fits need of it. */
static int
decomp_main(int argc, char **argv, cli_merge *mg)
{
	decomp_args a;
	fl_model *m = NULL;
	fl_task *t = NULL;
	fl_prompt_set ps = { 0 };
	fl_prompt_opts po;
	fl_prompt one = { 0 };
	fl_decomp_data dd = { 0 };
	fl_decomp_form_fit ff = { 0 };
	fl_batch *b = NULL;
	fl_run *r = NULL;
	fl_cache *c = NULL;
	fl_recon rec = { 0 };
	cli_progress_state prog;
	char *cause = NULL, name[32];
	int rc, L, H, D, V;
	float *comp_logits = NULL, *x1 = NULL, *mlp1 = NULL, *mhat1 = NULL;
	double rk_med, rk_mean, rk_mlp, unused;
	int *mlp_rank = NULL;

	if ((rc = decomp_parse(&a, argc, argv)) != 0)
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
	D = m->cfg.d_model;
	V = m->cfg.n_vocab;
	rc = 1;
	if (a.layer < 0)
		a.layer = L - 1;
	if (a.layer >= L) {
		rc = cli_fail(2, "--layer takes a layer from 0 to %d", L - 1);
		goto out;
	}
	po = (fl_prompt_opts){ (fl_template_set)a.set, a.shots, 1, false,
	    a.single_token, a.counterfactual };
	if (task_prompts(&ps, m, t, &po, &cause) != 0)
		goto fail_cause;
	cli_note_dropped("decompose", &po, &ps);
	if (mg != NULL) {
		size_t JD;

		if (mg->prompts != ps.n) {
			cli_fail(1, "%s: %d prompts in all, but %s makes %d of %s",
			    mg->parts[0].path, mg->prompts, a.task, ps.n, a.dir);
			goto out;
		}
		decomp_data_init(&dd, m, ps.p, ps.n, a.layer, !a.no_resid);
		JD = (size_t)dd.J * D;
		for (int i = 0; i < ps.n; i++) {
			cJSON *row = cli_merge_row(mg, i);
			int bad;

			if (row == NULL)
				goto out;
			bad = cli_json_get_f32(mg, i, row, "x", dd.x + i * JD, JD) ||
			    cli_json_get_f32(mg, i, row, "mlp_out", dd.y + (size_t)i * D,
			    (size_t)D);
			cJSON_Delete(row);
			if (bad)
				goto out;
		}
		if (cli_merge_end(mg) != 0)
			goto out;
	} else {
		int *idx, k;
		fl_prompt *share;

		idx = cli_shard_select(&a.shard, ps.n, &k);
		share = xmalloc((size_t)(k > 0 ? k : 1) * sizeof *share);
		for (int j = 0; j < k; j++)
			share[j] = ps.p[idx[j]];
		b = batch_new(m, a.batch, ps.max_len);
		cli_progress_init(&prog, "decompose");
		b->progress = cli_progress_of(&prog);
		b->total = k;
		cli_interrupt_catch();
		rc = cli_work_end(&prog, decomp_collect(&dd, b, share, k, a.layer,
		    !a.no_resid, &cause), "the decomposition fit");
		free(share);
		if (rc == 0 && a.shard.count > 0) {
			cli_part_writer w;
			size_t JD = (size_t)dd.J * D;

			rc = 1;
			if (cli_part_begin(&w, &a.shard, m, "decompose", argc, argv,
			    ps.n) == 0) {
				for (int j = 0; j < k; j++) {
					cJSON *row = cJSON_CreateObject();

					cJSON_AddNumberToObject(row, "prompt", idx[j]);
					cli_json_add_f32(row, "x", dd.x + j * JD, JD);
					cli_json_add_f32(row, "mlp_out", dd.y + (size_t)j * D,
					    (size_t)D);
					cli_part_row(&w, row);
				}
				rc = cli_part_end(&w, NULL);
			}
			free(idx);
			goto out;
		}
		free(idx);
		if (rc == FL_EXIT_STOPPED)
			goto out;
		if (rc != 0) {
			rc = 1;
			goto fail_cause;
		}
	}
	rc = 1;
	if (decomp_form_fit(&ff, m, &dd, a.form, a.ridge, &cause) != 0)
		goto fail_cause;
	decomp_rank_summary(ff.rank, ff.n, &rk_med, &rk_mean);
	/* what the unexplained part's rank compares with: m_n's own */
	mlp_rank = xmalloc((size_t)(ps.n > 0 ? ps.n : 1) * sizeof *mlp_rank);
	decomp_lens_ranks(m, a.layer, dd.y, ps.n, dd.answer, mlp_rank);
	decomp_rank_summary(mlp_rank, ps.n, &rk_mlp, &unused);
	comp_logits = component_logits(m, &ff, a.layer);

	if (a.prompt != NULL) {
		fl_decomp d = { a.layer, !a.no_resid, H, ff.fit, { 0, 0, 0, 0 } };
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
		x1 = xmalloc((size_t)ff.J * D * sizeof *x1);
		mlp1 = xmalloc((size_t)D * sizeof *mlp1);
		mhat1 = xmalloc((size_t)D * sizeof *mhat1);
		decomp_prompt(&d, m, c, one.n - 1, x1, mlp1, mhat1, &rec, NULL);
	}

	if (a.json) {
		cJSON *root = cJSON_CreateObject(), *o2;

		cJSON_AddItemToObject(root, "model", report_string(a.dir));
		o2 = cJSON_AddObjectToObject(root, "task");
		cJSON_AddStringToObject(o2, "name", t->name);
		cJSON_AddItemToObject(o2, "file", report_string(a.task));
		cJSON_AddStringToObject(o2, "templates", task_set_name(po.set));
		cJSON_AddNumberToObject(o2, "shots", po.shots);
		cli_json_prompt_filters(o2, &po, ps.dropped);
		cJSON_AddNumberToObject(root, "layer", a.layer);
		cJSON_AddNumberToObject(root, "prompts", ps.n);
		cJSON_AddNumberToObject(root, "ridge", a.ridge < 0 ? DECOMP_RIDGE : a.ridge);
		form_json(root, &ff, rk_med, rk_mean, rk_mlp);
		cJSON_AddItemToObject(root, "regressors", regressors_json(m, &ff,
		    comp_logits, a.top));
		if (ff.form == DECOMP_FORM_SUBJECT_DIR)
			cJSON_AddNumberToObject(root, "alpha", ff.fit.beta[0]);
		if (ff.form != DECOMP_FORM_PER_PROMPT)
			cJSON_AddItemToObject(root, "intercept", intercept_json(m, &ff,
			    comp_logits == NULL ? NULL : comp_logits +
			    (size_t)(ff.form == DECOMP_FORM_POOLED ? ff.J : 0) * V, a.top));
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
			cJSON_AddItemToObject(o2, "mlp_top", report_topk(m->tok, two, V,
			    a.top, false));
			cJSON_AddItemToObject(o2, "reconstruction_top", report_topk(m->tok,
			    two + V, V, a.top, false));
			free(two);
			free(pair2);
		}
		rc = cli_json_print(root);
		goto out;
	}
	printf("model      %s (%s, %d layers x %d heads)\n", a.dir, m->cfg.model_type, L, H);
	printf("task       %s: %d prompts (%s templates, %d-shot), last position\n",
	    t->name, ps.n, task_set_name(po.set), po.shots);
	snprintf(name, sizeof name, "layer %d", a.layer);
	printf("%-10s form %s: %s (ridge %.0e)\n", name, decomp_form_name(ff.form),
	    form_equation(ff.form), a.ridge < 0 ? DECOMP_RIDGE : a.ridge);
	form_print(m, &ff, comp_logits, a.top, rk_med, rk_mean, rk_mlp);
	if (a.prompt != NULL)
		printf("\nprompt     \"%s\": reconstruction cos %.4f, |m - mhat| / |m| "
		    "%.4f, R^2 %.4f\n", a.prompt, rec.cos, rec.rel_err, rec.r2);
	rc = 0;
	goto out;
fail_cause:
	cli_fail(1, "%s", cause);
	free(cause);
out:
	free(comp_logits);
	free(mlp_rank);
	free(x1);
	free(mlp1);
	free(mhat1);
	cache_free(c);
	run_free(r);
	prompt_clear(&one);
	decomp_form_clear(&ff);
	decomp_data_clear(&dd);
	batch_free(b);
	prompt_set_clear(&ps);
	task_free(t);
	model_free(m);
	return rc;
}

int
cmd_decompose(int argc, char **argv)
{
	return decomp_main(argc, argv, NULL);
}

int
cmd_decompose_merge(int argc, char **argv, cli_merge *mg)
{
	return decomp_main(argc, argv, mg);
}
