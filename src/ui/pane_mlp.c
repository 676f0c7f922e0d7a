/*
 * pane_mlp.c - the explorer's MLP pane: the cursor layer's MLP, its
 * decomposition into the heads once fitted, and the MLP at neuron level
 * (neurons.h) with its edits. Drawing only, as panes.c.
 */
#include "autoconfig.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "ui.h"
#include "panes.h"

static void pane_mlp_decomp(const ui_ctx *c, const ui_view *v, int y);

/* The edit on neuron (l, i), as the pane marks it, or NULL. */
static const char *
edit_mark(const ui_session *s, int l, int i)
{
	for (int k = 0; k < s->n_edits; k++)
		if (s->edits[k].layer == l && s->edits[k].neuron == i)
			return s->edits[k].factor == 0 ? "x0" : s->edits[k].factor < 1 ?
			    "x.5" : "x2";
	return NULL;
}

/* The MLP at neuron level (neurons.h): the direct effect split into the
 * neurons, the intercept's when the decomposition is fitted here, then
 * the strongest neurons by the chosen effect with their value vectors. */
static void
pane_neurons_draw(const ui_ctx *c, const ui_view *v, int y)
{
	static const char *by[] = { "answer", "subject", "activation" };
	const ui_session *s = c->s;
	const fl_neurons *n = &s->neurons;
	double sum = 0;
	int x, F = n->d_mlp;
	bool icpt = s->icpt_neuron != NULL;

	if (n->act == NULL) {
		view_put(v, 1, y, -1, UI_ROLE_ERROR, "neurons: not computed");
		return;
	}
	for (int i = 0; i < F; i++)
		sum += n->to_answer[i];
	view_printf(v, 1, y++, -1, UI_ROLE_DIM, "= %d neurons %+.3f + b_out %+.3f; "
	    "by %s (N)", F, sum, n->bias_answer, by[s->neuron_sort]);
	if (icpt && y < v->r.h) {
		double t = 0;

		for (int i = 0; i < F; i++)
			t += s->icpt_neuron[i];
		view_printf(v, 1, y++, -1, UI_ROLE_DIM, "intercept %+.3f = neurons %+.3f "
		    "+ b_out %+.3f %+.3f regressors", s->icpt_total, t, s->icpt_bias,
		    s->icpt_regressors);
	}
	if (y >= v->r.h)
		return;
	x = 1 + view_printf(v, 1, y, -1, UI_ROLE_DIM, "%-8s %6s %5s %6s %6s", "neuron",
	    "act", "|w|", "ans", "subj");
	if (icpt)
		x += view_printf(v, x, y, -1, UI_ROLE_DIM, " %6s", "icpt");
	view_put(v, x, y++, -1, UI_ROLE_DIM, "  value vector");
	for (int r = 0; r < UI_NEURON_ROWS && r < F && y < v->r.h; r++, y++) {
		int i = s->neuron_order[r];
		const char *mk = edit_mark(s, s->layer, i);
		char id[24];

		snprintf(id, sizeof id, "%d.%d%s", s->layer, i, mk != NULL ? mk : "");
		x = 1 + view_printf(v, 1, y, 8, mk != NULL ? UI_ROLE_ERROR : UI_ROLE_NORMAL,
		    "%-8s", id);
		x += view_printf(v, x, y, -1, UI_ROLE_NORMAL, " %+6.2f %5.2f", n->act[i],
		    n->w_norm[i]);
		x += view_printf(v, x, y, -1, n->to_answer[i] >= 0 ? UI_ROLE_POSITIVE :
		    UI_ROLE_NEGATIVE, " %+6.2f", n->to_answer[i]);
		if (n->to_subject != NULL)
			x += view_printf(v, x, y, -1, UI_ROLE_NORMAL, " %+6.2f",
			    n->to_subject[i]);
		else
			x += view_printf(v, x, y, -1, UI_ROLE_DIM, " %6s", "-");
		if (icpt)
			x += view_printf(v, x, y, -1, UI_ROLE_NORMAL, " %+6.2f",
			    s->icpt_neuron[i]);
		x += 1;
		for (int t = 0; t < UI_NEURON_TOP && x < v->r.w; t++) {
			int id2 = s->neuron_top[r][t];

			x += 1 + view_put(v, x + 1, y, -1, id2 == s->answer_id ?
			    UI_ROLE_ANSWER : UI_ROLE_NORMAL, tok_label(c, id2));
		}
	}
}

void
pane_mlp_draw(const ui_ctx *c, const ui_view *v)
{
	const ui_session *s = c->s;
	char title[64];
	int y = 1;

	if (s->neurons_on)
		snprintf(title, sizeof title, "MLP %d: neurons at the last position (n)",
		    s->layer);
	else
		snprintf(title, sizeof title, "MLP %d", s->layer);
	pane_title(v, c, title);
	if (!session_ready(s) || s->view_layer != s->layer)
		return;
	{
		int x = view_put(v, 1, y, -1, UI_ROLE_DIM, "direct effect on ");

		x += view_put(v, 1 + x, y, 16, UI_ROLE_ANSWER, tok_label(c, s->answer_id));
		view_printf(v, 1 + x, y, -1, s->mlp_direct >= 0 ? UI_ROLE_POSITIVE :
		    UI_ROLE_NEGATIVE, " %+.3f", s->mlp_direct);
		y++;
	}
	if (s->neurons_on) {
		pane_neurons_draw(c, v, y);
		return;
	}
	pane_writes_row(c, v, y++, &s->view_mlp);
	if (s->task == NULL) {
		view_put(v, 1, y, -1, UI_ROLE_DIM, "decomposition: load a task (:task NAME) "
		    "to fit it");
		return;
	}
	if (s->recon_layer != s->layer) {
		view_printf(v, 1, y, -1, UI_ROLE_ERROR, "decomposition: %s",
		    s->decomp_error != NULL ? s->decomp_error : "not fitted");
		return;
	}
	pane_mlp_decomp(c, v, y);
}

/* The decomposition of the cursor layer's MLP over the task (decompose.h):
 * the pooled form's R^2 in-sample and held out (leave-one-subject-out),
 * this prompt's cosine, one coefficient per head (beta ~ -1: the
 * MLP erases the head, beta > 0: amplifies it), the intercept's top tokens. */
static void
pane_mlp_decomp(const ui_ctx *c, const ui_view *v, int y)
{
	const ui_session *s = c->s;
	char fb[24];
	const fl_regress *f = &s->decomp[s->layer].fit;
	const fl_heldout *ho = &s->decomp[s->layer].heldout;
	int H = session_heads(s), x;

	/* the figures first: a narrow pane cuts the names */
	view_printf(v, 1, y++, -1, UI_ROLE_DIM, "pooled R^2 %.3f, held out %.3f, this "
	    "prompt cos %.3f (%s, %d prompts)", f->r2, ho->r2, s->recon.cos,
	    s->task->name, f->n);
	x = 1 + view_put(v, 1, y, -1, UI_ROLE_DIM, "coef ");
	for (int j = 0; j < f->J && x < v->r.w; j++) {
		double b = f->beta[j];
		bool erase = b <= -0.5, amp = b >= 0.5;
		char name[16];

		if (j < H)
			snprintf(name, sizeof name, "%d", j);
		else
			snprintf(name, sizeof name, "res");
		x += view_printf(v, x, y, -1, j == s->head ? UI_ROLE_CURSOR : UI_ROLE_DIM,
		    "%s", name);
		x += view_printf(v, x, y, -1, erase ? UI_ROLE_NEGATIVE : amp ?
		    UI_ROLE_POSITIVE : UI_ROLE_NORMAL, ":%+.2f%s ", b,
		    erase ? "x" : amp ? "^" : "");
	}
	y++;
	x = 1 + view_put(v, 1, y, -1, UI_ROLE_DIM, "intercept writes ");
	for (int i = 0; i < s->decomp_icpt.n_top && i < s->topk && x < v->r.w; i++) {
		int id = s->decomp_icpt.top_ids[i];

		x += view_put(v, x, y, -1, id == s->answer_id ? UI_ROLE_ANSWER :
		    UI_ROLE_NORMAL, tok_label(c, id));
		x += view_printf(v, x, y, -1, UI_ROLE_DIM, " %s  ",
		    fmt_signed(s->decomp_icpt.top_val[i], fb, sizeof fb));
	}
	view_put(v, 1, y + 1, -1, UI_ROLE_DIM, "coef x: the MLP erases the head, "
	    "^: amplifies it");
}
