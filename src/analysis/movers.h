/*
 * movers.h - mover heads, the paper's argument extractors: heads that attend
 * from the last position to the subject and copy it into the residual.
 *
 * The cheap single-prompt score (paper notes, section 4). For head (l, h):
 *   attn   attention from the query position to the subject's tokens
 *          (summed over them when the subject is several tokens);
 *   logit  what the head's output at the query position adds to the
 *          subject's logit: its result carried to the output through the
 *          LayerNorms frozen at the run's scales, without their biases, as
 *          the direct contributions carry it (attrib.h: the final LN in a
 *          pre-LN model, every later block LN in a post-LN one). The
 *          subject's token is its first;
 *   rank   the subject's rank (1 = top) in that projection over the whole
 *          vocabulary;
 *   score  attn * (1 - ln(rank) / ln(V)): in [0, 1], 1 only when the head
 *          attends only to the subject and puts it first. The log makes
 *          rank 10 and rank 100 differ as much as 100 and 1000.
 * A head is flagged as a mover when score >= threshold (MOVERS_THRESHOLD by
 * default; keep it configurable: it is a reading aid, not a finding).
 */
#ifndef FL_MOVERS_H
#define FL_MOVERS_H

#include <stdbool.h>

#include "engine/forward.h"

#define MOVERS_THRESHOLD 0.25f

typedef struct {
	float	attn;
	float	logit;
	int	rank;
	float	score;
	float	norm;		/* |result|, the size of what the head writes */
	bool	mover;
} fl_mover;

/* Scores every head at query position pos of the prompt in the cache (a
 * full pass with FL_CACHE_PATTERN). out is (L * H), head (l, h) at
 * l * H + h. 0, or -1 with *cause (no patterns cached, a position or span
 * outside the prompt, the subject after the query). */
int movers_score(fl_mover *out, const fl_model *m, const fl_cache *c, int pos,
    int subj_pos, int subj_len, int subject, float threshold, char **cause);

/* Pearson's r of n pairs; NAN when either side has no variance. */
double movers_pearson(const double *x, const double *y, int n);

#endif
