// engram-client generate: one streamed completion. Text mode writes each message's text the
// moment it arrives (flushed, so a pipe or terminal shows tokens as they come); --json writes
// each message as one JSON line (client/proto_json.h) for scripts.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "client/channel.h"
#include "client/commands.h"
#include "client/flags.h"
#include "client/interrupt.h"
#include "client/proto_json.h"
#include "client/request_flags.h"
#include "client/rpc_status.h"
#include "client/stream_generate.h"
#include "engram/v1/inference.pb.h"
#include "server/util/str_cat.h"

namespace engram::client {
namespace {

constexpr int64_t kDefaultMaxTokens = 256;

// Text mode shows per-token details on stderr, after the text, so stdout stays the text alone.
void PrintTokenDetails(const std::vector<engram::v1::GenerateResponse>& messages, bool logprobs,
                       bool gates) {
  size_t index = 0;
  for (const auto& m : messages) {
    for (int i = 0; i < m.token_ids_size(); ++i, ++index) {
      std::string line = StrCat("token ", index, " id ", m.token_ids(i));
      if (logprobs && i < m.logprobs_size()) {
        const auto& lp = m.logprobs(i);
        char buf[64];
        std::snprintf(buf, sizeof buf, " logprob %.4f", lp.logprob());
        absl::StrAppend(&line, buf);
        for (const auto& t : lp.top()) {
          std::snprintf(buf, sizeof buf, "%.4f", t.logprob());
          // The piece quoted and escaped, so spaces and newlines are visible.
          absl::StrAppend(&line, " | ", t.token_id(), " ", Quoted(t.token()), " ", buf);
        }
      }
      if (gates && i < m.engram_gates_size()) {
        absl::StrAppend(&line, " gates");
        for (float g : m.engram_gates(i).values()) {
          char buf[32];
          std::snprintf(buf, sizeof buf, " %.3f", g);
          absl::StrAppend(&line, buf);
        }
      }
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }
}

const char* FinishName(engram::v1::FinishReason r) {
  switch (r) {
    case engram::v1::FINISH_REASON_LENGTH:
      return "length";
    case engram::v1::FINISH_REASON_EOS:
      return "eos";
    case engram::v1::FINISH_REASON_STOP:
      return "stop";
    case engram::v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    case engram::v1::FINISH_REASON_ERROR:
      return "error";
    default:
      return "unspecified";
  }
}

}  // namespace

int RunGenerate(int argc, char** argv) {
  ConnectionOptions conn_opts;
  SamplingOptions sampling;
  StoppingOptions stopping;
  int64_t max_tokens = kDefaultMaxTokens;
  std::vector<int64_t> token_ids;
  std::string request_id;
  int64_t logprobs = 0;
  bool gates = false, json = false, stats = false, add_special_tokens = false;

  FlagParser p("generate", "[flags] PROMPT   (PROMPT '-': read it from stdin)",
               "Streams a completion of PROMPT (or of --token-ids) to stdout as it is generated.\n"
               "On an error the gRPC status code and message go to stderr and the exit code is 1;\n"
               "Ctrl-C cancels the request (the server frees the sequence) and exits 130.");
  p.AddIntList("token-ids", &token_ids, "prompt as token ids 1,2,3 instead of PROMPT", 0,
               std::numeric_limits<uint32_t>::max());
  p.AddBool("add-special-tokens", &add_special_tokens,
            "tokenize PROMPT with the tokenizer's special tokens (BOS)");
  p.AddBool("json", &json,
            "print each response message as one JSON line (proto field names, every field)");
  p.AddBool("stats", &stats, "print the finish reason and usage to stderr at the end");
  p.AddInt("logprobs", &logprobs,
           "log-probabilities of the sampled token and the top N alternatives, 0..20 (text "
           "mode: on stderr after the text)",
           0, 20);
  p.AddBool("gates", &gates, "return the Engram gate values of every token (text mode: stderr)");
  p.AddString("request-id", &request_id, "request id for the server's logs (default: its own)",
              "ID");
  p.AddSection("stopping");
  p.AddInt("max-tokens", &max_tokens,
           StrCat("most tokens to generate, 0 = up to the context limit (default ",
                  kDefaultMaxTokens, ")"),
           0, std::numeric_limits<uint32_t>::max());
  AddStoppingFlags(p, &stopping);
  AddSamplingFlags(p, &sampling, /*with_seed=*/true);
  AddConnectionFlags(p, &conn_opts);
  p.SetPositional("PROMPT", 0, 1);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;

  const bool have_ids = p.IsSet("token-ids");
  if (have_ids == !p.positional().empty())
    return UsageError(p, "give exactly one of PROMPT or --token-ids");
  if (have_ids && token_ids.empty()) return UsageError(p, "--token-ids: the list is empty");

  engram::v1::GenerateRequest req;
  req.set_request_id(request_id);
  if (have_ids) {
    for (int64_t id : token_ids) req.mutable_prompt_token_ids()->add_ids(static_cast<uint32_t>(id));
  } else {
    std::string prompt = p.positional()[0];
    if (prompt == "-") prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
    if (prompt.empty()) return UsageError(p, "the prompt is empty");
    req.set_prompt(prompt);
    req.set_add_special_tokens(add_special_tokens);
  }
  ApplySampling(p, sampling, req.mutable_sampling());
  req.mutable_stopping()->set_max_new_tokens(static_cast<uint32_t>(max_tokens));
  ApplyStopping(stopping, req.mutable_stopping());
  req.set_logprobs(static_cast<uint32_t>(logprobs));
  req.set_return_engram_gates(gates);

  auto conn = Connection::Open(conn_opts);
  if (!conn.ok()) return UsageError(p, conn.status());

  CancelSlot slot;
  InterruptWatcher watcher([&slot] { slot.Cancel(); });
  std::vector<engram::v1::GenerateResponse> kept;  // for the token details of text mode
  engram::v1::GenerateResponse last;
  bool ends_with_newline = true;
  grpc::Status status = StreamGenerate(
      *conn, req,
      [&](const engram::v1::GenerateResponse& m) {
        if (json) {
          std::printf("%s\n", ToJsonLine(m).c_str());
        } else {
          std::fwrite(m.text().data(), 1, m.text().size(), stdout);
          if (!m.text().empty()) ends_with_newline = m.text().back() == '\n';
          if (logprobs > 0 || gates) kept.push_back(m);
        }
        std::fflush(stdout);
        last = m;
      },
      &slot);
  // The text ends on its own line, as `echo` would leave it, unless it already did.
  if (!json && !ends_with_newline) std::fputc('\n', stdout);
  std::fflush(stdout);
  if (watcher.interrupted()) {
    std::fprintf(stderr, "engram-client generate: cancelled\n");
    return kExitInterrupted;
  }
  if (!status.ok()) {
    PrintRpcError("generate", status);
    return kExitRpcError;
  }
  if (!json && (logprobs > 0 || gates)) PrintTokenDetails(kept, logprobs > 0, gates);
  if (stats) {
    const auto& u = last.usage();
    std::fprintf(stderr,
                 "finish: %s%s%s | prompt %u tokens, completion %u tokens | queue %.3f s, "
                 "TTFT %.3f s, E2E %.3f s\n",
                 FinishName(last.finish_reason()), last.stop_reason().empty() ? "" : " ",
                 last.stop_reason().empty() ? "" : Quoted(last.stop_reason()).c_str(),
                 u.prompt_tokens(), u.completion_tokens(), u.queue_time_seconds(),
                 u.time_to_first_token_seconds(), u.e2e_seconds());
  }
  return kExitOk;
}

}  // namespace engram::client
