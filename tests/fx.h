/*
 * fx.h - what the analysis tests share: the reference fixtures
 * ($FL_FIXTURES/<name>, written by tools/make-fixtures), the short test task
 * ($FL_FIXTURES/../tasks/tiny.json), the bundled demo model when it exists,
 * and a few helpers. Include after check.h.
 */
#ifndef FL_TEST_FX_H
#define FL_TEST_FX_H

#include <cjson/cJSON.h>
#include <string.h>

#include "analysis/task.h"
#include "base/util.h"

#define FX_UNUSED __attribute__((unused))

/* The fixtures every analysis test runs on: the three architectures, a
 * 3-layer and a 1-layer model, half-precision weights, a post-LN OPT with project_in/out,
 * Llama with and without grouped-query attention. */
static const char *fx_names[] FX_UNUSED = {
	"gpt2-f32", "gpt2-prefixed", "gpt2-1layer", "gpt2-f16", "opt-f32", "opt-f16", "opt350-f32",
	"opt350-f16", "llama-f32", "llama-bf16",
};
#define FX_COUNT (int)(sizeof fx_names / sizeof fx_names[0])

static FX_UNUSED const char *
fx_root(void)
{
	const char *r = getenv("FL_FIXTURES");

	if (r == NULL) {
		check(0, "FL_FIXTURES is set (run through make check)");
		exit(check_done());
	}
	return r;
}

/* Loads $FL_FIXTURES/name (or an absolute or relative dir when name has a
 * '/'); NULL after a failed check. */
static FX_UNUSED fl_model *
fx_model(const char *name)
{
	char *dir = strchr(name, '/') ? xstrdup(name) : fl_path_join(fx_root(), name);
	char *cause = NULL;
	fl_model *m = model_load(dir, NULL, &cause);

	if (m == NULL) {
		check(0, "%s: loads (%s)", name, cause);
		free(cause);
	}
	free(dir);
	return m;
}

/* The bundled demo model's directory when it has been trained, else NULL. */
static FX_UNUSED char *
fx_demo_dir(void)
{
	char *dir = fl_path_join(fx_root(), "../../data/models/demo");
	char *cfg = fl_path_join(dir, "config.json");
	int ok = fl_file_exists(cfg);

	free(cfg);
	if (!ok) {
		free(dir);
		return NULL;
	}
	return dir;
}

static FX_UNUSED fl_task *
fx_task(const char *rel)
{
	char *path = fl_path_join(fx_root(), rel), *cause = NULL;
	fl_task *t = task_load(path, &cause);

	if (t == NULL) {
		check(0, "%s: loads (%s)", rel, cause);
		free(cause);
	}
	free(path);
	return t;
}

static FX_UNUSED fl_task *
fx_tiny_task(void)
{
	return fx_task("../tasks/tiny.json");
}

/* Runs one prompt with a full cache (patterns kept). */
static FX_UNUSED fl_cache *
fx_cache(const fl_model *m, fl_run *r, const int *ids, int n)
{
	fl_cache *c = cache_new(m, n, FL_CACHE_PATTERN);
	fl_pass p = { 0 };
	char *cause = NULL;

	p.cache = c;
	if (run_forward(r, ids, &n, 1, &p, &cause) < 0) {
		check(0, "forward pass: %s", cause);
		free(cause);
	}
	return c;
}

/* Deterministic values in [-1, 1). */
static FX_UNUSED void
fx_fill(float *x, size_t n, unsigned seed)
{
	unsigned s = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		s = s * 1664525u + 1013904223u;
		x[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
	}
}

static FX_UNUSED float *
fx_read_f32(const char *fixture, const char *file, size_t *n)
{
	char *dir = fl_path_join(fx_root(), fixture), *path = fl_path_join(dir, file);
	char *cause = NULL;
	size_t len = 0;
	char *buf = fl_read_file(path, &len, 0, &cause);

	if (buf == NULL) {
		check(0, "read %s/%s: %s", fixture, file, cause);
		free(cause);
	}
	free(path);
	free(dir);
	*n = len / 4;
	return (float *)buf;
}

/* The prompt of a fixture's ref.json, as ids (heap), or NULL. */
static FX_UNUSED int *
fx_ref_ids(const char *fixture, int *n)
{
	char *dir = fl_path_join(fx_root(), fixture), *path = fl_path_join(dir, "ref.json");
	char *text = fl_read_file(path, NULL, 0, NULL);
	cJSON *ref = text ? cJSON_Parse(text) : NULL, *e;
	int *ids = NULL;

	*n = 0;
	if (ref != NULL) {
		const cJSON *arr = cJSON_GetObjectItem(ref, "ids");

		ids = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof *ids);
		cJSON_ArrayForEach(e, arr)
			ids[(*n)++] = (int)e->valuedouble;
	} else
		check(0, "%s: ref.json is readable", fixture);
	cJSON_Delete(ref);
	free(text);
	free(path);
	free(dir);
	return ids;
}

/* A progress callback (fl_progress_fn) that asks to stop at its stop_at-th
 * call (0: never) and records what it was told: the cancellation tests. */
typedef struct {
	int	 stop_at;
	int	 calls;
	long	 done, total;	/* of the last call */
	bool	 backwards;	/* done ever went down */
} fx_stopper;

static FX_UNUSED bool
fx_stop_at(void *ud, const char *what, long done, long total)
{
	fx_stopper *s = ud;

	(void)what;

	if (s->calls > 0 && done < s->done)
		s->backwards = true;
	s->calls++;
	s->done = done;
	s->total = total;
	return s->stop_at > 0 && s->calls >= s->stop_at;
}

#endif
