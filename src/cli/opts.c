/* opts.c - the getopt arrays, usage lines, --help and the man page's
 * SYNOPSIS and OPTIONS, all made from the commands' option tables. See
 * opts.h. */
#include "autoconfig.h"

#include <ctype.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "plot/plot.h"
#include "cli.h"
#include "shard.h"
#include "ui/ui.h"

#define CLI_MAX_OPTS	40
#define HELP_INDENT	26
#define HELP_WIDTH	79

static const char *group_title[CLI_GROUP_COUNT] = {
	NULL, "model options", "task options", "fit options", "output options",
	"sharding options",
};

static bool
opt_end(const cli_opt *o)
{
	return o->help == NULL;
}

static bool
opt_is_option(const cli_opt *o)
{
	return !(o->flags & CLI_OPT_OPERAND);
}

static void
table_bug(const char *what, const cli_opt *o)
{
	fprintf(stderr, "factlens: bug in an option table: %s (--%s, val %d)\n",
	    what, o->name != NULL ? o->name : "", o->val);
	abort();
}

/* A table getopt can take: at most CLI_MAX_OPTS options, each with a name
 * or a short letter, no name or val twice; a shared option is a named one. */
static void
table_check(const cli_opt *opts)
{
	int n = 0;

	for (const cli_opt *o = opts; !opt_end(o); o++) {
		if (!opt_is_option(o))
			continue;
		if (++n > CLI_MAX_OPTS)
			table_bug("more than CLI_MAX_OPTS options", o);
		if (o->name == NULL && !(o->flags & CLI_OPT_SHORT))
			table_bug("neither a name nor a short letter", o);
		if ((o->flags & CLI_OPT_SHORT) && (o->val > 127 || !isalnum(o->val)))
			table_bug("a short option that is not a letter", o);
		if (o->group != CLI_GROUP_OWN && o->name == NULL)
			table_bug("a shared option without a name", o);
		for (const cli_opt *p = opts; p < o; p++)
			if (opt_is_option(p) && (p->val == o->val || (p->name != NULL &&
			    o->name != NULL && strcmp(p->name, o->name) == 0)))
				table_bug("two options with one name or val", o);
	}
}

/* ---- getopt ------------------------------------------------------------ */

static struct option long_opts[CLI_MAX_OPTS + 1];
static char short_opts[2 * CLI_MAX_OPTS + 1];
static const cli_opt *built;	/* the table the arrays were made from */

static void
getopt_build(const cli_opt *opts)
{
	int nl = 0, ns = 0;

	table_check(opts);
	for (const cli_opt *o = opts; !opt_end(o); o++) {
		if (!opt_is_option(o))
			continue;
		if (o->name != NULL)
			long_opts[nl++] = (struct option){ o->name,
			    o->arg != NULL ? required_argument : no_argument, NULL, o->val };
		if (o->flags & CLI_OPT_SHORT) {
			short_opts[ns++] = (char)o->val;
			if (o->arg != NULL)
				short_opts[ns++] = ':';
		}
	}
	long_opts[nl] = (struct option){ NULL, 0, NULL, 0 };
	short_opts[ns] = '\0';
	built = opts;
}

/* Takes c if it is a shared option the command takes: 0 when taken, 2 on
 * a bad value (reported), -1 when c is not one. */
static int
shared_opt(const cli_shared *sh, int c, const char *arg)
{
	if (c == CLI_VAL_WEIGHTS)
		return cli_weights_opt(arg);
	if (c == CLI_VAL_STRICT)
		return cli_weights_opt(NULL);
	if (sh == NULL)
		return -1;
	if (c == 'm' && sh->dir != NULL)
		*sh->dir = arg;
	else if (c == CLI_VAL_TASK && sh->task != NULL)
		*sh->task = arg;
	else if (c == CLI_VAL_TEMPLATES && sh->set != NULL) {
		if ((*sh->set = task_set_parse(arg)) < 0)
			return cli_fail(2, "--templates takes main, paraphrase or "
			    "heldout, not '%s'", arg);
	} else if (c == CLI_VAL_SHOTS && sh->shots != NULL)
		return cli_int("--shots", arg, 0, 64, sh->shots) ? 2 : 0;
	else if (c == CLI_VAL_SINGLE_TOKEN && sh->single_token != NULL)
		*sh->single_token = true;
	else if (c == CLI_VAL_COUNTERFACTUAL && sh->counterfactual != NULL)
		*sh->counterfactual = true;
	else if (c == CLI_VAL_BATCH && sh->batch != NULL)
		return cli_int("--batch", arg, 1, 4096, sh->batch) ? 2 : 0;
	else if (c == 'j' && sh->json != NULL)
		*sh->json = true;
	else if (c == 't' && sh->threads != NULL)
		return cli_int("--threads", arg, 1, 256, sh->threads) ? 2 : 0;
	else if (c == CLI_VAL_NO_RESID && sh->no_resid != NULL)
		*sh->no_resid = true;
	else if (c == CLI_VAL_RIDGE && sh->ridge != NULL)
		return cli_parse_double("--ridge", arg, 0, 1, sh->ridge) ? 2 : 0;
	else if (c == CLI_VAL_SHARD && sh->shard != NULL)
		return cli_shard_parse(arg, sh->shard);
	else if (c == CLI_VAL_OUT && sh->shard != NULL)
		sh->shard->out = arg;
	else if (c == CLI_VAL_PLOT && sh->plot != NULL) {
		char *cause = NULL;

		if (plot_check(arg, &cause) != 0) {
			cli_fail(2, "--plot %s", cause);
			free(cause);
			return 2;
		}
		*sh->plot = arg;
	}
	else
		return -1;
	return 0;
}

int
cli_getopt(int argc, char **argv, const cli_opt *opts, const cli_shared *sh)
{
	int c, rc;

	if (built != opts)
		getopt_build(opts);
	while ((c = getopt_long(argc, argv, short_opts, long_opts, NULL)) != -1) {
		if ((rc = shared_opt(sh, c, optarg)) < 0)
			return c;
		if (rc != 0)
			return CLI_GETOPT_BAD;
	}
	return -1;
}

/* ---- usage lines, as text or roff -------------------------------------- */

static const cli_command *
command_find(const char *name)
{
	for (int i = 0; i < cli_n_commands; i++)
		if (strcmp(cli_commands[i].name, name) == 0)
			return &cli_commands[i];
	return NULL;
}

/* s in bold (man) or as it is. */
static void
put_bold(FILE *f, const char *s, bool man)
{
	if (!man) {
		fputs(s, f);
		return;
	}
	fputs("\\fB", f);
	ui_roff(f, s);
	fputs("\\fR", f);
}

/* An option's argument: a placeholder in italics, choices in bold. */
static void
put_arg(FILE *f, const char *arg, bool man)
{
	if (!man)
		fputs(arg, f);
	else if (strchr(arg, '|') == NULL) {
		/* "CMD; CMD" holds together like one word */
		fputs("\\fI", f);
		for (const char *p = arg; ; p++) {
			size_t n = strcspn(p, " ");
			char w[64];

			snprintf(w, sizeof w, "%.*s", (int)n, p);
			ui_roff(f, w);
			if (p[n] == '\0')
				break;
			fputs("\\ ", f);
			p += n;
		}
		fputs("\\fR", f);
	} else
		for (const char *p = arg; ; ) {
			size_t n = strcspn(p, "|");
			char w[64];

			snprintf(w, sizeof w, "%.*s", (int)n, p);
			put_bold(f, w, true);
			if (p[n] == '\0')
				break;
			fputc('|', f);
			p += n + 1;
		}
}

/* "--name ARG", "-c ARG" or "ARG"; sep goes between the name and ARG. */
static void
put_opt(FILE *f, const cli_opt *o, bool man, const char *sep)
{
	char name[64];

	if (!opt_is_option(o)) {
		put_arg(f, o->arg, man);
		return;
	}
	if (o->name != NULL)
		snprintf(name, sizeof name, "--%s", o->name);
	else
		snprintf(name, sizeof name, "-%c", o->val);
	put_bold(f, name, man);
	if (o->arg != NULL) {
		fputs(sep, f);
		put_arg(f, o->arg, man);
	}
}

/* "factlens CMD [--opt ARG] ...": on one line, or as the man page's
 * SYNOPSIS lines, one option a line, the name and argument held together. */
static void
put_usage(FILE *f, const cli_command *c, bool man)
{
	const char *sep = man ? "\n\\%" : " ", *argsep = man ? "\\ " : " ";
	bool open = false;	/* the current option's bracket */

	if (man && c->name_optional)
		fprintf(f, ".B factlens\n[\\fB%s\\fR]", c->name);
	else if (man)
		fprintf(f, ".B factlens %s", c->name);
	else
		fprintf(f, c->name_optional ? "factlens [%s]" : "factlens %s", c->name);
	for (const cli_opt *o = c->opts; !opt_end(o); o++) {
		if (o->flags & CLI_OPT_NO_USAGE)
			continue;
		if (o->flags & CLI_OPT_NESTED) {
			fprintf(f, "%s[", sep);
			put_opt(f, o, man, argsep);
			fputc(']', f);
			continue;
		}
		if (o->flags & CLI_OPT_OR) {
			fprintf(f, "%s|%s", sep, sep);
			put_opt(f, o, man, argsep);
			continue;
		}
		if (open)
			fputc(']', f);
		fputs(sep, f);
		open = !(o->flags & CLI_OPT_REQUIRED);
		if (open)
			fputc('[', f);
		put_opt(f, o, man, argsep);
	}
	if (open)
		fputc(']', f);
	if (man)
		fputc('\n', f);
}

const char *
cli_usage(const char *cmd)
{
	static char buf[2048];
	const cli_command *c = command_find(cmd);
	FILE *f;

	if (c == NULL || (f = fmemopen(buf, sizeof buf, "w")) == NULL)
		return "usage: factlens COMMAND [OPTIONS]";
	fputs("usage: ", f);
	put_usage(f, c, false);
	fclose(f);
	return buf;
}

/* ---- --help ------------------------------------------------------------ */

/* "  -m, --model DIR", long options aligned after the short ones. */
static void
put_help_spec(FILE *f, const cli_opt *o, bool man)
{
	if (opt_is_option(o) && o->name != NULL && (o->flags & CLI_OPT_SHORT)) {
		char s[4] = { '-', (char)o->val, '\0', '\0' };

		put_bold(f, s, man);
		fputs(", ", f);
	} else if (!man && opt_is_option(o) && o->name != NULL)
		fputs("    ", f);
	put_opt(f, o, man, " ");
}

/* s from column col, wrapped at HELP_WIDTH with lines indented
 * HELP_INDENT. */
static void
put_wrapped(FILE *f, const char *s, int col)
{
	while (*s != '\0') {
		int n = (int)strcspn(s, " ");

		if (col > HELP_INDENT && col + 1 + n > HELP_WIDTH) {
			fprintf(f, "\n%*s", HELP_INDENT, "");
			col = HELP_INDENT;
		} else if (col > HELP_INDENT) {
			fputc(' ', f);
			col++;
		}
		fwrite(s, 1, (size_t)n, f);
		col += n;
		s += n;
		while (*s == ' ')
			s++;
	}
	fputc('\n', f);
}

static void
help_option(FILE *f, const cli_opt *o)
{
	char spec[128] = "";
	FILE *m = fmemopen(spec, sizeof spec, "w");
	int col;

	if (m != NULL) {
		put_help_spec(m, o, false);
		fclose(m);
	}
	col = fprintf(f, "  %s", spec);
	if (col + 2 > HELP_INDENT) {
		fputc('\n', f);
		col = 0;
	}
	fprintf(f, "%*s", HELP_INDENT - col, "");
	put_wrapped(f, o->help, HELP_INDENT);
}

void
cli_help(const char *cmd, FILE *f)
{
	const cli_command *c = cmd != NULL ? command_find(cmd) : NULL;

	if (c == NULL) {
		fprintf(f, "usage: factlens COMMAND [OPTIONS]\n\ncommands:\n");
		for (int i = 0; i < cli_n_commands; i++) {
			fputs("  ", f);
			put_usage(f, &cli_commands[i], false);
			fputc('\n', f);
		}
		fprintf(f, "\nWithout a command (or with options only), factlens opens "
		    "the explorer\non the bundled demo model. See factlens(1).\n");
		return;
	}
	fprintf(f, "%s\n", cli_usage(c->name));
	for (int g = 0; g < CLI_GROUP_COUNT; g++) {
		bool head = false;

		for (const cli_opt *o = c->opts; !opt_end(o); o++) {
			if ((int)o->group != g)
				continue;
			if (!head && g == CLI_GROUP_OWN)
				fprintf(f, "\n%s options:\n", c->name);
			else if (!head)
				fprintf(f, "\n%s:\n", group_title[g]);
			head = true;
			help_option(f, o);
		}
	}
	fprintf(f, "\nSee factlens(1).\n");
}

/* ---- the man page ------------------------------------------------------ */

/* One command a paragraph, hanging, unadjusted and unhyphenated (\\% on
 * each option) so that an option and its argument break as one word. */
static void
man_synopsis(FILE *f)
{
	fputs(".na\n.in +4n\n", f);
	for (int i = 0; i < cli_n_commands; i++) {
		fputs(".ti -4n\n", f);
		put_usage(f, &cli_commands[i], true);
	}
	fputs(".in -4n\n.ad\n", f);
}

/* The option of command c named like o (a shared option), or NULL. */
static const cli_opt *
shared_in(const cli_command *c, const cli_opt *o)
{
	for (const cli_opt *p = c->opts; !opt_end(p); p++)
		if (p->group == o->group && p->name != NULL && strcmp(p->name, o->name) == 0)
			return p;
	return NULL;
}

static void
man_option(FILE *f, const cli_opt *o)
{
	fputs(".TP\n", f);
	put_help_spec(f, o, true);
	fputc('\n', f);
	ui_roff(f, o->help);
	fputs(".\n", f);
}

/* A shared option once, first where the table has it, with the commands
 * that take it. */
static void
man_shared(FILE *f, int ci, const cli_opt *o)
{
	int n = 0, k = 0;

	for (int i = 0; i < ci; i++)
		if (shared_in(&cli_commands[i], o) != NULL)
			return;
	for (const cli_opt *p = cli_commands[ci].opts; p < o; p++)
		if (p->group == o->group && strcmp(p->name, o->name) == 0)
			return;
	man_option(f, o);
	for (int i = 0; i < cli_n_commands; i++)
		n += shared_in(&cli_commands[i], o) != NULL;
	if (n == cli_n_commands) {
		fputs("Every command takes it.\n", f);
		return;
	}
	for (int i = 0; i < cli_n_commands && n == cli_n_commands - 1; i++)
		if (shared_in(&cli_commands[i], o) == NULL) {
			fprintf(f, "Every command but \\fB%s\\fR takes it.\n",
			    cli_commands[i].name);
			return;
		}
	fputs("Taken by", f);
	for (int i = 0; i < cli_n_commands; i++)
		if (shared_in(&cli_commands[i], o) != NULL) {
			k++;
			fprintf(f, "%s\\fB%s\\fR", k == 1 ? " " : k == n ? " and " : ", ",
			    cli_commands[i].name);
		}
	fputs(".\n", f);
}

static void
man_options(FILE *f)
{
	for (int i = 0; i < cli_n_commands; i++)
		table_check(cli_commands[i].opts);
	for (int g = CLI_GROUP_OWN + 1; g < CLI_GROUP_COUNT; g++) {
		fprintf(f, ".SS \"%c%s\"\n", toupper((unsigned char)group_title[g][0]),
		    group_title[g] + 1);
		for (int i = 0; i < cli_n_commands; i++)
			for (const cli_opt *o = cli_commands[i].opts; !opt_end(o); o++)
				if ((int)o->group == g)
					man_shared(f, i, o);
	}
	for (int i = 0; i < cli_n_commands; i++) {
		fprintf(f, ".SS \"factlens %s\"\n", cli_commands[i].name);
		for (const cli_opt *o = cli_commands[i].opts; !opt_end(o); o++)
			if (o->group == CLI_GROUP_OWN)
				man_option(f, o);
	}
}

int
cli_man_fragment(const char *what, FILE *f)
{
	if (strcmp(what, "synopsis") == 0)
		man_synopsis(f);
	else if (strcmp(what, "options") == 0)
		man_options(f);
	else
		return ui_man_fragment(what, f);
	return 0;
}
