/*
 * kernels.h - the numeric kernels of the forward pass. Outputs first, then
 * inputs, then sizes. Each fast kernel (our own vectorised products, BLIS
 * for long prompts' attention) has a naive *_ref twin or a naive path that
 * the tests compare it with.
 */
#ifndef FL_KERNELS_H
#define FL_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

#include "model.h"

/* Threads BLIS (and our own loops) may use; 0 or less means all cores. */
void kern_set_threads(int n);
int kern_threads(void);

/* Runs fn(ctx, part, nparts) for every part of a job of `units` pieces
 * (strips, rows, sequences), nparts being at most units, on the threads:
 * the caller takes parts too and returns when all are done. For work
 * between the products that would otherwise leave the workers idle; fn
 * must not call kern_for or the products itself (kern_linear and
 * kern_unembed use the same threads; the attention kernels for fewer than
 * 96 rows do not). */
void kern_for(void (*fn)(void *ctx, int part, int nparts), void *ctx, int units);

/* The items [*a, *b) of n that part `part` of nparts takes in kern_for. */
static inline void
kern_part_range(int n, int part, int nparts, int *a, int *b)
{
	int per = (n + nparts - 1) / nparts;

	*a = part * per < n ? part * per : n;
	*b = *a + per < n ? *a + per : n;
}

/* Whether this build widens f16 weights with a hardware instruction (its
 * target has F16C or AVX-512); without, value by value, several times
 * slower than reading f32. */
bool kern_f16_hardware(void);

/* y (T, lin->out) = x (T, lin->in) . W + b, row strides ldy and ldx (in
 * floats). With accumulate, y += x . W + b instead. */
void kern_linear(float *y, int ldy, const float *x, int ldx, const fl_linear *lin,
    int T, bool accumulate);
void kern_linear_ref(float *y, int ldy, const float *x, int ldx,
    const fl_linear *lin, int T, bool accumulate);

/* logits (T, V) = x (T, D) . U^T with U (V, D) row-major, of any dtype. */
void kern_unembed(float *logits, const float *x, const fl_table *U, int T);
void kern_unembed_ref(float *logits, const float *x, const fl_table *U, int T);

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

/* z (T, dh) with row stride ld = P (T, T) . v (T, dh) with row stride ld. */
void kern_attn_mix(float *z, const float *P, const float *v, int ld, int T, int dh);

void kern_activation(float *x, size_t n, fl_act_fn act);

/* In-place softmax of n values; -INFINITY entries get 0. */
void kern_softmax(float *x, int n);

/* The sum over i of exp(x[i] - shift), sixteen exponentials at a time,
 * added in float over blocks of 1024 and the blocks in double (relative
 * error about 1e-7; arguments below -87 count as exp(-87)): a softmax
 * normaliser over a vocabulary. */
double kern_exp_sum(const float *x, int n, float shift);

#endif
