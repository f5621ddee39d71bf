"""Compressed-token table (DESIGN.md §2.1.1), computed independently from tokenizer.json.

Why this exists: Engram hashes compressed ids, so every hash id depends on this table. It is
rebuilt here from first principles (Python's unicodedata, no `tokenizers` package) to check the
C++ build of the same table.

What it reproduces is what the Engram reference demo gets from Hugging Face `tokenizers`:
  text = tokenizer.decode([id], skip_special_tokens=False)
  key  = raw token string  if U+FFFD in text
         else normalize(text) or text
  normalize = NFKC, NFD, StripAccents, Lowercase, Replace([ \\t\\r\\n]+ -> " "),
              Replace(^ $ -> U+E000), Strip, Replace(U+E000 -> " ")
  ids are numbered by first appearance of their key, ascending raw id.

Points where this follows HF `tokenizers` (Rust) semantics literally; each only matters for
unusual vocab entries, and each is switchable for diagnosis:
  * StripAccents removes every char of General_Category Mark (Mn, Mc, Me: Rust
    `is_combining_mark`), not only Mn (`--strip-marks Mn` restricts it to Mn).
  * Lowercase maps char by char (Rust `char::to_lowercase`), so no final-sigma rule.
  * Strip removes Unicode White_Space (Rust `char::is_whitespace`) at both ends.
  * The ByteLevel decoder maps a token through the inverse GPT-2 byte table only when every
    char of it is in the table, otherwise it takes the token's UTF-8 bytes; added tokens go
    through the same decoder (for ordinary added tokens like "<|eot|>" this is their content).
  * An id that no vocab entry names decodes to "" (its key is "").
  * The demo protects a lone " " from Strip by replacing it with the sentinel U+E000 and
    turning every U+E000 back into " " afterwards, so a token whose text contains U+E000 gets
    " " there. Reproduced literally (real vocabularies rarely hold U+E000).
"""
import json
import os
import unicodedata

import numpy as np

SENTINEL = "\uE000"
# Rust char::is_whitespace == Unicode White_Space.
WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
               "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_WS_RUN = set(" \t\r\n")


def bytes_to_unicode():
    """GPT-2's byte -> printable unicode char table."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_OF_CHAR = {c: b for b, c in bytes_to_unicode().items()}


def token_bytes(tok):
    """ByteLevel decoding of one token string."""
    out = bytearray()
    for c in tok:
        b = BYTE_OF_CHAR.get(c)
        if b is None:
            return tok.encode("utf-8")
        out.append(b)
    return bytes(out)


def collapse_ws(s):
    out = []
    prev_ws = False
    for c in s:
        if c in _WS_RUN:
            if not prev_ws:
                out.append(" ")
            prev_ws = True
        else:
            out.append(c)
            prev_ws = False
    return "".join(out)


def normalize(text, strip_marks="M"):
    s = unicodedata.normalize("NFKC", text)
    s = unicodedata.normalize("NFD", s)
    if strip_marks == "Mn":
        s = "".join(c for c in s if unicodedata.category(c) != "Mn")
    else:
        s = "".join(c for c in s if not unicodedata.category(c).startswith("M"))
    s = "".join(c.lower() for c in s)
    s = collapse_ws(s)
    if s == " ":
        s = SENTINEL
    s = s.strip(WHITE_SPACE)
    return s.replace(SENTINEL, " ")


def load_tokenizer_vocab(path):
    """{id: token string} from a Hugging Face tokenizer.json; added tokens win."""
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    model = tj.get("model") or {}
    dec = tj.get("decoder") or {}
    types = [dec.get("type")] + [d.get("type") for d in dec.get("decoders", []) or []]
    if "ByteLevel" not in types:
        raise ValueError(f"{path}: decoder {types} is not ByteLevel; only byte-level BPE "
                         "tokenizers are supported")
    vocab = model.get("vocab") or {}
    id2tok = {int(i): t for t, i in vocab.items()}
    for a in tj.get("added_tokens", []) or []:
        id2tok[int(a["id"])] = a["content"]
    return id2tok


def key_of(tok, strip_marks="M"):
    if tok is None:
        text = ""
    else:
        text = token_bytes(tok).decode("utf-8", errors="replace")
    if "\ufffd" in text:
        return tok
    norm = normalize(text, strip_marks)
    return norm if norm else text


def build_table(tokenizer_path, vocab_size, strip_marks="M"):
    """int64 [vocab_size] compressed ids, and the number of distinct keys."""
    id2tok = load_tokenizer_vocab(tokenizer_path)
    key2new = {}
    out = np.empty(vocab_size, dtype=np.int64)
    for tid in range(vocab_size):
        k = key_of(id2tok.get(tid), strip_marks)
        nid = key2new.get(k)
        if nid is None:
            nid = len(key2new)
            key2new[k] = nid
        out[tid] = nid
    return out, len(key2new)


def compressed_table(model_dir, vocab_size, strip_marks="M", prefer_file=True):
    """The model's table: engram-compress.safetensors when present (it wins), else built from
    tokenizer.json. Returns (table, source)."""
    from safetensors_np import SafetensorsFile
    p = os.path.join(model_dir, "engram-compress.safetensors")
    if prefer_file and os.path.exists(p):
        f = SafetensorsFile(p)
        t = f.get("compressed_ids")
        if f.dtype("compressed_ids") not in ("I64", "I32"):
            raise ValueError(f"{p}: compressed_ids has dtype {f.dtype('compressed_ids')}, "
                             "want I64 or I32")
        t = np.asarray(t, dtype=np.int64).reshape(-1)
        if t.shape[0] != vocab_size:
            raise ValueError(f"{p}: compressed_ids has {t.shape[0]} entries, vocab_size is "
                             f"{vocab_size}")
        return t, "file"
    t, _ = build_table(os.path.join(model_dir, "tokenizer.json"), vocab_size, strip_marks)
    return t, "tokenizer"
