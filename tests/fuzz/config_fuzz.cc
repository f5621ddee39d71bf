// libFuzzer target for config.json: ParseModelConfig, then, for an accepted Engram config, what
// ModelFiles::Open and the model do with it next (ValidateEngramAddressing's prime walk, then
// NgramHasher addressing). config.json arrives with downloaded model directories; every value a
// forward pass relies on must be validated here, so a bad file fails at start-up, not in a
// kernel. Beyond crashes and sanitizer reports this checks:
//  - ModelConfigToJson of an accepted config parses back to the same config (round trip);
//  - every row id NgramHasher computes lies in its head's range of its layer's table.
//
// Speed: the prime walk finds one prime per (layer, n, head), so configs needing more than
// kMaxPrimes primes are skipped, as are walk starts above ModelFiles::Open's own 2^40 limit.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "server/memory/hashing.h"
#include "server/model/config.h"

namespace {

constexpr int64_t kMaxRowsPerHead = int64_t{1} << 40;  // as in server/model/model_files.cc
constexpr int64_t kMaxPrimes = 64;
constexpr size_t kMaxTokens = 64;

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "config_fuzz: %s\n%s\n", what, detail.c_str());
  std::abort();
}

void CheckRoundTrip(const engram::ModelConfig& c) {
  const std::string text = engram::ModelConfigToJson(c);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) Fail("ModelConfigToJson wrote invalid JSON", text);
  auto again = engram::ParseModelConfig(j, "roundtrip.json");
  if (!again.ok())
    Fail("ModelConfigToJson output is rejected", again.status().ToString() + "\n" + text);
  const std::string text2 = engram::ModelConfigToJson(*again);
  if (text2 != text) Fail("ModelConfigToJson round trip changed the config", text + "\n" + text2);
}

void CheckAddressing(const engram::EngramConfig& e, const uint8_t* data, size_t size) {
  for (int64_t v : e.engram_vocab_size)
    if (v > kMaxRowsPerHead) return;
  if (static_cast<int64_t>(e.layer_ids.size()) * e.heads_per_layer() > kMaxPrimes) return;
  if (!engram::ValidateEngramAddressing(e, "fuzz/config.json").ok()) return;

  const engram::NgramHasher hasher(e);
  const int n = e.max_ngram_size;
  const int heads = hasher.heads_per_layer();
  if (hasher.num_slots() != static_cast<int>(e.layer_ids.size()) || hasher.ngram() != n ||
      heads != e.heads_per_layer())
    Fail("NgramHasher disagrees with its config", "");
  // Compressed ids from the input bytes: small ones, and ones spread over the whole int64 range.
  std::vector<int64_t> ids;
  for (size_t i = 0; i < size && ids.size() < kMaxTokens; ++i) {
    const uint64_t b = data[i];
    ids.push_back(b < 128 ? static_cast<int64_t>(b)
                          : static_cast<int64_t>(b * 0x9E3779B97F4A7C15ull));  // wraps
  }
  std::vector<int64_t> windows;
  engram::NgramHasher::Windows(ids, 0, static_cast<int64_t>(ids.size()), n, e.pad_id, &windows);
  std::vector<int64_t> rows(static_cast<size_t>(heads));
  for (int slot = 0; slot < hasher.num_slots(); ++slot) {
    for (size_t t = 0; t < ids.size(); ++t) {
      hasher.RowIds(slot, windows.data() + t * static_cast<size_t>(n), rows.data());
      for (int h = 0; h < heads; ++h) {
        const int64_t lo = hasher.head_offset(slot, h);
        if (rows[h] < lo || rows[h] - lo >= hasher.head_prime(slot, h) ||
            rows[h] >= hasher.total_rows(slot))
          Fail("row id outside its head's range", std::to_string(rows[h]));
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j =
      nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto config = engram::ParseModelConfig(j, "fuzz/config.json");
  if (!config.ok()) return 0;
  CheckRoundTrip(*config);
  if (config->engram.enabled()) CheckAddressing(config->engram, data, size);
  return 0;
}
