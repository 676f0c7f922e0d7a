/*
 * overlays.c - what covers the explorer's panes: a command's text output,
 * the key map, the command list, and the screen without a model or prompt.
 * See panes.h.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "panes.h"

/* The next line of at most w columns of the text at *s, broken at a space
 * (a word wider than w is cut); *s moves past it and the spaces after.
 * Heap string. */
static char *
wrap_line(const char **s, int w)
{
	const char *start = *s, *p = start, *cut = NULL;
	char *line;
	int cw = 0;

	while (*p != '\0') {
		const char *q = p;
		int ch = ui_char_width(utf8_next(&q));

		if (*p == ' ')
			cut = p;
		if (cw + ch > w)
			break;
		cw += ch;
		p = q;
	}
	if (*p != '\0' && cut != NULL && cut > start)
		p = cut;
	if (p == start && *p != '\0')
		utf8_next(&p);	/* at least one character a line */
	line = xstrndup(start, (size_t)(p - start));
	while (*p == ' ')
		p++;
	*s = p;
	return line;
}

/* A command's text output (:eval, :help NAME) over the panes, one row a
 * line. */
void
pane_overlay_draw(const ui_ctx *c, const ui_view *v)
{
	const char *p = c->overlay;
	int y = 1;

	view_fill(v, UI_ROLE_NORMAL);
	pane_title(v, c, c->overlay_title != NULL ? c->overlay_title : "");
	while (p != NULL && y < v->r.h) {
		const char *nl = strchr(p, '\n');
		char *line = nl != NULL ? xstrndup(p, (size_t)(nl - p)) : xstrdup(p);
		const char *q = line;

		/* a line wider than the pane wraps, indented under its start */
		for (bool first = true; first || (*q != '\0' && y < v->r.h); first = false) {
			char *part = wrap_line(&q, v->r.w - (first ? 2 : 4));

			view_put(v, first ? 1 : 3, y++, -1, UI_ROLE_NORMAL, part);
			free(part);
		}
		free(line);
		p = nl != NULL ? nl + 1 : NULL;
	}
}

void
pane_help_draw(const ui_ctx *c, const ui_view *v)
{
	/* the flow pane's keys while it is shown: they come first */
	bool flow = c->s->flow != FLOW_OFF && session_ready(c->s);
	const ui_keymap *k = flow ? &c->flow_keys : &c->keys;
	int cols, colw, rows, n = 0;
	int *first = xcalloc((size_t)k->n + 1, sizeof *first);

	view_fill(v, UI_ROLE_NORMAL);
	pane_title(v, c, flow ? "keys of the flow pane, then the others (? or any "
	    "key closes)" : "keys: each runs a command (? or any key closes; :help CMD)");
	/* One line per command, with every key bound to it. */
	for (int i = 0; i < k->n; i++) {
		bool seen = false;

		for (int j = 0; j < i && !seen; j++)
			seen = strcmp(k->b[j].command, k->b[i].command) == 0;
		if (!seen)
			first[n++] = i;
	}
	rows = v->r.h - 1;
	cols = (n + rows - 1) / (rows > 0 ? rows : 1);
	if (cols < 1) cols = 1;
	colw = v->r.w / cols;
	for (int e = 0; e < n; e++) {
		int i = first[e], x = (e / rows) * colw + 1, y = 1 + e % rows, kx = 0;
		char kb[32];

		for (int j = i; j < k->n; j++) {
			if (strcmp(k->b[j].command, k->b[i].command) != 0)
				continue;
			if (kx > 0)
				kx += view_put(v, x + kx, y, -1, UI_ROLE_DIM, " ");
			kx += view_put(v, x + kx, y, 12 - kx, UI_ROLE_KEY,
			    ui_key_name(k->b[j].key, kb, sizeof kb));
		}
		{
			const char *what = NULL;
			int cx = x + 13;

			for (int j = i; j < k->n && what == NULL; j++)
				if (strcmp(k->b[j].command, k->b[i].command) == 0)
					what = k->b[j].what;
			if (what != NULL && colw >= 60) {
				cx += view_put(v, cx, y, colw - 14 - 22, UI_ROLE_NORMAL, what) + 1;
				view_put(v, cx, y, colw - (cx - x) - 1, UI_ROLE_DIM, k->b[i].command);
			} else
				view_put(v, cx, y, colw - 14, UI_ROLE_NORMAL, what != NULL ?
				    what : k->b[i].command);
		}
	}
	free(first);
}

/* :help - every command with its arguments and what it does, the text
 * wrapped, never cut; what does not fit is counted on the last row. */
void
pane_cmds_draw(const ui_ctx *c, const ui_view *v)
{
	int w = v->r.w - 2, headw = 0, y = 1, i;

	view_fill(v, UI_ROLE_NORMAL);
	pane_title(v, c, "commands: type :NAME ARGS (Tab completes); :help NAME for "
	    "one; ? the keys");
	for (i = 0; i < ui_n_cmds; i++) {
		int hw = ui_text_width(ui_cmds[i].name) + 1 + ui_text_width(ui_cmds[i].args);

		if (hw > headw)
			headw = hw;
	}
	if (headw > 30)
		headw = 30;
	for (i = 0; i < ui_n_cmds; i++) {
		const ui_cmd *cmd = &ui_cmds[i];
		char *head = xasprintf("%s %s", cmd->name, cmd->args);
		/* the help beside the head when there is room, else under it */
		bool beside = w - headw - 2 >= 24 && ui_text_width(head) <= headw;
		int hx = beside ? headw + 3 : 5, tw = w - hx + 1, need = beside ? 0 : 1;
		const char *p = cmd->help;

		while (*p != '\0') {
			free(wrap_line(&p, tw));
			need++;
		}
		if (y + need > v->r.h - (i + 1 < ui_n_cmds ? 1 : 0)) {
			char *more = xasprintf("... %d more: :help NAME shows any command "
			    "(a taller terminal shows all)", ui_n_cmds - i);

			view_put(v, 1, v->r.h - 1, w, UI_ROLE_DIM, more);
			free(more);
			free(head);
			break;
		}
		view_put(v, 1, y, w, UI_ROLE_KEY, head);
		if (!beside)
			y++;
		for (p = cmd->help; *p != '\0'; y++) {
			char *line = wrap_line(&p, tw);

			view_put(v, hx, y, tw, UI_ROLE_NORMAL, line);
			free(line);
		}
		free(head);
	}
}

void
pane_empty_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;

	view_fill(v, UI_ROLE_NORMAL);
	if (s->model == NULL) {
		view_put(v, 2, 1, -1, UI_ROLE_TITLE, "No model is loaded.");
		if (s->model_dir != NULL)
			view_printf(v, 2, 3, -1, UI_ROLE_DIM, "tried: %s", s->model_dir);
		view_put(v, 2, 4, -1, UI_ROLE_NORMAL,
		    "Load one with :model DIR (a Hugging Face GPT-2 or OPT directory),");
		view_put(v, 2, 5, -1, UI_ROLE_NORMAL, "or start factlens with --model DIR.");
	} else {
		view_put(v, 2, 1, -1, UI_ROLE_TITLE, "Type a prompt: press e (or :prompt TEXT).");
		view_put(v, 2, 3, -1, UI_ROLE_DIM, "For example: The capital of France is");
	}
}


void
ctx_overlay(ui_ctx *c, char *text, char *title)
{
	free(c->overlay);
	free(c->overlay_title);
	c->overlay = text;
	c->overlay_title = title;
}
