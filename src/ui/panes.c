/*
 * panes.c - formats the explorer's screen into a canvas: the layout, then
 * one function per pane. Panes read the session and the context and write
 * styled cells; they never compute model results and never touch curses.
 */
#include "autoconfig.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "ui.h"
#include "panes.h"

/* ---- small formatting helpers --------------------------------------- */

const char *
fmt_prob(double p, char *buf, size_t n)
{
	if (isnan(p))
		snprintf(buf, n, "-");
	else if (p >= 0.995)
		snprintf(buf, n, "100%%");
	else if (p >= 0.1)
		snprintf(buf, n, "%.0f%%", 100 * p);
	else if (p >= 0.001)
		snprintf(buf, n, "%.1f%%", 100 * p);
	else if (p > 0)
		snprintf(buf, n, "<.1%%");
	else
		snprintf(buf, n, "0%%");
	return buf;
}

/* So that a small probability never reads 0.00% (panes.h). */
const char *
fmt_pct(double p, char *buf, size_t n)
{
	double x = 100 * p;

	if (isnan(p))
		snprintf(buf, n, "-");
	else if (x >= 1 || x == 0)
		snprintf(buf, n, "%.2f%%", x);
	else if (x >= 0.001)
		snprintf(buf, n, "%.*f%%", 2 - (int)floor(log10(x)), x);
	else
		snprintf(buf, n, "<0.001%%");
	return buf;
}

/* A signed value with the decimals its size needs for two significant
 * digits (+12, +4.4, +0.83, +0.012), so a column of small values never
 * reads +0.0 -0.0. */
const char *
fmt_signed(double v, char *buf, size_t n)
{
	double a = fabs(v);

	if (isnan(v))
		snprintf(buf, n, "-");
	else if (a >= 10 || a == 0)
		snprintf(buf, n, "%+.0f", v);
	else if (a >= 1)
		snprintf(buf, n, "%+.1f", v);
	else if (a >= 0.1)
		snprintf(buf, n, "%+.2f", v);
	else if (a >= 0.01)
		snprintf(buf, n, "%+.3f", v);
	else
		snprintf(buf, n, "%+.1e", v);
	return buf;
}

void
pane_writes_row(const ui_ctx *c, const ui_view *v, int y, const ui_lens_row *r)
{
	const ui_session *s = c->s;
	int x = view_put(v, 1, y, -1, UI_ROLE_DIM, "writes ");
	char fb[32];

	for (int i = 0; i < r->n_top && i < s->topk && 1 + x < v->r.w; i++) {
		int id = r->top_ids[i];

		x += view_put(v, 1 + x, y, -1, id == s->answer_id ? UI_ROLE_ANSWER :
		    UI_ROLE_NORMAL, tok_label(c, id));
		x += view_printf(v, 1 + x, y, -1, UI_ROLE_DIM, " %s  ",
		    fmt_signed(r->top_val[i], fb, sizeof fb));
	}
}

/* A token's display text from a small ring of buffers (valid for the next
 * seven calls). */
const char *
tok_label(const ui_ctx *c, int id)
{
	static char ring[8][160];
	static int next;
	char *s = session_token_label(c->s, id, c->g->space, c->g->newline);
	char *out = ring[next++ % 8];

	snprintf(out, sizeof ring[0], "%s", s);
	free(s);
	return out;
}

void
pane_title(const ui_view *v, const ui_ctx *c, const char *title)
{
	int x;

	for (int i = 0; i < v->r.w; i++)
		view_put(v, i, 0, 1, UI_ROLE_BORDER, c->g->hline);
	x = view_put(v, 1, 0, v->r.w - 2, UI_ROLE_TITLE, " ");
	x += view_put(v, 1 + x, 0, v->r.w - 3 - x, UI_ROLE_TITLE, title);
	view_put(v, 1 + x, 0, 1, UI_ROLE_TITLE, " ");
}

/* First row to show so that `cursor` stays visible among n rows in vis. */
static int
scroll_for(int cursor, int n, int vis)
{
	int off = cursor - vis / 2;

	if (off > n - vis)
		off = n - vis;
	return off < 0 ? 0 : off;
}

/* ---- layout ----------------------------------------------------------- */

typedef struct {
	bool	too_small;
	ui_rect	header, prompt, tokens, status, message, main;
	ui_rect	layers, lens, heads, head, mlp;
	int	n_sep;
	ui_rect	sep[2];		/* vertical separators */
	bool	shared;		/* head and MLP panes take turns in head */
} ui_layout;

static ui_rect
rect(int x, int y, int w, int h)
{
	ui_rect r = { x, y, w, h };

	return r;
}

static void
layout_compute(int W, int H, int L, ui_layout *o)
{
	int mh, want = L + 3;

	memset(o, 0, sizeof *o);
	if (W < UI_MIN_W || H < UI_MIN_H) {
		o->too_small = true;
		return;
	}
	o->header = rect(0, 0, W, 1);
	o->prompt = rect(0, 1, W, 1);
	o->tokens = rect(0, 2, W, 2);
	o->status = rect(0, H - 2, W, 1);
	o->message = rect(0, H - 1, W, 1);
	o->main = rect(0, 4, W, H - 6);
	mh = H - 6;
	if (W >= 150 && mh >= 20) {
		/* Three columns: layers and lens | heads and head | MLP. */
		int w1 = W * 34 / 100, w2 = W * 36 / 100, w3 = W - w1 - w2 - 2;
		int lh = want < mh - 12 ? want : mh - 12;
		int hh = want < mh - 12 ? want : mh - 12;

		o->layers = rect(0, 4, w1, lh);
		o->lens = rect(0, 4 + lh, w1, mh - lh);
		o->sep[o->n_sep++] = rect(w1, 4, 1, mh);
		o->heads = rect(w1 + 1, 4, w2, hh + 1);
		o->head = rect(w1 + 1, 5 + hh, w2, mh - hh - 1);
		o->sep[o->n_sep++] = rect(w1 + 1 + w2, 4, 1, mh);
		o->mlp = rect(w1 + w2 + 2, 4, w3, mh);
	} else {
		int w1 = W * 47 / 100, w2 = W - w1 - 1;
		int lh = want < mh - 8 ? want : (mh - 8 > mh / 2 ? mh - 8 : mh / 2);
		int hh = want + 1 < mh - 7 ? want + 1 : (mh - 7 > mh / 2 ? mh - 7 : mh / 2);
		int rest = mh - hh;

		o->layers = rect(0, 4, w1, lh);
		o->lens = rect(0, 4 + lh, w1, mh - lh);
		o->sep[o->n_sep++] = rect(w1, 4, 1, mh);
		o->heads = rect(w1 + 1, 4, w2, hh);
		if (rest >= 16) {
			o->head = rect(w1 + 1, 4 + hh, w2, rest - 6);
			o->mlp = rect(w1 + 1, 4 + hh + rest - 6, w2, 6);
		} else {
			/* Too short for both: they share the place, v switches. */
			o->head = rect(w1 + 1, 4 + hh, w2, rest);
			o->shared = true;
		}
	}
}

static ui_view
view_rect(ui_canvas *cv, ui_rect r)
{
	return view_of(cv, r.x, r.y, r.w, r.h);
}

/* ---- top rows ------------------------------------------------------- */

static void
pane_header_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	int x = 0;

	view_fill(v, UI_ROLE_HEADER);
	x += view_put(v, x, 0, -1, UI_ROLE_HEADER, " factlens ");
	if (s->model != NULL) {
		const fl_config *k = &s->model->cfg;

		x += view_printf(v, x, 0, -1, UI_ROLE_HEADER, "%s %s (%dL %dH d%d) ",
		    c->g->vline, s->model_name, k->n_layer, k->n_head, k->d_model);
	} else
		x += view_printf(v, x, 0, -1, UI_ROLE_HEADER, "%s no model ", c->g->vline);
	x += view_printf(v, x, 0, -1, UI_ROLE_HEADER, "%s mask ", c->g->vline);
	x += view_put(v, x, 0, -1, s->mask ? UI_ROLE_ON : UI_ROLE_OFF, s->mask ? " on " : "off");
	if (s->mask && s->mask_heads != NULL && s->model != NULL) {
		int n = 0;

		for (int h = 0; h < s->model->cfg.n_head; h++)
			n += s->mask_heads[h];
		x += view_printf(v, x, 0, -1, UI_ROLE_HEADER, " %d/%d heads", n,
		    s->model->cfg.n_head);
	}
	x += view_printf(v, x, 0, -1, UI_ROLE_HEADER, " %s intercept ", c->g->vline);
	/* n/a: nothing fitted and no task to fit it on yet (i loads one). */
	if (s->intercept_vec == NULL && s->task == NULL)
		x += view_put(v, x, 0, -1, UI_ROLE_OFF, "n/a");
	else
		x += view_put(v, x, 0, -1, s->intercept ? UI_ROLE_ON : UI_ROLE_OFF,
		    s->intercept ? " on " : "off");
	if (s->task != NULL)
		x += view_printf(v, x, 0, -1, UI_ROLE_HEADER, " %s task %s", c->g->vline,
		    s->task->name);
	x += view_printf(v, x, 0, -1, UI_ROLE_HEADER, " %s %s ", c->g->vline,
	    c->theme.name);
	if (v->r.w - x >= 8)
		view_put(v, v->r.w - 8, 0, 8, UI_ROLE_HEADER, "? keys ");
}

static void
pane_prompt_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	char right[200] = "";
	int rw = 0, x;

	if (session_ready(s)) {
		snprintf(right, sizeof right, "answer %s%s", tok_label(c, s->answer_id),
		    s->answer_text == NULL ? " (top)" : "");
		rw = ui_text_width(right) + 1;
		if (rw > v->r.w / 2)
			rw = 0;
	}
	x = view_put(v, 0, 0, -1, UI_ROLE_DIM, " prompt ");
	if (s->prompt != NULL && s->prompt[0] != '\0')
		view_put(v, x, 0, v->r.w - x - rw - 1, UI_ROLE_PROMPT, s->prompt);
	else
		view_put(v, x, 0, v->r.w - x - rw - 1, UI_ROLE_DIM,
		    "(none: press e to type one)");
	if (rw > 0) {
		int ax = v->r.w - rw;

		x = view_put(v, ax, 0, -1, UI_ROLE_DIM, "answer ");
		x += view_put(v, ax + x, 0, -1, UI_ROLE_ANSWER, tok_label(c, s->answer_id));
		if (s->answer_text == NULL)
			view_put(v, ax + x, 0, -1, UI_ROLE_DIM, " (top)");
	}
}

static void
pane_tokens_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	int T = s->n_tok, x0, first = 0, total, x, *w;
	char tail[200];

	x0 = view_put(v, 0, 0, -1, UI_ROLE_DIM, " tokens ");
	if (!session_ready(s))
		return;
	w = xcalloc((size_t)T, sizeof *w);
	for (int t = 0; t < T; t++)
		w[t] = ui_text_width(tok_label(c, s->ids[t]));
	/* Show as many tokens as fit, always ending with the last one. */
	total = 0;
	for (first = T; first > 0 && total + w[first - 1] + 1 <= v->r.w - x0 - 2; first--)
		total += w[first - 1] + 1;
	x = x0;
	if (first > 0)
		x += view_put(v, x, 0, -1, UI_ROLE_DIM, c->g->ellipsis);
	for (int t = first; t < T; t++) {
		int role = t == s->subject_pos ? UI_ROLE_SUBJECT : t == T - 1 ? UI_ROLE_LAST :
		    (t % 2 ? UI_ROLE_TOKEN_ALT : UI_ROLE_TOKEN);

		view_put(v, x, 0, w[t], role, tok_label(c, s->ids[t]));
		if (t == s->subject_pos || t == T - 1)
			for (int i = 0; i < w[t]; i++)
				view_put(v, x + i, 1, 1, role, c->g->mark);
		if (t == s->lens_pos && t < T - 1)
			/* the lens position ([ and ]) */
			view_restyle(v, x, 0, w[t], UI_ROLE_CURSOR);
		x += w[t] + 1;
	}
	if (s->subject_pos >= 0)
		snprintf(tail, sizeof tail, " subject %s #%d%s, last #%d",
		    tok_label(c, s->ids[s->subject_pos]), s->subject_pos,
		    s->subject_guessed ? " (guessed)" : "", T - 1);
	else
		snprintf(tail, sizeof tail, " last #%d (no subject)", T - 1);
	view_put(v, x, 1, -1, UI_ROLE_DIM, tail);
	free(w);
}

/* ---- layers ----------------------------------------------------------- */

static void
pane_layers_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	int L = session_layers(s), n = L + 1, vis, off, barw, x;
	char buf[32];

	pane_title(v, c, "layers: answer at resid_post");
	if (!session_ready(s) || v->r.h < 4)
		return;
	x = view_printf(v, 1, 1, -1, UI_ROLE_DIM, "P(");
	x += view_put(v, 1 + x, 1, 16, UI_ROLE_ANSWER, tok_label(c, s->answer_id));
	x += view_put(v, 1 + x, 1, -1, UI_ROLE_DIM, ") ");
	{
		double mx = 0;

		for (int l = 0; l <= L; l++)
			if (s->streams[l].prob > mx)
				mx = s->streams[l].prob;
		for (int l = 0; l <= L && 1 + x < v->r.w; l++) {
			double p = s->streams[l].prob;
			int lv = mx > 0 ? (int)(p / mx * 7 + 0.5) : 0;

			view_put(v, 1 + x++, 1, 1, l == s->layer + 1 ? UI_ROLE_CURSOR :
			    UI_ROLE_SPARK, c->g->spark[lv < 0 ? 0 : lv > 7 ? 7 : lv]);
		}
		view_printf(v, 2 + x, 1, -1, UI_ROLE_DIM, "max %s", fmt_prob(mx, buf, sizeof buf));
	}
	vis = v->r.h - 3;
	off = scroll_for(s->layer + 1, n, vis);
	barw = v->r.w / 5;
	if (barw < 4) barw = 4;
	if (barw > 20) barw = 20;
	/* the headings over the columns below */
	view_put(v, 2, 2, 4, UI_ROLE_DIM, "  L");
	view_put(v, 6 + barw + 1, 2, 5, UI_ROLE_DIM, "    P");
	view_put(v, 6 + barw + 7, 2, 7, UI_ROLE_DIM, "rank");
	view_put(v, 6 + barw + 15, 2, -1, UI_ROLE_DIM, "top");
	for (int i = off; i < n && i - off < vis; i++) {
		const ui_lens_row *r = &s->streams[i];
		int y = 3 + (i - off), cur = i == s->layer + 1, xx = 0;
		int role = cur ? UI_ROLE_CURSOR : UI_ROLE_NORMAL;

		if (cur)
			view_fill(&(ui_view){ v->c, { v->r.x, v->r.y + y, v->r.w, 1 } }, role);
		xx += view_put(v, 0, y, 2, role, cur ? c->g->cursor : " ");
		xx = 2;
		if (i == 0)
			view_put(v, xx, y, 4, cur ? role : UI_ROLE_DIM, "emb");
		else
			view_printf(v, xx, y, 4, role, "%3d", i - 1);
		xx += 4;
		view_bar(v, c->g, xx, y, barw, r->prob, cur ? role : UI_ROLE_SPARK);
		xx += barw + 1;
		view_printf(v, xx, y, 5, role, "%5s", fmt_prob(r->prob, buf, sizeof buf));
		xx += 6;
		view_printf(v, xx, y, 7, role, "#%-6d", r->rank);
		xx += 8;
		if (r->n_top > 0)
			view_put(v, xx, y, -1, cur ? role : r->top_ids[0] == s->answer_id ?
			    UI_ROLE_ANSWER : UI_ROLE_NORMAL, tok_label(c, r->top_ids[0]));
	}
}

/* A difference of probabilities in percentage points, with two
 * significant digits down to a hundredth of a point; what rounds to zero
 * is 0. */
static const char *
fmt_points(double d, char *buf, size_t n)
{
	double a = fabs(100 * d);

	if (isnan(d))
		snprintf(buf, n, "-");
	else if (a < 0.005)
		snprintf(buf, n, "0");
	else
		snprintf(buf, n, a >= 9.95 ? "%+.0f" : a >= 0.995 ? "%+.1f" : "%+.2f",
		    100 * d);
	return buf;
}

static void heat_style(const ui_ctx *c, float val, float scale, bool is_signed,
    int *role, const char **glyph);

/* Compared (:compare): A's and B's probability and rank of A's answer at
 * each stream, and B-A in points shaded on the signed ramp. */
static void
pane_layers_compare(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s, *b = s->cmp;
	int L = session_layers(s), n = L + 1, vis, off, x;
	double mx = 0;
	char buf[32], desc[200];

	pane_title(v, c, "layers: A vs B, B-A in % points");
	if (!session_ready(s) || v->r.h < 4 || b == NULL || !session_ready(b))
		return;
	if (s->compare == COMPARE_PROMPT) {
		/* the subject B took (A's, or a guess) before B's prompt, which
		 * the user typed and a narrow pane cuts */
		int room, dw;

		if (b->subject_pos >= 0)
			snprintf(desc, sizeof desc, " subject %s%s", tok_label(c,
			    b->ids[b->subject_pos]), b->subject_guessed ? " (guessed)" : "");
		else
			snprintf(desc, sizeof desc, " (no subject)");
		dw = ui_text_width(desc);
		room = v->r.w - 2 - 2 - dw;
		if (room < 6 && b->subject_guessed && b->subject_pos >= 0) {
			desc[strlen(desc) - strlen(" (guessed)")] = '\0';
			snprintf(desc + strlen(desc), sizeof desc - strlen(desc), "?");
			dw = ui_text_width(desc);
			room = v->r.w - 2 - 2 - dw;
		}
		x = view_put(v, 1, 1, -1, UI_ROLE_DIM, "B ");
		x += view_put(v, 1 + x, 1, room, UI_ROLE_PROMPT, b->prompt);
		view_put(v, 1 + x, 1, v->r.w - 2 - x, UI_ROLE_DIM, desc);
	} else {
		bool on = s->compare == COMPARE_MASK ? b->mask : b->intercept;

		snprintf(desc, sizeof desc, "B: this prompt, %s %s", s->compare ==
		    COMPARE_MASK ? "mask" : "intercept", on ? "on" : "off");
		view_put(v, 1, 1, v->r.w - 2, UI_ROLE_DIM, desc);
	}
	/* the headings over the columns below */
	view_put(v, 2, 2, v->r.w - 2, UI_ROLE_DIM, "  L  P(A)  P(B)   B-A  #A     #B");
	if (v->r.w >= 56)
		view_put(v, 38, 2, -1, UI_ROLE_DIM, "top A    top B");
	for (int l = 0; l <= L; l++)
		if (fabs(b->streams[l].prob - s->streams[l].prob) > mx)
			mx = fabs(b->streams[l].prob - s->streams[l].prob);
	vis = v->r.h - 3;
	off = scroll_for(s->layer + 1, n, vis);
	for (int i = off; i < n && i - off < vis; i++) {
		const ui_lens_row *ra = &s->streams[i], *rb = &b->streams[i];
		int y = 3 + (i - off), cur = i == s->layer + 1, role, drole;
		const char *gl;
		double d = rb->prob - ra->prob;

		role = cur ? UI_ROLE_CURSOR : UI_ROLE_NORMAL;
		if (cur)
			view_fill(&(ui_view){ v->c, { v->r.x, v->r.y + y, v->r.w, 1 } }, role);
		view_put(v, 0, y, 2, role, cur ? c->g->cursor : " ");
		if (i == 0)
			view_put(v, 2, y, 4, cur ? role : UI_ROLE_DIM, "emb");
		else
			view_printf(v, 2, y, 4, role, "%3d", i - 1);
		view_printf(v, 6, y, 5, role, "%5s", fmt_prob(ra->prob, buf, sizeof buf));
		view_printf(v, 12, y, 5, role, "%5s", fmt_prob(rb->prob, buf, sizeof buf));
		heat_style(c, (float)d, (float)mx, true, &drole, &gl);
		view_printf(v, 18, y, 5, cur ? role : drole, "%5s", fmt_points(d, buf,
		    sizeof buf));
		view_printf(v, 24, y, 6, role, "#%-5d", ra->rank);
		view_printf(v, 31, y, 6, role, "#%-5d", rb->rank);
		if (v->r.w >= 56) {
			if (ra->n_top > 0)
				view_put(v, 38, y, 8, cur ? role : ra->top_ids[0] == s->answer_id ?
				    UI_ROLE_ANSWER : UI_ROLE_NORMAL, tok_label(c, ra->top_ids[0]));
			if (rb->n_top > 0)
				view_put(v, 47, y, v->r.w - 47, cur ? role : rb->top_ids[0] ==
				    s->answer_id ? UI_ROLE_ANSWER : UI_ROLE_NORMAL,
				    tok_label(c, rb->top_ids[0]));
		}
	}
}

/* ---- the lens of the cursor's layer -------------------------------- */

static void
lens_column(const ui_ctx *c, const ui_view *v, int x, int w, const char *name,
    const ui_lens_row *r)
{
	char buf[32];
	int rows = v->r.h - 3;

	view_put(v, x, 1, w, UI_ROLE_TITLE, name);
	if (r == NULL)
		return;
	{
		/* the answer's rank and probability, named where the column has room */
		const char *al = tok_label(c, c->s->answer_id);
		char rp[48];
		int ax = 0;

		snprintf(rp, sizeof rp, "#%d %s", r->rank, fmt_prob(r->prob, buf, sizeof buf));
		if (ui_text_width(al) + 1 + ui_text_width(rp) <= w - 1)
			ax = view_put(v, x, 2, -1, UI_ROLE_ANSWER, al) + 1;
		view_put(v, x + ax, 2, w - ax, UI_ROLE_DIM, rp);
	}
	int want = r->n_top < c->s->topk ? r->n_top : c->s->topk;
	/* a list cut short says so on its last row */
	int shown = want > rows ? (rows > 0 ? rows - 1 : 0) : want;

	for (int i = 0; i < shown; i++) {
		int role = r->top_ids[i] == c->s->answer_id ? UI_ROLE_ANSWER : UI_ROLE_NORMAL;
		const char *p = fmt_prob(r->top_val[i], buf, sizeof buf);
		int pw = (int)strlen(p);

		/* a column of space between the token and its probability */
		view_put(v, x, 3 + i, w - pw - 2, role, tok_label(c, r->top_ids[i]));
		view_put(v, x + w - pw - 1, 3 + i, pw, UI_ROLE_DIM, p);
	}
	if (shown < want && rows > 0)
		view_printf(v, x, 3 + shown, w - 1, UI_ROLE_DIM, "+%d more", want - shown);
}

static void
pane_lens_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	char title[64];
	int cw;

	if (s->lens_pos >= 0 && s->lens_pos < s->n_tok - 1 && session_ready(s)) {
		/* another position ([ and ] move it) */
		snprintf(title, sizeof title, "layer %d: lens at #%d %s", s->layer,
		    s->lens_pos, tok_label(c, s->ids[s->lens_pos]));
		pane_title(v, c, title);
		if (v->r.h < 4 || s->pos_at != s->lens_pos || s->pos_layer != s->layer)
			return;
		cw = (v->r.w - 1) / 3;
		lens_column(c, v, 1, cw, "resid_pre", &s->pos_rows[0]);
		lens_column(c, v, 1 + cw, cw, "resid_mid", &s->pos_rows[1]);
		lens_column(c, v, 1 + 2 * cw, cw, "resid_post", &s->pos_rows[2]);
		return;
	}
	snprintf(title, sizeof title, "layer %d: lens, last position", s->layer);
	pane_title(v, c, title);
	if (!session_ready(s) || v->r.h < 4)
		return;
	cw = (v->r.w - 1) / 3;
	lens_column(c, v, 1, cw, "resid_pre", &s->streams[s->layer]);
	lens_column(c, v, 1 + cw, cw, "resid_mid", s->view_layer == s->layer ? &s->view_mid : NULL);
	lens_column(c, v, 1 + 2 * cw, cw, "resid_post", &s->streams[s->layer + 1]);
}

/* ---- heads --------------------------------------------------------- */

static void
heat_style(const ui_ctx *c, float val, float scale, bool is_signed, int *role,
    const char **glyph)
{
	if (isnan(val)) {
		*role = UI_ROLE_DIM;
		*glyph = c->ascii ? "." : "·";
		return;
	}
	if (is_signed) {
		int lv = scale > 0 ? (int)lroundf(val / scale * 4) : 0;

		lv = lv < -4 ? -4 : lv > 4 ? 4 : lv;
		*role = UI_ROLE_DIV0 + lv + 4;
		*glyph = c->g->shade[lv < 0 ? -lv : lv];
	} else {
		int lv = scale > 0 ? (int)lroundf(val / scale * 8) : 0;

		lv = lv < 0 ? 0 : lv > 8 ? 8 : lv;
		*role = UI_ROLE_HEAT0 + lv;
		*glyph = c->g->shade[(lv + 1) / 2];
	}
}

/* The largest |value| of a grid; 1 for attention, whose scale is fixed. */
static float
grid_scale(const ui_session *s, const float *grid, bool fixed)
{
	int n = session_layers(s) * session_heads(s);
	float mx = 0;

	if (fixed)
		return 1;
	for (int i = 0; i < n; i++)
		if (!isnan(grid[i]) && fabsf(grid[i]) > mx)
			mx = fabsf(grid[i]);
	return mx;
}

/* One line saying what a heads metric is, under its grid. */
static const char *
metric_legend(ui_metric m)
{
	switch (m) {
	case METRIC_ATTN_SUBJECT:
		return "attention last token -> subject, 0 to 1";
	case METRIC_DIRECT:
		return "answer logit added, less the mean logit";
	case METRIC_MOVER:
		return "attn x how high it ranks the subject";
	case METRIC_PATCH:
		return "% change of logit diff, head patched";
	default:
		return "";
	}
}

/* The decimals of a grid's cells (at most five columns with the sign)
 * from its scale, for two significant digits at the scale: 0 past 100,
 * 1 past 10, 2 down to 0.1, 3 (written without the leading zero, +.083)
 * down to 0.01; below that the cells count in a unit, a power of ten. */
static void
cell_precision(double scale, int *dec, double *unit)
{
	*unit = 1;
	if (scale > 0 && scale < 0.00995) {
		*unit = pow(10, floor(log10(scale)));
		scale /= *unit;
	}
	*dec = scale >= 99.95 ? 0 : scale >= 9.995 ? 1 : scale >= 0.0995 ? 2 : 3;
}

/* A cell's value with dec decimals in the unit; what rounds to zero is 0. */
static const char *
fmt_cell(double v, int dec, double unit, bool sg, char *buf, size_t n)
{
	double x = v / unit;
	char *z;

	if (fabs(x) < 0.5 * pow(10, -dec))
		return "0";
	snprintf(buf, n, sg ? "%+.*f" : "%.*f", dec, x);
	if (dec == 3 && (z = strstr(buf, "0.")) != NULL)
		memmove(z, z + 1, strlen(z));
	return buf;
}

static void
pane_heads_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	int L = session_layers(s), H = session_heads(s), cw, vis, off, lw = 5;
	/* compared, the grid is B-A: signed, on its own scale */
	bool cmp = s->cmp != NULL;
	bool sg = cmp || metric_signed(s->metric);
	const float *grid = cmp ? s->cmp_grid : s->grid;
	float scale;
	double unit;
	int dec;
	char title[96], buf[32];

	if (s->metric == METRIC_ATP && s->atp_valid && !cmp)
		snprintf(title, sizeof title, "heads: AtP from \"%.60s\" (Tab)",
		    s->atp_corrupt);
	else
		snprintf(title, sizeof title, "heads: %s%s (Tab)", cmp ? "B-A " : "",
		    metric_title(s->metric));
	if (ui_text_width(title) > v->r.w - 4)
		title[strlen(title) - strlen(" (Tab)")] = '\0';	/* the key is in the hints */
	pane_title(v, c, title);
	if (!session_ready(s) || v->r.h < 4)
		return;
	if (cmp && s->metric == METRIC_PATCH) {
		view_put(v, 1, 2, -1, UI_ROLE_DIM, "path patching is not compared (it "
		    "patches A's own run);");
		view_put(v, 1, 3, -1, UI_ROLE_DIM, "Tab shows B-A of the other metrics.");
		return;
	}
	if (s->metric == METRIC_PATCH && !s->patch_valid) {
		/* session_update computes it (patch.h) when a task is loaded. */
		view_put(v, 1, 2, -1, s->task != NULL ? UI_ROLE_ERROR : UI_ROLE_DIM,
		    s->patch_error != NULL ? s->patch_error : "path patching not computed");
		view_put(v, 1, 3, -1, UI_ROLE_DIM, "Tab shows the other metrics.");
		return;
	}
	if (s->metric == METRIC_ATP && !s->atp_valid) {
		view_put(v, 1, 2, -1, UI_ROLE_ERROR, s->atp_error != NULL ?
		    s->atp_error : "attribution patching not computed");
		view_put(v, 1, 3, -1, UI_ROLE_DIM, "Tab shows the other metrics.");
		return;
	}
	scale = grid_scale(s, grid, !cmp && s->metric == METRIC_ATTN_SUBJECT);
	cell_precision(scale, &dec, &unit);
	if (unit != 1) {
		/* values too small for five columns: the cells count in units */
		char *p = strstr(title, " (Tab)");

		snprintf(p != NULL ? p : title + strlen(title), sizeof title - (size_t)((p != NULL ?
		    p : title + strlen(title)) - title), " (cells x%.0e)", unit);
		pane_title(v, c, title);
	}
	cw = (v->r.w - lw - 1) / H;
	if (cw > 6) cw = 6;
	if (cw < 1) cw = 1;
	/* The column header: head numbers where they fit. */
	for (int h = 0; h < H; h++) {
		int x = lw + h * cw, step = cw >= 3 ? 1 : cw == 2 ? 2 : 5;

		if (h == s->head)
			view_printf(v, x, 1, cw < 2 ? 2 : cw, UI_ROLE_CURSOR, "%*d", cw < 2 ? 1 :
			    cw - 1, h);
		else if (h % step == 0)
			view_printf(v, x, 1, cw, UI_ROLE_DIM, "%*d", cw < 2 ? 1 : cw - 1, h);
	}
	view_put(v, 0, 1, lw, UI_ROLE_DIM, "L\\H");
	vis = v->r.h - 3;
	off = scroll_for(s->layer, L, vis);
	for (int l = off; l < L && l - off < vis; l++) {
		int y = 2 + l - off;

		view_printf(v, 0, y, lw, l == s->layer ? UI_ROLE_CURSOR : UI_ROLE_DIM, "%s%3d",
		    l == s->layer ? c->g->cursor : " ", l);
		for (int h = 0; h < H; h++) {
			float val = grid[l * H + h];
			int role, x = lw + h * cw;
			const char *gl;
			bool cur = l == s->layer && h == s->head;
			/* the task's criterion when it is computed, else this
			 * prompt's mover score (shown with the mover metric) */
			bool mover = s->task_patch_valid ? s->task_mover[l * H + h] :
			    s->is_mover[l * H + h];

			heat_style(c, val, scale, sg, &role, &gl);
			if (cw >= 5 && !isnan(val)) {
				const char *txt = fmt_cell(val, dec, unit, sg, buf, sizeof buf);

				view_printf(v, x, y, cw, role, "%*s", cw - 1, txt);
			} else {
				for (int i = cw > 1 ? 1 : 0; i < cw; i++)
					view_put(v, x + i, y, 1, role, gl);
				if (cw > 1 && sg && val < 0)
					view_put(v, x, y, 1, role, "-");
			}
			/* the star after a number, in the gap between cells, so
			 * that it never hides a sign; before a glyph cell */
			if (mover && cw >= 5 && !isnan(val))
				view_put(v, x + cw - 1, y, 1, UI_ROLE_MOVER, "*");
			else if (mover && cw > 1)
				view_put(v, x, y, 1, UI_ROLE_MOVER, "*");
			/* an estimate more than 2x from its exact patch (x) */
			if (s->metric == METRIC_ATP && s->atp_exact != NULL &&
			    !isnan(s->atp_exact[l * H + h]) &&
			    atp_disagree(s->atp.heads[l * H + h], s->atp_exact[l * H + h]))
				view_put(v, cw >= 6 ? x + cw - 1 : x, y, 1, UI_ROLE_ERROR, "!");
			if (cur)
				view_restyle(v, x, y, cw, UI_ROLE_CURSOR);
		}
	}
	if (v->r.h - 2 >= 2 + (L - off < vis ? L - off : vis))
		/* a free row above the legend: what the metric is */
		view_put(v, 1, v->r.h - 2, v->r.w - 2, UI_ROLE_DIM, metric_legend(s->metric));
	if (v->r.h - 1 >= 2 + (L - off < vis ? L - off : vis)) {
		int y = v->r.h - 1, x = 1;

		if (sg)
			x += view_printf(v, x, y, -1, UI_ROLE_DIM, "%s ", fmt_signed(-scale, buf,
			    sizeof buf));
		else
			x += view_put(v, x, y, -1, UI_ROLE_DIM, "0 ");
		for (int i = 0; i < UI_HEAT_LEVELS; i++) {
			int role;
			const char *gl;
			float val = sg ? -scale + 2 * scale * i / 8 : scale * i / 8;

			heat_style(c, val, scale, sg, &role, &gl);
			x += view_put(v, x, y, 1, role, gl);
		}
		fmt_signed(scale, buf, sizeof buf);
		x += view_printf(v, x, y, -1, UI_ROLE_DIM, " %s", sg ? buf : buf + 1);
		if (cmp)
			x += view_put(v, x, y, -1, UI_ROLE_DIM, " B-A");
		if (s->metric == METRIC_ATP) {
			/* the selected cell: the estimate, and the exact patch
			 * once x ran it (= close, ! more than 2x apart) */
			int i = s->layer * H + s->head;
			double ex = s->atp_exact != NULL ? s->atp_exact[i] : NAN;

			x += 2 + view_printf(v, x + 2, y, -1, UI_ROLE_NORMAL, "%d.%d %+.3f",
			    s->layer, s->head, s->atp.heads[i]);
			if (isnan(ex))
				view_put(v, x, y, -1, UI_ROLE_DIM, " x: exact");
			else
				view_printf(v, x, y, -1, atp_disagree(s->atp.heads[i], ex) ?
				    UI_ROLE_ERROR : UI_ROLE_DIM, " exact %+.3f%s", ex,
				    atp_disagree(s->atp.heads[i], ex) ? " !>2x" : "");
		} else {
			x += view_put(v, x + 2, y, -1, UI_ROLE_MOVER, "*");
			view_put(v, x + 2, y, -1, UI_ROLE_DIM, cmp ? " mover in A" :
			    s->task_patch_valid ? " mover (task: patch, r)" : " mover");
		}
		(void)buf;
	}
}

/* The selected head's mover scatter over the task's prompts, in rows
 * [y, y + h): x = attention from the last position to the subject (0 to
 * 1), y = <result, W_U[subject]>; a cell's glyph grows with its prompts
 * (. : * #, plain ASCII). */
static void
pane_head_scatter(const ui_ctx *c, const ui_view *v, int y, int h)
{
	const ui_session *s = c->s;
	const fl_patch *tp = &s->task_patch;
	int LH = tp->n_layer * tp->n_head, k = s->layer * tp->n_head + s->head;
	int lw = 8, w = v->r.w - lw - 2, rows = h - 2, *cnt;
	float lo = INFINITY, hi = -INFINITY;

	if (w > 48)
		w = 48;
	if (w < 8 || rows < 2)
		return;
	for (int i = 0; i < tp->n_prompts; i++) {
		float yv = tp->proj[(size_t)i * LH + k];

		lo = fminf(lo, yv);
		hi = fmaxf(hi, yv);
	}
	if (!(hi > lo))
		hi = lo + 1;
	cnt = xcalloc((size_t)w * rows, sizeof *cnt);
	for (int i = 0; i < tp->n_prompts; i++) {
		float xv = tp->attn[(size_t)i * LH + k], yv = tp->proj[(size_t)i * LH + k];
		int cx = (int)(xv * (w - 1) + 0.5f), cy = (int)((hi - yv) / (hi - lo) *
		    (rows - 1) + 0.5f);

		cx = cx < 0 ? 0 : cx >= w ? w - 1 : cx;
		cy = cy < 0 ? 0 : cy >= rows ? rows - 1 : cy;
		cnt[cy * w + cx]++;
	}
	view_printf(v, 1, y, -1, UI_ROLE_DIM, isnan(tp->pearson[k]) ? "scatter, %d "
	    "prompts: attention to subject (x) vs result.W_U[subject] (y), r n/a" :
	    "scatter, %d prompts: attention to subject (x) vs result.W_U[subject] "
	    "(y), r %+.2f", tp->n_prompts, tp->pearson[k]);
	for (int r = 0; r < rows; r++) {
		int yy = y + 1 + r;

		if (r == 0 || r == rows - 1)
			view_printf(v, 0, yy, lw, UI_ROLE_DIM, "%7.2f", r == 0 ? hi : lo);
		view_put(v, lw, yy, 1, UI_ROLE_DIM, "|");
		for (int x = 0; x < w; x++) {
			int n = cnt[r * w + x];

			if (n > 0)
				view_put(v, lw + 1 + x, yy, 1, UI_ROLE_SPARK, n == 1 ? "." :
				    n < 4 ? ":" : n < 8 ? "*" : "#");
		}
	}
	view_printf(v, lw, y + h - 1, -1, UI_ROLE_DIM, "0%*s", w, "1");
	free(cnt);
}

static void
pane_head_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	int L, H, T, l, h, y, rows, *order, n, barw;
	const float *pat;
	char title[96], buf[32];
	ui_view top;

	snprintf(title, sizeof title, "head %d.%d", s->layer, s->head);
	pane_title(v, c, title);
	if (!session_ready(s) || v->r.h < 3 || s->view_layer != s->layer)
		return;
	L = session_layers(s);
	H = session_heads(s);
	T = s->n_tok;
	l = s->layer;
	h = s->head;
	(void)L;
	y = 1;
	{
		int x = view_put(v, 1, y, -1, UI_ROLE_DIM, "direct effect on ");

		x += view_put(v, 1 + x, y, 16, UI_ROLE_ANSWER, tok_label(c, s->answer_id));
		view_printf(v, 1 + x, y, -1, s->head_direct >= 0 ? UI_ROLE_POSITIVE :
		    UI_ROLE_NEGATIVE, " %+.3f", s->head_direct);
		y++;
	}
	if (y < v->r.h)
		pane_writes_row(c, v, y++, &s->view_head);
	if (y < v->r.h && s->task_patch_valid) {
		int k = l * H + h;

		char rb[24];

		if (isnan(s->task_patch.pearson[k]))
			snprintf(rb, sizeof rb, "n/a");
		else
			snprintf(rb, sizeof rb, "%+.2f", s->task_patch.pearson[k]);
		view_printf(v, 1, y++, -1, s->task_mover[k] ? UI_ROLE_MOVER : UI_ROLE_DIM,
		    "task: patch %+.1f%%, scatter r %s: %s", s->task_patch.effect[k], rb,
		    s->task_mover[k] ? "mover" : "not a mover (needs <= -1%, r >= 0.5)");
	}
	if (y >= v->r.h)
		return;
	/* the scatter below the attention list, when both fit */
	if (s->task_patch_valid && v->r.h - y >= 13) {
		pane_head_scatter(c, v, v->r.h - 7, 7);
		top = *v;
		top.r.h -= 7;
		v = &top;
	}
	pat = s->cache->pattern + (((size_t)l * H + h) * T + (T - 1)) * T;
	rows = v->r.h - y - 1;
	if (T > rows && rows > 0)
		view_printf(v, 1, y++, -1, UI_ROLE_DIM, "attention from the last (top %d "
		    "of %d):", rows, T);
	else
		view_put(v, 1, y++, -1, UI_ROLE_DIM, "attention from the last position:");
	if (rows <= 0)
		return;
	/* All tokens if they fit, else the most attended, in prompt order. */
	order = xcalloc((size_t)T, sizeof *order);
	for (int t = 0; t < T; t++)
		order[t] = t;
	n = T;
	if (T > rows) {
		for (int i = 0; i < rows; i++)
			for (int j = i + 1; j < T; j++)
				if (pat[order[j]] > pat[order[i]]) {
					int tmp = order[i];

					order[i] = order[j];
					order[j] = tmp;
				}
		n = rows;
		for (int i = 0; i < n; i++)
			for (int j = i + 1; j < n; j++)
				if (order[j] < order[i]) {
					int tmp = order[i];

					order[i] = order[j];
					order[j] = tmp;
				}
	}
	barw = v->r.w - 24;
	if (barw > 30) barw = 30;
	if (barw < 3) barw = 3;
	for (int i = 0; i < n; i++, y++) {
		int t = order[i];
		int role = t == s->subject_pos ? UI_ROLE_SUBJECT : t == T - 1 ? UI_ROLE_LAST :
		    UI_ROLE_NORMAL;

		view_printf(v, 1, y, 4, UI_ROLE_DIM, "%3d", t);
		view_put(v, 5, y, 12, role, tok_label(c, s->ids[t]));
		view_bar(v, c->g, 18, y, barw, pat[t], UI_ROLE_SPARK);
		view_printf(v, 19 + barw, y, -1, UI_ROLE_NORMAL, "%.2f", pat[t]);
	}
	(void)buf;
	free(order);
}

/* ---- bottom rows and overlays ------------------------------------- */

static void
pane_status_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	int x = 0, L = session_layers(s);
	char right[160], pb[32];

	view_fill(v, UI_ROLE_STATUS);
	if (session_ready(s)) {
		const ui_lens_row *f = &s->streams[L], *b = &s->base_final;
		bool toggled = s->mask || (s->intercept && s->intercept_vec != NULL);

		x += view_put(v, x, 0, -1, UI_ROLE_STATUS, " P(");
		x += view_put(v, x, 0, 16, UI_ROLE_ANSWER, tok_label(c, s->answer_id));
		x += view_printf(v, x, 0, -1, UI_ROLE_STATUS, ") %s #%d", fmt_pct(b->prob,
		    pb, sizeof pb), b->rank);
		if (toggled) {
			x += view_printf(v, x, 0, -1, UI_ROLE_STATUS, " %s ", c->g->arrow);
			x += view_printf(v, x, 0, -1, f->prob >= b->prob ? UI_ROLE_POSITIVE :
			    UI_ROLE_NEGATIVE, "%s #%d", fmt_pct(f->prob, pb, sizeof pb), f->rank);
			x += view_printf(v, x, 0, -1, UI_ROLE_STATUS, " (%s%s%s)",
			    s->mask ? "mask" : "", s->mask && s->intercept ? "+" : "",
			    s->intercept ? "intercept" : "");
		}
		if (s->cmp != NULL && session_ready(s->cmp)) {
			const ui_lens_row *bf = &s->cmp->streams[L];

			x += view_printf(v, x, 0, -1, UI_ROLE_STATUS, " %s B ", c->g->vline);
			x += view_printf(v, x, 0, -1, bf->prob >= f->prob ? UI_ROLE_POSITIVE :
			    UI_ROLE_NEGATIVE, "%s #%d", fmt_pct(bf->prob, pb, sizeof pb),
			    bf->rank);
		}
		snprintf(right, sizeof right, "layer %d %s head %d.%d %s %s", s->layer,
		    c->g->vline, s->layer, s->head, c->g->vline, metric_name(s->metric));
		if (!c->batch && c->last_action != NULL) {
			size_t o = strlen(right);

			snprintf(right + o, sizeof right - o, " %s %s %.0f ms", c->g->vline,
			    c->last_action, c->ms_last_action);
		}
		if (v->r.w - x > ui_text_width(right) + 2)
			view_put(v, v->r.w - ui_text_width(right) - 1, 0, -1, UI_ROLE_STATUS, right);
	} else
		view_put(v, 1, 0, -1, UI_ROLE_STATUS, s->model == NULL ? "no model" : "no prompt");
}

static void
pane_message_draw(const ui_ctx *c, const ui_view *v)
{
	static const char *hints[][2] = {
		{ "e", "prompt" }, { ":", "command" }, { "jk", "layer" }, { "hl", "head" },
		{ "m", "mask" }, { "Tab", "metric" }, { "?", "keys" }, { "q", "quit" },
	};
	int x = 1;

	if (c->message != NULL) {
		view_put(v, 1, 0, -1, c->message_error ? UI_ROLE_ERROR : UI_ROLE_INFO, c->message);
		return;
	}
	for (size_t i = 0; i < sizeof hints / sizeof hints[0] && x < v->r.w; i++) {
		x += view_put(v, x, 0, -1, UI_ROLE_KEY, hints[i][0]);
		x += view_put(v, x + 1, 0, -1, UI_ROLE_DIM, hints[i][1]) + 3;
	}
}

void
ui_format(const ui_ctx *c, ui_canvas *cv)
{
	ui_layout lo;
	ui_view v;

	cv->ascii = c->ascii;
	canvas_clear(cv, UI_ROLE_NORMAL);
	/* the layers pane has a row more than the title, the sparkline (or
	 * what B is) and the layers: its column headings */
	layout_compute(cv->w, cv->h, session_layers(c->s) + 1, &lo);
	if (lo.too_small) {
		int y = cv->h / 2 - 1;

		v = view_of(cv, 0, 0, cv->w, cv->h);
		view_printf(&v, 1, y < 0 ? 0 : y, -1, UI_ROLE_ERROR, "factlens needs at least %dx%d",
		    UI_MIN_W, UI_MIN_H);
		view_printf(&v, 1, y + 1, -1, UI_ROLE_NORMAL, "this terminal is %dx%d", cv->w,
		    cv->h);
		view_put(&v, 1, y + 2, -1, UI_ROLE_DIM, "enlarge it, or q to quit");
		return;
	}
	v = view_rect(cv, lo.header); pane_header_draw(c, &v);
	v = view_rect(cv, lo.prompt); pane_prompt_draw(c, &v);
	v = view_rect(cv, lo.tokens); pane_tokens_draw(c, &v);
	v = view_rect(cv, lo.status); pane_status_draw(c, &v);
	v = view_rect(cv, lo.message); pane_message_draw(c, &v);
	if (c->help) {
		v = view_rect(cv, lo.main);
		pane_help_draw(c, &v);
		return;
	}
	if (c->help_cmds) {
		v = view_rect(cv, lo.main);
		pane_cmds_draw(c, &v);
		return;
	}
	if (c->overlay != NULL) {
		v = view_rect(cv, lo.main);
		pane_overlay_draw(c, &v);
		return;
	}
	if (!session_ready(c->s)) {
		v = view_rect(cv, lo.main);
		pane_empty_draw(c, &v);
		return;
	}
	if (c->s->flow != FLOW_OFF) {
		v = view_rect(cv, lo.main);
		pane_flow_draw(c, &v);
		return;
	}
	for (int i = 0; i < lo.n_sep; i++) {
		v = view_rect(cv, lo.sep[i]);
		for (int y = 0; y < v.r.h; y++)
			view_put(&v, 0, y, 1, UI_ROLE_BORDER, c->g->vline);
	}
	v = view_rect(cv, lo.layers);
	if (c->s->cmp != NULL)
		pane_layers_compare(c, &v);
	else
		pane_layers_draw(c, &v);
	v = view_rect(cv, lo.lens); pane_lens_draw(c, &v);
	v = view_rect(cv, lo.heads); pane_heads_draw(c, &v);
	v = view_rect(cv, lo.head);
	if (lo.shared && c->show_mlp)
		pane_mlp_draw(c, &v);
	else
		pane_head_draw(c, &v);
	if (lo.shared) {
		/* say on the pane's title row that the other one is there */
		const char *hint = c->show_mlp ? " v: head " : " v: MLP ";

		view_put(&v, v.r.w - ui_text_width(hint) - 1, 0, -1, UI_ROLE_KEY, hint);
	}
	if (lo.mlp.w > 0) {
		v = view_rect(cv, lo.mlp);
		pane_mlp_draw(c, &v);
	}
}
