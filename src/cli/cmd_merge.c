/* cmd_merge.c - factlens merge: the partials of a sharded eval, heads,
 * decompose, trace or atp --task, checked to be of one run and read in prompt
 * order, give what the command prints unsharded (shard.h). */
#include "autoconfig.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "shard.h"
#include "engine/st.h"

const cli_opt cmd_merge_opts[] = {
	{ NULL, 0, "PART...", CLI_OPT_OPERAND | CLI_OPT_REQUIRED, CLI_GROUP_OWN,
	  "the partials written by --shard I/N, every shard of the run once, in "
	  "any order" },
	CLI_OPT_END
};

/* Here, not in shard.c, so that the partials' reader links without the
 * model loader (fuzz/fuzz_partial.c). */
fl_model *
cli_merge_model(const cli_merge *mg, const char *dir)
{
	fl_model *m = cli_load_model(dir);
	char hex[65];

	if (m == NULL)
		return NULL;
	st_sha256(m->weights, hex);
	if (strcmp(hex, mg->weights) != 0) {
		cli_fail(1, "%s: weights SHA-256 %s, but the partials (%s, ...) were "
		    "run with %s", dir, hex, mg->parts[0].path, mg->weights);
		model_free(m);
		return NULL;
	}
	return m;
}

static const struct {
	const char	*command;
	int		(*merge)(int, char **, cli_merge *);
} mergers[] = {
	{ "eval", cmd_eval_merge },
	{ "heads", cmd_heads_merge },
	{ "decompose", cmd_decompose_merge },
	{ "trace", cmd_trace_merge },
	{ "atp", cmd_atp_merge },
};

int
cmd_merge(int argc, char **argv)
{
	cli_merge mg;
	int c, rc;

	optind = 1;
	if ((c = cli_getopt(argc, argv, cmd_merge_opts, NULL)) != -1)
		return c == CLI_GETOPT_BAD ? 2 : cli_fail(2, "%s", cli_usage("merge"));
	if (optind >= argc)
		return cli_fail(2, "merge: no partials given (%s)", cli_usage("merge"));
	if ((rc = cli_merge_open(&mg, argv + optind, argc - optind)) != 0)
		return rc;
	rc = -1;
	for (size_t i = 0; i < sizeof mergers / sizeof mergers[0]; i++)
		if (strcmp(mg.command, mergers[i].command) == 0)
			rc = mergers[i].merge(mg.argc, mg.argv, &mg);
	if (rc == -1)
		rc = cli_fail(1, "%s: a partial of '%s', which factlens merge does not "
		    "know (eval, heads, decompose, trace, atp)", mg.parts[0].path, mg.command);
	cli_merge_clear(&mg);
	return rc;
}
