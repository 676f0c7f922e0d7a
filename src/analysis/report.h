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
 * Every builder returns a new cJSON item the caller adds to a document (or
 * frees with cJSON_Delete).
 */
#ifndef FL_ANALYSIS_REPORT_H
#define FL_ANALYSIS_REPORT_H

#include <cjson/cJSON.h>
#include <stdbool.h>

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

/* Writes root (freed) to f, pretty-printed, with a newline. 0, or -1 with
 * *cause (out of memory, a write error). */
int report_write(cJSON *root, FILE *f, char **cause);

#endif
