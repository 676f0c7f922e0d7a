/* report.c - results as JSON, one schema. See report.h. */
#include "autoconfig.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/decompose.h"
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

void
report_wilson(int k, int n, double *lo, double *hi)
{
	const double z = 1.959963984540054;
	double p, d, c, h;

	if (n <= 0) {
		*lo = *hi = NAN;
		return;
	}
	p = (double)k / n;
	d = 1 + z * z / n;
	c = (p + z * z / (2.0 * n)) / d;
	h = z / d * sqrt(p * (1 - p) / n + z * z / (4.0 * n * n));
	/* exact at the ends, where rounding would leave 1e-17 */
	*lo = k == 0 ? 0 : fmax(0, c - h);
	*hi = k == n ? 1 : fmin(1, c + h);
}

void
report_mean_ci(const double *x, int n, int stride, double *lo, double *hi)
{
	double sum = 0, ss = 0, mean, h;

	if (n < 2) {
		*lo = *hi = NAN;
		return;
	}
	for (int i = 0; i < n; i++)
		sum += x[(size_t)i * stride];
	mean = sum / n;
	for (int i = 0; i < n; i++) {
		double d = x[(size_t)i * stride] - mean;

		ss += d * d;
	}
	h = 1.959963984540054 * sqrt(ss / (n - 1) / n);
	*lo = fmax(0, mean - h);
	*hi = fmin(1, mean + h);
}

/* The 95% intervals of condition c's mean P(answer) and top-1 rate. */
static void
report_eval_ci(const fl_eval_result *r, int c, double *plo, double *phi,
    double *tlo, double *thi)
{
	int k = 0;

	for (int i = 0; i < r->n; i++)
		k += r->rank[(size_t)i * EVAL_COND_COUNT + c] == 1;
	report_mean_ci(r->prob + c, r->n, EVAL_COND_COUNT, plo, phi);
	report_wilson(k, r->n, tlo, thi);
}

cJSON *
report_eval_prompts(const fl_eval_result *r, const fl_task *t)
{
	cJSON *arr = cJSON_CreateArray();

	for (int i = 0; i < r->n; i++)
		for (int c = 0; c < EVAL_COND_COUNT; c++) {
			cJSON *o = cJSON_CreateObject();
			size_t k = (size_t)i * EVAL_COND_COUNT + c;

			cJSON_AddNumberToObject(o, "shots", r->shots);
			cJSON_AddNumberToObject(o, "prompt", i);
			cJSON_AddNumberToObject(o, "pair", r->pair[i]);
			cJSON_AddItemToObject(o, "subject",
			    report_string(t->pairs[r->pair[i]].subject));
			cJSON_AddNumberToObject(o, "template", r->tmpl[i]);
			cJSON_AddStringToObject(o, "condition",
			    eval_cond_name((fl_eval_cond)c));
			cJSON_AddItemToObject(o, "p_answer", report_number(r->prob[k]));
			cJSON_AddNumberToObject(o, "rank", r->rank[k]);
			cJSON_AddNumberToObject(o, "top1", r->rank[k] == 1);
			if (r->counterfactual) {
				cJSON_AddItemToObject(o, "context_answer",
				    report_string(t->pairs[r->ctx_pair[i]].answer));
				cJSON_AddItemToObject(o, "p_context",
				    report_number(r->ctx_prob[k]));
				cJSON_AddNumberToObject(o, "context_rank", r->ctx_rank[k]);
			}
			cJSON_AddItemToArray(arr, o);
		}
	return arr;
}

void
report_csv_text(FILE *f, const char *s, bool last)
{
	char *u = fl_utf8_text(s, strlen(s));

	if (strpbrk(u, ",\"\r\n") != NULL) {
		fputc('"', f);
		for (const char *p = u; *p; p++) {
			if (*p == '"')
				fputc('"', f);
			fputc(*p, f);
		}
		fputc('"', f);
	} else
		fputs(u, f);
	fputc(last ? '\n' : ',', f);
	free(u);
}

void
report_csv_number(FILE *f, double v, bool last)
{
	if (!isnan(v))
		fprintf(f, "%.9g", v);
	fputc(last ? '\n' : ',', f);
}

void
report_grid_csv(FILE *f, const char *row, int L, int H, int ncol,
    const char *const *cols, const double *const *grids, bool header)
{
	if (header) {
		fputs(row != NULL ? "row,layer,head" : "layer,head", f);
		for (int c = 0; c < ncol; c++)
			fprintf(f, ",%s", cols[c]);
		fputc('\n', f);
	}
	for (int l = 0; l < L; l++)
		for (int h = 0; h < H; h++) {
			if (row != NULL)
				fprintf(f, "%s,", row);
			fprintf(f, "%d,%d%s", l, h, ncol > 0 ? "," : "\n");
			for (int c = 0; c < ncol; c++)
				report_csv_number(f, grids[c][l * H + h], c == ncol - 1);
		}
}

void
report_eval_csv(FILE *f, const fl_eval_result *r, int n_set, const fl_task *t)
{
	fputs("row," REPORT_EVAL_CSV_COLUMNS "\n", f);
	report_eval_csv_rows(f, r, n_set, t, "", 0);
}

void
report_eval_csv_rows(FILE *f, const fl_eval_result *r, int n_set,
    const fl_task *t, const char *prefix, int skip)
{
	static const char commas[] = ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,";

	if (skip > (int)sizeof commas - 1)
		skip = (int)sizeof commas - 1;
	for (int s = 0; s < n_set; s++)
		for (int i = 0; i < r[s].n; i++)
			for (int c = 0; c < EVAL_COND_COUNT; c++) {
				size_t k = (size_t)i * EVAL_COND_COUNT + c;

				fprintf(f, "%sprompt,%.*s%d,%s,%d,%d,", prefix, skip, commas,
				    r[s].shots, eval_cond_name((fl_eval_cond)c), i, r[s].pair[i]);
				report_csv_text(f, t->pairs[r[s].pair[i]].subject, false);
				fprintf(f, "%d,", r[s].tmpl[i]);
				report_csv_number(f, r[s].prob[k], false);
				fprintf(f, "%d,%d,,,,,,,\n", r[s].rank[k], r[s].rank[k] == 1);
			}
	for (int s = 0; s < n_set; s++)
		for (int c = 0; c < EVAL_COND_COUNT; c++) {
			const fl_eval_stats *st = &r[s].cond[c];
			double plo, phi, tlo, thi;

			report_eval_ci(&r[s], c, &plo, &phi, &tlo, &thi);
			fprintf(f, "%sgrid,%.*s%d,%s,,,,,,,", prefix, skip, commas, r[s].shots,
			    eval_cond_name((fl_eval_cond)c));
			report_csv_number(f, st->top1, false);
			fprintf(f, "%d,", r[s].n);
			report_csv_number(f, st->mean_prob, false);
			report_csv_number(f, plo, false);
			report_csv_number(f, phi, false);
			report_csv_number(f, tlo, false);
			report_csv_number(f, thi, false);
			report_csv_number(f, st->mean_rank, true);
		}
}

cJSON *
report_eval_setting(const fl_eval_result *r)
{
	cJSON *o = cJSON_CreateObject(), *conds, *arr;
	double lo[2], hi[2];

	cJSON_AddNumberToObject(o, "shots", r->shots);
	cJSON_AddNumberToObject(o, "prompts", r->n);
	cJSON_AddNumberToObject(o, "multi_token_answers", r->multi_token);
	cJSON_AddNumberToObject(o, "dropped", r->dropped);
	cJSON_AddBoolToObject(o, "counterfactual", r->counterfactual);
	conds = cJSON_AddObjectToObject(o, "conditions");
	for (int c = 0; c < EVAL_COND_COUNT; c++) {
		cJSON *x = cJSON_AddObjectToObject(conds, eval_cond_name((fl_eval_cond)c));

		cJSON_AddItemToObject(x, "mean_prob", report_number(r->cond[c].mean_prob));
		cJSON_AddItemToObject(x, "top1", report_number(r->cond[c].top1));
		cJSON_AddItemToObject(x, "mean_rank", report_number(r->cond[c].mean_rank));
		report_eval_ci(r, c, &lo[0], &hi[0], &lo[1], &hi[1]);
		cJSON_AddItemToObject(x, "mean_prob_lo", report_number(lo[0]));
		cJSON_AddItemToObject(x, "mean_prob_hi", report_number(hi[0]));
		cJSON_AddItemToObject(x, "top1_lo", report_number(lo[1]));
		cJSON_AddItemToObject(x, "top1_hi", report_number(hi[1]));
		if (r->counterfactual) {
			cJSON_AddItemToObject(x, "context_mean_prob",
			    report_number(r->cond[c].ctx_mean_prob));
			cJSON_AddItemToObject(x, "context_top1",
			    report_number(r->cond[c].ctx_top1));
			cJSON_AddItemToObject(x, "context_mean_rank",
			    report_number(r->cond[c].ctx_mean_rank));
		}
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

cJSON *
report_eval_json(const char *model_dir, const fl_model *m, const fl_task *t,
    const fl_eval_opts *o, const fl_eval_result *r, int n_set, bool per_prompt)
{
	cJSON *root = cJSON_CreateObject(), *o2, *arr;
	char hook[64];

	cJSON_AddItemToObject(root, "model", report_string(model_dir));
	o2 = cJSON_AddObjectToObject(root, "task");
	cJSON_AddStringToObject(o2, "name", t->name);
	cJSON_AddItemToObject(o2, "file", report_string(t->path));
	cJSON_AddStringToObject(o2, "templates", task_set_name(o->set));
	cJSON_AddNumberToObject(o2, "pairs", t->n_pairs);
	cJSON_AddNumberToObject(o2, "template_count", t->n_templates[o->set]);
	cJSON_AddBoolToObject(o2, "single_token", o->single_token);
	cJSON_AddBoolToObject(o2, "counterfactual", o->counterfactual);
	o2 = cJSON_AddObjectToObject(root, "calibration");
	cJSON_AddStringToObject(o2, "split", eval_split_name(o->split));
	cJSON_AddNumberToObject(o2, "folds", 2);
	cJSON_AddStringToObject(o2, "regressors", o->with_resid ? "heads+resid_pre" :
	    "heads");
	cJSON_AddNumberToObject(o2, "ridge", o->ridge < 0 ? DECOMP_RIDGE : o->ridge);
	cJSON_AddStringToObject(o2, "hook", report_intercept_hook(m, hook, sizeof hook));
	cJSON_AddStringToObject(o2, "position", "last");
	if (o->mask_heads != NULL) {
		arr = cJSON_AddArrayToObject(root, "mask_heads");
		for (int h = 0; h < m->cfg.n_head; h++)
			if (o->mask_heads[h])
				cJSON_AddItemToArray(arr, cJSON_CreateNumber(h));
	}
	arr = cJSON_AddArrayToObject(root, "settings");
	for (int s = 0; s < n_set; s++)
		cJSON_AddItemToArray(arr, report_eval_setting(&r[s]));
	if (per_prompt) {
		cJSON *rows = cJSON_AddArrayToObject(root, "prompts"), *x, *e;

		for (int s = 0; s < n_set; s++) {
			x = report_eval_prompts(&r[s], t);
			while ((e = cJSON_DetachItemFromArray(x, 0)) != NULL)
				cJSON_AddItemToArray(rows, e);
			cJSON_Delete(x);
		}
	}
	return root;
}
