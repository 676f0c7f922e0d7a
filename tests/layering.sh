#!/bin/sh
# The engine and the analyses never include curses or readline, and the
# engine never includes the analyses: the three layers stay visible.
src=${top_srcdir:-.}/src
fail=0
bad=$(grep -rlE '#[[:space:]]*include[[:space:]]*[<"](n?curses|ncursesw/|readline/)' \
	"$src/engine" "$src/analysis" 2>/dev/null)
if [ -n "$bad" ]; then echo "FAIL - curses/readline below the UI: $bad"; fail=1
else echo "ok - engine and analysis include no curses or readline"; fi
bad=$(grep -rlE '#[[:space:]]*include[[:space:]]*"(analysis|ui|cmd)/' "$src/engine" 2>/dev/null)
if [ -n "$bad" ]; then echo "FAIL - the engine includes upper layers: $bad"; fail=1
else echo "ok - the engine includes only itself"; fi
bad=$(grep -rlE '#[[:space:]]*include[[:space:]]*"(ui|cmd)/' "$src/analysis" 2>/dev/null)
if [ -n "$bad" ]; then echo "FAIL - the analyses include the UI: $bad"; fail=1
else echo "ok - the analyses include only the engine"; fi
exit $fail
