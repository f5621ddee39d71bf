#include "server/engine/engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "server/engine/logprobs.h"
#include "server/engine/stop_matcher.h"
#include "server/model/upload_blob.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {

struct Engine::Sequence {
  Sequence(EngineRequest r, std::shared_ptr<RequestHandle> h, const Tokenizer& tok,
           uint64_t fallback_seed)
      : handle(std::move(h)),
        req(std::move(r)),
        tokens(req.prompt),
        num_prompt(static_cast<int64_t>(req.prompt.size())),
        sampler(req.params.sampling, req.prompt, fallback_seed),
        decoder(tok, /*skip_special_tokens=*/true),
        stop(req.params.stopping.stop, req.params.stopping.include_stop_str),
        arrival(Clock::now()) {}

  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - state.num_cached; }

  std::shared_ptr<RequestHandle> handle;
  EngineRequest req;
  SequenceState state;
  std::vector<int32_t> tokens;  // prompt then output: what a recompute after preemption replays
  int64_t num_prompt;
  int64_t generated = 0;
  int64_t max_new = 0;
  Sampler sampler;
  StreamDecoder decoder;
  StopMatcher stop;
  Clock::time_point arrival, scheduled, first_token, last_token;
  bool was_scheduled = false;
  FinishReason finished = FinishReason::kNone;
  int64_t step_len = 0;
  int64_t prompt_counted = 0;  // prompt positions reported to the observer
};

namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

uint64_t MixSeed(uint64_t x) {  // splitmix64 finaliser: unseeded requests get unrelated streams
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

namespace {

// The device memory of one step: every buffer Model::ReserveStep allocates (Model::StepBytes
// sums the same list the model reserves from, memory layers and metadata included), the
// engine's gathered logits plus the sampler's sort buffers (three copies of the logit rows at
// most), and the backend's bf16 copy of the widest matmul input. The attention workspace and
// cuBLASLt's are in DefaultKvCacheBytes's slack.
uint64_t StepActivationBytes(const Model& model, const EngineOptions& o) {
  const ModelConfig& c = model.config();
  const int64_t T = o.max_num_batched_tokens, R = o.max_num_seqs;
  const int64_t widest =
      std::max<int64_t>({c.intermediate_size, static_cast<int64_t>(c.hidden_size) * c.hc_mult,
                         static_cast<int64_t>(c.num_attention_heads) * c.head_dim,
                         c.engram.embed_dim(), c.product_key.v_dim});
  return model.StepBytes(T, R, o.block_size) +
         static_cast<uint64_t>(3 * R * c.vocab_size * 4 + T * widest * 2);
}

absl::StatusOr<uint64_t> DefaultKvCacheBytes(const Model& model, const EngineOptions& o) {
  const Backend& b = *model.backend();
  if (b.host_memory()) return uint64_t{1} << 30;
  const auto [free, total] = b.FreeMemory();
  const uint64_t used = total - free;  // weights and whatever else shares the device
  const uint64_t budget =
      static_cast<uint64_t>(o.gpu_memory_utilization * static_cast<double>(total));
  // cuBLASLt's workspace, the attention split workspace and the allocator's rounding.
  constexpr uint64_t kSlack = 256ull << 20;
  // The memory layers' per-sequence state, pooled for every sequence that may run at once.
  const uint64_t step = StepActivationBytes(model, o) +
                        static_cast<uint64_t>(o.max_num_seqs) * model.SequenceStateBytes();
  if (budget < used + step + kSlack)
    return absl::ResourceExhaustedError(StrCat(
        "--gpu-memory-utilization ", o.gpu_memory_utilization, " allows ", budget >> 20,
        " MiB of the device's ", total >> 20, " MiB, but ", used >> 20,
        " MiB are in use (weights and other processes) and a step of --max-num-batched-tokens ",
        o.max_num_batched_tokens, " with the state of --max-num-seqs ", o.max_num_seqs,
        " sequences needs about ", (step + kSlack) >> 20,
        " MiB more: raise --gpu-memory-utilization, lower --max-num-batched-tokens, or give "
        "--kv-cache-bytes"));
  return budget - used - step - kSlack;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(Model* model, const Tokenizer* tokenizer,
                                                       const EngineOptions& o,
                                                       EngineObserver* observer) {
  const ModelConfig& c = model->config();
  if (o.block_size < 1 || o.block_size > 1024)
    return absl::InvalidArgumentError(
        StrCat("--kv-block-size must be in [1, 1024], got ", o.block_size));
  if (o.max_num_seqs < 1)
    return absl::InvalidArgumentError(StrCat("--max-num-seqs must be >= 1, got ", o.max_num_seqs));
  if (o.max_num_batched_tokens < o.max_num_seqs)
    return absl::InvalidArgumentError(StrCat("--max-num-batched-tokens (", o.max_num_batched_tokens,
                                             ") must be at least --max-num-seqs (", o.max_num_seqs,
                                             "): every decode needs a slot"));
  if (o.max_queued_requests < 0)
    return absl::InvalidArgumentError(
        StrCat("--max-queued-requests must be >= 0, got ", o.max_queued_requests));
  const int64_t ctx = c.max_position_embeddings;
  if (o.max_model_len < 0 || o.max_model_len > ctx)
    return absl::InvalidArgumentError(StrCat("--max-model-len must be in [0, ", ctx,
                                             "] (0 = the model's ", ctx, "), got ",
                                             o.max_model_len));
  if (!(o.gpu_memory_utilization > 0 && o.gpu_memory_utilization <= 1))
    return absl::InvalidArgumentError(
        StrCat("--gpu-memory-utilization must be in (0, 1], got ", o.gpu_memory_utilization));
  EngineOptions opt = o;
  if (opt.max_model_len == 0) opt.max_model_len = ctx;
  // No step has more sequences than max_num_seqs, and padding beyond it would outgrow the
  // step buffers reserved for it.
  if (opt.graphs.max_batch == 0 || opt.graphs.max_batch > opt.max_num_seqs)
    opt.graphs.max_batch = opt.max_num_seqs;
  RETURN_IF_ERROR(model->ConfigureStepGraphs(opt.graphs));
  if (opt.kv_blocks == 0) {
    if (opt.kv_cache_bytes == 0) {
      ASSIGN_OR_RETURN(opt.kv_cache_bytes, DefaultKvCacheBytes(*model, opt));
    }
    // The cache holds one block more than its pool (KvCache::pad_block, for step graphs).
    const uint64_t per_block = KvCache::BytesPerBlock(c, opt.block_size);
    const uint64_t fit = opt.kv_cache_bytes / per_block;
    opt.kv_blocks = static_cast<int>(std::min<uint64_t>(fit > 0 ? fit - 1 : 0, 1 << 30));
  }
  // Any accepted request must be able to finish alone, or preemption could never make room.
  const int64_t need = (opt.max_model_len + opt.block_size - 1) / opt.block_size;
  if (opt.kv_blocks < need)
    return absl::InvalidArgumentError(
        StrCat("the KV cache holds ", opt.kv_blocks, " blocks of ", opt.block_size,
               " tokens but one sequence of --max-model-len ", opt.max_model_len, " needs ", need,
               "; raise --kv-cache-bytes (", KvCache::BytesPerBlock(c, opt.block_size) * (need + 1),
               " bytes needed) or lower --max-model-len"));
  std::unique_ptr<Engine> e(new Engine(model, tokenizer, opt, observer));
  e->thread_ = std::thread([p = e.get()] { p->Loop(); });
  return e;
}

Engine::Engine(Model* model, const Tokenizer* tokenizer, const EngineOptions& options,
               EngineObserver* observer)
    : model_(model),
      tokenizer_(tokenizer),
      options_(options),
      observer_(observer),
      kv_(model->config(), options.kv_blocks, options.block_size, model->backend()) {
  limits_.vocab_size = model->config().vocab_size;
  limits_.max_model_len = options.max_model_len;
  for (int64_t id : model->config().eos_token_ids) eos_ids_.push_back(static_cast<int32_t>(id));
  watermark_blocks_ = std::max(1, options.kv_blocks / 100);
  // Step buffers at their largest now: the KV sizing counted them, and recorded graphs keep
  // their addresses.
  model->ReserveStep(options.max_num_batched_tokens, options.max_num_seqs);
  if (model->SequenceStateBytes() > 0)
    for (int i = 0; i < options.max_num_seqs; ++i)
      free_states_.emplace_back(model->backend(), model->SequenceStateBytes());
}

void Engine::TakeMemoryState(Sequence& s) {
  if (free_states_.empty() || s.state.conv_ring.bytes() > 0) return;
  s.state.conv_ring = std::move(free_states_.back());
  free_states_.pop_back();
}

void Engine::ReturnMemoryState(Sequence& s) {
  if (s.state.conv_ring.bytes() == 0 || model_->SequenceStateBytes() == 0) return;
  free_states_.push_back(std::move(s.state.conv_ring));
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::shared_ptr<RequestHandle>> Engine::Submit(EngineRequest request,
                                                              std::function<void()> notify) {
  if (auto s = ValidateGenerateParams(request.params, limits_); !s.ok()) return s;
  if (auto s = ValidatePrompt(request.prompt, request.params, limits_); !s.ok()) return s;
  auto handle = std::make_shared<RequestHandle>(request.id, std::move(notify));
  const uint64_t seed = MixSeed(fallback_seed_.fetch_add(1) ^
                                static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  auto seq = std::make_unique<Sequence>(std::move(request), handle, *tokenizer_, seed);
  const int64_t room = limits_.max_model_len - seq->num_prompt;
  seq->max_new = seq->req.params.stopping.max_new_tokens > 0
                     ? std::min(seq->req.params.stopping.max_new_tokens, room)
                     : room;
  model_->ResetState(seq->state);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!accepting_ || stop_)
      return absl::UnavailableError("the server is shutting down and accepts no new requests");
    if (queued_ >= options_.max_queued_requests)
      return absl::ResourceExhaustedError(StrCat("the queue is full: ", queued_,
                                                 " requests are waiting (--max-queued-requests ",
                                                 options_.max_queued_requests, "); retry later"));
    ++queued_;
    ++inflight_;
    incoming_.push_back(std::move(seq));
  }
  cv_.notify_one();
  return handle;
}

void Engine::StopAccepting() {
  std::lock_guard<std::mutex> l(mu_);
  accepting_ = false;
}

bool Engine::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return idle_cv_.wait_for(l, timeout, [&] { return inflight_ == 0; });
}

void Engine::CancelAll() {
  {
    std::lock_guard<std::mutex> l(mu_);
    cancel_all_ = true;
  }
  cv_.notify_all();
}

EngineSnapshot Engine::Snapshot() const {
  EngineSnapshot s;
  s.running = snap_running_.load();
  s.waiting = snap_waiting_.load();
  s.used_blocks = snap_used_blocks_.load();
  s.total_blocks = kv_.num_blocks();
  s.steps = snap_steps_.load();
  return s;
}

void Engine::Loop() {
  for (;;) {
    const bool idle = running_.empty() && waiting_.empty();
    if (!TakeIncoming(idle)) break;
    ReapCancelled();
    Schedule();
    if (!step_.empty()) {
      if (absl::Status s = RunStep(); !s.ok()) FailStep(s);
    }
    RemoveFinished();
    PublishSnapshot();
  }
  // Shutting down: every request still held gets its last message.
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& s : incoming_) waiting_.push_back(std::move(s));
    incoming_.clear();
  }
  for (auto& s : running_) Finish(*s, FinishReason::kCancelled);
  for (auto& s : waiting_) Finish(*s, FinishReason::kCancelled);
  running_.clear();
  waiting_.clear();
  PublishSnapshot();
}

bool Engine::TakeIncoming(bool block) {
  std::unique_lock<std::mutex> l(mu_);
  if (block) cv_.wait(l, [&] { return stop_ || cancel_all_ || !incoming_.empty(); });
  if (stop_) return false;
  for (auto& s : incoming_) waiting_.push_back(std::move(s));
  incoming_.clear();
  if (cancel_all_) {
    cancel_all_ = false;
    for (auto& s : waiting_) s->handle->Cancel();
    for (auto& s : running_) s->handle->Cancel();
  }
  return true;
}

void Engine::ReapCancelled() {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->handle->cancelled()) {
      Finish(**it, FinishReason::kCancelled);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& s : running_)
    if (s->finished == FinishReason::kNone && s->handle->cancelled())
      Finish(*s, FinishReason::kCancelled);
  RemoveFinished();
}

void Engine::Preempt(Sequence* s) {
  // Recompute preemption (vLLM's default): drop the KV and the Engram state; the tokens replay
  // as a prefill when blocks free up. Output already sent stays sent; sampling state carries on.
  kv_.Release(s->state);
  model_->ResetState(s->state);
  ReturnMemoryState(*s);
  ++step_preemptions_;
}

void Engine::Schedule() {
  // Running sequences can hold every block between them while all still need more for their
  // prompts; then nothing moves until the newest yields. Each sequence fits alone (Create checks),
  // so this ends with the oldest running.
  for (;;) {
    ScheduleOnce();
    if (!step_.empty() || running_.empty()) return;
    std::unique_ptr<Sequence> victim = std::move(running_.back());
    running_.pop_back();
    Preempt(victim.get());
    waiting_.push_front(std::move(victim));
  }
}

void Engine::ScheduleOnce() {
  step_.clear();
  step_seqs_.clear();
  int budget = options_.max_num_batched_tokens;
  auto add = [&](Sequence* s, int64_t len) {
    s->step_len = len;
    step_.push_back(
        {&s->state,
         std::span<const int32_t>(s->tokens.data() + s->state.num_cached, static_cast<size_t>(len)),
         false});
    step_seqs_.push_back(s);
    budget -= static_cast<int>(len);
  };
  // Admissions wait while the running sequences are short of blocks (as vLLM skips them in a
  // step that preempted): a newcomer would take the blocks they need, or re-admit a victim just
  // preempted only to preempt it again.
  bool short_of_blocks = false;
  // Decodes first, oldest first; out of blocks, the newest running sequence yields its own.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* s = running_[i].get();
    if (s->pending() != 1) continue;
    bool preempted_self = false;
    while (!kv_.Reserve(s->state, s->state.num_cached + 1).ok()) {
      std::unique_ptr<Sequence> victim = std::move(running_.back());
      running_.pop_back();
      Preempt(victim.get());
      short_of_blocks = true;
      preempted_self = victim.get() == s;
      waiting_.push_front(std::move(victim));
      if (preempted_self) break;
    }
    if (preempted_self) break;
    add(s, 1);
  }
  // Then the prompts already under way, each chunk cut to the blocks that are free.
  for (auto& p : running_) {
    Sequence* s = p.get();
    if (budget <= 0) break;
    if (s->pending() <= 1) continue;
    const int64_t room = static_cast<int64_t>(kv_.free_blocks() + s->state.block_table.size()) *
                             options_.block_size -
                         s->state.num_cached;
    const int64_t want = std::min<int64_t>(s->pending(), budget);
    const int64_t len = std::min(want, room);
    if (len < want) short_of_blocks = true;
    if (len <= 0 || !kv_.Reserve(s->state, s->state.num_cached + len).ok()) {
      short_of_blocks = true;
      break;
    }
    add(s, len);
  }
  // Then new admissions, while the token budget lasts.
  while (!short_of_blocks && !waiting_.empty() && budget > 0 &&
         running_.size() < static_cast<size_t>(options_.max_num_seqs)) {
    Sequence* s = waiting_.front().get();
    const int64_t len = std::min<int64_t>(s->pending(), budget);
    // Keep a few blocks back for the running decodes, or each admission preempts the next step.
    const int64_t blocks =
        (s->state.num_cached + len + options_.block_size - 1) / options_.block_size -
        static_cast<int64_t>(s->state.block_table.size());
    if (!running_.empty() && kv_.free_blocks() - blocks < watermark_blocks_) break;
    if (!kv_.Reserve(s->state, s->state.num_cached + len).ok()) break;
    if (!s->was_scheduled) {
      s->was_scheduled = true;
      s->scheduled = Clock::now();
      std::lock_guard<std::mutex> l(mu_);
      --queued_;
    }
    TakeMemoryState(*s);
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    add(s, len);
  }
}

absl::Status Engine::RunStep() {
  const auto t0 = Clock::now();
  bool want_gates = false;
  for (Sequence* s : step_seqs_) want_gates |= s->req.params.return_gates;
  ForwardDump dump;
  if (want_gates) dump.gates = &gates_;
  // On a device, sample there unless someone wants logprobs (computed from the raw logits on
  // the host): then only tokens cross back instead of every logit of every row.
  bool on_backend = !model_->backend()->host_memory();
  for (Sequence* s : step_seqs_) on_backend &= s->req.params.logprobs == 0;
  if (absl::Status st = model_->Forward(step_, kv_, &out_, want_gates ? &dump : nullptr,
                                        /*download_logits=*/!on_backend);
      !st.ok())
    return st;
  std::vector<int32_t> sampled;
  if (on_backend) SampleOnBackend(&sampled);
  const int V = model_->config().vocab_size;
  const int M = model_->config().hc_mult;
  int64_t row = 0;
  std::vector<float> gate_row;
  for (size_t k = 0; k < step_seqs_.size(); ++k) {
    Sequence& s = *step_seqs_[k];
    row += s.step_len;
    // Prompt positions count once: a replay after preemption recomputes, it adds no prompt.
    const int64_t prompt_end = std::min(s.state.num_cached, s.num_prompt);
    if (prompt_end > s.prompt_counted) {
      step_prompt_tokens_ += prompt_end - s.prompt_counted;
      s.prompt_counted = prompt_end;
    }
    if (s.pending() > 0) continue;  // a prompt chunk that does not reach the end: no token yet
    gate_row.clear();
    if (s.req.params.return_gates)
      for (const auto& slot : gates_)
        for (int m = 0; m < M; ++m)
          gate_row.push_back(slot[static_cast<size_t>((row - 1) * M + m)]);
    if (on_backend)
      EmitToken(s, nullptr, sampled[k], s.req.params.return_gates ? &gate_row : nullptr);
    else
      EmitToken(s, out_.logits.data() + static_cast<int64_t>(out_.first_row[k]) * V, -1,
                s.req.params.return_gates ? &gate_row : nullptr);
  }
  step_seconds_ = Seconds(Clock::now() - t0);
  snap_steps_.fetch_add(1);
  return absl::OkStatus();
}

void Engine::SampleOnBackend(std::vector<int32_t>* tokens) {
  Backend* b = model_->backend();
  const int V = model_->config().vocab_size;
  tokens->assign(step_seqs_.size(), -1);
  std::vector<int32_t> index, seen_offsets{0}, seen, count_offsets{0}, count_tokens, count_values;
  std::vector<SamplingRow> params;
  std::vector<Xoshiro256> rng;
  std::vector<size_t> which;
  bool all_greedy = true;
  for (size_t k = 0; k < step_seqs_.size(); ++k) {
    Sequence& s = *step_seqs_[k];
    if (s.pending() > 0) continue;
    index.push_back(out_.first_row[k + 1] - 1);  // the entry's last row: its newest token
    params.push_back(s.sampler.row());
    all_greedy &= s.sampler.row().temperature <= 0.f;
    seen.insert(seen.end(), s.sampler.seen().begin(), s.sampler.seen().end());
    seen_offsets.push_back(static_cast<int32_t>(seen.size()));
    count_tokens.insert(count_tokens.end(), s.sampler.count_tokens().begin(),
                        s.sampler.count_tokens().end());
    count_values.insert(count_values.end(), s.sampler.count_values().begin(),
                        s.sampler.count_values().end());
    count_offsets.push_back(static_cast<int32_t>(count_tokens.size()));
    rng.push_back(s.sampler.rng());
    which.push_back(k);
  }
  const int n = static_cast<int>(index.size());
  if (n == 0) {
    // Every step ends at a sync point: the next one uploads into buffers this one's ops used.
    b->Synchronize();
    return;
  }
  UploadBlob blob;
  const size_t o_index = blob.Add(index), o_params = blob.Add(params);
  const size_t o_so = blob.Add(seen_offsets), o_seen = blob.Add(seen);
  const size_t o_co = blob.Add(count_offsets), o_ct = blob.Add(count_tokens);
  const size_t o_cv = blob.Add(count_values), o_rng = blob.Add(rng);
  char* base = blob.UploadTo(b, sample_meta_);
  sample_logits_.Reserve(b, static_cast<size_t>(n) * V * sizeof(float));
  sample_tokens_.Reserve(b, static_cast<size_t>(n) * sizeof(int32_t));
  b->GatherRows(out_.backend_logits, reinterpret_cast<const int32_t*>(base + o_index), n, V,
                sample_logits_.get<float>());
  SampleBatch batch;
  batch.rows = n;
  batch.vocab = V;
  batch.logits = sample_logits_.get<float>();
  batch.params = reinterpret_cast<const SamplingRow*>(base + o_params);
  batch.seen_offsets = reinterpret_cast<const int32_t*>(base + o_so);
  batch.seen_tokens = reinterpret_cast<const int32_t*>(base + o_seen);
  batch.count_offsets = reinterpret_cast<const int32_t*>(base + o_co);
  batch.count_tokens = reinterpret_cast<const int32_t*>(base + o_ct);
  batch.count_values = reinterpret_cast<const int32_t*>(base + o_cv);
  batch.rng = reinterpret_cast<Xoshiro256*>(base + o_rng);
  batch.tokens = sample_tokens_.get<int32_t>();
  batch.all_greedy = all_greedy;
  b->Sample(batch);
  std::vector<int32_t> got(static_cast<size_t>(n));
  b->Download(got.data(), batch.tokens, got.size() * sizeof(int32_t));
  b->Download(rng.data(), batch.rng, rng.size() * sizeof(Xoshiro256));
  for (int i = 0; i < n; ++i) {
    (*tokens)[which[i]] = got[i];
    step_seqs_[which[i]]->sampler.rng() = rng[i];  // the stream goes on where the device left it
  }
}

void Engine::EmitToken(Sequence& s, float* logits, int32_t sampled,
                       const std::vector<float>* gates) {
  const int V = model_->config().vocab_size;
  RequestOutput o;
  TopLogprobs lp;
  if (s.req.params.logprobs > 0)
    lp = ComputeTopLogprobs({logits, static_cast<size_t>(V)}, s.req.params.logprobs, scratch_);
  const int32_t t =
      logits != nullptr ? s.sampler.Sample({logits, static_cast<size_t>(V)}) : sampled;
  s.sampler.Accept(t);
  s.tokens.push_back(t);
  ++s.generated;
  ++step_generation_tokens_;
  const auto now = Clock::now();
  if (s.generated == 1) {
    s.first_token = now;
    if (observer_ != nullptr) observer_->OnFirstToken(Seconds(now - s.arrival));
  } else if (observer_ != nullptr) {
    observer_->OnInterTokenLatency(Seconds(now - s.last_token));
  }
  s.last_token = now;
  o.token_ids.push_back(t);
  if (s.req.params.logprobs > 0) o.logprobs.push_back(lp.For(t));
  if (gates != nullptr) o.gates.push_back(*gates);
  o.text = s.stop.Push(s.decoder.Push(t));
  FinishReason reason = FinishReason::kNone;
  if (s.stop.matched()) {
    reason = FinishReason::kStop;
  } else if (!s.req.params.stopping.ignore_eos &&
             std::find(eos_ids_.begin(), eos_ids_.end(), t) != eos_ids_.end()) {
    reason = FinishReason::kEos;
  } else if (s.generated >= s.max_new ||
             static_cast<int64_t>(s.tokens.size()) >= limits_.max_model_len) {
    reason = FinishReason::kLength;
  }
  if (reason == FinishReason::kNone) {
    s.handle->Append(std::move(o));
  } else {
    s.handle->Append(std::move(o));  // merged with the last message if the reader is behind
    Finish(s, reason);
  }
}

void Engine::Finish(Sequence& s, FinishReason reason, absl::Status error) {
  if (s.finished != FinishReason::kNone) return;
  s.finished = reason;
  RequestOutput o;
  o.finish = reason;
  o.error = std::move(error);
  if (reason == FinishReason::kStop) {
    o.stop_reason = s.stop.matched_stop();
  } else if (reason == FinishReason::kEos || reason == FinishReason::kLength) {
    // Bytes the decoder held back (an unfinished character, now U+FFFD) can still complete a
    // stop string; the text is cut there and the reason becomes stop.
    o.text = s.stop.Push(s.decoder.Flush());
    if (s.stop.matched()) {
      o.finish = s.finished = FinishReason::kStop;
      o.stop_reason = s.stop.matched_stop();
    } else {
      o.text += s.stop.Flush();
    }
  }
  kv_.Release(s.state);
  ReturnMemoryState(s);
  snap_used_blocks_.store(kv_.num_blocks() - kv_.free_blocks());
  const auto now = Clock::now();
  o.usage.prompt_tokens = s.num_prompt;
  o.usage.completion_tokens = s.generated;
  o.usage.queue_seconds =
      s.was_scheduled ? Seconds(s.scheduled - s.arrival) : Seconds(now - s.arrival);
  o.usage.ttft_seconds = s.generated > 0 ? Seconds(s.first_token - s.arrival) : 0;
  o.usage.e2e_seconds = Seconds(now - s.arrival);
  if (observer_ != nullptr) {
    RequestReport r;
    r.finish_reason = s.finished;
    r.prompt_tokens = s.num_prompt;
    r.generation_tokens = s.generated;
    r.queue_seconds = o.usage.queue_seconds;
    r.ttft_seconds = o.usage.ttft_seconds;
    r.e2e_seconds = o.usage.e2e_seconds;
    r.max_new_tokens = s.max_new;
    observer_->OnRequestFinished(r);
  }
  if (options_.log_requests)
    std::fprintf(
        stderr,
        "engramd: request %s finish=%s prompt_tokens=%lld completion_tokens=%lld "
        "queue_ms=%.1f ttft_ms=%.1f e2e_ms=%.1f%s%s\n",
        s.handle->id().c_str(), std::string(FinishReasonName(s.finished)).c_str(),
        static_cast<long long>(s.num_prompt), static_cast<long long>(s.generated),
        o.usage.queue_seconds * 1e3, o.usage.ttft_seconds * 1e3, o.usage.e2e_seconds * 1e3,
        o.error.ok() ? "" : " error=", o.error.ok() ? "" : std::string(o.error.message()).c_str());
  s.handle->Append(std::move(o));
  std::lock_guard<std::mutex> l(mu_);
  if (!s.was_scheduled) --queued_;
  if (--inflight_ == 0) idle_cv_.notify_all();
}

void Engine::FailStep(const absl::Status& error) {
  // A failed forward pass (an SSD read error, say) ends the sequences it carried; their partial
  // KV state is unusable. The others, and the server, go on.
  for (Sequence* s : step_seqs_) Finish(*s, FinishReason::kError, error);
}

void Engine::RemoveFinished() {
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [](const auto& s) { return s->finished != FinishReason::kNone; }),
                 running_.end());
}

void Engine::PublishSnapshot() {
  snap_running_.store(static_cast<int>(running_.size()));
  snap_waiting_.store(static_cast<int>(waiting_.size()));
  snap_used_blocks_.store(kv_.num_blocks() - kv_.free_blocks());
  // Every iteration reports, step or not, so gauges drop to zero when the last request ends.
  if (observer_ != nullptr) {
    StepReport r;
    r.prompt_tokens = step_prompt_tokens_;
    r.generation_tokens = step_generation_tokens_;
    r.num_preemptions = step_preemptions_;
    r.step_seconds = step_seconds_;
    r.num_running = static_cast<int>(running_.size());
    r.num_waiting = static_cast<int>(waiting_.size());
    r.kv_cache_usage = 1.0 - static_cast<double>(kv_.free_blocks()) / kv_.num_blocks();
    observer_->OnStep(r);
  }
  step_prompt_tokens_ = step_generation_tokens_ = step_preemptions_ = 0;
  step_seconds_ = 0;
}

}  // namespace engram
