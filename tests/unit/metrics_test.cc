// engramd's Prometheus metrics: the engine's reports land in vLLM-named series, the Engram memory
// tier's counters are read from a real model at scrape time, and /metrics serves text that
// promtool accepts.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/jemalloc_stats.h"
#include "server/metrics/server_metrics.h"
#include "server/model/model_loader.h"
#include "tests/unit/promtool_check.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

using ::testing::HasSubstr;
using ::testing::Not;

// The value of the sample whose name-and-labels part is exactly `series`, or nullopt.
std::optional<double> Value(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
    pos = end + 1;
  }
  return std::nullopt;
}

std::string M(const std::string& name, const std::string& extra = "") {
  return name + "{model_name=\"tiny\"" + (extra.empty() ? "" : "," + extra) + "}";
}

TEST(MetricsTest, FinishReasonNames) {
  EXPECT_EQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_EQ(FinishReasonName(FinishReason::kEos), "eos");
  EXPECT_EQ(FinishReasonName(FinishReason::kStop), "stop");
  EXPECT_EQ(FinishReasonName(FinishReason::kCancelled), "cancelled");
  EXPECT_EQ(FinishReasonName(FinishReason::kError), "error");
  EXPECT_EQ(FinishReasonName(FinishReason::kNone), "none");
}

TEST(MetricsTest, EngineReportsBecomeVllmSeries) {
  ServerMetrics m("tiny", 2048);
  m.OnStep({.num_running = 3,
            .num_waiting = 2,
            .kv_cache_usage = 0.25,
            .prompt_tokens = 100,
            .generation_tokens = 0,
            .num_preemptions = 1,
            .step_seconds = 0.01});
  m.OnStep({.num_running = 2,
            .num_waiting = 0,
            .kv_cache_usage = 0.5,
            .prompt_tokens = 0,
            .generation_tokens = 2,
            .num_preemptions = 0,
            .step_seconds = 0.01});
  m.OnStep({});  // idle: gauges only, no iteration
  m.OnInterTokenLatency(0.02);
  m.OnInterTokenLatency(0.3);
  for (int i = 0; i < 2; ++i) {
    m.OnFirstToken(0.2);
    m.OnRequestFinished({.finish_reason = FinishReason::kLength,
                         .prompt_tokens = 50,
                         .generation_tokens = 16,
                         .queue_seconds = 0.1,
                         .ttft_seconds = 0.2,
                         .e2e_seconds = 1.2,
                         .max_new_tokens = 16});
  }
  m.OnRequestFinished({.finish_reason = FinishReason::kCancelled,
                       .prompt_tokens = 7,
                       .generation_tokens = 0,
                       .queue_seconds = 3,
                       .e2e_seconds = 3});
  m.OnRequestRejected("RESOURCE_EXHAUSTED");
  m.OnRequestRejected("PERMISSION_DENIED");
  m.SetKvCacheBlocks(64);
  m.SetKvCacheBlocks(128);
  const std::string t = m.Serialize();
  SCOPED_TRACE(t);

  EXPECT_EQ(Value(t, M("engram:num_requests_running")), 0);
  EXPECT_EQ(Value(t, M("engram:num_requests_waiting")), 0);
  EXPECT_EQ(Value(t, M("engram:kv_cache_usage_perc")), 0);
  EXPECT_EQ(Value(t, M("engram:prompt_tokens_total")), 100);
  EXPECT_EQ(Value(t, M("engram:generation_tokens_total")), 2);
  EXPECT_EQ(Value(t, M("engram:num_preemptions_total")), 1);
  EXPECT_EQ(Value(t, M("engram:request_success_total", "finished_reason=\"length\"")), 2);
  EXPECT_EQ(Value(t, M("engram:request_success_total", "finished_reason=\"cancelled\"")), 1);
  EXPECT_EQ(Value(t, M("engram:request_success_total", "finished_reason=\"eos\"")), 0);
  EXPECT_EQ(Value(t, M("engram:request_success_total", "finished_reason=\"none\"")), std::nullopt);
  EXPECT_EQ(Value(t, M("engram:request_rejected_total", "grpc_code=\"RESOURCE_EXHAUSTED\"")), 1);
  EXPECT_EQ(Value(t, M("engram:request_rejected_total", "grpc_code=\"INVALID_ARGUMENT\"")), 0);
  EXPECT_EQ(Value(t, M("engram:request_rejected_total", "grpc_code=\"PERMISSION_DENIED\"")), 1);
  EXPECT_EQ(Value(t, M("engram:cache_config_info", "num_blocks=\"128\"")), 1);
  EXPECT_EQ(Value(t, M("engram:cache_config_info", "num_blocks=\"64\"")), std::nullopt);

  // TTFT comes from OnFirstToken alone: the cancelled request produced no token.
  EXPECT_EQ(Value(t, M("engram:time_to_first_token_seconds_count")), 2);
  EXPECT_DOUBLE_EQ(*Value(t, M("engram:time_to_first_token_seconds_sum")), 0.4);
  EXPECT_EQ(Value(t, M("engram:time_to_first_token_seconds_bucket", "le=\"0.1\"")), 0);
  EXPECT_EQ(Value(t, M("engram:time_to_first_token_seconds_bucket", "le=\"0.25\"")), 2);
  EXPECT_EQ(Value(t, M("engram:e2e_request_latency_seconds_count")), 3);
  EXPECT_EQ(Value(t, M("engram:e2e_request_latency_seconds_bucket", "le=\"1.5\"")), 2);
  EXPECT_EQ(Value(t, M("engram:e2e_request_latency_seconds_bucket", "le=\"+Inf\"")), 3);
  EXPECT_EQ(Value(t, M("engram:request_queue_time_seconds_count")), 3);
  EXPECT_EQ(Value(t, M("engram:inter_token_latency_seconds_count")), 2);
  EXPECT_EQ(Value(t, M("engram:inter_token_latency_seconds_bucket", "le=\"0.025\"")), 1);
  EXPECT_EQ(Value(t, M("engram:iteration_tokens_total_count")), 2);
  EXPECT_EQ(Value(t, M("engram:iteration_tokens_total_sum")), 102);
  EXPECT_EQ(Value(t, M("engram:request_prompt_tokens_count")), 3);
  EXPECT_EQ(Value(t, M("engram:request_prompt_tokens_sum")), 107);
  EXPECT_EQ(Value(t, M("engram:request_generation_tokens_sum")), 32);
  EXPECT_EQ(Value(t, M("engram:request_params_max_tokens_count")), 2);
  // 1-2-5 buckets up to max_model_len, as vLLM builds them.
  EXPECT_EQ(Value(t, M("engram:request_prompt_tokens_bucket", "le=\"1000\"")), 3);
  EXPECT_EQ(Value(t, M("engram:request_prompt_tokens_bucket", "le=\"2000\"")), 3);
  EXPECT_EQ(Value(t, M("engram:request_prompt_tokens_bucket", "le=\"5000\"")), std::nullopt);
  // Counters are exposed under exactly the given name: no doubled _total.
  EXPECT_THAT(t, Not(HasSubstr("_total_total")));
  // No model attached: no memory tier series yet.
  EXPECT_THAT(t, Not(HasSubstr("engram:engram_")));
}

TEST(MetricsTest, JemallocSeriesFollowTheHeap) {
  const std::optional<JemallocStats> before = ReadJemallocStats();
  const std::string t = ServerMetrics("tiny").Serialize();
  if (!before) {
    EXPECT_THAT(t, Not(HasSubstr("jemalloc")));
    GTEST_SKIP() << "jemalloc statistics unavailable in this process";
  }
  EXPECT_TRUE(Value(t, M("engram:jemalloc_allocated_bytes")).has_value()) << t;
  EXPECT_TRUE(Value(t, M("engram:jemalloc_resident_bytes")).has_value()) << t;
  // The volatile pointer keeps the compiler from eliding the malloc/free pair.
  constexpr size_t kBytes = 8 << 20;
  void* volatile block = std::malloc(kBytes);
  std::memset(block, 1, kBytes);
  const std::optional<JemallocStats> after = ReadJemallocStats();
  std::free(block);
  ASSERT_TRUE(after.has_value());
  if (after->allocated < before->allocated + kBytes) {
    // Sanitizer builds link jemalloc but their runtime serves malloc.
    GTEST_SKIP() << "jemalloc is not this process's allocator";
  }
  EXPECT_GE(after->resident, before->resident);
}

// Runs a two-step forward pass so the prefetcher and the stores have counted something.
void RunSomeSteps(Model& model) {
  const int vocab = model.config().vocab_size;
  std::vector<int32_t> a;
  // Period 4: the step repeats its own n-grams, and the second step only repeats the first's.
  for (int i = 0; i < 24; ++i) a.push_back(((i % 4) * 131 + 7) % vocab);
  KvCache kv(model.config(), 16, 4, model.backend());
  SequenceState s;
  model.ResetState(s);
  ASSERT_TRUE(kv.Reserve(s, static_cast<int>(a.size())).ok());
  ForwardOutput out;
  for (size_t i = 0; i < a.size(); i += 12) {
    const StepEntry e{&s, std::span<const int32_t>(a.data() + i, 12), false};
    ASSERT_TRUE(model.Forward({&e, 1}, kv, &out).ok());
  }
}

TEST(MetricsTest, MemoryTierSeriesComeFromTheModel) {
  const std::string dir = testing_util::CreateTinyModel("tiny");
  BackendChoice be = CreateBackend(1, BackendKind::kCpu);
  EngramMemoryOptions mem;
  mem.store.tier = TableTier::kSsd;
  mem.store.cache_bytes = 1 << 16;
  mem.store.progress = false;
  auto loaded = LoadModelDir(dir, be.backend.get(), mem);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Model& model = *loaded->model;
  ServerMetrics m("tiny");
  m.AttachModel(&model);
  const std::string before = m.Serialize();
  EXPECT_EQ(Value(before, M("engram:engram_lookups_total")), 0) << before;
  RunSomeSteps(model);

  const std::string t = m.Serialize();
  SCOPED_TRACE(t);
  const int slots = model.prefetcher().num_slots();
  ASSERT_GT(slots, 0);
  EXPECT_EQ(Value(t, M("engram:engram_layers")), slots);
  uint64_t requested = 0, cache = 0, ssd = 0, bytes_ssd = 0;
  for (int i = 0; i < slots; ++i) {
    const TableStoreStats& s = model.prefetcher().store(i).stats();
    requested += s.rows_requested;
    cache += s.rows_from_cache;
    ssd += s.rows_from_ssd;
    bytes_ssd += s.bytes_from_ssd;
  }
  ASSERT_GT(requested, 0u);
  const PrefetchStats& ps = model.prefetcher().stats();
  EXPECT_EQ(Value(t, M("engram:engram_rows_requested_total")), requested);
  EXPECT_EQ(Value(t, M("engram:engram_rows_total", "tier=\"cache\"")), cache);
  EXPECT_EQ(Value(t, M("engram:engram_rows_total", "tier=\"ssd\"")), ssd);
  EXPECT_EQ(Value(t, M("engram:engram_rows_total", "tier=\"ram\"")), 0);
  EXPECT_EQ(Value(t, M("engram:engram_bytes_total", "tier=\"ssd\"")), bytes_ssd);
  EXPECT_GT(cache, 0u);  // the repeated n-grams of the second step hit the row cache
  EXPECT_DOUBLE_EQ(*Value(t, M("engram:engram_cache_hit_rate")),
                   static_cast<double>(cache) / static_cast<double>(cache + ssd));
  EXPECT_GT(*Value(t, M("engram:engram_ssd_reads_total")), 0);
  EXPECT_EQ(Value(t, M("engram:engram_lookups_total")), ps.lookups.load());
  EXPECT_EQ(Value(t, M("engram:engram_prefetch_steps_total")), 2);
  EXPECT_EQ(Value(t, M("engram:engram_prefetch_errors_total")), 0);
  EXPECT_GT(*Value(t, M("engram:engram_prefetch_seconds_total")), 0);
  EXPECT_GE(*Value(t, M("engram:engram_prefetch_stall_seconds_total")), 0);
  const double unique = *Value(t, M("engram:engram_unique_row_ratio"));
  EXPECT_GT(unique, 0);
  EXPECT_LT(unique, 1);  // the prompt repeats n-grams
}

// Rows the backend reads itself (the zero-copy path; the CPU backend has no row cache): every
// distinct row of every step counts once, none from a cache.
TEST(MetricsTest, DeviceRowSeriesCountTheBackendsOwnReads) {
  const std::string dir = testing_util::CreateTinyModel("device-rows");
  BackendChoice be = CreateBackend(1, BackendKind::kCpu);
  EngramMemoryOptions mem;
  mem.store.tier = TableTier::kRam;
  mem.store.progress = false;
  mem.row_path = EngramRowPath::kIds;
  auto loaded = LoadModelDir(dir, be.backend.get(), mem);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ServerMetrics m("tiny");
  m.AttachModel(loaded->model.get());
  EXPECT_EQ(Value(m.Serialize(), M("engram:engram_device_rows_total")), 0);
  RunSomeSteps(*loaded->model);
  const std::string t = m.Serialize();
  SCOPED_TRACE(t);
  const uint64_t unique = loaded->model->prefetcher().stats().unique_rows.load();
  ASSERT_GT(unique, 0u);
  EXPECT_EQ(Value(t, M("engram:engram_device_rows_total")), unique);
  EXPECT_EQ(Value(t, M("engram:engram_device_cache_hits_total")), 0);
  EXPECT_EQ(Value(t, M("engram:engram_device_cache_hit_rate")), 0);
  // The table stores were not asked: the backend read the RAM tier's rows itself.
  EXPECT_EQ(Value(t, M("engram:engram_rows_requested_total")), 0);
}

// Step graph counters: decode steps of one sequence record each segment once (after a direct
// warm-up step) and replay from then on.
TEST(MetricsTest, StepGraphSeriesCountRecordingsAndReplays) {
  const std::string dir = testing_util::CreateTinyModel("graph-metrics");
  BackendChoice be = CreateBackend(1, BackendKind::kCpu);
  auto loaded = LoadModelDir(dir, be.backend.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Model& model = *loaded->model;
  ASSERT_TRUE(model.ConfigureStepGraphs({StepGraphOptions::Mode::kOn, 4}).ok());
  ServerMetrics m("tiny");
  m.AttachModel(&model);
  EXPECT_EQ(Value(m.Serialize(), M("engram:step_graph_steps_total")), 0);
  KvCache kv(model.config(), 16, 4, model.backend());
  SequenceState s;
  model.ResetState(s);
  ForwardOutput out;
  for (int i = 0; i < 6; ++i) {  // 6 decode steps in the (1, 64) shape
    ASSERT_TRUE(kv.Reserve(s, i + 1).ok());
    const int32_t tok = 5 + i;
    const StepEntry e{&s, std::span<const int32_t>(&tok, 1), false};
    ASSERT_TRUE(model.Forward({&e, 1}, kv, &out).ok());
  }
  const std::string t = m.Serialize();
  SCOPED_TRACE(t);
  const int segments = 1 + static_cast<int>(model.config().engram.layer_ids.size());
  EXPECT_EQ(Value(t, M("engram:step_graph_steps_total")), 5);
  EXPECT_EQ(Value(t, M("engram:step_graphs_recorded_total")), segments);
  kv.Release(s);
}

TEST(MetricsTest, EngramDisabledGivesZeroSeries) {
  const std::string dir = testing_util::CreateTinyModel("dense");
  BackendChoice be = CreateBackend(1, BackendKind::kCpu);
  EngramMemoryOptions mem;
  mem.enabled = false;
  auto loaded = LoadModelDir(dir, be.backend.get(), mem);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  RunSomeSteps(*loaded->model);
  ServerMetrics m("tiny");
  m.AttachModel(loaded->model.get());
  const std::string t = m.Serialize();
  SCOPED_TRACE(t);
  EXPECT_EQ(Value(t, M("engram:engram_layers")), 0);
  EXPECT_EQ(Value(t, M("engram:engram_rows_total", "tier=\"ram\"")), 0);
  EXPECT_EQ(Value(t, M("engram:engram_cache_hit_rate")), 0);
  EXPECT_EQ(Value(t, M("engram:engram_unique_row_ratio")), 0);
}

// GET http://127.0.0.1:port/path over a raw socket (HTTP/1.0: the server closes when done).
std::string HttpGet(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, req.data(), req.size(), 0) == static_cast<ssize_t>(req.size())) {
      char buf[8192];
      ssize_t n;
      while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) response.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return response;
}

TEST(MetricsTest, ExposerServesWhatPromtoolAccepts) {
  const std::string dir = testing_util::CreateTinyModel("served");
  BackendChoice be = CreateBackend(1, BackendKind::kCpu);
  auto loaded = LoadModelDir(dir, be.backend.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  RunSomeSteps(*loaded->model);
  ServerMetrics m("tiny");
  ASSERT_EQ(m.bound_port(), 0);
  ASSERT_TRUE(m.StartExposer("127.0.0.1:0").ok());
  const int port = m.bound_port();
  ASSERT_GT(port, 0);
  m.AttachModel(loaded->model.get());  // after the start: scrapes see it from then on
  m.OnStep({.num_running = 1, .prompt_tokens = 5, .generation_tokens = 1});
  m.OnRequestFinished({.finish_reason = FinishReason::kEos,
                       .prompt_tokens = 5,
                       .generation_tokens = 1,
                       .ttft_seconds = 0.01,
                       .e2e_seconds = 0.01});

  const std::string response = HttpGet(port, "/metrics");
  ASSERT_THAT(response, HasSubstr("200 OK"));
  const size_t header_end = response.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos);
  const std::string body = response.substr(header_end + 4);
  EXPECT_EQ(Value(body, M("engram:request_success_total", "finished_reason=\"eos\"")), 1);
  EXPECT_EQ(Value(body, M("engram:num_requests_running")), 1);
  EXPECT_GT(*Value(body, M("engram:engram_rows_total", "tier=\"ram\"")), 0);

  testing_util::ExpectPromtoolAcceptsMetrics(body);
}

TEST(MetricsTest, BindFailureNamesTheFlag) {
  ServerMetrics first("tiny");
  ASSERT_TRUE(first.StartExposer("127.0.0.1:0").ok());
  ServerMetrics second("tiny");
  const absl::Status s = second.StartExposer("127.0.0.1:" + std::to_string(first.bound_port()));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("--metrics-port"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("127.0.0.1:" + std::to_string(first.bound_port())));
  EXPECT_EQ(second.bound_port(), 0);
  EXPECT_FALSE(second.StartExposer("not an address").ok());
  // A started exposer cannot be started again.
  EXPECT_EQ(first.StartExposer("127.0.0.1:0").code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace engram
