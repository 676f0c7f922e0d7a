/* main.c - factlens entry point and subcommand table. */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "base/util.h"

static const struct {
	const char	*name;
	int		(*fn)(int, char **);
	const char	*usage;
} commands[] = {
	{ "tokenize", cmd_tokenize, "tokenize [--model DIR] [--json] "
	    "[--weights convert|stored|copy] [--strict] [TEXT]" },
	{ "run", cmd_run, "run [--model DIR] --prompt TEXT [--answer TEXT] "
	    "[--subject TEXT] [--task FILE [--layer L]] [--top K] [--lens] "
	    "[--lens-top K] [--json] [--patterns] [--dump-logits FILE] [--final-mask] "
	    "[--mask-heads LIST] [--intercept] [--mover-threshold X] [--threads N] "
	    "[--weights convert|stored|copy] [--strict]" },
	{ "eval", cmd_eval, "eval [--model DIR] --task FILE [--shots K] "
	    "[--templates SET] [--split subject|template] [--seed N] [--no-resid] "
	    "[--ridge X] [--mask-heads LIST] [--batch N] [--json] [--threads N] "
	    "[--weights convert|stored|copy] [--strict]" },
	{ "heads", cmd_heads, "heads [--model DIR] --task FILE [--templates SET] "
	    "[--seed N] [--receiver LAYER] [--batch N] [--top K] [--json] [--threads N] "
	    "[--weights convert|stored|copy] [--strict]" },
	{ "decompose", cmd_decompose, "decompose [--model DIR] --task FILE [--layer L] "
	    "[--templates SET] [--no-resid] [--ridge X] [--top K] [--prompt TEXT "
	    "[--subject TEXT]] [--batch N] [--json] [--threads N] "
	    "[--weights convert|stored|copy] [--strict]" },
	{ "bench", cmd_bench, "bench [--model DIR] [--tokens N] [--reps N] "
	    "[--threads N] [--idle MS] [--torch] [--json] "
	    "[--weights convert|stored|copy] [--strict]" },
	{ "explore", cmd_explore, "[explore] [--model DIR] [--theme NAME] "
	    "[--batch FILE | -c \"CMD; CMD\"] [--size WxH] "
	    "[--colors mono|8|16|256|truecolor] [--ascii] [--no-rc] [--threads N] "
	    "[--weights convert|stored|copy] [--strict]" },
};

const char *
cli_usage(const char *cmd)
{
	static char buf[512];

	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(cmd, commands[i].name) == 0) {
			snprintf(buf, sizeof buf, "usage: factlens %s", commands[i].usage);
			return buf;
		}
	return "usage: factlens COMMAND [OPTIONS]";
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: factlens COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  factlens %s\n", commands[i].usage);
	fprintf(f, "\nWithout a command (or with options only), factlens opens the "
	    "explorer\non the bundled demo model. See factlens(1).\n");
}

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
		if (argc == 3 && strcmp(argv[1], "help") == 0 &&
		    strcmp(cli_usage(argv[2]), cli_usage("")) != 0) {
			printf("%s\n\nSee factlens(1) for every option.\n",
			    cli_usage(argv[2]));
			return 0;
		}
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("factlens %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		/* "factlens CMD --help": the command's usage, on stdout */
		if (argc == 3 && (strcmp(argv[2], "--help") == 0 ||
		    strcmp(argv[2], "-h") == 0)) {
			printf("%s\n\nSee factlens(1) for every option.\n",
			    cli_usage(commands[i].name));
			return 0;
		}
		return commands[i].fn(argc - 1, argv + 1);
	}
	cli_fail(2, "unknown command '%s'", argv[1]);
	usage(stderr);
	return 2;
}
