// engram-model hash: the compressed ids and Engram head-local indices of a token sequence, in
// the JSON shape the Python reference prints, so the two can be compared integer for integer.
#include <cstdio>

#include "server/memory/hashing.h"
#include "tools/engram_model/commands.h"
#include "tools/engram_model/flags.h"
#include "tools/engram_model/tool_model.h"

namespace engram::tool {

int RunHash(int argc, char** argv) {
  std::string model_dir, text;
  std::vector<int64_t> ids;
  bool add_special = false;
  FlagParser p("hash", "hash --model DIR (--token-ids 1,2,3 | --text \"...\")",
               "Prints {\"compressed_ids\": [...], \"layers\": {\"<l>\": [[i, ...] per "
               "position]}}; each inner\n"
               "list holds the (N-1)*H head-local indices, n = 2 heads 0..H-1, then n = 3, ...");
  p.AddString("model", &model_dir, "model directory");
  p.AddIntList("token-ids", &ids, "comma-separated token ids");
  p.AddString("text", &text, "text to tokenize");
  p.AddBool("add-special-tokens", &add_special,
            "with --text: add BOS as the tokenizer's template says");
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  if (!p.IsSet("model")) return Fail("hash", absl::InvalidArgumentError("--model is required"));

  auto m = OpenToolModel(model_dir, 1);
  if (!m.ok()) return Fail("hash", m.status());
  auto tokens = ResolveTokens(**m, ids, text, p.IsSet("token-ids"), p.IsSet("text"), add_special);
  if (!tokens.ok()) return Fail("hash", tokens.status());

  const Model& model = *(*m)->loaded.model;
  const EngramConfig& e = model.config().engram;
  std::vector<int64_t> comp;
  for (int32_t t : *tokens) comp.push_back(model.compress()[t]);
  std::printf("{\"compressed_ids\": [");
  for (size_t i = 0; i < comp.size(); ++i)
    std::printf(i ? ", %lld" : "%lld", static_cast<long long>(comp[i]));
  std::printf("],\n \"layers\": {");
  std::vector<int64_t> windows, idx(model.hasher().heads_per_layer());
  NgramHasher::Windows(comp, 0, static_cast<int64_t>(comp.size()), e.max_ngram_size,
                       model.compressed_pad(), &windows);
  for (size_t slot = 0; slot < e.layer_ids.size(); ++slot) {
    std::printf("%s\n  \"%d\": [", slot ? "," : "", e.layer_ids[slot]);
    for (size_t t = 0; t < comp.size(); ++t) {
      model.hasher().HeadIndices(static_cast<int>(slot), windows.data() + t * e.max_ngram_size,
                                 idx.data());
      std::printf(t ? ", [" : "[");
      for (size_t i = 0; i < idx.size(); ++i)
        std::printf(i ? ", %lld" : "%lld", static_cast<long long>(idx[i]));
      std::printf("]");
    }
    std::printf("]");
  }
  std::printf("}}\n");
  return 0;
}

}  // namespace engram::tool
