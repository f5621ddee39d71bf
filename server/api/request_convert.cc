#include "server/api/request_convert.h"

#include "server/util/str_cat.h"

namespace engram::api {
namespace {

absl::Status Bad(const std::string& m) { return absl::InvalidArgumentError(m); }

absl::Status CheckText(std::string_view field, std::string_view s) {
  if (int64_t at = FirstInvalidUtf8(s); at >= 0)
    return Bad(StrCat(field, " is not valid UTF-8 (bad byte at offset ", at, ")"));
  return absl::OkStatus();
}

}  // namespace

int64_t FirstInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return static_cast<int64_t>(i);
    }
    if (i + len > n) return static_cast<int64_t>(i);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return static_cast<int64_t>(i);
    i += len;
  }
  return -1;
}

absl::StatusOr<std::vector<int32_t>> ChatTokens(const v1::ChatMessages& m,
                                                const Tokenizer& tokenizer,
                                                const ChatTemplate& chat,
                                                const InputLimits& limits) {
  if (m.messages().empty()) return Bad("messages.messages is empty: give at least one message");
  if (m.messages_size() > limits.max_messages)
    return Bad(StrCat("messages.messages has ", m.messages_size(), " messages; at most ",
                      limits.max_messages, " are allowed"));
  std::vector<ChatMessage> msgs;
  size_t bytes = 0;
  for (int i = 0; i < m.messages_size(); ++i) {
    const v1::ChatMessage& x = m.messages(i);
    if (x.role().empty()) return Bad(StrCat("messages.messages[", i, "].role is empty"));
    if (auto s = CheckText(StrCat("messages.messages[", i, "].role"), x.role()); !s.ok()) return s;
    if (auto s = CheckText(StrCat("messages.messages[", i, "].content"), x.content()); !s.ok())
      return s;
    bytes += x.content().size() + x.role().size();
    msgs.push_back({x.role(), x.content()});
  }
  if (bytes > limits.max_input_bytes)
    return Bad(StrCat("messages: ", bytes, " bytes of content; at most ", limits.max_input_bytes,
                      " are allowed (--max-input-bytes)"));
  auto text = chat.Render(msgs, m.has_add_generation_prompt() ? m.add_generation_prompt() : true);
  if (!text.ok())
    return Bad(
        StrCat("messages: the chat template failed: ", std::string(text.status().message())));
  // The template writes the BOS token itself.
  return tokenizer.Encode(*text, /*add_special_tokens=*/false);
}

absl::StatusOr<std::vector<int32_t>> InputTokens(const v1::GenerateRequest& r,
                                                 const Tokenizer& tokenizer,
                                                 const ChatTemplate& chat,
                                                 const InputLimits& limits) {
  switch (r.input_case()) {
    case v1::GenerateRequest::kPrompt: {
      if (r.prompt().empty()) return Bad("prompt is empty");
      if (r.prompt().size() > limits.max_input_bytes)
        return Bad(StrCat("prompt is ", r.prompt().size(), " bytes; at most ",
                          limits.max_input_bytes, " are allowed (--max-input-bytes)"));
      if (auto s = CheckText("prompt", r.prompt()); !s.ok()) return s;
      return tokenizer.Encode(r.prompt(), r.add_special_tokens());
    }
    case v1::GenerateRequest::kPromptTokenIds: {
      const auto& ids = r.prompt_token_ids().ids();
      if (ids.empty()) return Bad("prompt_token_ids.ids is empty");
      std::vector<int32_t> out;
      out.reserve(static_cast<size_t>(ids.size()));
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] > static_cast<uint32_t>(INT32_MAX))
          return Bad(StrCat("prompt_token_ids[", i, "] = ", ids[i],
                            " is outside the vocabulary [0, ", tokenizer.vocab_size(), ")"));
        out.push_back(static_cast<int32_t>(ids[i]));
      }
      return out;
    }
    case v1::GenerateRequest::kMessages:
      return ChatTokens(r.messages(), tokenizer, chat, limits);
    case v1::GenerateRequest::INPUT_NOT_SET:
      break;
  }
  return Bad("input is not set: give one of prompt, prompt_token_ids or messages");
}

absl::StatusOr<GenerateParams> ToGenerateParams(const v1::GenerateRequest& r) {
  GenerateParams p;
  const v1::SamplingParams& s = r.sampling();
  if (s.has_temperature()) p.sampling.temperature = s.temperature();
  if (s.has_top_p()) p.sampling.top_p = s.top_p();
  if (s.top_k() > static_cast<uint32_t>(INT32_MAX))
    return Bad(StrCat("sampling.top_k is too large: ", s.top_k()));
  p.sampling.top_k = static_cast<int>(s.top_k());
  p.sampling.min_p = s.min_p();
  if (s.has_repetition_penalty()) p.sampling.repetition_penalty = s.repetition_penalty();
  p.sampling.presence_penalty = s.presence_penalty();
  p.sampling.frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) p.sampling.seed = s.seed();
  const v1::StoppingCriteria& st = r.stopping();
  p.stopping.max_new_tokens = st.max_new_tokens();
  p.stopping.ignore_eos = st.ignore_eos();
  p.stopping.include_stop_str = st.include_stop_str_in_output();
  for (int i = 0; i < st.stop_size(); ++i) {
    if (auto e = CheckText(StrCat("stopping.stop[", i, "]"), st.stop(i)); !e.ok()) return e;
    p.stopping.stop.push_back(st.stop(i));
  }
  if (r.logprobs() > 1000) return Bad(StrCat("logprobs must be in [0, 20], got ", r.logprobs()));
  p.logprobs = static_cast<int>(r.logprobs());
  p.return_gates = r.return_engram_gates();
  return p;
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
    case FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const RequestOutput& o, const std::string& request_id, const Tokenizer& tokenizer,
             v1::GenerateResponse* resp) {
  resp->Clear();
  resp->set_request_id(request_id);
  resp->set_text(o.text);
  for (int32_t t : o.token_ids) resp->add_token_ids(static_cast<uint32_t>(t));
  for (const TokenLogprob& l : o.logprobs) {
    v1::TokenLogprob* p = resp->add_logprobs();
    p->set_token_id(static_cast<uint32_t>(l.token));
    p->set_logprob(l.logprob);
    for (const TopLogprob& t : l.top) {
      v1::TopLogprob* x = p->add_top();
      x->set_token_id(static_cast<uint32_t>(t.token));
      x->set_logprob(t.logprob);
      // Byte-level pieces can be partial characters; the lossy decode keeps the field UTF-8.
      x->set_token(tokenizer.DecodeLossy(std::span<const int32_t>(&t.token, 1)));
    }
  }
  for (const auto& g : o.gates) {
    v1::EngramGates* x = resp->add_engram_gates();
    x->mutable_values()->Add(g.begin(), g.end());
  }
  if (o.finished()) {
    resp->set_finish_reason(ToProto(o.finish));
    resp->set_stop_reason(o.stop_reason);
    v1::Usage* u = resp->mutable_usage();
    u->set_prompt_tokens(static_cast<uint32_t>(o.usage.prompt_tokens));
    u->set_completion_tokens(static_cast<uint32_t>(o.usage.completion_tokens));
    u->set_queue_time_seconds(o.usage.queue_seconds);
    u->set_time_to_first_token_seconds(o.usage.ttft_seconds);
    u->set_e2e_seconds(o.usage.e2e_seconds);
  }
}

}  // namespace engram::api
