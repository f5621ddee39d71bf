#include "client/request_flags.h"

#include <limits>

namespace engram::client {

void AddSamplingFlags(FlagParser& p, SamplingOptions* o, bool with_seed) {
  const double inf = std::numeric_limits<double>::infinity();
  p.AddSection("sampling (unset: the server's defaults)");
  p.AddDouble("temperature", &o->temperature, "0 = greedy (server default 1)", 0, 100);
  p.AddDouble("top-p", &o->top_p, "nucleus mass in (0, 1]", 0, 1, /*min_exclusive=*/true);
  p.AddInt("top-k", &o->top_k, "keep the k most likely tokens, 0 = off", 0,
           std::numeric_limits<uint32_t>::max());
  p.AddDouble("min-p", &o->min_p, "drop tokens below min-p x the top probability, in [0, 1]", 0, 1);
  p.AddDouble("repetition-penalty", &o->repetition_penalty, "> 0, 1 = off", 0, inf,
              /*min_exclusive=*/true);
  p.AddDouble("presence-penalty", &o->presence_penalty, "in [-2, 2]", -2, 2);
  p.AddDouble("frequency-penalty", &o->frequency_penalty, "in [-2, 2]", -2, 2);
  if (with_seed)
    p.AddInt("seed", &o->seed, "sampling seed: same seed, same output", 0,
             std::numeric_limits<int64_t>::max());
}

void AddStoppingFlags(FlagParser& p, StoppingOptions* o) {
  p.AddStringList("stop", &o->stop, "stop string (repeatable); the text ends before it");
  p.AddBool("include-stop-str", &o->include_stop_str, "keep the matched stop string in the text");
  p.AddBool("ignore-eos", &o->ignore_eos, "keep generating past the end-of-sequence token");
}

void ApplySampling(const FlagParser& p, const SamplingOptions& o, engram::v1::SamplingParams* out) {
  if (p.IsSet("temperature")) out->set_temperature(static_cast<float>(o.temperature));
  if (p.IsSet("top-p")) out->set_top_p(static_cast<float>(o.top_p));
  out->set_top_k(static_cast<uint32_t>(o.top_k));
  out->set_min_p(static_cast<float>(o.min_p));
  if (p.IsSet("repetition-penalty"))
    out->set_repetition_penalty(static_cast<float>(o.repetition_penalty));
  out->set_presence_penalty(static_cast<float>(o.presence_penalty));
  out->set_frequency_penalty(static_cast<float>(o.frequency_penalty));
  if (p.IsSet("seed")) out->set_seed(static_cast<uint64_t>(o.seed));
}

void ApplyStopping(const StoppingOptions& o, engram::v1::StoppingCriteria* out) {
  for (const auto& s : o.stop) out->add_stop(s);
  out->set_ignore_eos(o.ignore_eos);
  out->set_include_stop_str_in_output(o.include_stop_str);
}

}  // namespace engram::client
