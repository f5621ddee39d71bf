// Backbone and Engram-projection weights for generated models (see weights_gen.h).
//
// Scales, with D = hidden size, L = layers and every RMSNorm output of unit RMS:
//  * embeddings N(0, 1): the residual stream starts at RMS 1;
//  * q/k/v/gate/up N(0, 1/fan_in): unit-RMS inputs give unit-RMS outputs, so attention scores
//    q·k/sqrt(head_dim) are O(1) (neither uniform nor one-hot);
//  * o_proj/down_proj additionally / sqrt(2L): the 2L residual additions sum to O(1), so the
//    stream stays O(1) however long the generation (GPT-2's residual scaling);
//  * logits have standard deviation ~2: lm_head N(0, 4/D), or when tied the final norm weight
//    is 2/sqrt(D) (the embedding rows have RMS 1, not 1/sqrt(D));
//  * norms 1 +- 2% noise, biases N(0, 0.02^2);
//  * Engram key/value projections N(0, 1/K) over table entries of stddev kTableStddev, so
//    v has RMS ~0.5 against the stream's ~1: large enough to matter, small enough not to
//    dominate. Gates vary per token because k is a random function of the hashed rows and the
//    normalised dot product with the hidden state is O(1) before the sigmoid;
//  * short conv weights N(0, 0.2^2): the conv branch adds about as much as the gated value.
#include "tools/engram_model/weights_gen.h"

#include <cmath>
#include <vector>

#include "absl/strings/match.h"
#include "server/util/safetensors.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"
#include "tools/engram_model/prng.h"

namespace engram::tool {

InitRule InitRuleFor(const ModelConfig& c, const ExpectedTensor& t) {
  const std::string& n = t.name;
  const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(c.hidden_size));
  if (n == "model.embed_tokens.weight") return {InitRule::kNormal, 1.0f, 1.0f};
  if (n == "lm_head.weight") return {InitRule::kNormal, 2.0f * inv_sqrt_d, 1.0f};
  if (n == "model.norm.weight")
    return {InitRule::kAroundOne, 0.02f, c.tie_word_embeddings ? 2.0f * inv_sqrt_d : 1.0f};
  if (t.shape.size() == 1) {
    if (absl::EndsWith(n, ".bias")) return {InitRule::kNormal, 0.02f, 1.0f};
    return {InitRule::kAroundOne, 0.02f, 1.0f};  // every RMSNorm weight
  }
  if (absl::EndsWith(n, "short_conv.conv.weight")) return {InitRule::kNormal, 0.2f, 1.0f};
  // A Linear [out, in].
  const float fan_in = static_cast<float>(t.shape.back());
  float scale = 1.0f / std::sqrt(fan_in);
  if (absl::EndsWith(n, "o_proj.weight") || absl::EndsWith(n, "down_proj.weight"))
    scale /= std::sqrt(2.0f * static_cast<float>(c.num_hidden_layers));
  return {InitRule::kNormal, scale, 1.0f};
}

absl::Status WriteBackbone(const std::string& dir, const ModelConfig& c, uint64_t seed,
                           bool optional_tensors) {
  std::vector<ExpectedTensor> tensors;
  for (auto& t : ExpectedBackboneTensors(c))
    if (!t.optional || optional_tensors) tensors.push_back(std::move(t));
  SafetensorsWriter w;
  w.SetMetadata("format", "pt");
  w.SetMetadata("generator", "engram-model create");
  for (const auto& t : tensors) w.Declare(t.name, c.dtype, t.shape);
  const std::string path = dir + "/model.safetensors";
  RETURN_IF_ERROR(w.Open(path));

  // One sequential stream per tensor, consumed in fixed-size pieces, so the bytes do not
  // depend on the piece size and no tensor is ever held whole.
  constexpr int64_t kPiece = 1 << 20;
  std::vector<float> values;
  std::vector<std::byte> bytes;
  for (const auto& t : tensors) {
    const InitRule rule = InitRuleFor(c, t);
    Rng rng(StreamSeed(seed, HashName(t.name)));
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    for (int64_t done = 0; done < numel; done += kPiece) {
      const auto n = static_cast<size_t>(std::min(kPiece, numel - done));
      values.resize(n);
      for (float& v : values) {
        const float z = rng.Normal();
        v = rule.kind == InitRule::kNormal ? z * rule.scale : (1.0f + z * rule.scale) * rule.gain;
      }
      bytes.resize(n * static_cast<size_t>(DTypeSize(c.dtype)));
      if (c.dtype == DType::kBF16) {
        for (size_t i = 0; i < n; ++i) {
          const uint16_t h = FloatToBf16(values[i]);
          std::memcpy(bytes.data() + 2 * i, &h, 2);
        }
      } else {
        std::memcpy(bytes.data(), values.data(), n * 4);
      }
      RETURN_IF_ERROR(w.Append(bytes.data(), bytes.size()));
    }
  }
  return w.Close();
}

}  // namespace engram::tool
