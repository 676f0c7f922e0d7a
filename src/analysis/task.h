/*
 * task.h - a factual relation as a task file, and the prompts built from it.
 *
 * A task file (data/tasks/NAME.json) holds
 *   "name": "country_capital",
 *   "pairs": [{"subject": "France", "answer": "Paris"}, ...],
 *   "templates": ["... the capital of [N] is [C]", ...],   zero-shot, required
 *   "paraphrase_templates": [...], "heldout_templates": [...]  optional sets
 *   "fewshot_format": "The capital of [N] is [C]. "         for k-shot prompts
 *   "counterfactual_format": "In this story, the capital of [N] is [C]. "
 *                                                 for counterfactual prompts
 * [N] stands for the subject, [C] for the answer. A prompt is the template up
 * to [C] (without the space before it), so the model's next token is scored
 * against the answer's first token: the first token of " " + answer when the
 * template has a space before [C], of the answer alone otherwise. Answers of
 * more than one token are scored on the first one and counted.
 *
 * A k-shot prompt prepends k demonstrations, fewshot_format filled with other
 * pairs of the same task, concatenated with no separator (the format carries
 * its own trailing space). The demonstrations are drawn from a seed, the pair
 * and the template, so a run is reproducible and a corrupted prompt (the
 * subject replaced by another pair's) keeps its clean prompt's demonstrations.
 *
 * A counterfactual prompt (fl_prompt_opts.counterfactual) opens with
 * counterfactual_format filled with the prompt's subject and another pair's
 * answer, drawn from the seed, the pair and the template among the pairs
 * whose answer has another first word: "In this story, the capital of France
 * is Rome. The capital of France is". The demonstrations, if any, follow it.
 * task_prompts goes on to the next such pair (in the draw's order) while the
 * stated answer's first token is the memorised answer's for the model.
 * Such a prompt is scored on both answers: the memorised one (answer) and the
 * one the context states (ctx_answer), which separates recall from copying.
 *
 * With fl_prompt_opts.single_token a prompt set keeps only the prompts whose
 * answer (and in-context answer) is one token for the model: the paper's
 * code assumes single-token answers. The set counts what it dropped.
 *
 * Token positions: the subject's tokens are found by walking the byte spans
 * of the prompt's tokens, so they are right for any BPE split, and OPT's BOS
 * (which model_encode prepends) shifts them by one.
 */
#ifndef FL_TASK_H
#define FL_TASK_H

#include <stdbool.h>

#include "engine/forward.h"

typedef struct {
	char	*subject;
	char	*answer;
} fl_pair;

typedef enum {
	TASK_TEMPLATES_MAIN,		/* "templates" */
	TASK_TEMPLATES_PARAPHRASE,	/* "paraphrase_templates" */
	TASK_TEMPLATES_HELDOUT,		/* "heldout_templates" */
	TASK_TEMPLATES_COUNT
} fl_template_set;

typedef struct {
	char	*path;
	char	*name;
	fl_pair	*pairs;
	int	 n_pairs;
	char	**templates[TASK_TEMPLATES_COUNT];	/* NULL when absent */
	int	 n_templates[TASK_TEMPLATES_COUNT];
	char	*fewshot;		/* NULL when absent */
	char	*counterfactual;	/* counterfactual_format; NULL when absent */
} fl_task;

/* One prompt, tokenized for one model. */
typedef struct {
	char	*text;		/* the prompt, without the BOS */
	int	*ids;		/* (n) as the model runs it (OPT: BOS first) */
	int	 n;
	int	 pair;		/* whose answer is scored */
	int	 subject_pair;	/* whose subject is in the prompt (!= pair when corrupted) */
	int	 tmpl;		/* index in its template set */
	int	 answer;	/* id of the answer's first token */
	int	 answer_tokens;	/* tokens of the answer (> 1: scored on the first) */
	int	 subj_pos;	/* the subject's tokens are [subj_pos, subj_pos + subj_len) */
	int	 subj_len;
	int	 subject;	/* id of the subject's first token */
	int	 ctx_pair;	/* counterfactual sets: whose answer the context states */
	int	 ctx_answer;	/* counterfactual sets: its first token (else -1) */
} fl_prompt;

typedef struct {
	fl_prompt	*p;
	int		 n;
	int		 multi_token;	/* prompts whose answer is more than one token */
	int		 max_len;	/* tokens of the longest prompt */
	int		 total_tokens;
	int		 dropped;	/* by single_token: answers of several tokens */
	bool		 counterfactual;	/* every prompt has a ctx_answer */
} fl_prompt_set;

typedef struct {
	fl_template_set	 set;
	int		 shots;		/* demonstrations before each prompt */
	unsigned	 seed;		/* demonstrations and corrupted subjects */
	bool		 corrupt;	/* each subject replaced by another pair's */
	bool		 single_token;	/* drop prompts whose answer is several tokens */
	bool		 counterfactual;	/* the context states another answer */
} fl_prompt_opts;

/* Reads and checks a task file. NULL and *cause naming the file and the
 * field on error (missing pairs, a template without [N] or [C], ...). The
 * caller frees the task with task_free. */
fl_task *task_load(const char *path, char **cause);
void task_free(fl_task *t);

const char *task_set_name(fl_template_set set);
/* "main", "paraphrase", "heldout" -> the set; -1 when unknown. */
int task_set_parse(const char *name);

/* The pair whose subject is `subject` (exact match), or -1. */
int task_find_pair(const fl_task *t, const char *subject);

/* The task's subject that a prompt holds, as a word: the one found latest
 * in the prompt, at one place the longest name ("Guinea-Bissau" over
 * "Guinea"). Returns its pair, *off and *len its bytes in the prompt; -1
 * (*off -1, *len 0) when the prompt holds none. t may be NULL. */
int task_find_subject(const fl_task *t, const char *prompt, int *off, int *len);

/* The prompt text for pair `pair` (subject of `subject_pair`) in template
 * `tmpl` of a set, with `shots` demonstrations drawn as described above.
 * Heap string; NULL and *cause when the set or template does not exist or
 * the task has too few pairs for the shots. *subj_off receives the byte
 * offset of the subject in the text, *space whether the answer follows a
 * space. */
char *task_prompt_text(const fl_task *t, const fl_prompt_opts *o, int tmpl,
    int pair, int subject_pair, int *subj_off, bool *space, char **cause);

/* The pair whose answer a counterfactual prompt of pair `pair` in template
 * `tmpl` states in task_prompt_text, drawn as described above (before
 * task_prompts' token check); -1 when every other pair's answer has the
 * same first word. */
int task_context_pair(const fl_task *t, const fl_prompt_opts *o, int tmpl,
    int pair);

/* Every prompt of a set: pairs x templates, template-major, less those
 * o->single_token drops. 0, or -1 with *cause (a template missing from the
 * task, too many shots, a prompt longer than the model's context, no
 * counterfactual_format, every prompt dropped). Free with prompt_set_clear. */
int task_prompts(fl_prompt_set *ps, const fl_model *m, const fl_task *t,
    const fl_prompt_opts *o, char **cause);

/* The prompts of ps without those of pair `pair` (-1: all of them), as
 * when a fit must not see the subject it is used on: a heap array of *k
 * prompts that point into ps (free the array only). */
fl_prompt *task_prompts_except(const fl_prompt_set *ps, int pair, int *k);
void prompt_set_clear(fl_prompt_set *ps);

/* Tokenizes one prompt text for the model and locates the subject, given as
 * its byte span in the text. answer_text may be NULL (no answer: answer and
 * answer_tokens are set to -1 and 0). 0, or -1 with *cause. Free the prompt
 * with prompt_clear. */
int prompt_make(fl_prompt *p, const fl_model *m, const char *text,
    int subj_off, int subj_bytes, const char *answer_text, bool space,
    char **cause);
void prompt_clear(fl_prompt *p);

/* The tokens covering bytes [off, off + len) of the text the ids encode
 * (after the BOS, when the model has one): *pos and *count. -1 when the span
 * is empty or outside the text. */
int prompt_find_span(const fl_model *m, const int *ids, int n, int off, int len,
    int *pos, int *count);

/* The byte offset of the last occurrence of `word` in text as a whole word
 * (at the start or after a space, and not followed by a letter or digit:
 * "France's" holds France, "Nigeria" does not hold Niger), or -1. */
int prompt_find_word(const char *text, const char *word);

/* The first token of the answer as a continuation: of " " + text when space
 * is set and text has no leading space, else of text. *n_tokens receives the
 * answer's length in tokens. -1 when it encodes to nothing. */
int task_answer_token(const fl_model *m, const char *text, bool space,
    int *n_tokens);

#endif
