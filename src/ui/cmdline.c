/*
 * cmdline.c - the command language's text: a line split into commands at
 * ';' and into words (quotes and escapes), each command looked up in the
 * table (commands.c) and run, and completion of command names and their
 * arguments. The ':' line, the rc file, key bindings and scripts all come
 * through here. See ui.h.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/paths.h"
#include "base/util.h"
#include "ui.h"

/* ---- parsing ------------------------------------------------------ */

int
cmd_split_words(const char *s, char ***argvp, char **cause)
{
	char **argv = NULL, *w = xmalloc(strlen(s) + 1);
	int argc = 0;

	for (;;) {
		size_t n = 0;
		bool any = false;

		while (isspace((unsigned char)*s))
			s++;
		if (*s == '\0')
			break;
		while (*s != '\0' && !isspace((unsigned char)*s)) {
			/* A quote opens only at the start of a word: inside one it
			 * is a letter (d'Ivoire, France's). */
			if (*s == '"' && !any) {
				for (s++; *s != '"'; s++) {
					if (*s == '\0')
						goto unterminated;
					if (*s == '\\' && s[1] != '\0')
						s++;
					w[n++] = *s;
				}
				s++;
			} else if (*s == '\'' && !any) {
				for (s++; *s != '\''; s++) {
					if (*s == '\0')
						goto unterminated;
					w[n++] = *s;
				}
				s++;
			} else {
				if (*s == '\\' && s[1] != '\0')
					s++;
				w[n++] = *s++;
			}
			any = true;
		}
		if (!any)
			break;
		argv = xreallocarray(argv, (size_t)argc + 2, sizeof *argv);
		argv[argc++] = xstrndup(w, n);
		argv[argc] = NULL;
	}
	free(w);
	if (argv == NULL) {
		argv = xcalloc(1, sizeof *argv);
	}
	*argvp = argv;
	return argc;
unterminated:
	free(w);
	argv = argv != NULL ? argv : xcalloc(1, sizeof *argv);
	cmd_free_words(argv);
	return fl_error(cause, "unterminated quote");
}

void
cmd_free_words(char **argv)
{
	if (argv == NULL)
		return;
	for (char **p = argv; *p != NULL; p++)
		free(*p);
	free(argv);
}

static int
cmd_run_one(ui_ctx *c, const char *text, char **cause)
{
	char **argv;
	int argc = cmd_split_words(text, &argv, cause), r;
	const ui_cmd *cmd;

	if (argc < 0)
		return -1;
	if (argc == 0) {
		cmd_free_words(argv);
		return 0;
	}
	if ((cmd = cmd_find(argv[0])) == NULL) {
		r = fl_error(cause, "unknown command '%s' (:help lists them)", argv[0]);
		cmd_free_words(argv);
		return r;
	}
	if (cmd->max_args < 0 && argc > 2) {
		/* The rest of the line is one text, as typed: its spaces and
		 * quotes kept, so that :prompt gives the tokens run --prompt
		 * gives for the same text. (One quoted word is unquoted above.) */
		const char *rest = text;

		while (isspace((unsigned char)*rest))
			rest++;
		while (*rest != '\0' && !isspace((unsigned char)*rest))
			rest++;
		while (isspace((unsigned char)*rest))
			rest++;
		for (int i = 1; i < argc; i++) {
			free(argv[i]);
			argv[i] = NULL;
		}
		argv[1] = xstrdup(rest);
		argc = 2;
	}
	if (argc - 1 < cmd->min_args || (cmd->max_args >= 0 && argc - 1 > cmd->max_args)) {
		r = fl_error(cause, "usage: %s %s", cmd->name, cmd->args);
		cmd_free_words(argv);
		return r;
	}
	/* An overlay (:eval's table) stays until the next command but render. */
	if (c->overlay != NULL && strcmp(cmd->name, "render") != 0 &&
	    strcmp(cmd->name, "redraw") != 0) {
		free(c->overlay);
		free(c->overlay_title);
		c->overlay = c->overlay_title = NULL;
	}
	/* What :plot draws: :eval's table stays the view through the ':' that
	 * opens the command line (and render), up to the next command. */
	if (strcmp(cmd->name, "plot") != 0 && strcmp(cmd->name, "render") != 0 &&
	    strcmp(cmd->name, "redraw") != 0 && strcmp(cmd->name, "command-prompt") != 0)
		c->eval_view = false;
	r = cmd->fn(c, argc, argv, cause);
	if (strcmp(cmd->name, "plot") == 0)
		c->eval_view = false;
	cmd_free_words(argv);
	return r;
}

int
cmd_run_line(ui_ctx *c, const char *line, char **cause)
{
	size_t n = strlen(line), start = 0;
	char quote = 0;
	int flags = 0;

	c->cancelled = false;
	for (size_t i = 0; i <= n; i++) {
		char ch = line[i];

		if (quote != 0 && ch != '\0') {
			if (ch == '\\' && quote == '"' && i + 1 < n)
				i++;
			else if (ch == quote)
				quote = 0;
			continue;
		}
		/* as in cmd_split_words: a quote opens only at a word's start */
		if ((ch == '"' || ch == '\'') && (i == start || isspace((unsigned char)line[i - 1]))) {
			quote = ch;
			continue;
		}
		if (ch == '\\' && i + 1 < n) {
			i++;
			continue;
		}
		if (ch == ';' || ch == '\0') {
			char *one = xstrndup(line + start, i - start);
			int r = cmd_run_one(c, one, cause);

			free(one);
			/* Each command sees the results of the one before it. */
			if (r >= 0 && c->apply != NULL)
				r = c->apply(c, r, cause);
			if (r < 0)
				return -1;
			flags |= r;
			if (c->cancelled)
				break;
			start = i + 1;
		}
	}
	return flags;
}

/* ---- completion --------------------------------------------------- */

typedef struct {
	char	**v;
	int	  n;
} strvec;

static void
sv_add(strvec *sv, const char *prefix, const char *cand)
{
	if (strncmp(cand, prefix, strlen(prefix)) != 0)
		return;
	for (int i = 0; i < sv->n; i++)
		if (strcmp(sv->v[i], cand) == 0)
			return;
	sv->v = xreallocarray(sv->v, (size_t)sv->n + 2, sizeof *sv->v);
	sv->v[sv->n++] = xstrdup(cand);
	sv->v[sv->n] = NULL;
}

char **
cmd_complete(ui_ctx *c, char **words, int index, const char *text)
{
	strvec sv = { NULL, 0 };
	const ui_cmd *cmd;

	if (index == 0) {
		for (int i = 0; i < ui_n_cmds; i++)
			sv_add(&sv, text, ui_cmds[i].name);
		return sv.v;
	}
	if (index != 1 || (cmd = cmd_find(words[0])) == NULL)
		return NULL;
	switch (cmd->arg) {
	case ARG_TOGGLE:
		sv_add(&sv, text, "on");
		sv_add(&sv, text, "off");
		sv_add(&sv, text, "toggle");
		break;
	case ARG_COMPARE:
		for (int i = COMPARE_MASK; i <= COMPARE_INTERCEPT; i++)
			sv_add(&sv, text, compare_name((ui_compare)i));
		sv_add(&sv, text, "off");
		sv_add(&sv, text, "toggle");
		break;
	case ARG_METRIC:
		for (int i = 0; i < METRIC_COUNT; i++)
			sv_add(&sv, text, metric_name((ui_metric)i));
		sv_add(&sv, text, "next");
		sv_add(&sv, text, "prev");
		break;
	case ARG_THEME: {
		int n;
		char **names = theme_list(&n);

		for (int i = 0; i < n; i++)
			sv_add(&sv, text, names[i]);
		sv_add(&sv, text, "next");
		theme_list_free(names, n);
		break;
	}
	case ARG_TASK: {
		char **names = fl_task_names();

		for (char **n = names; *n != NULL; n++)
			sv_add(&sv, text, *n);
		fl_free_list(names);
		break;
	}
	case ARG_COMMAND:
		sv_add(&sv, text, "keys");
		for (int i = 0; i < ui_n_cmds; i++)
			sv_add(&sv, text, ui_cmds[i].name);
		break;
	case ARG_LAYER:
		sv_add(&sv, text, "first");
		sv_add(&sv, text, "last");
		sv_add(&sv, text, "+page");
		sv_add(&sv, text, "-page");
		break;
	case ARG_SUBJECT:
		sv_add(&sv, text, "auto");
		if (c->s->prompt != NULL) {
			/* The prompt's words. */
			const char *p = c->s->prompt;

			while (*p != '\0') {
				size_t n = 0;

				while (*p != '\0' && !isalnum((unsigned char)*p) &&
				    (unsigned char)*p < 0x80)
					p++;
				while (p[n] != '\0' && (isalnum((unsigned char)p[n]) ||
				    (unsigned char)p[n] >= 0x80))
					n++;
				if (n > 0) {
					char *w = xstrndup(p, n);

					sv_add(&sv, text, w);
					free(w);
				}
				p += n;
			}
		}
		break;
	case ARG_TRACE:
		for (int i = 0; i < TRACE_KIND_COUNT; i++)
			sv_add(&sv, text, trace_kind_name((fl_trace_kind)i));
		sv_add(&sv, text, "samples");
		sv_add(&sv, text, "seed");
		break;
	case ARG_BLOCK:
		for (int i = 0; i < KNOCK_BLOCK_COUNT; i++)
			sv_add(&sv, text, knock_block_name((fl_knock_block)i));
		break;
	case ARG_FLOW: {
		static const char *flow_words[] = { "off", "toggle", "view", "row", "col",
		    "kind", "window", "run" };

		for (size_t i = 0; i < sizeof flow_words / sizeof flow_words[0]; i++)
			sv_add(&sv, text, flow_words[i]);
		break;
	}
	case ARG_POSITION:
		sv_add(&sv, text, "first");
		sv_add(&sv, text, "last");
		break;
	case ARG_TEXT:
		if (strcmp(cmd->name, "answer") == 0)
			sv_add(&sv, text, "top");
		break;
	default:
		break;
	}
	return sv.v;
}
