#!/bin/sh
# The binary under valgrind (memcheck): a headless explorer session, run and
# eval on the fixture and the tiny task, with no invalid read or write, no
# use of an uninitialised value and no leak. valgrind cannot run the
# AVX-512 code of a -march=native build, so this runs in a build configured
# with --disable-native (setup.sh --check makes one, build-plain/) and skips
# (77) elsewhere, or when valgrind is missing.
fl=${FACTLENS:?FACTLENS is not set}
fx=${FL_FIXTURES:?FL_FIXTURES is not set}/gpt2-f32
task=${top_srcdir:-.}/tests/tasks/tiny.json
if [ -n "${FL_NATIVE_CFLAGS:-}" ]; then
	echo "# skipped: a -march=native build (valgrind runs in --disable-native builds)"
	exit 77
fi
if ! command -v valgrind >/dev/null 2>&1; then
	echo "# skipped: valgrind is not installed (setup.sh installs it)"
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

vg() { # STATUS NAME ARGS...: the binary under memcheck exits STATUS (99: an error)
	want=$1 name=$2
	shift 2
	valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
	    --log-file="$tmp/vg.log" "$fl" "$@" >"$tmp/out" 2>"$tmp/err"
	st=$?
	if [ "$st" -eq "$want" ] && [ ! -s "$tmp/vg.log" ]; then
		echo "ok - valgrind: $name"
	else
		echo "FAIL - valgrind: $name (status $st, want $want):"
		sed 's/^/    /' "$tmp/vg.log" | head -30
		head -5 "$tmp/err"
		fail=1
	fi
}

vg 0 "the headless explorer" --model "$fx" --size 80x24 -c \
	"prompt The capital of France is:; layer 1; head 1.2; mask on; metric mover; render; task $task; metric patch; intercept on; export $tmp/x.json"
vg 0 "run with the lens, mitigations and the decomposition" run --model "$fx" \
	--prompt "The capital of France is:" --task "$task" --lens --final-mask --intercept --json
vg 0 "eval, zero- and 1-shot" eval --model "$fx" --task "$task" --shots 1 --threads 2
vg 0 "atp with neurons and exact patches" atp --model "$fx" --prompt "The capital of France is" \
	--corrupt "The capital of Japan is" --answer Paris --distractor Tokyo --neurons 1 --top 3 --json
vg 2 "atp refusing prompts of other lengths" atp --model "$fx" --prompt abc --corrupt abcd --answer x
vg 1 "a refused file (no leak on the error path)" run --model "$tmp/none" --prompt hi
exit $fail
