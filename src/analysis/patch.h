/*
 * patch.h - path patching of every attention head (paper notes, section 4):
 * which heads carry, straight to the output (through the MLPs but not
 * through other heads), what the answer needs.
 *
 * For sender head (l, h), over the clean prompts D_orig:
 *   1. corrupted run on D_new (each subject replaced by another pair's):
 *      the sender's output (per-head result, no bias) at the last position,
 *      averaged over D_new;
 *   2. clean run on D_orig;
 *   3. patched run on D_orig: q, k and v of every head frozen to their clean
 *      values, MLPs free, the sender's output at the last position replaced
 *      by the corrupted mean; the receiver is read: blocks.R.hook_resid_pre
 *      at the last position, R = n_layer meaning the final residual (the
 *      default, the paper's);
 *   4. the metric M on the receiver: the mean over prompts of the logit
 *      difference, logit(answer) - mean logit, of the receiver through the
 *      final readout (with R = n_layer: the model's output);
 *   5. effect(l, h) = 100 * (M_patched - M_clean) / M_clean.
 * Senders at layers >= R have no path to the receiver: effect 0.
 *
 * Two implementations. patch_heads_ref does the above literally, with
 * hooks, one engine pass per prompt and sender: the reference. patch_heads
 * is the fast one and what the CLI uses: with q, k, v frozen every head's
 * output is its clean one at every position, and no position but the last
 * changes, so the patched run is the clean residual at the last position
 * plus (mean - clean) of the sender, carried through the MLPs of layers
 * l..R-1 (adding the clean attention outputs between them; in a post-LN
 * model through each block's two LayerNorms as well). It runs those
 * MLPs on (heads x prompts) rows at once. The tests hold the two to 1e-4.
 *
 * As the paper's code does it, three more choices:
 *  - MLP senders: the MLP of layer l as the sender, its output at the last
 *    position replaced by its corrupted mean, q, k, v frozen as for a head
 *    (the layers x 1 column: mlp_patched, mlp_effect);
 *  - q, k or v receivers (recv, recv_head): the receiver is one head's
 *    query, key or value input at layer R (1..L-1). Step 3 runs up to R as
 *    above and takes that head's q, k or v (after the rotation in rotary
 *    models) from the patched residual; step 4 runs the clean prompt with
 *    only that input replaced, everything else free, to the logits;
 *  - the metric: logit(answer) - mean logit (PATCH_METRIC_ANSWER, the
 *    default) or logit(subject's first token) - mean logit
 *    (PATCH_METRIC_SUBJECT: which heads write "France").
 * The fast path carries the last position for q/k/v receivers too, then
 * runs layers R..L-1 with the engine (two passes resumed at R per prompt and
 * sender); the reference does steps 3 and 4 literally, with the freezing
 * hooks below R.
 *
 * Also the mover scatter per head over the prompts: x = attention from the
 * last position to the subject (summed over its tokens), y = <head output at
 * the last position, W_U[:, subject's first token]> (through project_out^T
 * when the model has it: model_unembed_dir), and Pearson's r.
 */
#ifndef FL_PATCH_H
#define FL_PATCH_H

#include "analysis/batch.h"

typedef enum {
	PATCH_RECV_RESID,	/* blocks.R.hook_resid_pre (R = L: the final residual) */
	PATCH_RECV_Q,		/* head recv_head's query input at layer R */
	PATCH_RECV_K,
	PATCH_RECV_V,
} fl_patch_recv;

typedef enum {
	PATCH_METRIC_ANSWER,	/* logit(answer) - mean logit */
	PATCH_METRIC_SUBJECT,	/* logit(subject) - mean logit */
} fl_patch_metric;

const char *patch_recv_name(fl_patch_recv r);		/* "resid", "q", ... */
int patch_recv_parse(const char *s);			/* -1 when unknown */
const char *patch_metric_name(fl_patch_metric m);	/* "answer", "subject" */
int patch_metric_parse(const char *s);

typedef struct {
	int		 receiver;	/* layer R (see above); < 0: n_layer */
	const float	*sender_values;	/* (L, H, D): replacements instead of the
					   corrupted means (tests), or NULL */
	fl_patch_recv	 recv;
	int		 recv_head;	/* with q, k, v: the receiving head */
	fl_patch_metric	 metric;
	const float	*mlp_values;	/* (L, D): the MLP senders' replacements
					   (tests), or NULL: the corrupted means
					   (NAN effects with sender_values and no
					   corrupted prompts) */
} fl_patch_opts;

typedef struct {
	int	 n_layer, n_head, n_prompts, receiver;
	fl_patch_recv	recv;
	int		recv_head;
	fl_patch_metric	metric;
	double	 clean;		/* M_clean */
	double	*patched;	/* (L, H) M_patched */
	double	*effect;	/* (L, H) percent; NAN when M_clean is 0 */
	double	*mlp_patched;	/* (L) M_patched with MLP l as the sender */
	double	*mlp_effect;	/* (L) percent */
	double	*pearson;	/* (L, H) r of the scatter; NAN when undefined */
	float	*attn;		/* (N, L, H) scatter x */
	float	*proj;		/* (N, L, H) scatter y */
	double	*clean_prompt;	/* (N) each prompt's metric, clean (patch_heads) */
	double	*patched_prompt;/* (N, L, H) and patched */
	double	*mlp_patched_prompt;	/* (N, L) with MLP l as the sender;
					   NAN without MLP senders */
} fl_patch;

/* Allocates a result for n prompts, zeroed; free with patch_clear. */
void patch_init(fl_patch *res, const fl_model *m, int n, int receiver);

/* clean and patched as the means over the prompts of clean_prompt and
 * patched_prompt, summed in prompt order, then patch_finish: what
 * patch_heads ends with, and all a merge of prompt shards needs (with
 * attn and proj). */
void patch_sum_prompts(fl_patch *res);

/* effect and pearson from clean, patched, attn and proj. */
void patch_finish(fl_patch *res);

/* The fast path. b batches the clean and corrupted runs (b->progress sees
 * n + n_corrupt + L * n units (patch_units), and may stop the work after any batch or
 * chunk of patched rows). Every clean prompt needs its answer and its
 * subject (task_prompts gives both). corrupt may be NULL when
 * o->sender_values is set. 0; FL_STOPPED when b->progress asked to stop
 * (*res is empty); or -1 with *cause. Free with patch_clear. */
int patch_heads(fl_patch *res, fl_batch *b, const fl_prompt *clean, int n,
    const fl_prompt *corrupt, int n_corrupt, const fl_patch_opts *o,
    char **cause);

/* What b->total should be for patch_heads over n clean and n_corrupt
 * prompts of a model of L layers. */
static inline long patch_units(int L, int n, int n_corrupt)
{ return (long)n + n_corrupt + (long)L * n; }

/* The reference: the procedure above with hooks, one prompt at a time. */
int patch_heads_ref(fl_patch *res, const fl_model *m, const fl_prompt *clean,
    int n, const fl_prompt *corrupt, int n_corrupt, const fl_patch_opts *o,
    char **cause);

void patch_clear(fl_patch *res);

/* The paper's mover criterion over a task (its figures: the path-patching
 * map, then the scatter of the heads it singles out): a head carries what
 * the answer needs (effect <= -effect_min percent) and copies the subject
 * (Pearson r of its scatter >= r_min). A head whose r is undefined because
 * its attention to the subject does not vary (a saturated mover, always at
 * 1) copies when that attention averages at least 0.5 over the prompts.
 * out is (L, H); returns how many. A reading aid with the defaults below,
 * not a finding. */
#define PATCH_MOVER_EFFECT	1.0	/* percent of the clean metric */
#define PATCH_MOVER_R		0.5
int patch_movers(const fl_patch *res, double effect_min, double r_min,
    bool *out);

/* Hooks the reference installs, for anyone patching by hand: copy the clean
 * q, k or v of every layer from a cache (install on HOOK_Q/K/V, layer -1;
 * in rotary models on HOOK_ROT_Q/ROT_K for q and k, which the cache holds
 * rotated). */
int hook_freeze_qkv(void *ud, fl_act *a);	/* ud: the clean fl_cache */

/* Fills hooks[0..3) with the three freezing hooks at the points that match
 * what the cache holds for this model (HOOK_ROT_Q/ROT_K in rotary models).
 * Returns 3. */
int patch_freeze_hooks(const fl_model *m, const fl_cache *clean, fl_hook *hooks);

/* Replaces head `head`'s result at the last position (install on
 * HOOK_RESULT at the sender's layer). */
typedef struct {
	int		 head;
	const float	*value;		/* (D) */
} fl_patch_head;
int hook_patch_head(void *ud, fl_act *a);

#endif
