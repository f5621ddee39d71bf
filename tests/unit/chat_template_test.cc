// Chat templates (server/tokenizer/chat_template.h) without the reference implementations:
// what a template the engine cannot render reports (construct and position, at parse / load
// time), where a model directory's template comes from, the special-token variables, the
// default template, runtime errors. Byte-for-byte agreement with python3-jinja2 over the real
// templates and the engine's constructs is checked by tests/tokenizers (compare.py chat, jinja).
#include "server/tokenizer/chat_template.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing_util::FreshDir;
using OJson = nlohmann::ordered_json;

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

std::string Msg(const absl::Status& st) { return std::string(st.message()); }

std::string RenderOk(std::string_view source, const std::vector<ChatMessage>& messages,
                     bool add_generation_prompt = false, const OJson& extra = OJson::object()) {
  auto t = ChatTemplate::Parse(source);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return "";
  auto out = t->Render(messages, add_generation_prompt, extra);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(ChatTemplateTest, UnsupportedConstructsFailAtParseNamingThemAndWhere) {
  struct Case {
    std::string source;
    absl::StatusCode code;
    std::string construct, where;
  } cases[] = {
      {"{% include 'other.jinja' %}", absl::StatusCode::kUnimplemented,
       "unsupported statement '{% include %}'", "line 1, column 4"},
      {"a\n{% extends 'base' %}", absl::StatusCode::kUnimplemented,
       "unsupported statement '{% extends %}'", "line 2"},
      {"ok\n\n  {{ x | frobnicate }}", absl::StatusCode::kUnimplemented,
       "unsupported filter 'frobnicate'", "line 3, column 10"},
      {"{{ x is prime }}", absl::StatusCode::kUnimplemented, "unsupported test 'is prime'",
       "line 1"},
      {"{{ '{}'.format(1) }}", absl::StatusCode::kUnimplemented, "unsupported method '.format()'",
       "line 1"},
      {"{{ cycler(1, 2) }}", absl::StatusCode::kUnimplemented,
       "call of unknown function 'cycler()'", "line 1"},
      {"{% for x in y recursive %}{% endfor %}", absl::StatusCode::kUnimplemented,
       "unsupported recursive loop", "line 1"},
      {"{{ f(*args) }}", absl::StatusCode::kUnimplemented, "unsupported *args", "line 1"},
      {"{% if x %}never closed", absl::StatusCode::kInvalidArgument,
       "unexpected end of template, expected '{% endif %}'", "line 1"},
      {"{{ 'unterminated }}", absl::StatusCode::kInvalidArgument, "unterminated string literal",
       "line 1, column 4"},
      {"{% endfor %}", absl::StatusCode::kInvalidArgument, "misplaced statement '{% endfor %}'",
       "line 1"},
      {"{{ 1 + }}", absl::StatusCode::kInvalidArgument, "unexpected '}}'", "line 1"},
      {"{% break %}", absl::StatusCode::kInvalidArgument, "'break' outside of a loop", "line 1"},
      {"{{ x ! y }}", absl::StatusCode::kInvalidArgument, "unexpected character '!'", "line 1"},
  };
  for (const Case& c : cases) {
    auto t = ChatTemplate::Parse(c.source);
    ASSERT_FALSE(t.ok()) << c.source;
    EXPECT_EQ(t.status().code(), c.code) << c.source << ": " << t.status();
    EXPECT_THAT(Msg(t.status()),
                AllOf(HasSubstr("chat template: "), HasSubstr(c.construct), HasSubstr(c.where)))
        << c.source;
  }
}

TEST(ChatTemplateTest, RendersTheCommonConstructs) {
  const std::vector<ChatMessage> conv = {{"system", "S"}, {"user", " Hi "}, {"assistant", "A"}};
  EXPECT_EQ(RenderOk("{% set ns = namespace(n=0) %}{% for m in messages %}"
                     "{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
                     conv),
            "3");
  EXPECT_EQ(RenderOk("{% for m in messages %}\n  {%- if loop.first %}[{{ m.role }}]{% endif %}\n"
                     "  {{ m.content | trim }}|\n{% endfor %}",
                     conv),
            "[system]  S|\n  Hi|\n  A|\n");
  EXPECT_EQ(RenderOk("{{ messages[1:] | map(attribute='role') | join(',') }} "
                     "{{ messages[::-1][0].content }} {{ 'x' if add_generation_prompt }}",
                     conv, true),
            "user,assistant A x");
  EXPECT_EQ(RenderOk("{{ {'a': [1, 2.5, none, true], 'é': 'q\"'} | tojson }}", {}),
            "{\"a\": [1, 2.5, null, true], \"é\": \"q\\\"\"}");
  EXPECT_EQ(RenderOk("{{ tools is none }} {{ documents is none }} {{ tools | length }}", {}, false,
                     OJson{{"tools", OJson::array({1, 2})}}),
            "False True 2");
  EXPECT_EQ(RenderOk("{% macro r(m, p='> ') %}{{ p }}{{ m.content }}{% endmacro %}"
                     "{% for m in messages %}{{ r(m) }}{% endfor %}",
                     {{"user", "a"}, {"user", "b"}}),
            "> a> b");
}

TEST(ChatTemplateTest, RuntimeErrorsCarryTheirPositionAndKind) {
  auto t = ChatTemplate::Parse(
      "{% for m in messages %}\n{% if m.role == 'system' %}"
      "{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}");
  ASSERT_TRUE(t.ok()) << t.status();
  auto out = t->Render({{"system", "x"}}, true);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(out.status()),
              AllOf(HasSubstr("line 2"), HasSubstr("raise_exception: System role not supported")));
  EXPECT_TRUE(t->Render({{"user", "x"}}, true).ok());

  auto type_error = ChatTemplate::Parse("ok\n{{ messages[0].content + 1 }}");
  ASSERT_TRUE(type_error.ok());
  auto bad = type_error->Render({{"user", "x"}}, false);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(Msg(bad.status()), AllOf(HasSubstr("line 2"), HasSubstr("TypeError")));

  auto overflow = ChatTemplate::Parse("{{ 9223372036854775807 + messages | length }}");
  ASSERT_TRUE(overflow.ok());
  EXPECT_EQ(overflow->Render({{"user", "x"}}, false).status().code(),
            absl::StatusCode::kUnimplemented);
}

TEST(ChatTemplateTest, InvalidUtf8InMessagesIsReplacedNotPassedThrough) {
  EXPECT_EQ(RenderOk("{{ messages[0].content }}|{{ messages[0].content | length }}", {{"user",
                                                                                       "a\xFF"
                                                                                       "b"}}),
            "a\xEF\xBF\xBD"
            "b|3");
}

TEST(ChatTemplateTest, DefaultTemplateSpellsRolesOut) {
  auto t = ChatTemplate::Parse(kDefaultChatTemplate);
  ASSERT_TRUE(t.ok());
  const std::vector<ChatMessage> conv = {{"system", "Be brief. "}, {"user", "Hi"}};
  EXPECT_EQ(*t->Render(conv, true, OJson{{"bos_token", "<s>"}}),
            "<s>system: Be brief.\n\nuser: Hi\n\nassistant:");
  EXPECT_EQ(*t->Render(conv, false), "system: Be brief.\n\nuser: Hi\n\n");
}

TEST(ChatTemplateTest, LoadsFromAModelDirectory) {
  const std::string dir = FreshDir("load");
  // No tokenizer_config.json: the default template.
  auto none = LoadChatTemplate(dir);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->is_default());
  EXPECT_EQ(*none->Render({{"user", "x"}}, true), "user: x\n\nassistant:");

  // tokenizer_config.json: special tokens as strings, AddedToken objects or null.
  Write(dir + "/tokenizer_config.json", R"({
    "bos_token": {"__type": "AddedToken", "content": "<B>", "lstrip": false},
    "eos_token": "<E>", "unk_token": null, "pad_token": "<P>",
    "additional_special_tokens": ["<x>", {"content": "<y>"}],
    "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}{{ unk_token is defined }}{{ additional_special_tokens | join }}"
  })");
  auto from_config = LoadChatTemplate(dir);
  ASSERT_TRUE(from_config.ok()) << from_config.status();
  EXPECT_FALSE(from_config->is_default());
  EXPECT_EQ(from_config->variables().dump(),
            R"({"bos_token":"<B>","eos_token":"<E>","pad_token":"<P>",)"
            R"("additional_special_tokens":["<x>","<y>"]})");
  EXPECT_EQ(*from_config->Render({{"user", "a"}, {"user", "b"}}, false), "<B>a<E>b<E>False<x><y>");
  // Explicit variables win over the special tokens.
  EXPECT_EQ(*from_config->Render({{"user", "a"}}, false, OJson{{"eos_token", "!"}}),
            "<B>a!False<x><y>");

  // chat_template.json wins over tokenizer_config.json, chat_template.jinja over both.
  Write(dir + "/chat_template.json", R"({"chat_template": "json:{{ eos_token }}"})");
  EXPECT_EQ(*LoadChatTemplate(dir)->Render({}, false), "json:<E>");
  Write(dir + "/chat_template.jinja", "jinja:{{ bos_token }}\n");
  EXPECT_EQ(*LoadChatTemplate(dir)->Render({}, false), "jinja:<B>");
}

TEST(ChatTemplateTest, NamedTemplateListsAndLoadFailures) {
  const std::string dir = FreshDir("named");
  Write(dir + "/tokenizer_config.json",
        R"({"chat_template": [{"name": "tool_use", "template": "T"},
                              {"name": "default", "template": "D{{ messages | length }}"}]})");
  auto named = LoadChatTemplate(dir);
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(*named->Render({{"user", "x"}}, false), "D1");

  Write(dir + "/tokenizer_config.json",
        R"({"chat_template": [{"name": "tool_use", "template": "T"}]})");
  auto no_default = LoadChatTemplate(dir);
  ASSERT_FALSE(no_default.ok());
  EXPECT_THAT(Msg(no_default.status()), HasSubstr("none is \"default\""));

  // A template the engine cannot parse fails the load, naming the file and the construct.
  Write(dir + "/tokenizer_config.json",
        R"({"chat_template": "line 1\n{% call foo() %}x{% endcall %}"})");
  auto unsupported = LoadChatTemplate(dir);
  ASSERT_FALSE(unsupported.ok());
  EXPECT_EQ(unsupported.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(Msg(unsupported.status()), AllOf(HasSubstr("tokenizer_config.json"),
                                               HasSubstr("'{% call %}'"), HasSubstr("line 2")));

  // One that parses but needs something missing at run time fails the load too...
  Write(dir + "/tokenizer_config.json",
        R"({"chat_template": "{{ 'x' % 1 if messages else '' }}"})");
  auto runtime = LoadChatTemplate(dir);
  ASSERT_FALSE(runtime.ok());
  EXPECT_THAT(Msg(runtime.status()), HasSubstr("printf-style"));
  // ... but not one that rejects the probe conversations on purpose.
  Write(
      dir + "/tokenizer_config.json",
      R"({"chat_template": "{% if messages[0].role == 'system' %}{{ raise_exception('no system') }}{% endif %}ok"})");
  EXPECT_TRUE(LoadChatTemplate(dir).ok());

  Write(dir + "/tokenizer_config.json", "{not json");
  EXPECT_THAT(Msg(LoadChatTemplate(dir).status()), HasSubstr("invalid JSON"));
}

}  // namespace
}  // namespace engram
