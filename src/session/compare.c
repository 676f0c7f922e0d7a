/*
 * compare.c - side by side (:compare): a second session, B, on A's model,
 * whose choices follow A's but for the one compared, kept up to date by
 * A's session_update. See session.h.
 */
#include "autoconfig.h"

#include "session/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static const char *const compare_names[] = {
	[COMPARE_OFF] = "off", [COMPARE_PROMPT] = "prompt", [COMPARE_MASK] = "mask",
	[COMPARE_INTERCEPT] = "intercept",
};

const char *
compare_name(ui_compare k)
{
	return compare_names[k];
}

void
sess_compare_drop(ui_session *s)
{
	session_free(s->cmp);
	s->cmp = NULL;
	free(s->cmp_grid);
	s->cmp_grid = NULL;
}

int
session_set_compare(ui_session *s, ui_compare k, const char *prompt, char **cause)
{
	if (k == COMPARE_PROMPT && (prompt == NULL || prompt[0] == '\0'))
		return fl_error(cause, "compare: the prompt to compare with is empty");
	if (k == COMPARE_INTERCEPT && s->intercept_vec == NULL)
		return fl_error(cause, "compare intercept: the intercept is not fitted "
		    "yet: press i (or :intercept on) once to fit it");
	s->compare = k;
	sess_set_str(&s->compare_prompt, k == COMPARE_PROMPT ? prompt : NULL);
	/* a new comparison starts from a new B: nothing of the old one stays */
	sess_compare_drop(s);
	return SESSION_GRID;
}

/* B's choices from A's; the SESSION_* flags of what changed in B, or -1
 * with *cause. */
static int
compare_choices(ui_session *a, ui_session *b, char **cause)
{
	const char *prompt = a->compare == COMPARE_PROMPT ? a->compare_prompt : a->prompt;
	int H = session_heads(a), flags = 0;
	bool mask = a->mask != (a->compare == COMPARE_MASK);
	bool icpt = (a->intercept && a->intercept_vec != NULL) !=
	    (a->compare == COMPARE_INTERCEPT);
	ui_metric metric = a->metric == METRIC_PATCH ? METRIC_ATTN_SUBJECT : a->metric;
	const char *subj = a->subject_text;

	if (icpt && a->intercept_vec == NULL)
		return fl_error(cause, "compare intercept: no intercept is fitted for "
		    "this task: press i (or :intercept on) once to fit it");
	if (b->prompt == NULL || strcmp(b->prompt, prompt) != 0)
		flags |= session_set_prompt(b, prompt);
	if (b->mask != mask) {
		b->mask = mask;
		flags |= SESSION_LAST;
	}
	if ((a->mask_heads == NULL) != (b->mask_heads == NULL) || (a->mask_heads != NULL &&
	    memcmp(a->mask_heads, b->mask_heads, (size_t)H * sizeof *a->mask_heads) != 0)) {
		free(b->mask_heads);
		b->mask_heads = NULL;
		if (a->mask_heads != NULL) {
			b->mask_heads = xmalloc((size_t)H * sizeof *b->mask_heads);
			memcpy(b->mask_heads, a->mask_heads, (size_t)H * sizeof *b->mask_heads);
		}
		flags |= mask ? SESSION_LAST : 0;
	}
	if (icpt) {
		/* A's fit, left out A's pair: B's prompt is not fitted again */
		size_t n = (size_t)a->model->cfg.d_model * sizeof *b->intercept_vec;

		if (b->intercept_vec == NULL || memcmp(b->intercept_vec, a->intercept_vec,
		    n) != 0) {
			free(b->intercept_vec);
			b->intercept_vec = xmalloc(n);
			memcpy(b->intercept_vec, a->intercept_vec, n);
			flags |= SESSION_LAST;
		}
	}
	if (b->intercept != icpt) {
		b->intercept = icpt;
		flags |= SESSION_LAST;
	}
	if (b->answer_pin != a->answer_id) {
		b->answer_pin = a->answer_id;
		flags |= SESSION_ANSWER;
	}
	/* A's subject where B's prompt holds it, else B's guess (a new prompt
	 * runs with A's and guesses when it is not there) */
	if (!(flags & SESSION_RUN) && subj != NULL && session_subject_check(b, subj,
	    NULL) != 0)
		subj = NULL;
	if ((subj == NULL) != (b->subject_text == NULL) ||
	    (subj != NULL && strcmp(subj, b->subject_text) != 0))
		flags |= session_set_subject(b, subj);
	if (b->metric != metric) {
		b->metric = metric;
		flags |= SESSION_GRID;
	}
	b->topk = a->topk;
	return flags;
}

int
sess_compare_sync(ui_session *a, const fl_progress *p, char **cause)
{
	ui_session *b;
	int L, H, flags, rc;

	if (a->compare == COMPARE_OFF || !session_ready(a)) {
		sess_compare_drop(a);
		return 0;
	}
	L = session_layers(a);
	H = session_heads(a);
	if ((b = a->cmp) == NULL) {
		b = a->cmp = session_new();
		b->model = a->model;
		b->unembed_mean = a->unembed_mean;
		b->model_borrowed = true;
		b->model_dir = xstrdup(a->model_dir);
		b->model_name = xstrdup(a->model_name);
		b->model_opts = a->model_opts;
		b->answer_pin = -1;
		a->cmp_grid = xmalloc((size_t)L * H * sizeof *a->cmp_grid);
	}
	if ((flags = compare_choices(a, b, cause)) < 0) {
		a->compare = COMPARE_OFF;
		sess_compare_drop(a);
		return -1;
	}
	if (flags != 0 && (rc = session_update(b, flags, p, cause)) != 0) {
		if (rc != FL_STOPPED) {
			char *sub = cause != NULL ? *cause : NULL;

			fl_error(cause, "compare: B (%s): %s; comparison off",
			    compare_name(a->compare), sub);
			free(sub);
		}
		a->compare = COMPARE_OFF;
		sess_compare_drop(a);
		return rc == FL_STOPPED ? FL_STOPPED : -1;
	}
	for (int i = 0; i < L * H; i++)
		a->cmp_grid[i] = a->metric == METRIC_PATCH ? NAN : b->grid[i] - a->grid[i];
	return 0;
}
