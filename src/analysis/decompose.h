/*
 * decompose.h - the MLP decomposition (paper notes, section 5): at layer l
 * and the last position, over N prompts of a task, the MLP's output m_n is
 * regressed on the layer's J regressors x_{n,j} (its H per-head outputs,
 * optionally resid_pre as one more) with ONE scalar per regressor and one
 * vector intercept:
 *     m_n ~= sum_j beta_j x_{n,j} + b
 * Closed form: centre x and m over prompts; G_jk = sum_n <x~_nj, x~_nk>,
 * r_j = sum_n <x~_nj, m~_n>; beta = (G + ridge * tr(G)/J * I)^-1 r, solved by
 * Cholesky; b = mean(m) - sum_j beta_j mean(x_j). Everything is accumulated
 * in double. Reported: R^2 = 1 - SS_res / SS_tot over all N x D entries, and
 * the mean over prompts of cos(m_n, m_hat_n); beside them, what says whether
 * the fit explains anything (paper notes, section 5):
 *  - R^2 held out by leave-one-subject-out: for each subject, the fit
 *    without every prompt of that subject predicts that subject's prompts;
 *    the residuals of all folds are pooled, R^2_heldout = 1 - SSE_heldout /
 *    SS_tot (SS_tot about the mean over all prompts, as in-sample);
 *  - the mean-only baseline: m_hat_n = mean(m) for every prompt, its mean
 *    cosine (in-sample) and its held-out R^2 (each subject predicted by the
 *    mean of the others' m: below 0);
 *  - the answer's rank in the part the heads do not explain, m_n - sum_j
 *    beta_j x_nj (= the intercept + prompt n's residual), read through the
 *    unembedding like the intercept's top tokens.
 * Other forms of the decomposition (decomp_form_fit below) are offered as
 * hypotheses to compare by the same figures.
 *
 * Reading it: after the MLP, head j's net contribution is about
 * (1 + beta_j) x_j: beta ~ -1 erased, beta > 0 amplified. The intercept is the
 * task-aware component; its top tokens through the lens should be answers.
 *
 * Post-LN models (opt-350m). The fit is the same linear fit of the MLP's
 * output on the raw head outputs, and R^2, the coefficients and the
 * intercept mean what they say. The reading above does not carry over:
 * there the heads' outputs reach the MLP, and the stream the MLP adds to,
 * only through the block's ln1 (centred, scaled by its gain over a
 * per-prompt scale), so x_j is not what the MLP's output sums with, and
 * (1 + beta_j) x_j is not head j's net contribution. The intercept is
 * still the MLP's constant part, written before the block's ln2; that is
 * where intercept removal takes it off (mitigate.h), and its tokens are
 * read through the LNs after that site at unit scale (attrib_carry).
 */
#ifndef FL_DECOMPOSE_H
#define FL_DECOMPOSE_H

#include <stdbool.h>

#include "analysis/batch.h"

#define DECOMP_RIDGE 1e-6

/* The generic fit. */
typedef struct {
	int	 n, J, D;
	double	 ridge;
	double	*beta;		/* (J) */
	float	*intercept;	/* (D) */
	float	*mean_x;	/* (J, D) each regressor's mean over the samples */
	float	*mean_y;	/* (D) */
	double	 r2;
	double	 mean_cos;
	double	 baseline_cos;	/* mean over samples of cos(y_n, mean(y)) */
} fl_regress;

/* Fits y (N, D) on x (N, J, D) as above. ridge < 0 means DECOMP_RIDGE.
 * 0, or -1 with *cause (fewer than 2 samples, a singular system). Free with
 * regress_clear. */
int regress_fit(fl_regress *f, const float *x, const float *y, int N, int J,
    int D, double ridge, char **cause);
void regress_clear(fl_regress *f);

/* yhat (D) = sum_j beta_j x_j + b for one sample's x (J, D). */
void regress_predict(const fl_regress *f, const float *x, float *yhat);

/* The fit held out by groups (leave one group out, as described above). */
typedef struct {
	int	 folds;		/* groups left out in turn; < 2: nothing is
				 * held out */
	double	 r2;		/* 1 - SSE_heldout / SS_tot; NAN when undefined
				 * (fewer than 2 groups, a fold's system singular) */
	double	 mean_cos;	/* mean of cos(y_n, its held-out prediction) */
	double	 baseline_r2;	/* the same for the other groups' mean of y */
} fl_heldout;

/* Solves (A + ridge * tr(A)/J * I) beta = r for symmetric A (J, J), in
 * place: r becomes beta, A is overwritten. -1 when not positive definite. */
int regress_solve(double *A, double *r, int J, double ridge);

/* Fits y (N, D) on x (N, J, D) as regress_fit does once per distinct value
 * of group (N), without the samples of that group, and predicts them.
 * Sufficient statistics are summed once (about the overall mean, in
 * double), so it costs about one fit. ridge < 0 means DECOMP_RIDGE. Fills
 * *h (NAN where undefined); no allocation survives. */
void regress_heldout(fl_heldout *h, const float *x, const float *y,
    const int *group, int N, int J, int D, double ridge);

/* What one layer's MLP looks like at the last position of N prompts. */
typedef struct {
	int		 layer;
	bool		 with_resid;	/* regressor H is resid_pre */
	int		 n_head;
	fl_regress	 fit;
	fl_heldout	 heldout;	/* leave-one-subject-out (subject_pair) */
} fl_decomp;

/* Hooks that collect the regressors and the target in a batched pass: for
 * prompt i, x + i * J * D gets the H head results (and resid_pre) of `layer`
 * at the last position, y + i * D its MLP output. Fill the struct, then
 * call decomp_hooks, which writes up to 4 hooks (the last stops the pass
 * after the layer when stop is set) and returns their count. */
typedef struct {
	const fl_batch	*b;
	int		 layer;
	bool		 with_resid;
	float		*x;		/* (N, J, D) */
	float		*y;		/* (N, D) */
	fl_grab		 g_resid, g_mlp;
} fl_decomp_collect;
int decomp_hooks(fl_decomp_collect *c, bool stop, fl_hook *hooks);

/* Number of regressors: H, plus one with resid_pre. */
int decomp_regressors(const fl_model *m, bool with_resid);

/* What a decomposition is fitted on: layer's regressors and MLP output at
 * the last position of n prompts, and who each prompt is about. */
typedef struct {
	int	 layer, n, J, H, D;
	bool	 with_resid;	/* regressor H is resid_pre */
	float	*x;		/* (n, J, D) */
	float	*y;		/* (n, D) */
	int	*group;		/* (n) the subject's pair: what leave-one-subject-
				 * out leaves out */
	int	*answer;	/* (n) the answer's first token */
	int	*subject;	/* (n) the subject's first token */
} fl_decomp_data;

/* Allocates *dd for n prompts (x, y uninitialised) and fills group, answer
 * and subject from p. Free with decomp_data_clear. */
void decomp_data_init(fl_decomp_data *dd, const fl_model *m, const fl_prompt *p,
    int n, int layer, bool with_resid);

/* Runs the prompts (batched with b) and collects layer's data into *dd. 0;
 * FL_STOPPED when b's progress callback asked to stop (*dd is empty); or
 * -1 with *cause. Free with decomp_data_clear. */
int decomp_collect(fl_decomp_data *dd, fl_batch *b, const fl_prompt *p, int n,
    int layer, bool with_resid, char **cause);
void decomp_data_clear(fl_decomp_data *dd);

/* The pooled fit of collected data, held out too. 0, or -1 with *cause.
 * Free with decomp_clear. */
int decomp_fit_data(fl_decomp *d, const fl_decomp_data *dd, double ridge,
    char **cause);

/* decomp_collect, then decomp_fit_data. 0; FL_STOPPED (*d is empty); or
 * -1 with *cause. Free with decomp_clear. */
int decomp_fit(fl_decomp *d, fl_batch *b, const fl_prompt *p, int n, int layer,
    bool with_resid, double ridge, char **cause);
void decomp_clear(fl_decomp *d);

/* How alike intercepts fitted on different tasks are (the paper's
 * "task-aware" intercept: capital, language and currency ones should
 * differ): cos (n, n) gets the cosine of each two of the n vectors v (n, D)
 * and norm (n; may be NULL) each one's norm, summed in double. A zero
 * vector's cosines are NAN. */
void decomp_intercept_cosines(const float *v, int n, int D, double *cos,
    double *norm);

/* The 1-based rank of answers[i] in the lens of vectors u (n, D) written at
 * layer's MLP (attrib_vocab at unit scale, which changes no rank), into
 * ranks (n). The unembedding is read in chunks of rows. */
void decomp_lens_ranks(const fl_model *m, int layer, const float *u, int n,
    const int *answers, int *ranks);

/* The 1-based rank of v[k] among v (n): 1 + how many are larger. */
int decomp_rank_among(const float *v, int n, int k);

/* The median (the mean of the middle two for even n) and the mean of n
 * ranks; NAN for n < 1. */
void decomp_rank_summary(const int *ranks, int n, double *median, double *mean);

/* For one prompt in a cache (a full pass): the regressors and the MLP output
 * at pos, the prediction, and how well it matches. x is (J, D), m and mhat
 * (D); any may be NULL. */
typedef struct {
	double	cos;		/* cos(m, mhat) */
	double	rel_err;	/* |m - mhat| / |m| */
	double	r2;		/* 1 - |m - mhat|^2 / |m - mean(m)|^2 over D */
} fl_recon;
int decomp_prompt(const fl_decomp *d, const fl_model *m, const fl_cache *c,
    int pos, float *x, float *mlp, float *mhat, fl_recon *out, char **cause);

/* ---- the forms: readings of the decomposition to compare ------------ *
 *
 * Each form regresses a target on regressors from the same collected data
 * (fl_decomp_data) and reports the same figures: R^2 in-sample and held
 * out, the mean cosine of target and fit, the mean-only baseline (the
 * target's mean over prompts predicting every prompt) and the answer's
 * rank in the part the regressors do not explain.
 *
 *  pooled       the fit above: m_n ~= sum_j beta_j x_nj + b, one beta per
 *               regressor, one vector intercept. Held out: leave one
 *               subject out.
 *  per-prompt   each prompt alone: m_n ~= sum_j beta_nj x_nj across the D
 *               coordinates, J scalars per prompt, no intercept. R^2 is the
 *               mean over prompts of 1 - |m_n - mhat_n|^2 / |m_n -
 *               mean_i(m_n)|^2 (the sum of squares about the prompt's mean
 *               coordinate, as decomp_prompt's R^2). No fit sees another
 *               prompt, so leave-one-subject-out does not apply: held out
 *               across coordinates instead, DECOMP_COORD_FOLDS folds
 *               (coordinate i in fold i mod K), each predicted from a fit on
 *               the other coordinates. Its baseline_r2 is the other
 *               subjects' mean m scored the same way per prompt.
 *  subject-dir  m_n ~= alpha u_n + b, u_n the unit vector along which a
 *               vector written at the MLP moves the logit of the prompt's
 *               subject token (W_U[:, subject] carried back through the
 *               LayerNorms at unit scale, attrib_site_dirs), ONE alpha shared
 *               by every prompt and a vector intercept: one alpha per prompt
 *               could not predict a held-out prompt without fitting on it.
 *               Held out: leave one subject out.
 *  logit        the pooled fit in the vocabulary space of the task's answer
 *               tokens: target y_n(a) = m_n's direct logit on answer token
 *               a, regressors x_nj(a) = x_nj's, for each of the task's A
 *               distinct answer tokens (LayerNorms at unit scale, so up to
 *               each prompt's positive LN scale); a vector intercept in that
 *               A-space. Cosines are in that space, and the answer's rank is
 *               among the A answers. Held out: leave one subject out.
 *
 * The unexplained part: m_n - the regressors' part (pooled, per-prompt:
 * the heads' and resid_pre's; subject-dir: alpha u_n), read at the MLP's
 * site through the unembedding; for logit, y_n minus the regressors' part
 * in answer space. Post-LN models: the same fits; the site directions
 * cross the block LNs after the MLP (attrib.h).
 */
#define DECOMP_COORD_FOLDS 8

typedef enum {
	DECOMP_FORM_POOLED,
	DECOMP_FORM_PER_PROMPT,
	DECOMP_FORM_SUBJECT_DIR,
	DECOMP_FORM_LOGIT,
	DECOMP_FORM_COUNT
} fl_decomp_form;

typedef struct {
	fl_decomp_form	 form;
	int		 n, J, D;	/* D: the target's coordinates (logit: A) */
	double		 r2;
	double		 mean_cos;
	double		 baseline_cos;	/* mean of cos(y_n, mean(y)) */
	fl_heldout	 heldout;
	const char	*heldout_how;	/* static text: how r2_heldout is held out */
	fl_regress	 fit;		/* the shared fit; empty for per-prompt */
	double		*beta_prompt;	/* per-prompt: (n, J); else NULL */
	int		 n_answers;
	int		*answers;	/* (n_answers) the distinct answer tokens in
					 * order of first appearance: logit's
					 * coordinates */
	int		*rank;		/* (n) 1-based rank of each prompt's answer
					 * in its unexplained part */
	int		 rank_of;	/* among how many: V, or n_answers (logit) */
} fl_decomp_form_fit;

/* A form's name: "pooled", "per-prompt", "subject-dir", "logit"; and the
 * form of a name, or -1 for another. */
const char *decomp_form_name(fl_decomp_form form);
int decomp_form_parse(const char *name);

/* Fits form on dd (collected for model m). ridge < 0 means DECOMP_RIDGE.
 * 0, or -1 with *cause (too few prompts, a singular system). Free with
 * decomp_form_clear. */
int decomp_form_fit(fl_decomp_form_fit *f, const fl_model *m,
    const fl_decomp_data *dd, fl_decomp_form form, double ridge, char **cause);
void decomp_form_clear(fl_decomp_form_fit *f);

/* The unit direction u (D) of the subject form for token `token` at layer's
 * MLP, as above. */
void decomp_subject_dir(const fl_model *m, int layer, int token, float *u);

#endif
