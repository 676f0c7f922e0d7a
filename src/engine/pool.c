/* pool.c - see pool.h. */
#include "autoconfig.h"

#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/util.h"

/* From BLIS; Debian ships its header only in the blis-openmp include dir. */
extern void bli_thread_set_num_threads(int64_t n);
extern int bli_arch_query_id(void);
extern const char *bli_arch_string(int id);

static int kern_nthreads = 1;

/* BLIS's kernels, chosen before its first call. Debian's BLIS 0.9 does not
 * know Zen 4 and 5 and takes its zen3 (AVX2) or generic kernels there,
 * 1.8-5x slower than its skx (AVX-512) ones on the same CPU (perf-notes:
 * 238 and 78 against 425 GFLOP/s for sgemm 2048^3 on 2 threads). So when
 * the CPU has the AVX-512 subsets the skx kernels use and the user has not
 * chosen, BLIS gets skx: BLIS_ARCH_TYPE, read once at its first call, 0
 * being skx in BLIS 0.9's numbering. Elsewhere BLIS chooses itself. */
static void
blas_choose_kernels(void)
{
	static bool done;

	if (done)
		return;
	done = true;
#if defined(__x86_64__) && defined(__GNUC__)
	if (getenv("BLIS_ARCH_TYPE") == NULL &&
	    __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
	    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
	    __builtin_cpu_supports("avx512cd"))
		setenv("BLIS_ARCH_TYPE", "0", 0);
#endif
}

const char *
kern_blas_kernels(void)
{
	blas_choose_kernels();
	return bli_arch_string(bli_arch_query_id());
}

void
kern_set_threads(int n)
{
	if (n <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		n = c > 0 ? (int)c : 1;
	}
	kern_nthreads = n;
	/* One pool of threads: BLIS runs single-threaded inside our workers'
	 * parts (the attention's heads), so that its OpenMP threads never spin
	 * beside ours (perf-notes: 20 % of a 256-token pass in libgomp). */
	blas_choose_kernels();
	bli_thread_set_num_threads(1);
}

int
kern_threads(void)
{
	return kern_nthreads;
}
/* ---- a small thread pool ---------------------------------------------
 * The weight products run on our own kernels and workers, not BLIS: BLIS
 * packs the weights even for the few rows of a single prompt, which halves
 * the bandwidth there; its OpenMP threads spin badly when the machine is
 * busy; and Debian's BLIS 0.9 falls back to its generic kernels on CPUs it
 * does not know (Zen 5 here: 5x slower than linear.c's kernels at 280 rows,
 * which also beat its zen3 kernels, forced with BLIS_ARCH_TYPE, by 1.3x on
 * the Conv1D orientation). BLIS keeps the attention products of long
 * prompts, one head per part, single-threaded. */

/* Parts per thread: a product is cut into this many parts per thread,
 * which the threads claim one at a time. A worker that wakes late (a
 * virtual CPU idle for a while can take milliseconds) then only leaves
 * the caller more parts to do, instead of a half of the product to wait
 * for. */
#define PARTS_PER_THREAD 4

/* After its last part a worker polls for the next product this long
 * before it sleeps: a pass's products come microseconds apart, and a
 * sleeping worker costs a wake-up per product. */
#define POOL_SPIN_SECONDS 2e-3

/* One product's parts. The word `claim` holds the job's number (high 32
 * bits) and its next unclaimed part (low 32 bits), so that one compare
 * and swap both checks that a part belongs to the job read and takes it.
 * The descriptors alternate between two slots: a job's slot is only
 * rewritten two jobs later, when all its parts are done. */
typedef struct {
	kern_task	 fn;
	void		*ctx;
	atomic_int	 nparts;	/* read before a part is claimed */
	atomic_int	 done;
} pool_job;

static struct {
	pthread_mutex_t	 lock;
	pthread_cond_t	 go;
	pthread_t	*threads;
	int		 n;		/* workers, besides the caller */
	atomic_int	 active;	/* workers that take parts */
	atomic_int	 sleepers;
	atomic_ullong	 claim;
	atomic_int	 caller_cpu;	/* where kern_for last woke sleepers */
	pool_job	 slot[2];
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
	.caller_cpu = -1 };

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Claims and runs parts of the job in `claim` until none is left. */
static void
pool_take(void)
{
	unsigned long long v = atomic_load(&pool.claim);

	for (;;) {
		pool_job *j = &pool.slot[(v >> 32) & 1];
		int part = (int)(v & 0xffffffffu), n = atomic_load(&j->nparts);

		if (part >= n)
			return;
		if (!atomic_compare_exchange_weak(&pool.claim, &v, v + 1))
			continue;
		j->fn(j->ctx, part, n);
		atomic_fetch_add_explicit(&j->done, 1, memory_order_release);
		v = atomic_load(&pool.claim);
	}
}

/* Moves the calling worker off the caller's CPU, if it was woken there.
 * The scheduler puts a woken thread next to its waker when it sees no
 * shared cache between the CPUs (as on our 2-CPU VMs), and only moves it to
 * the idle CPU at a later balancing tick: the first few milliseconds of
 * a pass then ran both threads on one CPU. Leaving the caller's CPU out of
 * the mask for a moment migrates the worker at once; the full mask comes
 * back right after. */
static void
pool_leave_caller(void)
{
#if defined(__linux__)
	int cpu = atomic_load(&pool.caller_cpu);
	cpu_set_t all, other;

	if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getcpu() != cpu ||
	    sched_getaffinity(0, sizeof all, &all) != 0)
		return;
	other = all;
	CPU_CLR(cpu, &other);
	if (CPU_COUNT(&other) > 0 && sched_setaffinity(0, sizeof other, &other) == 0)
		sched_setaffinity(0, sizeof all, &all);
#endif
}

static void *
pool_worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	unsigned seen = 0;

	for (;;) {
		unsigned job = (unsigned)(atomic_load(&pool.claim) >> 32);
		double t0;

		if (job != seen) {
			seen = job;
			if (id <= atomic_load(&pool.active))
				pool_take();
			continue;
		}
		t0 = fl_now();
		for (int i = 1; job == seen; i++) {
			cpu_relax();
			job = (unsigned)(atomic_load(&pool.claim) >> 32);
			if (i % 256 == 0 && fl_now() - t0 > POOL_SPIN_SECONDS)
				break;
		}
		if (job != seen)
			continue;
		/* Sleep; kern_for wakes the sleepers after publishing a
		 * job, and both sides' sequentially consistent store-then-load
		 * means that one of them sees the other. */
		pthread_mutex_lock(&pool.lock);
		atomic_fetch_add(&pool.sleepers, 1);
		while ((unsigned)(atomic_load(&pool.claim) >> 32) == seen)
			pthread_cond_wait(&pool.go, &pool.lock);
		atomic_fetch_sub(&pool.sleepers, 1);
		pthread_mutex_unlock(&pool.lock);
		pool_leave_caller();
	}
	return NULL;
}

static void
pool_grow(int workers)
{
	if (workers > pool.n) {
		pool.threads = xreallocarray(pool.threads, (size_t)workers,
		    sizeof *pool.threads);
		for (int i = pool.n; i < workers; i++) {
			pthread_attr_t attr;

			pthread_attr_init(&attr);
			pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			if (pthread_create(&pool.threads[i], &attr, pool_worker,
			    (void *)(intptr_t)(i + 1)) != 0)
				fl_fatal("cannot start a worker thread");
			pthread_attr_destroy(&attr);
		}
		pool.n = workers;
	}
	atomic_store(&pool.active, workers);
}

/* Runs fn(ctx, part, nparts) for every part, nparts being at most units
 * (the task's natural pieces: strips, rows) and PARTS_PER_THREAD per
 * thread. The caller takes parts too, then waits for the parts the
 * workers took: polling first, then yielding the CPU, never blocking, so
 * that a worker preempted on a busy machine gets the CPU back. Products
 * are issued from one thread at a time. */
void
kern_for(kern_task fn, void *ctx, int units)
{
	int nparts = kern_nthreads * PARTS_PER_THREAD;
	unsigned long long job;
	pool_job *j;

	if (nparts > units)
		nparts = units;
	if (kern_nthreads <= 1 || nparts <= 1) {
		for (int p = 0; p < nparts; p++)
			fn(ctx, p, nparts);
		return;
	}
	if (atomic_load(&pool.active) != kern_nthreads - 1)
		pool_grow(kern_nthreads - 1);
	job = ((atomic_load(&pool.claim) >> 32) + 1) & 0xffffffffu;
	j = &pool.slot[job & 1];
	j->fn = fn;
	j->ctx = ctx;
	atomic_store(&j->nparts, nparts);
	atomic_store(&j->done, 0);
	atomic_store(&pool.claim, job << 32);
	if (atomic_load(&pool.sleepers) > 0) {
#if defined(__linux__)
		atomic_store(&pool.caller_cpu, sched_getcpu());
#endif
		pthread_mutex_lock(&pool.lock);
		pthread_cond_broadcast(&pool.go);
		pthread_mutex_unlock(&pool.lock);
	}
	pool_take();
	for (int i = 1; atomic_load_explicit(&j->done, memory_order_acquire) <
	    nparts; i++) {
		if (i < 4096)
			cpu_relax();
		else
			sched_yield();
	}
}
