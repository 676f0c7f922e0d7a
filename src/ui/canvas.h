/*
 * canvas.h - the screen model: a grid of styled cells that panes draw into.
 *
 * Nothing here knows about curses. One renderer (term.c) sends a canvas to
 * ncurses; canvas_print() writes it as plain UTF-8 text for --script and the
 * tests. A cell holds one Unicode code point and a semantic role (theme.h);
 * a double-width character occupies its cell and a following cell whose ch
 * is 0. Widths come from our own small table, not the locale, so a render is
 * the same on every machine.
 */
#ifndef FL_UI_CANVAS_H
#define FL_UI_CANVAS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/util.h"

typedef struct {
	uint32_t	ch;	/* code point; 0: right half of a wide character */
	uint8_t		role;	/* ui_role */
} ui_cell;

typedef struct {
	int		 w, h;
	ui_cell		*cells;	/* (h, w) row-major */
	bool		 ascii;	/* ellipsis and glyphs in plain ASCII */
} ui_canvas;

typedef struct {
	int	x, y, w, h;
} ui_rect;

/* A pane's window onto a canvas: drawing is clipped to r, coordinates are
 * relative to its corner. */
typedef struct {
	ui_canvas	*c;
	ui_rect		 r;
} ui_view;

/* The characters panes draw with, Unicode or plain ASCII. */
typedef struct {
	const char	*spark[8];	/* sparkline levels, low to high */
	const char	*shade[5];	/* heat glyphs, empty to full */
	const char	*bar_full;	/* one full cell of a horizontal bar */
	const char	*bar_part[8];	/* [i]: i/8 of a cell (0: empty) */
	const char	*hline, *vline;
	const char	*ellipsis;
	const char	*space;		/* how a space inside a token shows */
	const char	*newline;	/* how a newline inside a token shows */
	const char	*cursor;	/* the row cursor */
	const char	*arrow;		/* before -> after */
	const char	*mark;		/* under a marked token */
} ui_glyphs;

const ui_glyphs *ui_glyphs_get(bool ascii);

ui_canvas *canvas_new(int w, int h);
void canvas_free(ui_canvas *c);
/* Resizes and clears. */
void canvas_resize(ui_canvas *c, int w, int h);
void canvas_clear(ui_canvas *c, int role);

ui_view view_of(ui_canvas *c, int x, int y, int w, int h);
/* A sub-rectangle of a view, clipped to it. */
ui_view view_sub(const ui_view *v, int x, int y, int w, int h);

/* Fills the view with spaces in role. */
void view_fill(const ui_view *v, int role);
/* Writes UTF-8 text at (x, y), at most maxw columns (maxw < 0: to the
 * view's right edge); text that does not fit ends in an ellipsis. Control
 * characters and invalid bytes are replaced. Returns the columns written. */
int view_put(const ui_view *v, int x, int y, int maxw, int role, const char *s);
int view_printf(const ui_view *v, int x, int y, int maxw, int role,
    const char *fmt, ...) FL_PRINTF(6, 7);
/* Gives n cells from (x, y) a new role, keeping their characters. */
void view_restyle(const ui_view *v, int x, int y, int n, int role);
/* A horizontal bar of frac (0..1) of w cells. */
void view_bar(const ui_view *v, const ui_glyphs *g, int x, int y, int w, double frac,
    int role);

/* Writes the canvas as text: one line per row, trailing spaces dropped. */
void canvas_print(const ui_canvas *c, FILE *f);

/* UTF-8 helpers. utf8_next decodes one code point and advances *s; invalid
 * bytes decode to U+FFFD one byte at a time. */
uint32_t utf8_next(const char **s);
int ui_char_width(uint32_t cp);		/* 0, 1 or 2 */
int ui_text_width(const char *s);

#endif
