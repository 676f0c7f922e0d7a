/* mitigate.c - see mitigate.h. */
#include "autoconfig.h"

#include "mitigate.h"

#include <stdlib.h>

#include "engine/kernels.h"
#include "engine/readout.h"
#include "base/util.h"

int
hook_sub_last(void *ud, fl_act *a)
{
	const fl_sub_last *s = ud;
	int w = a->shape[1];
	float *row = a->data + (size_t)(a->shape[0] - 1) * w;

	for (int i = 0; i < w; i++)
		row[i] -= s->vec[i];
	return FL_HOOK_CONTINUE;
}

fl_hook_point
mitigate_intercept_point(const fl_model *m)
{
	return m->cfg.ln_before ? HOOK_RESID_POST : HOOK_MLP_OUT;
}

void
mitigate_final_resid(const fl_model *m, const float *mid, const float *mlp,
    const float *sub, int n, float *out)
{
	const fl_layer *y = &m->layers[m->cfg.n_layer - 1];
	size_t nd = (size_t)n * m->cfg.d_model;
	float *mean, *scale;

	/* in the hook's order: off resid_post, or off mlp_out before the sum */
	for (size_t i = 0; i < nd; i++)
		out[i] = m->cfg.ln_before ? (mid[i] + mlp[i]) - sub[i] :
		    mid[i] + (mlp[i] - sub[i]);
	if (m->cfg.ln_before)
		return;
	mean = xmalloc((size_t)n * sizeof *mean);
	scale = xmalloc((size_t)n * sizeof *scale);
	model_norm_stats(m, mean, scale, out, n);
	kern_ln_apply(out, out, mean, scale, y->ln2_w, y->ln2_b, n, m->cfg.d_model);
	free(mean);
	free(scale);
}

int
mitigate_hooks(const fl_model *m, const fl_mitigation *mit,
    fl_mitigation_state *st, fl_hook *hooks)
{
	int L = m->cfg.n_layer, n = 0;

	if (mit == NULL)
		return 0;
	if (mit->mask) {
		st->mask.heads = mit->mask_heads;
		st->mask.all_queries = false;
		hooks[n++] = (fl_hook){ HOOK_ATTN_SCORES, L - 1, hook_self_mask, &st->mask };
	}
	if (mit->intercept != NULL) {
		st->sub.vec = mit->intercept;
		hooks[n++] = (fl_hook){ mitigate_intercept_point(m), L - 1, hook_sub_last,
		    &st->sub };
	}
	return n;
}

int
mitigate_rerun(fl_run *r, const fl_model *m, fl_cache *c,
    const fl_mitigation *mit, char **cause)
{
	fl_mitigation_state st;
	int nx = mit != NULL && mit->extra != NULL ? mit->n_extra : 0, rc;
	fl_hook *hooks = xmalloc((size_t)(2 + nx) * sizeof *hooks);
	fl_pass p = { 0 };
	int T = c->n_tok;

	p.hooks = hooks;
	p.n_hooks = mitigate_hooks(m, mit, &st, hooks);
	if (nx > 0)
		memcpy(hooks + p.n_hooks, mit->extra, (size_t)nx * sizeof *hooks);
	p.n_hooks += nx;
	p.cache = c;
	p.start_layer = m->cfg.n_layer - 1;
	/* Both mitigations change only the last position's row (the extra
	 * hooks must be row-wise, as the neuron edits are). */
	p.last_row_only = true;
	rc = run_forward(r, c->ids, &T, 1, &p, cause) < 0 ? -1 : 0;
	free(hooks);
	return rc;
}
