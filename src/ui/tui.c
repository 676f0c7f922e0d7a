/*
 * tui.c - the explorer's terminal: ncurses set up and restored, signals,
 * colours at the terminal's depth, the canvas painted as cells, keys read
 * and named. The terminal is restored on every exit path: q, Ctrl-C twice,
 * SIGTERM or SIGHUP, fatal errors (fl_set_fatal_hook), exit(), and crashes.
 * See term.h.
 */
#include "autoconfig.h"

#include <curses.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <wchar.h>

#include "base/util.h"
#include "term.h"

volatile sig_atomic_t tui_sig_int, tui_sig_term;
tui_state tui = { .forced_depth = -1 };

void
tui_restore(void)
{
	if (!tui.curses_on)
		return;
	tui.curses_on = false;
	prompt_terminal_lost();
	curs_set(1);
	endwin();
}

static void
crash_handler(int sig)
{
	/* Not async-signal-safe, but the terminal is worth the risk: the
	 * process is going down anyway. */
	tui_restore();
	if (sig == SIGBUS)
		fl_sigbus_say();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
on_int(int sig)
{
	(void)sig;
	tui_sig_int = 1;
}

static void
on_term(int sig)
{
	(void)sig;
	tui_sig_term = 1;
}

static const int fatal_signals[] = {
	SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL, SIGTRAP, SIGSYS, SIGQUIT,
	SIGPIPE, SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU, SIGXFSZ, SIGUSR1, SIGUSR2,
};

void
tui_signals_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: poll() must wake up to notice the flag. */
	sa.sa_handler = on_int;
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* Every other signal whose default ends the process restores the
	 * terminal first (Ctrl-\ is SIGQUIT), then takes its default. */
	sa.sa_handler = crash_handler;
	sa.sa_flags = SA_RESETHAND;
	for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++)
		sigaction(fatal_signals[i], &sa, NULL);
}

/* The most colours the terminal can show, as curses reads its terminfo. */
static ui_depth
terminal_depth(void)
{
	if (!has_colors())
		return UI_DEPTH_MONO;
	if (COLORS >= 0x1000000)
		return UI_DEPTH_TRUE;
	if (COLORS >= 256)
		return UI_DEPTH_256;
	if (COLORS >= 16)
		return UI_DEPTH_16;
	return UI_DEPTH_8;
}

/* NO_COLOR, else --colors, else what the terminal says. A forced depth
 * beyond the terminal's cannot be drawn (colour numbers it does not have
 * come out black), so it is lowered to the terminal's, once, with a note. */
static ui_depth
detect_depth(void)
{
	static bool said;
	const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
	ui_depth cap = terminal_depth();

	if (tui.forced_depth >= 0) {
		if ((ui_depth)tui.forced_depth <= cap)
			return (ui_depth)tui.forced_depth;
		if (!said) {
			ctx_message(tui.c, false, "--colors %s: this terminal (TERM=%s) has %s%s; "
			    "drawing with %s", depth_name((ui_depth)tui.forced_depth),
			    term != NULL ? term : "unset", cap == UI_DEPTH_MONO ? "no" :
			    depth_name(cap), " colours", depth_name(cap));
			said = true;
		}
		return cap;
	}
	if (nc != NULL && nc[0] != '\0')
		return UI_DEPTH_MONO;
	return cap;
}

static attr_t
curses_attrs(unsigned a)
{
	attr_t r = A_NORMAL;

	if (a & UI_ATTR_BOLD) r |= A_BOLD;
	if (a & UI_ATTR_UNDERLINE) r |= A_UNDERLINE;
	if (a & UI_ATTR_REVERSE) r |= A_REVERSE;
	if (a & UI_ATTR_DIM) r |= A_DIM;
#ifdef A_ITALIC
	if (a & UI_ATTR_ITALIC) r |= A_ITALIC;
#endif
	return r;
}

void
tui_theme_apply(void)
{
	tui.depth = detect_depth();
	if (tui.depth != UI_DEPTH_MONO && (!has_colors() || COLOR_PAIRS <= UI_ROLE_COUNT))
		tui.depth = UI_DEPTH_MONO;
	tui.c->depth = (int)tui.depth;
	theme_resolve(&tui.c->theme, tui.depth, tui.styles);
	if (tui.depth == UI_DEPTH_MONO)
		return;
	for (int i = 0; i < UI_ROLE_COUNT; i++)
		init_extended_pair(i + 1, tui.styles[i].fg, tui.styles[i].bg);
}

void
tui_paint(void)
{
	ui_canvas *cv = tui.cv;

	for (int y = 0; y < cv->h; y++)
		for (int x = 0; x < cv->w; x++) {
			const ui_cell *cell = &cv->cells[(size_t)y * cv->w + x];
			wchar_t wc[2] = { (wchar_t)cell->ch, 0 };
			cchar_t cc;
			int pair = tui.depth == UI_DEPTH_MONO ? 0 : cell->role + 1;

			if (cell->ch == 0)
				continue;
			if (!tui.utf8 && cell->ch >= 0x80)
				wc[0] = '?';
			setcchar(&cc, wc, curses_attrs(tui.styles[cell->role].attrs), 0, &pair);
			mvadd_wch(y, x, &cc);
		}
	wnoutrefresh(stdscr);
}

void
tui_flush(void)
{
	doupdate();
}

void
tui_draw(void)
{
	if ((int)COLS != tui.cv->w || (int)LINES != tui.cv->h)
		canvas_resize(tui.cv, COLS, LINES);
	ui_format(tui.c, tui.cv);
	tui_paint();
	if (prompt_mode() != EDIT_NONE)
		prompt_redisplay();
	else
		curs_set(0);
	doupdate();
}

void
tui_repaint_all(void)
{
	clearok(curscr, TRUE);
}

void
tui_cursor(bool visible)
{
	curs_set(visible ? 1 : 0);
}

int
tui_cols(void)
{
	return COLS;
}

int
tui_lines(void)
{
	return LINES;
}

int
tui_init(void)
{
	if (initscr() == NULL)
		return -1;
	tui.curses_on = true;
	fl_set_fatal_hook(tui_restore);
	atexit(tui_restore);
	cbreak();
	noecho();
	nonl();
	intrflush(stdscr, FALSE);
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	/* No typeahead check while updating: ncurses would flush and poll the
	 * keyboard every few lines, one write and one poll per line (about 90
	 * of each for a new prompt's screen) instead of one write per frame. */
	typeahead(-1);
	set_escdelay(25);
	curs_set(0);
	if (has_colors()) {
		start_color();
		use_default_colors();
	}
	tui_theme_apply();
	return 0;
}

bool
tui_size_changed(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 ||
	    ws.ws_col == 0 || (ws.ws_row == LINES && ws.ws_col == COLS))
		return false;
	resize_term(ws.ws_row, ws.ws_col);
	return true;
}

static uint32_t
translate_key(int r, wint_t wc, bool editing)
{
	if (r == KEY_CODE_YES) {
		switch (wc) {
		case KEY_UP: return UI_KEY_UP;
		case KEY_DOWN: return UI_KEY_DOWN;
		case KEY_LEFT: return UI_KEY_LEFT;
		case KEY_RIGHT: return UI_KEY_RIGHT;
		case KEY_PPAGE: return UI_KEY_PGUP;
		case KEY_NPAGE: return UI_KEY_PGDN;
		case KEY_HOME: return UI_KEY_HOME;
		case KEY_END: return UI_KEY_END;
		case KEY_BTAB: return UI_KEY_BTAB;
		case KEY_DC: return UI_KEY_DC;
		case KEY_BACKSPACE: return UI_KEY_BACKSPACE;
		case KEY_ENTER: return UI_KEY_ENTER;
		case KEY_RESIZE: return UI_KEY_RESIZE;
		default:
			if (wc >= KEY_F(1) && wc <= KEY_F(12))
				return UI_KEY_F1 + (uint32_t)(wc - KEY_F(1));
			return 0;
		}
	}
	if (wc == '\n')
		return UI_KEY_ENTER;
	if (wc == 127 || wc == 8)
		return editing ? UI_KEY_BACKSPACE : (uint32_t)wc;
	return (uint32_t)wc;
}

bool
tui_key(bool editing, uint32_t *key)
{
	wint_t wc;
	int r = get_wch(&wc);

	if (r == ERR)
		return false;
	*key = translate_key(r, wc, editing);
	return true;
}
