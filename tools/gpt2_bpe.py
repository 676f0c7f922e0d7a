"""GPT-2 byte-level BPE, written from the published algorithm.

Reads a GPT-2 tokenizer in the Hugging Face layout (vocab.json + merges.txt, or
the original release's encoder.json + vocab.bpe, which hold the same data).
Used by tools/prune-vocab (to tokenize the corpus with the full GPT-2 vocabulary)
and tools/train-demo (to tokenize with the pruned one).

Needs the `regex` module for \\p{L} / \\p{N} (Debian: python3-regex).
"""

import json

import regex

# GPT-2's pre-tokenization pattern (contractions, letters, digits, other, spaces).
PAT = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

EOT = "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
          + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}


def read_merges(path):
    """List of (a, b) pairs in rank order; skips the '#version' header line."""
    merges = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#version"):
                continue
            a, b = line.split(" ")
            merges.append((a, b))
    return merges


class Tokenizer:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.merges = read_merges(merges_path)
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.cache = {}
        self.eot_id = self.encoder[EOT]

    def bpe(self, word):
        """BPE of one pre-token (already mapped to byte characters) -> list of strings."""
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            best = None
            best_rank = None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = (parts[i], parts[i + 1]), r
            if best is None:
                break
            merged = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def pieces(self, text):
        """Token strings for text without special tokens."""
        out = []
        for m in PAT.findall(text):
            w = "".join(BYTE_ENCODER[b] for b in m.encode("utf-8"))
            out.extend(self.bpe(w))
        return out

    def encode(self, text, allow_eot=True):
        """Token ids; '<|endoftext|>' in text becomes the special token if allowed."""
        ids = []
        chunks = text.split(EOT) if allow_eot else [text]
        for i, chunk in enumerate(chunks):
            if i > 0:
                ids.append(self.eot_id)
            ids.extend(self.encoder[p] for p in self.pieces(chunk))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.decoder[i]
            if t == EOT:
                out += EOT.encode()
            else:
                out += bytes(BYTE_DECODER[c] for c in t)
        return out.decode("utf-8", errors="replace")
