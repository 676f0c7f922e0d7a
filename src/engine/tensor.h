/*
 * tensor.h - how the weights of a linear layer or a table sit in memory,
 * whatever model they come from: the types the loader fills (model.h) and
 * the kernels read (linear.h, kernels.h). They point into memory the model
 * owns (the mapping or its converted buffer) and own nothing.
 *
 * Matmul orientation, written down once. Every linear layer computes
 *     y (T, out) = x (T, in) . W + b
 * where W is the logical (in, out) matrix. How W sits in memory:
 *   - GPT-2 stores Conv1D weights as (in, out), row-major: trans = false,
 *     element W[i][o] at w[i * ld + o]. The fused c_attn (D, 3D) is three
 *     linears q, k, v that share one buffer with ld = 3D.
 *   - OPT and Llama store nn.Linear weights as (out, in): trans = true,
 *     element W[i][o] at w[o * ld + i].
 * A table (the token embedding, the unembedding) is (rows, cols) row-major.
 */
#ifndef FL_TENSOR_H
#define FL_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "st.h"

/* How a linear's weights are stored. F32 is 0, so that a zeroed or
 * positionally initialised fl_linear is f32. */
typedef enum {
	FL_DTYPE_F32,
	FL_DTYPE_F16,
	FL_DTYPE_BF16
} fl_dtype;

typedef struct {
	const void	*w;	/* elements of dtype; see the orientation note above */
	const float	*b;	/* (out), or NULL */
	int		 in;
	int		 out;
	int		 ld;	/* in elements */
	bool		 trans;
	fl_dtype	 dtype;
	/* The same weights again, laid out for the product kernels
	 * (kern_linear_pack), or NULL: only the kernels read it. */
	const void	*pk;
} fl_linear;

/* A (rows, cols) row-major table of dtype: the token embedding and the
 * unembedding, (V, P). */
typedef struct {
	const void	*w;
	int		 rows, cols;
	fl_dtype	 dtype;
	/* The same rows again, laid out for the product kernels
	 * (kern_unembed_pack), or NULL: only kern_unembed reads it. */
	const void	*pk;
} fl_table;

/* Bytes of one element of dtype. */
static inline size_t
fl_dtype_size(fl_dtype dt)
{
	return dt == FL_DTYPE_F32 ? 4 : 2;
}

/* The element of the logical (in, out) matrix at row i, column o, as f32,
 * whatever the storage: for the rare reader that needs single weights (the
 * kernels' naive twins, a product by the transpose for one row). */
static inline float
linear_weight(const fl_linear *lin, int i, int o)
{
	size_t at = lin->trans ? (size_t)o * lin->ld + i : (size_t)i * lin->ld + o;
	const uint8_t *p = (const uint8_t *)lin->w + at * fl_dtype_size(lin->dtype);
	uint32_t bits;
	float f;

	switch (lin->dtype) {
	case FL_DTYPE_F16:
		return st_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
	case FL_DTYPE_BF16:
		bits = (uint32_t)(p[0] | p[1] << 8) << 16;
		memcpy(&f, &bits, sizeof f);
		return f;
	default:
		memcpy(&f, p, sizeof f);
		return f;
	}
}

/* The rows [i0, i0 + n) of the logical (in, out) matrix as a linear n -> out
 * of its own, without the bias (which belongs to the whole product): one
 * head's slice of an output projection. Points into lin's weights. */
static inline fl_linear
linear_in_rows(const fl_linear *lin, int i0, int n)
{
	fl_linear s = *lin;
	size_t at = lin->trans ? (size_t)i0 : (size_t)i0 * lin->ld;

	s.w = (const char *)lin->w + at * fl_dtype_size(lin->dtype);
	s.b = NULL;
	s.in = n;
	s.pk = NULL;
	return s;
}

/* Row r of t (t->cols values) as f32 into out. */
void table_row(const fl_table *t, int r, float *out);

#endif
