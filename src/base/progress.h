/*
 * progress.h - how long work reports progress and is stopped, in every
 * layer: one callback type and one "stopped" value.
 *
 * Work that takes a while (a batched analysis, a pass with a hook, a fit)
 * calls fl_progress_fn after each unit: what it is doing ("path patching"),
 * done of total units (total 0 when unknown). The callback returns true to
 * ask the work to stop; the work then stops at its next boundary, frees what
 * it allocated and returns FL_STOPPED: not an error (*cause is left alone),
 * and the result is empty (its _clear is harmless, not needed). FL_STOPPED
 * is positive, so `!= 0` still means "no result". A hook (forward.h)
 * returns FL_STOPPED to end a pass early.
 */
#ifndef FL_BASE_PROGRESS_H
#define FL_BASE_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

typedef bool (*fl_progress_fn)(void *ud, const char *what, long done, long total);

/* A callback and its user data; a NULL pointer or fn reports nothing. */
typedef struct {
	fl_progress_fn	 fn;
	void		*ud;
} fl_progress;

#define FL_STOPPED 1

/* The exit status of a command stopped by Ctrl-C: what a shell reports for
 * a process ended by SIGINT (128 + 2). */
#define FL_EXIT_STOPPED 130

/* Reports to p (may be NULL); true when it asks to stop. */
static inline bool
fl_progress_report(const fl_progress *p, const char *what, long done, long total)
{
	return p != NULL && p->fn != NULL && p->fn(p->ud, what, done, total);
}

#endif
