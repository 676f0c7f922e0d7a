#!/bin/sh
# The layers of src/, each allowed to include only those below it:
#   base      nothing of ours
#   engine    base
#   analysis  engine, base
#   plot      base (figures from plain arrays, with cairo)
#   session   analysis, engine, base (no ui, no cli)
#   ui        session, plot and below (no cli)
#   cli       everything
# and only the terminal's own files (ui/tui.c, ui/prompt.c, ui/explore.c)
# include curses or readline. One "ok"/"FAIL" line per rule.
src=${top_srcdir:-.}/src
fail=0

# layer DIR ALLOWED...: every #include "x/..." in DIR names an allowed x.
layer() {
	dir=$1
	shift
	allowed=$(printf '%s|' "$dir" "$@" | sed 's/|$//')
	bad=$(grep -nE '#[[:space:]]*include[[:space:]]*"[a-z]+/' "$src/$dir"/*.[ch] 2>/dev/null |
		grep -vE "#[[:space:]]*include[[:space:]]*\"($allowed)/" )
	if [ -n "$bad" ]; then
		echo "FAIL - $dir includes a layer above it or beside it:"
		echo "$bad" | sed "s|^$src/|  |"
		fail=1
	else
		echo "ok - $dir includes only ${*:-itself}"
	fi
	# A bare "x.h" must be a file of the same folder (or the build's autoconfig.h).
	for f in "$src/$dir"/*.[ch]; do
		grep -oE '#[[:space:]]*include[[:space:]]*"[^"/]+"' "$f" | sed 's/.*"\(.*\)"/\1/' |
		while read -r h; do
			[ "$h" = autoconfig.h ] || [ -f "$src/$dir/$h" ] ||
				echo "FAIL - ${f#$src/} includes \"$h\", not a file of $dir/"
		done
	done | grep . && fail=1
}

layer base
layer engine base
layer analysis engine base
layer plot base
layer session analysis engine base
layer ui session plot analysis engine base
layer cli ui session plot analysis engine base

bad=$(grep -lE '#[[:space:]]*include[[:space:]]*[<"](n?curses|ncursesw/|readline/|term\.h)' \
	"$src"/*/*.[ch] 2>/dev/null | grep -vE '/ui/(tui|prompt|explore)\.c$')
if [ -n "$bad" ]; then
	echo "FAIL - curses or readline outside ui/tui.c, ui/prompt.c, ui/explore.c:"
	echo "$bad" | sed "s|^$src/|  |"
	fail=1
else
	echo "ok - only ui/tui.c, ui/prompt.c and ui/explore.c include curses or readline"
fi

# No source file over 1,200 lines: a file that big holds more than one concern.
big=$(wc -l "$src"/*/*.[ch] | awk '$2 != "total" && $1 > 1200 { print "  " $2 " (" $1 " lines)" }')
if [ -n "$big" ]; then
	echo "FAIL - source files over 1,200 lines:"
	echo "$big" | sed "s|$src/||"
	fail=1
else
	echo "ok - every source file is at most 1,200 lines"
fi
exit $fail
