#include "server/model/model_loader.h"

#include "server/memory/compress.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {

absl::StatusOr<LoadedModel> LoadModelDir(const std::string& dir, Backend* backend,
                                         const EngramMemoryOptions& memory) {
  LoadedModel out;
  ASSIGN_OR_RETURN(std::unique_ptr<ModelFiles> files, ModelFiles::Open(dir));
  ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::FromFile(files->tokenizer_path()));
  out.tokenizer = std::make_unique<Tokenizer>(std::move(tok));
  const int vocab = files->config().vocab_size;
  if (out.tokenizer->vocab_size() > vocab)
    return absl::InvalidArgumentError(StrCat(files->tokenizer_path(), ": tokenizer has ",
                                             out.tokenizer->vocab_size(),
                                             " tokens but config.json vocab_size is ", vocab));
  CompressTable table;
  if (files->shipped_compress().has_value()) {
    ASSIGN_OR_RETURN(
        table, CompressTableFromIds(*files->shipped_compress(), vocab, dir + "/" + kCompressFile));
    out.compress_source = kCompressFile;
  } else {
    table = BuildCompressTable(*out.tokenizer, vocab);
    out.compress_source = "tokenizer.json";
  }
  out.num_compressed = table.num_compressed;
  ASSIGN_OR_RETURN(out.model, Model::Load(std::move(files), std::move(table.ids), backend, memory));
  return out;
}

}  // namespace engram
