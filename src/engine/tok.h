/*
 * tok.h - the tokenizers: GPT-2 byte-level BPE (vocab.json + merges.txt, or
 * the original release's encoder.json + vocab.bpe), and SentencePiece BPE
 * (Llama's tokenizer.model; see tok_spm.h for how it encodes).
 *
 * Encoding equals GPT-2's for any input: the same pre-tokenization regex
 * (contractions, letters, numbers, other, whitespace with its lookahead rule,
 * Unicode categories, via PCRE2), GPT-2's byte-to-unicode map and merges by
 * rank. The literal text "<|endoftext|>" encodes as the special token, as in
 * Hugging Face's tokenizer. Input bytes that are not valid UTF-8 are encoded
 * byte by byte, so decode(encode(x)) == x for every byte string.
 */
#ifndef FL_TOK_H
#define FL_TOK_H

#include <stdbool.h>
#include <stddef.h>

typedef struct fl_tokenizer fl_tokenizer;

/* Loads a tokenizer from explicit files. NULL and *cause on error (missing
 * file, bad JSON, a merge whose parts or result are not in the vocabulary). */
fl_tokenizer *tok_load(const char *vocab_json, const char *merges_txt, char **cause);

/* Loads from a model directory: tokenizer.model (SentencePiece), else
 * vocab.json + merges.txt, else encoder.json + vocab.bpe. */
fl_tokenizer *tok_load_dir(const char *dir, char **cause);

void tok_free(fl_tokenizer *tok);

/* Number of ids (max id + 1). */
int tok_vocab_size(const fl_tokenizer *tok);

/* Id of "<|endoftext|>", or -1 when the vocabulary has none. */
int tok_eot_id(const fl_tokenizer *tok);

/* Whether encoding puts a space in front of the text (SentencePiece's
 * dummy prefix): the first token's bytes then start with a space the text
 * does not have, and a word after a space is encoded by encoding the word
 * alone. tok_decode drops that space again. */
bool tok_prefix_space(const fl_tokenizer *tok);

/* Encodes len bytes of text. On success returns the number of ids and sets
 * *ids to a heap array the caller frees (NULL when 0 ids). Never fails on
 * content; returns -1 only for an internal PCRE2 error or a text longer
 * than INT_MAX bytes, with *cause set. */
int tok_encode(const fl_tokenizer *tok, const char *text, size_t len, int **ids, char **cause);

/* The raw bytes a token stands for (not NUL-terminated); NULL for an id out
 * of range. The pointer lives as long as the tokenizer. */
const char *tok_token_bytes(const fl_tokenizer *tok, int id, size_t *len);

/* The token's string as written in vocab.json (byte-to-unicode form), or
 * NULL for an id out of range. */
const char *tok_token_str(const fl_tokenizer *tok, int id);

/* Decodes ids to bytes: heap buffer, NUL-terminated, *len without the NUL.
 * Ids out of range decode to nothing. */
char *tok_decode(const fl_tokenizer *tok, const int *ids, int n, size_t *len);

/* Id of the token whose raw bytes are exactly bytes[0..len), or -1. */
int tok_lookup(const fl_tokenizer *tok, const char *bytes, size_t len);

#endif
