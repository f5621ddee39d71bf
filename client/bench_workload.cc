#include "client/bench_workload.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <numbers>
#include <numeric>
#include <sstream>

#include "nlohmann/json.hpp"
#include "server/util/str_cat.h"

namespace engram::client {
namespace {

uint64_t SplitMix64(uint64_t* state) { return SplitMix64Next(state); }

// Separate streams inside one prompt set, so e.g. --max-tokens does not move the prompt ids.
constexpr uint64_t kSubLengths = 11;
constexpr uint64_t kSubIds = 12;
constexpr uint64_t kSubOutput = 13;
constexpr uint64_t kSubOrder = 14;

uint32_t DrawLength(BenchRng& rng, IntRange r) {
  return static_cast<uint32_t>(rng.Between(r.min, r.max));
}

}  // namespace

uint64_t DeriveSeed(uint64_t seed, uint64_t stream) {
  uint64_t s = seed;
  uint64_t x = SplitMix64(&s);
  s = x ^ stream;
  return SplitMix64(&s);
}

BenchRng::BenchRng(uint64_t seed) : st_(XoshiroSeed(seed)) {}

uint64_t BenchRng::Next() { return XoshiroNext(&st_); }

uint64_t BenchRng::Below(uint64_t bound) {
  __extension__ typedef unsigned __int128 U128;  // __extension__: no -Wpedantic noise
  // Lemire's multiply-shift: bias below 2^-40 for any bound a benchmark uses.
  return static_cast<uint64_t>((static_cast<U128>(Next()) * bound) >> 64);
}

int64_t BenchRng::Between(int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
}

double BenchRng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

double BenchRng::Normal() {
  // 1 - U lies in (0, 1], so the log is finite.
  const double u1 = 1.0 - Uniform();
  const double u2 = Uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

double BenchRng::Gamma(double shape, double scale) {
  if (shape < 1.0) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a) (Marsaglia & Tsang, section 6).
    const double u = 1.0 - Uniform();
    return Gamma(shape + 1.0, scale) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = Normal();
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = 1.0 - Uniform();
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v * scale;
  }
}

std::vector<BenchPrompt> RandomPrompts(size_t n, IntRange input_len, IntRange output_len,
                                       uint32_t vocab_size, uint64_t seed) {
  BenchRng lengths(DeriveSeed(seed, kSubLengths));
  BenchRng ids(DeriveSeed(seed, kSubIds));
  BenchRng outputs(DeriveSeed(seed, kSubOutput));
  std::vector<BenchPrompt> out(n);
  for (auto& p : out) {
    p.kind = BenchPrompt::Kind::kTokenIds;
    p.prompt_len = DrawLength(lengths, input_len);
    p.token_ids.resize(p.prompt_len);
    for (auto& id : p.token_ids) id = static_cast<uint32_t>(ids.Below(vocab_size));
    p.max_tokens = DrawLength(outputs, output_len);
  }
  return out;
}

absl::StatusOr<std::vector<BenchPrompt>> ParseJsonlDataset(const std::string& contents,
                                                           const std::string& name) {
  std::vector<BenchPrompt> out;
  std::istringstream in(contents);
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto error = [&](std::string_view what) {
      return absl::InvalidArgumentError(StrCat(name, ":", line_no, ": ", what));
    };
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return error("not valid JSON");
    if (!j.is_object()) return error("expected an object with \"prompt\" or \"messages\"");
    BenchPrompt p;
    if (auto it = j.find("prompt"); it != j.end()) {
      if (!it->is_string() || it->get_ref<const std::string&>().empty())
        return error("\"prompt\" must be a non-empty string");
      p.kind = BenchPrompt::Kind::kText;
      p.text = it->get<std::string>();
    } else if (auto mit = j.find("messages"); mit != j.end()) {
      if (!mit->is_array() || mit->empty()) return error("\"messages\" must be a non-empty array");
      p.kind = BenchPrompt::Kind::kMessages;
      for (const auto& m : *mit) {
        if (!m.is_object() || !m.contains("role") || !m.contains("content") ||
            !m["role"].is_string() || !m["content"].is_string())
          return error("each message needs string \"role\" and \"content\"");
        p.messages.emplace_back(m["role"].get<std::string>(), m["content"].get<std::string>());
      }
    } else {
      return error("expected \"prompt\" or \"messages\"");
    }
    if (auto it = j.find("max_tokens"); it != j.end()) {
      if (!it->is_number_unsigned() || it->get<uint64_t>() == 0 ||
          it->get<uint64_t>() > std::numeric_limits<uint32_t>::max())
        return error("\"max_tokens\" must be a positive integer");
      p.max_tokens = it->get<uint32_t>();
    }
    out.push_back(std::move(p));
  }
  if (out.empty()) return absl::InvalidArgumentError(StrCat(name, ": no prompts"));
  return out;
}

absl::StatusOr<std::vector<BenchPrompt>> LoadJsonlDataset(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(path, ": cannot open"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ParseJsonlDataset(ss.str(), path);
}

std::vector<BenchPrompt> DatasetPrompts(const std::vector<BenchPrompt>& entries, size_t n,
                                        IntRange output_len, uint64_t seed) {
  std::vector<size_t> order(entries.size());
  std::iota(order.begin(), order.end(), size_t{0});
  BenchRng shuffle(DeriveSeed(seed, kSubOrder));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuffle.Below(i)]);
  BenchRng outputs(DeriveSeed(seed, kSubOutput));
  std::vector<BenchPrompt> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(entries[order[i % order.size()]]);
    // Drawn for every prompt, used or not, so a line's max_tokens does not shift the others.
    const uint32_t drawn = DrawLength(outputs, output_len);
    if (out.back().max_tokens == 0) out.back().max_tokens = drawn;
  }
  return out;
}

std::vector<double> ArrivalTimes(size_t n, double rate, double burstiness, uint64_t seed) {
  std::vector<double> out(n, 0.0);
  if (std::isinf(rate)) return out;
  BenchRng rng(seed);
  const double theta = 1.0 / (rate * burstiness);
  double t = 0;
  for (size_t i = 1; i < n; ++i) {
    t += rng.Gamma(burstiness, theta);
    out[i] = t;
  }
  return out;
}

}  // namespace engram::client
