/*
 * mitigate.h - the paper's two remedies for the final layer's
 * anti-overconfidence (paper notes, section 6), as hooks:
 *
 * (a) final-layer mask: in the last layer the query at the last position
 *     attends only to itself (all heads, or a subset) - the engine's
 *     hook_self_mask on blocks.{L-1}.attn.hook_attn_scores;
 * (b) intercept removal: the last layer's MLP intercept b (decompose.h,
 *     fitted on calibration prompts) is subtracted at the last position
 *     where the last MLP's output has joined the stream and nothing has
 *     read it yet (mitigate_intercept_point):
 *       - pre-LN: blocks.{L-1}.hook_resid_post, the final readout's input
 *         (the paper's definition: the residual before the final LN);
 *       - post-LN: blocks.{L-1}.hook_mlp_out, so that the block's ln2
 *         normalises resid_mid + mlp_out - b. b is fitted on the MLP's
 *         output, before that LN; taking it off resid_post instead would
 *         remove it at a scale the MLP never wrote it at.
 *     Either way the subtraction changes only the last position's final
 *     residual and what reads it, and a cache filled by such a pass holds
 *     the edited values.
 *
 * Both act in the last layer only, so toggling them re-runs the last layer
 * from a filled cache (start_layer = L - 1).
 */
#ifndef FL_MITIGATE_H
#define FL_MITIGATE_H

#include <stdbool.h>

#include "engine/forward.h"

typedef struct {
	bool		 mask;		/* (a) */
	const bool	*mask_heads;	/* (H): only these heads, or NULL for all */
	const float	*intercept;	/* (b): (D) vector to subtract, or NULL */
	const fl_hook	*extra;		/* more hooks mitigate_rerun installs (the
					   explorer's neuron edits), or NULL */
	int		 n_extra;
} fl_mitigation;

/* Subtracts vec (the row's width) from the last row of the activation. */
typedef struct {
	const float	*vec;
} fl_sub_last;
int hook_sub_last(void *ud, fl_act *a);

/* Where (b) subtracts the intercept: HOOK_RESID_POST (pre-LN) or
 * HOOK_MLP_OUT (post-LN), of the last layer. */
fl_hook_point mitigate_intercept_point(const fl_model *m);

/* What (b) makes of the last layer, without a pass: the final residual out
 * (n, D) from the last layer's resid_mid and mlp_out rows (n, D each) of a
 * pass without it and the intercept to take off each row, sub (n, D):
 * resid_mid + mlp_out - sub, then the layer's ln2 in a post-LN model. The
 * same arithmetic as the hook; lens_vectors(out) gives its logits. */
void mitigate_final_resid(const fl_model *m, const float *mid, const float *mlp,
    const float *sub, int n, float *out);

/* The hooks of a mitigation: writes up to 2 hooks using the caller's
 * storage for their state, returns their count. */
typedef struct {
	fl_self_mask	mask;
	fl_sub_last	sub;
} fl_mitigation_state;
int mitigate_hooks(const fl_model *m, const fl_mitigation *mit,
    fl_mitigation_state *st, fl_hook *hooks);

/* Re-runs the last layer of the prompt in the cache with the mitigation
 * (none when mit is NULL or empty), from the cached resid_pre of the last
 * layer; afterwards the cache (its last layer, final LN and logits) holds
 * the mitigated run. r must be sized for the prompt. 0, or -1 with *cause
 * when the cache does not hold the prompt. */
int mitigate_rerun(fl_run *r, const fl_model *m, fl_cache *c,
    const fl_mitigation *mit, char **cause);

#endif
