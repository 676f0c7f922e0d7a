#!/bin/bash
# The explorer as a user drives it: the real binary in a tmux pane (tmux is
# the terminal, so this runs without a TTY, in CI too). Keys go in with
# send-keys; each check reads the screen with capture-pane and waits up to a
# few seconds for the expected text. Covers typing a prompt with readline,
# stepping layers, selecting a head, the mask toggle, the command line with
# Tab completion, the key map, resizing below the minimum and back, Ctrl-C
# cancelling long work without leaving (:time on the fixture; on the demo
# model with every country, the decomposition fit, :eval, path patching and
# the intercept fit), the prompt history file, and the terminal restored
# after q, SIGTERM and Ctrl-C twice.
set -u
fl=${FACTLENS:?FACTLENS is not set}
fx=${FL_FIXTURES:?FL_FIXTURES is not set}/gpt2-f32
demo=$FL_FIXTURES/../../data/models/demo
tasks=$FL_FIXTURES/../../data/tasks
if ! command -v tmux > /dev/null; then
	echo "FAIL - tmux is not installed (setup.sh installs it)"
	exit 1
fi
tmp=$(mktemp -d)
sock=$tmp/tmux.sock
tm() { tmux -S "$sock" "$@"; }
cleanup() { tm kill-server 2> /dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail=0
export LANG=C.UTF-8 LC_ALL=C.UTF-8
export XDG_STATE_HOME=$tmp/state XDG_CONFIG_HOME=$tmp/config
unset NO_COLOR FACTLENS_MODEL TMUX

# start NAME [ARGS]: a pane running the explorer (on $MODEL, by default the
# fixture); after it exits, the wrapper records its status and the terminal
# modes.
start() {
	local name=$1
	shift
	cat > "$tmp/$name.sh" <<EOS
#!/bin/sh
trap : INT QUIT
"$fl" --model "${MODEL:-$fx}" --no-rc $*
echo "status \$?" > "$tmp/$name.exit"
stty -a >> "$tmp/$name.exit"
tput rmcup 2>/dev/null
sleep 60
EOS
	chmod +x "$tmp/$name.sh"
	tm -f /dev/null new-session -d -s "$name" -x 100 -y 30 "$tmp/$name.sh"
	tm set-option -g default-terminal screen-256color > /dev/null 2>&1
}
screen() { tm capture-pane -p -t "$1"; }
# wait_for NAME TEXT [SECONDS]: until the screen shows TEXT.
wait_for() {
	local name=$1 text=$2 n=$(( ${3:-5} * 10 ))
	for _ in $(seq "$n"); do
		screen "$name" | grep -qF -- "$text" && return 0
		sleep 0.1
	done
	return 1
}
# check NAME WHAT TEXT [SECONDS]
check() {
	if wait_for "$1" "$3" "${4:-5}"; then
		echo "ok - $2"
	else
		echo "FAIL - $2: the screen never showed \"$3\"; it shows:"
		screen "$1" | sed 's/^/    | /'
		fail=1
	fi
}
check_not() {
	sleep 0.3
	if screen "$1" | grep -qF -- "$3"; then
		echo "FAIL - $2: the screen still shows \"$3\""
		fail=1
	else
		echo "ok - $2"
	fi
}
keys() { tm send-keys -t "$1" "${@:2}"; }
# restored NAME WHAT: the explorer exited and left the terminal sane.
restored() {
	local f=$tmp/$1.exit
	for _ in $(seq 50); do [ -s "$f" ] && break; sleep 0.1; done
	if [ ! -s "$f" ]; then
		echo "FAIL - $2: the explorer did not exit"
		fail=1
	elif grep -qE '(^| )-icanon|(^| )-echo( |$)' "$f"; then
		echo "FAIL - $2: the terminal is left raw: $(grep -o -- '-icanon\|-echo ' "$f" | tr '\n' ' ')"
		fail=1
	else
		echo "ok - $2 ($(head -1 "$f"), terminal in icanon echo mode)"
	fi
}

start a
check a "the explorer opens on the fixture with the default prompt" "prompt The capital of France is"
check a "the panes are drawn" "layers: answer at resid_post"

# Type a new prompt with readline: e opens it pre-filled, C-u clears.
keys a e
check a "e opens the prompt line" "prompt> The capital of France is"
keys a C-u "Germany is Berlin. Italy is" Enter
check a "Enter runs the new prompt" "tokens Germany ·is · Berlin . ·It"
check a "the status line shows how long it took" " ms"

# Step layers and select a head.
keys a j
check a "j moves the layer cursor down" "layer 1 │ head 1.0"
keys a k
check a "k moves it back" "layer 0 │ head 0.0"
keys a l l
check a "l l selects head 0.2" "─ head 0.2 "
keys a End
check a "End goes to the last layer" "layer 1 │ head 1.2"

# The mask toggle: before -> after in the status line.
keys a m
check a "m turns the final-layer mask on" "(mask)"
check a "the header shows the mask on" "mask  on"
keys a m
check_not a "m again turns it off" "(mask)"
keys a c
check a "c puts B, the mask flipped, beside A" "B: this prompt, mask on"
keys a c
check_not a "c again ends the comparison" "A vs B"

# The command line, with Tab completion of commands and arguments.
keys a : "met" Tab
check a "Tab completes a command name" ":metric"
keys a "dir" Tab Enter
check a ":metric direct switches the heads metric" "heads: direct effect on answer"
keys a : "theme li" Tab Enter
check a "Tab completes a theme name; :theme light applies it" "│ light"
keys a : "task country_cur" Tab
check a "Tab completes a bundled task's name" ":task country_currency"
keys a C-g
# Every command name, on as many rows as they need (the last, topk, too).
keys a : Tab Tab
check a "Tab twice on an empty line lists every command, wrapped" "  topk"
check a "the list holds :compare" " compare "
keys a C-g
keys a : "layer nine" Enter
check a "a bad command shows an error and the explorer stays" "layer: expected N"
keys a : "prompt oops" Escape
check_not a "Escape closes the command line without running it" ":prompt oops"

# The key map.
keys a "?"
check a "? shows the key map" "keys: each runs a command"
keys a x
check a "any key closes it" "layers: answer at resid_post"

# The flow pane: f opens the causal trace, the arrows move the cell (a
# row is a position), Tab the kind, Enter the cell's restored run (Esc
# closes it), o the knockout view, Esc the pane; Tab completes :trace's
# words.
keys a : "trace sam" Tab
check a "Tab completes :trace's words" ":trace samples"
keys a " 2" Enter
check a ":trace samples 2 opens the flow pane's map" "flow: causal trace, resid_pre restored, 2 samples"
check a "its legend gives P(clean) and P(corrupt)" "P(corrupt) "
keys a Right
check a "Right moves the cell a layer on" ", layer 1: P("
keys a Up
check a "Up moves the cell a position up" "pos token"
keys a Tab
check a "Tab switches the kind to mlp" "flow: causal trace, mlp output restored, window 10"
keys a Enter
check a "Enter shows the cell's restored run" "restored run: cell #"
check a "with the lens of its streams" "lens at the last position"
keys a Escape
check a "Esc closes it, back to the map" "P(corrupt) "
keys a o
check a "o switches to the knockout curves" "flow: attention knockout from the last position, window 1"
keys a W
check a "W widens the window" "window 2"
keys a "?"
check a "? lists the flow pane's keys while it is shown" "keys of the flow pane"
keys a x
keys a Escape
check a "Esc closes the flow pane" "layers: answer at resid_post"
keys a "["
check a "[ moves the lens to the position before the last" "lens at #"
keys a : "position last" Enter
check a ":position last brings back the last position" "lens, last position"

# Resize below the minimum, and back.
tm resize-window -t a -x 50 -y 12
check a "below the minimum size a clear message" "needs at least 60x16"
tm resize-window -t a -x 120 -y 35
check a "back to 120x35 the panes are redrawn" "layers: answer at resid_post"

# Ctrl-C cancels long work and stays.
keys a : "time 100000" Enter
sleep 1
keys a C-c
check a "Ctrl-C cancels :time and the explorer stays" "(cancelled)" 10
keys a C-c
check a "Ctrl-C at rest asks for a second press" "press Ctrl-C again to quit"

# The prompt history persists in the XDG state directory.
if grep -qx "Germany is Berlin. Italy is" "$XDG_STATE_HOME/factlens/prompts" 2> /dev/null; then
	echo "ok - the prompt went into \$XDG_STATE_HOME/factlens/prompts"
else
	echo "FAIL - no prompt history in $XDG_STATE_HOME/factlens/prompts"
	fail=1
fi

sleep 2.1
keys a q
restored a "q quits and restores the terminal"

# A second session: history comes back with Up; SIGTERM restores the terminal.
start b
check b "a second session opens" "layers: answer at resid_post"
keys b e C-u Up
check b "Up in the prompt line recalls the last session's prompt" "prompt> Germany is Berlin. Italy is"
keys b Escape
pid=$(pgrep -P "$(tm display-message -p -t b '#{pane_pid}')" -x factlens | head -1)
if [ -n "$pid" ]; then
	kill -TERM "$pid"
	restored b "SIGTERM ends the explorer and restores the terminal"
else
	echo "FAIL - could not find the explorer's process"
	fail=1
fi

# Ctrl-\ (SIGQUIT), and any other signal whose default ends the process,
# restores the terminal before the process goes.
start q
check q "a session to quit with Ctrl-\\" "layers: answer at resid_post"
keys q 'C-\'
restored q "Ctrl-\\ (SIGQUIT) ends the explorer and restores the terminal"

# The model file truncated under a running explorer: the next pass reads
# pages that are gone (SIGBUS); the terminal is restored and the cause said.
rm -rf "$tmp/trunc"
cp -r "$fx" "$tmp/trunc"
MODEL=$tmp/trunc start t
check t "a session on a copy of the fixture" "layers: answer at resid_post"
truncate -s 1000 "$tmp/trunc/model.safetensors"
keys t e C-u "Paris is" Enter
restored t "a model file truncated under the explorer: the terminal is restored"
check t "it says the weights' file changed under it" "truncated or rewritten"

# --colors beyond what the terminal has (256 on TERM=xterm's 8) would draw
# colour numbers it lacks, black on black: lowered to the terminal's, said.
cat > "$tmp/c8.sh" <<EOS
#!/bin/sh
TERM=xterm "$fl" --model "$fx" --no-rc --colors 256
sleep 60
EOS
chmod +x "$tmp/c8.sh"
tm -f /dev/null new-session -d -s c8 -x 100 -y 30 "$tmp/c8.sh"
check c8 "--colors 256 on an 8-colour terminal is lowered, with a note" \
	"--colors 256: this terminal (TERM=xterm) has 8 colours; drawing with 8"
keys c8 q

# Long work on the demo model with all 172 countries (seconds each): the
# progress line offers Ctrl-C, which stops the work at its next batch, says
# what it cancelled, shows nothing half done, and leaves the explorer
# answering keys. Without cancellation each would run to its end and show
# its result instead of the message.
# long_work NAME LABEL: waits for LABEL's progress line, then sends Ctrl-C.
long_work() {
	local name=$1 label=$2
	for _ in $(seq 300); do
		screen "$name" | grep -F -- "$label" | grep -qF "Ctrl-C to cancel" && break
		sleep 0.1
	done
	if screen "$name" | grep -F -- "$label" | grep -qF "Ctrl-C to cancel"; then
		echo "ok - $label shows a progress line with Ctrl-C to cancel"
	else
		echo "FAIL - no progress line for $label; the screen shows:"
		screen "$name" | sed 's/^/    | /'
		fail=1
	fi
	keys "$name" C-c
}
# Every country, each template twelve times: long enough work to cancel.
bash "$FL_FIXTURES/../big-task.sh" "$tasks/country_capital_all.json" \
    "$tmp/big_task.json"
MODEL=$demo start d
tm resize-window -t d -x 120 -y 36	# room for the MLP pane
check d "a session on the demo model opens" "layers: answer at resid_post" 10
keys d : "task $tmp/big_task.json" Enter
long_work d "fitting the MLP decomposition"
check d "Ctrl-C cancels the decomposition fit" "MLP decomposition fit cancelled"
check d "the MLP pane says its fit was cancelled" "decomposition: the fit was cancelled"
keys d : "eval" Enter
long_work d "evaluating"
check d "Ctrl-C cancels :eval and the explorer stays" "eval cancelled"
check_not d "no eval table is shown" "(any key closes)"
keys d : "metric patch" Enter
long_work d "path patching"
check d "Ctrl-C cancels path patching" "path patching cancelled"
check d "the heads grid goes back to the metric it showed" "heads: attention to subject"
keys d : "trace samples 1000" Enter
long_work d "causal tracing"
check d "Ctrl-C cancels causal tracing" "causal tracing cancelled"
check d "the flow pane goes back to what it showed (closed)" "layers: answer at resid_post"
keys d i
long_work d "fitting the intercept"
check d "Ctrl-C cancels the intercept fit" "intercept fit cancelled"
check d "intercept removal stays off" "intercept off"
keys d m
check d "the explorer still answers keys: m turns the mask on" "(mask)"
keys d q
restored d "q quits after the cancelled work"

start c
check c "a third session opens" "layers: answer at resid_post"
keys c C-c
sleep 0.3
keys c C-c
restored c "Ctrl-C twice quits and restores the terminal"
exit $fail
