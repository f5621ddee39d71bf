// Loading chat templates from model directories and rendering conversations; see
// chat_template.h. The template language itself lives in jinja_*.cc.
#include "server/tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "server/tokenizer/jinja_eval.h"
#include "server/tokenizer/jinja_parser.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

using OJson = nlohmann::ordered_json;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(path, ": cannot open"));
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

absl::StatusOr<OJson> ReadJson(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  try {
    return OJson::parse(*text);
  } catch (const OJson::exception& e) {
    return absl::InvalidArgumentError(StrCat(path, ": invalid JSON: ", e.what()));
  }
}

// A special token in tokenizer_config.json: "text", {"content": "text", ...} or null.
std::optional<std::string> TokenText(const OJson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

// transformers' special_tokens_map: the special tokens that are set, as strings.
OJson SpecialTokens(const OJson& config) {
  OJson out = OJson::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                          "cls_token", "mask_token"}) {
    if (!config.contains(key)) continue;
    if (auto text = TokenText(config[key])) out[key] = *text;
  }
  if (config.contains("additional_special_tokens") &&
      config["additional_special_tokens"].is_array()) {
    OJson list = OJson::array();
    for (const auto& t : config["additional_special_tokens"])
      if (auto text = TokenText(t)) list.push_back(*text);
    if (!list.empty()) out["additional_special_tokens"] = list;
  }
  return out;
}

// `chat_template` of a config: a string, or [{"name", "template"}, ...] ("default" wins).
absl::StatusOr<std::optional<std::string>> TemplateField(const OJson& j, const std::string& path) {
  if (!j.contains("chat_template") || j["chat_template"].is_null()) return std::nullopt;
  const OJson& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const auto& entry : t)
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string())
        return entry["template"].get<std::string>();
    return absl::InvalidArgumentError(
        StrCat(path, ": chat_template: several named templates and none is \"default\""));
  }
  return absl::InvalidArgumentError(
      StrCat(path, ": chat_template: expected a string or a list of {name, template}"));
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(std::string_view source) {
  auto tmpl = jinja::ParseTemplate(source);
  if (!tmpl.ok())
    return absl::Status(tmpl.status().code(),
                        StrCat("chat template: ", std::string(tmpl.status().message())));
  ChatTemplate t;
  t.source_ = std::string(source);
  t.tmpl_ = *std::move(tmpl);
  return t;
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromTokenizerConfig(const std::string& path) {
  auto config = ReadJson(path);
  if (!config.ok()) return config.status();
  auto source = TemplateField(*config, path);
  if (!source.ok()) return source.status();
  auto t = Parse(source->value_or(std::string(kDefaultChatTemplate)));
  if (!t.ok())
    return absl::Status(t.status().code(), StrCat(path, ": ", std::string(t.status().message())));
  t->variables_ = SpecialTokens(*config);
  t->is_default_ = !source->has_value();
  return t;
}

absl::StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt,
                                                 const OJson& extra) const {
  OJson list = OJson::array();
  for (const ChatMessage& m : messages)
    list.push_back(OJson{{"role", m.role}, {"content", m.content}});
  return RenderJson(list, add_generation_prompt, extra);
}

absl::StatusOr<std::string> ChatTemplate::RenderJson(const OJson& messages,
                                                     bool add_generation_prompt,
                                                     const OJson& extra) const {
  if (!messages.is_array())
    return absl::InvalidArgumentError("chat template: messages must be a list");
  if (!extra.is_object() && !extra.is_null())
    return absl::InvalidArgumentError("chat template: extra variables must be an object");
  jinja::Dict context;
  for (auto it = variables_.begin(); it != variables_.end(); ++it)
    context.Set(it.key(), jinja::Value::FromJson(it.value()));
  context.Set("tools", jinja::Value::None());
  context.Set("documents", jinja::Value::None());
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it)
      context.Set(it.key(), jinja::Value::FromJson(it.value()));
  context.Set("messages", jinja::Value::FromJson(messages));
  context.Set("add_generation_prompt", jinja::Value::Bool(add_generation_prompt));
  auto out = jinja::Render(*tmpl_, context);
  if (!out.ok())
    return absl::Status(out.status().code(),
                        StrCat("chat template: ", std::string(out.status().message())));
  return out;
}

absl::Status ChatTemplate::CheckRenders() const {
  const std::vector<std::vector<ChatMessage>> probes = {
      {{"user", "Hello"}},
      {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}},
  };
  for (const auto& probe : probes) {
    for (bool gen : {true, false}) {
      auto out = Render(probe, gen);
      if (!out.ok() && out.status().code() == absl::StatusCode::kUnimplemented) return out.status();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const std::string config_path = model_dir + "/tokenizer_config.json";
  OJson config = OJson::object();
  if (fs::exists(config_path)) {
    auto c = ReadJson(config_path);
    if (!c.ok()) return c.status();
    config = *std::move(c);
  }
  std::optional<std::string> source;
  std::string origin;
  if (const std::string p = model_dir + "/chat_template.jinja"; fs::exists(p)) {
    auto text = ReadFile(p);
    if (!text.ok()) return text.status();
    source = *std::move(text);
    origin = p;
  } else if (const std::string q = model_dir + "/chat_template.json"; fs::exists(q)) {
    auto j = ReadJson(q);
    if (!j.ok()) return j.status();
    auto field = TemplateField(*j, q);
    if (!field.ok()) return field.status();
    source = *std::move(field);
    origin = q;
  }
  if (!source) {
    auto field = TemplateField(config, config_path);
    if (!field.ok()) return field.status();
    source = *std::move(field);
    origin = config_path;
  }
  auto t = ChatTemplate::Parse(source.value_or(std::string(kDefaultChatTemplate)));
  if (!t.ok())
    return absl::Status(t.status().code(), StrCat(origin, ": ", std::string(t.status().message())));
  t->variables_ = SpecialTokens(config);
  t->is_default_ = !source.has_value();
  if (absl::Status st = t->CheckRenders(); !st.ok())
    return absl::Status(st.code(), StrCat(origin, ": ", std::string(st.message())));
  return t;
}

}  // namespace engram
