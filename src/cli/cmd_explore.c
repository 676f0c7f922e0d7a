/* cmd_explore.c - factlens with no subcommand (or `factlens explore`): the
 * interactive explorer, or its headless mode (--script FILE, -c). */
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

const cli_opt cmd_explore_opts[] = {
	CLI_SHARED_MODEL,
	{ "theme", 'T', "NAME", 0, CLI_GROUP_OWN,
	  "a theme by name (see THEMES) or a theme file's path" },
	{ "script", 'S', "FILE", 0, CLI_GROUP_OWN,
	  "run the explorer commands in FILE (one or more per line, separated by "
	  "';'; '#' starts a comment; - is standard input) without a terminal, and "
	  "print the screen as text at each render and at the end; the first "
	  "failing command stops the run with status 1 and a message naming the "
	  "file and line" },
	{ "replay", 'R', "FILE", CLI_OPT_OR, CLI_GROUP_OWN,
	  "the same for a session written by :save, whose weights-sha256 line must "
	  "match the loaded model's (a file that records other weights is refused, "
	  "as --script refuses it)" },
	{ NULL, 'c', "\"CMD; CMD\"", CLI_OPT_SHORT | CLI_OPT_OR, CLI_GROUP_OWN,
	  "the same for commands given on the command line" },
	{ "size", 's', "WxH", 0, CLI_GROUP_OWN,
	  "the screen size of a --script or -c render (default 100x30)" },
	{ "colors", 'C', "mono|8|16|256|truecolor", 0, CLI_GROUP_OWN,
	  "force a colour depth instead of the terminal's (truecolor needs a "
	  "direct-colour terminfo entry such as xterm-direct)" },
	{ "ascii", 'a', NULL, 0, CLI_GROUP_OWN,
	  "draw with ASCII only (the default when the locale is not UTF-8)" },
	{ "no-rc", 'n', NULL, 0, CLI_GROUP_OWN, "do not read the rc file" },
	CLI_SHARED_THREADS,
	CLI_SHARED_WEIGHTS,
	CLI_SHARED_STRICT,
	{ "batch", 'b', "FILE", CLI_OPT_NO_USAGE, CLI_GROUP_OWN,
	  "the old name of --script, deprecated (the other commands' --batch N is "
	  "a number of prompts)" },
	{ "man-fragment", 'M', "synopsis|options|keys|flowkeys|commands|roles",
	  CLI_OPT_NO_USAGE, CLI_GROUP_OWN,
	  "print a generated part of factlens(1) (for maintainers)" },
	CLI_OPT_END
};

int
cmd_explore(int argc, char **argv)
{
	ui_options o;
	int c;
	int threads = 0;
	cli_shared sh = { .dir = &o.model_dir, .threads = &threads };

	memset(&o, 0, sizeof o);
	o.width = 100;
	o.height = 30;
	o.depth = -1;
	optind = 1;
	while ((c = cli_getopt(argc, argv, cmd_explore_opts, &sh)) != -1) {
		switch (c) {
		case 'T': o.theme = optarg; break;
		case 'b':
			cli_fail(0, "--batch FILE is deprecated: use --script FILE");
			/* FALLTHROUGH */
		case 'S': o.script_file = optarg; break;
		case 'R': o.script_file = optarg; o.replay = true; break;
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
		case 'M':
			if (cli_man_fragment(optarg, stdout) != 0)
				return cli_fail(2, "--man-fragment takes synopsis, options, "
				    "keys, flowkeys, commands or roles, not '%s'", optarg);
			return 0;
		case CLI_GETOPT_BAD:
			return 2;
		default:
			return cli_fail(2, "%s", cli_usage("explore"));
		}
	}
	if (optind < argc)
		return cli_fail(2, "unexpected argument '%s' (%s)", argv[optind],
		    cli_usage("explore"));
	if (o.script_file != NULL && o.commands != NULL)
		return cli_fail(2, "--script (or --replay) and -c cannot be used together");
	if (o.model_dir == NULL) {
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
	if (o.script_file != NULL || o.commands != NULL)
		return ui_batch_run(&o);
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
		return cli_fail(2, "the explorer needs a terminal; for scripts use "
		    "--script FILE or -c \"CMD; CMD\"");
	return ui_explore_run(&o);
}
