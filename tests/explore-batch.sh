#!/bin/bash
# The explorer's screens, rendered headless (--script) on the tiny fixture
# model and compared with the expected text in tests/explore/NAME.txt. The
# first line of NAME.cmds gives the size and any extra options:
#     # size 80x24 [--ascii] [--theme NAME]
# Regenerate an expected file after an intended change with
#     FL_UPDATE_EXPECTED=1 make check TESTS=tests/explore-batch.sh
# and read the diff before committing it.
set -u
fl=${FACTLENS:?FACTLENS is not set}
fx=${FL_FIXTURES:?FL_FIXTURES is not set}/gpt2-f32
dir=$(cd "${top_srcdir:-.}/tests/explore" && pwd)
src=$(cd "${top_srcdir:-.}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# same A B TEXT LABEL: files A and B are equal and A contains TEXT
same() {
	if cmp -s "$1" "$2" && grep -q "$3" "$1"; then
		echo "ok - $4"
	else
		echo "FAIL - not so: $4: $(diff "$1" "$2" | head -6)"
		fail=1
	fi
}
# Nothing from the user's environment may change a render.
unset NO_COLOR FACTLENS_MODEL FACTLENS_TASK
export XDG_CONFIG_HOME=$tmp/config XDG_STATE_HOME=$tmp/state

for cmds in "$dir"/*.cmds; do
	name=$(basename "$cmds" .cmds)
	read -r _ _ size extra < "$cmds"
	# shellcheck disable=SC2086
	# From the source tree, so that a script names tests/tasks/tiny.json.
	(cd "$src" && "$fl" --model "$fx" --size "$size" $extra --script "$cmds") \
	    > "$tmp/$name.txt" 2> "$tmp/$name.err"
	status=$?
	if [ "$status" -ne 0 ]; then
		echo "FAIL - batch $name exits with $status: $(cat "$tmp/$name.err")"
		fail=1
		continue
	fi
	if [ -n "${FL_UPDATE_EXPECTED:-}" ]; then
		cp "$tmp/$name.txt" "$dir/$name.txt"
	fi
	if diff -u "$dir/$name.txt" "$tmp/$name.txt" > "$tmp/$name.diff"; then
		echo "ok - batch render $name ($size) matches tests/explore/$name.txt"
	else
		echo "FAIL - batch render $name differs from tests/explore/$name.txt:"
		head -40 "$tmp/$name.diff"
		fail=1
	fi
done

# Every line of a render is at most the width, and there are exactly
# height lines per screen.
"$fl" --model "$fx" --size 80x24 -c "prompt The capital of France is" > "$tmp/w.txt"
lines=$(wc -l < "$tmp/w.txt")
wide=$(LC_ALL=C.UTF-8 wc -L < "$tmp/w.txt")
if [ "$lines" -eq 24 ] && [ "$wide" -le 80 ]; then
	echo "ok - an 80x24 render is 24 lines of at most 80 columns"
else
	echo "FAIL - an 80x24 render has $lines lines, the widest $wide columns"
	fail=1
fi

# -c runs the same commands as --script; ';' separates them.
"$fl" --model "$fx" --size 100x30 -c "prompt The capital of France is; answer France; \
subject capital; render; layer +1; head 1.2; metric direct; render; mask on; render; \
mask toggle; metric mover; subject auto; answer top; layer first; head -1; topk 3" > "$tmp/c.txt"
if cmp -s "$tmp/c.txt" "$dir/navigate.txt"; then
	echo "ok - -c \"cmd; cmd\" renders what the same --script file does"
else
	echo "FAIL - -c output differs from navigate.txt"
	fail=1
fi

# Errors: a bad command stops the batch with status 1 and names the line.
expect_err() { # NAME NEEDLE -- ARGS
	local name=$1 needle=$2 out status
	shift 3
	out=$("$fl" --model "$fx" "$@" 2>&1 >/dev/null)
	status=$?
	if [ "$status" -ne 0 ] && [[ "$out" == *"$needle"* ]]; then
		echo "ok - $name: status $status, \"$out\""
	else
		echo "FAIL - $name: status $status, message: $out (expected: $needle)"
		fail=1
	fi
}
printf 'prompt hi\nfrobnicate 3\n' > "$tmp/bad.cmds"
expect_err "unknown command names file and line" "bad.cmds:2: unknown command 'frobnicate'" -- --script "$tmp/bad.cmds"
expect_err "bad layer argument" "layer: expected N" -- -c "prompt hi; layer up"
expect_err "subject not in the prompt" "subject: no 'Paris' in the prompt" -- -c "prompt The capital of France is; subject Paris"
expect_err "unknown metric" "metric: expected attn" -- -c "metric loudness"
expect_err "unterminated quote" "unterminated quote" -- -c "prompt \"oops"
expect_err "unknown theme" "no theme 'nope'" -- -c "theme nope"
expect_err "bad theme file" "bad colour 'purpleish'" -- -c "theme $dir/bad.theme.in"
expect_err "eval without a task: the default one, too long for this model" \
	"country_capital.json: templates[1], pair 2 (Russia): the prompt" -- -c "prompt hi; eval"
expect_err "task file missing" "nope.json" -- -c "task $tmp/nope.json"
expect_err "task prompt out of range" "task: tiny_capital has prompts 0 to 19, not 20" -- \
    -c "task $src/tests/tasks/tiny.json 20"
expect_err "missing script file" "cannot open" -- --script "$tmp/none.cmds"

# --batch FILE, the old name of --script, still runs a script, and says it is
# deprecated (on stderr, so the screens are the same).
(cd "$src" && "$fl" --model "$fx" --size 100x30 --batch tests/explore/navigate.cmds) \
    > "$tmp/alias.txt" 2> "$tmp/alias.err"
if cmp -s "$tmp/alias.txt" "$dir/navigate.txt" &&
    grep -q -- "--batch FILE is deprecated: use --script FILE" "$tmp/alias.err"; then
	echo "ok - --batch FILE runs the script as --script does, with a deprecation warning"
else
	echo "FAIL - --batch FILE: $(head -3 "$tmp/alias.err"); $(diff "$tmp/alias.txt" "$dir/navigate.txt" | head -4)"
	fail=1
fi
out=$("$fl" --model "$fx" --size 5x5 -c "quit" 2>&1) && echo "ok - a 5x5 render does not crash" ||
	{ echo "FAIL - a 5x5 render: $out"; fail=1; }
"$fl" --model "$fx" --size 10 -c quit > /dev/null 2>&1
[ $? -eq 2 ] && echo "ok - --size without a height is a usage error" ||
	{ echo "FAIL - --size 10 is not a usage error"; fail=1; }

# i (intercept toggle) without a task loads the default one (FACTLENS_TASK
# here, as for factlens run) and says so in the status line.
out=$(FACTLENS_TASK=$src/tests/tasks/tiny.json "$fl" --model "$fx" --size 100x30 \
    -c "prompt The capital of France is:; intercept toggle" 2>&1)
if [[ "$out" == *"intercept on (loaded the default task): fitted on 16 zero-shot prompts of tiny_capital"* ]] &&
    [[ "$out" == *"(intercept)"* ]]; then
	echo "ok - i without a task loads the default task and fits the intercept"
else
	echo "FAIL - i without a task: $(printf '%s\n' "$out" | tail -2)"
	fail=1
fi

# --weights stored (f16 linears widened in the kernels) draws the same
# screens as convert, for the model given and one opened with :model.
f16=$(dirname "$fx")/gpt2-f16
for w in convert stored; do
	"$fl" --model "$f16" --size 100x30 --weights "$w" -c "prompt The capital of France is; \
head 1.2; render; model $f16; prompt Germany is; mask on" > "$tmp/weights-$w.txt" 2>&1
done
same "$tmp/weights-convert.txt" "$tmp/weights-stored.txt" "gpt2-f16" \
	"--weights stored renders what --weights convert does"
"$fl" --weights fast -c quit > /dev/null 2>&1
[ $? -eq 2 ] && echo "ok - --weights fast is a usage error" ||
	{ echo "FAIL - --weights fast is not a usage error"; fail=1; }

# A layer step also makes the view rows of the next layer in its direction,
# and the step after reads them from there. That screen must be the one
# made for the layer alone: here layer 3's rows come from layer 2's step
# (6 rows in one product), there from one product of its 3 rows.
demo=$src/data/models/demo
p="prompt The capital of France is"
"$fl" --model "$demo" --size 120x36 -c "$p; head 0.1; layer 2; layer 3; render" \
    > "$tmp/near-stepped.txt" 2>&1
"$fl" --model "$demo" --size 120x36 -c "$p; layer 3; head 3.1; render" \
    > "$tmp/near-direct.txt" 2>&1
same "$tmp/near-direct.txt" "$tmp/near-stepped.txt" "head 3.1" \
	"view rows made by the step before render what rows made for the layer do"

# :export writes the results as JSON.
"$fl" --model "$fx" -c "prompt The capital of France is; mask on; export $tmp/x.json" > /dev/null &&
	grep -q '"final_mask":	true' "$tmp/x.json" && grep -q '"attn_to_subject"' "$tmp/x.json" &&
	echo "ok - :export writes the session as JSON" || { echo "FAIL - :export"; fail=1; }

# Every theme file parses, and dark.theme is the built-in theme.
for t in "${top_srcdir:-.}"/themes/*.theme; do
	n=$(basename "$t" .theme)
	if "$fl" --model "$fx" --theme "$t" -c "prompt hi" > /dev/null 2> "$tmp/t.err"; then
		echo "ok - theme $n loads"
	else
		echo "FAIL - theme $n: $(cat "$tmp/t.err")"
		fail=1
	fi
done
# Numbers out of range are errors that say the range; relative steps stop
# at the ends without overflowing.
for arg in 99999999999999999999 2 99; do
	if out=$("$fl" --model "$fx" -c "prompt hi; layer $arg" 2>&1 >/dev/null); then
		echo "FAIL - layer $arg is accepted"
		fail=1
	elif [[ "$out" == *"not in 0..1"* ]]; then
		echo "ok - layer $arg: an error that gives the range"
	else
		echo "FAIL - layer $arg: $out"
		fail=1
	fi
done
if "$fl" --model "$fx" -c "prompt hi; layer +2147483647; layer -9223372036854775807; head +2147483647" \
    >/dev/null 2>"$tmp/rel.err"; then
	echo "ok - relative steps of any size stop at the ends"
else
	echo "FAIL - relative steps: $(cat "$tmp/rel.err")"
	fail=1
fi

# :prompt takes the rest of the line as typed, spaces and all: its tokens
# are those of run --prompt for the same text.
text='The  capital of   France is'
"$fl" --model "$fx" -c "prompt $text; export $tmp/p.json" >/dev/null
"$fl" run --model "$fx" --prompt "$text" --json > "$tmp/r.json"
if [ "$(grep -o '"prompt":.*' "$tmp/p.json")" = "$(grep -o '"prompt":.*' "$tmp/r.json" | head -1)" ] &&
    grep -q "\"prompt\":	\"$text\"" "$tmp/p.json"; then
	echo "ok - :prompt keeps the text as typed (runs of spaces too)"
else
	echo "FAIL - :prompt changed the text: $(grep '"prompt"' "$tmp/p.json") vs $(grep '"prompt"' "$tmp/r.json" | head -1)"
	fail=1
fi
# :help lists the commands with what they do, wrapped, never cut with an
# ellipsis; what does not fit is counted. :help NAME shows one command.
"$fl" --model "$fx" --size 80x24 -c "prompt hi; help; render" > "$tmp/help80.txt"
"$fl" --model "$fx" --size 150x80 -c "prompt hi; help; render" > "$tmp/help150.txt"
if grep -q "^ answer \[TEXT|top\] " "$tmp/help80.txt" && grep -q "more: :help NAME" "$tmp/help80.txt" &&
    ! grep -q "…" "$tmp/help80.txt" && grep -q "^ trace " "$tmp/help150.txt" &&
    ! grep -q "more: :help NAME" "$tmp/help150.txt"; then
	echo "ok - :help lists the commands (all of them at 150x80, a count of the rest at 80x24)"
else
	echo "FAIL - :help: $(sed -n 5,9p "$tmp/help80.txt")"
	fail=1
fi
"$fl" --model "$fx" --size 80x24 -c "prompt hi; help layer; render" > "$tmp/help1.txt"
if grep -q "usage:  :layer N" "$tmp/help1.txt" && grep -q "keys:   Up (layer -1)" "$tmp/help1.txt" &&
    grep -q "(layer last)" "$tmp/help1.txt"; then
	echo "ok - :help layer shows its usage and every key bound to it, wrapped"
else
	echo "FAIL - :help layer: $(sed -n 5,12p "$tmp/help1.txt")"
	fail=1
fi
# :eval and path patching take the default task when none is loaded, as
# `i` does, and say so.
"$fl" --model "$src/data/models/demo" --size 80x24 -c "eval; render" > "$tmp/ev.txt" 2>&1
if grep -q "eval of country_capital done (the default task" "$tmp/ev.txt" &&
    grep -q "^ baseline " "$tmp/ev.txt"; then
	echo "ok - :eval without :task loads the default task and shows its grid"
else
	echo "FAIL - :eval without :task: $(head -8 "$tmp/ev.txt")"
	fail=1
fi
# :intercepts fits the intercept on each country task and shows their
# cosines, labelled by task, whatever task is loaded (none here).
"$fl" --model "$src/data/models/demo" --size 100x30 -c "intercepts last; render" > "$tmp/icpt.txt" 2>&1
if grep -Eq "intercepts of 4 tasks at layer [0-9]+ done" "$tmp/icpt.txt" &&
    grep -q "^ *capital  *language  *currency  *continent" "$tmp/icpt.txt" &&
    grep -Eq "^ *country_capital +1\.000 +-?0\.[0-9]{3} " "$tmp/icpt.txt" &&
    grep -Eq "^ *country_currency +[0-9]+ +[0-9.]+ " "$tmp/icpt.txt"; then
	echo "ok - :intercepts shows the cosines of the country tasks' intercepts"
else
	echo "FAIL - :intercepts: $(sed -n 4,20p "$tmp/icpt.txt")"
	fail=1
fi
# :export holds every heads grid whichever is on screen (mover scores and
# what heads write to the subject too), and path patching and the cursor
# layer's decomposition once computed.
"$fl" --model "$fx" -c "prompt The capital of France is:; task $src/tests/tasks/tiny.json; metric patch; export $tmp/all.json" > /dev/null
if node -e '
	const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
	const h = j.heads, ok = h.direct_to_subject[0].every(v => v !== null) &&
	    h.mover_score[1].every(v => v !== null) && Array.isArray(h.movers) &&
	    h.path_patching_effect.length === 2 && j.decomposition.beta.length === 5 &&
	    j.task === "tiny_capital";
	process.exit(ok ? 0 : 1);' "$tmp/all.json"; then
	echo "ok - :export holds every grid, path patching and the decomposition"
else
	echo "FAIL - :export misses views: $(head -c 300 "$tmp/all.json")"
	fail=1
fi
# :eval's grid is kept for :export (JSON: factlens eval --json --per-prompt's
# object, but for the run's timing; CSV: eval --csv's rows, prefixed eval_,
# after the other rows' columns) and :plot (the eval grid while its table
# is the view, the lens once another command has closed it; :plot eval
# says when there is no grid).
"$fl" --model "$fx" -c "prompt The capital of France is:; task $src/tests/tasks/tiny.json; eval; plot $tmp/ev.pdf; export $tmp/ev.json; export $tmp/ev.csv; plot $tmp/lens.pdf; plot eval $tmp/ev2.pdf" > /dev/null
"$fl" eval --model "$fx" --task "$src/tests/tasks/tiny.json" --json --per-prompt > "$tmp/evcli.json"
"$fl" eval --model "$fx" --task "$src/tests/tasks/tiny.json" --csv > "$tmp/evcli.csv"
if node -e '
	const fs = require("fs"), rd = (f) => JSON.parse(fs.readFileSync(f, "utf8"));
	const e = rd(process.argv[1]).eval, c = rd(process.argv[2]);
	for (const x of [e, c, ...e.settings, ...c.settings]) { delete x.seconds; delete x.threads; }
	const canon = (v) => JSON.stringify(v, (k, x) => x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x);
	process.exit(canon(e) === canon(c) && c.prompts.length > 0 ? 0 : 1);' "$tmp/ev.json" "$tmp/evcli.json"; then
	echo "ok - :export after :eval holds eval --json --per-prompt's object"
else
	echo "FAIL - :export's eval differs from eval --json: $(node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1])).eval).slice(0, 300))' "$tmp/ev.json")"
	fail=1
fi
ncol=$(head -1 "$tmp/ev.csv" | tr ',' '\n' | wc -l)
if diff <(grep '^eval_' "$tmp/ev.csv" | sed 's/^eval_//; s/^\([a-z]*\),,,,,,,,,,,,,/\1,/') <(tail -n +2 "$tmp/evcli.csv") > /dev/null &&
    [ "$(grep -c '^eval_' "$tmp/ev.csv")" -eq "$(($(wc -l < "$tmp/evcli.csv") - 1))" ] &&
    [ "$(awk -F, '{ print NF }' "$tmp/ev.csv" | sort -u)" = "$ncol" ] &&
    head -1 "$tmp/ev.csv" | grep -q ',path_patching_effect,shots,condition,prompt,'; then
	echo "ok - :export FILE.csv after :eval holds eval --csv's rows, every row $ncol fields"
else
	echo "FAIL - :export FILE.csv's eval rows: $(diff <(grep '^eval_' "$tmp/ev.csv" | sed 's/^eval_//; s/^\([a-z]*\),,,,,,,,,,,,,/\1,/') <(tail -n +2 "$tmp/evcli.csv") | head -4)"
	fail=1
fi
# The flow pane's map, as :export writes it (JSON "trace", CSV "trace"
# rows), is factlens trace --json's for the same prompt, subject and
# options; :save writes the :trace line that brings it back.
"$fl" --model "$fx" -c "prompt The capital of France is; subject France; trace resid samples 3 seed 4; export $tmp/tr.json; export $tmp/tr.csv; save $tmp/tr.save" > /dev/null
"$fl" trace --model "$fx" --prompt "The capital of France is" --subject France --samples 3 --seed 4 --json > "$tmp/trcli.json"
if node -e '
	const fs = require("fs"), rd = (f) => JSON.parse(fs.readFileSync(f, "utf8"));
	const e = rd(process.argv[1]).trace, c = rd(process.argv[2]);
	let worst = 0;
	c.restore.forEach((row, l) => row.forEach((v, t) => { worst = Math.max(worst, Math.abs(v - e.restore[l][t])); }));
	process.exit(e.kind === c.kind && e.noise.samples === 3 && e.subject.position === c.subject.position &&
	    Math.abs(e.p_clean - c.p_clean) < 1e-9 && Math.abs(e.p_corrupt - c.p_corrupt) < 1e-9 &&
	    worst < 1e-9 ? 0 : 1);' "$tmp/tr.json" "$tmp/trcli.json" &&
    [ "$(grep -c '^trace,' "$tmp/tr.csv")" -eq 12 ] && grep -qx "trace resid 10 samples 3 seed 4" "$tmp/tr.save"; then
	echo "ok - :export holds the flow pane's map, equal to factlens trace --json's; :save its :trace line"
else
	echo "FAIL - :export/:save of the flow pane: $(node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1])).trace).slice(0, 300))' "$tmp/tr.json"); $(grep -c '^trace,' "$tmp/tr.csv") CSV rows; $(grep '^trace' "$tmp/tr.save")"
	fail=1
fi
if "$fl" --model "$fx" --size 80x24 --replay "$tmp/tr.save" | grep -q "flow: causal trace, resid_pre restored, 3 samples, seed 4"; then
	echo "ok - a saved session with the flow pane replays to it"
else
	echo "FAIL - the saved flow pane does not replay"
	fail=1
fi
pdftext() { node "$src/tests/pdf-text.js" "$1" 2>&1; }
if pdftext "$tmp/ev.pdf" | grep -q '"zero-shot"' && pdftext "$tmp/ev.pdf" | grep -q '"both (a+b)"' &&
    pdftext "$tmp/ev2.pdf" | grep -q '"tiny_capital on gpt2-f32, 20 prompts"' &&
    pdftext "$tmp/lens.pdf" | grep -q 'logit lens' && ! pdftext "$tmp/lens.pdf" | grep -q 'zero-shot'; then
	echo "ok - :plot draws the eval grid while :eval's table is the view, the lens after; :plot eval"
else
	echo "FAIL - :plot after :eval: $(pdftext "$tmp/ev.pdf" | head -c 200) / $(pdftext "$tmp/lens.pdf" | head -c 200)"
	fail=1
fi
out=$("$fl" --model "$fx" -c "prompt The capital of France is:; plot eval $tmp/none.pdf" 2>&1 >/dev/null)
if [[ "$out" == *"no eval grid yet (:eval computes it)"* ]] && [ ! -e "$tmp/none.pdf" ]; then
	echo "ok - :plot eval before :eval says so"
else
	echo "FAIL - :plot eval before :eval: $out"
	fail=1
fi
# :save FILE writes the commands that rebuild the state with the weights'
# SHA-256 (sha256sum's) and the version; --replay rebuilds the same screen
# (the message line aside) and refuses a file whose hash is not the model's.
"$fl" --model "$fx" --size 80x24 -c "prompt The capital of France is; task $src/tests/tasks/tiny.json; subject France; layer 1; head 2; metric mover; mask heads 1,3; intercept on; topk 5; compare The capital of Italy is; save $tmp/s.fls" >"$tmp/saved.txt"
want=$(sha256sum "$fx/model.safetensors" | cut -d' ' -f1)
if grep -qx "# weights-sha256: $want" "$tmp/s.fls" && grep -q "^# factlens-version: " "$tmp/s.fls" &&
	grep -qx 'mask heads 1,3' "$tmp/s.fls" && grep -qx 'metric mover' "$tmp/s.fls" &&
	grep -qx 'compare "The capital of Italy is"' "$tmp/s.fls"; then
	echo "ok - :save writes the state's commands, the weights' SHA-256 and the version"
else
	echo "FAIL - :save: $(cat "$tmp/s.fls")"
	fail=1
fi
"$fl" --size 80x24 --replay "$tmp/s.fls" >"$tmp/replayed.txt"
if [ $? -eq 0 ] && diff <(head -n -1 "$tmp/saved.txt") <(head -n -1 "$tmp/replayed.txt") >/dev/null; then
	echo "ok - --replay of a :save file renders the saved screen"
else
	echo "FAIL - --replay differs from the saved screen:"
	diff "$tmp/saved.txt" "$tmp/replayed.txt" | head -10
	fail=1
fi
sed "s/^# weights-sha256: ./# weights-sha256: 0/; s/^# weights-sha256: 00/# weights-sha256: 11/" "$tmp/s.fls" >"$tmp/t.fls"
for mode in --replay --script; do
	out=$("$fl" --size 80x24 $mode "$tmp/t.fls" 2>&1 >/dev/null)
	if [ $? -eq 1 ] && [[ "$out" == *"t.fls: saved with other weights"*"$want"* ]]; then
		echo "ok - $mode refuses a file whose weights hash differs, naming both"
	else
		echo "FAIL - $mode of a tampered hash: $out"
		fail=1
	fi
done
grep -v weights-sha256 "$tmp/s.fls" >"$tmp/nohash.fls"
out=$("$fl" --size 80x24 --replay "$tmp/nohash.fls" 2>&1 >/dev/null)
[ $? -eq 1 ] && [[ "$out" == *"no weights-sha256 line"* ]] &&
	echo "ok - --replay refuses a file without a weights hash" ||
	{ echo "FAIL - --replay without a hash: $out"; fail=1; }
# :export FILE.csv: the same lens and grids as the JSON, one header, a row
# per stream and per head
"$fl" --model "$fx" -c "prompt The capital of France is:; task $src/tests/tasks/tiny.json; metric patch; export $tmp/all.csv" > /dev/null
if node -e '
	const fs = require("fs"), j = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
	const lines = fs.readFileSync(process.argv[2], "utf8").trim().split("\n");
	const head = lines.shift().split(","), rows = lines.map(l => l.split(","));
	const col = (r, k) => r[head.indexOf(k)];
	const heads = rows.filter(r => r[0] === "heads"), lens = rows.filter(r => r[0] === "lens");
	const ok = rows.every(r => r.length === head.length) && lens.length === j.lens.length &&
	    heads.length === 2 * 4 && heads.every(r => {
		const l = +col(r, "layer"), h = +col(r, "head");
		return Math.abs(+col(r, "mover_score") - j.heads.mover_score[l][h]) < 1e-6 &&
		    Math.abs(+col(r, "path_patching_effect") - j.heads.path_patching_effect[l][h]) < 1e-4 * Math.max(1, Math.abs(j.heads.path_patching_effect[l][h]));
	    }) && lens.every((r, i) => +col(r, "answer_rank") === j.lens[i].answer_rank);
	process.exit(ok ? 0 : 1);' "$tmp/all.json" "$tmp/all.csv"; then
	echo "ok - :export FILE.csv writes the lens and every heads grid as CSV, as the JSON has them"
else
	echo "FAIL - :export FILE.csv: $(head -c 300 "$tmp/all.csv")"
	fail=1
fi
# An answer or subject named for one prompt and kept for the next is said.
"$fl" --model "$src/data/models/demo" --size 80x24 \
    -c "prompt The capital of France is; answer Paris; subject France; prompt The capital of Spain is; render" \
    > "$tmp/kept.txt" 2>&1
if grep -q "subject 'France' is not in this prompt: guessed; answer 'Paris' kept" "$tmp/kept.txt"; then
	echo "ok - a new prompt says what it kept of the answer and the subject"
else
	echo "FAIL - a new prompt is silent about the kept answer: $(tail -2 "$tmp/kept.txt")"
	fail=1
fi
# Under 32 rows the head and MLP panes share a place: v (:pane) switches,
# the title row names the other; from 32 rows both show.
"$fl" --model "$fx" --size 80x24 -c "prompt The capital of France is:; pane toggle; render" > "$tmp/p24.txt"
"$fl" --model "$fx" --size 80x32 -c "prompt The capital of France is:; render" > "$tmp/p32.txt"
if grep -q "─ MLP 0 ─.* v: head ─" "$tmp/p24.txt" && ! grep -q "─ head 0.0" "$tmp/p24.txt" &&
    grep -q "─ head 0.0" "$tmp/p32.txt" && grep -q "─ MLP 0 ─" "$tmp/p32.txt"; then
	echo "ok - 80x24: v shows the MLP pane in the head pane's place; 80x32 shows both"
else
	echo "FAIL - the shared pane: $(sed -n 15p "$tmp/p24.txt")"
	fail=1
fi
# An apostrophe inside a word is a letter, not a quote: the rest of the
# line (and the next command after ';') stays as typed.
"$fl" --model "$fx" --size 80x24 -c "prompt La Côte d'Ivoire's capital is; render" > "$tmp/apos.txt" 2>&1
if grep -q "^ prompt La Côte d'Ivoire's capital is " "$tmp/apos.txt"; then
	echo "ok - an apostrophe inside a word is part of the prompt"
else
	echo "FAIL - an apostrophe in the prompt: $(head -3 "$tmp/apos.txt")"
	fail=1
fi
# :mask heads LIST masks only those heads: every head equals :mask on, one
# head gives a third result; a head out of range is an error with the range.
st() { "$fl" --model "$src/data/models/demo" --size 80x24 -c "prompt The capital of France is; $1; render" | sed -n 23p; }
a=$(st "mask on"); b=$(st "mask heads 0,1,2,3"); one=$(st "mask heads 1")
if [ "$a" = "$b" ] && [ "$a" != "$one" ] && [[ "$one" == *"(mask)"* ]]; then
	echo "ok - :mask heads: all heads = mask on, one head differs"
else
	echo "FAIL - :mask heads: '$a' / '$b' / '$one'"
	fail=1
fi
expect_err "mask heads out of range" "'0,9' is not a list of heads in 0..3" -- -c "prompt hi; mask heads 0,9"
# :compare: :export FILE.csv's B rows (lens_b) hold what factlens run --lens
# --csv gives for B alone - another prompt, or the mask on - scoring A's
# answer, and A's rows (lens) what it gives for A. Fields are counted from
# the end of a row, since a quoted top token may hold a comma.
cmp_rows() { # EXPORT ROW RUN LABEL
	awk -F, -v row="$2" -v label="$4" '
	NR == FNR { if (FNR > 1) { p[$1 "," $2] = $(NF-3); r[$1 "," $2] = $(NF-2) }; next }
	$1 == row { n++; k = $2 "," $3; d = $(NF-6) - p[k]; if (d < 0) d = -d
		if (!(k in p) || d > 1e-6 + 1e-4 * p[k] || $(NF-5) != r[k]) {
			printf "FAIL - %s: %s P %s rank %s, run alone P %s rank %s\n", label, k,
			    $(NF-6), $(NF-5), p[k], r[k]; bad = 1 } }
	END { if (n != 3) { printf "FAIL - %s: %d rows, not 3\n", label, n; bad = 1 }
		if (!bad) printf "ok - %s\n", label; exit bad }' "$3" "$1" || fail=1
}
pa="The capital of France is" pb="The capital of Italy is"
"$fl" --model "$fx" -c "prompt $pa; answer France; compare $pb; export $tmp/cmp.csv" > /dev/null
"$fl" run --model "$fx" -p "$pa" --answer France --lens --csv > "$tmp/run-a.csv"
"$fl" run --model "$fx" -p "$pb" --answer France --lens --csv > "$tmp/run-b.csv"
"$fl" run --model "$fx" -p "$pa" --answer France --final-mask --lens --csv > "$tmp/run-m.csv"
cmp_rows "$tmp/cmp.csv" lens "$tmp/run-a.csv" ":compare PROMPT: A's lens is run --lens of A"
cmp_rows "$tmp/cmp.csv" lens_b "$tmp/run-b.csv" ":compare PROMPT: B's lens is run --lens of B with A's answer"
"$fl" --model "$fx" -c "prompt $pa; answer France; compare mask; export $tmp/cmpm.csv" > /dev/null
cmp_rows "$tmp/cmpm.csv" lens_b "$tmp/run-m.csv" ":compare mask: B's lens is run --final-mask --lens"
# The JSON says what B is and holds B-A; the screen's B-A column is the
# JSON's, in points (the last layer's row).
"$fl" --model "$fx" --size 80x24 -c "prompt $pa; compare $pb; export $tmp/cmp.json" > "$tmp/cmp.txt"
if grep -q '"kind":	"prompt"' "$tmp/cmp.json" && grep -q "\"prompt\":	\"$pb\"" "$tmp/cmp.json" &&
    grep -q '"b_minus_a"' "$tmp/cmp.json" && grep -q '^    1   27%  0.4%   -27 #1     #43 ' "$tmp/cmp.txt"; then
	echo "ok - :export with :compare on writes B and B-A; the screen shows them"
else
	echo "FAIL - :compare's export or screen: $(grep -c kind "$tmp/cmp.json") $(sed -n 10p "$tmp/cmp.txt")"
	fail=1
fi
# The grid's decimals follow its scale: B-A of mover scores below 0.1
# print three decimals without the leading zero (+.045), none reads
# +0.00, and a mover's star stands right after its number (where the
# next cell's space was), never over a sign or a space.
"$fl" --model "$src/data/models/demo" --size 80x24 -c "prompt The capital of France is; metric mover; compare In short, the capital of France is" > "$tmp/small.txt"
grid=$(sed -n 7,12p "$tmp/small.txt" | sed 's/.*│//')
if grep -Eq ' [+-]\.[0-9]{3}' <<< "$grid" && grep -Eq '[0-9]\*' <<< "$grid" &&
    ! grep -Eq '[+-]0\.00( |$)|(^|[^0-9])\*' <<< "$grid" && grep -q "mover in A" "$tmp/small.txt"; then
	echo "ok - a grid of small differences keeps two significant digits (+.045), the star after the number"
else
	echo "FAIL - the small grid's cells: $(sed -n 7,12p "$tmp/small.txt")"
	fail=1
fi
expect_err "compare before a prompt" "compare: run a prompt first" -- -c "compare mask"
expect_err "compare intercept before a fit" "compare intercept: the intercept is not fitted" -- \
    -c "prompt hi; compare intercept"
exit $fail
