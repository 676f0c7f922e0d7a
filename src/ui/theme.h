/*
 * theme.h - semantic roles and the themes that colour them.
 *
 * Panes never name a colour: they tag cells with a role (the answer token,
 * the heat ramp, the cursor...). A theme maps each role to a foreground,
 * a background and attributes; theme_resolve() degrades the colours to what
 * the terminal has: truecolor -> 256 -> 16/8 -> monochrome. In monochrome
 * (no colours, or NO_COLOR set) each role falls back to the attributes in
 * the table below, and the panes' glyphs carry the rest (heat shades,
 * markers under tokens, the row cursor).
 *
 * Theme files (themes/NAME.theme) hold one role per line:
 *     role  FG  [BG]  [bold,underline,reverse,dim,italic]
 * with colours written #rrggbb, a palette index 0-255, a name (black, red,
 * green, yellow, blue, magenta, cyan, white, bright-*) or "default". Roles
 * a file leaves out keep the built-in dark theme's values.
 */
#ifndef FL_UI_THEME_H
#define FL_UI_THEME_H

#include <stdint.h>

#define UI_ATTR_BOLD		0x01
#define UI_ATTR_UNDERLINE	0x02
#define UI_ATTR_REVERSE		0x04
#define UI_ATTR_DIM		0x08
#define UI_ATTR_ITALIC		0x10

/* X(ENUM, name, dark fg, dark bg, attributes, monochrome attributes, what) */
#define UI_ROLES(X) \
	X(NORMAL, "normal", "#d0d0d0", "default", 0, 0, "ordinary text") \
	X(DIM, "dim", "#808080", "default", 0, UI_ATTR_DIM, "secondary text, units, hints") \
	X(TITLE, "title", "#87afff", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "pane titles") \
	X(BORDER, "border", "#585858", "default", 0, UI_ATTR_DIM, "lines between panes") \
	X(HEADER, "header", "#ffffff", "#005f87", UI_ATTR_BOLD, UI_ATTR_REVERSE, "the top bar") \
	X(STATUS, "status", "#e4e4e4", "#303030", 0, UI_ATTR_REVERSE, "the status line") \
	X(ERROR, "error", "#ff5f5f", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "error messages") \
	X(INFO, "info", "#87d787", "default", 0, 0, "messages") \
	X(PROMPT, "prompt", "#ffffff", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "the prompt and command line") \
	X(CURSOR, "cursor", "#000000", "#ffd75f", UI_ATTR_BOLD, UI_ATTR_REVERSE, "the layer cursor and selected head") \
	X(ANSWER, "answer", "#87ff87", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "the answer token") \
	X(SUBJECT, "subject", "#ffaf5f", "default", UI_ATTR_BOLD | UI_ATTR_UNDERLINE, UI_ATTR_UNDERLINE, "the subject token") \
	X(LAST, "last", "#5fd7ff", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "the last position") \
	X(TOKEN, "token", "#d0d0d0", "#262626", 0, 0, "tokens in the strip") \
	X(TOKEN_ALT, "token-alt", "#d0d0d0", "#3a3a3a", 0, 0, "every other token") \
	X(POSITIVE, "positive", "#5fd75f", "default", 0, 0, "values that help the answer") \
	X(NEGATIVE, "negative", "#ff5f87", "default", 0, 0, "values that hurt the answer") \
	X(MOVER, "mover", "#ff87ff", "default", UI_ATTR_BOLD, UI_ATTR_BOLD | UI_ATTR_UNDERLINE, "argument-extracting (mover) heads") \
	X(ON, "on", "#000000", "#5fd75f", UI_ATTR_BOLD, UI_ATTR_REVERSE, "a toggle that is on") \
	X(OFF, "off", "#808080", "default", 0, 0, "a toggle that is off") \
	X(SPARK, "spark", "#5fafff", "default", 0, 0, "sparklines and bars") \
	X(KEY, "key", "#ffd75f", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "key names in the help") \
	X(HEAT0, "heat0", "#3a3a3a", "default", 0, UI_ATTR_DIM, "heat ramp, lowest") \
	X(HEAT1, "heat1", "#5f0087", "default", 0, 0, "heat ramp") \
	X(HEAT2, "heat2", "#8700af", "default", 0, 0, "heat ramp") \
	X(HEAT3, "heat3", "#af0087", "default", 0, 0, "heat ramp") \
	X(HEAT4, "heat4", "#d7005f", "default", 0, 0, "heat ramp") \
	X(HEAT5, "heat5", "#ff5f00", "default", 0, 0, "heat ramp") \
	X(HEAT6, "heat6", "#ff8700", "default", 0, UI_ATTR_BOLD, "heat ramp") \
	X(HEAT7, "heat7", "#ffaf00", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "heat ramp") \
	X(HEAT8, "heat8", "#ffff5f", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "heat ramp, highest") \
	X(DIV0, "div0", "#ff5f87", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "signed ramp, most negative (the negative colour)") \
	X(DIV1, "div1", "#d75f87", "default", 0, 0, "signed ramp") \
	X(DIV2, "div2", "#af5f87", "default", 0, 0, "signed ramp") \
	X(DIV3, "div3", "#875f6f", "default", 0, UI_ATTR_DIM, "signed ramp") \
	X(DIV4, "div4", "#4e4e4e", "default", 0, UI_ATTR_DIM, "signed ramp, zero") \
	X(DIV5, "div5", "#5f875f", "default", 0, UI_ATTR_DIM, "signed ramp") \
	X(DIV6, "div6", "#5faf5f", "default", 0, 0, "signed ramp") \
	X(DIV7, "div7", "#5fd75f", "default", 0, 0, "signed ramp") \
	X(DIV8, "div8", "#87ff87", "default", UI_ATTR_BOLD, UI_ATTR_BOLD, "signed ramp, most positive (the positive colour)")

typedef enum {
#define X(e, n, fg, bg, a, m, what) UI_ROLE_##e,
	UI_ROLES(X)
#undef X
	UI_ROLE_COUNT
} ui_role;

#define UI_HEAT_LEVELS 9

typedef enum {
	UI_COLOR_DEFAULT,	/* the terminal's own */
	UI_COLOR_RGB,		/* v = 0xrrggbb */
	UI_COLOR_INDEX,		/* v = palette index 0-255 */
} ui_color_kind;

typedef struct {
	ui_color_kind	kind;
	uint32_t	v;
} ui_color;

typedef struct {
	ui_color	fg, bg;
	unsigned	attrs;
} ui_style;

typedef struct {
	char		name[64];
	ui_style	style[UI_ROLE_COUNT];
} ui_theme;

typedef enum {
	UI_DEPTH_MONO,
	UI_DEPTH_8,
	UI_DEPTH_16,
	UI_DEPTH_256,
	UI_DEPTH_TRUE,
} ui_depth;

/* What a renderer applies: terminal colour numbers (-1: default; 0xrrggbb
 * in truecolor) and attributes. */
typedef struct {
	int		fg, bg;
	unsigned	attrs;
} ui_term_style;

const char *role_name(ui_role r);
const char *role_what(ui_role r);
int role_parse(const char *name);	/* -1 when unknown */
unsigned role_mono_attrs(ui_role r);

/* The built-in dark theme (the same as themes/dark.theme). */
void theme_default(ui_theme *t);

/* Parses theme text over the defaults. -1 with *cause naming label:line
 * and what was expected. */
int theme_parse(ui_theme *t, const char *text, const char *label, char **cause);

/* Loads a theme by name from the theme directories (theme_dirs), or by
 * path when name contains '/'. */
int theme_load(ui_theme *t, const char *name, char **cause);

/* The directories searched, in order, NULL-terminated (static storage):
 * $XDG_CONFIG_HOME/factlens/themes, the installed pkgdatadir/themes, and
 * the source tree's themes/ for an uninstalled build. */
const char *const *theme_dirs(void);

/* Sorted, de-duplicated theme names found in theme_dirs(); heap array of
 * heap strings, *n entries. */
char **theme_list(int *n);
void theme_list_free(char **names, int n);

/* Degrades every role to the depth; mono ignores colours. */
void theme_resolve(const ui_theme *t, ui_depth d, ui_term_style *out);

/* "mono", "8", "16", "256", "truecolor" <-> depth; -1 when unknown. */
int depth_parse(const char *s);
const char *depth_name(ui_depth d);

#endif
