#!/bin/bash
# Builds the libFuzzer targets (safetensors header, config.json, tokenizer,
# SentencePiece tokenizer.model)
# with ASan/UBSan and runs each briefly from its seed corpus: a crash, a
# sanitizer report or a failed invariant fails the test. For a longer run:
#   FUZZ_SECONDS=600 tests/fuzz-smoke.sh
set -u
src=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
out=${top_builddir:-$src/build}/fuzz
secs=${FUZZ_SECONDS:-15}
mkdir -p "$out"
fail=0
cc="clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I$src/src -I$top_builddir"
eng="$src/src/base/util.c $src/src/engine/st.c $src/src/engine/config.c $src/src/engine/tok.c \
	$src/src/engine/tok_bpe.c $src/src/engine/tok_spm.c"
libs="-lcjson -lpcre2-8 -lm"

for t in st config tok spm; do
	if ! $cc -o "$out/fuzz_$t" "$src/fuzz/fuzz_$t.c" $eng $libs 2>"$out/fuzz_$t.build.log"; then
		echo "FAIL - fuzz_$t builds:"; cat "$out/fuzz_$t.build.log"; fail=1; continue
	fi
	mkdir -p "$out/corpus_$t"
	seeds="$src/fuzz/corpus/$t"
	[ -d "$seeds" ] || seeds=
	if "$out/fuzz_$t" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 "$out/corpus_$t" $seeds \
		>"$out/fuzz_$t.log" 2>&1; then
		echo "ok - fuzz_$t ran ${secs}s clean ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/fuzz_$t.log" | awk '{print $2}') runs)"
	else
		echo "FAIL - fuzz_$t found a problem:"; tail -30 "$out/fuzz_$t.log"; fail=1
	fi
done
exit $fail
