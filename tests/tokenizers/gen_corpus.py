#!/usr/bin/python3
"""Generates the tokenizer comparison corpus (JSON lines, one string per line), deterministically.

The C++ tokenizer and Tokenizers.js both encode and decode every string of this corpus with the
three real tokenizers (DeepSeek-V3, Llama 3, Qwen 3); see compare.py. The corpus aims at the places
where a byte-level BPE implementation can go wrong: the pre-tokenizer regexes (contractions,
letter/number/punctuation classes, digit grouping, whitespace runs and the `\\s+(?!\\S)` rule,
CJK ranges), Unicode normalization (Qwen's NFC), the byte-to-char map for every UTF-8 length,
added tokens inside text (each tokenizer's own and the other two's), and long inputs.

  /usr/bin/python3 tests/tokenizers/gen_corpus.py --out corpus.jsonl [--seed 8]

The same seed always gives the same file (Python's `random` is stable across versions for the
calls used here: random(), randint(), choice(), shuffle()).
"""
import argparse
import json
import random
import unicodedata

# Added tokens of the three tokenizers (each is plain text to the other two).
ADDED_TOKENS = [
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>",
    "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<|EOT|>", "<｜tool▁calls▁begin｜>",
    "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>",
    "<｜place▁holder▁no▁17｜>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eot_id|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_250|>", "<|finetune_right_pad_id|>", "<|python_tag|>",
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>",
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|repo_name|>", "<|file_sep|>",
    # Near misses: must not match an added token.
    "<|im_start", "<think >", "<|eot_id|", "<｜User|>", "<|endoftext|>>",
]

HANDWRITTEN = [
    "", " ", "  ", "a", "Hello world", "hello world", " Hello  world ", "Hello, world!",
    "I'm don't you'll we've they're he'd She'S IT'S WE'VE", "'s 't 're 've 'm 'll 'd",
    "It's 2024-05-17 at 12:34:56.789, pi=3.14159265358979",
    "   leading and trailing   ", "tabs\tand\nnewlines\r\nand\r\rcarriage", "\n", "\n\n\n",
    "\r\n", "\r\n\r\n", " \r\n ", "  \n  \n", "x  \n\n  y", "\t", "\t\t\t\t\t", " \t \t",
    "line one\r\nline two\r\n", "trailing newline\n", "\nleading newline",
    "中文字符测试，这是一个句子。", "日本語のテキスト、ひらがなとカタカナ（テスト）です。",
    "ｶﾀｶﾅ ﾊﾝｶｸ", "한국어 텍스트 입니다", "العربية نص تجريبي", "مَرْحَبًا بِكُمْ", "עברית טקסט",
    "Ελληνικά κείμενο ΣΊΣΥΦΟΣ", "Русский текст, ЁЖИК!", "हिन्दी पाठ परीक्षण", "ไทย ภาษา",
    "Emoji 😀😃🎉 and ZWJ 👨‍👩‍👧‍👦 and flags 🇺🇸🇯🇵 skin 👍🏽", "🏳️‍🌈 🧑🏿‍💻 ❤️‍🔥 1️⃣ #️⃣",
    "e\u0301 café cafe\u0301 naïve Å Å", "ﬁ ligature ① ½ ｆｕｌｌｗｉｄｔｈ",
    "def f(x):\n    return x**2  # comment\n", "if (a && b || !c) { return; }",
    "<html><body class=\"x\">Hi</body></html>", "https://example.com/path?q=1&r=2#frag",
    "email@example.com", "$100.00 €50 ¥1000 £20", "!!!???...,,,;;;",
    "don’t curly ‘quotes’ “double”", "\u00a0nbsp\u00a0\u3000ideographic\u3000space",
    "\u0085nel\u2028ls\u2029ps", "zero\u200bwidth\u200cjoiner\u200d", "\ufeffBOM at start",
    "mixed中English混合text", "数字123和456汉字", "ＡＢＣ１２３", "ǅ ǈ ǋ Ǆ", "İstanbul ıi",
    "Straße STRASSE", "a\u0300\u0301\u0302\u0303 stacked", "\U0001F600\U0001F601 astral "
    "\U00010348 gothic", "ab" * 50, "a" * 300, " " * 17 + "x", "x" + " " * 17, "-" * 40,
    "=" * 33 + "\n", "0" * 25, "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX", "Supercalifragilisticexpialidocious",
    "<|begin_of_text|>hi<|end_of_text|>", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>"
    "assistant\n", "<think>reasoning</think>answer", "<｜begin▁of▁sentence｜>hello<｜end▁of▁sentence｜>",
    "<｜User｜>hi<｜Assistant｜>", "text<|endoftext|>more", "<|im_start|><|im_start|>",
    "<tool_call>{\"a\":1}</tool_call>", " <|eot_id|> ", "\n<|im_end|>\n", "<think>\n\n</think>\n\n",
    "\x00\x01\x1f\x7f control", "\U0010FFFD last plane", "\ue000 private use",
]

WORDS = (
    "the of and to in is you that it he was for on are as with his they I at be this have from "
    "or one had by word but not what all were we when your can said there use an each which she "
    "do how their if will up other about out many then them these so some her would make like "
    "him into time has look two more write go see number no way could people my than first "
    "water been call who oil its now find long down day did get come made may part model token "
    "memory engram server request latency throughput kernel table cache prefetch GPU CPU"
).split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M",
                "'LL", "'D", "’s", "’t"]
CHINESE = ("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生"
           "自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好"
           "看学进种将还分此心前面又定见只主没公从模型服务器内存缓存计算")
HIRAGANA = "".join(chr(c) for c in range(0x3041, 0x3097))
KATAKANA = "".join(chr(c) for c in range(0x30A1, 0x30FB)) + "ー"
HALFWIDTH_KANA = "".join(chr(c) for c in range(0xFF66, 0xFF9E))
KANJI = "日本語漢字東京大阪時間今年学生先生電話会社"
ARABIC = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"
ARABIC_MARKS = "\u064b\u064c\u064d\u064e\u064f\u0650\u0651\u0652"
SCRIPTS = [
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖ", "αβγδεζηθικλμνξοπρσςτυφχψωΑΒΓΔΣΩάέήί",
    "אבגדהוזחטיכלמנסעפצקרשת", "कखगघङचछजझञटठडढणतथदधनपफबभमयरलवशषसह\u093e\u093f\u0940\u094d",
    "กขคงจฉชซญดตถทนบปผพฟภมยรลวศษสหอฮะาิีึืุู", "가나다라마바사아자차카타파하한국어글",
    "ԱԲԳԴԵԶ", "ႠႡႢႣ", "ᚠᚢᚦᚨᚱ", "ⴰⴱⴳⴷ",
]
EMOJI = ["😀", "😂", "🎉", "👍", "👍🏽", "👍🏿", "❤️", "❤", "🔥", "🚀", "🇺🇸", "🇯🇵", "🇩🇪", "🏳️‍🌈",
         "👨‍👩‍👧‍👦", "👩‍💻", "🧑🏽‍🚀", "👁️‍🗨️", "1️⃣", "#️⃣", "©️", "™", "🫠", "🦀", "🐍", "\u2764\ufe0e",
         "🤷‍♀️", "🙋🏻‍♂️", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030a", "\u0327", "\u0328",
             "\u031b", "\u0323", "\u0336", "\u20dd", "\u0489"]
WHITESPACE = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\n ", "\u00a0",
              "\u3000", "\u2009", "\u200b", "\u2028", "\x0b", "\x0c", "\u0085", "\u1680"]
PUNCT = ".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`"


def prose(r):
    n = r.randint(3, 30)
    out = []
    for _ in range(n):
        w = r.choice(WORDS)
        x = r.random()
        if x < 0.1:
            w = w.capitalize()
        elif x < 0.15:
            w = w.upper()
        elif x < 0.22:
            w += r.choice(CONTRACTIONS)
        out.append(w)
        if r.random() < 0.12:
            out[-1] += r.choice([",", ";", ":", ".", "!", "?", "...", " -", " —"])
    s = " ".join(out)
    s = s[0].upper() + s[1:] + r.choice([".", "!", "?", "", "\n", ".\n\n", " "])
    return s


def code(r):
    def ident():
        return r.choice(["x", "y", "idx", "value", "tokenIds", "_private", "MAX_LEN", "self",
                         "engram_table", "row2", "αβ", "变量"])

    ind = r.choice(["", "  ", "    ", "\t", "        "])
    templates = [
        lambda: f"def {ident()}({ident()}, {ident()}={r.randint(0, 999)}):\n{ind}return "
                f"{ident()} + {ident()}\n",
        lambda: f"for (int {ident()} = 0; i < {r.randint(1, 100000)}; ++i) {{\n{ind}"
                f"{ident()}[i] += {r.random():.6f}f;\n}}",
        lambda: f"const {ident()} = await fetch(`https://api.example.com/v{r.randint(1, 3)}"
                f"/items?id=${{{ident()}}}`);",
        lambda: json.dumps({ident(): [r.randint(-1000, 1000), r.random(), None, True, "s"]},
                           indent=r.choice([None, 2, 4])),
        lambda: f"<div class=\"{ident()}\" data-x='{r.randint(0, 99)}'>\n{ind}<span>{ident()}"
                f"</span>\n</div>",
        lambda: f"SELECT {ident()}, COUNT(*) FROM t WHERE {ident()} >= {r.randint(0, 10**6)} "
                f"GROUP BY 1;",
        lambda: f"$ ./build/{ident()} --flag={r.randint(0, 9)} 2>&1 | grep -E '^[a-z]+' > out.txt",
        lambda: f"#include <{r.choice(['vector', 'string', 'cstdint'])}>\n\nint main() "
                f"{{\n{ind}std::cout << \"{ident()}\\n\";\n}}\n",
        lambda: f"    {ident()} = {ident()}.{ident()}({ident()}, *args, **kwargs)  # TODO(x): fix",
        lambda: f"fn {ident()}<'a>(s: &'a str) -> Option<&'a str> {{ s.get(..{r.randint(0, 9)}) }}",
        lambda: f"```python\nprint({r.randint(0, 10**9)})\n```",
        lambda: f"| col{r.randint(0, 9)} | {ident()} |\n|---|---|\n| {r.random():.3f} | ok |",
    ]
    return r.choice(templates)()


def number(r, length):
    digits = "".join(r.choice("0123456789") for _ in range(length))
    x = r.random()
    if x < 0.3:
        return digits
    if x < 0.45:
        return f"-{digits}"
    if x < 0.6:
        return f"{digits}.{r.randint(0, 10**r.randint(1, 8))}"
    if x < 0.7:
        return f"{int(digits):,}"
    if x < 0.8:
        return f"x{digits}y"
    if x < 0.9:
        return f"The value is {digits} units ({r.randint(0, 99)}%)."
    return f"{digits[: length // 2]} {digits[length // 2:]}"


def pick(r, pool, lo, hi):
    return "".join(r.choice(pool) for _ in range(r.randint(lo, hi)))


def cjk(r):
    parts = []
    for _ in range(r.randint(1, 6)):
        x = r.random()
        if x < 0.6:
            parts.append(pick(r, CHINESE, 1, 20))
        elif x < 0.75:
            parts.append(r.choice(["，", "。", "？", "！", "、", "：", "；", "（", "）", "「", "」"]))
        elif x < 0.9:
            parts.append(r.choice(WORDS))
        else:
            parts.append(str(r.randint(0, 10**6)))
        if r.random() < 0.3:
            parts.append(" ")
    return "".join(parts)


def japanese(r):
    pools = [HIRAGANA, KATAKANA, KANJI, HALFWIDTH_KANA, "、。「」・ー！？"]
    weights = [0.4, 0.3, 0.15, 0.05, 0.1]
    out = []
    for _ in range(r.randint(2, 12)):
        pool = r.choices(pools, weights)[0]
        out.append(pick(r, pool, 1, 6))
    return "".join(out)


def arabic(r):
    words = []
    for _ in range(r.randint(1, 10)):
        w = pick(r, ARABIC, 2, 7)
        if r.random() < 0.4:
            w = "".join(c + (r.choice(ARABIC_MARKS) if r.random() < 0.5 else "") for c in w)
        words.append(w)
    s = " ".join(words)
    if r.random() < 0.3:
        s += r.choice(["؟", "،", ".", " 123", " ١٢٣٤"])
    return s


def other_script(r):
    pool = r.choice(SCRIPTS)
    return " ".join(pick(r, pool, 1, 8) for _ in range(r.randint(1, 8)))


def emoji(r):
    out = []
    for _ in range(r.randint(1, 10)):
        x = r.random()
        if x < 0.6:
            out.append(r.choice(EMOJI))
        elif x < 0.8:
            out.append(r.choice(WORDS))
        else:
            out.append(r.choice([" ", "  ", "\n", "!", "."]))
    return "".join(out) if r.random() < 0.5 else " ".join(out)


def accents(r):
    base = "aeiouAEIOUnNcCyYsz"
    out = []
    for _ in range(r.randint(1, 12)):
        c = r.choice(base) + "".join(r.choice(COMBINING) for _ in range(r.randint(0, 3)))
        form = r.choice(["raw", "NFC", "NFD", "NFKC"])
        out.append(c if form == "raw" else unicodedata.normalize(form, c))
        if r.random() < 0.3:
            out.append(" ")
    s = "".join(out)
    if r.random() < 0.3:
        s = r.choice(["Tiếng Việt có dấu", "Ångström", "Crème brûlée", "Zoë", "São Paulo",
                      "Dvořák", "Łódź", "Ærøskøbing"]) + " " + s
    return s


def whitespace(r):
    out = []
    for _ in range(r.randint(1, 8)):
        out.append("".join(r.choice(WHITESPACE) for _ in range(r.randint(1, 4))))
        if r.random() < 0.7:
            out.append(r.choice(WORDS + ["x", "1", "中", "!", "😀"]))
    s = "".join(out)
    if r.random() < 0.3:
        s = " " * r.randint(1, 5) + s
    if r.random() < 0.3:
        s += " " * r.randint(1, 5)
    return s


def with_added_tokens(r):
    out = []
    for _ in range(r.randint(1, 6)):
        x = r.random()
        if x < 0.4:
            out.append(r.choice(ADDED_TOKENS))
        elif x < 0.7:
            out.append(prose(r).rstrip())
        elif x < 0.8:
            out.append(cjk(r))
        else:
            out.append(r.choice(WHITESPACE))
        if r.random() < 0.4:
            out.append(r.choice([" ", "\n", "  ", ""]))
    return "".join(out)


def random_unicode(r):
    def one():
        x = r.random()
        if x < 0.35:
            return chr(r.randint(0x20, 0x7E))
        if x < 0.45:
            return r.choice(" \t\n\r\u00a0\u0085\u2028\u3000\u200b\ufeff")
        if x < 0.6:
            return chr(r.randint(0xA0, 0x2FFF))
        if x < 0.75:
            return chr(r.randint(0x3000, 0x9FFF))
        if x < 0.85:
            return chr(r.randint(0xAC00, 0xD7A3))
        if x < 0.9:
            return chr(r.randint(0xE000, 0xFFFD))
        return chr(r.randint(0x10000, 0x1FAFF))

    out, n = [], r.randint(1, 60)
    while len(out) < n:
        c = one()
        if unicodedata.category(c) not in ("Cn", "Cs"):
            out.append(c)
    return "".join(out)


def mixed(r):
    gens = [prose, code, cjk, japanese, arabic, emoji, accents, whitespace, other_script]
    return r.choice(["", " ", "\n"]).join(r.choice(gens)(r) for _ in range(r.randint(2, 5)))


def long_text(r):
    return "\n\n".join(mixed(r) for _ in range(r.randint(10, 25)))


def build(seed):
    r = random.Random(seed)
    out = list(HANDWRITTEN)
    for length in range(1, 41):  # numbers of every length, 1 to 40 digits, 6 variants each
        out.extend(number(r, length) for _ in range(6))
    plan = [(prose, 260), (code, 220), (cjk, 160), (japanese, 120), (arabic, 80),
            (other_script, 120), (emoji, 150), (accents, 150), (whitespace, 260),
            (with_added_tokens, 260), (random_unicode, 250), (mixed, 120), (long_text, 12)]
    for gen, count in plan:
        out.extend(gen(r) for _ in range(count))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=8)
    args = ap.parse_args()
    corpus = build(args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        for s in corpus:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    print(f"gen_corpus: {len(corpus)} strings, {sum(len(s) for s in corpus)} characters")


if __name__ == "__main__":
    main()
