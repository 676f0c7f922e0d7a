/*
 * tokens.c - the prompt's tokens: display labels, the subject (named or
 * guessed) and the answer's token. See session.h.
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

/* ---- tokens ------------------------------------------------------- */

char *
session_token_label(const ui_session *s, int id, const char *g_space,
    const char *g_newline)
{
	size_t n, o = 0, cap;
	const char *b = s->model != NULL ? tok_token_bytes(s->model->tok, id, &n) : NULL;
	char *out;

	if (b == NULL)
		return xasprintf("<%d>", id);
	cap = 8 * n + strlen(g_space) * n + strlen(g_newline) * n + 1;
	out = xmalloc(cap);
	for (size_t i = 0; i < n;) {
		const unsigned char *u = (const unsigned char *)b + i;
		size_t need = u[0] < 0x80 ? 1 : (u[0] & 0xe0) == 0xc0 ? 2 :
		    (u[0] & 0xf0) == 0xe0 ? 3 : (u[0] & 0xf8) == 0xf0 ? 4 : 0;
		bool ok = need > 0 && need <= n - i;

		for (size_t k = 1; ok && k < need; k++)
			ok = (u[k] & 0xc0) == 0x80;
		if (u[0] == ' ')
			o += (size_t)snprintf(out + o, cap - o, "%s", g_space);
		else if (u[0] == '\n')
			o += (size_t)snprintf(out + o, cap - o, "%s", g_newline);
		else if (!ok || u[0] < 0x20 || u[0] == 0x7f)
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", u[0]);
		else {
			/* A whole UTF-8 character: a token may end mid-character,
			 * then the bytes show as escapes above. */
			memcpy(out + o, u, need);
			o += need;
			i += need;
			continue;
		}
		i++;
	}
	out[o] = '\0';
	return out;
}

/* The token holding byte `at` of the prompt. */
static int
token_at_byte(const ui_session *s, size_t at)
{
	for (int t = 0; t < s->n_tok; t++)
		if ((size_t)s->tok_end[t] > at)
			return t;
	return s->n_tok - 1;
}

static int
token_start(const ui_session *s, int t)
{
	return t == 0 ? 0 : s->tok_end[t - 1];
}

static bool
word_byte(unsigned char c)
{
	return isalnum(c) || c >= 0x80 || c == '-';
}

/* The subject when the user named none: the last capitalised word before the
 * last token, not counting a sentence-initial one; else the token before the
 * last. */
int
sess_subject_guess(const ui_session *s, int *first_tok)
{
	const char *p = s->prompt;
	size_t lim = (size_t)token_start(s, s->n_tok - 1), i = 0;
	int best = -1, first = -1, best_first = -1, first_first = -1;

	while (i < lim) {
		size_t j;

		if (!word_byte((unsigned char)p[i])) {
			i++;
			continue;
		}
		for (j = i; j < lim && word_byte((unsigned char)p[j]); j++)
			;
		if (isupper((unsigned char)p[i])) {
			if (i == 0 || (i >= 2 && p[i - 2] == '.')) {
				first = token_at_byte(s, j - 1);
				first_first = token_at_byte(s, i);
			} else {
				best = token_at_byte(s, j - 1);
				best_first = token_at_byte(s, i);
			}
		}
		i = j;
	}
	if (best < 0) {
		best = first;
		best_first = first_first;
	}
	if (best < 0 || best >= s->n_tok - 1) {
		best = s->n_tok >= 2 ? s->n_tok - 2 : -1;
		best_first = best;
	}
	*first_tok = best_first;
	return best;
}

const char *
sess_find_last(const char *hay, const char *needle, bool fold)
{
	size_t n = strlen(needle), h = strlen(hay);
	const char *found = NULL;

	if (n == 0 || n > h)
		return NULL;
	for (size_t i = 0; i + n <= h; i++)
		if (fold ? strncasecmp(hay + i, needle, n) == 0 : strncmp(hay + i, needle, n) == 0)
			found = hay + i;
	return found;
}

int
sess_subject_find(const ui_session *s, const char *text, int *first, int *last, char **cause)
{
	const char *at;
	size_t off;

	if (text[0] == '#') {
		char *end;
		long v = strtol(text + 1, &end, 10);

		if (*end != '\0' || v < 0 || v >= s->n_tok)
			return fl_error(cause, "subject: position '%s' is not in 0..%d", text + 1,
			    s->n_tok - 1);
		*first = *last = (int)v;
		return 0;
	}
	if ((at = sess_find_last(s->prompt, text, false)) == NULL &&
	    (at = sess_find_last(s->prompt, text, true)) == NULL)
		return fl_error(cause, "subject: no '%s' in the prompt", text);
	off = (size_t)(at - s->prompt);
	*first = token_at_byte(s, off);
	*last = token_at_byte(s, off + strlen(text) - 1);
	return 0;
}

/* The answer's token: the first token of the text as a continuation (with a
 * leading space unless it has one). */
int
sess_answer_find(const ui_session *s, const char *text, bool space, char **cause)
{
	char *t = text[0] == ' ' || !space ? xstrdup(text) :
	    xasprintf(" %s", text);
	int *ids = NULL, n, id;

	n = tok_encode(s->model->tok, t, strlen(t), &ids, cause);
	id = n > 0 ? ids[0] : -1;
	free(ids);
	free(t);
	if (n == 0)
		return fl_error(cause, "answer: '%s' encodes to no token", text);
	return id;
}

int
session_subject_check(const ui_session *s, const char *text, char **cause)
{
	int first, last;

	if (!session_ready(s))
		return 0;
	return sess_subject_find(s, text, &first, &last, cause);
}

int
session_answer_check(const ui_session *s, const char *text, char **cause)
{
	if (s->model == NULL)
		return 0;
	return sess_answer_find(s, text, true, cause) < 0 ? -1 : 0;
}
