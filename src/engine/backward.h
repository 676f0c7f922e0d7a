/*
 * backward.h - the gradient of a scalar metric at the last position with
 * respect to the activations of one forward pass (not the weights), at
 * every hook point, by the chain rule through the forward's own steps.
 *
 * The metric is a direction in the space the unembedding reads: metric =
 * dir . lnf[T - 1], lnf the final LayerNorm's output (what the unembedding
 * reads; the last resid_post in a model without a final LN). For a
 * difference of logits, dir = W_U^T (e_answer - e_distractor) through
 * project_out^T (grad_metric_dir). From there back through the final norm,
 * each block (MLP, then attention with its causal softmax, rotary
 * positions and grouped-query heads), to the embeddings.
 *
 * It reads only what a filled fl_cache keeps (resid_pre, resid_mid, the
 * rotated q and k, v); the norms' outputs and the attention patterns are
 * recomputed from those, and so are the MLP's pre-activations unless the
 * cache kept them (FL_CACHE_MLP_PRE: then the fc product, a third of a
 * block's multiply-adds, is not done again). No hook edits are seen: the
 * gradient is that of the pass whose cache this is, without hooks (a cache
 * filled by a pass with hooks has their edits in what it kept).
 *
 * Supported: pre-LN and post-LN blocks (opt-350m: the norms' inputs, the
 * sums resid_pre + attn_out and resid_mid + mlp_out, recomputed from the
 * cache), LayerNorm or RMSNorm, GELU (tanh or erf), ReLU, SiLU-gated MLPs,
 * learned or rotary positions, grouped-query attention, project_in/out:
 * GPT-2, OPT, Llama, every architecture the forward runs.
 *
 * Gradients are laid out as the hook's activation is (forward.h): a
 * gradient at blocks.l.attn.hook_z is (T, H, dh), at mlp.hook_post (T, F),
 * at attn.hook_pattern (H, T, T). Per head, hook_result's gradient is
 * hook_attn_out's (every head's result adds into it), so it is not kept
 * apart.
 */
#ifndef FL_BACKWARD_H
#define FL_BACKWARD_H

#include "forward.h"

typedef struct fl_grad_scratch fl_grad_scratch;

/* One sequence's gradients, sized from (layers, tokens, width) up front;
 * each array is a slice of one allocation. */
typedef struct {
	int	 n_layer, n_tok, d_model, n_head, d_mlp;
	float	*resid_pre;	/* (L + 1, T, D): [l + 1] is also layer l's
				   hook_resid_post, [0] hook_embed's and
				   hook_pos_embed's */
	float	*ln1, *ln2;	/* (L, T, D) ln1/ln2.hook_normalized */
	float	*ln1_scale;	/* (L, T) ln1.hook_scale (the scale as apply
				   reads it: the mean held) */
	float	*ln2_scale;	/* (L, T) */
	float	*q, *k, *v;	/* (L, T, D) hook_q/k/v, k and v one copy per
				   query head (forward.h) */
	float	*rot_q, *rot_k;	/* (L, T, D) hook_rot_q/k; NULL unless rotary */
	float	*scores;	/* (L, H, T, T) hook_attn_scores (0 where masked) */
	float	*pattern;	/* (L, H, T, T) hook_pattern */
	float	*z;		/* (L, T, D) hook_z */
	float	*attn_out;	/* (L, T, D) hook_attn_out, and hook_result per head */
	float	*resid_mid;	/* (L, T, D) */
	float	*mlp_pre;	/* (L, T, F) mlp.hook_pre (gated: the gate) */
	float	*mlp_pre_linear; /* (L, T, F) gated MLPs: up; else NULL */
	float	*mlp_post;	/* (L, T, F) mlp.hook_post */
	float	*mlp_out;	/* (L, T, D) */
	float	*lnf;		/* (T, D) ln_final.hook_normalized: dir in the
				   last row */
	float	*lnf_scale;	/* (T) ln_final.hook_scale */
	float	*block;
	fl_grad_scratch *scratch;
} fl_grad;

/* Sized for prompts of n_tok tokens; NULL with *cause when n_tok < 1.
 * Free with grad_free. */
fl_grad *grad_new(const fl_model *m, int n_tok, char **cause);
void grad_free(fl_grad *g);

/* dir (D) for metric = logit(answer) - logit(distractor) at the last
 * position, or with distractor < 0 logit(answer) - the mean logit over the
 * vocabulary (a pass over the unembedding). 0, or -1 with *cause naming the
 * token id out of range. */
int grad_metric_dir(const fl_model *m, int answer, int distractor, float *dir,
    char **cause);

/* Fills g with d(dir . lnf[T - 1]) / d(every activation) of the pass in
 * c, which must be a full pass over every layer of the prompt g was sized
 * for. 0, or -1 with *cause. */
int grad_backward(fl_grad *g, const fl_model *m, const fl_cache *c,
    const float *dir, char **cause);

/* The gradient at hook point (p, layer) as forward.h shapes that point's
 * activation: a pointer into g (not owned), shape in *ndim and shape[];
 * NULL for a point with no gradient kept (hook_result: read hook_attn_out;
 * logits) or one the model does not have (rot_q in a model without rotary
 * positions), or a layer out of range. */
const float *grad_at(const fl_grad *g, fl_hook_point p, int layer, int *ndim,
    int shape[3]);

#endif
