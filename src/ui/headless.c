/*
 * headless.c - the explorer without a terminal: runs commands from a file or
 * -c, and prints the screen as text (at each :render and at the end), for
 * scripts and for the tests' expected-output files.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "ui.h"

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
ctx_time(ui_ctx *c, const fl_progress *p, void (*draw)(void *), void *ud)
{
	int n = c->time_reps, done = 0;
	double *upd = xcalloc((size_t)n, sizeof *upd), *fwd = xcalloc((size_t)n, sizeof *fwd);
	double *drw = xcalloc((size_t)n, sizeof *drw), *lns = xcalloc((size_t)n, sizeof *lns);
	char *cause = NULL;

	for (int i = 0; i < n; i++) {
		double t0;
		int rc;

		(void)fl_progress_report(p, "time", i, n);
		rc = session_update(c->s, SESSION_RUN, p, &cause);
		if (rc != 0) {
			if (rc < 0) {
				ctx_message(c, true, "time: %s", cause);
				free(cause);
			}
			break;
		}
		upd[i] = c->s->ms_update;
		fwd[i] = c->s->ms_forward;
		lns[i] = c->s->ms_lens;
		t0 = fl_now();
		if (draw != NULL)
			draw(ud);
		drw[i] = 1000 * (fl_now() - t0);
		done++;
		if (fl_progress_report(p, "time", i + 1, n))
			break;
	}
	if (done > 0) {
		qsort(upd, (size_t)done, sizeof *upd, cmp_double);
		qsort(fwd, (size_t)done, sizeof *fwd, cmp_double);
		qsort(drw, (size_t)done, sizeof *drw, cmp_double);
		qsort(lns, (size_t)done, sizeof *lns, cmp_double);
		ctx_message(c, false, "time: %d of %d runs%s, median ms: forward %.1f, "
		    "lens %.1f, all %.1f, format+draw %.1f", done, n,
		    done < n ? " (cancelled)" : "", fwd[done / 2], lns[done / 2], upd[done / 2],
		    drw[done / 2]);
	}
	free(upd);
	free(fwd);
	free(drw);
	free(lns);
	return done;
}

static void
batch_render(const ui_ctx *c, ui_canvas *cv)
{
	ui_format(c, cv);
	canvas_print(cv, stdout);
	fflush(stdout);
}

/* Applies a command's reaction flags headless: recompute, time, render. */
static ui_canvas *batch_canvas;

static int
batch_apply(ui_ctx *c, int flags, char **cause)
{
	int rc;

	if (flags & UI_SESSION_MASK) {
		rc = session_update(c->s, flags & UI_SESSION_MASK, NULL, cause);
		if (rc < 0)
			return -1;
		if ((flags & SESSION_LOAD) && rc == 0 && c->s->model->nonfinite != NULL)
			ctx_message(c, true, "warning: %s", c->s->model->nonfinite);
		else if (c->s->note[0] != '\0' && c->message == NULL)
			ctx_message(c, false, "%s", c->s->note);
	}
	if (flags & UI_TIME)
		ctx_time(c, NULL, NULL, NULL);
	if (flags & UI_RENDER)
		batch_render(c, batch_canvas);
	return flags & UI_QUIT;
}

int
ui_batch_run(const ui_options *o)
{
	ui_session *s = session_new();
	ui_ctx c;
	ui_canvas *cv;
	char *text = NULL, *cause = NULL, *p;
	const char *label;
	int status = 0, lineno = 0;
	bool quit = false;
	char want_buf[65];
	const char *want;
	const fl_model *verified = NULL;

	ctx_init(&c, s, o->ascii);
	c.batch = true;
	c.apply = batch_apply;
	cv = canvas_new(o->width, o->height);
	batch_canvas = cv;
	if (o->theme != NULL && theme_load(&c.theme, o->theme, &cause) != 0)
		goto fail;
	s->model_opts = o->model_opts;
	if (o->model_dir != NULL) {
		session_set_model(s, o->model_dir);
		if (session_update(s, SESSION_LOAD, NULL, &cause) < 0)
			goto fail;
		if (s->model->nonfinite != NULL)
			fprintf(stderr, "factlens: warning: %s\n", s->model->nonfinite);
	}
	if (o->commands != NULL) {
		text = xstrdup(o->commands);
		label = "-c";
	} else {
		size_t len;

		label = o->script_file;
		if (strcmp(o->script_file, "-") == 0) {
			size_t cap = 4096;

			len = 0;
			text = xmalloc(cap);
			for (size_t r; (r = fread(text + len, 1, cap - len - 1, stdin)) > 0; ) {
				len += r;
				if (cap - len < 2)
					text = xrealloc(text, cap *= 2);
			}
			text[len] = '\0';
			label = "standard input";
		} else if ((text = fl_read_file(o->script_file, &len, 1 << 24, &cause)) == NULL)
			goto fail;
	}
	/* A saved session's weights hash: checked before the first command
	 * that is not :model (the file's own model line loads the weights it
	 * names), and again whenever the model changes. */
	want = ui_saved_hash(text, want_buf);
	if (o->replay && want == NULL) {
		cause = xasprintf("%s: no weights-sha256 line: --replay runs only "
		    "files written by :save (use --script for others)", label);
		goto fail;
	}
	for (p = text; p != NULL && *p != '\0' && !quit; ) {
		char *nl = strchr(p, '\n'), *line = p;
		int flags;

		if (nl != NULL)
			*nl = '\0';
		p = nl != NULL ? nl + 1 : NULL;
		lineno++;
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '\0' || *line == '#')
			continue;
		if (want != NULL && s->model != NULL && s->model != verified &&
		    strncmp(line, "model ", 6) != 0) {
			if (ui_replay_verify(s, label, want, &cause) != 0)
				goto fail;
			verified = s->model;
		}
		if ((flags = cmd_run_line(&c, line, &cause)) < 0) {
			char *where = xasprintf("%s:%d: %s", label, lineno, cause);

			free(cause);
			cause = where;
			goto fail;
		}
		quit = (flags & UI_QUIT) != 0;
	}
	if (want != NULL && s->model != NULL && s->model != verified &&
	    ui_replay_verify(s, label, want, &cause) != 0)
		goto fail;
	batch_render(&c, cv);
	goto out;
fail:
	fprintf(stderr, "factlens: %s\n", cause);
	free(cause);
	status = 1;
out:
	free(text);
	canvas_free(cv);
	ctx_clear(&c);
	session_free(s);
	return status;
}
