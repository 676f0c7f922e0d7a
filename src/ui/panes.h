/*
 * panes.h - what the files drawing the explorer's screen share (panes.c:
 * the layout and the panes of results; pane_mlp.c: the MLP pane;
 * overlays.c: what covers them).
 * Every function draws into a view of the canvas; none computes results.
 */
#ifndef FL_UI_PANES_H
#define FL_UI_PANES_H

#include "ui.h"

/* A pane's title row: a line with the title set in it. */
void pane_title(const ui_view *v, const ui_ctx *c, const char *title);

/* Helpers panes.c shares: a signed value with two significant digits
 * (+12, +4.4, +0.83), and a token's display text from a small ring of
 * buffers (valid for the next seven calls). */
const char *fmt_signed(double v, char *buf, size_t n);
/* A probability as a percentage with at least three significant digits
 * down to a thousandth of a percent (27.07%, 0.0215%; NaN: "-"). */
const char *fmt_pct(double p, char *buf, size_t n);
const char *tok_label(const ui_ctx *c, int id);

/* Row y: "writes" and the top tokens of what a component adds, each with
 * its signed value (the answer highlighted). */
void pane_writes_row(const ui_ctx *c, const ui_view *v, int y, const ui_lens_row *r);

/* The MLP pane (pane_mlp.c): the cursor layer's MLP, its decomposition,
 * or its neurons (n). */
void pane_mlp_draw(const ui_ctx *c, const ui_view *v);

/* The flow pane over the main area (pane_flow.c): causal tracing's map
 * or attention knockout's curves. */
void pane_flow_draw(const ui_ctx *c, const ui_view *v);

/* The overlays over the main area (overlays.c): a command's text (:eval,
 * :help NAME), the key map (?), the command list (:help), and what to do
 * when there is no model or prompt. */
void pane_overlay_draw(const ui_ctx *c, const ui_view *v);
void pane_help_draw(const ui_ctx *c, const ui_view *v);
void pane_cmds_draw(const ui_ctx *c, const ui_view *v);
void pane_empty_draw(const ui_ctx *c, const ui_view *v);

#endif
