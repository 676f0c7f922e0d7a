/* plot.c - figures with cairo. See plot.h. */
#include "autoconfig.h"

#include <cairo.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "plot/plot.h"

#define FONT "DejaVu Sans"

/* ---- a figure: one surface of the kind the extension names ---------- */

typedef enum { FIG_PNG, FIG_SVG, FIG_PDF } fig_kind;

typedef struct {
	cairo_surface_t	*surface;
	cairo_t		*cr;
	fig_kind	 kind;
	const char	*path;
	double		 w, h;
} fig;

int
plot_check(const char *path, char **cause)
{
	const char *dot = strrchr(path, '.');

	if (dot != NULL && (strcmp(dot, ".png") == 0 || strcmp(dot, ".svg") == 0 ||
	    strcmp(dot, ".pdf") == 0))
		return 0;
	return fl_error(cause, "%s: a figure is .png, .svg or .pdf (the extension "
	    "picks the format)", path);
}

static int
fig_open(fig *f, const char *path, double w, double h, char **cause)
{
	const char *dot = strrchr(path, '.');

	memset(f, 0, sizeof *f);
	f->path = path;
	f->w = w;
	f->h = h;
	if (dot != NULL && strcmp(dot, ".png") == 0) {
		f->kind = FIG_PNG;
		/* twice the points in pixels: sharp on a page and a screen */
		f->surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)(2 * w),
		    (int)(2 * h));
	} else if (dot != NULL && strcmp(dot, ".svg") == 0) {
		f->kind = FIG_SVG;
		f->surface = cairo_svg_surface_create(path, w, h);
	} else if (dot != NULL && strcmp(dot, ".pdf") == 0) {
		f->kind = FIG_PDF;
		f->surface = cairo_pdf_surface_create(path, w, h);
	} else
		return fl_error(cause, "%s: a figure is .png, .svg or .pdf (the extension "
		    "picks the format)", path);
	if (cairo_surface_status(f->surface) != CAIRO_STATUS_SUCCESS) {
		int rc = fl_error(cause, "%s: cannot create the figure: %s", path,
		    cairo_status_to_string(cairo_surface_status(f->surface)));

		cairo_surface_destroy(f->surface);
		return rc;
	}
	f->cr = cairo_create(f->surface);
	if (f->kind == FIG_PNG)
		cairo_scale(f->cr, 2, 2);
	cairo_set_source_rgb(f->cr, 1, 1, 1);
	cairo_paint(f->cr);
	cairo_select_font_face(f->cr, FONT, CAIRO_FONT_SLANT_NORMAL,
	    CAIRO_FONT_WEIGHT_NORMAL);
	return 0;
}

static int
fig_close(fig *f, char **cause)
{
	cairo_status_t st;

	cairo_destroy(f->cr);
	cairo_surface_flush(f->surface);
	if (f->kind == FIG_PNG)
		st = cairo_surface_write_to_png(f->surface, f->path);
	else {
		cairo_surface_finish(f->surface);
		st = cairo_surface_status(f->surface);
	}
	cairo_surface_destroy(f->surface);
	if (st != CAIRO_STATUS_SUCCESS)
		return fl_error(cause, "%s: cannot write the figure: %s", f->path,
		    cairo_status_to_string(st));
	return 0;
}

/* Text at (x, y) on the baseline; align 0 left, 0.5 centred, 1 right.
 * Any bytes are drawn: cairo needs UTF-8, so invalid ones become U+FFFD. */
static void
text(cairo_t *cr, double x, double y, double align, double size, bool bold,
    const char *s)
{
	char *u = fl_utf8_text(s, strlen(s));
	cairo_text_extents_t e;

	cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, bold ?
	    CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, size);
	cairo_text_extents(cr, u, &e);
	cairo_move_to(cr, x - align * e.x_advance, y);
	cairo_show_text(cr, u);
	free(u);
}

/* Text wrapped at width w from (x, y), line by line; returns the baseline
 * of the last line. */
static double
text_wrapped(cairo_t *cr, double x, double y, double w, double size, const char *s)
{
	char *u = fl_utf8_text(s, strlen(s)), *line = xcalloc(strlen(s) * 3 + 2, 1);
	const char *p = u;

	cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, size);
	while (*p != '\0') {
		const char *end = p, *q = p;
		cairo_text_extents_t e;

		/* the most words that fit */
		for (;;) {
			while (*q == ' ')
				q++;
			while (*q != '\0' && *q != ' ')
				q++;
			memcpy(line, p, (size_t)(q - p));
			line[q - p] = '\0';
			cairo_text_extents(cr, line, &e);
			if (e.x_advance > w && end != p)
				break;
			end = q;
			if (*q == '\0' || e.x_advance > w)
				break;
		}
		memcpy(line, p, (size_t)(end - p));
		line[end - p] = '\0';
		cairo_move_to(cr, x, y);
		cairo_show_text(cr, line);
		p = end;
		while (*p == ' ')
			p++;
		if (*p != '\0')
			y += size * 1.35;
	}
	free(line);
	free(u);
	return y;
}

static void
rgb(cairo_t *cr, unsigned c)
{
	cairo_set_source_rgb(cr, (c >> 16 & 255) / 255.0, (c >> 8 & 255) / 255.0,
	    (c & 255) / 255.0);
}

/* A light grey horizontal grid line from x0 to x1 at y; leaves the source
 * black for the tick label after it. */
static void
grid_line(cairo_t *cr, double x0, double x1, double y)
{
	cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
	cairo_set_line_width(cr, 0.5);
	cairo_move_to(cr, x0, y);
	cairo_line_to(cr, x1, y);
	cairo_stroke(cr);
	rgb(cr, 0x000000);
}

/* A colour between anchors spread evenly over t in 0..1. */
static void
ramp(cairo_t *cr, const unsigned *anchor, int n, double t)
{
	double p, f;
	int i;
	unsigned a, b;

	if (isnan(t))
		t = 0;
	t = t < 0 ? 0 : t > 1 ? 1 : t;
	p = t * (n - 1);
	i = (int)p >= n - 1 ? n - 2 : (int)p;
	f = p - i;
	a = anchor[i];
	b = anchor[i + 1];
	cairo_set_source_rgb(cr,
	    ((a >> 16 & 255) * (1 - f) + (b >> 16 & 255) * f) / 255.0,
	    ((a >> 8 & 255) * (1 - f) + (b >> 8 & 255) * f) / 255.0,
	    ((a & 255) * (1 - f) + (b & 255) * f) / 255.0);
}

/* Lightness falls monotonically (viridis, reversed to run light to dark). */
static const unsigned seq_map[] = { 0xfde725, 0x5ec962, 0x21918c, 0x3b528b, 0x440154 };
/* Lightness highest at zero, falling to both ends; negative pink, positive
 * green as in the explorer's themes (PiYG). */
static const unsigned div_map[] = { 0x8e0152, 0xde77ae, 0xf7f7f7, 0x7fbc41, 0x276419 };

static void
axis_line(cairo_t *cr, double x0, double y0, double x1, double y1)
{
	rgb(cr, 0x000000);
	cairo_set_line_width(cr, 0.8);
	cairo_move_to(cr, x0, y0);
	cairo_line_to(cr, x1, y1);
	cairo_stroke(cr);
}

/* The colour bar of a map at (x, y), w x h: the top is scale, the bottom
 * -scale (is_signed) or 0. */
static void
colour_bar(cairo_t *cr, double x, double y, double w, double h, bool is_signed,
    double scale)
{
	char buf[32];

	for (int i = 0; i < 100; i++) {
		ramp(cr, is_signed ? div_map : seq_map, 5, 1 - i / 99.0);
		cairo_rectangle(cr, x, y + h * i / 100, w, h / 100 + 0.5);
		cairo_fill(cr);
	}
	rgb(cr, 0x000000);
	cairo_set_line_width(cr, 0.6);
	cairo_rectangle(cr, x, y, w, h);
	cairo_stroke(cr);
	snprintf(buf, sizeof buf, is_signed ? "%+.3g" : "%.3g", scale);
	text(cr, x + w + 4, y + 8, 0, 8.5, false, buf);
	snprintf(buf, sizeof buf, is_signed ? "%+.3g" : "0", -scale);
	text(cr, x + w + 4, y + h, 0, 8.5, false, buf);
}

/* The height a wrapped text takes from baseline y, measured off the page. */
static double
text_wrapped_end(double x, double y, double w, double size, const char *s)
{
	cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_A8, 1, 1);
	cairo_t *pc = cairo_create(probe);
	double end = text_wrapped(pc, x, y, w, size, s);

	cairo_destroy(pc);
	cairo_surface_destroy(probe);
	return end;
}

/* The widest of n labels at size, measured off the page. */
static double
text_widest(const char *const *label, int n, double size, bool bold)
{
	cairo_surface_t *probe = cairo_image_surface_create(CAIRO_FORMAT_A8, 1, 1);
	cairo_t *pc = cairo_create(probe);
	double w = 0;

	cairo_select_font_face(pc, FONT, CAIRO_FONT_SLANT_NORMAL, bold ?
	    CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(pc, size);
	for (int i = 0; i < n; i++) {
		char *u = fl_utf8_text(label[i], strlen(label[i]));
		cairo_text_extents_t e;

		cairo_text_extents(pc, u, &e);
		w = fmax(w, e.x_advance);
		free(u);
	}
	cairo_destroy(pc);
	cairo_surface_destroy(probe);
	return w;
}

/* ---- the lens ------------------------------------------------------- */

int
plot_lens(const char *path, const char *title, const char *answer, int L,
    const double *prob, const int *rank, char **cause)
{
	const double W = 640, Hh = 460, left = 64, right = 24, top = 52;
	const double ph = 150, gap = 56, pw = W - left - right;
	int n = 2 * L + 1, max_rank = 1;
	double *xs = xcalloc((size_t)n, sizeof *xs), *py = xcalloc((size_t)n, sizeof *py);
	int *ry = xcalloc((size_t)n, sizeof *ry);
	char buf[128];
	fig f;
	cairo_t *cr;

	if (fig_open(&f, path, W, Hh, cause) != 0) {
		free(xs);
		free(py);
		free(ry);
		return -1;
	}
	cr = f.cr;
	/* the path through the stream: pre 0, mid 0, post 0 = pre 1, mid 1, ... */
	for (int l = 0, k = 0; l < L; l++) {
		if (l == 0) {
			py[k] = prob[l * PLOT_STREAMS + PLOT_RESID_PRE];
			ry[k++] = rank[l * PLOT_STREAMS + PLOT_RESID_PRE];
		}
		py[k] = prob[l * PLOT_STREAMS + PLOT_RESID_MID];
		ry[k++] = rank[l * PLOT_STREAMS + PLOT_RESID_MID];
		py[k] = prob[l * PLOT_STREAMS + PLOT_RESID_POST];
		ry[k++] = rank[l * PLOT_STREAMS + PLOT_RESID_POST];
	}
	for (int k = 0; k < n; k++) {
		xs[k] = left + pw * k / (n - 1 > 0 ? n - 1 : 1);
		if (ry[k] > max_rank)
			max_rank = ry[k];
	}
	rgb(cr, 0x000000);
	text(cr, left, 22, 0, 13, true, title);
	snprintf(buf, sizeof buf, "the answer %s at the last position, by layer (logit lens)",
	    answer);
	text(cr, left, 40, 0, 10.5, false, buf);

	for (int panel = 0; panel < 2; panel++) {
		double y0 = top + panel * (ph + gap), y1 = y0 + ph;
		double lmax = log10((double)(max_rank > 10 ? max_rank : 10));

		/* frame, ticks and grid */
		for (int t = 0; t <= 4; t++) {
			double y = y1 - ph * t / 4;

			grid_line(cr, left, left + pw, y);
			if (panel == 0)
				snprintf(buf, sizeof buf, "%.0f%%", 25.0 * t);
			else
				snprintf(buf, sizeof buf, "%.0f", pow(10, lmax * (4 - t) / 4));
			text(cr, left - 6, y + 3.5, 1, 9, false, buf);
		}
		axis_line(cr, left, y0, left, y1);
		axis_line(cr, left, y1, left + pw, y1);
		rgb(cr, 0x000000);
		cairo_save(cr);
		cairo_translate(cr, 16, (y0 + y1) / 2);
		cairo_rotate(cr, -M_PI / 2);
		text(cr, 0, 0, 0.5, 10, false, panel == 0 ? "P(answer)" : "rank (log)");
		cairo_restore(cr);
		for (int l = 0; l <= L; l++) {
			double x = xs[2 * l];

			snprintf(buf, sizeof buf, "%d", l);
			axis_line(cr, x, y1, x, y1 + 3);
			text(cr, x, y1 + 14, 0.5, 9, false, buf);
		}
		text(cr, left + pw / 2, y1 + 28, 0.5, 9.5, false, panel == 0 ?
		    "resid_pre of layer (dots), resid_mid (triangles) between" :
		    "layer (rank 1 at the top)");
		/* the line, then its marks */
		rgb(cr, panel == 0 ? 0x1f4e9a : 0x8e0152);
		cairo_set_line_width(cr, 1.6);
		if (panel == 1) {
			double dash[] = { 5, 3 };

			cairo_set_dash(cr, dash, 2, 0);
		}
		for (int k = 0; k < n; k++) {
			double y = panel == 0 ? y1 - ph * (isnan(py[k]) ? 0 : py[k]) :
			    y0 + ph * log10((double)(ry[k] > 0 ? ry[k] : 1)) / lmax;

			if (k == 0)
				cairo_move_to(cr, xs[k], y);
			else
				cairo_line_to(cr, xs[k], y);
		}
		cairo_stroke(cr);
		cairo_set_dash(cr, NULL, 0, 0);
		for (int k = 0; k < n; k++) {
			double y = panel == 0 ? y1 - ph * (isnan(py[k]) ? 0 : py[k]) :
			    y0 + ph * log10((double)(ry[k] > 0 ? ry[k] : 1)) / lmax;

			if (k % 2 == 0)
				cairo_arc(cr, xs[k], y, 3, 0, 2 * M_PI);
			else {
				cairo_move_to(cr, xs[k], y - 3.5);
				cairo_line_to(cr, xs[k] + 3.2, y + 2.5);
				cairo_line_to(cr, xs[k] - 3.2, y + 2.5);
				cairo_close_path(cr);
			}
			cairo_fill(cr);
		}
	}
	free(xs);
	free(py);
	free(ry);
	return fig_close(&f, cause);
}

/* ---- a layer x head map --------------------------------------------- */

int
plot_heads(const char *path, const char *title, const char *metric,
    const double *v, int L, int H, bool is_signed, const bool *mark, char **cause)
{
	double cell = H <= 12 ? 44 : H <= 25 ? 26 : 16;
	double left = 64, top, bar = 14, sub_end;
	double W = left + cell * H + 96, Hh;
	double lo = 0, hi = 0, scale;
	bool values = cell >= 40;
	char buf[64];
	fig f;
	cairo_t *cr;

	if (W < 460)
		W = 460;
	for (int i = 0; i < L * H; i++) {
		if (isnan(v[i]))
			continue;
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	scale = is_signed ? fmax(fabs(lo), fabs(hi)) : hi;
	if (scale <= 0)
		scale = 1;
	/* the subtitle's height, measured before the page is made */
	sub_end = text_wrapped_end(left, 40, W - left - 16, 10, metric);
	top = sub_end + 44;
	Hh = top + cell * L + 48;
	if (fig_open(&f, path, W, Hh, cause) != 0)
		return -1;
	cr = f.cr;
	rgb(cr, 0x000000);
	text(cr, left, 22, 0, 13, true, title);
	text_wrapped(cr, left, 40, W - left - 16, 10, metric);
	text(cr, left + cell * H / 2, top - 24, 0.5, 9.5, false, "head");
	cairo_save(cr);
	cairo_translate(cr, 18, top + cell * L / 2);
	cairo_rotate(cr, -M_PI / 2);
	text(cr, 0, 0, 0.5, 9.5, false, "layer");
	cairo_restore(cr);
	for (int h = 0; h < H; h++) {
		snprintf(buf, sizeof buf, "%d", h);
		if (cell >= 20 || h % 4 == 0)
			text(cr, left + cell * (h + 0.5), top - 7, 0.5, 8.5, false, buf);
	}
	for (int l = 0; l < L; l++) {
		rgb(cr, 0x000000);
		snprintf(buf, sizeof buf, "%d", l);
		text(cr, left - 8, top + cell * (l + 0.5) + 3, 1, 8.5, false, buf);
		for (int h = 0; h < H; h++) {
			double x = left + cell * h, y = top + cell * l, val = v[l * H + h];
			double t = is_signed ? 0.5 + 0.5 * val / scale : val / scale;

			if (isnan(val))
				cairo_set_source_rgb(cr, 1, 1, 1);
			else
				ramp(cr, is_signed ? div_map : seq_map, 5, t);
			cairo_rectangle(cr, x, y, cell, cell);
			cairo_fill(cr);
			if (values && !isnan(val)) {
				/* dark text on light cells, light on dark */
				bool dark = is_signed ? fabs(val) / scale > 0.6 : t > 0.45;

				cairo_set_source_rgb(cr, dark, dark, dark);
				snprintf(buf, sizeof buf, is_signed ? "%+.2f" : "%.2f", val);
				text(cr, x + cell / 2, y + cell / 2 + 3.5, 0.5, 9, false, buf);
			}
			if (mark != NULL && mark[l * H + h]) {
				rgb(cr, 0x000000);
				cairo_set_line_width(cr, 2);
				cairo_rectangle(cr, x + 1.5, y + 1.5, cell - 3, cell - 3);
				cairo_stroke(cr);
			}
		}
	}
	colour_bar(cr, left + cell * H + 24, top, bar, fmin(cell * L, 240), is_signed,
	    scale);
	if (mark != NULL) {
		rgb(cr, 0x000000);
		text(cr, left, top + cell * L + 22, 0, 9, false,
		    "framed: mover heads (attend to the subject and copy it)");
	}
	return fig_close(&f, cause);
}

/* ---- the mitigation grid -------------------------------------------- */

int
plot_eval(const char *path, const char *title, int n, const int *shots,
    int n_cond, const char *const *cond, const double *prob, char **cause)
{
	/* fills that differ in lightness, so that grey printing keeps them */
	static const unsigned fill[] = { 0xd9d9d9, 0x969696, 0x525252, 0x111111 };
	const double left = 64, top = 60, ph = 240, groupw = 64 + 40 * n_cond;
	double W = left + groupw * n + 150, Hh = top + ph + 64, bw = 36;
	char buf[64];
	fig f;
	cairo_t *cr;

	if (fig_open(&f, path, W, Hh, cause) != 0)
		return -1;
	cr = f.cr;
	rgb(cr, 0x000000);
	text(cr, left, 22, 0, 13, true, title);
	text(cr, left, 40, 0, 10.5, false,
	    "mean P(answer): baseline and the two mitigations, alone and together");
	for (int t = 0; t <= 4; t++) {
		double y = top + ph - ph * t / 4;

		grid_line(cr, left, left + groupw * n, y);
		snprintf(buf, sizeof buf, "%.0f%%", 25.0 * t);
		text(cr, left - 6, y + 3.5, 1, 9, false, buf);
	}
	axis_line(cr, left, top, left, top + ph);
	axis_line(cr, left, top + ph, left + groupw * n, top + ph);
	for (int s = 0; s < n; s++) {
		double gx = left + groupw * s + 32;

		for (int c = 0; c < n_cond; c++) {
			double p = prob[s * n_cond + c], x = gx + 40 * c;
			double hgt = ph * (isnan(p) ? 0 : p);

			rgb(cr, fill[c % 4]);
			cairo_rectangle(cr, x, top + ph - hgt, bw, hgt);
			cairo_fill_preserve(cr);
			rgb(cr, 0x000000);
			cairo_set_line_width(cr, 0.6);
			cairo_stroke(cr);
			snprintf(buf, sizeof buf, "%.1f%%", 100 * p);
			text(cr, x + bw / 2, top + ph - hgt - 4, 0.5, 8.5, false, buf);
		}
		snprintf(buf, sizeof buf, shots[s] == 0 ? "zero-shot" : "%d-shot", shots[s]);
		text(cr, gx + 40 * n_cond / 2.0 - 2, top + ph + 16, 0.5, 10, false, buf);
	}
	for (int c = 0; c < n_cond; c++) {
		double lx = left + groupw * n + 20, ly = top + 16 * c;

		rgb(cr, fill[c % 4]);
		cairo_rectangle(cr, lx, ly, 11, 11);
		cairo_fill_preserve(cr);
		rgb(cr, 0x000000);
		cairo_set_line_width(cr, 0.6);
		cairo_stroke(cr);
		text(cr, lx + 16, ly + 9.5, 0, 9.5, false, cond[c]);
	}
	return fig_close(&f, cause);
}

/* ---- a layer x position map ----------------------------------------- */

int
plot_trace(const char *path, const plot_map *m, char **cause)
{
	const int L = m->n_layer, R = m->n_row;
	const double cellw = L <= 16 ? 34 : L <= 32 ? 16 : 11, cellh = 18, bar = 14;
	const double label_size = 9, tick_size = fmin(8.5, cellw * 0.7);
	double lo = 0, hi = 0, scale, left, top, W, Hh, mapw = cellw * L, maph = cellh * R;
	double barh = fmax(maph, 90), y_end;
	bool values = cellw >= 28;
	int digits;
	char buf[64], **label = xcalloc((size_t)R + 1, sizeof *label);
	fig f;
	cairo_t *cr;

	for (int i = 0; i < L * R; i++) {
		if (isnan(m->v[i]))
			continue;
		lo = m->v[i] < lo ? m->v[i] : lo;
		hi = m->v[i] > hi ? m->v[i] : hi;
	}
	scale = m->is_signed ? fmax(fabs(lo), fabs(hi)) : hi;
	if (scale <= 0)
		scale = 1;
	/* the decimals that show the scale's first two digits, 2 to 4 */
	digits = 1 - (int)floor(log10(scale));
	digits = digits < 2 ? 2 : digits > 4 ? 4 : digits;
	for (int r = 0; r < R; r++)
		label[r] = xasprintf("%s%s", m->rows[r], m->mark != NULL && m->mark[r] ?
		    " *" : "");
	left = 28 + text_widest((const char *const *)label, R, label_size, true) + 8;
	W = fmax(left + mapw + 24 + bar + 56, 480);
	top = text_wrapped_end(24, 40, W - 40, 10, m->subtitle) + 30;
	y_end = text_wrapped_end(24, top + fmax(maph, barh) + 48, W - 40, 9, m->legend);
	Hh = y_end + 16;
	if (fig_open(&f, path, W, Hh, cause) != 0)
		goto fail;
	cr = f.cr;
	rgb(cr, 0x000000);
	text(cr, 24, 22, 0, 13, true, m->title);
	text_wrapped(cr, 24, 40, W - 40, 10, m->subtitle);
	text(cr, left - 8, top - 8, 1, 9.5, false, m->rows_name);
	for (int r = 0; r < R; r++) {
		bool mk = m->mark != NULL && m->mark[r];

		rgb(cr, 0x000000);
		text(cr, left - 8, top + cellh * (r + 0.5) + 3.2, 1, label_size, mk, label[r]);
		for (int l = 0; l < L; l++) {
			double x = left + cellw * l, y = top + cellh * r;
			double val = m->v[(size_t)l * R + r];
			double t = m->is_signed ? 0.5 + 0.5 * val / scale : val / scale;

			if (isnan(val)) {
				/* no value: a light hatch, unlike any colour of the map */
				cairo_set_source_rgb(cr, 1, 1, 1);
				cairo_rectangle(cr, x, y, cellw, cellh);
				cairo_fill(cr);
				cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
				cairo_set_line_width(cr, 0.5);
				cairo_move_to(cr, x, y + cellh);
				cairo_line_to(cr, x + cellw, y);
				cairo_stroke(cr);
				continue;
			}
			ramp(cr, m->is_signed ? div_map : seq_map, 5, t);
			cairo_rectangle(cr, x, y, cellw, cellh);
			cairo_fill(cr);
			if (values) {
				bool dark = m->is_signed ? fabs(val) / scale > 0.6 : t > 0.45;

				cairo_set_source_rgb(cr, dark, dark, dark);
				snprintf(buf, sizeof buf, m->is_signed ? "%+.*f" : "%.*f", digits,
				    val);
				text(cr, x + cellw / 2, y + cellh / 2 + 3, 0.5, digits > 3 ? 6.5 :
				    7.5, false, buf);
			}
		}
		if (mk) {
			/* the subject's rows framed, so the mark survives any colour */
			rgb(cr, 0x000000);
			cairo_set_line_width(cr, 1.2);
			cairo_rectangle(cr, left, top + cellh * r, mapw, cellh);
			cairo_stroke(cr);
		}
	}
	axis_line(cr, left, top + maph, left + mapw, top + maph);
	for (int l = 0; l < L; l++) {
		double x = left + cellw * (l + 0.5);

		snprintf(buf, sizeof buf, "%d", l);
		axis_line(cr, x, top + maph, x, top + maph + 3);
		text(cr, x, top + maph + 13, 0.5, tick_size, false, buf);
	}
	snprintf(buf, sizeof buf, "layer (%d)", L);
	text(cr, left + mapw / 2, top + maph + 28, 0.5, 9.5, false, buf);
	colour_bar(cr, left + mapw + 24, top, bar, barh, m->is_signed, scale);
	rgb(cr, 0x000000);
	text_wrapped(cr, 24, top + fmax(maph, barh) + 48, W - 40, 9, m->legend);
	for (int r = 0; r < R; r++)
		free(label[r]);
	free(label);
	return fig_close(&f, cause);
fail:
	for (int r = 0; r < R; r++)
		free(label[r]);
	free(label);
	return -1;
}

/* ---- the knockout curve --------------------------------------------- */

int
plot_knockout(const char *path, const char *title, const char *subtitle, int L,
    const double *p, double p_clean, char **cause)
{
	const double W = 560, left = 64, right = 24, ph = 220;
	double pw = W - left - right, top, Hh, ymax = p_clean, step;
	char buf[64];
	fig f;
	cairo_t *cr;

	for (int l = 0; l < L; l++)
		if (!isnan(p[l]) && p[l] > ymax)
			ymax = p[l];
	/* a round top: 1, 2 or 5 times a power of ten, in four ticks */
	step = ymax > 0 ? pow(10, floor(log10(ymax / 4))) : 0.25;
	step = ymax / 4 <= step ? step : ymax / 4 <= 2 * step ? 2 * step :
	    ymax / 4 <= 5 * step ? 5 * step : 10 * step;
	ymax = 4 * step;
	top = text_wrapped_end(left, 40, W - left - right, 10, subtitle) + 24;
	Hh = top + ph + 56;
	if (fig_open(&f, path, W, Hh, cause) != 0)
		return -1;
	cr = f.cr;
	rgb(cr, 0x000000);
	text(cr, left, 22, 0, 13, true, title);
	text_wrapped(cr, left, 40, W - left - right, 10, subtitle);
	for (int t = 0; t <= 4; t++) {
		double y = top + ph - ph * t / 4;

		grid_line(cr, left, left + pw, y);
		snprintf(buf, sizeof buf, "%.3g", step * t);
		text(cr, left - 6, y + 3.5, 1, 9, false, buf);
	}
	axis_line(cr, left, top, left, top + ph);
	axis_line(cr, left, top + ph, left + pw, top + ph);
	cairo_save(cr);
	cairo_translate(cr, 16, top + ph / 2);
	cairo_rotate(cr, -M_PI / 2);
	text(cr, 0, 0, 0.5, 10, false, "P(answer)");
	cairo_restore(cr);
	/* the clean run: a dashed line across, named at its end */
	{
		double y = top + ph - ph * p_clean / ymax, dash[] = { 4, 3 };

		rgb(cr, 0x525252);
		cairo_set_line_width(cr, 1);
		cairo_set_dash(cr, dash, 2, 0);
		cairo_move_to(cr, left, y);
		cairo_line_to(cr, left + pw, y);
		cairo_stroke(cr);
		cairo_set_dash(cr, NULL, 0, 0);
		text(cr, left + pw, y - 4, 1, 8.5, false, "clean");
	}
	rgb(cr, 0x1f4e9a);
	cairo_set_line_width(cr, 1.6);
	for (int l = 0, first = 1; l < L; l++) {
		double x = left + pw * (l + 0.5) / L, y = top + ph - ph * p[l] / ymax;

		if (isnan(p[l]))
			continue;
		if (first)
			cairo_move_to(cr, x, y);
		else
			cairo_line_to(cr, x, y);
		first = 0;
	}
	cairo_stroke(cr);
	for (int l = 0; l < L; l++) {
		double x = left + pw * (l + 0.5) / L, y = top + ph - ph * p[l] / ymax;

		rgb(cr, 0x1f4e9a);
		if (!isnan(p[l])) {
			cairo_arc(cr, x, y, 3, 0, 2 * M_PI);
			cairo_fill(cr);
		}
		rgb(cr, 0x000000);
		snprintf(buf, sizeof buf, "%d", l);
		axis_line(cr, x, top + ph, x, top + ph + 3);
		if (L <= 24 || l % 2 == 0)
			text(cr, x, top + ph + 14, 0.5, 9, false, buf);
	}
	text(cr, left + pw / 2, top + ph + 30, 0.5, 9.5, false,
	    "first layer of the blocked window");
	return fig_close(&f, cause);
}
