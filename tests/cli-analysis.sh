#!/bin/bash
# The analysis commands through the real binary, on a fixture model and the
# short test task: the JSON of run, eval, heads and decompose parses (no
# NaN), has the fields scripts and the explorer read, and agrees with
# itself (contributions sum to the logit, batching does not change eval's
# numbers); bad options and files give status 2 or 1 with a message naming
# the option or the file. JSON is read with node (setup.sh installs it).
set -u
fl=${FACTLENS:?FACTLENS is not set}
fx=${FL_FIXTURES:?FL_FIXTURES is not set}
task=${top_srcdir:-$fx/../..}/tests/tasks/tiny.json
model=$fx/gpt2-f32
opt=$fx/opt-f32
post=$fx/opt350-f32
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

if ! command -v node >/dev/null 2>&1; then
	echo "# skipped: node is not installed (setup.sh installs it)"
	exit 77
fi

ok() { echo "ok - $1"; }
bad() { echo "FAIL - $1"; fail=1; }

# jsq FILE EXPR: evaluates a JavaScript expression over the parsed JSON `j`;
# prints its value, exits 1 when the file is not JSON or EXPR throws.
jsq() {
	node -e '
		const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
		const v = eval(process.argv[2]);
		console.log(typeof v === "object" ? JSON.stringify(v) : String(v));
	' "$1" "$2"
}

# check NAME FILE EXPR: passes when EXPR is true over the JSON in FILE.
check() {
	local name=$1 file=$2 expr=$3 got
	if got=$(jsq "$file" "$expr" 2>&1) && [ "$got" = true ]; then
		ok "$name"
	else
		bad "$name: $expr gave $got"
	fi
}

# expect NAME STATUS NEEDLE -- ARGS...
expect() {
	local name=$1 want=$2 needle=$3
	shift 4
	local out status
	out=$("$fl" "$@" 2>&1 >/dev/null)
	status=$?
	if [ "$status" -eq "$want" ] && [[ "$out" == *"$needle"* ]]; then
		ok "$name"
	else
		bad "$name: status $status (want $want), message: $out (want: $needle)"
	fi
}

# ---- run --------------------------------------------------------------
if "$fl" run --model "$model" --prompt "The capital of France is:" --task "$task" \
	--intercept --final-mask --patterns --json >"$tmp/run.json"; then
	ok "run --json with --task --intercept --final-mask --patterns"
else
	bad "run --json with --task --intercept --final-mask --patterns exits 0"
fi
check "run: the subject comes from the task" "$tmp/run.json" \
	'j.subject.text === "France" && j.subject.position === 4'
check "run: lens at resid_pre, resid_mid, resid_post of each layer" "$tmp/run.json" \
	'j.lens.length === 6 && j.lens[1].stream === "resid_mid" && j.lens[5].stream === "resid_post" && j.lens[0].top.length === 5 && j.lens[0].answer.rank >= 1 && j.lens[0].subject.prob >= 0'
check "run: contributions + rest sum to the logit within 1e-3" "$tmp/run.json" \
	'Math.abs(j.attrib.logit.sum + j.attrib.logit.rest - j.attrib.logit.value) < 1e-3 && Math.abs(j.attrib.logit_diff.sum + j.attrib.logit_diff.rest - j.attrib.logit_diff.value) < 1e-3 && j.attrib.logit.heads.length === 2 && j.attrib.logit.heads[0].length === 4'
check "run: the final logit is the answer's logit" "$tmp/run.json" \
	'Math.abs(j.attrib.logit.value - j.answer.logit) < 1e-4'
check "run: mover scores per head" "$tmp/run.json" \
	'j.movers.heads.length === 2 && j.movers.heads[1][3].rank >= 1 && j.movers.heads[0][0].attn >= 0 && Array.isArray(j.movers.flagged)'
check "run: patterns are layers x heads x causal rows" "$tmp/run.json" \
	'j.patterns.length === 2 && j.patterns[0].length === 4 && j.patterns[0][0].length === j.ids.length && j.patterns[0][0][2].length === 3 && Math.abs(j.patterns[1][2][5].reduce((a, b) => a + b) - 1) < 1e-5'
check "run: mitigation before and after" "$tmp/run.json" \
	'j.mitigation.final_mask && j.mitigation.intercept && j.mitigation.fit_prompts === 16 && j.mitigation.before.rank >= 1 && j.mitigation.after.rank === j.answer.rank'
check "run: the decomposition fitted on the task" "$tmp/run.json" \
	'j.decomposition.layer === 1 && j.decomposition.beta.length === 5 && j.decomposition.prompts === 16 && j.decomposition.prompt_cos <= 1'
"$fl" run --model "$model" --prompt "The capital of France is:" --task "$task" \
	--json >"$tmp/run0.json"
"$fl" run --model "$model" --prompt "The capital of France is:" --task "$task" \
	--final-mask --json >"$tmp/run1.json"
p0=$(jsq "$tmp/run0.json" 'j.answer.prob')
check "run: --final-mask reports the unmasked answer as 'before'" "$tmp/run1.json" \
	"Math.abs(j.mitigation.before.prob - $p0) < 1e-9 && j.final_mask === true"
"$fl" run --model "$opt" --prompt "So Italy is:" --subject Italy --json >"$tmp/run2.json"
check "run: OPT, a given subject of three tokens after the BOS" "$tmp/run2.json" \
	'j.ids[0] === 2 && j.subject.position === 3 && j.subject.tokens === 3 && !("attrib" in j)'

# ---- trace and knockout -------------------------------------------------
# The noise file the C test shares with PyTorch fits gpt2-f32's prompt
# (the subject " France" is one token of d_model 64).
ref=$fx/gpt2-f32
prompt="Germany is Berlin. The capital of France is"
if "$fl" trace --model "$model" --prompt "$prompt" --subject France \
	--noise "$ref/trace-noise.f32" --json >"$tmp/trace.json"; then
	ok "trace --json with --noise"
else
	bad "trace --json with --noise exits 0"
fi
answer=$(jsq "$ref/trace-ref.json" 'j.answer')
check "trace: the answer defaults to the clean top token, the reference's" \
	"$tmp/trace.json" "j.answer.id === $answer && j.answer.top_token === true"
check "trace: restore is [layers][positions], P in [0, 1]" "$tmp/trace.json" \
	'j.restore.length === 2 && j.restore.every(r => r.length === j.tokens.length && r.every(p => p >= 0 && p <= 1)) && j.kind === "resid" && j.restored === "blocks.0.hook_resid_pre"'
pc=$(jsq "$ref/trace-ref.json" 'j.p_clean')
pk=$(jsq "$ref/trace-ref.json" 'j.p_corrupt')
check "trace: p_clean and p_corrupt are PyTorch's" "$tmp/trace.json" \
	"Math.abs(j.p_clean - $pc) < 1e-4 && Math.abs(j.p_corrupt - $pk) < 1e-4 && j.subject.position === 9 && j.noise.samples === 1"
"$fl" trace --model "$model" --prompt "$prompt" --subject France --kind mlp \
	--window 3 --samples 3 --seed 5 --json >"$tmp/trace3.json"
check "trace: drawn noise, mlp, window 3, 3 samples" "$tmp/trace3.json" \
	'j.kind === "mlp" && j.window === 3 && j.noise.samples === 3 && j.noise.seed === 5 && j.noise.scale > 0 && j.restore.length === 2'
"$fl" trace --model "$opt" --prompt "So Italy is:" --subject Italy --kind attn \
	--window 1 --samples 2 --json >"$tmp/trace4.json"
check "trace: OPT, a subject of three tokens after the BOS" "$tmp/trace4.json" \
	'j.subject.position === 3 && j.subject.tokens === 3 && j.restore[0].length === j.tokens.length'
if "$fl" trace --model "$model" --prompt "$prompt" --subject France --samples 2 \
	>"$tmp/trace.txt" && grep -q '^ 9\* ' "$tmp/trace.txt"; then
	ok "trace: the text table marks the subject's row"
else
	bad "trace: the text table marks the subject's row: $(head -12 "$tmp/trace.txt")"
fi
"$fl" trace --model "$model" --task "$task" --samples 1 --kind mlp --window 1 \
	--json >"$tmp/trace5.json"
check "trace --task: the average indirect effect by position group" "$tmp/trace5.json" \
	'j.prompts === 20 && j.aie.length === 2 && j.aie[0].length === 7 && j.positions.length === 7 && j.positions[6].prompts === 20 && j.aie[1][6] !== null && j.p_clean > 0'
"$fl" knockout --model "$model" --prompt "$prompt" --subject France \
	--block relation --json >"$tmp/knock.json"
kw=$(jsq "$ref/trace-ref.json" 'j.knockout.relation_w1')
check "knockout --json: P per start layer, PyTorch's" "$tmp/knock.json" \
	"j.knockout.length === 2 && j.knockout.every((p, l) => Math.abs(p - $kw[l]) < 1e-4) && j.block === 'relation' && j.blocked.length === 9"
expect "trace: --kind takes resid, mlp or attn" 2 "--kind" -- trace --model "$model" \
	--prompt "$prompt" --kind heads
expect "trace: --window needs an integer" 2 "--window" -- trace --model "$model" \
	--prompt "$prompt" --window 0
expect "trace: --samples needs an integer" 2 "--samples" -- trace --model "$model" \
	--prompt "$prompt" --samples x
expect "trace: --noise-scale needs a number" 2 "--noise-scale" -- trace \
	--model "$model" --prompt "$prompt" --noise-scale -1
expect "trace: --noise is not drawn noise" 2 "--noise FILE" -- trace --model "$model" \
	--prompt "$prompt" --noise "$ref/trace-noise.f32" --samples 3
expect "trace: --prompt or --task" 2 "--prompt" -- trace --model "$model"
expect "trace: a noise file of the wrong size names it" 1 "config.json: holds" -- \
	trace --model "$model" --prompt "$prompt" --subject France --noise "$model/config.json"
expect "trace: a missing noise file names it" 1 "nonexistent.f32" -- trace \
	--model "$model" --prompt "$prompt" --subject France --noise "$tmp/nonexistent.f32"
expect "knockout: --block takes subject, relation or other" 2 "--block" -- knockout \
	--model "$model" --prompt "$prompt" --block verb
expect "knockout: --prompt is required" 2 "--prompt" -- knockout --model "$model"
expect "knockout: no --kind" 2 "kind" -- knockout --model "$model" --prompt "$prompt" \
	--kind mlp

# ---- a post-LN OPT with project_in/out (opt-350m's kind) ----------------
if "$fl" run --model "$post" --prompt "The capital of France is:" --task "$task" \
	--intercept --final-mask --json >"$tmp/post.json"; then
	ok "run --json on a post-LN model with --task --intercept --final-mask"
else
	bad "run --json on a post-LN model exits 0"
fi
check "post-LN: contributions sum to the logit, the intercept in the last MLP's term" "$tmp/post.json" \
	'Math.abs(j.attrib.logit.sum - j.attrib.logit.value) < 1e-3 && Math.abs(j.attrib.logit.rest) < 1e-3 && Math.abs(j.attrib.logit_diff.sum - j.attrib.logit_diff.value) < 1e-3 && j.attrib.convention.startsWith("post-LN")'
check "post-LN: the final logit is the answer's logit; lens of every stream" "$tmp/post.json" \
	'Math.abs(j.attrib.logit.value - j.answer.logit) < 1e-4 && j.lens.length === 6 && j.decomposition.layer === 1'
"$fl" decompose --model "$post" --task "$task" >"$tmp/post-dec.txt" &&
	grep -q "post-LN: the heads reach this MLP through the block's ln1" "$tmp/post-dec.txt" &&
	ok "decompose on a post-LN model says what 1+beta is not" || bad "decompose post-LN note"
"$fl" heads --model "$post" --task "$task" --json >"$tmp/post-heads.json" ||
	bad "heads --json on a post-LN model exits 0"
check "post-LN heads: effect = 100 (patched - clean) / clean" "$tmp/post-heads.json" \
	'j.effect.length === 2 && Math.abs(j.effect[1][2] - 100 * (j.patched[1][2] - j.clean) / j.clean) < 1e-6 * Math.max(1, Math.abs(j.effect[1][2]))'
"$fl" eval --model "$post" --task "$task" --json >"$tmp/post-eval.json" ||
	bad "eval --json on a post-LN model exits 0"
check "post-LN eval: 20 prompts, 4 conditions" "$tmp/post-eval.json" \
	'j.settings[0].prompts === 20 && ["baseline", "mask", "intercept", "both"].every(c => j.settings[0].conditions[c].mean_prob > 0)'

# ---- eval -------------------------------------------------------------
"$fl" eval --model "$model" --task "$task" --shots 1 --json >"$tmp/eval.json" ||
	bad "eval --json exits 0"
check "eval: zero-shot and 1-shot rows, 4 conditions each" "$tmp/eval.json" \
	'j.settings.length === 2 && j.settings[1].shots === 1 && ["baseline", "mask", "intercept", "both"].every(c => j.settings[0].conditions[c].mean_prob >= 0 && j.settings[0].conditions[c].mean_prob <= 1 && j.settings[0].conditions[c].mean_rank >= 1)'
check "eval: 20 prompts, 12 multi-token answers, calibration by subject" "$tmp/eval.json" \
	'j.settings[0].prompts === 20 && j.settings[0].multi_token_answers === 12 && j.calibration.split === "subject" && j.settings[0].calibration_prompts[0] + j.settings[0].calibration_prompts[1] === 20'
"$fl" eval --model "$model" --task "$task" --batch 1 --json >"$tmp/eval1.json"
"$fl" eval --model "$model" --task "$task" --batch 7 --json >"$tmp/eval7.json"
c1=$(jsq "$tmp/eval1.json" 'j.settings[0].conditions')
check "eval: --batch 1 and --batch 7 give the same table" "$tmp/eval7.json" \
	"(() => { const a = $c1, b = j.settings[0].conditions; return Object.keys(a).every(k => Math.abs(a[k].mean_prob - b[k].mean_prob) < 1e-7 && a[k].mean_rank === b[k].mean_rank); })() && j.settings[0].passes === 6"
"$fl" eval --model "$model" --task "$task" >"$tmp/eval.txt" &&
	grep -q "both (a+b)" "$tmp/eval.txt" && grep -q "2 folds by subject" "$tmp/eval.txt" &&
	ok "eval prints the table as text" || bad "eval text table"
# eval --csv: one header, a row per prompt and condition, the grid with its
# 95% intervals; the same numbers as --json (and its --per-prompt rows)
"$fl" eval --model "$model" --task "$task" --shots 1 --csv >"$tmp/eval.csv" || bad "eval --csv exits 0"
"$fl" eval --model "$model" --task "$task" --shots 1 --json --per-prompt >"$tmp/evalp.json" ||
	bad "eval --json --per-prompt exits 0"
# csvjson FILE: the CSV as a JSON array of objects (RFC 4180 quoting)
csvjson() {
	node -e '
		const t = require("fs").readFileSync(process.argv[1], "utf8");
		const rows = []; let row = [], f = "", q = false;
		for (let i = 0; i < t.length; i++) {
			const c = t[i];
			if (q) { if (c === "\"" && t[i + 1] === "\"") { f += c; i++; } else if (c === "\"") q = false; else f += c; }
			else if (c === "\"") q = true;
			else if (c === ",") { row.push(f); f = ""; }
			else if (c === "\n") { row.push(f); rows.push(row); row = []; f = ""; }
			else f += c;
		}
		const h = rows.shift();
		console.log(JSON.stringify(rows.map(r => { if (r.length !== h.length) throw new Error("row of " + r.length + " fields, header " + h.length); const o = {}; h.forEach((k, i) => o[k] = r[i]); return o; })));
	' "$1"
}
if csvjson "$tmp/eval.csv" >"$tmp/evalcsv.json"; then
	ok "eval --csv: every row has the header's fields"
else
	bad "eval --csv does not parse as CSV"
fi
check "eval --csv: 2 settings x 20 prompts x 4 conditions, then 8 grid rows" "$tmp/evalcsv.json" \
	'j.filter(r => r.row === "prompt").length === 160 && j.filter(r => r.row === "grid").length === 8'
jp=$(cat "$tmp/evalp.json")
check "eval --csv: the grid's mean P and top-1 are --json's, inside their 95% intervals" "$tmp/evalcsv.json" \
	"(() => { const e = $jp; return j.filter(r => r.row === 'grid').every(r => { const c = e.settings[+r.shots === 0 ? 0 : 1].conditions[r.condition]; return Math.abs(+r.mean_prob - c.mean_prob) < 1e-6 && Math.abs(+r.top1 - c.top1) < 1e-9 && +r.mean_prob_lo <= +r.mean_prob && +r.mean_prob <= +r.mean_prob_hi && +r.top1_lo <= +r.top1 && +r.top1 <= +r.top1_hi && Math.abs(+r.mean_prob_lo - c.mean_prob_lo) < 1e-6 && Math.abs(+r.top1_hi - c.top1_hi) < 1e-6; }); })()"
check "eval --csv: each grid mean P is the mean of its prompt rows" "$tmp/evalcsv.json" \
	'j.filter(r => r.row === "grid").every(g => { const p = j.filter(r => r.row === "prompt" && r.shots === g.shots && r.condition === g.condition); return p.length === +g.prompts && Math.abs(p.reduce((s, r) => s + +r.p_answer, 0) / p.length - +g.mean_prob) < 1e-6; })'
check "eval --json --per-prompt: the CSV's prompt rows, subject and template named" "$tmp/evalp.json" \
	'j.prompts.length === 160 && j.prompts.every(r => typeof r.subject === "string" && r.template >= 0 && (r.top1 === 1) === (r.rank === 1) && r.p_answer >= 0 && r.p_answer <= 1)'
expect "eval: --csv with --json refused" 2 "give one" -- eval --model "$model" --task "$task" --csv --json
expect "eval: --per-prompt without --json refused" 2 "--per-prompt needs --json" -- eval --model "$model" --task "$task" --per-prompt

# ---- heads ------------------------------------------------------------
"$fl" heads --model "$model" --task "$task" --json >"$tmp/heads.json" ||
	bad "heads --json exits 0"
check "heads: effect, patched and pearson are layers x heads" "$tmp/heads.json" \
	'j.effect.length === 2 && j.effect[0].length === 4 && j.pearson[1].length === 4 && j.prompts === 20 && j.receiver_layer === 2 && j.top.length === 8'
check "heads: effect = 100 (patched - clean) / clean" "$tmp/heads.json" \
	'Math.abs(j.effect[0][1] - 100 * (j.patched[0][1] - j.clean) / j.clean) < 1e-6 * Math.max(1, Math.abs(j.effect[0][1]))'
"$fl" heads --model "$model" --task "$task" --receiver 1 --json >"$tmp/heads1.json"
check "heads: no path from layer 1 to resid_pre 1: effect 0" "$tmp/heads1.json" \
	'j.effect[1].every(e => e === 0) && j.effect[0].some(e => e !== 0)'
"$fl" heads --model "$post" --task "$task" --receiver 1 --receiver-input q \
	--receiver-head 2 --metric subject --json >"$tmp/heads-q.json" ||
	bad "heads --receiver-input q --receiver-head 2 --metric subject exits 0"
check "heads: a q receiver, the subject metric, the MLP column" "$tmp/heads-q.json" \
	'j.receiver_input === "q" && j.receiver_head === 2 && j.metric.includes("subject") && j.mlp_effect.length === 2 && j.mlp_effect[1][0] === 0 && j.effect[1].every(e => e === 0) && j.effect[0].some(e => e !== 0) && Array.isArray(j.movers)'
expect "heads: --receiver-input q needs --receiver-head" 2 "--receiver-head" -- \
	heads --model "$model" --task "$task" --receiver 1 --receiver-input q
expect "heads: --receiver-input takes resid, q, k or v" 2 "--receiver-input" -- \
	heads --model "$model" --task "$task" --receiver-input z
expect "heads: a q receiver in the last layer at most" 2 "head of layers 1 to 1" -- \
	heads --model "$model" --task "$task" --receiver 2 --receiver-input q --receiver-head 0
expect "heads: --metric takes answer or subject" 2 "--metric" -- \
	heads --model "$model" --task "$task" --metric logit

# ---- task filters -----------------------------------------------------
"$fl" eval --model "$model" --task "$task" --single-token --split template --json \
	>"$tmp/eval-st.json" 2>"$tmp/eval-st.err" || bad "eval --single-token exits 0"
check "eval --single-token: kept + dropped = 20, no multi-token answer kept" \
	"$tmp/eval-st.json" 'j.settings[0].prompts + j.settings[0].dropped === 20 && j.settings[0].dropped > 0 && j.settings[0].multi_token_answers === 0 && j.task.single_token'
if grep -q "single-token kept .* of 20 prompts, dropped" "$tmp/eval-st.err"; then
	ok "eval --single-token says how many it dropped"
else
	bad "eval --single-token on stderr: $(cat "$tmp/eval-st.err")"
fi
"$fl" eval --model "$opt" --task "$task" --counterfactual --json --per-prompt \
	>"$tmp/eval-cf.json" || bad "eval --counterfactual exits 0"
check "eval --counterfactual: P of the memorised and the in-context answer" \
	"$tmp/eval-cf.json" 'j.settings[0].counterfactual && typeof j.settings[0].conditions.baseline.context_mean_prob === "number" && j.prompts.every(p => typeof p.p_context === "number" && typeof p.context_answer === "string")'
expect "eval: --counterfactual has no CSV" 2 "--counterfactual has no CSV" -- \
	eval --model "$model" --task "$task" --counterfactual --csv
printf '{"pairs": [{"subject": "a", "answer": "b"}, {"subject": "c", "answer": "d"}], "templates": ["[N] is [C]"]}' >"$tmp/nocf.json"
expect "heads: --counterfactual needs counterfactual_format" 1 "counterfactual_format" -- \
	heads --model "$model" --task "$tmp/nocf.json" --counterfactual
expect "run: --single-token needs --task" 2 "--single-token needs --task" -- \
	run --model "$model" --prompt "The capital of France is" --single-token

# ---- atp --------------------------------------------------------------
if "$fl" atp --model "$model" --prompt "The capital of France is" \
	--corrupt "The capital of Japan is" --answer Paris --distractor Tokyo \
	--neurons 1 --top 3 --json >"$tmp/atp.json"; then
	ok "atp --json with --distractor --neurons --top"
else
	bad "atp --json exits 0"
fi
check "atp: heads are layers x heads, positions under each, exact for the top 3" \
	"$tmp/atp.json" \
	'j.heads.length === 2 && j.heads[0].length === 4 && j.heads_by_position[1][3].length === j.tokens && j.top.length === 3 && j.top.every(e => typeof e.exact === "number" && Math.abs(e.estimate - j.heads[e.layer][e.head]) < 1e-9) && j.exact.flat().filter(x => x !== null).length === 3'
check "atp: the per-position terms sum to each head's estimate" "$tmp/atp.json" \
	'j.heads.every((r, l) => r.every((v, h) => Math.abs(j.heads_by_position[l][h].reduce((a, b) => a + b, 0) - v) < 1e-6))'
check "atp: neurons of layer 1, the metric and both runs' values" "$tmp/atp.json" \
	'j.neurons.layer === 1 && j.neurons.estimate.length === 256 && j.neurons.top.length === 3 && j.distractor.token === " Tokyo".slice(0, j.distractor.token.length) && typeof j.clean === "number" && typeof j.corrupted === "number"'
if "$fl" atp --model "$model" --prompt "The capital of France is" \
	--corrupt "The capital of Japan is" --answer Paris >"$tmp/atp.txt" &&
	grep -q "logit(.*) - mean logit at the last position" "$tmp/atp.txt" &&
	grep -q "strongest heads, with the exact patch" "$tmp/atp.txt"; then
	ok "atp without --distractor: logit(answer) - mean logit, the top heads' exact patches"
else
	bad "atp text output: $(head -5 "$tmp/atp.txt")"
fi

for m in opt350-f32 llama-f32; do
	if "$fl" atp --model "$fx/$m" --prompt "abc" --corrupt "abd" --answer x --top 2 \
		--json >"$tmp/atp-$m.json"; then
		check "atp on $m (post-LN OPT, Llama): a map and two exact patches" \
			"$tmp/atp-$m.json" 'j.heads.length === 2 && j.top.length === 2 && j.top.every(e => typeof e.exact === "number")'
	else
		bad "atp on $m exits 0"
	fi
done
# atp --task: the map averaged over the task's prompts, each with a twin
# of its length (test_grad checks the numbers against twins rebuilt by hand)
if "$fl" atp --model "$model" --task "$task" --shots 1 --neurons 1 --top 4 \
	--json >"$tmp/atp-task.json"; then
	check "atp --task: a layers x heads map over the prompts with a twin, the rest skipped" \
		"$tmp/atp-task.json" \
		'j.heads.length === 2 && j.heads[1].length === 4 && j.prompts > 0 && j.prompts + j.skipped === 20 && j.task.shots === 1 && j.top.length === 4 && j.neurons.estimate.length === 256 && j.heads.flat().some(v => v !== 0)'
	check "atp --task: the top list is the map's largest by magnitude" "$tmp/atp-task.json" \
		'j.top.every((e, i) => e.estimate === j.heads[e.layer][e.head] && (i === 0 || Math.abs(j.top[i - 1].estimate) >= Math.abs(e.estimate))) && Math.abs(j.top[0].estimate) === Math.max(...j.heads.flat().map(Math.abs))'
else
	bad "atp --task --json exits 0"
fi
if "$fl" atp --model "$model" --task "$task" --templates paraphrase >"$tmp/atp-task.txt" &&
	grep -q "mean AtP estimate of patching each head" "$tmp/atp-task.txt" &&
	grep -q "strongest heads:" "$tmp/atp-task.txt"; then
	ok "atp --task --templates paraphrase: the map and the strongest heads as text"
else
	bad "atp --task text output: $(head -5 "$tmp/atp-task.txt")"
fi
# heads --csv: a row per head, the JSON's grids
"$fl" heads --model "$model" --task "$task" --csv >"$tmp/heads.csv" && csvjson "$tmp/heads.csv" >"$tmp/headscsv.json" ||
	bad "heads --csv exits 0 and parses"
hj=$(cat "$tmp/heads.json")
check "heads --csv: layer, head, effect, patched, pearson as in --json" "$tmp/headscsv.json" \
	"(() => { const e = $hj; return j.length === 8 && j.every(r => ['effect', 'patched', 'pearson'].every(k => Math.abs(+r[k] - e[k][+r.layer][+r.head]) <= 1e-6 * Math.max(1, Math.abs(e[k][+r.layer][+r.head])))); })()"
# run --csv: the lens at the last position, a row per layer and stream
"$fl" run --model "$model" --prompt "The capital of France is" --answer Paris --json --lens >"$tmp/runl.json"
"$fl" run --model "$model" --prompt "The capital of France is" --answer Paris --csv >"$tmp/run.csv" &&
	csvjson "$tmp/run.csv" >"$tmp/runcsv.json" || bad "run --csv exits 0 and parses"
rj=$(cat "$tmp/runl.json")
check "run --csv: layer, stream, the answer's P and rank as --json's lens" "$tmp/runcsv.json" \
	"(() => { const e = $rj; return j.length === e.lens.length && j.every((r, i) => +r.layer === e.lens[i].layer && r.stream === e.lens[i].stream && +r.answer_rank === e.lens[i].answer.rank && Math.abs(+r.answer_prob - e.lens[i].answer.prob) < 1e-6 && r.top_bytes === e.lens[i].top[0].bytes); })()"
expect "run: --csv with --json refused" 2 "give one" -- run --model "$model" --prompt hi --csv --json

# ---- decompose --------------------------------------------------------
"$fl" decompose --model "$model" --task "$task" --layer 0 --prompt "So Japan is:" \
	--json >"$tmp/dec.json" || bad "decompose --json exits 0"
check "decompose: a coefficient per head and resid_pre, the intercept's tokens" "$tmp/dec.json" \
	'j.layer === 0 && j.regressors.length === 5 && j.regressors[4].name === "resid_pre" && j.regressors[0].top.length === 8 && j.intercept.top.length === 8 && j.intercept.answer_ranks.length === 5 && j.r2 <= 1'
check "decompose: the prompt's reconstruction" "$tmp/dec.json" \
	'j.prompt.cos <= 1 && j.prompt.rel_err >= 0 && j.prompt.mlp_top.length === 8'
"$fl" decompose --model "$model" --task "$task" --no-resid --json >"$tmp/dec2.json"
check "decompose: --no-resid, default layer the last" "$tmp/dec2.json" \
	'j.layer === 1 && j.regressors.length === 4'
for form in pooled per-prompt subject-dir logit; do
	"$fl" decompose --model "$model" --task "$task" --form "$form" --json \
	    >"$tmp/dec-$form.json" || bad "decompose --form $form exits 0"
	check "decompose --form $form: r2, r2_heldout (say how), the baseline, the answer's rank" \
	    "$tmp/dec-$form.json" \
	    "j.form === '$form' && j.r2 <= 1 && typeof j.r2_heldout === 'number' && j.heldout.length > 0 && j.baseline_cos > 0 && j.baseline_cos <= 1 && typeof j.baseline_r2_heldout === 'number' && j.answer_rank_unexplained >= 1 && j.answer_rank_unexplained <= j.answer_rank_among && j.answer_rank_mlp >= 1"
done
check "decompose --form pooled is the default" "$tmp/dec2.json" 'j.form === "pooled"'
check "decompose: the logit form ranks among the task's 5 answers" "$tmp/dec-logit.json" \
	'j.answer_rank_among === 5 && j.intercept.answers.length === 5'
"$fl" decompose --model "$model" --task "$task" --shots 2 --json >"$tmp/dec-k2.json" ||
	bad "decompose --shots 2 exits 0"
check "decompose --shots 2: fitted on 2-shot prompts (another fit than zero-shot)" \
	"$tmp/dec-k2.json" "j.task.shots === 2 && j.prompts === 20 && j.r2 !== $(jsq "$tmp/dec-pooled.json" j.r2)"
"$fl" heads --model "$model" --task "$task" --shots 1 --json >"$tmp/heads-k1.json" ||
	bad "heads --shots 1 exits 0"
check "heads --shots 1: patched on 1-shot prompts" "$tmp/heads-k1.json" \
	"j.task.shots === 1 && j.clean !== $(jsq "$tmp/heads.json" j.clean)"
"$fl" run --model "$model" --prompt "So Japan is:" --task "$task" --intercept --shots 1 \
	--json >"$tmp/run-k1.json" || bad "run --task --shots 1 exits 0"
check "run --task --shots 1: the intercept fitted on 1-shot prompts" "$tmp/run-k1.json" \
	'j.mitigation.fit_shots === 1 && j.decomposition.shots === 1'
expect "bad --form" 2 "--form takes pooled, per-prompt" -- \
	decompose --model "$model" --task "$task" --form none
expect "--prompt with another form" 2 "--prompt reconstructs with the pooled form" -- \
	decompose --model "$model" --task "$task" --form logit --prompt "So Japan is:"
expect "too many shots for heads" 1 "5-shot prompts need 5 pairs" -- \
	heads --model "$model" --task "$task" --shots 5

# ---- errors -----------------------------------------------------------
expect "eval without --task" 2 "--task FILE is required" -- eval --model "$model"
expect "heads without --task" 2 "--task FILE is required" -- heads --model "$model"
expect "decompose without --task" 2 "--task FILE is required" -- decompose --model "$model"
expect "a missing task file is named" 1 "$tmp/none.json" -- \
	eval --model "$model" --task "$tmp/none.json"
echo '{"pairs": [{"subject": "a"}]}' >"$tmp/bad.json"
expect "a bad task file names the field" 1 "'pairs'" -- eval --model "$model" --task "$tmp/bad.json"
expect "bad --split" 2 "--split takes subject or template" -- \
	eval --model "$model" --task "$task" --split pair
expect "bad --templates" 2 "--templates takes main" -- \
	eval --model "$model" --task "$task" --templates other
expect "a template set the task lacks" 1 "no 'heldout_templates'" -- \
	eval --model "$model" --task "$task" --templates heldout
expect "too many shots" 1 "5-shot prompts need 5 pairs" -- \
	eval --model "$model" --task "$task" --shots 5
expect "bad --mask-heads" 2 "--mask-heads takes head numbers from 0 to 3" -- \
	eval --model "$model" --task "$task" --mask-heads 1,9
expect "--intercept without --task" 2 "--intercept needs --task" -- \
	run --model "$model" --prompt "So France is:" --intercept
expect "a --subject not in the prompt" 1 "is not a word of the prompt" -- \
	run --model "$model" --prompt "So France is:" --subject Spain
expect "--layer past the last" 2 "--layer takes a layer from 0 to 1" -- \
	decompose --model "$model" --task "$task" --layer 2
expect "--receiver past the output" 2 "--receiver takes a layer from 1 to 2" -- \
	heads --model "$model" --task "$task" --receiver 3
expect "a prompt longer than the context in a task" 1 "longer than the model's context" -- \
	eval --model "$model" --task "$task" --shots 4
expect "bad --weights" 2 "--weights takes convert, stored or copy, not 'fast'" -- \
	heads --model "$model" --task "$task" --weights fast

# ---- --weights stored, copy ----------------------------------------------
# f16/bf16 weights used as stored give the very numbers of converted ones:
# the kernels widen them exactly and sum in the same order; copied into
# aligned memory, too. Only the timings in the JSON may differ.
for m in gpt2-f16 gpt2-bf16 opt350-f16; do
	for w in convert stored copy; do
		{ "$fl" run --model "$fx/$m" --prompt "The capital of France is:" --task "$task" \
			--final-mask --intercept --json --weights "$w" &&
		"$fl" eval --model "$fx/$m" --task "$task" --json --weights "$w" &&
		"$fl" heads --model "$fx/$m" --task "$task" --json --weights "$w" &&
		"$fl" decompose --model "$fx/$m" --task "$task" --json --weights "$w"; } |
			grep -a -v '"seconds"' >"$tmp/all-$w.json" ||
			bad "$m: run, eval, heads and decompose with --weights $w exit 0"
	done
	cmp -s "$tmp/all-convert.json" "$tmp/all-stored.json" &&
		ok "$m: run, eval, heads and decompose print the same with --weights stored" ||
		bad "$m: --weights stored changes the output: $(diff "$tmp/all-convert.json" \
"$tmp/all-stored.json" | head -4)"
	cmp -s "$tmp/all-convert.json" "$tmp/all-copy.json" &&
		ok "$m: run, eval, heads and decompose print the same with --weights copy" ||
		bad "$m: --weights copy changes the output: $(diff "$tmp/all-convert.json" \
"$tmp/all-copy.json" | head -4)"
done
# JSON is valid UTF-8 and lossless whatever the text: a character split
# across byte tokens reads as U+FFFD in "token", and the tokens' "bytes"
# put back together are the prompt's bytes.
utf8_prompt='Zürich, naïve, Côte 東京 is'
hex_of() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
for cmd in run tokenize; do
	if [ "$cmd" = run ]; then
		"$fl" run --model "$model" --prompt "$utf8_prompt" --json >"$tmp/utf8.json"
	else
		"$fl" tokenize --model "$model" --json "$utf8_prompt" >"$tmp/utf8.json"
	fi
	if iconv -f UTF-8 -t UTF-8 "$tmp/utf8.json" >/dev/null 2>&1; then
		ok "$cmd --json on a non-ASCII prompt is valid UTF-8"
	else
		bad "$cmd --json on a non-ASCII prompt is not valid UTF-8"
	fi
	check "$cmd --json: the tokens' bytes are the prompt's bytes" "$tmp/utf8.json" \
		"j.tokens.map(t => t.bytes).join('') === '$(hex_of "$utf8_prompt")' && j.tokens.some(t => t.token === '\ufffd')"
done
"$fl" run --model "$model" --prompt "$utf8_prompt" --json >"$tmp/utf8.json"
check "run --json: the prompt field is the prompt" "$tmp/utf8.json" "j.prompt === '$utf8_prompt'"

# The intercept's hook is named as the model has it: hook_resid_post of
# the last layer pre-LN, hook_mlp_out post-LN (mitigate.h).
"$fl" run --model "$model" --task "$task" --prompt "The capital of France is:" \
	--intercept --json >"$tmp/hook.json"
check "run --json: the intercept's hook, pre-LN" "$tmp/hook.json" \
	"j.mitigation.hook === 'blocks.1.hook_resid_post' && j.mitigation.position === 'last'"
"$fl" run --model "$post" --task "$task" --prompt "The capital of France is:" \
	--intercept --json >"$tmp/hook.json"
check "run --json: the intercept's hook, post-LN" "$tmp/hook.json" \
	"j.mitigation.hook === 'blocks.1.hook_mlp_out'"
"$fl" eval --model "$post" --task "$task" --json >"$tmp/hook.json"
check "eval --json: the intercept's hook, post-LN" "$tmp/hook.json" \
	"j.calibration.hook === 'blocks.1.hook_mlp_out'"
# A one-layer model: its last layer is its first, and the mitigations
# re-run it from the cached embeddings.
one=$fx/gpt2-1layer
if "$fl" run --model "$one" --prompt "The capital of France is:" --task "$task" \
    --final-mask --intercept --json > "$tmp/one.json" 2> "$tmp/one.err"; then
	check "run on a one-layer model with --final-mask --intercept" "$tmp/one.json" \
		"j.mitigation.final_mask === true && j.mitigation.intercept === true && j.mitigation.after.prob !== j.mitigation.before.prob"
else
	bad "run on a one-layer model with --final-mask --intercept: $(cat "$tmp/one.err")"
fi
if "$fl" --model "$one" -c "prompt The capital of France is:; mask on" >/dev/null 2> "$tmp/one.err"; then
	ok "the explorer's mask toggle on a one-layer model"
else
	bad "the explorer's mask toggle on a one-layer model: $(cat "$tmp/one.err")"
fi
# Figures: --plot writes the format its extension names (the file's magic
# bytes), for run's lens, heads' grid and eval's grid; the explorer's :plot
# too; an unknown extension is refused before any work.
magic() { # FILE: png, svg, pdf or what it starts with
	case "$(head -c 8 "$1" | od -An -c | tr -d ' \n')" in
	*PNG*) echo png ;;
	"<?xml"*|"<svg"*) echo svg ;;
	%PDF*) echo pdf ;;
	*) head -c 8 "$1" | od -An -c | tr -d ' \n' ;;
	esac
}
plot_ok() { # NAME FILE FORMAT
	if [ -s "$2" ] && [ "$(magic "$2")" = "$3" ]; then
		ok "$1 writes a $3 figure"
	else
		bad "$1: $2 is not a $3 figure ($(magic "$2" 2>/dev/null))"
	fi
}
"$fl" run --model "$model" --prompt "The capital of France is:" --task "$task" \
	--plot "$tmp/lens.png" > /dev/null && plot_ok "run --plot" "$tmp/lens.png" png
"$fl" heads --model "$model" --task "$task" --plot "$tmp/heads.svg" > /dev/null &&
	plot_ok "heads --plot" "$tmp/heads.svg" svg
"$fl" eval --model "$model" --task "$task" --shots 1 --plot "$tmp/eval.pdf" > /dev/null &&
	plot_ok "eval --plot" "$tmp/eval.pdf" pdf
"$fl" --model "$model" -c "prompt The capital of France is:; plot $tmp/x.pdf; metric mover; plot heads $tmp/y.png" \
	> /dev/null && plot_ok ":plot" "$tmp/x.pdf" pdf && plot_ok ":plot heads" "$tmp/y.png" png
# trace's and knockout's figures: the text drawn in the PDF (read back
# through the fonts' maps) holds every token of the prompt as its row label,
# the subject's marked, every layer, and the JSON's P(clean) and P(corrupt);
# a prompt two tokens longer draws a PNG two rows (2 x 18 points) taller.
pdftext=${top_srcdir:-$fx/../..}/tests/pdf-text.js
# pdf_check NAME PDF JSON EXPR: EXPR over the PDF's text runs `runs` and the
# JSON `j`.
pdf_check() {
	local got
	if got=$(node -e '
		const fs = require("fs"), cp = require("child_process");
		const runs = JSON.parse(cp.execFileSync("node", [process.argv[1], process.argv[2]]));
		const j = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
		const ok = eval(process.argv[4]);
		console.log(ok === true ? "true" : "false; text: " + JSON.stringify(runs));
	' "$pdftext" "$2" "$3" "$4" 2>&1) && [ "$got" = true ]; then
		ok "$1"
	else
		bad "$1: $4 gave $got"
	fi
}
png_size() { # FILE: width height, from the IHDR chunk
	od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8 }'
}
tprompt="The capital of France is:"
"$fl" trace --model "$model" --prompt "$tprompt" --subject France --samples 2 \
	--json > "$tmp/tp.json"
"$fl" trace --model "$model" --prompt "$tprompt" --subject France --samples 2 \
	--plot "$tmp/trace.pdf" > /dev/null && plot_ok "trace --plot" "$tmp/trace.pdf" pdf
# the labels as the figure draws them: spaces alone as open boxes, the
# subject's rows with " *"
labels='j.tokens.map((t, i) => (/^ +$/.test(t.token) ? t.token.replace(/ /g, "\u2423") : t.token) + (i >= j.subject.position && i < j.subject.position + j.subject.tokens ? " *" : ""))'
pdf_check "trace --plot: every token labels its row, in order, the subject marked" \
	"$tmp/trace.pdf" "$tmp/tp.json" \
	"(() => { const want = $labels; let k = 0; for (const r of runs) if (r === want[k]) k++; return k === want.length && want.length === j.tokens.length && want.some((w) => w.endsWith(' *')); })()"
pdf_check "trace --plot: every layer on the axis, and the layer count" \
	"$tmp/trace.pdf" "$tmp/tp.json" \
	"(() => { const L = j.restore.length, i = runs.indexOf('layer (' + L + ')'); return i >= L && runs.slice(i - L, i).join() === [...Array(L).keys()].join(); })()"
pdf_check "trace --plot: the title says the kind, P(clean) and P(corrupt) of the run" \
	"$tmp/trace.pdf" "$tmp/tp.json" \
	"(() => { const t = runs.slice(0, 4).join(' '); return t.includes('resid_pre') && t.includes('P(clean) ' + j.p_clean.toFixed(4)) && t.includes('P(corrupt) ' + j.p_corrupt.toFixed(4)); })()"
"$fl" trace --model "$model" --prompt "$tprompt" --subject France --samples 2 \
	--plot "$tmp/trace.png" > /dev/null
"$fl" trace --model "$model" --prompt "The capital of France is the city" --subject France \
	--samples 2 --plot "$tmp/trace2.png" > /dev/null
"$fl" tokenize --model "$model" --json "The capital of France is the city" > "$tmp/tok2.json"
n1=$(jsq "$tmp/tp.json" 'j.tokens.length')
n2=$(jsq "$tmp/tok2.json" '(j.tokens || j.ids || j).length')
read -r w1 h1 <<< "$(png_size "$tmp/trace.png")"
read -r w2 h2 <<< "$(png_size "$tmp/trace2.png")"
if [ "$(magic "$tmp/trace.png")" = png ] && [ $((h2 - h1)) -eq $((36 * (n2 - n1))) ] &&
    [ "$w1" -ge 960 ] && [ "$n2" -gt "$n1" ]; then
	ok "trace --plot: a row per token (PNG ${w1}x$h1 for $n1 tokens, ${w2}x$h2 for $n2)"
else
	bad "trace --plot: PNG ${w1}x$h1 for $n1 tokens, ${w2}x$h2 for $n2 (want $((36 * (n2 - n1))) pixels taller)"
fi
"$fl" trace --model "$model" --prompt "$tprompt" --subject France --samples 1 --kind mlp \
	--window 1 --plot "$tmp/trace.svg" > /dev/null && plot_ok "trace --kind mlp --plot" "$tmp/trace.svg" svg
"$fl" trace --model "$model" --task "$task" --samples 1 --json > "$tmp/tt.json"
"$fl" trace --model "$model" --task "$task" --samples 1 --plot "$tmp/tt.pdf" > /dev/null
pdf_check "trace --task --plot: every position group with its prompt count, every layer" \
	"$tmp/tt.pdf" "$tmp/tt.json" \
	"(() => { let k = 0; const want = j.positions.map((p) => p.name + ' (' + p.prompts + ')' + (/subject token/.test(p.name) ? ' *' : '')); for (const r of runs) if (r === want[k]) k++; return k === 7 && runs.includes('layer (' + j.aie.length + ')') && runs.join(' ').includes('mean P(clean) ' + j.p_clean.toFixed(4)); })()"
"$fl" knockout --model "$model" --prompt "$tprompt" --subject France --json > "$tmp/ko.json"
"$fl" knockout --model "$model" --prompt "$tprompt" --subject France --plot "$tmp/ko.pdf" \
	> /dev/null && plot_ok "knockout --plot" "$tmp/ko.pdf" pdf
pdf_check "knockout --plot: each start layer, the clean line and P(clean)" \
	"$tmp/ko.pdf" "$tmp/ko.json" \
	"(() => { const L = j.knockout.length, i = runs.indexOf('first layer of the blocked window'); return i >= L && runs.slice(i - L, i).join() === [...Array(L).keys()].join() && runs.includes('clean') && runs.join(' ').includes('P(clean) ' + j.p_clean.toFixed(4)); })()"
expect "trace --plot with an unknown extension" 2 "a figure is .png, .svg or .pdf" -- \
	trace --model "$model" --prompt "$tprompt" --plot "$tmp/fig.jpg"
expect "--plot with an unknown extension" 2 "a figure is .png, .svg or .pdf" -- \
	eval --model "$model" --task "$task" --plot "$tmp/fig.txt"
[ ! -e "$tmp/fig.txt" ] && ok "nothing is written for an unknown extension" ||
	bad "a file was written for an unknown extension"
expect "run --plot without an answer to draw" 2 "--plot draws the answer" -- \
	run --model "$model" --prompt "hi" --plot "$tmp/none.png"
# ---- patch: activation patching grids; run --lens-position -----------
# (in the fixture's tiny vocabulary " Paris" and " Tokyo" both start with
# the space: " capital" and " of" are tokens of their own)
pc="The capital of France is"
pk="The capital of Japan is"
if "$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--distractor of --json > "$tmp/pt.json"; then
	ok "patch --json (resid_pre)"
else
	bad "patch --json exits 0"
fi
check "patch: resid_pre is layers x positions; every cell before the first differing position is 0, normalised" \
	"$tmp/pt.json" 'j.dims.join() === "layer,position" && j.patched.length === 2 && j.patched[0].length === j.tokens.length && j.differ.length > 0 && j.normalized.every(r => r.slice(0, j.differ[0]).every(v => v === 0)) && j.hook === "blocks.L.hook_resid_pre" && j.runs < j.cells'
check "patch: resid_pre of layer 0 at a differing position moves the metric; normalised = (patched - corrupted) / (clean - corrupted)" \
	"$tmp/pt.json" 'j.normalized.every((r, l) => r.every((v, t) => Math.abs(v - (j.patched[l][t] - j.corrupted) / (j.clean - j.corrupted)) < 1e-9)) && j.patched[0][j.differ[0]] !== j.corrupted'
"$fl" patch --model "$model" --clean "$pc" --corrupt "$pk" --answer capital \
	--distractor of --hook resid_mid --json > "$tmp/ptm.json"
check "patch --hook resid_mid (--clean): the last layer at the last position restores the clean metric" \
	"$tmp/ptm.json" 'Math.abs(j.normalized[1][j.tokens.length - 1] - 1) < 1e-5 && j.hook === "blocks.L.hook_resid_mid"'
"$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--hook z --json > "$tmp/ptz.json"
"$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--hook z --by-pos --json > "$tmp/ptzp.json"
check "patch --hook z: layers x heads, no distractor: the mean logit" "$tmp/ptz.json" \
	'j.dims.join() === "layer,head" && j.patched.length === 2 && j.patched[0].length === 4 && j.distractor === null && j.metric === "logit-diff" && j.metric_text.includes("mean logit")'
check "patch --hook z --by-pos: layers x positions x heads" "$tmp/ptzp.json" \
	'j.dims.join() === "layer,position,head" && j.patched.length === 2 && j.patched[1].length === j.tokens.length && j.patched[1][0].length === 4 && j.by_pos === true'
"$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--distractor of --hook q --json > "$tmp/ptq.json"
check "patch --hook q: layers x heads of attn.hook_q; normalised = (patched - corrupted) / (clean - corrupted)" \
	"$tmp/ptq.json" 'j.dims.join() === "layer,head" && j.hook === "blocks.L.attn.hook_q" && j.heads === 4 && j.patched.length === 2 && j.patched[0].length === 4 && j.patched.flat().some(v => v !== j.corrupted) && j.normalized.every((r, l) => r.every((v, h) => Math.abs(v - (j.patched[l][h] - j.corrupted) / (j.clean - j.corrupted)) < 1e-9))'
"$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--distractor of --hook z --json > "$tmp/ptzd.json"
"$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--distractor of --hook every --json > "$tmp/pte.json"
check "patch --hook every: the grids z, q, k, v, pattern; its z and q are --hook z's and q's" "$tmp/pte.json" \
	"j.hook === 'every' && Object.keys(j.grids).join() === 'z,q,k,v,pattern' && JSON.stringify(j.grids.z.patched) === JSON.stringify($(jsq "$tmp/ptzd.json" 'j.patched')) && JSON.stringify(j.grids.q.patched) === JSON.stringify($(jsq "$tmp/ptq.json" 'j.patched')) && j.grids.pattern.hook === 'blocks.L.attn.hook_pattern' && j.clean === $(jsq "$tmp/ptq.json" 'j.clean')"
if "$fl" patch --model "$fx/llama-f32" --prompt "abc" --corrupt "abd" --answer x \
	--hook every --by-pos --json > "$tmp/pte-llama.json"; then
	check "patch --hook every --by-pos on Llama: q and pattern by query head, k and v by key/value head" \
		"$tmp/pte-llama.json" '(() => { const g = j.grids; return g.q.heads === 4 && g.pattern.heads === 4 && g.k.heads === 2 && g.v.heads === 2 && g.k.patched[1][0].length === 2 && g.q.patched[1][0].length === 4 && g.v.dims.join() === "layer,position,head" && g.v.patched.length === 2 && g.v.patched[0].length === j.tokens.length; })()'
else
	bad "patch --hook every --by-pos on llama-f32 exits 0"
fi
if "$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--distractor of --hook every > "$tmp/pte.txt" && [ "$(grep -c '^==== ' "$tmp/pte.txt")" = 5 ] &&
	grep -q "blocks.L.attn.hook_pattern of each head, its whole pattern" "$tmp/pte.txt"; then
	ok "patch --hook every: the text has the five grids"
else
	bad "patch --hook every text: $(head -20 "$tmp/pte.txt")"
fi
"$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--metric prob --hook mlp_out --json > "$tmp/ptp.json"
"$fl" run --model "$model" --prompt "$pc" --answer capital --json > "$tmp/ptr.json"
check "patch --metric prob: the clean run's P(answer) is run's" "$tmp/ptp.json" \
	"Math.abs(j.clean - $(jsq "$tmp/ptr.json" 'j.answer.prob')) < 1e-6 && j.metric === 'prob' && j.metric_text.startsWith('P(')"
if "$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--distractor of > "$tmp/pt.txt" && grep -q "normalised: (patched - corrupted)" "$tmp/pt.txt" &&
	grep -q "the metric with the cell patched" "$tmp/pt.txt" && grep -q '^ *[0-9]*\* "' "$tmp/pt.txt"; then
	ok "patch: the text output has both tables, the differing positions starred"
else
	bad "patch text output: $(head -12 "$tmp/pt.txt")"
fi
for m in opt-f32 opt350-f32 llama-f32; do
	if "$fl" patch --model "$fx/$m" --prompt "abc" --corrupt "abd" --answer x \
		--hook z --by-pos --json > "$tmp/pt-$m.json"; then
		check "patch on $m: a grid of numbers" "$tmp/pt-$m.json" \
			'j.patched.flat(2).every(v => typeof v === "number") && j.patched.length === 2'
	else
		bad "patch on $m exits 0"
	fi
done
"$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--distractor of --plot "$tmp/pt.pdf" > /dev/null && plot_ok "patch --plot" "$tmp/pt.pdf" pdf
plabels='j.tokens.map((t, i) => { const f = (x) => /^ +$/.test(x.token) ? x.token.replace(/ /g, "\u2423") : x.token; return f(t) + (j.differ.includes(i) ? "/" + f(j.corrupt_tokens[i]).replace(/^ +/, "") + " *" : ""); })'
pdf_check "patch --plot: every token labels its row, the differing ones clean/corrupted and marked" \
	"$tmp/pt.pdf" "$tmp/pt.json" \
	"(() => { const want = $plabels; let k = 0; for (const r of runs) if (r === want[k]) k++; return k === want.length && want.some((w) => w.endsWith(' *')); })()"
"$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--hook z --plot "$tmp/ptz.svg" > /dev/null && plot_ok "patch --hook z --plot" "$tmp/ptz.svg" svg
"$fl" patch --model "$model" --prompt "$pc" --corrupt "$pk" --answer capital \
	--hook z --by-pos --plot "$tmp/ptzp.png" > /dev/null && plot_ok "patch --hook z --by-pos --plot" "$tmp/ptzp.png" png
# the lens at a position: gpt2-f32's ref.json prompt at the position of
# actpatch-ref.json's lens, every stream's answer logit against PyTorch's
lpos=$(jsq "$model/actpatch-ref.json" 'j.lens.position')
ltext=$(jsq "$model/ref.json" 'j.text')
lT=$(jsq "$model/ref.json" 'j.ids.length')
"$fl" run --model "$model" --prompt "$ltext" --answer Paris --lens-position "$lpos" \
	--json > "$tmp/lp.json"
check "run --lens-position: every stream's answer logit at that position = PyTorch (1e-5)" "$tmp/lp.json" \
	"(() => { const b = require('fs').readFileSync('$model/actpatch-lens.f32'); const f = new Float32Array(new Uint8Array(b).buffer); const V = f.length / j.lens.length; return j.lens_position === $lpos && j.lens.length === 6 && j.lens.every((e, r) => Math.abs(e.answer.logit - f[r * V + j.answer.id]) < 1e-5); })()"
"$fl" run --model "$model" --prompt "$ltext" --answer Paris --lens-position "$((lpos - lT))" \
	--json > "$tmp/lpn.json"
"$fl" run --model "$model" --prompt "$ltext" --answer Paris --json > "$tmp/lpd.json"
"$fl" run --model "$model" --prompt "$ltext" --answer Paris --lens-position -1 \
	--json > "$tmp/lpl.json"
check "run --lens-position: a negative position counts from the end; -1 is the default" "$tmp/lpn.json" \
	"JSON.stringify(j.lens) === JSON.stringify($(jsq "$tmp/lp.json" 'j.lens')) && JSON.stringify($(jsq "$tmp/lpl.json" 'j.lens')) === JSON.stringify($(jsq "$tmp/lpd.json" 'j.lens')) && $(jsq "$tmp/lpd.json" 'j.lens_position') === $((lT - 1)) && $(jsq "$tmp/lpd.json" 'j.lens[0].answer.prob') !== j.lens[0].answer.prob"
"$fl" run --model "$model" --prompt "$ltext" --answer Paris --lens-position "$lpos" \
	--csv > "$tmp/lp.csv"
csvp=$(sed -n 2p "$tmp/lp.csv" | cut -d, -f5)
check "run --lens-position --csv: the lens at that position" "$tmp/lp.json" \
	"Math.abs(j.lens[0].answer.prob - ${csvp:-NaN}) < 1e-6"
if "$fl" run --model "$model" --prompt "$ltext" --answer Paris --lens-position "$lpos" --lens |
	grep -q "logit lens at position $lpos"; then
	ok "run --lens-position --lens: the text names the position"
else
	bad "run --lens-position --lens: the text names the position"
fi
exit $fail
