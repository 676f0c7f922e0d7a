/*
 * tok_spm.h - SentencePiece BPE (Llama's tokenizer.model), used by tok.c
 * behind the fl_tokenizer interface; not for other callers.
 *
 * tokenizer.model is a protobuf ModelProto (wire format: each field a varint
 * key = number << 3 | wire type; types 0 varint, 1 fixed 64-bit, 2 length-
 * delimited, 5 fixed 32-bit). The fields read:
 *   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec,
 *                   3 normalizer_spec
 *   SentencePiece   1 piece (string), 2 score (float), 3 type (NORMAL 1,
 *                   UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6)
 *   TrainerSpec     3 model_type (BPE 2), 24 treat_whitespace_as_suffix,
 *                   35 byte_fallback, 40 unk_id
 *   NormalizerSpec  1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
 *                   4 remove_extra_whitespaces, 5 escape_whitespaces
 * Others are skipped. Only the identity normalizer (no charsmap, as in
 * Llama's) and BPE models are implemented; anything else is refused.
 *
 * Encoding follows SentencePiece: invalid UTF-8 bytes become U+FFFD; with
 * remove_extra_whitespaces, spaces are trimmed and runs collapsed; with
 * add_dummy_prefix one U+2581 goes in front; spaces become U+2581; then
 * user-defined pieces are matched whole, the rest split into characters,
 * and the adjacent pair whose concatenation is the highest-scoring piece
 * (leftmost on ties) is merged until none is; a symbol that is no piece
 * becomes its <0xNN> byte pieces with byte_fallback, else the unknown id
 * (consecutive unknowns as one).
 */
#ifndef FL_TOK_SPM_H
#define FL_TOK_SPM_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tok_spm tok_spm;

/* Parses a tokenizer.model held in buf[0..len). NULL and *cause naming
 * `label` and the field on any problem. */
tok_spm *spm_parse(const unsigned char *buf, size_t len, const char *label,
    char **cause);
tok_spm *spm_load(const char *path, char **cause);
void spm_free(tok_spm *s);

int spm_size(const tok_spm *s);

/* Ids of len bytes of text; *ids a heap array (NULL for none). */
int spm_encode(const tok_spm *s, const char *text, size_t len, int **ids);

/* The bytes a piece stands for in decoded text: U+2581 as a space, a
 * <0xNN> piece as its byte, a control piece as nothing, the unknown piece
 * as " \u2047 ". NULL for an id out of range. */
const char *spm_piece_bytes(const tok_spm *s, int id, size_t *len);

/* The piece as stored ("\u2581Paris"), or NULL. */
const char *spm_piece_str(const tok_spm *s, int id);

/* The id of the piece whose decoded bytes are bytes[0..len) (a normal or
 * user-defined piece, else for one byte its <0xNN> piece), or -1. */
int spm_lookup(const tok_spm *s, const char *bytes, size_t len);

/* Decodes as SentencePiece does: the pieces' bytes (spm_piece_bytes) with
 * the dummy prefix dropped: the leading U+2581 of the first normal piece,
 * and with remove_extra_whitespaces of every piece until some text is out.
 * Ids out of range decode to nothing. Heap, NUL-terminated; *len without
 * the NUL. */
char *spm_decode(const tok_spm *s, const int *ids, int n, size_t *len);

/* Whether encoding puts a space (U+2581) in front of the text: decoding
 * then drops the first token's leading space. */
bool spm_dummy_prefix(const tok_spm *s);

#endif
