/*
 * actpatch.h - activation patching between a clean and a corrupted prompt
 * of the same token count, TransformerLens' patching grids
 * (transformer_lens.patching: get_act_patch_resid_pre, _resid_mid,
 * _attn_out, _mlp_out, _attn_head_{out,q,k,v,pattern}_all_pos and _by_pos,
 * and _attn_head_all_pos_every / _by_pos_every).
 *
 * As TransformerLens does it, clean INTO corrupted: the corrupted prompt is
 * run with one activation replaced by its value in the clean run, and the
 * metric M is read at the last position:
 *     M = logit(answer) - logit(distractor)   (ACTPATCH_LOGIT_DIFF; without
 *         a distractor, logit(answer) - the mean logit, as factlens atp)
 *     M = P(answer)                            (ACTPATCH_PROB)
 * Each cell's M_patched, and normalised:
 *     (M_patched - M_corrupt) / (M_clean - M_corrupt)
 * 1 where the patch restores the clean metric, 0 where it changes nothing.
 *
 * The cells:
 *   resid_pre, resid_mid, attn_out, mlp_out  (L, T): blocks.l.hook_X at
 *                                            position t;
 *   z                                        (L, H): head h's
 *                                            blocks.l.attn.hook_z at every
 *                                            position at once;
 *   z by position                            (L, T, H): head h at t;
 *   q, k, v                                  as z, blocks.l.attn.hook_q,
 *                                            hook_k, hook_v;
 *   pattern                                  (L, H): head h's whole
 *                                            blocks.l.attn.hook_pattern
 *                                            (T, T); by position (L, T, H):
 *                                            its row for destination
 *                                            (query) position t
 *                                            (TransformerLens' pattern
 *                                            _by_pos, axes as its _every).
 * Grids are row-major in that order (layer first).
 *
 * Heads. q, z and pattern have the model's query heads; k and v its
 * key/value heads (n_kv_head, fewer than n_head with grouped-query
 * attention, as TransformerLens' hook_k and hook_v show them): a k or v
 * cell of head g patches g's keys or values for every query head of its
 * group (the engine's copies of g, forward.h). In a rotary model the q
 * and k cells patch hook_rot_q and hook_rot_k (the cache holds rotated
 * values): the rotation of a position is fixed, so this is the result of
 * patching hook_q or hook_k before it (the same bits: the patched run
 * rotates the clean values as the clean run did).
 *
 * Each patched run resumes from the corrupted run's cached resid_pre at the
 * cell's layer (nothing before it differs), and the runs of one layer are
 * packed into batches (batch_run_resumed, as causal tracing's). A cell
 * whose clean and corrupted values are equal bit for bit (a position
 * before the first token where the prompts differ; resid_pre of layer 0
 * where their tokens agree) is the corrupted run exactly, and is not run.
 */
#ifndef FL_ACTPATCH_H
#define FL_ACTPATCH_H

#include <stdbool.h>

#include "analysis/batch.h"

typedef enum {
	ACTPATCH_RESID_PRE,	/* blocks.l.hook_resid_pre */
	ACTPATCH_RESID_MID,	/* blocks.l.hook_resid_mid */
	ACTPATCH_ATTN_OUT,	/* blocks.l.hook_attn_out */
	ACTPATCH_MLP_OUT,	/* blocks.l.hook_mlp_out */
	ACTPATCH_Z,		/* blocks.l.attn.hook_z, per head */
	ACTPATCH_Q,		/* blocks.l.attn.hook_q (rot_q), per head */
	ACTPATCH_K,		/* blocks.l.attn.hook_k (rot_k), per kv head */
	ACTPATCH_V,		/* blocks.l.attn.hook_v, per kv head */
	ACTPATCH_PATTERN,	/* blocks.l.attn.hook_pattern, per head */
	ACTPATCH_HOOK_COUNT
} fl_actpatch_hook;

typedef enum {
	ACTPATCH_LOGIT_DIFF,	/* logit(answer) - logit(distractor) */
	ACTPATCH_PROB,		/* P(answer) */
	ACTPATCH_METRIC_COUNT
} fl_actpatch_metric;

/* "resid_pre", "resid_mid", "attn_out", "mlp_out", "z", "q", "k", "v",
 * "pattern" and back; -1 for an unknown name. */
const char *actpatch_hook_name(fl_actpatch_hook h);
int actpatch_hook_parse(const char *s);
/* The engine's hook point of a grid in m (q, k: rot_q, rot_k when rotary). */
fl_hook_point actpatch_point(const fl_model *m, fl_actpatch_hook h);
/* Whether a grid's cells are heads (z, q, k, v, pattern), and how many
 * heads a layer has in it (n_kv_head for k and v, else n_head). */
bool actpatch_per_head(fl_actpatch_hook h);
int actpatch_heads(const fl_model *m, fl_actpatch_hook h);

/* TransformerLens' _every: the grids of z, q, k, v and pattern, in that
 * order (its stack [output, query, key, value, pattern]). */
#define ACTPATCH_EVERY_COUNT 5
extern const fl_actpatch_hook actpatch_every[ACTPATCH_EVERY_COUNT];

/* "logit-diff", "prob" and back; -1 when unknown. */
const char *actpatch_metric_name(fl_actpatch_metric m);
int actpatch_metric_parse(const char *s);

typedef struct {
	fl_actpatch_hook	 hook;
	bool			 by_pos;	/* head grids: a cell per position
						   and head */
	fl_actpatch_metric	 metric;
	int			 answer;	/* token id */
	int			 distractor;	/* token id; -1: the mean logit */
} fl_actpatch_opts;

typedef struct {
	fl_actpatch_opts o;
	int		 n_layer, n_tok;
	int		 n_head;	/* the grid's heads a layer
					   (actpatch_heads) */
	int		 n_cells;	/* L T, L H or L T H */
	int		 n_run;		/* cells that needed a pass */
	double		 clean, corrupt;	/* M of the two runs */
	double		*patched;	/* (n_cells) M with the cell patched */
	double		*norm;		/* (n_cells) normalised; NAN when M_clean
					   = M_corrupt */
	/* What actpatch_one runs from (owned). */
	const fl_model	*m;
	int		*ids;		/* (T) the corrupted prompt */
	fl_cache	*c_clean, *c_corrupt;	/* with patterns for a
						   pattern grid */
	bool		 borrowed;	/* the caches are another result's
					   (actpatch_run_every) */
} fl_actpatch;

/* The cells of a grid for a model and T tokens. */
int actpatch_cells(const fl_model *m, const fl_actpatch_opts *o, int T);

/* What b->total should be for actpatch_run: the two cached runs and every
 * cell (the ones not run are counted at once). actpatch_every_units: for
 * actpatch_run_every (o->hook not read). */
long actpatch_units(const fl_model *m, const fl_actpatch_opts *o, int T);
long actpatch_every_units(const fl_model *m, const fl_actpatch_opts *o, int T);

/* The grid of o->hook with b's model (b must hold clean->n tokens per
 * prompt; clean's and corrupt's other fields are not read). b->progress
 * sees actpatch_units added to b->done. 0; FL_STOPPED when the progress
 * asked to stop (*res empty); -1 with *cause (prompts of different token
 * counts, naming both; a token out of range; by_pos without a head
 * grid). Free with actpatch_clear, on failure too. */
int actpatch_run(fl_actpatch *res, fl_batch *b, const fl_prompt *clean,
    const fl_prompt *corrupt, const fl_actpatch_opts *o, char **cause);

/* The five grids of actpatch_every into res[0 .. 4] (o->hook not read;
 * o->by_pos: each by position), the same as one actpatch_run each, from
 * one pair of cached runs (with the patterns): res[0] owns the caches and
 * res[1 .. 4] borrow them, so res[0] is the last to go when a result is
 * patched from after some are cleared. Returns as actpatch_run; free each
 * with actpatch_clear, on failure too. */
int actpatch_run_every(fl_actpatch res[ACTPATCH_EVERY_COUNT], fl_batch *b,
    const fl_prompt *clean, const fl_prompt *corrupt, const fl_actpatch_opts *o,
    char **cause);

/* One patched run of any set of cells of one layer at once, alone in its
 * pass, from a result's caches: the corrupted prompt with hook's
 * activation at layer replaced by the clean run's at the positions with
 * pos[t] set (NULL: every position; pattern: its rows of those
 * destination positions) and, for head grids, the heads with heads[h]
 * set (NULL: every head; k and v: key/value heads). M into *metric. r
 * must hold T rows. 0, or -1 with *cause (pattern from a result without
 * patterns: only a pattern grid's caches hold them). actpatch_many: the
 * same with every hook h of the mask hooks (bit 1 << h) patched at once. */
int actpatch_one(const fl_actpatch *res, fl_run *r, fl_actpatch_hook hook,
    int layer, const bool *pos, const bool *heads, double *metric, char **cause);
int actpatch_many(const fl_actpatch *res, fl_run *r, unsigned hooks, int layer,
    const bool *pos, const bool *heads, double *metric, char **cause);

/* M of a logits row (V) under o. */
double actpatch_metric(const fl_actpatch_opts *o, const float *logits, int V);

void actpatch_clear(fl_actpatch *res);

#endif
