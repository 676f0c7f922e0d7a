"""Shared Python helpers for factlens' developer tools (make-fixtures,
make-bench-model, bench/torch-bench).

Runs under /usr/bin/python3 with python3-torch (1.13) and python3-numpy; it needs
neither `transformers` nor `safetensors`.

Contents:
  * safetensors writing (whole files, or streamed tensor by tensor) and reading
    (bounds-checked header parse, mmap-backed tensors, sharded directories);
  * a tiny GPT-2-format byte-level BPE: bytes_to_unicode, a pair-count trainer,
    the GPT-2 pre-tokenizer written out by hand, and the encoder;
  * reference forward passes with Hugging Face semantics, written directly in terms
    of HF parameter names: GPT2LMHeadModel and OPTForCausalLM (pre-LN or post-LN
    as opt-350m, with project_in / project_out when word_embed_proj_dim differs
    from hidden_size).  Activations are recorded under TransformerLens hook
    names, with factlens' convention for post-LN blocks (src/engine/forward.h).

Matmul orientation, written down once:
  GPT-2 Conv1D weights are stored [in, out] and applied as  y = x @ W + b.
  OPT nn.Linear weights are stored [out, in] and applied as y = x @ W.T + b.
"""

import json
import math
import mmap
import os
import sys
import unicodedata

import torch

if sys.byteorder != "little":
    raise SystemExit("fl_ref: this code writes raw tensors in host order and "
                     "assumes a little-endian host")

# --------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------

# safetensors dtype name -> (torch dtype, bytes per element)
ST_DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
TORCH_TO_ST = {v[0]: k for k, v in ST_DTYPES.items()}

# The safetensors library lays data out by dtype (widest first), then by name,
# which keeps every tensor aligned to its element size.  We do the same.
_ST_DATA_RANK = ["F64", "I64", "F32", "I32", "BF16", "F16", "I16", "I8", "U8",
                 "BOOL"]


def _numel(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def tensor_bytes(t):
    """Raw little-endian bytes of a CPU tensor, in safetensors layout."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
        return t.view(torch.int16).numpy().tobytes()
    if t.dtype == torch.bool:
        return t.to(torch.uint8).numpy().tobytes()
    return t.numpy().tobytes()


class StreamWriter:
    """Writes one safetensors file whose tensor list is known up front.

    specs: list of (name, st_dtype, shape).  The header is written at once; then
    call write(name, tensor) for each tensor, in self.order, possibly in several
    chunks (each a tensor of the right dtype, any shape, in row-major order).
    """

    def __init__(self, path, specs, metadata=None):
        names = [s[0] for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("duplicate tensor names")
        info = {}
        for name, dt, shape in specs:
            if dt not in ST_DTYPES:
                raise ValueError("unknown dtype %r" % dt)
            info[name] = (dt, [int(s) for s in shape])
        self.order = sorted(names, key=lambda n: (_ST_DATA_RANK.index(info[n][0]), n))
        header = {}
        if metadata is not None:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offsets = {}
        pos = 0
        for n in self.order:
            dt, shape = info[n]
            nbytes = _numel(shape) * ST_DTYPES[dt][1]
            offsets[n] = (pos, pos + nbytes)
            pos += nbytes
        for n in sorted(names):            # header keys sorted, like real files
            dt, shape = info[n]
            header[n] = {"dtype": dt, "shape": shape,
                         "data_offsets": list(offsets[n])}
        hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
        hjson += b" " * ((-len(hjson)) % 8)
        self.info = info
        self.offsets = offsets
        self.data_size = pos
        self.path = path
        self.f = open(path, "wb")
        self.f.write(len(hjson).to_bytes(8, "little"))
        self.f.write(hjson)
        self.data_start = 8 + len(hjson)
        self._next = 0          # index into self.order
        self._written = 0       # bytes written for the current tensor

    def write(self, name, t):
        if self._next >= len(self.order) or self.order[self._next] != name:
            raise ValueError("write %s out of order (expected %s)" % (
                name, self.order[self._next] if self._next < len(self.order) else None))
        dt, shape = self.info[name]
        if t.dtype != ST_DTYPES[dt][0]:
            raise ValueError("%s: dtype %s, header says %s" % (name, t.dtype, dt))
        b = tensor_bytes(t)
        lo, hi = self.offsets[name]
        if self._written + len(b) > hi - lo:
            raise ValueError("%s: more data than its shape" % name)
        self.f.write(b)
        self._written += len(b)
        if self._written == hi - lo:
            self._next += 1
            self._written = 0

    def close(self):
        if self._next != len(self.order):
            raise ValueError("%s: tensor %s not (fully) written" % (
                self.path, self.order[self._next]))
        self.f.close()


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> CPU tensor (dtype decides the stored dtype)."""
    specs = [(n, TORCH_TO_ST[t.dtype], list(t.shape)) for n, t in tensors.items()]
    w = StreamWriter(path, specs, metadata)
    for n in w.order:
        w.write(n, tensors[n])
    w.close()
    return w.data_size


class SafetensorsFile:
    """A mmapped safetensors file; tensor(name) returns a zero-copy tensor."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size < 8:
                raise ValueError("%s: shorter than 8 bytes" % path)
            n = int.from_bytes(f.read(8), "little")
            if n > size - 8:
                raise ValueError("%s: header length %d beyond file" % (path, n))
            header = json.loads(f.read(n).decode("utf-8"))
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self.data_start = 8 + n
        self.metadata = header.pop("__metadata__", None)
        data_len = size - self.data_start
        self.entries = {}
        for name, e in header.items():
            dt = e["dtype"]
            if dt not in ST_DTYPES:
                raise ValueError("%s: %s: unsupported dtype %s" % (path, name, dt))
            shape = [int(s) for s in e["shape"]]
            lo, hi = (int(x) for x in e["data_offsets"])
            if not (0 <= lo <= hi <= data_len):
                raise ValueError("%s: %s: offsets out of range" % (path, name))
            if hi - lo != _numel(shape) * ST_DTYPES[dt][1]:
                raise ValueError("%s: %s: size does not match shape" % (path, name))
            self.entries[name] = (dt, shape, lo, hi)

    def names(self):
        return list(self.entries)

    def tensor(self, name):
        dt, shape, lo, hi = self.entries[name]
        tdt, size = ST_DTYPES[dt]
        n = _numel(shape)
        if n == 0:
            return torch.zeros(shape, dtype=tdt)
        import warnings
        with warnings.catch_warnings():
            # frombuffer warns that the mmap is read-only; we never write to it
            warnings.simplefilter("ignore")
            if tdt == torch.bool:
                t = torch.frombuffer(self.mm, dtype=torch.uint8, count=n,
                                     offset=self.data_start + lo).to(torch.bool)
            else:
                t = torch.frombuffer(self.mm, dtype=tdt, count=n,
                                     offset=self.data_start + lo)
        return t.reshape(shape)


def checkpoint_files(model_dir):
    """The safetensors files of a HF model directory, single or sharded."""
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(single):
        return [single]
    if os.path.exists(index):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        files = []
        for fn in wm.values():
            if fn not in files:
                files.append(fn)
        return [os.path.join(model_dir, fn) for fn in sorted(files)]
    raise FileNotFoundError("%s: no model.safetensors or index" % model_dir)


def read_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


def load_model(model_dir, dtype=torch.float32):
    """Loads a HF GPT-2 or OPT directory into a Model (weights converted to dtype)."""
    cfg = read_config(model_dir)
    raw = {}
    for path in checkpoint_files(model_dir):
        st = SafetensorsFile(path)
        for n in st.names():
            raw[n] = st.tensor(n)
    return Model.from_hf(cfg, raw, dtype)


# --------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------

TORCH_NAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def gpt2_config(L, H, D, P, V, st_dtype, eot):
    """config.json of a HF GPT-2 checkpoint (keys as GPT2Config writes them)."""
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": eot,
        "embd_pdrop": 0.1,
        "eos_token_id": eot,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": P,
        "n_embd": D,
        "n_head": H,
        "n_inner": None,
        "n_layer": L,
        "n_positions": P,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": TORCH_NAME[st_dtype],
        "use_cache": True,
        "vocab_size": V,
    }


def opt_config(L, H, D, F, P, V, st_dtype, proj=None, ln_before=True):
    """config.json of a HF OPT checkpoint: pre-LN without projection by
    default; proj (word_embed_proj_dim) and ln_before=False give opt-350m's
    kind of model."""
    return {
        "_remove_final_layer_norm": False,
        "activation_dropout": 0.0,
        "activation_function": "relu",
        "architectures": ["OPTForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 2,
        "do_layer_norm_before": ln_before,
        "dropout": 0.1,
        "enable_bias": True,
        "eos_token_id": 2,
        "ffn_dim": F,
        "hidden_size": D,
        "init_std": 0.02,
        "layer_norm_elementwise_affine": True,
        "layerdrop": 0.0,
        "max_position_embeddings": P,
        "model_type": "opt",
        "num_attention_heads": H,
        "num_hidden_layers": L,
        "pad_token_id": 1,
        "prefix": "</s>",
        "torch_dtype": TORCH_NAME[st_dtype],
        "use_cache": True,
        "vocab_size": V,
        "word_embed_proj_dim": D if proj is None else proj,
    }


def llama_config(L, H, KV, D, F, P, V, st_dtype, theta=10000.0, tie=False):
    """config.json of a HF Llama checkpoint (keys as LlamaConfig writes them)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": D,
        "initializer_range": 0.02,
        "intermediate_size": F,
        "max_position_embeddings": P,
        "model_type": "llama",
        "num_attention_heads": H,
        "num_hidden_layers": L,
        "num_key_value_heads": KV,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": theta,
        "tie_word_embeddings": tie,
        "torch_dtype": TORCH_NAME[st_dtype],
        "use_cache": True,
        "vocab_size": V,
    }


# --------------------------------------------------------------------------
# Tokenizer: tiny GPT-2-format byte-level BPE
# --------------------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2's byte -> character table, as an ordered list of (byte, char).

    Printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to the same code point and
    come first, in byte order; the 68 other bytes follow, in byte order, mapped to
    chr(256), chr(257), ...  Token ids 0..255 of GPT-2 follow this order.
    """
    printable = (list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) +
                 list(range(0xAE, 0x100)))
    table = [(b, chr(b)) for b in printable]
    extra = 0
    for b in range(256):
        if b not in printable:
            table.append((b, chr(256 + extra)))
            extra += 1
    return table


BYTE_TO_CHAR = dict(bytes_to_unicode())


def _is_letter(c):
    return unicodedata.category(c)[0] == "L"


def _is_number(c):
    return unicodedata.category(c)[0] == "N"


def pretokenize(text):
    """GPT-2's pre-tokenizer, the regex
        's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    written out as a scanner (no `regex` module needed)."""
    out = []
    i, n = 0, len(text)

    def run(j, pred):
        while j < n and pred(text[j]):
            j += 1
        return j

    other = lambda c: not (c.isspace() or _is_letter(c) or _is_number(c))
    while i < n:
        if text[i] == "'":
            hit = None
            for s in ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d"):
                if text.startswith(s, i):
                    hit = s
                    break
            if hit:
                out.append(hit)
                i += len(hit)
                continue
        start = i + 1 if (text[i] == " " and i + 1 < n) else i
        matched = False
        for pred in (_is_letter, _is_number, other):
            if start < n and pred(text[start]):
                j = run(start, pred)
                out.append(text[i:j])
                i = j
                matched = True
                break
            if start != i and pred(text[i]):      # ' ?' matched empty: retry at i
                j = run(i, pred)
                out.append(text[i:j])
                i = j
                matched = True
                break
        if matched:
            continue
        # whitespace: \s+(?!\S) then \s+
        j = run(i, str.isspace)
        if j < n and j - 1 > i:
            j -= 1                          # leave one space to prefix the next word
        out.append(text[i:j])
        i = j
    return out


def to_byte_chars(s):
    return "".join(BYTE_TO_CHAR[b] for b in s.encode("utf-8"))


def train_bpe(text, n_merges):
    """Plain BPE by pair counts over GPT-2 pre-tokens.  Ties go to the pair that
    sorts first (by the two strings), so training is deterministic."""
    words = {}
    for p in pretokenize(text):
        w = tuple(to_byte_chars(p))
        words[w] = words.get(w, 0) + 1
    merges = []
    known = set(BYTE_TO_CHAR.values())
    while len(merges) < n_merges:
        counts = {}
        for w, f in words.items():
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + f
        cands = [(-c, pair) for pair, c in counts.items() if pair[0] + pair[1] not in known]
        if not cands:
            raise ValueError("training text too short for %d merges" % n_merges)
        _, best = min(cands)
        merges.append(best)
        known.add(best[0] + best[1])
        new = {}
        for w, f in words.items():
            out, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and (w[k], w[k + 1]) == best:
                    out.append(w[k] + w[k + 1])
                    k += 2
                else:
                    out.append(w[k])
                    k += 1
            new[tuple(out)] = new.get(tuple(out), 0) + f
        words = new
    return merges


class Tokenizer:
    def __init__(self, vocab, merges):
        self.vocab = vocab                          # token string -> id
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = None
            for k in range(len(parts) - 1):
                r = self.ranks.get((parts[k], parts[k + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, parts[k], parts[k + 1])
            if best is None:
                break
            _, a, b = best
            out, k = [], 0
            while k < len(parts):
                if k + 1 < len(parts) and parts[k] == a and parts[k + 1] == b:
                    out.append(a + b)
                    k += 2
                else:
                    out.append(parts[k])
                    k += 1
            parts = out
        return parts

    def encode(self, text):
        ids = []
        for p in pretokenize(text):
            ids.extend(self.vocab[t] for t in self._bpe(to_byte_chars(p)))
        return ids


TINY_TRAINING_TEXT = (
    "The capital of France is Paris. The capital of Germany is Berlin. "
    "The capital of Italy is Rome. The capital of Spain is Madrid. "
    "The capital of Japan is Tokyo. It's crucial to know that the capital "
    "of a country is the city where its government sits.")
TINY_N_MERGES = 43
EOT = "<|endoftext|>"


def tiny_tokenizer():
    """The fixture tokenizer: ids 0..255 byte characters in GPT-2 order, 256..298
    the 43 merges learned from TINY_TRAINING_TEXT, 299 <|endoftext|>.
    Returns (vocab dict, merges list of pairs)."""
    vocab = {}
    for _, c in bytes_to_unicode():
        vocab[c] = len(vocab)
    merges = train_bpe(TINY_TRAINING_TEXT, TINY_N_MERGES)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab[EOT] = len(vocab)
    assert len(vocab) == 300
    return vocab, merges


def write_tokenizer(model_dir, vocab, merges, ascii_json=True):
    """vocab.json ordered by id; merges.txt with the '#version: 0.2' line.
    ascii_json=True writes \\uXXXX escapes like OpenAI's encoder.json;
    False writes raw UTF-8 like a HF save_pretrained."""
    items = sorted(vocab.items(), key=lambda kv: kv[1])
    with open(os.path.join(model_dir, "vocab.json"), "w", encoding="utf-8") as f:
        if ascii_json:
            f.write(json.dumps(dict(items), ensure_ascii=True))
        else:
            f.write(json.dumps(dict(items), ensure_ascii=False, indent=2))
            f.write("\n")
    with open(os.path.join(model_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))


# --------------------------------------------------------------------------
# Reference forward passes
# --------------------------------------------------------------------------

def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) *
                                       (x + 0.044715 * x * x * x)))


def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def rms_norm(x, w, eps):
    """LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * w; also returns the scale."""
    scale = ((x * x).mean(-1, keepdim=True) + eps).sqrt()
    return x / scale * w, scale.squeeze(-1)


def rotate_half(x):
    """Hugging Face's rotate_half: (x1, x2) -> (-x2, x1) over the two halves
    of the last dimension."""
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(x, theta):
    """Rotary embedding of x [T, H, dh] at positions 0..T-1, as
    LlamaRotaryEmbedding + apply_rotary_pos_emb compute it (in float64)."""
    T, _, dh = x.shape
    inv_freq = 1.0 / (theta ** (torch.arange(0, dh, 2, dtype=torch.float64) / dh))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :].to(x.dtype), emb.sin()[:, None, :].to(x.dtype)
    return x * cos + rotate_half(x) * sin


def causal_attention(q, k, v, final_mask_query=None, block=None, edit_pattern=None):
    """q, k, v: [T, H, dh], q already scaled.  Returns (pattern [H, T, T], z [T, H, dh]).
    final_mask_query: index of a query row that may attend only to itself.
    block: bool [T, T], (query, key) entries blocked as well.
    edit_pattern: a function pattern -> pattern applied before the mix."""
    T = q.shape[0]
    scores = torch.einsum("qhd,khd->hqk", q, k)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    if final_mask_query is not None:
        mask[final_mask_query] = False
        mask[final_mask_query, final_mask_query] = True
    if block is not None:
        mask = mask & ~block
    scores = scores.masked_fill(~mask, float("-inf"))
    pattern = torch.softmax(scores, dim=-1)
    if edit_pattern is not None:
        pattern = edit_pattern(pattern.clone())
    z = torch.einsum("hqk,khd->qhd", pattern, v)
    return pattern, z


class Model:
    """Weights of a GPT-2 or OPT checkpoint under canonical HF names:
    GPT-2 names without the 'transformer.' prefix, OPT names without
    '(model.)decoder.', plus 'lm_head.weight' if the file has one."""

    def __init__(self, arch, cfg, w):
        self.arch, self.cfg, self.w = arch, cfg, w
        self.n_kv_head = None
        if arch == "llama":
            self.n_layer = cfg["num_hidden_layers"]
            self.n_head = cfg["num_attention_heads"]
            self.n_kv_head = cfg.get("num_key_value_heads") or self.n_head
            self.d_model = cfg["hidden_size"]
            self.eps = cfg.get("rms_norm_eps", 1e-6)
            self.theta = cfg.get("rope_theta", 10000.0)
            self.ln_before, self.has_final_ln = True, True
            if cfg.get("rope_scaling") is not None:
                raise ValueError("rope_scaling is not implemented")
        elif arch == "gpt2":
            self.n_layer, self.n_head = cfg["n_layer"], cfg["n_head"]
            self.d_model = cfg["n_embd"]
            self.eps = cfg.get("layer_norm_epsilon", 1e-5)
            self.ln_before, self.has_final_ln = True, True
        else:
            self.n_layer = cfg["num_hidden_layers"]
            self.n_head = cfg["num_attention_heads"]
            self.d_model = cfg["hidden_size"]
            self.eps = 1e-5
            self.ln_before = cfg.get("do_layer_norm_before", True)
            # OPTDecoder: a final LayerNorm only in pre-LN decoders, unless the
            # legacy _remove_final_layer_norm drops it
            self.has_final_ln = self.ln_before and not cfg.get(
                "_remove_final_layer_norm", False)
            if (cfg.get("word_embed_proj_dim", self.d_model) != self.d_model) != \
                    ("project_in.weight" in w):
                raise ValueError("project_in.weight present or absent against "
                                 "word_embed_proj_dim")
        self.d_head = self.d_model // self.n_head

    @staticmethod
    def from_hf(cfg, raw, dtype=torch.float64):
        arch = cfg.get("model_type")
        w = {}
        for name, t in raw.items():
            if arch == "gpt2":
                if name.startswith("transformer."):
                    name = name[len("transformer."):]
                if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
                    continue
            elif arch == "llama":
                pass                    # names kept whole: model.layers.N...
            elif arch == "opt":
                for p in ("model.decoder.", "decoder."):
                    if name.startswith(p):
                        name = name[len(p):]
                        break
            else:
                raise ValueError("unsupported model_type %r" % arch)
            w[name] = t.to(dtype)
        return Model(arch, cfg, w)

    # -- the forward pass ------------------------------------------------

    def forward(self, ids, final_mask=False, result_layers=None, cache=None,
                freeze=None, patch=None, edit=None, attn_block=None,
                freeze_below=None, patch_mlp=None, qkv_set=None):
        """Runs the model on one unpadded sequence of token ids.

        Returns a dict of activations under TransformerLens names:
          blocks.L.hook_resid_pre / hook_resid_mid / hook_resid_post   [T, D]
          blocks.L.hook_attn_out / hook_mlp_out                         [T, D]
          blocks.L.attn.hook_pattern [H, T, T]    blocks.L.attn.hook_z [T, H, dh]
          blocks.L.attn.hook_result  [T, H, D]  (layers in result_layers; no bias)
          ln_final.hook_normalized [T, D]         logits [T, V]
        final_mask: in the last layer the last query attends only to itself.
        cache: a dict to fill (default: a new one).
        freeze: a clean run's cache; q, k and v of every head of every layer
          are taken from it (its blocks.L.attn.hook_q/k/v) instead of computed.
        patch: (layer, head, value [D]): that head's result (no bias) at the
          last position replaced by value - with freeze, one path-patched run.
        edit: a function (hook name, tensor) -> tensor called at hook_embed
          (the token embedding, before the positions; GPT-2 only),
          blocks.L.hook_resid_pre, attn.hook_q, attn.hook_k, attn.hook_v
          [T, H, dh] (before the rotation in Llama; its k and v before
          repeat_kv, [T, KV, dh], under attn.hook_k_kv and attn.hook_v_kv,
          recorded by those names), attn.hook_pattern [H, T, T] (before the
          mix), attn.hook_z, hook_attn_out, hook_resid_mid and hook_mlp_out;
          the pass continues from what it returns (causal tracing,
          activation patching).
        attn_block: (GPT-2 only) {layer: bool [T, T]}: (query, key) entries
          whose scores are -inf before the softmax (attention knockout).
        freeze_below: with freeze, freeze only the layers below this one (a
          q, k or v receiver's layer computes them from the patched stream).
        patch_mlp: (layer, value [D]): that MLP's output at the last position
          replaced by value (an MLP sender).
        qkv_set: (layer, head, "q"|"k"|"v", value [T, dh]): that head's q, k
          or v (before the rotation in Llama) replaced by value - a receiver's
          input put into a clean run."""
        if cache is None:
            cache = {}
        if result_layers is None:
            result_layers = range(self.n_layer)
        ids = torch.as_tensor(ids, dtype=torch.long)
        T = ids.shape[0]
        self._freeze, self._patch = freeze, patch
        self._freeze_below, self._patch_mlp, self._qkv_set = (
            freeze_below, patch_mlp, qkv_set)
        self._edit = edit if edit is not None else (lambda name, x: x)
        self._block = attn_block or {}
        if attn_block and self.arch != "gpt2":
            raise NotImplementedError("attn_block is GPT-2 only")
        if self.arch == "gpt2":
            self._gpt2(ids, T, final_mask, set(result_layers), cache)
        elif self.arch == "llama":
            self._llama(ids, T, final_mask, set(result_layers), cache)
        else:
            self._opt(ids, T, final_mask, set(result_layers), cache)
        return cache

    def _qkv(self, c, l, q, k, v):
        """Records q, k, v (as computed, per head) and returns the frozen ones
        when the pass freezes them."""
        c["blocks.%d.attn.hook_q" % l] = q
        c["blocks.%d.attn.hook_k" % l] = k
        c["blocks.%d.attn.hook_v" % l] = v
        f = self._freeze
        if f is not None and (self._freeze_below is None or l < self._freeze_below):
            q, k, v = (f["blocks.%d.attn.hook_%s" % (l, n)] for n in "qkv")
        s = self._qkv_set
        if s is not None and s[0] == l:
            out = {"q": q, "k": k, "v": v}
            t = out[s[2]].clone()
            t[:, s[1]] = s[3]
            out[s[2]] = t
            q, k, v = out["q"], out["k"], out["v"]
        return q, k, v

    def _edit_qkv(self, l, q, k, v):
        """q, k, v [T, H, dh] through the edit function."""
        ed = self._edit
        return tuple(ed("blocks.%d.attn.hook_%s" % (l, n), t.clone())
                     for n, t in zip("qkv", (q, k, v)))

    def _edit_pattern(self, l):
        """The pattern's edit function of layer l for causal_attention."""
        return lambda p: self._edit("blocks.%d.attn.hook_pattern" % l, p)

    def _patched_mlp_out(self, l, mlp_out):
        """mlp_out, with its last row replaced when this layer's MLP is the
        patched sender."""
        if self._patch_mlp is None or self._patch_mlp[0] != l:
            return mlp_out
        mlp_out = mlp_out.clone()
        mlp_out[-1] = self._patch_mlp[1]
        return mlp_out

    def _patched_attn_out(self, l, z, W_O_heads, bias, attn_out):
        """attn_out, or, when this layer holds the patched head, the sum of
        the per-head results with that head's last row replaced, plus bias."""
        if self._patch is None or self._patch[0] != l:
            return attn_out
        _, h, value = self._patch
        result = torch.einsum("thd,hde->the", z, W_O_heads).clone()
        result[-1, h] = value
        return result.sum(dim=1) + bias

    def _heads(self, x):
        return x.reshape(x.shape[0], self.n_head, self.d_head)

    def _gpt2(self, ids, T, final_mask, result_layers, c):
        w, D, dh, eps = self.w, self.d_model, self.d_head, self.eps
        ed = self._edit
        c["hook_embed"] = ed("hook_embed", w["wte.weight"][ids].clone())
        c["hook_pos_embed"] = w["wpe.weight"][:T]
        x = c["hook_embed"] + c["hook_pos_embed"]
        for l in range(self.n_layer):
            p = "h.%d." % l
            x = ed("blocks.%d.hook_resid_pre" % l, x.clone())
            c["blocks.%d.hook_resid_pre" % l] = x
            h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
            c["blocks.%d.ln1.hook_normalized" % l] = h
            qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
            q, k, v = (self._heads(t) for t in qkv.split(D, dim=-1))
            q, k, v = self._edit_qkv(l, q, k, v)
            q, k, v = self._qkv(c, l, q, k, v)
            fm = T - 1 if (final_mask and l == self.n_layer - 1) else None
            pattern, z = causal_attention(q / math.sqrt(dh), k, v, fm,
                                          self._block.get(l), self._edit_pattern(l))
            z = ed("blocks.%d.attn.hook_z" % l, z.clone())
            W_O = w[p + "attn.c_proj.weight"]                    # [H*dh, D]
            attn_out = z.reshape(T, D) @ W_O + w[p + "attn.c_proj.bias"]
            attn_out = self._patched_attn_out(
                l, z, W_O.reshape(self.n_head, dh, D), w[p + "attn.c_proj.bias"],
                attn_out)
            attn_out = ed("blocks.%d.hook_attn_out" % l, attn_out.clone())
            c["blocks.%d.attn.hook_pattern" % l] = pattern
            c["blocks.%d.attn.hook_z" % l] = z
            if l in result_layers:
                c["blocks.%d.attn.hook_result" % l] = torch.einsum(
                    "thd,hde->the", z, W_O.reshape(self.n_head, dh, D))
            c["blocks.%d.hook_attn_out" % l] = attn_out
            x = ed("blocks.%d.hook_resid_mid" % l, (x + attn_out).clone())
            c["blocks.%d.hook_resid_mid" % l] = x
            h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
            c["blocks.%d.ln2.hook_normalized" % l] = h
            pre = h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]
            h = gelu_new(pre)
            c["blocks.%d.mlp.hook_pre" % l], c["blocks.%d.mlp.hook_post" % l] = pre, h
            mlp_out = h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
            mlp_out = ed("blocks.%d.hook_mlp_out" % l, mlp_out.clone())
            mlp_out = self._patched_mlp_out(l, mlp_out)
            c["blocks.%d.hook_mlp_out" % l] = mlp_out
            x = x + mlp_out
            c["blocks.%d.hook_resid_post" % l] = x
        c["ln_final.hook_normalized"] = self.final_ln(x)
        c["logits"] = self.readout(x)
        return c

    def _opt(self, ids, T, final_mask, result_layers, c):
        """OPTDecoder.forward: pre-LN blocks (most sizes) or post-LN ones
        (opt-350m), embeddings through project_in when the model has it."""
        w, D, dh, eps, pre = self.w, self.d_model, self.d_head, self.eps, self.ln_before
        lin = torch.nn.functional.linear

        def ln(name, x, hook=None):
            y = layer_norm(x, w[name + ".weight"], w[name + ".bias"], eps)
            if hook is not None:
                var = ((x - x.mean(-1, keepdim=True)) ** 2).mean(-1)
                c[hook + ".hook_scale"] = (var + eps).sqrt()
                c[hook + ".hook_normalized"] = y
            return y

        emb = w["embed_tokens.weight"][ids]
        if "project_in.weight" in w:
            emb = lin(emb, w["project_in.weight"])
        c["hook_embed"] = emb
        # OPTLearnedPositionalEmbedding: positions = cumsum(mask) - 1 + offset 2
        x = emb + w["embed_positions.weight"][2:2 + T]
        ed = self._edit
        for l in range(self.n_layer):
            p = "layers.%d." % l
            b = "blocks.%d." % l
            x = ed(b + "hook_resid_pre", x.clone())
            c[b + "hook_resid_pre"] = x
            h = ln(p + "self_attn_layer_norm", x, b + "ln1") if pre else x
            a = p + "self_attn."
            q = lin(h, w[a + "q_proj.weight"], w[a + "q_proj.bias"]) * dh ** -0.5
            k = lin(h, w[a + "k_proj.weight"], w[a + "k_proj.bias"])
            v = lin(h, w[a + "v_proj.weight"], w[a + "v_proj.bias"])
            fm = T - 1 if (final_mask and l == self.n_layer - 1) else None
            qh, kh, vh = self._edit_qkv(l, self._heads(q), self._heads(k), self._heads(v))
            qh, kh, vh = self._qkv(c, l, qh, kh, vh)
            pattern, z = causal_attention(qh, kh, vh, fm, None, self._edit_pattern(l))
            z = ed(b + "attn.hook_z", z.clone())
            W_out = w[a + "out_proj.weight"]                     # [D, H*dh]
            attn_out = lin(z.reshape(T, D), W_out, w[a + "out_proj.bias"])
            attn_out = self._patched_attn_out(
                l, z, W_out.t().reshape(self.n_head, dh, D), w[a + "out_proj.bias"],
                attn_out)
            attn_out = ed(b + "hook_attn_out", attn_out.clone())
            c[b + "attn.hook_pattern"] = pattern
            c[b + "attn.hook_z"] = z
            if l in result_layers:
                c[b + "attn.hook_result"] = torch.einsum(
                    "thd,ehd->the", z, W_out.reshape(D, self.n_head, dh))
            c[b + "hook_attn_out"] = attn_out
            x = x + attn_out
            if not pre:     # post-LN: the LN's output is the stream
                x = ln(p + "self_attn_layer_norm", x, b + "ln1")
            x = ed(b + "hook_resid_mid", x.clone())
            c[b + "hook_resid_mid"] = x
            h = ln(p + "final_layer_norm", x, b + "ln2") if pre else x
            c[b + "mlp.hook_pre"] = lin(h, w[p + "fc1.weight"], w[p + "fc1.bias"])
            h = c[b + "mlp.hook_post"] = torch.relu(c[b + "mlp.hook_pre"])
            mlp_out = lin(h, w[p + "fc2.weight"], w[p + "fc2.bias"])
            mlp_out = ed(b + "hook_mlp_out", mlp_out.clone())
            mlp_out = self._patched_mlp_out(l, mlp_out)
            c[b + "hook_mlp_out"] = mlp_out
            x = x + mlp_out
            if not pre:
                x = ln(p + "final_layer_norm", x, b + "ln2")
            c[b + "hook_resid_post"] = x
        if self.has_final_ln:
            c["ln_final.hook_normalized"] = self.final_ln(x)
        c["logits"] = self.readout(x)
        return c

    def _llama(self, ids, T, final_mask, result_layers, c):
        """LlamaForCausalLM.forward: RMSNorm, rotary q and k (rotate_half),
        grouped-query attention (k, v heads repeated for their group of q
        heads, recorded repeated as factlens' hooks show them), SwiGLU MLP,
        no biases.  Hook names: src/engine/forward.h."""
        w, D, dh, eps = self.w, self.d_model, self.d_head, self.eps
        H, KV = self.n_head, self.n_kv_head
        lin = torch.nn.functional.linear
        x = w["model.embed_tokens.weight"][ids]
        c["hook_embed"] = x
        ed = self._edit
        for l in range(self.n_layer):
            p = "model.layers.%d." % l
            b = "blocks.%d." % l
            x = ed(b + "hook_resid_pre", x.clone())
            c[b + "hook_resid_pre"] = x
            h, c[b + "ln1.hook_scale"] = rms_norm(x, w[p + "input_layernorm.weight"], eps)
            c[b + "ln1.hook_normalized"] = h
            a = p + "self_attn."
            q = lin(h, w[a + "q_proj.weight"]).reshape(T, H, dh)
            k = lin(h, w[a + "k_proj.weight"]).reshape(T, KV, dh)
            v = lin(h, w[a + "v_proj.weight"]).reshape(T, KV, dh)
            q = ed(b + "attn.hook_q", q.clone())
            k = c[b + "attn.hook_k_kv"] = ed(b + "attn.hook_k_kv", k.clone())
            v = c[b + "attn.hook_v_kv"] = ed(b + "attn.hook_v_kv", v.clone())
            # repeat_kv: kv head g serves q heads g*H/KV .. (g+1)*H/KV - 1
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            q, k, v = self._qkv(c, l, q, k, v)
            q, k = rope(q, self.theta), rope(k, self.theta)
            c[b + "attn.hook_rot_q"] = q
            c[b + "attn.hook_rot_k"] = k
            fm = T - 1 if (final_mask and l == self.n_layer - 1) else None
            pattern, z = causal_attention(q / math.sqrt(dh), k, v, fm, None,
                                          self._edit_pattern(l))
            z = ed(b + "attn.hook_z", z.clone())
            W_O = w[a + "o_proj.weight"]                         # [D, H*dh]
            attn_out = lin(z.reshape(T, D), W_O)
            attn_out = self._patched_attn_out(
                l, z, W_O.t().reshape(H, dh, D), torch.zeros(D, dtype=x.dtype),
                attn_out)
            attn_out = ed(b + "hook_attn_out", attn_out.clone())
            c[b + "attn.hook_pattern"] = pattern
            c[b + "attn.hook_z"] = z
            if l in result_layers:
                c[b + "attn.hook_result"] = torch.einsum(
                    "thd,ehd->the", z, W_O.reshape(D, H, dh))
            c[b + "hook_attn_out"] = attn_out
            x = ed(b + "hook_resid_mid", (x + attn_out).clone())
            c[b + "hook_resid_mid"] = x
            h, c[b + "ln2.hook_scale"] = rms_norm(
                x, w[p + "post_attention_layernorm.weight"], eps)
            c[b + "ln2.hook_normalized"] = h
            gate = lin(h, w[p + "mlp.gate_proj.weight"])
            up = lin(h, w[p + "mlp.up_proj.weight"])
            post = torch.nn.functional.silu(gate) * up
            c[b + "mlp.hook_pre"], c[b + "mlp.hook_pre_linear"] = gate, up
            c[b + "mlp.hook_post"] = post
            mlp_out = lin(post, w[p + "mlp.down_proj.weight"])
            mlp_out = ed(b + "hook_mlp_out", mlp_out.clone())
            mlp_out = self._patched_mlp_out(l, mlp_out)
            c[b + "hook_mlp_out"] = mlp_out
            x = x + mlp_out
            c[b + "hook_resid_post"] = x
        c["ln_final.hook_normalized"], c["ln_final.hook_scale"] = rms_norm(
            x, w["model.norm.weight"], eps)
        c["logits"] = self.readout(x)
        return c

    def final_ln(self, x):
        """The decoder's final LayerNorm; the identity when it has none."""
        w = self.w
        if self.arch == "llama":
            return rms_norm(x, w["model.norm.weight"], self.eps)[0]
        if self.arch == "gpt2":
            return layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], self.eps)
        if not self.has_final_ln:
            return x
        return layer_norm(x, w["final_layer_norm.weight"], w["final_layer_norm.bias"],
                          self.eps)

    def unembed(self, h):
        """project_out (when the model has it), then the tied unembedding
        (lm_head, when present, equals the embedding)."""
        if "project_out.weight" in self.w:
            h = h @ self.w["project_out.weight"].T
        W = self.w.get("lm_head.weight")
        if W is None:
            W = self.w[{"gpt2": "wte.weight", "llama": "model.embed_tokens.weight"}.get(
                self.arch, "embed_tokens.weight")]
        return h @ W.T

    def readout(self, x):
        """The final readout of residual vectors: final LN if any, project_out
        if any, unembedding."""
        return self.unembed(self.final_ln(x))

    def logit_lens(self, cache, pos=-1):
        """[n_layer+1, V]: the final readout (final LN, project_out, unembedding,
        each when the model has it) of every residual stream (resid_pre of each
        block, then the last resid_post) at one position."""
        streams = [cache["blocks.%d.hook_resid_pre" % l][pos] for l in range(self.n_layer)]
        streams.append(cache["blocks.%d.hook_resid_post" % (self.n_layer - 1)][pos])
        return self.readout(torch.stack(streams))
