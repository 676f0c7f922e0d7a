/*
 * linear.h - the weight products: a linear layer over rows of activations,
 * and the unembedding. Our own vectorised kernels on the pool's threads
 * (pool.h), reading f32, f16 or bf16 weights as stored (tensor.h) and
 * summing in f32 in the same order whatever the dtype. Outputs first, then
 * inputs, then sizes; each has a naive *_ref twin, in double, that the
 * tests compare it with. The caller owns every buffer; nothing fails.
 */
#ifndef FL_LINEAR_H
#define FL_LINEAR_H

#include <stdbool.h>

#include "tensor.h"

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

/* The kernels' own layout of a (in, out) linear's weights (trans false):
 * its full strips of output columns, each strip's in rows contiguous, so
 * that a product reads the weights in the order they lie (the rows of the
 * original are a whole output width apart, a page or more for GPT-2, where
 * the hardware prefetchers stop). kern_linear_pack_bytes is the size of
 * the copy (0: nothing to gain, (out, in) weights or narrower than a
 * strip); kern_linear_pack writes it to dst (64-byte aligned), in the
 * weights' dtype, and sets lin->pk. The narrower last strip is laid out
 * too when it is a whole number of vectors; columns past that (an output
 * width that is not a multiple of the vector) are still read from lin->w. */
size_t kern_linear_pack_bytes(const fl_linear *lin);
void kern_linear_pack(fl_linear *lin, void *dst);

/* From how many rows f32 products go to BLIS's sgemm instead of the
 * streaming kernels; 0 or less: never (the default, unless the
 * environment's FACTLENS_BLAS_ROWS, read at the first product, says
 * otherwise). Call before the products, from the thread that issues them. */
void kern_blas_rows_set(int rows);

/* logits (T, V) = x (T, D) . U^T with U (V, D) row-major, of any dtype. */
void kern_unembed(float *logits, const float *x, const fl_table *U, int T);
/* The unembedding's rows laid out as the columns of an (in, out) linear
 * in the kernels' layout (kern_linear_pack's), so that every row count
 * runs the strip kernels instead of dot products of the rows as stored:
 * kern_unembed_pack_bytes is the size of the copy (the columns up to the
 * last whole vector; the rest are read from U->w), kern_unembed_pack
 * writes it to dst (64-byte aligned), in U's dtype, and sets U->pk. */
size_t kern_unembed_pack_bytes(const fl_table *U);
void kern_unembed_pack(fl_table *U, void *dst);
void kern_unembed_ref(float *logits, const float *x, const fl_table *U, int T);

#endif
