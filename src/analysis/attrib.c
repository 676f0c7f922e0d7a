/* attrib.c - see attrib.h. */
#include "autoconfig.h"

#include "attrib.h"

#include <stdlib.h>
#include <string.h>

#include "engine/linear.h"
#include "engine/readout.h"
#include "base/util.h"

const char *
attrib_convention(const fl_model *m)
{
	if (!m->cfg.ln_before)
		return "post-LN: contribution = x carried through every block LayerNorm "
		    "after it, each frozen at the run's scale (centred, times its gain, "
		    "over its scale), then project_out, dotted with W_U[:, answer]; heads "
		    "without the output bias, attn_bias = b_O per layer, mlp = "
		    "hook_mlp_out (its bias included), ln_bias = every block LN's bias "
		    "carried the same way; logit_diff uses W_U[:, answer] - mean column";
	if (m->cfg.rms_norm)
		return "contribution = x / scale_final * w_norm . W_U[:, answer] (final "
		    "RMSNorm, scale_final frozen from the run; no centring); heads "
		    "(no output bias in Llama), mlp = hook_mlp_out, pos_embed = 0 "
		    "(rotary positions act inside attention), ln_bias = 0; logit_diff "
		    "uses W_U[:, answer] - mean column";
	if (!m->cfg.final_ln)
		return "no final LayerNorm: contribution = x . W_U[:, answer] (through "
		    "project_out); heads without the output bias, attn_bias = b_O per "
		    "layer, mlp = hook_mlp_out (its bias included), ln_bias = 0; "
		    "logit_diff uses W_U[:, answer] - mean column";
	return "contribution = (x - mean(x)) / scale_final * w_lnf . W_U[:, answer], "
	    "scale_final frozen from the run; heads without the output bias, "
	    "attn_bias = b_O per layer, mlp = hook_mlp_out (its bias included), "
	    "ln_bias = b_lnf . W_U[:, answer]; logit_diff uses W_U[:, answer] - "
	    "mean column";
}

void
attrib_mean_unembed(const fl_model *m, float *out)
{
	int P = m->cfg.d_proj, V = m->cfg.n_vocab;
	double *acc = xcalloc((size_t)P, sizeof *acc);
	float *u = xmalloc((size_t)P * sizeof *u);

	for (int v = 0; v < V; v++) {
		table_row(&m->unembed, v, u);
		for (int i = 0; i < P; i++)
			acc[i] += u[i];
	}
	for (int i = 0; i < P; i++)
		out[i] = (float)(acc[i] / V);
	free(u);
	free(acc);
}

/* The LayerNorms between a site and the output are numbered like the
 * sites: post-LN, ln1 of layer l is 2l and ln2 is 2l + 1; the final LN is
 * 2L. Those after `site` are [*first, *last]; empty when first > last. */
static void
ln_span(const fl_model *m, int site, int *first, int *last)
{
	int L2 = 2 * m->cfg.n_layer;

	*first = m->cfg.ln_before ? L2 : site;
	*last = m->cfg.final_ln ? L2 : L2 - 1;
}

/* LayerNorm j's gain, bias and frozen scale (1 without a cache). */
static void
ln_get(const fl_model *m, const fl_cache *c, int pos, int j, const float **w,
    const float **b, float *s)
{
	int L2 = 2 * m->cfg.n_layer;

	if (j == L2) {
		*w = m->lnf_w;
		*b = m->lnf_b;
		*s = c != NULL ? c->lnf_scale[pos] : 1.0f;
		return;
	}
	*w = j % 2 == 0 ? m->layers[j / 2].ln1_w : m->layers[j / 2].ln2_w;
	*b = j % 2 == 0 ? m->layers[j / 2].ln1_b : m->layers[j / 2].ln2_b;
	if (c == NULL)
		*s = 1.0f;
	else
		*s = (j % 2 == 0 ? c->ln1_scale : c->ln2_scale)[(size_t)(j / 2) *
		    c->n_tok + pos];
}

double
attrib_site_dirs(const fl_model *m, const fl_cache *c, int pos, const float *u,
    double *dirs)
{
	int D = m->cfg.d_model, L2 = 2 * m->cfg.n_layer, first, last;
	float *ud = xmalloc((size_t)D * sizeof *ud);
	double *e = xmalloc((size_t)D * sizeof *e), bias = 0;

	model_unembed_dir(m, u, ud);
	for (int i = 0; i < D; i++)
		e[i] = ud[i];
	/* Back from the output through LN last, ..., LN first: before LN j
	 * the direction is centre(w * e) / s, and its bias adds b . e. Every
	 * site k >= first is read just before LN k (post-LN), or before the
	 * one final LN (pre-LN). */
	ln_span(m, 0, &first, &last);
	for (int j = last; j >= first; j--) {
		const float *w, *b;
		float s;
		double mean = 0;

		ln_get(m, c, pos, j, &w, &b, &s);
		for (int i = 0; i < D; i++) {
			if (b != NULL)
				bias += (double)b[i] * e[i];
			e[i] *= w[i];
			mean += e[i];
		}
		/* RMSNorm does not centre */
		mean = m->cfg.rms_norm ? 0 : mean / D;
		for (int i = 0; i < D; i++)
			e[i] = (e[i] - mean) / s;
		if (j < L2)
			memcpy(dirs + (size_t)j * D, e, (size_t)D * sizeof *e);
	}
	for (int k = 0; k < L2 && k < first; k++)
		memcpy(dirs + (size_t)k * D, e, (size_t)D * sizeof *e);
	free(ud);
	free(e);
	return bias;
}

void
attrib_carry(const fl_model *m, const fl_cache *c, int pos, int site, float *x,
    int n)
{
	int D = m->cfg.d_model, first, last;

	ln_span(m, site, &first, &last);
	for (int j = first; j <= last; j++) {
		const float *w, *b;
		float s;

		ln_get(m, c, pos, j, &w, &b, &s);
		for (int r = 0; r < n; r++) {
			float *xr = x + (size_t)r * D;
			double mean = 0;

			if (!m->cfg.rms_norm) {	/* RMSNorm does not centre */
				for (int i = 0; i < D; i++)
					mean += xr[i];
				mean /= D;
			}
			for (int i = 0; i < D; i++)
				xr[i] = (float)((xr[i] - mean) / s) * w[i];
		}
	}
}

void
attrib_vocab(const fl_model *m, const fl_cache *c, int pos, int site,
    const float *x, int n, float *out)
{
	int D = m->cfg.d_model;
	float *y = xmalloc((size_t)n * D * sizeof *y);

	memcpy(y, x, (size_t)n * D * sizeof *y);
	attrib_carry(m, c, pos, site, y, n);
	model_unembed(m, y, n, out, NULL);
	free(y);
}

void
attrib_clear(fl_attrib *a)
{
	if (a == NULL)
		return;
	free(a->head);
	free(a->attn_bias);
	free(a->mlp);
	memset(a, 0, sizeof *a);
}

static void
attrib_alloc(fl_attrib *a, int L, int H)
{
	memset(a, 0, sizeof *a);
	a->n_layer = L;
	a->n_head = H;
	a->head = xcalloc((size_t)L * H, sizeof *a->head);
	a->attn_bias = xcalloc((size_t)L, sizeof *a->attn_bias);
	a->mlp = xcalloc((size_t)L, sizeof *a->mlp);
}

static double
dot_d(const float *x, const double *e, int D)
{
	double s = 0;

	for (int i = 0; i < D; i++)
		s += x[i] * e[i];
	return s;
}

/* Fills one attribution for the vocabulary direction u (P). comp holds the
 * components as rows: embed, pos, L*H heads, L biases, L MLPs, then the
 * final residual minus all of them; readout is the cache's readout row. */
static void
attrib_fill(fl_attrib *a, const fl_model *m, const fl_cache *c, int pos,
    const float *comp, const float *u, const float *readout)
{
	int L = a->n_layer, H = a->n_head, D = m->cfg.d_model, r = 0;
	double *dirs = xmalloc((size_t)2 * L * D * sizeof *dirs);
	float *ud = xmalloc((size_t)D * sizeof *ud);
	double sum = 0, v;

	a->ln_bias = attrib_site_dirs(m, c, pos, u, dirs);
#define NEXT(site) (v = dot_d(comp + (size_t)(r++) * D, dirs + (size_t)(site) * D, D), \
	sum += v, v)
	a->embed = NEXT(0);
	a->pos_embed = NEXT(0);
	for (int i = 0; i < L * H; i++)
		a->head[i] = NEXT(ATTRIB_SITE_ATTN(i / H));
	for (int l = 0; l < L; l++)
		a->attn_bias[l] = NEXT(ATTRIB_SITE_ATTN(l));
	for (int l = 0; l < L; l++)
		a->mlp[l] = NEXT(ATTRIB_SITE_MLP(l));
#undef NEXT
	model_unembed_dir(m, u, ud);
	a->logit = 0;
	for (int i = 0; i < D; i++)
		a->logit += (double)readout[i] * ud[i];
	a->sum = sum + a->ln_bias;
	/* Pre-LN, every site reads along the same direction, and the final
	 * residual is the sum of the components: what an intervention added
	 * is the remainder. Post-LN, only the identity is left. */
	if (m->cfg.ln_before)
		a->rest = dot_d(comp + (size_t)r * D, dirs, D);
	else
		a->rest = a->logit - a->sum;
	free(ud);
	free(dirs);
}

int
attrib_direct(fl_attrib *to_logit, fl_attrib *to_diff, const fl_model *m,
    const fl_cache *c, int pos, int token, const float *mean_unembed,
    char **cause)
{
	int L = c->n_layer, H = c->n_head, D = c->d_model, T = c->n_tok;
	int V = m->cfg.n_vocab, P = m->cfg.d_proj, rows = 2 + L * H + 2 * L + 1;
	float *comp, *rest, *u;

	if (pos < 0 || pos >= T)
		return fl_error(cause, "position %d is outside the prompt's %d tokens",
		    pos, T);
	if (token < 0 || token >= V)
		return fl_error(cause, "token %d is outside the vocabulary", token);
	if (c->valid < L)
		return fl_error(cause, "the cache holds %d of %d layers; direct "
		    "contributions need a full pass", c->valid, L);
	comp = xcalloc((size_t)rows * D, sizeof *comp);
	u = xmalloc((size_t)P * sizeof *u);

	/* the components, as rows */
	if (m->project_in.w != NULL) {
		table_row(&m->wte, c->ids[pos], u);
		kern_linear(comp, D, u, P, &m->project_in, 1, false);
	} else
		table_row(&m->wte, c->ids[pos], comp);
	if (m->wpe != NULL)	/* rotary models: no position row (zeros) */
		memcpy(comp + D, m->wpe + (size_t)(pos + m->cfg.pos_offset) * D,
		    (size_t)D * sizeof *comp);
	for (int l = 0; l < L; l++) {
		const float *z = c->z + ((size_t)l * T + pos) * D;
		const float *b = m->layers[l].o.b;

		for (int h = 0; h < H; h++)
			model_head_result(m, l, h, z, comp + (size_t)(2 + l * H + h) * D);
		if (b != NULL)
			memcpy(comp + (size_t)(2 + L * H + l) * D, b, (size_t)D * sizeof *b);
		memcpy(comp + (size_t)(2 + L * H + L + l) * D,
		    c->mlp_out + ((size_t)l * T + pos) * D, (size_t)D * sizeof *comp);
	}
	rest = comp + (size_t)(rows - 1) * D;
	memcpy(rest, c->resid_pre + ((size_t)L * T + pos) * D, (size_t)D * sizeof *rest);
	for (int r = 0; r < rows - 1; r++)
		for (int i = 0; i < D; i++)
			rest[i] -= comp[(size_t)r * D + i];

	if (to_logit != NULL) {
		attrib_alloc(to_logit, L, H);
		table_row(&m->unembed, token, u);
		attrib_fill(to_logit, m, c, pos, comp, u, c->lnf + (size_t)pos * D);
	}
	if (to_diff != NULL) {
		float *own = NULL;

		if (mean_unembed == NULL) {
			own = xmalloc((size_t)P * sizeof *own);
			attrib_mean_unembed(m, own);
			mean_unembed = own;
		}
		attrib_alloc(to_diff, L, H);
		table_row(&m->unembed, token, u);
		for (int i = 0; i < P; i++)
			u[i] -= mean_unembed[i];
		attrib_fill(to_diff, m, c, pos, comp, u, c->lnf + (size_t)pos * D);
		free(own);
	}
	free(u);
	free(comp);
	return 0;
}
