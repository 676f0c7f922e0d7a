/*
 * trace.h - where in layers x positions a fact is carried: causal tracing
 * (ROME, Meng et al. 2022) and attention knockout (Geva et al. 2023).
 *
 * Causal tracing of one prompt, P = P(answer's first token) at the last
 * position (softmax over the whole vocabulary):
 *   - clean run: p_clean;
 *   - corrupted run: Gaussian noise added to the token embeddings at the
 *     subject's positions (hook_embed, before the positions are added; in a
 *     model with project_in, after it), std `scale` (default 3 x the std of
 *     the token embedding matrix's entries, ROME's default); p_corrupt;
 *   - restored runs: the corrupted run with one thing put back to its clean
 *     value, cell (l, t):
 *       resid  blocks.l.hook_resid_pre at position t;
 *       mlp    blocks.l'.hook_mlp_out at position t for every l' of the
 *       attn   (hook_attn_out) window of W layers around l, as ROME centres
 *              it: l' in [max(0, l - W/2), min(L, l + ceil(W/2))).
 * With S noise samples every P above but p_clean is the mean over them.
 * The indirect effect of a cell is restore - p_corrupt.
 *
 * Each restored run resumes from the corrupted run's resid_pre at the first
 * layer it changes (nothing before differs), and runs its positions from
 * the restored one on alone: the earlier positions are the corrupted
 * run's (attention is causal), their keys and values read from its cache
 * (fl_prefix). The runs are packed into batches (fl_batch), sorted by
 * start layer, each joining its batch's pass at its own layer. A cell at a
 * position before the subject restores what the noise never reached: it
 * is the corrupted run, and is not run.
 *
 * Knockout of one prompt: the clean run with the attention from the last
 * position to a set of key positions blocked (their pre-softmax scores
 * -inf, every head) in layers l .. l + W - 1 (clipped to the model), for each
 * start layer l; P at the last position. Only the last position changes, so
 * each run recomputes that row alone from the clean cache.
 */
#ifndef FL_TRACE_H
#define FL_TRACE_H

#include <stdint.h>

#include "analysis/batch.h"

typedef enum {
	TRACE_RESID,		/* blocks.l.hook_resid_pre, one layer */
	TRACE_MLP,		/* blocks.l.hook_mlp_out over the window */
	TRACE_ATTN,		/* blocks.l.hook_attn_out over the window */
	TRACE_KIND_COUNT
} fl_trace_kind;

#define TRACE_WINDOW 10		/* ROME's window for mlp and attn */
#define TRACE_SAMPLES 10	/* ROME's noise samples */
#define TRACE_SCALE_STDS 3.0	/* the default noise: 3 x the embeddings' std */

typedef struct {
	fl_trace_kind	 kind;
	int		 window;	/* mlp, attn (>= 1; clipped to the model) */
	int		 samples;	/* noise samples (>= 1); 1 with noise */
	double		 scale;		/* the noise's std; <= 0: the default */
	uint64_t	 seed;		/* of the noise samples */
	const float	*noise;		/* (subject tokens, D): the one sample, added
					   as it is (no scale); NULL to draw */
	bool		 whole;		/* every restored run a whole pass from
					   the embeddings, one at a time: the
					   baseline the benchmark and the tests
					   hold the packed runs against */
} fl_trace_opts;

typedef struct {
	fl_trace_kind	 kind;
	int		 n_layer, n_tok, window, samples;
	int		 subj_pos, subj_len;
	double		 scale;		/* the std drawn with; 0 with given noise */
	double		 p_clean;
	double		 p_corrupt;	/* mean over the samples */
	double		*restore;	/* (L, T) mean P with cell (l, t) restored */
} fl_trace;

/* "resid", "mlp", "attn" and back; -1 for an unknown name. */
const char *trace_kind_name(fl_trace_kind k);
int trace_kind_parse(const char *s);

/* The layers cell l restores for a kind: [*lo, *hi). */
void trace_window(fl_trace_kind k, int window, int n_layer, int l, int *lo,
    int *hi);

/* The standard deviation of the token embedding matrix's entries, in
 * double. */
double trace_embed_std(const fl_model *m);

/* Traces prompt p (which needs its answer and a subject) with b's model;
 * b must hold p->n tokens per prompt. b->progress sees 1 + S + S L T units
 * added to b->done (the caller sets b->total). 0; FL_STOPPED when the
 * progress asked to stop (*res empty); -1 with *cause (no subject, no
 * answer, a bad window or sample count). Free with trace_clear. */
int trace_run(fl_trace *res, fl_batch *b, const fl_prompt *p,
    const fl_trace_opts *o, char **cause);
void trace_clear(fl_trace *res);

/* One restored run of trace_run's, looked into: cell (l, t) restored in
 * the run(s) trace_run makes with the same options (the same noise), each
 * stream's logit lens at the last position (resid_pre of every layer, then
 * the final resid_post) through the final readout: probs (L + 1, V), the
 * mean over the samples of each stream's softmax. Row L's answer entry is
 * trace_run's restore[l T + t] (up to float rounding: trace_run packs its
 * runs). r holds p->n rows. 0; FL_STOPPED when progress asked to stop
 * (between samples); -1 with *cause (what trace_run refuses; a cell
 * outside the map). */
int trace_cell_lens(float *probs, fl_run *r, const fl_model *m,
    const fl_prompt *p, const fl_trace_opts *o, int l, int t,
    const fl_progress *progress, char **cause);

/* The average indirect effect over many prompts, positions grouped as
 * ROME groups them (a prompt adds to each group it has; the groups of a
 * one-token subject overlap). */
typedef enum {
	TRACE_POS_BEFORE,	/* tokens before the subject (mean) */
	TRACE_POS_SUBJ_FIRST,	/* the subject's first token */
	TRACE_POS_SUBJ_MIDDLE,	/* its middle tokens (mean), when it has any */
	TRACE_POS_SUBJ_LAST,	/* its last token */
	TRACE_POS_AFTER_FIRST,	/* the first token after the subject */
	TRACE_POS_FURTHER,	/* the tokens after that but the last (mean) */
	TRACE_POS_LAST,		/* the last token */
	TRACE_POS_COUNT
} fl_trace_pos;

typedef struct {
	fl_trace_kind	 kind;
	int		 n_layer, window, samples, n_prompts;
	double		 p_clean, p_corrupt;	/* means over the prompts */
	double		*aie;		/* (L, TRACE_POS_COUNT); NAN where no
					   prompt has the group */
	int		 count[TRACE_POS_COUNT];	/* prompts with each group */
	int		*cells;		/* (L, TRACE_POS_COUNT) prompts in each
					   cell while adding; NULL after */
} fl_trace_avg;

const char *trace_pos_name(fl_trace_pos g);

/* Traces prompts p[0..n) (each with its answer and subject; the seed of
 * prompt i is o->seed + i) and averages. b sized for the longest; its
 * progress sees every prompt's units (trace_units). 0, FL_STOPPED or -1
 * with *cause naming the prompt. Free with trace_avg_clear. */
int trace_average(fl_trace_avg *res, fl_batch *b, const fl_prompt *p, int n,
    const fl_trace_opts *o, char **cause);
void trace_avg_clear(fl_trace_avg *res);

/* trace_average in steps, for prompts traced elsewhere (shards): init;
 * trace_task_prompt traces prompt p, the task's prompt i (seed o->seed + i,
 * an error naming the prompt); trace_avg_add adds each prompt's trace, in
 * prompt order; trace_avg_finish takes the means. Free with
 * trace_avg_clear. */
void trace_avg_init(fl_trace_avg *res, const fl_model *m, const fl_trace_opts *o);
int trace_task_prompt(fl_trace *one, fl_batch *b, const fl_prompt *p, int i,
    const fl_trace_opts *o, char **cause);
void trace_avg_add(fl_trace_avg *res, const fl_trace *one);
void trace_avg_finish(fl_trace_avg *res);

/* The progress units trace_run adds for a prompt of n_tok tokens. */
long trace_units(const fl_model *m, const fl_trace_opts *o, int n_tok);

/* ---- knockout ---- */

typedef enum {
	KNOCK_SUBJECT,		/* the subject's tokens */
	KNOCK_RELATION,		/* every other token before the last (a BOS
				   included): Geva's non-subject positions */
	KNOCK_OTHER,		/* the last token itself */
	KNOCK_BLOCK_COUNT
} fl_knock_block;

const char *knock_block_name(fl_knock_block k);
int knock_block_parse(const char *s);

/* The key positions (T) a block names in p: true to block. -1 when the
 * block is empty (a subject-less prompt). */
int knock_keys(const fl_prompt *p, fl_knock_block which, bool *keys);

/* out (L): P(answer) with keys (T) blocked from the last query in layers
 * l .. l + window - 1, for each start layer l; *p_clean the unblocked P.
 * r must hold p->n rows. 0, or -1 with *cause. */
int knock_run(double *out, double *p_clean, fl_run *r, const fl_model *m,
    const fl_prompt *p, const bool *keys, int window, char **cause);

/* The hook knock_run installs on HOOK_ATTN_SCORES (layer -1): in layers
 * [lo, hi), the last query's scores for the keys set to -inf. */
typedef struct {
	const bool	*keys;		/* (T) */
	int		 lo, hi;
} fl_knock_mask;
int hook_knock_mask(void *ud, fl_act *a);

#endif
