#!/bin/bash
# Sharding (factlens(1), SHARDING): eval, heads, decompose, trace and atp --task
# on the demo model, each split into 3 shards run by GNU parallel, then
# factlens merge: its output must equal the unsharded command's byte for
# byte, but for the times and the pass counts (the shards batch their own
# prompts); then merge must refuse parts of another model, other options, a
# shard given twice, a missing or cut-short shard, and bad --shard values.
# Skips when GNU parallel (Debian's parallel) is not installed.
set -u
fl=${FACTLENS:?FACTLENS is not set}
src=${top_srcdir:-.}
model=$src/data/models/demo
big=$src/data/tasks/country_capital.json
tiny=$src/tests/tasks/tiny.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

if ! parallel --version 2>/dev/null | grep -q 'GNU parallel'; then
	echo "# skipped: GNU parallel is not installed (setup.sh installs it)"
	exit 77
fi
export FACTLENS_NO_PROGRESS=1

ok() { echo "ok - $1"; }
bad() { echo "FAIL - $1"; fail=1; }

# The numbers that may differ: times, and the passes the shards batch.
norm() {
	sed -E -e 's/"(seconds|passes)":([[:space:]]*)[-0-9.e+]+/"\1":\2X/' \
	    -e 's/[0-9]+\.[0-9]+ s(,| in all)/T s\1/' -e 's/[0-9]+ passes/P passes/' "$1"
}

# same NAME ARGS...: the command unsharded, then 3 shards through GNU
# parallel and merged (the parts given out of order); the two must match.
same() {
	local name=$1 model=${same_model:-$model}
	shift
	"$fl" "$@" --model "$model" --threads 1 > "$tmp/$name.whole" 2> "$tmp/$name.err" ||
		{ bad "$name: unsharded run failed: $(head -3 "$tmp/$name.err")"; return; }
	if ! parallel -q -j 2 --halt now,fail=1 "$fl" "$@" --model "$model" --threads 1 \
	    --shard {}/3 --out "$tmp/$name.part{}" ::: 1 2 3 2> "$tmp/$name.err"; then
		bad "$name: a shard failed: $(head -3 "$tmp/$name.err")"
		return
	fi
	if ! "$fl" merge "$tmp/$name.part3" "$tmp/$name.part1" "$tmp/$name.part2" \
	    > "$tmp/$name.merged" 2> "$tmp/$name.err"; then
		bad "$name: merge failed: $(head -3 "$tmp/$name.err")"
		return
	fi
	if cmp -s <(norm "$tmp/$name.whole") <(norm "$tmp/$name.merged"); then
		ok "$name: 3 shards merged == unsharded ($(wc -c < "$tmp/$name.merged") bytes, times and passes aside)"
	else
		bad "$name: merged differs from unsharded:"
		diff <(norm "$tmp/$name.whole") <(norm "$tmp/$name.merged") | head -10
	fi
}

same eval-json eval --task "$big" --shots 2 --json --per-prompt
same eval-text eval --task "$big" --split template --mask-heads 0,2
same eval-csv eval --task "$tiny" --csv
same heads-json heads --task "$tiny" --json
same heads-text heads --task "$tiny" --shots 1
same decompose-json decompose --task "$big" --layer 4 --json
same decompose-logit decompose --task "$big" --form logit --shots 1
same decompose-prompt decompose --task "$big" --no-resid --prompt "The capital of France is"
same trace-json trace --task "$tiny" --kind mlp --samples 2 --json
same trace-text trace --task "$tiny" --samples 1
# the task options and path patching's receivers, senders and metric go
# through the partials too (the parts' recorded options rebuild the prompts)
same eval-cf eval --task "$big" --counterfactual --shots 1 --json --per-prompt
same eval-single eval --task "$big" --single-token
same heads-qsubj heads --task "$tiny" --receiver 3 --receiver-input q --receiver-head 1 --metric subject --json
same heads-k-cf heads --task "$tiny" --receiver 4 --receiver-input k --receiver-head 0 --counterfactual
same heads-resid heads --task "$tiny" --receiver 3 --single-token
same decompose-cf decompose --task "$big" --layer 4 --counterfactual --json
same trace-single trace --task "$tiny" --samples 1 --single-token
# attribution patching: every prompt's estimates, its skip and redraw, the
# neuron layer's; the exact heads map and rho are the merge's own work
same atp-json atp --task "$big" --neurons 1 --json
same atp-text atp --task "$big" --shots 1 --top 5
same atp-compare atp --task "$tiny" --compare-exact
# the demo model makes every subject one token: on the gpt2-f32 fixture the
# tiny task's prompts are skipped (8) and redrawn (4), and that merges too
same_model=${FL_FIXTURES:-$src/tests/fixtures}/gpt2-f32 same atp-skips atp --task "$tiny" --json
if grep -q '"skipped":[[:space:]]*[1-9]' "$tmp/atp-skips.whole" &&
    grep -q '"redrawn":[[:space:]]*[1-9]' "$tmp/atp-skips.whole"; then
	ok "atp-skips: the run has skipped and redrawn prompts"
else
	bad "atp-skips: no skipped or redrawn prompt: $(grep -o '"s[a-z]*":[^,]*' "$tmp/atp-skips.whole" | head -3)"
fi

# A merged result is the unsharded one exactly, not approximately: eval's
# per-prompt rows compared as numbers to the last digit.
if [ -s "$tmp/eval-json.merged" ] &&
    [ "$(grep -c '"p_' "$tmp/eval-json.merged")" -gt 0 ] &&
    cmp -s <(grep '"p_\|"prob\|"rank' "$tmp/eval-json.whole") \
	<(grep '"p_\|"prob\|"rank' "$tmp/eval-json.merged"); then
	ok "eval: every per-prompt number merged bit for bit"
else
	bad "eval: per-prompt numbers differ after merge"
fi

# refuse NAME WANT ARGS...: merge ARGS must fail with status 1 and a message
# matching WANT.
refuse() {
	local name=$1 want=$2 st
	shift 2
	"$fl" merge "$@" > /dev/null 2> "$tmp/err"
	st=$?
	if [ $st -eq 1 ] && grep -q -- "$want" "$tmp/err"; then
		ok "merge refuses $name: $(head -1 "$tmp/err")"
	else
		bad "merge $name: status $st, message '$(head -1 "$tmp/err")' (want 1, '$want')"
	fi
}
p=$tmp/heads-json.part
refuse "a shard twice" "shard 2 of 3 again" "${p}1" "${p}2" "${p}2"
refuse "a missing shard" "missing: shard 3" "${p}1" "${p}2"
refuse "parts of other options" "parts of different runs" "${p}1" "${p}2" "$tmp/heads-text.part3"
refuse "parts of another receiver input" "parts of different runs" "$tmp/heads-qsubj.part1" "$tmp/heads-qsubj.part2" "$tmp/heads-k-cf.part3"
refuse "parts without --counterfactual" "parts of different runs" "$tmp/eval-cf.part1" "$tmp/eval-cf.part2" "$tmp/eval-json.part3"
refuse "parts of another command" "a partial of eval" "${p}1" "${p}2" "$tmp/eval-csv.part3"
# the header's hash is the checkpoint file's own (what sha256sum prints)
got=$(sed -n '1s/.*"weights_sha256":"\([0-9a-f]*\)".*/\1/p' "${p}1")
want=$(sha256sum "$model/model.safetensors" | cut -d' ' -f1)
if [ "$got" = "$want" ]; then ok "partial header: weights_sha256 is the file's SHA-256"
else bad "partial header: weights_sha256 '$got', sha256sum says '$want'"; fi
sed '1s/"weights_sha256":"[0-9a-f]*"/"weights_sha256":"'"$(printf '0%.0s' {1..64})"'"/' "${p}3" > "$tmp/other-model"
refuse "parts of another model" "parts of different models" "${p}1" "${p}2" "$tmp/other-model"
sed '$d' "${p}3" > "$tmp/cut"
refuse "a part cut short" "cut short" "${p}1" "${p}2" "$tmp/cut"
sed '2d' "${p}3" > "$tmp/hole"
refuse "a part with a prompt missing" "is not prompt" "${p}1" "${p}2" "$tmp/hole"
refuse "a file that is no partial" "not a JSON object" "${p}1" "${p}2" "$tiny"
# the merge's model must be the parts' (its weights hashed again)
other=${FL_FIXTURES:-$src/tests/fixtures}/gpt2-f32
for i in 1 2 3; do
	sed '1s|"--model","[^"]*"|"--model","'"$other"'"|' "${p}$i" > "$tmp/m$i"
done
refuse "a model whose weights are not the parts'" "were run with" "$tmp/m1" "$tmp/m2" "$tmp/m3"

# usage NAME WANT ARGS...: factlens ARGS must fail with status 2 naming WANT.
usage() {
	local name=$1 want=$2 st
	shift 2
	"$fl" "$@" > /dev/null 2> "$tmp/err"
	st=$?
	if [ $st -eq 2 ] && grep -q -- "$want" "$tmp/err"; then
		ok "$name refused: $(head -1 "$tmp/err")"
	else
		bad "$name: status $st, '$(head -1 "$tmp/err")' (want 2, '$want')"
	fi
}
usage "--shard 0/3" "counted from 1" eval --task "$tiny" --shard 0/3
usage "--shard 4/3" "I must be 1 to N" eval --task "$tiny" --shard 4/3
usage "--shard 1/0" "N must be" heads --task "$tiny" --shard 1/0
usage "--shard 1-3" "takes I/N" decompose --task "$tiny" --shard 1-3
usage "--out without --shard" "needs --shard" eval --task "$tiny" --out "$tmp/x"
usage "trace --shard without --task" "split a --task" trace --prompt "The capital of France is" --shard 1/2
usage "merge without parts" "no partials" merge
usage "atp --shard without --task" "split a --task" atp --prompt "The capital of France is" --corrupt "The capital of Japan is" --answer Paris --shard 1/2

# More shards than prompts: the empty shards still merge.
n=0
for i in $(seq 1 25); do
	"$fl" decompose --model "$model" --task "$tiny" --shard "$i/25" --out "$tmp/d$i" 2>/dev/null && n=$((n + 1))
done
"$fl" decompose --model "$model" --task "$tiny" > "$tmp/d.whole" 2>/dev/null
if [ $n -eq 25 ] && "$fl" merge "$tmp"/d{1..25} > "$tmp/d.merged" 2> "$tmp/err" &&
    cmp -s "$tmp/d.whole" "$tmp/d.merged"; then
	ok "decompose: 25 shards of 20 prompts (5 empty) merged == unsharded"
else
	bad "decompose over 25 shards: $n written, $(head -1 "$tmp/err")"
fi
exit $fail
