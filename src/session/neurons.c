/*
 * neurons.c - the MLP pane at neuron level, the neuron edits and
 * :neurons search. See session.h.
 */
#include "autoconfig.h"

#include "session/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/batch.h"
#include "engine/readout.h"
#include "base/util.h"

void
sess_neurons_clear(ui_session *s)
{
	neurons_clear(&s->neurons);
	free(s->neuron_order);
	free(s->icpt_neuron);
	free(s->icpt_mean_act);
	s->neuron_order = NULL;
	s->icpt_neuron = NULL;
	s->icpt_mean_act = NULL;
	s->icpt_layer = -1;
}

void
sess_value_top_clear(ui_session *s)
{
	for (int l = 0; s->value_top != NULL && l < session_layers(s); l++)
		free(s->value_top[l]);
	free(s->value_top);
	s->value_top = NULL;
}

int
sess_edit_hooks(const ui_session *s, fl_hook *hooks)
{
	for (int i = 0; i < s->n_edits; i++)
		hooks[i] = (fl_hook){ HOOK_MLP_POST, s->edits[i].layer,
		    hook_neuron_edit, &s->edits[i] };
	return s->n_edits;
}

int
session_neuron_edit(ui_session *s, int layer, int neuron, float factor,
    char **cause)
{
	int L = session_layers(s), F = s->model != NULL ? s->model->cfg.d_mlp : 0;
	int k = 0, from = layer;

	if (s->model == NULL)
		return fl_error(cause, "neuron: no model loaded");
	if (layer >= L || (layer >= 0 && (neuron < 0 || neuron >= F)))
		return fl_error(cause, "neuron %d.%d: the model has layers 0 to %d "
		    "and neurons 0 to %d", layer, neuron, L - 1, F - 1);
	/* Drop this neuron's edit (or every one), then add the new one. */
	for (int i = 0; i < s->n_edits; i++) {
		fl_neuron_edit *e = &s->edits[i];

		if (layer < 0 || (e->layer == layer && e->neuron == neuron)) {
			if (layer < 0 && (from < 0 || e->layer < from))
				from = e->layer;
			continue;
		}
		s->edits[k++] = *e;
	}
	s->n_edits = k;
	if (layer >= 0 && factor >= 0) {
		s->edits = xrealloc(s->edits, (size_t)(k + 1) * sizeof *s->edits);
		s->edits[k] = (fl_neuron_edit){ layer, neuron, factor };
		s->n_edits = k + 1;
	}
	if (from < 0)
		return 0;	/* reset with nothing edited */
	if (s->resume_layer < 0 || from < s->resume_layer)
		s->resume_layer = from;
	return SESSION_RUN;
}

static const ui_session *sort_s;

static double
sort_key(int i)
{
	const fl_neurons *n = &sort_s->neurons;

	switch (sort_s->neuron_sort) {
	case NEURON_SORT_SUBJECT:
		return n->to_subject != NULL ? fabs(n->to_subject[i]) : 0;
	case NEURON_SORT_ACT:
		return fabs(n->act[i]);
	default:
		return fabs(n->to_answer[i]);
	}
}

static int
cmp_neuron(const void *a, const void *b)
{
	double x = sort_key(*(const int *)a), y = sort_key(*(const int *)b);

	return x > y ? -1 : x < y ? 1 : *(const int *)a - *(const int *)b;
}

/* The mean activations (F) of layer at the last position over the task's
 * prompts the decomposition was fitted on. 0, FL_STOPPED or -1. */
static int
mean_acts(ui_session *s, int l, const fl_progress *p, float *mean, char **cause)
{
	fl_prompt_set ps;
	fl_prompt *use;
	fl_batch *b;
	float *rows;
	int k, F = s->model->cfg.d_mlp, rc;
	fl_grab g;
	fl_hook hooks[2];

	if (sess_task_fit_prompts(s, s->task_pair, &ps, &use, &k, false, cause) != 0)
		return -1;
	b = batch_new(s->model, 32, ps.max_len);
	if (p != NULL)
		b->progress = *p;
	b->what = "mean neuron activations";
	b->total = k;
	rows = xcalloc((size_t)k * F, sizeof *rows);
	g = (fl_grab){ b, rows, (size_t)F, 0, F };
	hooks[0] = (fl_hook){ HOOK_MLP_POST, l, batch_grab_last, &g };
	hooks[1] = (fl_hook){ HOOK_MLP_POST, l, batch_stop_after, b };
	rc = batch_run(b, use, k, hooks, 2, NULL, cause);
	if (rc == 0)
		for (int i = 0; i < F; i++) {
			double acc = 0;

			for (int n = 0; n < k; n++)
				acc += rows[(size_t)n * F + i];
			mean[i] = (float)(acc / k);
		}
	free(rows);
	batch_free(b);
	free(use);
	prompt_set_clear(&ps);
	return rc;
}

/* The intercept of the cursor layer's decomposition split into neurons, as
 * direct effects on the answer (session.h). */
static int
icpt_split(ui_session *s, const fl_progress *p)
{
	const fl_model *m = s->model;
	const fl_regress *f = &s->decomp[s->layer].fit;
	int l = s->layer, D = m->cfg.d_model, F = m->cfg.d_mlp, H = m->cfg.n_head;
	double *e, rg = 0, tot = 0;
	char *cause = NULL;
	int rc;

	if (s->icpt_layer != l) {
		free(s->icpt_mean_act);
		s->icpt_mean_act = xmalloc((size_t)F * sizeof *s->icpt_mean_act);
		if ((rc = mean_acts(s, l, p, s->icpt_mean_act, &cause)) != 0) {
			free(cause);
			free(s->icpt_mean_act);
			s->icpt_mean_act = NULL;
			return rc;
		}
		s->icpt_layer = l;
	}
	e = xmalloc((size_t)D * sizeof *e);
	neurons_token_dir(m, s->cache, s->n_tok - 1, l, s->answer_id, s->unembed_mean, e);
	free(s->icpt_neuron);
	s->icpt_neuron = xmalloc((size_t)F * sizeof *s->icpt_neuron);
	for (int i = 0; i < F; i++)
		s->icpt_neuron[i] = s->icpt_mean_act[i] * s->neurons.w_answer[i];
	for (int j = 0; j < f->J; j++) {
		double d = 0;

		for (int o = 0; o < D; o++)
			d += f->mean_x[(size_t)j * D + o] * e[o];
		rg -= f->beta[j] * d;
	}
	for (int o = 0; o < D; o++)
		tot += f->intercept[o] * e[o];
	(void)H;
	s->icpt_bias = s->neurons.bias_answer;
	s->icpt_regressors = rg;
	s->icpt_total = tot;
	free(e);
	return 0;
}

int
sess_neurons_view(ui_session *s, const fl_progress *p)
{
	const fl_model *m = s->model;
	int F, subj, rows;
	char *cause = NULL;

	neurons_clear(&s->neurons);
	free(s->icpt_neuron);
	s->icpt_neuron = NULL;
	if (!s->neurons_on || !session_ready(s))
		return 0;
	F = m->cfg.d_mlp;
	subj = s->subject_pos >= 0 ? s->ids[s->subject_first] : -1;
	if (neurons_at(&s->neurons, m, s->cache, s->layer, s->n_tok - 1, s->answer_id,
	    subj, s->unembed_mean, &cause) != 0) {
		free(cause);
		return 0;
	}
	free(s->neuron_order);
	s->neuron_order = xmalloc((size_t)F * sizeof *s->neuron_order);
	for (int i = 0; i < F; i++)
		s->neuron_order[i] = i;
	sort_s = s;
	qsort(s->neuron_order, (size_t)F, sizeof *s->neuron_order, cmp_neuron);
	rows = F < UI_NEURON_ROWS ? F : UI_NEURON_ROWS;
	for (int r = 0; r < rows; r++) {
		float vals[UI_NEURON_TOP];

		neurons_value_top(m, s->layer, s->neuron_order[r], 1, UI_NEURON_TOP,
		    s->neuron_top[r], vals);
	}
	if (s->task != NULL && s->decomp_valid != NULL && s->decomp_valid[s->layer] &&
	    s->recon_layer == s->layer)
		return icpt_split(s, p);
	return 0;
}

static int
cmp_hit(const void *a, const void *b)
{
	const ui_neuron_hit *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank - y->rank;
	if (x->layer != y->layer)
		return x->layer - y->layer;
	return x->neuron - y->neuron;
}

int
session_neuron_search(ui_session *s, int token, const fl_progress *p,
    ui_neuron_hit **hits, int *n, char **cause)
{
	const fl_model *m = s->model;
	int L, F, K = UI_NEURON_SEARCH_K, cap = 0;
	float *act, *vals;

	*hits = NULL;
	*n = 0;
	if (!session_ready(s))
		return fl_error(cause, "neurons search: no prompt run yet");
	if (token < 0 || token >= m->cfg.n_vocab)
		return fl_error(cause, "neurons search: token %d is not in the "
		    "vocabulary", token);
	L = m->cfg.n_layer;
	F = m->cfg.d_mlp;
	if (s->value_top == NULL)
		s->value_top = xcalloc((size_t)L, sizeof *s->value_top);
	vals = xmalloc((size_t)F * K * sizeof *vals);
	for (int l = 0; l < L; l++) {
		if (s->value_top[l] != NULL)
			continue;
		s->value_top[l] = xmalloc((size_t)F * K * sizeof *s->value_top[l]);
		if (neurons_layer_top(m, l, K, s->value_top[l], vals, p, (long)l * F,
		    (long)L * F) == FL_STOPPED) {
			free(s->value_top[l]);
			s->value_top[l] = NULL;
			free(vals);
			return FL_STOPPED;
		}
	}
	free(vals);
	act = xmalloc((size_t)F * sizeof *act);
	for (int l = 0; l < L; l++) {
		neurons_act(m, s->cache, l, s->n_tok - 1, act);
		for (int i = 0; i < F; i++)
			for (int t = 0; t < K; t++)
				if (s->value_top[l][(size_t)i * K + t] == token) {
					if (*n == cap) {
						cap = cap ? 2 * cap : 64;
						*hits = xrealloc(*hits, (size_t)cap * sizeof **hits);
					}
					(*hits)[(*n)++] = (ui_neuron_hit){ l, i, t + 1, act[i] };
				}
	}
	free(act);
	if (*n > 0)
		qsort(*hits, (size_t)*n, sizeof **hits, cmp_hit);
	return 0;
}
