/*
 * doc.c - the man page's KEYS, EXPLORER COMMANDS and THEMES sections,
 * generated from the key map, the command table and the role table; a test
 * (tests/explore-man.sh) checks man/factlens.1 against them.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "ui.h"

void
ui_roff(FILE *f, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", f);
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else
			fputc(*s, f);
	}
}

static void
fragment_keys(FILE *f, bool flow)
{
	ui_keymap k;

	if (flow)
		keymap_default_flow(&k);
	else
		keymap_default(&k);
	for (int i = 0; i < k.n; i++) {
		bool seen = false;
		char kb[32];

		for (int j = 0; j < i && !seen; j++)
			seen = strcmp(k.b[j].command, k.b[i].command) == 0;
		if (seen)
			continue;
		fputs(".TP\n.B \"", f);
		for (int j = i, n = 0; j < k.n; j++) {
			if (strcmp(k.b[j].command, k.b[i].command) != 0)
				continue;
			if (n++ > 0)
				fputs(", ", f);
			ui_roff(f, ui_key_name(k.b[j].key, kb, sizeof kb));
		}
		fputs("\"\n", f);
		{
			const char *what = NULL;

			for (int j = i; j < k.n && what == NULL; j++)
				if (strcmp(k.b[j].command, k.b[i].command) == 0)
					what = k.b[j].what;
			if (what != NULL) {
				ui_roff(f, what);
				fputs(": ", f);
			}
		}
		fputs("\\fB", f);
		ui_roff(f, k.b[i].command);
		fputs("\\fR\n", f);
	}
	keymap_clear(&k);
}

static void
fragment_commands(FILE *f)
{
	for (int i = 0; i < ui_n_cmds; i++) {
		const ui_cmd *c = &ui_cmds[i];

		fputs(".TP\n\\fB", f);
		ui_roff(f, c->name);
		fputs("\\fR", f);
		if (c->args[0] != '\0') {
			fputs(" \\fI", f);
			ui_roff(f, c->args);
			fputs("\\fR", f);
		}
		fputc('\n', f);
		ui_roff(f, c->help);
		if (c->alias != NULL) {
			fputs(" (alias \\fB", f);
			ui_roff(f, c->alias);
			fputs("\\fR)", f);
		}
		fputs(".\n", f);
	}
}

static void
fragment_roles(FILE *f)
{
	for (int i = 0; i < UI_ROLE_COUNT; i++) {
		fputs(".TP\n.B ", f);
		ui_roff(f, role_name((ui_role)i));
		fputc('\n', f);
		ui_roff(f, role_what((ui_role)i));
		fputc('\n', f);
	}
}

int
ui_man_fragment(const char *what, FILE *f)
{
	if (strcmp(what, "keys") == 0)
		fragment_keys(f, false);
	else if (strcmp(what, "flowkeys") == 0)
		fragment_keys(f, true);
	else if (strcmp(what, "commands") == 0)
		fragment_commands(f);
	else if (strcmp(what, "roles") == 0)
		fragment_roles(f);
	else
		return -1;
	return 0;
}
