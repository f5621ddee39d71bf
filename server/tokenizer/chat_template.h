// Chat templates: turning a conversation (`messages` of a Generate request, `engram-client
// chat`) into the prompt text the model was trained on, with the model's own Jinja template
// from tokenizer_config.json — the way Hugging Face transformers' apply_chat_template does.
//
// Debian 12 has no C++ Jinja engine, so this runs a Jinja2 subset (jinja_*.h) sufficient for
// the templates of DeepSeek-V3, Llama 3 and Qwen 3, checked byte for byte against
// python3-jinja2 in tests/tokenizers. Supported: text with Jinja2's whitespace rules under HF's
// settings (trim_blocks, lstrip_blocks, `{%- -%}`); statements if/elif/else, for (with
// `else`, `if` filtering, loop.* and break/continue), set (names, tuples, namespace
// attributes, block set), macro, with, filter blocks, raw, HF's generation block; expressions
// with Python's operators, slicing, `in`, `~`, conditional expressions, string/dict methods;
// Jinja2's filters and tests (jinja_builtins.h); globals range, namespace, dict,
// raise_exception and strftime_now. Not supported (rejected when the template is parsed,
// naming the construct and its line): include/import/extends/block/call, recursive loops,
// *args/**kwargs in calls, '%' string formatting, str.format, filters and tests not listed in
// jinja_builtins.h.
#ifndef ENGRAM_SERVER_TOKENIZER_CHAT_TEMPLATE_H_
#define ENGRAM_SERVER_TOKENIZER_CHAT_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace engram {

namespace jinja {
struct Template;
}

struct ChatMessage {
  std::string role;
  std::string content;
};

// Used when a model directory has no chat template: no role tokens are assumed, roles are
// spelled out. Renders "{bos}system: ...\n\nuser: ...\n\nassistant:" (bos only if the tokenizer
// has one; the final "assistant:" only with add_generation_prompt). engram-model create writes
// this template into generated models, so both behave alike.
inline constexpr std::string_view kDefaultChatTemplate =
    "{{ bos_token }}{% for message in messages %}{{ message['role'] }}: "
    "{{ message['content'] | trim }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}";

class ChatTemplate;
absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir);

class ChatTemplate {
 public:
  // Parses a template. Errors name the construct and the line and column: InvalidArgument for
  // invalid Jinja, Unimplemented for Jinja this engine does not support.
  static absl::StatusOr<ChatTemplate> Parse(std::string_view source);
  // The template and special tokens of a tokenizer_config.json (`chat_template`: a string, or
  // HF's list of {"name", "template"} from which "default" is taken). Without a template, the
  // default one (is_default()).
  static absl::StatusOr<ChatTemplate> FromTokenizerConfig(const std::string& path);

  // Renders as transformers' apply_chat_template(messages, add_generation_prompt, **extra):
  // the variables are the special tokens (bos_token, eos_token, ...; see variables()), then
  // `extra` (which may override them, and may carry tools, documents or template switches such
  // as enable_thinking), then messages and add_generation_prompt; tools and documents are None
  // unless given. Errors carry the template position; a template's raise_exception(msg) gives
  // InvalidArgument "raise_exception: msg".
  absl::StatusOr<std::string> Render(
      const std::vector<ChatMessage>& messages, bool add_generation_prompt,
      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;
  // Messages as JSON objects (OpenAI/HF style: role, content, and e.g. tool_calls,
  // reasoning_content). Key order is kept: it shows in tojson output.
  absl::StatusOr<std::string> RenderJson(const nlohmann::ordered_json& messages,
                                         bool add_generation_prompt,
                                         const nlohmann::ordered_json& extra) const;

  // Renders a few conversations (system/user/assistant turns) and fails only if the engine
  // lacks something the template uses at run time (Unimplemented); errors the template
  // raises itself are its choice. LoadChatTemplate calls it.
  absl::Status CheckRenders() const;

  const std::string& source() const { return source_; }
  const nlohmann::ordered_json& variables() const { return variables_; }
  bool is_default() const { return is_default_; }

 private:
  friend absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir);
  ChatTemplate() = default;

  std::string source_;
  std::shared_ptr<const jinja::Template> tmpl_;
  nlohmann::ordered_json variables_ = nlohmann::ordered_json::object();
  bool is_default_ = false;
};

// The chat template of a model directory: chat_template.jinja, else chat_template.json
// ({"chat_template": ...}), else tokenizer_config.json's chat_template, else
// kDefaultChatTemplate; special tokens from tokenizer_config.json when present. Runs
// CheckRenders(), so a template the engine cannot render fails here, naming the construct.
absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir);

}  // namespace engram

#endif  // ENGRAM_SERVER_TOKENIZER_CHAT_TEMPLATE_H_
