/* cmd_explore.c - factlens with no subcommand (or `factlens explore`): the
 * interactive explorer, or its headless batch mode. */
#include "autoconfig.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "engine/pool.h"
#include "ui/theme.h"
#include "ui/ui.h"

static int
parse_size(const char *s, int *w, int *h)
{
	char *end;
	long a = strtol(s, &end, 10), b;

	if (end == s || (*end != 'x' && *end != 'X'))
		return -1;
	b = strtol(end + 1, &end, 10);
	if (*end != '\0' || a < 1 || a > 1000 || b < 1 || b > 1000)
		return -1;
	*w = (int)a;
	*h = (int)b;
	return 0;
}

int
cmd_explore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "theme", required_argument, NULL, 'T' },
		{ "batch", required_argument, NULL, 'b' },
		{ "size", required_argument, NULL, 's' },
		{ "colors", required_argument, NULL, 'C' },
		{ "ascii", no_argument, NULL, 'a' },
		{ "no-rc", no_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "man-fragment", required_argument, NULL, 'M' },
		CLI_WEIGHTS_OPTION,
		{ NULL, 0, NULL, 0 }
	};
	ui_options o;
	int c;
	bool model_given = false;
	int threads = 0;

	memset(&o, 0, sizeof o);
	o.width = 100;
	o.height = 30;
	o.depth = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:c:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': o.model_dir = optarg; model_given = true; break;
		case 'T': o.theme = optarg; break;
		case 'b': o.batch_file = optarg; break;
		case 'c': o.commands = optarg; break;
		case 's':
			if (parse_size(optarg, &o.width, &o.height) != 0)
				return cli_fail(2, "--size takes WIDTHxHEIGHT (e.g. 100x30), "
				    "not '%s'", optarg);
			break;
		case 'C':
			if ((o.depth = depth_parse(optarg)) < 0)
				return cli_fail(2, "--colors takes mono, 8, 16, 256 or "
				    "truecolor, not '%s'", optarg);
			break;
		case 'a': o.ascii = true; break;
		case 'n': o.no_rc = true; break;
		case 't':
			if (cli_int("--threads", optarg, 1, 256, &threads) != 0)
				return 2;
			break;
		case 'W':
			if (cli_weights_opt(optarg))
				return 2;
			break;
		case 'M':
			if (ui_man_fragment(optarg, stdout) != 0)
				return cli_fail(2, "--man-fragment takes keys, commands or "
				    "roles, not '%s'", optarg);
			return 0;
		default:
			return cli_fail(2, "%s", cli_usage("explore"));
		}
	}
	if (optind < argc)
		return cli_fail(2, "unexpected argument '%s' (%s)", argv[optind],
		    cli_usage("explore"));
	if (o.batch_file != NULL && o.commands != NULL)
		return cli_fail(2, "--batch and -c cannot be used together");
	if (!model_given) {
		/* The bundled demo model, when it is there. */
		const char *dir = fl_default_model();
		char *cfg = fl_path_join(dir, "config.json");

		o.model_dir = fl_file_exists(cfg) ? dir : NULL;
		if (o.model_dir == NULL && getenv("FACTLENS_MODEL") != NULL)
			o.model_dir = dir;
		free(cfg);
	}
	o.model_opts = *cli_model_opts();
	kern_set_threads(threads);	/* 0: every core */
	if (o.batch_file != NULL || o.commands != NULL)
		return ui_batch_run(&o);
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
		return cli_fail(2, "the explorer needs a terminal; for scripts use "
		    "--batch FILE or -c \"CMD; CMD\"");
	return ui_explore_run(&o);
}
