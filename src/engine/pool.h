/*
 * pool.h - the threads the kernels run on: one small pool of workers for
 * the weight products of linear.h, the attention's heads (BLIS,
 * single-threaded, inside the parts) and any work between them. The pool
 * is process-wide, grown on demand and never freed; jobs are issued from
 * one thread at a time.
 */
#ifndef FL_POOL_H
#define FL_POOL_H

#include <stddef.h>

/* Threads the products and our own loops may use; 0 or less means all
 * cores. BLIS itself runs single-threaded inside the parts. */
void kern_set_threads(int n);
int kern_threads(void);

/* The name of the kernels BLIS uses ("skx", "zen3", "generic"...): skx
 * when the CPU has AVX-512 and BLIS_ARCH_TYPE is unset, else BLIS's own
 * choice or the user's. Static storage. */
const char *kern_blas_kernels(void);

/* One part of a job of nparts parts. */
typedef void (*kern_task)(void *ctx, int part, int nparts);

/* Runs fn(ctx, part, nparts) for every part of a job of `units` pieces
 * (strips, rows, sequences), nparts being at most units, on the threads:
 * the caller takes parts too and returns when all are done. For work
 * between the products that would otherwise leave the workers idle; fn
 * must not call kern_for or the products itself (kern_linear and
 * kern_unembed use the same threads; the attention kernels for fewer than
 * 96 rows do not). Cannot fail; a worker thread that cannot be started is
 * fatal (fl_fatal). */
void kern_for(kern_task fn, void *ctx, int units);

/* The items [*a, *b) of n that part `part` of nparts takes in kern_for. */
static inline void
kern_part_range(int n, int part, int nparts, int *a, int *b)
{
	int per = (n + nparts - 1) / nparts;

	*a = part * per < n ? part * per : n;
	*b = *a + per < n ? *a + per : n;
}

/* The same for n values cut at multiples of grain (kern_grains(n, grain)
 * units): part `part` takes values [*lo, *hi). */
static inline int
kern_grains(size_t n, size_t grain)
{
	return (int)((n + grain - 1) / grain);
}

static inline void
kern_part_span(size_t n, size_t grain, int part, int nparts, size_t *lo,
    size_t *hi)
{
	int a, b;

	kern_part_range(kern_grains(n, grain), part, nparts, &a, &b);
	*lo = (size_t)a * grain;
	*hi = (size_t)b * grain < n ? (size_t)b * grain : n;
}

#endif
