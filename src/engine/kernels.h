/*
 * kernels.h - the numeric kernels of the forward pass between the weight
 * products (those are in linear.h, the threads in pool.h): norms,
 * attention, activations, softmax. Outputs first, then inputs, then sizes.
 * Each fast kernel (vectorised loops, BLIS for long prompts' attention) has
 * a naive path that the tests compare it with. The caller owns every
 * buffer; nothing fails.
 */
#ifndef FL_KERNELS_H
#define FL_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* LayerNorm in two steps, so that a hook can read or freeze the scale in
 * between: stats gives each row's mean and scale = sqrt(var + eps)
 * (TransformerLens' hook_scale); apply computes
 * out (T, D) = (x - mean) / scale * w + b (b may be NULL). out may equal x.
 * RMSNorm is the same apply after rms_stats: mean 0 and
 * scale = sqrt(mean(x^2) + eps), so hook_scale keeps one meaning. */
void kern_ln_stats(float *mean, float *scale, const float *x, int T, int D, float eps);
void kern_rms_stats(float *mean, float *scale, const float *x, int T, int D, float eps);
void kern_ln_apply(float *out, const float *x, const float *mean,
    const float *scale, const float *w, const float *b, int T, int D);

/* From this many rows on, the attention kernels call BLIS. */
#define KERN_ATTN_BLAS_MIN 96

/* One head's causal attention scores: sc (T, T) with sc[i][j] =
 * scale * q_i . k_j for j <= i and -INFINITY above the diagonal; q and k
 * rows are dh floats with row stride ld. */
void kern_attn_scores(float *sc, const float *q, const float *k, int ld, int T,
    int dh, float scale);

/* z (T, dh) with row stride ld = P (T, T) . v (T, dh) with row stride ld.
 * causal: P is 0 above the diagonal (as the softmax of kern_attn_scores
 * leaves it), which the products then skip; false reads all of P (a hook
 * may have edited the pattern). */
void kern_attn_mix(float *z, const float *P, const float *v, int ld, int T, int dh,
    bool causal);

/* The same for the last n of T positions alone (queries at positions
 * T - n .. T - 1, keys and values of all T): sc and P are (n, T), q and z
 * n rows, k and v T rows. n = T is the functions above. */
void kern_attn_scores_at(float *sc, const float *q, const float *k, int ld, int n,
    int T, int dh, float scale);
void kern_attn_mix_at(float *z, const float *P, const float *v, int ld, int n,
    int T, int dh, bool causal);

void kern_activation(float *x, size_t n, fl_act_fn act);

/* The activation y (n) of x and its derivative dy (n) there, for the
 * backward pass; _ref in double, one value at a time (the reference, and
 * the slow activations' path). */
void kern_activation_grad(float *y, float *dy, const float *x, size_t n,
    fl_act_fn act);
void kern_activation_grad_ref(float *y, float *dy, const float *x, size_t n,
    fl_act_fn act);

/* In-place softmax of n values; -INFINITY entries get 0, and a row of
 * -INFINITY alone (every key masked) all 0. A NaN anywhere in the row makes
 * every value NaN, as torch.softmax does: a NaN weight must not turn into a
 * plausible pattern of zeros. */
void kern_softmax(float *x, int n);

/* The sum over i of exp(x[i] - shift), sixteen exponentials at a time,
 * added in float over blocks of 1024 and the blocks in double (relative
 * error about 1e-7; arguments below -87 count as exp(-87)): a softmax
 * normaliser over a vocabulary. */
double kern_exp_sum(const float *x, int n, float shift);

/* Hugging Face's rotary table for positions 0..S-1 of heads of dh: cs and
 * sn (S, dh / 2), one (cos, sin) per position and pair i (i pairs with
 * i + dh / 2), in its float32 steps. */
void kern_rope_table(float *cs, float *sn, int S, int dh, float theta);

#endif
