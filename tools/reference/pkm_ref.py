#!/usr/bin/python3
"""Independent Python reference for product-key memory (PKM, "Memory Layers at Scale",
facebookresearch/memory `lingua/product_key/memory.py` HashingMemory) in engram-serve models
(DESIGN.md §2.3, §2.4).

Why this exists: the golden test tests/golden/pkm_fidelity_test.py compares the C++
`engram-model` tool with this file. Like engram_ref.py (which it extends: the backbone,
attention, MLP and Engram module are engram_ref.Model's, unchanged) it is written from the
design document and the published module's semantics, not from the C++ code, and computes in
float64 so that its own rounding error is negligible next to the C++ float32 error.
tests/golden/pkm_fidelity_test.py --reference-selftest checks it against a PyTorch re-statement
of HashingMemory.forward / get_indices.

Memory layer of block l (it replaces the block's MLP; h = the residual after attention):
  x = RMSNorm_post_attention(h); q = W_q x (+ b_q) viewed [heads][k_dim], halves q1 | q2;
  keys [2*heads*n, k_dim/2] viewed [heads][2][n][k_dim/2]; s1 = K[t][0] q1, s2 = K[t][1] q2;
  (sigma1, I) = top-k(s1), (sigma2, J) = top-k(s2); candidates a-major: c = a*k + b with score
  sigma1[a] + sigma2[b] and value row I[a]*n + J[b]; (sigma, iota) = top-k of the k*k candidates;
  w = softmax(sigma); y = sum over heads and picks of w * V[iota];
  o = W2 (y * silu(W1 x + b1)) + b2 (swilu) | W2 y + b2 (value_proj present) | y;
  gated: o *= sigmoid(w_g x + b_g); h += o.
Top-k order: descending score, ties to the lower index (numpy stable sort); DESIGN does not
fix tie order, and the golden test avoids inputs with near ties (see its docstring).
The published softmax runs in float32 (`scores.float()`); here it runs in the compute dtype
(float64): the C++ float32 softmax is then one more float32 error the test bounds.

Usage (output formats match `engram-model`; floats with 9 significant digits):
  pkm_ref.py forward --model DIR --token-ids 1,2,3 --dump memory:<l> [--incremental]
      {"input": [T][D] (h entering the memory step, before the post-attention norm),
       "output": [T][D] (o, what is added to h), "indices": [T][heads][knn] (best first)}
  pkm_ref.py forward --model DIR --token-ids ... --dump logits | engram:<l> [--incremental]
      as engram_ref.py
  pkm_ref.py hash    --model DIR --token-ids ...   (Engram layers only; as engram_ref.py)
  pkm_ref.py check   --model DIR                   config/shape check, prints a summary
`--incremental` computes row t from the prefix tokens[0..t] alone (what a KV-cache decode must
produce), as engram_ref.py does. `--compute float32` runs the same math in float32.

Needs only numpy; torch is not used.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import engram_ref  # noqa: E402
from engram_ref import rms_norm, sigmoid, silu, to_json, parse_ids  # noqa: E402
from safetensors_np import SafetensorsFile, TensorSource  # noqa: E402

TABLE_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16",
                "float8_e4m3": "F8_E4M3"}
# HashingMemory's constructor defaults, used when config.json leaves a flag out.
PKM_DEFAULTS = {"share_values": True, "swilu_projection": True, "query_bias": True,
                "gated": False}
SHARED_KEY = "shared"


def topk_desc(s, k):
    """Indices of the k largest entries along the last axis, best first; ties to the lower
    index (stable sort of -s). Returns (values, indices)."""
    idx = np.argsort(-s, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(s, idx, axis=-1), idx


def softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class _Rows:
    """Adapts one values tensor to engram_ref.Model.table_rows (the same dequantization:
    F32/BF16/F16 exact upcast, F8_E4M3 rows times 2^(scale-127) per 32 values)."""

    def __init__(self, f, name, dt):
        self.tables = {0: f}
        self._name = name
        self.dt = dt

    def table_name(self, _):
        return self._name

    def rows(self, rows):
        return engram_ref.Model.table_rows(self, 0, rows)


class MemoryResult:
    """One memory layer on T positions: out [T, D], indices [T, H, k], plus the score data
    the golden test needs to judge near ties."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class Model(engram_ref.Model):
    """engram_ref.Model plus product-key memory layers; a model may combine Engram layers
    (before attention) and PKM layers (instead of the MLP) on different blocks."""

    def __init__(self, model_dir, compute="float64", strip_marks="M", use_compress_file=True):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        if isinstance(cfg.get("engram"), dict):
            super().__init__(model_dir, compute, strip_marks, use_compress_file)
        else:
            self._init_backbone_only(model_dir, cfg, compute)
        top_hc = cfg.get("hc_mult")
        if top_hc is not None and int(top_hc) != self.M:
            if isinstance(cfg.get("engram"), dict) and "hc_mult" in cfg["engram"]:
                raise ValueError(f"config.json: top-level hc_mult {top_hc} != engram.hc_mult "
                                 f"{self.M}")
            self.M = int(top_hc)
        p = self.cfg.get("product_key_memory")
        self.pkm = None
        self.pkm_layers = []
        if p is not None:
            self._init_pkm(p)

    def _init_backbone_only(self, model_dir, cfg, compute):
        """The backbone fields engram_ref.Model.__init__ sets, for a config without an "engram"
        object (the C++ tool writes none when a model has no Engram layer)."""
        self.dir = model_dir
        self.dt = np.dtype(compute)
        self.cfg = c = cfg
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
        self.layer_ids = []
        self.M = 1
        self.N = self.E = self.H = self.d = self.w = 0
        self.multipliers, self.primes, self.tables = {}, {}, {}
        self.compress = None
        self.src = TensorSource(model_dir)
        self._w = {}

    def hash_ids(self, token_ids):
        if not self.layer_ids:  # no Engram layer: no compressed ids are needed
            for t in token_ids:
                if not 0 <= t < self.V:
                    raise ValueError(f"token id {t} outside [0, {self.V})")
            return list(token_ids), {}
        return super().hash_ids(token_ids)

    # -- config -------------------------------------------------------------------
    def _init_pkm(self, p):
        errs = []
        q = dict(PKM_DEFAULTS)
        q.update(p)
        self.pkm = q
        try:
            self.pkm_layers = [int(x) for x in q["layer_ids"]]
            self.n = int(q["n_keys"])
            self.ph = int(q["heads"])
            self.k = int(q["knn"])
            self.kd = int(q["k_dim"])
            self.vd = int(q["v_dim"])
            self.table_dtype_pkm = q["table_dtype"]
            files = q["table_files"]
        except KeyError as ex:
            raise ValueError(f"config.json: product_key_memory lacks {ex}") from ex
        for key in ("share_values", "swilu_projection", "query_bias", "gated"):
            if not isinstance(q[key], bool):
                errs.append(f"product_key_memory.{key} must be true or false")
        self.share, self.swilu = bool(q["share_values"]), bool(q["swilu_projection"])
        self.qbias, self.gated = bool(q["query_bias"]), bool(q["gated"])
        ids = self.pkm_layers
        if not ids:
            errs.append("product_key_memory.layer_ids is empty")
        if ids != sorted(set(ids)) or any(not 0 <= l < self.L for l in ids):
            errs.append(f"product_key_memory.layer_ids {ids}: want strictly ascending in "
                        f"[0, {self.L})")
        both = sorted(set(ids) & set(self.layer_ids))
        if both:
            errs.append(f"blocks {both} have both an Engram and a product-key memory layer")
        if self.M != 1:
            errs.append(f"product-key memory needs hc_mult 1 (a plain residual stream), "
                        f"hc_mult is {self.M}")
        if self.n < 1 or self.ph < 2 or not 1 <= self.k <= self.n:
            errs.append(f"want n_keys >= 1, heads >= 2, 1 <= knn <= n_keys; got n_keys "
                        f"{self.n} heads {self.ph} knn {self.k}")
        if self.kd < 2 or self.kd % 2:
            errs.append(f"k_dim {self.kd} must be even and >= 2")
        if self.vd < 1:
            errs.append(f"v_dim {self.vd} must be >= 1")
        if self.table_dtype_pkm not in TABLE_DTYPES:
            errs.append(f"table_dtype {self.table_dtype_pkm!r} not one of {list(TABLE_DTYPES)}")
        elif self.table_dtype_pkm == "float8_e4m3" and self.vd % 32:
            errs.append(f"float8_e4m3 values need v_dim % 32 == 0, v_dim is {self.vd}")
        want_keys = [SHARED_KEY] if self.share else [str(l) for l in ids]
        if not isinstance(files, dict) or sorted(files) != sorted(want_keys):
            errs.append(f"product_key_memory.table_files keys {sorted(files)}, want "
                        f"{sorted(want_keys)}")
        if errs:
            raise ValueError("model check failed:\n  " + "\n  ".join(errs))
        self.values = {}  # table key -> _Rows
        for key in want_keys:
            f = SafetensorsFile(os.path.join(self.dir, files[key]))
            name = self.values_name(key)
            self.values[key] = _Rows(f, name, self.dt)
        self.has_value_proj = {}
        self.check_pkm()

    @staticmethod
    def values_name(key):
        return ("model.memory.values.weight" if key == SHARED_KEY
                else f"model.layers.{key}.memory.values.weight")

    def table_key(self, l):
        return SHARED_KEY if self.share else str(l)

    def check_pkm(self):
        errs = []
        D, H, n, kd, vd = self.D, self.ph, self.n, self.kd, self.vd

        def shape(name):
            return list(self.src.file_of(name).info(name)["shape"]) if name in self.src else None

        for l in self.pkm_layers:
            p = f"model.layers.{l}.memory."
            want = {p + "keys": [2 * H * n, kd // 2], p + "query_proj.weight": [H * kd, D]}
            if self.qbias:
                want[p + "query_proj.bias"] = [H * kd]
            if self.swilu:
                want[p + "swilu_projection.weight"] = [vd, D]
                want[p + "swilu_projection.bias"] = [vd]
            if self.gated:
                want[p + "gating.weight"] = [1, D]
                want[p + "gating.bias"] = [1]
            vw, vb = p + "value_proj.weight", p + "value_proj.bias"
            has = (vw in self.src, vb in self.src)
            if has[0] != has[1]:
                errs.append(f"layer {l}: value_proj weight and bias must both be present or "
                            f"both absent")
            need = self.swilu or vd != D
            if need and not all(has):
                errs.append(f"layer {l}: value_proj is required (swilu_projection or v_dim "
                            f"{vd} != hidden {D})")
            self.has_value_proj[l] = all(has)
            if all(has):
                want[vw] = [D, vd]
                want[vb] = [D]
            for name, s in want.items():
                got = shape(name)
                if got is None:
                    errs.append(f"missing tensor {name}")
                elif got != s:
                    errs.append(f"tensor {name} shape {got}, want {s}")
            for m in ("gate_proj", "up_proj", "down_proj"):
                if f"model.layers.{l}.mlp.{m}.weight" in self.src:
                    errs.append(f"layer {l}: has mlp.{m}.weight, but its MLP is replaced by "
                                f"product-key memory")
        for key, r in self.values.items():
            f, name = r.tables[0], r.table_name(0)
            if name not in f.header:
                errs.append(f"{f.path}: missing tensor {name}")
                continue
            if f.info(name)["shape"] != [n * n, vd]:
                errs.append(f"{name} shape {f.info(name)['shape']}, want [{n * n}, {vd}]")
            if f.dtype(name) != TABLE_DTYPES.get(self.table_dtype_pkm):
                errs.append(f"{name} dtype {f.dtype(name)}, config table_dtype "
                            f"{self.table_dtype_pkm}")
            if self.table_dtype_pkm == "float8_e4m3":
                sn = name + "_scale"
                if sn not in f.header or f.info(sn)["shape"] != [n * n, vd // 32] \
                        or f.dtype(sn) != "U8":
                    errs.append(f"{sn}: want U8 [{n * n}, {vd // 32}]")
        if errs:
            raise ValueError("model check failed:\n  " + "\n  ".join(errs))

    # -- the memory layer ---------------------------------------------------------
    def value_rows(self, l, rows):
        return self._value_rows(self.table_key(l), rows)

    def _value_rows(self, key, rows):
        return self.values[key].rows(rows)

    def memory(self, l, x):
        """Memory layer of block l on x [T, D] (the post-attention norm's output)."""
        T = x.shape[0]
        H, n, k, kd = self.ph, self.n, self.k, self.kd
        half = kd // 2
        p = f"model.layers.{l}.memory."
        q = x @ self.W(p + "query_proj.weight").T
        if self.qbias:
            q = q + self.W(p + "query_proj.bias")
        q = q.reshape(T, H, kd)
        K = self.W(p + "keys").reshape(H, 2, n, half)
        q1, q2 = q[:, :, :half], q[:, :, half:]
        s1 = np.einsum("thd,hnd->thn", q1, K[:, 0])  # [T, H, n]
        s2 = np.einsum("thd,hnd->thn", q2, K[:, 1])
        sig1, I = topk_desc(s1, k)  # [T, H, k]
        sig2, J = topk_desc(s2, k)
        grid = (sig1[:, :, :, None] + sig2[:, :, None, :]).reshape(T, H, k * k)  # a-major
        gidx = (I[:, :, :, None] * n + J[:, :, None, :]).reshape(T, H, k * k)
        sig, best = topk_desc(grid, k)
        iota = np.take_along_axis(gidx, best, axis=-1)  # [T, H, k] value rows
        w = softmax(sig)
        uniq, inv = np.unique(iota.reshape(-1), return_inverse=True)
        V = self.value_rows(l, uniq)[inv].reshape(T, H * k, self.vd)
        y = np.einsum("tj,tjv->tv", w.reshape(T, H * k), V)  # heads summed
        if self.swilu:
            g = x @ self.W(p + "swilu_projection.weight").T + self.W(p + "swilu_projection.bias")
            y = y * silu(g)
        if self.has_value_proj[l]:
            o = y @ self.W(p + "value_proj.weight").T + self.W(p + "value_proj.bias")
        else:
            o = y
        if self.gated:
            gate = x @ self.W(p + "gating.weight").T + self.W(p + "gating.bias")  # [T, 1]
            o = sigmoid(gate) * o
        return MemoryResult(out=o, indices=iota, scores=sig, weights=w, s1=s1, s2=s2,
                            grid=grid, q=q, keys=K)

    # -- forward ------------------------------------------------------------------
    def forward(self, token_ids, dumps=()):
        """engram_ref.Model.forward with the MLP of PKM blocks replaced by the memory. Returns
        {"logits": [T, V], "engram:<l>": (input, output) [T, M, D],
         "memory:<l>": (input [T, D], output [T, D], indices [T, H, k], MemoryResult)}."""
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
            x = rms_norm(h.mean(axis=1), self.W(
                f"model.layers.{i}.post_attention_layernorm.weight"), self.eps)
            if i in self.pkm_layers:
                r = self.memory(i, x)
                if f"memory:{i}" in dumps:
                    out[f"memory:{i}"] = (h[:, 0, :].copy(), r.out, r.indices, r)
                f = r.out
            else:
                f = self.mlp(i, x)
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
        """Row t computed from tokens[0..t] only (one forward per prefix). MemoryResult items
        of memory dumps are dropped (None)."""
        res = {}
        for t in range(1, len(token_ids) + 1):
            o = self.forward(token_ids[:t], dumps)
            for key, v in o.items():
                if isinstance(v, tuple):
                    last = tuple(a[-1:] if isinstance(a, np.ndarray) else None for a in v)
                    res[key] = last if key not in res else tuple(
                        None if a is None else np.concatenate([a, b])
                        for a, b in zip(res[key], last))
                else:
                    res[key] = v[-1:] if key not in res else np.concatenate([res[key], v[-1:]])
        return res


def dump_json(model, result, dump):
    if not dump.startswith("memory:"):
        return engram_ref.dump_json(model, result, dump)
    inp, outp, idx = result[dump][:3]
    return ('{"input":' + to_json(inp) + ',"output":' + to_json(outp) + ',"indices":'
            + json.dumps(np.asarray(idx).astype(int).tolist(), separators=(",", ":")) + "}")


def normalize_dump(m, dump):
    if dump == "logits":
        return dump
    kind, _, l = dump.partition(":")
    try:
        l = int(l)
    except ValueError:
        l = None
    if kind == "engram" and l in m.layer_ids:
        return f"engram:{l}"
    if kind == "memory" and l in m.pkm_layers:
        return f"memory:{l}"
    raise ValueError(f"--dump {dump}: want logits, engram:<l> with l in {m.layer_ids} or "
                     f"memory:<l> with l in {m.pkm_layers}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True)
    common.add_argument("--strip-marks", choices=["M", "Mn"], default="M")
    common.add_argument("--ignore-compress-file", action="store_true")
    common.add_argument("--compute", choices=["float64", "float32"], default="float64")
    p = sub.add_parser("hash", parents=[common])
    p.add_argument("--token-ids", required=True)
    p = sub.add_parser("forward", parents=[common])
    p.add_argument("--token-ids", required=True)
    p.add_argument("--dump", required=True, help="logits | engram:<layer> | memory:<layer>")
    p.add_argument("--incremental", action="store_true",
                   help="row t from the prefix tokens[0..t] alone (one forward per prefix)")
    sub.add_parser("check", parents=[common])
    a = ap.parse_args(argv)
    try:
        m = Model(a.model, a.compute, a.strip_marks, not a.ignore_compress_file)
        if a.cmd == "check":
            s = {"ok": True, "engram_layers": m.layer_ids, "pkm_layers": m.pkm_layers,
                 "hc_mult": m.M}
            if m.pkm:
                s.update({"n_keys": m.n, "heads": m.ph, "knn": m.k, "k_dim": m.kd,
                          "v_dim": m.vd, "share_values": m.share, "swilu_projection": m.swilu,
                          "query_bias": m.qbias, "gated": m.gated,
                          "table_dtype": m.table_dtype_pkm,
                          "value_proj": {str(l): v for l, v in m.has_value_proj.items()}})
            print(json.dumps(s))
            return 0
        ids = parse_ids(a.token_ids)
        if not ids:
            raise ValueError("--token-ids is empty")
        if a.cmd == "hash":
            if not m.layer_ids:
                raise ValueError("the model has no Engram layer to hash for")
            return engram_ref.main(argv)
        dump = normalize_dump(m, a.dump)
        res = (m.forward_incremental if a.incremental else m.forward)(ids, {dump})
        print(dump_json(m, res, dump))
        return 0
    except (ValueError, KeyError, FileNotFoundError) as ex:
        print(f"pkm_ref: error: {ex}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
