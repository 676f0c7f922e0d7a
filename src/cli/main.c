/* main.c - factlens entry point and subcommand table. */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/util.h"

/* The subcommands, in the order --help and the man page's SYNOPSIS list
 * them; each one's options are its cmd_*_opts table. */
const cli_command cli_commands[] = {
	{ "explore", cmd_explore, cmd_explore_opts, true },
	{ "tokenize", cmd_tokenize, cmd_tokenize_opts, false },
	{ "run", cmd_run, cmd_run_opts, false },
	{ "eval", cmd_eval, cmd_eval_opts, false },
	{ "heads", cmd_heads, cmd_heads_opts, false },
	{ "atp", cmd_atp, cmd_atp_opts, false },
	{ "decompose", cmd_decompose, cmd_decompose_opts, false },
	{ "trace", cmd_trace, cmd_trace_opts, false },
	{ "knockout", cmd_knockout, cmd_knockout_opts, false },
	{ "patch", cmd_patch, cmd_patch_opts, false },
	{ "merge", cmd_merge, cmd_merge_opts, false },
	{ "bench", cmd_bench, cmd_bench_opts, false },
};
const int cli_n_commands = sizeof cli_commands / sizeof cli_commands[0];

int
cli_fail(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("factlens: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

static fl_model_opts model_opts;

int
cli_weights_opt(const char *arg)
{
	int mode;

	if (arg == NULL) {	/* --strict */
		model_opts.strict = true;
		return 0;
	}
	if ((mode = model_weights_parse(arg)) < 0)
		return cli_fail(2, "--weights takes convert, stored or copy, not '%s'", arg);
	model_opts.weights = (fl_weights_mode)mode;
	return 0;
}

const fl_model_opts *
cli_model_opts(void)
{
	return &model_opts;
}

fl_model *
cli_load_model(const char *dir)
{
	char *cause = NULL;
	fl_model *m;

	fl_sigbus_catch();	/* the weights are read from the file as we go */
	m = model_load(dir, &model_opts, &cause);

	if (m == NULL) {
		cli_fail(1, "%s", cause);
		free(cause);
	} else if (m->nonfinite != NULL)
		cli_fail(0, "warning: %s", m->nonfinite);
	return m;
}

int
cli_int(const char *opt, const char *arg, int lo, int hi, int *out)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || v < lo || v > hi)
		return cli_fail(2, "%s takes an integer from %d to %d, not '%s'", opt,
		    lo, hi, arg);
	*out = (int)v;
	return 0;
}

char *
cli_token_repr(const fl_tokenizer *tok, int id)
{
	size_t n, i = 0, o = 0;
	const char *b = tok_token_bytes(tok, id, &n);
	char *s;

	if (b == NULL)
		return xasprintf("<%d>", id);
	s = xmalloc(4 * n + 3);
	s[o++] = '"';
	while (i < n) {
		const unsigned char *c = (const unsigned char *)b + i;
		uint32_t cp;
		size_t u = fl_utf8_seq(c, n - i, &cp);

		if (*c == '"' || *c == '\\') {
			s[o++] = '\\';
			s[o++] = (char)*c;
		} else if (*c == '\n') {
			s[o++] = '\\';
			s[o++] = 'n';
		} else if (u == 0 || *c < 0x20 || *c == 0x7f)
			o += (size_t)sprintf(s + o, "\\x%02x", *c);
		else {
			memcpy(s + o, c, u);
			o += u;
			i += u;
			continue;
		}
		i++;
	}
	s[o++] = '"';
	s[o] = '\0';
	return s;
}

int
main(int argc, char **argv)
{
	/* No command, or options only: the explorer. */
	if (argc < 2 || (argv[1][0] == '-' && strcmp(argv[1], "--help") != 0 &&
	    strcmp(argv[1], "-h") != 0 && strcmp(argv[1], "--version") != 0))
		return cmd_explore(argc, argv);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		/* "factlens help CMD" is "factlens CMD --help" */
		cli_help(argc == 3 && strcmp(argv[1], "help") == 0 ? argv[2] : NULL,
		    stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("factlens %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (int i = 0; i < cli_n_commands; i++) {
		if (strcmp(argv[1], cli_commands[i].name) != 0)
			continue;
		/* "factlens CMD --help": the command's usage, on stdout */
		if (argc == 3 && (strcmp(argv[2], "--help") == 0 ||
		    strcmp(argv[2], "-h") == 0)) {
			cli_help(cli_commands[i].name, stdout);
			return 0;
		}
		return cli_commands[i].fn(argc - 1, argv + 1);
	}
	cli_fail(2, "unknown command '%s'", argv[1]);
	cli_help(NULL, stderr);
	return 2;
}
