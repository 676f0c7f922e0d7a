/* tok_spm.c - SentencePiece BPE from tokenizer.model; see tok_spm.h. */
#include "autoconfig.h"

#include "tok_spm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define SPM_MAX_PIECES	(1 << 24)
#define SPM_FILE_LIMIT	((size_t)1 << 30)

enum {
	SPM_NORMAL = 1,
	SPM_UNKNOWN = 2,
	SPM_CONTROL = 3,
	SPM_USER_DEFINED = 4,
	SPM_UNUSED = 5,
	SPM_BYTE = 6,
};

/* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space */
#define SPM_SPACE	"\xe2\x96\x81"
#define SPM_SPACE_LEN	3

typedef struct {
	size_t	 off, len;	/* the piece in buf */
	size_t	 roff, rlen;	/* its decoded bytes in buf */
	float	 score;
	int	 type;
} spm_piece;

struct tok_spm {
	int		 n;
	spm_piece	*p;
	char		*buf;
	size_t		 used, size;
	int		*slot;		/* (cap) piece id by piece string, -1 empty */
	size_t		 cap;
	int		 byte_id[256];	/* <0xNN> pieces, -1 when absent */
	int		*user;		/* user-defined ids, longest first */
	int		 n_user;
	int		 unk_id;
	bool		 byte_fallback;
	bool		 dummy_prefix, remove_ws, escape_ws;
};

/* ---- protobuf wire format ------------------------------------------- */

typedef struct {
	const unsigned char	*p, *end;
} pb;

static int
pb_varint(pb *b, uint64_t *v)
{
	uint64_t x = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		if (b->p >= b->end)
			return -1;
		x |= (uint64_t)(*b->p & 0x7f) << shift;
		if ((*b->p++ & 0x80) == 0) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* The next field: its number, wire type, and for type 2 the payload in
 * *sub, for 0 the value in *v, for 5 the 32 bits in *v. */
static int
pb_field(pb *b, int *num, int *wt, pb *sub, uint64_t *v)
{
	uint64_t key, n;

	if (pb_varint(b, &key) != 0 || (key >> 3) == 0 || (key >> 3) > INT32_MAX)
		return -1;
	*num = (int)(key >> 3);
	*wt = (int)(key & 7);
	switch (*wt) {
	case 0:
		return pb_varint(b, v);
	case 1:
		if (b->end - b->p < 8)
			return -1;
		b->p += 8;
		return 0;
	case 2:
		if (pb_varint(b, &n) != 0 || n > (uint64_t)(b->end - b->p))
			return -1;
		sub->p = b->p;
		sub->end = b->p + n;
		b->p += n;
		return 0;
	case 5:
		if (b->end - b->p < 4)
			return -1;
		*v = (uint64_t)b->p[0] | (uint64_t)b->p[1] << 8 |
		    (uint64_t)b->p[2] << 16 | (uint64_t)b->p[3] << 24;
		b->p += 4;
		return 0;
	default:
		return -1;	/* groups (3, 4) and unknown types */
	}
}

/* ---- the piece table ------------------------------------------------ */

static uint64_t
spm_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static size_t
buf_add(tok_spm *s, const void *d, size_t n)
{
	size_t at;

	if (s->used + n + 1 > s->size) {
		while (s->used + n + 1 > s->size)
			s->size = s->size ? 2 * s->size : 4096;
		s->buf = xrealloc(s->buf, s->size);
	}
	at = s->used;
	memcpy(s->buf + at, d, n);
	s->buf[at + n] = '\0';
	s->used += n + 1;
	return at;
}

/* Id of the piece spelled str[0..n), or -1. */
static int
spm_find(const tok_spm *s, const char *str, size_t n)
{
	size_t mask = s->cap - 1, i = spm_hash(str, n) & mask;

	for (; s->slot[i] >= 0; i = (i + 1) & mask) {
		const spm_piece *p = &s->p[s->slot[i]];

		if (p->len == n && memcmp(s->buf + p->off, str, n) == 0)
			return s->slot[i];
	}
	return -1;
}

/* <0xNN> with two upper-case hex digits, as SentencePiece writes them. */
static int
byte_piece_value(const char *str, size_t n)
{
	unsigned v;
	char tail;

	if (n != 6 || sscanf(str, "<0x%2X%c", &v, &tail) != 2 || tail != '>')
		return -1;
	return (int)v;
}

/* Decoded bytes of each piece, and the hash over piece strings. */
static int
spm_index(tok_spm *s, const char *label, char **cause)
{
	s->cap = 16;
	while (s->cap < 2 * (size_t)s->n)
		s->cap *= 2;
	s->slot = xmalloc(s->cap * sizeof *s->slot);
	for (size_t i = 0; i < s->cap; i++)
		s->slot[i] = -1;
	for (int i = 0; i < 256; i++)
		s->byte_id[i] = -1;
	for (int id = 0; id < s->n; id++) {
		spm_piece *p = &s->p[id];
		const char *str = s->buf + p->off;
		size_t mask = s->cap - 1, h = spm_hash(str, p->len) & mask;
		char *raw = xmalloc(p->len + 8);
		size_t rl = 0;

		if (spm_find(s, str, p->len) >= 0) {
			free(raw);
			return fl_error(cause, "%s: piece %d '%s' appears twice", label, id,
			    str);
		}
		while (s->slot[h] >= 0)
			h = (h + 1) & mask;
		s->slot[h] = id;
		if (p->type == SPM_BYTE) {
			int v = byte_piece_value(str, p->len);

			if (v < 0) {
				free(raw);
				return fl_error(cause, "%s: piece %d '%s' has type BYTE but is "
				    "not <0xNN>", label, id, str);
			}
			raw[rl++] = (char)v;
			s->byte_id[v] = id;
		} else if (p->type == SPM_UNKNOWN) {
			memcpy(raw, " \xe2\x81\x87 ", 5);
			rl = 5;
		} else if (p->type != SPM_CONTROL) {
			for (size_t k = 0; k < p->len; )
				if (p->len - k >= SPM_SPACE_LEN &&
				    memcmp(str + k, SPM_SPACE, SPM_SPACE_LEN) == 0) {
					raw[rl++] = ' ';
					k += SPM_SPACE_LEN;
				} else
					raw[rl++] = str[k++];
		}
		p->roff = buf_add(s, raw, rl);
		p->rlen = rl;
		free(raw);
	}
	return 0;
}

/* ---- loading -------------------------------------------------------- */

static int
parse_piece(tok_spm *s, pb b, const char *label, char **cause)
{
	spm_piece *p;
	const unsigned char *str = NULL;
	size_t len = 0;
	int num, wt;
	pb sub;
	uint64_t v;
	uint32_t bits;

	if (s->n == SPM_MAX_PIECES)
		return fl_error(cause, "%s: more than %d pieces", label, SPM_MAX_PIECES);
	s->p = xreallocarray(s->p, (size_t)s->n + 1, sizeof *s->p);
	p = &s->p[s->n];
	memset(p, 0, sizeof *p);
	p->type = SPM_NORMAL;
	while (b.p < b.end) {
		if (pb_field(&b, &num, &wt, &sub, &v) != 0)
			return fl_error(cause, "%s: piece %d: malformed protobuf", label, s->n);
		if (num == 1 && wt == 2) {
			str = sub.p;
			len = (size_t)(sub.end - sub.p);
		} else if (num == 2 && wt == 5) {
			bits = (uint32_t)v;
			memcpy(&p->score, &bits, sizeof p->score);
		} else if (num == 3 && wt == 0) {
			if (v < SPM_NORMAL || v > SPM_BYTE)
				return fl_error(cause, "%s: piece %d: type %llu is not one of "
				    "1-6 (NORMAL ... BYTE)", label, s->n, (unsigned long long)v);
			p->type = (int)v;
		} else if (num <= 3)
			return fl_error(cause, "%s: piece %d: field %d has wire type %d",
			    label, s->n, num, wt);
	}
	if (str == NULL || len == 0 || memchr(str, '\0', len) != NULL)
		return fl_error(cause, "%s: piece %d: missing or empty piece string",
		    label, s->n);
	if (!isfinite(p->score))
		return fl_error(cause, "%s: piece %d: score is not finite", label, s->n);
	p->off = buf_add(s, str, len);
	p->len = len;
	s->n++;
	return 0;
}

static int
parse_trainer(tok_spm *s, pb b, const char *label, char **cause)
{
	int num, wt;
	pb sub;
	uint64_t v;

	while (b.p < b.end) {
		if (pb_field(&b, &num, &wt, &sub, &v) != 0)
			return fl_error(cause, "%s: trainer_spec: malformed protobuf", label);
		if (wt != 0)
			continue;
		if (num == 3 && v != 2)
			return fl_error(cause, "%s: trainer_spec.model_type is %llu; only "
			    "BPE (2) is implemented", label, (unsigned long long)v);
		if (num == 24 && v != 0)
			return fl_error(cause, "%s: trainer_spec.treat_whitespace_as_suffix "
			    "is set; not implemented", label);
		if (num == 35)
			s->byte_fallback = v != 0;
		if (num == 40)
			s->unk_id = (int)(int32_t)v;
	}
	return 0;
}

static int
parse_normalizer(tok_spm *s, pb b, const char *label, char **cause)
{
	int num, wt;
	pb sub;
	uint64_t v;

	while (b.p < b.end) {
		if (pb_field(&b, &num, &wt, &sub, &v) != 0)
			return fl_error(cause, "%s: normalizer_spec: malformed protobuf",
			    label);
		if (num == 2 && wt == 2 && sub.end > sub.p)
			return fl_error(cause, "%s: normalizer_spec.precompiled_charsmap is "
			    "not empty; only the identity normalizer (Llama's) is "
			    "implemented", label);
		if (wt != 0)
			continue;
		if (num == 3)
			s->dummy_prefix = v != 0;
		if (num == 4)
			s->remove_ws = v != 0;
		if (num == 5)
			s->escape_ws = v != 0;
	}
	return 0;
}

tok_spm *
spm_parse(const unsigned char *buf, size_t len, const char *label, char **cause)
{
	tok_spm *s = xcalloc(1, sizeof *s);
	pb b = { buf, buf + len }, sub;
	int num, wt, rc = 0;
	uint64_t v;

	/* proto2 defaults */
	s->dummy_prefix = s->remove_ws = s->escape_ws = true;
	while (rc == 0 && b.p < b.end) {
		if (pb_field(&b, &num, &wt, &sub, &v) != 0)
			rc = fl_error(cause, "%s: not a SentencePiece model (malformed "
			    "protobuf at byte %zu)", label, (size_t)(b.p - buf));
		else if (num == 1 && wt == 2)
			rc = parse_piece(s, sub, label, cause);
		else if (num == 2 && wt == 2)
			rc = parse_trainer(s, sub, label, cause);
		else if (num == 3 && wt == 2)
			rc = parse_normalizer(s, sub, label, cause);
	}
	if (rc == 0 && s->n == 0)
		rc = fl_error(cause, "%s: no pieces", label);
	if (rc == 0)
		rc = spm_index(s, label, cause);
	if (rc == 0 && (s->unk_id < 0 || s->unk_id >= s->n ||
	    s->p[s->unk_id].type != SPM_UNKNOWN))
		rc = fl_error(cause, "%s: trainer_spec.unk_id %d is not a piece of type "
		    "UNKNOWN", label, s->unk_id);
	if (rc == 0 && s->byte_fallback)
		for (int i = 0; i < 256 && rc == 0; i++)
			if (s->byte_id[i] < 0)
				rc = fl_error(cause, "%s: byte_fallback is set but there is no "
				    "piece <0x%02X>", label, i);
	if (rc != 0) {
		spm_free(s);
		return NULL;
	}
	/* user-defined pieces, longest first: the first match is the longest */
	for (int id = 0; id < s->n; id++)
		if (s->p[id].type == SPM_USER_DEFINED) {
			int k = s->n_user++;

			s->user = xreallocarray(s->user, (size_t)s->n_user, sizeof *s->user);
			for (; k > 0 && s->p[s->user[k - 1]].len < s->p[id].len; k--)
				s->user[k] = s->user[k - 1];
			s->user[k] = id;
		}
	return s;
}

tok_spm *
spm_load(const char *path, char **cause)
{
	size_t len;
	char *buf = fl_read_file(path, &len, SPM_FILE_LIMIT, cause);
	tok_spm *s;

	if (buf == NULL)
		return NULL;
	s = spm_parse((const unsigned char *)buf, len, path, cause);
	free(buf);
	return s;
}

void
spm_free(tok_spm *s)
{
	if (s == NULL)
		return;
	free(s->p);
	free(s->buf);
	free(s->slot);
	free(s->user);
	free(s);
}

int
spm_size(const tok_spm *s)
{
	return s->n;
}

bool
spm_dummy_prefix(const tok_spm *s)
{
	return s->dummy_prefix;
}

const char *
spm_piece_bytes(const tok_spm *s, int id, size_t *len)
{
	if (id < 0 || id >= s->n) {
		if (len != NULL)
			*len = 0;
		return NULL;
	}
	if (len != NULL)
		*len = s->p[id].rlen;
	return s->buf + s->p[id].roff;
}

const char *
spm_piece_str(const tok_spm *s, int id)
{
	return id < 0 || id >= s->n ? NULL : s->buf + s->p[id].off;
}

int
spm_lookup(const tok_spm *s, const char *bytes, size_t len)
{
	char *str = xmalloc(len * SPM_SPACE_LEN + 1);
	size_t n = 0;
	int id;

	for (size_t i = 0; i < len; i++)
		if (bytes[i] == ' ') {
			memcpy(str + n, SPM_SPACE, SPM_SPACE_LEN);
			n += SPM_SPACE_LEN;
		} else
			str[n++] = bytes[i];
	id = n > 0 ? spm_find(s, str, n) : -1;
	free(str);
	if (id >= 0 && (s->p[id].type == SPM_NORMAL || s->p[id].type == SPM_USER_DEFINED))
		return id;
	return len == 1 ? s->byte_id[(unsigned char)bytes[0]] : -1;
}

char *
spm_decode(const tok_spm *s, const int *ids, int n, size_t *len)
{
	size_t total = 0, at = 0;
	bool bos = s->dummy_prefix;
	char *out;

	for (int i = 0; i < n; i++)
		if (ids[i] >= 0 && ids[i] < s->n)
			total += s->p[ids[i]].rlen;
	out = xmalloc(total + 1);
	for (int i = 0; i < n; i++) {
		const spm_piece *p;
		const char *b;
		size_t bl;

		if (ids[i] < 0 || ids[i] >= s->n || s->p[ids[i]].type == SPM_CONTROL)
			continue;
		p = &s->p[ids[i]];
		b = s->buf + p->roff;
		bl = p->rlen;
		if (p->type == SPM_BYTE || p->type == SPM_UNKNOWN)
			bos = false;
		else if (bos) {
			/* U+2581 became the first byte, a space */
			if (p->len >= SPM_SPACE_LEN &&
			    memcmp(s->buf + p->off, SPM_SPACE, SPM_SPACE_LEN) == 0) {
				b++;
				bl--;
			}
			bos = s->remove_ws && bl == 0;
		}
		memcpy(out + at, b, bl);
		at += bl;
	}
	out[at] = '\0';
	if (len != NULL)
		*len = at;
	return out;
}

/* ---- encoding ------------------------------------------------------- */

/* SentencePiece's normalizer with the identity rules: U+FFFD for invalid
 * UTF-8, optional whitespace cleanup, the dummy prefix, spaces escaped. */
static char *
spm_normalize(const tok_spm *s, const unsigned char *t, size_t len, size_t *out_len)
{
	char *out = xmalloc(len * 3 + SPM_SPACE_LEN + 1);
	size_t n = 0, i = 0;
	bool prev_space = true;	/* drops leading spaces when remove_ws */

	if (s->remove_ws)
		while (i < len && t[i] == ' ')
			i++;
	if (i == len) {
		*out_len = 0;
		return out;
	}
	if (s->dummy_prefix) {
		memcpy(out, SPM_SPACE, SPM_SPACE_LEN);
		n = SPM_SPACE_LEN;
	}
	while (i < len) {
		uint32_t cp;
		size_t k = fl_utf8_seq(t + i, len - i, &cp);

		if (k == 0) {
			n += fl_utf8_put(out + n, 0xfffd);
			i++;
			prev_space = false;
			continue;
		}
		if (t[i] == ' ') {
			if (!(s->remove_ws && prev_space)) {
				if (s->escape_ws) {
					memcpy(out + n, SPM_SPACE, SPM_SPACE_LEN);
					n += SPM_SPACE_LEN;
				} else
					out[n++] = ' ';
			}
			prev_space = true;
		} else {
			memcpy(out + n, t + i, k);
			n += k;
			prev_space = false;
		}
		i += k;
	}
	if (s->remove_ws) {
		const char *sp = s->escape_ws ? SPM_SPACE : " ";
		size_t sl = s->escape_ws ? SPM_SPACE_LEN : 1;

		while (n >= sl && memcmp(out + n - sl, sp, sl) == 0)
			n -= sl;
	}
	*out_len = n;
	return out;
}

typedef struct {
	float	score;
	int	left, right;	/* symbol indices */
	size_t	size;		/* bytes of the merged piece when queued */
} spm_pair;

typedef struct {
	spm_pair	*v;
	size_t		 n, cap;
} spm_heap;

/* Higher score first; leftmost on ties (SentencePiece's agenda). */
static bool
pair_before(const spm_pair *a, const spm_pair *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void
heap_push(spm_heap *h, spm_pair e)
{
	size_t i;

	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 64;
		h->v = xreallocarray(h->v, h->cap, sizeof *h->v);
	}
	i = h->n++;
	while (i > 0 && pair_before(&e, &h->v[(i - 1) / 2])) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = e;
}

static spm_pair
heap_pop(spm_heap *h)
{
	spm_pair top = h->v[0], last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && pair_before(&h->v[c + 1], &h->v[c]))
			c++;
		if (!pair_before(&h->v[c], &last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n > 0)
		h->v[i] = last;
	return top;
}

typedef struct {
	size_t	 off, len;	/* in the normalized text; len 0 once merged */
	int	 prev, next;
	bool	 frozen;	/* a user-defined piece: never merged */
	int	 node;		/* merge tree node, for UNUSED pieces */
} spm_sym;

typedef struct {
	const char	*text;
	spm_sym		*sym;
	int		*kid;		/* (2 nodes) children of each node, -1 leaf */
	size_t		*noff, *nlen;
	int		 nodes;
	spm_heap	 heap;
} spm_work;

static int
mergeable(const tok_spm *s, const char *str, size_t n)
{
	int id = spm_find(s, str, n);

	if (id < 0)
		return -1;
	switch (s->p[id].type) {
	case SPM_NORMAL:
	case SPM_USER_DEFINED:
	case SPM_UNUSED:
		return id;
	default:
		return -1;
	}
}

static void
queue_pair(const tok_spm *s, spm_work *w, int l, int r)
{
	spm_pair e;
	int id;

	if (l < 0 || r < 0 || w->sym[l].frozen || w->sym[r].frozen)
		return;
	e.size = w->sym[l].len + w->sym[r].len;
	id = mergeable(s, w->text + w->sym[l].off, e.size);
	if (id < 0)
		return;
	e.score = s->p[id].score;
	e.left = l;
	e.right = r;
	heap_push(&w->heap, e);
}

static void
ids_push(int **ids, size_t *n, size_t *cap, int id)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 64;
		*ids = xreallocarray(*ids, *cap, sizeof **ids);
	}
	(*ids)[(*n)++] = id;
}

/* Emits a node: its piece, an UNUSED piece split back into the two it was
 * merged from, or byte pieces / unknown for what is no piece. */
static void
emit(const tok_spm *s, const spm_work *w, int node, int **ids, size_t *n, size_t *cap)
{
	const char *str = w->text + w->noff[node];
	size_t len = w->nlen[node];
	int id = spm_find(s, str, len);

	if (id >= 0 && s->p[id].type == SPM_UNUSED && w->kid[2 * node] >= 0) {
		emit(s, w, w->kid[2 * node], ids, n, cap);
		emit(s, w, w->kid[2 * node + 1], ids, n, cap);
		return;
	}
	if (id >= 0 && (s->p[id].type == SPM_NORMAL || s->p[id].type == SPM_USER_DEFINED)) {
		ids_push(ids, n, cap, id);
		return;
	}
	if (s->byte_fallback) {
		for (size_t i = 0; i < len; i++)
			ids_push(ids, n, cap, s->byte_id[(unsigned char)str[i]]);
		return;
	}
	/* consecutive unknown pieces become one */
	if (*n == 0 || (*ids)[*n - 1] != s->unk_id)
		ids_push(ids, n, cap, s->unk_id);
}

int
spm_encode(const tok_spm *s, const char *text, size_t len, int **ids)
{
	spm_work w = { 0 };
	size_t tn, n_ids = 0, cap = 0, i;
	char *t = spm_normalize(s, (const unsigned char *)text, len, &tn);
	int ns = 0;

	*ids = NULL;
	w.text = t;
	w.sym = xmalloc((tn + 1) * sizeof *w.sym);
	w.kid = xmalloc((2 * tn + 2) * 2 * sizeof *w.kid);
	w.noff = xmalloc((2 * tn + 2) * sizeof *w.noff);
	w.nlen = xmalloc((2 * tn + 2) * sizeof *w.nlen);
	for (i = 0; i < tn; ns++) {
		uint32_t cp;
		size_t k = 0;
		bool frozen = false;

		for (int u = 0; u < s->n_user; u++) {
			const spm_piece *p = &s->p[s->user[u]];

			if (p->len <= tn - i && memcmp(t + i, s->buf + p->off, p->len) == 0) {
				k = p->len;
				frozen = true;
				break;
			}
		}
		if (k == 0)
			k = fl_utf8_seq((const unsigned char *)t + i, tn - i, &cp);
		if (k == 0)
			k = 1;	/* cannot happen: the text is normalized */
		w.sym[ns] = (spm_sym){ i, k, ns - 1, -1, frozen, w.nodes };
		if (ns > 0)
			w.sym[ns - 1].next = ns;
		w.noff[w.nodes] = i;
		w.nlen[w.nodes] = k;
		w.kid[2 * w.nodes] = w.kid[2 * w.nodes + 1] = -1;
		w.nodes++;
		i += k;
	}
	for (int k = 0; k + 1 < ns; k++)
		queue_pair(s, &w, k, k + 1);
	while (w.heap.n > 0) {
		spm_pair e = heap_pop(&w.heap);
		spm_sym *l = &w.sym[e.left], *r = &w.sym[e.right];

		/* stale: a side merged away or grown since it was queued */
		if (l->len == 0 || r->len == 0 || l->len + r->len != e.size)
			continue;
		w.noff[w.nodes] = l->off;
		w.nlen[w.nodes] = e.size;
		w.kid[2 * w.nodes] = l->node;
		w.kid[2 * w.nodes + 1] = r->node;
		l->node = w.nodes++;
		l->len = e.size;
		r->len = 0;
		l->next = r->next;
		if (r->next >= 0)
			w.sym[r->next].prev = e.left;
		queue_pair(s, &w, l->prev, e.left);
		queue_pair(s, &w, e.left, l->next);
	}
	for (int k = ns > 0 ? 0 : -1; k >= 0; k = w.sym[k].next)
		emit(s, &w, w.sym[k].node, ids, &n_ids, &cap);
	free(w.sym);
	free(w.kid);
	free(w.noff);
	free(w.nlen);
	free(w.heap.v);
	free(t);
	return (int)n_ids;
}
