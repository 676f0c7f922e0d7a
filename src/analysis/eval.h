/*
 * eval.h - the paper's grid over a task: P(answer), top-1 accuracy and rank
 * for baseline / mask (a) / intercept removal (b) / both (paper notes,
 * sections 3 and 6).
 *
 * Calibration. The intercept of (b) is the last layer's MLP decomposition
 * intercept (decompose.h), fitted on prompts disjoint from those it is used
 * on, by two-fold cross-fitting: the prompts are split in two folds - by
 * subject (pair index even / odd; the default, so no scored prompt's subject
 * is ever a calibration prompt's subject) or by template (template index
 * even / odd) - and each fold is scored with the intercept fitted on the
 * other. Every prompt is scored, and none with an intercept that saw it.
 * The mask-and-intercept condition subtracts the same intercepts (fitted on
 * unmasked runs).
 *
 * Work. Two batched passes over the prompts per setting: one unmasked (which
 * also collects the regression data), one with the mask. Because (b) edits
 * only the last position's final residual, its logits follow from the last
 * layer's captured resid_mid and mlp_out (mitigate_final_resid, then the
 * final readout) - the same numbers the hook gives (mitigate.h; the tests
 * check it), without two more passes.
 */
#ifndef FL_EVAL_H
#define FL_EVAL_H

#include "analysis/batch.h"

typedef enum {
	EVAL_BASELINE,
	EVAL_MASK,
	EVAL_INTERCEPT,
	EVAL_BOTH,
	EVAL_COND_COUNT
} fl_eval_cond;

typedef enum {
	EVAL_SPLIT_SUBJECT,
	EVAL_SPLIT_TEMPLATE,
} fl_eval_split;

typedef struct {
	fl_template_set	 set;
	unsigned	 seed;		/* k-shot demonstrations */
	fl_eval_split	 split;
	bool		 with_resid;	/* resid_pre as a regressor (default) */
	double		 ridge;		/* < 0: DECOMP_RIDGE */
	int		 batch;		/* prompts per pass */
	const bool	*mask_heads;	/* (H) or NULL: mask every head */
	bool		 single_token;	/* task.h: drop multi-token answers */
	bool		 counterfactual;	/* task.h: the context states another
					   answer; scored on both */
} fl_eval_opts;

typedef struct {
	double	mean_prob;
	double	top1;		/* fraction of prompts with the answer ranked first */
	double	mean_rank;
	/* counterfactual prompts: the same for the answer the context states */
	double	ctx_mean_prob, ctx_top1, ctx_mean_rank;
} fl_eval_stats;

typedef struct {
	int		 shots;
	int		 n;		/* prompts scored */
	int		 multi_token;	/* of which the answer has several tokens */
	int		 dropped;	/* by single_token */
	bool		 counterfactual;	/* ctx_prob and ctx_rank are set */
	fl_eval_stats	 cond[EVAL_COND_COUNT];
	double		 calib_r2[2];	/* the intercept fit of each fold */
	int		 calib_n[2];	/* its calibration prompts */
	double		*prob;		/* (n, EVAL_COND_COUNT) per prompt */
	int		*rank;		/* (n, EVAL_COND_COUNT) */
	double		*ctx_prob;	/* (n, EVAL_COND_COUNT) the in-context answer's */
	int		*ctx_rank;	/* (n, EVAL_COND_COUNT); both NULL unless
					   counterfactual */
	int		*ctx_pair;	/* (n) whose answer the context states */
	int		*pair;		/* (n) each prompt's pair in the task */
	int		*tmpl;		/* (n) its template's index in the set */
	double		 seconds;
	long		 passes, rows;	/* engine passes and tokens run */
	long		 rows_resumed;	/* of which resumed at the last layer */
} fl_eval_result;

const char *eval_cond_name(fl_eval_cond c);	/* "baseline", "mask", ... */
const char *eval_split_name(fl_eval_split s);	/* "subject", "template" */

/* Sets the defaults: main templates, seed 1, split by subject, resid_pre
 * on, default ridge, batches of 32. */
void eval_opts_init(fl_eval_opts *o);

/* The prompts of one setting (shots demonstrations), as eval_task makes
 * them. 0, or -1 with *cause. Free with prompt_set_clear. */
int eval_prompts(fl_prompt_set *ps, const fl_model *m, const fl_task *t,
    const fl_eval_opts *o, int shots, char **cause);

/* What the two passes leave of a setting's prompts: everything the grid
 * needs of them (eval_finish fits the intercepts and scores from it alone).
 * Row j is prompt idx[j] of the setting's prompt set. */
typedef struct {
	int	 k;		/* rows */
	int	 J, D;		/* regressors (decompose.h), width */
	int	*idx;		/* (k) each row's prompt */
	float	*x;		/* (k, J, D) the last layer's regressors at the
				 * last position (unmasked run) */
	float	*mid[2];	/* (k, D) the last layer's resid_mid at the last
				 * position: [0] unmasked, [1] masked */
	float	*mlp[2];	/* (k, D) its mlp_out: [0] unmasked (the
				 * regression's target), [1] masked */
	long	 passes, rows, rows_resumed;
	double	 seconds;
} fl_eval_rows;

/* Allocates k rows for the model and options (idx zeroed); free with
 * eval_rows_clear. */
void eval_rows_init(fl_eval_rows *r, const fl_model *m, const fl_eval_opts *o,
    int k);
void eval_rows_clear(fl_eval_rows *r);

/* The two passes (unmasked, masked) over prompts idx[0..k) of ps, in that
 * order (idx NULL: all of them), into *r (allocated here). Which prompts
 * share a batch changes no number. progress sees 2 * k prompt-passes. 0;
 * FL_STOPPED (*r empty); or -1 with *cause. */
int eval_collect(fl_eval_rows *r, const fl_model *m, const fl_prompt_set *ps,
    const int *idx, int k, const fl_eval_opts *o, const fl_progress *progress,
    char **cause);

/* The grid from rows holding every prompt of ps in order (row i prompt i):
 * the two folds' intercepts fitted, the four conditions scored. Its passes,
 * rows and seconds are r's (plus the fitting's time). 0, or -1 with *cause.
 * Free with eval_clear. */
int eval_finish(fl_eval_result *res, const fl_model *m, const fl_prompt_set *ps,
    const fl_eval_rows *r, const fl_eval_opts *o, int shots, char **cause);

/* The grid for one setting (shots demonstrations; 0: zero-shot): the
 * prompts, eval_collect over all of them, eval_finish. progress
 * (may be NULL) sees prompt-passes: 2 * n in all, and may stop the grid
 * after any batch. 0; FL_STOPPED when progress asked to stop (*res is
 * empty); or -1 with *cause. Free with eval_clear. */
int eval_task(fl_eval_result *res, const fl_model *m, const fl_task *t,
    const fl_eval_opts *o, int shots, const fl_progress *progress,
    char **cause);
void eval_clear(fl_eval_result *res);

/* The fold (0 or 1) of a prompt under a split. */
int eval_fold(const fl_prompt *p, fl_eval_split split);

#endif
