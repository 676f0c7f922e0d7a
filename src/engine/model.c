/* model.c - loads a Hugging Face GPT-2, OPT or Llama directory; see model.h. */
#include "autoconfig.h"

#include "model.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "linear.h"
#include "pool.h"
#include "base/util.h"

/* One tensor the architecture needs: its name, expected shape and where the
 * f32 pointer goes (dst), or, for the weights of a linear or a table, which
 * may stay F16/BF16, where the pointer and its dtype go (raw, dtype).
 * Collected first so that all conversions share one allocation. */
typedef struct {
	char		 name[160];
	int		 ndim;
	int64_t		 shape[2];
	const float	**dst;
	const void	**raw;
	fl_dtype	*dtype;
	const st_tensor	*t;
	bool		 optional;
	bool		 stored;	/* used from the mapping as F16/BF16 */
} want;

typedef struct {
	want	*v;
	int	 n, cap;
} want_list;

static want *
want_vadd(want_list *l, int ndim, int64_t d0, int64_t d1, const char *fmt,
    va_list ap)
{
	want *w;

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = xreallocarray(l->v, (size_t)l->cap, sizeof *l->v);
	}
	w = &l->v[l->n++];
	memset(w, 0, sizeof *w);
	vsnprintf(w->name, sizeof w->name, fmt, ap);
	w->ndim = ndim;
	w->shape[0] = d0;
	w->shape[1] = d1;
	return w;
}

static void
want_add(want_list *l, const float **dst, bool optional, int ndim, int64_t d0,
    int64_t d1, const char *fmt, ...) FL_PRINTF(7, 8);

static void
want_add(want_list *l, const float **dst, bool optional, int ndim, int64_t d0,
    int64_t d1, const char *fmt, ...)
{
	va_list ap;
	want *w;

	va_start(ap, fmt);
	w = want_vadd(l, ndim, d0, d1, fmt, ap);
	va_end(ap);
	w->dst = dst;
	w->optional = optional;
}

/* A linear's weights, (d0, d1) as stored. */
static void
want_linear(want_list *l, fl_linear *lin, int64_t d0, int64_t d1,
    const char *fmt, ...) FL_PRINTF(5, 6);

static void
want_linear(want_list *l, fl_linear *lin, int64_t d0, int64_t d1,
    const char *fmt, ...)
{
	va_list ap;
	want *w;

	va_start(ap, fmt);
	w = want_vadd(l, 2, d0, d1, fmt, ap);
	va_end(ap);
	w->raw = &lin->w;
	w->dtype = &lin->dtype;
}

/* The token embedding or the unembedding, (rows, cols). */
static void
want_table(want_list *l, fl_table *t, int64_t rows, int64_t cols,
    const char *fmt, ...) FL_PRINTF(5, 6);

static void
want_table(want_list *l, fl_table *t, int64_t rows, int64_t cols,
    const char *fmt, ...)
{
	va_list ap;
	want *w;

	va_start(ap, fmt);
	w = want_vadd(l, 2, rows, cols, fmt, ap);
	va_end(ap);
	w->raw = &t->w;
	w->dtype = &t->dtype;
	t->rows = (int)rows;
	t->cols = (int)cols;
}

static bool
is_float_dtype(st_dtype dt)
{
	return dt == ST_DTYPE_F32 || dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16 ||
	    dt == ST_DTYPE_F64;
}

static void
shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
	size_t off = 0;

	off += (size_t)snprintf(buf + off, n - off, "[");
	for (int i = 0; i < ndim && off < n; i++)
		off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? ", " : "",
		    (long long)shape[i]);
	if (off < n)
		snprintf(buf + off, n - off, "]");
}

/* F32 data aligned for floats is used from the mapping as it is, unless
 * the mode copies everything. */
static bool
f32_in_place(const st_tensor *t, fl_weights_mode mode)
{
	return mode != FL_WEIGHTS_COPY && t->dtype == ST_DTYPE_F32 &&
	    ((uintptr_t)t->data & 3) == 0;
}

/* Floats of the owned buffer a tensor takes, converted to f32 or (copy)
 * as stored: whole 64-byte lines, so that every tensor starts on one. */
static size_t
owned_share(const st_tensor *t, bool copy)
{
	size_t bytes = copy ? t->nbytes : (size_t)t->numel * sizeof(float);

	return (bytes + 63) / 64 * 16;
}

/* The buffer for converted weights: gigabytes for OPT-1.3B. Asked for in
 * 2 MB pages where the kernel allows it (a page fault per 4 KB page made
 * loading OPT-1.3B take 20 s on our VMs). */
#define HUGE_PAGE (2u << 20)

static float *
owned_alloc(size_t bytes)
{
	void *p = NULL;

	if (bytes >= HUGE_PAGE) {
		if (posix_memalign(&p, HUGE_PAGE, bytes) != 0)
			fl_fatal("out of memory allocating %zu bytes", bytes);
		madvise(p, bytes, MADV_HUGEPAGE);
		return p;
	}
	return xaligned_alloc(64, bytes);
}

/* Resolves every wanted tensor: checks presence, dtype and shape, then maps
 * F32 in place, leaves F16/BF16 linears and tables in place when mode asks
 * for it, and converts the others into one owned buffer. COPY copies them
 * all into it, linears and tables as stored. */
static int
model_bind(fl_model *m, want_list *l, fl_weights_mode mode, char **cause)
{
	const char *src = m->weights->files[0].path;
	size_t owned = 0, off = 0;
	char got[96], exp[96];
	const st_tensor **hot;
	int i, nhot = 0;

	for (i = 0; i < l->n; i++) {
		want *w = &l->v[i];
		const st_tensor *t = st_find(m->weights, w->name);
		bool ok;

		if (t == NULL) {
			if (w->optional)
				continue;
			return fl_error(cause, "%s: missing tensor '%s' (shape %s)",
			    m->weights->nfiles > 1 ? m->dir : src, w->name,
			    (shape_str(exp, sizeof exp, w->ndim, w->shape), exp));
		}
		src = m->weights->files[t->file].path;
		if (!is_float_dtype(t->dtype))
			return fl_error(cause, "%s: tensor '%s' has dtype %s; expected "
			    "F32, F16 or BF16", src, w->name, st_dtype_name(t->dtype));
		ok = t->ndim == w->ndim;
		for (int d = 0; ok && d < w->ndim; d++)
			ok = t->shape[d] == w->shape[d];
		if (!ok) {
			shape_str(got, sizeof got, t->ndim, t->shape);
			shape_str(exp, sizeof exp, w->ndim, w->shape);
			return fl_error(cause, "%s: tensor '%s' has shape %s; config.json "
			    "implies %s", src, w->name, got, exp);
		}
		w->t = t;
		w->stored = w->raw != NULL && mode != FL_WEIGHTS_CONVERT &&
		    (t->dtype == ST_DTYPE_F16 || t->dtype == ST_DTYPE_BF16);
		if (w->stored)
			m->stored_bytes += t->nbytes;
		if (!f32_in_place(t, mode) && !(w->stored && mode != FL_WEIGHTS_COPY))
			owned += owned_share(t, w->stored);
		m->weight_bytes += t->nbytes;
	}
	/* The tensors read in place on every pass, advised before the
	 * conversions below read theirs: readahead around those would bring
	 * the neighbours in as small pages. With COPY, the tensors to copy:
	 * mapped in one call, they copy faster. */
	hot = xcalloc((size_t)l->n + 1, sizeof *hot);
	for (i = 0; i < l->n; i++)
		if (l->v[i].t != NULL && (l->v[i].stored || mode == FL_WEIGHTS_COPY ||
		    f32_in_place(l->v[i].t, mode)))
			hot[nhot++] = l->v[i].t;
	st_advise_hot(m->weights, hot, nhot, mode != FL_WEIGHTS_COPY);
	free(hot);
	if (owned > 0)
		m->owned = owned_alloc(owned * sizeof(float));
	m->owned_floats = owned;
	for (i = 0; i < l->n; i++) {
		want *w = &l->v[i];
		const st_tensor *t = w->t;
		const float *f;

		if (t == NULL)
			continue;
		if (w->stored) {
			*w->raw = t->data;
			*w->dtype = t->dtype == ST_DTYPE_F16 ? FL_DTYPE_F16 :
			    FL_DTYPE_BF16;
			if (mode == FL_WEIGHTS_COPY) {
				memcpy(m->owned + off, t->data, t->nbytes);
				st_release(t);
				*w->raw = m->owned + off;
				off += owned_share(t, true);
			}
			continue;
		}
		if (f32_in_place(t, mode))
			f = (const float *)(const void *)t->data;
		else {
			st_to_f32(m->owned + off, t->data, t->dtype, (size_t)t->numel);
			st_release(t);
			f = m->owned + off;
			off += owned_share(t, false);
		}
		if (w->raw != NULL) {
			*w->raw = f;
			*w->dtype = FL_DTYPE_F32;
		} else
			*w->dst = f;
	}
	return 0;
}

/* ---- the kernels' layout ---------------------------------------------- */

/* Whether p points into one of the model's mapped files (not into the
 * owned buffer of converted weights). */
static bool
in_mapping(const fl_model *m, const void *p)
{
	for (int f = 0; f < m->weights->nfiles; f++) {
		const char *a = m->weights->files[f].map;

		if ((const char *)p >= a && (const char *)p < a + m->weights->files[f].size)
			return true;
	}
	return false;
}

/* The linears of layer l, in a fixed order. */
static fl_linear *
layer_linear(fl_layer *y, int i)
{
	fl_linear *v[] = { &y->q, &y->k, &y->v, &y->o, &y->fc, &y->up, &y->proj };

	return i < (int)(sizeof v / sizeof *v) ? v[i] : NULL;
}

/* The unembedding's copy in the kernels' layout: each logit then costs
 * what a layer's output column does. The mapped rows are let go after (a
 * tied model's embedding faults the prompt's rows back in). */
static void
unembed_lay_out(fl_model *m)
{
	fl_table *U = &m->unembed;
	size_t bytes = kern_unembed_pack_bytes(U);

	if (bytes == 0 || U->w == NULL)
		return;
	m->unembed_laid = owned_alloc(bytes);
	kern_unembed_pack(U, m->unembed_laid);
	m->laid_bytes += bytes;
	if (in_mapping(m, U->w))
		st_release_range(U->w, (size_t)U->rows * (size_t)U->cols *
		    fl_dtype_size(U->dtype));
}

/* Copies the (in, out) layer weights into the layout the product kernels
 * read in order (GPT-2's Conv1D weights; OPT's and Llama's (out, in) ones
 * are read in order as stored), then lets go of the mapping's pages of
 * those tensors: the copy is what every pass reads, and a rare reader of
 * single weights (lin->w) faults them back in from the page cache.
 * FACTLENS_LAYOUT=stored keeps the weights as stored (for comparison). */
static void
model_lay_out(fl_model *m)
{
	const char *e = getenv("FACTLENS_LAYOUT");
	size_t bytes = 0, off = 0;
	fl_linear *lin;

	if (e != NULL && strcmp(e, "stored") == 0)
		return;
	unembed_lay_out(m);
	for (int i = 0; i < m->cfg.n_layer; i++)
		for (int k = 0; (lin = layer_linear(&m->layers[i], k)) != NULL; k++)
			if (lin->w != NULL)
				bytes += (kern_linear_pack_bytes(lin) + 63) / 64 * 64;
	if (bytes == 0)
		return;
	m->laid = owned_alloc(bytes);
	m->laid_bytes += bytes;
	/* layer by layer, each layer's mapped pages let go once all its
	 * linears (q, k and v share one tensor) are copied: the two copies
	 * of every weight are never all in memory at once */
	for (int i = 0; i < m->cfg.n_layer; i++) {
		for (int k = 0; (lin = layer_linear(&m->layers[i], k)) != NULL; k++) {
			size_t n = lin->w != NULL ? kern_linear_pack_bytes(lin) : 0;

			if (n == 0)
				continue;
			kern_linear_pack(lin, (char *)m->laid + off);
			off += (n + 63) / 64 * 64;
		}
		for (int k = 0; (lin = layer_linear(&m->layers[i], k)) != NULL; k++)
			if (lin->pk != NULL && in_mapping(m, lin->w))
				st_release_range(lin->w, ((size_t)(lin->in - 1) *
				    (size_t)lin->ld + (size_t)lin->out) *
				    fl_dtype_size(lin->dtype));
	}
}

/* ---- non-finite weights ---------------------------------------------- */

/* The values the kernels read for one wanted tensor, cut into pieces of at
 * most NONFINITE_PIECE values so that the pool's threads share the scan. */
#define NONFINITE_PIECE ((size_t)1 << 20)

typedef struct {
	const void	*p;
	st_dtype	 dtype;
	size_t		 n;
	int		 want;	/* index into the want_list */
	size_t		 nan, inf;
} scan_piece;

typedef struct {
	scan_piece	*v;
	int		 n;
} scan_job;

static void
scan_task(void *ctx, int part, int nparts)
{
	scan_job *j = ctx;
	int a, b;

	kern_part_range(j->n, part, nparts, &a, &b);
	for (int i = a; i < b; i++)
		st_count_nonfinite(j->v[i].p, j->v[i].dtype, j->v[i].n, &j->v[i].nan,
		    &j->v[i].inf);
}

/* Counts the NaN and infinite values of every bound tensor. Returns the
 * message naming them (at most 8 by name), or NULL when all are finite. */
static char *
model_scan_nonfinite(const fl_model *m, const want_list *l)
{
	enum { NAMED = 8 };
	scan_job j = { 0 };
	size_t *nan = xcalloc((size_t)l->n, sizeof *nan);
	size_t *inf = xcalloc((size_t)l->n, sizeof *inf);
	size_t cap = 0, all = 0;
	char *msg = NULL, *s;
	int bad = 0, first = -1;

	for (int i = 0; i < l->n; i++) {
		const want *w = &l->v[i];
		const void *p;
		st_dtype dt = ST_DTYPE_F32;
		size_t es;

		if (w->t == NULL)
			continue;
		p = w->raw != NULL ? *w->raw : (const void *)*w->dst;
		if (w->stored)
			dt = w->t->dtype;
		es = st_dtype_size(dt);
		for (size_t off = 0; off < (size_t)w->t->numel; off += NONFINITE_PIECE) {
			size_t left = (size_t)w->t->numel - off;

			if ((size_t)j.n == cap) {
				cap = cap ? 2 * cap : 256;
				j.v = xreallocarray(j.v, cap, sizeof *j.v);
			}
			j.v[j.n++] = (scan_piece){ (const char *)p + off * es, dt,
			    left < NONFINITE_PIECE ? left : NONFINITE_PIECE, i, 0, 0 };
		}
	}
	if (j.n > 0)
		kern_for(scan_task, &j, j.n);
	for (int i = 0; i < j.n; i++) {
		nan[j.v[i].want] += j.v[i].nan;
		inf[j.v[i].want] += j.v[i].inf;
	}
	for (int i = 0; i < l->n; i++)
		if (nan[i] + inf[i] > 0) {
			bad++;
			all += nan[i] + inf[i];
			if (first < 0)
				first = i;
		}
	if (bad > 0) {
		const st_tensor *t = l->v[first].t;
		const char *where = m->weights->nfiles > 1 ? m->dir :
		    m->weights->files[t->file].path;
		int named = 0;

		if (bad == 1)
			msg = xasprintf("%s: tensor '%s' holds %zu non-finite value%s "
			    "(%zu NaN, %zu infinite)", where, l->v[first].name, all,
			    all == 1 ? "" : "s", nan[first], inf[first]);
		else
			msg = xasprintf("%s: %d tensors hold %zu non-finite values:", where,
			    bad, all);
		for (int i = first; bad > 1 && i < l->n && named < NAMED; i++) {
			if (nan[i] + inf[i] == 0)
				continue;
			s = xasprintf("%s%s '%s' (%zu NaN, %zu infinite)", msg,
			    named ? "," : "", l->v[i].name, nan[i], inf[i]);
			free(msg);
			msg = s;
			named++;
		}
		if (bad > named && bad > 1) {
			s = xasprintf("%s and %d more", msg, bad - named);
			free(msg);
			msg = s;
		}
	}
	free(j.v);
	free(nan);
	free(inf);
	return msg;
}

static void
linear_set(fl_linear *lin, int in, int out, int ld, bool trans)
{
	lin->in = in;
	lin->out = out;
	lin->ld = ld;
	lin->trans = trans;
}

/* GPT-2: Conv1D weights (in, out); c_attn holds q | k | v along out. */
static const char *
gpt2_prefix(const st_set *s)
{
	return st_find(s, "transformer.wte.weight") != NULL ? "transformer." : "";
}

static void
gpt2_wants(fl_model *m, want_list *l, fl_linear *qkv, const float **qkv_b)
{
	const fl_config *c = &m->cfg;
	const char *p = gpt2_prefix(m->weights);
	int64_t D = c->d_model, F = c->d_mlp;

	want_table(l, &m->wte, c->n_vocab, D, "%swte.weight", p);
	want_add(l, &m->wpe, false, 2, c->n_ctx, D, "%swpe.weight", p);
	for (int i = 0; i < c->n_layer; i++) {
		fl_layer *y = &m->layers[i];

		want_add(l, &y->ln1_w, false, 1, D, 0, "%sh.%d.ln_1.weight", p, i);
		want_add(l, &y->ln1_b, false, 1, D, 0, "%sh.%d.ln_1.bias", p, i);
		want_linear(l, &qkv[i], D, 3 * D, "%sh.%d.attn.c_attn.weight", p, i);
		want_add(l, &qkv_b[i], false, 1, 3 * D, 0, "%sh.%d.attn.c_attn.bias", p, i);
		want_linear(l, &y->o, D, D, "%sh.%d.attn.c_proj.weight", p, i);
		want_add(l, &y->o.b, false, 1, D, 0, "%sh.%d.attn.c_proj.bias", p, i);
		want_add(l, &y->ln2_w, false, 1, D, 0, "%sh.%d.ln_2.weight", p, i);
		want_add(l, &y->ln2_b, false, 1, D, 0, "%sh.%d.ln_2.bias", p, i);
		want_linear(l, &y->fc, D, F, "%sh.%d.mlp.c_fc.weight", p, i);
		want_add(l, &y->fc.b, false, 1, F, 0, "%sh.%d.mlp.c_fc.bias", p, i);
		want_linear(l, &y->proj, F, D, "%sh.%d.mlp.c_proj.weight", p, i);
		want_add(l, &y->proj.b, false, 1, D, 0, "%sh.%d.mlp.c_proj.bias", p, i);
	}
	want_add(l, &m->lnf_w, false, 1, D, 0, "%sln_f.weight", p);
	want_add(l, &m->lnf_b, false, 1, D, 0, "%sln_f.bias", p);
	if (!c->tie_embed)
		want_table(l, &m->unembed, c->n_vocab, D, "lm_head.weight");
}

static void
gpt2_finish(fl_model *m, const fl_linear *qkv, const float **qkv_b)
{
	int D = m->cfg.d_model, F = m->cfg.d_mlp;

	for (int i = 0; i < m->cfg.n_layer; i++) {
		fl_layer *y = &m->layers[i];
		const char *w = qkv[i].w;
		size_t es = fl_dtype_size(qkv[i].dtype);

		y->q.w = w;
		y->k.w = w + (size_t)D * es;
		y->v.w = w + (size_t)2 * D * es;
		y->q.dtype = y->k.dtype = y->v.dtype = qkv[i].dtype;
		y->q.b = qkv_b[i];
		y->k.b = qkv_b[i] + D;
		y->v.b = qkv_b[i] + 2 * D;
		linear_set(&y->q, D, D, 3 * D, false);
		linear_set(&y->k, D, D, 3 * D, false);
		linear_set(&y->v, D, D, 3 * D, false);
		linear_set(&y->o, D, D, D, false);
		linear_set(&y->fc, D, F, F, false);
		linear_set(&y->proj, F, D, D, false);
	}
}

/* OPT: nn.Linear weights (out, in). */
static const char *
opt_prefix(const st_set *s)
{
	if (st_find(s, "model.decoder.embed_tokens.weight") != NULL)
		return "model.decoder.";
	return "decoder.";
}

static void
opt_wants(fl_model *m, want_list *l)
{
	const fl_config *c = &m->cfg;
	const char *p = opt_prefix(m->weights);
	int64_t D = c->d_model, F = c->d_mlp, P = c->d_proj;
	static const char *const names[4] = { "q_proj", "k_proj", "v_proj", "out_proj" };

	want_table(l, &m->wte, c->n_vocab, P, "%sembed_tokens.weight", p);
	want_add(l, &m->wpe, false, 2, c->n_ctx + c->pos_offset, D,
	    "%sembed_positions.weight", p);
	if (P != D) {
		want_linear(l, &m->project_in, D, P, "%sproject_in.weight", p);
		want_linear(l, &m->project_out, P, D, "%sproject_out.weight", p);
	}
	for (int i = 0; i < c->n_layer; i++) {
		fl_layer *y = &m->layers[i];
		fl_linear *lin[4] = { &y->q, &y->k, &y->v, &y->o };

		want_add(l, &y->ln1_w, false, 1, D, 0,
		    "%slayers.%d.self_attn_layer_norm.weight", p, i);
		want_add(l, &y->ln1_b, false, 1, D, 0,
		    "%slayers.%d.self_attn_layer_norm.bias", p, i);
		for (int j = 0; j < 4; j++) {
			want_linear(l, lin[j], D, D, "%slayers.%d.self_attn.%s.weight",
			    p, i, names[j]);
			want_add(l, &lin[j]->b, false, 1, D, 0,
			    "%slayers.%d.self_attn.%s.bias", p, i, names[j]);
		}
		want_add(l, &y->ln2_w, false, 1, D, 0,
		    "%slayers.%d.final_layer_norm.weight", p, i);
		want_add(l, &y->ln2_b, false, 1, D, 0,
		    "%slayers.%d.final_layer_norm.bias", p, i);
		want_linear(l, &y->fc, F, D, "%slayers.%d.fc1.weight", p, i);
		want_add(l, &y->fc.b, false, 1, F, 0, "%slayers.%d.fc1.bias", p, i);
		want_linear(l, &y->proj, D, F, "%slayers.%d.fc2.weight", p, i);
		want_add(l, &y->proj.b, false, 1, D, 0, "%slayers.%d.fc2.bias", p, i);
	}
	/* OPTDecoder builds no final LayerNorm when post-LN (or for the legacy
	 * _remove_final_layer_norm); one in the file is then left unused. */
	if (c->final_ln) {
		want_add(l, &m->lnf_w, false, 1, D, 0, "%sfinal_layer_norm.weight", p);
		want_add(l, &m->lnf_b, false, 1, D, 0, "%sfinal_layer_norm.bias", p);
	}
	if (!c->tie_embed)
		want_table(l, &m->unembed, c->n_vocab, P, "lm_head.weight");
}

static void
opt_finish(fl_model *m)
{
	int D = m->cfg.d_model, F = m->cfg.d_mlp, P = m->cfg.d_proj;

	for (int i = 0; i < m->cfg.n_layer; i++) {
		fl_layer *y = &m->layers[i];

		linear_set(&y->q, D, D, D, true);
		linear_set(&y->k, D, D, D, true);
		linear_set(&y->v, D, D, D, true);
		linear_set(&y->o, D, D, D, true);
		linear_set(&y->fc, D, F, D, true);
		linear_set(&y->proj, F, D, F, true);
	}
	if (m->project_in.w != NULL) {
		linear_set(&m->project_in, P, D, P, true);
		linear_set(&m->project_out, D, P, D, true);
	}
}

/* Llama: nn.Linear weights (out, in), no biases, keys under model.*/
static void
llama_wants(fl_model *m, want_list *l)
{
	const fl_config *c = &m->cfg;
	int64_t D = c->d_model, F = c->d_mlp, KV = (int64_t)c->n_kv_head * c->d_head;

	want_table(l, &m->wte, c->n_vocab, D, "model.embed_tokens.weight");
	for (int i = 0; i < c->n_layer; i++) {
		fl_layer *y = &m->layers[i];

		want_add(l, &y->ln1_w, false, 1, D, 0,
		    "model.layers.%d.input_layernorm.weight", i);
		want_linear(l, &y->q, D, D,
		    "model.layers.%d.self_attn.q_proj.weight", i);
		want_linear(l, &y->k, KV, D,
		    "model.layers.%d.self_attn.k_proj.weight", i);
		want_linear(l, &y->v, KV, D,
		    "model.layers.%d.self_attn.v_proj.weight", i);
		want_linear(l, &y->o, D, D,
		    "model.layers.%d.self_attn.o_proj.weight", i);
		want_add(l, &y->ln2_w, false, 1, D, 0,
		    "model.layers.%d.post_attention_layernorm.weight", i);
		want_linear(l, &y->fc, F, D,
		    "model.layers.%d.mlp.gate_proj.weight", i);
		want_linear(l, &y->up, F, D,
		    "model.layers.%d.mlp.up_proj.weight", i);
		want_linear(l, &y->proj, D, F,
		    "model.layers.%d.mlp.down_proj.weight", i);
	}
	want_add(l, &m->lnf_w, false, 1, D, 0, "model.norm.weight");
	if (!c->tie_embed)
		want_table(l, &m->unembed, c->n_vocab, D, "lm_head.weight");
}

static void
llama_finish(fl_model *m)
{
	int D = m->cfg.d_model, F = m->cfg.d_mlp;
	int KV = m->cfg.n_kv_head * m->cfg.d_head;

	for (int i = 0; i < m->cfg.n_layer; i++) {
		fl_layer *y = &m->layers[i];

		linear_set(&y->q, D, D, D, true);
		linear_set(&y->k, D, KV, D, true);
		linear_set(&y->v, D, KV, D, true);
		linear_set(&y->o, D, D, D, true);
		linear_set(&y->fc, D, F, D, true);
		linear_set(&y->up, D, F, D, true);
		linear_set(&y->proj, F, D, F, true);
	}
}

fl_model *
model_load(const char *dir, const fl_model_opts *opts, char **cause)
{
	fl_model *m = xcalloc(1, sizeof *m);
	want_list wants = { 0 };
	fl_linear *qkv = NULL;
	const float **qkv_b = NULL;
	fl_weights_mode mode = opts != NULL ? opts->weights : FL_WEIGHTS_DEFAULT;
	int n_tok;

	m->dir = xstrdup(dir);
	if (config_load(&m->cfg, dir, cause) != 0)
		goto fail;
	m->tok = tok_load_dir(dir, cause);
	if (m->tok == NULL)
		goto fail;
	n_tok = tok_vocab_size(m->tok);
	if (n_tok > m->cfg.n_vocab) {
		fl_error(cause, "%s: the tokenizer has %d tokens but config.json's "
		    "vocab_size is %d", dir, n_tok, m->cfg.n_vocab);
		goto fail;
	}
	m->weights = st_open_dir(dir, cause);
	if (m->weights == NULL)
		goto fail;
	m->layers = xcalloc((size_t)m->cfg.n_layer, sizeof *m->layers);
	if (m->cfg.arch == FL_ARCH_GPT2) {
		qkv = xcalloc((size_t)m->cfg.n_layer, sizeof *qkv);
		qkv_b = xcalloc((size_t)m->cfg.n_layer, sizeof *qkv_b);
		gpt2_wants(m, &wants, qkv, qkv_b);
	} else if (m->cfg.arch == FL_ARCH_LLAMA)
		llama_wants(m, &wants);
	else
		opt_wants(m, &wants);
	if (mode == FL_WEIGHTS_DEFAULT)
		mode = kern_f16_hardware() ? FL_WEIGHTS_STORED : FL_WEIGHTS_CONVERT;
	m->weights_mode = mode;
	if (model_bind(m, &wants, mode, cause) != 0)
		goto fail;
	m->nonfinite = model_scan_nonfinite(m, &wants);
	if (m->nonfinite != NULL && opts != NULL && opts->strict) {
		fl_error(cause, "%s; strict loading refuses non-finite weights",
		    m->nonfinite);
		goto fail;
	}
	if (m->cfg.arch == FL_ARCH_GPT2)
		gpt2_finish(m, qkv, qkv_b);
	else if (m->cfg.arch == FL_ARCH_LLAMA)
		llama_finish(m);
	else
		opt_finish(m);
	if (m->cfg.tie_embed)
		m->unembed = m->wte;
	model_lay_out(m);
	free(qkv);
	free(qkv_b);
	free(wants.v);
	return m;
fail:
	free(qkv);
	free(qkv_b);
	free(wants.v);
	model_free(m);
	return NULL;
}

int
model_weights_parse(const char *s)
{
	if (strcmp(s, "convert") == 0)
		return FL_WEIGHTS_CONVERT;
	if (strcmp(s, "stored") == 0)
		return FL_WEIGHTS_STORED;
	if (strcmp(s, "copy") == 0)
		return FL_WEIGHTS_COPY;
	return -1;
}

const char *
model_weights_name(fl_weights_mode mode)
{
	return mode == FL_WEIGHTS_STORED ? "stored" : mode == FL_WEIGHTS_COPY ?
	    "copy" : "convert";
}

int
model_encode(const fl_model *m, const char *text, size_t len, int **ids, char **cause)
{
	int *raw = NULL, n, bos = m->cfg.bos_id;

	n = tok_encode(m->tok, text, len, &raw, cause);
	if (n < 0)
		return -1;
	if (bos < 0) {
		*ids = raw;
		return n;
	}
	*ids = xcalloc((size_t)n + 1, sizeof **ids);
	(*ids)[0] = bos;
	if (n > 0)
		memcpy(*ids + 1, raw, (size_t)n * sizeof *raw);
	free(raw);
	return n + 1;
}

void
model_free(fl_model *m)
{
	if (m == NULL)
		return;
	if (m->tok != NULL)
		tok_free(m->tok);
	st_close(m->weights);
	free(m->layers);
	free(m->owned);
	free(m->laid);
	free(m->unembed_laid);
	free(atomic_load(&m->unembed_mean));
	free(m->dir);
	free(m->nonfinite);
	free(m);
}
