/*
 * batch.h - many prompts through the model, packed: each pass runs up to
 * `per_batch` prompts as one packed batch, so the weights are read once per
 * batch instead of once per prompt. The analyses read what they need with
 * hooks; a hook finds its prompt as b->first + act->seq.
 */
#ifndef FL_BATCH_H
#define FL_BATCH_H

#include "analysis/task.h"

/* Progress and stopping: base/progress.h (fl_progress, FL_STOPPED). */

typedef struct {
	const fl_model	*m;
	fl_run		*run;
	int		 per_batch;	/* prompts per pass */
	int		 max_len;	/* tokens of the longest prompt allowed */
	int		 first;		/* index of the current batch's first prompt */
	int		 count;		/* prompts in the current batch */
	int		*ids;		/* (per_batch * max_len) packed ids */
	int		*lens;		/* (per_batch) */
	long		 passes;	/* passes run so far */
	long		 rows;		/* tokens run so far */
	/* Progress, in prompt-passes: batch_run adds each pass's prompts to
	 * done and calls progress, and stops when it returns true. The caller
	 * sets total (and may reset done). */
	fl_progress	 progress;
	const char	*what;		/* what progress is told is being done */
	long		 done, total;
} fl_batch;

/* A batcher for prompts of up to max_len tokens, per_batch (>= 1) at a time.
 * Sized once: the scratch of one pass of per_batch * max_len rows. */
fl_batch *batch_new(const fl_model *m, int per_batch, int max_len);
void batch_free(fl_batch *b);

/* Runs prompts p[0..n) with the given hooks (and pass settings in *base, or
 * NULL: no logits unless a hook on HOOK_LOGITS wants them). A hook that
 * stops a pass ends that batch only. With base->start_layer > 0,
 * base->resume holds the resid_pre of that layer for every token of the n
 * prompts, packed in order (as batch_grab_rows fills it): each batch
 * resumes from its own rows and the earlier layers are not run again.
 * 0; FL_STOPPED when the progress callback asked to stop after a batch
 * (the prompts after it did not run); or -1 with *cause. */
int batch_run(fl_batch *b, const fl_prompt *p, int n, const fl_hook *hooks,
    int n_hooks, const fl_pass *base, char **cause);

/* Runs n passes of one prompt p that each resume at a layer of their own:
 * start(ud, i, &at) gives pass i's start layer (at.layer) and, when it is
 * above 0, at.rows (p->n, D), the resid_pre of that layer to resume from.
 * With at.suffix the pass runs positions at.prefix.rows .. p->n - 1 alone,
 * from at.rows' rows of those positions (at any start layer, 0 included),
 * attention reading the earlier positions' keys and values from
 * at.prefix (forward.h's fl_prefix): hooks see those rows only. The passes
 * come sorted by start layer; up to b->per_batch of one start layer (and
 * one kind) are packed into each engine pass. Before each, *first is set to
 * the index of its first pass, so a hook finds its pass as *first +
 * act->seq. What causal tracing and activation patching run their cells
 * with. 0; FL_STOPPED (as batch_run); or -1 with *cause. */
typedef struct {
	int		 layer;
	const float	*rows;		/* (p->n, D) */
	bool		 suffix;
	fl_prefix	 prefix;	/* with suffix */
} fl_resume;
typedef void (*fl_resume_fn)(void *ud, int i, fl_resume *at);
int batch_run_resumed(fl_batch *b, const fl_prompt *p, int n, fl_resume_fn start,
    void *ud, const fl_hook *hooks, int n_hooks, int *first, char **cause);

/* Tells the progress callback (if any) that done of b->total units are done;
 * true when it asks to stop. For analyses with work between passes. */
bool batch_report(const fl_batch *b, long done);

/* A hook that copies the last row of the activation it sees (the last
 * position for (T, ...) points; the one row of HOOK_LOGITS) into
 * dst + prompt * stride + layer * lstride (layer 0 outside the blocks).
 * width floats are copied: the row's size, or fewer. */
typedef struct {
	const fl_batch	*b;
	float		*dst;
	size_t		 stride;	/* floats per prompt */
	size_t		 lstride;	/* floats per layer */
	int		 width;
} fl_grab;
int batch_grab_last(void *ud, fl_act *a);

/* A hook that copies every row of the activation it sees (width floats
 * each) into dst, the prompts' rows packed in order: prompt i's start at
 * row row_of[i]. */
typedef struct {
	const fl_batch	*b;
	float		*dst;
	const size_t	*row_of;	/* (n) first row of each prompt */
	int		 width;
} fl_grab_rows;
int batch_grab_rows(void *ud, fl_act *a);

/* A hook that stops the pass after the batch's last sequence has been seen
 * at its point: install it after the hooks that must see every sequence. */
int batch_stop_after(void *ud, fl_act *a);	/* ud: the fl_batch */

#endif
