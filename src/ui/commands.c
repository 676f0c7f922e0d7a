/*
 * commands.c - the command table: one entry per command, driving lookup,
 * completion, :help and the man page (doc.c). Every key binding is one of
 * these command strings.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "analysis/eval.h"
#include "base/util.h"
#include "ui.h"
#include "analysis/lens.h"
#include "base/paths.h"
#include "plot/plot.h"

void
ctx_init(ui_ctx *c, ui_session *s, bool ascii)
{
	memset(c, 0, sizeof *c);
	c->s = s;
	c->ascii = ascii;
	c->g = ui_glyphs_get(ascii);
	c->compare_last = COMPARE_MASK;
	theme_default(&c->theme);
	keymap_default(&c->keys);
	keymap_default_flow(&c->flow_keys);
}

void
ctx_clear(ui_ctx *c)
{
	keymap_clear(&c->keys);
	keymap_clear(&c->flow_keys);
	free(c->message);
	free(c->cmd_initial);
	free(c->overlay);
	free(c->overlay_title);
	free(c->compare_last_prompt);
	c->message = c->cmd_initial = c->overlay = c->overlay_title = NULL;
	c->compare_last_prompt = NULL;
}

void
ctx_message(ui_ctx *c, bool error, const char *fmt, ...)
{
	va_list ap;
	char *m;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	free(c->message);
	c->message = m;
	c->message_error = error;
}

/* ---- argument helpers --------------------------------------------- */

static int
parse_toggle(const char *arg, bool cur, bool *out, const char *cmd, char **cause)
{
	if (arg == NULL || strcmp(arg, "toggle") == 0)
		*out = !cur;
	else if (strcmp(arg, "on") == 0)
		*out = true;
	else if (strcmp(arg, "off") == 0)
		*out = false;
	else
		return fl_error(cause, "%s: expected on, off or toggle, not '%s'", cmd, arg);
	return 0;
}

/* A whole decimal number that fits a long; -1 otherwise. */
static int
parse_int(const char *s, long *v)
{
	char *end;

	if (*s == '\0' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	*v = strtol(s, &end, 10);
	return *end == '\0' && errno == 0 ? 0 : -1;
}

/* Moves a cursor over 0..n-1: N absolute (an error outside the range),
 * +N/-N relative and +page/-page (stopping at the ends), first/last. 0, or
 * -1 with *cause naming the command. */
int
ui_cursor_arg(const char *what, const char *arg, int cur, int n, int page, int *out,
    char **cause)
{
	long v, to;

	if (strcmp(arg, "first") == 0)
		to = 0;
	else if (strcmp(arg, "last") == 0)
		to = n - 1;
	else if (strcmp(arg, "+page") == 0)
		to = (long)cur + page;
	else if (strcmp(arg, "-page") == 0)
		to = (long)cur - page;
	else if ((arg[0] == '+' || arg[0] == '-') && parse_int(arg + 1, &v) == 0) {
		/* relative: clamp the step first, so no sum overflows */
		if (v > n)
			v = n;
		to = arg[0] == '+' ? (long)cur + v : (long)cur - v;
	} else if (parse_int(arg, &v) == 0) {
		if (v < 0 || v > n - 1)
			return fl_error(cause, "%s: %s is not in 0..%d", what, arg, n - 1);
		to = v;
	} else if (arg[strspn(arg, "+-0123456789")] == '\0' && isdigit((unsigned char)arg[strlen(arg) - 1]))
		return fl_error(cause, "%s: %s is not in 0..%d", what, arg, n - 1);
	else
		return fl_error(cause, "%s: expected N (0..%d), +N, -N, first, last, +page "
		    "or -page, not '%s'", what, n - 1, arg);
	*out = to < 0 ? 0 : to > n - 1 ? n - 1 : (int)to;
	return 0;
}

static int
need_model(ui_ctx *c, const char *cmd, char **cause)
{
	if (c->s->model == NULL)
		return fl_error(cause, "%s: no model loaded (use :model DIR)", cmd);
	return 0;
}

/* Work that needs a task (the intercept, :eval, path patching) takes the
 * default one when none is loaded, as `i` does, and says so. The flags
 * the load needs (SESSION_TASK | SESSION_LAST, or 0 when a task was there),
 * or -1 with *cause. */
static int
need_task(ui_ctx *c, const char *what, char **cause)
{
	int flags;

	if (c->s->task != NULL)
		return 0;
	if ((flags = session_load_task(c->s, fl_default_task(), cause)) < 0)
		return -1;
	ctx_message(c, false, "%s: loaded the default task %s (:task NAME for another)",
	    what, c->s->task->name);
	return flags;
}

/* ---- the commands --------------------------------------------------- */

static int
c_answer(ui_ctx *c, int argc, char **argv, char **cause)
{
	const char *text = argc > 1 ? argv[1] : NULL;

	if (text != NULL && (strcmp(text, "top") == 0 || text[0] == '\0'))
		text = NULL;
	if (text != NULL && session_answer_check(c->s, text, cause) != 0)
		return -1;
	return session_set_answer(c->s, text) | UI_REDRAW;
}

static int
c_bind(ui_ctx *c, int argc, char **argv, char **cause)
{
	if (keymap_bind(&c->keys, argv[1], argv[2], cause) != 0)
		return -1;
	return UI_REDRAW;
}

static int
c_command_prompt(ui_ctx *c, int argc, char **argv, char **cause)
{
	free(c->cmd_initial);
	c->cmd_initial = argc > 1 ? xstrdup(argv[1]) : NULL;
	return UI_COMMAND_LINE;
}

/* :compare mask|intercept|PROMPT: B beside A; off ends it; toggle ends
 * it or brings back the last one (the mask's at first). */
static int
c_compare(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	const char *a = argc > 1 ? argv[1] : NULL, *prompt = NULL;
	ui_compare k;
	int flags;

	if (a == NULL) {
		if (s->compare == COMPARE_OFF)
			ctx_message(c, false, "compare: off (:compare mask, intercept or "
			    "PROMPT shows B beside A)");
		else if (s->compare == COMPARE_PROMPT)
			ctx_message(c, false, "compare: A this prompt, B \"%s\"",
			    s->compare_prompt);
		else
			ctx_message(c, false, "compare: A as set, B with the %s flipped",
			    s->compare == COMPARE_MASK ? "final-layer mask" :
			    "intercept removal");
		return UI_REDRAW;
	}
	if (strcmp(a, "toggle") == 0) {
		k = s->compare != COMPARE_OFF ? COMPARE_OFF : c->compare_last;
		prompt = c->compare_last_prompt;
	} else if (strcmp(a, "off") == 0)
		k = COMPARE_OFF;
	else if (strcmp(a, "mask") == 0)
		k = COMPARE_MASK;
	else if (strcmp(a, "intercept") == 0)
		k = COMPARE_INTERCEPT;
	else {
		k = COMPARE_PROMPT;
		prompt = a;
	}
	if (k != COMPARE_OFF && !session_ready(s))
		return fl_error(cause, "compare: run a prompt first");
	if ((flags = session_set_compare(s, k, prompt, cause)) < 0)
		return -1;
	if (k != COMPARE_OFF) {
		c->compare_last = k;
		if (k == COMPARE_PROMPT && prompt != c->compare_last_prompt) {
			free(c->compare_last_prompt);
			c->compare_last_prompt = xstrdup(prompt);
		}
	}
	if (k == COMPARE_OFF)
		ctx_message(c, false, "compare off");
	else if (k == COMPARE_PROMPT)
		ctx_message(c, false, "compare: A this prompt, B \"%s\" with A's answer; "
		    "c ends it", prompt);
	else
		ctx_message(c, false, "compare: A as set, B with the %s %s; c ends it",
		    k == COMPARE_MASK ? "final-layer mask" : "intercept removal",
		    (k == COMPARE_MASK ? s->mask : s->intercept) ? "off" : "on");
	return flags | UI_REDRAW;
}

static int
c_edit_prompt(ui_ctx *c, int argc, char **argv, char **cause)
{
	return UI_EDIT_PROMPT;
}

/* The grid of factlens eval for the loaded task, shown over the panes:
 * :eval [K] [main|paraphrase|heldout] [single-token] [counterfactual], in
 * any order; K defaults to :shots, the templates to main; the mask is the
 * session's (every head, or :mask heads LIST). */
static int
c_eval(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	fl_eval_opts o;
	const fl_eval_result *rp = &s->eval;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc, loaded, shots = s->shots;

	eval_opts_init(&o);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *end;
		long k = strtol(a, &end, 10);
		int set;

		if (a[0] != '\0' && *end == '\0') {
			if (k < 0 || k > 64)
				return fl_error(cause, "eval: shots from 0 to 64, not %s", a);
			shots = (int)k;
		} else if ((set = task_set_parse(a)) >= 0)
			o.set = (fl_template_set)set;
		else if (strcmp(a, "single-token") == 0)
			o.single_token = true;
		else if (strcmp(a, "counterfactual") == 0)
			o.counterfactual = true;
		else
			return fl_error(cause, "eval: '%s' is none of K (shots), main, "
			    "paraphrase, heldout, single-token, counterfactual", a);
	}
	if (need_model(c, "eval", cause) != 0 || (loaded = need_task(c, "eval", cause)) < 0)
		return -1;
	o.mask_heads = s->mask_heads;
	rc = session_eval(s, &o, shots, c->progress, cause);
	if (rc == FL_STOPPED) {
		ctx_message(c, false, "eval cancelled");
		c->cancelled = true;
		return UI_REDRAW;
	}
	if (rc != 0)
		return -1;
	if ((f = open_memstream(&text, &len)) == NULL)
		return fl_error(cause, "eval: out of memory");
	fprintf(f, "%d prompts (%s templates, ", rp->n, task_set_name(o.set));
	if (rp->shots > 0)
		fprintf(f, "%d-shot", rp->shots);
	else
		fprintf(f, "zero-shot");
	if (o.single_token)
		fprintf(f, "), %d dropped by single-token\n", rp->dropped);
	else
		fprintf(f, "), %d with an answer of several tokens (scored on its "
		    "first)\n", rp->multi_token);
	if (o.counterfactual)
		fprintf(f, "each opens with \"%s\" stating another answer\n",
		    s->task->counterfactual);
	fprintf(f, "intercept cross-fitted by %s: R^2 %.3f and %.3f (%d and %d "
	    "calibration prompts)\n\n", eval_split_name(o.split), rp->calib_r2[0],
	    rp->calib_r2[1], rp->calib_n[0], rp->calib_n[1]);
	fprintf(f, "%-12s %10s %8s %10s", "condition", o.counterfactual ?
	    "P(memor.)" : "P(answer)", "top-1", "mean rank");
	fprintf(f, o.counterfactual ? " %12s %8s\n" : "\n", "P(in-ctx)", "top-1");
	for (int k = 0; k < EVAL_COND_COUNT; k++) {
		fprintf(f, "%-12s %9.2f%% %7.1f%% %10.1f", eval_cond_name((fl_eval_cond)k),
		    100 * rp->cond[k].mean_prob, 100 * rp->cond[k].top1, rp->cond[k].mean_rank);
		if (o.counterfactual)
			fprintf(f, " %11.2f%% %7.1f%%", 100 * rp->cond[k].ctx_mean_prob,
			    100 * rp->cond[k].ctx_top1);
		fputc('\n', f);
	}
	fprintf(f, "\nmask: the last position attends only to itself in the last "
	    "layer (%s); intercept:\nthe last MLP's intercept subtracted (factlens "
	    "eval gives the same grid)\n", s->mask_heads != NULL ? "the heads of "
	    ":mask heads" : "every head");
	fclose(f);
	/* No trailing newline: the overlay splits at each. */
	if (len > 0 && text[len - 1] == '\n')
		text[len - 1] = '\0';
	ctx_overlay(c, text, xasprintf("eval: %s (any key closes)", s->task->name));
	c->eval_view = true;
	ctx_message(c, false, "eval of %s done%s", s->task->name, loaded != 0 ?
	    " (the default task: :task NAME for another)" : "");
	return loaded | UI_REDRAW;
}

static int
c_export(ui_ctx *c, int argc, char **argv, char **cause)
{
	if (session_export(c->s, argv[1], cause) != 0)
		return -1;
	ctx_message(c, false, "exported to %s", argv[1]);
	return UI_REDRAW;
}

static int
c_head(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	int H, L, l = s->layer, h = s->head;
	const char *dot;

	if (need_model(c, "head", cause) != 0)
		return -1;
	H = session_heads(s);
	L = session_layers(s);
	if ((dot = strchr(argv[1], '.')) != NULL) {
		long lv, hv;
		char *ls = xstrndup(argv[1], (size_t)(dot - argv[1]));
		int bad = parse_int(ls, &lv) != 0 || parse_int(dot + 1, &hv) != 0;

		free(ls);
		if (bad || lv < 0 || lv >= L || hv < 0 || hv >= H)
			return fl_error(cause, "head: expected LAYER.HEAD within %d.%d, not '%s'",
			    L - 1, H - 1, argv[1]);
		l = (int)lv;
		h = (int)hv;
	} else if (ui_cursor_arg("head", argv[1], s->head, H, 1, &h, cause) != 0)
		return -1;
	s->layer = l;
	s->head = h;
	return SESSION_VIEW | UI_REDRAW;
}

static int
c_help(ui_ctx *c, int argc, char **argv, char **cause)
{
	const ui_cmd *cmd;

	if (argc > 1 && strcmp(argv[1], "keys") == 0) {
		c->help = true;
		c->help_cmds = false;
		return UI_REDRAW;
	}
	if (argc == 1) {
		c->help_cmds = !c->help_cmds;
		c->help = false;
		return UI_REDRAW;
	}
	if ((cmd = cmd_find(argv[1])) == NULL)
		return fl_error(cause, "help: no command '%s' (:help lists them)", argv[1]);
	{
		/* One command, over the panes: usage, what it does, its keys. */
		char *keys = xstrdup(""), *t, kb[32];

		/* the flow pane's keys after the others */
		for (int i = 0; i < c->keys.n + c->flow_keys.n; i++) {
			const ui_binding *b = i < c->keys.n ? &c->keys.b[i] :
			    &c->flow_keys.b[i - c->keys.n];
			char **w;
			int n = cmd_split_words(b->command, &w, NULL);

			if (n > 0 && cmd_find(w[0]) == cmd) {
				t = xasprintf("%s%s%s (%s)", keys, keys[0] != '\0' ? ", " : "",
				    ui_key_name(b->key, kb, sizeof kb), b->command);
				free(keys);
				keys = t;
			}
			if (n >= 0)
				cmd_free_words(w);
		}
		t = cmd->alias != NULL ? xasprintf("\nalias:  :%s", cmd->alias) : xstrdup("");
		ctx_overlay(c, xasprintf("usage:  :%s%s%s%s\n\n%s\n\nkeys:   %s",
		    cmd->name, cmd->args[0] != '\0' ? " " : "", cmd->args, t, cmd->help,
		    keys[0] != '\0' ? keys : "none bound (:bind KEY COMMAND binds one)"),
		    xasprintf(":help %s (any key closes)", cmd->name));
		free(t);
		free(keys);
	}
	return UI_REDRAW;
}

static int
c_intercept(ui_ctx *c, int argc, char **argv, char **cause)
{
	bool on;
	const char *loaded = NULL;

	if (parse_toggle(argc > 1 ? argv[1] : NULL, c->s->intercept, &on, "intercept",
	    cause) != 0)
		return -1;
	if (on && c->s->task == NULL) {
		/* The intercept is fitted on a task: take the default one. */
		const char *path = fl_default_task();

		if (session_load_task(c->s, path, cause) < 0)
			return -1;
		loaded = path;
	}
	c->s->intercept = on;
	if (on) {
		int pair = -1, n = session_fit_prompts(c->s, &pair);
		const fl_task *t = c->s->task;
		char shots[24];

		snprintf(shots, sizeof shots, c->s->shots > 0 ? "%d-shot" : "zero-shot",
		    c->s->shots);
		ctx_message(c, false, "intercept on%s: fitted on %d %s prompts of %s%s%s%s",
		    loaded != NULL ? " (loaded the default task)" : "", n, shots, t->name,
		    pair >= 0 ? " without " : "", pair >= 0 ? t->pairs[pair].subject : "",
		    pair >= 0 ? "'s" : "");
	} else
		ctx_message(c, false, "intercept removal off");
	return (loaded != NULL ? SESSION_TASK : 0) | SESSION_LAST | UI_REDRAW;
}

static int
c_layer(ui_ctx *c, int argc, char **argv, char **cause)
{
	int L, page;

	if (need_model(c, "layer", cause) != 0)
		return -1;
	L = session_layers(c->s);
	page = L / 4 > 1 ? L / 4 : 1;
	if (ui_cursor_arg("layer", argv[1], c->s->layer, L, page, &c->s->layer, cause) != 0)
		return -1;
	return SESSION_VIEW | UI_REDRAW;
}

/* "0,3,7" -> (H) flags; 0, or -1 with *cause giving the range. */
static int
parse_heads(const char *list, int H, bool *out, char **cause)
{
	const char *p = list;

	memset(out, 0, (size_t)H * sizeof *out);
	if (*p == '\0')
		return fl_error(cause, "mask heads: expected a list such as 0,3,7 (heads "
		    "0..%d), or all", H - 1);
	while (*p != '\0') {
		char *end;
		long h;

		errno = 0;
		h = strtol(p, &end, 10);
		if (end == p || errno != 0 || h < 0 || h >= H || (*end != ',' && *end != '\0'))
			return fl_error(cause, "mask heads: '%s' is not a list of heads in "
			    "0..%d (such as 0,3,7)", list, H - 1);
		out[h] = true;
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

static int
c_mask(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	bool on;

	if (argc > 1 && strcmp(argv[1], "heads") == 0) {
		int H = session_heads(s);

		if (need_model(c, "mask", cause) != 0)
			return -1;
		if (argc < 3)
			return fl_error(cause, "usage: mask heads LIST|all");
		if (strcmp(argv[2], "all") == 0) {
			free(s->mask_heads);
			s->mask_heads = NULL;
		} else {
			bool *h = xcalloc((size_t)H, sizeof *h);

			if (parse_heads(argv[2], H, h, cause) != 0) {
				free(h);
				return -1;
			}
			free(s->mask_heads);
			s->mask_heads = h;
		}
		s->mask = true;
		ctx_message(c, false, "final-layer mask on, heads %s", argv[2]);
		return SESSION_LAST | UI_REDRAW;
	}
	if (argc > 2)
		return fl_error(cause, "usage: mask [on|off|toggle|heads LIST|all]");
	if (parse_toggle(argc > 1 ? argv[1] : NULL, s->mask, &on, "mask", cause) != 0)
		return -1;
	s->mask = on;
	ctx_message(c, false, "final-layer mask %s%s", on ? "on" : "off",
	    on && s->mask_heads != NULL ? " (the chosen heads: :mask heads all for "
	    "every head)" : "");
	return SESSION_LAST | UI_REDRAW;
}

static int
c_metric(ui_ctx *c, int argc, char **argv, char **cause)
{
	int m, flags = 0;

	if (strcmp(argv[1], "next") == 0)
		m = ((int)c->s->metric + 1) % METRIC_COUNT;
	else if (strcmp(argv[1], "prev") == 0)
		m = ((int)c->s->metric + METRIC_COUNT - 1) % METRIC_COUNT;
	else if ((m = metric_parse(argv[1])) < 0)
		return fl_error(cause, "metric: expected attn, direct, mover, patch, atp, "
		    "next or prev, not '%s'", argv[1]);
	if (m == METRIC_PATCH && (flags = need_task(c, "path patching", cause)) < 0)
		return -1;
	if (m == METRIC_ATP && c->s->corrupt_text == NULL &&
	    (flags = need_task(c, "attribution patching", cause)) < 0)
		return -1;
	c->s->metric = (ui_metric)m;
	return flags | SESSION_GRID | UI_REDRAW;
}

static int
c_corrupt(ui_ctx *c, int argc, char **argv, char **cause)
{
	const char *text = argc > 1 ? argv[1] : NULL;

	if (text != NULL && (strcmp(text, "auto") == 0 || text[0] == '\0'))
		text = NULL;
	return session_set_corrupt(c->s, text) | UI_REDRAW;
}

static int
c_exact(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	int flags, i;
	double est, ex;

	if (need_model(c, "exact", cause) != 0)
		return -1;
	if (s->metric != METRIC_ATP)
		return fl_error(cause, "exact: the exact patch goes beside the atp "
		    "metric's estimate: Tab to atp (or :metric atp) first");
	if ((flags = session_atp_exact(s, cause)) < 0)
		return -1;
	i = s->layer * session_heads(s) + s->head;
	est = s->atp.heads[i];
	ex = s->atp_exact[i];
	ctx_message(c, atp_disagree(est, ex), "head %d.%d: AtP %+.4f, exact patch "
	    "%+.4f%s", s->layer, s->head, est, ex, atp_disagree(est, ex) ?
	    " - more than 2x apart: the first-order estimate misses here" : "");
	return flags | UI_REDRAW;
}

static int
c_neuron(ui_ctx *c, int argc, char **argv, char **cause)
{
	static const struct { const char *name; float factor; } how[] = {
		{ "zero", 0 }, { "half", 0.5f }, { "double", 2 }, { "reset", -1 },
	};
	int layer = -1, neuron = -1, flags, k;
	char *end;

	if (need_model(c, "neuron", cause) != 0)
		return -1;
	if (argc == 2 && strcmp(argv[1], "reset") == 0) {
		flags = session_neuron_edit(c->s, -1, -1, -1, cause);
		ctx_message(c, false, "neuron edits reset");
		return flags < 0 ? -1 : flags | UI_REDRAW;
	}
	if (argc != 4)
		return fl_error(cause, "neuron: expected L N zero|half|double|reset, "
		    "or reset");
	layer = (int)strtol(argv[1], &end, 10);
	if (*argv[1] == '\0' || *end != '\0' || layer < 0)
		return fl_error(cause, "neuron: '%s' is not a layer", argv[1]);
	neuron = (int)strtol(argv[2], &end, 10);
	if (*argv[2] == '\0' || *end != '\0' || neuron < 0)
		return fl_error(cause, "neuron: '%s' is not a neuron", argv[2]);
	for (k = 0; k < 4 && strcmp(argv[3], how[k].name) != 0; k++)
		;
	if (k == 4)
		return fl_error(cause, "neuron: expected zero, half, double or reset, "
		    "not '%s'", argv[3]);
	if ((flags = session_neuron_edit(c->s, layer, neuron, how[k].factor,
	    cause)) < 0)
		return -1;
	ctx_message(c, false, "neuron %d.%d %s: the pass resumed at layer %d "
	    "(:neuron reset undoes every edit)", layer, neuron, how[k].name, layer);
	return flags | UI_REDRAW;
}

/* :neurons search TOKEN: the hits as an overlay. */
static int
neurons_search(ui_ctx *c, const char *word, char **cause)
{
	ui_session *s = c->s;
	ui_neuron_hit *hits = NULL;
	int n, rc, tok, ntok;
	char *text = NULL, *lab;
	size_t len = 0;
	FILE *f;

	if (need_model(c, "neurons search", cause) != 0)
		return -1;
	if ((tok = task_answer_token(s->model, word, true, &ntok)) < 0)
		return fl_error(cause, "neurons search: '%s' encodes to no token", word);
	rc = session_neuron_search(s, tok, c->progress, &hits, &n, cause);
	if (rc == FL_STOPPED) {
		ctx_message(c, false, "neurons search cancelled");
		c->cancelled = true;
		return UI_REDRAW;
	}
	if (rc != 0)
		return -1;
	lab = session_token_label(s, tok, c->g->space, c->g->newline);
	if ((f = open_memstream(&text, &len)) == NULL) {
		free(hits);
		free(lab);
		return fl_error(cause, "neurons search: out of memory");
	}
	fprintf(f, "%d neuron%s of %d layers rank %s among the top %d of their "
	    "value vector\n(the row of W_out through the unembedding)\n\n", n,
	    n == 1 ? "" : "s", session_layers(s), lab, UI_NEURON_SEARCH_K);
	fprintf(f, "%-10s %5s %11s\n", "neuron", "rank", "act (last)");
	for (int i = 0; i < n && i < 200; i++)
		fprintf(f, "%3d.%-6d %5d %+11.3f\n", hits[i].layer, hits[i].neuron,
		    hits[i].rank, hits[i].act);
	if (n > 200)
		fprintf(f, "... and %d more\n", n - 200);
	fprintf(f, "\n:neuron L N zero|half|double edits one; n shows the cursor "
	    "layer's neurons");
	fclose(f);
	free(c->overlay);
	free(c->overlay_title);
	c->overlay = text;
	c->overlay_title = xasprintf("neurons search %s (any key closes)", lab);
	ctx_message(c, false, "neurons search %s: %d neuron%s", lab, n,
	    n == 1 ? "" : "s");
	free(lab);
	free(hits);
	return UI_REDRAW;
}

static int
c_neurons(ui_ctx *c, int argc, char **argv, char **cause)
{
	static const char *sorts[NEURON_SORT_COUNT] = { "answer", "subject", "act" };
	ui_session *s = c->s;
	const char *what = argc > 1 ? argv[1] : "toggle";

	if (strcmp(what, "search") == 0) {
		if (argc < 3)
			return fl_error(cause, "neurons search: give a token's text");
		return neurons_search(c, argv[2], cause);
	}
	if (strcmp(what, "sort") == 0) {
		int k = -1;

		if (argc < 3)
			return fl_error(cause, "neurons sort: expected answer, subject, act "
			    "or next");
		if (strcmp(argv[2], "next") == 0)
			k = (s->neuron_sort + 1) % NEURON_SORT_COUNT;
		for (int i = 0; i < NEURON_SORT_COUNT && k < 0; i++)
			if (strcmp(argv[2], sorts[i]) == 0)
				k = i;
		if (k < 0)
			return fl_error(cause, "neurons sort: expected answer, subject, "
			    "act or next, not '%s'", argv[2]);
		s->neuron_sort = k;
		s->neurons_on = true;
		c->show_mlp = true;
		return SESSION_VIEW | UI_REDRAW;
	}
	if (strcmp(what, "on") == 0)
		s->neurons_on = true;
	else if (strcmp(what, "off") == 0)
		s->neurons_on = false;
	else if (strcmp(what, "toggle") == 0)
		s->neurons_on = !s->neurons_on;
	else
		return fl_error(cause, "neurons: expected on, off, toggle, sort KEY or "
		    "search TOKEN, not '%s'", what);
	/* where the head and MLP panes share a corner, the MLP's shows */
	if (s->neurons_on)
		c->show_mlp = true;
	return SESSION_VIEW | UI_REDRAW;
}

static int
c_model(ui_ctx *c, int argc, char **argv, char **cause)
{
	return session_set_model(c->s, argv[1]) | UI_REDRAW;
}

static int
c_pane(ui_ctx *c, int argc, char **argv, char **cause)
{
	const char *a = argc > 1 ? argv[1] : "toggle";

	if (strcmp(a, "head") == 0)
		c->show_mlp = false;
	else if (strcmp(a, "mlp") == 0)
		c->show_mlp = true;
	else if (strcmp(a, "toggle") == 0)
		c->show_mlp = !c->show_mlp;
	else
		return fl_error(cause, "pane: expected head, mlp or toggle, not '%s'", a);
	return UI_REDRAW;
}

/* :plot eval FILE: the kept :eval grid, as factlens eval --plot draws it. */
static int
plot_eval_grid(ui_ctx *c, const char *path, char **cause)
{
	ui_session *s = c->s;
	static const char *labels[EVAL_COND_COUNT] = {
		"baseline", "mask (a)", "intercept (b)", "both (a+b)",
	};
	double prob[EVAL_COND_COUNT];
	char *title;
	int rc;

	if (!s->eval_valid)
		return fl_error(cause, "plot eval: no eval grid yet (:eval computes it)");
	if (plot_check(path, cause) != 0)
		return -1;
	for (int k = 0; k < EVAL_COND_COUNT; k++)
		prob[k] = s->eval.cond[k].mean_prob;
	title = xasprintf("%s on %s, %d prompts", s->task->name, s->model_name, s->eval.n);
	rc = plot_eval(path, title, 1, &s->eval.shots, EVAL_COND_COUNT, labels, prob,
	    cause);
	free(title);
	if (rc != 0)
		return -1;
	ctx_message(c, false, "plot: wrote %s (the eval grid)", path);
	return UI_REDRAW;
}

/* :plot FILE - the view on screen: the eval grid while :eval's table is
 * shown, else the lens of the prompt; :plot heads FILE - the heads grid on
 * screen (its metric, movers framed); :plot lens|eval FILE - that one. */
static int
c_plot(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	const char *kind = argc > 2 ? argv[1] : c->eval_view ? "eval" : "lens";
	bool heads = strcmp(kind, "heads") == 0;
	const char *path = argv[argc - 1];
	int L, H, V, rc;

	if (!heads && strcmp(kind, "lens") != 0 && strcmp(kind, "eval") != 0)
		return fl_error(cause, "plot: expected heads, lens or eval before the "
		    "file, not '%s' (usage: plot [heads|lens|eval] FILE)", kind);
	if (strcmp(kind, "eval") == 0)
		return plot_eval_grid(c, path, cause);
	if (!session_ready(s))
		return fl_error(cause, "plot: nothing to plot yet (no model or prompt)");
	if (plot_check(path, cause) != 0)
		return -1;
	L = session_layers(s);
	H = session_heads(s);
	V = s->model->cfg.n_vocab;
	if (heads) {
		double *v = xcalloc((size_t)L * H, sizeof *v);
		char *title = xasprintf("%s: \"%s\"", s->model_name, s->prompt);

		for (int i = 0; i < L * H; i++)
			v[i] = s->grid[i];
		rc = plot_heads(path, title, metric_title(s->metric), v, L, H,
		    metric_signed(s->metric), s->movers_valid ? s->is_mover : NULL, cause);
		free(title);
		free(v);
	} else {
		float *lg = xmalloc((size_t)3 * L * V * sizeof *lg);
		double *prob = xcalloc((size_t)3 * L, sizeof *prob);
		int *rank = xcalloc((size_t)3 * L, sizeof *rank);
		char *label = session_token_label(s, s->answer_id, " ", "\\n");

		/* the streams as the results are: with the toggles, on the cache */
		lens_layer_streams(s->model, s->cache, s->n_tok - 1, lg);
		for (int i = 0; i < 3 * L; i++) {
			prob[i] = lens_prob_of(lg + (size_t)i * V, V, s->answer_id);
			rank[i] = lens_rank_of(lg + (size_t)i * V, V, s->answer_id);
		}
		{
			char *q = xasprintf("\"%s\"", label);

			rc = plot_lens(path, s->prompt, q, L, prob, rank, cause);
			free(q);
		}
		free(label);
		free(lg);
		free(prob);
		free(rank);
	}
	if (rc != 0)
		return -1;
	ctx_message(c, false, "plot: wrote %s", path);
	return UI_REDRAW;
}

static int
c_prompt(ui_ctx *c, int argc, char **argv, char **cause)
{
	return session_set_prompt(c->s, argv[1]) | UI_REDRAW;
}

static int
c_quit(ui_ctx *c, int argc, char **argv, char **cause)
{
	return UI_QUIT;
}

static int
c_redraw(ui_ctx *c, int argc, char **argv, char **cause)
{
	return UI_REPAINT | UI_REDRAW;
}

static int
c_render(ui_ctx *c, int argc, char **argv, char **cause)
{
	return UI_RENDER;
}

static int
c_source(ui_ctx *c, int argc, char **argv, char **cause)
{
	char *text, *p, *line;
	size_t len;
	int flags = 0, lineno = 0;

	if (c->source_depth > 8)
		return fl_error(cause, "source: %s: nested too deeply", argv[1]);
	if ((text = fl_read_file(argv[1], &len, 1 << 20, cause)) == NULL)
		return -1;
	c->source_depth++;
	for (p = text; p != NULL && *p != '\0'; ) {
		char *nl = strchr(p, '\n');
		char *sub = NULL;
		int r;

		if (nl != NULL)
			*nl = '\0';
		line = p;
		p = nl != NULL ? nl + 1 : NULL;
		lineno++;
		while (isspace((unsigned char)*line))
			line++;
		if (*line == '\0' || *line == '#')
			continue;
		if ((r = cmd_run_line(c, line, &sub)) < 0) {
			fl_error(cause, "%s:%d: %s", argv[1], lineno, sub);
			free(sub);
			flags = -1;
			break;
		}
		flags |= r;
		if (c->cancelled)
			break;
	}
	c->source_depth--;
	free(text);
	return flags;
}

static int
c_subject(ui_ctx *c, int argc, char **argv, char **cause)
{
	const char *text = argc > 1 ? argv[1] : NULL;

	if (text != NULL && strcmp(text, "auto") == 0)
		text = NULL;
	if (text != NULL && session_subject_check(c->s, text, cause) != 0)
		return -1;
	return session_set_subject(c->s, text) | UI_REDRAW;
}

static int
c_task(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_session *s = c->s;
	long n = 0;
	int flags;

	if (argc > 2 && (parse_int(argv[2], &n) != 0 || n < 0))
		return fl_error(cause, "task: expected a prompt number, not '%s'", argv[2]);
	if ((flags = session_load_task(s, argv[1], cause)) < 0)
		return -1;
	/* A prompt of the task when asked for, or when there is none yet. */
	if (argc > 2 || s->prompt == NULL || s->prompt[0] == '\0') {
		int r;

		if (s->model == NULL)
			return fl_error(cause, "task: no model loaded (use :model DIR)");
		if ((r = session_task_prompt(s, (int)n, cause)) < 0)
			return -1;
		flags |= r;
	}
	ctx_message(c, false, "task %s: %d pairs, %d prompts", s->task->name,
	    s->task->n_pairs, session_task_prompts(s));
	return flags | UI_REDRAW;
}

static int
c_theme(ui_ctx *c, int argc, char **argv, char **cause)
{
	ui_theme t;
	const char *name = argc > 1 ? argv[1] : NULL;
	char *chosen = NULL;

	if (name == NULL || strcmp(name, "next") == 0) {
		int n, i;
		char **names = theme_list(&n);

		if (name == NULL) {
			char buf[512];
			size_t o = 0;

			for (i = 0; i < n; i++)
				o += (size_t)snprintf(buf + o, o < sizeof buf ? sizeof buf - o : 0,
				    "%s%s", i ? " " : "", names[i]);
			ctx_message(c, false, "themes: %s (now %s)", buf, c->theme.name);
			theme_list_free(names, n);
			return UI_REDRAW;
		}
		for (i = 0; i < n && strcmp(names[i], c->theme.name) != 0; i++)
			;
		chosen = xstrdup(names[(i + 1) % n]);
		theme_list_free(names, n);
		name = chosen;
	}
	if (theme_load(&t, name, cause) != 0) {
		free(chosen);
		return -1;
	}
	free(chosen);
	c->theme = t;
	ctx_message(c, false, "theme %s", t.name);
	return UI_THEME | UI_REDRAW;
}

static int
c_save(ui_ctx *c, int argc, char **argv, char **cause)
{
	if (ui_session_save(c, argv[1], cause) != 0)
		return -1;
	ctx_message(c, false, "saved to %s (factlens --replay %s rebuilds it)",
	    argv[1], argv[1]);
	return UI_REDRAW;
}

static int
c_shots(ui_ctx *c, int argc, char **argv, char **cause)
{
	long k;
	int flags;

	if (argc < 2) {
		ctx_message(c, false, "shots: %d (demonstrations before each task prompt)",
		    c->s->shots);
		return UI_REDRAW;
	}
	if (parse_int(argv[1], &k) != 0 || k < 0 || k > 64)
		return fl_error(cause, "shots: expected 0 to 64, not '%s'", argv[1]);
	if ((flags = session_set_shots(c->s, (int)k, cause)) < 0)
		return -1;
	ctx_message(c, false, "shots %d: the task's fits%s use %d-shot prompts", (int)k,
	    c->s->task != NULL ? ", :eval and :task N" : " (once a task is loaded)",
	    (int)k);
	return flags | UI_REDRAW;
}

static int
c_time(ui_ctx *c, int argc, char **argv, char **cause)
{
	long n = 10;

	if (argc > 1 && (parse_int(argv[1], &n) != 0 || n < 1 || n > 100000))
		return fl_error(cause, "time: expected a count from 1 to 100000, not '%s'",
		    argv[1]);
	if (!session_ready(c->s))
		return fl_error(cause, "time: run a prompt first");
	c->time_reps = (int)n;
	return UI_TIME | UI_REDRAW;
}

static int
c_topk(ui_ctx *c, int argc, char **argv, char **cause)
{
	long k;

	if (parse_int(argv[1], &k) != 0 || k < 1 || k > UI_TOPK_MAX)
		return fl_error(cause, "topk: expected 1 to %d, not '%s'", UI_TOPK_MAX,
		    argv[1]);
	c->s->topk = (int)k;
	return UI_REDRAW;
}

/* Sorted by name: :help and the man page list them in this order. */
const ui_cmd ui_cmds[] = {
	{ "answer", "a", "[TEXT|top]", 0, -1, ARG_TEXT,
	  "set the answer token (its first token, after a space); top or nothing: "
	  "the model's top prediction", c_answer },
	{ "bind", NULL, "KEY COMMAND", 2, 2, ARG_KEY,
	  "bind a key to a command string", c_bind },
	{ "command-prompt", NULL, "[TEXT]", 0, 1, ARG_TEXT,
	  "open the : command line, optionally with TEXT typed in", c_command_prompt },
	{ "compare", NULL, "[mask|intercept|PROMPT|off|toggle]", 0, -1, ARG_COMPARE,
	  "side by side: B beside A in the layers pane and the heads grid (B-A); "
	  "B is this prompt with the mask or the intercept flipped, or PROMPT with "
	  "A's toggles; off ends it, toggle brings back the last", c_compare },
	{ "corrupt", NULL, "[TEXT|auto]", 0, -1, ARG_TEXT,
	  "the corrupted prompt of the atp metric (as many tokens as the prompt; "
	  "its top prediction is the distractor); auto or nothing: the prompt with "
	  "its subject replaced by another of the task's, of as many tokens",
	  c_corrupt },
	{ "edit-prompt", "e", "", 0, 0, ARG_NONE,
	  "edit the prompt with readline (history with Up and Down); Enter runs it",
	  c_edit_prompt },
	{ "eval", NULL, "[K] [main|paraphrase|heldout] [single-token] [counterfactual]",
	  0, 4, ARG_NONE,
	  "evaluate baseline, mask, intercept and both over the loaded task's prompts "
	  "(as factlens eval) and show the table until a key: K-shot (default: "
	  ":shots), the task's templates of that set (default main), only "
	  "single-token answers, or counterfactual prompts (P of the memorised and "
	  "the in-context answer); the mask is :mask's heads", c_eval },
	{ "exact", NULL, "", 0, 0, ARG_NONE,
	  "with the atp metric: the exact patch of the selected head (one pass "
	  "from its layer) beside its estimate; cells more than 2x apart are "
	  "marked !", c_exact },
	{ "export", NULL, "FILE", 1, 1, ARG_FILE,
	  "write the prompt, lens, every heads grid (path patching, the cursor layer's decomposition and the last :eval grid once computed) and the cursor views as JSON; to FILE.csv, the lens, the heads grids and the eval's rows as CSV", c_export },
	{ "flow", NULL, "[off|toggle|view|row ARG|col ARG|kind next|prev|window ARG|run]",
	  0, 2, ARG_FLOW,
	  "the flow pane (where the fact lives) over the panes: toggle it, switch "
	  "causal trace and knockout (view), move its cell (row: a position, or a "
	  "knockout start layer; col: a layer, or a block; ARG as :layer's), the "
	  "trace's kind or knockout's block, the window (ARG N, +N or -N), or show "
	  "the cell's restored run (its next tokens and lens; any key closes)",
	  ui_cmd_flow },
	{ "head", NULL, "L.H|N|+N|-N|first|last", 1, 1, ARG_NONE,
	  "select a head (moves the layer cursor too with L.H)", c_head },
	{ "help", NULL, "[COMMAND|keys]", 0, 1, ARG_COMMAND,
	  "list the commands; with COMMAND, its usage, what it does and its keys; with keys, the key map", c_help },
	{ "intercept", NULL, "[on|off|toggle]", 0, 1, ARG_TOGGLE,
	  "mitigation (b): subtract the final MLP's intercept (re-runs the last layer)",
	  c_intercept },
	{ "intercepts", NULL, "[LAYER]", 0, 1, ARG_LAYER,
	  "fit LAYER's (default: the cursor's) MLP intercept on each country task "
	  "(zero-shot, main templates) and show their cosines, norms and top "
	  "tokens until a key: task-aware intercepts differ", ui_cmd_intercepts },
	{ "knockout", NULL, "[subject|relation|other] [W]", 0, 2, ARG_BLOCK,
	  "the flow pane's knockout curves (as factlens knockout): P(answer) with "
	  "the last position's attention to the subject, the relation or itself "
	  "cut in W layers (default 1) from each start layer on; the block named "
	  "is the cursor's", ui_cmd_knockout },
	{ "layer", NULL, "N|+N|-N|first|last|+page|-page", 1, 1, ARG_LAYER,
	  "move the layer cursor (a page is a quarter of the layers)", c_layer },
	{ "mask", NULL, "[on|off|toggle|heads LIST|all]", 0, 2, ARG_TOGGLE,
	  "mitigation (a): in the last layer the last position attends only to "
	  "itself, in every head or in the heads of LIST (0,3,7); re-runs the "
	  "last layer", c_mask },
	{ "metric", NULL, "attn|direct|mover|patch|atp|next|prev", 1, 1, ARG_METRIC,
	  "what the heads grid shows", c_metric },
	{ "model", NULL, "DIR", 1, 1, ARG_FILE,
	  "load a model directory and re-run the prompt", c_model },
	{ "neuron", NULL, "L N zero|half|double|reset", 1, 4, ARG_NONE,
	  "edit neuron N of layer L live (its mlp.hook_post activation times 0, "
	  "0.5 or 2 at every position; reset: as it was; reset alone: every "
	  "edit): the pass resumes at layer L and the panes redraw", c_neuron },
	{ "neurons", NULL, "[on|off|toggle|sort KEY|search TOKEN]",
	  0, 2, ARG_NONE,
	  "the MLP pane at neuron level: the cursor layer's neurons at the last "
	  "position by their direct effect on the answer (or subject, or by "
	  "activation), each with |w_out| and its value vector's top tokens; search "
	  "lists the neurons of every layer whose value vectors rank TOKEN in their "
	  "top 10", c_neurons },
	{ "pane", NULL, "[head|mlp|toggle]", 0, 1, ARG_NONE,
	  "under 32 rows the head and MLP panes share the bottom right: show one "
	  "(the other's name is on the pane's title row)", c_pane },
	{ "plot", NULL, "[heads|lens|eval] FILE", 1, 2, ARG_FILE,
	  "write a figure of the view: the answer through the layers (the lens), "
	  "the eval grid while :eval's table is shown, or with heads the heads "
	  "grid and its metric (lens or eval: that one); FILE.png, .svg or .pdf",
	  c_plot },
	{ "position", NULL, "[T|+N|-N|first|last]", 0, 1, ARG_POSITION,
	  "the position whose streams the lens pane shows (default: the last); "
	  "no T says the current one", ui_cmd_position },
	{ "prompt", "p", "TEXT", 1, -1, ARG_TEXT,
	  "set the prompt and run it", c_prompt },
	{ "quit", "q", "", 0, 0, ARG_NONE, "leave the explorer", c_quit },
	{ "redraw", NULL, "", 0, 0, ARG_NONE, "repaint the whole terminal", c_redraw },
	{ "render", NULL, "", 0, 0, ARG_NONE,
	  "in --script or -c mode, print the screen now", c_render },
	{ "save", NULL, "FILE", 1, 1, ARG_FILE,
	  "write the commands that rebuild this state (model, prompt, task, shots, "
	  "answer, subject, mask, intercept, cursor, metric, theme, comparison) with the "
	  "weights' SHA-256 and factlens' version; factlens --replay FILE runs "
	  "it, refusing other weights", c_save },
	{ "shots", NULL, "[K]", 0, 1, ARG_NONE,
	  "K demonstrations before each of the task's prompts (0: zero-shot, the "
	  "default), as factlens eval --shots: the decomposition, the intercept, "
	  "path patching, :eval and :task N then use K-shot prompts; no K says the "
	  "current number", c_shots },
	{ "source", NULL, "FILE", 1, 1, ARG_FILE,
	  "run the commands in FILE, one per line ('#' starts a comment)", c_source },
	{ "subject", "s", "[WORD|#POS|auto]", 0, -1, ARG_SUBJECT,
	  "choose the subject token: the last token of WORD in the prompt, position "
	  "POS, or a guess", c_subject },
	{ "task", NULL, "NAME|FILE [N]", 1, 2, ARG_TASK,
	  "load a task (data/tasks/NAME.json or a file) for the decomposition, the "
	  "intercept, path patching and :eval; with N (or no prompt yet) run its "
	  "prompt N", c_task },
	{ "theme", NULL, "[NAME|next]", 0, 1, ARG_THEME,
	  "switch the colour theme; no NAME lists the themes", c_theme },
	{ "time", NULL, "[N]", 0, 1, ARG_NONE,
	  "re-run the prompt N times (default 10) and report the median times; "
	  "Ctrl-C stops", c_time },
	{ "topk", NULL, "K", 1, 1, ARG_NONE,
	  "the most top tokens each list shows (the panes show fewer when short)", c_topk },
	{ "trace", NULL, "[resid|mlp|attn] [W] [samples N] [seed K]", 0, 7, ARG_TRACE,
	  "the flow pane's causal trace (as factlens trace): the subject's "
	  "embeddings corrupted by noise, P(answer) with one state restored per "
	  "position and layer: resid_pre, or the MLP's or attention's output over "
	  "W layers (default 10); N noise samples (default 10) drawn from seed K "
	  "(default 1); maps are kept per prompt and options", ui_cmd_trace },
};
const int ui_n_cmds = sizeof ui_cmds / sizeof ui_cmds[0];

const ui_cmd *
cmd_find(const char *name)
{
	for (int i = 0; i < ui_n_cmds; i++)
		if (strcmp(ui_cmds[i].name, name) == 0 ||
		    (ui_cmds[i].alias != NULL && strcmp(ui_cmds[i].alias, name) == 0))
			return &ui_cmds[i];
	return NULL;
}
