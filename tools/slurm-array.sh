#!/bin/bash
# slurm-array.sh - one factlens task-level command over a Slurm cluster: a
# job array of N tasks, task I running `factlens COMMAND ... --shard I/N`,
# then a merge job that starts when every task has ended well and writes
# what the command prints unsharded. See SHARDING in factlens(1).
#
#   tools/slurm-array.sh -n 16 -o study -- eval --model ~/models/gpt2 \
#       --task data/tasks/country_capital.json --json
#
# writes study/shard.sbatch and study/merge.sbatch, submits them, and prints
# the two job ids; the partials land in study/part-I.jsonl, the logs in
# study/shard-I.log, the result in study/result (study/merge.log: merge's
# messages). Options:
#   -n N      shards (array tasks), required
#   -o DIR    where the scripts, partials, logs and result go (default
#             factlens-shards; made if missing; it must be on a file system
#             every node sees)
#   -c CPUS   CPUs per array task (default 1); factlens gets --threads CPUS
#             unless the command gives --threads itself
#   -w        wait for the merge job to end; exit with its status
# Anything else for sbatch (partition, time limit, memory, account) goes
# through Slurm's own input variables: SBATCH_PARTITION, SBATCH_TIMELIMIT,
# SBATCH_MEM_PER_NODE, SBATCH_ACCOUNT, ... The factlens run is $FACTLENS,
# else the factlens on PATH where the script runs (as an absolute path, so
# the nodes run the same binary).
set -euo pipefail

usage() {
	echo "usage: slurm-array.sh -n N [-o DIR] [-c CPUS] [-w] -- COMMAND [ARGS...]" >&2
	echo "  COMMAND: eval, heads, decompose or trace (with --task)" >&2
	exit 2
}

n="" dir=factlens-shards cpus=1 wait=""
while getopts "n:o:c:wh" opt; do
	case $opt in
	n) n=$OPTARG ;;
	o) dir=$OPTARG ;;
	c) cpus=$OPTARG ;;
	w) wait=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ -n "$n" ] && [ $# -ge 1 ] || usage
case $n in ''|*[!0-9]*|0) echo "slurm-array.sh: -n takes a shard count >= 1, not '$n'" >&2; exit 2 ;; esac
case $cpus in ''|*[!0-9]*|0) echo "slurm-array.sh: -c takes a CPU count >= 1, not '$cpus'" >&2; exit 2 ;; esac
case $1 in
eval|heads|decompose|trace) ;;
*) echo "slurm-array.sh: '$1' is not a shardable command (eval, heads, decompose, trace --task)" >&2; exit 2 ;;
esac
for a in "$@"; do
	case $a in --shard|--shard=*|--out|--out=*)
		echo "slurm-array.sh: give the command without --shard and --out: each array task adds its own" >&2
		exit 2 ;;
	esac
done
command -v sbatch > /dev/null || { echo "slurm-array.sh: sbatch not found: is this a Slurm submit host?" >&2; exit 1; }

fl=${FACTLENS:-$(command -v factlens || true)}
[ -n "$fl" ] && [ -x "$fl" ] || { echo "slurm-array.sh: no factlens to run: put it on PATH or set FACTLENS" >&2; exit 1; }
fl=$(cd "$(dirname "$fl")" && pwd)/$(basename "$fl")
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

threads=(--threads "$cpus")
for a in "$@"; do
	case $a in -t|--threads|--threads=*) threads=() ;; esac
done
cmd=$(printf ' %q' "$fl" "$@" "${threads[@]}")

cat > "$dir/shard.sbatch" <<EOF
#!/bin/bash
#SBATCH --job-name=factlens-shard
#SBATCH --array=1-$n
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=$cpus
#SBATCH --output=$dir/shard-%a.log
# Written by slurm-array.sh: shard \$SLURM_ARRAY_TASK_ID of $n.
set -e
export FACTLENS_NO_PROGRESS=1
exec$cmd --shard "\$SLURM_ARRAY_TASK_ID/$n" --out "$dir/part-\$SLURM_ARRAY_TASK_ID.jsonl"
EOF

parts=$(for i in $(seq 1 "$n"); do printf ' %q' "$dir/part-$i.jsonl"; done)
cat > "$dir/merge.sbatch" <<EOF
#!/bin/bash
#SBATCH --job-name=factlens-merge
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --output=$dir/merge.log
# Written by slurm-array.sh: the merge of the $n partials.
set -e
$(printf '%q' "$fl") merge$parts > "$dir/result.tmp"
mv "$dir/result.tmp" "$dir/result"
EOF

array=$(sbatch --parsable "$dir/shard.sbatch")
array=${array%%;*}
merge_args=(--parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes)
[ -n "$wait" ] && merge_args+=(--wait)
echo "slurm-array.sh: array job $array ($n shards), partials in $dir" >&2
if [ -n "$wait" ]; then
	# A merge cancelled because a shard failed ends sbatch --wait with 0 on
	# some Slurm versions: the result file says whether it ran.
	rm -f "$dir/result"
	st=0
	sbatch "${merge_args[@]}" "$dir/merge.sbatch" || st=$?
	if [ $st -ne 0 ] || [ ! -e "$dir/result" ]; then
		echo "slurm-array.sh: no result: a shard or the merge failed (see $dir/shard-*.log and $dir/merge.log)" >&2
		exit 1
	fi
	echo "slurm-array.sh: result in $dir/result" >&2
else
	job=$(sbatch "${merge_args[@]}" "$dir/merge.sbatch")
	echo "slurm-array.sh: merge job ${job%%;*}, result in $dir/result" >&2
	echo "$array ${job%%;*}"
fi
