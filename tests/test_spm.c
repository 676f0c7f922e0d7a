/*
 * test_spm.c - the SentencePiece BPE tokenizer (tokenizer.model) against
 * the ids Python's sentencepiece gave for the same models
 * (tests/fixtures/spm-cases.json, written by tools/make-spm-fixtures), the
 * decoded text, and crafted faults in the protobuf file.
 */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine/tok.h"
#include "base/util.h"

static const char *root;

static unsigned char *
unhex(const char *h, size_t *n)
{
	size_t len = strlen(h) / 2;
	unsigned char *out = xmalloc(len + 1);	/* never empty for malloc */

	for (size_t i = 0; i < len; i++) {
		unsigned v;

		sscanf(h + 2 * i, "%2x", &v);
		out[i] = (unsigned char)v;
	}
	*n = len;
	return out;
}

/* Every case for one model: ids equal, decode equals SentencePiece's. */
static void
check_model(const char *model, const cJSON *cases)
{
	char *dir = fl_path_join(root, model), *cause = NULL;
	fl_tokenizer *tok = tok_load_dir(dir, &cause);
	const cJSON *c;
	int n_cases = 0, n_ids = 0, bad_ids = 0, bad_dec = 0;

	check(tok != NULL, "%s: tokenizer.model loads (%s)", model,
	    tok != NULL ? "ok" : cause);
	free(dir);
	if (tok == NULL) {
		free(cause);
		return;
	}
	cJSON_ArrayForEach(c, cases) {
		const cJSON *want = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "ids"), model);
		const cJSON *dec = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "decoded_hex"),
		    model), *e;
		const cJSON *file = cJSON_GetObjectItem(c, "file");
		char *text, *back, name[128];
		size_t len, dlen, wlen;
		unsigned char *wdec;
		int *ids = NULL, n, k = 0, ok;

		if (cJSON_IsString(file)) {
			char *path = fl_path_join(root, "..");
			char *p2 = fl_path_join(path, file->valuestring);

			text = fl_read_file(p2, &len, 0, NULL);
			snprintf(name, sizeof name, "%s", file->valuestring);
			free(path);
			free(p2);
			if (text == NULL) {
				check(0, "%s: %s readable", model, name);
				continue;
			}
		} else {
			text = (char *)unhex(cJSON_GetObjectItem(c, "hex")->valuestring, &len);
			snprintf(name, sizeof name, "hex %.40s", cJSON_GetObjectItem(c,
			    "hex")->valuestring);
		}
		n = tok_encode(tok, text, len, &ids, NULL);
		ok = n == cJSON_GetArraySize(want);
		cJSON_ArrayForEach(e, want) {
			if (!ok)
				break;
			ok = ids[k++] == (int)e->valuedouble;
		}
		if (!ok) {
			int first = 0;

			k = 0;
			cJSON_ArrayForEach(e, want) {
				if (k >= n || ids[k] != (int)e->valuedouble)
					break;
				k++;
			}
			first = k;
			check(0, "%s: %s: %d ids, SentencePiece %d; first difference at "
			    "%d: got %d want %d", model, name, n, cJSON_GetArraySize(want),
			    first, first < n ? ids[first] : -1,
			    first < cJSON_GetArraySize(want) ?
			    (int)cJSON_GetArrayItem(want, first)->valuedouble : -1);
			bad_ids++;
		}
		back = tok_decode(tok, ids, n > 0 ? n : 0, &dlen);
		wdec = unhex(dec->valuestring, &wlen);
		if (dlen != wlen || memcmp(back, wdec, wlen) != 0) {
			check(0, "%s: %s: decode differs from SentencePiece's (%zu vs %zu "
			    "bytes)", model, name, dlen, wlen);
			bad_dec++;
		}
		n_cases++;
		n_ids += n;
		free(back);
		free(wdec);
		free(ids);
		free(text);
	}
	check(bad_ids == 0 && bad_dec == 0 && n_cases > 30, "%s: %d texts, %d ids "
	    "equal to SentencePiece's, decoded alike (%d id and %d decode "
	    "mismatches)", model, n_cases, n_ids, bad_ids, bad_dec);
	tok_free(tok);
}

/* Writes bytes as DIR/tokenizer.model and expects loading to fail with a
 * message containing want. */
static void
check_fault(const char *what, const unsigned char *b, size_t n, const char *want)
{
	char dir[] = "/tmp/fl-test-spm-XXXXXX", *path, *cause = NULL;
	fl_tokenizer *tok;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		fl_fatal("cannot create a temporary directory");
	path = fl_path_join(dir, "tokenizer.model");
	f = fopen(path, "wb");
	fwrite(b, 1, n, f);
	fclose(f);
	tok = tok_load_dir(dir, &cause);
	check(tok == NULL && cause != NULL && strstr(cause, want) != NULL,
	    "refuses %s with a message naming it (%s)", what,
	    cause != NULL ? cause : "loaded");
	tok_free(tok);
	free(cause);
	remove(path);
	rmdir(dir);
	free(path);
}

static void
check_faults(void)
{
	/* piece "a" NORMAL; unknown "<unk>"; a trainer_spec saying BPE */
	static const unsigned char unk[] = { 0x0a, 0x09, 0x0a, 0x05, '<', 'u', 'n', 'k',
	    '>', 0x18, 0x02 };
	static const unsigned char a[] = { 0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x01 };
	static const unsigned char bpe[] = { 0x12, 0x02, 0x18, 0x02 };
	static const unsigned char unigram[] = { 0x12, 0x02, 0x18, 0x01 };
	static const unsigned char charsmap[] = { 0x1a, 0x03, 0x12, 0x01, 'x' };
	static const unsigned char badtype[] = { 0x0a, 0x05, 0x0a, 0x01, 'b', 0x18, 0x09 };
	static const unsigned char fallback[] = { 0x12, 0x03, 0x98, 0x02, 0x01 };
	unsigned char buf[64];
	size_t n;

#define CAT(x) (memcpy(buf + n, x, sizeof x), n += sizeof x)
	n = 0, CAT(unk), CAT(a), CAT(bpe);
	check_fault("a truncated file", buf, n - 1, "malformed protobuf");
	n = 0, CAT(unk), CAT(a), CAT(a), CAT(bpe);
	check_fault("a duplicate piece", buf, n, "appears twice");
	n = 0, CAT(a), CAT(unk), CAT(bpe);
	check_fault("unk_id not an UNKNOWN piece", buf, n, "unk_id");
	n = 0, CAT(unk), CAT(a), CAT(unigram);
	check_fault("a unigram model", buf, n, "only BPE");
	n = 0, CAT(unk), CAT(a), CAT(bpe), CAT(charsmap);
	check_fault("a normalization charsmap", buf, n, "precompiled_charsmap");
	n = 0, CAT(unk), CAT(badtype), CAT(bpe);
	check_fault("a piece type out of range", buf, n, "type 9");
	n = 0, CAT(unk), CAT(a), CAT(fallback);
	check_fault("byte_fallback without byte pieces", buf, n, "<0x00>");
	n = 0, CAT(bpe);
	check_fault("no pieces", buf, n, "no pieces");
#undef CAT
}

int
main(void)
{
	char *path, *text, *cause = NULL;
	cJSON *doc, *m;

	root = getenv("FL_FIXTURES");
	if (root == NULL) {
		check(0, "FL_FIXTURES is set (run through make check)");
		return check_done();
	}
	path = fl_path_join(root, "spm-cases.json");
	text = fl_read_file(path, NULL, 0, &cause);
	doc = text != NULL ? cJSON_Parse(text) : NULL;
	check(doc != NULL, "spm-cases.json readable (%s)", cause ? cause : "ok");
	if (doc != NULL)
		cJSON_ArrayForEach(m, cJSON_GetObjectItem(doc, "models"))
			check_model(m->valuestring, cJSON_GetObjectItem(doc, "cases"));
	check_faults();
	(void)check_close;
	cJSON_Delete(doc);
	free(text);
	free(path);
	free(cause);
	return check_done();
}
