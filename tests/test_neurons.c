/*
 * test_neurons.c - the MLP at neuron level (analysis/neurons.h), on GPT-2,
 * OPT (pre- and post-LN) and Llama (SwiGLU: the gated product):
 * - the activations equal what the pass hands mlp.hook_post at the last
 *   position (a hook of our own copies them);
 * - the neurons' contributions plus b_out equal hook_mlp_out within 1e-5
 *   of its largest entry, in every layer;
 * - the direct effects plus b_out's sum to the MLP output's own direct
 *   effect, read through attrib_vocab (the session's convention);
 * - the value vectors' top tokens are the largest logits of W_out's row
 *   through the unembedding, computed here by one product per neuron;
 * - an edit hook that zeroes a neuron makes the pass's mlp_out its
 *   contributions without it.
 */
#include "autoconfig.h"

#include "check.h"
#include "fx.h"

#include "analysis/attrib.h"
#include "analysis/neurons.h"
#include "engine/pool.h"
#include "engine/readout.h"

typedef struct {
	int	 pos, F;
	float	*dst;
} grab_row;

static int
grab_post(void *ud, fl_act *a)
{
	grab_row *g = ud;

	memcpy(g->dst, a->data + (size_t)g->pos * g->F, (size_t)g->F * sizeof(float));
	return FL_HOOK_CONTINUE;
}

static void
check_fixture(const char *fx)
{
	fl_model *m = fx_model(fx);
	int T, *ids = fx_ref_ids(fx, &T), L, D, F, V;
	fl_run *r = NULL;
	fl_cache *c = NULL;
	float *mean_u = NULL, *post = NULL, *sum = NULL, *lg = NULL;
	double worst_sum = 0, worst_act = 0, worst_dir = 0, worst_edit = 0;
	int top_bad = 0;
	char *cause = NULL;

	if (m == NULL || ids == NULL)
		goto out;
	L = m->cfg.n_layer;
	D = m->cfg.d_model;
	F = m->cfg.d_mlp;
	V = m->cfg.n_vocab;
	r = run_new(m, T, T);
	c = fx_cache(m, r, ids, T);
	mean_u = xmalloc((size_t)m->cfg.d_proj * sizeof *mean_u);
	attrib_mean_unembed(m, mean_u);
	post = xmalloc((size_t)F * sizeof *post);
	sum = xmalloc((size_t)D * sizeof *sum);
	lg = xmalloc((size_t)V * sizeof *lg);
	for (int l = 0; l < L; l++) {
		fl_neurons n;
		grab_row g = { T - 1, F, post };
		fl_hook h = { HOOK_MLP_POST, l, grab_post, &g };
		fl_pass p = { 0 };
		const float *mo = c->mlp_out + ((size_t)l * T + T - 1) * D;
		double mx = 0, want = 0, got, mean = 0;
		float *vrow = xmalloc((size_t)D * sizeof *vrow);
		int ids_top[5];
		float vals_top[5];

		p.hooks = &h;
		p.n_hooks = 1;
		run_forward(r, ids, &T, 1, &p, &cause);
		if (neurons_at(&n, m, c, l, T - 1, 3, 5, mean_u, &cause) != 0) {
			check(0, "%s: neurons_at layer %d: %s", fx, l, cause);
			free(cause);
			free(vrow);
			goto out;
		}
		for (int i = 0; i < F; i++)
			worst_act = fmax(worst_act, fabs(n.act[i] - post[i]) /
			    (1 + fabs(post[i])));
		neurons_sum(m, l, n.act, sum);
		for (int o = 0; o < D; o++)
			mx = fmax(mx, fabs(mo[o]));
		for (int o = 0; o < D; o++)
			worst_sum = fmax(worst_sum, fabs(sum[o] - mo[o]) / (mx > 1 ? mx : 1));

		/* the MLP output's direct effect on token 3, as the session reads it */
		memcpy(vrow, mo, (size_t)D * sizeof *vrow);
		attrib_vocab(m, c, T - 1, ATTRIB_SITE_MLP(l), vrow, 1, lg);
		for (int v = 0; v < V; v++)
			mean += lg[v];
		want = lg[3] - mean / V;
		got = n.bias_answer;
		for (int i = 0; i < F; i++)
			got += n.to_answer[i];
		worst_dir = fmax(worst_dir, fabs(got - want) / (1 + fabs(want)));

		/* neuron 1's value vector: its top tokens against a product here */
		neurons_value_top(m, l, 1, 1, 5, ids_top, vals_top);
		neurons_value(m, l, 1, vrow);
		attrib_vocab(m, NULL, 0, ATTRIB_SITE_MLP(l), vrow, 1, lg);
		for (int t = 0; t < 5; t++) {
			int above = 0;

			for (int v = 0; v < V; v++)
				above += lg[v] > lg[ids_top[t]];
			top_bad += above != t || fabsf(vals_top[t] - lg[ids_top[t]]) > 1e-5f;
		}

		/* zero neuron 2 with the edit hook: mlp_out loses its contribution */
		{
			fl_neuron_edit e = { l, 2, 0 };
			fl_hook eh = { HOOK_MLP_POST, l, hook_neuron_edit, &e };
			fl_cache *c2 = cache_new(m, T, 0);
			fl_pass p2 = { 0 };

			p2.hooks = &eh;
			p2.n_hooks = 1;
			p2.cache = c2;
			run_forward(r, ids, &T, 1, &p2, &cause);
			n.act[2] = 0;
			neurons_sum(m, l, n.act, sum);
			for (int o = 0; o < D; o++)
				worst_edit = fmax(worst_edit, fabs(sum[o] -
				    c2->mlp_out[((size_t)l * T + T - 1) * D + o]) / (mx > 1 ? mx : 1));
			cache_free(c2);
		}
		neurons_clear(&n);
		free(vrow);
	}
	check(worst_act <= 1e-5, "%s: the activations are mlp.hook_post's at the last "
	    "position (worst relative difference %.2g)", fx, worst_act);
	check(worst_sum <= 1e-5, "%s: the neurons' contributions plus b_out equal "
	    "hook_mlp_out in every layer (worst %.2g of its largest entry)", fx, worst_sum);
	check(worst_dir <= 1e-4, "%s: the direct effects plus b_out's sum to the MLP "
	    "output's (worst relative difference %.2g)", fx, worst_dir);
	check(top_bad == 0, "%s: the value vectors' top 5 are the largest logits "
	    "through the unembedding (%d wrong)", fx, top_bad);
	check(worst_edit <= 1e-5, "%s: zeroing a neuron by hook takes its "
	    "contribution out of hook_mlp_out (worst %.2g)", fx, worst_edit);
out:
	free(mean_u);
	free(post);
	free(sum);
	free(lg);
	cache_free(c);
	run_free(r);
	free(ids);
	model_free(m);
}

int
main(void)
{
	static const char *fxs[] = { "gpt2-f32", "opt-f32", "opt350-f32",
	    "llama-f32", "llama-bf16" };

	kern_set_threads(1);
	for (size_t i = 0; i < sizeof fxs / sizeof fxs[0]; i++)
		check_fixture(fxs[i]);
	return check_done();
}
