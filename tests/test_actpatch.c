/*
 * test_actpatch.c - activation patching grids (clean into corrupted) and
 * the logit lens at a position.
 *
 * - Against PyTorch (tests/fixtures/F/actpatch-ref.json, tools/
 *   make-trace-fixture, float64) on gpt2-f32, opt-f32, opt350-f32 (post-LN)
 *   and llama-f32: the clean and corrupted metrics and every grid (resid_pre,
 *   resid_mid, attn_out, mlp_out by layer and position; z, q, k, v and
 *   pattern by layer and head, and by layer, position and head; Llama's k
 *   and v by key/value head, its q and k patched before the rotation in
 *   the reference) on the three metrics (logit(answer) -
 *   logit(distractor), logit(answer) - mean logit, P(answer)), within 1e-5
 *   (raw: 1e-5 of the metric's scale, max(1, |clean|, |corrupted|));
 *   the normalised grid within 1e-5 of the reference's; the lens of every
 *   stream at a middle position (actpatch-lens.f32).
 * - Invariants: resid_pre of layer 0 patched at every position at once is the
 *   clean run, exactly; a patch at a position where the prompts agree
 *   (resid_pre of layer 0) changes nothing, exactly, in a real pass; every
 *   cell before the first differing position is the corrupted metric;
 *   resid_mid of the last layer at the last position restores the clean
 *   metric (normalised 1); z of every head at (layer, position) is
 *   attn_out's cell there.
 * - Heads: q, k and v of every head of a layer patched together at every
 *   position give z of every head patched there, and so do the pattern and
 *   v (1e-5); per head too where every query head has its own key/value
 *   head (z's grid cell); q, k and v patched before the first differing
 *   position change nothing, exactly; q and k patched before the rotation
 *   (a hook of the test's own at hook_q and hook_k, the clean run's values
 *   there) give the q and k grids (1e-5); the _every grids are z, q, k, v
 *   and pattern in that order, the same as those grids run alone; a
 *   pattern patch from a result without patterns is refused.
 * - Packing: one patched run per pass and four per pass give the same grid
 *   (within 1e-5: a pass of other rows may round the products otherwise).
 * - Errors and stopping: prompts of different token counts are refused,
 *   naming both counts; a progress callback that asks to stop gives
 *   FL_STOPPED.
 */
#include "autoconfig.h"

#include "check.h"
#include "fx.h"

#include "analysis/actpatch.h"
#include "analysis/lens.h"

static const char *fixtures[] = { "gpt2-f32", "opt-f32", "opt350-f32", "llama-f32" };
static const char *metric_keys[] = { "logit_diff", "logit_mean", "prob" };

/* Every number of a nested JSON array, in order, as doubles (heap). */
static void
flatten(const cJSON *a, double **out, size_t *n, size_t *cap)
{
	const cJSON *e;

	if (cJSON_IsNumber(a)) {
		if (*n == *cap)
			*out = xrealloc(*out, (*cap = *cap ? 2 * *cap : 64) * sizeof **out);
		(*out)[(*n)++] = a->valuedouble;
		return;
	}
	cJSON_ArrayForEach(e, a)
		flatten(e, out, n, cap);
}

static int *
json_ids(const cJSON *a, int *n)
{
	int *ids = xcalloc((size_t)cJSON_GetArraySize(a) + 1, sizeof *ids);
	const cJSON *e;

	*n = 0;
	cJSON_ArrayForEach(e, a)
		ids[(*n)++] = (int)e->valuedouble;
	return ids;
}

/* max |got - want| over n, its index in *at. */
static double
maxdiff(const double *got, const double *want, size_t n, size_t *at)
{
	double m = 0;

	*at = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs(got[i] - want[i]);

		if (isnan(d) || d > m) {
			m = isnan(d) ? INFINITY : d;
			*at = i;
		}
	}
	return m;
}

typedef struct {
	const char	*fx;
	fl_model	*m;
	cJSON		*ref;
	int		*clean, *corrupt, T, answer, distractor;
	fl_prompt	 pc, pk;
} fx_pair;

static int
pair_load(fx_pair *f, const char *fx)
{
	char *dir = fl_path_join(fx_root(), fx), *path = fl_path_join(dir, "actpatch-ref.json");
	char *text = fl_read_file(path, NULL, 0, NULL);
	int n;

	memset(f, 0, sizeof *f);
	f->fx = fx;
	f->ref = text ? cJSON_Parse(text) : NULL;
	free(text);
	free(path);
	free(dir);
	if (f->ref == NULL) {
		check(0, "%s: actpatch-ref.json is readable", fx);
		return -1;
	}
	if ((f->m = fx_model(fx)) == NULL)
		return -1;
	f->clean = json_ids(cJSON_GetObjectItem(f->ref, "clean_ids"), &f->T);
	f->corrupt = json_ids(cJSON_GetObjectItem(f->ref, "corrupt_ids"), &n);
	f->answer = (int)cJSON_GetObjectItem(f->ref, "answer")->valuedouble;
	f->distractor = (int)cJSON_GetObjectItem(f->ref, "distractor")->valuedouble;
	f->pc.ids = f->clean;
	f->pc.n = f->T;
	f->pk.ids = f->corrupt;
	f->pk.n = n;
	return 0;
}

static void
pair_free(fx_pair *f)
{
	free(f->clean);
	free(f->corrupt);
	cJSON_Delete(f->ref);
	model_free(f->m);
}

static fl_actpatch_opts
opts_of(const fx_pair *f, fl_actpatch_hook hook, bool by_pos, int metric)
{
	fl_actpatch_opts o = { hook, by_pos, metric == 2 ? ACTPATCH_PROB :
	    ACTPATCH_LOGIT_DIFF, f->answer, metric == 0 ? f->distractor : -1 };

	return o;
}

/* One grid on one metric against the reference. */
static void
check_ref_grid(const fx_pair *f, fl_batch *b, fl_actpatch_hook hook, bool by_pos,
    int metric)
{
	const char *key = metric_keys[metric];
	char gname[32];
	fl_actpatch_opts o = opts_of(f, hook, by_pos, metric);
	fl_actpatch res;
	const cJSON *g;
	double want_clean = cJSON_GetObjectItem(cJSON_GetObjectItem(f->ref, "clean"),
	    key)->valuedouble;
	double want_corrupt = cJSON_GetObjectItem(cJSON_GetObjectItem(f->ref,
	    "corrupt"), key)->valuedouble;
	double *want = NULL, *wnorm, d, dn, tol;
	size_t n = 0, cap = 0, at, atn;
	char *cause = NULL;

	snprintf(gname, sizeof gname, "%s%s", actpatch_hook_name(hook), by_pos ?
	    "_by_pos" : "");
	g = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(f->ref,
	    "grids"), gname), key);
	if (g == NULL) {
		check(0, "%s: actpatch-ref.json has grids.%s.%s", f->fx, gname, key);
		return;
	}
	if (actpatch_run(&res, b, &f->pc, &f->pk, &o, &cause) != 0) {
		check(0, "%s: %s on %s runs: %s", f->fx, gname, key, cause);
		free(cause);
		return;
	}
	flatten(g, &want, &n, &cap);
	if (n != (size_t)res.n_cells) {
		check(0, "%s: %s on %s: the reference has %zu cells, the grid %d",
		    f->fx, gname, key, n, res.n_cells);
		goto out;
	}
	wnorm = xmalloc(n * sizeof *wnorm);
	for (size_t i = 0; i < n; i++)
		wnorm[i] = (want[i] - want_corrupt) / (want_clean - want_corrupt);
	d = maxdiff(res.patched, want, n, &at);
	dn = maxdiff(res.norm, wnorm, n, &atn);
	/* the raw metric within 1e-5 of its scale (Llama's v cells of a logit
	 * difference of 3.4 differ by 1.1e-5 in float32); normalised 1e-5 */
	tol = 1e-5 * fmax(1, fmax(fabs(want_clean), fabs(want_corrupt)));
	check(fabs(res.clean - want_clean) <= 1e-5 && fabs(res.corrupt -
	    want_corrupt) <= 1e-5 && d <= tol && dn <= 1e-5,
	    "%s: %s grid on %s = PyTorch: clean %.6f (want %.6f), corrupted %.6f "
	    "(%.6f); patched maxdiff %.2g (cell %zu: %.6f, want %.6f; tolerance "
	    "%.2g), normalised %.2g (tolerance 1e-5; %d of %d cells run)", f->fx,
	    gname, key, res.clean, want_clean, res.corrupt, want_corrupt, d, at,
	    res.patched[at], want[at], tol, dn, res.n_run, res.n_cells);
	free(wnorm);
out:
	free(want);
	actpatch_clear(&res);
}

static void
check_pytorch(const fx_pair *f)
{
	fl_batch *b = batch_new(f->m, 4, f->T);

	for (int metric = 0; metric < 3; metric++) {
		for (int h = 0; h < ACTPATCH_HOOK_COUNT; h++) {
			check_ref_grid(f, b, (fl_actpatch_hook)h, false, metric);
			if (actpatch_per_head((fl_actpatch_hook)h))
				check_ref_grid(f, b, (fl_actpatch_hook)h, true, metric);
		}
	}
	batch_free(b);
}

static void
check_lens(const fx_pair *f)
{
	const cJSON *lens = cJSON_GetObjectItem(f->ref, "lens");
	int pos = (int)cJSON_GetObjectItem(lens, "position")->valuedouble;
	int L = f->m->cfg.n_layer, V = f->m->cfg.n_vocab;
	fl_run *r = run_new(f->m, f->T, f->T);
	fl_cache *c = fx_cache(f->m, r, f->clean, f->T);
	float *got = xmalloc((size_t)3 * L * V * sizeof *got), *want;
	size_t n;
	char label[96];

	want = fx_read_f32(f->fx, "actpatch-lens.f32", &n);
	if (want != NULL && n == (size_t)3 * L * V &&
	    lens_layer_streams(f->m, c, pos, got) == 0) {
		snprintf(label, sizeof label, "%s: the lens of every stream at position "
		    "%d = PyTorch", f->fx, pos);
		check_close(label, got, want, n, 1e-5);
	} else
		check(0, "%s: actpatch-lens.f32 holds [3L, V] = %d floats (%zu) and "
		    "position %d is in the cache", f->fx, 3 * L * V, n, pos);
	check(lens_layer_streams(f->m, c, f->T, got) == -1 &&
	    lens_layer_streams(f->m, c, -1, got) == -1, "%s: the lens refuses "
	    "positions outside the prompt (%d, -1)", f->fx, f->T);
	free(want);
	free(got);
	cache_free(c);
	run_free(r);
}

static void
check_invariants(const fx_pair *f)
{
	int T = f->T, L = f->m->cfg.n_layer, H = f->m->cfg.n_head, first = T;
	fl_batch *b = batch_new(f->m, 4, T);
	fl_run *r = run_new(f->m, T, T);
	fl_actpatch res, mid, attn, z;
	fl_actpatch_opts o = opts_of(f, ACTPATCH_RESID_PRE, false, 0);
	char *cause = NULL;
	double v;
	bool *pos = xcalloc((size_t)T, sizeof *pos);
	int bad = 0, agree = -1;

	for (int t = T - 1; t >= 0; t--)
		if (f->clean[t] != f->corrupt[t])
			first = t;
	for (int t = 0; t < T && agree < 0; t++)
		if (t > first && f->clean[t] == f->corrupt[t])
			agree = t;
	if (actpatch_run(&res, b, &f->pc, &f->pk, &o, &cause) != 0) {
		check(0, "%s: resid_pre grid: %s", f->fx, cause);
		free(cause);
		goto out;
	}
	/* every position at once at layer 0 is the clean run */
	if (actpatch_one(&res, r, ACTPATCH_RESID_PRE, 0, NULL, NULL, &v, &cause) != 0) {
		check(0, "%s: actpatch_one: %s", f->fx, cause);
		free(cause);
	} else
		check(v == res.clean, "%s: resid_pre of layer 0 patched at every "
		    "position is the clean run, exactly: %.9g (clean %.9g, corrupted "
		    "%.9g)", f->fx, v, res.clean, res.corrupt);
	/* a position where the tokens agree, after the first difference, in a
	 * real pass (the grid skips such cells) */
	if (agree >= 0) {
		pos[agree] = true;
		if (actpatch_one(&res, r, ACTPATCH_RESID_PRE, 0, pos, NULL, &v, &cause) != 0) {
			check(0, "%s: actpatch_one: %s", f->fx, cause);
			free(cause);
		} else
			check(v == res.corrupt && res.patched[agree] == res.corrupt,
			    "%s: resid_pre of layer 0 at position %d, where the prompts "
			    "agree, changes nothing, exactly: a pass gives %.9g, the grid "
			    "%.9g (corrupted %.9g)", f->fx, agree, v, res.patched[agree],
			    res.corrupt);
	} else
		check(0, "%s: the prompts agree somewhere after they first differ", f->fx);
	for (int l = 0; l < L; l++)
		for (int t = 0; t < first; t++)
			bad += res.patched[(size_t)l * T + t] != res.corrupt;
	check(first > 0 && first < T && bad == 0, "%s: every cell before the first "
	    "differing position (%d) is the corrupted metric (%d differ)", f->fx,
	    first, bad);
	actpatch_clear(&res);

	/* resid_mid of the last layer at the last position restores the metric */
	o.hook = ACTPATCH_RESID_MID;
	if (actpatch_run(&mid, b, &f->pc, &f->pk, &o, &cause) != 0) {
		check(0, "%s: resid_mid grid: %s", f->fx, cause);
		free(cause);
		goto out;
	}
	check(fabs(mid.patched[(size_t)(L - 1) * T + T - 1] - mid.clean) <= 1e-5,
	    "%s: resid_mid of the last layer at the last position restores the "
	    "clean metric (1e-5): normalised %.7f (clean %.7f, patched %.7f)", f->fx,
	    mid.norm[(size_t)(L - 1) * T + T - 1], mid.clean,
	    mid.patched[(size_t)(L - 1) * T + T - 1]);
	actpatch_clear(&mid);

	/* z of every head at (l, t) is attn_out's cell (l, t) */
	o.hook = ACTPATCH_ATTN_OUT;
	if (actpatch_run(&attn, b, &f->pc, &f->pk, &o, &cause) != 0) {
		check(0, "%s: attn_out grid: %s", f->fx, cause);
		free(cause);
		goto out;
	}
	{
		double worst = 0;

		for (int l = 0; l < L; l++)
			for (int t = first; t < T; t++) {
				memset(pos, 0, (size_t)T * sizeof *pos);
				pos[t] = true;
				if (actpatch_one(&attn, r, ACTPATCH_Z, l, pos, NULL, &v,
				    &cause) != 0) {
					check(0, "%s: actpatch_one z: %s", f->fx, cause);
					free(cause);
					worst = INFINITY;
					continue;
				}
				worst = fmax(worst, fabs(v - attn.patched[(size_t)l * T + t]));
			}
		check(worst <= 1e-5, "%s: z of every head patched at (layer, position) "
		    "is attn_out's cell: maxdiff %.2g (tolerance 1e-5)", f->fx, worst);
	}
	actpatch_clear(&attn);

	/* packing: one run per pass and four per pass */
	o.hook = ACTPATCH_Z;
	o.by_pos = true;
	{
		fl_batch *b1 = batch_new(f->m, 1, T);
		size_t at;
		double d;

		if (actpatch_run(&z, b1, &f->pc, &f->pk, &o, &cause) != 0 ||
		    actpatch_run(&res, b, &f->pc, &f->pk, &o, &cause) != 0) {
			check(0, "%s: z by position: %s", f->fx, cause);
			free(cause);
		} else {
			d = maxdiff(z.patched, res.patched, (size_t)res.n_cells, &at);
			check(d <= 1e-5 && res.n_cells == L * T * H, "%s: z by position, "
			    "one patched run a pass and four: maxdiff %.2g (tolerance "
			    "1e-5; %ld and %ld passes)", f->fx, d, b1->passes, b->passes);
		}
		actpatch_clear(&z);
		actpatch_clear(&res);
		batch_free(b1);
	}
out:
	free(pos);
	run_free(r);
	batch_free(b);
}

/* The test's own patch before the rotation: the clean run's hook_q or
 * hook_k (grabbed by a pass of its own) in the columns [a, a + n) of every
 * row, and the metric of the run. */
typedef struct {
	fl_hook_point		 point;
	int			 layer;
	float			*clean;		/* (L, T, D) at point */
	size_t			 a, n;
	bool			 grab;		/* the clean run: copy, not patch */
	const fl_actpatch_opts	*o;
	double			 metric;
} prerot;

static int
prerot_hook(void *ud, fl_act *act)
{
	prerot *p = ud;
	size_t T = (size_t)act->shape[0], D = (size_t)act->shape[1] * act->shape[2];
	float *at = p->clean + (size_t)act->layer * T * D;

	if (p->grab)
		memcpy(at, act->data, T * D * sizeof *at);
	else if (act->layer == p->layer)
		for (size_t t = 0; t < T; t++)
			memcpy(act->data + t * D + p->a, at + t * D + p->a,
			    p->n * sizeof *at);
	return FL_HOOK_CONTINUE;
}

static int
prerot_metric(void *ud, fl_act *act)
{
	prerot *p = ud;

	p->metric = actpatch_metric(p->o, act->data, act->shape[1]);
	return FL_HOOK_CONTINUE;
}

/* q and k of each head patched at hook_q and hook_k (before the rotation
 * in Llama) give the q and k grids, which patch the cache's rotated
 * values. */
static void
check_prerotation(const fx_pair *f, fl_run *r, const fl_actpatch *g)
{
	const fl_model *m = f->m;
	int T = f->T, L = m->cfg.n_layer, D = m->cfg.d_model;
	int H = g->n_head, group = m->cfg.n_head / H, dh = m->cfg.d_head;
	fl_hook_point pt = g->o.hook == ACTPATCH_Q ? HOOK_Q : HOOK_K;
	prerot p = { pt, -1, xmalloc((size_t)L * T * D * sizeof(float)), 0, 0,
	    true, &g->o, 0 };
	fl_hook hk[2] = { { pt, -1, prerot_hook, &p },
	    { HOOK_LOGITS, -1, prerot_metric, &p } };
	fl_pass pass = { 0 };
	char *cause = NULL;
	double worst = 0;
	int n = T, ok = 1;

	pass.hooks = hk;
	pass.n_hooks = 1;
	ok = run_forward(r, f->clean, &n, 1, &pass, &cause) == 0;
	p.grab = false;
	pass.n_hooks = 2;
	for (int l = 0; l < L && ok; l++)
		for (int h = 0; h < H && ok; h++) {
			hk[0].layer = p.layer = l;
			p.a = (size_t)h * group * dh;
			p.n = (size_t)group * dh;
			pass.start_layer = l;
			pass.resume = l > 0 ? g->c_corrupt->resid_pre + (size_t)l * T * D :
			    NULL;
			n = T;
			ok = run_forward(r, f->corrupt, &n, 1, &pass, &cause) == 0;
			worst = fmax(worst, fabs(p.metric - g->patched[l * H + h]));
		}
	check(ok && worst <= 1e-5, "%s: %s of each %shead patched at %s (the "
	    "test's own hook, before any rotation) = the %s grid: maxdiff %.2g "
	    "(tolerance 1e-5)%s%s", f->fx, actpatch_hook_name(g->o.hook), H <
	    m->cfg.n_head ? "key/value " : "", pt == HOOK_Q ? "hook_q" : "hook_k",
	    actpatch_hook_name(g->o.hook), worst, ok ? "" : "; ", ok ? "" : cause);
	free(cause);
	free(p.clean);
}

/* max |a - b| over patches of each layer, one hook mask against another
 * (heads: one head, or -1 for all). */
static double
many_vs(const fl_actpatch *res, fl_run *r, unsigned a, unsigned b, int head,
    const bool *pos, bool *ok)
{
	int L = res->n_layer, H = res->m->cfg.n_head;
	bool *heads = xcalloc((size_t)H, sizeof *heads);
	double worst = 0, va, vb;
	char *cause = NULL;

	if (head >= 0)
		heads[head] = true;
	for (int l = 0; l < L && *ok; l++) {
		*ok = actpatch_many(res, r, a, l, pos, head >= 0 ? heads : NULL, &va,
		    &cause) == 0 && actpatch_many(res, r, b, l, pos, head >= 0 ? heads :
		    NULL, &vb, &cause) == 0;
		worst = fmax(worst, fabs(va - vb));
	}
	if (!*ok) {
		check(0, "actpatch_many: %s", cause);
		free(cause);
	}
	free(heads);
	return worst;
}

#define BIT(h) (1u << (h))

static void
check_heads(const fx_pair *f)
{
	const fl_model *m = f->m;
	int T = f->T, L = m->cfg.n_layer, H = m->cfg.n_head, first = T;
	fl_batch *b = batch_new(f->m, 4, T);
	fl_run *r = run_new(f->m, T, T);
	fl_actpatch pat, z, q, k, v1, every[ACTPATCH_EVERY_COUNT];
	fl_actpatch_opts o = opts_of(f, ACTPATCH_PATTERN, false, 0);
	unsigned qkv = BIT(ACTPATCH_Q) | BIT(ACTPATCH_K) | BIT(ACTPATCH_V);
	unsigned pv = BIT(ACTPATCH_PATTERN) | BIT(ACTPATCH_V), zb = BIT(ACTPATCH_Z);
	bool *pos = xcalloc((size_t)T, sizeof *pos), ok = true;
	char *cause = NULL;
	double w1, w2, w3 = 0, w4 = 0, v;
	int bad = 0, order = 1;
	long done0;

	for (int t = T - 1; t >= 0; t--)
		if (f->clean[t] != f->corrupt[t])
			first = t;
	memset(every, 0, sizeof every);
	memset(&q, 0, sizeof q);
	memset(&k, 0, sizeof k);
	memset(&v1, 0, sizeof v1);
	if (actpatch_run(&pat, b, &f->pc, &f->pk, &o, &cause) != 0) {
		check(0, "%s: pattern grid: %s", f->fx, cause);
		free(cause);
		goto out;
	}
	o.hook = ACTPATCH_Z;
	if (actpatch_run(&z, b, &f->pc, &f->pk, &o, &cause) != 0) {
		check(0, "%s: z grid: %s", f->fx, cause);
		free(cause);
		actpatch_clear(&pat);
		goto out;
	}
	w1 = many_vs(&pat, r, qkv, zb, -1, NULL, &ok);
	w2 = many_vs(&pat, r, pv, zb, -1, NULL, &ok);
	check(ok && w1 <= 1e-5 && w2 <= 1e-5, "%s: q, k and v of every head of a "
	    "layer patched together are z of every head there: maxdiff %.2g; the "
	    "pattern and v: %.2g (tolerance 1e-5)", f->fx, w1, w2);
	if (m->cfg.n_kv_head == H && H <= 64) {
		for (int l = 0; l < L && ok; l++)
			for (int h = 0; h < H && ok; h++) {
				bool one[64] = { false };

				one[h] = true;
				ok = actpatch_many(&pat, r, qkv, l, NULL, one, &v, &cause) == 0;
				w3 = fmax(w3, fabs(v - z.patched[l * H + h]));
				ok = ok && actpatch_many(&pat, r, pv, l, NULL, one, &v,
				    &cause) == 0;
				w4 = fmax(w4, fabs(v - z.patched[l * H + h]));
			}
		check(ok && w3 <= 1e-5 && w4 <= 1e-5, "%s: q, k and v of head h "
		    "patched together give z's grid cell of h: maxdiff %.2g; the "
		    "pattern and v: %.2g (tolerance 1e-5)%s%s", f->fx, w3, w4,
		    ok ? "" : "; ", ok ? "" : cause);
	}
	for (int t = 0; t < first; t++)
		pos[t] = true;
	for (int l = 0; l < L && ok; l++) {
		ok = actpatch_many(&pat, r, qkv, l, pos, NULL, &v, &cause) == 0;
		bad += v != pat.corrupt;
	}
	check(ok && first > 0 && bad == 0, "%s: q, k and v of every head patched "
	    "at the positions before the first differing one (%d) change nothing, "
	    "exactly, in a real pass (%d layers differ)", f->fx, first, bad);
	free(cause);
	cause = NULL;

	o.hook = ACTPATCH_Q;
	if (actpatch_run(&q, b, &f->pc, &f->pk, &o, &cause) == 0) {
		check_prerotation(f, r, &q);
		o.hook = ACTPATCH_K;
		if (actpatch_run(&k, b, &f->pc, &f->pk, &o, &cause) == 0) {
			check(k.n_head == m->cfg.n_kv_head && k.n_cells == L *
			    m->cfg.n_kv_head, "%s: the k grid has the key/value heads "
			    "(%d of %d cells)", f->fx, m->cfg.n_kv_head, k.n_cells);
			check_prerotation(f, r, &k);
			o.hook = ACTPATCH_V;
			(void)actpatch_run(&v1, b, &f->pc, &f->pk, &o, &cause);
		}
	}
	if (cause != NULL) {
		check(0, "%s: q, k or v grid: %s", f->fx, cause);
		free(cause);
		cause = NULL;
	}
	done0 = b->done;
	if (actpatch_run_every(every, b, &f->pc, &f->pk, &o, &cause) != 0) {
		check(0, "%s: the _every grids: %s", f->fx, cause);
		free(cause);
		cause = NULL;
	} else {
		static const fl_actpatch_hook want[] = { ACTPATCH_Z, ACTPATCH_Q,
		    ACTPATCH_K, ACTPATCH_V, ACTPATCH_PATTERN };

		const fl_actpatch *alone[] = { &z, &q, &k, &v1, &pat };
		bool same = true;

		for (int i = 0; i < ACTPATCH_EVERY_COUNT; i++) {
			order &= every[i].o.hook == want[i];
			same = same && alone[i]->patched != NULL &&
			    every[i].n_cells == alone[i]->n_cells &&
			    memcmp(every[i].patched, alone[i]->patched,
			    (size_t)alone[i]->n_cells * sizeof(double)) == 0;
		}
		check(order && same, "%s: the _every grids are z, q, k, v and pattern, "
		    "bit for bit as run alone", f->fx);
		check(b->done - done0 == actpatch_every_units(m, &o, T), "%s: the _every "
		    "grids count %ld units of progress, as actpatch_every_units says "
		    "(%ld)", f->fx, b->done - done0, actpatch_every_units(m, &o, T));
	}
	/* a pattern patch needs a result whose caches hold the patterns */
	{
		int rc = actpatch_one(&z, r, ACTPATCH_PATTERN, 0, NULL, NULL, &v, &cause);

		check(rc == -1 && cause != NULL && strstr(cause, "pattern grid"),
		    "%s: a pattern patch from a z grid's result is refused: %s", f->fx,
		    cause ? cause : "(no message)");
		free(cause);
	}
	for (int i = 0; i < ACTPATCH_EVERY_COUNT; i++)
		actpatch_clear(&every[i]);
	actpatch_clear(&v1);
	actpatch_clear(&k);
	actpatch_clear(&q);
	actpatch_clear(&z);
	actpatch_clear(&pat);
out:
	free(pos);
	run_free(r);
	batch_free(b);
}

static void
check_errors(const fx_pair *f)
{
	fl_batch *b = batch_new(f->m, 4, f->T);
	fl_actpatch res;
	fl_actpatch_opts o = opts_of(f, ACTPATCH_RESID_PRE, false, 0);
	fl_prompt shorter = f->pk;
	fx_stopper st = { 3, 0, 0, 0, false };
	char *cause = NULL, want[96];
	int rc;

	shorter.n = f->T - 1;
	rc = actpatch_run(&res, b, &f->pc, &shorter, &o, &cause);
	snprintf(want, sizeof want, "has %d tokens and the corrupted one %d", f->T,
	    f->T - 1);
	check(rc == -1 && cause != NULL && strstr(cause, want) != NULL,
	    "%s: prompts of different token counts are refused, naming both: %s",
	    f->fx, cause ? cause : "(no message)");
	free(cause);
	cause = NULL;
	o.by_pos = true;
	rc = actpatch_run(&res, b, &f->pc, &f->pk, &o, &cause);
	check(rc == -1 && cause != NULL && strstr(cause, "by position already"),
	    "%s: by position with resid_pre is refused: %s", f->fx, cause ? cause :
	    "(no message)");
	free(cause);
	cause = NULL;
	o.by_pos = false;
	b->progress = (fl_progress){ fx_stop_at, &st };
	b->total = actpatch_units(f->m, &o, f->T);
	rc = actpatch_run(&res, b, &f->pc, &f->pk, &o, &cause);
	check(rc == FL_STOPPED && res.patched == NULL && res.c_clean == NULL,
	    "%s: a progress callback that asks to stop gives FL_STOPPED (%d) and "
	    "an empty result", f->fx, rc);
	batch_free(b);
}

int
main(void)
{
	for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
		fx_pair f;

		if (pair_load(&f, fixtures[i]) == 0) {
			check_pytorch(&f);
			check_lens(&f);
			check_invariants(&f);
			check_heads(&f);
			check_errors(&f);
		}
		pair_free(&f);
	}
	return check_done();
}
