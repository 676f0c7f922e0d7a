/*
 * test_task.c - task files and the prompts built from them: every error
 * names the file and the field; zero-shot and k-shot text; the subject's
 * token positions (with GPT-2's real tokenizer when it is around, with the
 * fixture tokenizer's multi-token splits, and with OPT's BOS shift).
 */
#include "autoconfig.h"

#include "check.h"
#include "fx.h"

#include <unistd.h>

static char tmpdir[] = "/tmp/fl-test-task-XXXXXX";

/* Writes text to a temporary task file and expects task_load to fail with
 * a message holding the file name and `needle`. */
static void
expect_error(const char *label, const char *text, const char *needle)
{
	char *path = fl_path_join(tmpdir, "t.json"), *cause = NULL;
	FILE *f = fopen(path, "w");
	fl_task *t;

	fputs(text, f);
	fclose(f);
	t = task_load(path, &cause);
	check(t == NULL && cause != NULL && strstr(cause, path) != NULL &&
	    strstr(cause, needle) != NULL, "task error: %s (%s)", label,
	    cause ? cause : "no error");
	task_free(t);
	free(cause);
	unlink(path);
	free(path);
}

static void
check_errors(void)
{
	char *cause = NULL;
	fl_task *t = task_load("/nonexistent/task.json", &cause);

	check(t == NULL && cause && strstr(cause, "/nonexistent/task.json"),
	    "a missing task file is named (%s)", cause ? cause : "");
	free(cause);
	expect_error("not JSON", "{\"pairs\": [", "not valid JSON at line 1, column 12 (the file ends early)");
	expect_error("not an object", "[1, 2]", "not a JSON object");
	expect_error("no pairs", "{\"templates\": [\"[N] is [C]\"]}", "'pairs'");
	expect_error("one pair", "{\"pairs\": [{\"subject\": \"a\", \"answer\": \"b\"}],"
	    " \"templates\": [\"[N] is [C]\"]}", "at least two");
	expect_error("pair without answer", "{\"pairs\": [{\"subject\": \"a\", "
	    "\"answer\": \"b\"}, {\"subject\": \"c\"}], \"templates\": [\"[N] is [C]\"]}",
	    "pairs[1]");
	expect_error("no templates", "{\"pairs\": [{\"subject\": \"a\", \"answer\": \"b\"},"
	    " {\"subject\": \"c\", \"answer\": \"d\"}]}", "no field 'templates'");
	expect_error("template without [N]", "{\"pairs\": [{\"subject\": \"a\", "
	    "\"answer\": \"b\"}, {\"subject\": \"c\", \"answer\": \"d\"}], "
	    "\"templates\": [\"[N] is [C]\", \"it is [C]\"]}", "templates[1]");
	expect_error("[C] before [N]", "{\"pairs\": [{\"subject\": \"a\", "
	    "\"answer\": \"b\"}, {\"subject\": \"c\", \"answer\": \"d\"}], "
	    "\"templates\": [\"[C] of [N]\"]}", "must come after [N]");
	expect_error("two [N]", "{\"pairs\": [{\"subject\": \"a\", "
	    "\"answer\": \"b\"}, {\"subject\": \"c\", \"answer\": \"d\"}], "
	    "\"templates\": [\"[N] [N] is [C]\"]}", "exactly once");
	expect_error("bad fewshot_format", "{\"pairs\": [{\"subject\": \"a\", "
	    "\"answer\": \"b\"}, {\"subject\": \"c\", \"answer\": \"d\"}], "
	    "\"templates\": [\"[N] is [C]\"], \"fewshot_format\": \"[N]. \"}",
	    "fewshot_format");
	expect_error("paraphrase set not an array", "{\"pairs\": [{\"subject\": \"a\", "
	    "\"answer\": \"b\"}, {\"subject\": \"c\", \"answer\": \"d\"}], "
	    "\"templates\": [\"[N] is [C]\"], \"paraphrase_templates\": 3}",
	    "paraphrase_templates");
	expect_error("bad counterfactual_format", "{\"pairs\": [{\"subject\": \"a\", "
	    "\"answer\": \"b\"}, {\"subject\": \"c\", \"answer\": \"d\"}], "
	    "\"templates\": [\"[N] is [C]\"], \"counterfactual_format\": \"[C] [N]\"}",
	    "counterfactual_format");
	expect_error("counterfactual_format not a string", "{\"pairs\": [{\"subject\": "
	    "\"a\", \"answer\": \"b\"}, {\"subject\": \"c\", \"answer\": \"d\"}], "
	    "\"templates\": [\"[N] is [C]\"], \"counterfactual_format\": 1}",
	    "'counterfactual_format' must be a string");
}

/* Counterfactual text: the context states another pair's answer, first;
 * the subject is the template's; the drawn pair depends on the seed. */
static void
check_counterfactual_text(void)
{
	fl_task *t = fx_task("../../data/tasks/country_capital.json");
	fl_prompt_opts o = { TASK_TEMPLATES_MAIN, 0, 1, false, false, true };
	char *s, *want, *cause = NULL;
	int off, cp, differ = 0, same = 0;
	bool space;

	if (t == NULL)
		return;
	cp = task_context_pair(t, &o, 0, 4);
	s = task_prompt_text(t, &o, 0, 4, 4, &off, &space, &cause);
	want = cp >= 0 ? xasprintf("In this story, the capital of France is %s. "
	    "It's crucial to know that the capital of France is",
	    t->pairs[cp].answer) : NULL;
	check(s && want && cp != 4 && strcmp(s, want) == 0 &&
	    strcmp(s + off, "France is") == 0 && space,
	    "counterfactual text: the context states pair %d's answer, then the "
	    "template (\"%s\", subject at %d)", cp, s ? s : cause, off);
	free(s);
	free(want);
	o.shots = 2;
	s = task_prompt_text(t, &o, 0, 4, 4, &off, &space, NULL);
	check(s && strncmp(s, "In this story, ", 15) == 0 &&
	    strstr(s, ". The capital of ") != NULL && strstr(s, "France") != s + off &&
	    strcmp(s + off, "France is") == 0,
	    "2-shot counterfactual text: the context, the demonstrations, the prompt "
	    "(\"%s\")", s ? s : "");
	free(s);
	o.shots = 0;
	for (int k = 0; k < t->n_templates[0]; k++)
		for (int i = 0; i < t->n_pairs; i++) {
			int a = task_context_pair(t, &o, k, i), b;

			o.seed = 2;
			b = task_context_pair(t, &o, k, i);
			o.seed = 1;
			differ += a != b;
			same += a < 0 || a == i || strcmp(t->pairs[a].answer,
			    t->pairs[i].answer) == 0;
		}
	check(same == 0 && differ > 0, "every drawn context answer is another pair's "
	    "and another answer (%d bad); another seed draws others (%d of %d)",
	    same, differ, t->n_pairs * t->n_templates[0]);
	free(t->counterfactual);
	t->counterfactual = NULL;
	s = task_prompt_text(t, &o, 0, 4, 4, &off, &space, &cause);
	check(s == NULL && cause && strstr(cause, "counterfactual_format"),
	    "counterfactual prompts without counterfactual_format are refused (%s)",
	    cause ? cause : "");
	free(cause);
	task_free(t);
}

static void
check_text(void)
{
	fl_task *t = fx_task("../../data/tasks/country_capital.json");
	fl_prompt_opts o = { TASK_TEMPLATES_MAIN, 0, 1, false, false, false };
	char *s, *s2, *cause = NULL;
	int off;
	bool space;

	if (t == NULL)
		return;
	check(t->n_pairs == 15 && t->n_templates[TASK_TEMPLATES_MAIN] == 15 &&
	    t->n_templates[TASK_TEMPLATES_PARAPHRASE] == 15 && t->fewshot != NULL,
	    "country_capital: 15 pairs, 15 templates, 15 paraphrases, a few-shot "
	    "format (%d, %d, %d)", t->n_pairs, t->n_templates[0], t->n_templates[1]);
	s = task_prompt_text(t, &o, 0, 4, 4, &off, &space, &cause);
	check(s && strcmp(s, "It's crucial to know that the capital of France is") == 0 &&
	    off == (int)strlen("It's crucial to know that the capital of ") && space,
	    "zero-shot text ends before \" [C]\" (\"%s\", subject at %d)", s ? s : cause, off);
	free(s);

	o.shots = 2;
	s = task_prompt_text(t, &o, 0, 4, 4, &off, &space, NULL);
	s2 = task_prompt_text(t, &o, 0, 4, 4, NULL, &space, NULL);
	check(s && s2 && strcmp(s, s2) == 0, "k-shot text is deterministic");
	check(s && strncmp(s, "The capital of ", 15) == 0 &&
	    strstr(s, "France") == s + off && strstr(s, ". The capital of ") != NULL &&
	    strstr(s, ". It's crucial") != NULL,
	    "2-shot text: two demonstrations, then the prompt (\"%s\")", s ? s : "");
	check(s && strstr(s, "France is Paris") == NULL,
	    "the demonstrations use other subjects than the prompt's");
	free(s2);
	{	/* the corrupted prompt keeps the clean prompt's demonstrations */
		int coff = -1;
		char *c = task_prompt_text(t, &o, 0, 4, 7, &coff, &space, NULL);

		check(c && s && coff == off && strncmp(c, s, (size_t)off) == 0 &&
		    strcmp(c + off, "Canada is") == 0,
		    "a corrupted prompt keeps the demonstrations and swaps the subject "
		    "(\"%s\")", c);
		free(c);
	}
	free(s);
	o.seed = 2;
	s = task_prompt_text(t, &o, 0, 4, 4, &off, &space, NULL);
	o.seed = 1;
	s2 = task_prompt_text(t, &o, 0, 4, 4, &off, &space, NULL);
	check(s && s2 && strcmp(s, s2) != 0, "another seed draws other demonstrations");
	free(s);
	free(s2);
	o.shots = 15;
	s = task_prompt_text(t, &o, 0, 4, 4, &off, &space, &cause);
	check(s == NULL && cause && strstr(cause, "15-shot prompts need 15 pairs"),
	    "too many shots are refused (%s)", cause ? cause : "");
	free(cause);
	check(task_find_pair(t, "Greece") == 13 && task_find_pair(t, "Narnia") == -1,
	    "task_find_pair");
	task_free(t);
	check(prompt_find_word("The capital of France is France", "France") == 25 &&
	    prompt_find_word("Frances", "France") == -1 &&
	    prompt_find_word("AFrance", "France") == -1 &&
	    prompt_find_word("So France's capital", "France") == 3 &&
	    prompt_find_word("Nigeria or Niger", "Niger") == 11,
	    "prompt_find_word: the last occurrence as a whole word");
}

/* A model shell around a tokenizer, enough for prompt building. */
static void
check_gpt2_tokens(void)
{
	const char *dir = getenv("FL_GPT2_TOKENIZER_DIR");
	fl_model m;
	fl_task *t;
	fl_prompt_set ps;
	fl_prompt_opts o = { TASK_TEMPLATES_MAIN, 0, 1, false, false, false };
	fl_prompt p;
	char *cause = NULL;
	int ok = 1, at = -1, rc;

	memset(&m, 0, sizeof m);
	if (dir == NULL || (m.tok = tok_load_dir(dir, NULL)) == NULL) {
		printf("# skipped: GPT-2's tokenizer (FL_GPT2_TOKENIZER_DIR) is not "
		    "installed\n");
		return;
	}
	m.cfg.n_ctx = 1024;
	m.cfg.bos_id = -1;
	m.cfg.n_vocab = tok_vocab_size(m.tok);
	rc = prompt_make(&p, &m, "The capital of France is", 15, 6, "Paris", true,
	    &cause);
	check(rc == 0 && p.n == 5 && p.ids[0] == 464 && p.ids[3] == 4881 &&
	    p.subj_pos == 3 && p.subj_len == 1 && p.subject == 4881 &&
	    p.answer == 6342 && p.answer_tokens == 1,
	    "GPT-2: \"The capital of France is\": subject at 3 (4881), answer 6342 "
	    "(got %d tokens, subject %d+%d, answer %d)", p.n, p.subj_pos, p.subj_len,
	    p.answer);
	prompt_clear(&p);

	t = fx_task("../../data/tasks/country_capital.json");
	if (t != NULL && task_prompts(&ps, &m, t, &o, &cause) == 0) {
		for (int i = 0; i < ps.n; i++)
			if (ps.p[i].subj_len != 1 || ps.p[i].ids[ps.p[i].subj_pos] !=
			    ps.p[i].subject || ps.p[i].ids[ps.p[i].n - 1] != 318)
				ok = 0, at = i;
		check(ps.n == 225 && ps.multi_token == 0 && ok,
		    "GPT-2: 225 country_capital prompts, every subject one token, "
		    "every answer one token, each ending in \" is\" (%d prompts, %d "
		    "multi-token, first bad %d)", ps.n, ps.multi_token, at);
		/* the paper's ids: Canberra 33452 for Australia, Lisbon 41898 */
		check(ps.p[8].answer == 33452 && ps.p[11].answer == 41898 &&
		    ps.p[8].subject == 4505, "GPT-2: answer ids match the paper notes "
		    "(%d, %d)", ps.p[8].answer, ps.p[11].answer);
		prompt_set_clear(&ps);
		o.set = TASK_TEMPLATES_PARAPHRASE;
		o.shots = 3;
		check(task_prompts(&ps, &m, t, &o, &cause) == 0 && ps.n == 225 &&
		    ps.p[4].ids[ps.p[4].subj_pos] == 4881,
		    "GPT-2: 3-shot paraphrase prompts find the subject after the "
		    "demonstrations");
		prompt_set_clear(&ps);
	}
	task_free(t);
	t = fx_task("../../data/tasks/product_company.json");
	o.set = TASK_TEMPLATES_MAIN;
	o.shots = 0;
	if (t != NULL && task_prompts(&ps, &m, t, &o, &cause) == 0) {
		int multi = ps.multi_token, n = ps.n;

		prompt_set_clear(&ps);
		o.single_token = true;
		check(task_prompts(&ps, &m, t, &o, &cause) == 0 && n == 480 &&
		    multi == 60 && ps.dropped == 60 && ps.n == 420 && ps.multi_token == 0,
		    "GPT-2: product_company, 4 of 32 answers two tokens: --single-token "
		    "keeps 420 of 480 prompts (%d of %d multi-token; kept %d, dropped %d)",
		    multi, n, ps.n, ps.dropped);
		prompt_set_clear(&ps);
		o.single_token = false;
	}
	task_free(t);
	t = fx_task("../../data/tasks/country_continent.json");
	if (t != NULL && task_prompts(&ps, &m, t, &o, &cause) == 0) {
		check(ps.multi_token > 0 && ps.multi_token < ps.n,
		    "GPT-2: country_continent counts its multi-token answers (%d of %d)",
		    ps.multi_token, ps.n);
		prompt_set_clear(&ps);
	}
	task_free(t);
	free(cause);
	tok_free(m.tok);
}

static void
check_fixture_tokens(void)
{
	fl_model *m = fx_model("gpt2-f32"), *opt = fx_model("opt-f32");
	fl_prompt p, q;
	fl_task *t = fx_tiny_task();
	fl_prompt_set ps;
	fl_prompt_opts o = { TASK_TEMPLATES_MAIN, 1, 7, false, false, false };
	char *cause = NULL;
	int rc;

	if (m == NULL || opt == NULL || t == NULL)
		goto out;
	/* " Italy" is " It" "al" "y" in the fixture vocabulary */
	rc = prompt_make(&p, m, "The capital of Italy is", 15, 5, "Rome", true, NULL);
	check(rc == 0 && p.subj_pos == 3 && p.subj_len == 3, "a subject of three tokens is found "
	    "whole (at %d, %d tokens)", p.subj_pos, p.subj_len);
	rc = prompt_make(&q, opt, "The capital of Italy is", 15, 5, "Rome", true, NULL);
	check(rc == 0 && q.ids[0] == 2 && q.subj_pos == 4 && q.subj_len == 3 &&
	    q.subject == p.subject && q.answer == p.answer,
	    "OPT: the BOS shifts the subject by one (at %d)", q.subj_pos);
	prompt_clear(&p);
	prompt_clear(&q);
	/* " France" is " " "France": the span holds the subject's bytes only */
	rc = prompt_make(&p, m, "The capital of France is", 15, 6, NULL, true, NULL);
	check(rc == 0 && p.subj_len == 1 && p.subj_pos == 4 && p.answer == -1,
	    "a lone space token before the subject is not part of it (at %d, %d)",
	    p.subj_pos, p.subj_len);
	prompt_clear(&p);
	check(prompt_make(&p, m, "France is", 0, 6, "Paris", true, NULL) == 0 &&
	    p.subj_pos == 0, "a subject at the start of the prompt");
	prompt_clear(&p);
	rc = task_prompts(&ps, m, t, &o, &cause);
	check(rc == 0 && ps.n == 20 &&
	    ps.max_len <= m->cfg.n_ctx, "the tiny task gives 20 one-shot prompts "
	    "for the fixtures (%s)", cause ? cause : "ok");
	for (int i = 0; i < ps.n; i++) {
		const fl_prompt *r = &ps.p[i];
		char *dec = tok_decode(m->tok, r->ids + r->subj_pos, r->subj_len, NULL);

		if (strstr(dec, t->pairs[r->pair].subject) == NULL) {
			check(0, "prompt %d: subject tokens decode to \"%s\"", i, dec);
			free(dec);
			break;
		}
		free(dec);
		if (i == ps.n - 1)
			check(1, "each subject span decodes to the subject");
	}
	prompt_set_clear(&ps);
	o.corrupt = true;
	if (task_prompts(&ps, m, t, &o, &cause) == 0) {
		int ok = 1;

		for (int i = 0; i < ps.n; i++)
			ok &= ps.p[i].subject_pair != ps.p[i].pair;
		check(ok, "corrupted prompts all carry another pair's subject");
		prompt_set_clear(&ps);
	}
	o.corrupt = false;
	{	/* the single-token filter drops exactly the multi-token answers */
		int multi = -1, bad = 0, ctx_bad = 0;

		if (task_prompts(&ps, m, t, &o, &cause) == 0) {
			multi = ps.multi_token;
			prompt_set_clear(&ps);
		}
		o.single_token = true;
		if (task_prompts(&ps, m, t, &o, &cause) == 0) {
			for (int i = 0; i < ps.n; i++)
				bad += ps.p[i].answer_tokens != 1;
			check(multi > 0 && ps.dropped == multi && ps.n == 20 - multi &&
			    ps.multi_token == 0 && bad == 0, "single-token: %d kept, %d "
			    "dropped, as many as the multi-token answers (%d); %d kept with "
			    "several", ps.n, ps.dropped, multi, bad);
			prompt_set_clear(&ps);
		}
		o.single_token = false;
		o.counterfactual = true;
		o.shots = 0;	/* one shot and the context overflow OPT's 32 tokens */
		if (task_prompts(&ps, opt, t, &o, &cause) == 0) {
			for (int i = 0; i < ps.n; i++) {
				int nt, id = task_answer_token(opt,
				    t->pairs[ps.p[i].ctx_pair].answer, false, &nt);

				ctx_bad += ps.p[i].ctx_pair == ps.p[i].pair ||
				    ps.p[i].ctx_answer != id || id == ps.p[i].answer ||
				    strncmp(ps.p[i].text, "Say ", 4) != 0;
			}
			check(ps.counterfactual && ps.n == 20 && ctx_bad == 0,
			    "OPT: counterfactual prompts open with the context and carry the "
			    "stated answer's first token (%d bad)", ctx_bad);
			prompt_set_clear(&ps);
		} else {
			check(0, "OPT: counterfactual prompts of the tiny task: %s",
			    cause != NULL ? cause : "failed");
			free(cause);
			cause = NULL;
		}
		o.counterfactual = false;
		o.shots = 1;
	}
	o.set = TASK_TEMPLATES_HELDOUT;
	rc = task_prompts(&ps, m, t, &o, &cause);
	check(rc == -1 && cause != NULL && strstr(cause, "heldout_templates"),
	    "a missing template set is named (%s)", cause ? cause : "");
out:
	free(cause);
	task_free(t);
	model_free(m);
	model_free(opt);
}

int
main(void)
{
	(void)check_close;
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	check_errors();
	check_text();
	check_counterfactual_text();
	check_gpt2_tokens();
	check_fixture_tokens();
	rmdir(tmpdir);
	return check_done();
}
