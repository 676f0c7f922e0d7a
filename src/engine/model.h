/*
 * model.h - a loaded model: config, tokenizer and weights (their types, and
 * the matmul orientation, are in tensor.h).
 *
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
 * F32 tensors are used in place from the mmapped file. F16/BF16 tensors are
 * either converted once, at load, into one owned buffer
 * (FL_WEIGHTS_CONVERT), or (FL_WEIGHTS_STORED) the weights of the linear
 * layers (fl_linear) and the token embedding and unembedding (fl_table)
 * are used as stored, from the mapping, and the kernels widen them to f32
 * as they read them; the other tensors (position embeddings, LayerNorms,
 * biases: a few MB) are still converted once. The numbers are the same
 * either way: the widening is exact and the sums run in the same order.
 * Code outside the kernels reads those weights only through kern_linear,
 * kern_unembed, linear_weight and table_row, never as floats.
 *
 * FL_WEIGHTS_COPY copies every tensor into the owned buffer instead, the
 * linears and tables as stored, others as f32: each starts on a 64-byte
 * line, in 2 MB pages where the kernel allows. The file's tensors start
 * wherever its header ends (16 bytes past a line for our GPT-2 files), and
 * its 4 KB pages cost a TLB miss per page: a pass over copied weights is
 * faster (README, Performance), but the copy takes time at load.
 */
#ifndef FL_MODEL_H
#define FL_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "st.h"
#include "tensor.h"
#include "tok.h"

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

/* What model_load does with F16/BF16 weights (see the note above). The
 * default is STORED: as fast or faster (the products read half the bytes),
 * half the memory, and no conversion at load (README, Performance); but
 * CONVERT in builds whose target has no hardware f16 conversion
 * (kern_f16_hardware), where the kernels would widen f16 value by value. */
typedef enum {
	FL_WEIGHTS_DEFAULT,	/* STORED or CONVERT, as above */
	FL_WEIGHTS_CONVERT,	/* to f32 once, at load */
	FL_WEIGHTS_STORED,	/* as stored, widened in the kernels */
	FL_WEIGHTS_COPY		/* as stored, copied at load, aligned */
} fl_weights_mode;

typedef struct fl_model {
	fl_config	 cfg;
	fl_tokenizer	*tok;
	st_set		*weights;
	char		*dir;

	fl_table	 wte;		/* (V, P) token embedding */
	const float	*wpe;		/* (pos_offset + n_ctx, D) positions; NULL
					   with rotary positions */
	fl_linear	 project_in;	/* P -> D; w NULL when P = D */
	fl_layer	*layers;	/* (L) */
	const float	*lnf_w, *lnf_b;	/* (D), NULL without cfg.final_ln */
	fl_linear	 project_out;	/* D -> P; w NULL when P = D */
	fl_table	 unembed;	/* (V, P): wte when tied */

	float		*owned;		/* converted F16/BF16 tensors */
	size_t		 owned_floats;
	_Atomic(double *) unembed_mean;	/* (P) the unembedding's mean row,
					   made at its first use
					   (model_unembed_mean) */
	void		*laid;		/* the layer linears' weights in the
					   kernels' layout (kern_linear_pack) */
	size_t		 laid_bytes;
	void		*unembed_laid;	/* the unembedding's rows in the
					   kernels' layout (kern_unembed_pack) */
	size_t		 weight_bytes;	/* bytes of the parameters, as stored */
	size_t		 stored_bytes;	/* of which used as F16/BF16 (from the
					   mapping, or copied with COPY) */
	fl_weights_mode	 weights_mode;	/* CONVERT or STORED, as loaded */
	char		*nonfinite;	/* a warning naming the weights that hold
					   NaN or infinite values, NULL when
					   none do */
} fl_model;

/* strict: refuse weights that hold NaN or infinite values. Without it
 * they load (m->nonfinite says which) and the pass computes with them as
 * PyTorch does: a NaN reaches the logits it touches. */
typedef struct {
	fl_weights_mode	 weights;
	bool		 strict;
} fl_model_opts;

/* "convert" or "stored"; -1 for anything else. */
int model_weights_parse(const char *s);
const char *model_weights_name(fl_weights_mode mode);

/* Loads DIR (config.json, tokenizer files, safetensors); opts NULL means
 * the defaults. NULL and *cause on any problem, naming the file, tensor
 * or field. Every tensor the architecture uses is checked for NaN and
 * infinite values, as the kernels will read it (converted or as stored):
 * with opts->strict that is an error, otherwise m->nonfinite names them
 * for the caller to show. Tensors the architecture does not use (GPT-2's
 * mask buffers) are not read. */
fl_model *model_load(const char *dir, const fl_model_opts *opts, char **cause);

/* Tokenizes a prompt for the model: prepends BOS where the model wants one
 * (OPT, Llama). Returns the count and a heap array in *ids, or -1 with *cause. */
int model_encode(const fl_model *m, const char *text, size_t len, int **ids,
    char **cause);

void model_free(fl_model *m);

#endif
