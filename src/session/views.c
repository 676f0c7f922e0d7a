/*
 * views.c - the lens rows (the streams, the cursor's view rows) and the
 * heads grid. See session.h.
 */
#include "autoconfig.h"

#include "session/internal.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/attrib.h"
#include "analysis/batch.h"
#include "analysis/lens.h"
#include "analysis/mitigate.h"
#include "analysis/movers.h"
#include "engine/kernels.h"
#include "engine/pool.h"
#include "engine/readout.h"
#include "base/paths.h"
#include "base/util.h"

/* ---- the lens rows ---------------------------------------------- */

void
sess_row_stats(const ui_session *s, const float *lg, bool component, ui_lens_row *r)
{
	int V = s->model->cfg.n_vocab, k = UI_TOPK_MAX;
	int a = s->answer_id;
	float mx;
	double sum = 0;

	/* One softmax normaliser for the top tokens and the answer: the
	 * exponentials over the vocabulary are most of this function's time. */
	r->n_top = lens_topk(lg, V, k, r->top_ids, NULL);
	mx = r->n_top > 0 ? lg[r->top_ids[0]] : 0;
	if (!component && r->n_top > 0)
		sum = lens_softmax_sum(lg, V, mx);
	for (int i = 0; i < r->n_top; i++)
		r->top_val[i] = component ? lg[r->top_ids[i]] :
		    (float)(exp((double)lg[r->top_ids[i]] - mx) / sum);
	if (a >= 0) {
		r->prob = component ? NAN : exp((double)lg[a] - mx) / sum;
		r->rank = lens_rank_of(lg, V, a);
		r->answer_logit = lg[a];
	} else {
		r->prob = NAN;
		r->rank = 0;
		r->answer_logit = NAN;
	}
}

static double
row_mean(const float *x, int n)
{
	double m = 0;

	for (int i = 0; i < n; i++)
		m += x[i];
	return m / n;
}

/* A component's vector as the output sees it inside the sum: carried
 * through the LayerNorms after its write site, each frozen at the run's
 * scale at the last position (attrib.h), ready for model_unembed. */
static void
component_prep(const ui_session *s, int site, const float *x, float *out)
{
	memcpy(out, x, (size_t)s->model->cfg.d_model * sizeof *out);
	attrib_carry(s->model, s->cache, s->n_tok - 1, site, out, 1);
}

/* A residual stream vector through the final LN, when the model has one,
 * ready for model_unembed. */
static void
stream_prep(const ui_session *s, const float *x, float *out)
{
	const fl_model *m = s->model;
	float mean, scale;

	if (!m->cfg.final_ln) {
		memcpy(out, x, (size_t)m->cfg.d_model * sizeof *out);
		return;
	}
	model_norm_stats(m, &mean, &scale, x, 1);
	kern_ln_apply(out, x, &mean, &scale, m->lnf_w, m->lnf_b, 1, m->cfg.d_model);
}

static const float *
at_last(const ui_session *s, const float *base, int layer)
{
	int T = s->n_tok, D = s->model->cfg.d_model;

	return base + ((size_t)layer * T + (T - 1)) * D;
}


/* The cursor's view rows of layer vl and head h, ready for
 * model_unembed: resid_mid through the final LN, then the MLP's and the
 * head's outputs as the output sees them. */
static void
view_prep(const ui_session *s, int vl, int h, float *x)
{
	const fl_model *m = s->model;
	int D = m->cfg.d_model;
	float *head = xmalloc((size_t)D * sizeof *head);

	stream_prep(s, at_last(s, s->cache->resid_mid, vl), x);
	component_prep(s, ATTRIB_SITE_MLP(vl), at_last(s, s->cache->mlp_out, vl),
	    x + D);
	model_head_result(m, vl, h, at_last(s, s->cache->z, vl), head);
	component_prep(s, ATTRIB_SITE_ATTN(vl), head, x + 2 * (size_t)D);
	free(head);
}

/* Layers whose view rows a layer step makes, its own and the next in the
 * step's direction: reading the unembedding from memory dominates a few
 * rows, so 6 cost about what 3 do (GPT-2 small's shape: 6.1-7.2 ms against
 * 6.7-7.0), and the next step then takes 1 ms; 5 layers' 15 rows took
 * 10-11 ms. */
#define NEAR_LAYERS 2

/* Reads the unembedding once for every row that `what` asks for. */
void
sess_lens_product(ui_session *s, int what)
{
	const fl_model *m = s->model;
	int L = m->cfg.n_layer, D = m->cfg.d_model, V = m->cfg.n_vocab;
	int n = 0, first = (what & LENS_STREAMS) ? 0 : L, n_stream = 0;
	int vl = s->layer, a = vl, b = vl + 1;
	bool view = (what & LENS_VIEW) != 0;
	float *x;
	double t0 = fl_now();

	s->n_lens_products++;
	if (s->near_logits == NULL) {
		s->near_logits = xcalloc_huge((size_t)L * 3 * V, sizeof *s->near_logits);
		s->near_head = xmalloc((size_t)L * sizeof *s->near_head);
		for (int l = 0; l < L; l++)
			s->near_head[l] = -1;
	}
	if (what & (LENS_STREAMS | LENS_FINAL)) {
		/* a new prompt or a toggle: every layer's rows change */
		n_stream = L + 1 - first;
		for (int l = 0; l < L; l++)
			s->near_head[l] = -1;
	} else if (view && s->near_head[vl] == s->head) {
		memcpy(s->view_logits, s->near_logits + (size_t)vl * 3 * V,
		    3 * (size_t)V * sizeof *s->view_logits);
		what = 0;
	} else if (s->view_layer >= 0 && s->view_layer != vl) {
		if (vl > s->view_layer)
			b = vl + NEAR_LAYERS < L ? vl + NEAR_LAYERS : L;
		else
			a = vl - NEAR_LAYERS + 1 > 0 ? vl - NEAR_LAYERS + 1 : 0;
	}
	if (what != 0) {
		x = xmalloc((size_t)(n_stream + 3 * (b - a)) * D * sizeof *x);
		for (int l = first; l <= L && n_stream > 0; l++)
			stream_prep(s, at_last(s, s->cache->resid_pre, l),
			    x + (size_t)n++ * D);
		if (view)
			for (int l = a; l < b; l++, n += 3)
				view_prep(s, l, s->head, x + (size_t)n * D);
		if (n_stream > 0) {
			/* the stream rows end at row L and the view rows
			 * follow: one product writes them all in place */
			model_unembed(m, x, n, s->stream_logits + (size_t)first * V,
			    NULL);
			if (view)
				memcpy(s->near_logits + (size_t)vl * 3 * V,
				    s->view_logits, 3 * (size_t)V * sizeof *s->view_logits);
		} else {
			model_unembed(m, x, n, s->near_logits + (size_t)a * 3 * V, NULL);
			memcpy(s->view_logits, s->near_logits + (size_t)vl * 3 * V,
			    3 * (size_t)V * sizeof *s->view_logits);
		}
		if (view)
			for (int l = a; l < b; l++)
				s->near_head[l] = s->head;
		free(x);
	}
	if (view) {
		s->view_layer = s->layer;
		s->view_head_h = s->head;
	}
	s->ms_lens += 1000 * (fl_now() - t0);
}

#define UI_STATS_ROWS_MAX 64	/* rows per kern_for; more go in several */

/* Rows whose statistics are wanted, shared among the threads: each is a
 * top-k, a softmax normaliser and a rank over the vocabulary. */
typedef struct {
	const ui_session	*s;
	const float		*lg[UI_STATS_ROWS_MAX];
	bool			 component[UI_STATS_ROWS_MAX];
	ui_lens_row		*out[UI_STATS_ROWS_MAX];
	int			 n;
} stats_job;

static void
stats_part(void *ctx, int part, int nparts)
{
	const stats_job *j = ctx;
	int a, b;

	kern_part_range(j->n, part, nparts, &a, &b);
	for (int i = a; i < b; i++)
		sess_row_stats(j->s, j->lg[i], j->component[i], j->out[i]);
}

static void
stats_add(stats_job *j, const float *lg, bool component, ui_lens_row *out)
{
	if (j->n == UI_STATS_ROWS_MAX) {
		kern_for(stats_part, j, j->n);
		j->n = 0;
	}
	j->lg[j->n] = lg;
	j->component[j->n] = component;
	j->out[j->n++] = out;
}

/* Statistics of the rows `what` names: the streams (or only the final
 * one) and the cursor's view rows. */
void
sess_stats_rows(ui_session *s, int what)
{
	int L = s->model->cfg.n_layer, V = s->model->cfg.n_vocab;
	stats_job j = { .s = s };

	for (int l = (what & STATS_STREAMS) ? 0 : L;
	    l <= L && (what & (STATS_STREAMS | STATS_FINAL)); l++)
		stats_add(&j, s->stream_logits + (size_t)l * V, false, &s->streams[l]);
	if ((what & STATS_VIEW) && s->view_layer >= 0) {
		const float *v = s->view_logits;

		stats_add(&j, v, false, &s->view_mid);
		stats_add(&j, v + V, true, &s->view_mlp);
		stats_add(&j, v + 2 * (size_t)V, true, &s->view_head);
		s->mlp_direct = s->answer_id >= 0 ?
		    (float)(v[V + s->answer_id] - row_mean(v + V, V)) : NAN;
		s->head_direct = s->answer_id >= 0 ?
		    (float)(v[2 * V + s->answer_id] - row_mean(v + 2 * V, V)) : NAN;
	}
	if (j.n > 0)
		kern_for(stats_part, &j, j.n);
}

void
sess_stats_all(ui_session *s)
{
	sess_stats_rows(s, STATS_ALL);
}

void
sess_movers_ensure(ui_session *s)
{
	const fl_model *m = s->model;
	int n = m->cfg.n_layer * m->cfg.n_head, T = s->n_tok;
	fl_mover *mv;

	if (s->movers_valid || s->subject_pos < 0 || s->subject_first < 0 ||
	    s->subject_pos >= T - 1)
		return;
	mv = xcalloc((size_t)n, sizeof *mv);
	if (movers_score(mv, m, s->cache, T - 1, s->subject_first,
	    s->subject_pos - s->subject_first + 1, s->ids[s->subject_first],
	    MOVERS_THRESHOLD, NULL) == 0) {
		for (int i = 0; i < n; i++) {
			s->mover[i] = mv[i].score;
			s->direct_subj[i] = mv[i].logit;
			s->is_mover[i] = mv[i].mover;
		}
		s->movers_valid = true;
	}
	free(mv);
}

/* The heads grid at the last position: attention to the subject's tokens
 * (from the cached patterns), direct contributions to the answer
 * (attrib.h), and - only while the grid shows them, since each head's rank
 * of the subject takes a product over the whole vocabulary - mover scores
 * (movers.h). */
void
sess_grid_compute(ui_session *s)
{
	const fl_model *m = s->model;
	int L = m->cfg.n_layer, H = m->cfg.n_head, T = s->n_tok, n = L * H;
	bool have_subj = s->subject_pos >= 0 && s->subject_first >= 0 &&
	    s->subject_pos < T - 1;
	fl_attrib diff = { 0 };
	bool have_direct;

	/* logit minus mean logit, with the mean unembedding row computed once
	 * per model (sess_load_model) rather than once per call */
	have_direct = s->answer_id >= 0 && attrib_direct(NULL, &diff, m,
	    s->cache, T - 1, s->answer_id, s->unembed_mean, NULL) == 0;
	if (s->metric == METRIC_MOVER)
		sess_movers_ensure(s);
	for (int i = 0; i < n; i++) {
		int l = i / H, h = i % H;
		float a = 0;

		for (int t = s->subject_first; have_subj && t <= s->subject_pos; t++)
			a += s->cache->pattern[(((size_t)l * H + h) * T + (T - 1)) * T + t];
		s->attn_subj[i] = have_subj ? a : NAN;
		s->direct[i] = have_direct ? (float)diff.head[i] : NAN;
		if (!s->movers_valid) {
			s->mover[i] = s->direct_subj[i] = NAN;
			s->is_mover[i] = false;
		}
		switch (s->metric) {
		case METRIC_ATTN_SUBJECT: s->grid[i] = s->attn_subj[i]; break;
		case METRIC_DIRECT: s->grid[i] = s->direct[i]; break;
		case METRIC_MOVER: s->grid[i] = s->mover[i]; break;
		case METRIC_PATCH: s->grid[i] = s->patch_valid ?
		    (float)s->patch.effect[i] : NAN; break;
		case METRIC_ATP: s->grid[i] = s->atp_valid ?
		    (float)s->atp.heads[i] : NAN; break;
		default: s->grid[i] = NAN; break;
		}
	}
	attrib_clear(&diff);
}

void
sess_pos_rows(ui_session *s, int pos)
{
	const fl_model *m = s->model;
	int T = s->n_tok, D = m->cfg.d_model, V = m->cfg.n_vocab, l = s->layer;
	float *x = xmalloc(3 * (size_t)D * sizeof *x);
	float *lg = xmalloc(3 * (size_t)V * sizeof *lg);
	const float *src[3] = {
		s->cache->resid_pre + ((size_t)l * T + pos) * D,
		s->cache->resid_mid + ((size_t)l * T + pos) * D,
		s->cache->resid_pre + ((size_t)(l + 1) * T + pos) * D,
	};
	double t0 = fl_now();

	for (int k = 0; k < 3; k++)
		stream_prep(s, src[k], x + (size_t)k * D);
	model_unembed(m, x, 3, lg, NULL);
	s->n_lens_products++;
	for (int k = 0; k < 3; k++)
		sess_row_stats(s, lg + (size_t)k * V, false, &s->pos_rows[k]);
	s->pos_layer = l;
	s->pos_at = pos;
	free(x);
	free(lg);
	s->ms_lens += 1000 * (fl_now() - t0);
}
