/* canvas.c - see canvas.h. */
#include "autoconfig.h"

#include "canvas.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "theme.h"

static const ui_glyphs glyphs_utf8 = {
	.spark = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" },
	.shade = { " ", "░", "▒", "▓", "█" },
	.bar_full = "█",
	.bar_part = { "", "▏", "▎", "▍", "▌", "▋", "▊", "▉" },
	.hline = "─", .vline = "│", .ellipsis = "…", .space = "·",
	.newline = "↵", .cursor = "▶", .arrow = "→", .mark = "▔",
};

static const ui_glyphs glyphs_ascii = {
	.spark = { "_", ".", "-", "~", "=", "+", "*", "#" },
	.shade = { " ", ".", "+", "*", "#" },
	.bar_full = "#",
	.bar_part = { "", "", "", "", "+", "+", "+", "+" },
	.hline = "-", .vline = "|", .ellipsis = "~", .space = "_",
	.newline = "\\n", .cursor = ">", .arrow = "->", .mark = "^",
};

const ui_glyphs *
ui_glyphs_get(bool ascii)
{
	return ascii ? &glyphs_ascii : &glyphs_utf8;
}

/* ---- UTF-8 and widths ------------------------------------------------ */

uint32_t
utf8_next(const char **sp)
{
	const unsigned char *s = (const unsigned char *)*sp;
	uint32_t cp;
	size_t n = fl_utf8_seq(s, strnlen(*sp, 4), &cp);

	if (n == 0) {
		*sp += 1;
		return 0xfffd;
	}
	*sp += n;
	return cp;
}

static const uint32_t zero_width[][2] = {
	{ 0x0300, 0x036f }, { 0x0483, 0x0489 }, { 0x0591, 0x05bd }, { 0x0610, 0x061a },
	{ 0x064b, 0x065f }, { 0x0900, 0x0903 }, { 0x093a, 0x094f }, { 0x0e31, 0x0e31 },
	{ 0x0e34, 0x0e3a }, { 0x0e47, 0x0e4e }, { 0x200b, 0x200f }, { 0x202a, 0x202e },
	{ 0x2060, 0x2064 }, { 0x20d0, 0x20ff }, { 0xfe00, 0xfe0f }, { 0xfe20, 0xfe2f },
	{ 0xfeff, 0xfeff },
};

static const uint32_t double_width[][2] = {
	{ 0x1100, 0x115f }, { 0x2e80, 0x303e }, { 0x3041, 0x33ff }, { 0x3400, 0x4dbf },
	{ 0x4e00, 0x9fff }, { 0xa000, 0xa4cf }, { 0xac00, 0xd7a3 }, { 0xf900, 0xfaff },
	{ 0xfe30, 0xfe4f }, { 0xff00, 0xff60 }, { 0xffe0, 0xffe6 }, { 0x1f300, 0x1f64f },
	{ 0x1f900, 0x1f9ff }, { 0x20000, 0x3fffd },
};

static bool
in_ranges(uint32_t cp, const uint32_t (*r)[2], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (cp >= r[i][0] && cp <= r[i][1])
			return true;
	return false;
}

int
ui_char_width(uint32_t cp)
{
	if (cp < 0x300)
		return 1;
	if (in_ranges(cp, zero_width, sizeof zero_width / sizeof zero_width[0]))
		return 0;
	if (in_ranges(cp, double_width, sizeof double_width / sizeof double_width[0]))
		return 2;
	return 1;
}

int
ui_text_width(const char *s)
{
	int w = 0;

	while (*s != '\0')
		w += ui_char_width(utf8_next(&s));
	return w;
}

/* ---- the canvas --------------------------------------------------- */

ui_canvas *
canvas_new(int w, int h)
{
	ui_canvas *c = xcalloc(1, sizeof *c);

	canvas_resize(c, w, h);
	return c;
}

void
canvas_free(ui_canvas *c)
{
	if (c == NULL)
		return;
	free(c->cells);
	free(c);
}

void
canvas_resize(ui_canvas *c, int w, int h)
{
	c->w = w < 1 ? 1 : w;
	c->h = h < 1 ? 1 : h;
	free(c->cells);
	c->cells = xcalloc((size_t)c->w * c->h, sizeof *c->cells);
	canvas_clear(c, UI_ROLE_NORMAL);
}

void
canvas_clear(ui_canvas *c, int role)
{
	for (int i = 0; i < c->w * c->h; i++) {
		c->cells[i].ch = ' ';
		c->cells[i].role = (uint8_t)role;
	}
}

ui_view
view_of(ui_canvas *c, int x, int y, int w, int h)
{
	ui_view v = { c, { x, y, w, h } };

	if (v.r.x < 0) { v.r.w += v.r.x; v.r.x = 0; }
	if (v.r.y < 0) { v.r.h += v.r.y; v.r.y = 0; }
	if (v.r.x + v.r.w > c->w) v.r.w = c->w - v.r.x;
	if (v.r.y + v.r.h > c->h) v.r.h = c->h - v.r.y;
	if (v.r.w < 0) v.r.w = 0;
	if (v.r.h < 0) v.r.h = 0;
	return v;
}

ui_view
view_sub(const ui_view *v, int x, int y, int w, int h)
{
	ui_view s = *v;

	if (x < 0) { w += x; x = 0; }
	if (y < 0) { h += y; y = 0; }
	if (x + w > v->r.w) w = v->r.w - x;
	if (y + h > v->r.h) h = v->r.h - y;
	s.r.x = v->r.x + x;
	s.r.y = v->r.y + y;
	s.r.w = w < 0 ? 0 : w;
	s.r.h = h < 0 ? 0 : h;
	return s;
}

static ui_cell *
cell_at(const ui_view *v, int x, int y)
{
	return &v->c->cells[(size_t)(v->r.y + y) * v->c->w + v->r.x + x];
}

void
view_fill(const ui_view *v, int role)
{
	for (int y = 0; y < v->r.h; y++)
		for (int x = 0; x < v->r.w; x++) {
			ui_cell *c = cell_at(v, x, y);

			c->ch = ' ';
			c->role = (uint8_t)role;
		}
}

/* A wide character cut in half by a write leaves no orphan half behind. */
static void
fix_wide_edges(const ui_view *v, int x, int y)
{
	int ax = v->r.x + x, row = v->r.y + y;
	ui_cell *line = &v->c->cells[(size_t)row * v->c->w];

	if (ax > 0 && ax < v->c->w && line[ax].ch == 0)
		line[ax - 1].ch = ' ';
}

int
view_put(const ui_view *v, int x, int y, int maxw, int role, const char *s)
{
	int avail, col = 0, tw;
	const char *p;

	if (y < 0 || y >= v->r.h || x >= v->r.w || s == NULL)
		return 0;
	avail = v->r.w - x;
	if (maxw >= 0 && maxw < avail)
		avail = maxw;
	if (avail <= 0)
		return 0;
	tw = ui_text_width(s);
	fix_wide_edges(v, x, y);
	p = s;
	while (*p != '\0') {
		uint32_t cp = utf8_next(&p);
		int cw = ui_char_width(cp);

		if (cp < 0x20 || cp == 0x7f)
			cp = '?', cw = 1;
		if (cw == 0) {
			/* A combining mark has nowhere to sit in a cell grid. */
			continue;
		}
		if (tw > avail && col + cw > avail - 1) {
			/* Room for the ellipsis only. */
			if (col < avail && x + col >= 0) {
				ui_cell *c = cell_at(v, x + col, y);

				c->ch = v->c->ascii ? '~' : 0x2026;
				c->role = (uint8_t)role;
				col++;
			}
			break;
		}
		if (col + cw > avail)
			break;
		if (x + col >= 0) {
			ui_cell *c = cell_at(v, x + col, y);

			c->ch = cp;
			c->role = (uint8_t)role;
			if (cw == 2) {
				c[1].ch = 0;
				c[1].role = (uint8_t)role;
			}
		}
		col += cw;
	}
	if (x + col < v->r.w && cell_at(v, x + col, y)->ch == 0)
		cell_at(v, x + col, y)->ch = ' ';
	return col;
}

int
view_printf(const ui_view *v, int x, int y, int maxw, int role, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	return view_put(v, x, y, maxw, role, buf);
}

void
view_restyle(const ui_view *v, int x, int y, int n, int role)
{
	if (y < 0 || y >= v->r.h)
		return;
	for (int i = x < 0 ? 0 : x; i < x + n && i < v->r.w; i++)
		cell_at(v, i, y)->role = (uint8_t)role;
}

void
view_bar(const ui_view *v, const ui_glyphs *g, int x, int y, int w, double frac,
    int role)
{
	int eighths, full;

	if (!(frac > 0))
		frac = 0;
	if (frac > 1)
		frac = 1;
	eighths = (int)(frac * w * 8 + 0.5);
	full = eighths / 8;
	for (int i = 0; i < full; i++)
		view_put(v, x + i, y, 1, role, g->bar_full);
	if (full < w && eighths % 8 != 0 && g->bar_part[eighths % 8][0] != '\0')
		view_put(v, x + full, y, 1, role, g->bar_part[eighths % 8]);
}

void
canvas_print(const ui_canvas *c, FILE *f)
{
	char *line = xmalloc((size_t)c->w * 4 + 2);

	for (int y = 0; y < c->h; y++) {
		size_t n = 0, keep = 0;

		for (int x = 0; x < c->w; x++) {
			uint32_t ch = c->cells[(size_t)y * c->w + x].ch;

			if (ch == 0)
				continue;
			n += fl_utf8_put(line + n, ch);
			if (ch != ' ')
				keep = n;
		}
		line[keep] = '\n';
		fwrite(line, 1, keep + 1, f);
	}
	free(line);
}
