/*
 * attrib.h - direct contributions: how much each component writing to the
 * residual stream adds to one token's logit, through the LayerNorms on the
 * way to the output with their scales FROZEN at the values of the real run.
 *
 * Write sites. A component adds its vector to the stream at a site: site
 * 2l is the attention part of layer l (its heads' results, its output
 * bias; the token and position embeddings write at site 0), site 2l + 1
 * its MLP (hook_mlp_out, the MLP's output bias included, as
 * TransformerLens' hook_mlp_out). Between a site and the logits lie
 *   - in a pre-LN model: the final LayerNorm alone (none for a decoder
 *     built without one);
 *   - in a post-LN model (opt-350m): every block LayerNorm from the site
 *     on: ln1 of layer l after site 2l, ln2 of layer l after site 2l + 1,
 *     and so on to ln2 of the last layer (the decoder has no final LN);
 * then project_out when the model has it, and the unembedding.
 *
 * The convention. A LayerNorm with its scale s held fixed is affine:
 * LN(y) = (y - mean(y)) / s * w + b, linear in y but for its bias b. So with
 * every LayerNorm between a site and the output frozen at this position's
 * scale, each component c reaches the logit of token a linearly:
 *     contribution(c) = c . e_site
 * where e_site is W_U[:, a] (through project_out^T) carried back through
 * those LayerNorms: e <- centre(w * e) / s, one LN at a time. Each LN's bias
 * reaches the logit the same way, from after that LN; `ln_bias` is their
 * sum. The decomposition is exact:
 *     logit(a) = sum of the contributions + ln_bias
 * for a pre-LN model (one frozen LN: the classic direct-logit attribution)
 * and for a post-LN one (every block's LN frozen: the stream is renormalised
 * after each write, and a component's contribution is what it adds given
 * all those scales). What it does not say, in either case, is how the logit
 * would move if the component alone changed: that moves the scales too, and
 * in a post-LN model each of up to 2L of them. For logit minus the mean
 * logit over the vocabulary, W_U[:, a] is replaced by W_U[:, a] minus the
 * mean row.
 *
 * An intervention that edits the stream outside the components shows up as
 * `rest`. Pre-LN: the final residual minus the sum of the components,
 * through the frozen final LN (the intercept removal edits hook_resid_post
 * of the last layer there). Post-LN: the run's logit minus the sum, since
 * the final residual is no sum of components there (the intercept removal
 * edits the last MLP's output, so it lands in that MLP's term, and rest
 * stays ~0). rest is ~0 in a clean run.
 */
#ifndef FL_ATTRIB_H
#define FL_ATTRIB_H

#include "engine/forward.h"

#define ATTRIB_SITE_ATTN(l)	(2 * (l))
#define ATTRIB_SITE_MLP(l)	(2 * (l) + 1)

typedef struct {
	int	 n_layer, n_head;
	double	 embed;		/* token embedding (after project_in) */
	double	 pos_embed;	/* learned position */
	double	*head;		/* (L, H) per-head results */
	double	*attn_bias;	/* (L) each layer's output bias b_O */
	double	*mlp;		/* (L) hook_mlp_out, its bias included */
	double	 ln_bias;	/* the LayerNorm biases: b_lnf . W_U[:, a]
				   pre-LN, every block LN's bias post-LN */
	double	 rest;		/* what the stream holds beyond the above */
	double	 sum;		/* every term above but rest */
	double	 logit;		/* the run's value, from the cache's readout rows */
} fl_attrib;

/* Contributions at position pos of the prompt in the cache (a full pass) to
 * token's logit (*to_logit) and to its logit minus the mean logit (*to_diff);
 * either may be NULL. mean_unembed is attrib_mean_unembed's row (P) for a
 * caller that keeps it, or NULL to have it computed here, a pass over the
 * whole unembedding (V x P); only to_diff reads it. Arrays are heap; free
 * with attrib_clear. 0, or -1 with *cause if pos or token is out of range
 * or the cache is not filled. */
int attrib_direct(fl_attrib *to_logit, fl_attrib *to_diff, const fl_model *m,
    const fl_cache *c, int pos, int token, const float *mean_unembed,
    char **cause);
void attrib_clear(fl_attrib *a);

/* The convention above in one line, for the model's kind (static text). */
const char *attrib_convention(const fl_model *m);

/* mean_v W_U[v, :] (P), accumulated in double. */
void attrib_mean_unembed(const fl_model *m, float *out);

/* The direction e_site (D) of every site (2L of them, in dirs (2L, D)) for
 * the vocabulary direction u (P): contribution(c at site k) = c . dirs[k],
 * the LayerNorms frozen at position pos of the filled cache c. Returns
 * ln_bias, the LayerNorm biases' part of u's logit. */
double attrib_site_dirs(const fl_model *m, const fl_cache *c, int pos,
    const float *u, double *dirs);

/* Carries n vectors x (n, D) written at `site` to the output: through every
 * LayerNorm between (see above), each centred, times its gain and divided
 * by its scale at position pos of c - or by 1 when c is NULL, which only
 * multiplies the result by a positive number and so changes no rank - and
 * without its bias. In place; model_unembed of the result is what the
 * vectors add to every logit. */
void attrib_carry(const fl_model *m, const fl_cache *c, int pos, int site,
    float *x, int n);

/* attrib_carry of a copy of x, then model_unembed: out (n, V). */
void attrib_vocab(const fl_model *m, const fl_cache *c, int pos, int site,
    const float *x, int n, float *out);

#endif
