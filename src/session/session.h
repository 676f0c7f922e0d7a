/*
 * session.h - the explorer's state: the model, the prompt, what the user
 * chose (answer, subject, layer, head, metric, toggles) and what was
 * computed from them. Nothing here draws; panes read a session, commands
 * change its choices and say which results went stale (SESSION_* flags),
 * and session_update() recomputes exactly those.
 *
 * Costs, so that each action stays quick: a new prompt runs the full pass
 * once with the activation cache and reads the unembedding once for every
 * layer's lens at the last position; a toggle of the final-layer mask
 * resumes the pass at the last layer from the cache; moving the cursor reads
 * the unembedding once for the cursor's few rows (resid_mid, the MLP output
 * and the selected head's output).
 *
 * A loaded task (session_load_task) adds what is fitted on its prompts, on
 * demand and cached until the task, the model or the left-out subject
 * changes: the cursor layer's MLP decomposition (decompose.h), the final
 * MLP's intercept that mitigation (b) subtracts, and the path-patching
 * metric (patch.h), computed when the heads grid first shows it.
 */
#ifndef FL_UI_SESSION_H
#define FL_UI_SESSION_H

#include <stdbool.h>

#include "analysis/atp.h"
#include "analysis/decompose.h"
#include "analysis/neurons.h"
#include "analysis/eval.h"
#include "analysis/patch.h"
#include "analysis/task.h"
#include "analysis/trace.h"
#include "engine/forward.h"

#define UI_TOPK_MAX 20
#define UI_NEURON_ROWS 16	/* neurons the pane lists */
#define UI_NEURON_TOP 4		/* value-vector tokens per listed neuron */
#define UI_NEURON_SEARCH_K 10	/* :neurons search: TOKEN among a value
				   vector's top 10 */

enum { NEURON_SORT_ANSWER, NEURON_SORT_SUBJECT, NEURON_SORT_ACT,
    NEURON_SORT_COUNT };
#define SESSION_TASK_MOVERS_MAX 600	/* prompts; the paper's task has 225 */

typedef enum {
	METRIC_ATTN_SUBJECT,	/* attention from the last position to the subject */
	METRIC_DIRECT,		/* direct contribution to the answer's logit difference */
	METRIC_MOVER,		/* mover score: attention to subject x its rank (movers.h) */
	METRIC_PATCH,		/* path-patching effect over the task (patch.h) */
	METRIC_ATP,		/* attribution patching from a corrupted prompt (atp.h) */
	METRIC_COUNT
} ui_metric;

const char *metric_name(ui_metric m);	/* "attn", "direct", "mover", "patch", "atp" */
const char *metric_title(ui_metric m);	/* "attention to subject", ... */
bool metric_signed(ui_metric m);
int metric_parse(const char *s);	/* -1 when unknown */

/* One row of a lens: the answer's probability and rank, the top tokens. For
 * a component (a head's or an MLP's output) the "logits" are its direct
 * contributions and probabilities are not meaningful: top_val holds logits. */
typedef struct {
	double	 prob;
	int	 rank;
	float	 answer_logit;
	int	 n_top;
	int	 top_ids[UI_TOPK_MAX];
	float	 top_val[UI_TOPK_MAX];	/* probability (streams) or logit (components) */
} ui_lens_row;

/* The stream rows of the lens: resid_pre of layers 0..L-1, then the final
 * resid_post (row L). resid_post of layer l is row l + 1. */

enum {
	SESSION_LOAD = 1 << 0,		/* load model_dir */
	SESSION_RUN = 1 << 1,		/* the prompt changed: full pass */
	SESSION_LAST = 1 << 2,		/* a toggle changed: re-run the last layer */
	SESSION_ANSWER = 1 << 3,	/* the answer changed: lens statistics */
	SESSION_SUBJECT = 1 << 4,	/* the subject changed */
	SESSION_VIEW = 1 << 5,		/* the layer or head cursor moved */
	SESSION_GRID = 1 << 6,		/* the heads metric changed */
	SESSION_TASK = 1 << 7,		/* the task changed: drop its fits */
};

/* Long work reports progress and may be stopped (Ctrl-C): fl_progress,
 * base/progress.h, polled at each batch and layer boundary. */

/* The choices the results show: what a cancelled update goes back to. */
typedef struct {
	char		*model_dir, *prompt, *answer_text, *subject_text;
	bool		 answer_space, mask, intercept;
	int		 layer, head;
	ui_metric	 metric;
} ui_choices;

/* Side by side (:compare): a second run, B, beside the session's own, A.
 * B is this prompt with one condition flipped, or another prompt (a
 * corrupted one) with A's other choices; either way it scores A's answer
 * token and shows A's heads metric. */
typedef enum {
	COMPARE_OFF,
	COMPARE_PROMPT,		/* B: compare_prompt, the same toggles */
	COMPARE_MASK,		/* B: this prompt with the final-layer mask flipped */
	COMPARE_INTERCEPT,	/* B: this prompt with the intercept removal flipped */
} ui_compare;

const char *compare_name(ui_compare k);	/* "off", "prompt", "mask", "intercept" */

/* The flow pane (flow.c): where the fact lives, as causal tracing's map
 * (trace.h: P(answer) with one state of the corrupted run restored, per
 * layer and position) or attention knockout's curves (P(answer) with the
 * last position's attention to the subject, the relation or itself
 * blocked from each start layer on). Both run the model as it is: no
 * mask, intercept or neuron edit. */
typedef enum {
	FLOW_OFF,
	FLOW_TRACE,
	FLOW_KNOCKOUT,
} ui_flow_view;

const char *flow_view_name(ui_flow_view v);	/* "off", "trace", "knockout" */

typedef struct {
	fl_trace_kind	 kind;
	int		 window;	/* mlp and attn; resid ignores it */
	int		 samples;
	uint64_t	 seed;
} ui_flow_opts;

/* One computed map, kept for its prompt, answer, subject and options. */
typedef struct {
	int		*ids;		/* (n) */
	int		 n, answer, subj_pos, subj_len;
	ui_flow_opts	 o;
	fl_trace	 tr;
	long		 used;		/* when last shown: the oldest goes first */
} ui_flow_entry;

#define SESSION_FLOW_CACHE 8	/* maps kept */

typedef struct ui_session {
	/* The model. */
	fl_model	*model;		/* NULL until one is loaded */
	char		*model_dir;	/* asked for (may not be loaded) */
	fl_model_opts	 model_opts;	/* how it is loaded (--weights) */
	char		*model_name;	/* last path component, for display */
	float		*unembed_mean;	/* (P) mean unembedding row, once per model
					   for attrib_direct */

	/* The user's choices. */
	char		*prompt;
	char		*answer_text;	/* NULL: the top prediction */
	bool		 answer_space;	/* answer_text follows a space */
	char		*subject_text;	/* NULL: guessed */
	bool		 mask;		/* mitigation (a): final-layer self mask */
	bool		*mask_heads;	/* (H) the heads it masks, or NULL: all */
	bool		 intercept;	/* mitigation (b): subtract the intercept */
	int		 layer;		/* cursor, 0..L-1 */
	int		 head;		/* cursor, 0..H-1 */
	ui_metric	 metric;
	int		 topk;

	/* Results of the last successful run (valid when n_tok > 0). */
	int		 n_tok;
	int		*ids;		/* (T) */
	int		*tok_end;	/* (T) byte offset in prompt where token t ends */
	fl_cache	*cache;
	fl_cache	*spare_cache;	/* the one before, for cache_reuse */
	fl_run		*run;
	int		 run_rows;	/* rows the run was sized for */
	int		 answer_id;
	int		 subject_pos;	/* its last token; -1 when there is none */
	int		 subject_first;	/* its first token */
	bool		 subject_guessed;
	float		*lens_logits;	/* (L + 4, V), kept from prompt to prompt:
					   stream_logits, then view_logits */
	float		*stream_logits;	/* (L + 1, V) */
	ui_lens_row	*streams;	/* (L + 1) */
	ui_lens_row	 base_final;	/* the final row without interventions */
	float		*base_logits;	/* (V) its logits */
	float		*view_logits;	/* (3, V): resid_mid, MLP out, head out */
	float		*near_logits;	/* (L, 3, V): view rows of other layers,
					   made beside a layer step's own */
	int		*near_head;	/* (L): the head near_logits[l] holds,
					   -1 when it holds nothing valid */
	ui_lens_row	 view_mid, view_mlp, view_head;
	int		 view_layer, view_head_h;	/* what view_logits hold */
	float		 mlp_direct;	/* cursor layer's MLP, direct contribution */
	float		 head_direct;	/* selected head, direct contribution */
	float		*grid;		/* (L, H) current metric, NAN: not computed */
	float		*attn_subj;	/* (L, H) attention to the subject */
	float		*direct;	/* (L, H) direct contribution to the answer */
	float		*direct_subj;	/* (L, H) what each head adds to the subject's logit */
	float		*mover;		/* (L, H) mover score (movers.h) */
	bool		*is_mover;	/* (L, H) highlighted argument-extracting heads */
	bool		 movers_valid;	/* mover, direct_subj, is_mover hold this run's */

	/* The loaded task (:task) and what is fitted on its main prompts,
	 * leaving out the prompts of task_pair (the pair whose subject this
	 * prompt holds, as factlens run --task does; -1: none left out). The
	 * fits are made on demand by session_update and kept until the task,
	 * the model or the left-out pair changes. */
	fl_task		*task;		/* NULL until one is loaded */
	int		 task_pair;
	int		 shots;		/* demonstrations before each of the task's
					 * prompts, fitted and loaded (:shots) */
	fl_decomp	*decomp;	/* (L) the MLP decomposition per layer */
	bool		*decomp_valid;	/* (L) */
	ui_lens_row	 decomp_icpt;	/* the cursor layer's intercept through the unembedding */
	fl_recon	 recon;		/* this prompt's reconstruction at the cursor layer */
	int		 recon_layer;	/* -1: recon and decomp_icpt not computed */
	char		*decomp_error;	/* why the cursor layer has no fit, or NULL */
	int		 decomp_error_layer;	/* the layer it is about (not retried) */
	/* The intercept b of the final MLP (D), the decomposition intercept at
	 * layer L-1 (paper notes section 5); NULL until `i` fits it. */
	float		*intercept_vec;
	int		 intercept_pair;	/* task_pair it left out */
	/* Path patching (METRIC_PATCH): this prompt as the clean run, the
	 * task's corrupted prompts as D_new; computed when first shown. */
	fl_patch	 patch;
	bool		 patch_valid;
	char		*patch_error;	/* why it could not be computed, or NULL */
	/* Attribution patching (METRIC_ATP): this prompt as the clean run, the
	 * corrupted one given by :corrupt, else made from the loaded task (the
	 * subject replaced by the next pair's subject of as many tokens);
	 * computed when first shown; the exact patches one cell at a time (x).
	 * Dropped with the prompt's results, the answer, subject or task. */
	char		*corrupt_text;	/* :corrupt TEXT, or NULL: from the task */
	fl_atp		 atp;
	bool		 atp_valid;
	char		*atp_error;	/* why it could not be computed, or NULL */
	char		*atp_corrupt;	/* the corrupted prompt it used */
	double		*atp_exact;	/* (L, H) the exact patches, NAN: not run */

	/* The MLP pane at neuron level (:neurons, n): the cursor layer's
	 * neurons at the last position (neurons.h), sorted by neuron_sort,
	 * the first UI_NEURON_ROWS with their value vectors' top tokens;
	 * with the decomposition fitted there, the intercept split into
	 * neurons. Recomputed by session_update while neurons_on. */
	bool		 neurons_on;
	int		 neuron_sort;	/* NEURON_SORT_* */
	fl_neurons	 neurons;	/* act NULL: not computed */
	int		*neuron_order;	/* (F) by the sort, strongest first */
	int		 neuron_top[UI_NEURON_ROWS][UI_NEURON_TOP];	/* ids */
	/* The intercept at the cursor layer split into neurons: the mean
	 * activation over the fit's prompts times w_out, read as a direct
	 * effect on the answer (icpt_neuron, (F)); with b_out's and the
	 * regressors' mean part (- sum_j beta_j mean x_j) it sums to the
	 * intercept's (icpt_total). NULL until computed for icpt_layer. */
	double		*icpt_neuron;
	double		 icpt_bias, icpt_regressors, icpt_total;
	float		*icpt_mean_act;	/* (F) the mean activations of icpt_layer */
	int		 icpt_layer;
	/* Neuron edits, live in every pass (hooks on mlp.hook_post); an edit
	 * resumes the prompt's pass at its layer from the cache. */
	fl_neuron_edit	*edits;
	int		 n_edits;
	int		 resume_layer;	/* -1: a full pass */
	/* :neurons search: each layer's value-vector top UI_NEURON_SEARCH_K
	 * (F, K) ids, made once per model. */
	int		**value_top;	/* (L), NULL until made */
	/* The paper's mover criterion over the whole task (patch_movers): path
	 * patching of the task's main prompts (with the session's shots)
	 * against their corrupted twins, computed by the first update after
	 * the task or the shots change. The heads grid stars its movers
	 * whatever metric it shows; the head pane draws the selected head's
	 * scatter (task_patch.attn, .proj). Not for tasks of more than
	 * SESSION_TASK_MOVERS_MAX prompts (task_patch_error says so). */
	fl_patch	 task_patch;
	bool		 task_patch_valid;
	char		*task_patch_error;	/* why it is not computed, or NULL */
	bool		*task_mover;	/* (L, H) when task_patch_valid */

	/* The last :eval (session_eval): the loaded task's grid with eval's
	 * defaults at these shots; kept until the model, the task or the
	 * shots change, for :export and :plot. */
	fl_eval_result	 eval;
	fl_eval_opts	 eval_opts;
	bool		 eval_valid;

	/* The flow pane (flow.c). Its cell cursor is (lens_pos, layer): a
	 * row is a position, a column a layer (in the knockout view a row is
	 * a start layer, the layer cursor, and a column a block). */
	ui_flow_view	 flow;
	ui_flow_opts	 flow_o;	/* the map asked for */
	ui_flow_view	 flow_shown;	/* what the pane showed after the last
					   completed update: a stopped trace
					   goes back to it */
	ui_flow_opts	 flow_shown_o;
	ui_flow_view	 flow_last;	/* the view before the pane closed, for f */
	int		 knock_block;	/* fl_knock_block: the knockout cursor */
	int		 knock_window;
	ui_flow_entry	 flow_cache[SESSION_FLOW_CACHE];
	int		 flow_n;
	long		 flow_clock;
	const fl_trace	*flow_map;	/* the map shown (in flow_cache), or NULL */
	double		*knock;		/* (KNOCK_BLOCK_COUNT, L) P(answer); NAN
					   for a block the prompt has not */
	double		 knock_clean;
	bool		 knock_valid;
	char		*flow_error;	/* why the pane has no map, or NULL */
	long		 n_traces, n_knockouts;	/* computed, for the tests */
	/* The lens at any position: lens_pos -1 is the last (the default);
	 * else the lens pane shows the cursor layer's streams at that
	 * position (pos_rows: resid_pre, resid_mid, resid_post), made for
	 * (pos_layer, pos_at). */
	int		 lens_pos;
	ui_lens_row	 pos_rows[3];
	int		 pos_layer, pos_at;	/* pos_at -1: not made */

	/* Timings of the last update, in milliseconds. */
	double		 ms_forward, ms_lens, ms_update;
	/* Work done since the session began: full passes of a prompt, re-runs
	 * of the last layer, products of the lens through the unembedding.
	 * Only counted; they let a test check that an update did no more than
	 * its flags need. */
	long		 n_passes, n_last_runs, n_lens_products;
	long		 n_resumed;	/* passes resumed at a neuron edit's layer */

	ui_choices	 kept;		/* as of the last completed update */
	char		 note[256];	/* what the last update kept or changed by
					   itself, for the message line, or "" */
	const char	*cancelled;	/* what the last update cancelled, or NULL */

	/* Side by side (session_set_compare). B is a session of its own on A's
	 * model, made and kept up to date by A's session_update: its choices
	 * follow A's (the prompt, the toggles but the one flipped, the subject
	 * when B's prompt holds it, the metric), its answer is A's token. */
	ui_compare	 compare;
	char		*compare_prompt;	/* COMPARE_PROMPT: B's prompt */
	struct ui_session *cmp;		/* B, or NULL (compare off) */
	float		*cmp_grid;	/* (L, H) B's heads metric minus A's, NAN
					   where either is not computed */
	/* Only in B: */
	bool		 model_borrowed;	/* model and unembed_mean are A's */
	int		 answer_pin;	/* the answer token, or -1: B's own choice */
} ui_session;

ui_session *session_new(void);
void session_free(ui_session *s);

/* Setters copy their arguments; they return the SESSION_* flags to update. */
int session_set_model(ui_session *s, const char *dir);
int session_set_prompt(ui_session *s, const char *prompt);
int session_set_answer(ui_session *s, const char *text);	/* NULL: top */
int session_set_subject(ui_session *s, const char *text);	/* NULL: guess */
/* Answer text scored as a continuation after a space (space) or glued to
 * the prompt, as task files put [C]. */
int session_set_answer_space(ui_session *s, const char *text, bool space);

/* The corrupted prompt of the atp metric (NULL: made from the task);
 * drops the estimates. Returns SESSION_GRID. */
int session_set_corrupt(ui_session *s, const char *text);

/* The exact patch of the cursor's head beside its AtP estimate
 * (s->atp_exact). SESSION_GRID, or -1 with *cause (the metric is not
 * computed). */
int session_atp_exact(ui_session *s, char **cause);

/* A neuron edit: factor 0 (zero), 0.5 (half), 2 (double), or factor < 0
 * to drop the edits of that neuron (layer < 0: every edit). The pass
 * resumes at the layer. SESSION_RUN, or -1 with *cause (out of range). */
int session_neuron_edit(ui_session *s, int layer, int neuron, float factor,
    char **cause);

/* :neurons search: the neurons of every layer whose value vectors hold
 * token among their top UI_NEURON_SEARCH_K, by its place there, then its
 * logit: a heap array of *n hits. Each layer's product is made once
 * (progress p, Ctrl-C: FL_STOPPED, nothing kept for that layer). 0, or -1
 * with *cause. */
typedef struct {
	int	 layer, neuron, rank;	/* rank 1: the top token */
	float	 act;			/* at the last position of this prompt */
} ui_neuron_hit;
int session_neuron_search(ui_session *s, int token, const fl_progress *p,
    ui_neuron_hit **hits, int *n, char **cause);

/* Loads a task: NAME is data/tasks/NAME.json (in the working directory,
 * the installed data, or the source tree), anything with a '/' or ending
 * in .json a file. Replaces the loaded task and drops its fits. Returns
 * SESSION_TASK, or -1 with *cause. */
int session_load_task(ui_session *s, const char *name, char **cause);

/* Demonstrations before each prompt of the task (0: zero-shot), as eval
 * --shots draws them; the task's fits are dropped (the intercept stays on
 * and is refitted). Kept across :task; checked against the loaded task's
 * pairs and fewshot_format. Flags, or -1 with *cause. */
int session_set_shots(ui_session *s, int shots, char **cause);

/* Sets the prompt, answer and subject from prompt n of the loaded task's
 * main templates (template-major: pairs x templates), with the session's
 * shots. Flags, or -1. */
int session_task_prompt(ui_session *s, int n, char **cause);
/* Number of main prompts of the loaded task (0 without one). */
int session_task_prompts(const ui_session *s);
/* How many of them the fits (decomposition, intercept) use: all but those
 * of *pair, the subject's pair they leave out (-1: none). */
int session_fit_prompts(const ui_session *s, int *pair);

/* Checks that a subject (a word of the prompt, or #POS) or an answer can be
 * used, before a command changes the choice. 0, or -1 with *cause. */
int session_subject_check(const ui_session *s, const char *text, char **cause);
int session_answer_check(const ui_session *s, const char *text, char **cause);

/* Recomputes what flags name. The cursor is clamped into the model. 0 on
 * success; -1 with *cause; FL_STOPPED when the progress callback
 * asked to stop, s->cancelled naming the work it stopped ("path patching"):
 *  - loading a model, running the prompt, fitting the intercept: these come
 *    before any result is replaced, so everything stays as it was, and the
 *    choices go back to those the results show (the prompt, the toggle...);
 *  - path patching, which needs the new results: the heads grid goes back
 *    to the metric it showed;
 *  - the MLP decomposition's fit for the pane: the pane says it was
 *    cancelled (moving to another layer and back fits it again).
 * Nothing half computed is kept. */
int session_update(ui_session *s, int flags, const fl_progress *p, char **cause);

/* Compares A with B: COMPARE_PROMPT with B's prompt, COMPARE_MASK or
 * COMPARE_INTERCEPT with none, COMPARE_OFF drops B. The next
 * session_update runs B (and reports an error B's prompt meets, turning
 * the comparison off). Returns SESSION_GRID, or -1 with *cause (an empty
 * prompt; the intercept not fitted yet, which `i` does once). */
int session_set_compare(ui_session *s, ui_compare k, const char *prompt, char **cause);

/* The flow pane: v with o (NULL: as they are); FLOW_OFF closes it. The
 * next session_update computes what it shows (a map already computed for
 * this prompt, answer, subject and options is taken from the cache).
 * SESSION_VIEW, or -1 with *cause (a window or sample count out of range,
 * no prompt). */
int session_set_flow(ui_session *s, ui_flow_view v, const ui_flow_opts *o,
    char **cause);
/* The knockout view with block (fl_knock_block) and window (>= 1). */
int session_set_knockout(ui_session *s, int block, int window, char **cause);
/* The lens position: -1 the last, else 0..T-1. SESSION_VIEW, or -1. */
int session_set_lens_pos(ui_session *s, int pos, char **cause);
static inline int session_lens_pos(const ui_session *s)
{ return s->lens_pos >= 0 && s->lens_pos < s->n_tok ? s->lens_pos : s->n_tok - 1; }

/* The restored run of the shown map's cell (layer l, position t), looked
 * into (trace_cell_lens): rows (L + 1) get each stream's lens at the last
 * position, mean P over the samples (row L: the run's output; top_val
 * holds probabilities). 0; FL_STOPPED; -1 with *cause (no map shown). */
int session_flow_cell(ui_session *s, int l, int t, const fl_progress *p,
    ui_lens_row *rows, char **cause);

/* Convenience for the panes. */
static inline int session_layers(const ui_session *s)
{ return s->model != NULL ? s->model->cfg.n_layer : 0; }
static inline int session_heads(const ui_session *s)
{ return s->model != NULL ? s->model->cfg.n_head : 0; }
static inline bool session_ready(const ui_session *s)
{ return s->model != NULL && s->n_tok > 0; }

/* A token as display text: spaces as g_space, newlines as g_newline,
 * control and invalid bytes as \xNN. Heap string. */
char *session_token_label(const ui_session *s, int id, const char *g_space,
    const char *g_newline);

/* The grid of factlens eval with opts and shots demonstrations for the
 * loaded task, kept in s->eval (opts in s->eval_opts). 0; FL_STOPPED when
 * progress asked to stop (the old grid dropped); -1 with *cause (no task). */
int session_eval(ui_session *s, const fl_eval_opts *opts, int shots,
    const fl_progress *progress, char **cause);

/* Layer l's MLP intercept as the pane fits it (resid_pre a regressor, the
 * default ridge) on every zero-shot main prompt of the task file at path,
 * whatever task is loaded: into icpt (d_model), its top 3 tokens through
 * the unembedding into top, the prompts used into *n_prompts. For
 * :intercepts. 0; FL_STOPPED when progress asked to stop; -1 with *cause. */
int session_task_intercept(ui_session *s, const char *path, int l,
    const fl_progress *p, float *icpt, int *top, int *n_prompts, char **cause);

/* Writes the session's results as JSON to path: the prompt, the lens, every
 * heads grid (mover scores computed if they were not), the path-patching
 * effect and the cursor layer's decomposition when they are computed, the
 * cursor's views, and the last :eval's grid ("eval", as factlens eval
 * --json --per-prompt writes it). A path ending in .csv gets CSV instead
 * (report.h): a "lens" row per stream, then a "heads" row per head with
 * every grid, then the eval's "eval_prompt" and "eval_grid" rows (its
 * columns after the others). */
int session_export(ui_session *s, const char *path, char **cause);

#endif
