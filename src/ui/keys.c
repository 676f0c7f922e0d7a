/* keys.c - key names and the key map: every key runs a command string. */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "ui.h"

static const struct {
	const char	*name;
	uint32_t	 key;
} key_names[] = {
	{ "Up", UI_KEY_UP }, { "Down", UI_KEY_DOWN }, { "Left", UI_KEY_LEFT },
	{ "Right", UI_KEY_RIGHT }, { "PgUp", UI_KEY_PGUP }, { "PgDn", UI_KEY_PGDN },
	{ "Home", UI_KEY_HOME }, { "End", UI_KEY_END }, { "BTab", UI_KEY_BTAB },
	{ "DC", UI_KEY_DC }, { "BSpace", UI_KEY_BACKSPACE }, { "Enter", UI_KEY_ENTER },
	{ "Tab", UI_KEY_TAB }, { "Escape", UI_KEY_ESC }, { "Space", ' ' },
};

/* The default bindings, in the order :help and the man page show them. */
static const struct {
	const char	*key, *command, *what;
} defaults[] = {
	{ "Up", "layer -1", "the layer above" }, { "k", "layer -1", NULL },
	{ "Down", "layer +1", "the layer below" }, { "j", "layer +1", NULL },
	{ "PgUp", "layer -page", "a page of layers up" },
	{ "PgDn", "layer +page", "a page of layers down" },
	{ "Home", "layer first", "the first layer" }, { "g", "layer first", NULL },
	{ "End", "layer last", "the last layer" }, { "G", "layer last", NULL },
	{ "Left", "head -1", "the head to the left" }, { "h", "head -1", NULL },
	{ "Right", "head +1", "the head to the right" }, { "l", "head +1", NULL },
	{ "Tab", "metric next", "the next heads metric" },
	{ "BTab", "metric prev", "the previous heads metric" },
	{ "m", "mask toggle", "mask (a) on or off" },
	{ "i", "intercept toggle", "intercept (b) on or off" },
	{ "c", "compare toggle", "side by side on or off" },
	{ "e", "edit-prompt", "edit the prompt" },
	{ "Enter", "edit-prompt", NULL },
	{ "a", "command-prompt \"answer \"", "type the answer" },
	{ "s", "command-prompt \"subject \"", "type the subject word" },
	{ ":", "command-prompt", "type a command" },
	{ "t", "theme next", "the next theme" },
	{ "v", "pane toggle", "head or MLP pane" },
	{ "x", "exact", "atp: the selected head's exact patch" },
	{ "n", "neurons toggle", "the MLP pane at neuron level" },
	{ "N", "neurons sort next", "sort the neurons by the next effect" },
	{ "f", "flow toggle", "the flow pane: causal trace, knockout" },
	{ "[", "position -1", "the lens at the position before" },
	{ "]", "position +1", "the lens at the position after" },
	{ "?", "help keys", "this key map" }, { "F1", "help keys", NULL },
	{ "C-l", "redraw", "repaint the terminal" }, { "q", "quit", "quit" },
};

/* While the flow pane is shown these come first (the others still work). */
static const struct {
	const char	*key, *command, *what;
} flow_defaults[] = {
	{ "Up", "flow row -1", "the cell above" }, { "k", "flow row -1", NULL },
	{ "Down", "flow row +1", "the cell below" }, { "j", "flow row +1", NULL },
	{ "Left", "flow col -1", "the cell to the left" }, { "h", "flow col -1", NULL },
	{ "Right", "flow col +1", "the cell to the right" }, { "l", "flow col +1", NULL },
	{ "PgUp", "flow row -page", "a page of rows up" },
	{ "PgDn", "flow row +page", "a page of rows down" },
	{ "Home", "flow row first", "the first row" }, { "g", "flow row first", NULL },
	{ "End", "flow row last", "the last row" }, { "G", "flow row last", NULL },
	{ "Tab", "flow kind next", "the next kind (resid, mlp, attn) or block" },
	{ "BTab", "flow kind prev", "the previous kind or block" },
	{ "W", "flow window +1", "a layer more in the window" },
	{ "w", "flow window -1", "a layer less in the window" },
	{ "o", "flow view", "causal trace or knockout" },
	{ "Enter", "flow run", "the cell's restored run: next tokens, lens" },
	{ "Escape", "flow off", "close the flow pane" },
};

const char *
ui_key_name(uint32_t key, char *buf, size_t n)
{
	for (size_t i = 0; i < sizeof key_names / sizeof key_names[0]; i++)
		if (key_names[i].key == key) {
			snprintf(buf, n, "%s", key_names[i].name);
			return buf;
		}
	if (key >= UI_KEY_F1 && key <= UI_KEY_F12)
		snprintf(buf, n, "F%u", key - UI_KEY_F1 + 1);
	else if (key < 32)
		snprintf(buf, n, "C-%c", (char)(key + 'a' - 1));
	else if (key < UI_KEY_BASE) {
		char u[5];
		int len = (int)fl_utf8_put(u, key);

		snprintf(buf, n, "%.*s", len, u);
	} else
		snprintf(buf, n, "<%u>", key);
	return buf;
}

int
ui_key_parse(const char *s, uint32_t *key)
{
	const char *p = s;

	for (size_t i = 0; i < sizeof key_names / sizeof key_names[0]; i++)
		if (strcmp(s, key_names[i].name) == 0) {
			*key = key_names[i].key;
			return 0;
		}
	if ((s[0] == 'C' || s[0] == 'c') && s[1] == '-' && s[2] >= 'a' && s[2] <= 'z' &&
	    s[3] == '\0') {
		*key = (uint32_t)(s[2] - 'a' + 1);
		return 0;
	}
	if (s[0] == 'F' && s[1] >= '1' && s[1] <= '9') {
		int f = atoi(s + 1);

		if (f >= 1 && f <= 12) {
			*key = UI_KEY_F1 + (uint32_t)f - 1;
			return 0;
		}
	}
	if (*s != '\0') {
		uint32_t cp = utf8_next(&p);

		if (*p == '\0' && cp >= 32 && cp != 0xfffd) {
			*key = cp;
			return 0;
		}
	}
	return -1;
}

void
keymap_clear(ui_keymap *k)
{
	for (int i = 0; i < k->n; i++)
		free(k->b[i].command);
	free(k->b);
	k->b = NULL;
	k->n = 0;
}

int
keymap_bind(ui_keymap *k, const char *key, const char *command, char **cause)
{
	uint32_t code;
	char **argv;
	int argc;

	if (ui_key_parse(key, &code) != 0)
		return fl_error(cause, "bind: unknown key '%s' (a character, C-x, F1-F12, "
		    "Up, Down, Left, Right, PgUp, PgDn, Home, End, Tab, BTab, Enter, "
		    "Escape, Space)", key);
	if ((argc = cmd_split_words(command, &argv, cause)) < 0)
		return -1;
	if (argc > 0 && cmd_find(argv[0]) == NULL) {
		fl_error(cause, "bind: unknown command '%s'", argv[0]);
		cmd_free_words(argv);
		return -1;
	}
	cmd_free_words(argv);
	for (int i = 0; i < k->n; i++)
		if (k->b[i].key == code) {
			free(k->b[i].command);
			k->b[i].command = xstrdup(command);
			k->b[i].what = NULL;
			return 0;
		}
	k->b = xreallocarray(k->b, (size_t)k->n + 1, sizeof *k->b);
	k->b[k->n].key = code;
	k->b[k->n].command = xstrdup(command);
	k->b[k->n].what = NULL;
	k->n++;
	return 0;
}

void
keymap_default(ui_keymap *k)
{
	k->b = NULL;
	k->n = 0;
	for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
		if (keymap_bind(k, defaults[i].key, defaults[i].command, NULL) != 0)
			fl_fatal("bad default binding %s", defaults[i].key);
		k->b[k->n - 1].what = defaults[i].what;
	}
}

void
keymap_default_flow(ui_keymap *k)
{
	k->b = NULL;
	k->n = 0;
	for (size_t i = 0; i < sizeof flow_defaults / sizeof flow_defaults[0]; i++) {
		if (keymap_bind(k, flow_defaults[i].key, flow_defaults[i].command, NULL) != 0)
			fl_fatal("bad default flow binding %s", flow_defaults[i].key);
		k->b[k->n - 1].what = flow_defaults[i].what;
	}
}

const char *
keymap_lookup(const ui_keymap *k, uint32_t key)
{
	for (int i = 0; i < k->n; i++)
		if (k->b[i].key == key)
			return k->b[i].command;
	return NULL;
}
