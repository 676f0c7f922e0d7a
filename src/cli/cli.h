/*
 * cli.h - the command-line subcommands. Each lives in its own cmd_*.c file
 * with its option table (opts.h) and has one entry in main.c's table, which
 * drives dispatch, --help and the man page's SYNOPSIS and OPTIONS.
 * Exit status: 0 success, 1 a runtime error (bad file, bad model), 2 a usage
 * error, 130 (FL_EXIT_STOPPED) when Ctrl-C stopped the work.
 */
#ifndef FL_CLI_H
#define FL_CLI_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "analysis/task.h"
#include "engine/forward.h"
#include "base/paths.h"
#include "base/util.h"
#include "opts.h"

int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_heads(int argc, char **argv);
int cmd_decompose(int argc, char **argv);
int cmd_explore(int argc, char **argv);
int cmd_atp(int argc, char **argv);
int cmd_trace(int argc, char **argv);		/* cmd_trace.c */
int cmd_patch(int argc, char **argv);		/* cmd_patch.c */
int cmd_knockout(int argc, char **argv);	/* cmd_trace.c */
int cmd_merge(int argc, char **argv);		/* cmd_merge.c, shard.h */

/* Their option tables, in usage order. */
extern const cli_opt cmd_tokenize_opts[], cmd_run_opts[], cmd_bench_opts[],
    cmd_eval_opts[], cmd_heads_opts[], cmd_decompose_opts[], cmd_explore_opts[],
    cmd_atp_opts[], cmd_trace_opts[], cmd_knockout_opts[], cmd_patch_opts[],
    cmd_merge_opts[];


/* --weights convert|stored|copy and --strict, taken by every command and
 * the explorer: what model_load does with F16/BF16 weights, and whether it
 * refuses non-finite ones (model.h). cli_weights_opt parses --weights (arg)
 * and --strict (arg NULL): 0, or 2 after reporting a usage error;
 * cli_model_opts gives the choice, which cli_load_model loads with. */
int cli_weights_opt(const char *arg);
const fl_model_opts *cli_model_opts(void);

/* Loads a model (with cli_model_opts) or prints "factlens: <cause>" and
 * returns NULL. A model whose weights hold NaN or infinite values loads
 * with "factlens: warning: ..." naming them on stderr. */
fl_model *cli_load_model(const char *dir);

/* Prints "factlens: <msg>" to stderr; returns status. */
int cli_fail(int status, const char *fmt, ...) FL_PRINTF(2, 3);

/* A clean and a corrupted prompt whose activations pair position by
 * position (atp, patch): both encoded into *clean and *corrupt (which the
 * caller frees, also on failure), of the same token count, and the answer
 * and the distractor (NULL: none, -1) as one token each. Returns the token
 * count, or -1 after printing the error named for cmd, its exit status in
 * *status. */
int cli_prompt_pair(const fl_model *m, const char *cmd, const char *prompt,
    const char *corrupt_text, const char *answer, const char *distractor,
    int **clean, int **corrupt, int *answer_id, int *distractor_id,
    int *status);

/* Parses a positive integer option value into *out, or reports a usage
 * error naming the option. */
int cli_int(const char *opt, const char *arg, int lo, int hi, int *out);

/* A token as printable text: its bytes with control and invalid bytes
 * escaped, quoted. Heap string. */
char *cli_token_repr(const fl_tokenizer *tok, int id);

/* ---- shared by the analysis commands (cli_common.c) ---- */

/* A progress bar on stderr, only when stderr is a terminal (and
 * FACTLENS_NO_PROGRESS is unset); cli_progress_of gives the fl_progress
 * that draws it (progress.h). */
typedef struct {
	const char	*label;
	bool		 tty, shown;
	double		 last;
} cli_progress_state;
void cli_progress_init(cli_progress_state *s, const char *label);
fl_progress cli_progress_of(cli_progress_state *s);
void cli_progress_end(cli_progress_state *s);	/* erases the bar */

/* Ctrl-C during long work. cli_interrupt_catch installs a SIGINT handler
 * (unless SIGINT is ignored, as for a background job) that only sets a
 * flag; cli_progress returns it, so the running analysis stops at its next
 * batch boundary and returns FL_STOPPED. The handler resets itself: a
 * second Ctrl-C ends the process at once. cli_cancelled erases the bar,
 * says what was cancelled and returns FL_EXIT_STOPPED, the status a
 * shell reports for a process ended by Ctrl-C (128 + SIGINT). */
void cli_interrupt_catch(void);
bool cli_interrupted(void);
int cli_cancelled(cli_progress_state *s, const char *what);

/* After a batched analysis that returned rc: the bar erased; when it was
 * stopped (FL_STOPPED or Ctrl-C) what was cancelled said and
 * FL_EXIT_STOPPED returned, else rc (0, or -1 with the analysis' cause for
 * the caller to report). */
int cli_work_end(cli_progress_state *s, int rc, const char *what);


/* After task_prompts with o->single_token: "factlens CMD: --single-token
 * kept N of M prompts, dropped K (answers of several tokens for this
 * model)" on stderr; nothing without the filter. */
void cli_note_dropped(const char *cmd, const fl_prompt_opts *o,
    const fl_prompt_set *ps);

/* The prompt filters in a JSON task object: "single_token", "dropped"
 * (prompts the filter dropped) and "counterfactual". */
void cli_json_prompt_filters(cJSON *task, const fl_prompt_opts *o, int dropped);

/* Loads a task or prints "factlens: <cause>" and returns NULL. */
fl_task *cli_load_task(const char *path);

/* The subject of a prompt: the given text (an error when it is not a word
 * of the prompt), else the task's subject found latest in the prompt (the
 * longest at one place), else none (*off = -1). *pair: its pair in the
 * task, or -1. 0, or 1 after printing the error. */
int cli_find_subject(const fl_task *t, const char *prompt, const char *subject,
    int *off, int *len, int *pair);

/* For the task commands (eval, heads, decompose), after the options: no
 * stray arguments, --task given, the default model filled in. 0, or 2 with
 * the usage error reported for command cmd. */
int cli_shared_finish(const cli_shared *sh, const char *cmd, int argc, char **argv);

/* "0,3,5" -> (H) flags, heap; or a usage error naming the option and the
 * form, 2 (an empty list or a stray comma too). */
int cli_parse_heads(const char *opt, const char *arg, int H, bool **out);

/* A number option in [lo, hi], or a usage error naming the option. */
int cli_parse_double(const char *opt, const char *arg, double lo, double hi,
    double *out);

/* A token quoted as cli_token_repr quotes it, on stdout, cut or padded to
 * width columns (0: as it is). */
void cli_print_token(const fl_model *m, int id, int width);

/* A token as a figure labels it: its text (U+FFFD for a split character),
 * a newline as \n, spaces alone as open boxes. Heap. */
char *cli_plot_token(const fl_model *m, int id);

/* A token's raw bytes as a heap string. */
char *cli_token_text(const fl_model *m, int id);

/* The k best tokens, quoted, space-separated, on stdout. */
void cli_print_topk(const fl_model *m, const float *logits, int k);

/* --csv and --json are two forms of one output: 2 (reported, naming the
 * command) when both are given, else 0. */
int cli_csv_or_json(const char *cmd, bool csv, bool json);

/* Flushes standard output after CSV: 0, or 1 on a write error, reported. */
int cli_csv_done(const char *cmd);

/* Prints and frees a JSON document (report.h's schema). 0, or 1 on
 * failure, reported. */
int cli_json_print(cJSON *root);


#endif
