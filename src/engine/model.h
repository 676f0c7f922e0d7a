/*
 * model.h - a loaded model: config, tokenizer and weights.
 *
 * Matmul orientation, written down once. Every linear layer computes
 *     y (T, out) = x (T, in) . W + b
 * where W is the logical (in, out) matrix. How W sits in memory:
 *   - GPT-2 stores Conv1D weights as (in, out), row-major: trans = false,
 *     element W[i][o] at w[i * ld + o]. The fused c_attn (D, 3D) is three
 *     linears q, k, v that share one buffer with ld = 3D.
 *   - OPT and Llama store nn.Linear weights as (out, in): trans = true,
 *     element W[i][o] at w[o * ld + i].
 * The unembedding is always (V, P) row-major: logits = x . unembed^T, where
 * P = cfg.d_proj is d_model except in OPT models with word_embed_proj_dim
 * (opt-350m): there the token embedding is (V, P) too, project_in (P -> D)
 * takes it into the residual stream and project_out (D -> P) takes the
 * final residual back to P. Both are bias-free nn.Linear (trans = true).
 *
 * Llama: no biases (b NULL everywhere), RMSNorm gains only (ln*_b and
 * lnf_b NULL), no position table (wpe NULL: rotary positions), k and v
 * project to n_kv_head * d_head columns, and the MLP is gated:
 * proj(act(fc(x)) * up(x)) with fc = gate_proj, up = up_proj,
 * proj = down_proj. lm_head is separate unless tie_word_embeddings.
 *
 * F32 tensors are used in place from the mmapped file; F16/BF16 tensors are
 * converted once, at load, into one owned buffer.
 */
#ifndef FL_MODEL_H
#define FL_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "st.h"
#include "tok.h"

typedef struct {
	const float	*w;	/* see the orientation note above */
	const float	*b;	/* (out), or NULL */
	int		 in;
	int		 out;
	int		 ld;
	bool		 trans;
} fl_linear;

typedef struct {
	const float	*ln1_w, *ln1_b;	/* (D); b NULL with RMSNorm */
	fl_linear	 q;		/* D -> D */
	fl_linear	 k, v;		/* D -> KV dh (= D without GQA) */
	fl_linear	 o;		/* D -> D */
	const float	*ln2_w, *ln2_b;	/* (D) */
	fl_linear	 fc;		/* D -> F (Llama: gate_proj) */
	fl_linear	 up;		/* D -> F, gated MLPs only (up_proj) */
	fl_linear	 proj;		/* F -> D (Llama: down_proj) */
} fl_layer;

typedef struct fl_model {
	fl_config	 cfg;
	fl_tokenizer	*tok;
	st_set		*weights;
	char		*dir;

	const float	*wte;		/* (V, P) token embedding */
	const float	*wpe;		/* (pos_offset + n_ctx, D) positions; NULL
					   with rotary positions */
	fl_linear	 project_in;	/* P -> D; w NULL when P = D */
	fl_layer	*layers;	/* (L) */
	const float	*lnf_w, *lnf_b;	/* (D), NULL without cfg.final_ln */
	fl_linear	 project_out;	/* D -> P; w NULL when P = D */
	const float	*unembed;	/* (V, P): wte when tied */

	float		*owned;		/* converted F16/BF16 tensors */
	size_t		 owned_floats;
	size_t		 weight_bytes;	/* bytes of the parameters, as stored */
} fl_model;

/* Loads DIR (config.json, tokenizer files, safetensors). NULL and *cause on
 * any problem, naming the file, tensor or field. */
fl_model *model_load(const char *dir, char **cause);

void model_free(fl_model *m);

#endif
