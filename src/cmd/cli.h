/*
 * cli.h - the command-line subcommands. Each lives in its own cmd_*.c file
 * and has one entry in main.c's table, which drives dispatch and --help.
 * Exit status: 0 success, 1 a runtime error (bad file, bad model), 2 a usage
 * error.
 */
#ifndef FL_CLI_H
#define FL_CLI_H

#include "engine/forward.h"
#include "engine/util.h"

int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* The bundled demo model's directory (FACTLENS_MODEL overrides). */
const char *cli_default_model(void);

/* Loads a model or prints "factlens: <cause>" and returns NULL. */
fl_model *cli_load_model(const char *dir);

/* Prints "factlens: <msg>" to stderr; returns status. */
int cli_fail(int status, const char *fmt, ...) FL_PRINTF(2, 3);

/* Parses a positive integer option value into *out, or reports a usage
 * error naming the option. */
int cli_int(const char *opt, const char *arg, int lo, int hi, int *out);

/* A token as printable text: its bytes with control and invalid bytes
 * escaped, quoted. Heap string. */
char *cli_token_repr(const fl_tokenizer *tok, int id);

#endif
