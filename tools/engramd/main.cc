// engramd: the engram-serve daemon. Start-up order matters to operators: the gRPC port and the
// health service come up first (NOT_SERVING), then the model loads, then health turns SERVING;
// a load balancer never routes to a half-loaded server. SIGTERM/SIGINT drain (DESIGN §5).
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "server/api/inference_service.h"
#include "server/metrics/server_metrics.h"
#include "server/model/model_loader.h"
#include "server/util/str_cat.h"
#include "tools/engramd/demo_model.h"
#include "tools/engramd/options.h"

namespace engram::engramd {
namespace {

constexpr char kServiceName[] = "engram.v1.InferenceService";

int Fail(const std::string& what, const absl::Status& s) {
  std::fprintf(stderr, "engramd: %s: %s\n", what.c_str(), std::string(s.message()).c_str());
  return 1;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(flag, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string HostOf(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

void SetHealth(grpc::Server& server, bool serving) {
  grpc::HealthCheckServiceInterface* h = server.GetHealthCheckService();
  if (h == nullptr) return;
  h->SetServingStatus(serving);  // "" (the whole server) and every registered service
  h->SetServingStatus(kServiceName, serving);
}

int Run(int argc, char** argv) {
  // Every thread created from here on inherits the blocked mask; the main thread alone takes
  // SIGTERM/SIGINT through sigwait, so no async-signal-safety puzzles.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Options o;
  if (int rc = ParseOptions(argc, argv, &o); rc >= 0) return rc;
  std::string api_key;
  if (!o.api_key_file.empty()) {
    auto k = ReadFile(o.api_key_file, "--api-key-file");
    if (!k.ok()) return Fail("start-up", k.status());
    api_key = std::string(absl::StripAsciiWhitespace(*k));
    if (api_key.empty())
      return Fail("start-up", absl::InvalidArgumentError("--api-key-file: the file is empty"));
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!o.tls_cert.empty()) {
    auto cert = ReadFile(o.tls_cert, "--tls-cert");
    if (!cert.ok()) return Fail("start-up", cert.status());
    auto key = ReadFile(o.tls_key, "--tls-key");
    if (!key.ok()) return Fail("start-up", key.status());
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
  }
  if (o.demo) {
    auto dir = EnsureDemoModel();
    if (!dir.ok()) return Fail("--demo", dir.status());
    o.model_dir = *dir;
  }
  if (o.model_name.empty())
    o.model_name = std::filesystem::path(o.model_dir).lexically_normal().filename().string();
  if (o.model_name.empty()) o.model_name = "model";

  // Declared before the metrics so they are destroyed after its exposer stops: a scrape during
  // shutdown reads the model's prefetcher counters.
  BackendChoice backend;
  std::optional<LoadedModel> loaded;
  ServerMetrics metrics(o.model_name, o.engine.max_model_len);
  if (o.metrics_port > 0) {
    if (auto s = metrics.StartExposer(StrCat(HostOf(o.listen), ":", o.metrics_port)); !s.ok())
      return Fail("start-up", s);
  }
  api::ServiceOptions so;
  so.api_key = api_key;
  so.input.max_input_bytes = o.max_input_bytes;
  api::InferenceService service(so, &metrics);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC shares ports (SO_REUSEPORT) by default: a second engramd on a busy port would start and
  // take half the connections instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(o.listen, creds, &port);
  builder.RegisterService(&service);
  // Room for the largest input plus the rest of the request; clamped to what gRPC takes.
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<uint64_t>(uint64_t{o.max_input_bytes} * 2 + (1u << 20), INT32_MAX)));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0)
    return Fail("start-up", absl::UnavailableError(StrCat("--listen ", o.listen,
                                                          ": cannot bind (in use or invalid)")));
  SetHealth(*server, false);
  std::fprintf(stderr, "engramd: listening on %s (gRPC%s%s), metrics %s; loading %s\n",
               StrCat(HostOf(o.listen), ":", port).c_str(), o.tls_cert.empty() ? "" : ", TLS",
               api_key.empty() ? "" : ", API key",
               o.metrics_port > 0
                   ? StrCat("http://", HostOf(o.listen), ":", o.metrics_port, "/metrics").c_str()
                   : "off",
               o.model_dir.c_str());

  // The model loads while health reports NOT_SERVING; a signal during the load still exits 0.
  backend = CreateBackend(o.threads, o.backend);
  std::fprintf(stderr, "engramd: %s\n", backend.reason.c_str());
  if (backend.backend == nullptr) {
    server->Shutdown();
    return Fail("start-up",
                absl::FailedPreconditionError(StrCat("compute backend: ", backend.reason)));
  }
  const auto t0 = std::chrono::steady_clock::now();
  {
    auto m = LoadModelDir(o.model_dir, backend.backend.get(), o.memory);
    if (!m.ok()) {
      server->Shutdown();
      return Fail("loading " + o.model_dir, m.status());
    }
    loaded.emplace(std::move(*m));
  }
  auto chat = LoadChatTemplate(o.model_dir);
  if (!chat.ok()) {
    server->Shutdown();
    return Fail("chat template of " + o.model_dir, chat.status());
  }
  auto engine = Engine::Create(loaded->model.get(), loaded->tokenizer.get(), o.engine, &metrics);
  if (!engine.ok()) {
    server->Shutdown();
    return Fail("start-up", engine.status());
  }
  metrics.AttachModel(loaded->model.get());
  metrics.SetKvCacheBlocks((*engine)->options().kv_blocks);
  api::ServingModel serving;
  serving.model_name = o.model_name;
  serving.loaded = &*loaded;
  serving.engine = engine->get();
  serving.info = api::DescribeModel(o.model_name, *loaded, **engine, o.memory,
                                    backend.backend->name(), !chat->is_default());
  serving.chat.emplace(std::move(*chat));
  // A signal that arrived during the load: drain at once, never reporting SERVING.
  int sig = 0;
  const timespec no_wait{0, 0};
  if (int pending = sigtimedwait(&signals, nullptr, &no_wait); pending > 0) sig = pending;
  service.SetReady(&serving);
  if (sig == 0) SetHealth(*server, true);
  std::string tiers;
  for (const auto& t : serving.info.tables())
    tiers += StrCat(tiers.empty() ? "" : ",", t.layer(), "=", t.tier());
  const Model& model = *loaded->model;
  const std::string graphs =
      model.step_graphs_on()
          ? StrCat("decode batches up to ", model.graph_batch_sizes().back())
          : StrCat("off (",
                   o.engine.graphs.mode == StepGraphOptions::Mode::kOff ? "--enforce-eager"
                                                                        : "not used on host memory",
                   ")");
  std::fprintf(stderr,
               "engramd: serving %s (%.1f s to load): %d KV blocks of %d tokens, max_model_len "
               "%lld, Engram tables %s, prefetch %s, step graphs %s\n",
               o.model_name.c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               (*engine)->options().kv_blocks, (*engine)->options().block_size,
               static_cast<long long>((*engine)->max_model_len()),
               tiers.empty() ? "none" : tiers.c_str(), o.memory.prefetch ? "on" : "off",
               graphs.c_str());

  if (sig == 0) sigwait(&signals, &sig);
  std::fprintf(stderr, "engramd: %s: draining (up to %.0f s)\n", strsignal(sig), o.drain_timeout_s);
  SetHealth(*server, false);
  service.StopAccepting();
  (*engine)->StopAccepting();
  const auto drain = std::chrono::milliseconds(static_cast<int64_t>(o.drain_timeout_s * 1000));
  if (!(*engine)->WaitIdle(drain)) {
    std::fprintf(stderr, "engramd: drain timeout: cancelling %d running and %d waiting requests\n",
                 (*engine)->Snapshot().running, (*engine)->Snapshot().waiting);
    (*engine)->CancelAll();
    (*engine)->WaitIdle(std::chrono::seconds(5));
  }
  // Every stream has its last message queued; a second is plenty to deliver it. Shutdown also
  // waits on idle client connections, which only notice on their own poll, so keep this short:
  // the whole exit must fit in the orchestrator's grace period (drain timeout + a few seconds).
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  engine->reset();
  std::fprintf(stderr, "engramd: stopped\n");
  return 0;
}

}  // namespace
}  // namespace engram::engramd

int main(int argc, char** argv) { return engram::engramd::Run(argc, argv); }
