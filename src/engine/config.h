/*
 * config.h - a model's hyperparameters, read from a Hugging Face config.json.
 *
 * Supported model_type values: "gpt2" (GPT2LMHeadModel) and "opt"
 * (OPTForCausalLM), pre-LN or post-LN (do_layer_norm_before: false, as in
 * opt-350m), with or without the project_in / project_out pair that
 * word_embed_proj_dim != hidden_size implies, and "llama"
 * (LlamaForCausalLM: RMSNorm, rotary positions, grouped-query attention,
 * SwiGLU MLP, no biases). Unknown types, missing or inconsistent sizes, and
 * settings the forward pass does not implement (rope scaling other than
 * rope type "default", partial_rotary_factor other than 1, attention or
 * MLP biases, another activation; GPT-2's attention-scale switches; OPT
 * without its biases or LayerNorm weights: enable_bias or
 * layer_norm_elementwise_affine false) get an error naming the field.
 * Every field of transformers' GPT2Config, OPTConfig and LlamaConfig that
 * changes the math is either honoured or refused; config.c says why each
 * one left unread does not matter.
 */
#ifndef FL_CONFIG_H
#define FL_CONFIG_H

#include <stdbool.h>

typedef enum {
	FL_ARCH_GPT2,
	FL_ARCH_OPT,
	FL_ARCH_LLAMA,
} fl_arch;

typedef enum {
	FL_ACT_GELU_TANH,	/* GPT-2 "gelu_new" */
	FL_ACT_GELU,		/* exact erf GELU */
	FL_ACT_RELU,		/* OPT */
	FL_ACT_SILU,		/* Llama's gate, x * sigmoid(x) */
} fl_act_fn;

typedef struct {
	fl_arch		arch;
	int		n_layer;
	int		n_head;
	int		n_kv_head;	/* heads of k and v: n_head, or fewer with
					   grouped-query attention (Llama) */
	int		d_model;
	int		d_head;
	int		d_mlp;
	int		n_ctx;		/* longest prompt the positions allow */
	int		n_vocab;
	float		ln_eps;
	bool		rms_norm;	/* every norm is RMSNorm: x / sqrt(mean(x^2)
					   + eps) * w, no centring, no bias */
	bool		rotary;		/* rotary q and k, no learned positions */
	float		rope_theta;	/* the rotary base (10000) */
	bool		gated_mlp;	/* down(act(gate(x)) * up(x)) */
	fl_act_fn	act;
	int		d_proj;		/* width of the token embeddings and the
					   unembedding: d_model, except OPT's
					   word_embed_proj_dim (opt-350m: 512) */
	int		pos_offset;	/* OPT's learned positions start at row 2 */
	int		bos_id;		/* prepended to every prompt, or -1 (GPT-2) */
	bool		ln_before;	/* pre-LN blocks; false: post-LN (opt-350m) */
	bool		final_ln;	/* a LayerNorm after the last block: pre-LN
					   models, unless OPT's legacy
					   _remove_final_layer_norm says not */
	bool		tie_embed;
	char		model_type[16];
} fl_config;

/* Parses config.json text. 0, or -1 with *cause naming `label` and the field. */
int config_parse(fl_config *cfg, const char *json, const char *label, char **cause);

/* Reads and parses DIR/config.json. */
int config_load(fl_config *cfg, const char *dir, char **cause);

const char *config_arch_name(fl_arch arch);

#endif
