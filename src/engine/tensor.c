/* tensor.c - see tensor.h. */
#include "autoconfig.h"

#include "tensor.h"

void
table_row(const fl_table *t, int r, float *out)
{
	size_t es = fl_dtype_size(t->dtype);
	const uint8_t *p = (const uint8_t *)t->w + (size_t)r * t->cols * es;

	switch (t->dtype) {
	case FL_DTYPE_F16:
		st_to_f32(out, p, ST_DTYPE_F16, (size_t)t->cols);
		break;
	case FL_DTYPE_BF16:
		st_to_f32(out, p, ST_DTYPE_BF16, (size_t)t->cols);
		break;
	default:
		memcpy(out, p, (size_t)t->cols * es);
		break;
	}
}
