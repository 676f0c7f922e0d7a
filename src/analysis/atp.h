/*
 * atp.h - attribution patching (Nanda 2023; AtP, Kramar et al. 2024): the
 * effect of patching every head (and every neuron of one layer) from a
 * corrupted prompt into a clean one, estimated at once from two forward
 * passes and one backward pass (engine/backward.h), with the exact patch of
 * any one of them beside it.
 *
 * The metric is read at the last position of the clean prompt:
 *     M = logit(answer) - logit(distractor)
 * or, without a distractor, logit(answer) - the mean logit over the
 * vocabulary. The estimate for head (l, h) is the first-order change of M
 * when that head's z (blocks.l.attn.hook_z) at every position is replaced by
 * the corrupted run's:
 *     atp(l, h) = sum over positions t of (z_corrupt - z_clean)[t, h] .
 *                 dM / dz[t, h]   (the gradient on the clean run)
 * and for neuron i of layer l the same with blocks.l.mlp.hook_post[t, i].
 * The exact patch is one pass over the clean prompt with that head's z (or
 * that neuron's activation) at every position taken from the corrupted run:
 * M_patched - M_clean. The two prompts must have the same number of tokens
 * (positions are paired). Where the estimate and the exact patch differ by
 * more than 2x (or in sign), the first-order estimate is not to be trusted
 * there: typically a saturated attention softmax (AtP*'s warning).
 *
 * Architectures: every one the forward runs (GPT-2, OPT pre- and post-LN,
 * Llama), as the backward.
 */
#ifndef FL_ANALYSIS_ATP_H
#define FL_ANALYSIS_ATP_H

#include <stdbool.h>

#include "analysis/task.h"
#include "base/progress.h"
#include "engine/backward.h"

#define ATP_DISTRACTOR_TOP (-2)

typedef struct {
	int	 answer;	/* token id */
	int	 distractor;	/* token id; -1: the mean logit;
				   ATP_DISTRACTOR_TOP: the corrupted run's top
				   prediction (the mean logit when that is the
				   answer), set in the result's o */
	int	 neuron_layer;	/* the layer whose neurons to estimate, or < 0 */
	bool	 all_neurons;	/* also every layer's neurons (neurons_all) */
} fl_atp_opts;

typedef struct {
	int		 n_layer, n_head, n_tok, d_mlp;
	fl_atp_opts	 o;
	double		 clean;		/* M on the clean prompt */
	double		 corrupt;	/* M on the corrupted prompt */
	double		*heads;		/* (L, H) estimates */
	double		*heads_pos;	/* (L, H, T) the estimates' terms per position */
	double		*neurons;	/* (F) estimates for o.neuron_layer, or NULL */
	double		*neurons_all;	/* (L, F) with o.all_neurons, or NULL */
	/* What the exact patches run from (owned). */
	const fl_model	*m;
	int		*ids;		/* (T) the clean prompt */
	fl_run		*run;
	fl_cache	*c_clean, *c_corrupt;
	float		*logits;	/* (V) */
	float		*dir;		/* (D) M = lnf[T - 1] . dir (grad_metric_dir) */
	float		*last;		/* (D) a patched pass's lnf[T - 1] */
} fl_atp;

/* The estimates for two prompts of T tokens each. 0, or -1 with *cause (a
 * token out of range, a post-LN model, a neuron layer out of range).
 * Free with atp_clear, on failure too. */
int atp_estimate(fl_atp *res, const fl_model *m, const int *clean,
    const int *corrupt, int T, const fl_atp_opts *o, char **cause);

/* The exact patch of head (layer, head), or of neuron i of o.neuron_layer:
 * M_patched - M_clean into *delta. 0, or -1 with *cause. */
int atp_exact_head(fl_atp *res, int layer, int head, double *delta, char **cause);
int atp_exact_neuron(fl_atp *res, int neuron, double *delta, char **cause);

/* Whether an estimate and its exact patch disagree by more than 2x: in
 * sign, or one over twice the other in magnitude. */
bool atp_disagree(double estimate, double exact);

void atp_clear(fl_atp *res);

/*
 * Over a task: the estimates of every head (and of one layer's neurons)
 * averaged over the task's prompts, each prompt paired with a corrupted one
 * as path patching draws it (task_prompts with corrupt set: the subject
 * replaced by another pair's, drawn from the seed). The positions are paired,
 * so when the drawn subject makes the prompt another number of tokens, the
 * next pairs in task order are tried, and the first whose subject gives the
 * same count (and whose answer starts with another token) is taken; a prompt
 * with no such pair is skipped and counted. Each prompt's metric is
 * logit(answer) - logit(distractor), the distractor the corrupted subject's
 * answer (its first token, as the task scores it).
 */
typedef struct {
	int	 n_layer, n_head, d_mlp, neuron_layer;
	int	 n_prompts;	/* prompts estimated */
	int	 n_skipped;	/* prompts without a corrupted twin of their length */
	int	 n_redrawn;	/* prompts whose drawn subject was replaced */
	double	 clean;		/* mean M on the clean prompts */
	double	 corrupt;	/* mean M on the corrupted prompts */
	double	*heads;		/* (L, H) mean estimates */
	double	*neurons;	/* (F) mean estimates for neuron_layer, or NULL */
} fl_atp_task;

/* The corrupted twin of clean prompt i of clean (pairs x templates, as
 * task_prompts makes them; drawn, the same index of drawn, made with
 * o->corrupt set), chosen as above, into *out (free with prompt_clear), its
 * distractor token in *distractor. 0; 1 when no pair fits (*out empty); -1
 * with *cause. */
int atp_task_twin(fl_prompt *out, int *distractor, const fl_model *m,
    const fl_task *t, const fl_prompt_opts *o, const fl_prompt_set *clean,
    const fl_prompt_set *drawn, int i, char **cause);

/* Estimates over every prompt of clean, progress p (may be NULL) told after
 * each prompt (clean->n units, "attribution patching"). neuron_layer < 0:
 * heads only. 0; FL_STOPPED when p asked to stop (*res empty); -1 with
 * *cause (no prompt had a twin, a layer out of range). Free with
 * atp_task_clear. */
int atp_task(fl_atp_task *res, const fl_model *m, const fl_task *t,
    const fl_prompt_opts *o, const fl_prompt_set *clean,
    const fl_prompt_set *drawn, int neuron_layer, const fl_progress *p,
    char **cause);
void atp_task_clear(fl_atp_task *res);

/*
 * atp_task in its steps, for a task split into shards (each estimates its
 * own prompts; the merge adds them up in prompt order, as atp_task does,
 * so the result is the same to the bit).
 */
typedef struct {
	bool	 skipped;	/* no corrupted twin of its length */
	bool	 redrawn;	/* the drawn subject was replaced */
	double	 clean, corrupt;	/* M on the clean and the corrupted prompt */
	double	*heads;		/* (L, H) estimates, NULL when skipped */
	double	*neurons;	/* (F) of the neuron layer, or NULL */
} fl_atp_prompt;

/* Prompt i of clean, paired as atp_task pairs it, estimated into *out
 * (skipped set when it has no twin). 0, or -1 with *cause. Free with
 * atp_prompt_clear, on failure too. */
int atp_task_prompt(fl_atp_prompt *out, const fl_model *m, const fl_task *t,
    const fl_prompt_opts *o, const fl_prompt_set *clean,
    const fl_prompt_set *drawn, int i, int neuron_layer, char **cause);
void atp_prompt_clear(fl_atp_prompt *p);

/* An empty sum for m (neuron_layer < 0: heads only; must be a layer of
 * m's), one prompt's result added, and the means: finish returns 0, or -1
 * with *cause naming task_path when no prompt was estimated. */
void atp_task_init(fl_atp_task *res, const fl_model *m, int neuron_layer);
void atp_task_add(fl_atp_task *res, const fl_atp_prompt *p);
int atp_task_finish(fl_atp_task *res, const char *task_path, char **cause);

/* Spearman's rank correlation of x and y (n values each; pairs with a NAN
 * left out; tied values take their mean rank): NAN when fewer than two
 * pairs are left or either side is constant. */
double atp_spearman(const double *x, const double *y, int n);

#endif
