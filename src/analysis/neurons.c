/* neurons.c - an MLP at neuron level; see neurons.h. */
#include "autoconfig.h"

#include "neurons.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "analysis/lens.h"
#include "engine/kernels.h"
#include "engine/readout.h"
#include "base/util.h"

void
neurons_value(const fl_model *m, int layer, int i, float *out)
{
	const fl_linear *w = &m->layers[layer].proj;

	for (int o = 0; o < m->cfg.d_model; o++)
		out[o] = linear_weight(w, i, o);
}

void
neurons_sum(const fl_model *m, int layer, const float *act, float *out)
{
	const fl_linear *w = &m->layers[layer].proj;
	int D = m->cfg.d_model, F = m->cfg.d_mlp;
	double *acc = xcalloc((size_t)D, sizeof *acc);

	for (int i = 0; i < F; i++)
		for (int o = 0; o < D; o++)
			acc[o] += (double)act[i] * linear_weight(w, i, o);
	for (int o = 0; o < D; o++)
		out[o] = (float)(acc[o] + (w->b != NULL ? w->b[o] : 0));
	free(acc);
}

/* The direction e (D) whose dot product with a vector written at layer's
 * MLP is its direct effect on token (logit - mean logit). */
void
neurons_token_dir(const fl_model *m, const fl_cache *c, int pos, int layer, int token,
    const float *mean_unembed, double *e)
{
	int P = m->cfg.d_proj, D = m->cfg.d_model, L2 = 2 * m->cfg.n_layer;
	float *u = xmalloc((size_t)P * sizeof *u);
	double *dirs = xmalloc((size_t)L2 * D * sizeof *dirs);

	table_row(&m->unembed, token, u);
	for (int i = 0; i < P; i++)
		u[i] -= mean_unembed[i];
	attrib_site_dirs(m, c, pos, u, dirs);
	memcpy(e, dirs + (size_t)ATTRIB_SITE_MLP(layer) * D, (size_t)D * sizeof *e);
	free(dirs);
	free(u);
}

void
neurons_act(const fl_model *m, const fl_cache *c, int layer, int pos, float *act)
{
	const fl_layer *y = &m->layers[layer];
	int D = m->cfg.d_model;
	const float *mid = c->resid_mid + ((size_t)layer * c->n_tok + pos) * D;
	float *x = xmalloc((size_t)D * sizeof *x), *out = xmalloc((size_t)D * sizeof *out);
	float mean, scale;

	/* The MLP's input row, then its activations (model_mlp's h). */
	memcpy(x, mid, (size_t)D * sizeof *x);
	if (m->cfg.ln_before) {
		model_norm_stats(m, &mean, &scale, mid, 1);
		kern_ln_apply(x, mid, &mean, &scale, y->ln2_w, y->ln2_b, 1, D);
	}
	model_mlp(m, layer, out, x, 1, act, false);
	free(x);
	free(out);
}

int
neurons_at(fl_neurons *n, const fl_model *m, const fl_cache *c, int layer,
    int pos, int answer, int subject, const float *mean_unembed, char **cause)
{
	const fl_config *cf = &m->cfg;
	const fl_layer *y;
	int D = cf->d_model, F = cf->d_mlp, V = cf->n_vocab;
	float *x, *out;
	double *ea, *es = NULL;
	const float *b;

	memset(n, 0, sizeof *n);
	if (layer < 0 || layer >= cf->n_layer || pos < 0 || pos >= c->n_tok)
		return fl_error(cause, "neurons: layer %d, position %d: the model has "
		    "layers 0 to %d and the prompt positions 0 to %d", layer, pos,
		    cf->n_layer - 1, c->n_tok - 1);
	if (answer < 0 || answer >= V || subject >= V)
		return fl_error(cause, "neurons: token %d is not in the vocabulary of "
		    "%d", answer < 0 || answer >= V ? answer : subject, V);
	y = &m->layers[layer];
	n->layer = layer;
	n->pos = pos;
	n->d_mlp = F;
	n->answer = answer;
	n->subject = subject;
	n->act = xmalloc((size_t)F * sizeof *n->act);
	n->w_norm = xmalloc((size_t)F * sizeof *n->w_norm);
	n->to_answer = xcalloc((size_t)F, sizeof *n->to_answer);
	x = xmalloc((size_t)D * sizeof *x);
	out = xmalloc((size_t)D * sizeof *out);

	n->w_answer = xcalloc((size_t)F, sizeof *n->w_answer);
	neurons_act(m, c, layer, pos, n->act);

	ea = xmalloc((size_t)D * sizeof *ea);
	neurons_token_dir(m, c, pos, layer, answer, mean_unembed, ea);
	if (subject >= 0) {
		es = xmalloc((size_t)D * sizeof *es);
		neurons_token_dir(m, c, pos, layer, subject, mean_unembed, es);
		n->to_subject = xcalloc((size_t)F, sizeof *n->to_subject);
	}
	for (int i = 0; i < F; i++) {
		double nn = 0, da = 0, ds = 0;

		neurons_value(m, layer, i, x);
		for (int o = 0; o < D; o++) {
			nn += (double)x[o] * x[o];
			da += x[o] * ea[o];
			if (es != NULL)
				ds += x[o] * es[o];
		}
		n->w_norm[i] = (float)sqrt(nn);
		n->to_answer[i] = n->act[i] * da;
		n->w_answer[i] = da;
		if (es != NULL)
			n->to_subject[i] = n->act[i] * ds;
	}
	b = y->proj.b;
	for (int o = 0; b != NULL && o < D; o++) {
		n->bias_answer += b[o] * ea[o];
		if (es != NULL)
			n->bias_subject += b[o] * es[o];
	}
	free(ea);
	free(es);
	free(x);
	free(out);
	return 0;
}

void
neurons_clear(fl_neurons *n)
{
	if (n == NULL)
		return;
	free(n->act);
	free(n->w_norm);
	free(n->to_answer);
	free(n->to_subject);
	free(n->w_answer);
	memset(n, 0, sizeof *n);
}

void
neurons_value_top(const fl_model *m, int layer, int first, int n, int k,
    int *ids, float *vals)
{
	int D = m->cfg.d_model, V = m->cfg.n_vocab;
	float *w = xmalloc((size_t)n * D * sizeof *w);
	float *lg = xmalloc((size_t)n * V * sizeof *lg);

	for (int j = 0; j < n; j++)
		neurons_value(m, layer, first + j, w + (size_t)j * D);
	attrib_vocab(m, NULL, 0, ATTRIB_SITE_MLP(layer), w, n, lg);
	for (int j = 0; j < n; j++) {
		const float *row = lg + (size_t)j * V;
		int got = lens_topk(row, V, k, ids + (size_t)j * k, NULL);

		for (int t = 0; t < k; t++)
			vals[(size_t)j * k + t] = t < got ? row[ids[(size_t)j * k + t]] : NAN;
	}
	free(w);
	free(lg);
}

int
neurons_layer_top(const fl_model *m, int layer, int k, int *ids, float *vals,
    const fl_progress *p, long base, long total)
{
	int F = m->cfg.d_mlp, chunk = 64;

	for (int i = 0; i < F; i += chunk) {
		int n = F - i < chunk ? F - i : chunk;

		neurons_value_top(m, layer, i, n, k, ids + (size_t)i * k,
		    vals + (size_t)i * k);
		if (fl_progress_report(p, "value vectors", base + i + n, total))
			return FL_STOPPED;
	}
	return 0;
}

int
hook_neuron_edit(void *ud, fl_act *a)
{
	const fl_neuron_edit *e = ud;
	int F = a->shape[a->ndim - 1];

	for (int t = 0; t < a->shape[0]; t++)
		a->data[(size_t)t * F + e->neuron] *= e->factor;
	return FL_HOOK_CONTINUE;
}
