#!/bin/bash
# Every bad input the loader can meet, fed to the real binary: each must exit
# with status 1 (2 for usage errors) and a message that names the file, the
# tensor or field, and what was expected. Never a crash.
set -u
fl=${FACTLENS:?FACTLENS is not set}
fx=${FL_FIXTURES:?FL_FIXTURES is not set}/gpt2-f32
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# expect NAME STATUS NEEDLE -- ARGS...
expect() {
	local name=$1 want=$2 needle=$3
	shift 4
	local out status
	out=$("$fl" "$@" 2>&1 >/dev/null)
	status=$?
	if [ "$status" -eq "$want" ] && [[ "$out" == *"$needle"* ]]; then
		echo "ok - $name"
	else
		echo "FAIL - $name: status $status (want $want), message: $out"
		echo "    expected the message to contain: $needle"
		fail=1
	fi
}

# fresh DIR: a copy of the good fixture to break
fresh() { rm -rf "$tmp/m"; cp -r "$fx" "$tmp/m"; }
run() { echo "$tmp/m"; }

fresh
"$fl" run --model "$tmp/m" --prompt "Germany is" >/dev/null 2>&1 &&
	echo "ok - the unbroken copy runs" || { echo "FAIL - the unbroken copy runs"; fail=1; }

expect "missing model directory" 1 "nonexistent/config.json: cannot open" -- \
	run --model "$tmp/nonexistent" --prompt hi
fresh; rm "$tmp/m/config.json"
expect "missing config.json" 1 "config.json: cannot open" -- run --model "$tmp/m" --prompt hi
fresh; echo '{"model_type": "gpt2", ' > "$tmp/m/config.json"
expect "config.json not JSON" 1 "config.json: not valid JSON" -- run --model "$tmp/m" --prompt hi
fresh; sed -i 's/"n_layer": [0-9]*/"n_layer": "two"/' "$tmp/m/config.json"
expect "n_layer not an integer" 1 "field 'n_layer' must be an integer" -- run --model "$tmp/m" --prompt hi
fresh; sed -i 's/"model_type": "gpt2"/"model_type": "bert"/' "$tmp/m/config.json"
expect "unknown model_type" 1 "model_type 'bert' is not supported" -- run --model "$tmp/m" --prompt hi
fresh; sed -i 's/"n_head": [0-9]*/"n_head": 5/' "$tmp/m/config.json"
expect "hidden size not divisible by heads" 1 "not a multiple of the 5 heads" -- run --model "$tmp/m" --prompt hi
fresh; sed -i 's/"n_embd": [0-9]*/"n_embd": 128/' "$tmp/m/config.json"
expect "config shape differs from the tensors" 1 "config.json implies" -- run --model "$tmp/m" --prompt hi
fresh; sed -i 's/"vocab_size": [0-9]*/"vocab_size": 100/' "$tmp/m/config.json"
expect "vocabulary larger than vocab_size" 1 "but config.json's vocab_size is 100" -- run --model "$tmp/m" --prompt hi
fresh; rm "$tmp/m/model.safetensors"
expect "missing weights" 1 "no model.safetensors" -- run --model "$tmp/m" --prompt hi
fresh; rm "$tmp/m/merges.txt"
expect "missing merges.txt" 1 "merges" -- run --model "$tmp/m" --prompt hi
fresh; echo '{"a": 0' > "$tmp/m/vocab.json"
expect "vocab.json not JSON" 1 "vocab.json" -- run --model "$tmp/m" --prompt hi
fresh; printf '#version: 0.2\nzz\xc4\xa0 qq\n' >> "$tmp/m/merges.txt"
expect "a merge whose parts are not in the vocabulary" 1 "merges.txt" -- run --model "$tmp/m" --prompt hi
# Memory follows what a tokenizer file holds, not what it names: blank
# lines in merges.txt cost nothing (the merge table grows with the merges;
# it was sized by the line count, 1 GB for 20 MB of blank lines), and an id
# far past the number of tokens is refused (the tables are indexed by id:
# one id near 2^24 in a 1 MB vocab.json took 538 MB).
fresh
{ head -3 "$fx/merges.txt"; head -c 2000000 /dev/zero | tr '\0' '\n'; tail -n +4 "$fx/merges.txt"; } > "$tmp/m/merges.txt"
want=$("$fl" tokenize --model "$fx" "Germany is the capital of it all")
got=$("$fl" tokenize --model "$tmp/m" "Germany is the capital of it all" 2>&1)
[ "$got" = "$want" ] && echo "ok - 2 million blank lines in merges.txt change nothing ($got)" ||
	{ echo "FAIL - blank lines in merges.txt: got '$got', want '$want'"; fail=1; }
fresh; sed -i '0,/{/s//{"zzhuge": 16777215, /' "$tmp/m/vocab.json"
expect "a vocab.json id far past its token count" 1 \
	'vocab.json: token "zzhuge" has id 16777215 but the file holds 301 tokens: ids must be below 602' -- \
	tokenize --model "$tmp/m" hi
fresh; sed -i '0,/{/s//{"zzhuge": 601, /' "$tmp/m/vocab.json"
"$fl" tokenize --model "$tmp/m" hi >/dev/null 2>&1 &&
	echo "ok - a vocab.json with a few unused ids loads" ||
	{ echo "FAIL - a vocab.json with a few unused ids is refused"; fail=1; }
fresh; head -c 5 "$fx/model.safetensors" > "$tmp/m/model.safetensors"
expect "truncated safetensors (5 bytes)" 1 "model.safetensors: file is 5 bytes" -- run --model "$tmp/m" --prompt hi
fresh; head -c 4000 "$fx/model.safetensors" > "$tmp/m/model.safetensors"
expect "truncated safetensors (data cut)" 1 "out of bounds" -- run --model "$tmp/m" --prompt hi
fresh; printf '\xff\xff\xff\x00\x00\x00\x00\x00{}' > "$tmp/m/model.safetensors"
expect "header length past the end" 1 "does not fit the file" -- run --model "$tmp/m" --prompt hi
fresh; printf '\x08\x00\x00\x00\x00\x00\x00\x00{"a":1} ' > "$tmp/m/model.safetensors"
expect "header entry not an object" 1 "tensor 'a': header entry is not an object" -- run --model "$tmp/m" --prompt hi
# rename one tensor in place (same length keeps every offset valid)
fresh; sed -i 's/"ln_f.weight"/"ln_X.weight"/' "$tmp/m/model.safetensors"
expect "missing tensor" 1 "missing tensor 'ln_f.weight'" -- run --model "$tmp/m" --prompt hi
fresh; sed -i 's/"ln_f.weight": *{"dtype": *"F32"/&/; s/\("ln_f.weight":{"dtype":"\)F32/\1I32/; s/\("ln_f.weight": {"dtype": "\)F32/\1I32/' "$tmp/m/model.safetensors"
expect "integer dtype for a weight" 1 "'ln_f.weight' has dtype I32" -- run --model "$tmp/m" --prompt hi

# sharded: a shard missing, a tensor mapped to the wrong shard
sh=${FL_FIXTURES}/gpt2-sharded
rm -rf "$tmp/s"; cp -r "$sh" "$tmp/s"; rm "$tmp/s/model-00002-of-00002.safetensors"
expect "missing shard" 1 "model-00002-of-00002.safetensors: cannot open" -- run --model "$tmp/s" --prompt hi
rm -rf "$tmp/s"; cp -r "$sh" "$tmp/s"; sed -i 's/"wte.weight": *"model-0000[12]/"wte.weight": "model-0000X/' "$tmp/s/model.safetensors.index.json"
expect "index naming a missing shard" 1 "model-0000X" -- run --model "$tmp/s" --prompt hi
rm -rf "$tmp/s"; cp -r "$sh" "$tmp/s"; sed -i 's#"wte.weight": *"#"wte.weight": "../#' "$tmp/s/model.safetensors.index.json"
expect "index escaping the model directory" 1 "must name a file in the model directory" -- run --model "$tmp/s" --prompt hi

# a post-LN OPT with project_in/out (opt-350m's kind): inconsistent widths
px=${FL_FIXTURES}/opt350-f32
pfresh() { rm -rf "$tmp/p"; cp -r "$px" "$tmp/p"; }
pfresh
"$fl" run --model "$tmp/p" --prompt "Germany is" >/dev/null 2>&1 &&
	echo "ok - the unbroken post-LN copy runs" || { echo "FAIL - the unbroken post-LN copy runs"; fail=1; }
pfresh; sed -i 's/"word_embed_proj_dim": 32/"word_embed_proj_dim": 48/' "$tmp/p/config.json"
expect "word_embed_proj_dim differs from the embedding's width" 1 \
	"tensor 'model.decoder.embed_tokens.weight' has shape [300, 32]; config.json implies [300, 48]" -- \
	run --model "$tmp/p" --prompt hi
pfresh; sed -i 's/"word_embed_proj_dim": 32/"word_embed_proj_dim": 64/' "$tmp/p/config.json"
expect "word_embed_proj_dim = hidden_size with projected embeddings" 1 \
	"tensor 'model.decoder.embed_tokens.weight' has shape [300, 32]; config.json implies [300, 64]" -- \
	run --model "$tmp/p" --prompt hi
pfresh; sed -i 's/"word_embed_proj_dim": 32/"word_embed_proj_dim": 0/' "$tmp/p/config.json"
expect "word_embed_proj_dim 0" 1 "field 'word_embed_proj_dim' must be an integer in [1, " -- \
	run --model "$tmp/p" --prompt hi
pfresh; sed -i 's/"model.decoder.project_in.weight"/"model.decoder.project_iX.weight"/' "$tmp/p/model.safetensors"
expect "project_in missing" 1 "missing tensor 'model.decoder.project_in.weight' (shape [64, 32])" -- \
	run --model "$tmp/p" --prompt hi
pfresh; sed -i 's/\("model.decoder.project_out.weight":{"dtype":"F32","shape":\[\)32,64/\164,32/' "$tmp/p/model.safetensors"
expect "project_out transposed" 1 \
	"tensor 'model.decoder.project_out.weight' has shape [64, 32]; config.json implies [32, 64]" -- \
	run --model "$tmp/p" --prompt hi
pfresh; sed -i 's/"do_layer_norm_before": false/"do_layer_norm_before": true/' "$tmp/p/config.json"
expect "pre-LN config on a file without the decoder's final LayerNorm" 1 \
	"missing tensor 'model.decoder.final_layer_norm.weight' (shape [64])" -- \
	run --model "$tmp/p" --prompt hi

# OPT settings that drop weights factlens needs are refused by name at
# config.json, not left to surface as a missing tensor
ox=${FL_FIXTURES}/opt-f32
ofresh() { rm -rf "$tmp/o"; cp -r "$ox" "$tmp/o"; }
ofresh; sed -i 's/"enable_bias": true/"enable_bias": false/' "$tmp/o/config.json"
expect "OPT: enable_bias false refused" 1 \
	"config.json: field 'enable_bias' is false; factlens needs OPT's linear biases" -- \
	run --model "$tmp/o" --prompt hi
ofresh; sed -i 's/"layer_norm_elementwise_affine": true/"layer_norm_elementwise_affine": false/' \
	"$tmp/o/config.json"
expect "OPT: layer_norm_elementwise_affine false refused" 1 \
	"config.json: field 'layer_norm_elementwise_affine' is false; factlens needs the LayerNorms'" -- \
	run --model "$tmp/o" --prompt hi
ofresh; sed -i 's/"activation_function": "relu"/"activation_function": "quick_gelu"/' "$tmp/o/config.json"
expect "OPT: an activation factlens lacks refused by name" 1 \
	"config.json: field 'activation_function' is 'quick_gelu'; expected gelu_new, gelu, relu or silu" -- \
	run --model "$tmp/o" --prompt hi
ofresh; sed -i '/"enable_bias"/d; /"layer_norm_elementwise_affine"/d' "$tmp/o/config.json"
"$fl" run --model "$tmp/o" --prompt hi >/dev/null 2>&1 &&
	echo "ok - OPT: enable_bias and layer_norm_elementwise_affine default to true" ||
	{ echo "FAIL - OPT: enable_bias and layer_norm_elementwise_affine default to true"; fail=1; }

# Llama: grouped-query attention, RMSNorm, rotary positions, tokenizer.model
lx=${FL_FIXTURES}/llama-f32
lfresh() { rm -rf "$tmp/l"; cp -r "$lx" "$tmp/l"; }
lfresh
"$fl" run --model "$tmp/l" --prompt "Berlin. The capital of France is" --answer Paris --lens \
	--final-mask >/dev/null 2>&1 &&
	"$fl" eval --model "$tmp/l" --task "${top_srcdir:-$FL_FIXTURES/../..}/tests/tasks/tiny.json" >/dev/null 2>&1 &&
	echo "ok - the unbroken Llama copy runs (lens, mask; eval with both mitigations)" ||
	{ echo "FAIL - the unbroken Llama copy runs"; fail=1; }
lfresh; sed -i 's/"num_key_value_heads": 2/"num_key_value_heads": 3/' "$tmp/l/config.json"
expect "Llama: heads not a multiple of the kv heads" 1 \
	"num_attention_heads 4 is not a multiple of num_key_value_heads 3" -- run --model "$tmp/l" --prompt hi
lfresh; sed -i 's/"num_key_value_heads": 2/"num_key_value_heads": 4/' "$tmp/l/config.json"
expect "Llama: kv heads differ from k_proj's rows" 1 \
	"tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 64]; config.json implies [64, 64]" -- \
	run --model "$tmp/l" --prompt hi
lfresh; sed -i 's/"intermediate_size": 172/"intermediate_size": 128/' "$tmp/l/config.json"
expect "Llama: intermediate_size differs from gate_proj" 1 \
	"tensor 'model.layers.0.mlp.gate_proj.weight' has shape [172, 64]; config.json implies [128, 64]" -- \
	run --model "$tmp/l" --prompt hi
lfresh; sed -i 's/"rope_scaling": null/"rope_scaling": {"type": "linear", "factor": 2.0}/' "$tmp/l/config.json"
expect "Llama: rope_scaling refused" 1 "field 'rope_scaling' is set (rope type linear); scaled rotary positions are not implemented" -- \
	run --model "$tmp/l" --prompt hi
# llama_refused NAME SED-EXPR NEEDLE: the copy with config.json edited is
# refused, the message naming the field
llama_refused() {
	lfresh
	sed -i "$2" "$tmp/l/config.json"
	expect "Llama: $1" 1 "$3" -- run --model "$tmp/l" --prompt hi
}
llama_refused "rope_scaling without a type refused" \
	's/"rope_scaling": null/"rope_scaling": {"factor": 2.0}/' \
	"field 'rope_scaling' is set (rope type not given)"
# Rotary settings give the same numbers whichever way they are written:
# rope_scaling of rope type "default" is plain rotary, and newer
# transformers' rope_parameters carries rope_theta in place of the top
# level's (it was ignored: theta stayed 10000).
llama_logits() { # OUT: run the copy in $tmp/l, dump its logits
	"$fl" run --model "$tmp/l" --prompt "Berlin. The capital of France is" \
		--dump-logits "$tmp/$1" >/dev/null 2>&1 || echo "FAIL - Llama: the run for $1 failed"
}
lfresh; llama_logits plain.f32
lfresh; sed -i 's/"rope_scaling": null/"rope_scaling": {"rope_type": "default"}/' "$tmp/l/config.json"
llama_logits default.f32
cmp -s "$tmp/plain.f32" "$tmp/default.f32" &&
	echo "ok - Llama: rope_scaling of rope type default is plain rotary" ||
	{ echo "FAIL - Llama: rope_scaling {rope_type: default} changed the logits"; fail=1; }
lfresh; sed -i 's/"rope_theta": 10000.0/"rope_theta": 500000.0/' "$tmp/l/config.json"
llama_logits top.f32
lfresh; sed -i 's/"rope_theta": 10000.0,/"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},/' "$tmp/l/config.json"
llama_logits inner.f32
if cmp -s "$tmp/top.f32" "$tmp/inner.f32" && ! cmp -s "$tmp/top.f32" "$tmp/plain.f32"; then
	echo "ok - Llama: rope_parameters.rope_theta is honoured as the top-level rope_theta is"
else
	echo "FAIL - Llama: rope_parameters.rope_theta 500000 gave other logits than rope_theta 500000"
	fail=1
fi
llama_refused "rope_theta and rope_parameters.rope_theta disagreeing refused" \
	's/"rope_theta": 10000.0,/"rope_theta": 10000.0, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},/' \
	"rope_theta 10000 and rope_parameters.rope_theta 500000 disagree"
llama_refused "rope_parameters of rope type yarn refused" \
	's/"rope_theta": 10000.0,/"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0},/' \
	"field 'rope_parameters' is set (rope type yarn); scaled rotary positions are not implemented"
llama_refused "partial_rotary_factor 0.5 refused" \
	's/"rope_theta": 10000.0,/"rope_theta": 10000.0, "partial_rotary_factor": 0.5,/' \
	"field 'partial_rotary_factor' is not 1; rotating part of each head is not implemented"
llama_refused "rope_parameters.partial_rotary_factor 0.5 refused" \
	's/"rope_theta": 10000.0,/"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5},/' \
	"field 'rope_parameters.partial_rotary_factor' is not 1"
llama_refused "mlp_bias refused" \
	's/"attention_bias": false/"attention_bias": false, "mlp_bias": true/' \
	"field 'mlp_bias' is set; MLP biases are not implemented"
llama_refused "head_dim other than hidden_size / heads refused" \
	's/"hidden_size": 64/"hidden_size": 64, "head_dim": 32/' \
	"head_dim 32 times num_attention_heads 4 is not hidden_size 64"
lfresh; sed -i 's/"attention_bias": false/"attention_bias": true/' "$tmp/l/config.json"
expect "Llama: attention_bias refused" 1 "field 'attention_bias' is set" -- run --model "$tmp/l" --prompt hi
lfresh; sed -i 's/"hidden_act": "silu"/"hidden_act": "gelu"/' "$tmp/l/config.json"
expect "Llama: another activation refused" 1 "field 'hidden_act' must be \"silu\"" -- \
	run --model "$tmp/l" --prompt hi
lfresh; sed -i 's/"rms_norm_eps": [0-9.e-]*/"rms_norm_eps": -1/' "$tmp/l/config.json"
expect "Llama: negative rms_norm_eps" 1 "field 'rms_norm_eps' must be a number in (0, 1)" -- \
	run --model "$tmp/l" --prompt hi
lfresh; sed -i 's/"tie_word_embeddings": false/"tie_word_embeddings": true/' "$tmp/l/config.json"
"$fl" run --model "$tmp/l" --prompt hi >/dev/null 2>&1 &&
	echo "ok - Llama: a tied config ignores the file's lm_head" ||
	{ echo "FAIL - Llama: a tied config ignores the file's lm_head"; fail=1; }
lfresh; sed -i 's/"model.layers.1.mlp.up_proj.weight"/"model.layers.1.mlp.up_prXj.weight"/' "$tmp/l/model.safetensors"
expect "Llama: up_proj missing" 1 "missing tensor 'model.layers.1.mlp.up_proj.weight' (shape [172, 64])" -- \
	run --model "$tmp/l" --prompt hi
lfresh; sed -i 's/"lm_head.weight"/"lm_head.weighX"/' "$tmp/l/model.safetensors"
expect "Llama: lm_head missing when not tied" 1 "missing tensor 'lm_head.weight' (shape [512, 64])" -- \
	run --model "$tmp/l" --prompt hi
lfresh; head -c 100 "$lx/tokenizer.model" > "$tmp/l/tokenizer.model"
expect "Llama: truncated tokenizer.model" 1 "tokenizer.model: not a SentencePiece model" -- \
	run --model "$tmp/l" --prompt hi
lfresh; sed -i 's/"vocab_size": 512/"vocab_size": 500/' "$tmp/l/config.json"
expect "Llama: tokenizer larger than vocab_size" 1 "the tokenizer has 512 tokens but config.json's vocab_size is 500" -- \
	run --model "$tmp/l" --prompt hi

# prompts and options
long=$(printf 'the %.0s' $(seq 1 40))
expect "prompt longer than the context" 1 "longer than the model's context of 32 tokens" -- \
	run --model "$fx" --prompt "$long"
expect "empty prompt" 1 "the prompt is empty" -- run --model "$fx" --prompt ""
expect "missing --prompt" 2 "--prompt TEXT is required" -- run --model "$fx"
expect "bad --top" 2 "--top takes an integer" -- run --model "$fx" --prompt hi --top x
expect "unknown command" 2 "unknown command 'frobnicate'" -- frobnicate
expect "unwritable --dump-logits" 1 "cannot create" -- run --model "$fx" --prompt hi --dump-logits "$tmp/no/such/dir/x.f32"
expect "--dump with an unknown hook lists the valid ones" 2 "blocks.L.hook_resid_post" -- \
	run --model "$fx" --prompt hi --dump blocks.0.hook_resid_pots "$tmp/d.st"
expect "--dump without its file" 2 "needs the file" -- run --model "$fx" --prompt hi --dump all
expect "unwritable --dump" 1 "cannot create" -- run --model "$fx" --prompt hi --dump all "$tmp/no/such/dir/d.st"

# the good paths
out=$("$fl" tokenize --model "$fx" "Germany is Berlin.")
[ -n "$out" ] && echo "ok - tokenize prints ids ($out)" || { echo "FAIL - tokenize prints ids"; fail=1; }
out2=$(printf 'Germany is Berlin.' | "$fl" tokenize --model "$fx")
[ "$out" = "$out2" ] && echo "ok - tokenize reads standard input the same" ||
	{ echo "FAIL - tokenize stdin ($out2) differs from argument ($out)"; fail=1; }
"$fl" run --model "$fx" --prompt "Germany is" --dump-logits "$tmp/l.f32" >/dev/null
n=$("$fl" tokenize --model "$fx" "Germany is" | wc -w)
size=$(stat -c %s "$tmp/l.f32")
[ "$size" -eq $((n * 300 * 4)) ] && echo "ok - --dump-logits writes tokens x vocab floats ($size bytes)" ||
	{ echo "FAIL - --dump-logits wrote $size bytes, want $((n * 300 * 4))"; fail=1; }
# --dump and --dump-logits together: both files, the dump with its header
"$fl" run --model "$fx" --prompt "Germany is" --dump 'blocks.*.hook_resid_post' "$tmp/d.st" \
	--dump-logits "$tmp/l2.f32" >/dev/null &&
	cmp -s "$tmp/l.f32" "$tmp/l2.f32" && head -c 1000 "$tmp/d.st" | grep -q '"blocks.1.hook_resid_post"' &&
	echo "ok - --dump writes the hooks named beside --dump-logits" ||
	{ echo "FAIL - --dump with --dump-logits"; fail=1; }
"$fl" run --model "$fx" --prompt "Germany is" --json --answer Berlin --lens > "$tmp/r.json" &&
	grep -q '"answer"' "$tmp/r.json" && grep -q '"lens"' "$tmp/r.json" &&
	echo "ok - run --json has the answer and the lens" || { echo "FAIL - run --json"; fail=1; }
expect "bench --idle needs a positive pause" 2 "--idle takes an integer" -- \
	bench --model "$fx" --idle 0
"$fl" bench --model "$fx" --tokens 4 --reps 2 --idle 5 | grep -q "each after a pause" &&
	echo "ok - bench --idle times passes after a pause" ||
	{ echo "FAIL - bench --idle"; fail=1; }
"$fl" --threads 1 --model "$fx" -c "prompt Germany is" --size 80x24 >/dev/null &&
	echo "ok - the explorer takes --threads" || { echo "FAIL - explorer --threads"; fail=1; }
# CMD --help prints the command's usage on stdout and exits 0; a bad option
# prints the same usage, from the same table, with status 2.
for c in tokenize run eval heads decompose bench explore; do
	help=$("$fl" "$c" --help 2>/dev/null)
	status=$?
	line=$(printf '%s\n' "$help" | head -1)
	bad=$("$fl" "$c" --no-such-option 2>&1 >/dev/null | grep -o 'usage: .*')
	if [ "$status" -eq 0 ] && [[ "$line" == "usage: factlens "*"$c"* ]] &&
	    [ "$bad" = "$line" ]; then
		echo "ok - $c --help prints the usage a bad option shows"
	else
		echo "FAIL - $c --help: status $status, '$line'; bad option: '$bad'"
		fail=1
	fi
done
# A FIFO (or anything but a regular file) where a file is read is refused
# at once, not waited on. timeout turns a hang into a failure.
fifo_case() { # NAME FILE-IN-COPY ARGS...
	local name=$1 file=$2
	shift 2
	fresh
	rm -f "$tmp/m/$file"
	mkfifo "$tmp/m/$file"
	out=$(timeout 10 "$fl" "$@" 2>&1 >/dev/null)
	status=$?
	if [ "$status" -eq 1 ] && [[ "$out" == *"$file: not a regular file"* ]]; then
		echo "ok - a FIFO as $name is refused"
	else
		echo "FAIL - a FIFO as $name: status $status, message: $out"
		fail=1
	fi
}
fifo_case config.json config.json run --model "$tmp/m" --prompt hi
fifo_case vocab.json vocab.json run --model "$tmp/m" --prompt hi
fifo_case model.safetensors model.safetensors run --model "$tmp/m" --prompt hi
fifo_case "a task file" task.json eval --model "$fx" --task "$tmp/m/task.json"
fifo_case "a script" script.txt --model "$fx" --script "$tmp/m/script.txt"
# GPT-2 config fields that change the attention's math: a value the forward
# pass does not implement is refused by name; the default is accepted.
gpt2_field() { # NAME JSON-VALUE
	fresh
	sed -i "0,/{/s//{\n  \"$1\": $2,/" "$tmp/m/config.json"
}
gpt2_field scale_attn_weights false
expect "GPT-2: scale_attn_weights false refused" 1 \
	"config.json: field 'scale_attn_weights' is false" -- run --model "$tmp/m" --prompt hi
gpt2_field scale_attn_by_inverse_layer_idx true
expect "GPT-2: scale_attn_by_inverse_layer_idx true refused" 1 \
	"config.json: field 'scale_attn_by_inverse_layer_idx' is set" -- run --model "$tmp/m" --prompt hi
gpt2_field add_cross_attention true
expect "GPT-2: add_cross_attention true refused" 1 \
	"config.json: field 'add_cross_attention' is set" -- run --model "$tmp/m" --prompt hi
fresh; sed -i 's/"activation_function": "gelu_new"/"activation_function": "gelu_python"/' "$tmp/m/config.json"
expect "GPT-2: an activation factlens lacks refused by name" 1 \
	"config.json: field 'activation_function' is 'gelu_python'; expected gelu_new" -- run --model "$tmp/m" --prompt hi
for f in "scale_attn_weights true" "scale_attn_by_inverse_layer_idx false" \
    "add_cross_attention false" "reorder_and_upcast_attn true"; do
	# shellcheck disable=SC2086
	gpt2_field $f
	if "$fl" run --model "$tmp/m" --prompt hi >/dev/null 2>&1; then
		echo "ok - GPT-2: $f is accepted (the math factlens implements)"
	else
		echo "FAIL - GPT-2: $f is refused"
		fail=1
	fi
done
# A NaN in a weight: the load warns naming the tensor and the count, the
# pass lets it reach the logits as PyTorch does (a softmax row of NaN is
# NaN, not zeros), and --strict refuses the model. The NaN goes into
# layer 0's key weights (c_attn column D: head 0's first key dimension), so
# every score of head 0 is NaN.
poke_nan() { # FIXTURE BYTES: a copy in $tmp/m with value (0, D) of c_attn NaN
	local f hdr n b es=$(( ${#2} / 4 ))
	rm -rf "$tmp/m"
	cp -r "$FL_FIXTURES/$1" "$tmp/m"
	f=$tmp/m/model.safetensors
	n=$(od -An -t u8 -N8 "$f" | tr -d ' ')
	hdr=$(head -c $((8 + n)) "$f" | tail -c "$n")
	b=$(grep -o '"h\.0\.attn\.c_attn\.weight":{[^}]*}' <<<"$hdr" |
		sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	# shellcheck disable=SC2059
	printf "$2" | dd of="$f" bs=1 seek=$((8 + n + b + 64 * es)) conv=notrunc 2>/dev/null
}
for case in "gpt2-f32 \x00\x00\xc0\x7f" "gpt2-f16 \x00\x7e"; do
	# shellcheck disable=SC2086
	set -- $case
	poke_nan "$1" "$2"
	rm -f "$tmp/logits.f32"
	out=$("$fl" run --model "$tmp/m" --prompt "Germany is" --dump-logits "$tmp/logits.f32" 2>&1 >/dev/null)
	status=$?
	want="warning: $tmp/m/model.safetensors: tensor 'h.0.attn.c_attn.weight' holds 1 non-finite value (1 NaN, 0 infinite)"
	if [ "$status" -eq 0 ] && [[ "$out" == *"$want"* ]]; then
		echo "ok - $1: a NaN weight loads with a warning naming the tensor"
	else
		echo "FAIL - $1: a NaN weight: status $status, message: $out"
		fail=1
	fi
	finite=$(od -An -v -t f4 "$tmp/logits.f32" 2>/dev/null | tr -s ' ' '\n' | grep -c '^-\?[0-9]')
	if [ -s "$tmp/logits.f32" ] && [ "$finite" -eq 0 ]; then
		echo "ok - $1: a NaN weight gives NaN logits, as PyTorch does"
	else
		echo "FAIL - $1: a NaN weight gave $finite finite logits (PyTorch: none)"
		fail=1
	fi
	expect "$1: --strict refuses a NaN weight" 1 \
		"tensor 'h.0.attn.c_attn.weight' holds 1 non-finite value (1 NaN, 0 infinite); strict loading refuses" -- \
		run --model "$tmp/m" --prompt hi --strict
done
expect "--strict loads finite weights" 0 "" -- run --model "$fx" --prompt hi --strict
# --mask-heads needs at least one head: an empty list (or a trailing comma)
# is a usage error that says the form, never an empty mask.
for arg in "" "0," "1,,2"; do
	expect "run --mask-heads '$arg' refused" 2 \
		"--mask-heads takes head numbers from 0 to 3 separated by commas (e.g. 0,3), not '$arg'" -- \
		run --model "$fx" --prompt hi --mask-heads "$arg"
done
expect "eval --mask-heads '' refused" 2 "--mask-heads takes head numbers from 0 to 3" -- \
	eval --model "$fx" --task "${top_srcdir:-$FL_FIXTURES/../..}/tests/tasks/tiny.json" --mask-heads ""
# A theme file with a NUL byte is refused, naming the offset; a missing
# theme says where it looked, even with no HOME or XDG_CONFIG_HOME.
printf 'background = #000000\0x\n' > "$tmp/nul.theme"
expect "a theme with a NUL byte" 1 "nul.theme: a NUL byte at offset 20" -- \
	--model "$fx" --theme "$tmp/nul.theme" -c "prompt hi"
out=$(env -u HOME -u XDG_CONFIG_HOME "$fl" --model "$fx" --theme nosuch -c "prompt hi" 2>&1 >/dev/null)
if [[ "$out" == *"no theme 'nosuch' (looked for nosuch.theme in "*"themes)"* ]] &&
    [[ "$out" != *"(null)"* ]]; then
	echo "ok - a missing theme without HOME says where it looked"
else
	echo "FAIL - a missing theme without HOME: $out"
	fail=1
fi
# A truncated task file says where the JSON stops; a misspelt field (which
# would be ignored and its default used) or an unknown pair field is refused.
task=${top_srcdir:-.}/tests/tasks/tiny.json
head -c 300 "$task" > "$tmp/trunc.json"
expect "a truncated task file" 1 "trunc.json: not valid JSON at line 6, column 16 (the file ends early)" -- \
	eval --model "$fx" --task "$tmp/trunc.json"
sed 's/"templates"/"templtes"/' "$task" > "$tmp/miss.json"
expect "a misspelt task field" 1 "miss.json: unknown field 'templtes'" -- \
	eval --model "$fx" --task "$tmp/miss.json"
sed '0,/"answer"/s//"anwser"/' "$task" > "$tmp/miss2.json"
expect "a misspelt pair field" 1 "miss2.json: pairs[0]: unknown field 'anwser'" -- \
	eval --model "$fx" --task "$tmp/miss2.json"
sed 's/"relation"/"_relation"/' "$task" > "$tmp/comment.json"
if "$fl" eval --model "$fx" --task "$tmp/comment.json" >/dev/null 2>&1; then
	echo "ok - a task field starting with '_' is a comment"
else
	echo "FAIL - a task field starting with '_' is refused"
	fail=1
fi
fresh; head -c 100 "$fx/config.json" > "$tmp/m/config.json"
expect "a truncated config.json says where" 1 "config.json: not valid JSON at line" -- \
	run --model "$tmp/m" --prompt hi
# Options that mean something only with another are refused without it.
expect "run --layer without --task" 2 "--layer L needs --task FILE" -- \
	run --model "$fx" --prompt hi --layer 1
expect "run --patterns without --json" 2 "--patterns needs --json" -- \
	run --model "$fx" --prompt hi --patterns
expect "run --answer ''" 2 "--answer is empty" -- run --model "$fx" --prompt hi --answer ""
# atp pairs positions: prompts of other token counts are refused, naming both.
expect "atp: prompts of different token counts" 2 "--prompt is 3 tokens and --corrupt 5" -- \
	atp --model "$fx" --prompt "abc" --corrupt "abcde" --answer x
expect "atp: --task with --prompt" 2 "--task takes its prompts, answers and corrupted twins from the task" -- \
	atp --model "$fx" --task "$task" --prompt "abc"
expect "atp: --shots without --task" 2 "--templates and --shots choose a task's prompts" -- \
	atp --model "$fx" --prompt "abc" --corrupt "abd" --answer x --shots 1
expect "atp: neither --task nor prompts" 2 "--prompt, --corrupt and --answer are required (or --task FILE)" -- \
	atp --model "$fx"
expect "atp: --neurons out of range" 2 "--neurons takes a layer from 0 to 1" -- \
	atp --model "$fx" --prompt "abc" --corrupt "abd" --answer x --neurons 2
# patch pairs positions too; its hook, metric and options are checked by name.
expect "patch: prompts of different token counts" 2 "--prompt is 3 tokens and --corrupt 5" -- \
	patch --model "$fx" --prompt "abc" --corrupt "abcde" --answer x
expect "patch: --clean is --prompt, and counts too" 2 "--prompt is 5 tokens and --corrupt 3" -- \
	patch --model "$fx" --clean "abcde" --corrupt "abc" --answer x
expect "patch: an unknown hook" 2 "--hook takes resid_pre, resid_mid, attn_out, mlp_out, z, q, k, v, pattern or every, not 'resid'" -- \
	patch --model "$fx" --prompt "abc" --corrupt "abd" --answer x --hook resid
expect "patch: an unknown metric" 2 "--metric takes logit-diff or prob, not 'kl'" -- \
	patch --model "$fx" --prompt "abc" --corrupt "abd" --answer x --metric kl
expect "patch: --by-pos without a head grid" 2 "--by-pos splits a head grid (--hook z, q, k, v, pattern or every) by position; the mlp_out grid" -- \
	patch --model "$fx" --prompt "abc" --corrupt "abd" --answer x --hook mlp_out --by-pos
expect "patch: --plot with --hook every" 2 "--plot draws one grid and --hook every has five" -- \
	patch --model "$fx" --prompt "abc" --corrupt "abd" --answer x --hook every --plot "$tmp/e.png"
expect "patch: --distractor with --metric prob" 2 "--metric prob reads P(answer) alone" -- \
	patch --model "$fx" --prompt "abc" --corrupt "abd" --answer x --distractor y --metric prob
expect "patch: the distractor is the answer" 2 "start with the same token" -- \
	patch --model "$fx" --prompt "abc" --corrupt "abd" --answer x --distractor x
expect "patch: no --corrupt" 2 "--prompt (or --clean), --corrupt and --answer are required" -- \
	patch --model "$fx" --prompt "abc" --answer x
expect "patch: the clean prompt twice" 2 "--prompt and --clean name the same clean prompt" -- \
	patch --model "$fx" --prompt "abc" --clean "abd" --corrupt "abe" --answer x
expect "patch: --plot with an unknown extension" 2 "a figure is .png, .svg or .pdf" -- \
	patch --model "$fx" --prompt "abc" --corrupt "abd" --answer x --plot "$tmp/fig.jpg"
expect "patch: --batch 0" 2 "--batch takes an integer from 1" -- \
	patch --model "$fx" --prompt "abc" --corrupt "abd" --answer x --batch 0
# run --lens-position: inside the prompt, from either end.
expect "run --lens-position past the end" 2 "--lens-position 3 is outside the prompt's 3 tokens: 0 to 2, or -3 to -1" -- \
	run --model "$fx" --prompt "abc" --lens-position 3
expect "run --lens-position before the start" 2 "--lens-position -4 is outside the prompt's 3 tokens" -- \
	run --model "$fx" --prompt "abc" --lens-position -4
expect "run --lens-position not a number" 2 "--lens-position takes an integer from" -- \
	run --model "$fx" --prompt "abc" --lens-position last
expect "atp: --compare-exact without --task" 2 "--compare-exact compares over a task" -- \
	atp --model "$fx" --prompt "abc" --corrupt "abd" --answer x --compare-exact
expect "atp: --out without --shard" 2 "--out FILE writes a partial: it needs --shard" -- \
	atp --model "$fx" --task "$task" --out /dev/null
exit $fail
