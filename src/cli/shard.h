/*
 * shard.h - one task-level command split over machines: `--shard I/N` runs
 * the share of the task's prompts whose index i (0-based, in the order the
 * command makes them) has i mod N == I - 1 (I is 1-based, 1 <= I <= N), and
 * writes a partial; `factlens merge PART...` reads the N partials and prints
 * what the command unsharded prints.
 *
 * A partial is JSON Lines (one JSON object a line):
 *   line 1, the header:
 *     {"factlens_partial": 1, "version": "0.1", "weights_sha256": HEX,
 *      "command": "eval", "options": ["--task", "t.json", ...],
 *      "shard": I, "shards": N, "prompts": n}
 *     options: the command's arguments as given, but --shard and --out;
 *   then one line per prompt of the share, in prompt order:
 *     {"prompt": i, ...}  what the command's finish step needs of prompt i
 *     (its own fields; arrays of floats as base64 of their little-endian
 *     IEEE-754 bytes, so they come back bit for bit);
 *   last, the trailer: {"end": true, "work": {...}} (the share's times and
 *     pass counts), without which a partial is taken as cut short.
 * Since shard I holds prompts I-1, I-1+N, ..., the merge reads the parts in
 * turn, one line each, and sees the prompts in order without holding them.
 */
#ifndef FL_CLI_SHARD_H
#define FL_CLI_SHARD_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>

#include "engine/model.h"

#define CLI_PARTIAL_FORMAT 1

/* --shard I/N and --out FILE of a command; count 0 when not sharded. */
typedef struct cli_shard {
	int		 index, count;	/* I (1-based) of N */
	const char	*out;		/* NULL: standard output */
} cli_shard;

/* Parses "I/N" (1 <= I <= N <= 100000) into *s: 0, or 2 after a usage
 * error naming what is wrong. */
int cli_shard_parse(const char *arg, cli_shard *s);

/* Prompt indices of the share of n prompts: a heap array of *k indices
 * (every one when s is not sharded). */
int *cli_shard_select(const cli_shard *s, int n, int *k);

/* The writer of a partial. cli_part_begin opens s->out (or takes stdout),
 * hashes the model's weights and writes the header for command cmd, whose
 * arguments are argv[1..argc) (--shard and --out are left out); 0, or 1
 * after reporting. cli_part_row writes one prompt's line and frees row;
 * cli_part_end writes the trailer with work (freed) and closes the file:
 * 0, or 1 after reporting a write error. */
typedef struct {
	FILE		*f;
	const char	*path;		/* for messages */
	bool		 failed;
} cli_part_writer;
int cli_part_begin(cli_part_writer *w, const cli_shard *s, const fl_model *m,
    const char *cmd, int argc, char **argv, int n_prompts);
int cli_part_row(cli_part_writer *w, cJSON *row);
int cli_part_end(cli_part_writer *w, cJSON *work);

/* The reader: every part opened and its header checked against the first
 * (format, weights hash, command, options, shard count, prompt count), the
 * shards 1..N each given once. */
typedef struct {
	char	*path;
	FILE	*f;
	int	 index;		/* its shard, 1-based */
	long	 line;		/* lines read */
	char	*buf;
	size_t	 cap;
	cJSON	*work;		/* its trailer's work, after cli_merge_end */
} cli_part;

typedef struct {
	cli_part	*parts;		/* (n_parts) by shard once opened */
	int		 n_parts;	/* the files given */
	int		 count;		/* N, the shards */
	int		 prompts;
	char		*command;
	char		*weights;	/* the hash, 64 hex digits */
	int		 argc;		/* the command's arguments, argv[0] the */
	char		**argv;		/* command's name, as cmd_* take them */
} cli_merge;

/* Opens and checks paths[0..n). 0, or 1 after reporting which file is
 * wrong and why. Free with cli_merge_clear. */
int cli_merge_open(cli_merge *mg, char **paths, int n);
void cli_merge_clear(cli_merge *mg);

/* The line of prompt i (read from its part, which must hold it next), as
 * JSON; NULL after reporting (a cut-short or corrupt part, the wrong
 * prompt). Call for i = 0, 1, ... in turn; free with cJSON_Delete. */
cJSON *cli_merge_row(cli_merge *mg, int i);

/* After the last prompt: each part's trailer read (and nothing after it).
 * 0, or 1 after reporting. */
int cli_merge_end(cli_merge *mg);

/* The sum over the parts' trailers of work field `key` (a number). */
double cli_merge_work_sum(const cli_merge *mg, const char *key);

/* The model of a merge: loaded from the options' --model (dir), its
 * weights' hash checked against the parts'. NULL after reporting. */
fl_model *cli_merge_model(const cli_merge *mg, const char *dir);

/* Fields of a prompt's line: arrays of n floats or doubles as base64
 * strings (cli_json_add_*), and back into dst, refused unless the field
 * is there and holds exactly n values (cli_json_get_*: 0, or 1 after
 * reporting the part, the prompt and the field). */
void cli_json_add_f32(cJSON *o, const char *name, const float *v, size_t n);
void cli_json_add_f64(cJSON *o, const char *name, const double *v, size_t n);
int cli_json_get_f32(const cli_merge *mg, int i, const cJSON *o,
    const char *name, float *dst, size_t n);
int cli_json_get_f64(const cli_merge *mg, int i, const cJSON *o,
    const char *name, double *dst, size_t n);
/* An integer field of a prompt's line into *out: 0, or 1 after reporting. */
int cli_json_get_int(const cli_merge *mg, int i, const cJSON *o,
    const char *name, int *out);

/* The merge step of each shardable command: argv as the parts recorded it.
 * The same as cmd_* but for the collecting, done by the parts. */
int cmd_eval_merge(int argc, char **argv, cli_merge *mg);
int cmd_heads_merge(int argc, char **argv, cli_merge *mg);
int cmd_decompose_merge(int argc, char **argv, cli_merge *mg);
int cmd_trace_merge(int argc, char **argv, cli_merge *mg);
int cmd_atp_merge(int argc, char **argv, cli_merge *mg);

#endif
