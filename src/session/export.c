/* export.c - the session's results as a JSON or CSV file (:export). See
 * session.h. */
#include "autoconfig.h"

#include "session/internal.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "analysis/attrib.h"
#include "analysis/report.h"
#include "analysis/batch.h"
#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "analysis/movers.h"
#include "engine/kernels.h"
#include "engine/pool.h"
#include "engine/readout.h"
#include "base/paths.h"
#include "base/util.h"

/* ---- export ------------------------------------------------------- */

static cJSON *
json_token(const ui_session *s, int id)
{
	return report_token(s->model->tok, id, NULL, s->model->cfg.n_vocab);
}

static cJSON *
json_row(const ui_session *s, const ui_lens_row *r, bool component)
{
	cJSON *o = cJSON_CreateObject(), *top = cJSON_AddArrayToObject(o, "top");

	for (int i = 0; i < r->n_top; i++) {
		cJSON *t = json_token(s, r->top_ids[i]);

		cJSON_AddNumberToObject(t, component ? "logit" : "prob", r->top_val[i]);
		cJSON_AddItemToArray(top, t);
	}
	if (!component && !isnan(r->prob))
		cJSON_AddNumberToObject(o, "answer_prob", r->prob);
	cJSON_AddNumberToObject(o, "answer_rank", r->rank);
	return o;
}

/* Whether path names a CSV file (by its extension, any case). */
static bool
export_is_csv(const char *path)
{
	size_t n = strlen(path);

	return n > 4 && strcasecmp(path + n - 4, ".csv") == 0;
}

/* The lens rows, then a row per head, named lens and heads (B's: lens_b
 * and heads_b). */
/* The export's columns before the eval's, "row" included; and the empty
 * eval fields that end its other rows when an eval is kept. */
#define CSV_COLUMNS 13
#define EVAL_TAIL ",,,,,,,,,,,,,,,,"
_Static_assert(sizeof EVAL_TAIL - 1 == REPORT_EVAL_CSV_NCOL, "an empty field per eval column");

static void
csv_rows(FILE *f, const ui_session *s, const char *lens, const char *heads,
    const char *tail)
{
	int L = s->model->cfg.n_layer, H = s->model->cfg.n_head;

	for (int l = 0; l <= L; l++) {
		const ui_lens_row *r = &s->streams[l];

		fprintf(f, "%s,%d,%s,,", lens, l < L ? l : L - 1, l < L ? "resid_pre" :
		    "resid_post");
		if (r->n_top > 0) {
			cJSON *t = json_token(s, r->top_ids[0]);

			report_csv_text(f, cJSON_GetObjectItem(t, "token")->valuestring, false);
			report_csv_text(f, cJSON_GetObjectItem(t, "bytes")->valuestring, false);
			cJSON_Delete(t);
		} else
			fputs(",,", f);
		report_csv_number(f, r->prob, false);
		fprintf(f, "%d,,,,,%s\n", r->rank, tail);
	}
	for (int i = 0; i < L * H; i++) {
		fprintf(f, "%s,%d,,%d,,,,,", heads, i / H, i % H);
		report_csv_number(f, s->attn_subj[i], false);
		report_csv_number(f, s->direct[i], false);
		report_csv_number(f, s->direct_subj[i], false);
		report_csv_number(f, s->mover[i], false);
		report_csv_number(f, s->patch_valid ? s->patch.effect[i] : NAN,
		    *tail == '\0');
		if (*tail != '\0')	/* the field's comma is the tail's first */
			fprintf(f, "%s\n", tail + 1);
	}
}

static void csv_flow(FILE *f, const ui_session *s, const char *tail);

/* :export FILE.csv: the lens rows, then a row per head, under one header
 * (report.h's CSV, with the JSON's field names). */
static int
export_csv(ui_session *s, const char *path, char **cause)
{
	int rc = 0;
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return fl_error(cause, "export: %s: cannot create: %s", path, strerror(errno));
	/* With an eval, its columns follow (report.h), its rows last. */
	const char *tail = s->eval_valid ? EVAL_TAIL : "";

	fputs("row,layer,stream,head,top,top_bytes,answer_prob,answer_rank,"
	    "attn_to_subject,direct_to_answer,direct_to_subject,mover_score,"
	    "path_patching_effect", f);
	fputs(s->eval_valid ? "," REPORT_EVAL_CSV_COLUMNS "\n" : "\n", f);
	csv_rows(f, s, "lens", "heads", tail);
	if (s->cmp != NULL)
		csv_rows(f, s->cmp, "lens_b", "heads_b", tail);
	csv_flow(f, s, tail);
	if (s->eval_valid)
		report_eval_csv_rows(f, &s->eval, 1, s->task, "eval_", CSV_COLUMNS - 1);
	if (ferror(f))
		rc = fl_error(cause, "export: %s: write error", path);
	if (fclose(f) != 0 && rc == 0)
		rc = fl_error(cause, "export: %s: write error", path);
	return rc;
}

/* The lens rows and every heads grid of s into o. */
static void
json_results(const ui_session *s, cJSON *root)
{
	int L = s->model->cfg.n_layer, H = s->model->cfg.n_head;
	cJSON *arr, *o;

	arr = cJSON_AddArrayToObject(root, "lens");
	for (int l = 0; l <= L; l++) {
		o = json_row(s, &s->streams[l], false);
		cJSON_AddStringToObject(o, "stream", l < L ? "resid_pre" : "resid_post");
		cJSON_AddNumberToObject(o, "layer", l < L ? l : L - 1);
		cJSON_AddItemToArray(arr, o);
	}
	o = cJSON_AddObjectToObject(root, "heads");
	cJSON_AddItemToObject(o, "attn_to_subject", report_grid_f(s->attn_subj, L, H));
	cJSON_AddItemToObject(o, "direct_to_answer", report_grid_f(s->direct, L, H));
	cJSON_AddItemToObject(o, "direct_to_subject", report_grid_f(s->direct_subj, L, H));
	cJSON_AddItemToObject(o, "mover_score", report_grid_f(s->mover, L, H));
	arr = cJSON_AddArrayToObject(o, "movers");
	for (int i = 0; i < L * H; i++)
		if (s->is_mover[i]) {
			cJSON *mh = cJSON_CreateObject();

			cJSON_AddNumberToObject(mh, "layer", i / H);
			cJSON_AddNumberToObject(mh, "head", i % H);
			cJSON_AddItemToArray(arr, mh);
		}
	if (s->patch_valid)
		cJSON_AddItemToObject(o, "path_patching_effect",
		    report_grid_d(s->patch.effect, L, H));
	if (s->atp_valid) {
		cJSON *aj = cJSON_AddObjectToObject(root, "atp");

		cJSON_AddItemToObject(aj, "corrupt", report_string(s->atp_corrupt));
		cJSON_AddItemToObject(aj, "distractor", s->atp.o.distractor >= 0 ?
		    json_token(s, s->atp.o.distractor) : cJSON_CreateNull());
		cJSON_AddNumberToObject(aj, "clean", s->atp.clean);
		cJSON_AddNumberToObject(aj, "corrupted", s->atp.corrupt);
		cJSON_AddItemToObject(aj, "heads", report_grid_d(s->atp.heads, L, H));
		if (s->atp_exact != NULL)
			cJSON_AddItemToObject(aj, "exact", report_grid_d(s->atp_exact,
			    L, H));
	}
}

/* A grid's difference b - a (L x H) as JSON. */
static cJSON *
json_grid_diff(const float *a, const float *b, int L, int H)
{
	float *d = xmalloc((size_t)L * H * sizeof *d);
	cJSON *o;

	for (int i = 0; i < L * H; i++)
		d[i] = b[i] - a[i];
	o = report_grid_f(d, L, H);
	free(d);
	return o;
}

/* :compare's B (its prompt, toggles, subject, answer, lens and grids) and
 * B minus A of the answer's probability and rank per stream and of each
 * grid. */
static void
json_compare(ui_session *s, cJSON *root)
{
	ui_session *b = s->cmp;
	int L = s->model->cfg.n_layer, H = s->model->cfg.n_head;
	cJSON *cj = cJSON_AddObjectToObject(root, "compare"), *bj, *o, *d, *pa, *ra;

	sess_movers_ensure(b);
	cJSON_AddStringToObject(cj, "kind", compare_name(s->compare));
	bj = cJSON_AddObjectToObject(cj, "b");
	cJSON_AddItemToObject(bj, "prompt", report_string(b->prompt));
	cJSON_AddBoolToObject(bj, "final_mask", b->mask);
	cJSON_AddBoolToObject(bj, "intercept_removed", b->intercept && b->intercept_vec != NULL);
	o = json_token(b, b->answer_id);
	cJSON_AddNumberToObject(o, "prob", b->streams[L].prob);
	cJSON_AddNumberToObject(o, "rank", b->streams[L].rank);
	cJSON_AddItemToObject(bj, "answer", o);
	if (b->subject_pos >= 0) {
		o = json_token(b, b->ids[b->subject_pos]);
		cJSON_AddNumberToObject(o, "position", b->subject_pos);
		cJSON_AddBoolToObject(o, "guessed", b->subject_guessed);
		cJSON_AddItemToObject(bj, "subject", o);
	}
	json_results(b, bj);
	d = cJSON_AddObjectToObject(cj, "b_minus_a");
	pa = cJSON_AddArrayToObject(d, "answer_prob");
	ra = cJSON_AddArrayToObject(d, "answer_rank");
	for (int l = 0; l <= L; l++) {
		cJSON_AddItemToArray(pa, report_number(b->streams[l].prob - s->streams[l].prob));
		cJSON_AddItemToArray(ra, cJSON_CreateNumber(b->streams[l].rank -
		    s->streams[l].rank));
	}
	o = cJSON_AddObjectToObject(d, "heads");
	cJSON_AddItemToObject(o, "attn_to_subject", json_grid_diff(s->attn_subj,
	    b->attn_subj, L, H));
	cJSON_AddItemToObject(o, "direct_to_answer", json_grid_diff(s->direct,
	    b->direct, L, H));
	cJSON_AddItemToObject(o, "direct_to_subject", json_grid_diff(s->direct_subj,
	    b->direct_subj, L, H));
	cJSON_AddItemToObject(o, "mover_score", json_grid_diff(s->mover, b->mover, L, H));
}

/* The flow pane's map or curves while it shows them: "trace" with
 * factlens trace --json's fields, or "knockout" (each block's P per start
 * layer, null for a block the prompt has not). */
static void
json_flow(const ui_session *s, cJSON *root)
{
	int L = s->model->cfg.n_layer;
	cJSON *o, *n;

	if (s->flow == FLOW_TRACE && s->flow_map != NULL) {
		const fl_trace *tr = s->flow_map;

		o = cJSON_AddObjectToObject(root, "trace");
		cJSON_AddStringToObject(o, "kind", trace_kind_name(tr->kind));
		cJSON_AddNumberToObject(o, "window", tr->window);
		n = cJSON_AddObjectToObject(o, "noise");
		cJSON_AddNumberToObject(n, "scale", tr->scale);
		cJSON_AddNumberToObject(n, "seed", (double)s->flow_o.seed);
		cJSON_AddNumberToObject(n, "samples", tr->samples);
		n = cJSON_AddObjectToObject(o, "subject");
		cJSON_AddNumberToObject(n, "position", tr->subj_pos);
		cJSON_AddNumberToObject(n, "tokens", tr->subj_len);
		cJSON_AddItemToObject(o, "p_clean", report_number(tr->p_clean));
		cJSON_AddItemToObject(o, "p_corrupt", report_number(tr->p_corrupt));
		cJSON_AddItemToObject(o, "restore", report_grid_d(tr->restore, L,
		    tr->n_tok));
	} else if (s->flow == FLOW_KNOCKOUT && s->knock_valid) {
		o = cJSON_AddObjectToObject(root, "knockout");
		cJSON_AddNumberToObject(o, "window", s->knock_window);
		cJSON_AddItemToObject(o, "p_clean", report_number(s->knock_clean));
		for (int k = 0; k < KNOCK_BLOCK_COUNT; k++)
			cJSON_AddItemToObject(o, knock_block_name((fl_knock_block)k),
			    report_grid_d(s->knock + (size_t)k * L, 1, L));
	}
}

/* The same as CSV rows: "trace" (the layer, the restored point in stream,
 * the position in head, its token in top, the restored run's P in
 * answer_prob), or "knockout" (the start layer, the block in stream, P). */
static void
csv_flow(FILE *f, const ui_session *s, const char *tail)
{
	int L = s->model->cfg.n_layer;

	if (s->flow == FLOW_TRACE && s->flow_map != NULL) {
		const fl_trace *tr = s->flow_map;
		const char *pt = tr->kind == TRACE_RESID ? "resid_pre" : tr->kind ==
		    TRACE_MLP ? "mlp_out" : "attn_out";

		for (int l = 0; l < L; l++)
			for (int t = 0; t < tr->n_tok; t++) {
				cJSON *tj = json_token(s, s->ids[t]);

				fprintf(f, "trace,%d,%s,%d,", l, pt, t);
				report_csv_text(f, cJSON_GetObjectItem(tj, "token")->valuestring,
				    false);
				report_csv_text(f, cJSON_GetObjectItem(tj, "bytes")->valuestring,
				    false);
				cJSON_Delete(tj);
				report_csv_number(f, tr->restore[(size_t)l * tr->n_tok + t], false);
				fprintf(f, ",,,,,%s\n", tail);
			}
	} else if (s->flow == FLOW_KNOCKOUT && s->knock_valid)
		for (int k = 0; k < KNOCK_BLOCK_COUNT; k++)
			for (int l = 0; l < L; l++) {
				fprintf(f, "knockout,%d,%s,,,,", l, knock_block_name(
				    (fl_knock_block)k));
				report_csv_number(f, s->knock[(size_t)k * L + l], false);
				fprintf(f, ",,,,,%s\n", tail);
			}
}

int
session_export(ui_session *s, const char *path, char **cause)
{
	cJSON *root, *arr, *o;
	FILE *f;
	int L, rc = 0;

	if (!session_ready(s))
		return fl_error(cause, "export: nothing to export yet (no model or prompt)");
	sess_movers_ensure(s);	/* the grids are exported whichever is shown */
	if (s->cmp != NULL && session_ready(s->cmp))
		sess_movers_ensure(s->cmp);
	if (export_is_csv(path))
		return export_csv(s, path, cause);
	L = s->model->cfg.n_layer;
	root = cJSON_CreateObject();
	cJSON_AddItemToObject(root, "model", report_string(s->model_dir));
	cJSON_AddItemToObject(root, "prompt", report_string(s->prompt));
	arr = cJSON_AddArrayToObject(root, "tokens");
	for (int t = 0; t < s->n_tok; t++)
		cJSON_AddItemToArray(arr, json_token(s, s->ids[t]));
	o = json_token(s, s->answer_id);
	cJSON_AddBoolToObject(o, "top_prediction", s->answer_text == NULL);
	cJSON_AddNumberToObject(o, "prob", s->streams[L].prob);
	cJSON_AddNumberToObject(o, "rank", s->streams[L].rank);
	cJSON_AddNumberToObject(o, "base_prob", s->base_final.prob);
	cJSON_AddNumberToObject(o, "base_rank", s->base_final.rank);
	cJSON_AddItemToObject(root, "answer", o);
	if (s->subject_pos >= 0) {
		o = json_token(s, s->ids[s->subject_pos]);
		cJSON_AddNumberToObject(o, "position", s->subject_pos);
		cJSON_AddItemToObject(root, "subject", o);
	}
	cJSON_AddBoolToObject(root, "final_mask", s->mask);
	cJSON_AddBoolToObject(root, "intercept_removed", s->intercept && s->intercept_vec != NULL);
	json_results(s, root);
	if (s->cmp != NULL && session_ready(s->cmp))
		json_compare(s, root);
	if (s->task != NULL)
		cJSON_AddItemToObject(root, "task", report_string(s->task->name));
	if (s->task != NULL && s->decomp_valid != NULL && s->decomp_valid[s->layer]) {
		const fl_decomp *d = &s->decomp[s->layer];
		cJSON *dj = cJSON_AddObjectToObject(root, "decomposition"), *b;

		cJSON_AddNumberToObject(dj, "layer", d->layer);
		cJSON_AddNumberToObject(dj, "prompts", d->fit.n);
		cJSON_AddStringToObject(dj, "form", "pooled");
		cJSON_AddItemToObject(dj, "r2", report_number(d->fit.r2));
		cJSON_AddItemToObject(dj, "r2_heldout", report_number(d->heldout.r2));
		cJSON_AddItemToObject(dj, "mean_cos", report_number(d->fit.mean_cos));
		cJSON_AddItemToObject(dj, "baseline_cos", report_number(d->fit.baseline_cos));
		cJSON_AddStringToObject(dj, "regressors", d->with_resid ?
		    "heads 0..H-1, then resid_pre" : "heads 0..H-1");
		b = cJSON_AddArrayToObject(dj, "beta");
		for (int j = 0; j < d->fit.J; j++)
			cJSON_AddItemToArray(b, report_number(d->fit.beta[j]));
		if (s->recon_layer == s->layer)
			cJSON_AddItemToObject(dj, "intercept", json_row(s, &s->decomp_icpt, true));
	}
	if (s->eval_valid) {
		cJSON *ej = report_eval_json(s->model_dir, s->model, s->task,
		    &s->eval_opts, &s->eval, 1, true);

		cJSON_AddNumberToObject(ej, "batch", s->eval_opts.batch);
		cJSON_AddNumberToObject(ej, "threads", kern_threads());
		cJSON_AddNumberToObject(ej, "seconds", s->eval.seconds);
		cJSON_AddItemToObject(root, "eval", ej);
	}
	json_flow(s, root);
	o = cJSON_AddObjectToObject(root, "cursor");
	cJSON_AddNumberToObject(o, "layer", s->layer);
	cJSON_AddNumberToObject(o, "head", s->head);
	if (s->view_layer >= 0) {
		cJSON_AddItemToObject(o, "resid_mid", json_row(s, &s->view_mid, false));
		cJSON_AddItemToObject(o, "mlp_out", json_row(s, &s->view_mlp, true));
		cJSON_AddItemToObject(o, "head_out", json_row(s, &s->view_head, true));
	}
	if ((f = fopen(path, "w")) == NULL) {
		cJSON_Delete(root);
		return fl_error(cause, "export: %s: cannot create: %s", path, strerror(errno));
	}
	if (report_write(root, f, NULL) != 0)
		rc = fl_error(cause, "export: %s: write error", path);
	if (fclose(f) != 0 && rc == 0)
		rc = fl_error(cause, "export: %s: write error", path);
	return rc;
}
