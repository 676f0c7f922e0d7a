/* cmd_run.c - factlens run: one prompt through the model, top predictions,
 * the answer's probability and rank, optionally the logit lens per layer. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/lens.h"
#include "cli.h"
#include "engine/kernels.h"
#include "engine/util.h"

typedef struct {
	const char	*dir;
	const char	*prompt;
	const char	*answer;
	const char	*dump;
	int		 top;
	int		 threads;
	bool		 json;
	bool		 lens;
	bool		 final_mask;
} run_args;

static int
run_parse(run_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "answer", required_argument, NULL, 'a' },
		{ "top", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "lens", no_argument, NULL, 'l' },
		{ "dump-logits", required_argument, NULL, 'd' },
		{ "final-mask", no_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	memset(a, 0, sizeof *a);
	a->top = 10;
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:p:a:k:jld:ft:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': a->dir = optarg; break;
		case 'p': a->prompt = optarg; break;
		case 'a': a->answer = optarg; break;
		case 'k':
			if (cli_int("--top", optarg, 1, 1000, &a->top))
				return 2;
			break;
		case 'j': a->json = true; break;
		case 'l': a->lens = true; break;
		case 'd': a->dump = optarg; break;
		case 'f': a->final_mask = true; break;
		case 't':
			if (cli_int("--threads", optarg, 1, 256, &a->threads))
				return 2;
			break;
		default:
			return cli_fail(2, "usage: factlens run [--model DIR] --prompt TEXT "
			    "[--answer TEXT] [--top K] [--lens] [--json] "
			    "[--dump-logits FILE] [--final-mask] [--threads N]");
		}
	}
	if (optind < argc)
		return cli_fail(2, "run: unexpected argument '%s' (the prompt goes "
		    "after --prompt)", argv[optind]);
	if (a->prompt == NULL)
		return cli_fail(2, "run: --prompt TEXT is required");
	if (a->dir == NULL)
		a->dir = cli_default_model();
	return 0;
}

/* The answer token: the first token of the answer text as a continuation,
 * i.e. with a leading space unless the text has one. */
static int
answer_token(const fl_model *m, const char *text, int *n_tokens)
{
	char *s = text[0] == ' ' ? xstrdup(text) : xasprintf(" %s", text);
	int *ids = NULL, n, id;

	n = tok_encode(m->tok, s, strlen(s), &ids, NULL);
	id = n > 0 ? ids[0] : -1;
	*n_tokens = n;
	free(ids);
	free(s);
	return id;
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

static cJSON *
json_token(const fl_model *m, int id, const float *logits)
{
	cJSON *o = cJSON_CreateObject();
	size_t bl;
	const char *b = tok_token_bytes(m->tok, id, &bl);
	char *s = b != NULL ? xstrndup(b, bl) : xstrdup("");

	cJSON_AddNumberToObject(o, "id", id);
	cJSON_AddStringToObject(o, "token", s);
	cJSON_AddNumberToObject(o, "logit", logits[id]);
	cJSON_AddNumberToObject(o, "prob", lens_prob_of(logits, m->cfg.n_vocab, id));
	free(s);
	return o;
}

int
cmd_run(int argc, char **argv)
{
	run_args a;
	fl_model *m;
	fl_run *r = NULL;
	fl_cache *cache = NULL;
	fl_self_mask mask = { 0 };
	fl_hook hook;
	fl_pass pass = { 0 };
	char *cause = NULL;
	int *ids = NULL, n, rc, V, L, answer = -1, answer_n = 0, *top = NULL;
	float *last, *probs = NULL, *lens = NULL;

	if ((rc = run_parse(&a, argc, argv)) != 0)
		return rc;
	kern_set_threads(a.threads);
	if ((m = cli_load_model(a.dir)) == NULL)
		return 1;
	V = m->cfg.n_vocab;
	L = m->cfg.n_layer;
	rc = 1;
	n = model_encode(m, a.prompt, strlen(a.prompt), &ids, &cause);
	if (n < 0)
		goto fail_cause;
	if (n == 0 || (n == 1 && m->cfg.bos_id >= 0)) {
		cli_fail(1, "the prompt is empty");
		goto out;
	}
	if (n > m->cfg.n_ctx) {
		cli_fail(1, "the prompt is %d tokens, longer than the model's context "
		    "of %d tokens (%s)", n, m->cfg.n_ctx, a.dir);
		goto out;
	}
	if (a.answer != NULL) {
		answer = answer_token(m, a.answer, &answer_n);
		if (answer < 0) {
			cli_fail(1, "the answer \"%s\" encodes to no token", a.answer);
			goto out;
		}
	}

	r = run_new(m, n, n);
	cache = cache_new(m, n, FL_CACHE_PATTERN | (a.dump ? FL_CACHE_LOGITS_ALL : 0));
	if (a.final_mask) {
		hook.point = HOOK_ATTN_SCORES;
		hook.layer = L - 1;
		hook.fn = hook_self_mask;
		hook.ud = &mask;
		pass.hooks = &hook;
		pass.n_hooks = 1;
	}
	pass.cache = cache;
	pass.logits_all = a.dump != NULL;
	if (run_forward(r, ids, &n, 1, &pass, &cause) < 0)
		goto fail_cause;
	last = a.dump ? cache->logits + (size_t)(n - 1) * V : cache->logits;
	if (a.dump && write_logits(a.dump, cache->logits, (size_t)n * V) != 0)
		goto out;

	top = xcalloc((size_t)a.top, sizeof *top);
	probs = xcalloc((size_t)a.top, sizeof *probs);
	a.top = lens_topk(last, V, a.top, top, probs);
	if (a.lens) {
		lens = xmalloc((size_t)(L + 1) * V * sizeof *lens);
		lens_streams(m, cache, n - 1, lens);
	}

	if (a.json) {
		cJSON *root = cJSON_CreateObject(), *arr;
		char *out;

		cJSON_AddStringToObject(root, "model", a.dir);
		cJSON_AddStringToObject(root, "prompt", a.prompt);
		arr = cJSON_AddArrayToObject(root, "ids");
		for (int i = 0; i < n; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
		arr = cJSON_AddArrayToObject(root, "tokens");
		for (int i = 0; i < n; i++) {
			size_t bl;
			const char *b = tok_token_bytes(m->tok, ids[i], &bl);
			char *s = xstrndup(b, bl);

			cJSON_AddItemToArray(arr, cJSON_CreateString(s));
			free(s);
		}
		cJSON_AddBoolToObject(root, "final_mask", a.final_mask);
		arr = cJSON_AddArrayToObject(root, "top");
		for (int i = 0; i < a.top; i++)
			cJSON_AddItemToArray(arr, json_token(m, top[i], last));
		if (answer >= 0) {
			cJSON *ans = json_token(m, answer, last);

			cJSON_AddNumberToObject(ans, "rank", lens_rank_of(last, V, answer));
			cJSON_AddNumberToObject(ans, "answer_tokens", answer_n);
			cJSON_AddItemToObject(root, "answer", ans);
		}
		if (lens != NULL) {
			arr = cJSON_AddArrayToObject(root, "lens");
			for (int l = 0; l <= L; l++) {
				const float *lg = lens + (size_t)l * V;
				cJSON *o = cJSON_CreateObject();
				int t1;

				cJSON_AddStringToObject(o, "stream", l < L ? "resid_pre" : "resid_post");
				cJSON_AddNumberToObject(o, "layer", l < L ? l : L - 1);
				lens_topk(lg, V, 1, &t1, NULL);
				cJSON_AddItemToObject(o, "top", json_token(m, t1, lg));
				if (answer >= 0) {
					cJSON_AddNumberToObject(o, "answer_prob",
					    lens_prob_of(lg, V, answer));
					cJSON_AddNumberToObject(o, "answer_rank",
					    lens_rank_of(lg, V, answer));
				}
				cJSON_AddItemToArray(arr, o);
			}
		}
		out = cJSON_Print(root);
		puts(out);
		free(out);
		cJSON_Delete(root);
	} else {
		char *s;

		printf("model   %s (%s, %d layers x %d heads, d_model %d)\n", a.dir,
		    m->cfg.model_type, L, m->cfg.n_head, m->cfg.d_model);
		printf("prompt  %d tokens:", n);
		for (int i = 0; i < n; i++) {
			s = cli_token_repr(m->tok, ids[i]);
			printf(" %s", s);
			free(s);
		}
		printf("\n%s\n", a.final_mask ? "final-layer mask: on (last position "
		    "attends only to itself)" : "");
		printf("top %d next tokens:\n", a.top);
		for (int i = 0; i < a.top; i++) {
			s = cli_token_repr(m->tok, top[i]);
			printf("  %3d  %-20s p=%.4f  logit %.3f\n", i + 1, s, probs[i],
			    last[top[i]]);
			free(s);
		}
		if (answer >= 0) {
			s = cli_token_repr(m->tok, answer);
			printf("answer  %s (id %d%s): p=%.4f  rank %d\n", s, answer,
			    answer_n > 1 ? ", first of its tokens" : "",
			    lens_prob_of(last, V, answer), lens_rank_of(last, V, answer));
			free(s);
		}
		if (lens != NULL) {
			printf("\nlogit lens at the last position:\n");
			printf("  %-16s %-20s %s\n", "stream", "top token",
			    answer >= 0 ? "answer p / rank" : "");
			for (int l = 0; l <= L; l++) {
				const float *lg = lens + (size_t)l * V;
				char name[32];
				int t1;

				snprintf(name, sizeof name, l < L ? "resid_pre %d" :
				    "resid_post %d", l < L ? l : L - 1);
				lens_topk(lg, V, 1, &t1, NULL);
				s = cli_token_repr(m->tok, t1);
				printf("  %-16s %-20s", name, s);
				free(s);
				if (answer >= 0)
					printf(" %.4f / %d", lens_prob_of(lg, V, answer),
					    lens_rank_of(lg, V, answer));
				putchar('\n');
			}
		}
	}
	rc = 0;
	goto out;
fail_cause:
	cli_fail(1, "%s", cause);
	free(cause);
out:
	free(top);
	free(probs);
	free(lens);
	free(ids);
	cache_free(cache);
	run_free(r);
	model_free(m);
	return rc;
}
