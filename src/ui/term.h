/*
 * term.h - what the explorer's three terminal files share, and nothing
 * else sees: tui.c owns the terminal (ncurses), prompt.c the edit line (GNU
 * readline), explore.c the loop. This header includes neither library, so
 * each file includes only the one it drives.
 */
#ifndef FL_UI_TERM_H
#define FL_UI_TERM_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "ui.h"

/* What the edit line is editing. */
enum { EDIT_NONE, EDIT_PROMPT, EDIT_COMMAND };

/* Set by the signal handlers (tui.c); the loop reads and clears them. */
extern volatile sig_atomic_t tui_sig_int, tui_sig_term;

/* ---- tui.c: the terminal ------------------------------------------- */

/* The terminal's state: the context it shows, the canvas it paints, and
 * how (colour depth, resolved styles). */
typedef struct {
	ui_ctx		*c;
	ui_canvas	*cv;
	bool		 curses_on;
	bool		 utf8;
	ui_depth	 depth;
	int		 forced_depth;	/* -1: detect */
	ui_term_style	 styles[UI_ROLE_COUNT];
} tui_state;

extern tui_state tui;

/* Handlers for Ctrl-C, SIGTERM and SIGHUP (flags) and for crashes (the
 * terminal is restored first). */
void tui_signals_install(void);
/* Starts curses; 0, or -1 when the terminal cannot be set up. The terminal
 * is restored at exit, on fatal errors and crashes (tui_restore). */
int tui_init(void);
void tui_restore(void);		/* idempotent */
void tui_theme_apply(void);	/* the theme's styles at the detected depth */
void tui_paint(void);		/* the canvas onto the screen, not yet shown */
void tui_flush(void);		/* shows what was painted */
void tui_draw(void);		/* formats, paints and shows the whole screen */
void tui_repaint_all(void);	/* the next tui_draw repaints every cell */
void tui_cursor(bool visible);
int tui_cols(void);
int tui_lines(void);
/* Picks up a size change that curses has not seen (a SIGWINCH lost in a
 * race with poll()); true when the size changed. */
bool tui_size_changed(void);
/* The next key, without waiting: true with *key (0 for a key the explorer
 * has no name for), false when none is waiting. editing: an edit line is
 * open (Backspace is then a key of its own, not C-h). */
bool tui_key(bool editing, uint32_t *key);

/* ---- prompt.c: the edit line ----------------------------------------- */

void prompt_init(void);		/* readline set up, history read */
void prompt_free(void);
int prompt_mode(void);		/* EDIT_* */
void prompt_open(int mode, const char *initial);
void prompt_close(void);	/* drops the line being edited */
/* Feeds a key to the line; true when it finished a line (prompt_take_line). */
bool prompt_key(uint32_t key);
/* Feeds Escape then key (Meta-key); true when it finished a line. */
bool prompt_meta_key(uint32_t key);
char *prompt_take_line(void);	/* the finished line (heap), or NULL */
void prompt_history_add(int mode, const char *line);
void prompt_completions_clear(void);
void prompt_redisplay(void);	/* the edit line over the bottom row */
void prompt_terminal_lost(void);	/* the terminal went away: let go of it */

#endif
