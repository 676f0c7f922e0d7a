/*
 * ui.h - the explorer's shared state and its one command language.
 *
 * A ui_ctx holds the session (what is computed) and the view state (theme,
 * overlay, message, key map); it has no curses in it, so batch mode and the
 * tests use it unchanged. Every action is a command string: keys are bound
 * to commands (keymap), the ':' line and the rc file run commands, and
 * --script and -c run them headless. A command returns reaction flags - the
 * SESSION_* flags of what to recompute plus the UI_* flags below - and one
 * loop applies them (explore.c; headless.c for runs without a terminal).
 */
#ifndef FL_UI_UI_H
#define FL_UI_UI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "canvas.h"
#include "session/session.h"
#include "theme.h"

/* Reaction flags above the SESSION_* bits. */
enum {
	UI_SESSION_MASK = 0xff,
	UI_REDRAW = 1 << 8,		/* re-format and repaint */
	UI_QUIT = 1 << 9,
	UI_THEME = 1 << 10,		/* the theme changed: reapply colours */
	UI_EDIT_PROMPT = 1 << 11,	/* open the prompt editor */
	UI_COMMAND_LINE = 1 << 12,	/* open the ':' line (initial text in ctx) */
	UI_RENDER = 1 << 13,		/* batch: print the screen now */
	UI_REPAINT = 1 << 14,		/* clear the terminal and repaint all */
	UI_TIME = 1 << 15,		/* run the timing loop (ctx->time_reps) */
};

/* Keys: Unicode code points as themselves, control keys 1-31, and these. */
enum {
	UI_KEY_BASE = 0x110000,
	UI_KEY_UP, UI_KEY_DOWN, UI_KEY_LEFT, UI_KEY_RIGHT,
	UI_KEY_PGUP, UI_KEY_PGDN, UI_KEY_HOME, UI_KEY_END,
	UI_KEY_BTAB, UI_KEY_DC, UI_KEY_BACKSPACE, UI_KEY_RESIZE,
	UI_KEY_F1, UI_KEY_F12 = UI_KEY_F1 + 11,
	UI_KEY_ENTER = '\r', UI_KEY_TAB = '\t', UI_KEY_ESC = 27,
};

typedef struct {
	uint32_t	 key;
	char		*command;
	const char	*what;		/* a default's description, or NULL */
} ui_binding;

typedef struct {
	ui_binding	*b;
	int		 n;
} ui_keymap;

#define UI_MIN_W 60
#define UI_MIN_H 16

typedef struct ui_ctx {
	ui_session	*s;
	ui_theme	 theme;
	ui_keymap	 keys;
	ui_keymap	 flow_keys;	/* while the flow pane is shown, before keys */
	const ui_glyphs	*g;
	bool		 ascii;
	bool		 batch;		/* headless: no timings on screen */
	bool		 help;		/* the key map overlay is open */
	bool		 help_cmds;	/* the command list overlay is open (:help) */
	bool		 show_mlp;	/* when the head and MLP panes share the
					   bottom right (under 32 rows), the MLP's */
	char		*overlay;	/* text over the panes until a key (:eval), or NULL */
	char		*overlay_title;
	bool		 eval_view;	/* :eval's table is the view on screen, or was
					   until the ':' that began this command:
					   what :plot FILE draws */
	const fl_progress *progress;	/* for long commands (:eval), or NULL */
	bool		 cancelled;	/* Ctrl-C stopped a command's work: the
					   rest of the line does not run */
	char		*message;
	bool		 message_error;
	char		*cmd_initial;	/* text the ':' line opens with */
	int		 time_reps;
	int		 depth;		/* ui_depth the renderer uses (for :theme info) */
	/* Last timings shown in the status line (interactive only). */
	double		 ms_last_action, ms_last_draw;
	const char	*last_action;
	int		 source_depth;	/* nesting of :source */
	/* The comparison :compare toggle turns back on (COMPARE_MASK until
	 * one is chosen), and its prompt. */
	ui_compare	 compare_last;
	char		*compare_last_prompt;
	/* Applies one command's flags before the next command of a line runs
	 * (recomputes the session); returns the flags left for the caller's
	 * loop, or -1 with *cause. NULL: the caller applies them all. */
	int		(*apply)(struct ui_ctx *, int flags, char **cause);
} ui_ctx;

void ctx_init(ui_ctx *c, ui_session *s, bool ascii);
void ctx_clear(ui_ctx *c);
void ctx_message(ui_ctx *c, bool error, const char *fmt, ...) FL_PRINTF(3, 4);
/* Shows text over the panes until a key, with its title (both taken,
 * heap strings), in place of any overlay shown (overlays.c). */
void ctx_overlay(ui_ctx *c, char *text, char *title);

/* Re-runs the prompt ctx->time_reps times and puts the median times in the
 * message line; draw (may be NULL) paints the screen after each run.
 * Returns the runs done (fewer when cancelled). */
int ctx_time(ui_ctx *c, const fl_progress *p, void (*draw)(void *), void *ud);

/* ---- saved sessions (save.c) ---------------------------------------- */

/* :save: writes to path the commands that rebuild c's state (model,
 * prompt, task and shots, answer, subject, mask, intercept, cursor,
 * metric, topk, theme, pane, comparison) after comment lines with factlens' version
 * and the weights' SHA-256. 0, or -1 with *cause (no model; a text with a
 * line break; the file). */
int ui_session_save(ui_ctx *c, const char *path, char **cause);

/* The SHA-256 of s's model's weights (st_sha256) into hex. */
void ui_weights_hash(const ui_session *s, char hex[65]);

/* The weights hash a saved file's text records, copied into hex; NULL
 * when it records none. */
const char *ui_saved_hash(const char *text, char hex[65]);

/* 0 when s's model has the weights hash want; else -1 with *cause naming
 * the file (label), the model and both hashes. */
int ui_replay_verify(const ui_session *s, const char *label, const char *want,
    char **cause);

/* ---- commands (commands.c: the table; cmdline.c: parsing, completion) */

typedef enum {
	ARG_NONE, ARG_TEXT, ARG_TOGGLE, ARG_THEME, ARG_METRIC, ARG_FILE,
	ARG_TASK,	/* a bundled task's name, or a file when it has a '/' */
	ARG_COMMAND, ARG_SUBJECT, ARG_LAYER, ARG_KEY,
	ARG_COMPARE,	/* mask, intercept, off, toggle (or a prompt) */
	ARG_TRACE,	/* resid, mlp, attn, samples, seed */
	ARG_BLOCK,	/* subject, relation, other */
	ARG_FLOW,	/* :flow's words */
	ARG_POSITION,	/* first, last */
} ui_arg_kind;

typedef struct {
	const char	*name;
	const char	*alias;		/* or NULL */
	const char	*args;		/* usage of the arguments */
	int		 min_args, max_args;	/* max -1: the rest is one text */
	ui_arg_kind	 arg;		/* what the first argument completes to */
	const char	*help;		/* one line, for :help and the man page */
	int		(*fn)(ui_ctx *, int, char **, char **);
} ui_cmd;

extern const ui_cmd ui_cmds[];
extern const int ui_n_cmds;

const ui_cmd *cmd_find(const char *name);

/* Runs one line: commands separated by ';', each applied (ctx->apply)
 * before the next. Returns the OR of the flags left, or -1 with *cause (the
 * commands before the failing one ran). A command whose work was cancelled
 * (ctx->cancelled) ends the line. An unterminated quote runs as if closed
 * at the end and fails in the word splitter. */
int cmd_run_line(ui_ctx *c, const char *line, char **cause);

/* Splits a command into words (quotes "..." with \ escapes and '...'), and
 * lines into commands at ';' outside quotes. Heap arrays (argv NULL-ended). */
int cmd_split_words(const char *s, char ***argv, char **cause);
void cmd_free_words(char **argv);

/* Candidates for completing `text` as word `index` of the line so far (the
 * words before it in words[0..index)). NULL-terminated heap array. */
char **cmd_complete(ui_ctx *c, char **words, int index, const char *text);

/* ---- keys (keys.c) ------------------------------------------------- */

void keymap_default(ui_keymap *k);
/* The flow pane's bindings, looked up first while it is shown. */
void keymap_default_flow(ui_keymap *k);
void keymap_clear(ui_keymap *k);
int keymap_bind(ui_keymap *k, const char *key, const char *command, char **cause);
const char *keymap_lookup(const ui_keymap *k, uint32_t key);
/* "Up", "C-l", "a"... into buf. */
const char *ui_key_name(uint32_t key, char *buf, size_t n);
int ui_key_parse(const char *s, uint32_t *key);	/* -1 when unknown */

/* ---- formatting (panes.c) ------------------------------------------ */

/* Formats the whole screen into the canvas (resized by the caller). */
void ui_format(const ui_ctx *c, ui_canvas *cv);
/* Probability as short text: "42%", "1.5%", "<.1%". */
const char *fmt_prob(double p, char *buf, size_t n);

/* ---- documentation (doc.c) ------------------------------------------ */

/* The man page fragments the command table and key map generate: "keys",
 * "commands" or "roles". -1 when what is unknown. */
int ui_man_fragment(const char *what, FILE *f);

/* s as roff text: backslashes and dashes escaped, and \& in front when it
 * starts with . or ' (a line that would be read as a request). */
void ui_roff(FILE *f, const char *s);

/* ---- entry points ---------------------------------------------------- */

typedef struct {
	const char	*model_dir;
	fl_model_opts	 model_opts;	/* --weights */
	const char	*theme;		/* NULL: dark */
	const char	*script_file;	/* --script FILE; "-": standard input */
	bool		 replay;	/* --replay: script_file must hold a
					   weights hash (:save's) */
	const char	*commands;	/* -c */
	int		 width, height;	/* batch size */
	int		 depth;		/* forced colour depth, or -1 */
	bool		 ascii;
	bool		 no_rc;
} ui_options;

int ui_batch_run(const ui_options *o);		/* headless.c */
int ui_explore_run(const ui_options *o);	/* explore.c */


/* A cursor argument (commands.c): N, +N/-N, +page/-page, first/last. 0, or
 * -1 with *cause naming the command. */
int ui_cursor_arg(const char *what, const char *arg, int cur, int n, int page,
    int *out, char **cause);
/* The flow pane's commands (cmd_flow.c): :trace, :knockout, :flow,
 * :position. */
int ui_cmd_trace(ui_ctx *c, int argc, char **argv, char **cause);
int ui_cmd_knockout(ui_ctx *c, int argc, char **argv, char **cause);
int ui_cmd_flow(ui_ctx *c, int argc, char **argv, char **cause);
int ui_cmd_position(ui_ctx *c, int argc, char **argv, char **cause);
/* :intercepts [LAYER] (cmd_intercepts.c). */
int ui_cmd_intercepts(ui_ctx *c, int argc, char **argv, char **cause);

#endif
