/*
 * explore.c - the interactive explorer: the terminal (ncurses), the prompt
 * and command lines (GNU readline's callback interface), signals, and the
 * one loop that applies the reaction flags that keys and commands return.
 *
 * Readline never touches the terminal here: it gets its bytes from us
 * (rl_getc_function, fed from ncurses' keys), draws through our
 * rl_redisplay_function onto the bottom row, writes anything else to
 * /dev/null, and installs no signal handlers. Ctrl-C is a signal (cbreak
 * mode keeps ISIG): during long work it only sets a flag that the progress
 * callback of the session and of :eval returns, so the analysis stops at
 * its next batch and the explorer says what was cancelled; it cancels an
 * edit, and at rest asks to be pressed again to quit.
 * The terminal is restored on every exit path: q, Ctrl-C twice, SIGTERM or
 * SIGHUP, fatal errors (fl_set_fatal_hook), exit(), and crashes.
 */
#include "autoconfig.h"

#include <curses.h>
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "base/paths.h"
#include "base/util.h"
#include "ui.h"

enum { EDIT_NONE, EDIT_PROMPT, EDIT_COMMAND };

static volatile sig_atomic_t sig_int, sig_term;

static struct {
	ui_ctx		*c;
	ui_canvas	*cv;
	bool		 curses_on;
	bool		 utf8;
	ui_depth	 depth;
	int		 forced_depth;
	ui_term_style	 styles[UI_ROLE_COUNT];

	int		 edit;		/* EDIT_* */
	bool		 line_done;
	char		*line;
	unsigned char	 in[16];
	int		 in_n, in_pos;
	FILE		*devnull;
	char		*completions;	/* shown above the edit line */

	char		*hist_path[3];	/* [EDIT_PROMPT], [EDIT_COMMAND] */
	HISTORY_STATE	*hist[3];
	int		 hist_cur;

	double		 t_key;		/* when the action began */
	const char	*action;
	double		 work_start, last_progress;
	/* The action's session updates, summed for the timing log. */
	double		 ms_update, ms_forward, ms_lens;
	double		 int_at;	/* when Ctrl-C was pressed at rest */
	FILE		*timing_log;	/* FACTLENS_TIMING_LOG */
} T;

/* ---- the terminal ---------------------------------------------------- */

static void
term_restore(void)
{
	if (!T.curses_on)
		return;
	T.curses_on = false;
	if (T.edit != EDIT_NONE)
		rl_callback_handler_remove();
	curs_set(1);
	endwin();
}

static void
crash_handler(int sig)
{
	/* Not async-signal-safe, but the terminal is worth the risk: the
	 * process is going down anyway. */
	term_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
on_int(int sig)
{
	(void)sig;
	sig_int = 1;
}

static void
on_term(int sig)
{
	(void)sig;
	sig_term = 1;
}

static void
signals_install(void)
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
	sa.sa_handler = crash_handler;
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);
	sigaction(SIGABRT, &sa, NULL);
}

static ui_depth
detect_depth(void)
{
	const char *nc = getenv("NO_COLOR");

	if (T.forced_depth >= 0)
		return (ui_depth)T.forced_depth;
	if ((nc != NULL && nc[0] != '\0') || !has_colors())
		return UI_DEPTH_MONO;
	if (COLORS >= 0x1000000)
		return UI_DEPTH_TRUE;
	if (COLORS >= 256)
		return UI_DEPTH_256;
	if (COLORS >= 16)
		return UI_DEPTH_16;
	return UI_DEPTH_8;
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

static void
theme_apply(void)
{
	T.depth = detect_depth();
	if (T.depth != UI_DEPTH_MONO && (!has_colors() || COLOR_PAIRS <= UI_ROLE_COUNT))
		T.depth = UI_DEPTH_MONO;
	T.c->depth = (int)T.depth;
	theme_resolve(&T.c->theme, T.depth, T.styles);
	if (T.depth == UI_DEPTH_MONO)
		return;
	for (int i = 0; i < UI_ROLE_COUNT; i++)
		init_extended_pair(i + 1, T.styles[i].fg, T.styles[i].bg);
}

static void
term_paint(void)
{
	ui_canvas *cv = T.cv;

	for (int y = 0; y < cv->h; y++)
		for (int x = 0; x < cv->w; x++) {
			const ui_cell *cell = &cv->cells[(size_t)y * cv->w + x];
			wchar_t wc[2] = { (wchar_t)cell->ch, 0 };
			cchar_t cc;
			int pair = T.depth == UI_DEPTH_MONO ? 0 : cell->role + 1;

			if (cell->ch == 0)
				continue;
			if (!T.utf8 && cell->ch >= 0x80)
				wc[0] = '?';
			setcchar(&cc, wc, curses_attrs(T.styles[cell->role].attrs), 0, &pair);
			mvadd_wch(y, x, &cc);
		}
	wnoutrefresh(stdscr);
}

static void edit_redisplay(void);

/* Formats and paints the whole screen. */
static void
screen_draw(void)
{
	if ((int)COLS != T.cv->w || (int)LINES != T.cv->h)
		canvas_resize(T.cv, COLS, LINES);
	ui_format(T.c, T.cv);
	term_paint();
	if (T.edit != EDIT_NONE)
		edit_redisplay();
	else
		curs_set(0);
	doupdate();
}

static void
draw_cb(void *ud)
{
	(void)ud;
	screen_draw();
}

static int
term_init(void)
{
	if (initscr() == NULL)
		return -1;
	T.curses_on = true;
	fl_set_fatal_hook(term_restore);
	atexit(term_restore);
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
	theme_apply();
	return 0;
}

/* ---- progress and Ctrl-C --------------------------------------------- */

/* The explorer's fl_progress: the status line, and Ctrl-C or SIGTERM
 * stops the work. */
static bool
progress_report(void *ud, const char *what, long done, long total)
{
	double now = fl_now();
	char buf[160];
	ui_view v;

	(void)ud;
	/* Only work that takes a while shows progress; work of unknown length
	 * (total 0: loading a model) says so at once. */
	if (total > 0 && (now - T.work_start < 0.15 || now - T.last_progress < 0.05))
		return sig_int || sig_term;
	T.last_progress = now;
	v = view_of(T.cv, 0, T.cv->h - 2, T.cv->w, 1);
	view_fill(&v, UI_ROLE_STATUS);
	if (total > 1)
		snprintf(buf, sizeof buf, " %s %ld/%ld ... Ctrl-C to cancel", what, done,
		    total);
	else
		snprintf(buf, sizeof buf, " %s ... Ctrl-C to cancel", what);
	view_put(&v, 0, 0, -1, UI_ROLE_STATUS, buf);
	term_paint();
	doupdate();
	return sig_int || sig_term;
}

static const fl_progress progress = { progress_report, NULL };

/* Before work that may show progress: its clock starts, and a Ctrl-C from
 * before it does not cancel it. */
static void
work_begin(void)
{
	T.work_start = fl_now();
	T.last_progress = 0;
	sig_int = 0;
}

/* ---- readline -------------------------------------------------------- */

static int
rl_getc_cb(FILE *f)
{
	(void)f;
	return T.in_pos < T.in_n ? T.in[T.in_pos++] : EOF;
}

static int
rl_input_available_cb(void)
{
	return T.in_pos < T.in_n;
}

static void
rl_line_cb(char *line)
{
	T.line = line;
	T.line_done = true;
	rl_callback_handler_remove();
}

static void
edit_redisplay(void)
{
	const char *pr = T.edit == EDIT_PROMPT ? "prompt> " : ":";
	int row = LINES - 1, pw = ui_text_width(pr), avail = COLS - pw - 1, x;
	const char *buf = rl_line_buffer != NULL ? rl_line_buffer : "";
	const char *p = buf, *start = buf;
	int wpoint = 0, wstart = 0;

	if (T.edit == EDIT_NONE || COLS < UI_MIN_W || LINES < UI_MIN_H)
		return;
	/* Columns up to the cursor; scroll so that it stays visible. */
	while (*p != '\0' && p - buf < rl_point)
		wpoint += ui_char_width(utf8_next(&p));
	p = buf;
	while (*p != '\0' && wpoint - wstart > avail) {
		wstart += ui_char_width(utf8_next(&p));
		start = p;
	}
	move(row, 0);
	clrtoeol();
	attrset(A_BOLD);
	mvaddstr(row, 0, pr);
	attrset(A_NORMAL);
	x = pw;
	for (p = start; *p != '\0'; ) {
		const char *q = p;
		uint32_t cp = utf8_next(&q);
		int cw = ui_char_width(cp);

		if (x + cw > COLS - 1)
			break;
		if (cp < 0x20)
			mvaddch(row, x, '?');
		else
			mvaddnstr(row, x, p, (int)(q - p));
		x += cw;
		p = q;
	}
	if (T.completions != NULL) {
		move(row - 1, 0);
		clrtoeol();
		attrset(A_REVERSE);
		mvaddnstr(row - 1, 0, T.completions, COLS);
		attrset(A_NORMAL);
	}
	move(row, pw + wpoint - wstart);
	curs_set(1);
	wnoutrefresh(stdscr);
}

static void
rl_redisplay_cb(void)
{
	edit_redisplay();
	doupdate();
}

static void
show_matches_cb(char **matches, int n, int max_len)
{
	size_t len = 1;
	char *s;

	(void)max_len;
	for (int i = 1; i <= n; i++)
		len += strlen(matches[i]) + 2;
	s = xmalloc(len + 16);
	s[0] = '\0';
	for (int i = 1; i <= n; i++) {
		strcat(s, " ");
		strcat(s, matches[i]);
		strcat(s, " ");
	}
	free(T.completions);
	T.completions = s;
	edit_redisplay();
	doupdate();
}

static char **complete_list;
static int complete_index;

static char *
complete_gen(const char *text, int state)
{
	(void)text;
	if (state == 0)
		complete_index = 0;
	if (complete_list == NULL || complete_list[complete_index] == NULL)
		return NULL;
	return xstrdup(complete_list[complete_index++]);
}

static char **
complete_cb(const char *text, int start, int end)
{
	char *head, **words, **matches = NULL;
	int n;
	const ui_cmd *cmd;

	(void)end;
	rl_attempted_completion_over = 1;
	if (T.edit != EDIT_COMMAND)
		return NULL;
	head = xstrndup(rl_line_buffer, (size_t)start);
	n = cmd_split_words(head, &words, NULL);
	free(head);
	if (n < 0)
		return NULL;
	if (n == 1 && (cmd = cmd_find(words[0])) != NULL && cmd->arg == ARG_FILE) {
		/* Readline's own filename completion. */
		rl_attempted_completion_over = 0;
		cmd_free_words(words);
		return NULL;
	}
	complete_list = cmd_complete(T.c, words, n, text);
	if (complete_list != NULL)
		matches = rl_completion_matches(text, complete_gen);
	cmd_free_words(complete_list);
	complete_list = NULL;
	cmd_free_words(words);
	return matches;
}

static void
history_switch(int mode)
{
	if (T.hist_cur == mode)
		return;
	if (T.hist_cur != 0) {
		free(T.hist[T.hist_cur]);
		T.hist[T.hist_cur] = history_get_history_state();
	}
	if (T.hist[mode] != NULL)
		history_set_history_state(T.hist[mode]);
	T.hist_cur = mode;
}

static void
history_init(void)
{
	char *dir = fl_state_dir(true);

	using_history();
	for (int mode = EDIT_PROMPT; mode <= EDIT_COMMAND; mode++) {
		HISTORY_STATE empty;

		memset(&empty, 0, sizeof empty);
		history_set_history_state(&empty);
		if (dir != NULL) {
			T.hist_path[mode] = xasprintf("%s/%s", dir, mode == EDIT_PROMPT ?
			    "prompts" : "commands");
			read_history(T.hist_path[mode]);
		}
		T.hist[mode] = history_get_history_state();
	}
	history_set_history_state(T.hist[EDIT_COMMAND]);
	T.hist_cur = EDIT_COMMAND;
	free(dir);
}

static void
history_add(int mode, const char *line)
{
	HIST_ENTRY *last;

	if (line[0] == '\0')
		return;
	history_switch(mode);
	last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
	if (last != NULL && strcmp(last->line, line) == 0)
		return;
	add_history(line);
	if (T.hist_path[mode] != NULL) {
		FILE *f = fopen(T.hist_path[mode], "a");

		if (f != NULL)
			fclose(f);
		append_history(1, T.hist_path[mode]);
		history_truncate_file(T.hist_path[mode], 1000);
	}
}

static void
readline_init(void)
{
	T.devnull = fopen("/dev/null", "w");
	rl_readline_name = "factlens";
	rl_catch_signals = 0;
	rl_catch_sigwinch = 0;
	rl_change_environment = 0;
	rl_prep_term_function = NULL;
	rl_deprep_term_function = NULL;
	rl_getc_function = rl_getc_cb;
	rl_input_available_hook = rl_input_available_cb;
	rl_redisplay_function = rl_redisplay_cb;
	rl_outstream = T.devnull != NULL ? T.devnull : stdout;
	rl_attempted_completion_function = complete_cb;
	rl_completion_display_matches_hook = show_matches_cb;
	history_init();
}

static void
edit_open(int mode, const char *initial)
{
	history_switch(mode);
	T.edit = mode;
	T.line_done = false;
	T.line = NULL;
	free(T.completions);
	T.completions = NULL;
	rl_callback_handler_install("", rl_line_cb);
	if (initial != NULL) {
		rl_replace_line(initial, 0);
		rl_point = rl_end;
	}
	edit_redisplay();
	doupdate();
}

static void
edit_close(void)
{
	if (T.edit != EDIT_NONE && !T.line_done) {
		rl_replace_line("", 0);
		rl_callback_handler_remove();
	}
	T.edit = EDIT_NONE;
	free(T.completions);
	T.completions = NULL;
	curs_set(0);
}

/* Bytes that readline's default bindings understand for a key. */
static int
key_bytes(uint32_t key, unsigned char *out)
{
	static const struct {
		uint32_t	 key;
		const char	*seq;
	} seqs[] = {
		{ UI_KEY_UP, "\033[A" }, { UI_KEY_DOWN, "\033[B" },
		{ UI_KEY_RIGHT, "\033[C" }, { UI_KEY_LEFT, "\033[D" },
		{ UI_KEY_HOME, "\033[H" }, { UI_KEY_END, "\033[F" },
		{ UI_KEY_DC, "\033[3~" }, { UI_KEY_BACKSPACE, "\177" },
	};

	for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
		if (seqs[i].key == key) {
			memcpy(out, seqs[i].seq, strlen(seqs[i].seq));
			return (int)strlen(seqs[i].seq);
		}
	if (key >= UI_KEY_BASE)
		return 0;
	if (key == '\n')
		key = '\r';
	return (int)fl_utf8_put((char *)out, key);
}

/* ---- the loop -------------------------------------------------------- */

/* "ACTION MS", then where the time went: the session's updates (of which
 * the forward pass and the lens products) and the last drawing of the
 * screen, as "update MS forward MS lens MS draw MS". */
static void
timing_log(const char *action, double ms, double ms_draw)
{
	if (T.timing_log == NULL)
		return;
	fprintf(T.timing_log, "%s %.2f update %.2f forward %.2f lens %.2f draw %.2f\n",
	    action, ms, T.ms_update, T.ms_forward, T.ms_lens, ms_draw);
	fflush(T.timing_log);
}

/* A key (or a line) starts an action: its clock and its sums. */
static void
action_begin(void)
{
	T.t_key = fl_now();
	T.ms_update = T.ms_forward = T.ms_lens = 0;
}

/* The session part of a command's flags, applied before the next command
 * of a line runs: recompute (with progress and Ctrl-C), time. */
static int
explore_apply(ui_ctx *c, int flags, char **cause)
{
	if (flags & UI_SESSION_MASK) {
		int rc;

		work_begin();
		rc = session_update(c->s, flags & UI_SESSION_MASK, &progress, cause);
		sig_int = 0;
		T.ms_update += c->s->ms_update;
		T.ms_forward += c->s->ms_forward;
		T.ms_lens += c->s->ms_lens;
		if (rc == FL_STOPPED) {
			/* The rest of the line does not run either. */
			ctx_message(c, false, "%s cancelled", c->s->cancelled);
			c->cancelled = true;
		} else if (rc < 0)
			return -1;
		flags = (flags & ~UI_SESSION_MASK) | UI_REDRAW;
	}
	if (flags & UI_TIME) {
		work_begin();
		ctx_time(c, &progress, draw_cb, NULL);
		sig_int = 0;
		T.action = NULL;
		flags = (flags & ~UI_TIME) | UI_REDRAW;
	}
	return flags;
}

/* Applies the rest of the reaction flags: theme, lines, drawing. Returns
 * false when the explorer should quit. */
static bool
apply(int flags)
{
	ui_ctx *c = T.c;
	char *cause = NULL;

	if (flags & UI_QUIT)
		return false;
	if (flags & UI_THEME)
		theme_apply();
	if (flags & (UI_SESSION_MASK | UI_TIME)) {
		int r = explore_apply(c, flags, &cause);

		if (r < 0) {
			ctx_message(c, true, "%s", cause);
			free(cause);
			flags = (flags & ~(UI_SESSION_MASK | UI_TIME)) | UI_REDRAW;
		} else
			flags = r;
	}
	if (flags & UI_EDIT_PROMPT)
		edit_open(EDIT_PROMPT, c->s->prompt);
	else if (flags & UI_COMMAND_LINE)
		edit_open(EDIT_COMMAND, c->cmd_initial);
	if (flags & UI_REPAINT)
		clearok(curscr, TRUE);
	if (flags & (UI_REDRAW | UI_REPAINT | UI_EDIT_PROMPT | UI_COMMAND_LINE)) {
		double t0 = fl_now(), t1;

		screen_draw();
		if (T.action != NULL) {
			/* From the key (or Enter) to a fully drawn screen. */
			t1 = fl_now();
			c->ms_last_action = 1000 * (t1 - T.t_key);
			c->last_action = T.action;
			timing_log(T.action, c->ms_last_action, 1000 * (t1 - t0));
			T.action = NULL;
			screen_draw();
		}
	}
	return true;
}

static int
run_command(const char *line)
{
	char *cause = NULL;
	int flags;

	/* Commands that work themselves (:eval) poll Ctrl-C too. */
	work_begin();
	flags = cmd_run_line(T.c, line, &cause);
	if (T.c->cancelled)
		sig_int = 0;

	if (flags < 0) {
		ctx_message(T.c, true, "%s", cause);
		free(cause);
		return UI_REDRAW;
	}
	return flags;
}

/* A line finished in the editor. */
static int
edit_done(void)
{
	int mode = T.edit, flags = UI_REDRAW;
	char *line = T.line;

	T.line = NULL;
	edit_close();
	if (line == NULL)
		return flags;
	action_begin();
	if (mode == EDIT_PROMPT) {
		history_add(EDIT_PROMPT, line);
		if (line[0] != '\0') {
			flags |= session_set_prompt(T.c->s, line);
			T.action = "prompt";
		}
	} else {
		history_add(EDIT_COMMAND, line);
		flags |= run_command(line);
		T.action = "command";
	}
	free(line);
	return flags;
}

static int
key_edit(uint32_t key)
{
	int n;

	free(T.completions);
	T.completions = NULL;
	if (key == UI_KEY_RESIZE)
		return UI_REDRAW;
	if (key == UI_KEY_ESC || key == 7 /* C-g */) {
		edit_close();
		return UI_REDRAW;
	}
	if ((n = key_bytes(key, T.in)) == 0)
		return 0;
	T.in_n = n;
	T.in_pos = 0;
	while (T.in_pos < T.in_n && !T.line_done)
		rl_callback_read_char();
	T.in_n = T.in_pos = 0;
	if (T.line_done)
		return edit_done() | UI_REDRAW;
	return 0;
}

static int
key_main(uint32_t key)
{
	ui_ctx *c = T.c;
	const char *cmd;
	char kb[32];

	if (key == UI_KEY_RESIZE)
		return UI_REDRAW;
	free(c->message);
	c->message = NULL;
	if (c->overlay != NULL) {
		free(c->overlay);
		free(c->overlay_title);
		c->overlay = c->overlay_title = NULL;
		if (key == UI_KEY_ESC || key == 'q' || key == UI_KEY_ENTER)
			return UI_REDRAW;
	}
	if (c->help && key != '?') {
		c->help = false;
		if (key == UI_KEY_ESC || key == 'q' || key == UI_KEY_ENTER)
			return UI_REDRAW;
	}
	if ((cmd = keymap_lookup(&c->keys, key)) == NULL) {
		ctx_message(c, true, "%s is not bound to a command (? shows the keys)",
		    ui_key_name(key, kb, sizeof kb));
		return UI_REDRAW;
	}
	action_begin();
	T.action = ui_key_name(key, kb, sizeof kb)[0] != '\0' ? cmd : NULL;
	return run_command(cmd) | UI_REDRAW;
}

static uint32_t
translate_key(int r, wint_t wc)
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
		return T.edit != EDIT_NONE ? UI_KEY_BACKSPACE : (uint32_t)wc;
	return (uint32_t)wc;
}

static int
on_interrupt(void)
{
	ui_ctx *c = T.c;
	double now = fl_now();

	if (T.edit != EDIT_NONE) {
		edit_close();
		return UI_REDRAW;
	}
	if (T.int_at > 0 && now - T.int_at < 2.0)
		return UI_QUIT;
	T.int_at = now;
	ctx_message(c, false, "press Ctrl-C again to quit (or q)");
	return UI_REDRAW;
}

/* The terminal's size, if it is not the one curses lays out for: a
 * SIGWINCH that lands between curses' own check and poll() below would
 * otherwise wait for the next key. */
static bool
size_changed(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 ||
	    ws.ws_col == 0 || (ws.ws_row == LINES && ws.ws_col == COLS))
		return false;
	resize_term(ws.ws_row, ws.ws_col);
	return true;
}

#define SIZE_POLL_MS 250	/* how often an idle explorer checks its size */

static void
loop(int flags)
{
	for (;;) {
		struct pollfd pfd = { STDIN_FILENO, POLLIN, 0 };
		int r, mode;
		wint_t wc;

		if (!apply(flags) || sig_term)
			return;
		flags = 0;
		if (sig_int) {
			sig_int = 0;
			flags |= on_interrupt();
			continue;
		}
		while ((r = get_wch(&wc)) != ERR) {
			uint32_t key = translate_key(r, wc);

			/* A lone Escape closes an edit; Escape then a key is Meta-key. */
			if (key == UI_KEY_ESC && T.edit != EDIT_NONE) {
				wint_t next;
				int r2 = get_wch(&next);

				if (r2 != ERR) {
					int n = 0;

					T.in[n++] = 27;
					n += key_bytes(translate_key(r2, next), T.in + n);
					T.in_n = n;
					T.in_pos = 0;
					while (T.in_pos < T.in_n && !T.line_done)
						rl_callback_read_char();
					T.in_n = T.in_pos = 0;
					if (T.line_done)
						flags |= edit_done();
					continue;
				}
			}
			if (key == 0)
				continue;
			mode = T.edit;
			flags |= T.edit != EDIT_NONE ? key_edit(key) : key_main(key);
			/* Keys after one that opens or closes a line, or starts work,
			 * belong to the new mode: apply first. */
			if (flags & (UI_QUIT | UI_SESSION_MASK | UI_TIME | UI_EDIT_PROMPT |
			    UI_COMMAND_LINE) || T.edit != mode)
				break;
		}
		if (size_changed())
			flags |= UI_REDRAW;
		if (flags != 0 || sig_int || sig_term)
			continue;
		if (poll(&pfd, 1, SIZE_POLL_MS) < 0 && errno != EINTR)
			return;
	}
}

static void
source_rc(ui_ctx *c, int *flags)
{
	char *dir = fl_config_dir(), *path, *cause = NULL;
	char *argv[] = { "source", NULL, NULL };
	const ui_cmd *src = cmd_find("source");
	int r;

	if (dir == NULL)
		return;
	path = xasprintf("%s/rc", dir);
	free(dir);
	if (fl_file_exists(path)) {
		argv[1] = path;
		if ((r = src->fn(c, 2, argv, &cause)) < 0) {
			ctx_message(c, true, "%s", cause);
			free(cause);
		} else
			*flags |= r;
	}
	free(path);
}

int
ui_explore_run(const ui_options *o)
{
	ui_session *s = session_new();
	ui_ctx c;
	char *cause = NULL;
	int flags = UI_REDRAW, status = 0;
	const char *log;

	setlocale(LC_ALL, "");
	T.utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	ctx_init(&c, s, o->ascii || !T.utf8);
	c.progress = &progress;
	c.apply = explore_apply;
	T.c = &c;
	T.forced_depth = o->depth;
	if ((log = getenv("FACTLENS_TIMING_LOG")) != NULL && log[0] != '\0')
		T.timing_log = fopen(log, "a");
	if (o->theme != NULL && theme_load(&c.theme, o->theme, &cause) != 0) {
		fprintf(stderr, "factlens: %s\n", cause);
		free(cause);
		ctx_clear(&c);
		session_free(s);
		return 2;
	}
	session_set_prompt(s, "The capital of France is");
	s->model_opts = o->model_opts;
	if (o->model_dir != NULL) {
		flags |= session_set_model(s, o->model_dir);
		T.action = "startup";
	}
	signals_install();
	if (term_init() != 0) {
		fprintf(stderr, "factlens: cannot initialise the terminal\n");
		return 1;
	}
	T.cv = canvas_new(COLS, LINES);
	readline_init();
	action_begin();
	/* Show the screen before the model loads: loading can take a while. */
	screen_draw();
	if (!o->no_rc)
		source_rc(&c, &flags);
	loop(flags);
	term_restore();
	if (sig_term)
		status = 128 + SIGTERM;
	history_switch(EDIT_PROMPT);
	for (int m = EDIT_PROMPT; m <= EDIT_COMMAND; m++) {
		free(T.hist_path[m]);
		if (m != T.hist_cur)
			free(T.hist[m]);
	}
	free(T.hist[T.hist_cur]);
	clear_history();
	if (T.devnull != NULL)
		fclose(T.devnull);
	if (T.timing_log != NULL)
		fclose(T.timing_log);
	canvas_free(T.cv);
	ctx_clear(&c);
	session_free(s);
	return status;
}
