/*
 * internal.h - what the files of src/session share and nothing else sees:
 * the session's own helpers, each defined in the file named above it.
 * Everything here keeps the ownership rules of session.h.
 */
#ifndef FL_SESSION_INTERNAL_H
#define FL_SESSION_INTERNAL_H

#include "session/session.h"

/* Which rows a lens product (sess_lens_product) and the statistics
 * (sess_stats_rows) cover: the stream rows, the final row, the cursor's
 * view rows. */
enum { LENS_STREAMS = 1, LENS_FINAL = 2, LENS_VIEW = 4 };
enum { STATS_STREAMS = 1, STATS_FINAL = 2, STATS_VIEW = 4, STATS_ALL = 7 };

/* compare.c */
void sess_compare_drop(ui_session *s);
/* After A's update: B's choices from A's, B updated, the grid difference.
 * 0, FL_STOPPED, or -1 with *cause; either way but 0 the comparison is
 * off. */
int sess_compare_sync(ui_session *a, const fl_progress *p, char **cause);

/* fits.c */
int sess_decomp_view(ui_session *s, const fl_progress *p);
int sess_intercept_prepare(ui_session *s, int pair, const fl_progress *p, fl_decomp *icpt,
    char **cause);
int sess_patch_compute(ui_session *s, const fl_progress *p);
void sess_atp_compute(ui_session *s);
/* The task-level path patching and its movers (session.h, task_patch): 0,
 * or FL_STOPPED when stopped (task_patch_error then says how to retry). */
int sess_task_patch_compute(ui_session *s, const fl_progress *p);
int sess_task_pair_of(const ui_session *s);
int sess_task_update(ui_session *s, int flags, int pair, fl_decomp *icpt);

int sess_task_fit_prompts(const ui_session *s, int pair, fl_prompt_set *ps,
    fl_prompt **use, int *k, bool corrupt, char **cause);

/* flow.c */
void sess_flow_clear(ui_session *s);
/* After the other results: the lens rows at lens_pos, and what the flow
 * pane shows. 0, or FL_STOPPED (the pane goes back to what it showed). */
int sess_flow_update(ui_session *s, int flags, const fl_progress *p);

/* neurons.c */
void sess_neurons_clear(ui_session *s);
void sess_value_top_clear(ui_session *s);
/* The edits as hooks into hooks (s->n_edits of them). */
int sess_edit_hooks(const ui_session *s, fl_hook *hooks);
/* The pane's neurons for the cursor layer (when neurons_on): 0, or
 * FL_STOPPED when the intercept split's pass was stopped. */
int sess_neurons_view(ui_session *s, const fl_progress *p);

/* passes.c */
void sess_clamp_cursor(ui_session *s);
int sess_load_model(ui_session *s, const fl_progress *p, char **cause);
int sess_rerun_last(ui_session *s, char **cause);
int sess_run_prompt(ui_session *s, const fl_progress *p, char **cause);

/* session.c */
void sess_atp_clear(ui_session *s);
void sess_model_clear(ui_session *s);
void sess_results_clear(ui_session *s);
void sess_set_str(char **dst, const char *src);
void sess_task_fits_clear(ui_session *s);
/* Drops the kept :eval grid (the model, the task or the shots changed). */
void sess_eval_drop(ui_session *s);

/* tokens.c */
int sess_answer_find(const ui_session *s, const char *text, bool space, char **cause);
const char *sess_find_last(const char *hay, const char *needle, bool fold);
int sess_subject_find(const ui_session *s, const char *text, int *first, int *last, char **cause);
int sess_subject_guess(const ui_session *s, int *first_tok);

/* views.c */
void sess_grid_compute(ui_session *s);
/* Mover scores and what each head writes to the subject, when there is a
 * subject before the last token and they are not computed yet. */
void sess_movers_ensure(ui_session *s);
void sess_lens_product(ui_session *s, int what);
/* The cursor layer's three streams at position pos into s->pos_rows. */
void sess_pos_rows(ui_session *s, int pos);
void sess_row_stats(const ui_session *s, const float *lg, bool component, ui_lens_row *r);
void sess_stats_all(ui_session *s);
void sess_stats_rows(ui_session *s, int what);

#endif
