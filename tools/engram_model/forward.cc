// engram-model forward: runs a token sequence and dumps either the logits of every position or
// one Engram layer's input and output, as JSON the fidelity tests compare with the Python
// reference. --incremental runs the same tokens through the KV cache one at a time, so a test can
// check that incremental decoding reproduces the full-sequence pass.
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "tools/engram_model/commands.h"
#include "tools/engram_model/flags.h"
#include "tools/engram_model/tool_model.h"

namespace engram::tool {

int RunForward(int argc, char** argv) {
  std::string model_dir, text, what = "logits";
  std::vector<int64_t> ids;
  bool incremental = false, add_special = false;
  int64_t threads = 0;
  FlagParser p("forward",
               "forward --model DIR (--token-ids 1,2,3 | --text \"...\") [--dump "
               "logits|engram:<l>|memory:<l>] [--incremental]",
               "--dump logits prints {\"logits\": [T][vocab]}; --dump engram:<l> prints "
               "{\"input\": [T][D],\n"
               "\"output\": [T][D]} ([T][M][D] when hc_mult > 1): the hidden state entering layer "
               "l's Engram\n"
               "module and the module's output before the residual add. --dump memory:<l> prints\n"
               "{\"input\": [T][D], \"output\": [T][D], \"indices\": [T][heads][knn]} for the "
               "product-key\nmemory of block l: the residual after attention, the output added to "
               "it, and the\nvalue rows each head chose, best first.");
  p.AddString("model", &model_dir, "model directory");
  p.AddIntList("token-ids", &ids, "comma-separated token ids");
  p.AddString("text", &text, "text to tokenize");
  p.AddString("dump", &what, "logits, engram:<layer> or memory:<layer>");
  p.AddBool("incremental", &incremental,
            "prefill the first token, then decode the rest one at a time");
  p.AddBool("add-special-tokens", &add_special,
            "with --text: add BOS as the tokenizer's template says");
  p.AddInt("threads", &threads, "CPU threads (default: one per core)", 0, 1024);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  if (!p.IsSet("model")) return Fail("forward", absl::InvalidArgumentError("--model is required"));

  int engram_layer = -1, memory_layer = -1;
  if (absl::StartsWith(what, "engram:")) {
    if (!absl::SimpleAtoi(what.substr(7), &engram_layer))
      return Fail("forward", absl::InvalidArgumentError(
                                 "--dump engram:<l> needs an integer layer, got '" + what + "'"));
  } else if (absl::StartsWith(what, "memory:")) {
    if (!absl::SimpleAtoi(what.substr(7), &memory_layer) || memory_layer < 0)
      return Fail("forward", absl::InvalidArgumentError(
                                 "--dump memory:<l> needs an integer layer, got '" + what + "'"));
  } else if (what != "logits") {
    return Fail(
        "forward",
        absl::InvalidArgumentError(
            "--dump must be 'logits', 'engram:<layer>' or 'memory:<layer>', got '" + what + "'"));
  }

  auto m = OpenToolModel(model_dir, static_cast<int>(threads));
  if (!m.ok()) return Fail("forward", m.status());
  const ModelConfig& c = (*m)->config();
  if (engram_layer >= 0 && c.engram.SlotOf(engram_layer) < 0)
    return Fail("forward", absl::InvalidArgumentError(
                               "--dump engram:" + std::to_string(engram_layer) +
                               ": layer has no Engram module (engram.layer_ids in config.json)"));
  if (memory_layer >= 0 && c.product_key.SlotOf(memory_layer) < 0)
    return Fail("forward", absl::InvalidArgumentError(
                               "--dump memory:" + std::to_string(memory_layer) +
                               ": block has no product-key memory (product_key_memory.layer_ids "
                               "in config.json)"));
  auto tokens = ResolveTokens(**m, ids, text, p.IsSet("token-ids"), p.IsSet("text"), add_special);
  if (!tokens.ok()) return Fail("forward", tokens.status());
  auto run = RunSequence(**m, *tokens, incremental, engram_layer, memory_layer);
  if (!run.ok()) return Fail("forward", run.status());

  const int64_t T = static_cast<int64_t>(tokens->size());
  if (memory_layer >= 0) {
    const ProductKeyConfig& pk = c.product_key;
    std::printf("{\"input\": ");
    PrintFloatMatrix(stdout, run->memory_input, T, c.hidden_size, 1);
    std::printf(",\n\"output\": ");
    PrintFloatMatrix(stdout, run->memory_output, T, c.hidden_size, 1);
    std::printf(",\n\"indices\": [");
    const int64_t per = static_cast<int64_t>(pk.heads) * pk.knn;
    for (int64_t t = 0; t < T; ++t) {
      std::printf(t ? ",\n[" : "\n[");
      for (int h = 0; h < pk.heads; ++h) {
        std::printf(h ? ",[" : "[");
        for (int j = 0; j < pk.knn; ++j)
          std::printf(j ? ",%lld" : "%lld",
                      static_cast<long long>(run->memory_indices[t * per + h * pk.knn + j]));
        std::printf("]");
      }
      std::printf("]");
    }
    std::printf("]}\n");
  } else if (engram_layer < 0) {
    std::printf("{\"logits\": ");
    PrintFloatMatrix(stdout, run->logits, T, c.vocab_size, 1);
    std::printf("}\n");
  } else {
    const int M = c.hc_mult;
    std::printf("{\"input\": ");
    PrintFloatMatrix(stdout, run->engram_input, T, static_cast<int64_t>(M) * c.hidden_size, M);
    std::printf(",\n\"output\": ");
    PrintFloatMatrix(stdout, run->engram_output, T, static_cast<int64_t>(M) * c.hidden_size, M);
    std::printf("}\n");
  }
  return 0;
}

}  // namespace engram::tool
