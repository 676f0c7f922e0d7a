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
 * the mean over prompts of cos(m_n, m_hat_n).
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
} fl_regress;

/* Fits y (N, D) on x (N, J, D) as above. ridge < 0 means DECOMP_RIDGE.
 * 0, or -1 with *cause (fewer than 2 samples, a singular system). Free with
 * regress_clear. */
int regress_fit(fl_regress *f, const float *x, const float *y, int N, int J,
    int D, double ridge, char **cause);
void regress_clear(fl_regress *f);

/* yhat (D) = sum_j beta_j x_j + b for one sample's x (J, D). */
void regress_predict(const fl_regress *f, const float *x, float *yhat);

/* What one layer's MLP looks like at the last position of N prompts. */
typedef struct {
	int		 layer;
	bool		 with_resid;	/* regressor H is resid_pre */
	int		 n_head;
	fl_regress	 fit;
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

/* Runs the prompts (batched with b) and fits layer's decomposition. 0;
 * FL_STOPPED when b's progress callback asked to stop (*d is empty); or
 * -1 with *cause. Free with decomp_clear. */
int decomp_fit(fl_decomp *d, fl_batch *b, const fl_prompt *p, int n, int layer,
    bool with_resid, double ridge, char **cause);
void decomp_clear(fl_decomp *d);

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

#endif
