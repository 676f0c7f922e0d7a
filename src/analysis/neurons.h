/*
 * neurons.h - an MLP at neuron level, at one position of a prompt
 * (LM-Debugger's view, Geva et al. 2022).
 *
 * Neuron i of layer l has an activation a_i, what blocks.l.mlp.hook_post
 * holds: act(fc(x))_i, or in a gated MLP (Llama's SwiGLU) the gated
 * product act(gate(x))_i * up(x)_i; and a value vector w_i, row i of W_out
 * (D). The MLP's output is their sum plus W_out's bias:
 *     hook_mlp_out = sum_i a_i w_i + b_out
 * which is what each neuron contributes. Its direct effect on a token is
 * that contribution read as attrib.h reads any component: a_i w_i . e, e
 * the token's unembedding minus the mean row carried back through the
 * LayerNorms after the MLP, frozen at the run's scales (logit(token) -
 * mean logit; summed with b_out's, the MLP's direct effect). The value
 * vector's top tokens: w_i through those LayerNorms at unit scale and the
 * unembedding (attrib_vocab with no cache), as LM-Debugger projects it.
 *
 * x, the MLP's input at the position, is ln2 of resid_mid in a pre-LN block
 * and resid_mid itself in a post-LN one, from a filled cache.
 */
#ifndef FL_NEURONS_H
#define FL_NEURONS_H

#include <stdbool.h>

#include "base/progress.h"
#include "engine/forward.h"

typedef struct {
	int	 layer, pos, d_mlp;
	int	 answer, subject;	/* the tokens the effects are on; -1: none */
	float	*act;		/* (F) a_i */
	float	*w_norm;	/* (F) |w_i| */
	double	*to_answer;	/* (F) direct effects on the answer */
	double	*to_subject;	/* (F) on the subject, or NULL without one */
	double	*w_answer;	/* (F) w_i . e_answer: to_answer / act */
	double	 bias_answer;	/* b_out's direct effects */
	double	 bias_subject;
} fl_neurons;

/* The neurons of layer at position pos of the prompt in c (a full pass).
 * mean_unembed: attrib_mean_unembed's row (P). subject < 0: no subject
 * effects. 0, or -1 with *cause (a layer, position or token out of range).
 * Free with neurons_clear. */
int neurons_at(fl_neurons *n, const fl_model *m, const fl_cache *c, int layer,
    int pos, int answer, int subject, const float *mean_unembed, char **cause);
void neurons_clear(fl_neurons *n);

/* The activations alone (F) of layer at pos, into act. */
void neurons_act(const fl_model *m, const fl_cache *c, int layer, int pos,
    float *act);

/* e (D): a vector written at layer's MLP dotted with it gives its direct
 * effect on token (logit - mean logit), the LNs frozen at pos of c. */
void neurons_token_dir(const fl_model *m, const fl_cache *c, int pos, int layer,
    int token, const float *mean_unembed, double *e);

/* w_i, neuron i's value vector (D), into out. */
void neurons_value(const fl_model *m, int layer, int i, float *out);

/* sum_i act_i w_i + b_out (D) into out, neuron by neuron in double: the
 * MLP's output as the neurons make it. */
void neurons_sum(const fl_model *m, int layer, const float *act, float *out);

/* The k best tokens of the value vectors of neurons [first, first + n) of
 * layer: ids (n, k) and their logits vals (n, k), best first. */
void neurons_value_top(const fl_model *m, int layer, int first, int n, int k,
    int *ids, float *vals);

/* Every neuron's value-vector top k of layer (one product of W_out through
 * the unembedding, in chunks of neurons): ids (F, k), vals (F, k). Progress
 * p (may be NULL) is told after each chunk with done and total in neurons
 * offset by base (what: "value vectors"). 0, or FL_STOPPED when p asked to
 * stop. */
int neurons_layer_top(const fl_model *m, int layer, int k, int *ids, float *vals,
    const fl_progress *p, long base, long total);

/* The scale an edit puts on a neuron's activation. */
typedef struct {
	int	 layer, neuron;
	float	 factor;	/* 0 zero, 0.5 half, 2 double */
} fl_neuron_edit;

/* A hook that multiplies neuron edit->neuron of every row of
 * mlp.hook_post by edit->factor: install at HOOK_MLP_POST, edit->layer. */
int hook_neuron_edit(void *ud, fl_act *a);

#endif
