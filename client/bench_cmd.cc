// engram-client bench: the load test. It fetches the model's vocabulary (GetModelInfo, which
// also opens the connection before the clock starts), builds the workload (bench_workload.h),
// runs the warm-up requests and then the measured ones (bench_runner.h), and reports as
// `vllm bench serve` does (bench_metrics.h, bench_report.h).
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "client/bench_metrics.h"
#include "client/bench_report.h"
#include "client/bench_runner.h"
#include "client/bench_workload.h"
#include "client/channel.h"
#include "client/commands.h"
#include "client/flags.h"
#include "client/interrupt.h"
#include "client/progress.h"
#include "client/request_flags.h"
#include "client/rpc_status.h"
#include "engram/v1/inference.grpc.pb.h"
#include "server/util/str_cat.h"

namespace engram::client {
namespace {

std::string LocalDate() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

std::string RangeText(IntRange r) { return r.fixed() ? StrCat(r.min) : StrCat(r.min, "-", r.max); }

std::vector<engram::v1::GenerateRequest> BuildRequests(const std::vector<BenchPrompt>& prompts,
                                                       const engram::v1::GenerateRequest& base,
                                                       std::string_view id_prefix) {
  std::vector<engram::v1::GenerateRequest> out;
  out.reserve(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const BenchPrompt& p = prompts[i];
    engram::v1::GenerateRequest r = base;
    r.set_request_id(StrCat(id_prefix, i));
    switch (p.kind) {
      case BenchPrompt::Kind::kTokenIds:
        r.mutable_prompt_token_ids()->mutable_ids()->Add(p.token_ids.begin(), p.token_ids.end());
        break;
      case BenchPrompt::Kind::kText:
        r.set_prompt(p.text);
        break;
      case BenchPrompt::Kind::kMessages:
        for (const auto& [role, content] : p.messages) {
          auto* m = r.mutable_messages()->add_messages();
          m->set_role(role);
          m->set_content(content);
        }
        r.mutable_messages()->set_add_generation_prompt(true);
        break;
    }
    r.mutable_stopping()->set_max_new_tokens(p.max_tokens);
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<uint32_t> PromptLens(const std::vector<BenchPrompt>& prompts) {
  std::vector<uint32_t> out;
  for (const auto& p : prompts) out.push_back(p.prompt_len);
  return out;
}

}  // namespace

int RunBench(int argc, char** argv) {
  ConnectionOptions conn_opts;
  SamplingOptions sampling;
  StoppingOptions stopping;
  int64_t num_prompts = 100, concurrency = 0, warmup = 0, seed = 0;
  double request_rate = std::numeric_limits<double>::infinity(), burstiness = 1;
  IntRange input_len{100, 1024}, max_tokens{100, 1024};
  std::string dataset, json_file;
  bool json_per_request = false;
  double slo_ttft = 0, slo_tpot = 0, slo_e2el = 0;

  FlagParser p(
      "bench", "[flags]",
      "Load-tests the server and reports as `vllm bench serve` does: TTFT, TPOT, ITL and E2E\n"
      "latency (mean, median, P90, P99), request and token throughput, goodput, failures by\n"
      "status code. Closed loop: --concurrency N keeps N requests in flight. Open loop:\n"
      "--request-rate R sends Poisson arrivals (gamma with --burstiness), optionally capped\n"
      "by --concurrency. Neither: every request at once, as vLLM's default. The default\n"
      "workload is the nano-vLLM one the Engram paper used: random token ids, prompt and\n"
      "output lengths Uniform(100, 1024) (add --ignore-eos for its fixed output lengths).\n"
      "Exit 0 when the run completes (failed requests are in the report), 1 when every\n"
      "request failed, 130 on Ctrl-C (requests in flight are cancelled; no report).");
  p.AddSection("load");
  p.AddInt("num-prompts", &num_prompts, "measured requests (default 100)");
  p.AddInt("concurrency", &concurrency, "most requests in flight, 0 = no limit (default 0)", 0);
  p.AddDouble("request-rate", &request_rate,
              "requests per second of the open loop, inf = all at once (default inf)", 0,
              std::numeric_limits<double>::infinity(), /*min_exclusive=*/true);
  p.AddDouble("burstiness", &burstiness,
              "gamma shape of the arrivals: 1 = Poisson, < 1 burstier, > 1 more regular", 0,
              std::numeric_limits<double>::infinity(), /*min_exclusive=*/true);
  p.AddInt("warmup", &warmup, "requests sent first and left out of every metric (default 0)", 0);
  p.AddInt("seed", &seed, "seed of the whole workload: prompts, lengths, arrivals (default 0)", 0);
  p.AddSection("workload");
  p.AddRange("input-len", &input_len, "random prompt length N or Uniform(A, B) (default 100,1024)");
  p.AddRange("max-tokens", &max_tokens,
             "max tokens per request, N or Uniform(A, B) (default 100,1024)", 1,
             std::numeric_limits<uint32_t>::max());
  p.AddString("dataset", &dataset,
              "JSONL file of {\"prompt\": ...} or {\"messages\": [...]} lines (optional "
              "\"max_tokens\") instead of random token ids",
              "FILE");
  AddStoppingFlags(p, &stopping);
  p.AddSection("report");
  p.AddString("json", &json_file, "also write every metric to this JSON file", "FILE");
  p.AddBool("json-per-request", &json_per_request,
            "add per-request lists to the JSON (input_lens, output_lens, ttfts, itls, e2els, "
            "errors)");
  p.AddDouble("slo-ttft-ms", &slo_ttft, "goodput: TTFT objective in ms", 0,
              std::numeric_limits<double>::infinity(), true);
  p.AddDouble("slo-tpot-ms", &slo_tpot, "goodput: TPOT objective in ms", 0,
              std::numeric_limits<double>::infinity(), true);
  p.AddDouble("slo-e2el-ms", &slo_e2el, "goodput: E2E latency objective in ms", 0,
              std::numeric_limits<double>::infinity(), true);
  AddSamplingFlags(p, &sampling, /*with_seed=*/false);
  AddConnectionFlags(p, &conn_opts);
  p.SetPositional("", 0, 0);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  if (!dataset.empty() && p.IsSet("input-len"))
    return UsageError(p, "--input-len applies to random prompts, not to --dataset");

  SloConfig slo;
  if (p.IsSet("slo-ttft-ms")) slo.ttft_ms = slo_ttft;
  if (p.IsSet("slo-tpot-ms")) slo.tpot_ms = slo_tpot;
  if (p.IsSet("slo-e2el-ms")) slo.e2el_ms = slo_e2el;

  std::vector<BenchPrompt> dataset_entries;
  if (!dataset.empty()) {
    auto entries = LoadJsonlDataset(dataset);
    if (!entries.ok()) return UsageError(p, entries.status());
    dataset_entries = *std::move(entries);
  }
  // Fail before the run, not with a half-written report after it.
  std::ofstream json_out;
  if (!json_file.empty()) {
    json_out.open(json_file);
    if (!json_out) return UsageError(p, StrCat("--json ", json_file, ": cannot write"));
  }

  auto conn = Connection::Open(conn_opts);
  if (!conn.ok()) return UsageError(p, conn.status());
  engram::v1::ModelInfo info;
  {
    auto stub = engram::v1::InferenceService::NewStub(conn->channel());
    grpc::ClientContext ctx;
    conn->Prepare(&ctx);
    grpc::Status st = stub->GetModelInfo(&ctx, engram::v1::GetModelInfoRequest(), &info);
    if (!st.ok()) {
      PrintRpcError("bench", st);
      return kExitRpcError;
    }
  }
  if (dataset.empty() && info.vocab_size() == 0) {
    std::fprintf(stderr, "engram-client bench: the server reports vocab_size 0\n");
    return kExitRpcError;
  }
  if (dataset.empty() && info.max_model_len() > 0 &&
      static_cast<uint64_t>(input_len.max + max_tokens.max) > info.max_model_len())
    std::fprintf(stderr,
                 "engram-client bench: warning: prompts up to %lld + %lld new tokens exceed "
                 "max_model_len %u; the server may reject or shorten requests\n",
                 static_cast<long long>(input_len.max), static_cast<long long>(max_tokens.max),
                 info.max_model_len());

  const uint64_t useed = static_cast<uint64_t>(seed);
  auto make_prompts = [&](size_t n, uint64_t stream) {
    return dataset.empty()
               ? RandomPrompts(n, input_len, max_tokens, info.vocab_size(),
                               DeriveSeed(useed, stream))
               : DatasetPrompts(dataset_entries, n, max_tokens, DeriveSeed(useed, stream));
  };
  const std::vector<BenchPrompt> prompts = make_prompts(num_prompts, kStreamMeasured);
  const std::vector<BenchPrompt> warmup_prompts = make_prompts(warmup, kStreamWarmup);

  engram::v1::GenerateRequest base;
  ApplySampling(p, sampling, base.mutable_sampling());
  ApplyStopping(stopping, base.mutable_stopping());
  const auto requests = BuildRequests(prompts, base, StrCat("bench-", seed, "-"));
  const auto warmup_requests = BuildRequests(warmup_prompts, base, StrCat("warmup-", seed, "-"));
  const std::vector<double> arrivals = std::isinf(request_rate)
                                           ? std::vector<double>()
                                           : ArrivalTimes(requests.size(), request_rate, burstiness,
                                                          DeriveSeed(useed, kStreamArrivals));

  std::fprintf(stderr,
               "bench: %s at %s; %lld requests (%s), max-tokens %s, request rate %s, burstiness "
               "%g, concurrency %s%s\n",
               info.model_name().c_str(), conn_opts.server.c_str(),
               static_cast<long long>(num_prompts),
               dataset.empty() ? StrCat("random ids, ", RangeText(input_len), " tokens").c_str()
                               : dataset.c_str(),
               RangeText(max_tokens).c_str(),
               std::isinf(request_rate) ? "inf" : StrCat(request_rate, "/s").c_str(), burstiness,
               concurrency > 0 ? StrCat(concurrency).c_str() : "unlimited",
               warmup > 0 ? StrCat(", ", warmup, " warm-up").c_str() : "");

  BenchRunner runner(*conn);
  InterruptWatcher watcher([&runner] { runner.CancelAll(); });
  if (!warmup_requests.empty()) {
    ProgressBar bar("warmup", warmup_requests.size(), StderrIsTty());
    runner.Run(warmup_requests, PromptLens(warmup_prompts), {}, concurrency, &bar);
    bar.Finish();
  }
  BenchRunner::Result result;
  if (!runner.cancelled()) {
    ProgressBar bar("bench", requests.size(), StderrIsTty());
    result = runner.Run(requests, PromptLens(prompts), arrivals, concurrency, &bar);
    bar.Finish();
  }
  if (runner.cancelled()) {
    std::fprintf(stderr, "engram-client bench: interrupted; requests in flight cancelled\n");
    return kExitInterrupted;
  }

  const BenchMetrics metrics = ComputeMetrics(result.records, result.duration_s, slo);
  BenchConfig config;
  config.date = LocalDate();
  config.server = conn_opts.server;
  config.model = info.model_name();
  config.dataset = dataset.empty() ? "random" : dataset;
  config.num_prompts = static_cast<size_t>(num_prompts);
  config.warmup = static_cast<size_t>(warmup);
  config.request_rate = request_rate;
  config.burstiness = burstiness;
  config.max_concurrency = concurrency;
  config.seed = useed;
  config.input_len = input_len;
  config.output_len = max_tokens;
  config.ignore_eos = stopping.ignore_eos;
  config.slo = slo;
  std::fputs(FormatReport(config, metrics).c_str(), stdout);
  std::fflush(stdout);
  if (json_out.is_open()) {
    json_out << ReportJson(config, metrics, json_per_request ? &result.records : nullptr)
                    .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
             << "\n";
    json_out.close();
    if (!json_out) {
      std::fprintf(stderr, "engram-client bench: --json %s: write failed\n", json_file.c_str());
      return kExitRpcError;
    }
  }
  if (metrics.completed == 0 && metrics.failed > 0) {
    std::fprintf(stderr, "engram-client bench: every request failed\n");
    return kExitRpcError;
  }
  return kExitOk;
}

}  // namespace engram::client
