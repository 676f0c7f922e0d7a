/* attrib.c - see attrib.h. */
#include "attrib.h"

#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/util.h"

void
attrib_mean_unembed(const fl_model *m, float *out)
{
	int D = m->cfg.d_model, V = m->cfg.n_vocab;
	double *acc = xcalloc((size_t)D, sizeof *acc);

	for (int v = 0; v < V; v++) {
		const float *u = m->unembed + (size_t)v * D;

		for (int i = 0; i < D; i++)
			acc[i] += u[i];
	}
	for (int i = 0; i < D; i++)
		out[i] = (float)(acc[i] / V);
	free(acc);
}

double
attrib_project(const float *x, const float *dir, int D, float s)
{
	double mean = 0, dot = 0, dsum = 0;

	for (int i = 0; i < D; i++) {
		mean += x[i];
		dot += (double)x[i] * dir[i];
		dsum += dir[i];
	}
	mean /= D;
	return (dot - mean * dsum) / s;
}

void
attrib_vocab(const fl_model *m, const float *x, int n, float s, float *out)
{
	int D = m->cfg.d_model;
	float *y = xmalloc((size_t)n * D * sizeof *y);

	for (int r = 0; r < n; r++) {
		const float *xr = x + (size_t)r * D;
		float *yr = y + (size_t)r * D;
		double mean = 0;

		for (int i = 0; i < D; i++)
			mean += xr[i];
		mean /= D;
		for (int i = 0; i < D; i++)
			yr[i] = (float)((xr[i] - mean) / s) * m->lnf_w[i];
	}
	kern_unembed(out, y, m->unembed, n, D, m->cfg.n_vocab);
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

/* Fills one attribution. comp holds the components as rows: embed, pos,
 * L*H heads, L biases, L MLPs, then the rest. plain is the unembedding
 * direction (W_U[:, a], maybe minus the mean column), dir the same times the
 * LN gain. */
static void
attrib_fill(fl_attrib *a, const float *comp, const float *plain, const float *dir,
    const fl_model *m, const float *lnf_out, float s)
{
	int L = a->n_layer, H = a->n_head, D = m->cfg.d_model, r = 0;
	double sum = 0, v;

#define NEXT() (v = attrib_project(comp + (size_t)(r++) * D, dir, D, s), sum += v, v)
	a->embed = NEXT();
	a->pos_embed = NEXT();
	for (int i = 0; i < L * H; i++)
		a->head[i] = NEXT();
	for (int l = 0; l < L; l++)
		a->attn_bias[l] = NEXT();
	for (int l = 0; l < L; l++)
		a->mlp[l] = NEXT();
#undef NEXT
	a->rest = attrib_project(comp + (size_t)r * D, dir, D, s);
	a->lnf_bias = 0;
	a->logit = 0;
	for (int i = 0; i < D; i++) {
		a->lnf_bias += (double)m->lnf_b[i] * plain[i];
		a->logit += (double)lnf_out[i] * plain[i];
	}
	a->sum = sum + a->lnf_bias;
}

int
attrib_direct(fl_attrib *to_logit, fl_attrib *to_diff, const fl_model *m,
    const fl_cache *c, int pos, int token, char **cause)
{
	int L = c->n_layer, H = c->n_head, D = c->d_model, T = c->n_tok;
	int V = m->cfg.n_vocab, rows = 2 + L * H + 2 * L + 1;
	float *comp, *rest, *dir, *ubar = NULL, *plain;
	float s;
	const float *u;

	if (pos < 0 || pos >= T)
		return fl_error(cause, "position %d is outside the prompt's %d tokens",
		    pos, T);
	if (token < 0 || token >= V)
		return fl_error(cause, "token %d is outside the vocabulary", token);
	if (c->valid < L)
		return fl_error(cause, "the cache holds %d of %d layers; direct "
		    "contributions need a full pass", c->valid, L);
	comp = xcalloc((size_t)rows * D, sizeof *comp);
	dir = xmalloc((size_t)D * sizeof *dir);
	plain = xmalloc((size_t)D * sizeof *plain);
	s = c->lnf_scale[pos];
	u = m->unembed + (size_t)token * D;

	/* the components, as rows */
	memcpy(comp, m->wte + (size_t)c->ids[pos] * D, (size_t)D * sizeof *comp);
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
		for (int i = 0; i < D; i++) {
			plain[i] = u[i];
			dir[i] = m->lnf_w[i] * u[i];
		}
		attrib_fill(to_logit, comp, plain, dir, m, c->lnf + (size_t)pos * D, s);
	}
	if (to_diff != NULL) {
		ubar = xmalloc((size_t)D * sizeof *ubar);
		attrib_mean_unembed(m, ubar);
		attrib_alloc(to_diff, L, H);
		for (int i = 0; i < D; i++) {
			plain[i] = u[i] - ubar[i];
			dir[i] = m->lnf_w[i] * plain[i];
		}
		attrib_fill(to_diff, comp, plain, dir, m, c->lnf + (size_t)pos * D, s);
	}
	free(ubar);
	free(plain);
	free(dir);
	free(comp);
	return 0;
}
