/*
 * attrib.h - direct contributions: how much each component writing to the
 * residual stream adds to one token's logit, through the final LayerNorm
 * with its scale FROZEN at the value of the real run.
 *
 * The convention. The final residual at position t is the sum of its
 * components,
 *     x = embed + pos_embed + sum_{l,h} result_{l,h} + sum_l b_O(l) + sum_l mlp_out(l)
 * (per-head results without the output bias; each MLP's output includes its
 * own output bias, as TransformerLens' hook_mlp_out does). With s the run's
 * ln_final scale sqrt(var(x) + eps) held fixed, the final LN is linear, and
 *     logit(a) = sum_c (c - mean(c)) / s . (w_lnf * W_U[:, a]) + b_lnf . W_U[:, a]
 * exactly: each component c contributes its centred value over s, weighted by
 * the LN gain, dotted with the unembedding column; the LN bias is a term of
 * its own. For logit minus the mean logit over the vocabulary, W_U[:, a] is
 * replaced by W_U[:, a] - mean_v W_U[:, v].
 *
 * An intervention that edits the residual outside the components (the
 * intercept removal edits hook_resid_post of the last layer) shows up as
 * `rest`: the final residual minus the sum of the components. It is ~0 in a
 * clean run.
 */
#ifndef FL_ATTRIB_H
#define FL_ATTRIB_H

#include "engine/forward.h"

typedef struct {
	int	 n_layer, n_head;
	double	 embed;		/* token embedding */
	double	 pos_embed;	/* learned position */
	double	*head;		/* (L, H) per-head results */
	double	*attn_bias;	/* (L) each layer's output bias b_O */
	double	*mlp;		/* (L) hook_mlp_out, its bias included */
	double	 lnf_bias;	/* b_lnf . W_U[:, a] */
	double	 rest;		/* final residual minus the components above */
	double	 sum;		/* every term above but rest */
	double	 logit;		/* the run's value, from the cache's ln_final output */
} fl_attrib;

/* Contributions at position pos of the prompt in the cache (a full pass) to
 * token's logit (*to_logit) and to its logit minus the mean logit (*to_diff);
 * either may be NULL. Arrays are heap; free with attrib_clear. 0, or -1 with
 * *cause if pos or token is out of range or the cache is not filled. */
int attrib_direct(fl_attrib *to_logit, fl_attrib *to_diff, const fl_model *m,
    const fl_cache *c, int pos, int token, char **cause);
void attrib_clear(fl_attrib *a);

/* mean_v W_U[v, :] (D), accumulated in double. */
void attrib_mean_unembed(const fl_model *m, float *out);

/* Any n vectors (n, D) through the final LN frozen at scale s, without the
 * LN bias: out (n, V) = ((x - mean x) / s * w_lnf) . W_U^T. What one
 * component adds to every logit; with s = 1 the ranks are the same. */
void attrib_vocab(const fl_model *m, const float *x, int n, float s, float *out);

/* One vector's contribution to one direction: (x - mean x) . dir / s. */
double attrib_project(const float *x, const float *dir, int D, float s);

#endif
