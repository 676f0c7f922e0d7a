/*
 * cmd_flow.c - the flow pane's commands: :trace, :knockout, :flow (its
 * cursor, kind, window, view, and the cell's restored run) and :position
 * (the lens position). Their entries are in the table of commands.c.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "ui.h"

static int
need_prompt(ui_ctx *c, const char *cmd, char **cause)
{
	if (c->s->model == NULL)
		return fl_error(cause, "%s: no model loaded (use :model DIR)", cmd);
	if (!session_ready(c->s))
		return fl_error(cause, "%s: no prompt yet (e types one)", cmd);
	return 0;
}

/* A whole number in [lo, hi] into *out; -1 otherwise. */
static int
int_in(const char *s, long lo, long hi, long *out)
{
	char *end;

	if (*s == '\0')
		return -1;
	errno = 0;
	*out = strtol(s, &end, 10);
	return *end == '\0' && errno == 0 && *out >= lo && *out <= hi ? 0 : -1;
}

/* :trace [resid|mlp|attn] [W] [samples N] [seed K], in any order. */
int
ui_cmd_trace(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_flow_opts o = c->s->flow_o;
	long v;
	int k, flags;

	if (need_prompt(c, "trace", cause) != 0)
		return -1;
	for (int i = 1; i < argc; i++) {
		if ((k = trace_kind_parse(argv[i])) >= 0)
			o.kind = (fl_trace_kind)k;
		else if (strcmp(argv[i], "samples") == 0 || strcmp(argv[i], "seed") == 0) {
			bool seed = argv[i][1] == 'e';

			if (i + 1 >= argc || int_in(argv[i + 1], seed ? 0 : 1, seed ?
			    1L << 30 : 1000, &v) != 0)
				return fl_error(cause, "trace: %s takes %s, not '%s'", argv[i],
				    seed ? "0 to 2^30" : "1 to 1000", i + 1 < argc ?
				    argv[i + 1] : "nothing");
			if (seed)
				o.seed = (uint64_t)v;
			else
				o.samples = (int)v;
			i++;
		} else if (int_in(argv[i], 1, 4096, &v) == 0)
			o.window = (int)v;
		else
			return fl_error(cause, "trace: '%s' is none of resid, mlp, attn, W "
			    "(1 to 4096), samples N, seed K", argv[i]);
	}
	if ((flags = session_set_flow(c->s, FLOW_TRACE, &o, cause)) < 0)
		return -1;
	return flags | UI_REDRAW;
}

/* :knockout [subject|relation|other] [W]. */
int
ui_cmd_knockout(ui_ctx *c, int argc, char **argv, char **cause)
{
	int block = c->s->knock_block, window = c->s->knock_window, k, flags;
	long v;

	if (need_prompt(c, "knockout", cause) != 0)
		return -1;
	for (int i = 1; i < argc; i++) {
		if ((k = knock_block_parse(argv[i])) >= 0)
			block = k;
		else if (int_in(argv[i], 1, 4096, &v) == 0)
			window = (int)v;
		else
			return fl_error(cause, "knockout: '%s' is none of subject, relation, "
			    "other, W (1 to 4096)", argv[i]);
	}
	if ((flags = session_set_knockout(c->s, block, window, cause)) < 0)
		return -1;
	return flags | UI_REDRAW;
}

/* Appends to f a token's label padded to w display columns. */
static void
put_padded(FILE *f, const ui_ctx *c, int id, int w)
{
	char *t = session_token_label(c->s, id, c->g->space, c->g->newline);
	int tw = ui_text_width(t);

	fputs(t, f);
	for (; tw < w; tw++)
		fputc(' ', f);
	free(t);
}

/* Enter on a cell: its restored run's next tokens and the lens of its
 * streams at the last position, over the panes until a key. */
static int
flow_run(ui_ctx *c, char **cause)
{
	ui_session *s = c->s;
	const fl_trace *tr = s->flow_map;
	int L = session_layers(s), t = session_lens_pos(s), l = s->layer, rc, n;
	ui_lens_row *rows;
	char *text = NULL, pb[32], *lbl;
	size_t len = 0;
	FILE *f;

	if (s->flow != FLOW_TRACE || tr == NULL)
		return fl_error(cause, "flow run: no causal trace is shown (:trace runs "
		    "one)");
	rows = xcalloc((size_t)L + 1, sizeof *rows);
	rc = session_flow_cell(s, l, t, c->progress, rows, cause);
	if (rc == FL_STOPPED) {
		free(rows);
		ctx_message(c, false, "the restored run cancelled");
		c->cancelled = true;
		return UI_REDRAW;
	}
	if (rc != 0) {
		free(rows);
		return -1;
	}
	if ((f = open_memstream(&text, &len)) == NULL) {
		free(rows);
		return fl_error(cause, "flow run: out of memory");
	}
	fprintf(f, "%s restored at #%d ", s->flow_o.kind == TRACE_RESID ? "resid_pre" :
	    s->flow_o.kind == TRACE_MLP ? "mlp_out" : "attn_out", t);
	put_padded(f, c, s->ids[t], 0);
	if (s->flow_o.kind == TRACE_RESID)
		fprintf(f, " in layer %d", l);
	else {
		int lo, hi;

		trace_window(s->flow_o.kind, s->flow_o.window, L, l, &lo, &hi);
		fprintf(f, " in layers %d..%d", lo, hi - 1);
	}
	fprintf(f, " (%d sample%s: mean P)\n", tr->samples, tr->samples == 1 ? "" : "s");
	lbl = session_token_label(s, s->answer_id, c->g->space, c->g->newline);
	fprintf(f, "P(%s): this run %s (the map's cell: ", lbl, fmt_prob(rows[L].prob,
	    pb, sizeof pb));
	fprintf(f, "%s), clean ", fmt_prob(tr->restore[(size_t)l * tr->n_tok + t], pb,
	    sizeof pb));
	fprintf(f, "%s, corrupt ", fmt_prob(tr->p_clean, pb, sizeof pb));
	fprintf(f, "%s\n\n", fmt_prob(tr->p_corrupt, pb, sizeof pb));
	free(lbl);
	fprintf(f, "%-26s lens at the last position\n", "next tokens");
	fprintf(f, "%-26s   L     P  rank    top\n", "");
	n = s->topk > rows[L].n_top ? rows[L].n_top : s->topk;
	for (int i = 0; i < (n > L + 1 ? n : L + 1); i++) {
		if (i < n) {
			int id = rows[L].top_ids[i];

			fprintf(f, "%s ", id == s->answer_id ? "*" : " ");
			put_padded(f, c, id, 16);
			fprintf(f, " %6s  ", fmt_prob(rows[L].top_val[i], pb, sizeof pb));
		} else
			fprintf(f, "%-27s", "");
		if (i <= L) {
			const ui_lens_row *r = &rows[i];

			if (i == 0)
				fprintf(f, "emb");
			else if (i == L)
				fprintf(f, "out");
			else
				fprintf(f, "%3d", i);
			fprintf(f, " %5s #%-5d ", fmt_prob(r->prob, pb, sizeof pb), r->rank);
			if (r->n_top > 0)
				put_padded(f, c, r->top_ids[0], 0);
		}
		fputc('\n', f);
	}
	fprintf(f, "(* the answer; a lens row L is resid_pre of layer L, out the final "
	    "resid_post)");
	fclose(f);
	free(rows);
	ctx_overlay(c, text, xasprintf("restored run: cell #%d, layer %d (any "
	    "key closes)", t, l));
	return UI_REDRAW;
}

/* A cursor of the flow pane: the cell's row and column. */
static int
flow_move(ui_ctx *c, bool row, const char *arg, char **cause)
{
	ui_session *s = c->s;
	int L = session_layers(s), T = s->n_tok, to, flags;

	if (s->flow == FLOW_KNOCKOUT) {
		if (row)
			return ui_cursor_arg("flow row", arg, s->layer, L, L / 4 > 1 ? L / 4 : 1,
			    &s->layer, cause) != 0 ? -1 : SESSION_VIEW | UI_REDRAW;
		if (ui_cursor_arg("flow col", arg, s->knock_block, KNOCK_BLOCK_COUNT, 1,
		    &to, cause) != 0)
			return -1;
		flags = session_set_knockout(s, to, s->knock_window, cause);
		return flags < 0 ? -1 : flags | UI_REDRAW;
	}
	if (!row)
		return ui_cursor_arg("flow col", arg, s->layer, L, L / 4 > 1 ? L / 4 : 1,
		    &s->layer, cause) != 0 ? -1 : SESSION_VIEW | UI_REDRAW;
	if (ui_cursor_arg("flow row", arg, session_lens_pos(s), T, T / 4 > 1 ? T / 4 : 1,
	    &to, cause) != 0)
		return -1;
	flags = session_set_lens_pos(s, to == T - 1 ? -1 : to, cause);
	return flags < 0 ? -1 : flags | UI_REDRAW;
}

/* :flow off|toggle|view|row ARG|col ARG|kind next|prev|window ARG|run. */
int
ui_cmd_flow(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	const char *what = argc > 1 ? argv[1] : "toggle", *arg = argc > 2 ? argv[2] : NULL;
	bool needs_arg = strcmp(what, "row") == 0 || strcmp(what, "col") == 0 ||
	    strcmp(what, "kind") == 0 || strcmp(what, "window") == 0;
	int flags;

	if (needs_arg != (arg != NULL))
		return fl_error(cause, needs_arg ? "flow %s: needs an argument (:help flow)" :
		    "flow %s: takes no argument", what);
	if (strcmp(what, "off") == 0)
		return session_set_flow(s, FLOW_OFF, NULL, cause) | UI_REDRAW;
	if (need_prompt(c, "flow", cause) != 0)
		return -1;
	if (strcmp(what, "toggle") == 0) {
		ui_flow_view v = s->flow != FLOW_OFF ? FLOW_OFF : s->flow_last != FLOW_OFF ?
		    s->flow_last : FLOW_TRACE;

		if (v == FLOW_KNOCKOUT)
			flags = session_set_knockout(s, s->knock_block, s->knock_window, cause);
		else
			flags = session_set_flow(s, v, NULL, cause);
		return flags | UI_REDRAW;
	}
	if (s->flow == FLOW_OFF)
		return fl_error(cause, "flow %s: the flow pane is closed (f, :trace or "
		    ":knockout opens it)", what);
	if (strcmp(what, "view") == 0) {
		flags = s->flow == FLOW_TRACE ? session_set_knockout(s, s->knock_block,
		    s->knock_window, cause) : session_set_flow(s, FLOW_TRACE, NULL, cause);
		return flags | UI_REDRAW;
	}
	if (strcmp(what, "row") == 0 || strcmp(what, "col") == 0)
		return flow_move(c, what[0] == 'r', arg, cause);
	if (strcmp(what, "run") == 0)
		return flow_run(c, cause);
	if (strcmp(what, "kind") == 0) {
		int n = s->flow == FLOW_KNOCKOUT ? KNOCK_BLOCK_COUNT : TRACE_KIND_COUNT;
		int cur = s->flow == FLOW_KNOCKOUT ? s->knock_block : (int)s->flow_o.kind;
		ui_flow_opts o = s->flow_o;

		if (strcmp(arg, "next") == 0 || strcmp(arg, "prev") == 0)
			cur = (cur + (arg[0] == 'n' ? 1 : n - 1)) % n;
		else if ((cur = s->flow == FLOW_KNOCKOUT ? knock_block_parse(arg) :
		    trace_kind_parse(arg)) < 0)
			return fl_error(cause, "flow kind: expected next, prev or %s, not '%s'",
			    s->flow == FLOW_KNOCKOUT ? "subject, relation, other" :
			    "resid, mlp, attn", arg);
		if (s->flow == FLOW_KNOCKOUT)
			flags = session_set_knockout(s, cur, s->knock_window, cause);
		else {
			o.kind = (fl_trace_kind)cur;
			flags = session_set_flow(s, FLOW_TRACE, &o, cause);
		}
		return flags < 0 ? -1 : flags | UI_REDRAW;
	}
	if (strcmp(what, "window") == 0) {
		bool knock = s->flow == FLOW_KNOCKOUT;
		int w = knock ? s->knock_window : s->flow_o.window, to;
		ui_flow_opts o = s->flow_o;

		if (ui_cursor_arg("flow window", arg, w - 1, 4096, 4, &to, cause) != 0)
			return -1;
		if (knock)
			flags = session_set_knockout(s, s->knock_block, to + 1, cause);
		else {
			o.window = to + 1;
			flags = session_set_flow(s, FLOW_TRACE, &o, cause);
			if (flags >= 0 && o.kind == TRACE_RESID)
				ctx_message(c, false, "window %d: resid restores one layer; "
				    "the window is mlp's and attn's (Tab)", o.window);
		}
		return flags < 0 ? -1 : flags | UI_REDRAW;
	}
	return fl_error(cause, "flow: '%s' is none of off, toggle, view, row, col, kind, "
	    "window, run", what);
}

/* :position T|+N|-N|first|last: the lens pane's position. */
int
ui_cmd_position(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	int to, T, flags;

	if (need_prompt(c, "position", cause) != 0)
		return -1;
	T = s->n_tok;
	if (argc < 2) {
		ctx_message(c, false, "position %d of 0..%d%s", session_lens_pos(s), T - 1,
		    s->lens_pos < 0 || s->lens_pos == T - 1 ? " (the last)" : "");
		return UI_REDRAW;
	}
	if (ui_cursor_arg("position", argv[1], session_lens_pos(s), T, T / 4 > 1 ?
	    T / 4 : 1, &to, cause) != 0)
		return -1;
	if ((flags = session_set_lens_pos(s, to == T - 1 ? -1 : to, cause)) < 0)
		return -1;
	return flags | UI_REDRAW;
}
