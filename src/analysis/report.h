/*
 * report.h - results as JSON, one schema for every command and the
 * explorer's :export.
 *
 * The schema's shared pieces:
 *  - a token is {"id", "token", "bytes"}: "token" its text as valid UTF-8
 *    (a byte that does not start a valid sequence - part of a character
 *    split across tokens - and NUL become U+FFFD), "bytes" its exact bytes
 *    as hex, so nothing is lost; with logits, also "logit" and "prob";
 *  - any text from outside (a prompt, a path) is valid UTF-8 the same way;
 *  - a number that is not defined (NAN) is null; JSON has no NaN;
 *  - a grid of heads is [layers][heads];
 *  - a hook is named by its TransformerLens name for this model
 *    ("blocks.11.hook_resid_post"), never a placeholder.
 *
 * CSV (RFC 4180: a header line, then rows; a field with a comma, a quote or
 * a line break quoted, quotes doubled; text as the JSON's, valid UTF-8;
 * an undefined number an empty field) uses the JSON's field names as its
 * columns (a nested field joined by "_": the lens' answer.prob is
 * answer_prob). A file of several kinds of row has one header, the union of
 * their columns, and a first column "row" saying each row's kind.
 *
 * 95% confidence intervals of a grid's percentages: Wilson's score
 * interval for a top-1 rate (k of n prompts), the normal approximation
 * (mean +- 1.96 s / sqrt(n), s the sample standard deviation, clipped to
 * [0, 1]) for a mean probability; "_lo" and "_hi" after the field's name.
 *
 * Every builder returns a new cJSON item the caller adds to a document (or
 * frees with cJSON_Delete).
 */
#ifndef FL_ANALYSIS_REPORT_H
#define FL_ANALYSIS_REPORT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>

#include "analysis/eval.h"
#include "engine/forward.h"

/* A token of tok; with logits (V), its logit and softmax probability. */
cJSON *report_token(const fl_tokenizer *tok, int id, const float *logits, int V);

/* The k best tokens of a logits row (V), best first, each a token with its
 * logit, and with probs its probability. */
cJSON *report_topk(const fl_tokenizer *tok, const float *logits, int V, int k,
    bool probs);

/* Text from outside as a valid UTF-8 JSON string. */
cJSON *report_string(const char *text);

/* A number, or null for NAN. */
cJSON *report_number(double v);

/* (L, H) values, [layers][heads]; NAN as null. */
cJSON *report_grid_f(const float *g, int L, int H);
cJSON *report_grid_d(const double *g, int L, int H);

/* Where mitigation (b) subtracts the intercept in model m: the name of the
 * last layer's hook (hook_resid_post pre-LN, hook_mlp_out post-LN), into
 * buf. */
const char *report_intercept_hook(const fl_model *m, char *buf, size_t n);

/* One eval setting (a row of shots): prompts, conditions, calibration,
 * work. */
cJSON *report_eval_setting(const fl_eval_result *r);

/* factlens eval --json's object for n_set settings of task t on model m
 * (read from model_dir): the model, the task, the calibration o used, the
 * masked heads (o->mask_heads), the settings and, with per_prompt, the
 * prompts' rows. The caller adds what only it knows (batch, threads,
 * seconds). */
cJSON *report_eval_json(const char *model_dir, const fl_model *m, const fl_task *t,
    const fl_eval_opts *o, const fl_eval_result *r, int n_set, bool per_prompt);

/* The eval grid's rows as JSON: one per prompt and condition, {"shots",
 * "prompt" (its index), "pair", "subject", "template" (its index in the
 * set), "condition", "p_answer", "rank", "top1" (0 or 1)}. */
cJSON *report_eval_prompts(const fl_eval_result *r, const fl_task *t);

/* Wilson's 95% score interval of k successes in n (n > 0; else NAN). */
void report_wilson(int k, int n, double *lo, double *hi);

/* The normal-approximation 95% interval of the mean of x[0..n) (stride
 * apart), clipped to [0, 1]; NAN when n < 2. */
void report_mean_ci(const double *x, int n, int stride, double *lo,
    double *hi);

/* One CSV field, then a comma (or, with last, the line's end). */
void report_csv_text(FILE *f, const char *s, bool last);
void report_csv_number(FILE *f, double v, bool last);	/* NAN: empty */

/* ncol grids of (L, H) values as CSV: a header "layer,head,cols...", then
 * a row per head, layer-major. With row (not NULL) a first column "row"
 * holding it, for files of several kinds of row. */
void report_grid_csv(FILE *f, const char *row, int L, int H, int ncol,
    const char *const *cols, const double *const *grids, bool header);

/* The eval grid of n_set settings as CSV: per-prompt rows ("row" prompt)
 * then the grid's ("row" grid, with the intervals). */
void report_eval_csv(FILE *f, const fl_eval_result *r, int n_set,
    const fl_task *t);

/* The header's columns after "row" (no newline), and the rows alone, for a
 * file that holds other rows too: each row named prefix + "prompt" or
 * prefix + "grid", then skip empty fields (the other rows' columns), then
 * the eval's. */
#define REPORT_EVAL_CSV_COLUMNS "shots,condition,prompt,pair,subject,template," \
	"p_answer,rank,top1,prompts,mean_prob,mean_prob_lo,mean_prob_hi,top1_lo," \
	"top1_hi,mean_rank"
#define REPORT_EVAL_CSV_NCOL 16
void report_eval_csv_rows(FILE *f, const fl_eval_result *r, int n_set,
    const fl_task *t, const char *prefix, int skip);

/* Writes root (freed) to f, pretty-printed, with a newline. 0, or -1 with
 * *cause (out of memory, a write error). */
int report_write(cJSON *root, FILE *f, char **cause);

#endif
