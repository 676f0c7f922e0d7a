/*
 * forward.h - the instrumented forward pass.
 *
 * A pass runs a batch of token sequences packed row after row (rows of all
 * sequences share every matmul, so the weights are read once per batch;
 * attention stays within a sequence). At each named hook point - the names
 * TransformerLens uses, e.g. "blocks.5.attn.hook_pattern" - registered
 * hooks see the activation of one sequence and may edit it in place; the
 * pass continues from the edited values. Interventions (attention masks,
 * ablations, patching, vector subtraction) are hooks, never special cases
 * here. A hook may stop the pass.
 *
 * As in ggml's evaluation callback, the pass first asks which points are
 * wanted: optional work (per-head results) is done only when a hook or the
 * cache wants it.
 *
 * A cache (one sequence) keeps what the analyses read; with a filled cache a
 * pass can resume at layer l from the cached resid_pre of l, so changing the
 * last layer recomputes only the last layer.
 *
 * Around the blocks. hook_embed is the token embedding as it enters the
 * residual stream (T, D): after project_in in a model that has it, whose
 * raw (T, P) rows have no hook point. project_out has none either: it is
 * the first step of the unembedding, between ln_final and logits.
 *
 * Post-LN blocks (opt-350m, do_layer_norm_before false) compute
 *     x = ln1(x + attn(x));  x = ln2(x + mlp(x))
 * where ln1 is the layer's self_attn_layer_norm and ln2 its
 * final_layer_norm. TransformerLens has no such model; here every point
 * keeps its name and holds what actually flows:
 *   - hook_resid_pre, hook_resid_mid, hook_resid_post are the residual
 *     stream between the steps: the block's input, ln1's output, ln2's
 *     output (so resid_pre of layer l + 1 is resid_post of layer l, as in
 *     a pre-LN model);
 *   - q, k and v read resid_pre itself, the MLP reads resid_mid itself;
 *   - ln1.* and ln2.* are those LayerNorms where they are applied: ln1 on
 *     resid_pre + attn_out, ln2 on resid_mid + mlp_out. Their normalized
 *     output IS the stream: ln1.hook_normalized fires first, then
 *     hook_resid_mid sees the same rows (with any edit made at ln1), and
 *     likewise ln2.hook_normalized then hook_resid_post. The sums they
 *     normalise are not hooked (resid_pre + attn_out from the cache);
 *   - the decoder has no final LayerNorm: ln_final.* never fire, and a pass
 *     with a hook there is refused; the unembedding reads the last
 *     resid_post (through project_out).
 * Resuming at a layer and last_row_only work the same way: every LayerNorm
 * is per row, and the resumed pass starts from the cached resid_pre.
 *
 * Llama (TransformerLens' names where it has them):
 *   - ln1, ln2 and ln_final are RMSNorms: hook_scale is sqrt(mean(x^2) +
 *     eps), hook_normalized is x / scale * w (no centring, no bias);
 *   - no hook_pos_embed (a hook there is refused): positions enter as
 *     rotations of q and k. hook_q and hook_k hold the projections before
 *     the rotation, attn.hook_rot_q and attn.hook_rot_k after it; the
 *     scores are rot_q . rot_k / sqrt(dh). The cache's q and k hold the
 *     rotated values (what attention reads, so a last-row-only pass can use
 *     the earlier rows' keys), as do hook_rot_q/k in every pass;
 *   - grouped-query attention: hook_k, hook_rot_k and hook_v show n_head
 *     heads, key/value head g repeated for each query head of its group
 *     (as Hugging Face's repeat_kv); an edit to one copy affects only that
 *     query head. TransformerLens shows the n_kv_head heads instead;
 *   - the MLP is down(silu(gate(x)) * up(x)): mlp.hook_pre is gate(x),
 *     mlp.hook_pre_linear is up(x), mlp.hook_post is silu(gate(x)) * up(x)
 *     (what down_proj reads; an edit at hook_pre changes the activation,
 *     one at hook_pre_linear the product);
 *   - BOS (bos_token_id) is prepended to every prompt, as for OPT;
 *   - the final readout is the final RMSNorm (model.norm), then lm_head.
 */
#ifndef FL_FORWARD_H
#define FL_FORWARD_H

#include <stdbool.h>

#include "base/progress.h"
#include "model.h"

typedef enum {
	HOOK_EMBED,		/* hook_embed            (T, D) token embedding */
	HOOK_POS_EMBED,		/* hook_pos_embed        (T, D) */
	HOOK_RESID_PRE,		/* blocks.L.hook_resid_pre   (T, D) */
	HOOK_LN1_SCALE,		/* blocks.L.ln1.hook_scale   (T) sqrt(var + eps) */
	HOOK_LN1_NORMALIZED,	/* blocks.L.ln1.hook_normalized (T, D) incl. w, b */
	HOOK_Q,			/* blocks.L.attn.hook_q      (T, H, dh) */
	HOOK_K,			/* blocks.L.attn.hook_k      (T, H, dh) */
	HOOK_V,			/* blocks.L.attn.hook_v      (T, H, dh) */
	HOOK_ROT_Q,		/* blocks.L.attn.hook_rot_q  (T, H, dh) rotary only */
	HOOK_ROT_K,		/* blocks.L.attn.hook_rot_k  (T, H, dh) rotary only */
	HOOK_ATTN_SCORES,	/* blocks.L.attn.hook_attn_scores (H, T, T) scaled,
				   causal entries -inf; edit to mask */
	HOOK_PATTERN,		/* blocks.L.attn.hook_pattern (H, T, T) softmax */
	HOOK_Z,			/* blocks.L.attn.hook_z      (T, H, dh) */
	HOOK_RESULT,		/* blocks.L.attn.hook_result (T, H, D) per head,
				   without the output bias; optional */
	HOOK_ATTN_OUT,		/* blocks.L.hook_attn_out    (T, D) */
	HOOK_RESID_MID,		/* blocks.L.hook_resid_mid   (T, D) */
	HOOK_LN2_SCALE,		/* blocks.L.ln2.hook_scale   (T) */
	HOOK_LN2_NORMALIZED,	/* blocks.L.ln2.hook_normalized (T, D) */
	HOOK_MLP_PRE,		/* blocks.L.mlp.hook_pre     (T, F) (gated: gate) */
	HOOK_MLP_PRE_LINEAR,	/* blocks.L.mlp.hook_pre_linear (T, F) gated: up */
	HOOK_MLP_POST,		/* blocks.L.mlp.hook_post    (T, F) */
	HOOK_MLP_OUT,		/* blocks.L.hook_mlp_out     (T, D) */
	HOOK_RESID_POST,	/* blocks.L.hook_resid_post  (T, D) */
	HOOK_LNF_SCALE,		/* ln_final.hook_scale       (T) */
	HOOK_LNF_NORMALIZED,	/* ln_final.hook_normalized  (T, D) */
	HOOK_LOGITS,		/* logits (R, V): R = T with logits_all, else 1 */
	HOOK_POINT_COUNT
} fl_hook_point;

/* What a hook sees: one sequence's activation at one point. */
typedef struct {
	fl_hook_point	 point;
	int		 layer;		/* -1 outside the blocks */
	int		 seq;		/* index in the batch */
	const char	*name;		/* TransformerLens name, e.g. blocks.3.hook_mlp_out */
	float		*data;		/* contiguous, row-major; editable */
	int		 ndim;
	int		 shape[3];
} fl_act;

/* A hook returns FL_HOOK_CONTINUE, or FL_STOPPED (progress.h) to end the
 * pass early. */
#define FL_HOOK_CONTINUE 0
typedef int (*fl_hook_fn)(void *ud, fl_act *act);

typedef struct {
	fl_hook_point	 point;
	int		 layer;		/* one layer, or -1 for every layer */
	fl_hook_fn	 fn;
	void		*ud;
} fl_hook;

/* Formats a point's name ("blocks.3.attn.hook_pattern") into buf. */
const char *hook_point_name(fl_hook_point p, int layer, char *buf, size_t n);

/* Parses a TransformerLens name into (point, layer); -1 if unknown. */
int hook_point_parse(const char *name, fl_hook_point *p, int *layer);

enum {
	FL_CACHE_PATTERN = 1 << 0,	/* keep attention patterns */
	FL_CACHE_MLP_POST = 1 << 1,	/* keep MLP activations (L, T, F) */
	FL_CACHE_LOGITS_ALL = 1 << 2,	/* logits of every position */
	FL_CACHE_MLP_PRE = 1 << 3,	/* keep the MLP's pre-activations (L, T, F),
					   and gated MLPs' up(x): what a backward
					   pass (backward.h) would recompute */
};

/* Activations of one sequence, sized up front from (layers, tokens, width).
 * Each array is one slice of a single allocation. */
typedef struct {
	int	 n_layer, n_tok, d_model, n_head, d_mlp, n_vocab;
	int	 flags;
	int	*ids;		/* (T) the tokens the cache holds */
	int	 valid;		/* layers filled by the last pass (n_layer: all) */
	float	*resid_pre;	/* (L + 1, T, D): [L] is the last resid_post */
	float	*resid_mid;	/* (L, T, D) */
	float	*attn_out;	/* (L, T, D) */
	float	*mlp_out;	/* (L, T, D) */
	float	*ln1_scale;	/* (L, T) sqrt(var + eps) */
	float	*ln2_scale;	/* (L, T) */
	float	*lnf_scale;	/* (T); 1 without a final LN */
	float	*q, *k, *v, *z;	/* (L, T, D): head h in columns [h dh, (h+1) dh);
				   q, k rotated in rotary models */
	float	*pattern;	/* (L, H, T, T) or NULL */
	float	*mlp_post;	/* (L, T, F) or NULL */
	float	*mlp_pre;	/* (L, T, F) mlp.hook_pre as the activation
				   read it, or NULL */
	float	*mlp_pre_linear; /* (L, T, F) gated MLPs' up(x)
				   (mlp.hook_pre_linear), or NULL */
	float	*lnf;		/* (T, D) what the unembedding reads: the final
				   LN's output, or without one the last
				   resid_post */
	float	*logits;	/* (T, V) with FL_CACHE_LOGITS_ALL, else (1, V) */
	float	*block;
	size_t	 cap;		/* floats in block */
} fl_cache;

fl_cache *cache_new(const fl_model *m, int n_tok, int flags);
/* A cache for n_tok tokens that reuses c's memory (already in RAM, so no
 * page fault per 4 KB on the pass's first writes) when it is large enough
 * and not more than about twice too large; otherwise frees c and returns
 * cache_new's. Zeroed like cache_new's. c may be NULL. */
fl_cache *cache_reuse(fl_cache *c, const fl_model *m, int n_tok, int flags);
void cache_free(fl_cache *c);

typedef struct fl_run fl_run;

/* Scratch for passes of up to max_rows rows in all, max_seq per sequence. */
fl_run *run_new(const fl_model *m, int max_rows, int max_seq);
void run_free(fl_run *r);

/* Sequence s of a pass whose first positions are known not to change
 * (in a causal model, every row before the first one an intervention
 * edits): the pass runs lens[s] rows, positions rows .. rows + lens[s] - 1,
 * and their attention reads the earlier positions' keys and values at each
 * layer from k and v (a cache's, say). Hooks see the rows run (attention
 * as (H, lens[s], rows + lens[s])). */
typedef struct {
	int		 rows;		/* positions before the first row run */
	int		 ld;		/* positions per layer in k and v */
	const float	*k, *v;		/* (L, ld, D): keys and values of positions
					   [0, rows) at every layer; rotated in
					   rotary models (as a cache holds them) */
} fl_prefix;

typedef struct {
	const fl_hook	*hooks;
	int		 n_hooks;
	fl_cache	*cache;		/* NULL, or sized for the one sequence */
	int		 start_layer;	/* > 0: resume from the cache, or from
					   resume */
	const float	*resume;	/* with start_layer and no cache: the
					   resid_pre of start_layer for every
					   row, (rows, D) */
	bool		 logits_all;	/* logits of every row, not only each last */
	bool		 no_logits;	/* skip the unembedding (a lens does it) */
	bool		 last_row_only;	/* with a cache: recompute only the last
					   position from start_layer (0
					   included) on (valid when the hooks
					   change nothing else); hooks then see
					   one row, attention as (H, 1, T) */
	const fl_prefix	*prefix;	/* (n_seq) or NULL: sequences run from a
					   position on (see fl_prefix); needs
					   resume (start_layer 0 included: the
					   rows of resid_pre 0) and no cache */
	const int	*seq_start;	/* (n_seq) or NULL: with prefix, sequence s
					   joins the pass at layer seq_start[s]
					   (non-decreasing from start_layer), from
					   its rows of resume; hooks of a layer see
					   the sequences that have joined */
	float		*logits;	/* out (R, V), may be NULL; R = rows or n_seq */
} fl_pass;

/* Runs n_seq sequences (lens[s] tokens each, ids packed). Returns 0 when
 * done, FL_STOPPED when a hook stopped the pass, -1 with *cause on bad
 * input (an id out of range, a sequence longer than the context, more rows
 * than the run was made for, a cache that does not fit, a hook at a point
 * the model does not have). */
int run_forward(fl_run *r, const int *ids, const int *lens, int n_seq,
    const fl_pass *p, char **cause);

/* A ready-made intervention: in the given layer, the last query position of
 * each sequence attends only to itself (all heads, or those with heads[h]
 * set). Install with point HOOK_ATTN_SCORES. */
typedef struct {
	const bool	*heads;		/* (H) or NULL for all heads */
	bool		 all_queries;	/* every query attends only to itself */
} fl_self_mask;
int hook_self_mask(void *ud, fl_act *act);

#endif
