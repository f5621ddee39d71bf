// engram.v1.InferenceService on gRPC's callback API (DESIGN §5): one reactor per Generate
// stream, fed by the engine thread through the request's RequestHandle. The engine never waits
// for a stream: a reactor writes one message at a time and, while a write is in flight, the
// engine's output merges in the handle, so a slow reader receives bigger messages instead of
// stalling the batch.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "engram/v1/inference.grpc.pb.h"
#include "server/api/request_convert.h"
#include "server/engine/engine.h"
#include "server/metrics/server_metrics.h"
#include "server/model/model_loader.h"

namespace engram::api {

// What the service serves once the model is loaded; set once, before SetReady.
struct ServingModel {
  std::string model_name;
  LoadedModel* loaded = nullptr;
  Engine* engine = nullptr;
  std::optional<ChatTemplate> chat;
  v1::ModelInfo info;
};

struct ServiceOptions {
  std::string api_key;  // empty: no authentication
  InputLimits input;
};

// Generate and Tokenize take raw bytes (see wire_utf8.h); GetModelInfo is a plain method.
using ServiceBase = v1::InferenceService::WithRawCallbackMethod_Generate<
    v1::InferenceService::WithRawCallbackMethod_Tokenize<
        v1::InferenceService::WithCallbackMethod_GetModelInfo<v1::InferenceService::Service>>>;

class InferenceService final : public ServiceBase {
 public:
  InferenceService(ServiceOptions options, ServerMetrics* metrics);

  // Until SetReady, calls fail with UNAVAILABLE "loading"; after StopAccepting, with
  // UNAVAILABLE "shutting down".
  void SetReady(ServingModel* model);
  void StopAccepting();

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  // OK, or the status a call must fail with (authentication, loading, draining).
  grpc::Status Admit(grpc::CallbackServerContext* ctx) const;
  grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* ctx, grpc::Status s);
  std::string NextRequestId();
  grpc::Status DoTokenize(const grpc::ByteBuffer& raw, v1::TokenizeResponse* response);

  ServiceOptions options_;
  ServerMetrics* metrics_;
  std::atomic<ServingModel*> model_{nullptr};
  std::atomic<bool> accepting_{true};
  std::atomic<uint64_t> next_id_{1};
  const std::string id_prefix_;
};

// gRPC status for an engine/absl status.
grpc::Status ToGrpc(const absl::Status& s);

// Fills ModelInfo from the loaded model and the engine's KV configuration.
v1::ModelInfo DescribeModel(const std::string& model_name, const LoadedModel& m,
                            const Engine& engine, const EngramMemoryOptions& memory,
                            std::string_view backend, bool has_chat_template);

}  // namespace engram::api
