#include "server/api/inference_service.h"

#include <cstdio>
#include <mutex>
#include <random>

#include "server/api/wire_utf8.h"
#include "server/util/str_cat.h"

namespace engram::api {
namespace {

std::string_view CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "OTHER";
  }
}

// Compares without an early exit, so response time does not reveal how much of a guess matched.
bool SameKey(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  return diff == 0;
}

std::string RandomPrefix() {
  std::random_device rd;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06x", rd() & 0xffffffu);
  return buf;
}

// One Generate stream. Lifetime: gRPC owns the reactor until OnDone; the engine's notify
// callback reaches it only through `link`, which OnDone cuts under its mutex.
class GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  struct Link {
    std::mutex mu;
    GenerateReactor* reactor = nullptr;
  };

  GenerateReactor(const Tokenizer* tokenizer, ServerMetrics* metrics)
      : tokenizer_(tokenizer), metrics_(metrics), link_(std::make_shared<Link>()) {
    link_->reactor = this;
  }

  // Called once, right after construction: Fail or Start.
  void Fail(const grpc::Status& s) {
    {
      std::lock_guard<std::mutex> l(mu_);
      finished_ = true;  // OnCancel may still run; it must not Finish a second time
    }
    Finish(s);
  }

  std::function<void()> Notifier() {
    return [link = link_] {
      std::lock_guard<std::mutex> l(link->mu);
      if (link->reactor != nullptr) link->reactor->Pump();
    };
  }

  void Start(std::shared_ptr<RequestHandle> handle, std::string id) {
    {
      std::lock_guard<std::mutex> l(mu_);
      handle_ = std::move(handle);
      id_ = std::move(id);
      // The client may have cancelled while the request was being submitted.
      if (cancelled_) handle_->Cancel();
    }
    Pump();  // output may have arrived before the handle was stored
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      writing_ = false;
      if (!ok || cancelled_) {
        // The client is gone: stop the sequence; the final status goes nowhere.
        if (handle_) handle_->Cancel();
        finish = !finished_;
        finished_ = true;
      }
    }
    if (finish) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    Pump();
  }

  void OnCancel() override {
    bool finish = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      cancelled_ = true;
      if (handle_) handle_->Cancel();  // frees the KV blocks at the engine's next step
      finish = !writing_ && !finished_;
      if (finish) finished_ = true;
    }
    if (finish) Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> l(link_->mu);
      link_->reactor = nullptr;
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (handle_) handle_->Cancel();  // no-op when it already finished
    }
    delete this;
  }

  // Writes what the engine produced, one message at a time.
  void Pump() {
    RequestOutput out;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (writing_ || finished_ || cancelled_ || !handle_) return;
      if (!handle_->Take(&out)) return;
      ToProto(out, id_, *tokenizer_, &resp_);
      bool own = false;
      wire_.Clear();  // Serialize wants an empty buffer; the previous write is done with it
      grpc::SerializationTraits<v1::GenerateResponse>::Serialize(resp_, &wire_, &own);
      writing_ = true;
      if (out.finished()) finished_ = true;
    }
    if (!out.finished()) {
      StartWrite(&wire_);
      return;
    }
    grpc::Status status = grpc::Status::OK;
    if (out.finish == FinishReason::kError) {
      status = ToGrpc(out.error);
      if (status.ok()) status = grpc::Status(grpc::StatusCode::INTERNAL, "generation failed");
    } else if (out.finish == FinishReason::kCancelled) {
      // Not the client's doing (that path never writes): the server is shutting down.
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the server shut down before the request finished (--drain-timeout)");
    }
    StartWriteAndFinish(&wire_, grpc::WriteOptions(), status);
  }

 private:
  const Tokenizer* tokenizer_;
  [[maybe_unused]] ServerMetrics* metrics_;
  std::shared_ptr<Link> link_;
  std::mutex mu_;
  std::shared_ptr<RequestHandle> handle_;
  std::string id_;
  v1::GenerateResponse resp_;
  grpc::ByteBuffer wire_;  // resp_ serialized; must live until OnWriteDone
  bool writing_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
};

// The request's bytes, checked for invalid UTF-8 in text fields before protobuf sees them.
template <typename Message>
grpc::Status ParseRaw(const grpc::ByteBuffer& raw, absl::Status (*check_text)(const std::string&),
                      Message* out) {
  std::vector<grpc::Slice> slices;
  if (!raw.Dump(&slices).ok())
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unreadable request");
  std::string wire;
  for (const grpc::Slice& s : slices)
    wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (absl::Status s = check_text(wire); !s.ok()) return ToGrpc(s);
  if (!out->ParseFromString(wire))
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        StrCat("the request is not a valid ", out->GetTypeName()));
  return grpc::Status::OK;
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

InferenceService::InferenceService(ServiceOptions options, ServerMetrics* metrics)
    : options_(std::move(options)), metrics_(metrics), id_prefix_(RandomPrefix()) {}

void InferenceService::SetReady(ServingModel* model) { model_.store(model); }
void InferenceService::StopAccepting() { accepting_.store(false); }

std::string InferenceService::NextRequestId() {
  return StrCat("req-", id_prefix_, "-", next_id_.fetch_add(1));
}

grpc::Status InferenceService::Admit(grpc::CallbackServerContext* ctx) const {
  if (!options_.api_key.empty()) {
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    const std::string_view want = options_.api_key;
    bool ok = false;
    if (it != md.end()) {
      std::string_view got(it->second.data(), it->second.size());
      constexpr std::string_view kBearer = "Bearer ";
      ok = got.substr(0, kBearer.size()) == kBearer && SameKey(got.substr(kBearer.size()), want);
    }
    if (!ok)
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing or wrong API key: send metadata 'authorization: Bearer <key>'");
  }
  if (!accepting_.load())
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is shutting down and accepts no new requests");
  if (model_.load() == nullptr)
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is still loading; retry later");
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* InferenceService::FinishUnary(grpc::CallbackServerContext* ctx,
                                                        grpc::Status s) {
  if (!s.ok() && metrics_ != nullptr) metrics_->OnRequestRejected(CodeName(s.error_code()));
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(s);
  return r;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw) {
  ServingModel* m = model_.load();
  auto* reactor =
      new GenerateReactor(m != nullptr ? m->loaded->tokenizer.get() : nullptr, metrics_);
  auto fail = [&](const grpc::Status& s) {
    if (metrics_ != nullptr) metrics_->OnRequestRejected(CodeName(s.error_code()));
    reactor->Fail(s);
    return reactor;
  };
  if (grpc::Status s = Admit(ctx); !s.ok()) return fail(s);
  if (m == nullptr)  // SetReady landed between the two loads: the reactor has no tokenizer
    return fail(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is still loading; retry later"));
  v1::GenerateRequest parsed;
  if (grpc::Status s = ParseRaw(*raw, &CheckGenerateRequestText, &parsed); !s.ok()) return fail(s);
  const v1::GenerateRequest* request = &parsed;
  auto prompt = InputTokens(*request, *m->loaded->tokenizer, *m->chat, options_.input);
  if (!prompt.ok()) return fail(ToGrpc(prompt.status()));
  auto params = ToGenerateParams(*request);
  if (!params.ok()) return fail(ToGrpc(params.status()));
  EngineRequest er;
  er.id = request->request_id().empty() ? NextRequestId() : request->request_id();
  if (FirstInvalidUtf8(er.id) >= 0 || er.id.size() > 256)
    return fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             "request_id must be valid UTF-8 of at most 256 bytes"));
  er.prompt = std::move(*prompt);
  er.params = std::move(*params);
  std::string id = er.id;
  auto handle = m->engine->Submit(std::move(er), reactor->Notifier());
  if (!handle.ok()) return fail(ToGrpc(handle.status()));
  reactor->Start(std::move(*handle), std::move(id));
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx,
                                                     const grpc::ByteBuffer* raw,
                                                     grpc::ByteBuffer* response) {
  if (grpc::Status s = Admit(ctx); !s.ok()) return FinishUnary(ctx, s);
  v1::TokenizeResponse resp;
  grpc::Status s = DoTokenize(*raw, &resp);
  if (s.ok()) {
    bool own = false;
    s = grpc::SerializationTraits<v1::TokenizeResponse>::Serialize(resp, response, &own);
  }
  return FinishUnary(ctx, s);
}

grpc::Status InferenceService::DoTokenize(const grpc::ByteBuffer& raw,
                                          v1::TokenizeResponse* response) {
  v1::TokenizeRequest req;
  if (grpc::Status s = ParseRaw(raw, &CheckTokenizeRequestText, &req); !s.ok()) return s;
  const v1::TokenizeRequest* request = &req;
  ServingModel* m = model_.load();
  const Tokenizer& tok = *m->loaded->tokenizer;
  absl::StatusOr<std::vector<int32_t>> ids;
  switch (request->input_case()) {
    case v1::TokenizeRequest::kText:
      if (request->text().size() > options_.input.max_input_bytes) {
        ids = absl::InvalidArgumentError(StrCat("text is ", request->text().size(),
                                                " bytes; at most ", options_.input.max_input_bytes,
                                                " are allowed (--max-input-bytes)"));
      } else {
        ids = tok.Encode(request->text(), request->add_special_tokens());
      }
      break;
    case v1::TokenizeRequest::kMessages:
      ids = ChatTokens(request->messages(), tok, *m->chat, options_.input);
      break;
    case v1::TokenizeRequest::INPUT_NOT_SET:
      ids = absl::InvalidArgumentError("input is not set: give text or messages");
      break;
  }
  if (!ids.ok()) return ToGrpc(ids.status());
  for (int32_t id : *ids) {
    response->add_token_ids(static_cast<uint32_t>(id));
    response->add_tokens(tok.DecodeLossy(std::span<const int32_t>(&id, 1)));
  }
  response->set_count(static_cast<uint32_t>(ids->size()));
  response->set_max_model_len(static_cast<uint32_t>(m->engine->max_model_len()));
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetModelInfoRequest*,
                                                         v1::ModelInfo* response) {
  if (grpc::Status s = Admit(ctx); !s.ok()) return FinishUnary(ctx, s);
  *response = model_.load()->info;
  return FinishUnary(ctx, grpc::Status::OK);
}

v1::ModelInfo DescribeModel(const std::string& model_name, const LoadedModel& m,
                            const Engine& engine, const EngramMemoryOptions& memory,
                            std::string_view backend, bool has_chat_template) {
  const ModelConfig& c = m.model->config();
  v1::ModelInfo info;
  info.set_model_name(model_name);
  info.set_vocab_size(static_cast<uint32_t>(c.vocab_size));
  info.set_hidden_size(static_cast<uint32_t>(c.hidden_size));
  info.set_num_layers(static_cast<uint32_t>(c.num_hidden_layers));
  info.set_num_heads(static_cast<uint32_t>(c.num_attention_heads));
  info.set_num_kv_heads(static_cast<uint32_t>(c.num_key_value_heads));
  info.set_head_dim(static_cast<uint32_t>(c.head_dim));
  info.set_max_model_len(static_cast<uint32_t>(engine.max_model_len()));
  info.set_dtype(std::string(DTypeToConfig(c.dtype)));
  for (int l : c.engram.layer_ids) info.add_engram_layers(static_cast<uint32_t>(l));
  info.set_engram_max_ngram(static_cast<uint32_t>(c.engram.max_ngram_size));
  info.set_engram_heads(static_cast<uint32_t>(c.engram.n_head_per_ngram));
  info.set_hc_mult(static_cast<uint32_t>(c.hc_mult));
  if (memory.enabled) {
    const EngramPrefetcher& p = m.model->prefetcher();
    for (int s = 0; s < p.num_slots(); ++s) {
      const TableStore& t = p.store(s);
      v1::EngramTableInfo* ti = info.add_tables();
      ti->set_layer(static_cast<uint32_t>(c.engram.layer_ids[static_cast<size_t>(s)]));
      ti->set_rows(static_cast<uint64_t>(t.layout().rows));
      ti->set_dim(static_cast<uint32_t>(t.layout().d));
      ti->set_dtype(std::string(DTypeToConfig(t.layout().dtype)));
      ti->set_bytes(t.layout().packed_bytes * static_cast<uint64_t>(t.layout().rows));
      ti->set_tier(std::string(t.tier_name()));
      const TableStoreOptions& so = memory.ForLayer(c.engram.layer_ids[static_cast<size_t>(s)]);
      ti->set_cache_bytes(so.tier == TableTier::kSsd ? so.cache_bytes : 0);
      ti->set_kind("engram");
      ti->set_name(std::to_string(ti->layer()));
    }
  }
  if (const ProductKeyMemory* pm = m.model->product_key(); pm != nullptr) {
    const ProductKeyConfig& pk = c.product_key;
    for (size_t i = 0; i < pm->table_keys().size(); ++i) {
      const std::string& key = pm->table_keys()[i];
      const TableStore& t = pm->store(i);
      v1::EngramTableInfo* ti = info.add_tables();
      int first = pk.layer_ids.front();
      for (int l : pk.layer_ids)
        if (pk.TableKey(l) == key) {
          first = l;
          break;
        }
      ti->set_layer(static_cast<uint32_t>(first));
      ti->set_rows(static_cast<uint64_t>(t.layout().rows));
      ti->set_dim(static_cast<uint32_t>(t.layout().d));
      ti->set_dtype(std::string(DTypeToConfig(t.layout().dtype)));
      ti->set_bytes(t.layout().packed_bytes * static_cast<uint64_t>(t.layout().rows));
      ti->set_tier(std::string(t.tier_name()));
      const TableStoreOptions& so = pm->table_options(i);
      ti->set_cache_bytes(so.tier == TableTier::kSsd ? so.cache_bytes : 0);
      ti->set_kind("product_key");
      ti->set_name(key);
    }
  }
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    if (c.engram.SlotOf(l) >= 0) {
      v1::MemoryLayerInfo* li = info.add_memory_layers();
      li->set_layer(static_cast<uint32_t>(l));
      li->set_kind("engram");
      li->set_table(std::to_string(l));
      li->set_heads(static_cast<uint32_t>(c.engram.heads_per_layer()));
    }
    if (c.product_key.SlotOf(l) >= 0) {
      v1::MemoryLayerInfo* li = info.add_memory_layers();
      li->set_layer(static_cast<uint32_t>(l));
      li->set_kind("product_key");
      li->set_table(c.product_key.TableKey(l));
      li->set_heads(static_cast<uint32_t>(c.product_key.heads));
      li->set_knn(static_cast<uint32_t>(c.product_key.knn));
      li->set_n_keys(static_cast<uint64_t>(c.product_key.n_keys));
    }
  }
  info.set_prefetch(memory.enabled && memory.prefetch);
  info.set_backend(std::string(backend));
  info.set_kv_cache_blocks(static_cast<uint32_t>(engine.options().kv_blocks));
  info.set_kv_block_size(static_cast<uint32_t>(engine.options().block_size));
  info.set_has_chat_template(has_chat_template);
  if (!c.eos_token_ids.empty()) info.set_eos_token_id(static_cast<uint32_t>(c.eos_token_ids[0]));
  // Every weight the directory must hold: backbone, Engram modules and table rows (fp8 scales
  // are metadata, not parameters).
  uint64_t params = 0;
  auto add = [&](const std::vector<ExpectedTensor>& ts) {
    for (const ExpectedTensor& t : ts) {
      if (t.name.size() >= 6 && t.name.compare(t.name.size() - 6, 6, "_scale") == 0) continue;
      uint64_t n = 1;
      for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
      params += n;
    }
  };
  add(ExpectedBackboneTensors(c));
  for (int l : c.engram.layer_ids) add(ExpectedTableTensors(c, l));
  for (const auto& [key, f] : c.product_key.table_files)
    add(ExpectedProductKeyTableTensors(c, key));
  info.set_parameters(params);
  return info;
}

}  // namespace engram::api
