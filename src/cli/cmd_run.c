/* cmd_run.c - factlens run: one prompt through the model with the paper's
 * per-prompt analyses - top predictions, the answer's probability and rank,
 * the logit lens of every residual stream, direct contributions, mover-head
 * scores, attention patterns, the MLP decomposition fitted on a task, and
 * the two final-layer mitigations with the answer before and after. */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "analysis/decompose.h"
#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "analysis/movers.h"
#include "analysis/report.h"
#include "plot/plot.h"
#include "cli.h"
#include "engine/dump.h"
#include "engine/pool.h"
#include "base/util.h"

typedef struct {
	const char	*dir;
	const char	*prompt;
	const char	*answer;
	const char	*subject;
	const char	*task;
	const char	*dump;		/* --dump-logits FILE */
	const char	*dump_hooks;	/* --dump HOOKS FILE */
	const char	*dump_file;
	const char	*mask_heads;
	int		 top;
	int		 lens_top;
	int		 lens_pos;	/* --lens-position, < 0 from the end */
	int		 layer;
	int		 shots;
	int		 batch;
	int		 threads;
	bool		 single_token;	/* --single-token, of the --task fit */
	double		 threshold;
	bool		 json;
	bool		 csv;		/* --csv: the lens as CSV */
	bool		 lens;
	const char	*plot;		/* --plot FILE */
	bool		 final_mask;
	bool		 intercept;
	bool		 patterns;
} run_args;

const cli_opt cmd_run_opts[] = {
	CLI_SHARED_MODEL,
	{ "prompt", 'p', "TEXT", CLI_OPT_SHORT | CLI_OPT_REQUIRED, CLI_GROUP_OWN,
	  "the prompt to run" },
	{ "answer", 'a', "TEXT", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "the answer, scored on its first token (default, with --task: the task's "
	  "answer for the prompt's subject)" },
	{ "subject", 's', "TEXT", 0, CLI_GROUP_OWN,
	  "the subject, a whole word of the prompt (default: the subject of --task, "
	  "or of the default task, found last in the prompt)" },
	CLI_SHARED_TASK(0),
	{ "layer", 'L', "L", CLI_OPT_NESTED, CLI_GROUP_OWN,
	  "the layer whose MLP decomposition is fitted on the task (default: the "
	  "last)" },
	CLI_SHARED_SHOTS(CLI_OPT_NESTED),
	CLI_SHARED_SINGLE_TOKEN(CLI_OPT_NESTED),
	CLI_SHARED_BATCH(CLI_OPT_NESTED),
	{ "top", 'k', "K", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "how many top next tokens to print (default 10)" },
	{ "lens", 'l', NULL, CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "print the logit lens of every residual stream" },
	{ "lens-top", 'K', "K", 0, CLI_GROUP_OWN,
	  "the top tokens of each stream in the JSON lens (default 5)" },
	{ "lens-position", 'T', "T", 0, CLI_GROUP_OWN,
	  "the position the lens reads, in the text, JSON, CSV and --plot: 0 is "
	  "the first token (the BOS where the model prepends one), a negative T "
	  "counts from the end (default -1, the last)" },
	CLI_SHARED_JSON,
	{ "csv", 'C', NULL, 0, CLI_GROUP_OUTPUT,
	  "print the logit lens at the last position (or --lens-position) as CSV "
	  "instead: a row per "
	  "layer and stream (top token, the answer's and the subject's probability "
	  "and rank)" },
	CLI_SHARED_PLOT,
	{ "patterns", 'P', NULL, 0, CLI_GROUP_OWN,
	  "with --json, add every head's attention pattern" },
	{ "dump-logits", 'd', "FILE", CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "write the logits of every position to FILE as little-endian float32, "
	  "row-major [tokens x vocab]" },
	{ "dump", 'D', "HOOK[,HOOK...] FILE", 0, CLI_GROUP_OWN,
	  "write the activations at the hook points named (TransformerLens names, "
	  "e.g. blocks.3.hook_resid_post; a glob such as blocks.*.attn.hook_pattern; "
	  "or all) to FILE as float32 safetensors, shaped as TransformerLens without "
	  "the batch dimension, from the pass before any mitigation" },
	{ "final-mask", 'f', NULL, CLI_OPT_SHORT, CLI_GROUP_OWN,
	  "mitigation (a): the last position attends only to itself in the last "
	  "layer's heads (all, or those of --mask-heads)" },
	{ "mask-heads", 'H', "LIST", 0, CLI_GROUP_OWN,
	  "the heads of the last layer --final-mask masks, e.g. 0,3,5 (implies "
	  "--final-mask)" },
	{ "intercept", 'i', NULL, 0, CLI_GROUP_OWN,
	  "mitigation (b): subtract the last layer's intercept, fitted on "
	  "--task's prompts of the other subjects" },
	{ "mover-threshold", 'M', "X", 0, CLI_GROUP_OWN,
	  "the mover score from which a head is flagged (default 0.25)" },
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_SHARED_STRICT,
	CLI_OPT_END
};

static int
run_parse(run_args *a, int argc, char **argv)
{
	cli_shared sh = { .plot = &a->plot, .dir = &a->dir, .task = &a->task,
	    .shots = &a->shots, .batch = &a->batch, .threads = &a->threads,
	    .json = &a->json, .single_token = &a->single_token };
	int c;

	memset(a, 0, sizeof *a);
	a->top = 10;
	a->lens_top = 5;
	a->lens_pos = -1;
	a->layer = -1;
	a->batch = 32;
	a->threshold = MOVERS_THRESHOLD;
	optind = 1;
	while ((c = cli_getopt(argc, argv, cmd_run_opts, &sh)) != -1) {
		switch (c) {
		case 'p': a->prompt = optarg; break;
		case 'a': a->answer = optarg; break;
		case 's': a->subject = optarg; break;
		case 'L':
			if (cli_int("--layer", optarg, 0, 4096, &a->layer))
				return 2;
			break;
		case 'k':
			if (cli_int("--top", optarg, 1, 1000, &a->top))
				return 2;
			break;
		case 'K':
			if (cli_int("--lens-top", optarg, 1, 100, &a->lens_top))
				return 2;
			break;
		case 'l': a->lens = true; break;
		case 'T':
			if (cli_int("--lens-position", optarg, -(1 << 20), 1 << 20,
			    &a->lens_pos))
				return 2;
			break;
		case 'P': a->patterns = true; break;
		case 'C': a->csv = true; break;
		case 'd': a->dump = optarg; break;
		case 'D':
			/* two arguments: the hooks, then the file */
			if (optind >= argc || argv[optind][0] == '\0')
				return cli_fail(2, "run: --dump HOOKS FILE needs the file "
				    "after the hooks");
			a->dump_hooks = optarg;
			a->dump_file = argv[optind++];
			break;
		case 'f': a->final_mask = true; break;
		case 'H': a->mask_heads = optarg; a->final_mask = true; break;
		case 'i': a->intercept = true; break;
		case 'M':
			if (cli_parse_double("--mover-threshold", optarg, 0, 1, &a->threshold))
				return 2;
			break;
		case CLI_GETOPT_BAD:
			return 2;
		default:
			return cli_fail(2, "%s", cli_usage("run"));
		}
	}
	if (optind < argc)
		return cli_fail(2, "run: unexpected argument '%s' (the prompt goes "
		    "after --prompt)", argv[optind]);
	if (a->prompt == NULL)
		return cli_fail(2, "run: --prompt TEXT is required");
	if (a->intercept && a->task == NULL)
		return cli_fail(2, "run: --intercept needs --task FILE (the intercept is "
		    "fitted on the task's prompts)");
	/* Options that only mean something with another are errors without it,
	 * not silently ignored. */
	if (a->layer >= 0 && a->task == NULL)
		return cli_fail(2, "run: --layer L needs --task FILE (it is the layer of "
		    "the decomposition fitted on the task)");
	if (a->single_token && a->task == NULL)
		return cli_fail(2, "run: --single-token needs --task FILE (it filters "
		    "the prompts of the fit on the task)");
	if (cli_csv_or_json("run", a->csv, a->json) != 0)
		return 2;
	if (a->patterns && !a->json)
		return cli_fail(2, "run: --patterns needs --json (the patterns are "
		    "printed only as JSON)");
	if (a->answer != NULL && a->answer[strspn(a->answer, " \t\n")] == '\0')
		return cli_fail(2, "run: --answer is empty; give the answer's text, or "
		    "leave it out for the top prediction");
	if (a->dir == NULL)
		a->dir = fl_default_model();
	return 0;
}

static int
write_logits(const char *path, const float *x, size_t n)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL)
		return cli_fail(1, "%s: cannot create: %s", path, strerror(errno));
	/* The host is little-endian (x86-64, arm64): floats go out as they are. */
	if (fwrite(x, sizeof *x, n, f) != n || fclose(f) != 0)
		return cli_fail(1, "%s: write error", path);
	return 0;
}

/* Everything one run computes, for the two printers. */
typedef struct {
	run_args	*a;
	fl_model	*m;
	fl_task		*task;		/* --task, or NULL */
	fl_prompt	 p;
	int		 pair;		/* the subject's pair in the task, or -1 */
	fl_cache	*c;
	const float	*last;		/* (V) the final logits */
	/* the answer before the mitigations */
	double		 before_prob;
	int		 before_rank, before_top;
	bool		*heads;		/* --mask-heads */
	/* the task fits */
	fl_decomp	 dec;		/* at --layer */
	fl_decomp	 icpt;		/* at the last layer (may alias dec) */
	bool		 have_dec, have_icpt;
	int		 fit_prompts;
	fl_recon	 rec;
	/* analyses */
	float		*lens;		/* (3L, V): pre, mid, post of each layer */
	int		 lens_pos;	/* the position it reads */
	fl_attrib	 at_logit, at_diff;
	bool		 have_attrib;
	fl_mover	*movers;	/* (L * H) or NULL */
} run_state;

/* Fits the decomposition (and the intercept) on the task's prompts, leaving
 * out the prompts of this prompt's own subject. 0; FL_EXIT_STOPPED
 * after saying so when Ctrl-C stopped the fit; or -1 with *cause. */
static int
run_fit(run_state *s, char **cause)
{
	run_args *a = s->a;
	const fl_model *m = s->m;
	int L = m->cfg.n_layer, rc = -1, k = 0;
	fl_prompt_opts po = { TASK_TEMPLATES_MAIN, a->shots, 1, false,
	    a->single_token, false };
	fl_prompt_set ps;
	fl_prompt *use;
	fl_batch *b;
	cli_progress_state prog;

	if (task_prompts(&ps, m, s->task, &po, cause) != 0)
		return -1;
	cli_note_dropped("run", &po, &ps);
	use = task_prompts_except(&ps, s->pair, &k);
	s->fit_prompts = k;
	b = batch_new(m, a->batch, ps.max_len);
	cli_progress_init(&prog, "fitting");
	b->progress = cli_progress_of(&prog);
	b->total = (long)k * (a->intercept && a->layer != L - 1 ? 2 : 1);
	cli_interrupt_catch();
	if ((rc = decomp_fit(&s->dec, b, use, k, a->layer, true, -1, cause)) != 0)
		goto out;
	s->have_dec = true;
	if (a->intercept) {
		if (a->layer != L - 1 &&
		    (rc = decomp_fit(&s->icpt, b, use, k, L - 1, true, -1, cause)) != 0)
			goto out;
		s->have_icpt = true;
	}
	rc = cli_interrupted() ? FL_STOPPED : 0;
out:
	if (rc == FL_STOPPED)
		rc = cli_cancelled(&prog, "the decomposition fit");
	cli_progress_end(&prog);
	batch_free(b);
	free(use);
	prompt_set_clear(&ps);
	return rc;
}

static const fl_decomp *
run_intercept(const run_state *s)
{
	if (!s->have_icpt)
		return NULL;
	return s->a->layer == s->m->cfg.n_layer - 1 ? &s->dec : &s->icpt;
}

static const char *stream_names[3] = { "resid_pre", "resid_mid", "resid_post" };

static cJSON *
json_attrib(const fl_attrib *x)
{
	cJSON *o = cJSON_CreateObject(), *arr;
	int L = x->n_layer, H = x->n_head;

	cJSON_AddNumberToObject(o, "embed", x->embed);
	cJSON_AddNumberToObject(o, "pos_embed", x->pos_embed);
	arr = cJSON_AddArrayToObject(o, "heads");
	for (int l = 0; l < L; l++) {
		cJSON *row = cJSON_CreateArray();

		for (int h = 0; h < H; h++)
			cJSON_AddItemToArray(row, cJSON_CreateNumber(x->head[l * H + h]));
		cJSON_AddItemToArray(arr, row);
	}
	arr = cJSON_AddArrayToObject(o, "attn_bias");
	for (int l = 0; l < L; l++)
		cJSON_AddItemToArray(arr, cJSON_CreateNumber(x->attn_bias[l]));
	arr = cJSON_AddArrayToObject(o, "mlp");
	for (int l = 0; l < L; l++)
		cJSON_AddItemToArray(arr, cJSON_CreateNumber(x->mlp[l]));
	cJSON_AddNumberToObject(o, "ln_bias", x->ln_bias);
	cJSON_AddNumberToObject(o, "rest", x->rest);
	cJSON_AddNumberToObject(o, "sum", x->sum);
	cJSON_AddNumberToObject(o, "value", x->logit);
	return o;
}

static cJSON *
json_prob_rank(const float *logits, int V, int id)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "prob", lens_prob_of(logits, V, id));
	cJSON_AddNumberToObject(o, "rank", lens_rank_of(logits, V, id));
	cJSON_AddNumberToObject(o, "logit", logits[id]);
	return o;
}

/* --csv: the lens at the last position, a row per layer and stream, with
 * the JSON lens' fields. */
static int
run_print_csv(const run_state *s)
{
	const fl_model *m = s->m;
	int V = m->cfg.n_vocab, L = m->cfg.n_layer;

	fputs("layer,stream,top,top_bytes,answer_prob,answer_rank,subject_prob,"
	    "subject_rank\n", stdout);
	for (int l = 0; l < L; l++)
		for (int k = 0; k < 3; k++) {
			const float *lg = s->lens + ((size_t)l * 3 + k) * V;
			cJSON *tok;
			int t1;

			lens_topk(lg, V, 1, &t1, NULL);
			tok = report_token(m->tok, t1, NULL, V);
			printf("%d,%s,", l, stream_names[k]);
			report_csv_text(stdout, cJSON_GetObjectItem(tok, "token")->valuestring,
			    false);
			report_csv_text(stdout, cJSON_GetObjectItem(tok, "bytes")->valuestring,
			    false);
			cJSON_Delete(tok);
			if (s->p.answer >= 0)
				printf("%.9g,%d,", lens_prob_of(lg, V, s->p.answer),
				    lens_rank_of(lg, V, s->p.answer));
			else
				fputs(",,", stdout);
			if (s->p.subject >= 0)
				printf("%.9g,%d\n", lens_prob_of(lg, V, s->p.subject),
				    lens_rank_of(lg, V, s->p.subject));
			else
				fputs(",\n", stdout);
		}
	return cli_csv_done("run");
}

/* --plot: the answer's probability and rank through the layers. */
static int
run_plot(run_state *s)
{
	const fl_model *m = s->m;
	int L = m->cfg.n_layer, V = m->cfg.n_vocab, rc;
	double *prob = xcalloc((size_t)3 * L, sizeof *prob);
	int *rank = xcalloc((size_t)3 * L, sizeof *rank);
	char *answer, *title, *cause = NULL;

	if (s->p.answer < 0) {
		free(prob);
		free(rank);
		return cli_fail(2, "run: --plot draws the answer through the layers: "
		    "give --answer, or a prompt whose answer the task knows");
	}
	for (int i = 0; i < 3 * L; i++) {
		const float *lg = s->lens + (size_t)i * V;

		prob[i] = lens_prob_of(lg, V, s->p.answer);
		rank[i] = lens_rank_of(lg, V, s->p.answer);
	}
	answer = cli_token_repr(m->tok, s->p.answer);
	title = s->lens_pos == s->p.n - 1 ? xstrdup(s->a->prompt) :
	    xasprintf("%s (the lens at position %d)", s->a->prompt, s->lens_pos);
	rc = plot_lens(s->a->plot, title, answer, L, prob, rank, &cause);
	free(title);
	if (rc != 0) {
		cli_fail(1, "%s", cause);
		free(cause);
	}
	free(answer);
	free(prob);
	free(rank);
	return rc != 0 ? 1 : 0;
}

static int
run_print_json(run_state *s)
{
	run_args *a = s->a;
	const fl_model *m = s->m;
	const fl_prompt *p = &s->p;
	int V = m->cfg.n_vocab, L = m->cfg.n_layer, H = m->cfg.n_head, T = p->n;
	cJSON *root = cJSON_CreateObject(), *arr, *o;

	cJSON_AddItemToObject(root, "model", report_string(a->dir));
	cJSON_AddItemToObject(root, "prompt", report_string(a->prompt));
	arr = cJSON_AddArrayToObject(root, "ids");
	for (int i = 0; i < T; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateNumber(p->ids[i]));
	arr = cJSON_AddArrayToObject(root, "tokens");
	for (int i = 0; i < T; i++)
		cJSON_AddItemToArray(arr, report_token(m->tok, p->ids[i], NULL, V));
	cJSON_AddBoolToObject(root, "final_mask", a->final_mask);
	cJSON_AddBoolToObject(root, "intercept", a->intercept);
	arr = cJSON_AddArrayToObject(root, "top");
	{
		int *ids = xcalloc((size_t)a->top, sizeof *ids);
		int k = lens_topk(s->last, V, a->top, ids, NULL);

		for (int i = 0; i < k; i++)
			cJSON_AddItemToArray(arr, report_token(m->tok, ids[i], s->last,
			    m->cfg.n_vocab));
		free(ids);
	}
	if (p->answer >= 0) {
		o = report_token(m->tok, p->answer, s->last, m->cfg.n_vocab);
		cJSON_AddNumberToObject(o, "rank", lens_rank_of(s->last, V, p->answer));
		cJSON_AddNumberToObject(o, "answer_tokens", p->answer_tokens);
		cJSON_AddItemToObject(root, "answer", o);
	}
	if (p->subject >= 0) {
		o = report_token(m->tok, p->subject, NULL, m->cfg.n_vocab);
		cJSON_AddNumberToObject(o, "position", p->subj_pos);
		cJSON_AddNumberToObject(o, "tokens", p->subj_len);
		if (s->pair >= 0 && s->task != NULL)
			cJSON_AddStringToObject(o, "text", s->task->pairs[s->pair].subject);
		else if (a->subject != NULL)
			cJSON_AddStringToObject(o, "text", a->subject);
		cJSON_AddItemToObject(root, "subject", o);
	}
	if (a->final_mask || a->intercept) {
		cJSON *mit = cJSON_AddObjectToObject(root, "mitigation");

		cJSON_AddBoolToObject(mit, "final_mask", a->final_mask);
		if (s->heads != NULL) {
			cJSON *hs = cJSON_AddArrayToObject(mit, "mask_heads");

			for (int h = 0; h < H; h++)
				if (s->heads[h])
					cJSON_AddItemToArray(hs, cJSON_CreateNumber(h));
		}
		cJSON_AddBoolToObject(mit, "intercept", a->intercept);
		if (a->intercept) {
			char hook[64];

			cJSON_AddStringToObject(mit, "hook", report_intercept_hook(m, hook,
			    sizeof hook));
			cJSON_AddStringToObject(mit, "position", "last");
			cJSON_AddNumberToObject(mit, "fit_prompts", s->fit_prompts);
			cJSON_AddNumberToObject(mit, "fit_shots", a->shots);
			cJSON_AddItemToObject(mit, "fit_r2",
			    report_number(run_intercept(s)->fit.r2));
		}
		if (p->answer >= 0) {
			o = cJSON_AddObjectToObject(mit, "before");
			cJSON_AddNumberToObject(o, "prob", s->before_prob);
			cJSON_AddNumberToObject(o, "rank", s->before_rank);
			cJSON_AddItemToObject(mit, "after", json_prob_rank(s->last, V, p->answer));
		}
	}
	cJSON_AddNumberToObject(root, "lens_position", s->lens_pos);
	arr = cJSON_AddArrayToObject(root, "lens");
	for (int l = 0; l < L; l++)
		for (int k = 0; k < 3; k++) {
			const float *lg = s->lens + ((size_t)l * 3 + k) * V;

			o = cJSON_CreateObject();
			cJSON_AddNumberToObject(o, "layer", l);
			cJSON_AddStringToObject(o, "stream", stream_names[k]);
			cJSON_AddItemToObject(o, "top", report_topk(m->tok, lg, m->cfg.n_vocab,
			    a->lens_top, true));
			if (p->answer >= 0)
				cJSON_AddItemToObject(o, "answer", json_prob_rank(lg, V, p->answer));
			if (p->subject >= 0)
				cJSON_AddItemToObject(o, "subject", json_prob_rank(lg, V, p->subject));
			cJSON_AddItemToArray(arr, o);
		}
	if (s->have_attrib) {
		o = cJSON_AddObjectToObject(root, "attrib");
		cJSON_AddNumberToObject(o, "token", p->answer);
		cJSON_AddNumberToObject(o, "position", T - 1);
		cJSON_AddStringToObject(o, "convention", attrib_convention(m));
		cJSON_AddItemToObject(o, "logit", json_attrib(&s->at_logit));
		cJSON_AddItemToObject(o, "logit_diff", json_attrib(&s->at_diff));
	}
	if (s->movers != NULL) {
		cJSON *hs, *fl;

		o = cJSON_AddObjectToObject(root, "movers");
		cJSON_AddNumberToObject(o, "threshold", a->threshold);
		cJSON_AddStringToObject(o, "score", "attn * (1 - ln(rank) / ln(vocab))");
		hs = cJSON_AddArrayToObject(o, "heads");
		fl = cJSON_AddArrayToObject(o, "flagged");
		for (int l = 0; l < L; l++) {
			cJSON *row = cJSON_CreateArray();

			for (int h = 0; h < H; h++) {
				const fl_mover *mv = &s->movers[l * H + h];
				cJSON *e = cJSON_CreateObject();

				cJSON_AddNumberToObject(e, "attn", mv->attn);
				cJSON_AddNumberToObject(e, "logit", mv->logit);
				cJSON_AddNumberToObject(e, "rank", mv->rank);
				cJSON_AddNumberToObject(e, "score", mv->score);
				cJSON_AddNumberToObject(e, "norm", mv->norm);
				cJSON_AddBoolToObject(e, "mover", mv->mover);
				cJSON_AddItemToArray(row, e);
				if (mv->mover) {
					cJSON *f = cJSON_CreateObject();

					cJSON_AddNumberToObject(f, "layer", l);
					cJSON_AddNumberToObject(f, "head", h);
					cJSON_AddNumberToObject(f, "score", mv->score);
					cJSON_AddItemToArray(fl, f);
				}
			}
			cJSON_AddItemToArray(hs, row);
		}
	}
	if (a->patterns) {
		arr = cJSON_AddArrayToObject(root, "patterns");
		for (int l = 0; l < L; l++) {
			cJSON *lay = cJSON_CreateArray();

			for (int h = 0; h < H; h++) {
				const float *pt = s->c->pattern + ((size_t)l * H + h) * T * T;
				cJSON *mat = cJSON_CreateArray();

				for (int i = 0; i < T; i++)
					cJSON_AddItemToArray(mat, cJSON_CreateFloatArray(pt +
					    (size_t)i * T, i + 1));
				cJSON_AddItemToArray(lay, mat);
			}
			cJSON_AddItemToArray(arr, lay);
		}
	}
	if (s->have_dec) {
		const fl_regress *f = &s->dec.fit;
		float *lg = xmalloc((size_t)V * sizeof *lg);

		o = cJSON_AddObjectToObject(root, "decomposition");
		cJSON_AddNumberToObject(o, "layer", s->dec.layer);
		cJSON_AddStringToObject(o, "task", s->task->name);
		cJSON_AddNumberToObject(o, "prompts", f->n);
		cJSON_AddNumberToObject(o, "shots", a->shots);
		cJSON_AddItemToObject(o, "r2", report_number(f->r2));
		cJSON_AddItemToObject(o, "r2_heldout", report_number(s->dec.heldout.r2));
		cJSON_AddItemToObject(o, "mean_cos", report_number(f->mean_cos));
		cJSON_AddItemToObject(o, "baseline_cos", report_number(f->baseline_cos));
		arr = cJSON_AddArrayToObject(o, "beta");
		for (int j = 0; j < f->J; j++)
			cJSON_AddItemToArray(arr, cJSON_CreateNumber(f->beta[j]));
		cJSON_AddStringToObject(o, "regressors", "heads 0..H-1, then resid_pre");
		attrib_vocab(m, NULL, 0, ATTRIB_SITE_MLP(s->dec.layer), f->intercept, 1, lg);
		cJSON_AddItemToObject(o, "intercept_top", report_topk(m->tok, lg,
		    m->cfg.n_vocab, a->lens_top, false));
		cJSON_AddItemToObject(o, "prompt_cos", report_number(s->rec.cos));
		cJSON_AddItemToObject(o, "prompt_rel_err", report_number(s->rec.rel_err));
		cJSON_AddItemToObject(o, "prompt_r2", report_number(s->rec.r2));
		free(lg);
	}
	return cli_json_print(root);
}

/* Components sorted by |contribution|. */
typedef struct {
	char	name[32];
	double	v;
} run_comp;

static int
cmp_comp(const void *x, const void *y)
{
	double a = fabs(((const run_comp *)x)->v), b = fabs(((const run_comp *)y)->v);

	return a < b ? 1 : a > b ? -1 : 0;
}

static const fl_mover *sort_movers;

static int
cmp_mover(const void *x, const void *y)
{
	float a = sort_movers[*(const int *)x].score, b = sort_movers[*(const int *)y].score;

	return a < b ? 1 : a > b ? -1 : 0;
}

static void
run_print_text(run_state *s)
{
	run_args *a = s->a;
	const fl_model *m = s->m;
	const fl_prompt *p = &s->p;
	int V = m->cfg.n_vocab, L = m->cfg.n_layer, H = m->cfg.n_head, T = p->n;
	int *top = xcalloc((size_t)a->top, sizeof *top), k;
	float *probs = xcalloc((size_t)a->top, sizeof *probs);
	char *str;

	printf("model   %s (%s, %d layers x %d heads, d_model %d)\n", a->dir,
	    m->cfg.model_type, L, H, m->cfg.d_model);
	printf("prompt  %d tokens:", T);
	for (int i = 0; i < T; i++) {
		str = cli_token_repr(m->tok, p->ids[i]);
		printf(" %s", str);
		free(str);
	}
	putchar('\n');
	if (p->subject >= 0) {
		str = cli_token_repr(m->tok, p->subject);
		printf("subject %s at position %d", str, p->subj_pos);
		if (p->subj_len > 1)
			printf(" (%d tokens)", p->subj_len);
		putchar('\n');
		free(str);
	}
	if (a->final_mask)
		printf("final-layer mask: on (last position attends only to itself%s)\n",
		    s->heads != NULL ? ", in the heads given" : "");
	if (a->intercept)
		printf("intercept removal: on (last layer's MLP intercept, fitted on %d "
		    "%d-shot prompts of %s without this subject, subtracted %s)\n",
		    s->fit_prompts, a->shots, s->task->name, s->m->cfg.ln_before ?
		    "before ln_final" : "from that MLP's output, before its block's ln2");
	k = lens_topk(s->last, V, a->top, top, probs);
	printf("\ntop %d next tokens:\n", k);
	for (int i = 0; i < k; i++) {
		str = cli_token_repr(m->tok, top[i]);
		printf("  %3d  %-20s p=%.4f  logit %.3f\n", i + 1, str, probs[i],
		    s->last[top[i]]);
		free(str);
	}
	if (p->answer >= 0) {
		str = cli_token_repr(m->tok, p->answer);
		printf("answer  %s (id %d%s): p=%.4f  rank %d", str, p->answer,
		    p->answer_tokens > 1 ? ", first of its tokens" : "",
		    lens_prob_of(s->last, V, p->answer), lens_rank_of(s->last, V, p->answer));
		if (a->final_mask || a->intercept)
			printf("   (without the mitigation: p=%.4f  rank %d)", s->before_prob,
			    s->before_rank);
		putchar('\n');
		free(str);
	}
	if (a->lens) {
		str = cli_token_repr(m->tok, p->ids[s->lens_pos]);
		printf("\nlogit lens at %s %d (%s):\n", s->lens_pos == T - 1 ?
		    "the last position," : "position", s->lens_pos, str);
		free(str);
		printf("  %-16s %-20s %-18s %s\n", "stream", "top token",
		    p->answer >= 0 ? "answer p / rank" : "",
		    p->subject >= 0 ? "subject p / rank" : "");
		for (int l = 0; l < L; l++)
			for (int j = 0; j < 3; j++) {
				const float *lg = s->lens + ((size_t)l * 3 + j) * V;
				char name[32], pr[40] = "";
				int t1;

				snprintf(name, sizeof name, "%s %d", stream_names[j], l);
				lens_topk(lg, V, 1, &t1, NULL);
				str = cli_token_repr(m->tok, t1);
				if (p->answer >= 0)
					snprintf(pr, sizeof pr, "%.4f / %d",
					    lens_prob_of(lg, V, p->answer),
					    lens_rank_of(lg, V, p->answer));
				printf("  %-16s %-20s %-18s", name, str, pr);
				free(str);
				if (p->subject >= 0)
					printf(" %.4f / %d", lens_prob_of(lg, V, p->subject),
					    lens_rank_of(lg, V, p->subject));
				putchar('\n');
			}
	}
	if (s->have_attrib) {
		const fl_attrib *x = &s->at_diff;
		int n = 0, nc = L * H + 2 * L + 4;
		run_comp *cs = xcalloc((size_t)nc, sizeof *cs);

		snprintf(cs[n].name, sizeof cs[n].name, "embed");
		cs[n++].v = x->embed;
		snprintf(cs[n].name, sizeof cs[n].name, "pos_embed");
		cs[n++].v = x->pos_embed;
		for (int l = 0; l < L; l++) {
			for (int h = 0; h < H; h++) {
				snprintf(cs[n].name, sizeof cs[n].name, "head %d.%d", l, h);
				cs[n++].v = x->head[l * H + h];
			}
			snprintf(cs[n].name, sizeof cs[n].name, "mlp %d", l);
			cs[n++].v = x->mlp[l];
			snprintf(cs[n].name, sizeof cs[n].name, "attn bias %d", l);
			cs[n++].v = x->attn_bias[l];
		}
		snprintf(cs[n].name, sizeof cs[n].name, "%s", m->cfg.ln_before ?
		    "ln_final bias" : "LN biases");
		cs[n++].v = x->ln_bias;
		qsort(cs, (size_t)n, sizeof *cs, cmp_comp);
		printf("\ndirect contributions to logit(answer) - mean logit (%s): "
		    "%.3f in all\n", m->cfg.ln_before ? "final LN scale frozen" :
		    "every block LN's scale frozen", x->logit);
		for (int i = 0; i < n && i < 8; i++)
			printf("  %-14s %+8.3f\n", cs[i].name, cs[i].v);
		printf("  (the %d terms sum to %.4f", n, x->sum);
		if (fabs(x->rest) > 1e-4)
			printf("; the intervention adds %+.4f", x->rest);
		printf(")\n");
		free(cs);
	}
	if (s->movers != NULL) {
		int *order = xcalloc((size_t)L * H, sizeof *order);

		for (int i = 0; i < L * H; i++)
			order[i] = i;
		sort_movers = s->movers;
		qsort(order, (size_t)L * H, sizeof *order, cmp_mover);
		printf("\nmover heads (attention to the subject x its rank in the head's "
		    "output; threshold %.2f):\n", a->threshold);
		for (int i = 0; i < L * H && i < 5; i++) {
			const fl_mover *mv = &s->movers[order[i]];

			printf("  %2d.%-3d attn %.3f  subject rank %6d  score %.3f%s\n",
			    order[i] / H, order[i] % H, mv->attn, mv->rank, mv->score,
			    mv->mover ? "  mover" : "");
		}
		free(order);
	}
	if (s->have_dec)
		printf("\nMLP %d decomposition (fitted on %d prompts of %s): R^2 %.3f; "
		    "this prompt: cos %.3f, |m - mhat| / |m| %.3f\n", s->dec.layer,
		    s->dec.fit.n, s->task->name, s->dec.fit.r2, s->rec.cos, s->rec.rel_err);
	free(top);
	free(probs);
}

int
cmd_run(int argc, char **argv)
{
	run_args a;
	run_state s;
	fl_run *r = NULL;
	fl_pass pass = { 0 };
	fl_mitigation mit = { 0 };
	char *cause = NULL;
	int rc, V, L, T, off = -1, len = 0;
	fl_task *subjects = NULL;
	fl_dump *dump = NULL;

	if ((rc = run_parse(&a, argc, argv)) != 0)
		return rc;
	memset(&s, 0, sizeof s);
	s.a = &a;
	s.pair = -1;
	kern_set_threads(a.threads);
	if (a.task != NULL && (s.task = cli_load_task(a.task)) == NULL)
		return 1;
	if ((s.m = cli_load_model(a.dir)) == NULL) {
		task_free(s.task);
		return 1;
	}
	V = s.m->cfg.n_vocab;
	L = s.m->cfg.n_layer;
	rc = 1;
	if (a.layer >= L) {
		rc = cli_fail(2, "--layer takes a layer from 0 to %d", L - 1);
		goto out;
	}
	if (a.layer < 0)
		a.layer = L - 1;
	if (a.dump_hooks != NULL &&
	    (dump = dump_new(s.m, a.dump_hooks, &cause)) == NULL) {
		cli_fail(2, "run: --dump: %s", cause);
		free(cause);
		rc = 2;
		goto out;
	}
	if (a.mask_heads != NULL && cli_parse_heads("--mask-heads", a.mask_heads,
	    s.m->cfg.n_head, &s.heads) != 0) {
		rc = 2;
		goto out;
	}
	/* The subject: given, or a subject of the task (or of the bundled
	 * country_capital task) found in the prompt. */
	subjects = s.task;
	if (subjects == NULL && a.subject == NULL &&
	    fl_file_exists(fl_default_task()))
		subjects = task_load(fl_default_task(), NULL);
	if (cli_find_subject(subjects, a.prompt, a.subject, &off, &len, &s.pair) != 0)
		goto out;
	if (subjects != s.task)
		s.pair = -1;	/* the bundled task only names the subject */
	if (a.answer == NULL && s.pair >= 0)
		a.answer = s.task->pairs[s.pair].answer;
	if (prompt_make(&s.p, s.m, a.prompt, off, len, a.answer, true, &cause) != 0)
		goto fail_cause;
	T = s.p.n;
	if (a.lens_pos >= T || a.lens_pos < -T) {
		rc = cli_fail(2, "run: --lens-position %d is outside the prompt's %d "
		    "tokens: 0 to %d, or -%d to -1 from the end", a.lens_pos, T, T - 1, T);
		goto out;
	}

	if (s.task != NULL && (rc = run_fit(&s, &cause)) != 0) {
		if (rc == FL_EXIT_STOPPED)
			goto out;
		rc = 1;
		goto fail_cause;
	}
	rc = 1;

	r = run_new(s.m, T, T);
	s.c = cache_new(s.m, T, FL_CACHE_PATTERN | (a.dump ? FL_CACHE_LOGITS_ALL : 0));
	pass.cache = s.c;
	if (dump != NULL)
		pass.hooks = dump_hooks(dump, &pass.n_hooks);
	if (run_forward(r, s.p.ids, &T, 1, &pass, &cause) < 0)
		goto fail_cause;
	s.last = a.dump ? s.c->logits + (size_t)(T - 1) * V : s.c->logits;
	if (s.p.answer >= 0) {
		s.before_prob = lens_prob_of(s.last, V, s.p.answer);
		s.before_rank = lens_rank_of(s.last, V, s.p.answer);
	}
	/* the mitigations re-run the last layer from the cache */
	mit.mask = a.final_mask;
	mit.mask_heads = s.heads;
	mit.intercept = a.intercept ? run_intercept(&s)->fit.intercept : NULL;
	if ((mit.mask || mit.intercept != NULL) &&
	    mitigate_rerun(r, s.m, s.c, &mit, &cause) != 0)
		goto fail_cause;
	if (a.dump && write_logits(a.dump, s.c->logits, (size_t)T * V) != 0)
		goto out;
	if (dump != NULL) {
		const char *meta[] = { "model", a.dir, "prompt", a.prompt,
		    "factlens", PACKAGE_VERSION, "format", "TransformerLens hook names "
		    "and shapes without the batch dimension, before any mitigation" };

		if (dump_write(dump, a.dump_file, meta, 4, &cause) != 0)
			goto fail_cause;
	}

	/* the analyses, on the run as the cache now holds it */
	s.lens = xmalloc((size_t)3 * L * V * sizeof *s.lens);
	s.lens_pos = a.lens_pos < 0 ? T + a.lens_pos : a.lens_pos;
	lens_layer_streams(s.m, s.c, s.lens_pos, s.lens);
	if (s.p.answer >= 0) {
		if (attrib_direct(&s.at_logit, &s.at_diff, s.m, s.c, T - 1, s.p.answer,
		    NULL, &cause) != 0)
			goto fail_cause;
		s.have_attrib = true;
	}
	if (s.p.subject >= 0) {
		s.movers = xcalloc((size_t)L * s.m->cfg.n_head, sizeof *s.movers);
		if (movers_score(s.movers, s.m, s.c, T - 1, s.p.subj_pos, s.p.subj_len,
		    s.p.subject, (float)a.threshold, &cause) != 0)
			goto fail_cause;
	}
	if (s.have_dec)
		decomp_prompt(&s.dec, s.m, s.c, T - 1, NULL, NULL, NULL, &s.rec, NULL);
	if (a.plot != NULL && (rc = run_plot(&s)) != 0)
		goto out;

	if (a.json)
		rc = run_print_json(&s);
	else if (a.csv)
		rc = run_print_csv(&s);
	else {
		run_print_text(&s);
		rc = 0;
	}
	goto out;
fail_cause:
	cli_fail(1, "%s", cause);
	free(cause);
out:
	if (subjects != s.task)
		task_free(subjects);
	attrib_clear(&s.at_logit);
	attrib_clear(&s.at_diff);
	dump_free(dump);
	free(s.movers);
	free(s.lens);
	free(s.heads);
	decomp_clear(&s.dec);
	decomp_clear(&s.icpt);
	prompt_clear(&s.p);
	cache_free(s.c);
	run_free(r);
	task_free(s.task);
	model_free(s.m);
	return rc;
}
