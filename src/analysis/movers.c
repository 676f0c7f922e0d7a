/* movers.c - see movers.h. */
#include "autoconfig.h"

#include "movers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "analysis/lens.h"
#include "engine/readout.h"
#include "base/util.h"

int
movers_score(fl_mover *out, const fl_model *m, const fl_cache *c, int pos,
    int subj_pos, int subj_len, int subject, float threshold, char **cause)
{
	int L = c->n_layer, H = c->n_head, D = c->d_model, T = c->n_tok;
	int V = m->cfg.n_vocab;
	float *res, *carried, *logits;

	if (c->pattern == NULL)
		return fl_error(cause, "mover scores need the attention patterns "
		    "(a cache made with FL_CACHE_PATTERN)");
	if (c->valid < L)
		return fl_error(cause, "the cache holds %d of %d layers", c->valid, L);
	if (pos < 0 || pos >= T)
		return fl_error(cause, "position %d is outside the prompt's %d tokens",
		    pos, T);
	if (subj_pos < 0 || subj_len < 1 || subj_pos + subj_len > pos + 1)
		return fl_error(cause, "the subject (tokens %d..%d) must come at or "
		    "before position %d", subj_pos, subj_pos + subj_len - 1, pos);
	if (subject < 0 || subject >= V)
		return fl_error(cause, "subject token %d is outside the vocabulary",
		    subject);
	res = xmalloc((size_t)L * H * D * sizeof *res);
	logits = xmalloc((size_t)L * H * V * sizeof *logits);
	for (int l = 0; l < L; l++)
		for (int h = 0; h < H; h++)
			model_head_result(m, l, h, c->z + ((size_t)l * T + pos) * D,
			    res + ((size_t)l * H + h) * D);
	/* Each head's output carried to the output like a direct contribution,
	 * then one product for every head, so the unembedding is read once. */
	carried = xmalloc((size_t)L * H * D * sizeof *carried);
	memcpy(carried, res, (size_t)L * H * D * sizeof *carried);
	for (int l = 0; l < L; l++)
		attrib_carry(m, c, pos, ATTRIB_SITE_ATTN(l), carried + (size_t)l * H * D, H);
	model_unembed(m, carried, L * H, logits, NULL);
	free(carried);
	for (int l = 0; l < L; l++)
		for (int h = 0; h < H; h++) {
			fl_mover *o = &out[l * H + h];
			const float *row = c->pattern + (((size_t)l * H + h) * T + pos) * T;
			const float *lg = logits + ((size_t)l * H + h) * V;
			const float *r = res + ((size_t)l * H + h) * D;
			double a = 0, n2 = 0;

			for (int j = subj_pos; j < subj_pos + subj_len; j++)
				a += row[j];
			for (int i = 0; i < D; i++)
				n2 += (double)r[i] * r[i];
			o->attn = (float)a;
			o->logit = lg[subject];
			o->rank = lens_rank_of(lg, V, subject);
			o->score = (float)(a * (1.0 - log((double)o->rank) / log((double)V)));
			o->norm = (float)sqrt(n2);
			o->mover = o->score >= threshold;
		}
	free(logits);
	free(res);
	return 0;
}

double
movers_pearson(const double *x, const double *y, int n)
{
	double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;

	if (n < 2)
		return NAN;
	for (int i = 0; i < n; i++) {
		mx += x[i];
		my += y[i];
	}
	mx /= n;
	my /= n;
	for (int i = 0; i < n; i++) {
		sxx += (x[i] - mx) * (x[i] - mx);
		syy += (y[i] - my) * (y[i] - my);
		sxy += (x[i] - mx) * (y[i] - my);
	}
	if (sxx <= 0 || syy <= 0)
		return NAN;
	return sxy / sqrt(sxx * syy);
}
