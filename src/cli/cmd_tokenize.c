/* cmd_tokenize.c - factlens tokenize: prompt text to token ids. */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/report.h"
#include "cli.h"
#include "base/util.h"

/* Reads all of standard input, bytes as they are. */
static char *
read_stdin(size_t *len)
{
	size_t cap = 1 << 16, n = 0, got;
	char *buf = xmalloc(cap);

	while ((got = fread(buf + n, 1, cap - n, stdin)) > 0) {
		n += got;
		if (n == cap)
			buf = xrealloc(buf, cap *= 2);
	}
	*len = n;
	return buf;
}

const cli_opt cmd_tokenize_opts[] = {
	CLI_SHARED_MODEL,
	CLI_SHARED_JSON,
	CLI_SHARED_WEIGHTS,	/* accepted for scripts; no weights are read */
	{ NULL, 0, "TEXT", CLI_OPT_OPERAND, CLI_GROUP_OWN,
	  "the text to tokenize (default: all of standard input, its bytes as they "
	  "are)" },
	CLI_OPT_END
};

int
cmd_tokenize(int argc, char **argv)
{
	const char *dir = NULL;
	bool json = false;
	cli_shared sh = { .dir = &dir, .json = &json };
	fl_tokenizer *tok;
	char *text, *cause = NULL;
	size_t len;
	int *ids = NULL, n, c;

	optind = 1;
	/* Its options are all shared ones: cli_getopt returns no other. */
	if ((c = cli_getopt(argc, argv, cmd_tokenize_opts, &sh)) != -1)
		return c == CLI_GETOPT_BAD ? 2 : cli_fail(2, "%s", cli_usage("tokenize"));
	if (argc - optind > 1)
		return cli_fail(2, "tokenize takes one TEXT argument (quote it), or "
		    "reads standard input");
	if (dir == NULL)
		dir = fl_default_model();
	tok = tok_load_dir(dir, &cause);
	if (tok == NULL) {
		cli_fail(1, "%s", cause);
		free(cause);
		return 1;
	}
	if (optind < argc) {
		text = xstrdup(argv[optind]);
		len = strlen(text);
	} else
		text = read_stdin(&len);
	n = tok_encode(tok, text, len, &ids, &cause);
	if (n < 0) {
		cli_fail(1, "%s", cause);
		free(cause);
		free(text);
		tok_free(tok);
		return 1;
	}
	if (json) {
		cJSON *root = cJSON_CreateObject(), *jids, *jtoks;
		char *out;

		jids = cJSON_AddArrayToObject(root, "ids");
		jtoks = cJSON_AddArrayToObject(root, "tokens");
		for (int i = 0; i < n; i++) {
			cJSON_AddItemToArray(jids, cJSON_CreateNumber(ids[i]));
			cJSON_AddItemToArray(jtoks, report_token(tok, ids[i], NULL, 0));
		}
		out = cJSON_PrintUnformatted(root);
		puts(out);
		free(out);
		cJSON_Delete(root);
	} else {
		for (int i = 0; i < n; i++)
			printf(i ? " %d" : "%d", ids[i]);
		putchar('\n');
	}
	free(ids);
	free(text);
	tok_free(tok);
	return 0;
}
