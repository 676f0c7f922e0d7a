/*
 * tok_dump.c - prints GPT-2 token ids for each document of a corpus file, for
 * comparison with the reference encoders (tests/tok-vs-ref.sh).
 *
 * Usage: tok_dump TOKENIZER_DIR FILE
 *
 * FILE holds documents separated by the line "<<<FL-DOC>>>": the file is
 * split on "\n<<<FL-DOC>>>\n" and nothing else, so a document keeps every
 * other byte (CR, trailing spaces, a last newline). Output: one line per
 * document, its ids separated by single spaces (an empty line for an empty
 * document). tests/tok_ref/tok_ref.js reads and prints the same way.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* memmem */
#endif
#include "autoconfig.h"

#include "engine/tok.h"
#include "base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOC_SEP "\n<<<FL-DOC>>>\n"

int
main(int argc, char **argv)
{
	fl_tokenizer *tok;
	char *cause = NULL, *buf, *p, *end, *sep;
	size_t len, sep_len = strlen(DOC_SEP);
	int *ids, n, i;

	if (argc != 3) {
		fprintf(stderr, "usage: tok_dump TOKENIZER_DIR FILE\n");
		return 2;
	}
	tok = tok_load_dir(argv[1], &cause);
	if (tok == NULL) {
		fprintf(stderr, "tok_dump: %s\n", cause);
		free(cause);
		return 1;
	}
	buf = fl_read_file(argv[2], &len, 0, &cause);
	if (buf == NULL) {
		fprintf(stderr, "tok_dump: %s\n", cause);
		free(cause);
		tok_free(tok);
		return 1;
	}
	p = buf;
	end = buf + len;
	for (;;) {
		sep = memmem(p, (size_t)(end - p), DOC_SEP, sep_len);
		n = tok_encode(tok, p, (size_t)((sep != NULL ? sep : end) - p),
		    &ids, &cause);
		if (n < 0) {
			fprintf(stderr, "tok_dump: %s\n", cause);
			free(cause);
			free(buf);
			tok_free(tok);
			return 1;
		}
		for (i = 0; i < n; i++)
			printf(i == 0 ? "%d" : " %d", ids[i]);
		putchar('\n');
		free(ids);
		if (sep == NULL)
			break;
		p = sep + sep_len;
	}
	free(buf);
	tok_free(tok);
	return fflush(stdout) == 0 ? 0 : 1;
}
