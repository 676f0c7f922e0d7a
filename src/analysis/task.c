/* task.c - see task.h. */
#include "autoconfig.h"

#include "task.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static const char *set_keys[TASK_TEMPLATES_COUNT] = {
	[TASK_TEMPLATES_MAIN] = "templates",
	[TASK_TEMPLATES_PARAPHRASE] = "paraphrase_templates",
	[TASK_TEMPLATES_HELDOUT] = "heldout_templates",
};

static const char *set_names[TASK_TEMPLATES_COUNT] = {
	[TASK_TEMPLATES_MAIN] = "main",
	[TASK_TEMPLATES_PARAPHRASE] = "paraphrase",
	[TASK_TEMPLATES_HELDOUT] = "heldout",
};

const char *
task_set_name(fl_template_set set)
{
	return set < TASK_TEMPLATES_COUNT ? set_names[set] : "?";
}

int
task_set_parse(const char *name)
{
	for (int i = 0; i < TASK_TEMPLATES_COUNT; i++)
		if (strcmp(name, set_names[i]) == 0)
			return i;
	return -1;
}

void
task_free(fl_task *t)
{
	if (t == NULL)
		return;
	for (int i = 0; i < t->n_pairs; i++) {
		free(t->pairs[i].subject);
		free(t->pairs[i].answer);
	}
	free(t->pairs);
	for (int s = 0; s < TASK_TEMPLATES_COUNT; s++) {
		for (int i = 0; i < t->n_templates[s]; i++)
			free(t->templates[s][i]);
		free(t->templates[s]);
	}
	free(t->fewshot);
	free(t->counterfactual);
	free(t->name);
	free(t->path);
	free(t);
}

/* A non-empty string field of an object, or NULL. */
static const char *
json_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) && v->valuestring[0] != '\0' ? v->valuestring : NULL;
}

/* Checks that a template has exactly one [N] and one [C], [N] first. */
static int
template_check(const char *path, const char *field, int i, const char *s,
    char **cause)
{
	const char *n = strstr(s, "[N]"), *c = strstr(s, "[C]");

	char idx[16] = "";

	if (i >= 0)
		snprintf(idx, sizeof idx, "[%d]", i);
	if (n == NULL || strstr(n + 3, "[N]") != NULL)
		return fl_error(cause, "%s: %s%s \"%s\" must contain [N] (the "
		    "subject) exactly once", path, field, idx, s);
	if (c == NULL || strstr(c + 3, "[C]") != NULL)
		return fl_error(cause, "%s: %s%s \"%s\" must contain [C] (the "
		    "answer) exactly once", path, field, idx, s);
	if (c < n)
		return fl_error(cause, "%s: %s%s \"%s\": [C] must come after [N]",
		    path, field, idx, s);
	return 0;
}

static int
load_templates(fl_task *t, const cJSON *root, fl_template_set s, char **cause)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, set_keys[s]), *e;
	int i = 0;

	if (arr == NULL)
		return s == TASK_TEMPLATES_MAIN ? fl_error(cause, "%s: no field "
		    "'templates' (an array of strings with [N] and [C])", t->path) : 0;
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
		return fl_error(cause, "%s: field '%s' must be a non-empty array of "
		    "strings", t->path, set_keys[s]);
	t->templates[s] = xcalloc((size_t)cJSON_GetArraySize(arr), sizeof(char *));
	cJSON_ArrayForEach(e, arr) {
		if (!cJSON_IsString(e))
			return fl_error(cause, "%s: %s[%d] must be a string", t->path,
			    set_keys[s], i);
		if (template_check(t->path, set_keys[s], i, e->valuestring, cause) != 0)
			return -1;
		t->templates[s][i++] = xstrdup(e->valuestring);
		t->n_templates[s] = i;
	}
	return 0;
}

fl_task *
task_load(const char *path, char **cause)
{
	char *text = fl_read_file(path, NULL, 64 << 20, cause);
	cJSON *root, *pairs, *e;
	fl_task *t;
	const char *s;
	int i = 0;

	if (text == NULL)
		return NULL;
	{
		const char *end = NULL;
		int line, col;

		root = cJSON_ParseWithOpts(text, &end, 0);
		if (root == NULL) {
			fl_text_position(text, end != NULL ? (size_t)(end - text) : 0, &line,
			    &col);
			fl_error(cause, "%s: not valid JSON at line %d, column %d%s", path,
			    line, col, end != NULL && *end == '\0' ? " (the file ends early)" :
			    "");
			free(text);
			return NULL;
		}
	}
	free(text);
	if (!cJSON_IsObject(root)) {
		fl_error(cause, "%s: not a JSON object (a task file has \"pairs\" and "
		    "\"templates\")", path);
		cJSON_Delete(root);
		return NULL;
	}
	/* A misspelt field would be ignored and its default used: refuse it. */
	cJSON_ArrayForEach(e, root) {
		static const char *known[] = { "name", "relation", "source", "scoring",
		    "pairs", "templates", "paraphrase_templates", "heldout_templates",
		    "fewshot_format", "counterfactual_format" };
		bool ok = e->string == NULL || e->string[0] == '_';

		for (size_t k = 0; !ok && k < sizeof known / sizeof known[0]; k++)
			ok = strcmp(e->string, known[k]) == 0;
		if (!ok) {
			fl_error(cause, "%s: unknown field '%s' (a task has name, relation, "
			    "source, scoring, pairs, templates, paraphrase_templates, "
			    "heldout_templates, fewshot_format and counterfactual_format; a "
			    "field starting with '_' is a comment)", path, e->string);
			cJSON_Delete(root);
			return NULL;
		}
	}
	t = xcalloc(1, sizeof *t);
	t->path = xstrdup(path);
	s = json_str(root, "name");
	t->name = xstrdup(s != NULL ? s : path);
	pairs = cJSON_GetObjectItemCaseSensitive(root, "pairs");
	if (!cJSON_IsArray(pairs) || cJSON_GetArraySize(pairs) < 2) {
		fl_error(cause, "%s: field 'pairs' must be an array of at least two "
		    "{\"subject\", \"answer\"} objects", path);
		goto fail;
	}
	t->pairs = xcalloc((size_t)cJSON_GetArraySize(pairs), sizeof *t->pairs);
	cJSON_ArrayForEach(e, pairs) {
		const char *subj = json_str(e, "subject"), *ans = json_str(e, "answer");
		const cJSON *f;

		cJSON_ArrayForEach(f, e)
			if (f->string != NULL && f->string[0] != '_' &&
			    strcmp(f->string, "subject") != 0 && strcmp(f->string, "answer") != 0) {
				fl_error(cause, "%s: pairs[%d]: unknown field '%s' (a pair has "
				    "subject and answer)", path, i, f->string);
				goto fail;
			}
		if (subj == NULL || ans == NULL) {
			fl_error(cause, "%s: pairs[%d] must have non-empty string fields "
			    "'subject' and 'answer'", path, i);
			goto fail;
		}
		t->pairs[i].subject = xstrdup(subj);
		t->pairs[i].answer = xstrdup(ans);
		t->n_pairs = ++i;
	}
	for (int k = 0; k < TASK_TEMPLATES_COUNT; k++)
		if (load_templates(t, root, (fl_template_set)k, cause) != 0)
			goto fail;
	e = cJSON_GetObjectItemCaseSensitive(root, "fewshot_format");
	if (e != NULL) {
		if (!cJSON_IsString(e)) {
			fl_error(cause, "%s: field 'fewshot_format' must be a string", path);
			goto fail;
		}
		if (template_check(path, "fewshot_format", -1, e->valuestring, cause) != 0)
			goto fail;
		t->fewshot = xstrdup(e->valuestring);
	}
	e = cJSON_GetObjectItemCaseSensitive(root, "counterfactual_format");
	if (e != NULL) {
		if (!cJSON_IsString(e)) {
			fl_error(cause, "%s: field 'counterfactual_format' must be a "
			    "string", path);
			goto fail;
		}
		if (template_check(path, "counterfactual_format", -1, e->valuestring,
		    cause) != 0)
			goto fail;
		t->counterfactual = xstrdup(e->valuestring);
	}
	cJSON_Delete(root);
	return t;
fail:
	cJSON_Delete(root);
	task_free(t);
	return NULL;
}

int
task_find_pair(const fl_task *t, const char *subject)
{
	for (int i = 0; i < t->n_pairs; i++)
		if (strcmp(t->pairs[i].subject, subject) == 0)
			return i;
	return -1;
}

/* ---- prompt text ---------------------------------------------------- */

/* splitmix64: a small, well-mixed generator; the same on every platform. */
static uint64_t
mix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t
prompt_rng(unsigned seed, int pair, int tmpl, int stream)
{
	return ((uint64_t)seed << 32) ^ ((uint64_t)(unsigned)pair << 16) ^
	    (uint64_t)(unsigned)tmpl ^ ((uint64_t)(unsigned)stream << 48);
}

/* Appends s to a growing buffer. */
static void
buf_add(char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*b = xrealloc(*b, *cap);
	}
	memcpy(*b + *len, s, n);
	*len += n;
	(*b)[*len] = '\0';
}

/* Fills a [N]/[C] format: the whole of it, or up to [C] when answer is NULL
 * (and without the space before [C]). */
static void
fill_format(char **b, size_t *len, size_t *cap, const char *fmt,
    const char *subject, const char *answer, int *subj_off, bool *space)
{
	const char *n = strstr(fmt, "[N]"), *c = strstr(fmt, "[C]");
	const char *end = c;

	buf_add(b, len, cap, fmt, (size_t)(n - fmt));
	if (subj_off != NULL)
		*subj_off = (int)*len;
	buf_add(b, len, cap, subject, strlen(subject));
	if (answer == NULL) {
		bool sp = end > n + 3 && end[-1] == ' ';

		if (sp)
			end--;
		if (space != NULL)
			*space = sp;
		buf_add(b, len, cap, n + 3, (size_t)(end - (n + 3)));
		return;
	}
	buf_add(b, len, cap, n + 3, (size_t)(c - (n + 3)));
	buf_add(b, len, cap, answer, strlen(answer));
	buf_add(b, len, cap, c + 3, strlen(c + 3));
}

/* Whether two answers start with the same word ("San Jose", "San Marino"). */
static bool
same_first_word(const char *a, const char *b)
{
	size_t na = strcspn(a, " "), nb = strcspn(b, " ");

	return na == nb && strncmp(a, b, na) == 0;
}

/* The nth pair, from a random start, whose answer has another first word. */
static int
context_pair_nth(const fl_task *t, const fl_prompt_opts *o, int tmpl, int pair,
    int nth)
{
	uint64_t rng = prompt_rng(o->seed, pair, tmpl, 3);
	int n = t->n_pairs, start;

	if (pair < 0 || pair >= n)
		return -1;
	start = (int)(mix64(&rng) % (uint64_t)n);
	for (int k = 0; k < n; k++) {
		int j = (start + k) % n;

		if (j != pair && !same_first_word(t->pairs[j].answer,
		    t->pairs[pair].answer) && nth-- == 0)
			return j;
	}
	return -1;
}

int
task_context_pair(const fl_task *t, const fl_prompt_opts *o, int tmpl, int pair)
{
	return context_pair_nth(t, o, tmpl, pair, 0);
}

static char *prompt_text(const fl_task *t, const fl_prompt_opts *o, int tmpl,
    int pair, int subject_pair, int ctx_pair, int *subj_off, bool *space,
    char **cause);

char *
task_prompt_text(const fl_task *t, const fl_prompt_opts *o, int tmpl, int pair,
    int subject_pair, int *subj_off, bool *space, char **cause)
{
	return prompt_text(t, o, tmpl, pair, subject_pair, o->counterfactual ?
	    task_context_pair(t, o, tmpl, pair) : -1, subj_off, space, cause);
}

/* task_prompt_text with the counterfactual context's pair given. */
static char *
prompt_text(const fl_task *t, const fl_prompt_opts *o, int tmpl, int pair,
    int subject_pair, int cp, int *subj_off, bool *space, char **cause)
{
	fl_template_set set = o->set;
	char *b = NULL;
	size_t len = 0, cap = 0;
	int *pool;
	int n_pool = 0;
	uint64_t rng;

	if (set >= TASK_TEMPLATES_COUNT || t->templates[set] == NULL) {
		fl_error(cause, "%s: the task has no '%s'", t->path,
		    set < TASK_TEMPLATES_COUNT ? set_keys[set] : "?");
		return NULL;
	}
	if (tmpl < 0 || tmpl >= t->n_templates[set] || pair < 0 ||
	    pair >= t->n_pairs || subject_pair < 0 || subject_pair >= t->n_pairs) {
		fl_error(cause, "%s: no template %d or pair %d", t->path, tmpl, pair);
		return NULL;
	}
	if (o->shots > 0 && t->fewshot == NULL) {
		fl_error(cause, "%s: %d-shot prompts need the field 'fewshot_format'",
		    t->path, o->shots);
		return NULL;
	}
	if (o->shots > t->n_pairs - 1) {
		fl_error(cause, "%s: %d-shot prompts need %d pairs besides the "
		    "prompt's own; the task has %d pairs", t->path, o->shots,
		    o->shots, t->n_pairs);
		return NULL;
	}
	if (o->counterfactual && t->counterfactual == NULL) {
		fl_error(cause, "%s: counterfactual prompts need the field "
		    "'counterfactual_format'", t->path);
		return NULL;
	}
	buf_add(&b, &len, &cap, "", 0);
	if (o->counterfactual) {
		if (cp < 0) {
			fl_error(cause, "%s: no pair has an answer other than %s's for a "
			    "counterfactual context", t->path, t->pairs[pair].subject);
			free(b);
			return NULL;
		}
		fill_format(&b, &len, &cap, t->counterfactual,
		    t->pairs[subject_pair].subject, t->pairs[cp].answer, NULL, NULL);
	}
	/* Demonstrations: a partial Fisher-Yates draw from the other pairs. */
	pool = xcalloc((size_t)t->n_pairs, sizeof *pool);
	for (int i = 0; i < t->n_pairs; i++)
		if (i != pair)
			pool[n_pool++] = i;
	rng = prompt_rng(o->seed, pair, tmpl, 1);
	for (int k = 0; k < o->shots; k++) {
		int j = k + (int)(mix64(&rng) % (uint64_t)(n_pool - k)), d = pool[j];

		pool[j] = pool[k];
		pool[k] = d;
		fill_format(&b, &len, &cap, t->fewshot, t->pairs[d].subject,
		    t->pairs[d].answer, NULL, NULL);
	}
	free(pool);
	fill_format(&b, &len, &cap, t->templates[set][tmpl],
	    t->pairs[subject_pair].subject, NULL, subj_off, space);
	return b;
}

/* ---- tokens --------------------------------------------------------- */

int
task_answer_token(const fl_model *m, const char *text, bool space, int *n_tokens)
{
	char *s = space && text[0] != ' ' ? xasprintf(" %s", text) : xstrdup(text);
	int *ids = NULL, n, id;

	/* SentencePiece: " Paris" after a word is what "Paris" encodes to */
	if (tok_prefix_space(m->tok) && s[0] == ' ')
		memmove(s, s + 1, strlen(s));

	n = tok_encode(m->tok, s, strlen(s), &ids, NULL);
	id = n > 0 ? ids[0] : -1;
	*n_tokens = n > 0 ? n : 0;
	free(ids);
	free(s);
	return id;
}

int
prompt_find_span(const fl_model *m, const int *ids, int n, int off, int len,
    int *pos, int *count)
{
	int first = m->cfg.bos_id >= 0 ? 1 : 0, lo = -1, hi = -1;
	/* the first token's bytes include a dummy-prefix space */
	int at = tok_prefix_space(m->tok) ? -1 : 0;

	if (len <= 0 || off < 0)
		return -1;
	for (int i = first; i < n; i++) {
		size_t bl = 0;

		tok_token_bytes(m->tok, ids[i], &bl);
		/* token i covers bytes [at, at + bl): keep it if it overlaps */
		if (at < off + len && at + (int)bl > off) {
			if (lo < 0)
				lo = i;
			hi = i;
		}
		at += (int)bl;
	}
	if (lo < 0 || off + len > at)
		return -1;
	*pos = lo;
	*count = hi - lo + 1;
	return 0;
}

int
prompt_find_word(const char *text, const char *word)
{
	size_t wl = strlen(word);
	const char *p = text, *hit = NULL;

	if (wl == 0)
		return -1;
	while ((p = strstr(p, word)) != NULL) {
		unsigned char after = (unsigned char)p[wl];

		/* a whole word: "Niger" is not found in "Nigeria" */
		if ((p == text || p[-1] == ' ') && !isalnum(after))
			hit = p;
		p++;
	}
	return hit != NULL ? (int)(hit - text) : -1;
}

void
prompt_clear(fl_prompt *p)
{
	free(p->text);
	free(p->ids);
	memset(p, 0, sizeof *p);
}

int
prompt_make(fl_prompt *p, const fl_model *m, const char *text, int subj_off,
    int subj_bytes, const char *answer_text, bool space, char **cause)
{
	memset(p, 0, sizeof *p);
	p->pair = p->subject_pair = p->tmpl = -1;
	p->ctx_pair = p->ctx_answer = -1;
	p->n = model_encode(m, text, strlen(text), &p->ids, cause);
	if (p->n < 0)
		return -1;
	p->text = xstrdup(text);
	if (p->n == 0 || (p->n == 1 && m->cfg.bos_id >= 0)) {
		prompt_clear(p);
		return fl_error(cause, "the prompt is empty");
	}
	if (p->n > m->cfg.n_ctx) {
		fl_error(cause, "the prompt \"%s\" is %d tokens, longer than the "
		    "model's context of %d tokens", text, p->n, m->cfg.n_ctx);
		prompt_clear(p);
		return -1;
	}
	p->subj_pos = -1;
	p->subject = -1;
	if (subj_bytes > 0) {
		if (prompt_find_span(m, p->ids, p->n, subj_off, subj_bytes,
		    &p->subj_pos, &p->subj_len) != 0) {
			fl_error(cause, "the subject (bytes %d..%d) is not within the "
			    "prompt \"%s\"", subj_off, subj_off + subj_bytes, text);
			prompt_clear(p);
			return -1;
		}
		p->subject = p->ids[p->subj_pos];
	}
	p->answer = -1;
	if (answer_text != NULL) {
		p->answer = task_answer_token(m, answer_text, space, &p->answer_tokens);
		if (p->answer < 0) {
			fl_error(cause, "the answer \"%s\" encodes to no token", answer_text);
			prompt_clear(p);
			return -1;
		}
	}
	return 0;
}

void
prompt_set_clear(fl_prompt_set *ps)
{
	for (int i = 0; i < ps->n; i++)
		prompt_clear(&ps->p[i]);
	free(ps->p);
	memset(ps, 0, sizeof *ps);
}

int
task_prompts(fl_prompt_set *ps, const fl_model *m, const fl_task *t,
    const fl_prompt_opts *o, char **cause)
{
	int nt, np = t->n_pairs;

	memset(ps, 0, sizeof *ps);
	if (o->set >= TASK_TEMPLATES_COUNT || t->templates[o->set] == NULL)
		return fl_error(cause, "%s: the task has no '%s'", t->path,
		    o->set < TASK_TEMPLATES_COUNT ? set_keys[o->set] : "?");
	nt = t->n_templates[o->set];
	ps->p = xcalloc((size_t)nt * np, sizeof *ps->p);
	for (int k = 0; k < nt; k++)
		for (int i = 0; i < np; i++) {
			fl_prompt *p = &ps->p[ps->n];
			int sp = i, off, cp = -1, ctx_tokens = 0;
			bool space;
			char *text, *why = NULL;

			if (o->corrupt) {
				uint64_t rng = prompt_rng(o->seed, i, k, 2);

				sp = (i + 1 + (int)(mix64(&rng) % (uint64_t)(np - 1))) % np;
			}

			text = task_prompt_text(t, o, k, i, sp, &off, &space, cause);
			if (text == NULL)
				goto fail;
			/* the stated answer must start with another token than the
			 * memorised one, or the two cannot be told apart */
			for (int nth = 0; o->counterfactual; nth++) {
				int c = context_pair_nth(t, o, k, i, nth), id, n1, n2;

				if (c < 0)
					break;
				id = task_answer_token(m, t->pairs[c].answer, space, &n1);
				if (id >= 0 && id != task_answer_token(m, t->pairs[i].answer,
				    space, &n2)) {
					cp = c;
					ctx_tokens = n1;
					break;
				}
			}
			if (o->counterfactual && cp != task_context_pair(t, o, k, i)) {
				free(text);
				if (cp < 0) {
					fl_error(cause, "%s: %s[%d], pair %d (%s): no other "
					    "pair's answer starts with another token than \"%s\" "
					    "for a counterfactual context", t->path,
					    set_keys[o->set], k, i, t->pairs[i].subject,
					    t->pairs[i].answer);
					goto fail;
				}
				text = prompt_text(t, o, k, i, sp, cp, &off, &space, cause);
				if (text == NULL)
					goto fail;
			}
			if (prompt_make(p, m, text, off, (int)strlen(t->pairs[sp].subject),
			    t->pairs[i].answer, space, &why) != 0) {
				fl_error(cause, "%s: %s[%d], pair %d (%s): %s", t->path,
				    set_keys[o->set], k, i, t->pairs[i].subject, why);
				free(why);
				free(text);
				goto fail;
			}
			free(text);
			p->pair = i;
			p->subject_pair = sp;
			p->tmpl = k;
			if (o->counterfactual) {
				p->ctx_pair = cp;
				p->ctx_answer = task_answer_token(m, t->pairs[cp].answer,
				    space, &ctx_tokens);
			}
			if (o->single_token && (p->answer_tokens > 1 || ctx_tokens > 1)) {
				prompt_clear(p);
				ps->dropped++;
				continue;
			}
			if (p->answer_tokens > 1)
				ps->multi_token++;
			if (p->n > ps->max_len)
				ps->max_len = p->n;
			ps->total_tokens += p->n;
			ps->n++;
		}
	ps->counterfactual = o->counterfactual;
	if (ps->n == 0) {
		fl_error(cause, "%s: the single-token filter dropped every one of the %d prompts "
		    "(each answer is several tokens for this model)", t->path,
		    ps->dropped);
		goto fail;
	}
	return 0;
fail:
	prompt_set_clear(ps);
	return -1;
}

int
task_find_subject(const fl_task *t, const char *prompt, int *off, int *len)
{
	int pair = -1;

	*off = -1;
	*len = 0;
	for (int i = 0; t != NULL && i < t->n_pairs; i++) {
		int at = prompt_find_word(prompt, t->pairs[i].subject);
		int n = (int)strlen(t->pairs[i].subject);

		if (at >= 0 && (at > *off || (at == *off && n > *len))) {
			*off = at;
			*len = n;
			pair = i;
		}
	}
	return pair;
}

fl_prompt *
task_prompts_except(const fl_prompt_set *ps, int pair, int *k)
{
	fl_prompt *use = xcalloc(ps->n > 0 ? (size_t)ps->n : 1, sizeof *use);

	*k = 0;
	for (int i = 0; i < ps->n; i++)
		if (pair < 0 || ps->p[i].pair != pair)
			use[(*k)++] = ps->p[i];
	return use;
}
