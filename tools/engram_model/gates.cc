// engram-model gates: the Engram paper's case-study view. Each token of a text is shown with its
// gate value alpha per Engram layer (mean over branches): as a coloured heat map on a terminal,
// as a plain table otherwise, or as JSON.
#include <unistd.h>

#include <cstdio>

#include "tools/engram_model/commands.h"
#include "tools/engram_model/flags.h"
#include "tools/engram_model/tool_model.h"

namespace engram::tool {
namespace {

// Printable form of a token's text: control characters and newlines escaped.
std::string Printable(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    if (ch == '\n')
      out += "\\n";
    else if (ch == '\r')
      out += "\\r";
    else if (ch == '\t')
      out += "\\t";
    else if (ch < 0x20)
      out += '?';
    else
      out += static_cast<char>(ch);
  }
  return out;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}

// Blue (gate near 0) through white to red (gate near 1), as 24-bit ANSI background colours.
void PrintHeat(float g, const std::string& text) {
  const float x = g < 0 ? 0 : (g > 1 ? 1 : g);
  int r, gr, b;
  if (x < 0.5f) {
    const float t = x / 0.5f;
    r = static_cast<int>(60 + 195 * t), gr = static_cast<int>(90 + 165 * t), b = 255;
  } else {
    const float t = (x - 0.5f) / 0.5f;
    r = 255, gr = static_cast<int>(255 - 185 * t), b = static_cast<int>(255 - 195 * t);
  }
  std::printf("\x1b[48;2;%d;%d;%dm\x1b[38;2;0;0;0m%s\x1b[0m", r, gr, b, text.c_str());
}

}  // namespace

int RunGates(int argc, char** argv) {
  std::string model_dir, text;
  bool json = false, add_special = false;
  FlagParser p("gates", "gates --model DIR --text \"...\" [--json]",
               "Shows each token with its Engram gate value per layer (mean over branches).");
  p.AddString("model", &model_dir, "model directory");
  p.AddString("text", &text, "text to analyse");
  p.AddBool("json", &json,
            "print JSON: {\"tokens\": [...], \"layers\": {\"<l>\": [gate per token]}}");
  p.AddBool("add-special-tokens", &add_special, "add BOS as the tokenizer's template says");
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  if (!p.IsSet("model") || !p.IsSet("text"))
    return Fail("gates", absl::InvalidArgumentError("--model and --text are required"));

  auto m = OpenToolModel(model_dir, 0);
  if (!m.ok()) return Fail("gates", m.status());
  const ModelConfig& c = (*m)->config();
  if (!c.engram.enabled())
    return Fail("gates",
                absl::InvalidArgumentError(model_dir + ": the model has no Engram layers"));
  auto tokens = ResolveTokens(**m, {}, text, false, true, add_special);
  if (!tokens.ok()) return Fail("gates", tokens.status());
  auto run = RunSequence(**m, *tokens, false, -1);
  if (!run.ok()) return Fail("gates", run.status());

  const int M = c.hc_mult;
  const size_t T = tokens->size();
  const size_t L = c.engram.layer_ids.size();
  std::vector<std::string> pieces;
  for (int32_t t : *tokens)
    pieces.push_back((*m)->loaded.tokenizer->DecodeLossy(std::span<const int32_t>(&t, 1)));
  auto gate = [&](size_t slot, size_t t) {
    float s = 0;
    for (int b = 0; b < M; ++b) s += run->gates[slot][t * M + b];
    return s / static_cast<float>(M);
  };

  if (json) {
    std::printf("{\"tokens\": [");
    for (size_t t = 0; t < T; ++t)
      std::printf("%s%s", t ? ", " : "", JsonString(pieces[t]).c_str());
    std::printf("], \"token_ids\": [");
    for (size_t t = 0; t < T; ++t) std::printf("%s%d", t ? ", " : "", (*tokens)[t]);
    std::printf("], \"layers\": {");
    for (size_t s = 0; s < L; ++s) {
      std::printf("%s\"%d\": [", s ? ", " : "", c.engram.layer_ids[s]);
      for (size_t t = 0; t < T; ++t)
        std::printf("%s%.6f", t ? ", " : "", static_cast<double>(gate(s, t)));
      std::printf("]");
    }
    std::printf("}}\n");
    return 0;
  }
  if (isatty(STDOUT_FILENO)) {
    for (size_t s = 0; s < L; ++s) {
      std::printf("layer %d  ", c.engram.layer_ids[s]);
      for (size_t t = 0; t < T; ++t) PrintHeat(gate(s, t), Printable(pieces[t]));
      std::printf("\n");
    }
    std::printf("scale: ");
    for (float g : {0.0f, 0.25f, 0.5f, 0.75f, 1.0f})
      PrintHeat(g, " " + std::to_string(g).substr(0, 4) + " ");
    std::printf("\n");
    return 0;
  }
  std::printf("%5s  %-24s", "pos", "token");
  for (size_t s = 0; s < L; ++s) std::printf("  layer %-3d", c.engram.layer_ids[s]);
  std::printf("\n");
  for (size_t t = 0; t < T; ++t) {
    std::printf("%5zu  %-24s", t, ("'" + Printable(pieces[t]) + "'").c_str());
    for (size_t s = 0; s < L; ++s) std::printf("  %9.4f", static_cast<double>(gate(s, t)));
    std::printf("\n");
  }
  return 0;
}

}  // namespace engram::tool
