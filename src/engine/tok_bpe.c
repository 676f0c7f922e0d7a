/*
 * tok_bpe.c - GPT-2 byte-level BPE tokenizer, behind tok.h's facade. See
 * tok_bpe.h and tok.h.
 *
 * Encoding runs in three stages:
 *   1. split the text around the literal "<|endoftext|>" (the special token);
 *   2. split each piece into maximal valid UTF-8 runs; a byte that cannot
 *      start a valid sequence is one token by itself;
 *   3. pre-tokenize each run with GPT-2's regex and apply BPE merges by rank
 *      to each pre-token.
 *
 * BPE works on token ids, not strings: every merge "A B" is stored as the
 * id pair (id(A), id(B)) -> (rank, id(AB)), checked at load time. A word is a
 * linked list of symbols and a binary heap of candidate pairs ordered by
 * (rank, position), so a word of n bytes costs O(n log n) however long it
 * is. Popping the lowest rank, leftmost first, reproduces GPT-2's "merge
 * every occurrence of the best bigram left to right" whenever a merge's
 * result is never part of a merge of lower rank -- true of GPT-2's file, and
 * the heap order is the one Hugging Face's tokenizers uses for any file.
 *
 * Whitespace: GPT-2 used Python's `regex` module, whose \s is the Unicode
 * White_Space property (tiktoken's Rust regex agrees). PCRE2's \s under UCP
 * also matches U+180E and JavaScript's matches U+FEFF but not U+0085, so the
 * class is spelled out below rather than written \s. (Python's str.isspace()
 * adds U+001C-U+001F; the regex module's \s does not.)
 */
#include "autoconfig.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* memmem */
#endif
#define PCRE2_CODE_UNIT_WIDTH 8

#include "tok_bpe.h"
#include "base/util.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_EOT_TEXT	"<|endoftext|>"
#define TOK_MAX_ID	(1 << 24)		/* cap on vocabulary ids */
/* The tables are indexed by id, so unused ids below the largest cost as
 * much as tokens: a vocabulary's ids must stay below twice its count
 * (real ones are dense), which keeps the memory in proportion to the file
 * rather than to the largest id it names. */
#define TOK_ID_SPREAD	2
#define TOK_FILE_LIMIT	((size_t)1 << 30)	/* largest file read */

/* Unicode White_Space, the set \s stands for in Python's regex and Rust. */
#define TOK_WS \
	"\\t\\n\\x{0b}\\f\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}" \
	"\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/*
 * Letters and numbers that Unicode 15.0 and 16.0 added. tiktoken's gpt2
 * encoding (Rust regex) classifies with Unicode 16.0 tables, PCRE2 10.42
 * (Debian 12) with 14.0; naming them keeps the two in step. A PCRE2 on
 * Unicode 17 or later would also class that version's additions as letters,
 * where tiktoken does not. Made by tests/tok_ref/unicode-new.mjs.
 */
#define TOK_L_NEW \
	"\\x{1c89}-\\x{1c8a}\\x{a7cb}-\\x{a7cd}\\x{a7da}-\\x{a7dc}" \
	"\\x{105c0}-\\x{105f3}\\x{10d4a}-\\x{10d65}\\x{10d6f}-\\x{10d85}" \
	"\\x{10ec2}-\\x{10ec4}\\x{1123f}-\\x{11240}\\x{11380}-\\x{11389}" \
	"\\x{1138b}\\x{1138e}\\x{11390}-\\x{113b5}\\x{113b7}\\x{113d1}" \
	"\\x{113d3}\\x{11bc0}-\\x{11be0}\\x{11f02}\\x{11f04}-\\x{11f10}" \
	"\\x{11f12}-\\x{11f33}\\x{1342f}\\x{13441}-\\x{13446}" \
	"\\x{13460}-\\x{143fa}\\x{16100}-\\x{1611d}\\x{16d40}-\\x{16d6c}" \
	"\\x{18cff}\\x{1b132}\\x{1b155}\\x{1df25}-\\x{1df2a}" \
	"\\x{1e030}-\\x{1e06d}\\x{1e4d0}-\\x{1e4eb}\\x{1e5d0}-\\x{1e5ed}" \
	"\\x{1e5f0}\\x{2b739}\\x{2ebf0}-\\x{2ee5d}\\x{31350}-\\x{323af}"
#define TOK_N_NEW \
	"\\x{10d40}-\\x{10d49}\\x{116d0}-\\x{116e3}\\x{11bf0}-\\x{11bf9}" \
	"\\x{11f50}-\\x{11f59}\\x{16130}-\\x{16139}\\x{16d70}-\\x{16d79}" \
	"\\x{1ccf0}-\\x{1ccf9}\\x{1d2c0}-\\x{1d2d3}\\x{1e4f0}-\\x{1e4f9}" \
	"\\x{1e5f1}-\\x{1e5fa}"

#define TOK_L	"\\p{L}" TOK_L_NEW
#define TOK_N	"\\p{N}" TOK_N_NEW

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static const char tok_pattern[] =
	"'s|'t|'re|'ve|'m|'ll|'d"
	"| ?[" TOK_L "]+"
	"| ?[" TOK_N "]+"
	"| ?[^" TOK_WS TOK_L TOK_N "]+"
	"|[" TOK_WS "]+(?![^" TOK_WS "])"
	"|[" TOK_WS "]+";

/* A set of strings indexed by id, with a hash from string to id. */
struct strtab {
	char	*buf;		/* all strings, each NUL-terminated */
	size_t	 used;
	size_t	 size;
	size_t	*off;		/* (n_vocab) offset in buf; SIZE_MAX: hole */
	size_t	*len;		/* (n_vocab) length without the NUL */
	int	*slot;		/* (cap) id, or -1 for an empty slot */
	size_t	 cap;		/* power of two */
};

struct merge_slot {
	uint64_t key;		/* left << 32 | right; UINT64_MAX when empty */
	int	 rank;
	int	 result;
};

struct tok_bpe {
	int		 n_vocab;	/* max id + 1 */
	int		 eot_id;
	int		 byte_id[256];	/* token of each single byte */
	struct strtab	 str;		/* vocab.json form ("ĠParis") */
	struct strtab	 raw;		/* raw bytes (" Paris") */
	struct merge_slot *merge;	/* (merge_cap) open addressing, at
					   most half full */
	size_t		 merge_cap;
	size_t		 n_merge;
	pcre2_code	*re;
};

/* Per-call scratch space for BPE, grown as needed. */
struct heap_entry {
	int	rank;
	int	pos;		/* index of the left symbol */
	int	left;		/* the pair when queued: spots stale ones */
	int	right;
	int	result;
};

struct bpe_work {
	int		  *sym;		/* (n) token id, -1 once merged away */
	int		  *prev;	/* (n) */
	int		  *next;	/* (n) -1 at the end */
	size_t		   cap;
	struct heap_entry *heap;
	size_t		   heap_len;
	size_t		   heap_cap;
};

struct idbuf {
	int	*ids;
	size_t	 len;
	size_t	 cap;
};

/*
 * GPT-2's byte-to-unicode map: the printable bytes 33-126, 161-172 and
 * 174-255 stand for themselves; the other 68 (0-32, 127-160, 173) become
 * U+0100 onwards in byte order.
 */
static uint32_t
byte_to_cp(int b)
{
	if (b <= 32)
		return 256 + (uint32_t)b;
	if (b >= 127 && b <= 160)
		return 256 + 33 + (uint32_t)(b - 127);
	if (b == 173)
		return 256 + 67;
	return (uint32_t)b;
}

/* The byte a code point stands for, or -1 if it is none of the 256. */
static int
cp_to_byte(uint32_t cp)
{
	if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) ||
	    (cp >= 174 && cp <= 255))
		return (int)cp;
	if (cp >= 256 && cp < 256 + 33)
		return (int)cp - 256;
	if (cp >= 256 + 33 && cp < 256 + 67)
		return (int)cp - 256 - 33 + 127;
	if (cp == 256 + 67)
		return 173;
	return -1;
}

/* Writes s[0..n) as a quoted, printable string for an error message. */
static char *
quote(const char *s, size_t n)
{
	char *out = xmalloc(n * 4 + 3), *p = out;
	size_t i;

	*p++ = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
			p += sprintf(p, "\\x%02x", c);
		else
			*p++ = (char)c;
	}
	*p++ = '"';
	*p = '\0';
	return out;
}

static uint64_t
hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static uint64_t
hash_pair(uint64_t key)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	key *= 0xc4ceb9fe1a85ec53ULL;
	key ^= key >> 33;
	return key;
}

static size_t
pow2_at_least(size_t n)
{
	size_t cap = 16;

	while (cap < n)
		cap <<= 1;
	return cap;
}

static void
strtab_init(struct strtab *t, int n_vocab)
{
	int i;

	memset(t, 0, sizeof *t);
	t->off = xreallocarray(NULL, (size_t)n_vocab, sizeof *t->off);
	t->len = xcalloc((size_t)n_vocab, sizeof *t->len);
	for (i = 0; i < n_vocab; i++)
		t->off[i] = SIZE_MAX;
	t->size = 1024;
	t->buf = xmalloc(t->size);
}

static void
strtab_clear(struct strtab *t)
{
	free(t->buf);
	free(t->off);
	free(t->len);
	free(t->slot);
	memset(t, 0, sizeof *t);
}

static void
strtab_set(struct strtab *t, int id, const char *s, size_t n)
{
	if (t->used + n + 1 > t->size) {
		while (t->used + n + 1 > t->size)
			t->size *= 2;
		t->buf = xrealloc(t->buf, t->size);
	}
	memcpy(t->buf + t->used, s, n);
	t->buf[t->used + n] = '\0';
	t->off[id] = t->used;
	t->len[id] = n;
	t->used += n + 1;
}

static int
strtab_find(const struct strtab *t, const char *s, size_t n)
{
	size_t i;
	int id;

	if (t->slot == NULL)
		return -1;
	for (i = hash_bytes(s, n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		id = t->slot[i];
		if (id < 0)
			return -1;
		if (t->len[id] == n && memcmp(t->buf + t->off[id], s, n) == 0)
			return id;
	}
}

/* Builds the hash over ids 0..n_vocab-1, skipping holes. When two ids share
 * a string (possible only in the raw table) the lower id wins. */
static void
strtab_index(struct strtab *t, int n_vocab)
{
	size_t i;
	int id;

	t->cap = pow2_at_least((size_t)n_vocab * 2);
	t->slot = xreallocarray(NULL, t->cap, sizeof *t->slot);
	for (i = 0; i < t->cap; i++)
		t->slot[i] = -1;
	for (id = 0; id < n_vocab; id++) {
		const char *s = t->buf + t->off[id];

		if (t->off[id] == SIZE_MAX ||
		    strtab_find(t, s, t->len[id]) >= 0)
			continue;
		for (i = hash_bytes(s, t->len[id]) & (t->cap - 1);
		    t->slot[i] >= 0; i = (i + 1) & (t->cap - 1))
			;
		t->slot[i] = id;
	}
}

static const struct merge_slot *
merge_find(const tok_bpe *tok, int left, int right)
{
	uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
	size_t i;

	for (i = hash_pair(key) & (tok->merge_cap - 1);;
	    i = (i + 1) & (tok->merge_cap - 1)) {
		if (tok->merge[i].key == key)
			return &tok->merge[i];
		if (tok->merge[i].key == UINT64_MAX)
			return NULL;
	}
}

/* An empty table of cap slots (a power of two). */
static void
merge_table_init(tok_bpe *tok, size_t cap)
{
	tok->merge_cap = cap;
	tok->merge = xreallocarray(NULL, cap, sizeof *tok->merge);
	for (size_t i = 0; i < cap; i++)
		tok->merge[i].key = UINT64_MAX;
}

/* A repeated merge line takes the later rank, as GPT-2's dict(zip(...))
 * and Hugging Face's map do. The table doubles when half full, so that it
 * holds what the file's merges need, not what its line count suggests. */
static void
merge_add(tok_bpe *tok, int left, int right, int rank, int result)
{
	uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
	size_t i;

	if (2 * (tok->n_merge + 1) > tok->merge_cap) {
		struct merge_slot *old = tok->merge;
		size_t old_cap = tok->merge_cap;

		merge_table_init(tok, 2 * old_cap);
		for (i = 0; i < old_cap; i++) {
			size_t j;

			if (old[i].key == UINT64_MAX)
				continue;
			for (j = hash_pair(old[i].key) & (tok->merge_cap - 1);
			    tok->merge[j].key != UINT64_MAX;
			    j = (j + 1) & (tok->merge_cap - 1))
				;
			tok->merge[j] = old[i];
		}
		free(old);
	}
	for (i = hash_pair(key) & (tok->merge_cap - 1);;
	    i = (i + 1) & (tok->merge_cap - 1)) {
		if (tok->merge[i].key == key || tok->merge[i].key == UINT64_MAX)
			break;
	}
	if (tok->merge[i].key == UINT64_MAX)
		tok->n_merge++;
	tok->merge[i].key = key;
	tok->merge[i].rank = rank;
	tok->merge[i].result = result;
}

/* Line number (from 1) of offset off in buf, for JSON error messages. */
static int
line_of(const char *buf, size_t off)
{
	int line = 1;
	size_t i;

	for (i = 0; i < off; i++) {
		if (buf[i] == '\n')
			line++;
	}
	return line;
}

/* Converts a vocab.json string to the bytes it stands for. Characters
 * outside the byte-to-unicode image (possible in added tokens) stand for
 * their own UTF-8 bytes. Returns the length written to out (which has room
 * for n bytes: a character never grows). */
static size_t
str_to_raw(const char *s, size_t n, char *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0, k;
	uint32_t cp;
	int b;

	while (i < n) {
		k = fl_utf8_seq(u + i, n - i, &cp);
		if (k == 0) {
			out[o++] = s[i++];
			continue;
		}
		b = cp_to_byte(cp);
		if (b >= 0)
			out[o++] = (char)b;
		else {
			memcpy(out + o, s + i, k);
			o += k;
		}
		i += k;
	}
	return o;
}

static int
load_vocab(tok_bpe *tok, const char *path, char **cause)
{
	const cJSON *item;
	cJSON *root;
	char *buf, *raw, *q;
	size_t len, rawlen;
	const char **owner;
	const char *max_tok = NULL;
	double v;
	int id, max_id = -1, n_tok = 0, b, rc = -1;

	buf = fl_read_file(path, &len, TOK_FILE_LIMIT, cause);
	if (buf == NULL)
		return -1;
	root = cJSON_ParseWithLength(buf, len);
	if (root == NULL) {
		const char *at = cJSON_GetErrorPtr();
		size_t off = (at != NULL && at >= buf && at <= buf + len) ?
		    (size_t)(at - buf) : 0;

		fl_error(cause, "%s: bad JSON at line %d (byte %zu): expected "
		    "an object mapping token strings to ids", path,
		    line_of(buf, off), off);
		free(buf);
		return -1;
	}
	if (!cJSON_IsObject(root)) {
		fl_error(cause, "%s: expected a JSON object mapping token "
		    "strings to ids", path);
		goto out;
	}

	/* Ids: integers in [0, TOK_MAX_ID), each used once. */
	cJSON_ArrayForEach(item, root) {
		v = cJSON_IsNumber(item) ? item->valuedouble : -1;
		if (!(v >= 0 && v < TOK_MAX_ID) || v != (double)(int)v) {
			q = quote(item->string, strlen(item->string));
			fl_error(cause, "%s: token %s: id must be an integer "
			    "from 0 to %d", path, q, TOK_MAX_ID - 1);
			free(q);
			goto out;
		}
		if ((int)v > max_id) {
			max_id = (int)v;
			max_tok = item->string;
		}
		n_tok++;
	}
	if (max_id < 0) {
		fl_error(cause, "%s: the vocabulary is empty", path);
		goto out;
	}
	if ((long)max_id >= (long)TOK_ID_SPREAD * n_tok) {
		q = quote(max_tok, strlen(max_tok));
		fl_error(cause, "%s: token %s has id %d but the file holds %d "
		    "tokens: ids must be below %ld (twice the number of tokens)",
		    path, q, max_id, n_tok, (long)TOK_ID_SPREAD * n_tok);
		free(q);
		goto out;
	}
	tok->n_vocab = max_id + 1;
	owner = xcalloc((size_t)tok->n_vocab, sizeof *owner);
	strtab_init(&tok->str, tok->n_vocab);
	strtab_init(&tok->raw, tok->n_vocab);
	raw = xmalloc(len + 1);
	cJSON_ArrayForEach(item, root) {
		id = (int)item->valuedouble;
		if (owner[id] != NULL) {
			char *q2;

			q = quote(owner[id], strlen(owner[id]));
			q2 = quote(item->string, strlen(item->string));
			fl_error(cause, "%s: id %d is used by both %s and %s",
			    path, id, q, q2);
			free(q);
			free(q2);
			goto out_owner;
		}
		owner[id] = item->string;
		strtab_set(&tok->str, id, item->string, strlen(item->string));
		rawlen = str_to_raw(item->string, strlen(item->string), raw);
		strtab_set(&tok->raw, id, raw, rawlen);
	}
	strtab_index(&tok->str, tok->n_vocab);
	strtab_index(&tok->raw, tok->n_vocab);

	/* A duplicate key maps one string to two ids: the hash keeps one. */
	cJSON_ArrayForEach(item, root) {
		size_t n = strlen(item->string);

		id = (int)item->valuedouble;
		if (strtab_find(&tok->str, item->string, n) != id) {
			q = quote(item->string, n);
			fl_error(cause, "%s: token %s appears twice", path, q);
			free(q);
			goto out_owner;
		}
	}

	for (b = 0; b < 256; b++) {
		char s[4];
		size_t n = fl_utf8_put(s, byte_to_cp(b));

		tok->byte_id[b] = strtab_find(&tok->str, s, n);
		if (tok->byte_id[b] < 0) {
			q = quote(s, n);
			fl_error(cause, "%s: the byte token %s (byte 0x%02x) "
			    "is missing: every byte-level vocabulary has all "
			    "256", path, q, b);
			free(q);
			goto out_owner;
		}
	}
	tok->eot_id = strtab_find(&tok->str, TOK_EOT_TEXT,
	    strlen(TOK_EOT_TEXT));
	rc = 0;
out_owner:
	free(raw);
	free(owner);
out:
	cJSON_Delete(root);
	free(buf);
	return rc;
}

static int
merge_error(char **cause, const char *path, int line, const char *what,
    const char *s, size_t n, const char *vocab_path)
{
	char *q = quote(s, n);

	fl_error(cause, "%s:%d: %s %s is not in the vocabulary (%s)", path,
	    line, what, q, vocab_path);
	free(q);
	return -1;
}

static int
load_merges(tok_bpe *tok, const char *path, const char *vocab_path,
    char **cause)
{
	char *buf, *line, *end, *next, *sp, *cat;
	size_t len, a, b;
	int lineno = 0, rank = 0, left, right, result, rc = -1;

	buf = fl_read_file(path, &len, TOK_FILE_LIMIT, cause);
	if (buf == NULL)
		return -1;
	if (memchr(buf, '\0', len) != NULL) {
		fl_error(cause, "%s: contains a NUL byte: not a merges file",
		    path);
		free(buf);
		return -1;
	}
	merge_table_init(tok, 1024);
	cat = xmalloc(len + 1);

	for (line = buf; line < buf + len; line = next) {
		end = memchr(line, '\n', (size_t)(buf + len - line));
		if (end == NULL)
			end = buf + len;
		next = end + 1;
		*end = '\0';
		lineno++;
		if (end > line && end[-1] == '\r')
			*--end = '\0';
		if (lineno == 1 && strncmp(line, "#version", 8) == 0)
			continue;
		if (*line == '\0')
			continue;
		sp = strchr(line, ' ');
		if (sp == NULL || sp == line || sp[1] == '\0' ||
		    strchr(sp + 1, ' ') != NULL) {
			char *q = quote(line, (size_t)(end - line));

			fl_error(cause, "%s:%d: expected two tokens separated "
			    "by one space, got %s", path, lineno, q);
			free(q);
			goto out;
		}
		a = (size_t)(sp - line);
		b = (size_t)(end - sp - 1);
		left = strtab_find(&tok->str, line, a);
		if (left < 0) {
			merge_error(cause, path, lineno, "merge part", line, a,
			    vocab_path);
			goto out;
		}
		right = strtab_find(&tok->str, sp + 1, b);
		if (right < 0) {
			merge_error(cause, path, lineno, "merge part", sp + 1,
			    b, vocab_path);
			goto out;
		}
		memcpy(cat, line, a);
		memcpy(cat + a, sp + 1, b);
		result = strtab_find(&tok->str, cat, a + b);
		if (result < 0) {
			merge_error(cause, path, lineno, "merge result", cat,
			    a + b, vocab_path);
			goto out;
		}
		merge_add(tok, left, right, rank++, result);
	}
	rc = 0;
out:
	free(cat);
	free(buf);
	return rc;
}

static int
compile_pattern(tok_bpe *tok, char **cause)
{
	PCRE2_UCHAR msg[256];
	PCRE2_SIZE off;
	int err;

	tok->re = pcre2_compile((PCRE2_SPTR)tok_pattern, PCRE2_ZERO_TERMINATED,
	    PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
	if (tok->re == NULL) {
		pcre2_get_error_message(err, msg, sizeof msg);
		return fl_error(cause, "tokenizer pattern at offset %zu: %s",
		    (size_t)off, (char *)msg);
	}
	/* Without JIT support the interpreter is used; both give one result. */
	pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE);
	return 0;
}

tok_bpe *
bpe_load(const char *vocab_json, const char *merges_txt, char **cause)
{
	tok_bpe *tok = xcalloc(1, sizeof *tok);

	tok->eot_id = -1;
	if (load_vocab(tok, vocab_json, cause) != 0 ||
	    load_merges(tok, merges_txt, vocab_json, cause) != 0 ||
	    compile_pattern(tok, cause) != 0) {
		bpe_free(tok);
		return NULL;
	}
	return tok;
}

void
bpe_free(tok_bpe *tok)
{
	if (tok == NULL)
		return;
	strtab_clear(&tok->str);
	strtab_clear(&tok->raw);
	free(tok->merge);
	if (tok->re != NULL)
		pcre2_code_free(tok->re);
	free(tok);
}

int
bpe_size(const tok_bpe *tok)
{
	return tok->n_vocab;
}

int
bpe_eot_id(const tok_bpe *tok)
{
	return tok->eot_id;
}

static void
idbuf_push(struct idbuf *b, int id)
{
	if (b->len == b->cap) {
		b->cap = b->cap == 0 ? 64 : b->cap * 2;
		b->ids = xreallocarray(b->ids, b->cap, sizeof *b->ids);
	}
	b->ids[b->len++] = id;
}

static int
heap_less(const struct heap_entry *a, const struct heap_entry *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void
heap_push(struct bpe_work *w, struct heap_entry e)
{
	size_t i, parent;

	if (w->heap_len == w->heap_cap) {
		w->heap_cap = w->heap_cap == 0 ? 64 : w->heap_cap * 2;
		w->heap = xreallocarray(w->heap, w->heap_cap, sizeof *w->heap);
	}
	i = w->heap_len++;
	while (i > 0) {
		parent = (i - 1) / 2;
		if (!heap_less(&e, &w->heap[parent]))
			break;
		w->heap[i] = w->heap[parent];
		i = parent;
	}
	w->heap[i] = e;
}

static struct heap_entry
heap_pop(struct bpe_work *w)
{
	struct heap_entry top = w->heap[0], last = w->heap[--w->heap_len];
	size_t i = 0, child;

	for (;;) {
		child = 2 * i + 1;
		if (child >= w->heap_len)
			break;
		if (child + 1 < w->heap_len &&
		    heap_less(&w->heap[child + 1], &w->heap[child]))
			child++;
		if (!heap_less(&w->heap[child], &last))
			break;
		w->heap[i] = w->heap[child];
		i = child;
	}
	if (w->heap_len > 0)
		w->heap[i] = last;
	return top;
}

/* Queues the pair of symbols at i and next[i] if it is a merge. */
static void
bpe_queue(const tok_bpe *tok, struct bpe_work *w, int i)
{
	const struct merge_slot *m;
	struct heap_entry e;

	m = merge_find(tok, w->sym[i], w->sym[w->next[i]]);
	if (m == NULL)
		return;
	e.rank = m->rank;
	e.pos = i;
	e.left = w->sym[i];
	e.right = w->sym[w->next[i]];
	e.result = m->result;
	heap_push(w, e);
}

static void
bpe_word(const tok_bpe *tok, struct bpe_work *w,
    const unsigned char *s, size_t n, struct idbuf *out)
{
	struct heap_entry e;
	size_t i;
	int j;

	if (n == 1) {
		idbuf_push(out, tok->byte_id[s[0]]);
		return;
	}
	if (n > w->cap) {
		w->cap = n;
		w->sym = xreallocarray(w->sym, n, sizeof *w->sym);
		w->prev = xreallocarray(w->prev, n, sizeof *w->prev);
		w->next = xreallocarray(w->next, n, sizeof *w->next);
	}
	for (i = 0; i < n; i++) {
		w->sym[i] = tok->byte_id[s[i]];
		w->prev[i] = (int)i - 1;
		w->next[i] = i + 1 < n ? (int)i + 1 : -1;
	}
	w->heap_len = 0;
	for (i = 0; i + 1 < n; i++)
		bpe_queue(tok, w, (int)i);

	while (w->heap_len > 0) {
		e = heap_pop(w);
		j = w->next[e.pos];
		/* Stale: the left symbol merged away or a side changed. */
		if (w->sym[e.pos] != e.left || j < 0 || w->sym[j] != e.right)
			continue;
		w->sym[e.pos] = e.result;
		w->sym[j] = -1;
		w->next[e.pos] = w->next[j];
		if (w->next[j] >= 0)
			w->prev[w->next[j]] = e.pos;
		if (w->prev[e.pos] >= 0)
			bpe_queue(tok, w, w->prev[e.pos]);
		if (w->next[e.pos] >= 0)
			bpe_queue(tok, w, e.pos);
	}
	for (j = 0; j >= 0; j = w->next[j])
		idbuf_push(out, w->sym[j]);
}

/* Pre-tokenizes and encodes a valid UTF-8 run. */
static int
encode_run(const tok_bpe *tok, struct bpe_work *w, pcre2_match_data *md,
    const unsigned char *s, size_t n, struct idbuf *out, char **cause)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
	PCRE2_UCHAR msg[256];
	size_t pos = 0;
	int rc;

	while (pos < n) {
		rc = pcre2_match(tok->re, s, n, pos, PCRE2_NO_UTF_CHECK, md,
		    NULL);
		if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
			pcre2_get_error_message(rc, msg, sizeof msg);
			return fl_error(cause, "tokenizer pattern match: %s",
			    (char *)msg);
		}
		/* Every branch matches any character it starts on, so a match
		 * starts at pos and is never empty. Were that ever false, the
		 * rest becomes one word rather than a loop or a lost byte. */
		if (rc < 0 || ov[0] != pos || ov[1] <= ov[0] || ov[1] > n) {
			bpe_word(tok, w, s + pos, n - pos, out);
			break;
		}
		bpe_word(tok, w, s + pos, ov[1] - pos, out);
		pos = ov[1];
	}
	return 0;
}

/* Encodes text without special tokens: valid UTF-8 runs through the
 * pattern, each other byte as its own token. */
static int
encode_plain(const tok_bpe *tok, struct bpe_work *w, pcre2_match_data *md,
    const unsigned char *s, size_t n, struct idbuf *out, char **cause)
{
	size_t i = 0, start, k;
	uint32_t cp;

	while (i < n) {
		start = i;
		while (i < n && (k = fl_utf8_seq(s + i, n - i, &cp)) > 0)
			i += k;
		if (i > start && encode_run(tok, w, md, s + start, i - start,
		    out, cause) != 0)
			return -1;
		if (i < n)
			idbuf_push(out, tok->byte_id[s[i++]]);
	}
	return 0;
}

int
bpe_encode(const tok_bpe *tok, const char *text, size_t len, int **ids,
    char **cause)
{
	const char *eot = TOK_EOT_TEXT, *p = text, *end = text + len, *hit;
	size_t eot_len = strlen(TOK_EOT_TEXT), n;
	struct bpe_work w;
	struct idbuf out;
	pcre2_match_data *md;
	int rc = 0;

	*ids = NULL;
	memset(&w, 0, sizeof w);
	memset(&out, 0, sizeof out);
	md = pcre2_match_data_create(1, NULL);
	if (md == NULL)
		fl_fatal("out of memory creating PCRE2 match data");

	while (p < end) {
		hit = NULL;
		if (tok->eot_id >= 0)
			hit = memmem(p, (size_t)(end - p), eot, eot_len);
		n = (size_t)((hit != NULL ? hit : end) - p);
		if (encode_plain(tok, &w, md, (const unsigned char *)p, n, &out,
		    cause) != 0) {
			rc = -1;
			break;
		}
		if (hit == NULL)
			break;
		idbuf_push(&out, tok->eot_id);
		p = hit + eot_len;
	}

	pcre2_match_data_free(md);
	free(w.sym);
	free(w.prev);
	free(w.next);
	free(w.heap);
	if (rc != 0) {
		free(out.ids);
		return -1;
	}
	*ids = out.ids;
	return (int)out.len;
}


const char *
bpe_token_bytes(const tok_bpe *tok, int id, size_t *len)
{
	if (id < 0 || id >= tok->n_vocab) {
		if (len != NULL)
			*len = 0;
		return NULL;
	}
	if (len != NULL)
		*len = tok->raw.len[id];
	/* An id that vocab.json skips stands for no bytes. */
	if (tok->raw.off[id] == SIZE_MAX)
		return "";
	return tok->raw.buf + tok->raw.off[id];
}

const char *
bpe_token_str(const tok_bpe *tok, int id)
{
	if (id < 0 || id >= tok->n_vocab)
		return NULL;
	if (tok->str.off[id] == SIZE_MAX)
		return "";
	return tok->str.buf + tok->str.off[id];
}

int
bpe_lookup(const tok_bpe *tok, const char *bytes, size_t len)
{
	return strtab_find(&tok->raw, bytes, len);
}
