// tokenizer_tool: the C++ side of the reference comparisons in tests/tokenizers (compare.py
// drives it, reference.mjs is the Tokenizers.js / @huggingface/jinja side, render_jinja2.py the
// python3-jinja2 side). Each subcommand prints JSON that compare.py checks field by field
// against the reference's output for the same input, so this file only runs our code and
// serializes results; it decides nothing.
//
//   tokenizer_tool encode TOKENIZER_JSON CORPUS_JSONL   one {"ids","ids_special","text",
//                                                       "text_skip"} line per string
//   tokenizer_tool decode TOKENIZER_JSON IDS_JSONL      one {"text","text_skip"} per id list
//   tokenizer_tool compress TOKENIZER_JSON              {"num_compressed", "ids"}
//   tokenizer_tool render TOKENIZER_CONFIG_JSON|- CASES_JSON
//                                                       [{"ok","text"|"error"}] per case; a
//                                                       case's own "template" wins
//   tokenizer_tool render-dir MODEL_DIR < MESSAGES_JSON LoadChatTemplate(MODEL_DIR) renders the
//                                                       messages with a generation prompt
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "server/memory/compress.h"
#include "server/tokenizer/chat_template.h"
#include "server/tokenizer/tokenizer.h"

namespace {

using Json = nlohmann::json;
using OJson = nlohmann::ordered_json;  // keeps key order: tojson output shows it

int Fail(const std::string& message) {
  std::fprintf(stderr, "tokenizer_tool: %s\n", message.c_str());
  return 1;
}

bool ReadLines(const std::string& path, std::vector<Json>* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = path + ": cannot open";
    return false;
  }
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      out->push_back(Json::parse(line));
    } catch (const Json::exception& e) {
      *error = path + ":" + std::to_string(n) + ": " + e.what();
      return false;
    }
  }
  return true;
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::strict); }

Json DecodeBoth(const engram::Tokenizer& tok, const std::vector<int32_t>& ids) {
  return Json{{"text", tok.DecodeLossy(ids, false)}, {"text_skip", tok.DecodeLossy(ids, true)}};
}

int Encode(const engram::Tokenizer& tok, const std::string& corpus) {
  std::vector<Json> lines;
  std::string error;
  if (!ReadLines(corpus, &lines, &error)) return Fail(error);
  std::string out;
  for (const Json& line : lines) {
    if (!line.is_string()) return Fail(corpus + ": every line must be a JSON string");
    const std::string text = line.get<std::string>();
    const std::vector<int32_t> ids = tok.Encode(text, false);
    const std::vector<int32_t> ids_special = tok.Encode(text, true);
    Json j = DecodeBoth(tok, ids_special);
    j["ids"] = ids;
    j["ids_special"] = ids_special;
    out += Dump(j) + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int Decode(const engram::Tokenizer& tok, const std::string& ids_path) {
  std::vector<Json> lines;
  std::string error;
  if (!ReadLines(ids_path, &lines, &error)) return Fail(error);
  std::string out;
  for (const Json& line : lines) {
    if (!line.is_array()) return Fail(ids_path + ": every line must be a JSON array of ids");
    out += Dump(DecodeBoth(tok, line.get<std::vector<int32_t>>())) + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int Compress(const engram::Tokenizer& tok) {
  const engram::CompressTable table = engram::BuildCompressTable(tok);
  std::cout << Dump(Json{{"num_compressed", table.num_compressed}, {"ids", table.ids}}) << "\n";
  return 0;
}

// CASES_JSON: [{"messages": [...], "add_generation_prompt": bool, "extra": {...},
// "template": optional source}, ...].
int Render(const std::string& config_path, const std::string& cases_path) {
  std::optional<engram::ChatTemplate> from_config;
  if (config_path != "-") {
    auto t = engram::ChatTemplate::FromTokenizerConfig(config_path);
    if (!t.ok()) return Fail(std::string(t.status().message()));
    from_config = *std::move(t);
  }
  std::ifstream in(cases_path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  OJson cases;
  try {
    cases = OJson::parse(buf.str());
  } catch (const OJson::exception& e) {
    return Fail(cases_path + ": " + e.what());
  }
  Json results = Json::array();
  for (const auto& c : cases) {
    absl::StatusOr<std::string> text;
    if (c.contains("template")) {
      auto t = engram::ChatTemplate::Parse(c["template"].get<std::string>());
      text = t.ok() ? t->RenderJson(c.at("messages"), c.value("add_generation_prompt", false),
                                    c.value("extra", OJson::object()))
                    : absl::StatusOr<std::string>(t.status());
    } else if (from_config) {
      text = from_config->RenderJson(c.at("messages"), c.value("add_generation_prompt", false),
                                     c.value("extra", OJson::object()));
    } else {
      return Fail("a case without \"template\" needs a tokenizer_config.json");
    }
    if (text.ok()) {
      results.push_back(Json{{"ok", true}, {"text", *text}});
    } else {
      results.push_back(Json{{"ok", false}, {"error", std::string(text.status().message())}});
    }
  }
  std::cout << Dump(results) << "\n";
  return 0;
}

int RenderDir(const std::string& dir) {
  auto tmpl = engram::LoadChatTemplate(dir);
  if (!tmpl.ok()) return Fail(std::string(tmpl.status().message()));
  std::stringstream buf;
  buf << std::cin.rdbuf();
  OJson messages;
  try {
    messages = OJson::parse(buf.str());
  } catch (const OJson::exception& e) {
    return Fail(std::string("stdin: ") + e.what());
  }
  auto text = tmpl->RenderJson(messages, true, OJson::object());
  if (!text.ok()) return Fail(std::string(text.status().message()));
  std::fwrite(text->data(), 1, text->size(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 3 && args[0] == "render") return Render(args[1], args[2]);
  if (args.size() == 2 && args[0] == "render-dir") return RenderDir(args[1]);
  if (args.size() < 2) {
    return Fail("usage: tokenizer_tool encode|decode|compress|render ... (see the header)");
  }
  auto tok = engram::Tokenizer::FromFile(args[1]);
  if (!tok.ok()) return Fail(std::string(tok.status().message()));
  if (args[0] == "encode" && args.size() == 3) return Encode(*tok, args[2]);
  if (args[0] == "decode" && args.size() == 3) return Decode(*tok, args[2]);
  if (args[0] == "compress" && args.size() == 2) return Compress(*tok);
  return Fail("unknown subcommand or wrong arguments: " + args[0]);
}
