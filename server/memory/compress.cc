// Compressed-id table; see compress.h for why it must match the reference exactly.
#include "server/memory/compress.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "server/tokenizer/normalizer.h"
#include "server/tokenizer/regex.h"
#include "server/util/str_cat.h"

namespace engram {

namespace {

// The reference parks a lone space in a private-use character so Strip keeps it.
constexpr std::string_view kSentinel = "\xEE\x80\x80";  // U+E000

std::shared_ptr<const Regex> MustCompile(std::string_view pattern) {
  absl::StatusOr<std::shared_ptr<const Regex>> re = Regex::Compile(pattern);
  // The patterns are constants of this file; failing to compile them is a build defect.
  if (!re.ok()) std::abort();
  return *std::move(re);
}

// normalizers.Sequence([NFKC(), NFD(), StripAccents(), Lowercase(),
//   Replace(Regex("[ \t\r\n]+"), " "), Replace(Regex("^ $"), SENTINEL), Strip(),
//   Replace(SENTINEL, " ")]) from engram_demo_v1.py.
const Normalizer& KeyNormalizer() {
  static const Normalizer* n = [] {
    auto* norm = new Normalizer();
    norm->AddNfkc()
        .AddNfd()
        .AddStripAccents()
        .AddLowercase()
        .AddReplace(MustCompile("[ \\t\\r\\n]+"), " ")
        .AddReplace(MustCompile("^ $"), std::string(kSentinel))
        .AddStrip(true, true)
        .AddReplace(MustCompile(Regex::Escape(kSentinel)), " ");
    return norm;
  }();
  return *n;
}

}  // namespace

std::string NormalizeCompressKey(std::string_view text) { return KeyNormalizer().Normalize(text); }

CompressTable BuildCompressTable(const Tokenizer& tokenizer, int64_t vocab_size) {
  CompressTable table;
  const int32_t known = tokenizer.vocab_size();
  if (vocab_size < 0) vocab_size = known;
  table.ids.resize(static_cast<size_t>(vocab_size));
  absl::flat_hash_map<std::string, int64_t> key_to_id;
  key_to_id.reserve(static_cast<size_t>(vocab_size));
  for (int32_t tid = 0; tid < vocab_size; ++tid) {
    const int32_t one[] = {tid};
    std::string text =
        tid < known ? tokenizer.DecodeLossy(one, /*skip_special_tokens=*/false) : std::string();
    std::string key;
    if (text.find(kReplacementUtf8) != std::string::npos) {
      // A partial character: the raw vocab string keeps distinct byte fragments apart.
      key = std::string(tokenizer.IdToToken(tid).value_or(""));
    } else {
      key = NormalizeCompressKey(text);
      if (key.empty()) key = std::move(text);
    }
    const auto [it, inserted] = key_to_id.try_emplace(std::move(key), table.num_compressed);
    if (inserted) ++table.num_compressed;
    table.ids[tid] = it->second;
  }
  return table;
}

absl::StatusOr<CompressTable> CompressTableFromIds(std::vector<int64_t> ids, int64_t vocab_size,
                                                   std::string_view source) {
  if (static_cast<int64_t>(ids.size()) != vocab_size) {
    return absl::InvalidArgumentError(StrCat(source, ": compressed-id table has ", ids.size(),
                                             " entries, the vocab has ", vocab_size));
  }
  CompressTable table;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0) {
      return absl::InvalidArgumentError(
          StrCat(source, ": compressed-id table entry ", i, " is negative (", ids[i], ")"));
    }
    table.num_compressed = std::max(table.num_compressed, ids[i] + 1);
  }
  table.ids = std::move(ids);
  return table;
}

}  // namespace engram
