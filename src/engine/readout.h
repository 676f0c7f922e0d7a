/*
 * readout.h - a model's computations outside the forward pass, on vectors
 * the analyses already hold (from a cache or a hook): the final readout,
 * and a layer's pieces (its norm statistics, its MLP, one head's output).
 *
 * The final readout. How a residual stream vector x (D) becomes logits:
 * the final LayerNorm (when cfg.final_ln), then project_out (when the model
 * has one), then the unembedding. The forward pass takes these steps with
 * its hooks between them; the analyses (logit lens, direct contributions,
 * mover scores, path patching, mitigations, decomposition) take them
 * through the functions below, so none of them needs to know which steps a
 * model has.
 *
 * Outputs are caller storage of the stated shapes; nothing here fails.
 */
#ifndef FL_READOUT_H
#define FL_READOUT_H

#include <stdbool.h>

#include "model.h"

/* logits (n, V) of n residual vectors x (n, D). */
void model_readout(const fl_model *m, const float *x, int n, float *logits);

/* The steps after the final LN: logits (n, V) of n vectors x (n, D) that
 * are past it (or that no LN applies to). scratch is (n, P) when the model
 * has project_out, or NULL to allocate one. */
void model_unembed(const fl_model *m, const float *x, int n, float *logits,
    float *scratch);

/* The residual-stream direction of a vocabulary-space direction u (P),
 * such as W_U[:, a] or W_U[:, a] minus the mean row: dir (D) =
 * project_out^T u, or u itself. For x past the final LN, x . dir is the
 * logit (u . logits row). */
void model_unembed_dir(const fl_model *m, const float *u, float *dir);

/* The mean of the unembedding's rows (P), summed in double: computed at
 * the first call (a pass over W_U), then kept with the model; safe to call
 * from several threads. */
const double *model_unembed_mean(const fl_model *m);

/* One direction of the readout, in double: the final LN of x (D) when the
 * model has one, dotted with dir from model_unembed_dir. */
double model_readout_dot(const fl_model *m, const float *x, const float *dir);

/* Each row's norm statistics as the model's norms compute them: LayerNorm
 * (mean, sqrt(var + eps)) or RMSNorm (0, sqrt(mean(x^2) + eps)); apply with
 * kern_ln_apply and the norm's w, b (b NULL for RMSNorm). x is (n, D). */
void model_norm_stats(const fl_model *m, float *mean, float *scale, const float *x,
    int n);

/* model_norm_stats, kern_ln_apply with the model's d_model and
 * kern_activation of N rows (N, F) in place (times up (N, F) when not
 * NULL: a gated MLP) on the pool's threads from 64 rows on, with the same
 * bits as on one. Not from inside a kern_for task (as kern_linear). */
void model_norm_stats_mt(const fl_model *m, float *mean, float *scale,
    const float *x, int N);
void model_ln_apply_mt(const fl_model *m, float *out, const float *x,
    const float *mean, const float *scale, const float *w, const float *b, int N);
void model_activation_mt(const fl_model *m, float *h, const float *up, int N);

/* The MLP of layer l on n rows x (n, D) that are past ln2: y (n, D) =
 * proj(act(fc(x))), gated models proj(act(fc(x)) * up(x)); with
 * accumulate, y += instead. h is (n, F) scratch. */
void model_mlp(const fl_model *m, int l, float *y, const float *x, int n, float *h,
    bool accumulate);

/* The per-head output of head h at one position, from its z row:
 * out (D) = z[h dh .. (h+1) dh) . W_O[h dh .. (h+1) dh, :], no bias. */
void model_head_result(const fl_model *m, int layer, int head, const float *z_row,
    float *out);

#endif
