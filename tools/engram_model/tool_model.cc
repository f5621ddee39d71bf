#include "tools/engram_model/tool_model.h"

#include <algorithm>

#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram::tool {

absl::StatusOr<std::unique_ptr<ToolModel>> OpenToolModel(const std::string& dir, int threads) {
  auto m = std::make_unique<ToolModel>();
  m->backend = CreateBackend(threads);
  if (m->backend.backend == nullptr) return absl::FailedPreconditionError(m->backend.reason);
  ASSIGN_OR_RETURN(m->loaded, LoadModelDir(dir, m->backend.backend.get()));
  return m;
}

absl::StatusOr<std::vector<int32_t>> ResolveTokens(const ToolModel& m,
                                                   const std::vector<int64_t>& ids,
                                                   const std::string& text, bool ids_set,
                                                   bool text_set, bool add_special) {
  if (ids_set == text_set)
    return absl::InvalidArgumentError("give exactly one of --token-ids and --text");
  std::vector<int32_t> out;
  if (text_set) {
    out = m.loaded.tokenizer->Encode(text, add_special);
  } else {
    const int64_t vocab = m.config().vocab_size;
    for (int64_t id : ids) {
      if (id < 0 || id >= vocab)
        return absl::InvalidArgumentError(
            StrCat("--token-ids: id ", id, " outside [0, ", vocab - 1, "]"));
      out.push_back(static_cast<int32_t>(id));
    }
  }
  if (out.empty()) return absl::InvalidArgumentError("the input has no tokens");
  if (static_cast<int64_t>(out.size()) > m.config().max_position_embeddings)
    return absl::InvalidArgumentError(StrCat("the input has ", out.size(),
                                             " tokens, more than max_position_embeddings (",
                                             m.config().max_position_embeddings, ")"));
  return out;
}

absl::StatusOr<SequenceRun> RunSequence(ToolModel& m, const std::vector<int32_t>& tokens,
                                        bool incremental, int engram_layer, int memory_layer) {
  Model& model = *m.loaded.model;
  const int64_t T = static_cast<int64_t>(tokens.size());
  constexpr int kBlock = 16;
  KvCache kv(model.config(), static_cast<int>((T + kBlock - 1) / kBlock), kBlock, model.backend());
  SequenceState state;
  model.ResetState(state);
  RETURN_IF_ERROR(kv.Reserve(state, T));

  SequenceRun run;
  std::vector<float> in, outv;
  std::vector<std::vector<float>> gates;
  ForwardDump dump;
  dump.engram_layer = engram_layer;
  dump.engram_input = &in;
  dump.engram_output = &outv;
  dump.gates = &gates;
  std::vector<float> min, mout;
  std::vector<int64_t> midx;
  dump.memory_layer = memory_layer;
  dump.memory_input = &min;
  dump.memory_output = &mout;
  dump.memory_indices = &midx;
  ForwardOutput fo;
  auto append = [](std::vector<float>& dst, const std::vector<float>& src) {
    dst.insert(dst.end(), src.begin(), src.end());
  };
  const int64_t chunk = incremental ? 1 : T;
  for (int64_t begin = 0; begin < T; begin += chunk) {
    const int64_t len = std::min(chunk, T - begin);
    StepEntry e{&state, std::span<const int32_t>(tokens.data() + begin, static_cast<size_t>(len)),
                true};
    in.clear();
    outv.clear();
    RETURN_IF_ERROR(model.Forward(std::span<const StepEntry>(&e, 1), kv, &fo, &dump));
    append(run.logits, fo.logits);
    append(run.engram_input, in);
    append(run.engram_output, outv);
    append(run.memory_input, min);
    append(run.memory_output, mout);
    run.memory_indices.insert(run.memory_indices.end(), midx.begin(), midx.end());
    run.gates.resize(gates.size());
    for (size_t s = 0; s < gates.size(); ++s) append(run.gates[s], gates[s]);
  }
  kv.Release(state);
  return run;
}

void PrintFloatMatrix(std::FILE* out, const std::vector<float>& v, int64_t rows, int64_t width,
                      int inner) {
  const int64_t group = width / inner;
  std::fputc('[', out);
  for (int64_t r = 0; r < rows; ++r) {
    std::fputs(r ? ",\n[" : "\n[", out);
    for (int g = 0; g < inner; ++g) {
      if (inner > 1) std::fputs(g ? ",[" : "[", out);
      for (int64_t j = 0; j < group; ++j)
        std::fprintf(out, j ? ",%.9g" : "%.9g", static_cast<double>(v[r * width + g * group + j]));
      if (inner > 1) std::fputc(']', out);
    }
    std::fputc(']', out);
  }
  std::fputs("]", out);
}

int Fail(const char* cmd, const absl::Status& s) {
  std::fprintf(stderr, "engram-model %s: %s\n", cmd, std::string(s.message()).c_str());
  return 1;
}

}  // namespace engram::tool
