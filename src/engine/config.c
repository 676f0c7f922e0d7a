/* config.c - see config.h. */
#include "autoconfig.h"
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

const char *
config_arch_name(fl_arch arch)
{
	return arch == FL_ARCH_OPT ? "opt" : arch == FL_ARCH_LLAMA ? "llama" : "gpt2";
}

/* Reads an integer field in [lo, hi]. Absent: *out = dflt, or an error when
 * dflt < 0. */
static int
config_int(const cJSON *root, const char *key, int dflt, int lo, int hi,
    int *out, const char *label, char **cause)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);

	if (j == NULL || cJSON_IsNull(j)) {
		if (dflt < 0)
			return fl_error(cause, "%s: missing field '%s' (an integer)",
			    label, key);
		*out = dflt;
		return 0;
	}
	if (!cJSON_IsNumber(j) || floor(j->valuedouble) != j->valuedouble ||
	    j->valuedouble < lo || j->valuedouble > hi)
		return fl_error(cause, "%s: field '%s' must be an integer in [%d, %d]",
		    label, key, lo, hi);
	*out = (int)j->valuedouble;
	return 0;
}

static int
config_bool(const cJSON *root, const char *key, bool dflt, bool *out,
    const char *label, char **cause)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);

	if (j == NULL || cJSON_IsNull(j)) {
		*out = dflt;
		return 0;
	}
	if (!cJSON_IsBool(j))
		return fl_error(cause, "%s: field '%s' must be true or false", label, key);
	*out = cJSON_IsTrue(j);
	return 0;
}

static int
config_act(const cJSON *root, const char *key, const char *dflt, fl_act_fn *out,
    const char *label, char **cause)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
	const char *s = dflt;

	if (j != NULL && !cJSON_IsNull(j)) {
		if (!cJSON_IsString(j))
			return fl_error(cause, "%s: field '%s' must be a string", label, key);
		s = j->valuestring;
	}
	if (strcmp(s, "gelu_new") == 0 || strcmp(s, "gelu_pytorch_tanh") == 0 ||
	    strcmp(s, "gelu_fast") == 0)
		*out = FL_ACT_GELU_TANH;
	else if (strcmp(s, "gelu") == 0)
		*out = FL_ACT_GELU;
	else if (strcmp(s, "relu") == 0)
		*out = FL_ACT_RELU;
	else if (strcmp(s, "silu") == 0 || strcmp(s, "swish") == 0)
		*out = FL_ACT_SILU;
	else
		return fl_error(cause, "%s: field '%s' is '%s'; expected gelu_new, gelu, "
		    "relu or silu", label, key, s);
	return 0;
}

/* Reads a number field in (lo, hi); absent or null: dflt. */
static int
config_num(const cJSON *root, const char *key, double dflt, double lo, double hi,
    double *out, const char *label, char **cause)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);

	if (j == NULL || cJSON_IsNull(j)) {
		*out = dflt;
		return 0;
	}
	if (!cJSON_IsNumber(j) || !(j->valuedouble > lo && j->valuedouble < hi))
		return fl_error(cause, "%s: field '%s' must be a number in (%g, %g)",
		    label, key, lo, hi);
	*out = j->valuedouble;
	return 0;
}

/* A field that must be absent, null or false: a setting that changes the
 * computation in a way the forward pass does not implement. */
static int
config_refuse(const cJSON *root, const char *key, const char *why,
    const char *label, char **cause)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);

	if (j == NULL || cJSON_IsNull(j) || cJSON_IsFalse(j))
		return 0;
	return fl_error(cause, "%s: field '%s' is set; %s (expected it absent, null "
	    "or false)", label, key, why);
}

/* The opposite: a boolean that must be absent, null or true, because turning
 * it off removes weights the forward pass needs. Reported here rather than as
 * a missing tensor at load, which would not say which setting caused it. */
static int
config_require(const cJSON *root, const char *key, const char *why,
    const char *label, char **cause)
{
	bool on;

	if (config_bool(root, key, true, &on, label, cause) != 0)
		return -1;
	if (on)
		return 0;
	return fl_error(cause, "%s: field '%s' is false; %s (expected it "
	    "absent, null or true)", label, key, why);
}

/* GPT2LMHeadModel. Fields left unread do not change the f32 result: the
 * dropouts (inference), initializer_range, the summary_* fields (the
 * double-heads model's classifier), use_cache, bos/eos ids, and n_ctx,
 * which transformers ignores in favour of n_positions. */
static int
config_parse_gpt2(fl_config *c, const cJSON *root, const char *label, char **cause)
{
	const int big = 1 << 20;
	const cJSON *eps;
	int n_inner, n_pos;

	c->arch = FL_ARCH_GPT2;
	if (config_int(root, "n_layer", -1, 1, 1024, &c->n_layer, label, cause) ||
	    config_int(root, "n_head", -1, 1, 1024, &c->n_head, label, cause) ||
	    config_int(root, "n_embd", -1, 1, big, &c->d_model, label, cause) ||
	    config_int(root, "vocab_size", -1, 1, 1 << 24, &c->n_vocab, label, cause) ||
	    config_int(root, "n_positions", -1, 1, big, &n_pos, label, cause) ||
	    config_int(root, "n_inner", 0, 0, big, &n_inner, label, cause) ||
	    config_act(root, "activation_function", "gelu_new", &c->act, label, cause) ||
	    config_bool(root, "tie_word_embeddings", true, &c->tie_embed, label, cause))
		return -1;
	/* Hugging Face's GPT-2 has two switches of the attention's scale;
	 * the forward pass implements GPT-2's own (1/sqrt(d_head), the same in
	 * every layer), so either switch moved off it is refused by name
	 * rather than ignored. reorder_and_upcast_attn changes only where the
	 * scale is applied and the precision, not the f32 result. */
	if (config_require(root, "scale_attn_weights", "factlens scales attention "
	    "scores by 1/sqrt(d_head) as GPT-2 does", label, cause) ||
	    config_refuse(root, "scale_attn_by_inverse_layer_idx", "scaling attention "
	    "by 1/(layer + 1) is not implemented", label, cause) ||
	    config_refuse(root, "add_cross_attention", "cross-attention blocks "
	    "(an encoder-decoder GPT-2) are not implemented", label, cause))
		return -1;
	c->n_ctx = n_pos;
	c->d_mlp = n_inner > 0 ? n_inner : 4 * c->d_model;
	c->d_proj = c->d_model;
	c->pos_offset = 0;
	c->bos_id = -1;
	c->ln_before = true;
	c->final_ln = true;
	c->ln_eps = 1e-5f;
	eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
	if (eps != NULL) {
		if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0 && eps->valuedouble < 1))
			return fl_error(cause, "%s: field 'layer_norm_epsilon' must be a "
			    "number in (0, 1)", label);
		c->ln_eps = (float)eps->valuedouble;
	}
	return 0;
}

/* OPTForCausalLM. Fields left unread do not change the f32 result: dropout,
 * attention_dropout, layerdrop (training only), init_std, use_cache, and
 * pad_token_id (the embedding's padding_idx only stops its gradient; the
 * positions come from the attention mask, all ones for one prompt). OPT
 * has no embedding scale, and its LayerNorms' eps is PyTorch's 1e-5. */
static int
config_parse_opt(fl_config *c, const cJSON *root, const char *label, char **cause)
{
	const int big = 1 << 20;
	bool no_final_ln;

	c->arch = FL_ARCH_OPT;
	if (config_int(root, "num_hidden_layers", -1, 1, 1024, &c->n_layer, label, cause) ||
	    config_int(root, "num_attention_heads", -1, 1, 1024, &c->n_head, label, cause) ||
	    config_int(root, "hidden_size", -1, 1, big, &c->d_model, label, cause) ||
	    config_int(root, "ffn_dim", -1, 1, big, &c->d_mlp, label, cause) ||
	    config_int(root, "vocab_size", -1, 1, 1 << 24, &c->n_vocab, label, cause) ||
	    config_int(root, "max_position_embeddings", -1, 1, big, &c->n_ctx, label, cause) ||
	    config_int(root, "bos_token_id", 2, 0, 1 << 24, &c->bos_id, label, cause) ||
	    config_int(root, "word_embed_proj_dim", c->d_model, 1, big, &c->d_proj, label,
	    cause) ||
	    config_act(root, "activation_function", "relu", &c->act, label, cause) ||
	    config_bool(root, "do_layer_norm_before", true, &c->ln_before, label, cause) ||
	    config_bool(root, "_remove_final_layer_norm", false, &no_final_ln, label,
	    cause) ||
	    config_bool(root, "tie_word_embeddings", true, &c->tie_embed, label, cause))
		return -1;
	if (config_require(root, "enable_bias", "factlens needs OPT's linear "
	    "biases, which every released OPT checkpoint has", label, cause) ||
	    config_require(root, "layer_norm_elementwise_affine", "factlens "
	    "needs the LayerNorms' weights and biases, which every released "
	    "OPT checkpoint has", label, cause))
		return -1;
	if (c->bos_id >= c->n_vocab)
		return fl_error(cause, "%s: bos_token_id %d is not below vocab_size %d",
		    label, c->bos_id, c->n_vocab);
	/* As OPTDecoder builds it: a post-LN decoder (opt-350m) has no final
	 * LayerNorm, and a pre-LN one drops it only for the legacy flag. */
	c->final_ln = c->ln_before && !no_final_ln;
	c->pos_offset = 2;
	c->ln_eps = 1e-5f;
	return 0;
}

/* A rotary setting that names a rope type: "default" (plain rotary
 * positions) is what the pass implements; any other (linear, dynamic,
 * yarn, llama3...) rescales the frequencies and is refused by name, as is
 * a type left out where transformers needs one (need). */
static int
rope_type_default(const cJSON *obj, const char *field, bool need,
    const char *label, char **cause)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "rope_type");

	if (t == NULL)
		t = cJSON_GetObjectItemCaseSensitive(obj, "type");	/* older name */
	if ((!need && (t == NULL || cJSON_IsNull(t))) ||
	    (cJSON_IsString(t) && strcmp(t->valuestring, "default") == 0))
		return 0;
	return fl_error(cause, "%s: field '%s' is set (rope type %s); scaled "
	    "rotary positions are not implemented (expected it absent, null, "
	    "false or rope type \"default\")", label, field,
	    cJSON_IsString(t) ? t->valuestring : "not given");
}

/* partial_rotary_factor: the share of each head's dimensions that rotate
 * (transformers reads it for every rotary model). Only 1, all of them, is
 * implemented. */
static int
rope_partial_whole(const cJSON *obj, const char *where, const char *label,
    char **cause)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, "partial_rotary_factor");

	if (f == NULL || cJSON_IsNull(f) || (cJSON_IsNumber(f) && f->valuedouble == 1))
		return 0;
	return fl_error(cause, "%s: field '%spartial_rotary_factor' is not 1; rotating "
	    "part of each head is not implemented (expected it absent, null or 1)",
	    label, where);
}

/* Llama's rotary settings: rope_theta and rope_scaling at the top level
 * (transformers 4), or rope_parameters {rope_type, rope_theta, ...}, which
 * newer transformers write in their place. *theta from either; the two
 * disagreeing is refused rather than guessed. */
static int
config_llama_rope(const cJSON *root, double *theta, const char *label,
    char **cause)
{
	const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
	const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
	const cJSON *top = cJSON_GetObjectItemCaseSensitive(root, "rope_theta");
	double inner;

	if (config_num(root, "rope_theta", 10000, 1, 1e12, theta, label, cause) ||
	    rope_partial_whole(root, "", label, cause))
		return -1;
	if (cJSON_IsObject(rs)) {
		if (rope_type_default(rs, "rope_scaling", true, label, cause))
			return -1;
	} else if (config_refuse(root, "rope_scaling", "scaled rotary positions are "
	    "not implemented", label, cause))
		return -1;
	if (rp == NULL || cJSON_IsNull(rp))
		return 0;
	if (!cJSON_IsObject(rp))
		return fl_error(cause, "%s: field 'rope_parameters' must be an object",
		    label);
	if (rope_type_default(rp, "rope_parameters", false, label, cause) ||
	    rope_partial_whole(rp, "rope_parameters.", label, cause) ||
	    config_num(rp, "rope_theta", *theta, 1, 1e12, &inner, label, cause))
		return -1;
	if (top != NULL && !cJSON_IsNull(top) && inner != *theta)
		return fl_error(cause, "%s: rope_theta %g and rope_parameters.rope_theta "
		    "%g disagree", label, *theta, inner);
	*theta = inner;
	return 0;
}

/* LlamaForCausalLM, as transformers' LlamaConfig defaults it. Fields left
 * unread do not change the f32 result: dropouts (inference), use_cache,
 * initializer_range, pad/eos ids, and pretraining_tp, which only splits
 * each product into slices summed afterwards (the same sum, in another
 * order). */
static int
config_parse_llama(fl_config *c, const cJSON *root, const char *label, char **cause)
{
	const int big = 1 << 20;
	double eps, theta;
	int head_dim;

	c->arch = FL_ARCH_LLAMA;
	if (config_int(root, "num_hidden_layers", -1, 1, 1024, &c->n_layer, label, cause) ||
	    config_int(root, "num_attention_heads", -1, 1, 1024, &c->n_head, label, cause) ||
	    config_int(root, "hidden_size", -1, 1, big, &c->d_model, label, cause) ||
	    config_int(root, "intermediate_size", -1, 1, big, &c->d_mlp, label, cause) ||
	    config_int(root, "vocab_size", -1, 1, 1 << 24, &c->n_vocab, label, cause) ||
	    config_int(root, "max_position_embeddings", 2048, 1, big, &c->n_ctx, label,
	    cause) ||
	    config_int(root, "num_key_value_heads", c->n_head, 1, 1024, &c->n_kv_head,
	    label, cause) ||
	    config_int(root, "bos_token_id", 1, 0, 1 << 24, &c->bos_id, label, cause) ||
	    config_int(root, "head_dim", 0, 0, big, &head_dim, label, cause) ||
	    config_num(root, "rms_norm_eps", 1e-6, 0, 1, &eps, label, cause) ||
	    config_llama_rope(root, &theta, label, cause) ||
	    config_act(root, "hidden_act", "silu", &c->act, label, cause) ||
	    config_bool(root, "tie_word_embeddings", false, &c->tie_embed, label, cause))
		return -1;
	if (config_refuse(root, "attention_bias", "attention biases are not "
	    "implemented", label, cause) ||
	    config_refuse(root, "mlp_bias", "MLP biases are not implemented", label,
	    cause))
		return -1;
	if (c->act != FL_ACT_SILU)
		return fl_error(cause, "%s: field 'hidden_act' must be \"silu\" for "
		    "llama", label);
	if (c->n_head % c->n_kv_head != 0)
		return fl_error(cause, "%s: num_attention_heads %d is not a multiple of "
		    "num_key_value_heads %d", label, c->n_head, c->n_kv_head);
	if (head_dim != 0 && head_dim * c->n_head != c->d_model)
		return fl_error(cause, "%s: head_dim %d times num_attention_heads %d is "
		    "not hidden_size %d (only head_dim = hidden_size / heads is "
		    "implemented)", label, head_dim, c->n_head, c->d_model);
	if (c->d_model % c->n_head == 0 && (c->d_model / c->n_head) % 2 != 0)
		return fl_error(cause, "%s: hidden_size %d over %d heads must give an "
		    "even head size (rotary pairs)", label, c->d_model, c->n_head);
	if (c->bos_id >= c->n_vocab)
		return fl_error(cause, "%s: bos_token_id %d is not below vocab_size %d",
		    label, c->bos_id, c->n_vocab);
	c->ln_eps = (float)eps;
	c->rope_theta = (float)theta;
	c->rms_norm = true;
	c->rotary = true;
	c->gated_mlp = true;
	c->d_proj = c->d_model;
	c->pos_offset = 0;
	c->ln_before = true;
	c->final_ln = true;
	return 0;
}

int
config_parse(fl_config *c, const char *json, const char *label, char **cause)
{
	cJSON *root;
	const cJSON *mt;
	int rc;

	memset(c, 0, sizeof *c);
	{
		const char *end = NULL;
		int line, col;

		if ((root = cJSON_ParseWithOpts(json, &end, 0)) == NULL) {
			fl_text_position(json, end != NULL ? (size_t)(end - json) : 0, &line,
			    &col);
			return fl_error(cause, "%s: not valid JSON at line %d, column %d%s",
			    label, line, col, end != NULL && *end == '\0' ?
			    " (the file ends early)" : "");
		}
	}
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return fl_error(cause, "%s: not a JSON object", label);
	}
	mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	if (!cJSON_IsString(mt)) {
		cJSON_Delete(root);
		return fl_error(cause, "%s: missing string field 'model_type' (expected "
		    "\"gpt2\", \"opt\" or \"llama\")", label);
	}
	if (strcmp(mt->valuestring, "gpt2") == 0)
		rc = config_parse_gpt2(c, root, label, cause);
	else if (strcmp(mt->valuestring, "opt") == 0)
		rc = config_parse_opt(c, root, label, cause);
	else if (strcmp(mt->valuestring, "llama") == 0)
		rc = config_parse_llama(c, root, label, cause);
	else
		rc = fl_error(cause, "%s: model_type '%s' is not supported (expected "
		    "\"gpt2\", \"opt\" or \"llama\")", label, mt->valuestring);
	if (rc == 0) {
		snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
		if (c->d_model % c->n_head != 0)
			rc = fl_error(cause, "%s: hidden size %d is not a multiple of the "
			    "%d heads", label, c->d_model, c->n_head);
		else
			c->d_head = c->d_model / c->n_head;
		if (c->n_kv_head == 0)
			c->n_kv_head = c->n_head;
	}
	cJSON_Delete(root);
	return rc;
}

int
config_load(fl_config *c, const char *dir, char **cause)
{
	char *path = fl_path_join(dir, "config.json");
	char *text;
	int rc;

	text = fl_read_file(path, NULL, 1u << 20, cause);
	if (text == NULL) {
		free(path);
		return -1;
	}
	rc = config_parse(c, text, path, cause);
	free(text);
	free(path);
	return rc;
}
