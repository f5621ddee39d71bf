// libFuzzer target for tokenizer.json: Tokenizer::FromJson, then, for an accepted tokenizer,
// Encode (fixed texts and the input itself, which exercises the added-token splitter, the
// normalizers, the pre-tokenizer regexes and BPE on arbitrary bytes), Decode and StreamDecoder.
// tokenizer.json arrives with downloaded model directories, and every request's text goes
// through Encode. Beyond crashes and sanitizer reports this checks what tokenizer.h promises:
//  - every id Encode returns is a token (IdToToken has it);
//  - every StreamDecoder::Push result is valid UTF-8, and Push results + Flush == DecodeLossy.
//
// Speed: token ids go up to 2^24 and tables are sized by the largest id, so inputs whose ids
// exceed kMaxFuzzId are skipped (checked only when the text has a 5+ digit number, which is rare).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"
#include "server/tokenizer/unicode.h"

namespace {

constexpr int64_t kMaxFuzzId = 1 << 16;

[[noreturn]] void Fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "tokenizer_fuzz: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

bool HasLongNumber(std::string_view s) {
  int run = 0;
  for (char c : s) {
    run = (c >= '0' && c <= '9') ? run + 1 : 0;
    if (run >= 5) return true;
  }
  return false;
}

// The largest id in model.vocab and added_tokens, or -1 when the JSON is not parseable.
int64_t MaxId(std::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return -1;
  int64_t max_id = -1;
  auto consider = [&](const nlohmann::json& v) {
    if (v.is_number_integer()) max_id = std::max(max_id, v.get<int64_t>());
  };
  if (auto m = j.find("model"); m != j.end() && m->is_object()) {
    if (auto v = m->find("vocab"); v != m->end() && v->is_object())
      for (const auto& id : *v) consider(id);
  }
  if (auto a = j.find("added_tokens"); a != j.end() && a->is_array()) {
    for (const auto& t : *a)
      if (t.is_object())
        if (auto id = t.find("id"); id != t.end()) consider(*id);
  }
  return max_id;
}

void CheckIds(const engram::Tokenizer& tok, std::span<const int32_t> ids) {
  for (int32_t id : ids)
    if (!tok.IdToToken(id)) Fail("Encode returned an id that is no token", std::to_string(id));
}

void CheckDecode(const engram::Tokenizer& tok, std::span<const int32_t> ids, bool skip_special) {
  const std::string raw = tok.Decode(ids, skip_special);
  const std::string lossy = tok.DecodeLossy(ids, skip_special);
  if (!engram::IsValidUtf8(lossy)) Fail("DecodeLossy returned invalid UTF-8", lossy);
  engram::StreamDecoder stream(tok, skip_special);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = stream.Push(id);
    if (!engram::IsValidUtf8(piece)) Fail("StreamDecoder::Push returned invalid UTF-8", piece);
    streamed += piece;
  }
  const std::string tail = stream.Flush();
  if (!engram::IsValidUtf8(tail)) Fail("StreamDecoder::Flush returned invalid UTF-8", tail);
  streamed += tail;
  if (streamed != lossy) Fail("streamed text differs from DecodeLossy", streamed + "\n" + lossy);
}

void Exercise(const engram::Tokenizer& tok, std::string_view input) {
  static constexpr std::string_view kTexts[] = {
      "",
      "Hello, world! It's 2024.",
      "  leading and trailing   \t\n spaces  ",
      "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x99\x82 "
      "\xD9\x85\xD8\xB1",
      "<|begin_of_text|>hi<|end_of_text|><|pad|>",
      "bad \xFF\xC3( utf-8 \xED\xA0\x80 \xF4\x90\x80\x80",
  };
  std::vector<int32_t> all;
  bool special = false;
  for (std::string_view text : kTexts) {
    const std::vector<int32_t> ids = tok.Encode(text, special = !special);
    CheckIds(tok, ids);
    all.insert(all.end(), ids.begin(), ids.end());
  }
  const std::vector<int32_t> own = tok.Encode(input, /*add_special_tokens=*/true);
  CheckIds(tok, own);
  all.insert(all.end(), own.begin(), own.end());

  // Ids around every boundary: negative, the first and the last ids, past the end.
  const int32_t vocab = tok.vocab_size();
  for (int32_t id : {-1, INT32_MIN, INT32_MAX, vocab, vocab + 1}) all.push_back(id);
  for (int32_t id = 0; id < std::min(vocab, 64); ++id) all.push_back(id);
  for (int32_t id = std::max(64, vocab - 32); id < vocab; ++id) all.push_back(id);
  for (int32_t id : all) {
    (void)tok.IsSpecial(id);
    (void)tok.IsAddedToken(id);
    if (auto token = tok.IdToToken(id); token && tok.TokenToId(*token) < 0)
      Fail("TokenToId gave a negative id", *token);
  }
  CheckDecode(tok, all, false);
  CheckDecode(tok, all, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (HasLongNumber(text) && MaxId(text) > kMaxFuzzId) return 0;
  auto tok = engram::Tokenizer::FromJson(text);
  if (!tok.ok()) return 0;
  Exercise(*tok, text);
  return 0;
}
