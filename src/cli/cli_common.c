/* cli_common.c - what the analysis commands share: the progress bar, task
 * loading, head lists, token JSON. See cli.h. */
#include "autoconfig.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/lens.h"
#include "analysis/report.h"
#include "cli.h"
#include "shard.h"


void
cli_progress_init(cli_progress_state *s, const char *label)
{
	memset(s, 0, sizeof *s);
	s->label = label;
	s->tty = isatty(STDERR_FILENO) && getenv("FACTLENS_NO_PROGRESS") == NULL;
}

static volatile sig_atomic_t interrupted;

static void
on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

void
cli_interrupt_catch(void)
{
	struct sigaction sa, old;

	if (sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
		return;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_interrupt;
	sa.sa_flags = SA_RESETHAND | SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
}

bool
cli_interrupted(void)
{
	return interrupted != 0;
}

int
cli_work_end(cli_progress_state *s, int rc, const char *what)
{
	if (rc == FL_STOPPED || cli_interrupted())
		return cli_cancelled(s, what);
	cli_progress_end(s);
	return rc;
}

int
cli_cancelled(cli_progress_state *s, const char *what)
{
	cli_progress_end(s);
	return cli_fail(FL_EXIT_STOPPED, "%s cancelled (Ctrl-C): no results",
	    what);
}

static bool
cli_progress(void *ud, const char *what, long done, long total)
{
	cli_progress_state *s = ud;
	double now = fl_now();
	int width = 30, fill;

	(void)what;	/* the bar shows the command's own label */
	if (interrupted)
		return true;
	if (!s->tty || total <= 0)
		return false;
	if (done < total && now - s->last < 0.1)
		return false;
	s->last = now;
	s->shown = true;
	fill = (int)((double)width * done / total + 0.5);
	fprintf(stderr, "\r%s [", s->label);
	for (int i = 0; i < width; i++)
		fputc(i < fill ? '#' : '.', stderr);
	fprintf(stderr, "] %3d%% %ld/%ld", (int)(100.0 * done / total + 0.5), done, total);
	fflush(stderr);
	return false;
}

fl_progress
cli_progress_of(cli_progress_state *s)
{
	return (fl_progress){ cli_progress, s };
}

void
cli_progress_end(cli_progress_state *s)
{
	if (s->tty && s->shown) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	s->shown = false;
}

fl_task *
cli_load_task(const char *path)
{
	char *cause = NULL;
	fl_task *t = task_load(path, &cause);

	if (t == NULL) {
		cli_fail(1, "%s", cause);
		free(cause);
	}
	return t;
}

int
cli_shared_finish(const cli_shared *sh, const char *cmd, int argc, char **argv)
{
	if (optind < argc)
		return cli_fail(2, "%s: unexpected argument '%s'", cmd, argv[optind]);
	if (*sh->task == NULL)
		return cli_fail(2, "%s: --task FILE is required (e.g. "
		    "data/tasks/country_capital.json)", cmd);
	if (*sh->dir == NULL)
		*sh->dir = fl_default_model();
	if (sh->shard != NULL && sh->shard->out != NULL && sh->shard->count == 0)
		return cli_fail(2, "%s: --out FILE writes a partial: it needs --shard "
		    "I/N", cmd);
	return 0;
}

int
cli_parse_heads(const char *opt, const char *arg, int H, bool **out)
{
	bool *heads = xcalloc((size_t)H, sizeof *heads);
	const char *p = arg;

	/* At least one number, one after each comma: '' and '0,' are errors,
	 * not an empty mask. */
	for (;;) {
		char *end;
		long h;

		if (*p < '0' || *p > '9')
			break;
		h = strtol(p, &end, 10);
		if (h >= H || (*end != ',' && *end != '\0'))
			break;
		heads[h] = true;
		if (*end == '\0') {
			*out = heads;
			return 0;
		}
		p = end + 1;
	}
	free(heads);
	return cli_fail(2, "%s takes head numbers from 0 to %d separated by commas "
	    "(e.g. 0,%d), not '%s'", opt, H - 1, H - 1, arg);
}

int
cli_parse_double(const char *opt, const char *arg, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(arg, &end);

	if (*arg == '\0' || *end != '\0' || !(v >= lo && v <= hi))
		return cli_fail(2, "%s takes a number from %g to %g, not '%s'", opt, lo,
		    hi, arg);
	*out = v;
	return 0;
}

char *
cli_token_text(const fl_model *m, int id)
{
	size_t bl;
	const char *b = tok_token_bytes(m->tok, id, &bl);

	return b != NULL ? xstrndup(b, bl) : xstrdup("");
}

void
cli_print_topk(const fl_model *m, const float *logits, int k)
{
	int *ids = xcalloc((size_t)k, sizeof *ids);

	k = lens_topk(logits, m->cfg.n_vocab, k, ids, NULL);
	for (int i = 0; i < k; i++) {
		char *s = cli_token_repr(m->tok, ids[i]);

		printf("%s%s", i ? " " : "", s);
		free(s);
	}
	free(ids);
}

int
cli_csv_or_json(const char *cmd, bool csv, bool json)
{
	if (csv && json)
		return cli_fail(2, "%s: --csv and --json are two forms of the same "
		    "output; give one", cmd);
	return 0;
}

int
cli_csv_done(const char *cmd)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 0;
	return cli_fail(1, "%s: write error on standard output", cmd);
}

int
cli_json_print(cJSON *root)
{
	char *cause = NULL;

	if (report_write(root, stdout, &cause) != 0) {
		cli_fail(1, "JSON output: %s", cause);
		free(cause);
		return 1;
	}
	return 0;
}

int
cli_find_subject(const fl_task *t, const char *prompt, const char *subject,
    int *off, int *len, int *pair)
{
	*off = -1;
	*len = 0;
	*pair = -1;
	if (subject != NULL) {
		if ((*off = prompt_find_word(prompt, subject)) < 0)
			return cli_fail(1, "the subject \"%s\" is not a word of the prompt "
			    "\"%s\"", subject, prompt);
		*len = (int)strlen(subject);
		*pair = t != NULL ? task_find_pair(t, subject) : -1;
		return 0;
	}
	*pair = task_find_subject(t, prompt, off, len);
	return 0;
}

void
cli_note_dropped(const char *cmd, const fl_prompt_opts *o, const fl_prompt_set *ps)
{
	if (!o->single_token)
		return;
	fprintf(stderr, "factlens %s: --single-token kept %d of %d prompts, dropped "
	    "%d (answers of several tokens for this model)\n", cmd, ps->n,
	    ps->n + ps->dropped, ps->dropped);
}

void
cli_json_prompt_filters(cJSON *task, const fl_prompt_opts *o, int dropped)
{
	cJSON_AddBoolToObject(task, "single_token", o->single_token);
	cJSON_AddNumberToObject(task, "dropped", dropped);
	cJSON_AddBoolToObject(task, "counterfactual", o->counterfactual);
}

void
cli_print_token(const fl_model *m, int id, int width)
{
	char *s = cli_token_repr(m->tok, id);

	if (width > 0)
		printf("%-*.*s", width, width, s);
	else
		fputs(s, stdout);
	free(s);
}

char *
cli_plot_token(const fl_model *m, int id)
{
	size_t n, o = 0;
	const char *b = tok_token_bytes(m->tok, id, &n);
	char *esc, *u;

	if (b == NULL)
		return xasprintf("<%d>", id);
	if (n > 0 && strspn(b, " ") >= n) {
		/* spaces alone would be an empty label: an open box for each */
		u = xcalloc(3 * n + 1, 1);
		for (size_t i = 0; i < n; i++)
			memcpy(u + 3 * i, "\xe2\x90\xa3", 3);
		return u;
	}
	esc = xmalloc(2 * n + 1);
	for (size_t i = 0; i < n; i++) {
		if (b[i] == '\n') {
			esc[o++] = '\\';
			esc[o++] = 'n';
		} else
			esc[o++] = b[i];
	}
	u = fl_utf8_text(esc, o);
	free(esc);
	return u;
}

/* One prompt of cli_prompt_pair: its token count, or -1 after the error. */
static int
pair_encode(const fl_model *m, const char *cmd, const char *opt,
    const char *text, int **ids, int *status)
{
	char *cause = NULL;
	int n = model_encode(m, text, strlen(text), ids, &cause);

	if (n < 0) {
		*status = cli_fail(1, "%s: %s: %s", cmd, opt, cause);
		free(cause);
	} else if (n == 0) {
		*status = cli_fail(2, "%s: %s encodes to no token", cmd, opt);
		return -1;
	}
	return n;
}

int
cli_prompt_pair(const fl_model *m, const char *cmd, const char *prompt,
    const char *corrupt_text, const char *answer, const char *distractor,
    int **clean, int **corrupt, int *answer_id, int *distractor_id,
    int *status)
{
	int T, Tc, ntok;

	if ((T = pair_encode(m, cmd, "--prompt", prompt, clean, status)) < 0 ||
	    (Tc = pair_encode(m, cmd, "--corrupt", corrupt_text, corrupt,
	    status)) < 0)
		return -1;
	if (T != Tc) {
		*status = cli_fail(2, "%s: --prompt is %d tokens and --corrupt %d: "
		    "the patches pair positions, so the two must have the same "
		    "count", cmd, T, Tc);
		return -1;
	}
	*answer_id = task_answer_token(m, answer, true, &ntok);
	*distractor_id = distractor != NULL ? task_answer_token(m, distractor,
	    true, &ntok) : -1;
	if (*answer_id < 0 || (distractor != NULL && *distractor_id < 0)) {
		*status = cli_fail(2, "%s: --%s encodes to no token", cmd,
		    *answer_id < 0 ? "answer" : "distractor");
		return -1;
	}
	return T;
}
