#!/usr/bin/python3
"""Independent Python reference for engram-serve models (DESIGN.md §2, docs/model-format.md).

Why this exists: the golden fidelity test compares the C++ engram-model tool with this file.
It is written from the design documents and Llama conventions, not from the C++ code, and
computes in float64 by default so that its own rounding error (~1e-16 relative) is negligible
next to the float32 error of the C++ side: any difference is then the C++ error alone, which
the test bounds (tests/golden/fidelity_test.py explains the tolerance). `--compute float32`
runs the same math in float32, used to check that tolerance is not too tight.

Usage (the output formats match `engram-model`; floats with 9 significant digits):
  engram_ref.py hash     --model DIR --token-ids 1,2,3
      {"compressed_ids": [...], "layers": {"<l>": [[(N-1)*H head-local ids] per position]}}
  engram_ref.py forward  --model DIR --token-ids ... --dump engram:<l>
      {"input": [T][D], "output": [T][D]}   ([T][M][D] when hc_mult M > 1)
  engram_ref.py forward  --model DIR --token-ids ... --dump logits
      {"logits": [T][vocab]}
  engram_ref.py compress --model DIR          {"compressed_ids": [... every vocab id]}
  engram_ref.py check    --model DIR          primes/multipliers/shapes check, prints a summary

Needs only numpy (Debian's /usr/bin/python3 has it); torch is not used.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compress_ref import compressed_table  # noqa: E402
from safetensors_np import SafetensorsFile, TensorSource, E4M3_TABLE  # noqa: E402

MASK64 = (1 << 64) - 1
F32_EPS = float(np.finfo(np.float32).eps)  # 2^-23: torch RMSNorm(eps=None) on float32
CONV_NORM_EPS = 1e-5


# ----------------------------------------------------------------------------- hashing
def wrap_i64(x):
    """Python int -> value of its low 64 bits as a signed int64 (wrapping arithmetic)."""
    x &= MASK64
    return x - (1 << 64) if x >> 63 else x


def is_prime(n):
    """Deterministic Miller-Rabin (exact for n < 3.3e24)."""
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in small:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def compute_primes(layer_ids, max_ngram, n_head, engram_vocab_size):
    """DESIGN §2.1.4: {layer: [[H primes] for n = 2..N]}, distinct across everything."""
    seen = set()
    out = {}
    for layer in layer_ids:
        per_n = []
        for n in range(2, max_ngram + 1):
            start = int(engram_vocab_size[n - 2]) - 1
            heads = []
            for _ in range(n_head):
                c = start + 1
                while c in seen or not is_prime(c):
                    c += 1
                seen.add(c)
                heads.append(c)
                start = c
            per_n.append(heads)
        out[layer] = per_n
    return out


def ngram_hash(cids, multipliers, primes, pad_c):
    """Head-local hash ids of one layer.

    cids: compressed ids of the sequence (Python ints); multipliers: N signed ints;
    primes: [[H primes] for n = 2..N]. Returns T lists of (N-1)*H ints, order n = 2 heads
    0..H-1, then n = 3, ...
    """
    n_max = len(multipliers)
    out = []
    for t in range(len(cids)):
        x = [cids[t - k] if t - k >= 0 else pad_c for k in range(n_max)]
        prods = [wrap_i64(x[k] * int(multipliers[k])) for k in range(n_max)]
        row = []
        for n in range(2, n_max + 1):
            mix = prods[0]
            for k in range(1, n):
                mix ^= prods[k]  # both in int64 range -> result in int64 range
            for p in primes[n - 2]:
                row.append(mix % p)  # Python % on ints is the floored modulo: [0, p)
        out.append(row)
    return out


# ----------------------------------------------------------------------------- math
def rms_norm(x, w, eps):
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * w


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    return x * sigmoid(x)


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


# ----------------------------------------------------------------------------- model
class Model:
    def __init__(self, model_dir, compute="float64", strip_marks="M", use_compress_file=True):
        self.dir = model_dir
        self.dt = np.dtype(compute)
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        c = self.cfg
        if c.get("rope_scaling"):
            raise ValueError("config.json: rope_scaling is not supported by the reference")
        self.D = int(c["hidden_size"])
        self.I = int(c["intermediate_size"])
        self.L = int(c["num_hidden_layers"])
        self.nh = int(c["num_attention_heads"])
        self.nkv = int(c.get("num_key_value_heads") or self.nh)
        self.hd = int(c.get("head_dim") or self.D // self.nh)
        self.eps = float(c["rms_norm_eps"])
        self.theta = float(c.get("rope_theta", 10000.0))
        self.V = int(c["vocab_size"])
        self.tied = bool(c.get("tie_word_embeddings", False))
        e = c["engram"]
        self.layer_ids = [int(x) for x in e["layer_ids"]]
        self.N = int(e["max_ngram_size"])
        self.E = int(e["n_embed_per_ngram"])
        self.H = int(e["n_head_per_ngram"])
        self.d = self.E // self.H
        self.w = int(e["kernel_size"])
        self.M = int(e.get("hc_mult", 1))
        self.pad_id = int(e["pad_id"])
        self.table_dtype = e["table_dtype"]
        self.multipliers = {int(k): [int(v) for v in vs] for k, vs in e["multipliers"].items()}
        self.src = TensorSource(model_dir)
        self.compress, self.compress_source = compressed_table(
            model_dir, self.V, strip_marks, prefer_file=use_compress_file)
        self.pad_c = int(self.compress[self.pad_id])
        self.primes = compute_primes(self.layer_ids, self.N, self.H, e["engram_vocab_size"])
        self.tables = {}
        for l in self.layer_ids:
            fn = e.get("table_files", {}).get(str(l), f"engram-layer-{l}.safetensors")
            self.tables[l] = SafetensorsFile(os.path.join(model_dir, fn))
        self._w = {}
        self.check()

    # -- validation ---------------------------------------------------------------
    def check(self):
        e = self.cfg["engram"]
        errs = []
        if self.E % self.H:
            errs.append(f"n_embed_per_ngram {self.E} not a multiple of n_head_per_ngram {self.H}")
        if len(e["engram_vocab_size"]) != self.N - 1:
            errs.append(f"engram_vocab_size has {len(e['engram_vocab_size'])} entries, want N-1")
        if not 0 <= self.pad_id < self.V:
            errs.append(f"pad_id {self.pad_id} outside [0, {self.V})")
        for l in self.layer_ids:
            m = self.multipliers.get(l)
            if m is None or len(m) != self.N:
                errs.append(f"layer {l}: want {self.N} multipliers, got {m}")
                continue
            for i, v in enumerate(m):
                if v % 2 == 0:
                    errs.append(f"layer {l}: multiplier {i} = {v} is even")
                if not -(1 << 63) <= v < (1 << 63):
                    errs.append(f"layer {l}: multiplier {i} = {v} outside int64")
            got = [[int(p) for p in ps] for ps in e["head_vocab_sizes"][str(l)]]
            if got != self.primes[l]:
                errs.append(f"layer {l}: head_vocab_sizes {got} != recomputed primes "
                            f"{self.primes[l]}")
            rows = sum(sum(ps) for ps in self.primes[l])
            name = self.table_name(l)
            shape = self.tables[l].info(name)["shape"]
            if shape != [rows, self.d]:
                errs.append(f"layer {l}: table {name} shape {shape}, want [{rows}, {self.d}]")
        if errs:
            raise ValueError("model check failed:\n  " + "\n  ".join(errs))

    # -- weights ------------------------------------------------------------------
    def W(self, name):
        a = self._w.get(name)
        if a is None:
            a = np.asarray(self.src.get(name), dtype=self.dt)
            self._w[name] = a
        return a

    @staticmethod
    def table_name(l):
        return f"model.layers.{l}.engram.multi_head_embedding.embedding.weight"

    def table_rows(self, l, rows):
        """Dequantized table rows [len(rows), d] (only the rows asked for are read)."""
        f = self.tables[l]
        name = self.table_name(l)
        rows = np.asarray(rows, dtype=np.int64)
        st = f.dtype(name)
        raw = f.raw(name)[rows]
        if st == "F8_E4M3":
            scale = np.asarray(f.raw(name + "_scale")[rows], dtype=np.int64)  # [n, d/32] u8
            vals = E4M3_TABLE[raw]  # float64, exact
            mult = np.ldexp(1.0, scale - 127)  # exact powers of two
            vals = (vals.reshape(len(rows), -1, 32) * mult[:, :, None]).reshape(len(rows), -1)
        else:
            from safetensors_np import decode
            vals = decode(st, raw).astype(np.float64)
        return vals.astype(self.dt)

    # -- Engram -------------------------------------------------------------------
    def compress_ids(self, token_ids):
        for t in token_ids:
            if not 0 <= t < self.V:
                raise ValueError(f"token id {t} outside [0, {self.V})")
        return [int(self.compress[t]) for t in token_ids]

    def hash_ids(self, token_ids):
        cids = self.compress_ids(token_ids)
        return cids, {l: ngram_hash(cids, self.multipliers[l], self.primes[l], self.pad_c)
                      for l in self.layer_ids}

    def engram(self, l, hashes, hidden):
        """Y [T, M, D] of Engram layer l, for head-local hashes [T][(N-1)H] and hidden
        [T, M, D] (the residual streams entering the block)."""
        T = hidden.shape[0]
        D, M, N, w = self.D, self.M, self.N, self.w
        offsets = np.cumsum([0] + [p for ps in self.primes[l] for p in ps])[:-1]
        rows = (np.asarray(hashes, dtype=np.int64) + offsets[None, :]).reshape(-1)
        emb = self.table_rows(l, rows).reshape(T, -1)  # [T, (N-1)*E]
        pre = f"model.layers.{l}.engram."
        v = emb @ self.W(pre + "value_proj.weight").T + self.W(pre + "value_proj.bias")
        u = np.empty((T, M, D), dtype=self.dt)
        for m in range(M):
            k = emb @ self.W(pre + f"key_projs.{m}.weight").T + self.W(pre + f"key_projs.{m}.bias")
            nk = rms_norm(k, self.W(pre + f"norm1.{m}.weight"), F32_EPS)
            nq = rms_norm(hidden[:, m, :], self.W(pre + f"norm2.{m}.weight"), F32_EPS)
            s = np.sum(nk * nq, axis=-1) / math.sqrt(D)
            s2 = np.sign(s) * np.sqrt(np.maximum(np.abs(s), 1e-6))
            u[:, m, :] = sigmoid(s2)[:, None] * v
        z = np.empty_like(u)
        for m in range(M):
            z[:, m, :] = rms_norm(u[:, m, :], self.W(pre + f"short_conv.norms.{m}.weight"),
                                  CONV_NORM_EPS)
        cw = self.W(pre + "short_conv.conv.weight").reshape(M, D, w)  # channel c = m*D + j
        y = np.zeros_like(u)
        for i in range(w):
            lag = (w - 1 - i) * N
            if lag < T:
                y[lag:] += cw[None, :, :, i] * z[:T - lag]
        return u + silu(y)

    # -- backbone -----------------------------------------------------------------
    def attention(self, i, x):
        T = x.shape[0]
        p = f"model.layers.{i}.self_attn."
        q = (x @ self.W(p + "q_proj.weight").T).reshape(T, self.nh, self.hd)
        k = (x @ self.W(p + "k_proj.weight").T).reshape(T, self.nkv, self.hd)
        v = (x @ self.W(p + "v_proj.weight").T).reshape(T, self.nkv, self.hd)
        half = self.hd // 2
        inv = self.theta ** (-(2.0 * np.arange(half, dtype=np.float64)) / self.hd)
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        cos = np.concatenate([np.cos(ang)] * 2, axis=-1)[:, None, :].astype(self.dt)
        sin = np.concatenate([np.sin(ang)] * 2, axis=-1)[:, None, :].astype(self.dt)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.nh // self.nkv
        out = np.empty((T, self.nh, self.hd), dtype=self.dt)
        mask = np.triu(np.ones((T, T), dtype=bool), 1)
        for h in range(self.nh):
            kv = h // g
            sc = (q[:, h, :] @ k[:, kv, :].T) / math.sqrt(self.hd)
            sc = np.where(mask, -np.inf, sc)
            sc = sc - sc.max(axis=-1, keepdims=True)
            pr = np.exp(sc)
            pr = pr / pr.sum(axis=-1, keepdims=True)
            out[:, h, :] = pr @ v[:, kv, :]
        return out.reshape(T, -1) @ self.W(p + "o_proj.weight").T

    def mlp(self, i, x):
        p = f"model.layers.{i}.mlp."
        g = x @ self.W(p + "gate_proj.weight").T
        u = x @ self.W(p + "up_proj.weight").T
        return (silu(g) * u) @ self.W(p + "down_proj.weight").T

    def forward(self, token_ids, dumps=()):
        """Returns {"logits": [T, V], "engram:<l>": (input [T,M,D], output [T,M,D])}."""
        _, hashes = self.hash_ids(token_ids)
        emb = self.W("model.embed_tokens.weight")
        h = np.repeat(emb[np.asarray(token_ids)][:, None, :], self.M, axis=1)  # [T, M, D]
        out = {}
        for i in range(self.L):
            if i in self.layer_ids:
                y = self.engram(i, hashes[i], h)
                if f"engram:{i}" in dumps:
                    out[f"engram:{i}"] = (h.copy(), y)
                h = h + y
            x = h.mean(axis=1)
            a = self.attention(i, rms_norm(x, self.W(f"model.layers.{i}.input_layernorm.weight"),
                                           self.eps))
            h = h + a[:, None, :]
            x = h.mean(axis=1)
            f = self.mlp(i, rms_norm(x, self.W(
                f"model.layers.{i}.post_attention_layernorm.weight"), self.eps))
            h = h + f[:, None, :]
        x = rms_norm(h.mean(axis=1), self.W("model.norm.weight"), self.eps)
        if self.tied:
            head = emb
        elif "lm_head.weight" in self.src:
            head = self.W("lm_head.weight")
        else:
            raise ValueError("tie_word_embeddings is false but lm_head.weight is missing")
        out["logits"] = x @ head.T
        return out

    def forward_incremental(self, token_ids, dumps=()):
        """What incremental decoding must produce: row t computed from tokens[0..t] only."""
        res = {}
        for t in range(1, len(token_ids) + 1):
            o = self.forward(token_ids[:t], dumps)
            for k, v in o.items():
                last = (v[0][-1:], v[1][-1:]) if isinstance(v, tuple) else v[-1:]
                if k not in res:
                    res[k] = last
                elif isinstance(last, tuple):
                    res[k] = (np.concatenate([res[k][0], last[0]]),
                              np.concatenate([res[k][1], last[1]]))
                else:
                    res[k] = np.concatenate([res[k], last])
        return res


# ----------------------------------------------------------------------------- output
def fmt_float(x):
    if x != x:
        return "NaN"
    if x in (math.inf, -math.inf):
        return "Infinity" if x > 0 else "-Infinity"
    return format(float(x), ".9g")


def to_json(a):
    a = np.asarray(a)
    if a.ndim == 0:
        return fmt_float(a)
    if a.ndim == 1:
        return "[" + ",".join(fmt_float(v) for v in a.tolist()) + "]"
    return "[" + ",".join(to_json(r) for r in a) + "]"


def dump_json(model, result, dump):
    if dump == "logits":
        return '{"logits":' + to_json(result["logits"]) + "}"
    inp, outp = result[dump]
    if model.M == 1:
        inp, outp = inp[:, 0, :], outp[:, 0, :]
    return '{"input":' + to_json(inp) + ',"output":' + to_json(outp) + "}"


def parse_ids(s):
    return [int(x) for x in s.replace(" ", "").split(",") if x != ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True)
    common.add_argument("--strip-marks", choices=["M", "Mn"], default="M",
                        help="mark categories removed by the compression normalizer")
    common.add_argument("--ignore-compress-file", action="store_true",
                        help="build the compressed table from tokenizer.json even when "
                             "engram-compress.safetensors exists")
    common.add_argument("--compute", choices=["float64", "float32"], default="float64")
    p = sub.add_parser("hash", parents=[common])
    p.add_argument("--token-ids", required=True)
    p = sub.add_parser("forward", parents=[common])
    p.add_argument("--token-ids", required=True)
    p.add_argument("--dump", required=True, help="logits | engram:<layer>")
    p.add_argument("--incremental", action="store_true",
                   help="row t from the prefix tokens[0..t] alone (one forward per prefix)")
    sub.add_parser("compress", parents=[common])
    sub.add_parser("check", parents=[common])
    a = ap.parse_args(argv)

    try:
        if a.cmd == "compress":
            # Only the tokenizer/table is needed; no weights are touched.
            with open(os.path.join(a.model, "config.json")) as f:
                V = int(json.load(f)["vocab_size"])
            t, _ = compressed_table(a.model, V, a.strip_marks,
                                    prefer_file=not a.ignore_compress_file)
            print('{"compressed_ids":[' + ",".join(str(int(x)) for x in t) + "]}")
            return 0
        m = Model(a.model, a.compute, a.strip_marks, not a.ignore_compress_file)
        if a.cmd == "check":
            print(json.dumps({"ok": True, "primes": {str(k): v for k, v in m.primes.items()},
                              "compressed_vocab": int(m.compress.max()) + 1,
                              "compress_source": m.compress_source, "pad_c": m.pad_c}))
            return 0
        ids = parse_ids(a.token_ids)
        if not ids:
            raise ValueError("--token-ids is empty")
        if a.cmd == "hash":
            cids, hashes = m.hash_ids(ids)
            layers = ",".join(f'"{l}":' + json.dumps(hashes[l], separators=(",", ":"))
                              for l in m.layer_ids)
            print('{"compressed_ids":' + json.dumps(cids, separators=(",", ":"))
                  + ',"layers":{' + layers + "}}")
            return 0
        dump = a.dump
        if dump != "logits":
            if not dump.startswith("engram:") or int(dump.split(":")[1]) not in m.layer_ids:
                raise ValueError(f"--dump {dump}: want logits or engram:<l> with l in "
                                 f"{m.layer_ids}")
            dump = f"engram:{int(dump.split(':')[1])}"
        res = (m.forward_incremental if a.incremental else m.forward)(ids, {dump})
        print(dump_json(m, res, dump))
        return 0
    except (ValueError, KeyError, FileNotFoundError) as ex:
        print(f"engram_ref: error: {ex}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
