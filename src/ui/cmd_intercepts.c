/*
 * cmd_intercepts.c - :intercepts [LAYER], the MLP intercepts fitted on each
 * country task side by side (the paper's task-aware intercept): their
 * cosines (decomp_intercept_cosines), norms and top tokens over the panes.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/decompose.h"
#include "base/paths.h"
#include "base/progress.h"
#include "base/util.h"
#include "ui.h"

/* The country tasks whose intercepts :intercepts compares. */
static const char *const icpt_tasks[] = {
	"country_capital", "country_language", "country_currency", "country_continent",
};
#define ICPT_TASKS ((int)(sizeof icpt_tasks / sizeof icpt_tasks[0]))

/* :intercepts [LAYER]: layer's MLP intercept fitted on each country task
 * there is (zero-shot, main templates, as the pane fits it), their cosines,
 * norms and top tokens, shown over the panes until a key. */
int
ui_cmd_intercepts(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	const char *name[ICPT_TASKS];
	int n = 0, l, L, D, top[ICPT_TASKS][3], np[ICPT_TASKS], rc = 0;
	double cos[ICPT_TASKS * ICPT_TASKS], norm[ICPT_TASKS];
	char *text = NULL;
	size_t len = 0;
	float *v;
	FILE *f;

	if (s->model == NULL)
		return fl_error(cause, "intercepts: no model loaded (use :model DIR)");
	L = session_layers(s);
	l = s->layer;
	if (argc > 1 && ui_cursor_arg("intercepts", argv[1], s->layer, L, 1, &l, cause) != 0)
		return -1;
	D = s->model->cfg.d_model;
	v = xcalloc((size_t)ICPT_TASKS * D, sizeof *v);
	for (int i = 0; i < ICPT_TASKS && rc == 0; i++) {
		char *path = fl_task_path(icpt_tasks[i]);

		if (fl_file_exists(path)) {
			rc = session_task_intercept(s, path, l, c->progress,
			    v + (size_t)n * D, top[n], &np[n], cause);
			name[n++] = icpt_tasks[i];
		}
		free(path);
	}
	if (rc == FL_STOPPED) {
		free(v);
		ctx_message(c, false, "intercepts cancelled");
		c->cancelled = true;
		return UI_REDRAW;
	}
	if (rc == 0 && n == 0)
		rc = fl_error(cause, "intercepts: none of the country tasks (%s, ...) "
		    "is in the tasks directory", icpt_tasks[0]);
	if (rc != 0) {
		free(v);
		return -1;
	}
	decomp_intercept_cosines(v, n, D, cos, norm);
	if ((f = open_memstream(&text, &len)) == NULL) {
		free(v);
		return fl_error(cause, "intercepts: out of memory");
	}
	fprintf(f, "layer %d's MLP intercept fitted on each task (zero-shot, main "
	    "templates)\ncosine between the intercepts:\n\n%-18s", l, "");
	for (int j = 0; j < n; j++)
		fprintf(f, " %9.9s", name[j] + 8);	/* without "country_" */
	fputc('\n', f);
	for (int i = 0; i < n; i++) {
		fprintf(f, "%-18s", name[i]);
		for (int j = 0; j < n; j++)
			fprintf(f, " %9.3f", cos[i * n + j]);
		fputc('\n', f);
	}
	fprintf(f, "\n%-18s %7s %8s  %s\n", "task", "prompts", "norm", "top tokens");
	for (int i = 0; i < n; i++) {
		fprintf(f, "%-18s %7d %8.2f ", name[i], np[i], norm[i]);
		for (int k = 0; k < 3; k++) {
			char *t = session_token_label(s, top[i][k], c->g->space, c->g->newline);

			fprintf(f, " %s", t);
			free(t);
		}
		fputc('\n', f);
	}
	fprintf(f, "\ntask-aware intercepts differ: a cosine near 1 says one shared "
	    "vector");
	fclose(f);
	free(v);
	ctx_overlay(c, text, xasprintf("intercepts at layer %d (any key closes)",
	    l));
	c->eval_view = false;
	ctx_message(c, false, "intercepts of %d tasks at layer %d done", n, l);
	return UI_REDRAW;
}
