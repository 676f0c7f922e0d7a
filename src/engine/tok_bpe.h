/*
 * tok_bpe.h - GPT-2 byte-level BPE (vocab.json + merges.txt, or the
 * original release's encoder.json + vocab.bpe), used by tok.c behind the
 * fl_tokenizer interface; not for other callers. How it encodes: tok.h and
 * tok_bpe.c.
 *
 * vocab.json maps each token, in GPT-2's byte-to-unicode form ("\u0120Paris"
 * for " Paris"), to its id: integers from 0 below 2^24, each used once, and
 * every single byte present. merges.txt has one merge "A B" per line in
 * rank order (an optional "#version:" first line, LF or CRLF); both parts
 * and their concatenation must be tokens of the vocabulary.
 */
#ifndef FL_TOK_BPE_H
#define FL_TOK_BPE_H

#include <stddef.h>

typedef struct tok_bpe tok_bpe;

/* Loads the two files. NULL and *cause naming the file (and line, token or
 * field) on any problem. */
tok_bpe *bpe_load(const char *vocab_json, const char *merges_txt, char **cause);
void bpe_free(tok_bpe *b);

/* Number of ids (max id + 1); the id of "<|endoftext|>", or -1. */
int bpe_size(const tok_bpe *b);
int bpe_eot_id(const tok_bpe *b);

/* Ids of len (at most INT_MAX) bytes of text; *ids a heap array the caller
 * frees (NULL for none). -1 with *cause only for an internal PCRE2 error. */
int bpe_encode(const tok_bpe *b, const char *text, size_t len, int **ids,
    char **cause);

/* The raw bytes of a token (not NUL-terminated; "" for an id vocab.json
 * skips), or NULL for an id out of range; lives as long as b. */
const char *bpe_token_bytes(const tok_bpe *b, int id, size_t *len);

/* The token as written in vocab.json, or NULL for an id out of range. */
const char *bpe_token_str(const tok_bpe *b, int id);

/* The id of the token whose raw bytes are bytes[0..len), or -1. */
int bpe_lookup(const tok_bpe *b, const char *bytes, size_t len);

#endif
