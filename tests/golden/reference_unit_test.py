#!/usr/bin/python3
"""Unit tests of the Python reference (tools/reference/), runnable without the C++ tool.

  /usr/bin/python3 tests/golden/reference_unit_test.py [-v]

Why this exists: the golden test trusts engram_ref.py, so engram_ref.py is itself checked
against a second, differently structured implementation: PyTorch 1.13 (Debian python3-torch)
in float64 with the reference demo's layout (nn.Conv1d depthwise with left padding and
truncation, the demo's gate expression, Hugging Face Llama's rotate_half / repeat_kv
attention), against numpy int64 vectorized hashing as the demo does it, against brute-force
prime search, and against hand-computed values for the decoders and the normalizer.
"""
import json
import math
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools", "reference"))
import compress_ref  # noqa: E402
import engram_ref  # noqa: E402
import make_test_model  # noqa: E402
import safetensors_np as st  # noqa: E402

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None

_TMP = None


def model_dir(name, *args):
    """A model written by make_test_model.py, cached per process."""
    d = os.path.join(_TMP, name)
    if not os.path.exists(d):
        make_test_model.main(["--out", d] + list(args))
    return d


class Decoders(unittest.TestCase):
    def test_e4m3(self):
        t = st.E4M3_TABLE
        self.assertEqual(t[0x00], 0.0)
        self.assertEqual(t[0x38], 1.0)          # exp 7 (bias 7), mantissa 0
        self.assertEqual(t[0x7E], 448.0)        # max finite
        self.assertEqual(t[0xFE], -448.0)
        self.assertEqual(t[0x01], 2.0 ** -9)    # smallest subnormal: 2^-6 * 1/8
        self.assertEqual(t[0x07], 7 * 2.0 ** -9)
        self.assertEqual(t[0x08], 2.0 ** -6)    # smallest normal
        self.assertEqual(t[0x3C], 1.5)
        self.assertEqual(t[0xC0], -2.0)
        self.assertTrue(math.isnan(t[0x7F]) and math.isnan(t[0xFF]))
        self.assertEqual(int(np.isnan(t).sum()), 2)
        self.assertTrue(math.copysign(1.0, t[0x80]) < 0)

    @unittest.skipIf(torch is None, "torch not importable")
    def test_bf16_matches_torch(self):
        rng = np.random.default_rng(1)
        x = (rng.standard_normal(4096) * 10.0 ** rng.integers(-30, 30, 4096)).astype(np.float32)
        bits = st.f32_to_bf16_bits(x)
        tb = torch.from_numpy(x).to(torch.bfloat16)
        np.testing.assert_array_equal(st.bf16_bits_to_f32(bits), tb.float().numpy())
        raw = rng.integers(0, 1 << 16, 4096).astype(np.uint16)
        raw = raw[((raw >> 7) & 0xFF) != 0xFF]  # finite only
        want = torch.from_numpy(raw.astype(np.int16)).view(torch.bfloat16).float().numpy()
        np.testing.assert_array_equal(st.bf16_bits_to_f32(raw), want)

    def test_safetensors_roundtrip_and_validation(self):
        p = os.path.join(_TMP, "rt.safetensors")
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        st.save(p, {"a": a, "b": ("BF16", st.f32_to_bf16_bits(a)),
                    "c": np.array([-1, 5], dtype=np.int64), "s": ("F16", a.astype(np.float16))})
        f = st.SafetensorsFile(p)
        np.testing.assert_array_equal(f.get("a"), a)
        np.testing.assert_array_equal(f.get("b"), a)
        np.testing.assert_array_equal(f.get("s"), a)
        np.testing.assert_array_equal(f.get("c"), [-1, 5])
        self.assertEqual(f.data_start % 8, 0)
        with open(p, "r+b") as fh:  # corrupt the header length
            fh.write((10 ** 9).to_bytes(8, "little"))
        with self.assertRaises(ValueError):
            st.SafetensorsFile(p)


class Compression(unittest.TestCase):
    def test_normalizer(self):
        n = compress_ref.normalize
        cases = {"Hello": "hello", " He": "he", "HE": "he", "  ": " ", " ": " ",
                 "\n\n": " ", " \t ": " ", "é": "e", "É": "e", "e\u0301": "e", "ﬁ": "fi",
                 "Ⅳ": "iv", "²": "2", "Ａ": "a", "Ω": "ω", "ΑΣ": "ασ", "Straße": "straße",
                 "\u00a0": " ", "a\u200b": "a\u200b", " a ": "a", "\u3000": " ",
                 "\u2028": "", "\u0301": "", "कि": "क", "İ": "i", "naïve": "naive",
                 "\ue000": " "}
        for text, want in cases.items():
            self.assertEqual(n(text), want, repr(text))
        self.assertEqual(n("कि", "Mn"), "कि")  # U+093F is Mc: kept when only Mn is stripped

    def test_keys(self):
        k = compress_ref.key_of
        b2u = compress_ref.bytes_to_unicode()
        self.assertEqual(k(b2u[0x20]), " ")                  # "Ġ" -> " "
        self.assertEqual(k(b2u[0xC3]), b2u[0xC3])            # lone lead byte -> raw string
        self.assertEqual(k(b2u[0xCC] + b2u[0x81]), "\u0301")  # normalizes to "" -> raw text
        self.assertEqual(k("<|eos|>"), "<|eos|>")
        self.assertEqual(k(None), "")
        self.assertEqual(k("H" + b2u[0x20]), "h")

    def test_table_first_appearance(self):
        d = model_dir("m_default")
        t, n = compress_ref.build_table(os.path.join(d, "tokenizer.json"), 512)
        self.assertEqual(t[0], 0)
        seen = -1
        for v in t:  # new ids appear in increasing order
            if v > seen:
                self.assertEqual(v, seen + 1)
                seen = v
        self.assertEqual(seen + 1, n)
        vocab = compress_ref.load_tokenizer_vocab(os.path.join(d, "tokenizer.json"))
        inv = {tok: i for i, tok in vocab.items()}
        tk = make_test_model.tok_str
        self.assertEqual(t[inv[tk("Hello")]], t[inv[tk("hello")]])
        self.assertEqual(t[inv[tk(" hello")]], t[inv[tk("hello")]])
        self.assertEqual(t[inv[tk("é")]], t[inv[tk("e")]])
        self.assertEqual(t[inv[tk("  ")]], t[inv[tk(" ")]])
        self.assertNotEqual(t[inv[tk("a")]], t[inv[tk("b")]])


class Hashing(unittest.TestCase):
    def test_primes_bruteforce(self):
        def brute(layer_ids, N, H, evs):
            seen, out = set(), {}
            for l in layer_ids:
                out[l] = []
                for n in range(2, N + 1):
                    s, hs = evs[n - 2] - 1, []
                    for _ in range(H):
                        c = s + 1
                        while c in seen or c < 2 or any(c % q == 0 for q in range(2, int(c ** .5) + 1)):
                            c += 1
                        seen.add(c)
                        hs.append(c)
                        s = c
                    out[l].append(hs)
            return out
        for args in [([0, 1], 3, 4, [1000, 1200]), ([1, 5, 7], 4, 8, [100, 100, 150]),
                     ([2], 2, 1, [2])]:
            self.assertEqual(engram_ref.compute_primes(*args), brute(*args))

    def test_against_numpy_int64(self):
        """The demo's vectorized numpy int64 hashing (wrapping multiply, floored %)."""
        rng = np.random.default_rng(0)
        for N in (2, 3, 4):
            mult = [int(x) | 1 for x in rng.integers(-(1 << 63), (1 << 63) - 1, N,
                                                     dtype=np.int64)]
            primes = engram_ref.compute_primes([0], N, 3, [50 + 40 * i for i in range(N - 1)])[0]
            cids = [int(x) for x in rng.integers(0, 5000, 37)]
            pad = 4321
            got = engram_ref.ngram_hash(cids, mult, primes, pad)
            x = np.asarray(cids, dtype=np.int64)[None, :]
            shifts = [np.pad(x, ((0, 0), (k, 0)), constant_values=pad)[:, :x.shape[1]]
                      for k in range(N)]
            m = np.asarray(mult, dtype=np.int64)
            cols = []
            with np.errstate(over="ignore"):
                for n in range(2, N + 1):
                    mix = shifts[0] * m[0]
                    for k in range(1, n):
                        mix = np.bitwise_xor(mix, shifts[k] * m[k])
                    for p in primes[n - 2]:
                        cols.append(mix % p)
            want = np.stack(cols, axis=2)[0]
            self.assertTrue((want >= 0).all())
            np.testing.assert_array_equal(np.asarray(got), want)

    def test_wrap_and_floor(self):
        self.assertEqual(engram_ref.wrap_i64(1 << 63), -(1 << 63))
        self.assertEqual(engram_ref.wrap_i64(-1), -1)
        # mix = x0*m0 wraps to a negative value; floored modulo stays in [0, p)
        h = engram_ref.ngram_hash([3], [(1 << 62) + 1, 1], [[7]], 0)
        mix = engram_ref.wrap_i64(3 * ((1 << 62) + 1)) ^ 0
        self.assertLess(mix, 0)
        self.assertEqual(h[0][0], mix % 7)
        self.assertEqual(h[0][0], (mix % 7 + 7) % 7)


@unittest.skipIf(torch is None, "torch not importable")
class AgainstTorch(unittest.TestCase):
    """engram_ref (numpy) against a PyTorch float64 implementation laid out like the demo."""

    def torch_forward(self, m, ids):
        dt = torch.float64
        W = lambda n: torch.from_numpy(np.asarray(m.src.get(n), dtype=np.float64))  # noqa: E731

        def rms(x, w, eps):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

        T = len(ids)
        _, hashes = m.hash_ids(ids)
        emb = W("model.embed_tokens.weight")
        h = emb[torch.tensor(ids)].unsqueeze(1).expand(T, m.M, m.D).clone()
        dumps = {}
        for i in range(m.L):
            if i in m.layer_ids:
                pre = f"model.layers.{i}.engram."
                sizes = [p for ps in m.primes[i] for p in ps]
                offs = torch.tensor([0] + list(np.cumsum(sizes)[:-1]), dtype=torch.long)
                tab = torch.from_numpy(np.asarray(m.table_rows(i, np.arange(sum(sizes))),
                                                  dtype=np.float64))
                e = F.embedding(torch.tensor(hashes[i]) + offs, tab).flatten(-2)
                gates = []
                for c in range(m.M):
                    key = F.linear(e, W(pre + f"key_projs.{c}.weight"), W(pre + f"key_projs.{c}.bias"))
                    nk = rms(key, W(pre + f"norm1.{c}.weight"), torch.finfo(torch.float32).eps)
                    nq = rms(h[:, c, :], W(pre + f"norm2.{c}.weight"), torch.finfo(torch.float32).eps)
                    g = (nk * nq).sum(-1) / math.sqrt(m.D)
                    g = g.abs().clamp_min(1e-6).sqrt() * g.sign()
                    gates.append(g.sigmoid().unsqueeze(-1))
                gates = torch.stack(gates, dim=1)  # [T, M, 1]
                value = gates * F.linear(e, W(pre + "value_proj.weight"),
                                         W(pre + "value_proj.bias")).unsqueeze(1)
                conv = nn.Conv1d(m.M * m.D, m.M * m.D, m.w, groups=m.M * m.D, bias=False,
                                 padding=(m.w - 1) * m.N, dilation=m.N).to(dt)
                conv.weight.data = W(pre + "short_conv.conv.weight")
                normed = torch.cat([rms(value[:, c, :], W(pre + f"short_conv.norms.{c}.weight"),
                                        1e-5) for c in range(m.M)], dim=-1)
                y = conv(normed.t().unsqueeze(0))[..., :T][0].t()
                y = F.silu(y).reshape(T, m.M, m.D)
                out = value + y
                dumps[f"engram:{i}"] = (h.clone(), out)
                h = h + out
            p = f"model.layers.{i}."
            x = rms(h.mean(1), W(p + "input_layernorm.weight"), m.eps)
            q = F.linear(x, W(p + "self_attn.q_proj.weight")).view(T, m.nh, m.hd).transpose(0, 1)
            k = F.linear(x, W(p + "self_attn.k_proj.weight")).view(T, m.nkv, m.hd).transpose(0, 1)
            v = F.linear(x, W(p + "self_attn.v_proj.weight")).view(T, m.nkv, m.hd).transpose(0, 1)
            inv = 1.0 / (m.theta ** (torch.arange(0, m.hd, 2, dtype=dt) / m.hd))
            fr = torch.outer(torch.arange(T, dtype=dt), inv)
            embp = torch.cat([fr, fr], -1)
            cos, sin = embp.cos(), embp.sin()

            def rot(t):
                return torch.cat([-t[..., m.hd // 2:], t[..., :m.hd // 2]], -1)
            q = q * cos + rot(q) * sin
            k = k * cos + rot(k) * sin
            rep = m.nh // m.nkv
            k = k.repeat_interleave(rep, 0)
            v = v.repeat_interleave(rep, 0)
            sc = q @ k.transpose(-1, -2) / math.sqrt(m.hd)
            sc = sc.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
            a = (sc.softmax(-1) @ v).transpose(0, 1).reshape(T, -1)
            h = h + F.linear(a, W(p + "self_attn.o_proj.weight")).unsqueeze(1)
            x = rms(h.mean(1), W(p + "post_attention_layernorm.weight"), m.eps)
            f = F.linear(F.silu(F.linear(x, W(p + "mlp.gate_proj.weight")))
                         * F.linear(x, W(p + "mlp.up_proj.weight")), W(p + "mlp.down_proj.weight"))
            h = h + f.unsqueeze(1)
        x = rms(h.mean(1), W("model.norm.weight"), m.eps)
        head = emb if m.tied else W("lm_head.weight")
        return F.linear(x, head), dumps

    def check(self, mdir, ids):
        m = engram_ref.Model(mdir)
        got = m.forward(ids, {f"engram:{l}" for l in m.layer_ids})
        with torch.no_grad():
            want, dumps = self.torch_forward(m, ids)
        np.testing.assert_allclose(got["logits"], want.numpy(), rtol=1e-10, atol=1e-10)
        for k, (wi, wo) in dumps.items():
            np.testing.assert_allclose(got[k][0], wi.numpy(), rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(got[k][1], wo.numpy(), rtol=1e-10, atol=1e-10)
        inc = m.forward_incremental(ids, {f"engram:{m.layer_ids[-1]}"})
        np.testing.assert_allclose(inc["logits"], got["logits"], rtol=1e-10, atol=1e-10)

    def test_m1_n3(self):
        self.check(model_dir("m_default"), [511, 5, 300, 510, 7, 7, 7, 1, 2, 3, 4, 5, 6, 0, 509])

    def test_m4_n4_fp8_bf16_sharded_tied(self):
        d = model_dir("m_hc4", "--hc-mult", "4", "--max-ngram", "4", "--heads-per-ngram", "2",
                      "--embed-per-ngram", "64", "--table-dtype", "float8_e4m3", "--dtype",
                      "bfloat16", "--shards", "3", "--tie-embeddings", "--write-compress", "int32",
                      "--layers", "3", "--engram-layers", "1,2", "--kernel-size", "3")
        self.check(d, [3, 511, 511, 9, 100, 200, 300, 400, 500, 1, 2, 3, 4, 5, 6, 7, 8])

    def test_n2_h1_f16(self):
        d = model_dir("m_n2", "--max-ngram", "2", "--heads-per-ngram", "1", "--table-dtype",
                      "float16", "--engram-layers", "1")
        self.check(d, [42])
        self.check(d, [42, 511, 42, 0, 1, 2, 3, 4])


class Cli(unittest.TestCase):
    """The CLI prints what the in-process API computes, in the engram-model JSON formats."""

    def run_cli(self, *args):
        import subprocess
        p = subprocess.run([sys.executable, os.path.join(REPO, "tools", "reference", "engram_ref.py")]
                           + list(args), capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def test_cli(self):
        d = model_dir("m_hc2", "--hc-mult", "2")
        m = engram_ref.Model(d)
        ids = [511, 3, 4, 509]
        h = self.run_cli("hash", "--model", d, "--token-ids", ",".join(map(str, ids)))
        cids, hashes = m.hash_ids(ids)
        self.assertEqual(h["compressed_ids"], cids)
        self.assertEqual(h["layers"], {str(k): v for k, v in hashes.items()})
        res = m.forward(ids, {"engram:1"})
        lg = self.run_cli("forward", "--model", d, "--token-ids", "511,3,4,509", "--dump", "logits")
        np.testing.assert_allclose(lg["logits"], res["logits"], rtol=1e-8)
        en = self.run_cli("forward", "--model", d, "--token-ids", "511,3,4,509", "--dump",
                          "engram:1", "--incremental")
        self.assertEqual(np.asarray(en["input"]).shape, (4, 2, m.D))
        np.testing.assert_allclose(en["input"], res["engram:1"][0], rtol=1e-8)
        np.testing.assert_allclose(en["output"], res["engram:1"][1], rtol=1e-8)
        c = self.run_cli("compress", "--model", d)
        self.assertEqual(c["compressed_ids"], [int(x) for x in m.compress])


class ModelChecks(unittest.TestCase):
    def test_rejects_bad_config(self):
        src = model_dir("m_default")
        d = os.path.join(_TMP, "m_bad")
        shutil.copytree(src, d)
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        cfg["engram"]["multipliers"]["0"][0] += 1  # even
        cfg["engram"]["head_vocab_sizes"]["1"][0][0] = 1031 + 2
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        with self.assertRaises(ValueError) as cm:
            engram_ref.Model(d)
        self.assertIn("even", str(cm.exception))
        self.assertIn("recomputed primes", str(cm.exception))

    def test_compress_file_wins(self):
        d = model_dir("m_cf", "--write-compress", "int64")
        m = engram_ref.Model(d)
        self.assertEqual(m.compress_source, "file")
        st.save(os.path.join(d, "engram-compress.safetensors"),
                {"compressed_ids": np.zeros(512, dtype=np.int64)})
        m = engram_ref.Model(d)
        self.assertEqual(m.compress_ids([1, 2, 511]), [0, 0, 0])


def main():
    global _TMP
    _TMP = tempfile.mkdtemp(prefix="engram-ref-unit-")
    try:
        return unittest.main(module=sys.modules[__name__], exit=False,
                             verbosity=2 if "-v" in sys.argv else 1).result
    finally:
        shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    r = main()
    sys.exit(0 if r.wasSuccessful() else 1)
