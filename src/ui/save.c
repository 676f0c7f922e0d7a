/*
 * save.c - saved sessions: :save FILE writes the explorer commands that
 * rebuild the current state, with comment lines giving factlens' version
 * and the SHA-256 of the model's weights (st_sha256: the bytes of
 * model.safetensors, or of its shards in turn); --script and --replay
 * refuse a file whose hash differs from the loaded model's.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "engine/st.h"
#include "ui.h"

#define SAVE_HASH_KEY "# weights-sha256: "

/* word as one double-quoted word of the command language; -1 on a line
 * break, which no command line can hold. */
static int
save_word(FILE *f, const char *word)
{
	if (strpbrk(word, "\r\n") != NULL)
		return -1;
	fputc('"', f);
	for (const char *p = word; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		fputc(*p, f);
	}
	fputc('"', f);
	return 0;
}

void
ui_weights_hash(const ui_session *s, char hex[65])
{
	st_sha256(s->model->weights, hex);
}

int
ui_session_save(ui_ctx *c, const char *path, char **cause)
{
	const ui_session *s = c->s;
	char hex[65];
	double t0;
	FILE *f;
	int rc = 0, H;

	if (s->model == NULL)
		return fl_error(cause, "save: no model loaded (use :model DIR)");
	H = s->model->cfg.n_head;
	t0 = fl_now();
	ui_weights_hash(s, hex);
	if ((f = fopen(path, "w")) == NULL)
		return fl_error(cause, "save: %s: cannot create: %s", path, strerror(errno));
	fprintf(f, "# factlens session: factlens explore --replay %s rebuilds it\n"
	    "# factlens-version: %s\n" SAVE_HASH_KEY "%s\n"
	    "# (the SHA-256 of the model's safetensors file, or of its shards in "
	    "turn; hashed in %.2f s)\n", path, PACKAGE_VERSION, hex, fl_now() - t0);
	fputs("model ", f);
	rc |= save_word(f, s->model_dir);
	fputc('\n', f);
	if (s->prompt != NULL && s->prompt[0] != '\0') {
		fputs("prompt ", f);
		rc |= save_word(f, s->prompt);
		fputc('\n', f);
	}
	if (s->task != NULL) {
		fputs("task ", f);
		rc |= save_word(f, s->task->path);
		fprintf(f, "\nshots %d\n", s->shots);
	}
	fputs("answer ", f);
	if (s->answer_text != NULL)
		rc |= save_word(f, s->answer_text);
	else
		fputs("top", f);
	fputs("\nsubject ", f);
	if (s->subject_text != NULL)
		rc |= save_word(f, s->subject_text);
	else
		fputs("auto", f);
	fputc('\n', f);
	if (s->mask_heads != NULL) {
		const char *sep = "";

		fputs("mask heads ", f);
		for (int h = 0; h < H; h++)
			if (s->mask_heads[h]) {
				fprintf(f, "%s%d", sep, h);
				sep = ",";
			}
		fputc('\n', f);
	}
	fprintf(f, "mask %s\nintercept %s\n", s->mask ? "on" : "off",
	    s->intercept ? "on" : "off");
	if (s->corrupt_text != NULL) {
		fputs("corrupt ", f);
		rc |= save_word(f, s->corrupt_text);
		fputc('\n', f);
	}
	fprintf(f, "layer %d\nhead %d\nmetric %s\ntopk %d\n", s->layer, s->head,
	    metric_name(s->metric), s->topk);
	fputs("theme ", f);
	rc |= save_word(f, c->theme.name);
	fprintf(f, "\npane %s\n", c->show_mlp ? "mlp" : "head");
	if (s->compare == COMPARE_PROMPT) {
		fputs("compare ", f);
		rc |= save_word(f, s->compare_prompt);
		fputc('\n', f);
	} else if (s->compare != COMPARE_OFF)
		fprintf(f, "compare %s\n", compare_name(s->compare));
	if (s->lens_pos >= 0)
		fprintf(f, "position %d\n", s->lens_pos);
	if (s->flow == FLOW_TRACE)
		fprintf(f, "trace %s %d samples %d seed %llu\n", trace_kind_name(
		    s->flow_o.kind), s->flow_o.window, s->flow_o.samples,
		    (unsigned long long)s->flow_o.seed);
	else if (s->flow == FLOW_KNOCKOUT)
		fprintf(f, "knockout %s %d\n", knock_block_name((fl_knock_block)
		    s->knock_block), s->knock_window);
	if (rc != 0) {
		fclose(f);
		remove(path);
		return fl_error(cause, "save: the prompt, answer or subject holds a line "
		    "break, which a command line cannot");
	}
	if (ferror(f) | (fclose(f) != 0))
		return fl_error(cause, "save: %s: write error", path);
	return 0;
}

const char *
ui_saved_hash(const char *text, char hex[65])
{
	const char *p = strstr(text, SAVE_HASH_KEY);
	size_t n;

	if (p == NULL || (p != text && p[-1] != '\n'))
		return NULL;
	p += strlen(SAVE_HASH_KEY);
	n = strspn(p, "0123456789abcdef");
	if (n != 64)
		return NULL;
	memcpy(hex, p, 64);
	hex[64] = '\0';
	return hex;
}

int
ui_replay_verify(const ui_session *s, const char *label, const char *want,
    char **cause)
{
	char got[65];

	ui_weights_hash(s, got);
	if (strcmp(got, want) == 0)
		return 0;
	return fl_error(cause, "%s: saved with other weights: the file records "
	    "weights-sha256 %s, the model loaded from %s has %s; "
	    "nothing replayed (remove the weights-sha256 line to run it anyway "
	    "with --script)", label, want, s->model_dir, got);
}
