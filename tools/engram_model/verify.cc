// `engram-model verify DIR`: everything ModelFiles::Open checks (config keys, the prime walk,
// every tensor's presence, dtype and shape), plus what a loader skips for speed: each
// safetensors file's size equals what its header accounts for, backbone weights and table rows
// are finite (sampled for large tensors), primes are distinct, and tokenizer.json loads and
// fits the vocabulary. Prints one "OK" line and exits 0, or one line naming the file and the
// tensor or key and exits 1. Bad input never crashes it: every check reads only validated ranges.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include "server/model/model_files.h"
#include "server/tokenizer/tokenizer.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"
#include "tools/engram_model/commands.h"
#include "tools/engram_model/flags.h"
#include "tools/engram_model/model_stats.h"

namespace engram::tool {
namespace {

constexpr int64_t kFullCheckElements = int64_t{4} << 20;  // larger tensors are sampled
constexpr int64_t kSampleElements = int64_t{1} << 20;
constexpr int64_t kSampleRows = 65536;

absl::Status CheckFileSize(const SafetensorsFile& f) {
  uint64_t header_len = 0;
  std::memcpy(&header_len, f.file().data(), 8);  // Open validated the file holds 8 + header_len
  uint64_t end = 8 + header_len;
  for (const auto& t : f.tensors()) end = std::max(end, t.offset + t.nbytes);
  if (end != f.file().size())
    return absl::InvalidArgumentError(StrCat(f.path(), ": file is ", f.file().size(),
                                             " bytes but its header accounts for ", end,
                                             " (trailing data)"));
  return absl::OkStatus();
}

float ElementAt(const std::byte* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32: {
      float v;
      std::memcpy(&v, p + i * 4, 4);
      return v;
    }
    case DType::kBF16:
    case DType::kF16: {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      return dtype == DType::kBF16 ? Bf16ToFloat(h) : F16ToFloat(h);
    }
    case DType::kF8E4M3:
      return Fp8E4M3ToFloat(static_cast<uint8_t>(p[i]));
    default:
      return 0;
  }
}

absl::Status NonFinite(const TensorView& v, int64_t i, float x) {
  return absl::InvalidArgumentError(StrCat(v.file->path(), ": tensor '", v.info->name, "' holds ",
                                           std::isnan(x) ? "NaN" : "Inf", " at element ", i));
}

// All elements of a small tensor, an even sample of a large one.
absl::Status CheckFinite(const TensorView& v) {
  const int64_t n = v.info->numel();
  const int64_t stride = n <= kFullCheckElements ? 1 : n / kSampleElements;
  for (int64_t i = 0; i < n; i += stride) {
    const float x = ElementAt(v.data, v.dtype, i);
    if (!std::isfinite(x)) return NonFinite(v, i, x);
  }
  return absl::OkStatus();
}

// A sample of table rows, decoded with their fp8 scales where there are any.
absl::Status CheckTableRows(const TensorView& table, const std::optional<TensorView>& scale) {
  const int64_t rows = table.shape[0], d = table.shape[1];
  const int64_t stride = std::max<int64_t>(1, rows / kSampleRows);
  for (int64_t r = 0; r < rows; r += stride) {
    for (int64_t j = 0; j < d; ++j) {
      float x = ElementAt(table.data, table.dtype, r * d + j);
      if (scale)
        x *= Ue8m0ToFloat(
            static_cast<uint8_t>(scale->data[r * (d / kFp8BlockSize) + j / kFp8BlockSize]));
      if (!std::isfinite(x)) return NonFinite(table, r * d + j, x);
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPrimesDistinct(const ModelFiles& f) {
  const EngramConfig& e = f.config().engram;
  std::set<int64_t> seen;
  for (int l : e.layer_ids)
    for (const auto& per_n : e.head_vocab_sizes.at(l))
      for (int64_t p : per_n)
        if (!seen.insert(p).second)
          return absl::InvalidArgumentError(StrCat(
              f.dir(), "/config.json: key 'engram.head_vocab_sizes.", l, "' reuses prime ", p));
  return absl::OkStatus();
}

struct Summary {
  size_t backbone_tensors = 0;
  size_t unexpected = 0;
  std::string first_unexpected;
  int32_t tokenizer_ids = 0;
};

absl::StatusOr<Summary> Verify(const ModelFiles& f) {
  const ModelConfig& c = f.config();
  Summary s;
  RETURN_IF_ERROR(CheckPrimesDistinct(f));
  std::set<const SafetensorsFile*> shards;
  std::set<std::string> expected;
  for (const auto& e : ExpectedBackboneTensors(c)) {
    if (e.optional && !f.Backbone(e.name).has_value()) continue;
    const TensorView v = *f.Backbone(e.name);
    shards.insert(v.file);
    expected.insert(e.name);
    RETURN_IF_ERROR(CheckFinite(v));
    ++s.backbone_tensors;
  }
  for (const SafetensorsFile* shard : shards) {
    RETURN_IF_ERROR(CheckFileSize(*shard));
    for (const auto& t : shard->tensors()) {
      if (expected.count(t.name)) continue;
      if (s.unexpected++ == 0) s.first_unexpected = StrCat(shard->path(), ": '", t.name, "'");
    }
  }
  for (size_t slot = 0; slot < c.engram.layer_ids.size(); ++slot) {
    const int i = static_cast<int>(slot);
    RETURN_IF_ERROR(CheckFileSize(f.TableFile(i)));
    RETURN_IF_ERROR(CheckTableRows(f.Table(i), f.TableScale(i)));
  }
  for (const auto& [key, file] : c.product_key.table_files) {
    RETURN_IF_ERROR(CheckFileSize(f.ProductKeyFile(key)));
    RETURN_IF_ERROR(CheckTableRows(f.ProductKeyValues(key), f.ProductKeyValuesScale(key)));
  }
  auto tok = Tokenizer::FromFile(f.tokenizer_path());
  if (!tok.ok()) return tok.status();
  s.tokenizer_ids = tok->vocab_size();
  if (s.tokenizer_ids > c.vocab_size)
    return absl::InvalidArgumentError(StrCat(f.tokenizer_path(), ": has ", s.tokenizer_ids,
                                             " token ids but config.json key 'vocab_size' is ",
                                             c.vocab_size));
  return s;
}

}  // namespace

int RunVerify(int argc, char** argv) {
  FlagParser p("verify", "DIR",
               "Validates a model directory completely. Prints OK, or one line naming the file\n"
               "and the tensor or key at fault (exit status 1).");
  p.SetPositional("DIR", 1, 1);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  auto files = ModelFiles::Open(p.positional()[0]);
  absl::StatusOr<Summary> s =
      files.ok() ? Verify(**files) : absl::StatusOr<Summary>(files.status());
  if (!s.ok()) {
    std::fprintf(stderr, "engram-model verify: %s\n", std::string(s.status().message()).c_str());
    return 1;
  }
  const ModelConfig& c = (*files)->config();
  if (s->unexpected > 0)
    std::printf("note: %zu tensors the format does not define are ignored (first: %s)\n",
                s->unexpected, s->first_unexpected.c_str());
  std::printf(
      "OK %s: %zu backbone tensors, %zu Engram tables, %zu product-key values tables "
      "(%s), tokenizer %d ids%s\n",
      (*files)->dir().c_str(), s->backbone_tensors, c.engram.layer_ids.size(),
      c.product_key.table_files.size(), HumanBytes(TotalTableBytes(c)).c_str(), s->tokenizer_ids,
      (*files)->shipped_compress() ? ", compressed-id table shipped" : "");
  return 0;
}

}  // namespace engram::tool
