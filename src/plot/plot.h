/*
 * plot.h - figures a paper can use, drawn with cairo: the answer's
 * probability and rank by layer (the logit lens), a layer x head map, the
 * mitigation grid, causal tracing's layer x position map and the knockout
 * curve. The file's extension picks the format: .png, .svg
 * or .pdf.
 *
 * The figures take plain arrays, so this module knows nothing of models or
 * analyses (it includes only base). Colours are chosen to survive printing
 * in grey: the lens lines differ in dash as well as colour, the sequential
 * map's lightness falls monotonically, the diverging map's lightness falls
 * from zero out to both ends with the sign written in every cell, and bars
 * carry their value as text.
 *
 * Each function writes path and returns 0, or -1 with *cause naming the
 * file (an unknown extension, a file that cannot be written).
 */
#ifndef FL_PLOT_H
#define FL_PLOT_H

#include <stdbool.h>

/* Whether path names a format: 0, or -1 with *cause, before any work. */
int plot_check(const char *path, char **cause);

/* The three residual streams of each layer the lens reads. */
enum { PLOT_RESID_PRE, PLOT_RESID_MID, PLOT_RESID_POST, PLOT_STREAMS };

/* prob and rank: (L, PLOT_STREAMS), the answer's probability and rank (1 =
 * top) at the last position of each layer's streams. title names the
 * prompt, answer the answer token. */
int plot_lens(const char *path, const char *title, const char *answer, int L,
    const double *prob, const int *rank, char **cause);

/* v: (L, H) values of one metric per head, NAN where there is none; mark
 * (L, H) or NULL: heads drawn with a frame (mover heads). is_signed: a
 * diverging map around zero, else a sequential one from zero. */
int plot_heads(const char *path, const char *title, const char *metric,
    const double *v, int L, int H, bool is_signed, const bool *mark, char **cause);

/* The mitigation grid: for each of n settings (shots[i] demonstrations),
 * the mean P(answer) of n_cond conditions (named cond[c]), prob (n, n_cond)
 * in 0..1. */
int plot_eval(const char *path, const char *title, int n, const int *shots,
    int n_cond, const char *const *cond, const double *prob, char **cause);

/* A layer x position map, causal tracing's: v (n_layer, n_row), NAN where
 * a cell has no value (drawn hatched). Rows run down in the prompt's order,
 * layers across; mark (n_row) or NULL: rows drawn bold with a '*' and
 * framed (the subject's tokens). is_signed: the diverging map around zero
 * (indirect effects), else the sequential one from zero (probabilities). */
typedef struct {
	const char		*title;		/* the prompt or the task */
	const char		*subtitle;	/* kind, window, P(clean), P(corrupt) */
	const char		*legend;	/* what a cell's colour is */
	const char		*rows_name;	/* "token", "position" */
	int			 n_layer, n_row;
	const char *const	*rows;		/* (n_row) labels */
	const bool		*mark;
	const double		*v;
	bool			 is_signed;
} plot_map;

int plot_trace(const char *path, const plot_map *m, char **cause);

/* The knockout curve: p (L) P(answer) with the window blocked from each
 * start layer, NAN where there is none, against p_clean (a dashed line). */
int plot_knockout(const char *path, const char *title, const char *subtitle, int L,
    const double *p, double p_clean, char **cause);

#endif
