// The key reader that every config.json parser shares (config.cc, product_key_config.cc), so
// that every error names the file and the full key ("engram.kernel_size") the same way.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "server/util/str_cat.h"

namespace engram {

class Reader {
 public:
  Reader(const nlohmann::json& j, std::string source, std::string prefix = "")
      : j_(j), source_(std::move(source)), prefix_(std::move(prefix)) {}

  absl::Status Missing(std::string_view key) const {
    return absl::InvalidArgumentError(
        StrCat(source_, ": missing required key '", prefix_, key, "'"));
  }
  absl::Status Invalid(std::string_view key, std::string_view why) const {
    return absl::InvalidArgumentError(StrCat(source_, ": key '", prefix_, key, "' ", why));
  }
  const nlohmann::json* Find(std::string_view key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  template <typename T>
  absl::Status Int(std::string_view key, T* out, int64_t lo, int64_t hi,
                   bool required = true) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return required ? Missing(key) : absl::OkStatus();
    if (!v->is_number_integer() || (v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX))
      return Invalid(key, "must be an integer in the signed 64-bit range");
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi)
      return Invalid(key, StrCat("is ", x, ", allowed range [", lo, ", ", hi, "]"));
    *out = static_cast<T>(x);
    return absl::OkStatus();
  }
  absl::Status Float(std::string_view key, float* out, double lo, double hi,
                     bool required = true) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return required ? Missing(key) : absl::OkStatus();
    if (!v->is_number()) return Invalid(key, "must be a number");
    const double x = v->get<double>();
    // Checked after narrowing: 1e-50 passes (0, 1] as a double but is 0 as a float.
    const auto f = static_cast<float>(x);
    if (!(x > lo && x <= hi) || !(f > lo && f <= hi))
      return Invalid(key, StrCat("is ", x, ", allowed range (", lo, ", ", hi, "] as a float32"));
    *out = f;
    return absl::OkStatus();
  }
  absl::Status IntList(std::string_view key, std::vector<int64_t>* out) const {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return Missing(key);
    if (!v->is_array()) return Invalid(key, "must be a list of integers");
    out->clear();
    for (const auto& e : *v) {
      if (!e.is_number_integer() || (e.is_number_unsigned() && e.get<uint64_t>() > INT64_MAX))
        return Invalid(key, "must be a list of integers in the signed 64-bit range");
      out->push_back(e.get<int64_t>());
    }
    return absl::OkStatus();
  }

 private:
  const nlohmann::json& j_;
  std::string source_;
  std::string prefix_;
};

}  // namespace engram
