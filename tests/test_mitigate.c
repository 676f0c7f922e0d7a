/*
 * test_mitigate.c - the two mitigations through the mitigate API.
 *
 * (a) The final-layer mask, re-run from the cache (only the last layer),
 *     gives the PyTorch reference's logits with that mask
 *     (logits_final_mask.f32, written by tools/make-fixtures); switching it
 *     off again gives the unmasked reference (logits.f32).
 * (b) Intercept removal by the hook gives what mitigate_final_resid and
 *     the final readout make of the last layer's resid_mid and mlp_out -
 *     the shortcut eval.c takes; in a pre-LN model that is the readout of
 *     the final residual minus the intercept (the paper's definition), in
 *     a post-LN one ln2 of resid_mid + mlp_out - intercept, which differs.
 */
#include "autoconfig.h"

#include <dirent.h>

#include "check.h"
#include "fx.h"

#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "engine/pool.h"

#define TOL 1e-4

static void
rerun(const char *label, fl_run *r, const fl_model *m, fl_cache *c,
    const fl_mitigation *mit)
{
	char *cause = NULL;

	if (mitigate_rerun(r, m, c, mit, &cause) != 0) {
		check(0, "%s: re-run: %s", label, cause);
		free(cause);
	}
}

/* The model of a fixture: its own directory, or the one its ref.json
 * names in "model_dir" (the bundled demo); NULL when that is missing. */
static fl_model *
fixture_model(const char *fx)
{
	char *dir = fl_path_join(fx_root(), fx), *path = fl_path_join(dir, "ref.json");
	char *text = fl_read_file(path, NULL, 0, NULL), *mdir = NULL, *cfg;
	cJSON *ref = text ? cJSON_Parse(text) : NULL;
	const cJSON *md = cJSON_GetObjectItem(ref, "model_dir");
	fl_model *m = NULL;

	mdir = cJSON_IsString(md) ? fl_path_join(dir, md->valuestring) : xstrdup(dir);
	cfg = fl_path_join(mdir, "config.json");
	if (fl_file_exists(cfg))
		m = fx_model(mdir);
	else
		printf("# %s: no model at %s: skipped\n", fx, mdir);
	cJSON_Delete(ref);
	free(text);
	free(cfg);
	free(mdir);
	free(path);
	free(dir);
	return m;
}

static void
check_fixture(const char *fx)
{
	fl_model *m = fixture_model(fx);
	int T, V, D, L, H, rc;
	int *ids = fx_ref_ids(fx, &T);
	size_t n;
	float *want, *want_mask, *x, *lg, *icpt, *early;
	fl_run *r;
	fl_cache *c;
	fl_mitigation mit = { 0 };
	bool *heads;
	char label[512], *cause = NULL;

	if (m == NULL || ids == NULL) {
		model_free(m);
		free(ids);
		return;
	}
	V = m->cfg.n_vocab;
	D = m->cfg.d_model;
	L = m->cfg.n_layer;
	H = m->cfg.n_head;
	want = fx_read_f32(fx, "logits.f32", &n);
	want_mask = fx_read_f32(fx, "logits_final_mask.f32", &n);
	r = run_new(m, T, T);
	c = fx_cache(m, r, ids, T);
	early = xmalloc((size_t)(L - 1) * T * D * sizeof *early);
	memcpy(early, c->resid_pre, (size_t)(L - 1) * T * D * sizeof *early);

	mit.mask = true;
	rerun(fx, r, m, c, &mit);
	snprintf(label, sizeof label, "%s: mask (a) re-run from the cache = PyTorch "
	    "reference with the mask", fx);
	check_close(label, c->logits, want_mask + (size_t)(T - 1) * V, (size_t)V, TOL);
	check(memcmp(early, c->resid_pre, (size_t)(L - 1) * T * D * sizeof *early) == 0,
	    "%s: the re-run leaves the layers before the last untouched", fx);

	heads = xcalloc((size_t)H, sizeof *heads);
	mit.mask_heads = heads;
	rerun(fx, r, m, c, &mit);
	snprintf(label, sizeof label, "%s: mask on no head = unmasked reference", fx);
	check_close(label, c->logits, want + (size_t)(T - 1) * V, (size_t)V, TOL);
	for (int h = 0; h < H; h++)
		heads[h] = true;
	rerun(fx, r, m, c, &mit);
	snprintf(label, sizeof label, "%s: mask on every head = masked reference", fx);
	check_close(label, c->logits, want_mask + (size_t)(T - 1) * V, (size_t)V, TOL);
	heads[0] = false;
	rerun(fx, r, m, c, &mit);
	{
		double d0 = 0, d1 = 0;

		for (int v = 0; v < V; v++) {
			d0 += fabs(c->logits[v] - want[(size_t)(T - 1) * V + v]);
			d1 += fabs(c->logits[v] - want_mask[(size_t)(T - 1) * V + v]);
		}
		check(d0 > 1e-3 && d1 > 1e-3, "%s: masking all heads but head 0 gives "
		    "a third result (sum |diff| %.3g from unmasked, %.3g from masked)",
		    fx, d0, d1);
	}
	free(heads);
	mit.mask_heads = NULL;

	mit.mask = false;
	rerun(fx, r, m, c, &mit);
	snprintf(label, sizeof label, "%s: toggled off again = unmasked reference", fx);
	check_close(label, c->logits, want + (size_t)(T - 1) * V, (size_t)V, TOL);

	/* (b): the hook against the shortcut, and pre-LN against the readout
	 * of the final residual minus the intercept */
	x = xmalloc((size_t)D * sizeof *x);
	lg = xmalloc((size_t)V * sizeof *lg);
	icpt = xmalloc((size_t)D * sizeof *icpt);
	fx_fill(icpt, (size_t)D, 11);
	for (int masked = 0; masked < 2; masked++) {
		const char *what = masked ? "mask and intercept" : "intercept (b)";
		size_t last = ((size_t)(L - 1) * T + T - 1) * D;
		float *lg2 = xmalloc((size_t)V * sizeof *lg2);
		double d = 0;

		mit.mask = masked;
		mit.intercept = NULL;
		rerun(fx, r, m, c, &mit);
		mitigate_final_resid(m, c->resid_mid + last, c->mlp_out + last, icpt, 1, x);
		lens_vectors(m, x, 1, lg);
		for (int i = 0; i < D; i++)
			x[i] = c->resid_pre[((size_t)L * T + T - 1) * D + i] - icpt[i];
		lens_vectors(m, x, 1, lg2);
		mit.intercept = icpt;
		rerun(fx, r, m, c, &mit);
		snprintf(label, sizeof label, "%s: %s by hooks = the shortcut from the "
		    "last layer's resid_mid and mlp_out", fx, what);
		check_close(label, c->logits, lg, (size_t)V, 1e-5);
		if (m->cfg.ln_before) {
			snprintf(label, sizeof label, "%s: %s by hooks = readout of the "
			    "final residual minus the intercept", fx, what);
			check_close(label, c->logits, lg2, (size_t)V, 1e-5);
		} else {
			for (int v = 0; v < V; v++)
				d = fmax(d, fabs(c->logits[v] - lg2[v]));
			check(d > 1e-2, "%s: %s, post-LN: not the same as taking the "
			    "intercept off resid_post, after ln2 (max diff %.3g)", fx, what, d);
		}
		free(lg2);
	}

	cache_free(c);
	c = cache_new(m, T, 0);
	rc = mitigate_rerun(r, m, c, &mit, &cause);
	check(rc == -1 && cause != NULL && strstr(cause, "cannot resume"),
	    "%s: an empty cache cannot be re-run (%s)", fx, cause ? cause : "");
	free(cause);
	cache_free(c);
	free(x);
	free(lg);
	free(icpt);
	free(early);
	free(want);
	free(want_mask);
	free(ids);
	run_free(r);
	model_free(m);
}

/* Every fixture with a masked reference, the demo's included. */
int
main(void)
{
	DIR *dp = opendir(fx_root());
	struct dirent *d;
	int n = 0;

	kern_set_threads(2);
	while (dp != NULL && (d = readdir(dp)) != NULL) {
		char *dir = fl_path_join(fx_root(), d->d_name);
		char *want = fl_path_join(dir, "logits_final_mask.f32");

		if (d->d_name[0] != '.' && fl_file_exists(want)) {
			check_fixture(d->d_name);
			n++;
		}
		free(want);
		free(dir);
	}
	if (dp != NULL)
		closedir(dp);
	check(n >= 7, "%d fixtures with a masked PyTorch reference (at least 7)", n);
	return check_done();
}
