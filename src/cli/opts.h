/*
 * opts.h - the subcommands' option tables. Each command declares its
 * options once, in usage order, in a cli_opt array (cmd_*.c); from that
 * table come the getopt_long arrays (cli_getopt), the usage line and
 * "CMD --help" (cli_usage, cli_help), and the man page's SYNOPSIS and
 * OPTIONS (cli_man_fragment; tests/explore-man.sh checks man/factlens.1
 * against them). The options several commands take are declared once
 * here, as the CLI_SHARED_* entries, and parsed once, in cli_getopt.
 */
#ifndef FL_CLI_OPTS_H
#define FL_CLI_OPTS_H

#include <stdbool.h>
#include <stdio.h>

/* Where an option is documented: the command's own list, or once for
 * every command that takes it. */
typedef enum {
	CLI_GROUP_OWN,		/* the command's own */
	CLI_GROUP_MODEL,	/* --model, --threads, --weights */
	CLI_GROUP_TASK,		/* --task, --templates, --shots, --batch */
	CLI_GROUP_FIT,		/* --no-resid, --ridge */
	CLI_GROUP_OUTPUT,	/* --json */
	CLI_GROUP_SHARD,	/* --shard, --out */
	CLI_GROUP_COUNT
} cli_group;

typedef enum {
	CLI_OPT_SHORT = 1 << 0,		/* val is also the short option -val */
	CLI_OPT_REQUIRED = 1 << 1,	/* shown without brackets */
	CLI_OPT_NESTED = 1 << 2,	/* inside the bracket of the last option
					 * without this flag: [--task FILE [--layer L]] */
	CLI_OPT_OR = 1 << 3,		/* the other choice in that bracket:
					 * [--script FILE | -c "CMD; CMD"] */
	CLI_OPT_OPERAND = 1 << 4,	/* an argument, not an option: [TEXT] */
	CLI_OPT_NO_USAGE = 1 << 5,	/* listed in --help and OPTIONS but not in
					 * the usage line: a deprecated alias, a
					 * maintainer's option */
} cli_opt_flags;

typedef struct {
	const char	*name;	/* the long option without "--"; NULL: a short
				 * option only, or an operand */
	int		 val;	/* what cli_getopt returns for it */
	const char	*arg;	/* NULL: no argument; a placeholder (DIR) or the
				 * choices, separated by '|' */
	unsigned	 flags;	/* cli_opt_flags */
	cli_group	 group;
	const char	*help;	/* a phrase without a final period; NULL ends
				 * a table */
} cli_opt;

#define CLI_OPT_END { NULL, 0, NULL, 0, CLI_GROUP_OWN, NULL }

/* What cli_getopt returns for the shared options without a short letter:
 * above every character, so they never meet a command's own letters. */
enum {
	CLI_VAL_TASK = 256,
	CLI_VAL_TEMPLATES,
	CLI_VAL_BATCH,
	CLI_VAL_WEIGHTS,
	CLI_VAL_STRICT,
	CLI_VAL_NO_RESID,
	CLI_VAL_RIDGE,
	CLI_VAL_PLOT,
	CLI_VAL_SHOTS,
	CLI_VAL_SHARD,
	CLI_VAL_OUT,
	CLI_VAL_SINGLE_TOKEN,
	CLI_VAL_COUNTERFACTUAL,
};

#define CLI_SHARED_MODEL { "model", 'm', "DIR", CLI_OPT_SHORT, CLI_GROUP_MODEL, \
	"the model directory (default: the bundled demo model, or FACTLENS_MODEL " \
	"when set)" }
#define CLI_SHARED_THREADS { "threads", 't', "N", CLI_OPT_SHORT, CLI_GROUP_MODEL, \
	"threads for the matrix products (default: every core; bench: 2)" }
#define CLI_SHARED_WEIGHTS { "weights", CLI_VAL_WEIGHTS, "convert|stored|copy", 0, \
	CLI_GROUP_MODEL, "how a checkpoint's weights are held: convert widens them " \
	"to f32 at load, stored (the default) uses them as they are in the file, " \
	"copy copies them onto cache lines (see Weights in factlens(1)); tokenize " \
	"reads no weights and ignores it" }
#define CLI_SHARED_STRICT { "strict", CLI_VAL_STRICT, NULL, 0, CLI_GROUP_MODEL, \
	"refuse weights that hold NaN or infinite values (default: load them " \
	"with a warning naming the tensors)" }
#define CLI_SHARED_PLOT { "plot", CLI_VAL_PLOT, "FILE", 0, CLI_GROUP_OUTPUT, \
	"also write the result as a figure: FILE.png, .svg or .pdf (see Figures " \
	"in factlens(1))" }
/* flags: CLI_OPT_REQUIRED where the command needs a task */
#define CLI_SHARED_TASK(flags) { "task", CLI_VAL_TASK, "FILE", (flags), \
	CLI_GROUP_TASK, "a task: relation pairs and prompt templates (see TASK FILES)" }
#define CLI_SHARED_TEMPLATES { "templates", CLI_VAL_TEMPLATES, "SET", 0, \
	CLI_GROUP_TASK, "the task's templates to use: main (the default), " \
	"paraphrase or heldout" }
/* flags: CLI_OPT_NESTED in run, where it is the --task fit's (eval has its
 * own --shots: zero-shot and K-shot side by side) */
#define CLI_SHARED_SHOTS(flags) { "shots", CLI_VAL_SHOTS, "K", (flags), \
	CLI_GROUP_TASK, "K demonstrations before each prompt of the task " \
	"(default 0), drawn as eval --shots draws them (fewshot_format filled with " \
	"other pairs of the task); in run, the prompts of the --task fit, not " \
	"--prompt" }
/* flags: CLI_OPT_NESTED in run, where it filters the --task fit's prompts */
#define CLI_SHARED_SINGLE_TOKEN(flags) { "single-token", CLI_VAL_SINGLE_TOKEN, \
	NULL, (flags), CLI_GROUP_TASK, "keep only the prompts whose answer is one " \
	"token for the model's tokenizer (as the paper's code assumes); how many " \
	"were dropped is said on standard error and in the JSON" }
#define CLI_SHARED_COUNTERFACTUAL { "counterfactual", CLI_VAL_COUNTERFACTUAL, \
	NULL, 0, CLI_GROUP_TASK, "open each prompt with the task's " \
	"counterfactual_format stating another pair's answer (\"In this story, the " \
	"capital of France is Rome. \"); eval scores the memorised and the " \
	"in-context answer, heads and decompose the memorised one" }
/* flags: CLI_OPT_NESTED in run, where it sizes the --task fit's passes */
#define CLI_SHARED_BATCH(flags) { "batch", CLI_VAL_BATCH, "N", (flags), \
	CLI_GROUP_TASK, "prompts per pass over the task (default 32): the weights " \
	"are read once per pass, and 1 runs the prompts one at a time; in run, the " \
	"passes of the --task fit; in trace and patch, the restored or patched " \
	"runs per pass" }
#define CLI_SHARED_NO_RESID { "no-resid", CLI_VAL_NO_RESID, NULL, 0, CLI_GROUP_FIT, \
	"leave resid_pre out of the regressors of the MLP decomposition (and so of " \
	"the intercept)" }
#define CLI_SHARED_RIDGE { "ridge", CLI_VAL_RIDGE, "X", 0, CLI_GROUP_FIT, \
	"the ridge of the MLP decomposition's fit, from 0 to 1 (default 1e-6)" }
#define CLI_SHARED_SHARD { "shard", CLI_VAL_SHARD, "I/N", 0, CLI_GROUP_SHARD, \
	"run shard I of N (1-based) of the task's prompts, those whose 0-based " \
	"index i has i mod N = I - 1, and write a partial for factlens merge (see " \
	"SHARDING) instead of the result" }
#define CLI_SHARED_OUT { "out", CLI_VAL_OUT, "FILE", 0, CLI_GROUP_SHARD, \
	"with --shard, write the partial to FILE instead of standard output" }
#define CLI_SHARED_JSON { "json", 'j', NULL, CLI_OPT_SHORT, CLI_GROUP_OUTPUT, \
	"print the results as JSON (see JSON)" }

/* The subcommand table (main.c). name_optional: the command may be left
 * out ("factlens [explore]"). */
typedef struct {
	const char	*name;
	int		(*fn)(int, char **);
	const cli_opt	*opts;
	bool		 name_optional;
} cli_command;

extern const cli_command cli_commands[];
extern const int cli_n_commands;

/* Where the shared options a command takes go (its own fields); NULL for
 * one it does not take. --weights, which every command takes, goes to
 * cli_weights_opt (cli.h). */
typedef struct {
	const char	**dir;		/* --model DIR */
	const char	**task;		/* --task FILE */
	int		 *set;		/* --templates main|paraphrase|heldout */
	int		 *shots;	/* --shots K */
	bool		 *single_token;	/* --single-token */
	bool		 *counterfactual;	/* --counterfactual */
	int		 *batch;	/* --batch N */
	int		 *threads;	/* --threads N */
	bool		 *no_resid;	/* --no-resid */
	double		 *ridge;	/* --ridge X */
	bool		 *json;		/* --json */
	const char	**plot;		/* --plot FILE */
	struct cli_shard *shard;	/* --shard I/N, --out FILE (shard.h) */
} cli_shared;

/* What cli_getopt returns after reporting a bad value of a shared option:
 * the command returns 2. */
#define CLI_GETOPT_BAD (-2)

/* getopt_long over the arrays made from opts (on the first call for a
 * table; a table with two options of one name or val is a bug and aborts),
 * taking the shared options on the way into sh: the next option of the
 * command's own (getopt's '?' for one the table does not have), -1 at the
 * end, or CLI_GETOPT_BAD. Set optind = 1 before the first call. */
int cli_getopt(int argc, char **argv, const cli_opt *opts, const cli_shared *sh);

/* "usage: factlens CMD ..." for a command of the table, or "usage:
 * factlens COMMAND [OPTIONS]" for any other name. A static buffer. */
const char *cli_usage(const char *cmd);

/* "CMD --help": the usage line and every option of the command, by group.
 * Without a command (NULL): every command's usage line. */
void cli_help(const char *cmd, FILE *f);

/* The man page's generated parts: "synopsis" (the SYNOPSIS section's
 * body), "options" (every option, by group and by command), and the
 * explorer's "keys", "commands" and "roles" (ui_man_fragment). -1 when
 * what is none of those. */
int cli_man_fragment(const char *what, FILE *f);

#endif
