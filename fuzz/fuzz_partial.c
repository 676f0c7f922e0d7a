/* fuzz_partial.c - libFuzzer target: the reader of sharded partials
 * (src/cli/shard.h), what `factlens merge` runs on files it is given.
 *
 * The input is one to four partials separated by a line "--8<--": each is
 * written to a file of its own and the set opened with cli_merge_open,
 * then read as a merge reads it: every prompt's line in turn, each of its
 * string fields decoded as base64 doubles and floats, then the trailers.
 * Invariants: every refusal is reported (a message, as the CLI prints
 * one); an accepted set has every shard 1..N once, in shard order; a
 * field that decodes gives the same values when encoded and decoded again.
 * cli_fail is this file's own (main.c is not linked): it counts the
 * messages instead of printing them. */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/shard.h"

#define MAX_PARTS 4
static const char sep[] = "\n--8<--\n";

static long reported;

int
cli_fail(int status, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (buf[0] == '\0')
		abort();	/* a refusal that says nothing */
	reported++;
	return status;
}

/* The directory the parts go to, made once per process. */
static const char *
work_dir(void)
{
	static char dir[4096];

	if (dir[0] == '\0') {
		const char *tmp = getenv("TMPDIR");

		snprintf(dir, sizeof dir, "%s/fuzz_partial.XXXXXX", tmp != NULL &&
		    tmp[0] != '\0' ? tmp : "/tmp");
		if (mkdtemp(dir) == NULL)
			abort();
	}
	return dir;
}

/* A field that decodes as n values of one width encodes back to a string
 * that decodes to the same bytes. */
static void
check_field(const cli_merge *mg, int i, const cJSON *row, const cJSON *f)
{
	size_t len = strlen(f->valuestring), bytes = len / 4 * 3;

	for (int width = 4; width <= 8; width += 4) {
		size_t n = bytes / (size_t)width;
		unsigned char *a = malloc(n * 8 + 8), *b = malloc(n * 8 + 8);
		long before = reported;
		cJSON *o;
		int rc;

		rc = width == 4 ? cli_json_get_f32(mg, i, row, f->string, (float *)a, n) :
		    cli_json_get_f64(mg, i, row, f->string, (double *)a, n);
		if (rc != 0 && reported == before)
			abort();
		if (rc == 0) {
			o = cJSON_CreateObject();
			if (width == 4)
				cli_json_add_f32(o, "x", (float *)a, n);
			else
				cli_json_add_f64(o, "x", (double *)a, n);
			if ((width == 4 ? cli_json_get_f32(mg, i, o, "x", (float *)b, n) :
			    cli_json_get_f64(mg, i, o, "x", (double *)b, n)) != 0 ||
			    memcmp(a, b, n * (size_t)width) != 0)
				abort();
			cJSON_Delete(o);
		}
		free(a);
		free(b);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *paths[MAX_PARTS];
	const uint8_t *p = data, *end = data + size;
	int n = 0, rc;
	cli_merge mg;
	long before;

	/* split into parts, each into a file */
	while (n < MAX_PARTS) {
		const uint8_t *cut = n + 1 < MAX_PARTS ?
		    memmem(p, (size_t)(end - p), sep, sizeof sep - 1) : NULL;
		const uint8_t *stop = cut != NULL ? cut + 1 : end;	/* keep its '\n' */
		FILE *f;

		paths[n] = malloc(128);
		snprintf(paths[n], 128, "%s/part%d", work_dir(), n);
		if ((f = fopen(paths[n], "wb")) == NULL)
			abort();
		if (stop > p && fwrite(p, 1, (size_t)(stop - p), f) != (size_t)(stop - p))
			abort();
		fclose(f);
		n++;
		if (cut == NULL)
			break;
		p = cut + sizeof sep - 1;
	}

	before = reported;
	rc = cli_merge_open(&mg, paths, n);
	if (rc != 0 && reported == before)
		abort();
	if (rc == 0) {
		int i;

		if (mg.count != n || mg.prompts < 0 || mg.argc < 1 ||
		    strcmp(mg.argv[0], mg.command) != 0 || strlen(mg.weights) != 64)
			abort();
		for (int k = 0; k < mg.count; k++)
			if (mg.parts[k].index != k + 1)
				abort();
		for (i = 0; i < mg.prompts; i++) {
			cJSON *row, *f;

			before = reported;
			if ((row = cli_merge_row(&mg, i)) == NULL) {
				if (reported == before)
					abort();
				break;
			}
			cJSON_ArrayForEach(f, row) {
				int v;

				if (cJSON_IsString(f))
					check_field(&mg, i, row, f);
				before = reported;
				if (cli_json_get_int(&mg, i, row, f->string, &v) != 0 &&
				    reported == before)
					abort();
			}
			cJSON_Delete(row);
		}
		if (i == mg.prompts) {
			before = reported;
			if (cli_merge_end(&mg) != 0 && reported == before)
				abort();
			(void)cli_merge_work_sum(&mg, "seconds");
		}
		cli_merge_clear(&mg);
	} else
		cli_merge_clear(&mg);
	for (int k = 0; k < n; k++) {
		unlink(paths[k]);
		free(paths[k]);
	}
	return 0;
}
