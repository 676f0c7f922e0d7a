/*
 * prompt.c - the explorer's edit line: the prompt editor and the ':'
 * command line, on GNU readline's callback interface, with a history of
 * each and completion from the command table. See term.h.
 *
 * Readline never touches the terminal here: it gets its bytes from us
 * (rl_getc_function, fed from the keys curses read), draws through our
 * rl_redisplay_function onto the bottom row, writes anything else to
 * /dev/null, and installs no signal handlers.
 */
#include "autoconfig.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "base/paths.h"
#include "base/util.h"
#include "term.h"

static struct {
	int		 edit;		/* EDIT_* */
	bool		 line_done;
	char		*line;
	unsigned char	 in[16];
	int		 in_n, in_pos;
	FILE		*devnull;
	char		*completions;	/* shown above the edit line */

	char		*hist_path[3];	/* [EDIT_PROMPT], [EDIT_COMMAND] */
	HISTORY_STATE	*hist[3];
	int		 hist_cur;
} P;

static int
rl_getc_cb(FILE *f)
{
	(void)f;
	return P.in_pos < P.in_n ? P.in[P.in_pos++] : EOF;
}

static int
rl_input_available_cb(void)
{
	return P.in_pos < P.in_n;
}

static void
rl_line_cb(char *line)
{
	P.line = line;
	P.line_done = true;
	rl_callback_handler_remove();
}

void
prompt_redisplay(void)
{
	const char *pr = P.edit == EDIT_PROMPT ? "prompt> " : ":";
	int row = LINES - 1, pw = ui_text_width(pr), avail = COLS - pw - 1, x;
	const char *buf = rl_line_buffer != NULL ? rl_line_buffer : "";
	const char *p = buf, *start = buf;
	int wpoint = 0, wstart = 0;

	if (P.edit == EDIT_NONE || COLS < UI_MIN_W || LINES < UI_MIN_H)
		return;
	/* Columns up to the cursor; scroll so that it stays visible. */
	while (*p != '\0' && p - buf < rl_point)
		wpoint += ui_char_width(utf8_next(&p));
	p = buf;
	while (*p != '\0' && wpoint - wstart > avail) {
		wstart += ui_char_width(utf8_next(&p));
		start = p;
	}
	move(row, 0);
	clrtoeol();
	attrset(A_BOLD);
	mvaddstr(row, 0, pr);
	attrset(A_NORMAL);
	x = pw;
	for (p = start; *p != '\0'; ) {
		const char *q = p;
		uint32_t cp = utf8_next(&q);
		int cw = ui_char_width(cp);

		if (x + cw > COLS - 1)
			break;
		if (cp < 0x20)
			mvaddch(row, x, '?');
		else
			mvaddnstr(row, x, p, (int)(q - p));
		x += cw;
		p = q;
	}
	if (P.completions != NULL) {
		/* the candidates on as many rows as they need above the line,
		 * at most a third of the screen; the last says what is left */
		int maxr = LINES / 3 > 1 ? LINES / 3 : 1, nr = 0;
		const char *c = P.completions, *lines[64];
		int lens[64];

		while (*c != '\0' && nr < maxr && nr < 64) {
			const char *e = c, *cut = c;
			int w = 0;

			while (*e != '\0') {
				const char *q = e;
				int cw = ui_char_width(utf8_next(&q));

				if (w + cw > COLS)
					break;
				w += cw;
				e = q;
				if (*e == ' ' && (e[1] == ' ' || e[1] == '\0'))
					cut = e + 1;	/* after a candidate's trailing space */
			}
			if (*e == '\0' || cut == c)
				cut = e;
			lines[nr] = c;
			lens[nr++] = (int)(cut - c);
			c = cut;
		}
		if (*c != '\0' && nr > 0) {
			/* more than fit: the last row ends saying so */
			static char more[64];
			int left = 0;

			/* the candidates of the last row and after */
			for (const char *q = lines[nr - 1]; *q != '\0'; q++)
				left += *q != ' ' && (q == lines[nr - 1] || q[-1] == ' ');
			snprintf(more, sizeof more, " ... %d more: type more of the name", left);
			lines[nr - 1] = more;
			lens[nr - 1] = (int)strlen(more);
		}
		attrset(A_REVERSE);
		for (int i = 0; i < nr; i++) {
			move(row - nr + i, 0);
			clrtoeol();
			mvaddnstr(row - nr + i, 0, lines[i], lens[i]);
		}
		attrset(A_NORMAL);
	}
	move(row, pw + wpoint - wstart);
	curs_set(1);
	wnoutrefresh(stdscr);
}

static void
rl_redisplay_cb(void)
{
	prompt_redisplay();
	doupdate();
}

static void
show_matches_cb(char **matches, int n, int max_len)
{
	size_t len = 1;
	char *s;

	(void)max_len;
	for (int i = 1; i <= n; i++)
		len += strlen(matches[i]) + 2;
	s = xmalloc(len + 16);
	s[0] = '\0';
	for (int i = 1; i <= n; i++) {
		strcat(s, " ");
		strcat(s, matches[i]);
		strcat(s, " ");
	}
	free(P.completions);
	P.completions = s;
	prompt_redisplay();
	doupdate();
}

static char **complete_list;
static int complete_index;

static char *
complete_gen(const char *text, int state)
{
	(void)text;
	if (state == 0)
		complete_index = 0;
	if (complete_list == NULL || complete_list[complete_index] == NULL)
		return NULL;
	return xstrdup(complete_list[complete_index++]);
}

static char **
complete_cb(const char *text, int start, int end)
{
	char *head, **words, **matches = NULL;
	int n;
	const ui_cmd *cmd;

	(void)end;
	rl_attempted_completion_over = 1;
	if (P.edit != EDIT_COMMAND)
		return NULL;
	head = xstrndup(rl_line_buffer, (size_t)start);
	n = cmd_split_words(head, &words, NULL);
	free(head);
	if (n < 0)
		return NULL;
	if (n == 1 && (cmd = cmd_find(words[0])) != NULL && (cmd->arg == ARG_FILE ||
	    (cmd->arg == ARG_TASK && strchr(text, '/') != NULL))) {
		/* Readline's own filename completion. */
		rl_attempted_completion_over = 0;
		cmd_free_words(words);
		return NULL;
	}
	complete_list = cmd_complete(tui.c, words, n, text);
	if (complete_list != NULL)
		matches = rl_completion_matches(text, complete_gen);
	cmd_free_words(complete_list);
	complete_list = NULL;
	cmd_free_words(words);
	return matches;
}

static void
history_switch(int mode)
{
	if (P.hist_cur == mode)
		return;
	if (P.hist_cur != 0) {
		free(P.hist[P.hist_cur]);
		P.hist[P.hist_cur] = history_get_history_state();
	}
	if (P.hist[mode] != NULL)
		history_set_history_state(P.hist[mode]);
	P.hist_cur = mode;
}

static void
history_init(void)
{
	char *dir = fl_state_dir(true);

	using_history();
	for (int mode = EDIT_PROMPT; mode <= EDIT_COMMAND; mode++) {
		HISTORY_STATE empty;

		memset(&empty, 0, sizeof empty);
		history_set_history_state(&empty);
		if (dir != NULL) {
			P.hist_path[mode] = xasprintf("%s/%s", dir, mode == EDIT_PROMPT ?
			    "prompts" : "commands");
			read_history(P.hist_path[mode]);
		}
		P.hist[mode] = history_get_history_state();
	}
	history_set_history_state(P.hist[EDIT_COMMAND]);
	P.hist_cur = EDIT_COMMAND;
	free(dir);
}

void
prompt_history_add(int mode, const char *line)
{
	HIST_ENTRY *last;

	if (line[0] == '\0')
		return;
	history_switch(mode);
	last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
	if (last != NULL && strcmp(last->line, line) == 0)
		return;
	add_history(line);
	if (P.hist_path[mode] != NULL) {
		FILE *f = fopen(P.hist_path[mode], "a");

		if (f != NULL)
			fclose(f);
		append_history(1, P.hist_path[mode]);
		history_truncate_file(P.hist_path[mode], 1000);
	}
}

void
prompt_init(void)
{
	P.devnull = fopen("/dev/null", "w");
	rl_readline_name = "factlens";
	rl_catch_signals = 0;
	rl_catch_sigwinch = 0;
	rl_change_environment = 0;
	rl_prep_term_function = NULL;
	rl_deprep_term_function = NULL;
	rl_getc_function = rl_getc_cb;
	rl_input_available_hook = rl_input_available_cb;
	rl_redisplay_function = rl_redisplay_cb;
	rl_outstream = P.devnull != NULL ? P.devnull : stdout;
	rl_attempted_completion_function = complete_cb;
	rl_completion_display_matches_hook = show_matches_cb;
	history_init();
}

void
prompt_free(void)
{
	history_switch(EDIT_PROMPT);
	for (int m = EDIT_PROMPT; m <= EDIT_COMMAND; m++) {
		free(P.hist_path[m]);
		if (m != P.hist_cur)
			free(P.hist[m]);
	}
	free(P.hist[P.hist_cur]);
	clear_history();
	if (P.devnull != NULL)
		fclose(P.devnull);
	free(P.completions);
	free(P.line);
	memset(&P, 0, sizeof P);
}

int
prompt_mode(void)
{
	return P.edit;
}

void
prompt_open(int mode, const char *initial)
{
	history_switch(mode);
	P.edit = mode;
	P.line_done = false;
	P.line = NULL;
	free(P.completions);
	P.completions = NULL;
	rl_callback_handler_install("", rl_line_cb);
	if (initial != NULL) {
		rl_replace_line(initial, 0);
		rl_point = rl_end;
	}
	prompt_redisplay();
	doupdate();
}

void
prompt_close(void)
{
	if (P.edit != EDIT_NONE && !P.line_done) {
		rl_replace_line("", 0);
		rl_callback_handler_remove();
	}
	P.edit = EDIT_NONE;
	free(P.completions);
	P.completions = NULL;
	curs_set(0);
}

void
prompt_terminal_lost(void)
{
	if (P.edit != EDIT_NONE)
		rl_callback_handler_remove();
}

void
prompt_completions_clear(void)
{
	free(P.completions);
	P.completions = NULL;
}

char *
prompt_take_line(void)
{
	char *line = P.line;

	P.line = NULL;
	return line;
}

/* Bytes that readline's default bindings understand for a key. */
static int
key_bytes(uint32_t key, unsigned char *out)
{
	static const struct {
		uint32_t	 key;
		const char	*seq;
	} seqs[] = {
		{ UI_KEY_UP, "\033[A" }, { UI_KEY_DOWN, "\033[B" },
		{ UI_KEY_RIGHT, "\033[C" }, { UI_KEY_LEFT, "\033[D" },
		{ UI_KEY_HOME, "\033[H" }, { UI_KEY_END, "\033[F" },
		{ UI_KEY_DC, "\033[3~" }, { UI_KEY_BACKSPACE, "\177" },
	};

	for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
		if (seqs[i].key == key) {
			memcpy(out, seqs[i].seq, strlen(seqs[i].seq));
			return (int)strlen(seqs[i].seq);
		}
	if (key >= UI_KEY_BASE)
		return 0;
	if (key == '\n')
		key = '\r';
	return (int)fl_utf8_put((char *)out, key);
}

/* Feeds P.in[0..n) to readline until it is used up or a line is done. */
static bool
feed(int n)
{
	P.in_n = n;
	P.in_pos = 0;
	while (P.in_pos < P.in_n && !P.line_done)
		rl_callback_read_char();
	P.in_n = P.in_pos = 0;
	return P.line_done;
}

bool
prompt_key(uint32_t key)
{
	int n = key_bytes(key, P.in);

	return n > 0 && feed(n);
}

bool
prompt_meta_key(uint32_t key)
{
	P.in[0] = 27;
	return feed(1 + key_bytes(key, P.in + 1));
}
