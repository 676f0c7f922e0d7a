/*
 * tok.c - the tokenizer facade: finds a model directory's tokenizer files
 * and hands every call to the GPT-2 byte-level BPE (tok_bpe.c) or the
 * SentencePiece BPE (tok_spm.c) behind the one fl_tokenizer. See tok.h.
 */
#include "autoconfig.h"

#include "tok.h"
#include "tok_bpe.h"
#include "tok_spm.h"
#include "base/util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Exactly one of the two is set. */
struct fl_tokenizer {
	tok_bpe	*bpe;		/* vocab.json + merges.txt (or encoder.json +
				   vocab.bpe) */
	tok_spm	*spm;		/* tokenizer.model */
};

fl_tokenizer *
tok_load(const char *vocab_json, const char *merges_txt, char **cause)
{
	tok_bpe *bpe = bpe_load(vocab_json, merges_txt, cause);
	fl_tokenizer *tok;

	if (bpe == NULL)
		return NULL;
	tok = xcalloc(1, sizeof *tok);
	tok->bpe = bpe;
	return tok;
}

fl_tokenizer *
tok_load_dir(const char *dir, char **cause)
{
	static const char *pairs[][2] = {
		{ "vocab.json", "merges.txt" },
		{ "encoder.json", "vocab.bpe" },
	};
	fl_tokenizer *tok = NULL;
	char *v, *m;
	size_t i;
	int have_v, have_m;

	v = fl_path_join(dir, "tokenizer.model");
	if (fl_file_exists(v)) {
		tok = xcalloc(1, sizeof *tok);
		tok->spm = spm_load(v, cause);
		free(v);
		if (tok->spm == NULL) {
			free(tok);
			return NULL;
		}
		return tok;
	}
	free(v);
	for (i = 0; i < 2; i++) {
		v = fl_path_join(dir, pairs[i][0]);
		m = fl_path_join(dir, pairs[i][1]);
		have_v = fl_file_exists(v);
		have_m = fl_file_exists(m);
		if (have_v && have_m)
			tok = tok_load(v, m, cause);
		else if (have_v || have_m)
			fl_error(cause, "%s: has %s but no %s", dir,
			    pairs[i][have_v ? 0 : 1], pairs[i][have_v ? 1 : 0]);
		free(v);
		free(m);
		if (have_v || have_m)
			return tok;
	}
	fl_error(cause, "%s: no tokenizer files (expected vocab.json and "
	    "merges.txt, encoder.json and vocab.bpe, or tokenizer.model)", dir);
	return NULL;
}

void
tok_free(fl_tokenizer *tok)
{
	if (tok == NULL)
		return;
	bpe_free(tok->bpe);
	spm_free(tok->spm);
	free(tok);
}

int
tok_vocab_size(const fl_tokenizer *tok)
{
	return tok->spm != NULL ? spm_size(tok->spm) : bpe_size(tok->bpe);
}

int
tok_eot_id(const fl_tokenizer *tok)
{
	return tok->spm != NULL ? -1 : bpe_eot_id(tok->bpe);
}

bool
tok_prefix_space(const fl_tokenizer *tok)
{
	return tok->spm != NULL && spm_dummy_prefix(tok->spm);
}

int
tok_encode(const fl_tokenizer *tok, const char *text, size_t len, int **ids,
    char **cause)
{
	*ids = NULL;
	/* Positions and the returned count are ints; SentencePiece text can
	 * grow threefold (U+2581, U+FFFD). */
	if (len > (tok->spm != NULL ? INT_MAX / 4 : INT_MAX))
		return fl_error(cause, "text of %zu bytes is too long to "
		    "encode (at most %d)", len, tok->spm != NULL ? INT_MAX / 4 : INT_MAX);
	if (tok->spm != NULL)
		return spm_encode(tok->spm, text, len, ids);
	return bpe_encode(tok->bpe, text, len, ids, cause);
}

const char *
tok_token_bytes(const fl_tokenizer *tok, int id, size_t *len)
{
	if (tok->spm != NULL)
		return spm_piece_bytes(tok->spm, id, len);
	return bpe_token_bytes(tok->bpe, id, len);
}

const char *
tok_token_str(const fl_tokenizer *tok, int id)
{
	if (tok->spm != NULL)
		return spm_piece_str(tok->spm, id);
	return bpe_token_str(tok->bpe, id);
}

char *
tok_decode(const fl_tokenizer *tok, const int *ids, int n, size_t *len)
{
	size_t total = 0, k;
	const char *s;
	char *out;
	int i;

	if (tok->spm != NULL)
		return spm_decode(tok->spm, ids, n, len);
	for (i = 0; i < n; i++) {
		if (tok_token_bytes(tok, ids[i], &k) != NULL)
			total += k;
	}
	out = xmalloc(total + 1);
	total = 0;
	for (i = 0; i < n; i++) {
		s = tok_token_bytes(tok, ids[i], &k);
		if (s != NULL) {
			memcpy(out + total, s, k);
			total += k;
		}
	}
	out[total] = '\0';
	if (len != NULL)
		*len = total;
	return out;
}

int
tok_lookup(const fl_tokenizer *tok, const char *bytes, size_t len)
{
	if (tok->spm != NULL)
		return spm_lookup(tok->spm, bytes, len);
	return bpe_lookup(tok->bpe, bytes, len);
}
