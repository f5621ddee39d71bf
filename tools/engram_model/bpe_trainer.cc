// Byte-level BPE training (see bpe_trainer.h). The classic algorithm with incremental pair
// statistics: words are counted once, each merge only revisits the words that contain the
// merged pair, and a lazily invalidated max-heap finds the next pair, so a vocabulary of tens
// of thousands of tokens trains in well under a second on the shipped corpus.
#include "tools/engram_model/bpe_trainer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <map>
#include <queue>
#include <unordered_map>

#include "server/util/str_cat.h"

namespace engram::tool {
namespace {

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct HeapEntry {
  int64_t count;
  int32_t a, b;
  // std::priority_queue pops the largest: higher count first, then the smaller pair.
  bool operator<(const HeapEntry& o) const {
    if (count != o.count) return count < o.count;
    if (a != o.a) return a > o.a;
    return b > o.b;
  }
};

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Pretokenizer>> Pretokenizer::Create() {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2SplitPattern), PCRE2_ZERO_TERMINATED,
                    PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return absl::InternalError(StrCat("pre-tokenizer regex does not compile at offset ", offset,
                                      ": ", reinterpret_cast<const char*>(msg)));
  }
  // JIT is only a speed-up; matching works without it.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  auto p = std::unique_ptr<Pretokenizer>(new Pretokenizer());
  p->code_ = code;
  return p;
}

Pretokenizer::~Pretokenizer() {
  if (code_ != nullptr) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

absl::Status Pretokenizer::Split(std::string_view text, std::vector<std::string_view>* out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  if (md == nullptr) return absl::ResourceExhaustedError("pcre2_match_data_create failed");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  absl::Status status;
  while (pos < text.size()) {
    const int rc = pcre2_match(code, subject, text.size(), pos, 0, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      status =
          absl::InvalidArgumentError(StrCat("pre-tokenizer: ", reinterpret_cast<const char*>(msg)));
      break;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t begin = ov[0], end = ov[1];
    if (begin > pos) out->push_back(text.substr(pos, begin - pos));  // "Isolated" gap
    if (end == begin) {
      // Cannot happen with this pattern (every branch consumes); step one UTF-8 char anyway.
      size_t next = begin + 1;
      while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xc0) == 0x80) ++next;
      out->push_back(text.substr(begin, next - begin));
      pos = next;
      continue;
    }
    out->push_back(text.substr(begin, end - begin));
    pos = end;
  }
  if (status.ok() && pos < text.size()) out->push_back(text.substr(pos));
  pcre2_match_data_free(md);
  return status;
}

std::string ByteLevelToken(std::string_view bytes) {
  // bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in
  // byte order.
  static const auto* const kTable = [] {
    auto* t = new std::array<char32_t, 256>();
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
      (*t)[static_cast<size_t>(b)] =
          keep ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    }
    return t;
  }();
  std::string out;
  for (unsigned char c : bytes) {
    const char32_t cp = (*kTable)[c];
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else {  // all table code points are below U+0800: two UTF-8 bytes
      out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }
  return out;
}

absl::StatusOr<BpeVocab> TrainByteLevelBpe(const std::vector<std::string_view>& texts,
                                           size_t vocab_size) {
  BpeVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.emplace_back(1, static_cast<char>(b));
  if (vocab_size <= 256) return v;

  auto pre_or = Pretokenizer::Create();
  if (!pre_or.ok()) return pre_or.status();
  // std::map: words in byte order, so word indices (and thus everything after) are stable.
  std::map<std::string_view, int64_t> counts;
  std::vector<std::string_view> pieces;
  for (std::string_view text : texts) {
    pieces.clear();
    if (auto st = (*pre_or)->Split(text, &pieces); !st.ok()) return st;
    for (std::string_view p : pieces) ++counts[p];
  }
  std::vector<Word> words;
  words.reserve(counts.size());
  for (const auto& [piece, count] : counts) {
    Word w;
    w.count = count;
    for (unsigned char c : piece) w.symbols.push_back(c);
    words.push_back(std::move(w));
  }

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;
  for (size_t wi = 0; wi < words.size(); ++wi) {
    const Word& w = words[wi];
    for (size_t i = 0; i + 1 < w.symbols.size(); ++i) {
      const uint64_t k = PairKey(w.symbols[i], w.symbols[i + 1]);
      pair_count[k] += w.count;
      pair_words[k].push_back(static_cast<int32_t>(wi));
    }
  }
  std::priority_queue<HeapEntry> heap;
  for (const auto& [k, c] : pair_count)
    heap.push({c, static_cast<int32_t>(k >> 32), static_cast<int32_t>(k & 0xffffffffu)});

  std::unordered_map<std::string, int32_t> id_of;
  for (size_t i = 0; i < v.tokens.size(); ++i) id_of[v.tokens[i]] = static_cast<int32_t>(i);

  std::vector<uint64_t> touched;
  while (v.tokens.size() < vocab_size && !heap.empty()) {
    const HeapEntry top = heap.top();
    heap.pop();
    const uint64_t key = PairKey(top.a, top.b);
    auto pc = pair_count.find(key);
    const int64_t current = pc == pair_count.end() ? 0 : pc->second;
    if (current != top.count) {
      if (current > 0) heap.push({current, top.a, top.b});
      continue;
    }
    if (current <= 0) continue;
    // Two merge paths can spell the same bytes ("a"+"bc", "ab"+"c"): they share one id.
    std::string merged =
        v.tokens[static_cast<size_t>(top.a)] + v.tokens[static_cast<size_t>(top.b)];
    auto [it, inserted] = id_of.try_emplace(merged, static_cast<int32_t>(v.tokens.size()));
    if (inserted) v.tokens.push_back(std::move(merged));
    const int32_t new_id = it->second;
    v.merges.emplace_back(top.a, top.b);

    std::vector<int32_t> affected = std::move(pair_words[key]);
    pair_words.erase(key);
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    touched.clear();
    for (int32_t wi : affected) {
      Word& w = words[static_cast<size_t>(wi)];
      auto& s = w.symbols;
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == top.a && s[i + 1] == top.b;
      if (!has) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) pair_count[PairKey(s[i], s[i + 1])] -= w.count;
      std::vector<int32_t> next;
      next.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == top.a && s[i + 1] == top.b) {
          next.push_back(new_id);
          ++i;
        } else {
          next.push_back(s[i]);
        }
      }
      s = std::move(next);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = PairKey(s[i], s[i + 1]);
        pair_count[k] += w.count;
        pair_words[k].push_back(wi);
        touched.push_back(k);
      }
    }
    pair_count.erase(key);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched) {
      const int64_t c = pair_count[k];
      if (c > 0)
        heap.push({c, static_cast<int32_t>(k >> 32), static_cast<int32_t>(k & 0xffffffffu)});
    }
  }
  return v;
}

}  // namespace engram::tool
