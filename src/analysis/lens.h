/*
 * lens.h - the logit lens and the small vocabulary helpers every view uses:
 * a residual stream read through the model's final readout (the final
 * LayerNorm, project_out and the unembedding, each when the model has it:
 * model_readout in engine/readout.h).
 */
#ifndef FL_LENS_H
#define FL_LENS_H

#include "engine/forward.h"

/* Logits of the L + 1 residual streams (resid_pre of each layer, then the
 * final resid_post) at position pos, each through the final readout (its
 * own final LN, when the model has one), in one product so the unembedding
 * is read once. out is (L + 1, V); row L equals
 * the model's logits. Returns 0, or -1 if pos is outside the cache. */
int lens_streams(const fl_model *m, const fl_cache *c, int pos, float *out);

/* Each layer's three streams at pos - resid_pre, resid_mid, resid_post -
 * through the final readout, in one product: out (3 L, V), row 3 l + k.
 * Returns 0, or -1 if pos is outside the cache. */
int lens_layer_streams(const fl_model *m, const fl_cache *c, int pos, float *out);

/* The same for any (n, D) vectors: out (n, V). */
void lens_vectors(const fl_model *m, const float *x, int n, float *out);

/* logit(answer) - logit(distractor), or with distractor < 0 logit(answer)
 * - the mean logit: the logit difference attribution and activation
 * patching score with. */
double lens_logit_diff(const float *logits, int V, int answer, int distractor);

/* Softmax probability of id, in double for small values. */
double lens_prob_of(const float *logits, int V, int id);

/* The softmax normaliser of a row whose largest logit is max: the sum over
 * i of exp(logits[i] - max), in double from the vectorised exponential
 * (relative error about 1e-6, below what any view prints or a test of
 * probabilities tolerates). A view that shows several
 * probabilities of one row computes it once: p(i) = exp(logits[i] - max) /
 * sum (what lens_prob_of and lens_topk do for one call each). */
double lens_softmax_sum(const float *logits, int V, float max);

/* 1-based rank of id among V logits (1 = top). */
int lens_rank_of(const float *logits, int V, int id);

/* The k largest logits, best first: ids[k] and, if probs != NULL, their
 * softmax probabilities. Returns the number written (min(k, V)). */
int lens_topk(const float *logits, int V, int k, int *ids, float *probs);

#endif
