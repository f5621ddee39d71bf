#include "engram/kernels/dtype.h"

#include <array>
#include <utility>

namespace engram {
namespace {

constexpr std::array<std::pair<DType, std::string_view>, 11> kSafetensorsNames = {{
    {DType::kF32, "F32"},
    {DType::kF64, "F64"},
    {DType::kBF16, "BF16"},
    {DType::kF16, "F16"},
    {DType::kF8E4M3, "F8_E4M3"},
    {DType::kU8, "U8"},
    {DType::kI8, "I8"},
    {DType::kI16, "I16"},
    {DType::kI32, "I32"},
    {DType::kI64, "I64"},
    {DType::kBool, "BOOL"},
}};

constexpr std::array<std::pair<DType, std::string_view>, 4> kConfigNames = {{
    {DType::kF32, "float32"},
    {DType::kBF16, "bfloat16"},
    {DType::kF16, "float16"},
    {DType::kF8E4M3, "float8_e4m3"},
}};

}  // namespace

std::optional<DType> DTypeFromSafetensors(std::string_view s) {
  for (const auto& [t, name] : kSafetensorsNames)
    if (name == s) return t;
  return std::nullopt;
}

std::string_view DTypeToSafetensors(DType t) {
  for (const auto& [d, name] : kSafetensorsNames)
    if (d == t) return name;
  return "?";
}

std::optional<DType> DTypeFromConfig(std::string_view s) {
  for (const auto& [t, name] : kConfigNames)
    if (name == s) return t;
  return std::nullopt;
}

std::string_view DTypeToConfig(DType t) {
  for (const auto& [d, name] : kConfigNames)
    if (d == t) return name;
  return DTypeToSafetensors(t);
}

}  // namespace engram
