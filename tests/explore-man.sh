#!/bin/bash
# man/factlens.1's SYNOPSIS and OPTIONS are generated from the subcommands'
# option tables (src/cli), its KEYS, EXPLORER COMMANDS and roles lists from
# the key map, the command table and the role table (src/ui): each section
# between its BEGIN/END GENERATED markers must equal what the binary prints
# with --man-fragment. After changing a table, refresh the page with
#     FL_UPDATE_EXPECTED=1 make check TESTS=tests/explore-man.sh
set -u
fl=${FACTLENS:?FACTLENS is not set}
man=${top_srcdir:-.}/man/factlens.1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

for what in synopsis options keys flowkeys commands roles; do
	"$fl" --man-fragment "$what" > "$tmp/want" || { echo "FAIL - --man-fragment $what"; fail=1; continue; }
	if [ -n "${FL_UPDATE_EXPECTED:-}" ]; then
		awk -v w="$what" -v f="$tmp/want" '
			$0 ~ "^\\.\\\\\" BEGIN GENERATED " w ":" { print; while ((getline l < f) > 0) print l; skip = 1; next }
			$0 ~ "^\\.\\\\\" END GENERATED " w { skip = 0 }
			!skip { print }' "$man" > "$tmp/new" && cp "$tmp/new" "$man"
	fi
	awk -v w="$what" '
		$0 ~ "^\\.\\\\\" BEGIN GENERATED " w ":" { on = 1; next }
		$0 ~ "^\\.\\\\\" END GENERATED " w { on = 0 }
		on { print }' "$man" > "$tmp/got"
	if [ ! -s "$tmp/got" ]; then
		echo "FAIL - man/factlens.1 has no GENERATED $what section"
		fail=1
	elif diff -u "$tmp/got" "$tmp/want" > "$tmp/diff"; then
		echo "ok - man page $what section matches the table ($(grep -c '^\.TP\|^\.B factlens' "$tmp/want") entries)"
	else
		echo "FAIL - man page $what section differs from factlens --man-fragment $what:"
		head -30 "$tmp/diff"
		fail=1
	fi
done

# Every command of the table is documented, and every default key.
n=$("$fl" --man-fragment commands | grep -c '^\.TP')
[ "$n" -ge 20 ] && echo "ok - $n explorer commands documented" || { echo "FAIL - only $n commands"; fail=1; }

# The page renders without groff warnings.
if command -v groff > /dev/null; then
	warn=$(LC_ALL=C groff -man -ww -z "$man" 2>&1)
	[ -z "$warn" ] && echo "ok - groff renders the page without warnings" ||
		{ echo "FAIL - groff warnings: $warn"; fail=1; }
fi
exit $fail
