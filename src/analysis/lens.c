/* lens.c - see lens.h. */
#include "autoconfig.h"

#include "lens.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/readout.h"
#include "base/util.h"

void
lens_vectors(const fl_model *m, const float *x, int n, float *out)
{
	model_readout(m, x, n, out);
}

int
lens_streams(const fl_model *m, const fl_cache *c, int pos, float *out)
{
	int L = c->n_layer, D = c->d_model, T = c->n_tok;
	float *x;

	if (pos < 0 || pos >= T)
		return -1;
	x = xmalloc((size_t)(L + 1) * D * sizeof *x);
	for (int l = 0; l <= L; l++)
		memcpy(x + (size_t)l * D, c->resid_pre + ((size_t)l * T + pos) * D,
		    (size_t)D * sizeof *x);
	lens_vectors(m, x, L + 1, out);
	free(x);
	return 0;
}

int
lens_layer_streams(const fl_model *m, const fl_cache *c, int pos, float *out)
{
	int L = c->n_layer, D = c->d_model, T = c->n_tok;
	float *x;

	if (pos < 0 || pos >= T)
		return -1;
	x = xmalloc((size_t)3 * L * D * sizeof *x);
	for (int l = 0; l < L; l++) {
		memcpy(x + ((size_t)l * 3 + 0) * D, c->resid_pre + ((size_t)l * T + pos) * D,
		    (size_t)D * sizeof *x);
		memcpy(x + ((size_t)l * 3 + 1) * D, c->resid_mid + ((size_t)l * T + pos) * D,
		    (size_t)D * sizeof *x);
		memcpy(x + ((size_t)l * 3 + 2) * D, c->resid_pre +
		    ((size_t)(l + 1) * T + pos) * D, (size_t)D * sizeof *x);
	}
	lens_vectors(m, x, 3 * L, out);
	free(x);
	return 0;
}

double
lens_softmax_sum(const float *logits, int V, float max)
{
	return kern_exp_sum(logits, V, max);
}

double
lens_logit_diff(const float *logits, int V, int answer, int distractor)
{
	double mean = 0;

	if (distractor >= 0)
		return (double)logits[answer] - logits[distractor];
	for (int v = 0; v < V; v++)
		mean += logits[v];
	return logits[answer] - mean / V;
}

double
lens_prob_of(const float *logits, int V, int id)
{
	float mx = -INFINITY;

	for (int i = 0; i < V; i++)
		if (logits[i] > mx)
			mx = logits[i];
	return exp((double)logits[id] - mx) / lens_softmax_sum(logits, V, mx);
}

int
lens_rank_of(const float *logits, int V, int id)
{
	int rank = 1;
	float v = logits[id];

	/* Ties go to the lower id, as a stable sort would order them. Counted
	 * without branches (on logits the branch is mispredicted half the
	 * time), the ties apart so that each loop is a plain count. */
	for (int i = 0; i < V; i++)
		rank += logits[i] > v;
	for (int i = 0; i < id; i++)
		rank += logits[i] == v;
	return rank;
}

int
lens_topk(const float *logits, int V, int k, int *ids, float *probs)
{
	int n = 0;

	if (k > V)
		k = V;
	/* Insertion into a sorted array of k: O(V k), fine for k <= 100. */
	for (int i = 0; i < V; i++) {
		int j;

		if (n == k && logits[i] <= logits[ids[n - 1]])
			continue;
		j = n < k ? n++ : n - 1;
		while (j > 0 && logits[ids[j - 1]] < logits[i]) {
			ids[j] = ids[j - 1];
			j--;
		}
		ids[j] = i;
	}
	if (probs != NULL && n > 0) {
		float mx = logits[ids[0]];
		double sum = lens_softmax_sum(logits, V, mx);

		for (int i = 0; i < n; i++)
			probs[i] = (float)(exp((double)logits[ids[i]] - mx) / sum);
	}
	return n;
}
