/* batch.c - see batch.h. */
#include "autoconfig.h"

#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

fl_batch *
batch_new(const fl_model *m, int per_batch, int max_len)
{
	fl_batch *b = xcalloc(1, sizeof *b);

	if (per_batch < 1)
		per_batch = 1;
	if (max_len < 1)
		max_len = 1;
	b->m = m;
	b->per_batch = per_batch;
	b->max_len = max_len;
	b->run = run_new(m, per_batch * max_len, max_len);
	b->ids = xcalloc((size_t)per_batch * max_len, sizeof *b->ids);
	b->lens = xcalloc((size_t)per_batch, sizeof *b->lens);
	return b;
}

void
batch_free(fl_batch *b)
{
	if (b == NULL)
		return;
	run_free(b->run);
	free(b->ids);
	free(b->lens);
	free(b);
}

int
batch_run(fl_batch *b, const fl_prompt *p, int n, const fl_hook *hooks,
    int n_hooks, const fl_pass *base, char **cause)
{
	fl_pass pass = { 0 };
	bool resume = base != NULL && base->start_layer > 0 && base->resume != NULL;
	size_t row0 = 0, D = (size_t)b->m->cfg.d_model;

	for (int first = 0; first < n; first += b->per_batch) {
		int count = n - first < b->per_batch ? n - first : b->per_batch;
		int rows = 0, rc;

		for (int i = 0; i < count; i++) {
			const fl_prompt *q = &p[first + i];

			if (q->n > b->max_len)
				return fl_error(cause, "prompt %d has %d tokens; the batch "
				    "was sized for %d", first + i, q->n, b->max_len);
			memcpy(b->ids + rows, q->ids, (size_t)q->n * sizeof *q->ids);
			b->lens[i] = q->n;
			rows += q->n;
		}
		if (base != NULL)
			pass = *base;
		pass.hooks = hooks;
		pass.n_hooks = n_hooks;
		pass.cache = NULL;
		pass.start_layer = resume ? base->start_layer : 0;
		pass.resume = resume ? base->resume + row0 * D : NULL;
		row0 += (size_t)rows;
		b->first = first;
		b->count = count;
		rc = run_forward(b->run, b->ids, b->lens, count, &pass, cause);
		if (rc < 0)
			return -1;
		b->passes++;
		b->rows += rows;
		b->done += count;
		if (batch_report(b, b->done))
			return FL_STOPPED;
	}
	return 0;
}

/* One engine pass of k suffix passes of p (at[0..k)), packed. */
static int
run_suffixes(fl_batch *b, const fl_prompt *p, const fl_resume *at, int k,
    float *resume, fl_prefix *pre, const fl_hook *hooks, int n_hooks,
    char **cause)
{
	size_t D = (size_t)b->m->cfg.d_model;
	fl_pass pass = { 0 };
	int rows = 0, *join = xmalloc((size_t)k * sizeof *join), rc;

	for (int j = 0; j < k; j++) {
		int skip = at[j].prefix.rows, len = p->n - skip;

		if (skip < 0 || len < 1) {
			free(join);
			return fl_error(cause, "pass %d: a prefix of %d of the prompt's %d "
			    "tokens leaves nothing to run", j, skip, p->n);
		}
		memcpy(b->ids + rows, p->ids + skip, (size_t)len * sizeof *p->ids);
		memcpy(resume + (size_t)rows * D, at[j].rows + (size_t)skip * D,
		    (size_t)len * D * sizeof *resume);
		b->lens[j] = len;
		pre[j] = at[j].prefix;
		join[j] = at[j].layer;
		rows += len;
	}
	pass.hooks = hooks;
	pass.n_hooks = n_hooks;
	pass.start_layer = at[0].layer;
	pass.resume = resume;
	pass.prefix = pre;
	pass.seq_start = join;
	b->first = 0;
	b->count = k;
	rc = run_forward(b->run, b->ids, b->lens, k, &pass, cause);
	free(join);
	if (rc < 0)
		return -1;
	b->passes++;
	b->rows += rows;
	b->done += k;
	return batch_report(b, b->done) ? FL_STOPPED : 0;
}

int
batch_run_resumed(fl_batch *b, const fl_prompt *p, int n, fl_resume_fn start,
    void *ud, const fl_hook *hooks, int n_hooks, int *first, char **cause)
{
	size_t TD = (size_t)p->n * b->m->cfg.d_model;
	int chunk = b->per_batch, rc = 0;
	fl_prompt *copies = xcalloc((size_t)chunk, sizeof *copies);
	float *resume = xmalloc((size_t)chunk * TD * sizeof *resume);
	fl_resume *at = xcalloc((size_t)chunk, sizeof *at);
	fl_prefix *pre = xcalloc((size_t)chunk, sizeof *pre);

	if (p->n > b->max_len)
		rc = fl_error(cause, "the prompt has %d tokens; the batch was sized "
		    "for %d", p->n, b->max_len);
	for (int i = 0; i < chunk; i++)
		copies[i] = *p;
	for (int i = 0; i < n && rc == 0; ) {
		int k = 0;
		fl_pass base = { 0 };

		while (i + k < n && k < chunk) {
			memset(&at[k], 0, sizeof at[k]);
			start(ud, i + k, &at[k]);
			/* suffix passes of later start layers join the pass there */
			if (k > 0 && (at[k].suffix != at[0].suffix ||
			    (!at[0].suffix && at[k].layer != at[0].layer) ||
			    at[k].layer < at[k - 1].layer))
				break;
			if (!at[k].suffix && at[k].layer > 0)
				memcpy(resume + (size_t)k * TD, at[k].rows, TD * sizeof(float));
			k++;
		}
		*first = i;
		if (at[0].suffix)
			rc = run_suffixes(b, p, at, k, resume, pre, hooks, n_hooks, cause);
		else {
			base.start_layer = at[0].layer;
			base.resume = at[0].layer > 0 ? resume : NULL;
			rc = batch_run(b, copies, k, hooks, n_hooks, &base, cause);
		}
		i += k;
	}
	free(pre);
	free(at);
	free(resume);
	free(copies);
	return rc;
}

bool
batch_report(const fl_batch *b, long done)
{
	return fl_progress_report(&b->progress, b->what, done, b->total);
}

int
batch_grab_last(void *ud, fl_act *a)
{
	fl_grab *g = ud;
	size_t row = 1;
	int layer = a->layer < 0 ? 0 : a->layer;

	for (int i = 1; i < a->ndim; i++)
		row *= (size_t)a->shape[i];
	memcpy(g->dst + (size_t)(g->b->first + a->seq) * g->stride +
	    (size_t)layer * g->lstride, a->data + (size_t)(a->shape[0] - 1) * row,
	    (size_t)g->width * sizeof(float));
	return FL_HOOK_CONTINUE;
}

int
batch_grab_rows(void *ud, fl_act *a)
{
	fl_grab_rows *g = ud;
	size_t row = 1;

	for (int i = 1; i < a->ndim; i++)
		row *= (size_t)a->shape[i];
	for (int t = 0; t < a->shape[0]; t++)
		memcpy(g->dst + (g->row_of[g->b->first + a->seq] + (size_t)t) *
		    (size_t)g->width, a->data + (size_t)t * row,
		    (size_t)g->width * sizeof(float));
	return FL_HOOK_CONTINUE;
}

int
batch_stop_after(void *ud, fl_act *a)
{
	const fl_batch *b = ud;

	return a->seq == b->count - 1 ? FL_STOPPED : FL_HOOK_CONTINUE;
}
