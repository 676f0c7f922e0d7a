/* report.c - results as JSON, one schema. See report.h. */
#include "autoconfig.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "analysis/report.h"
#include "base/util.h"

cJSON *
report_string(const char *text)
{
	char *s = fl_utf8_text(text, strlen(text));
	cJSON *o = cJSON_CreateString(s);

	free(s);
	return o;
}

cJSON *
report_number(double v)
{
	return isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v);
}

cJSON *
report_token(const fl_tokenizer *tok, int id, const float *logits, int V)
{
	cJSON *o = cJSON_CreateObject();
	size_t n = 0;
	const char *b = tok_token_bytes(tok, id, &n);
	char *text, *hex;

	if (b == NULL)
		b = "", n = 0;
	text = fl_utf8_text(b, n);
	hex = fl_hex(b, n);
	cJSON_AddNumberToObject(o, "id", id);
	cJSON_AddStringToObject(o, "token", text);
	cJSON_AddStringToObject(o, "bytes", hex);
	if (logits != NULL) {
		cJSON_AddItemToObject(o, "logit", report_number(logits[id]));
		cJSON_AddItemToObject(o, "prob", report_number(lens_prob_of(logits, V, id)));
	}
	free(text);
	free(hex);
	return o;
}

cJSON *
report_topk(const fl_tokenizer *tok, const float *logits, int V, int k, bool probs)
{
	cJSON *arr = cJSON_CreateArray();
	int *ids = xcalloc((size_t)k, sizeof *ids);
	float *p = xcalloc((size_t)k, sizeof *p);

	k = lens_topk(logits, V, k, ids, probs ? p : NULL);
	for (int i = 0; i < k; i++) {
		cJSON *o = report_token(tok, ids[i], NULL, V);

		cJSON_AddItemToObject(o, "logit", report_number(logits[ids[i]]));
		if (probs)
			cJSON_AddItemToObject(o, "prob", report_number(p[i]));
		cJSON_AddItemToArray(arr, o);
	}
	free(ids);
	free(p);
	return arr;
}

cJSON *
report_grid_d(const double *g, int L, int H)
{
	cJSON *rows = cJSON_CreateArray();

	for (int l = 0; l < L; l++) {
		cJSON *row = cJSON_CreateArray();

		for (int h = 0; h < H; h++)
			cJSON_AddItemToArray(row, report_number(g[l * H + h]));
		cJSON_AddItemToArray(rows, row);
	}
	return rows;
}

cJSON *
report_grid_f(const float *g, int L, int H)
{
	double *d = xcalloc((size_t)L * H + 1, sizeof *d);
	cJSON *rows;

	for (int i = 0; i < L * H; i++)
		d[i] = g[i];
	rows = report_grid_d(d, L, H);
	free(d);
	return rows;
}

const char *
report_intercept_hook(const fl_model *m, char *buf, size_t n)
{
	return hook_point_name(mitigate_intercept_point(m), m->cfg.n_layer - 1, buf, n);
}

cJSON *
report_eval_setting(const fl_eval_result *r)
{
	cJSON *o = cJSON_CreateObject(), *conds, *arr;

	cJSON_AddNumberToObject(o, "shots", r->shots);
	cJSON_AddNumberToObject(o, "prompts", r->n);
	cJSON_AddNumberToObject(o, "multi_token_answers", r->multi_token);
	conds = cJSON_AddObjectToObject(o, "conditions");
	for (int c = 0; c < EVAL_COND_COUNT; c++) {
		cJSON *x = cJSON_AddObjectToObject(conds, eval_cond_name((fl_eval_cond)c));

		cJSON_AddItemToObject(x, "mean_prob", report_number(r->cond[c].mean_prob));
		cJSON_AddItemToObject(x, "top1", report_number(r->cond[c].top1));
		cJSON_AddItemToObject(x, "mean_rank", report_number(r->cond[c].mean_rank));
	}
	arr = cJSON_AddArrayToObject(o, "calibration_r2");
	for (int f = 0; f < 2; f++)
		cJSON_AddItemToArray(arr, report_number(r->calib_r2[f]));
	arr = cJSON_AddArrayToObject(o, "calibration_prompts");
	for (int f = 0; f < 2; f++)
		cJSON_AddItemToArray(arr, cJSON_CreateNumber(r->calib_n[f]));
	cJSON_AddNumberToObject(o, "seconds", r->seconds);
	cJSON_AddNumberToObject(o, "passes", (double)r->passes);
	cJSON_AddNumberToObject(o, "tokens", (double)r->rows);
	cJSON_AddNumberToObject(o, "tokens_resumed", (double)r->rows_resumed);
	return o;
}

int
report_write(cJSON *root, FILE *f, char **cause)
{
	char *text = cJSON_Print(root);
	int rc = 0;

	cJSON_Delete(root);
	if (text == NULL)
		return fl_error(cause, "out of memory writing JSON");
	if (fputs(text, f) == EOF || fputc('\n', f) == EOF || fflush(f) != 0)
		rc = fl_error(cause, "write error");
	free(text);
	return rc;
}
