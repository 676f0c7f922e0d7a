/*
 * dump.h - activation dumps: the activations at chosen hook points of one
 * pass, captured by hooks and written as a safetensors file whose tensor
 * names are the hook points' TransformerLens names and whose shapes are
 * TransformerLens' without the batch dimension (blocks.3.hook_resid_post
 * [T, D], blocks.3.attn.hook_pattern [H, T, T], blocks.3.attn.hook_q
 * [T, H, dh], the LN scales [T]).
 *
 * A spec is a comma-separated list of items, each "all", a hook name
 * ("hook_embed", "blocks.3.hook_resid_post") or a glob over the names
 * ("blocks.*.hook_resid_post", "blocks.1?.attn.*"). Only the points the
 * model has are names (no hook_pos_embed in a rotary model, no
 * mlp.hook_pre_linear without a gated MLP, no ln_final.* without a final
 * LayerNorm); "logits" is not one (run --dump-logits writes them).
 */
#ifndef FL_DUMP_H
#define FL_DUMP_H

#include "engine/forward.h"
#include "engine/model.h"

typedef struct fl_dump fl_dump;

/* Parses spec against m's hook points. NULL with *cause on an item that
 * names or matches none, the message listing the valid names. Free with
 * dump_free. */
fl_dump *dump_new(const fl_model *m, const char *spec, char **cause);
void dump_free(fl_dump *d);

/* The hooks that capture the chosen points (owned by d, valid until
 * dump_free); *n set to their count. Capture is of the first sequence. */
const fl_hook *dump_hooks(fl_dump *d, int *n);

/* How many tensors d captures, and the i-th's name (owned by d). */
int dump_count(const fl_dump *d);
const char *dump_name(const fl_dump *d, int i);

/* Writes what the hooks captured to path, with meta as in st_write_f32.
 * -1 with *cause when a point did not fire (the pass stopped early) or on
 * a write error. */
int dump_write(const fl_dump *d, const char *path, const char *const *meta,
    int nmeta, char **cause);

#endif
