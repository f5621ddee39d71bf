// The JavaScript reference side of tests/tokenizers (compare.py runs it with Node.js):
// Tokenizers.js (@huggingface/tokenizers) encodes and decodes, computes the Engram
// compressed-id table from its own normalizers, and @huggingface/jinja renders chat templates.
// Output formats equal tokenizer_tool's (tests/tokenizers/tokenizer_tool.cc), so compare.py can
// check the two field by field.
//
//   node reference.mjs encode TOKENIZER_JSON CONFIG_JSON CORPUS_JSONL
//   node reference.mjs decode TOKENIZER_JSON CONFIG_JSON IDS_JSONL
//   node reference.mjs compress TOKENIZER_JSON CONFIG_JSON
//   node reference.mjs render CONFIG_JSON CASES_JSON
import fs from "node:fs";
import {
  Tokenizer, SequenceNormalizer, StripNormalizer, ReplaceNormalizer,
} from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

const readJson = (path) => JSON.parse(fs.readFileSync(path, "utf8"));
const readLines = (path) =>
  fs.readFileSync(path, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
const write = (lines) => fs.writeFileSync(1, lines.map((x) => JSON.stringify(x)).join("\n") + "\n");

// clean_up_tokenization_spaces is a transformers option (Llama 3's config turns it on); the
// tokenizer.json pipeline, which servers and the Engram table use, never applies it.
const decodeBoth = (tok, ids) => ({
  text: tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
  text_skip: tok.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }),
});
// Tokenizers.js refuses to decode [] (HF returns "").
const decodeOrEmpty = (tok, ids) => (ids.length ? decodeBoth(tok, ids) : { text: "", text_skip: "" });

function encode(tok, corpus) {
  write(readLines(corpus).map((s) => {
    const ids = tok.encode(s, { add_special_tokens: false }).ids;
    const ids_special = tok.encode(s, { add_special_tokens: true }).ids;
    return { ...decodeOrEmpty(tok, ids_special), ids, ids_special };
  }));
}

function decode(tok, idsPath) {
  write(readLines(idsPath).map((ids) => decodeOrEmpty(tok, ids)));
}

// The compressed-id table of engram_demo_v1.py (DESIGN 2.1.1), built from Tokenizers.js's
// normalizers configured as the demo configures HF's: NFKC, NFD, StripAccents, Lowercase,
// Replace([ \t\r\n]+ -> " "), Replace(^ $ -> U+E000), Strip, Replace(U+E000 -> " "), and
// from Tokenizers.js's single-token decode.
// One known deviation: Tokenizers.js's Strip is String.prototype.trim() (ECMAScript white
// space: strips U+FEFF, keeps U+0085) while HF's Rust Strip, which the reference runs, strips
// char::is_whitespace (Unicode White_Space: the reverse). "ids" uses a White_Space strip;
// "ids_stock_strip" the stock Strip, so compare.py can show exactly where the two differ.
function compress(tok) {
  const SENTINEL = "\uE000";
  const before = new SequenceNormalizer({
    normalizers: [
      { type: "NFKC" }, { type: "NFD" }, { type: "StripAccents" }, { type: "Lowercase" },
      { type: "Replace", pattern: { Regex: "[ \\t\\r\\n]+" }, content: " " },
      { type: "Replace", pattern: { Regex: "^ $" }, content: SENTINEL },
    ],
  });
  const stockStrip = new StripNormalizer({ strip_left: true, strip_right: true });
  const whiteSpaceStrip = (t) => t.replace(/^\p{White_Space}+|\p{White_Space}+$/gu, "");
  const after = new ReplaceNormalizer({ pattern: { String: SENTINEL }, content: " " });
  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const tables = [new Map(), new Map()];
  const ids = [[], []];
  for (let tid = 0; tid < vocabSize; ++tid) {
    const text = tok.decode([tid], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    for (let v = 0; v < 2; ++v) {
      let key;
      if (text.includes("\uFFFD")) {
        key = tok.id_to_token(tid);
      } else {
        const t = before.normalize(text);
        key = after.normalize(v === 0 ? whiteSpaceStrip(t) : stockStrip.normalize(t)) || text;
      }
      if (!tables[v].has(key)) tables[v].set(key, tables[v].size);
      ids[v].push(tables[v].get(key));
    }
  }
  write([{ num_compressed: tables[0].size, ids: ids[0],
           num_compressed_stock_strip: tables[1].size, ids_stock_strip: ids[1] }]);
}

// transformers' special_tokens_map from a tokenizer_config.json.
function specialTokens(config) {
  const text = (v) => (typeof v === "string" ? v : v && typeof v.content === "string" ? v.content : null);
  const out = {};
  for (const key of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
    const t = text(config[key]);
    if (t !== null) out[key] = t;
  }
  const extra = (config.additional_special_tokens ?? []).map(text).filter((t) => t !== null);
  if (extra.length) out.additional_special_tokens = extra;
  return out;
}

function render(configPath, casesPath) {
  const config = configPath === "-" ? {} : readJson(configPath);
  const results = readJson(casesPath).map((c) => {
    try {
      const source = c.template ?? config.chat_template;
      const vars = {
        ...(c.template === undefined ? specialTokens(config) : {}),
        tools: null, documents: null, ...(c.extra ?? {}),
        messages: c.messages, add_generation_prompt: c.add_generation_prompt ?? false,
      };
      return { ok: true, text: new Template(source).render(vars) };
    } catch (e) {
      return { ok: false, error: String(e && e.message ? e.message : e) };
    }
  });
  write([results]);
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === "render") {
  render(args[0], args[1]);
} else {
  const tok = new Tokenizer(readJson(args[0]), readJson(args[1]));
  if (cmd === "encode") encode(tok, args[2]);
  else if (cmd === "decode") decode(tok, args[2]);
  else if (cmd === "compress") compress(tok);
  else {
    process.stderr.write(`reference.mjs: unknown command ${cmd}\n`);
    process.exit(2);
  }
}
