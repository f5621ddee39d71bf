// engram-compress.safetensors for `create --compress-file`: the compressed-id table
// (DESIGN §2.1.1) computed from the tokenizer just written, stored so that servers and the
// Python reference read one agreed table instead of each rebuilding it from the tokenizer
// (the file wins over the tokenizer, docs/model-format.md).
#include <cstring>

#include "absl/status/status.h"
#include "server/memory/compress.h"
#include "server/model/model_files.h"
#include "server/tokenizer/tokenizer.h"
#include "server/util/safetensors.h"
#include "server/util/str_cat.h"
#include "tools/engram_model/create_options.h"

namespace engram::tool {

absl::Status WriteCompressFile(const std::string& dir, const ModelConfig& c) {
  auto tok = Tokenizer::FromFile(dir + "/tokenizer.json");
  if (!tok.ok()) return tok.status();
  CompressTable table = BuildCompressTable(*tok, c.vocab_size);
  if (static_cast<int64_t>(table.ids.size()) != c.vocab_size)
    return absl::InternalError(StrCat("compressed-id table has ", table.ids.size(),
                                      " entries, vocab_size is ", c.vocab_size));
  SafetensorsWriter::Tensor t{kCompressTensor, DType::kI64, {c.vocab_size}, {}};
  t.bytes.resize(table.ids.size() * sizeof(int64_t));
  std::memcpy(t.bytes.data(), table.ids.data(), t.bytes.size());
  std::printf("  compressed vocabulary: %lld of %d ids\n",
              static_cast<long long>(table.num_compressed), c.vocab_size);
  return SafetensorsWriter::WriteFile(
      dir + "/" + kCompressFile, {t},
      {{"format", "pt"}, {"num_compressed", std::to_string(table.num_compressed)}});
}

}  // namespace engram::tool
