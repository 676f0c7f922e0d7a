/*
 * test_model.c - the forward pass against PyTorch reference fixtures
 * (tests/fixtures/<name>/ref.json, written by tools/make-fixtures), and the
 * engine's own invariants: resuming from the cache, batching, stopping, and
 * for post-LN models the hook convention of forward.h.
 */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <string.h>

#include "analysis/lens.h"
#include "check.h"
#include "engine/linear.h"
#include "engine/pool.h"
#include "base/util.h"

#define TOL 1e-4

typedef struct {
	const char	*name;		/* hook point name wanted */
	float		*buf;		/* captured copy */
	size_t		 n;
} capture;

static int
capture_hook(void *ud, fl_act *a)
{
	capture *c = ud;
	size_t n = (size_t)a->shape[0];

	for (int i = 1; i < a->ndim; i++)
		n *= (size_t)a->shape[i];
	free(c->buf);
	c->buf = xmalloc(n * sizeof(float));
	memcpy(c->buf, a->data, n * sizeof(float));
	c->n = n;
	return FL_HOOK_CONTINUE;
}

/* Adds delta (the row's width) to the last row of the activation. */
typedef struct {
	const float	*delta;
} row_delta;

static int
add_last_row(void *ud, fl_act *a)
{
	const row_delta *s = ud;
	int w = a->shape[1];
	float *row = a->data + (size_t)(a->shape[0] - 1) * w;

	for (int i = 0; i < w; i++)
		row[i] += s->delta[i];
	return FL_HOOK_CONTINUE;
}

static float *
load_f32(const char *dir, const char *file, size_t *n)
{
	char *path = fl_path_join(dir, file), *cause = NULL;
	size_t len;
	char *buf = fl_read_file(path, &len, 0, &cause);

	free(path);
	if (buf == NULL) {
		check(0, "read %s: %s", file, cause);
		free(cause);
		return NULL;
	}
	*n = len / 4;
	return (float *)buf;
}

static size_t
shape_numel(const cJSON *shape)
{
	size_t n = 1;
	const cJSON *d;

	cJSON_ArrayForEach(d, shape)
		n *= (size_t)d->valuedouble;
	return n;
}

/* Runs the fixture's prompt with hooks capturing every output it lists
 * (those ending in _final_mask when masked), and compares. */
static void
compare_pass(const char *fx, const char *dir, fl_model *m, const int *ids, int T,
    cJSON *outputs, bool masked)
{
	fl_hook hooks[64];
	capture caps[64];
	int nh = 0, V = m->cfg.n_vocab, L = m->cfg.n_layer;
	fl_self_mask mask = { 0 };
	fl_run *r = run_new(m, T, T);
	fl_cache *cache = cache_new(m, T, FL_CACHE_PATTERN | FL_CACHE_LOGITS_ALL);
	fl_pass p = { 0 };
	float *logits = xmalloc((size_t)T * V * sizeof *logits);
	float *lens = xmalloc((size_t)(L + 1) * V * sizeof *lens);
	char *cause = NULL;
	const cJSON *o;

	memset(caps, 0, sizeof caps);
	if (masked) {
		hooks[nh] = (fl_hook){ HOOK_ATTN_SCORES, L - 1, hook_self_mask, &mask };
		nh++;
	}
	cJSON_ArrayForEach(o, outputs) {
		char name[128];
		size_t len = strlen(o->string);
		const char *suf = "_final_mask";
		bool is_masked = len > strlen(suf) &&
		    strcmp(o->string + len - strlen(suf), suf) == 0;
		fl_hook_point pt;
		int layer;

		if (is_masked != masked)
			continue;
		snprintf(name, sizeof name, "%.*s", (int)(is_masked ? len - strlen(suf) : len),
		    o->string);
		if (strcmp(name, "logits") == 0 || strcmp(name, "logit_lens") == 0)
			continue;
		if (hook_point_parse(name, &pt, &layer) != 0) {
			check(0, "%s: unknown hook point name '%s'", fx, name);
			continue;
		}
		caps[nh].name = o->string;
		hooks[nh] = (fl_hook){ pt, layer, capture_hook, &caps[nh] };
		nh++;
	}
	p.hooks = hooks;
	p.n_hooks = nh;
	p.cache = cache;
	p.logits_all = true;
	p.logits = logits;
	check(run_forward(r, ids, &T, 1, &p, &cause) == 0, "%s: forward%s runs",
	    fx, masked ? " with the final-layer mask" : "");
	cJSON_ArrayForEach(o, outputs) {
		const cJSON *file = cJSON_GetObjectItem(o, "file");
		size_t n, want_n = shape_numel(cJSON_GetObjectItem(o, "shape"));
		const float *got = NULL;
		float *want;
		char label[256];

		for (int i = 0; i < nh; i++)
			if (caps[i].name != NULL && strcmp(caps[i].name, o->string) == 0)
				got = caps[i].buf;
		if (strcmp(o->string, masked ? "logits_final_mask" : "logits") == 0)
			got = logits;
		if (!masked && strcmp(o->string, "logit_lens") == 0) {
			lens_streams(m, cache, T - 1, lens);
			got = lens;
		}
		if (got == NULL)
			continue;
		want = load_f32(dir, file->valuestring, &n);
		if (want == NULL)
			continue;
		snprintf(label, sizeof label, "%s: %s", fx, o->string);
		if (n != want_n)
			check(0, "%s: file has %zu floats, shape says %zu", label, n, want_n);
		else
			check_close(label, got, want, n, TOL);
		free(want);
	}
	for (int i = 0; i < nh; i++)
		free(caps[i].buf);
	free(logits);
	free(lens);
	cache_free(cache);
	run_free(r);
}

/* Copies each sequence's rows of a (T, D) point to dst + row0[seq] rows. */
typedef struct {
	float	*dst;
	int	 row0[2];
	int	 width;
} grab_rows;

static int
grab_rows_hook(void *ud, fl_act *a)
{
	grab_rows *g = ud;

	memcpy(g->dst + (size_t)g->row0[a->seq] * g->width, a->data,
	    (size_t)a->shape[0] * g->width * sizeof(float));
	return FL_HOOK_CONTINUE;
}

/* Resuming at the last layer from the cache gives the same logits as a full
 * masked pass; batching two prompts gives each prompt's own logits. */
static void
check_invariants(const char *fx, fl_model *m, const int *ids, int T)
{
	int V = m->cfg.n_vocab, L = m->cfg.n_layer, T2 = T - 3;
	fl_run *r = run_new(m, 2 * T, T);
	fl_cache *cache = cache_new(m, T, 0);
	float *full = xmalloc((size_t)2 * V * sizeof *full);
	float *part = xmalloc((size_t)2 * V * sizeof *part);
	fl_self_mask mask = { 0 };
	fl_hook h = { HOOK_ATTN_SCORES, L - 1, hook_self_mask, &mask };
	fl_pass p = { 0 };
	int *both = xmalloc((size_t)2 * T * sizeof *both), lens[2] = { T, T2 };
	char label[256], *cause = NULL;

	p.hooks = &h;
	p.n_hooks = 1;
	p.logits = full;
	run_forward(r, ids, &T, 1, &p, NULL);
	p.logits = NULL;
	p.hooks = NULL;
	p.n_hooks = 0;
	p.cache = cache;
	run_forward(r, ids, &T, 1, &p, NULL);
	p.hooks = &h;
	p.n_hooks = 1;
	p.start_layer = L - 1;
	p.logits = part;
	check(run_forward(r, ids, &T, 1, &p, &cause) == 0, "%s: resume at the last layer", fx);
	snprintf(label, sizeof label, "%s: masked logits resumed from the cache = full pass", fx);
	check_close(label, part, full, (size_t)V, 1e-5);
	/* the same recomputing only the last position, twice: the second run
	 * reads keys and values the first one left in the cache */
	p.last_row_only = true;
	for (int rep = 0; rep < 2; rep++) {
		memset(part, 0, (size_t)V * sizeof *part);
		check(run_forward(r, ids, &T, 1, &p, &cause) == 0,
		    "%s: resume at the last layer, last row only (run %d)", fx, rep + 1);
		snprintf(label, sizeof label, "%s: masked logits from the last row only = "
		    "full pass (run %d)", fx, rep + 1);
		check_close(label, part, full, (size_t)V, 1e-5);
	}
	snprintf(label, sizeof label, "%s: the cache's logits follow the last-row run", fx);
	check_close(label, cache->logits, full, (size_t)V, 1e-5);
	p.last_row_only = false;

	/* a cache of every row's logits under a pass that returns only the
	 * last: both equal a pass that returns every row */
	{
		fl_cache *all = cache_new(m, T, FL_CACHE_LOGITS_ALL);
		float *rows = xmalloc((size_t)T * V * sizeof *rows);
		fl_pass q = { 0 };

		q.logits = rows;
		q.logits_all = true;
		run_forward(r, ids, &T, 1, &q, NULL);
		q.logits_all = false;
		q.logits = part;
		q.cache = all;
		check(run_forward(r, ids, &T, 1, &q, &cause) == 0,
		    "%s: pass with an all-rows logits cache", fx);
		snprintf(label, sizeof label, "%s: its last-row logits = all-rows pass", fx);
		check_close(label, part, rows + (size_t)(T - 1) * V, (size_t)V, 1e-5);
		snprintf(label, sizeof label, "%s: its cached logits = all-rows pass", fx);
		check_close(label, all->logits, rows, (size_t)T * V, 1e-5);
		free(rows);
		cache_free(all);
	}

	/* a cache reused for a shorter prompt, full of the longer one's
	 * values, holds exactly what a new cache does */
	{
		fl_cache *re = cache_new(m, T, FL_CACHE_PATTERN);
		fl_cache *fresh = cache_new(m, T2, FL_CACHE_PATTERN);
		const float *block = re->block;
		fl_pass q = { 0 };
		int t2 = T2;

		q.cache = re;
		run_forward(r, ids, &T, 1, &q, NULL);
		re = cache_reuse(re, m, T2, FL_CACHE_PATTERN);
		{
			size_t nz = 0;

			for (size_t i = 0; i < fresh->cap; i++)
				nz += re->block[i] != 0;
			check(nz == 0, "%s: a reused cache starts zeroed (%zu nonzero)",
			    fx, nz);
		}
		q.cache = re;
		run_forward(r, ids, &t2, 1, &q, NULL);
		q.cache = fresh;
		run_forward(r, ids, &t2, 1, &q, NULL);
		check(re->block == block && re->n_tok == T2 && re->valid == fresh->valid &&
		    memcmp(re->block, fresh->block, fresh->cap * sizeof(float)) == 0 &&
		    memcmp(re->ids, fresh->ids, (size_t)T2 * sizeof *re->ids) == 0,
		    "%s: a reused cache = a new one, bit for bit", fx);
		cache_free(re);
		cache_free(fresh);
	}

	/* batch of two: the prompt and its first T2 tokens */
	memcpy(both, ids, (size_t)T * sizeof *ids);
	memcpy(both + T, ids, (size_t)T2 * sizeof *ids);
	memset(&p, 0, sizeof p);
	p.logits = full;
	check(run_forward(r, both, lens, 2, &p, &cause) == 0, "%s: batch of two runs", fx);
	p.logits = part;
	run_forward(r, ids, &T, 1, &p, NULL);
	snprintf(label, sizeof label, "%s: batched sequence 0 = alone", fx);
	check_close(label, full, part, (size_t)V, 1e-5);
	run_forward(r, ids, &T2, 1, &p, NULL);
	snprintf(label, sizeof label, "%s: batched sequence 1 = alone", fx);
	check_close(label, full + V, part, (size_t)V, 1e-5);

	/* the batch resumed at the last layer from its own rows (as eval's
	 * masked pass) = the full masked pass of the batch */
	if (L > 1) {
		int D = m->cfg.d_model;
		float *x = xmalloc((size_t)(T + T2) * D * sizeof *x);
		grab_rows g = { x, { 0, T }, D };
		fl_hook grab = { HOOK_RESID_PRE, L - 1, grab_rows_hook, &g };

		memset(&p, 0, sizeof p);
		p.hooks = &grab;
		p.n_hooks = 1;
		run_forward(r, both, lens, 2, &p, NULL);
		p.hooks = &h;
		p.logits = full;
		run_forward(r, both, lens, 2, &p, NULL);
		p.logits = part;
		p.start_layer = L - 1;
		p.resume = x;
		check(run_forward(r, both, lens, 2, &p, &cause) == 0,
		    "%s: batch resumed from given rows", fx);
		snprintf(label, sizeof label, "%s: masked batch resumed at the last "
		    "layer = full masked batch", fx);
		check_close(label, part, full, (size_t)2 * V, 1e-5);
		p.cache = cache;
		check(run_forward(r, both, lens, 2, &p, NULL) == -1,
		    "%s: resuming from rows and a cache at once is refused", fx);
		free(x);
	}

	free(both);
	free(full);
	free(part);
	cache_free(cache);
	run_free(r);
}

static int
stop_hook(void *ud, fl_act *a)
{
	(*(int *)ud)++;
	return FL_STOPPED;
}

static int
count_hook(void *ud, fl_act *a)
{
	(*(int *)ud)++;
	return FL_HOOK_CONTINUE;
}

static void
check_errors(const char *fx, fl_model *m)
{
	int T = m->cfg.n_ctx + 1, *ids = xcalloc((size_t)T, sizeof *ids), stops = 0, later = 0;
	fl_run *r = run_new(m, T, T);
	fl_pass p = { 0 };
	fl_hook hooks[2] = {
		{ HOOK_RESID_POST, 0, stop_hook, &stops },
		{ HOOK_RESID_PRE, 1, count_hook, &later },
	};
	char *cause = NULL;
	int rc;

	rc = run_forward(r, ids, &T, 1, &p, &cause);
	check(rc == -1 && cause != NULL && strstr(cause, "longer than the model's context"),
	    "%s: a prompt longer than the context is refused (%s)", fx,
	    cause ? cause : "no message");
	free(cause);
	cause = NULL;
	ids[0] = m->cfg.n_vocab;
	T = 2;
	rc = run_forward(r, ids, &T, 1, &p, &cause);
	check(rc == -1 && cause != NULL && strstr(cause, "outside the vocabulary"),
	    "%s: an id outside the vocabulary is refused (%s)", fx, cause ? cause : "");
	free(cause);
	ids[0] = 0;
	p.hooks = hooks;
	p.n_hooks = 2;
	rc = run_forward(r, ids, &T, 1, &p, NULL);
	check(rc == FL_STOPPED && stops == 1 && later == 0,
	    "%s: a hook stops the pass (rc %d, stop hook ran %d, later hook ran %d)",
	    fx, rc, stops, later);
	free(ids);
	run_free(r);
}

/* Post-LN blocks (forward.h): the LayerNorms' outputs are the stream, so
 * ln1.hook_normalized = resid_mid and ln2.hook_normalized = resid_post, an
 * edit at ln1 is what resid_mid and the MLP see, the cache's final rows are
 * the last resid_post (scale 1), and ln_final is refused. */
static void
check_post_ln(const char *fx, fl_model *m, const int *ids, int T)
{
	int L = m->cfg.n_layer, D = m->cfg.d_model, V = m->cfg.n_vocab;
	fl_run *r = run_new(m, T, T);
	fl_cache *c = cache_new(m, T, 0);
	capture caps[4];
	fl_hook hooks[4];
	fl_pass p = { 0 };
	float *plain = xmalloc((size_t)V * sizeof *plain);
	float *edited = xmalloc((size_t)V * sizeof *edited);
	char *cause = NULL;
	double d_mid = 0, d_post = 0, d_lnf = 0, d_scale = 0, d_edit = 0;
	int rc;

	memset(caps, 0, sizeof caps);
	hooks[0] = (fl_hook){ HOOK_LN1_NORMALIZED, 0, capture_hook, &caps[0] };
	hooks[1] = (fl_hook){ HOOK_LN2_NORMALIZED, L - 1, capture_hook, &caps[1] };
	p.hooks = hooks;
	p.n_hooks = 2;
	p.cache = c;
	p.logits = plain;
	check(run_forward(r, ids, &T, 1, &p, &cause) == 0, "%s: post-LN pass with "
	    "ln1 and ln2 hooks runs", fx);
	for (size_t i = 0; i < (size_t)T * D; i++) {
		d_mid = fmax(d_mid, fabs(caps[0].buf[i] - c->resid_mid[i]));
		d_post = fmax(d_post, fabs(caps[1].buf[i] -
		    c->resid_pre[(size_t)L * T * D + i]));
		d_lnf = fmax(d_lnf, fabs(c->lnf[i] - c->resid_pre[(size_t)L * T * D + i]));
	}
	for (int t = 0; t < T; t++)
		d_scale = fmax(d_scale, fabs(c->lnf_scale[t] - 1));
	check(d_mid == 0 && d_post == 0, "%s: ln1.hook_normalized is resid_mid and "
	    "ln2.hook_normalized of the last layer is the final resid_post (max diff "
	    "%.3g, %.3g)", fx, d_mid, d_post);
	check(d_lnf == 0 && d_scale == 0, "%s: without a final LN the cache's "
	    "readout rows are the final resid_post, scale 1 (%.3g, %.3g)", fx, d_lnf,
	    d_scale);

	/* an edit at ln1.hook_normalized flows on as resid_mid */
	{
		row_delta sub = { 0 };
		float *delta = xcalloc((size_t)D, sizeof *delta);

		for (int i = 0; i < D; i++)
			delta[i] = (float)(i % 7) * 0.25f;
		sub.delta = delta;
		hooks[0] = (fl_hook){ HOOK_LN1_NORMALIZED, L - 1, add_last_row, &sub };
		hooks[1] = (fl_hook){ HOOK_RESID_MID, L - 1, capture_hook, &caps[2] };
		p.n_hooks = 2;
		p.cache = NULL;
		p.logits = edited;
		run_forward(r, ids, &T, 1, &p, NULL);
		for (int i = 0; i < D; i++)
			d_edit = fmax(d_edit, fabs(caps[2].buf[(size_t)(T - 1) * D + i] -
			    (c->resid_mid[((size_t)(L - 1) * T + T - 1) * D + i] + delta[i])));
		check(d_edit < 1e-6, "%s: an edit at ln1.hook_normalized is what "
		    "hook_resid_mid sees (max diff %.3g)", fx, d_edit);
		d_edit = 0;
		for (int v = 0; v < V; v++)
			d_edit = fmax(d_edit, fabs(edited[v] - plain[v]));
		check(d_edit > 1e-3, "%s: and it reaches the logits (max change %.3g)",
		    fx, d_edit);
		free(delta);
	}

	hooks[0] = (fl_hook){ HOOK_LNF_NORMALIZED, -1, capture_hook, &caps[3] };
	p.n_hooks = 1;
	rc = run_forward(r, ids, &T, 1, &p, &cause);
	check(rc == -1 && cause != NULL && strstr(cause, "ln_final.hook_normalized") &&
	    strstr(cause, "no final LayerNorm"), "%s: a hook on ln_final is refused "
	    "(%s)", fx, cause ? cause : "no message");
	free(cause);
	for (int i = 0; i < 4; i++)
		free(caps[i].buf);
	free(plain);
	free(edited);
	cache_free(c);
	run_free(r);
}

/* Every linear's and table's weights lie in the owned buffer, each on a
 * 64-byte line: what FL_WEIGHTS_COPY promises. */
static void
check_copied(const char *fx, const fl_model *m)
{
	const char *lo = (const char *)m->owned;
	const char *hi = lo + m->owned_floats * sizeof(float);
	int bad = 0, n = 0;

	for (int l = 0; l < m->cfg.n_layer; l++) {
		const fl_layer *y = &m->layers[l];
		const fl_linear *lin[] = { &y->q, &y->k, &y->v, &y->o, &y->fc,
		    &y->up, &y->proj };

		for (size_t i = 0; i < sizeof lin / sizeof *lin; i++) {
			const char *w = lin[i]->w;

			if (w == NULL)
				continue;
			n++;
			bad += w < lo || w >= hi || ((uintptr_t)w & 63) != 0;
		}
	}
	n += 2;
	bad += (const char *)m->wte.w < lo || (const char *)m->wte.w >= hi ||
	    ((uintptr_t)m->wte.w & 63) != 0;
	bad += (const char *)m->unembed.w < lo || (const char *)m->unembed.w >= hi;
	check(bad == 0 && (m->layers[0].fc.dtype != FL_DTYPE_F32) ==
	    (m->stored_bytes > 0), "%s: %d of %d linears and tables outside "
	    "the copy or off a 64-byte line; f16/bf16 kept as stored", fx, bad, n);
}

/* One fixture, loaded as mode says. With FL_WEIGHTS_STORED, the checks
 * are named "<fixture> (stored)", and a fixture without F16/BF16 linears
 * (nothing left as stored) is skipped: it would repeat the converted run.
 * With FL_WEIGHTS_COPY, "<fixture> (copy)". */
static void
run_fixture(const char *root, const char *name, fl_weights_mode mode)
{
	char *dir = fl_path_join(root, name), *path = fl_path_join(dir, "ref.json");
	char *text, *cause = NULL, fx[128];
	cJSON *ref, *jids, *e, *outputs, *jtext;
	fl_model *m;
	fl_model_opts opts = { mode };
	int *ids, T = 0;

	snprintf(fx, sizeof fx, "%s%s", name, mode == FL_WEIGHTS_STORED ?
	    " (stored)" : mode == FL_WEIGHTS_COPY ? " (copy)" : "");

	text = fl_read_file(path, NULL, 0, &cause);
	ref = text ? cJSON_Parse(text) : NULL;
	free(text);
	if (ref == NULL) {
		check(0, "%s: ref.json readable (%s)", fx, cause ? cause : "bad JSON");
		free(cause);
		goto out;
	}
	/* A fixture may name a model stored elsewhere (the bundled demo). */
	if (cJSON_IsString(cJSON_GetObjectItem(ref, "model_dir"))) {
		char *mdir = fl_path_join(dir, cJSON_GetObjectItem(ref, "model_dir")->valuestring);

		m = model_load(mdir, &opts, &cause);
		free(mdir);
	} else
		m = model_load(dir, &opts, &cause);
	check(m != NULL, "%s: loads (%s)", fx, m ? "ok" : cause);
	if (m == NULL) {
		free(cause);
		cJSON_Delete(ref);
		goto out;
	}
	if (mode == FL_WEIGHTS_STORED) {
		if (m->stored_bytes == 0) {
			model_free(m);
			cJSON_Delete(ref);
			goto out;
		}
		check(m->layers[0].fc.dtype != FL_DTYPE_F32 &&
		    m->layers[0].q.dtype == m->layers[0].fc.dtype &&
		    m->unembed.dtype == m->layers[0].fc.dtype &&
		    m->owned_floats < m->weight_bytes / 20, "%s: linears and "
		    "embeddings as stored (dtype %d), %.3f MB of weights converted "
		    "for %.3f MB in the file", fx, (int)m->layers[0].fc.dtype,
		    m->owned_floats * 4 / 1048576.0, m->weight_bytes / 1048576.0);
	}
	if (mode == FL_WEIGHTS_COPY)
		check_copied(fx, m);
	jids = cJSON_GetObjectItem(ref, "ids");
	ids = xcalloc((size_t)cJSON_GetArraySize(jids), sizeof *ids);
	cJSON_ArrayForEach(e, jids)
		ids[T++] = (int)e->valuedouble;
	jtext = cJSON_GetObjectItem(ref, "text");
	if (cJSON_IsString(jtext)) {
		int *got = NULL, n;

		n = model_encode(m, jtext->valuestring, strlen(jtext->valuestring), &got, NULL);
		check(n == T && memcmp(got, ids, (size_t)T * sizeof *ids) == 0,
		    "%s: the prompt text encodes to the reference ids (%d vs %d ids)",
		    fx, n, T);
		free(got);
	}
	outputs = cJSON_GetObjectItem(ref, "outputs");
	compare_pass(fx, dir, m, ids, T, outputs, false);
	compare_pass(fx, dir, m, ids, T, outputs, true);
	check_invariants(fx, m, ids, T);
	check_errors(fx, m);
	if (!m->cfg.ln_before)
		check_post_ln(fx, m, ids, T);
	free(ids);
	model_free(m);
	cJSON_Delete(ref);
out:
	free(path);
	free(dir);
}

/* Without options, f16 weights stay as stored where the build widens f16
 * in hardware, and are converted at load elsewhere (model.h). */
static void
check_default_mode(const char *root)
{
	char *dir = fl_path_join(root, "gpt2-f16"), *cause = NULL;
	fl_model *m = model_load(dir, NULL, &cause);
	fl_weights_mode want = kern_f16_hardware() ? FL_WEIGHTS_STORED :
	    FL_WEIGHTS_CONVERT;

	check(m != NULL && m->weights_mode == want && (m->stored_bytes > 0) ==
	    (want == FL_WEIGHTS_STORED), "gpt2-f16: loaded without options, the "
	    "weights are %s (hardware f16: %s)", m ? model_weights_name(m->weights_mode) :
	    cause, kern_f16_hardware() ? "yes" : "no");
	free(cause);
	model_free(m);
	free(dir);
}

static int
hook_copy(void *ud, fl_act *a)
{
	memcpy(ud, a->data, (size_t)a->shape[0] * a->shape[1] * sizeof *a->data);
	return FL_HOOK_CONTINUE;
}

/* All logits of a forward pass over ids (T), in a new buffer; what the
 * unembedding read (ln_final's output, (T, D)) into lnf unless NULL. */
static float *
all_logits(fl_model *m, const int *ids, int T, float *lnf)
{
	fl_run *r = run_new(m, T, T);
	fl_pass p = { 0 };
	fl_hook h = { HOOK_LNF_NORMALIZED, -1, hook_copy, lnf };
	float *logits = xmalloc((size_t)T * m->cfg.n_vocab * sizeof *logits);
	char *cause = NULL;

	p.logits_all = true;
	p.logits = logits;
	if (lnf != NULL) {
		p.hooks = &h;
		p.n_hooks = 1;
	}
	if (run_forward(r, ids, &T, 1, &p, &cause) != 0) {
		check(0, "forward runs (%s)", cause);
		free(cause);
	}
	run_free(r);
	return logits;
}

/* GPT-2's Conv1D weights are copied at load into the kernels' layout
 * (kern_linear_pack), and the unembedding too (kern_unembed_pack): what
 * the unembedding reads is the same to the bit as with the weights as
 * stored (FACTLENS_LAYOUT=stored), at every position, for prompts of one
 * tile of rows and of several; so are the logits beyond 32 rows, where
 * the stored rows are transposed block by block into the same strip
 * kernels, and within 1e-5 of the largest below, where they are dot
 * products of the stored rows (summed in another order); every full-width
 * linear and the unembedding have their copy, none has one when the
 * layout is off, and the weights as stored still read as they did (the
 * mapping's pages were let go and come back). */
static void
check_layout(const char *root, const char *name)
{
	char *dir = fl_path_join(root, name), *cause = NULL;
	fl_model *laid, *stored;
	const int Ts[] = { 1, 5, 16, 40 };

	unsetenv("FACTLENS_LAYOUT");
	laid = model_load(dir, NULL, &cause);
	setenv("FACTLENS_LAYOUT", "stored", 1);
	stored = laid != NULL ? model_load(dir, NULL, &cause) : NULL;
	unsetenv("FACTLENS_LAYOUT");
	check(laid != NULL && stored != NULL, "%s: loads with and without the "
	    "kernels' layout (%s)", name, cause ? cause : "ok");
	free(cause);
	if (laid != NULL && stored != NULL) {
		int with = 0, without = 0, n = 0, same = 0, checked = 0;

		for (int l = 0; l < laid->cfg.n_layer; l++) {
			const fl_linear *a[] = { &laid->layers[l].q, &laid->layers[l].fc,
			    &laid->layers[l].proj }, *b[] = { &stored->layers[l].q,
			    &stored->layers[l].fc, &stored->layers[l].proj };

			for (int k = 0; k < 3; k++) {
				n++;
				with += a[k]->pk != NULL;
				without += b[k]->pk != NULL;
				for (int i = 0; i < a[k]->in; i += 7)
					for (int o = 0; o < a[k]->out; o += 5, checked++)
						same += linear_weight(a[k], i, o) ==
						    linear_weight(b[k], i, o);
			}
		}
		check(with == n && without == 0 && same == checked, "%s: %d of %d "
		    "linears laid out (%d without the layout); %d of %d weights read "
		    "back as stored", name, with, n, without, same, checked);
		{
			int D = laid->cfg.d_model, V = laid->cfg.n_vocab, rs = 0, rn = 0;
			float *ua = xmalloc((size_t)D * sizeof *ua);
			float *ub = xmalloc((size_t)D * sizeof *ub);

			for (int v = 0; v < V; v += 3, rn++) {
				table_row(&laid->unembed, v, ua);
				table_row(&stored->unembed, v, ub);
				rs += memcmp(ua, ub, (size_t)D * sizeof *ua) == 0;
			}
			check(laid->unembed.pk != NULL && stored->unembed.pk == NULL &&
			    rs == rn, "%s: the unembedding laid out (%s; %s without the "
			    "layout); %d of %d of its rows read back as stored", name,
			    laid->unembed.pk != NULL ? "yes" : "no",
			    stored->unembed.pk != NULL ? "yes" : "no", rs, rn);
			free(ua);
			free(ub);
		}
		for (size_t t = 0; t < sizeof Ts / sizeof *Ts; t++) {
			int T = Ts[t] < laid->cfg.n_ctx ? Ts[t] : laid->cfg.n_ctx, *ids;
			float *x, *y, *hx, *hy;
			size_t diff = 0, hdiff = 0, N = (size_t)T * laid->cfg.n_vocab;
			size_t H = (size_t)T * laid->cfg.d_model;
			double big = 0, worst = 0;

			ids = xcalloc((size_t)T, sizeof *ids);
			hx = xmalloc(H * sizeof *hx);
			hy = xmalloc(H * sizeof *hy);
			for (int i = 0; i < T; i++)
				ids[i] = (i * 7919 + 13) % laid->cfg.n_vocab;
			x = all_logits(laid, ids, T, hx);
			y = all_logits(stored, ids, T, hy);
			for (size_t i = 0; i < H; i++)
				hdiff += memcmp(&hx[i], &hy[i], sizeof *hx) != 0;
			for (size_t i = 0; i < N; i++) {
				diff += memcmp(&x[i], &y[i], sizeof *x) != 0;
				big = fmax(big, fabs(y[i]));
				worst = fmax(worst, fabs((double)x[i] - y[i]));
			}
			check(hdiff == 0, "%s: %d tokens, what the unembedding reads the "
			    "same to the bit with the kernels' layout as with the weights as "
			    "stored (%zu of %zu differ)", name, T, hdiff, H);
			if (T > 32)
				check(diff == 0, "%s: %d tokens, every logit the same to the "
				    "bit with the kernels' layout as with the weights as stored "
				    "(%zu of %zu differ)", name, T, diff, N);
			else
				check(worst <= 1e-5 * big, "%s: %d tokens, every logit within "
				    "1e-5 of the largest (%.3g) with the kernels' layout as with "
				    "the weights as stored: %.3g apart at most", name, T, big,
				    worst);
			free(x);
			free(y);
			free(hx);
			free(hy);
			free(ids);
		}
	}
	model_free(laid);
	model_free(stored);
	free(dir);
}

/* From 64 rows on, the forward shares its LayerNorms and activations
 * among the threads (forward.c); every row is computed as alone, so a
 * pass of the demo model (n_ctx 128) over 100 tokens gives the same
 * logits, and what the unembedding reads, to the bit on one thread and
 * on two. */
static void
check_threads(const char *root)
{
	char *dir = fl_path_join(root, "../../data/models/demo"), *cause = NULL;
	fl_model *m = model_load(dir, NULL, &cause);
	enum { T = 100 };
	int ids[T];

	check(m != NULL, "demo model loads for the thread check (%s)", m ? "ok" : cause);
	free(cause);
	if (m != NULL) {
		size_t N = (size_t)T * m->cfg.n_vocab, H = (size_t)T * m->cfg.d_model;
		float *h1 = xmalloc(H * sizeof *h1), *h2 = xmalloc(H * sizeof *h2);
		float *x1, *x2;

		for (int i = 0; i < T; i++)
			ids[i] = (i * 7919 + 13) % m->cfg.n_vocab;
		kern_set_threads(1);
		x1 = all_logits(m, ids, T, h1);
		kern_set_threads(2);
		x2 = all_logits(m, ids, T, h2);
		check(memcmp(h1, h2, H * sizeof *h1) == 0 && memcmp(x1, x2, N *
		    sizeof *x1) == 0, "demo, %d tokens: ln_final's output and every "
		    "logit the same to the bit on one thread and on two", T);
		free(x1);
		free(x2);
		free(h1);
		free(h2);
	}
	model_free(m);
	free(dir);
}

int
main(void)
{
	const char *root = getenv("FL_FIXTURES");
	struct dirent *d;
	DIR *dp;
	int n = 0;

	if (root == NULL) {
		check(0, "FL_FIXTURES is set (run through make check)");
		return check_done();
	}
	kern_set_threads(2);
	dp = opendir(root);
	while (dp != NULL && (d = readdir(dp)) != NULL) {
		char *dir = fl_path_join(root, d->d_name), *ref = fl_path_join(dir, "ref.json");

		if (d->d_name[0] != '.' && fl_file_exists(ref)) {
			run_fixture(root, d->d_name, FL_WEIGHTS_CONVERT);
			run_fixture(root, d->d_name, FL_WEIGHTS_STORED);
			run_fixture(root, d->d_name, FL_WEIGHTS_COPY);
			n++;
		}
		free(ref);
		free(dir);
	}
	if (dp != NULL)
		closedir(dp);
	check_default_mode(root);
	check_layout(root, "gpt2-f32");
	check_layout(root, "gpt2-f16");
	check_threads(root);
	check(n >= 10, "found %d reference fixtures (expected at least 10)", n);
	return check_done();
}
