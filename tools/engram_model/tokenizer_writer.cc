// Hugging Face tokenizer files for generated models (see tokenizer_writer.h).
#include "tools/engram_model/tokenizer_writer.h"

#include <fstream>

#include "nlohmann/json.hpp"
#include "server/tokenizer/chat_template.h"
#include "server/util/str_cat.h"

namespace engram::tool {
namespace {

using ojson = nlohmann::ordered_json;

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::DataLossError(StrCat(path, ": write failed"));
  return absl::OkStatus();
}

ojson SpecialToken(const std::string& content, int64_t id) {
  return ojson{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
               {"rstrip", false}, {"normalized", false}, {"special", true}};
}

}  // namespace

absl::StatusOr<TokenizerSpec> BuildTokenizer(int64_t vocab_size) {
  constexpr int64_t kSpecials = 3;
  if (vocab_size < 256 + kSpecials)
    return absl::InvalidArgumentError(StrCat("--vocab: ", vocab_size,
                                             " is too small: a byte-level BPE needs 256 "
                                             "byte tokens plus 3 special tokens (>= 259)"));
  TokenizerSpec spec;
  auto bpe = TrainByteLevelBpe(BuiltinCorpus(), static_cast<size_t>(vocab_size - kSpecials));
  if (!bpe.ok()) return bpe.status();
  spec.bpe = std::move(*bpe);
  const int64_t missing = vocab_size - kSpecials - static_cast<int64_t>(spec.bpe.tokens.size());
  for (int64_t i = 0; i < missing; ++i)
    spec.specials.push_back(StrCat("<|reserved_special_token_", i, "|>"));
  const int64_t base = static_cast<int64_t>(spec.bpe.tokens.size() + spec.specials.size());
  spec.specials.push_back(kBosToken);
  spec.specials.push_back(kEosToken);
  spec.specials.push_back(kPadToken);
  spec.bos_id = base;
  spec.eos_id = base + 1;
  spec.pad_id = base + 2;
  return spec;
}

absl::Status WriteTokenizerFiles(const std::string& dir, const TokenizerSpec& spec,
                                 int64_t model_max_length) {
  const BpeVocab& bpe = spec.bpe;
  std::vector<std::string> shown;  // byte-level spelling of each BPE token
  shown.reserve(bpe.tokens.size());
  for (const auto& t : bpe.tokens) shown.push_back(ByteLevelToken(t));

  ojson added = ojson::array();
  const int64_t first_special = static_cast<int64_t>(bpe.tokens.size());
  for (size_t i = 0; i < spec.specials.size(); ++i)
    added.push_back(SpecialToken(spec.specials[i], first_special + static_cast<int64_t>(i)));

  ojson vocab = ojson::object();
  for (size_t i = 0; i < shown.size(); ++i) vocab[shown[i]] = i;
  ojson merges = ojson::array();
  for (const auto& [a, b] : bpe.merges)
    merges.push_back(StrCat(shown[static_cast<size_t>(a)], " ", shown[static_cast<size_t>(b)]));

  const ojson bos = ojson{{"SpecialToken", {{"id", kBosToken}, {"type_id", 0}}}};
  ojson tj;
  tj["version"] = "1.0";
  tj["truncation"] = nullptr;
  tj["padding"] = nullptr;
  tj["added_tokens"] = added;
  tj["normalizer"] = nullptr;
  tj["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", ojson::array({ojson{{"type", "Split"},
                                            {"pattern", {{"Regex", kGpt2SplitPattern}}},
                                            {"behavior", "Isolated"},
                                            {"invert", false}},
                                      ojson{{"type", "ByteLevel"},
                                            {"add_prefix_space", false},
                                            {"trim_offsets", true},
                                            {"use_regex", false}}})}};
  tj["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", ojson::array({bos, ojson{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", ojson::array({bos, ojson{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                             ojson{{"SpecialToken", {{"id", kBosToken}, {"type_id", 1}}}},
                             ojson{{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
      {"special_tokens",
       {{kBosToken, {{"id", kBosToken}, {"ids", {spec.bos_id}}, {"tokens", {kBosToken}}}}}}};
  tj["decoder"] = {{"type", "ByteLevel"},
                   {"add_prefix_space", true},
                   {"trim_offsets", true},
                   {"use_regex", true}};
  tj["model"] = {{"type", "BPE"},
                 {"dropout", nullptr},
                 {"unk_token", nullptr},
                 {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr},
                 {"fuse_unk", false},
                 {"byte_fallback", false},
                 {"ignore_merges", false},
                 {"vocab", vocab},
                 {"merges", merges}};
  if (auto st = WriteText(dir + "/tokenizer.json", tj.dump(2) + "\n"); !st.ok()) return st;

  ojson cfg;
  cfg["add_bos_token"] = true;
  cfg["add_eos_token"] = false;
  cfg["bos_token"] = kBosToken;
  cfg["eos_token"] = kEosToken;
  cfg["pad_token"] = kPadToken;
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["model_max_length"] = model_max_length;
  cfg["tokenizer_class"] = "PreTrainedTokenizerFast";
  // Generated models have no role tokens: the default template spells roles out.
  cfg["chat_template"] = std::string(kDefaultChatTemplate);
  return WriteText(dir + "/tokenizer_config.json", cfg.dump(2) + "\n");
}

}  // namespace engram::tool
