/* shard.c - partials of sharded commands and their merge; see shard.h. */
#include "autoconfig.h"

#include "shard.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/st.h"
#include "base/util.h"

#define SHARD_MAX 100000

int
cli_shard_parse(const char *arg, cli_shard *s)
{
	char *end;
	long i, n;

	errno = 0;
	i = strtol(arg, &end, 10);
	if (end == arg || *end != '/' || errno != 0)
		return cli_fail(2, "--shard takes I/N (shard I of N, 1 <= I <= N), "
		    "not '%s'", arg);
	n = strtol(end + 1, &end, 10);
	if (*end != '\0' || errno != 0 || end == arg)
		return cli_fail(2, "--shard takes I/N (shard I of N, 1 <= I <= N), "
		    "not '%s'", arg);
	if (n < 1 || n > SHARD_MAX)
		return cli_fail(2, "--shard %s: N must be 1 to %d", arg, SHARD_MAX);
	if (i < 1 || i > n)
		return cli_fail(2, "--shard %s: I must be 1 to N (%ld); shards are "
		    "counted from 1", arg, n);
	s->index = (int)i;
	s->count = (int)n;
	return 0;
}

int *
cli_shard_select(const cli_shard *s, int n, int *k)
{
	int *idx = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *idx), c = 0;

	for (int i = 0; i < n; i++)
		if (s->count < 1 || i % s->count == s->index - 1)
			idx[c++] = i;
	*k = c;
	return idx;
}

/* ---- base64 of little-endian values ------------------------------------ */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *
b64_encode(const unsigned char *p, size_t n)
{
	char *s = xmalloc((n + 2) / 3 * 4 + 1), *o = s;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*o = '\0';
	return s;
}

static int
b64_value(char c)
{
	const char *q = c != '\0' ? strchr(b64, c) : NULL;

	return q != NULL ? (int)(q - b64) : -1;
}

/* Decodes s into exactly n bytes: 0, or -1 when s is not that. */
static int
b64_decode(const char *s, unsigned char *out, size_t n)
{
	size_t len = strlen(s), o = 0;

	if (len != (n + 2) / 3 * 4)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		uint32_t w;

		for (int k = 0; k < 4; k++) {
			v[k] = b64_value(s[i + k]);
			if (v[k] < 0 && !(s[i + k] == '=' && i + 4 == len && k >= 2))
				return -1;
		}
		w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
		    (uint32_t)(v[2] < 0 ? 0 : v[2]) << 6 | (uint32_t)(v[3] < 0 ? 0 : v[3]);
		for (int k = 0; k < 3 && o < n; k++)
			out[o++] = (unsigned char)(w >> (16 - 8 * k));
	}
	return 0;
}

void
cli_json_add_f32(cJSON *o, const char *name, const float *v, size_t n)
{
	unsigned char *b = xmalloc(n * 4 + 1);
	char *s;

	for (size_t i = 0; i < n; i++) {
		uint32_t u;

		memcpy(&u, &v[i], 4);
		for (int k = 0; k < 4; k++)
			b[i * 4 + k] = (unsigned char)(u >> (8 * k));
	}
	s = b64_encode(b, n * 4);
	cJSON_AddStringToObject(o, name, s);
	free(s);
	free(b);
}

void
cli_json_add_f64(cJSON *o, const char *name, const double *v, size_t n)
{
	unsigned char *b = xmalloc(n * 8 + 1);
	char *s;

	for (size_t i = 0; i < n; i++) {
		uint64_t u;

		memcpy(&u, &v[i], 8);
		for (int k = 0; k < 8; k++)
			b[i * 8 + k] = (unsigned char)(u >> (8 * k));
	}
	s = b64_encode(b, n * 8);
	cJSON_AddStringToObject(o, name, s);
	free(s);
	free(b);
}

static const char *
part_of(const cli_merge *mg, int i)
{
	return mg->parts[i % mg->count].path;
}

/* Decodes field name of prompt i's line into n values of size bytes. */
static int
get_le(const cli_merge *mg, int i, const cJSON *o, const char *name,
    unsigned char *b, size_t n, size_t size)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsString(f))
		return cli_fail(1, "%s: prompt %d: no field \"%s\" (base64 of %zu "
		    "values)", part_of(mg, i), i, name, n);
	if (b64_decode(f->valuestring, b, n * size) != 0)
		return cli_fail(1, "%s: prompt %d: field \"%s\" is not base64 of %zu "
		    "%s", part_of(mg, i), i, name, n, size == 4 ? "floats" : "doubles");
	return 0;
}

int
cli_json_get_f32(const cli_merge *mg, int i, const cJSON *o, const char *name,
    float *dst, size_t n)
{
	unsigned char *b = xmalloc(n * 4 + 1);

	if (get_le(mg, i, o, name, b, n, 4) != 0) {
		free(b);
		return 1;
	}
	for (size_t j = 0; j < n; j++) {
		uint32_t u = 0;

		for (int k = 0; k < 4; k++)
			u |= (uint32_t)b[j * 4 + k] << (8 * k);
		memcpy(&dst[j], &u, 4);
	}
	free(b);
	return 0;
}

int
cli_json_get_f64(const cli_merge *mg, int i, const cJSON *o, const char *name,
    double *dst, size_t n)
{
	unsigned char *b = xmalloc(n * 8 + 1);

	if (get_le(mg, i, o, name, b, n, 8) != 0) {
		free(b);
		return 1;
	}
	for (size_t j = 0; j < n; j++) {
		uint64_t u = 0;

		for (int k = 0; k < 8; k++)
			u |= (uint64_t)b[j * 8 + k] << (8 * k);
		memcpy(&dst[j], &u, 8);
	}
	free(b);
	return 0;
}

int
cli_json_get_int(const cli_merge *mg, int i, const cJSON *o, const char *name,
    int *out)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsNumber(f) || !(f->valuedouble >= INT_MIN &&
	    f->valuedouble <= INT_MAX) ||
	    f->valuedouble != (double)(int)f->valuedouble)
		return cli_fail(1, "%s: prompt %d: no integer field \"%s\"",
		    part_of(mg, i), i, name);
	*out = (int)f->valuedouble;
	return 0;
}

/* ---- writing ------------------------------------------------------------- */

/* The option at argv[k] (argv[k + 1] its value unless joined with '='),
 * when it is --shard or --out (or a prefix getopt_long would take for it):
 * how many words it spans, else 0. */
static int
shard_option_words(char **argv, int argc, int k)
{
	static const char *const names[] = { "shard", "out" };
	const char *a = argv[k], *eq;
	size_t len;

	if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
		return 0;
	a += 2;
	eq = strchr(a, '=');
	len = eq != NULL ? (size_t)(eq - a) : strlen(a);
	for (int j = 0; j < 2; j++)
		if (len >= 2 && len <= strlen(names[j]) && strncmp(a, names[j], len) == 0)
			return eq != NULL || k + 1 >= argc ? 1 : 2;
	return 0;
}

static int
part_write(cli_part_writer *w, cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);

	cJSON_Delete(o);
	if (w->failed)
		goto out;
	if (s == NULL || fputs(s, w->f) == EOF || fputc('\n', w->f) == EOF) {
		cli_fail(1, "%s: %s", w->path, s == NULL ? "out of memory" :
		    strerror(errno));
		w->failed = true;
	}
out:
	free(s);
	return w->failed ? 1 : 0;
}

int
cli_part_begin(cli_part_writer *w, const cli_shard *s, const fl_model *m,
    const char *cmd, int argc, char **argv, int n_prompts)
{
	cJSON *h = cJSON_CreateObject(), *opts;
	char hex[65];

	memset(w, 0, sizeof *w);
	if (s->out != NULL) {
		if ((w->f = fopen(s->out, "w")) == NULL) {
			cJSON_Delete(h);
			return cli_fail(1, "%s: %s", s->out, strerror(errno));
		}
		w->path = s->out;
	} else {
		w->f = stdout;
		w->path = "standard output";
	}
	st_sha256(m->weights, hex);
	cJSON_AddNumberToObject(h, "factlens_partial", CLI_PARTIAL_FORMAT);
	cJSON_AddStringToObject(h, "version", PACKAGE_VERSION);
	cJSON_AddStringToObject(h, "weights_sha256", hex);
	cJSON_AddStringToObject(h, "command", cmd);
	opts = cJSON_AddArrayToObject(h, "options");
	for (int k = 1; k < argc; k++) {
		int skip = shard_option_words(argv, argc, k);

		if (skip > 0) {
			k += skip - 1;
			continue;
		}
		cJSON_AddItemToArray(opts, cJSON_CreateString(argv[k]));
	}
	cJSON_AddNumberToObject(h, "shard", s->index);
	cJSON_AddNumberToObject(h, "shards", s->count);
	cJSON_AddNumberToObject(h, "prompts", n_prompts);
	return part_write(w, h);
}

int
cli_part_row(cli_part_writer *w, cJSON *row)
{
	return part_write(w, row);
}

int
cli_part_end(cli_part_writer *w, cJSON *work)
{
	cJSON *t = cJSON_CreateObject();
	int rc;

	cJSON_AddTrueToObject(t, "end");
	cJSON_AddItemToObject(t, "work", work != NULL ? work : cJSON_CreateObject());
	rc = part_write(w, t);
	if (fflush(w->f) != 0 || ferror(w->f)) {
		if (!w->failed)
			cli_fail(1, "%s: %s", w->path, strerror(errno));
		rc = 1;
	}
	if (w->f != stdout && fclose(w->f) != 0 && rc == 0)
		rc = cli_fail(1, "%s: %s", w->path, strerror(errno));
	w->f = NULL;
	return rc;
}

/* ---- reading ------------------------------------------------------------- */

/* The next line of a part, parsed; NULL at the end of the file (*eof) or
 * after reporting a line that is not JSON. */
static cJSON *
part_next(cli_part *p, bool *eof)
{
	ssize_t got;
	cJSON *o;

	*eof = false;
	errno = 0;
	if ((got = getline(&p->buf, &p->cap, p->f)) < 0) {
		if (ferror(p->f)) {
			cli_fail(1, "%s: %s", p->path, strerror(errno));
			return NULL;
		}
		*eof = true;
		return NULL;
	}
	p->line++;
	if ((o = cJSON_Parse(p->buf)) == NULL || !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		cli_fail(1, "%s: line %ld is not a JSON object", p->path, p->line);
		return NULL;
	}
	return o;
}

static const char *
str_field(const cJSON *o, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(f) ? f->valuestring : NULL;
}

static int
int_field(const cJSON *o, const char *name, int *out)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	/* in range before the cast (a cast of an out-of-range double is
	 * undefined: fuzz_partial found 1e86), then whole */
	if (!cJSON_IsNumber(f) || !(f->valuedouble >= INT_MIN &&
	    f->valuedouble <= INT_MAX) ||
	    f->valuedouble != (double)(int)f->valuedouble)
		return -1;
	*out = (int)f->valuedouble;
	return 0;
}

/* The header's options as one string, for comparing and messages. */
static char *
options_text(const cJSON *h)
{
	const cJSON *opts = cJSON_GetObjectItemCaseSensitive(h, "options"), *e;
	size_t len = 1;
	char *s;

	if (!cJSON_IsArray(opts))
		return NULL;
	cJSON_ArrayForEach(e, opts) {
		if (!cJSON_IsString(e))
			return NULL;
		len += strlen(e->valuestring) + 1;
	}
	s = xmalloc(len);
	s[0] = '\0';
	cJSON_ArrayForEach(e, opts) {
		if (s[0] != '\0')
			strcat(s, " ");
		strcat(s, e->valuestring);
	}
	return s;
}

/* Reads and checks part p's header; the first part's sets what the others
 * must have (*first NULL: this is the first). */
static int
part_header(cli_part *p, cJSON **first, cli_merge *mg)
{
	cJSON *h;
	bool eof;
	const char *ver, *hash, *cmd;
	char *opts = NULL, *opts0 = NULL;
	int fmt, idx, count, prompts, rc = 1;

	if ((h = part_next(p, &eof)) == NULL)
		return eof ? cli_fail(1, "%s: empty: not a factlens partial", p->path) : 1;
	if (int_field(h, "factlens_partial", &fmt) != 0) {
		cli_fail(1, "%s: line 1 has no \"factlens_partial\": not a factlens "
		    "partial (one is written by eval, heads, decompose, trace or "
		    "atp --task with --shard I/N)", p->path);
		goto out;
	}
	if (fmt != CLI_PARTIAL_FORMAT) {
		cli_fail(1, "%s: partial format %d; this factlens reads format %d",
		    p->path, fmt, CLI_PARTIAL_FORMAT);
		goto out;
	}
	ver = str_field(h, "version");
	hash = str_field(h, "weights_sha256");
	cmd = str_field(h, "command");
	opts = options_text(h);
	if (ver == NULL || hash == NULL || strlen(hash) != 64 || cmd == NULL ||
	    opts == NULL || int_field(h, "shard", &idx) != 0 ||
	    int_field(h, "shards", &count) != 0 || int_field(h, "prompts", &prompts) != 0 ||
	    count < 1 || idx < 1 || idx > count || prompts < 0) {
		cli_fail(1, "%s: the header wants version, weights_sha256 (64 hex "
		    "digits), command, options (strings), shard I of shards N "
		    "(1 <= I <= N) and prompts (>= 0)", p->path);
		goto out;
	}
	p->index = idx;
	if (*first == NULL) {
		const cJSON *e, *arr = cJSON_GetObjectItemCaseSensitive(h, "options");
		int k = 1;

		*first = h;
		h = NULL;
		mg->count = count;
		mg->prompts = prompts;
		mg->command = xstrdup(cmd);
		mg->weights = xstrdup(hash);
		mg->argc = cJSON_GetArraySize(arr) + 1;
		mg->argv = xcalloc((size_t)mg->argc + 1, sizeof *mg->argv);
		mg->argv[0] = xstrdup(cmd);
		cJSON_ArrayForEach(e, arr)
			mg->argv[k++] = xstrdup(e->valuestring);
		rc = 0;
		goto out;
	}
	opts0 = options_text(*first);
	if (strcmp(hash, mg->weights) != 0)
		cli_fail(1, "%s: weights SHA-256 %s, but %s's is %s: parts of "
		    "different models", p->path, hash, mg->parts[0].path, mg->weights);
	else if (strcmp(cmd, mg->command) != 0)
		cli_fail(1, "%s: a partial of %s, but %s is of %s", p->path, cmd,
		    mg->parts[0].path, mg->command);
	else if (strcmp(opts, opts0) != 0)
		cli_fail(1, "%s: options '%s', but %s has '%s': parts of different "
		    "runs", p->path, opts, mg->parts[0].path, opts0);
	else if (count != mg->count)
		cli_fail(1, "%s: shard %d of %d, but %s is of %d shards", p->path, idx,
		    count, mg->parts[0].path, mg->count);
	else if (prompts != mg->prompts)
		cli_fail(1, "%s: %d prompts in all, but %s has %d", p->path, prompts,
		    mg->parts[0].path, mg->prompts);
	else if (strcmp(ver, str_field(*first, "version")) != 0)
		cli_fail(1, "%s: written by factlens %s, but %s by %s", p->path, ver,
		    mg->parts[0].path, str_field(*first, "version"));
	else
		rc = 0;
out:
	free(opts);
	free(opts0);
	cJSON_Delete(h);
	return rc;
}

int
cli_merge_open(cli_merge *mg, char **paths, int n)
{
	cli_part *byidx;
	cJSON *first = NULL;
	int rc = 1;

	memset(mg, 0, sizeof *mg);
	if (n < 1)
		return cli_fail(2, "merge: no partials given");
	mg->parts = xcalloc((size_t)n, sizeof *mg->parts);
	mg->n_parts = n;
	for (int k = 0; k < n; k++) {
		cli_part *p = &mg->parts[k];

		p->path = xstrdup(paths[k]);
		if ((p->f = fopen(p->path, "r")) == NULL) {
			cli_fail(1, "%s: %s", p->path, strerror(errno));
			goto out;
		}
		if (part_header(p, &first, mg) != 0)
			goto out;
	}
	/* every shard once, in shard order */
	byidx = xcalloc((size_t)mg->count, sizeof *byidx);
	for (int k = 0; k < n; k++) {
		cli_part *p = &mg->parts[k];

		if (byidx[p->index - 1].path != NULL) {
			cli_fail(1, "%s: shard %d of %d again (%s has it)", p->path,
			    p->index, mg->count, byidx[p->index - 1].path);
			free(byidx);
			goto out;
		}
		byidx[p->index - 1] = *p;
	}
	for (int i = 0; i < mg->count; i++)
		if (byidx[i].path == NULL) {
			char list[256] = "";
			size_t len = 0;

			for (int j = 0; j < mg->count && len < sizeof list - 16; j++)
				if (byidx[j].path == NULL)
					len += (size_t)snprintf(list + len, sizeof list - len,
					    "%s%d", len > 0 ? ", " : "", j + 1);
			cli_fail(1, "merge: %d partials given of %d shards (%s, ...); "
			    "missing: shard %s", n, mg->count, mg->parts[0].path, list);
			free(byidx);
			goto out;
		}
	free(mg->parts);
	mg->parts = byidx;
	rc = 0;
out:
	cJSON_Delete(first);
	return rc;
}

void
cli_merge_clear(cli_merge *mg)
{
	int n = mg->n_parts;

	if (mg->parts != NULL)
		for (int k = 0; k < n; k++) {
			cli_part *p = &mg->parts[k];

			if (p->f != NULL)
				fclose(p->f);
			free(p->path);
			free(p->buf);
			cJSON_Delete(p->work);
		}
	free(mg->parts);
	for (int k = 0; k < mg->argc; k++)
		free(mg->argv[k]);
	free(mg->argv);
	free(mg->command);
	free(mg->weights);
	memset(mg, 0, sizeof *mg);
}

cJSON *
cli_merge_row(cli_merge *mg, int i)
{
	cli_part *p = &mg->parts[i % mg->count];
	bool eof;
	cJSON *o = part_next(p, &eof);
	int got;

	if (o == NULL) {
		if (eof)
			cli_fail(1, "%s: ends after line %ld, before prompt %d: cut "
			    "short", p->path, p->line, i);
		return NULL;
	}
	if (int_field(o, "prompt", &got) != 0 || got != i) {
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "end")))
			cli_fail(1, "%s: line %ld ends the part, but prompt %d of %d "
			    "belongs to it", p->path, p->line, i, mg->prompts);
		else
			cli_fail(1, "%s: line %ld is not prompt %d (shard %d of %d holds "
			    "the prompts i with i mod %d = %d, in order)", p->path,
			    p->line, i, p->index, mg->count, mg->count, p->index - 1);
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

int
cli_merge_end(cli_merge *mg)
{
	for (int k = 0; k < mg->count; k++) {
		cli_part *p = &mg->parts[k];
		bool eof;
		cJSON *o = part_next(p, &eof), *extra;

		if (o == NULL)
			return eof ? cli_fail(1, "%s: no trailer line ({\"end\": "
			    "true, ...}) after line %ld: cut short", p->path, p->line) : 1;
		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "end"))) {
			cJSON_Delete(o);
			return cli_fail(1, "%s: line %ld: more prompts than shard %d of "
			    "%d holds of %d", p->path, p->line, p->index, mg->count,
			    mg->prompts);
		}
		p->work = cJSON_DetachItemFromObjectCaseSensitive(o, "work");
		cJSON_Delete(o);
		if ((extra = part_next(p, &eof)) != NULL || !eof) {
			cJSON_Delete(extra);
			return cli_fail(1, "%s: lines after the trailer (line %ld)",
			    p->path, p->line);
		}
	}
	return 0;
}

double
cli_merge_work_sum(const cli_merge *mg, const char *key)
{
	double s = 0;

	for (int k = 0; k < mg->count; k++) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(mg->parts[k].work, key);

		if (cJSON_IsNumber(f))
			s += f->valuedouble;
	}
	return s;
}
