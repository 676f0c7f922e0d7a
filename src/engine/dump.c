/* dump.c - activation dumps; see dump.h. */
#include "autoconfig.h"

#include "dump.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "engine/st.h"

typedef struct {
	char		 name[64];
	fl_hook_point	 point;
	int		 layer;
	float		*data;		/* the capture, or NULL before it */
	int		 ndim;
	int		 shape[3];
} dump_entry;

struct fl_dump {
	dump_entry	*e;
	int		 n;
	fl_hook		*hooks;		/* one per entry */
};

/* Whether the model m has point p (forward.c refuses the others). */
static bool
dump_point_exists(const fl_model *m, fl_hook_point p)
{
	const fl_config *c = &m->cfg;

	switch (p) {
	case HOOK_POS_EMBED: return !c->rotary;
	case HOOK_ROT_Q: case HOOK_ROT_K: return c->rotary;
	case HOOK_MLP_PRE_LINEAR: return c->gated_mlp;
	case HOOK_LNF_SCALE: case HOOK_LNF_NORMALIZED: return c->final_ln;
	case HOOK_LOGITS: return false;
	default: return true;
	}
}

/* Every name m has, in the forward pass's order; *n set. */
static dump_entry *
dump_all_names(const fl_model *m, int *n)
{
	int L = m->cfg.n_layer, cap = HOOK_POINT_COUNT * (L + 1), k = 0;
	dump_entry *all = xcalloc((size_t)cap, sizeof *all);
	char probe[64];

	for (int p = 0; p < HOOK_POINT_COUNT; p++) {
		bool block;

		if (!dump_point_exists(m, (fl_hook_point)p))
			continue;
		hook_point_name((fl_hook_point)p, 0, probe, sizeof probe);
		block = strncmp(probe, "blocks.", 7) == 0;
		for (int l = 0; l < (block ? L : 1); l++) {
			all[k].point = (fl_hook_point)p;
			all[k].layer = block ? l : -1;
			hook_point_name((fl_hook_point)p, l, all[k].name, sizeof all[k].name);
			k++;
		}
	}
	*n = k;
	return all;
}

/* The valid names for a message: the block points once, as blocks.L.x. */
static char *
dump_valid_list(const fl_model *m)
{
	size_t cap = 2048, len = 0;
	char *s = xmalloc(cap), name[64];

	s[0] = '\0';
	for (int p = 0; p < HOOK_POINT_COUNT; p++) {
		if (!dump_point_exists(m, (fl_hook_point)p))
			continue;
		hook_point_name((fl_hook_point)p, 0, name, sizeof name);
		if (strncmp(name, "blocks.0.", 9) == 0)
			len += (size_t)snprintf(s + len, cap - len, "%sblocks.L.%s",
			    len ? ", " : "", name + 9);
		else
			len += (size_t)snprintf(s + len, cap - len, "%s%s", len ? ", " : "",
			    name);
	}
	snprintf(s + len, cap - len, " (L from 0 to %d), or all",
	    m->cfg.n_layer - 1);
	return s;
}

static int
dump_capture(void *ud, fl_act *a)
{
	dump_entry *e = ud;
	size_t n = 1;

	if (a->seq != 0)
		return FL_HOOK_CONTINUE;
	for (int i = 0; i < a->ndim; i++)
		n *= (size_t)a->shape[i];
	free(e->data);
	e->data = xmalloc((n ? n : 1) * sizeof(float));
	memcpy(e->data, a->data, n * sizeof(float));
	e->ndim = a->ndim;
	memcpy(e->shape, a->shape, sizeof e->shape);
	return FL_HOOK_CONTINUE;
}

fl_dump *
dump_new(const fl_model *m, const char *spec, char **cause)
{
	int nall;
	dump_entry *all = dump_all_names(m, &nall);
	bool *want = xcalloc((size_t)nall, sizeof *want);
	char *copy = xstrdup(spec), *save = NULL;
	fl_dump *d = NULL;
	int k = 0;

	if (spec[strspn(spec, " ,")] == '\0') {
		fl_error(cause, "no hook point given (a name, a glob such as "
		    "blocks.*.hook_resid_post, or all)");
		goto out;
	}
	for (char *it = strtok_r(copy, ",", &save); it != NULL;
	    it = strtok_r(NULL, ",", &save)) {
		bool hit = false;

		it += strspn(it, " ");
		for (int i = 0; i < nall; i++)
			if (strcmp(it, "all") == 0 || fnmatch(it, all[i].name, 0) == 0)
				want[i] = hit = true;
		if (!hit) {
			char *valid = dump_valid_list(m);

			fl_error(cause, "no hook point is named '%s'; this model "
			    "has %s", it, valid);
			free(valid);
			goto out;
		}
	}
	d = xcalloc(1, sizeof *d);
	for (int i = 0; i < nall; i++)
		d->n += want[i];
	d->e = xcalloc((size_t)d->n, sizeof *d->e);
	d->hooks = xcalloc((size_t)d->n, sizeof *d->hooks);
	for (int i = 0; i < nall; i++)
		if (want[i]) {
			d->e[k] = all[i];
			d->hooks[k] = (fl_hook){ .point = all[i].point,
			    .layer = all[i].layer, .fn = dump_capture, .ud = &d->e[k] };
			k++;
		}
out:
	free(copy);
	free(want);
	free(all);
	return d;
}

void
dump_free(fl_dump *d)
{
	if (d == NULL)
		return;
	for (int i = 0; i < d->n; i++)
		free(d->e[i].data);
	free(d->e);
	free(d->hooks);
	free(d);
}

const fl_hook *
dump_hooks(fl_dump *d, int *n)
{
	*n = d->n;
	return d->hooks;
}

int
dump_count(const fl_dump *d)
{
	return d->n;
}

const char *
dump_name(const fl_dump *d, int i)
{
	return d->e[i].name;
}

int
dump_write(const fl_dump *d, const char *path, const char *const *meta,
    int nmeta, char **cause)
{
	st_out *t = xcalloc((size_t)(d->n ? d->n : 1), sizeof *t);
	int rc;

	for (int i = 0; i < d->n; i++) {
		const dump_entry *e = &d->e[i];

		if (e->data == NULL) {
			free(t);
			return fl_error(cause, "%s: hook point %s did not fire (the pass "
			    "stopped before it)", path, e->name);
		}
		t[i].name = e->name;
		t[i].ndim = e->ndim;
		for (int j = 0; j < e->ndim; j++)
			t[i].shape[j] = e->shape[j];
		t[i].data = e->data;
	}
	rc = st_write_f32(path, t, d->n, meta, nmeta, cause);
	free(t);
	return rc;
}
