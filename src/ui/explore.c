/*
 * explore.c - the interactive explorer's loop: it reads keys from the
 * terminal (tui.c), hands them to the edit line (prompt.c) or the key map,
 * and applies the reaction flags that keys and commands return: recompute
 * the session (with progress and Ctrl-C), reapply the theme, open a line,
 * draw. See term.h for the terminal's two halves.
 *
 * Ctrl-C is a signal (cbreak mode keeps ISIG): during long work it only
 * sets a flag that the progress callback of the session and of :eval
 * returns, so the analysis stops at its next batch and the explorer says
 * what was cancelled; it cancels an edit, and at rest asks to be pressed
 * again to quit.
 */
#include "autoconfig.h"

#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/paths.h"
#include "base/util.h"
#include "term.h"

static struct {
	double		 t_key;		/* when the action began */
	const char	*action;
	double		 work_start, last_progress;
	/* The action's session updates, summed for the timing log. */
	double		 ms_update, ms_forward, ms_lens;
	double		 int_at;	/* when Ctrl-C was pressed at rest */
	FILE		*timing_log;	/* FACTLENS_TIMING_LOG */
} T;

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
		return tui_sig_int || tui_sig_term;
	T.last_progress = now;
	v = view_of(tui.cv, 0, tui.cv->h - 2, tui.cv->w, 1);
	view_fill(&v, UI_ROLE_STATUS);
	if (total > 1)
		snprintf(buf, sizeof buf, " %s %ld/%ld ... Ctrl-C to cancel", what, done,
		    total);
	else
		snprintf(buf, sizeof buf, " %s ... Ctrl-C to cancel", what);
	view_put(&v, 0, 0, -1, UI_ROLE_STATUS, buf);
	tui_paint();
	tui_flush();
	return tui_sig_int || tui_sig_term;
}

static const fl_progress progress = { progress_report, NULL };

/* Before work that may show progress: its clock starts, and a Ctrl-C from
 * before it does not cancel it. */
static void
work_begin(void)
{
	T.work_start = fl_now();
	T.last_progress = 0;
	tui_sig_int = 0;
}

static void
draw_cb(void *ud)
{
	(void)ud;
	tui_draw();
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
		tui_sig_int = 0;
		T.ms_update += c->s->ms_update;
		T.ms_forward += c->s->ms_forward;
		T.ms_lens += c->s->ms_lens;
		if (rc == FL_STOPPED) {
			/* The rest of the line does not run either. */
			ctx_message(c, false, "%s cancelled", c->s->cancelled);
			c->cancelled = true;
		} else if (rc < 0)
			return -1;
		else if ((flags & SESSION_LOAD) && c->s->model->nonfinite != NULL)
			ctx_message(c, true, "warning: %s", c->s->model->nonfinite);
		else if (c->s->note[0] != '\0' && c->message == NULL)
			ctx_message(c, false, "%s", c->s->note);
		flags = (flags & ~UI_SESSION_MASK) | UI_REDRAW;
	}
	if (flags & UI_TIME) {
		work_begin();
		ctx_time(c, &progress, draw_cb, NULL);
		tui_sig_int = 0;
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
	ui_ctx *c = tui.c;
	char *cause = NULL;

	if (flags & UI_QUIT)
		return false;
	if (flags & UI_THEME)
		tui_theme_apply();
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
		prompt_open(EDIT_PROMPT, c->s->prompt);
	else if (flags & UI_COMMAND_LINE)
		prompt_open(EDIT_COMMAND, c->cmd_initial);
	if (flags & UI_REPAINT)
		tui_repaint_all();
	if (flags & (UI_REDRAW | UI_REPAINT | UI_EDIT_PROMPT | UI_COMMAND_LINE)) {
		double t0 = fl_now(), t1;

		tui_draw();
		if (T.action != NULL) {
			/* From the key (or Enter) to a fully drawn screen. */
			t1 = fl_now();
			c->ms_last_action = 1000 * (t1 - T.t_key);
			c->last_action = T.action;
			timing_log(T.action, c->ms_last_action, 1000 * (t1 - t0));
			T.action = NULL;
			tui_draw();
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
	flags = cmd_run_line(tui.c, line, &cause);
	if (tui.c->cancelled)
		tui_sig_int = 0;

	if (flags < 0) {
		ctx_message(tui.c, true, "%s", cause);
		free(cause);
		return UI_REDRAW;
	}
	return flags;
}

/* A line finished in the editor. */
static int
edit_done(void)
{
	int mode = prompt_mode(), flags = UI_REDRAW;
	char *line = prompt_take_line();

	prompt_close();
	if (line == NULL)
		return flags;
	action_begin();
	if (mode == EDIT_PROMPT) {
		prompt_history_add(EDIT_PROMPT, line);
		if (line[0] != '\0') {
			flags |= session_set_prompt(tui.c->s, line);
			T.action = "prompt";
		}
	} else {
		prompt_history_add(EDIT_COMMAND, line);
		flags |= run_command(line);
		T.action = "command";
	}
	free(line);
	return flags;
}

static int
key_edit(uint32_t key)
{
	prompt_completions_clear();
	if (key == UI_KEY_RESIZE)
		return UI_REDRAW;
	if (key == UI_KEY_ESC || key == 7 /* C-g */) {
		prompt_close();
		return UI_REDRAW;
	}
	if (prompt_key(key))
		return edit_done() | UI_REDRAW;
	return 0;
}

static int
key_main(uint32_t key)
{
	ui_ctx *c = tui.c;
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
		if (key == UI_KEY_ESC || key == 'q' || key == UI_KEY_ENTER) {
			c->eval_view = false;
			return UI_REDRAW;
		}
	}
	if (c->help_cmds) {
		c->help_cmds = false;
		if (key == UI_KEY_ESC || key == 'q' || key == UI_KEY_ENTER)
			return UI_REDRAW;
	}
	if (c->help && key != '?') {
		c->help = false;
		if (key == UI_KEY_ESC || key == 'q' || key == UI_KEY_ENTER)
			return UI_REDRAW;
	}
	if ((c->s->flow == FLOW_OFF || !session_ready(c->s) ||
	    (cmd = keymap_lookup(&c->flow_keys, key)) == NULL) &&
	    (cmd = keymap_lookup(&c->keys, key)) == NULL) {
		ctx_message(c, true, "%s is not bound to a command (? shows the keys)",
		    ui_key_name(key, kb, sizeof kb));
		return UI_REDRAW;
	}
	action_begin();
	T.action = ui_key_name(key, kb, sizeof kb)[0] != '\0' ? cmd : NULL;
	return run_command(cmd) | UI_REDRAW;
}

static int
on_interrupt(void)
{
	ui_ctx *c = tui.c;
	double now = fl_now();

	if (prompt_mode() != EDIT_NONE) {
		prompt_close();
		return UI_REDRAW;
	}
	if (T.int_at > 0 && now - T.int_at < 2.0)
		return UI_QUIT;
	T.int_at = now;
	ctx_message(c, false, "press Ctrl-C again to quit (or q)");
	return UI_REDRAW;
}

#define SIZE_POLL_MS 250	/* how often an idle explorer checks its size */

static void
loop(int flags)
{
	for (;;) {
		struct pollfd pfd = { STDIN_FILENO, POLLIN, 0 };
		uint32_t key;
		int mode;

		if (!apply(flags) || tui_sig_term)
			return;
		flags = 0;
		if (tui_sig_int) {
			tui_sig_int = 0;
			flags |= on_interrupt();
			continue;
		}
		while (tui_key(prompt_mode() != EDIT_NONE, &key)) {
			/* A lone Escape closes an edit; Escape then a key is Meta-key. */
			if (key == UI_KEY_ESC && prompt_mode() != EDIT_NONE) {
				uint32_t next;

				if (tui_key(true, &next)) {
					if (prompt_meta_key(next))
						flags |= edit_done();
					continue;
				}
			}
			if (key == 0)
				continue;
			mode = prompt_mode();
			flags |= mode != EDIT_NONE ? key_edit(key) : key_main(key);
			/* Keys after one that opens or closes a line, or starts work,
			 * belong to the new mode: apply first. */
			if (flags & (UI_QUIT | UI_SESSION_MASK | UI_TIME | UI_EDIT_PROMPT |
			    UI_COMMAND_LINE) || prompt_mode() != mode)
				break;
		}
		if (tui_size_changed())
			flags |= UI_REDRAW;
		if (flags != 0 || tui_sig_int || tui_sig_term)
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
	tui.utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	ctx_init(&c, s, o->ascii || !tui.utf8);
	c.progress = &progress;
	c.apply = explore_apply;
	tui.c = &c;
	tui.forced_depth = o->depth;
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
	tui_signals_install();
	if (tui_init() != 0) {
		fprintf(stderr, "factlens: cannot initialise the terminal\n");
		return 1;
	}
	tui.cv = canvas_new(tui_cols(), tui_lines());
	prompt_init();
	action_begin();
	/* Show the screen before the model loads: loading can take a while. */
	tui_draw();
	if (!o->no_rc)
		source_rc(&c, &flags);
	loop(flags);
	tui_restore();
	if (tui_sig_term)
		status = 128 + SIGTERM;
	prompt_free();
	if (T.timing_log != NULL)
		fclose(T.timing_log);
	canvas_free(tui.cv);
	ctx_clear(&c);
	session_free(s);
	return status;
}
