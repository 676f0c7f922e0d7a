/*
 * pane_flow.c - the flow pane over the main area: causal tracing's map
 * (a row per position, a column per layer, each cell shaded by P(answer)
 * of its restored run, the subject's rows marked) or attention knockout's
 * curves (a row per start layer, a bar per block). It reads the session's
 * results (session/flow.c) and computes nothing.
 */
#include "autoconfig.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ui.h"
#include "panes.h"

#define FLOW_LEGEND_ROWS 3
#define FLOW_LABEL_MAX 18	/* columns of a row's label at most */

/* The heat role and glyph of p on the ramp from lo to hi. */
static void
flow_style(const ui_ctx *c, double p, double lo, double hi, int *role,
    const char **glyph)
{
	int lv = hi > lo ? (int)lround((p - lo) / (hi - lo) * 8) : 8;

	lv = lv < 0 ? 0 : lv > 8 ? 8 : lv;
	*role = UI_ROLE_HEAT0 + lv;
	*glyph = c->g->shade[(lv + 1) / 2];
}

/* First row to show so that cursor stays visible among n rows in vis. */
static int
flow_scroll(int cursor, int n, int vis)
{
	int off = cursor - vis / 2;

	if (off > n - vis)
		off = n - vis;
	return off < 0 ? 0 : off;
}

/* The ramp from lo to hi, glyph by glyph, from x on row y. */
static int
flow_ramp(const ui_ctx *c, const ui_view *v, int x, int y, double lo, double hi)
{
	char buf[32];
	int x0 = x;

	x += view_printf(v, x, y, -1, UI_ROLE_DIM, "%s ", fmt_prob(lo, buf, sizeof buf));
	for (int i = 0; i < UI_HEAT_LEVELS; i++) {
		int role;
		const char *gl;

		flow_style(c, lo + (hi - lo) * i / 8, lo, hi, &role, &gl);
		x += view_put(v, x, y, 1, role, gl);
	}
	x += view_printf(v, x, y, -1, UI_ROLE_DIM, " %s", fmt_prob(hi, buf, sizeof buf));
	return x - x0;
}

static void
flow_keys_row(const ui_ctx *c, const ui_view *v, int y, bool knockout)
{
	static const char *trace_keys[][2] = {
		{ "arrows", "cell" }, { "Tab", "kind" }, { "W/w", "window" },
		{ "Enter", "its run" }, { "o", "knockout" }, { "Esc", "close" },
	};
	static const char *knock_keys[][2] = {
		{ "arrows", "layer, block" }, { "W/w", "window" },
		{ "o", "causal trace" }, { "Esc", "close" },
	};
	int n = knockout ? 4 : 6, x = 1;

	for (int i = 0; i < n && x < v->r.w; i++) {
		const char *k = knockout ? knock_keys[i][0] : trace_keys[i][0];
		const char *w = knockout ? knock_keys[i][1] : trace_keys[i][1];

		x += view_put(v, x, y, -1, UI_ROLE_KEY, k);
		x += view_put(v, x + 1, y, -1, UI_ROLE_DIM, w) + 3;
	}
}

/* Says why the pane shows nothing, or that it needs more room. */
static void
flow_notice(const ui_view *v, int role, const char *line1, const char *line2)
{
	view_put(v, 1, 2, v->r.w - 2, role, line1);
	if (line2 != NULL)
		view_put(v, 1, 3, v->r.w - 2, UI_ROLE_DIM, line2);
}

static void
flow_trace_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	const fl_trace *tr = s->flow_map;
	int L = tr->n_layer, T = tr->n_tok, lw = 0, cw, vis, off, pos, x, y;
	int a = tr->subj_pos, z = tr->subj_pos + tr->subj_len, step;
	double hi = tr->p_clean, lo = tr->p_corrupt, cur;
	char buf[96], pb[32], pc[32];

	/* the ramp spans the map and both ends: P(corrupt) to P(clean) at least */
	for (int i = 0; i < L * T; i++) {
		hi = fmax(hi, tr->restore[i]);
		lo = fmin(lo, tr->restore[i]);
	}
	for (int t = 0; t < T; t++) {
		int w = ui_text_width(tok_label(c, s->ids[t])) + 7;

		lw = w > lw ? w : lw;
	}
	lw = lw > FLOW_LABEL_MAX ? FLOW_LABEL_MAX : lw;
	cw = (v->r.w - lw - 1) / L;
	cw = cw > 3 ? 3 : cw;
	vis = v->r.h - 2 - FLOW_LEGEND_ROWS;
	if (cw < 1 || vis < 1) {
		snprintf(buf, sizeof buf, "the map needs %dx%d (%d layers), the pane is "
		    "%dx%d", lw + 1 + L, 2 + FLOW_LEGEND_ROWS + 1, L, v->r.w, v->r.h);
		flow_notice(v, UI_ROLE_ERROR, buf, "enlarge the terminal, or Esc "
		    "closes the pane");
		return;
	}
	pos = session_lens_pos(s);
	/* the column header: layer numbers where they fit */
	step = cw >= 3 ? 1 : cw == 2 ? 2 : 5;
	view_put(v, 1, 1, lw - 1, UI_ROLE_DIM, "pos token");
	for (int l = 0; l < L; l++) {
		int lx = lw + l * cw;

		if (l == s->layer)
			view_printf(v, lx, 1, cw < 2 ? 2 : cw, UI_ROLE_CURSOR, "%*d",
			    cw < 2 ? 1 : cw - 1, l);
		else if (l % step == 0 && (l == 0 || l - 1 != s->layer || cw >= 2))
			view_printf(v, lx, 1, cw < 2 ? 2 : cw, UI_ROLE_DIM, "%*d",
			    cw < 2 ? 1 : cw - 1, l);
	}
	off = flow_scroll(pos, T, vis);
	for (int t = off; t < T && t - off < vis; t++) {
		bool subj = t >= a && t < z, here = t == pos;
		int role = subj ? UI_ROLE_SUBJECT : t == T - 1 ? UI_ROLE_LAST : UI_ROLE_NORMAL;

		y = 2 + t - off;
		view_put(v, 0, y, 1, UI_ROLE_CURSOR, here ? c->g->cursor : " ");
		view_printf(v, 1, y, 4, here ? UI_ROLE_CURSOR : UI_ROLE_DIM, "%3d", t);
		view_put(v, 5, y, 1, UI_ROLE_SUBJECT, subj ? "*" : " ");
		view_put(v, 6, y, lw - 7, role, tok_label(c, s->ids[t]));
		for (int l = 0; l < L; l++) {
			int cr, lx = lw + l * cw;
			const char *gl;

			flow_style(c, tr->restore[(size_t)l * T + t], lo, hi, &cr, &gl);
			for (int i = 0; i < (cw >= 3 ? cw - 1 : cw); i++)
				view_put(v, lx + i, y, 1, cr, gl);
			if (here && l == s->layer)
				view_restyle(v, lx, y, cw >= 3 ? cw - 1 : cw, UI_ROLE_CURSOR);
		}
	}
	if (T > vis)
		view_printf(v, lw + L * cw + 1, 2, -1, UI_ROLE_DIM, "%d-%d of %d", off,
		    off + vis - 1 < T - 1 ? off + vis - 1 : T - 1, T);
	/* the legend: the two ends, the ramp, the cursor's cell, the keys */
	y = v->r.h - FLOW_LEGEND_ROWS;
	x = 1 + view_printf(v, 1, y, -1, UI_ROLE_NORMAL, "P(clean) %s  P(corrupt) %s  ",
	    fmt_pct(tr->p_clean, pb, sizeof pb), fmt_pct(tr->p_corrupt, pc, sizeof pc));
	x += flow_ramp(c, v, x, y, lo, hi);
	view_put(v, x + 2, y, -1, UI_ROLE_SUBJECT, "* subject");
	cur = tr->restore[(size_t)s->layer * T + pos];
	x = 1 + view_put(v, 1, y + 1, -1, UI_ROLE_DIM, "cell ");
	x += view_put(v, x, y + 1, 16, pos >= a && pos < z ? UI_ROLE_SUBJECT :
	    UI_ROLE_NORMAL, tok_label(c, s->ids[pos]));
	x += view_printf(v, x, y + 1, -1, UI_ROLE_DIM, " #%d, layer %d: P(", pos,
	    s->layer);
	x += view_put(v, x, y + 1, 16, UI_ROLE_ANSWER, tok_label(c, s->answer_id));
	x += view_printf(v, x, y + 1, -1, UI_ROLE_NORMAL, ") %s", fmt_pct(cur, pb,
	    sizeof pb));
	view_printf(v, x, y + 1, -1, UI_ROLE_DIM, ", %+.1f points over corrupt",
	    100 * (cur - tr->p_corrupt));
	flow_keys_row(c, v, y + 2, false);
}

static void
flow_knock_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	int L = session_layers(s), vis = v->r.h - 2 - FLOW_LEGEND_ROWS, off, bw, y;
	double scale = s->knock_clean;
	char pb[32];

	for (int i = 0; i < KNOCK_BLOCK_COUNT * L; i++)
		if (!isnan(s->knock[i]))
			scale = fmax(scale, s->knock[i]);
	bw = (v->r.w - 8) / KNOCK_BLOCK_COUNT;
	bw = bw > 26 ? 26 : bw;
	if (bw < 10 || vis < 1) {
		snprintf(pb, sizeof pb, "%dx%d", 8 + 10 * KNOCK_BLOCK_COUNT,
		    3 + FLOW_LEGEND_ROWS);
		flow_notice(v, UI_ROLE_ERROR, "the knockout curves need more room",
		    pb);
		return;
	}
	view_put(v, 1, 1, 6, UI_ROLE_DIM, "from L");
	for (int k = 0; k < KNOCK_BLOCK_COUNT; k++)
		view_printf(v, 8 + k * bw, 1, bw - 1, k == s->knock_block ? UI_ROLE_CURSOR :
		    UI_ROLE_DIM, "%s blocked", knock_block_name((fl_knock_block)k));
	off = flow_scroll(s->layer, L, vis);
	for (int l = off; l < L && l - off < vis; l++) {
		bool here = l == s->layer;

		y = 2 + l - off;
		view_put(v, 0, y, 1, UI_ROLE_CURSOR, here ? c->g->cursor : " ");
		view_printf(v, 1, y, 6, here ? UI_ROLE_CURSOR : UI_ROLE_DIM, "%4d", l);
		for (int k = 0; k < KNOCK_BLOCK_COUNT; k++) {
			double p = s->knock[(size_t)k * L + l];
			int x = 8 + k * bw, role = here && k == s->knock_block ?
			    UI_ROLE_CURSOR : UI_ROLE_SPARK;

			if (isnan(p)) {
				view_put(v, x, y, bw - 1, UI_ROLE_DIM, "- (none in the prompt)");
				continue;
			}
			view_bar(v, c->g, x, y, bw - 8, scale > 0 ? p / scale : 0, role);
			view_printf(v, x + bw - 8, y, 7, here && k == s->knock_block ?
			    UI_ROLE_CURSOR : UI_ROLE_NORMAL, "%6s", fmt_prob(p, pb, sizeof pb));
		}
	}
	y = v->r.h - FLOW_LEGEND_ROWS;
	{
		int x = 1 + view_put(v, 1, y, -1, UI_ROLE_DIM, "P(");

		x += view_put(v, x, y, 16, UI_ROLE_ANSWER, tok_label(c, s->answer_id));
		view_printf(v, x, y, -1, UI_ROLE_NORMAL, ") clean %s; a bar: P, attention "
		    "last -> block cut", fmt_pct(s->knock_clean, pb, sizeof pb));
	}
	{
		double p = s->knock[(size_t)s->knock_block * L + s->layer];
		char pc[32];

		int hi = s->layer + s->knock_window > L ? L - 1 : s->layer + s->knock_window - 1;
		char ls[32];

		if (hi > s->layer)
			snprintf(ls, sizeof ls, "layers %d..%d", s->layer, hi);
		else
			snprintf(ls, sizeof ls, "layer %d", s->layer);
		view_printf(v, 1, y + 1, -1, UI_ROLE_DIM, "in %s: %s blocked, "
		    "P %s (%s of clean)", ls, knock_block_name(
		    (fl_knock_block)s->knock_block), fmt_pct(p, pb, sizeof pb),
		    isnan(p) || s->knock_clean <= 0 ? "-" : (snprintf(pc, sizeof pc,
		    "%+.0f%%", 100 * (p / s->knock_clean - 1)), pc));
	}
	flow_keys_row(c, v, y + 2, true);
}

void
pane_flow_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	const ui_flow_opts *o = &s->flow_o;
	char title[160];

	if (s->flow == FLOW_KNOCKOUT)
		snprintf(title, sizeof title, "flow: attention knockout from the last "
		    "position, window %d", s->knock_window);
	else if (o->kind == TRACE_RESID)
		snprintf(title, sizeof title, "flow: causal trace, resid_pre restored, "
		    "%d sample%s, seed %llu", o->samples, o->samples == 1 ? "" : "s",
		    (unsigned long long)o->seed);
	else
		snprintf(title, sizeof title, "flow: causal trace, %s output restored, "
		    "window %d, %d sample%s, seed %llu", trace_kind_name(o->kind), o->window,
		    o->samples, o->samples == 1 ? "" : "s", (unsigned long long)o->seed);
	pane_title(v, c, title);
	if (s->flow_error != NULL) {
		flow_notice(v, UI_ROLE_ERROR, s->flow_error, "Esc closes the pane");
		return;
	}
	if (s->flow == FLOW_KNOCKOUT) {
		if (s->knock_valid)
			flow_knock_draw(c, v);
		else
			flow_notice(v, UI_ROLE_DIM, "knockout not computed", NULL);
	} else if (s->flow_map != NULL)
		flow_trace_draw(c, v);
	else
		flow_notice(v, UI_ROLE_DIM, "causal tracing not computed (:trace runs it)",
		    NULL);
}
