#!/usr/bin/python3
"""Writes a small, valid engram-serve model directory (docs/model-format.md) with random weights.

Why this exists: the Python reference and the golden test need model directories that do not
come from the C++ `engram-model create` (to develop before it exists, and to exercise loader
paths it may not write: sharded weights, a shipped engram-compress table, every table dtype).

The tokenizer is a real byte-level BPE tokenizer.json: 256 byte tokens, merges that build
words and Unicode strings chosen to exercise the compression normalizer (case, accents, NFKC
ligatures, combining marks, Mc marks, whitespace runs, final sigma, partial UTF-8), filler
words up to the vocab size, and 3 special tokens at the end (<|bos|>, <|eos|>, <|pad|>).

  make_test_model.py --out DIR [--hidden 64] [--layers 2] [--heads 4] [--kv-heads 2]
      [--intermediate 128] [--vocab 512] [--engram-layers 0,1] [--max-ngram 3]
      [--heads-per-ngram 4] [--embed-per-ngram 64] [--engram-vocab-sizes 1000,1200]
      [--hc-mult 1] [--kernel-size 4] [--table-dtype float32|bfloat16|float16|float8_e4m3]
      [--dtype float32|bfloat16] [--seed 0] [--shards 1] [--write-compress none|int32|int64]
      [--tie-embeddings] [--compress-file] [--demo-multipliers]
      [--memory engram|pkm|engram,pkm] [--pkm-layers 1] [--pkm-n-keys 16] [--pkm-heads 2]
      [--pkm-knn 4] [--pkm-k-dim 16] [--pkm-v-dim HIDDEN] [--pkm-share-values [0|1]]
      [--pkm-swilu [0|1]] [--pkm-value-proj [0|1]] [--pkm-query-bias [0|1]]
      [--pkm-gated [0|1]] [--pkm-table-dtype float32|bfloat16|float16|float8_e4m3]

Product-key memory (DESIGN §2.4; tools/reference/pkm_ref.py): `--memory pkm` (or engram,pkm)
replaces the MLP of each --pkm-layers block by a memory (no mlp.* tensors there) and writes
its values table(s): memory-values.safetensors (shared) or memory-values-<l>.safetensors. The
flags are `engram-model create`'s; a bare boolean flag means 1. Defaults follow HashingMemory
(share_values, swilu_projection and query_bias on, gated off; value_proj exactly when
swilu_projection or v_dim != hidden). With --memory pkm, --engram-layers defaults to none and
config.json has no "engram" object; with engram,pkm it defaults to blocks 0,1 minus the PKM
blocks. PKM tensors are drawn from their own generator, so the rest of the model is the one
the same flags write without PKM (less the replaced MLPs).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402
from compress_ref import build_table, bytes_to_unicode  # noqa: E402
from engram_ref import compute_primes  # noqa: E402

B2U = bytes_to_unicode()

# Strings whose merged tokens exercise each step of the normalizer. (Not included: a token
# containing U+E000, which the demo's sentinel trick turns into " "; see compress_ref.py.)
SPECIAL_STRINGS = [
    "He", "he", " He", " he", "HE", "Hello", "hello", " hello", " Hello", "HELLO",
    "  ", "   ", "\n\n", " \n", "\t", " \t ", "\r\n", " a", "a ", " a ",
    "é", "É", "e\u0301", "\u0301", "ﬁ", "ﬁx", "Ⅳ", "²", "ß", "Straße", "Σ", "ΑΣ", "ας",
    "कि", "İ", "Ａ", "Ω", "\u00a0", "\u3000", "a\u200b", "Ã", "ã", "naïve", "Naive",
    "\u2028", " \u00a0 ", "\x1c\x1c", "€", "😀",
]
LETTERS = "etaoinshrdlucmfwypvbgkjqxz"


def tok_str(text):
    return "".join(B2U[b] for b in text.encode("utf-8"))


def make_tokenizer(vocab_size, rng):
    vocab = {}
    merges = []

    def add(t):
        if t not in vocab:
            vocab[t] = len(vocab)

    for b in range(256):
        add(B2U[b])
    n_specials = 3
    limit = vocab_size - n_specials

    def add_word(text):
        s = tok_str(text)
        chars = list(s)
        cur = chars[0]
        for c in chars[1:]:
            if len(vocab) >= limit:
                return
            nxt = cur + c
            if nxt not in vocab:
                merges.append(f"{cur} {c}")
                add(nxt)
            cur = nxt

    for s in SPECIAL_STRINGS:
        add_word(s)
    while len(vocab) < limit:
        n = int(rng.integers(2, 6))
        w = "".join(LETTERS[int(rng.integers(0, 12))] for _ in range(n))
        form = int(rng.integers(0, 4))
        w = [w, w.capitalize(), " " + w, " " + w.upper()][form]
        add_word(w)
    added = []
    for name in ("<|bos|>", "<|eos|>", "<|pad|>"):
        i = len(vocab)
        vocab[name] = i
        added.append({"id": i, "content": name, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    assert len(vocab) == vocab_size, (len(vocab), vocab_size)
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges},
    }
    return tj, {a["content"]: a["id"] for a in added}


def encode_float(a, dtype):
    """float array -> (safetensors dtype, raw stored array)."""
    a = np.asarray(a, dtype=np.float32)
    if dtype == "float32":
        return ("F32", a)
    if dtype == "bfloat16":
        return ("BF16", st.f32_to_bf16_bits(a))
    if dtype == "float16":
        return ("F16", a.astype(np.float16))
    raise ValueError(dtype)


def main(argv=None):
    ap = argparse.ArgumentParser(description="write a tiny engram-serve model directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--engram-layers", default=None, help="default 0,1 (see --memory)")
    ap.add_argument("--max-ngram", type=int, default=3)
    ap.add_argument("--heads-per-ngram", type=int, default=4)
    ap.add_argument("--embed-per-ngram", type=int, default=64)
    ap.add_argument("--engram-vocab-sizes", default=None)
    ap.add_argument("--hc-mult", type=int, default=1)
    ap.add_argument("--kernel-size", type=int, default=4)
    ap.add_argument("--table-dtype", default="float32",
                    choices=["float32", "bfloat16", "float16", "float8_e4m3"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--write-compress", default="none", choices=["none", "int32", "int64"])
    ap.add_argument("--tie-embeddings", action="store_true")
    ap.add_argument("--compress-file", action="store_true",
                    help="same as --write-compress int64 (the C++ tool's flag)")
    ap.add_argument("--demo-multipliers", action="store_true",
                    help="keep the demo's multipliers (no wrapping, no negative mixes)")
    ap.add_argument("--rms-norm-eps", type=float, default=1e-5)
    ap.add_argument("--memory", default="engram",
                    help="memory kinds: engram, pkm or engram,pkm")
    ap.add_argument("--pkm-layers", default=None)
    ap.add_argument("--pkm-n-keys", type=int, default=16)
    ap.add_argument("--pkm-heads", type=int, default=2)
    ap.add_argument("--pkm-knn", type=int, default=4)
    ap.add_argument("--pkm-k-dim", type=int, default=16)
    ap.add_argument("--pkm-v-dim", type=int, default=None, help="default: --hidden")
    for flag in ("share-values", "swilu", "value-proj", "query-bias", "gated"):
        ap.add_argument(f"--pkm-{flag}", type=int, choices=[0, 1], nargs="?", const=1,
                        default=None)
    ap.add_argument("--pkm-table-dtype", default="float32",
                    choices=["float32", "bfloat16", "float16", "float8_e4m3"])
    a = ap.parse_args(argv)
    kinds = [k for k in a.memory.replace(" ", "").split(",") if k]
    if not kinds or any(k not in ("engram", "pkm") for k in kinds):
        raise SystemExit(f"--memory {a.memory}: want engram, pkm or engram,pkm")
    pkm_ids = []
    if "pkm" in kinds:
        pkm_ids = ([int(x) for x in a.pkm_layers.split(",") if x != ""]
                   if a.pkm_layers is not None else [1 if a.layers > 1 else 0])
    if a.engram_layers is None:
        a.engram_layers = ("0,1" if kinds == ["engram"] else
                           ",".join(str(l) for l in (0, 1)
                                    if "engram" in kinds and l < a.layers and l not in pkm_ids))

    if a.compress_file and a.write_compress == "none":
        a.write_compress = "int64"
    rng = np.random.default_rng(a.seed)
    D, I, L, V = a.hidden, a.intermediate, a.layers, a.vocab
    nh, nkv = a.heads, a.kv_heads
    hd = D // nh
    N, H, E, M, w = a.max_ngram, a.heads_per_ngram, a.embed_per_ngram, a.hc_mult, a.kernel_size
    d = E // H
    if E % H or (a.table_dtype == "float8_e4m3" and d % 32):
        raise SystemExit("embed-per-ngram must be a multiple of heads-per-ngram "
                         "(of 32*heads for float8_e4m3)")
    layer_ids = [int(x) for x in a.engram_layers.split(",") if x != ""]
    if layer_ids and "engram" not in kinds:
        raise SystemExit("--engram-layers needs --memory engram or engram,pkm")
    evs = ([int(x) for x in a.engram_vocab_sizes.split(",")] if a.engram_vocab_sizes
           else [1000 + 200 * i for i in range(N - 1)])
    if len(evs) != N - 1:
        raise SystemExit("--engram-vocab-sizes takes N-1 values")
    os.makedirs(a.out, exist_ok=True)

    tj, specials = make_tokenizer(V, rng)
    tok_path = os.path.join(a.out, "tokenizer.json")
    with open(tok_path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    table, n_comp = build_table(tok_path, V)
    pad_id = specials["<|pad|>"]

    # Multipliers drawn as the reference demo does (odd, below int64 max / compressed vocab).
    half_bound = max(1, (np.iinfo(np.int64).max // n_comp) // 2)
    mults = {}
    for l in layer_ids:
        g = np.random.default_rng(a.seed + 10007 * l)
        r = g.integers(low=0, high=half_bound, size=(N,), dtype=np.int64)
        mults[l] = [int(x) * 2 + 1 for x in r]
    # Demo-drawn multipliers keep every product below 2^63 and every mix non-negative, so they
    # never exercise wrapping or the floored modulo. Unless --demo-multipliers, make the last
    # multiplier of each layer a large negative odd int64: products wrap and mixes go negative.
    if not a.demo_multipliers:
        for l in layer_ids:
            mults[l][-1] = -((1 << 62) + 2 * (mults[l][-1] % (1 << 40)) + 1)
    primes = compute_primes(layer_ids, N, H, evs)

    def lin(out_f, in_f):
        return rng.standard_normal((out_f, in_f)) / np.sqrt(in_f)

    def norm_w(n):
        return 1.0 + 0.1 * rng.standard_normal(n)

    t = {"model.embed_tokens.weight": rng.standard_normal((V, D))}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = lin(nh * hd, D)
        t[p + "self_attn.k_proj.weight"] = lin(nkv * hd, D)
        t[p + "self_attn.v_proj.weight"] = lin(nkv * hd, D)
        t[p + "self_attn.o_proj.weight"] = lin(D, nh * hd)
        mlp = {p + "mlp.gate_proj.weight": lin(I, D), p + "mlp.up_proj.weight": lin(I, D),
               p + "mlp.down_proj.weight": lin(D, I)}
        if i not in pkm_ids:  # drawn either way: the generator's stream stays the same
            t.update(mlp)
        t[p + "input_layernorm.weight"] = norm_w(D)
        t[p + "post_attention_layernorm.weight"] = norm_w(D)
        if i in layer_ids:
            K = (N - 1) * E
            pe = p + "engram."
            t[pe + "value_proj.weight"] = lin(D, K)
            t[pe + "value_proj.bias"] = 0.1 * rng.standard_normal(D)
            for m in range(M):
                t[pe + f"key_projs.{m}.weight"] = lin(D, K)
                t[pe + f"key_projs.{m}.bias"] = 0.1 * rng.standard_normal(D)
                t[pe + f"norm1.{m}.weight"] = norm_w(D)
                t[pe + f"norm2.{m}.weight"] = norm_w(D)
                t[pe + f"short_conv.norms.{m}.weight"] = norm_w(D)
            t[pe + "short_conv.conv.weight"] = 0.5 * rng.standard_normal((M * D, 1, w))
    t["model.norm.weight"] = norm_w(D)
    if not a.tie_embeddings:
        t["lm_head.weight"] = lin(V, D)
    pkm_cfg, pkm_tables = None, {}
    if pkm_ids:
        pkm_cfg, pt, pkm_tables = pkm_tensors(a, pkm_ids, layer_ids, D)
        t.update(pt)
    enc = {k: encode_float(v, a.dtype) for k, v in t.items()}

    names = list(enc.keys())
    for fn in os.listdir(a.out):
        if fn.startswith("model") and (fn.endswith(".safetensors") or fn.endswith(".json")):
            os.remove(os.path.join(a.out, fn))
    if a.shards <= 1:
        st.save(os.path.join(a.out, "model.safetensors"), enc, {"format": "pt"})
    else:
        wm = {}
        for s in range(a.shards):
            fn = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
            part = {k: enc[k] for k in names[s::a.shards]}
            st.save(os.path.join(a.out, fn), part, {"format": "pt"})
            wm.update({k: fn for k in part})
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": wm}, f, indent=1)

    table_files = {}
    for l in layer_ids:
        rows = sum(sum(ps) for ps in primes[l])
        name = f"model.layers.{l}.engram.multi_head_embedding.embedding.weight"
        fn = f"engram-layer-{l}.safetensors"
        if a.table_dtype == "float8_e4m3":
            q = rng.integers(0, 256, size=(rows, d), dtype=np.uint8)
            q[(q & 0x7F) == 0x7F] = 0x38  # no NaN codes
            sc = (127 + rng.integers(-3, 4, size=(rows, d // 32))).astype(np.uint8)
            tens = {name: ("F8_E4M3", q), name + "_scale": ("U8", sc)}
        else:
            tens = {name: encode_float(rng.standard_normal((rows, d)), a.table_dtype)}
        st.save(os.path.join(a.out, fn), tens)
        table_files[str(l)] = fn
    cp = os.path.join(a.out, "engram-compress.safetensors")
    if a.write_compress != "none":
        st.save(cp, {"compressed_ids": table.astype(a.write_compress)})
    elif os.path.exists(cp):
        os.remove(cp)

    for fn, tens in pkm_tables.items():
        st.save(os.path.join(a.out, fn), tens)
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": D, "intermediate_size": I, "num_hidden_layers": L,
        "num_attention_heads": nh, "num_key_value_heads": nkv, "head_dim": hd,
        "rms_norm_eps": a.rms_norm_eps, "rope_theta": 10000.0, "vocab_size": V,
        "max_position_embeddings": 256, "tie_word_embeddings": bool(a.tie_embeddings),
        "bos_token_id": specials["<|bos|>"], "eos_token_id": specials["<|eos|>"],
        "torch_dtype": a.dtype,
        "engram": {
            "layer_ids": layer_ids, "max_ngram_size": N, "n_embed_per_ngram": E,
            "n_head_per_ngram": H, "engram_vocab_size": evs, "kernel_size": w,
            "hc_mult": M, "pad_id": pad_id, "seed": a.seed,
            "multipliers": {str(l): mults[l] for l in layer_ids},
            "head_vocab_sizes": {str(l): primes[l] for l in layer_ids},
            "table_dtype": a.table_dtype, "table_files": table_files,
        },
    }
    if pkm_cfg is not None:
        cfg["hc_mult"] = M
        cfg["product_key_memory"] = pkm_cfg
        if "engram" not in kinds:
            del cfg["engram"]
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return 0


def pkm_tensors(a, pkm_ids, engram_ids, D):
    """(config object, backbone tensors {name: float array}, table files {file: tensors}) of
    the product-key memory layers (DESIGN §2.4), from their own generator."""
    rng = np.random.default_rng(a.seed + 7919)
    n, H, k, kd = a.pkm_n_keys, a.pkm_heads, a.pkm_knn, a.pkm_k_dim
    vd = a.pkm_v_dim if a.pkm_v_dim is not None else D
    share = bool(1 if a.pkm_share_values is None else a.pkm_share_values)
    swilu = bool(1 if a.pkm_swilu is None else a.pkm_swilu)
    qbias = bool(1 if a.pkm_query_bias is None else a.pkm_query_bias)
    gated = bool(0 if a.pkm_gated is None else a.pkm_gated)
    need_vp = swilu or vd != D
    vproj = need_vp if a.pkm_value_proj is None else bool(a.pkm_value_proj)
    errs = []
    if need_vp and not vproj:
        errs.append("--pkm-value-proj 0 needs no swilu and --pkm-v-dim == --hidden")
    if H < 2 or kd < 2 or kd % 2 or not 1 <= k <= n:
        errs.append("want --pkm-heads >= 2, an even --pkm-k-dim, 1 <= --pkm-knn <= --pkm-n-keys")
    if a.pkm_table_dtype == "float8_e4m3" and vd % 32:
        errs.append("float8_e4m3 values need --pkm-v-dim % 32 == 0")
    if set(pkm_ids) & set(engram_ids) or any(not 0 <= l < a.layers for l in pkm_ids) \
            or pkm_ids != sorted(set(pkm_ids)):
        errs.append("--pkm-layers: ascending blocks in range, none with an Engram layer")
    if a.hc_mult != 1:
        errs.append("product-key memory needs --hc-mult 1")
    if errs:
        raise SystemExit("; ".join(errs))
    t = {}
    for l in pkm_ids:
        p = f"model.layers.{l}.memory."
        # Scores q1.K ~ N(0, 1): keys N(0, 1/(k_dim/2)), queries ~ N(0, 1) per entry.
        t[p + "keys"] = rng.standard_normal((2 * H * n, kd // 2)) / np.sqrt(kd // 2)
        t[p + "query_proj.weight"] = rng.standard_normal((H * kd, D)) / np.sqrt(D)
        if qbias:
            t[p + "query_proj.bias"] = 0.1 * rng.standard_normal(H * kd)
        if swilu:
            t[p + "swilu_projection.weight"] = rng.standard_normal((vd, D)) / np.sqrt(D)
            t[p + "swilu_projection.bias"] = 0.1 * rng.standard_normal(vd)
        if vproj:
            t[p + "value_proj.weight"] = rng.standard_normal((D, vd)) / np.sqrt(vd)
            t[p + "value_proj.bias"] = 0.1 * rng.standard_normal(D)
        if gated:
            t[p + "gating.weight"] = rng.standard_normal((1, D)) / np.sqrt(D)
            t[p + "gating.bias"] = 0.1 * rng.standard_normal(1)
    keys = ["shared"] if share else [str(l) for l in pkm_ids]
    files, tables = {}, {}
    for key in keys:
        fn = "memory-values.safetensors" if share else f"memory-values-{key}.safetensors"
        name = ("model.memory.values.weight" if share
                else f"model.layers.{key}.memory.values.weight")
        rows = n * n
        if a.pkm_table_dtype == "float8_e4m3":
            q = rng.integers(0, 256, size=(rows, vd), dtype=np.uint8)
            q[(q & 0x7F) == 0x7F] = 0x38  # no NaN codes
            sc = (127 + rng.integers(-3, 4, size=(rows, vd // 32))).astype(np.uint8)
            tables[fn] = {name: ("F8_E4M3", q), name + "_scale": ("U8", sc)}
        else:
            tables[fn] = {name: encode_float(rng.standard_normal((rows, vd)), a.pkm_table_dtype)}
        files[key] = fn
    cfg = {"layer_ids": pkm_ids, "n_keys": n, "heads": H, "knn": k, "k_dim": kd, "v_dim": vd,
           "share_values": share, "swilu_projection": swilu, "query_bias": qbias,
           "gated": gated, "table_dtype": a.pkm_table_dtype, "table_files": files}
    return cfg, t, tables


if __name__ == "__main__":
    sys.exit(main())
