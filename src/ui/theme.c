/* theme.c - see theme.h. */
#include "autoconfig.h"

#include "theme.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/paths.h"
#include "base/util.h"


static const struct {
	const char	*name, *fg, *bg, *what;
	unsigned	 attrs, mono;
} roles[] = {
#define X(e, n, fg, bg, a, m, w) { n, fg, bg, w, a, m },
	UI_ROLES(X)
#undef X
};

const char *
role_name(ui_role r)
{
	return r < UI_ROLE_COUNT ? roles[r].name : "?";
}

const char *
role_what(ui_role r)
{
	return r < UI_ROLE_COUNT ? roles[r].what : "?";
}

unsigned
role_mono_attrs(ui_role r)
{
	return r < UI_ROLE_COUNT ? roles[r].mono : 0;
}

int
role_parse(const char *name)
{
	for (int i = 0; i < UI_ROLE_COUNT; i++)
		if (strcmp(roles[i].name, name) == 0)
			return i;
	return -1;
}

static const struct {
	const char	*name;
	int		 index;
} color_names[] = {
	{ "black", 0 }, { "red", 1 }, { "green", 2 }, { "yellow", 3 },
	{ "blue", 4 }, { "magenta", 5 }, { "cyan", 6 }, { "white", 7 },
	{ "bright-black", 8 }, { "bright-red", 9 }, { "bright-green", 10 },
	{ "bright-yellow", 11 }, { "bright-blue", 12 }, { "bright-magenta", 13 },
	{ "bright-cyan", 14 }, { "bright-white", 15 },
};

static int
color_parse(const char *s, ui_color *c)
{
	char *end;

	if (strcmp(s, "default") == 0) {
		c->kind = UI_COLOR_DEFAULT;
		c->v = 0;
		return 0;
	}
	if (s[0] == '#') {
		unsigned long v;

		if (strlen(s) != 7)
			return -1;
		v = strtoul(s + 1, &end, 16);
		if (*end != '\0')
			return -1;
		c->kind = UI_COLOR_RGB;
		c->v = (uint32_t)v;
		return 0;
	}
	if (isdigit((unsigned char)s[0])) {
		long v = strtol(s, &end, 10);

		if (*end != '\0' || v < 0 || v > 255)
			return -1;
		c->kind = UI_COLOR_INDEX;
		c->v = (uint32_t)v;
		return 0;
	}
	for (size_t i = 0; i < sizeof color_names / sizeof color_names[0]; i++)
		if (strcmp(s, color_names[i].name) == 0) {
			c->kind = UI_COLOR_INDEX;
			c->v = (uint32_t)color_names[i].index;
			return 0;
		}
	return -1;
}

static int
attrs_parse(const char *s, unsigned *out)
{
	char buf[128], *tok, *save = NULL;

	*out = 0;
	if (strcmp(s, "-") == 0 || strcmp(s, "none") == 0)
		return 0;
	snprintf(buf, sizeof buf, "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "bold") == 0) *out |= UI_ATTR_BOLD;
		else if (strcmp(tok, "underline") == 0) *out |= UI_ATTR_UNDERLINE;
		else if (strcmp(tok, "reverse") == 0) *out |= UI_ATTR_REVERSE;
		else if (strcmp(tok, "dim") == 0) *out |= UI_ATTR_DIM;
		else if (strcmp(tok, "italic") == 0) *out |= UI_ATTR_ITALIC;
		else return -1;
	}
	return 0;
}

void
theme_default(ui_theme *t)
{
	memset(t, 0, sizeof *t);
	snprintf(t->name, sizeof t->name, "dark");
	for (int i = 0; i < UI_ROLE_COUNT; i++) {
		color_parse(roles[i].fg, &t->style[i].fg);
		color_parse(roles[i].bg, &t->style[i].bg);
		t->style[i].attrs = roles[i].attrs;
	}
}

int
theme_parse(ui_theme *t, const char *text, const char *label, char **cause)
{
	const char *p = text;
	int lineno = 0;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		char line[512], *f[5], *save = NULL;
		int nf = 0, r;
		ui_style st;

		lineno++;
		if (n >= sizeof line)
			return fl_error(cause, "%s:%d: line longer than %zu bytes", label,
			    lineno, sizeof line - 1);
		memcpy(line, p, n);
		line[n] = '\0';
		p += n + (nl != NULL);
		/* A comment starts at a word "#" or "#..." that is not a colour. */
		for (char *tok = strtok_r(line, " \t\r", &save); tok != NULL && nf < 5;
		    tok = strtok_r(NULL, " \t\r", &save)) {
			if (tok[0] == '#' && (strlen(tok) != 7 || !isxdigit((unsigned char)tok[1])))
				break;
			f[nf++] = tok;
		}
		if (nf == 0)
			continue;
		if (strcmp(f[0], "name") == 0) {
			if (nf != 2)
				return fl_error(cause, "%s:%d: 'name' takes one word", label, lineno);
			snprintf(t->name, sizeof t->name, "%s", f[1]);
			continue;
		}
		if ((r = role_parse(f[0])) < 0)
			return fl_error(cause, "%s:%d: unknown role '%s' (see factlens(1), "
			    "THEMES, for the roles)", label, lineno, f[0]);
		if (nf < 2 || nf > 4)
			return fl_error(cause, "%s:%d: expected 'role FG [BG] [ATTRS]'", label,
			    lineno);
		st = t->style[r];
		st.bg.kind = UI_COLOR_DEFAULT;
		st.attrs = 0;
		if (color_parse(f[1], &st.fg) != 0)
			return fl_error(cause, "%s:%d: role '%s': bad colour '%s' (expected "
			    "#rrggbb, 0-255, a colour name or default)", label, lineno, f[0], f[1]);
		if (nf >= 3 && color_parse(f[2], &st.bg) != 0) {
			if (nf == 3 && attrs_parse(f[2], &st.attrs) == 0)
				;
			else
				return fl_error(cause, "%s:%d: role '%s': bad background '%s'",
				    label, lineno, f[0], f[2]);
		}
		if (nf == 4 && attrs_parse(f[3], &st.attrs) != 0)
			return fl_error(cause, "%s:%d: role '%s': bad attributes '%s' "
			    "(expected bold,underline,reverse,dim,italic)", label, lineno,
			    f[0], f[3]);
		t->style[r] = st;
	}
	return 0;
}

const char *const *
theme_dirs(void)
{
	static char *user, *bundled;
	static const char *dirs[3];
	char *config;
	int n = 0;

	if (bundled == NULL) {
		if ((config = fl_config_dir()) != NULL) {
			user = fl_path_join(config, "themes");
			free(config);
		}
		bundled = fl_theme_dir();
	}
	if (user != NULL)
		dirs[n++] = user;
	dirs[n++] = bundled;
	dirs[n] = NULL;
	return dirs;
}

int
theme_load(ui_theme *t, const char *name, char **cause)
{
	const char *const *dirs = theme_dirs();
	char *path = NULL, *text, *label;
	size_t len;
	int rc;

	if (strchr(name, '/') != NULL)
		path = xstrdup(name);
	else {
		for (int i = 0; dirs[i] != NULL && path == NULL; i++) {
			char *p = xasprintf("%s/%s.theme", dirs[i], name);

			if (fl_file_exists(p))
				path = p;
			else
				free(p);
		}
		if (path == NULL) {
			if (strcmp(name, "dark") == 0) {
				/* Always there, even with no theme files installed. */
				theme_default(t);
				return 0;
			}
			return fl_error(cause, "no theme '%s' (looked for %s.theme in %s%s%s)",
			    name, name, dirs[0], dirs[1] != NULL ? " and " : "",
			    dirs[1] != NULL ? dirs[1] : "");
		}
	}
	if ((text = fl_read_file(path, &len, 1 << 20, cause)) == NULL) {
		free(path);
		return -1;
	}
	if (memchr(text, '\0', len) != NULL) {
		rc = fl_error(cause, "%s: a NUL byte at offset %zu: a theme is a text file",
		    path, (size_t)((char *)memchr(text, '\0', len) - text));
		free(text);
		free(path);
		return rc;
	}
	theme_default(t);
	label = path;
	{
		const char *base = strrchr(path, '/');
		const char *dot;

		base = base != NULL ? base + 1 : path;
		dot = strrchr(base, '.');
		snprintf(t->name, sizeof t->name, "%.*s",
		    (int)(dot != NULL ? (size_t)(dot - base) : strlen(base)), base);
	}
	rc = theme_parse(t, text, label, cause);
	free(text);
	free(path);
	return rc;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **
theme_list(int *n)
{
	const char *const *dirs = theme_dirs();
	char **names = NULL;
	int cap = 0, k = 0, out = 0;

	names = xreallocarray(NULL, 1, sizeof *names);
	names[k++] = xstrdup("dark");
	cap = 1;
	for (int i = 0; dirs[i] != NULL; i++) {
		DIR *d = opendir(dirs[i]);
		struct dirent *e;

		if (d == NULL)
			continue;
		while ((e = readdir(d)) != NULL) {
			size_t len = strlen(e->d_name);

			if (len <= 6 || strcmp(e->d_name + len - 6, ".theme") != 0)
				continue;
			if (k == cap) {
				cap *= 2;
				names = xreallocarray(names, (size_t)cap, sizeof *names);
			}
			names[k++] = xstrndup(e->d_name, len - 6);
		}
		closedir(d);
	}
	qsort(names, (size_t)k, sizeof *names, cmp_str);
	for (int i = 0; i < k; i++) {
		if (out > 0 && strcmp(names[out - 1], names[i]) == 0) {
			free(names[i]);
			continue;
		}
		names[out++] = names[i];
	}
	*n = out;
	return names;
}

void
theme_list_free(char **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* ---- degradation -------------------------------------------------- */

static const uint32_t ansi16[16] = {
	0x000000, 0xcd0000, 0x00cd00, 0xcdcd00, 0x0000ee, 0xcd00cd, 0x00cdcd, 0xe5e5e5,
	0x7f7f7f, 0xff0000, 0x00ff00, 0xffff00, 0x5c5cff, 0xff00ff, 0x00ffff, 0xffffff,
};

static uint32_t
index_rgb(int i)
{
	static const int level[6] = { 0, 95, 135, 175, 215, 255 };

	if (i < 16)
		return ansi16[i];
	if (i < 232) {
		i -= 16;
		return (uint32_t)(level[i / 36] << 16 | level[i / 6 % 6] << 8 | level[i % 6]);
	}
	i = 8 + 10 * (i - 232);
	return (uint32_t)(i << 16 | i << 8 | i);
}

/* Squared distance, weighted for how the eye sees red, green and blue. */
static long
rgb_dist(uint32_t a, uint32_t b)
{
	long dr = (long)(a >> 16 & 255) - (long)(b >> 16 & 255);
	long dg = (long)(a >> 8 & 255) - (long)(b >> 8 & 255);
	long db = (long)(a & 255) - (long)(b & 255);

	return 3 * dr * dr + 4 * dg * dg + 2 * db * db;
}

static int
nearest(uint32_t rgb, int lo, int hi)
{
	int best = lo;
	long bd = -1;

	for (int i = lo; i < hi; i++) {
		long d = rgb_dist(rgb, index_rgb(i));

		if (bd < 0 || d < bd) {
			bd = d;
			best = i;
		}
	}
	return best;
}

static int
degrade(ui_color c, ui_depth d)
{
	if (c.kind == UI_COLOR_DEFAULT)
		return -1;
	switch (d) {
	case UI_DEPTH_TRUE:
		return (int)(c.kind == UI_COLOR_RGB ? c.v : index_rgb((int)c.v));
	case UI_DEPTH_256:
		return c.kind == UI_COLOR_INDEX ? (int)c.v : nearest(c.v, 16, 256);
	case UI_DEPTH_16:
		if (c.kind == UI_COLOR_INDEX && c.v < 16)
			return (int)c.v;
		return nearest(c.kind == UI_COLOR_RGB ? c.v : index_rgb((int)c.v), 0, 16);
	case UI_DEPTH_8:
		if (c.kind == UI_COLOR_INDEX && c.v < 16)
			return (int)(c.v & 7);
		return nearest(c.kind == UI_COLOR_RGB ? c.v : index_rgb((int)c.v), 0, 8);
	default:
		return -1;
	}
}

/* The terminal's own background, which roles with a "default" background
 * show: not known, so taken as the opposite of the normal text's colour
 * (light text: a dark background). */
static bool
theme_dark_background(const ui_theme *t)
{
	ui_color c = t->style[UI_ROLE_NORMAL].fg;
	uint32_t rgb = c.kind == UI_COLOR_RGB ? c.v : c.kind == UI_COLOR_INDEX ?
	    index_rgb((int)c.v) : 0xffffff;
	long lum = 30 * (long)(rgb >> 16 & 255) + 59 * (long)(rgb >> 8 & 255) +
	    11 * (long)(rgb & 255);

	return lum > 50 * 255;
}

void
theme_resolve(const ui_theme *t, ui_depth d, ui_term_style *out)
{
	bool dark = theme_dark_background(t);
	/* the colour number of that background at depths 8 and 16 */
	int bg_index = dark ? 0 : 7;

	for (int i = 0; i < UI_ROLE_COUNT; i++) {
		if (d == UI_DEPTH_MONO) {
			out[i].fg = out[i].bg = -1;
			out[i].attrs = roles[i].mono;
			continue;
		}
		out[i].fg = degrade(t->style[i].fg, d);
		out[i].bg = degrade(t->style[i].bg, d);
		out[i].attrs = t->style[i].attrs;
		/* Degraded too far, text would vanish into its background. */
		if (out[i].fg >= 0 && out[i].fg == out[i].bg)
			out[i].attrs |= UI_ATTR_REVERSE, out[i].bg = -1;
		/* With 8 or 16 colours a dim colour over the terminal's own
		 * background (a border, a near-zero heat cell) can land on that
		 * background's colour: draw it in the dimmest colour that shows. */
		if ((d == UI_DEPTH_8 || d == UI_DEPTH_16) && out[i].bg < 0 &&
		    (out[i].fg == bg_index || (d == UI_DEPTH_16 && !dark && out[i].fg == 15))) {
			if (d == UI_DEPTH_16)
				out[i].fg = 8;
			else {
				out[i].fg = dark ? 7 : 0;
				out[i].attrs |= UI_ATTR_DIM;
			}
		}
	}
}

int
depth_parse(const char *s)
{
	if (strcmp(s, "mono") == 0 || strcmp(s, "0") == 0 || strcmp(s, "2") == 0)
		return UI_DEPTH_MONO;
	if (strcmp(s, "8") == 0)
		return UI_DEPTH_8;
	if (strcmp(s, "16") == 0)
		return UI_DEPTH_16;
	if (strcmp(s, "256") == 0)
		return UI_DEPTH_256;
	if (strcmp(s, "truecolor") == 0 || strcmp(s, "24bit") == 0)
		return UI_DEPTH_TRUE;
	return -1;
}

const char *
depth_name(ui_depth d)
{
	static const char *names[] = { "mono", "8", "16", "256", "truecolor" };

	return names[d];
}
