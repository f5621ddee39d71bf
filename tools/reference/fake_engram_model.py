#!/usr/bin/python3
"""Stand-in for the C++ `engram-model` tool, built from the Python reference, for testing
the golden fidelity test itself (tests/golden/fidelity_test.py --engram-model THIS).

Why this exists: the fidelity test has to be developed and kept honest without the C++ tool:
  * `create` writes models with make_test_model.py (same flags as `engram-model create`);
  * `hash` is the reference's hash;
  * `forward` runs the reference in float32 (not float64), so the golden comparison sees real
    float32 rounding error and checks that its tolerance is not too tight; `--incremental`
    computes row t from the prefix tokens[0..t] alone.
Environment FAKE_ENGRAM_BUG=<name> injects a known bug, to show that the test catches it:
  conv_dilation1 (conv dilation 1 instead of N), keyq_eps (1e-5 for the key/query norms),
  no_floor_mod (truncated modulo), rope_interleaved (pairs 2i, 2i+1 instead of rotate-half).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import engram_ref  # noqa: E402
import make_test_model  # noqa: E402


def _inject(bug):
    if bug == "conv_dilation1":
        orig = engram_ref.Model.engram

        def engram(self, l, hashes, hidden):
            n = self.N
            self.N = 1
            try:
                return orig(self, l, hashes, hidden)
            finally:
                self.N = n
        engram_ref.Model.engram = engram
    elif bug == "keyq_eps":
        engram_ref.F32_EPS = 1e-5
    elif bug == "no_floor_mod":
        def ngram_hash(cids, multipliers, primes, pad_c):
            n_max = len(multipliers)
            out = []
            for t in range(len(cids)):
                x = [cids[t - k] if t - k >= 0 else pad_c for k in range(n_max)]
                prods = [engram_ref.wrap_i64(x[k] * int(multipliers[k])) for k in range(n_max)]
                row = []
                for n in range(2, n_max + 1):
                    mix = prods[0]
                    for k in range(1, n):
                        mix ^= prods[k]
                    for p in primes[n - 2]:
                        r = abs(mix) % p
                        row.append(-r if mix < 0 else r)
                out.append(row)
            return out
        engram_ref.ngram_hash = ngram_hash
    elif bug == "rope_interleaved":
        def rotate_half(x):
            y = np.empty_like(x)
            y[..., 0::2] = -x[..., 1::2]
            y[..., 1::2] = x[..., 0::2]
            return y
        engram_ref.rotate_half = rotate_half
    elif bug:
        raise SystemExit(f"unknown FAKE_ENGRAM_BUG {bug}")


def main():
    argv = sys.argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    _inject(os.environ.get("FAKE_ENGRAM_BUG", ""))
    if cmd == "create":
        return make_test_model.main(rest)
    if cmd == "hash":
        return engram_ref.main(["hash"] + rest)
    if cmd == "forward":
        return engram_ref.main(["forward", "--compute", "float32"] + rest)
    print(f"fake engram-model: unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
