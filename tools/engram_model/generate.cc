// engram-model generate: samples a continuation on the CPU (or CUDA) backend and streams the
// text to stdout as it is produced, whole UTF-8 characters only, then reports throughput on
// stderr: prefill tokens/s and decode tokens/s, measured separately.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "server/engine/sampler.h"
#include "tools/engram_model/commands.h"
#include "tools/engram_model/flags.h"
#include "tools/engram_model/tool_model.h"

namespace engram::tool {

int RunGenerate(int argc, char** argv) {
  std::string model_dir, prompt;
  int64_t max_tokens = 128, top_k = 0, threads = 0, seed = 0;
  double temperature = 0.8, top_p = 0.95;
  bool ignore_eos = false;
  FlagParser p("generate",
               "generate --model DIR --prompt \"...\" [--max-tokens N] [--temperature T] [--top-p "
               "P] [--top-k K] [--seed S]",
               "Streams the continuation to stdout, then prints tokens/s on stderr.");
  p.AddString("model", &model_dir, "model directory");
  p.AddString("prompt", &prompt, "prompt text");
  p.AddInt("max-tokens", &max_tokens, "tokens to generate (default 128)", 1, 1 << 20);
  p.AddDouble("temperature", &temperature, "sampling temperature; 0 = greedy (default 0.8)");
  p.AddDouble("top-p", &top_p, "nucleus sampling mass in (0, 1] (default 0.95)");
  p.AddInt("top-k", &top_k, "keep the k most likely tokens; 0 = off (default 0)", 0, 1 << 24);
  p.AddInt("seed", &seed, "random seed (default 0)", 0, INT64_MAX);
  p.AddInt("threads", &threads, "CPU threads (default: one per core)", 0, 1024);
  p.AddBool("ignore-eos", &ignore_eos, "keep generating after the end-of-sequence token");
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  if (!p.IsSet("model") || !p.IsSet("prompt"))
    return Fail("generate", absl::InvalidArgumentError("--model and --prompt are required"));
  if (top_p <= 0 || top_p > 1)
    return Fail("generate", absl::InvalidArgumentError("--top-p must be in (0, 1], got " +
                                                       std::to_string(top_p)));

  auto opened = OpenToolModel(model_dir, static_cast<int>(threads));
  if (!opened.ok()) return Fail("generate", opened.status());
  ToolModel& m = **opened;
  std::fprintf(stderr, "engram-model generate: %s\n", m.backend.reason.c_str());
  Model& model = *m.loaded.model;
  const ModelConfig& c = model.config();
  auto tokens = ResolveTokens(m, {}, prompt, false, true, /*add_special=*/true);
  if (!tokens.ok()) return Fail("generate", tokens.status());
  const int64_t total = std::min<int64_t>(static_cast<int64_t>(tokens->size()) + max_tokens,
                                          c.max_position_embeddings);
  if (total <= static_cast<int64_t>(tokens->size()))
    return Fail("generate", absl::InvalidArgumentError(
                                "the prompt fills the whole context (max_position_embeddings)"));

  constexpr int kBlock = 16;
  KvCache kv(c, static_cast<int>((total + kBlock - 1) / kBlock), kBlock, model.backend());
  SequenceState state;
  model.ResetState(state);
  if (auto st = kv.Reserve(state, total); !st.ok()) return Fail("generate", st);

  SamplingParams sp;
  sp.temperature = static_cast<float>(temperature);
  sp.top_p = static_cast<float>(top_p);
  sp.top_k = static_cast<int>(top_k);
  sp.seed = static_cast<uint64_t>(seed);
  Sampler sampler(sp, *tokens, 0);
  StreamDecoder decoder(*m.loaded.tokenizer, /*skip_special_tokens=*/true);

  using Clock = std::chrono::steady_clock;
  ForwardOutput out;
  std::vector<int32_t> step_tokens = *tokens;
  const auto t0 = Clock::now();
  auto t_first = t0;
  int64_t generated = 0;
  for (int64_t pos = static_cast<int64_t>(tokens->size()); pos < total; ++pos) {
    StepEntry e{&state, step_tokens, false};
    if (auto st = model.Forward(std::span<const StepEntry>(&e, 1), kv, &out); !st.ok())
      return Fail("generate", st);
    if (generated == 0) t_first = Clock::now();
    const int32_t next =
        sampler.Sample(std::span<float>(out.logits.data(), static_cast<size_t>(c.vocab_size)));
    sampler.Accept(next);
    ++generated;
    const bool eos =
        std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) != c.eos_token_ids.end();
    if (eos && !ignore_eos) break;
    std::fputs(decoder.Push(next).c_str(), stdout);
    std::fflush(stdout);
    step_tokens.assign(1, next);
  }
  std::fputs(decoder.Flush().c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);  // the text ends before the statistics on stderr, also through a pipe
  const auto t_end = Clock::now();
  const double prefill_s = std::chrono::duration<double>(t_first - t0).count();
  const double decode_s = std::chrono::duration<double>(t_end - t_first).count();
  std::fprintf(stderr,
               "prompt: %zu tokens in %.3f s (%.1f tokens/s); generated: %lld tokens, decode %.1f "
               "tokens/s\n",
               tokens->size(), prefill_s, static_cast<double>(tokens->size()) / prefill_s,
               static_cast<long long>(generated),
               generated > 1 ? static_cast<double>(generated - 1) / decode_s : 0.0);
  kv.Release(state);
  return 0;
}

}  // namespace engram::tool
