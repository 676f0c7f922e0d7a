/*
 * test_dump.c - activation dumps (engine/dump.h) and the safetensors writer
 * (st_write_f32): a dump read back with factlens' own reader holds, under
 * TransformerLens' names and shapes, what the pass's cache holds; its
 * header is sorted, space-padded to 8 bytes and carries the metadata; a
 * glob selects the layers it names; an unknown name is refused with the
 * valid names listed.
 */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine/dump.h"
#include "engine/pool.h"
#include "engine/st.h"
#include "base/util.h"

static fl_model *
load(const char *name)
{
	char *dir = fl_path_join(getenv("FL_FIXTURES"), name), *cause = NULL;
	fl_model *m = model_load(dir, NULL, &cause);

	check(m != NULL, "%s: loads%s%s", name, cause ? ": " : "", cause ? cause : "");
	free(cause);
	free(dir);
	return m;
}

/* The tensor name of st, checked to have the shape given. */
static const st_tensor *
find_shaped(const st_set *st, const char *name, int ndim, const int64_t *shape)
{
	const st_tensor *t = st_find(st, name);
	bool ok = t != NULL && t->dtype == ST_DTYPE_F32 && t->ndim == ndim;

	for (int i = 0; ok && i < ndim; i++)
		ok = t->shape[i] == shape[i];
	check(ok, "dump: %s is F32 shaped as TransformerLens", name);
	return ok ? t : NULL;
}

static void
check_against_cache(const char *fixture)
{
	fl_model *m = load(fixture);
	char path[] = "/tmp/fl-test-dump-XXXXXX", *cause = NULL, name[64];
	const char *meta[] = { "model", fixture, "factlens", PACKAGE_VERSION };
	int ids[] = { 1, 5, 9, 2, 7 }, T = 5, nh, fd;
	fl_dump *d;
	fl_cache *c;
	fl_run *r;
	fl_pass pass = { 0 };
	st_set *st;

	if (m == NULL)
		return;
	int L = m->cfg.n_layer, D = m->cfg.d_model, H = m->cfg.n_head;

	d = dump_new(m, "all", &cause);
	check(d != NULL, "%s: dump all parses", fixture);
	c = cache_new(m, T, FL_CACHE_PATTERN);
	r = run_new(m, T, T);
	pass.cache = c;
	pass.hooks = dump_hooks(d, &nh);
	pass.n_hooks = nh;
	check(run_forward(r, ids, &T, 1, &pass, &cause) == 0, "%s: pass with the "
	    "dump hooks runs", fixture);
	fd = mkstemp(path);
	close(fd);
	check(dump_write(d, path, meta, 2, &cause) == 0, "%s: dump written%s%s",
	    fixture, cause ? ": " : "", cause ? cause : "");
	free(cause);
	cause = NULL;
	st = st_open_file(path, &cause);
	check(st != NULL, "%s: the dump reads back with st_open_file%s%s", fixture,
	    cause ? ": " : "", cause ? cause : "");
	if (st != NULL) {
		check(st->ntensors == dump_count(d), "%s: %d tensors read back, %d "
		    "dumped", fixture, st->ntensors, dump_count(d));
		for (int l = 0; l < L; l++) {
			const st_tensor *t;
			int64_t td[] = { T, D }, htt[] = { H, T, T };

			snprintf(name, sizeof name, "blocks.%d.hook_resid_post", l);
			if ((t = find_shaped(st, name, 2, td)) != NULL)
				check_close(name, (const float *)t->data,
				    c->resid_pre + (size_t)(l + 1) * T * D, (size_t)T * D, 0);
			snprintf(name, sizeof name, "blocks.%d.hook_mlp_out", l);
			if ((t = find_shaped(st, name, 2, td)) != NULL)
				check_close(name, (const float *)t->data,
				    c->mlp_out + (size_t)l * T * D, (size_t)T * D, 0);
			snprintf(name, sizeof name, "blocks.%d.attn.hook_pattern", l);
			if ((t = find_shaped(st, name, 3, htt)) != NULL)
				check_close(name, (const float *)t->data,
				    c->pattern + (size_t)l * H * T * T, (size_t)H * T * T, 0);
		}
		st_close(st);
	}
	free(cause);
	cause = NULL;
	/* the header: sorted keys, padding, metadata */
	{
		size_t len;
		char *buf = fl_read_file(path, &len, 0, &cause);
		uint64_t n = 0;

		for (int i = 0; buf != NULL && i < 8; i++)
			n |= (uint64_t)(uint8_t)buf[i] << (8 * i);
		check(buf != NULL && n % 8 == 0 && n + 8 <= len, "%s: header length %llu "
		    "is a multiple of 8", fixture, (unsigned long long)n);
		if (buf != NULL && n + 8 <= len) {
			cJSON *h = cJSON_ParseWithLength(buf + 8, n), *e, *md;
			const char *prev = "";
			bool sorted = true;

			cJSON_ArrayForEach(e, h) {
				sorted &= strcmp(prev, e->string) < 0;
				prev = e->string;
			}
			check(h != NULL && sorted, "%s: header keys in byte order", fixture);
			md = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
			check(md != NULL && cJSON_IsString(cJSON_GetObjectItem(md, "factlens")) &&
			    strcmp(cJSON_GetObjectItem(md, "factlens")->valuestring,
			    PACKAGE_VERSION) == 0, "%s: __metadata__ names factlens' version",
			    fixture);
			check(buf[8 + n - 1] == ' ' || buf[8 + n - 1] == '}', "%s: header "
			    "padded with spaces", fixture);
			cJSON_Delete(h);
		}
		free(buf);
	}
	unlink(path);
	run_free(r);
	cache_free(c);
	dump_free(d);
	model_free(m);
}

static void
check_spec(void)
{
	fl_model *m = load("gpt2-f32");
	char *cause = NULL;
	fl_dump *d;

	if (m == NULL)
		return;
	d = dump_new(m, "blocks.*.hook_resid_post,hook_embed", &cause);
	check(d != NULL && dump_count(d) == m->cfg.n_layer + 1, "glob: "
	    "blocks.*.hook_resid_post,hook_embed selects %d tensors (want %d)",
	    d ? dump_count(d) : -1, m->cfg.n_layer + 1);
	check(d != NULL && strcmp(dump_name(d, 0), "hook_embed") == 0, "glob: "
	    "first tensor %s", d ? dump_name(d, 0) : "-");
	dump_free(d);
	d = dump_new(m, "blocks.0.hook_resid_pots", &cause);
	check(d == NULL && cause != NULL && strstr(cause, "hook_resid_pots") &&
	    strstr(cause, "blocks.L.hook_resid_post"), "unknown hook refused, the "
	    "valid ones listed: %s", cause ? cause : "(accepted)");
	free(cause);
	cause = NULL;
	d = dump_new(m, "blocks.0.attn.hook_rot_q", &cause);
	check(d == NULL, "hook_rot_q refused in a model without rotary positions");
	free(cause);
	cause = NULL;
	d = dump_new(m, "logits", &cause);
	check(d == NULL, "logits is not a dump name (--dump-logits writes them)");
	free(cause);
	cause = NULL;
	d = dump_new(m, " , ", &cause);
	check(d == NULL, "an empty spec is refused");
	free(cause);
	model_free(m);
}

int
main(void)
{
	if (getenv("FL_FIXTURES") == NULL) {
		check(0, "FL_FIXTURES is set (run through make check)");
		return check_done();
	}
	kern_set_threads(1);
	check_against_cache("gpt2-f32");
	check_against_cache("llama-f32");
	check_against_cache("opt-f32");
	check_spec();
	return check_done();
}
