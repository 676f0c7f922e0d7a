#!/bin/bash
# tools/slurm-array.sh against a single-node Slurm started here: a private
# slurmctld and slurmd (Debian's slurm-wlm; auth/none, state in a temporary
# directory, ports of their own) run a 3-task array of eval and of heads and
# the dependent merge job; each merged result must equal the unsharded run
# (times and pass counts aside). Skips (77) where Slurm cannot start: not
# root, slurm-wlm missing, or the daemons not up within 30 s.
set -u
fl=${FACTLENS:?FACTLENS is not set}
src=${top_srcdir:-.}
model=$src/data/models/demo
tiny=$src/tests/tasks/tiny.json
script=$src/tools/slurm-array.sh

skip() { echo "# skipped: $1"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "not root: a private slurmd runs jobs as root only here"
for c in slurmctld slurmd sbatch sinfo squeue; do
	command -v $c > /dev/null || skip "$c not found (Debian package slurm-wlm)"
done
[ -d /usr/lib/x86_64-linux-gnu/slurm-wlm ] || ls /usr/lib/*/slurm-wlm/auth_none.so > /dev/null 2>&1 ||
	skip "no Slurm plugin directory with auth/none"

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok - $1"; }
bad() { echo "FAIL - $1"; fail=1; }

host=$(hostname -s)
port=$((20000 + ($$ % 10000) * 2))
mkdir -p "$tmp/state" "$tmp/spool"
cat > "$tmp/slurm.conf" <<EOF
ClusterName=factlens-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/builtin
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=factlens-test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" > "$tmp/ctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$host" > "$tmp/slurmd.out" 2>&1 &
pids+=($!)
up=""
for _ in $(seq 60); do
	if sinfo -h -o '%T' 2> /dev/null | grep -q '^idle'; then up=1; break; fi
	sleep 0.5
done
if [ -z "$up" ]; then
	tail -3 "$tmp/ctld.out" "$tmp/slurmd.out" "$tmp/slurmctld.log" 2> /dev/null | sed 's/^/# /'
	skip "the private slurmctld/slurmd did not come up within 30 s"
fi
ok "a single-node Slurm is up ($(sinfo -h -o '%P %D %T %c' | head -1))"

norm() {
	sed -E -e 's/"(seconds|passes)":([[:space:]]*)[-0-9.e+]+/"\1":\2X/' \
	    -e 's/[0-9]+\.[0-9]+ s(,| in all)/T s\1/' -e 's/[0-9]+ passes/P passes/' "$1"
}

# array NAME ARGS...: slurm-array.sh -n 3 -w over the command; the merge's
# result must equal the unsharded command's.
array() {
	local name=$1 out=$tmp/$1
	shift
	FACTLENS_NO_PROGRESS=1 "$fl" "$@" --threads 1 > "$tmp/$name.whole" 2>&1 ||
		{ bad "$name: the unsharded run failed"; return; }
	if ! FACTLENS=$fl timeout 300 bash "$script" -n 3 -o "$out" -w -- "$@" \
	    > "$tmp/$name.submit" 2>&1; then
		bad "$name: the array or its merge failed: $(tail -2 "$tmp/$name.submit")"
		cat "$out"/*.log 2> /dev/null | head -5 | sed 's/^/# /'
		return
	fi
	if [ -s "$out/result" ] && cmp -s <(norm "$tmp/$name.whole") <(norm "$out/result"); then
		ok "$name: 3 array tasks and the dependent merge == unsharded ($(ls "$out"/part-*.jsonl | wc -l) partials)"
	else
		bad "$name: the merged result differs:"
		diff <(norm "$tmp/$name.whole") <(norm "$out/result") 2>&1 | head -10
	fi
}
array eval eval --model "$model" --task "$tiny" --json --shots 1
array heads heads --model "$model" --task "$tiny"

# A failed shard: the merge job never runs (afterok), so no result.
if FACTLENS=$fl timeout 120 bash "$script" -n 2 -o "$tmp/broken" -w -- \
    decompose --model "$model" --task "$tmp/no-such-task.json" > "$tmp/broken.submit" 2>&1; then
	bad "an array whose shards fail: the merge job reported success"
elif [ -e "$tmp/broken/result" ]; then
	bad "an array whose shards fail left a result"
else
	ok "an array whose shards fail: no merge, no result ($(grep -h 'factlens:' "$tmp"/broken/shard-1.log | head -1))"
fi

# The script's own usage errors.
if bash "$script" -n 3 -- eval --task "$tiny" --shard 1/3 > /dev/null 2> "$tmp/err"; then
	bad "slurm-array.sh took --shard in the command"
else
	ok "slurm-array.sh refuses a command with --shard: $(head -1 "$tmp/err")"
fi
if bash "$script" -n 0 -- eval --task "$tiny" > /dev/null 2> "$tmp/err"; then
	bad "slurm-array.sh took -n 0"
else
	ok "slurm-array.sh refuses -n 0: $(head -1 "$tmp/err")"
fi
exit $fail
