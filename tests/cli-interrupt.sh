#!/bin/bash
# Ctrl-C in the long analysis commands (eval, heads, decompose, run --task,
# atp --task, trace --task, patch):
# each runs in a tmux pane (a real terminal, so the progress bar shows and
# Ctrl-C is the terminal's), gets Ctrl-C once its progress bar is up, and
# must stop within a few seconds with "... cancelled (Ctrl-C)", status 130
# and no results, leaving the terminal in its normal modes. Without the
# handler the shell would also report 130 (killed by SIGINT), so the message
# is what tells a handled stop from a kill; a handler that never stopped the
# work would print the results.
set -u
fl=${FACTLENS:?FACTLENS is not set}
top=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
task=$top/data/tasks/country_capital_all.json
if ! command -v tmux > /dev/null; then
	echo "FAIL - tmux is not installed (setup.sh installs it)"
	exit 1
fi
if [ ! -f "$top/data/models/demo/config.json" ]; then
	echo "FAIL - the demo model is missing"
	exit 1
fi
tmp=$(mktemp -d)
sock=$tmp/tmux.sock
tm() { tmux -S "$sock" "$@"; }
cleanup() { tm kill-server 2> /dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail=0
# every country, each template twelve times: work long enough to interrupt
bash "$top/tests/big-task.sh" "$task" "$tmp/big_task.json" || exit 1
task=$tmp/big_task.json
export LANG=C.UTF-8 LC_ALL=C.UTF-8
unset FACTLENS_MODEL FACTLENS_NO_PROGRESS TMUX

# interrupt NAME LABEL WHAT ARGS...: runs factlens ARGS in a pane (results
# to a file, stderr on the terminal), waits for the progress bar "LABEL [",
# sends Ctrl-C, checks the end.
interrupt() {
	local name=$1 label=$2 what=$3 said
	shift 3
	cat > "$tmp/$name.sh" <<EOS
#!/bin/sh
trap : INT
"$fl" $* > "$tmp/$name.out"
echo "status \$?" > "$tmp/$name.exit"
stty -a >> "$tmp/$name.exit"
sleep 60
EOS
	chmod +x "$tmp/$name.sh"
	tm -f /dev/null new-session -d -s "$name" -x 120 -y 10 "$tmp/$name.sh"
	for _ in $(seq 300); do
		tm capture-pane -p -t "$name" | grep -qF -- "$label [" && break
		sleep 0.1
	done
	if ! tm capture-pane -p -t "$name" | grep -qF -- "$label ["; then
		echo "FAIL - $name: no progress bar \"$label [\" within 30 s; the screen:"
		tm capture-pane -p -t "$name" | sed '/^$/d; s/^/    | /'
		fail=1
		return
	fi
	tm send-keys -t "$name" C-c
	for _ in $(seq 100); do [ -s "$tmp/$name.exit" ] && break; sleep 0.1; done
	if [ ! -s "$tmp/$name.exit" ]; then
		echo "FAIL - $name: still running 10 s after Ctrl-C"
		fail=1
		return
	fi
	said=$(tm capture-pane -p -t "$name" | sed '/^$/d')
	if [ "$(head -1 "$tmp/$name.exit")" = "status 130" ] &&
	    [ "$said" = "factlens: $what cancelled (Ctrl-C): no results" ] &&
	    [ ! -s "$tmp/$name.out" ]; then
		echo "ok - $name: Ctrl-C stops it with \"$said\", status 130, no results"
	else
		echo "FAIL - $name: $(head -1 "$tmp/$name.exit"), the screen \"$said\"," \
			"$(wc -c < "$tmp/$name.out") bytes of results"
		fail=1
	fi
	if grep -qE '(^| )-icanon|(^| )-echo( |$)' "$tmp/$name.exit"; then
		echo "FAIL - $name: the terminal is left raw"
		fail=1
	else
		echo "ok - $name: the terminal is in icanon echo mode"
	fi
}

# The demo model and the big task: each command runs for seconds.
interrupt eval "eval 0-shot" "eval" eval --task "$task" --threads 1
interrupt heads "heads" "path patching" heads --task "$task" --threads 1
interrupt decompose "decompose" "the decomposition fit" decompose --task "$task" \
	--threads 1 --batch 8
interrupt run "fitting" "the decomposition fit" run --task "$task" --threads 1 \
	--prompt "'The capital of France is'" --intercept --layer 2
interrupt atp "atp" "attribution patching" atp --task "$task" --threads 1
interrupt trace "trace" "causal tracing" trace --task "$task" --threads 1 \
	--samples 2
# patch of one long pair (103 tokens, within the demo's 128): every head at
# every position, one run a pass
long=$(for _ in $(seq 14); do printf 'The capital of France is Paris. '; done)
interrupt patch "patch" "activation patching" patch --threads 1 --batch 1 \
	--hook z --by-pos --answer Paris --prompt "'${long}The capital of France is'" \
	--corrupt "'The capital of Japan is Paris. ${long#The capital of France is Paris. }The capital of France is'"
exit $fail
