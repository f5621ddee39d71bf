#!/usr/bin/python3
"""Golden fidelity test of product-key memory (PKM, DESIGN §2.4): the C++ `engram-model` tool
against the independent Python reference tools/reference/pkm_ref.py.

  /usr/bin/python3 tests/golden/pkm_fidelity_test.py --engram-model PATH --workdir DIR
      [--case NAME[,NAME...]] [--list] [--keep] [-v]
  /usr/bin/python3 tests/golden/pkm_fidelity_test.py --reference-selftest
      (pkm_ref.py against a PyTorch 1.13 float64 re-statement of the published
       HashingMemory.forward / get_indices: indices exactly, outputs within 1e-12)
  /usr/bin/python3 tests/golden/pkm_fidelity_test.py --harness-selftest --workdir DIR
      (this test against a stand-in tool built on pkm_ref.py in float32: passes clean, fails
       on each injected bug)

Each case creates a tiny model with `engram-model create --memory pkm|engram,pkm --pkm-...`
(flags below), then compares on three token sequences (1 token, 2 tokens, 16 tokens):
  * `forward --dump memory:<l>` for every PKM block l: "indices" [T][heads][knn] exactly;
    "input" [T][D] (the residual entering the memory step, before the post-attention norm) and
    "output" [T][D] (what is added to it) within the tolerance below;
  * `forward --dump logits` (and `--dump engram:<l>` plus `hash` when the model also has
    Engram layers, as tests/golden/fidelity_test.py checks them);
  * all of it full and `--incremental`, against the float64 reference; C++ incremental against
    C++ full (indices exactly, floats within twice the tolerance).
Cases (--list): values shared / per layer; swilu_projection, value_proj with v_dim != D,
value_proj with v_dim = D (optional: presence decides), no projection; gated; query_bias on
and off; values f32/bf16/f16/fp8 (e4m3 + ue8m0 scales); bf16 backbone; heads 2/3/4, knn 1,
knn = n_keys; an Engram layer and PKM layers in one model. `selfcheck` proves the comparison
can fail: C++ on perturbed copies (a values element, two swapped sub-keys, the gating bias, a
removed optional value_proj) must be reported against the reference on the original.

create flags used (besides fidelity_test.py's --preset tiny --hidden --layers --heads
--kv-heads --intermediate --vocab --hc-mult --dtype, and the Engram flags in the combined case):
  --memory pkm|engram,pkm --pkm-layers 1,3 --pkm-n-keys N --pkm-heads H --pkm-knn K
  --pkm-k-dim KD --pkm-v-dim VD --pkm-share-values 0|1 --pkm-swilu 0|1 --pkm-value-proj 0|1
  --pkm-query-bias 0|1 --pkm-gated 0|1 --pkm-table-dtype float32|bfloat16|float16|float8_e4m3

Tolerance (float comparisons; per row, as fidelity_test.py: norm-wise ||a-b||/||b|| <= tau and
elementwise |a_j - b_j| <= 10 tau max(|b_j|, rms(b))). The derivation is fidelity_test.py's:
the C++ side computes in float32 (u = 2^-24), the reference in float64, stored weights and
table rows are dequantized exactly on both sides, so the difference is the C++ rounding error
alone; one matrix-vector stage contributes <= ~2.6 K u norm-wise (probabilistic bound, Higham &
Mary 2019), stages add along the residual stream, with an allowance of 1.5 for amplification:
tau = 4 * S * K_max * u + 1e-8 (printing), S = stages on the path to the quantity.
  * Stages: 6 per block up to and including the post-attention norm (norm, q/k/v, scores, P.V,
    o, norm), 2 for an MLP (gate/up, down), 6 for an Engram module; a PKM memory has 7:
    query projection, sub-key scores, softmax (its float32 evaluation, DESIGN §2.4.6), the
    weighted sum of heads*knn rows, swilu projection, value_proj, gating. Memory "input" is
    counted to the attention output (S = before + 5), "output" to the gating (before + 13).
  * K_max = max(D, intermediate, heads*head_dim, (N-1)*E, T, v_dim, heads*knn, k_dim/2).
  * Softmax sensitivity: the weights' absolute error is about the scores' absolute error,
    <= tau_q ||q_half|| ||K_row|| per half (Cauchy-Schwarz); with the O(1) scores the created
    models have that is covered by the same allowance (the stand-in tool's real float32 error
    is ~1e-6 of tau's ~1e-3: --harness-selftest prints the worst error/tolerance ratio).
Indices are compared exactly, so a decision that float32 could legitimately take either way
would make the test ill-posed. The reference's margins are checked at every decision that
can change the dumped indices: per head and half the gap between sub-key k and k+1, and the
gaps between consecutive candidates among the best k+1 of the k*k grid. The gap must be at
least twice delta = e_q (||q1|| max||K1_i|| + ||q2|| max||K2_j||) (Cauchy-Schwarz; one half
alone for a sub-key gap), where e_q bounds the relative error of the query and keys as the
C++ side computes them. tau is a deliberately loose pass/fail bound (~1000x the float32 error
the stand-in tool shows) and would flag a near tie in most sequences, so e_q is the "typical
error with margin" of the same S stages of K_max-long dot products: random-sign rounding
errors add in quadrature, e_q = 8 sqrt(S K_max) u (= tau * 2 / sqrt(S K_max), ~1/40 of tau
here, still ~40x the observed float32 error). Token sequences are chosen deterministically
(a token is redrawn at the first position with a near tie) so that no near tie occurs; the
smallest gap/(2 delta) of each sequence is reported, and an index mismatch reports the
reference's gap at that decision.
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
sys.path.insert(0, HERE)
import fidelity_test as ft  # noqa: E402  (Report, Tool, compare_floats, compare_hash, ...)
import make_test_model  # noqa: E402
import pkm_ref  # noqa: E402
import safetensors_np as st  # noqa: E402

U = ft.U
PRINT_TOL = ft.PRINT_TOL
TINY = dict(ft.TINY)  # hidden 64, 2 layers, 4 heads / 2 kv heads, intermediate 128, vocab 512


# ----------------------------------------------------------------------------- tolerance
def block_stages(ref, j):
    return ((6 if j in ref.layer_ids else 0) + 6
            + (7 if j in ref.pkm_layers else 2))


def before(ref, i):
    return sum(block_stages(ref, j) for j in range(i))


def kmax(ref, T):
    k = [ref.D, ref.I, ref.nh * ref.hd, T]
    if ref.layer_ids:
        k.append((ref.N - 1) * ref.E)
    if ref.pkm_layers:
        k += [ref.vd, ref.ph * ref.k, ref.kd // 2]
    return max(k)


def tau(ref, stages, T):
    return 4.0 * stages * kmax(ref, T) * U + PRINT_TOL


def tie_rel(ref, stages, T):
    """Relative error of the scores' inputs that a near tie is judged against (docstring)."""
    return 8.0 * math.sqrt(stages * kmax(ref, T)) * U


def stages_of(ref, q):
    """Stage count of a dumped quantity: logits, engram:<l> input/output, memory:<l>
    input/scores/output."""
    if q == "logits":
        return before(ref, ref.L) + 2
    kind, l, part = q.split(":")
    l = int(l)
    if kind == "engram":
        return before(ref, l) + (0 if part == "input" else 6)
    e = 6 if l in ref.layer_ids else 0
    return before(ref, l) + e + {"input": 5, "scores": 8, "output": 13}[part]


# ----------------------------------------------------------------------------- near ties
def decisions(ref, l, r, t, hh, T):
    """[(gap / (2 delta), what)] of the decisions of PKM layer l at position t, head hh, from
    the reference's MemoryResult r (see the docstring)."""
    k, n, half = ref.k, ref.n, ref.kd // 2
    e = tie_rel(ref, stages_of(ref, f"memory:{l}:scores"), T)
    kn = np.linalg.norm(r.keys[hh], axis=-1).max(axis=-1)  # [2]
    dh = [e * np.linalg.norm(r.q[t, hh, :half]) * kn[0],
          e * np.linalg.norm(r.q[t, hh, half:]) * kn[1]]
    out = []
    for s, sc in ((0, r.s1), (1, r.s2)):
        if k < n:
            v = np.sort(sc[t, hh])[::-1]
            out.append(((v[k - 1] - v[k]) / (2 * dh[s]), f"sub-key rank {k - 1}/{k} of half "
                                                        f"{s + 1}"))
    g = np.sort(r.grid[t, hh])[::-1][:k + 1]
    for j in range(len(g) - 1):
        out.append(((g[j] - g[j + 1]) / (2 * (dh[0] + dh[1])), f"grid rank {j}/{j + 1}"))
    return out


def near_ties(ref, ids, want=None):
    """[(ratio gap / (2 delta), layer, t, head, what)] for every decision of every PKM layer,
    smallest first."""
    want = want or ref.forward(ids, {f"memory:{l}" for l in ref.pkm_layers})
    T = len(ids)
    out = []
    for l in ref.pkm_layers:
        r = want[f"memory:{l}"][3]
        for t in range(T):
            for hh in range(ref.ph):
                out += [(g, l, t, hh, w) for g, w in decisions(ref, l, r, t, hh, T)]
    out.sort(key=lambda x: x[0])
    return out


def tie_free(ref, ids, seed, protect=(), tries=60):
    """ids with tokens redrawn (deterministically) until no decision is a near tie; returns
    (ids, smallest ratio, redraws). A near tie at t redraws the last token at or before t
    that is not in `protect` (positions whose token a case placed on purpose)."""
    rng = np.random.default_rng(seed)
    ids = list(ids)
    redraws = 0
    for _ in range(tries):
        ties = near_ties(ref, ids)
        if not ties or ties[0][0] >= 1.0:
            return ids, (ties[0][0] if ties else math.inf), redraws
        t = ties[0][2]
        free = [i for i in range(t + 1) if i not in protect]
        t = free[-1] if free else t
        ids[t] = int(rng.integers(0, ref.V))
        redraws += 1
    ties = near_ties(ref, ids)
    return ids, ties[0][0], redraws


def base_sequences(ref, seed):
    """[(ids, positions placed on purpose)]: 1 token, 2 tokens, 16 (PKM only) or
    fidelity_test's longer-than-the-conv-window sequence with the pad id and vocab-end ids
    (with an Engram layer)."""
    if ref.layer_ids:
        seqs = ft.sequences(ref, seed)
        n = len(seqs[2])
        return [(seqs[0], {0}), (seqs[1], {0, 1}),
                (seqs[2], {0, 2, 3, n // 2, n - 2, n - 1})]
    rng = np.random.default_rng(seed)
    V = ref.V
    long = [int(x) for x in rng.integers(0, V, size=16)]
    long[2], long[-1] = V - 1, 0
    return [([V - 1], {0}), ([3, V - 2], {1}), (long, {2, 15})]


def sequences(rep, ref, seed):
    out = []
    for i, (ids, protect) in enumerate(base_sequences(ref, seed)):
        ids2, ratio, redraws = tie_free(ref, ids, seed + 101 * i, protect)
        rep.add(f"no near ties T={len(ids2)}", ratio >= 1.0,
                f"smallest gap/(2 delta) {ratio:.3g}, {redraws} tokens redrawn"
                + ("" if ratio >= 1.0 else " (could not avoid a near tie: change the seed)"))
        out.append(ids2)
    return out


# ----------------------------------------------------------------------------- comparisons
def compare_indices(rep, what, got, want, ref=None, res=None, l=None):
    w = np.asarray(want, dtype=np.int64)
    try:
        g = np.asarray(got, dtype=np.int64)
    except (TypeError, ValueError):
        return rep.add(what, False, f"indices are not an integer array: {str(got)[:200]}")
    if g.shape != w.shape:
        return rep.add(what, False, f"shape {list(g.shape)} != reference {list(w.shape)} "
                                    f"([T][heads][knn])")
    bad = np.argwhere(np.any(g != w, axis=-1))
    if len(bad) == 0:
        return rep.add(what, True, f"{w.shape[0]} positions x {w.shape[1]} heads x "
                                   f"{w.shape[2]}")
    t, hh = (int(x) for x in bad[0])
    info = (f"{len(bad)} (position, head) pairs differ; first t={t} head {hh}: C++ "
            f"{g[t, hh].tolist()} reference {w[t, hh].tolist()}")
    if ref is not None:
        n = ref.n
        info += (f" (rows as (i, j) = (row // n_keys, row % n_keys): reference "
                 f"{[(int(v) // n, int(v) % n) for v in w[t, hh]]}, C++ "
                 f"{[(int(v) // n, int(v) % n) for v in g[t, hh]]})")
    if res is not None:
        d = min(decisions(ref, l, res, t, hh, w.shape[0]))
        info += (f"; the reference's closest decision there: {d[1]} with gap/(2 delta) "
                 f"{d[0]:.3g} (a value < 1 would be a near tie)")
    return rep.add(what, False, info)


def check_sequences(rep, tool, mdir, seqs, ref, incremental=True):
    for ids in seqs:
        T = len(ids)
        tag = f"T={T}"
        try:
            if ref.layer_ids:
                ft.compare_hash(rep, f"hash {tag}", tool.hash(mdir, ids), ref, ids)
            want = ref.forward(ids, {f"engram:{l}" for l in ref.layer_ids}
                               | {f"memory:{l}" for l in ref.pkm_layers})
            quantities = (["logits"] + [f"engram:{l}" for l in ref.layer_ids]
                          + [f"memory:{l}" for l in ref.pkm_layers])
            modes = [False, True] if incremental else [False]
            for q in quantities:
                got = {m: tool.forward(mdir, ids, q, m) for m in modes}
                parts = (["logits"] if q == "logits" else
                         ["input", "output"] + (["indices"] if q.startswith("memory") else []))
                for inc in modes:
                    mode = "incremental" if inc else "full"
                    for k, part in enumerate(parts):
                        if q == "logits":
                            wv, s = want["logits"], stages_of(ref, "logits")
                        else:
                            wv = want[q][k]
                            if q.startswith("engram"):
                                wv = wv[:, 0, :]
                            if part != "indices":
                                s = stages_of(ref, f"{q}:{part}")
                        label = f"{q} {part} {mode} {tag}" if q != "logits" else \
                            f"logits {mode} {tag}"
                        if part == "indices":
                            compare_indices(rep, label, got[inc].get("indices"), wv, ref,
                                            want[q][3], int(q.split(":")[1]))
                        else:
                            ft.compare_floats(rep, label, got[inc].get(part), wv,
                                              tau(ref, s, T))
                if incremental:
                    for part in parts:
                        label = f"{q} {part} C++ incremental vs C++ full {tag}"
                        if part == "indices":
                            compare_indices(rep, label, got[True].get(part),
                                            got[False].get(part))
                        else:
                            s = stages_of(ref, "logits" if q == "logits" else f"{q}:{part}")
                            ft.compare_floats(rep, label, got[True].get(part),
                                              got[False].get(part), 2 * tau(ref, s, T))
        except (ft.ToolError, ValueError, KeyError, TypeError,
                subprocess.TimeoutExpired) as ex:
            rep.add(f"sequence {tag} {ids}", False, f"error: {type(ex).__name__}: {ex}")


# ----------------------------------------------------------------------------- cases
def pkm_kw(**kw):
    """create flags of a PKM case: TINY + the given ones (pkm_* as 0/1 ints)."""
    out = dict(TINY)
    out["memory"] = "pkm"
    out.update(kw)
    return out


def describe(ref):
    return (f"pkm layers {ref.pkm_layers} of {ref.L}, engram {ref.layer_ids}; n {ref.n} H "
            f"{ref.ph} k {ref.k} k_dim {ref.kd} v_dim {ref.vd}; share {ref.share} swilu "
            f"{ref.swilu} value_proj {ref.has_value_proj} qbias {ref.qbias} gated {ref.gated}; "
            f"table {ref.table_dtype_pkm}; backbone {ref.cfg.get('torch_dtype')}")


def basic_case(**create):
    def run(rep, tool, wd, name):
        mdir = tool.create(os.path.join(wd, name), **pkm_kw(**create))
        ref = pkm_ref.Model(mdir)
        rep.add("reference loads the created model", True, describe(ref))
        want_cfg = {"share_values": "pkm_share_values", "swilu_projection": "pkm_swilu",
                    "query_bias": "pkm_query_bias", "gated": "pkm_gated"}
        for key, flag in want_cfg.items():
            if flag in create:
                rep.add(f"config {key} as created", ref.pkm[key] == bool(create[flag]),
                        f"{ref.pkm[key]} (flag {create[flag]})")
        if "pkm_value_proj" in create:
            rep.add("value_proj present as created",
                    all(v == bool(create["pkm_value_proj"]) for v in ref.has_value_proj.values()),
                    f"{ref.has_value_proj}")
        check_sequences(rep, tool, mdir, sequences(rep, ref, zlib.crc32(name.encode())), ref)
    return run


def raw_table(ref, l):
    r = ref.values[ref.table_key(l)]
    return r.tables[0].path, r.table_name(0)


def case_selfcheck(rep, tool, wd, name):
    """The comparison must fail on perturbed models: C++ on a perturbed copy against the
    reference on the original."""
    base = tool.create(os.path.join(wd, name), **pkm_kw(
        layers=2, pkm_layers="1", pkm_n_keys=16, pkm_heads=2, pkm_knn=4, pkm_k_dim=16,
        pkm_v_dim=64, pkm_share_values=0, pkm_swilu=0, pkm_value_proj=1, pkm_query_bias=1,
        pkm_gated=1, pkm_table_dtype="float32"))
    ref = pkm_ref.Model(base)
    ids = sequences(rep, ref, 17)[2]
    l = ref.pkm_layers[0]
    q = f"memory:{l}"
    want = ref.forward(ids, {q})
    T = len(ids)
    tol_out = tau(ref, stages_of(ref, f"{q}:output"), T)

    def expect_fail(label, mdir, fn):
        inner = ft.Report(quiet=True)
        inner.case = label
        try:
            fn(inner, mdir)
        except ft.ToolError as ex:
            inner.add("tool", False, str(ex))
        bad = inner.failures()
        rep.add(f"detects {label}", bool(bad),
                (f"{len(bad)} checks failed, e.g. {bad[0][1]}: {bad[0][3][:160]}" if bad
                 else "NOT DETECTED: every check passed on a perturbed model"))

    def out_check(r, d):
        got = tool.forward(d, ids, q)
        ft.compare_floats(r, "memory output", got.get("output"), want[q][1], tol_out)

    def idx_check(r, d):
        compare_indices(r, "memory indices", tool.forward(d, ids, q).get("indices"), want[q][2])

    # 1. One element of the best value row at the last position, head 0: +0.5.
    m1 = ft.copy_model(base, os.path.join(wd, name + "-value"))
    path, tname = raw_table(ref, l)
    path = os.path.join(m1, os.path.basename(path))
    tens, meta = st.load_raw_all(path)
    row = int(want[q][2][T - 1, 0, 0])
    dt, raw = tens[tname]
    raw = raw.copy()
    raw[row, 0] += np.float32(0.5)
    tens[tname] = (dt, raw)
    st.save(path, tens, meta)
    expect_fail(f"values row {row} element 0 +0.5", m1, out_check)

    # 2. Two sub-keys swapped: head 0, half 1, the best at the last position and one outside
    #    the top k there (the keys are a backbone tensor).
    m2 = ft.copy_model(base, os.path.join(wd, name + "-keys"))
    r = want[q][3]
    order = np.argsort(-r.s1[T - 1, 0], kind="stable")
    a, b = int(order[0]), int(order[-1])
    kname = f"model.layers.{l}.memory.keys"
    fm = ft.model_files(m2)
    kp = os.path.join(m2, fm[kname])
    tens, meta = st.load_raw_all(kp)
    dt, raw = tens[kname]
    raw = raw.copy()
    raw[[a, b]] = raw[[b, a]]  # rows 0..n-1 are head 0, half 1
    tens[kname] = (dt, raw)
    st.save(kp, tens, meta)
    expect_fail(f"sub-keys {a} and {b} of head 0 swapped", m2, idx_check)

    # 3. The gating bias +0.25.
    m3 = ft.copy_model(base, os.path.join(wd, name + "-gate"))
    ft.perturb_element(m3, f"model.layers.{l}.memory.gating.bias", (0,), 0.25)
    expect_fail("gating bias +0.25", m3, out_check)

    # 4. value_proj removed (v_dim = D, no swilu: optional, its presence decides).
    m4 = ft.copy_model(base, os.path.join(wd, name + "-novproj"))
    fm = ft.model_files(m4)
    vp = os.path.join(m4, fm[f"model.layers.{l}.memory.value_proj.weight"])
    tens, meta = st.load_raw_all(vp)
    for s in ("weight", "bias"):
        del tens[f"model.layers.{l}.memory.value_proj.{s}"]
    st.save(vp, tens, meta)
    idx = os.path.join(m4, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            j = json.load(f)
        for s in ("weight", "bias"):
            j["weight_map"].pop(f"model.layers.{l}.memory.value_proj.{s}", None)
        with open(idx, "w") as f:
            json.dump(j, f)
    rep.add("reference reads the model without value_proj",
            pkm_ref.Model(m4).has_value_proj[l] is False)
    expect_fail("optional value_proj removed", m4, out_check)


def engram_pkm_case(rep, tool, wd, name):
    """An Engram layer (block 0, before attention) and PKM layers (blocks 1 and 2, instead of
    their MLPs) in one model."""
    kw = pkm_kw(memory="engram,pkm", layers=3, engram_layers="0", max_ngram=3,
                heads_per_ngram=4, embed_per_ngram=64, engram_vocab_sizes="1000,1200",
                table_dtype="bfloat16", pkm_layers="1,2", pkm_n_keys=16, pkm_heads=2,
                pkm_knn=4, pkm_k_dim=16, pkm_v_dim=64, pkm_share_values=1, pkm_swilu=1,
                pkm_query_bias=1, pkm_gated=0, pkm_table_dtype="float16")
    mdir = tool.create(os.path.join(wd, name), **kw)
    ref = pkm_ref.Model(mdir)
    rep.add("reference loads the created model", ref.layer_ids == [0], describe(ref))
    check_sequences(rep, tool, mdir, sequences(rep, ref, 23), ref)


CASES = {
    # The published defaults (shared values, swilu, query bias), two non-adjacent PKM blocks.
    "shared_swilu_f32": basic_case(layers=4, pkm_layers="1,3", pkm_n_keys=16, pkm_heads=2,
                                   pkm_knn=4, pkm_k_dim=16, pkm_v_dim=64, pkm_share_values=1,
                                   pkm_swilu=1, pkm_query_bias=1, pkm_gated=0,
                                   pkm_table_dtype="float32"),
    # Per-layer values, value_proj from v_dim 32 != D, no query bias, gated, bf16 values.
    "perlayer_vproj_gated_bf16": basic_case(layers=3, pkm_layers="0,2", pkm_n_keys=32,
                                            pkm_heads=4, pkm_knn=8, pkm_k_dim=32,
                                            pkm_v_dim=32, pkm_share_values=0, pkm_swilu=0,
                                            pkm_value_proj=1, pkm_query_bias=0, pkm_gated=1,
                                            pkm_table_dtype="bfloat16"),
    # No projection at all (v_dim = D), knn 1 (one row per head, weight 1), f16 values.
    "noproj_knn1_f16": basic_case(layers=2, pkm_layers="1", pkm_n_keys=8, pkm_heads=2,
                                  pkm_knn=1, pkm_k_dim=8, pkm_v_dim=64, pkm_share_values=1,
                                  pkm_swilu=0, pkm_value_proj=0, pkm_query_bias=1, pkm_gated=0,
                                  pkm_table_dtype="float16"),
    # Optional value_proj present (v_dim = D, no swilu): its presence decides.
    "vproj_vdim_d_f32": basic_case(layers=2, pkm_layers="0", pkm_n_keys=16, pkm_heads=2,
                                   pkm_knn=4, pkm_k_dim=16, pkm_v_dim=64, pkm_share_values=0,
                                   pkm_swilu=0, pkm_value_proj=1, pkm_query_bias=0,
                                   pkm_gated=1, pkm_table_dtype="float32"),
    # fp8 values (v_dim 96 = 3 scale blocks), swilu with v_dim != D, 3 heads, knn = n_keys.
    "fp8_swilu_knn_eq_n": basic_case(layers=2, pkm_layers="1", pkm_n_keys=8, pkm_heads=3,
                                     pkm_knn=8, pkm_k_dim=8, pkm_v_dim=96, pkm_share_values=0,
                                     pkm_swilu=1, pkm_query_bias=1, pkm_gated=1,
                                     pkm_table_dtype="float8_e4m3"),
    # bf16 backbone (memory weights bf16 too), shared bf16 values, every option on.
    "bf16_backbone": basic_case(layers=3, dtype="bfloat16", pkm_layers="0,2", pkm_n_keys=16,
                                pkm_heads=2, pkm_knn=4, pkm_k_dim=16, pkm_v_dim=64,
                                pkm_share_values=1, pkm_swilu=1, pkm_query_bias=1,
                                pkm_gated=1, pkm_table_dtype="bfloat16"),
    "engram_pkm": engram_pkm_case,
    "selfcheck": case_selfcheck,
}


# ----------------------------------------------------------------------------- stand-in tool
def _inject(bug):
    """Known-wrong variants of the memory for the stand-in tool (PKM_FAKE_BUG)."""
    M = pkm_ref.Model
    if bug == "keys_half_major":  # keys viewed [2][H][n][half] instead of [H][2][n][half]
        orig_w = M.W

        def W(self, name):
            a = orig_w(self, name)
            if name.endswith(".memory.keys"):
                a = a.reshape(2, self.ph, self.n, -1).transpose(1, 0, 2, 3).reshape(a.shape)
            return a
        M.W = W
    elif bug == "grid_b_major":  # value row J[b]*n + I[a] instead of I[a]*n + J[b]
        orig_mem, orig_rows = M.memory, M.value_rows

        def value_rows(self, l, rows):
            rows = np.asarray(rows)
            return orig_rows(self, l, (rows % self.n) * self.n + rows // self.n)

        def memory(self, l, x):
            r = orig_mem(self, l, x)
            r.indices = (r.indices % self.n) * self.n + r.indices // self.n
            return r
        M.value_rows, M.memory = value_rows, memory
    elif bug == "softmax_global":  # one softmax over all heads' picks instead of per head
        orig = pkm_ref.softmax

        def softmax(s):
            T, H, k = s.shape
            return orig(s.reshape(T, H * k)).reshape(T, H, k)
        pkm_ref.softmax = softmax
    elif bug == "score_scale":  # scores divided by sqrt(k_dim) before the softmax
        orig = pkm_ref.softmax
        pkm_ref.softmax = lambda s: orig(s / 4.0)
    elif bug == "no_silu":  # swilu without the SiLU
        pkm_ref.silu = lambda v: v
    elif bug == "gate_no_sigmoid":
        pkm_ref.sigmoid = lambda v: v
    elif bug == "fp8_no_scale":  # e4m3 values without their ue8m0 scales
        def rows(self, r):
            f, name = self.tables[0], self._name
            raw = f.raw(name)[np.asarray(r, dtype=np.int64)]
            if f.dtype(name) == "F8_E4M3":
                return st.E4M3_TABLE[raw].astype(self.dt)
            return st.decode(f.dtype(name), raw).astype(self.dt)
        pkm_ref._Rows.rows = rows
    elif bug == "first_table":  # every layer reads the first layer's values table
        def value_rows(self, l, rows):
            return self._value_rows(sorted(self.values)[0], rows)
        M.value_rows = value_rows
    elif bug == "indices_ascending":  # dumped indices sorted by row, not best first
        orig_mem = M.memory

        def memory(self, l, x):
            r = orig_mem(self, l, x)
            r.indices = np.sort(r.indices, axis=-1)
            return r
        M.memory = memory
    elif bug:
        raise SystemExit(f"unknown PKM_FAKE_BUG {bug}")


def fake_engram_model(argv):
    """`engram-model` stand-in: create = make_test_model.py (same flags), hash and forward =
    pkm_ref.py, forward in float32 so the comparison sees real float32 rounding."""
    if not argv:
        return 2
    _inject(os.environ.get("PKM_FAKE_BUG", ""))
    cmd, rest = argv[0], argv[1:]
    if cmd == "create":
        return make_test_model.main(rest)
    if cmd == "hash":
        return pkm_ref.main(["hash"] + rest)
    if cmd == "forward":
        return pkm_ref.main(["forward", "--compute", "float32"] + rest)
    print(f"fake engram-model: unknown command {cmd}", file=sys.stderr)
    return 2


class FakeTool(ft.Tool):
    def __init__(self):
        super().__init__(sys.executable)
        self.prefix = [sys.executable, os.path.abspath(__file__), "--fake-engram-model"]

    def run(self, *args, timeout=300):
        cmd = self.prefix + [str(a) for a in args]
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        self.calls += 1
        self.seconds += time.time() - t0
        if p.returncode != 0:
            raise ft.ToolError(f"fake {' '.join(map(str, args))} exited {p.returncode}: "
                               f"{p.stderr.strip()[-2000:]}")
        return p.stdout


# Each injected bug and a case that must catch it; the clean run must pass them all.
HARNESS_BUGS = [("", "shared_swilu_f32,perlayer_vproj_gated_bf16,noproj_knn1_f16,"
                     "fp8_swilu_knn_eq_n,vproj_vdim_d_f32,bf16_backbone,engram_pkm,selfcheck"),
                ("keys_half_major", "shared_swilu_f32"),
                ("grid_b_major", "noproj_knn1_f16"),
                ("softmax_global", "vproj_vdim_d_f32"),
                ("score_scale", "shared_swilu_f32"),
                ("no_silu", "engram_pkm"),
                ("gate_no_sigmoid", "vproj_vdim_d_f32"),
                ("fp8_no_scale", "fp8_swilu_knn_eq_n"),
                ("first_table", "perlayer_vproj_gated_bf16"),
                ("indices_ascending", "shared_swilu_f32")]


def harness_selftest(workdir):
    bad = 0
    for bug, cases in HARNESS_BUGS:
        env = dict(os.environ, PKM_FAKE_BUG=bug)
        t0 = time.time()
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--fake-tool",
                            "--workdir", os.path.join(workdir, bug or "clean"), "--case", cases],
                           capture_output=True, text=True, env=env)
        want_fail = bool(bug)
        ok = (p.returncode == 1) if want_fail else (p.returncode == 0)
        bad += not ok
        lines = p.stdout.splitlines()
        summary = [l for l in lines if "checks," in l]
        worst = [l.strip() for l in lines if "worst error/tolerance" in l]
        first = [l for l in lines if l.startswith("FAIL ")][:1]
        print(f"[{'ok' if ok else 'FAIL'}] bug {bug or '(none)'} on {cases}: exit "
              f"{p.returncode}, want {'1 (detected)' if want_fail else '0'}; "
              f"{summary[0] if summary else ''} ({time.time() - t0:.1f} s)", flush=True)
        for l in (worst if not bug else first):
            print(f"      {l[:300]}")
        if not ok:
            print(p.stdout[-4000:], p.stderr[-3000:])
    return 1 if bad else 0


# ----------------------------------------------------------------------------- torch check
def reference_selftest(verbose=False):
    """pkm_ref.Model.memory against a PyTorch re-statement of the published module."""
    import tempfile
    import torch
    from torch import nn
    from torch.nn import functional as F

    class PublishedHashingMemory(nn.Module):
        """Our own restatement, in torch, of facebookresearch/memory lingua/product_key/
        memory.py HashingMemory (PK variant, eval mode: no dropout), same parameter layout:
        keys [2*heads*n, k_dim/2]; query = Linear(D, heads*k_dim, bias) viewed
        [bs*heads, k_dim]; values = EmbeddingBag(n^2, v_dim, mode sum) with per-sample
        weights; value_proj iff mem_v_dim > 0 or swilu; swilu_projection Linear(D, proj_in);
        gating Linear(D, 1). softmax_float32 reproduces `F.softmax(scores.float())
        .type_as(scores)` literally; False keeps the float64 scores."""

        def __init__(self, D, n, heads, knn, k_dim, mem_v_dim, swilu, query_bias, gated,
                     softmax_float32):
            super().__init__()
            self.heads, self.knn, self.k_dim, self.n = heads, knn, k_dim, n
            self.v_dim = mem_v_dim if mem_v_dim > 0 else D
            self.swilu_proj = swilu
            self.v_proj = mem_v_dim > 0 or swilu
            self.softmax_float32 = softmax_float32
            self.keys = nn.Parameter(torch.empty(2 * heads * n, k_dim // 2))
            self.values = nn.EmbeddingBag(n * n, self.v_dim, mode="sum")
            proj_in = mem_v_dim
            if self.v_proj:
                if swilu and proj_in < 0:
                    proj_in = D
                self.value_proj = nn.Linear(proj_in, D)
            if swilu:
                self.swilu_projection = nn.Linear(D, proj_in)
            self.gating = nn.Linear(D, 1) if gated else None
            self.query_proj = nn.Linear(D, heads * k_dim, bias=query_bias)

        def get_indices(self, query, knn):
            bs = len(query) // self.heads
            query = query.view(-1, self.heads, self.k_dim)
            half = self.k_dim // 2
            keys = self.keys.view(self.heads, 2, -1, half)
            keys1, keys2 = keys[:, 0, :, :], keys[:, 1, :, :]
            n_keys = len(keys[0][0])
            q1, q2 = query[:, :, :half], query[:, :, half:]
            scores1 = torch.einsum("blh, lkh->blk", q1, keys1)
            scores2 = torch.einsum("blh, lkh->blk", q2, keys2)
            scores1, indices1 = scores1.topk(knn, dim=2, largest=True)
            scores2, indices2 = scores2.topk(knn, dim=2, largest=True)
            shp = (bs, self.heads, knn, knn)
            all_scores = (scores1.view(bs, self.heads, knn, 1).expand(*shp)
                          + scores2.view(bs, self.heads, 1, knn).expand(*shp)
                          ).view(bs, self.heads, -1)
            all_indices = (indices1.view(bs, self.heads, knn, 1).expand(*shp) * n_keys
                           + indices2.view(bs, self.heads, 1, knn).expand(*shp)
                           ).view(bs, self.heads, -1)
            scores, best = torch.topk(all_scores, k=knn, dim=2, largest=True, sorted=True)
            indices = all_indices.gather(2, best)
            return scores.view(bs * self.heads, knn), indices.view(bs * self.heads, knn)

        def forward(self, x):
            bs = x.shape[0]
            query = self.query_proj(x).view(bs * self.heads, self.k_dim)
            scores, indices = self.get_indices(query, self.knn)
            sc = scores.float() if self.softmax_float32 else scores
            scores = F.softmax(sc, dim=-1).type_as(scores)
            indices = indices.view(bs, self.heads * self.knn)
            scores = scores.view(bs, self.heads * self.knn)
            out = self.values(indices, per_sample_weights=scores)
            if self.v_proj and not self.swilu_proj:
                out = self.value_proj(out)
            if self.swilu_proj:
                out = self.value_proj(out * F.silu(self.swilu_projection(x)))
            if self.gating is not None:
                out = torch.sigmoid(self.gating(x)) * out
            return out, indices.view(bs, self.heads, self.knn)

    def table_f64(mdir, ref, l):
        """The values table decoded here, independently of pkm_ref (fp8: e4m3 byte value
        times 2^(scale - 127), one scale per 32 consecutive values of a row)."""
        r = ref.values[ref.table_key(l)]
        f, name = r.tables[0], r.table_name(0)
        raw = f.raw(name)
        if f.dtype(name) != "F8_E4M3":
            return st.decode(f.dtype(name), raw).astype(np.float64)
        b = raw.astype(np.int64)
        sign = np.where(b & 0x80, -1.0, 1.0)
        e, m = (b >> 3) & 0xF, (b & 7).astype(np.float64)
        v = sign * np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7))
        sc = np.repeat(f.raw(name + "_scale").astype(np.int64) - 127, 32, axis=1)
        return v * np.exp2(sc.astype(np.float64))

    def build(ref, mdir, l, softmax_float32):
        p = f"model.layers.{l}.memory."
        D = ref.D
        mem_v_dim = ref.vd if (ref.has_value_proj[l] or ref.vd != D) else -1
        mod = PublishedHashingMemory(D, ref.n, ref.ph, ref.k, ref.kd, mem_v_dim, ref.swilu,
                                     ref.qbias, ref.gated, softmax_float32).double()
        g = lambda name: torch.from_numpy(np.asarray(ref.src.get(p + name), np.float64))
        with torch.no_grad():
            mod.keys.copy_(g("keys"))
            mod.query_proj.weight.copy_(g("query_proj.weight"))
            if ref.qbias:
                mod.query_proj.bias.copy_(g("query_proj.bias"))
            mod.values.weight.copy_(torch.from_numpy(table_f64(mdir, ref, l)))
            if mod.v_proj:
                mod.value_proj.weight.copy_(g("value_proj.weight"))
                mod.value_proj.bias.copy_(g("value_proj.bias"))
            if ref.swilu:
                mod.swilu_projection.weight.copy_(g("swilu_projection.weight"))
                mod.swilu_projection.bias.copy_(g("swilu_projection.bias"))
            if ref.gated:
                mod.gating.weight.copy_(g("gating.weight"))
                mod.gating.bias.copy_(g("gating.bias"))
        mod.eval()
        return mod

    configs = [
        ("defaults", ["--pkm-layers", "1"]),
        ("perlayer_vproj_gated_nobias_bf16", [
            "--layers", "3", "--pkm-layers", "0,2", "--pkm-n-keys", "32", "--pkm-heads", "4",
            "--pkm-knn", "8", "--pkm-k-dim", "32", "--pkm-v-dim", "32", "--pkm-share-values",
            "0", "--pkm-swilu", "0", "--pkm-query-bias", "0", "--pkm-gated", "1",
            "--pkm-table-dtype", "bfloat16"]),
        ("noproj_knn1_f16", ["--pkm-n-keys", "8", "--pkm-knn", "1", "--pkm-k-dim", "8",
                             "--pkm-swilu", "0", "--pkm-table-dtype", "float16"]),
        ("vproj_vdim_d", ["--pkm-swilu", "0", "--pkm-value-proj", "1", "--pkm-gated"]),
        ("fp8_swilu_vdim96_knn_eq_n", [
            "--pkm-n-keys", "8", "--pkm-heads", "3", "--pkm-knn", "8", "--pkm-k-dim", "8",
            "--pkm-v-dim", "96", "--pkm-gated", "1", "--pkm-table-dtype", "float8_e4m3"]),
        ("swilu_vdim_d_bf16_backbone", ["--dtype", "bfloat16", "--pkm-layers", "0",
                                        "--pkm-gated", "--pkm-table-dtype", "bfloat16"]),
        ("engram_and_pkm", ["--memory", "engram,pkm", "--layers", "3", "--engram-layers", "0",
                            "--pkm-layers", "1,2"]),
    ]
    rep = ft.Report(verbose)
    tmp = tempfile.mkdtemp(prefix="pkm-ref-selftest-")
    rng = np.random.default_rng(5)
    try:
        for name, args in configs:
            rep.case = name
            mdir = os.path.join(tmp, name)
            if make_test_model.main(["--out", mdir, "--memory", "pkm"] + args) not in (0, None):
                rep.add("make_test_model", False)
                continue
            ref = pkm_ref.Model(mdir)
            for l in ref.pkm_layers:
                # Inputs like the post-attention norm's output: O(1) entries, 64 rows.
                x = rng.standard_normal((64, ref.D)) * (1.0 + 0.5 * rng.random((64, 1)))
                r = ref.memory(l, x)
                for f32 in (False, True):
                    mod = build(ref, mdir, l, f32)
                    with torch.no_grad():
                        out, idx = mod(torch.from_numpy(x))
                    out, idx = out.numpy(), idx.numpy()
                    tag = f"layer {l} softmax {'float32 (literal)' if f32 else 'float64'}"
                    same = np.array_equal(idx, r.indices)
                    rep.add(f"{tag}: indices equal", same,
                            "" if same else f"{int(np.sum(np.any(idx != r.indices, -1)))} "
                                            f"(row, head) pairs differ")
                    rel = (np.linalg.norm(out - r.out, axis=1)
                           / np.linalg.norm(r.out, axis=1)).max()
                    # float64 everywhere: ~1e-15; the literal float32 softmax rounds the
                    # weights to float32 (relative 2^-24 each, a few ulps after exp/sum).
                    tol = 1e-6 if f32 else 1e-12
                    rep.add(f"{tag}: outputs", rel <= tol, f"max rel {rel:.3g} (tol {tol:g})")
            # Placement (DESIGN §2.4.1, .9): the dumped output is the module applied to
            # RMSNorm_post_attention(dumped input); the block has no MLP.
            ids = [int(v) for v in rng.integers(0, ref.V, size=9)]
            want = ref.forward(ids, {f"memory:{l}" for l in ref.pkm_layers})
            for l in ref.pkm_layers:
                hin, hout, hidx = want[f"memory:{l}"][:3]
                w = torch.from_numpy(np.asarray(ref.src.get(
                    f"model.layers.{l}.post_attention_layernorm.weight"), np.float64))
                hx = torch.from_numpy(hin)
                xn = hx * torch.rsqrt((hx * hx).mean(-1, keepdim=True) + ref.eps) * w
                with torch.no_grad():
                    out, idx = build(ref, mdir, l, False)(xn)
                rel = (np.linalg.norm(out.numpy() - hout, axis=1)
                       / np.linalg.norm(hout, axis=1)).max()
                rep.add(f"layer {l} in the model: output = memory(RMSNorm_post(input))",
                        rel <= 1e-12 and np.array_equal(idx.numpy(), hidx),
                        f"max rel {rel:.3g}, indices equal {np.array_equal(idx.numpy(), hidx)}")
                names = [k for k in ref.src.where if k.startswith(f"model.layers.{l}.mlp.")]
                rep.add(f"layer {l} has no mlp.* tensors", not names, f"{names}")
            if ref.pkm_layers[-1] == ref.L - 1:
                # Last block: logits = lm_head(norm(h + o)) -- the output is added to h and
                # nothing else is.
                l = ref.L - 1
                hin, hout = want[f"memory:{l}"][:2]
                hf = hin + hout
                x = rms_norm_np(hf, np.asarray(ref.src.get("model.norm.weight"), np.float64),
                                ref.eps)
                head = np.asarray(ref.src.get("lm_head.weight" if not ref.tied else
                                              "model.embed_tokens.weight"), np.float64)
                lg = x @ head.T
                rel = (np.linalg.norm(lg - want["logits"], axis=1)
                       / np.linalg.norm(want["logits"], axis=1)).max()
                rep.add("last block: logits = lm_head(norm(input + output))", rel <= 1e-12,
                        f"max rel {rel:.3g}")
        # Refusals: hc_mult > 1, an MLP tensor in a PKM block, a missing required value_proj.
        rep.case = "refusals"
        mdir = os.path.join(tmp, "defaults")
        bad = os.path.join(tmp, "bad")
        for label, edit in [
                ("hc_mult 2", lambda d: _edit_cfg(d, lambda c: c.update(hc_mult=2))),
                ("heads 1", lambda d: _edit_cfg(d, lambda c: c["product_key_memory"].update(
                    heads=1))),
                ("swilu_projection without value_proj", lambda d: _drop(d, [
                    "model.layers.1.memory.value_proj.weight",
                    "model.layers.1.memory.value_proj.bias"])),
                ("mlp tensor in a PKM block", lambda d: _add(d, {
                    "model.layers.1.mlp.down_proj.weight": np.zeros((64, 128), np.float32)}))]:
            ft.copy_model(mdir, bad)
            edit(bad)
            try:
                pkm_ref.Model(bad)
                rep.add(f"refuses {label}", False, "loaded")
            except ValueError as ex:
                rep.add(f"refuses {label}", True, str(ex).splitlines()[-1].strip()[:120])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fails = rep.failures()
    print(f"{len(rep.rows)} checks, {len(fails)} failed")
    for case in dict.fromkeys(r[0] for r in rep.rows):
        rows = [r for r in rep.rows if r[0] == case]
        nf = sum(1 for r in rows if not r[2])
        rels = [float(r[3].split("max rel ")[1].split()[0].rstrip(",")) for r in rows
                if "max rel" in r[3] and "literal" not in r[1]]
        lit = [float(r[3].split("max rel ")[1].split()[0].rstrip(",")) for r in rows
               if "max rel" in r[3] and "literal" in r[1]]
        print(f"  {case}: {'FAIL (' + str(nf) + ')' if nf else 'ok'} ({len(rows)} checks"
              + (f"; worst rel: float64 softmax {max(rels):.2g}" if rels else "")
              + (f", literal float32 softmax {max(lit):.2g}" if lit else "") + ")")
    for case, check, ok, info in fails:
        print(f"FAIL {case}: {check}: {info}")
    return 1 if fails else 0


def rms_norm_np(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _edit_cfg(d, fn):
    c = ft.load_config(d)
    fn(c)
    ft.save_config(d, c)


def _drop(d, names):
    p = os.path.join(d, "model.safetensors")
    tens, meta = st.load_raw_all(p)
    for n in names:
        del tens[n]
    st.save(p, tens, meta)


def _add(d, extra):
    p = os.path.join(d, "model.safetensors")
    tens, meta = st.load_raw_all(p)
    tens.update(extra)
    st.save(p, tens, meta)


# ----------------------------------------------------------------------------- main
def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--fake-engram-model":
        return fake_engram_model(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--harness-selftest", action="store_true",
                    help="check this harness against the stand-in tool with injected bugs")
    ap.add_argument("--reference-selftest", action="store_true",
                    help="check pkm_ref.py against a torch re-statement of the published module")
    ap.add_argument("--fake-tool", action="store_true",
                    help="use the stand-in tool (pkm_ref in float32; PKM_FAKE_BUG injects bugs)")
    ap.add_argument("--engram-model", help="path of the engram-model executable")
    ap.add_argument("--workdir", help="scratch directory (created; emptied per case)")
    ap.add_argument("--case", default="all", help="case name(s), comma-separated, or all")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the model directories")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if a.list:
        for k in CASES:
            print(k)
        return 0
    if a.reference_selftest:
        return reference_selftest(a.verbose)
    if a.harness_selftest:
        if not a.workdir:
            ap.error("--workdir is required")
        return harness_selftest(os.path.abspath(a.workdir))
    if not a.workdir or not (a.engram_model or a.fake_tool):
        ap.error("--engram-model (or --fake-tool) and --workdir are required")
    if a.fake_tool:
        tool = FakeTool()
    else:
        if not os.access(a.engram_model, os.X_OK):
            print(f"pkm_fidelity_test: {a.engram_model} is not an executable file",
                  file=sys.stderr)
            return 2
        tool = ft.Tool(a.engram_model)
    names = list(CASES) if a.case == "all" else a.case.split(",")
    for n in names:
        if n not in CASES:
            print(f"pkm_fidelity_test: unknown case {n}; known: {', '.join(CASES)}",
                  file=sys.stderr)
            return 2
    rep = ft.Report(a.verbose)
    t0 = time.time()
    for n in names:
        wd = os.path.join(os.path.abspath(a.workdir), n)
        if os.path.exists(wd):
            shutil.rmtree(wd)
        os.makedirs(wd)
        rep.case = n
        print(f"== {n}", flush=True)
        before_fail = len(rep.failures())
        try:
            CASES[n](rep, tool, wd, n)
        except Exception as ex:  # a crash in one case must not hide the others
            rep.add("case", False, f"{type(ex).__name__}: {ex}\n{traceback.format_exc()}")
        if not a.keep and len(rep.failures()) == before_fail:
            shutil.rmtree(wd, ignore_errors=True)
    fails = rep.failures()
    print(f"\n{len(rep.rows)} checks, {len(fails)} failed; {tool.calls} engram-model calls "
          f"({tool.seconds:.1f} s), {time.time() - t0:.1f} s total")
    worst = {}
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
