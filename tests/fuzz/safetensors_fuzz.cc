// libFuzzer target for SafetensorsFile::ParseHeader, the first code to see the bytes of every
// model and Engram table file (downloaded, possibly hostile). The parser promises an error,
// never an out-of-bounds read, for any input; beyond crashes and sanitizer reports this checks
// what it promises for an accepted header: each tensor's range lies inside the file after the
// header, holds exactly numel x dtype-size bytes, and no two ranges overlap.
//
// A mutated header rarely keeps its 8-byte length prefix right, so each input is also parsed a
// second time with the prefix rewritten to end the header at the input's last '}'.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "server/util/safetensors.h"

namespace {

[[noreturn]] void Fail(const engram::TensorInfo& t, const char* what) {
  std::fprintf(stderr, "safetensors_fuzz: accepted tensor '%s' %s: %s\n", t.name.c_str(),
               t.ShapeString().c_str(), what);
  std::abort();
}

void Parse(std::span<const std::byte> bytes, std::map<std::string, std::string>* metadata) {
  auto tensors = engram::SafetensorsFile::ParseHeader(bytes, "fuzz.safetensors", metadata);
  if (!tensors.ok()) return;
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const uint64_t data_start = 8 + header_len;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const engram::TensorInfo& t : *tensors) {
    if (t.offset < data_start || t.offset > bytes.size() || t.nbytes > bytes.size() - t.offset)
      Fail(t, "range outside the data section");
    if (static_cast<uint64_t>(t.numel()) * engram::DTypeSize(t.dtype) != t.nbytes)
      Fail(t, "nbytes != numel x dtype size");
    if (t.nbytes == 0) continue;
    // libFuzzer's buffer has exactly size bytes: ASan reports any range that reaches past it.
    volatile std::byte first = bytes[t.offset];
    volatile std::byte last = bytes[t.offset + t.nbytes - 1];
    (void)first;
    (void)last;
    ranges.emplace_back(t.offset, t.offset + t.nbytes);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i - 1].second > ranges[i].first) {
      std::fprintf(stderr, "safetensors_fuzz: accepted overlapping ranges\n");
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  std::map<std::string, std::string> metadata;
  Parse(bytes, &metadata);

  size_t brace = size;
  while (brace > 8 && data[brace - 1] != '}') --brace;
  if (brace <= 8) return 0;
  const uint64_t fixed_len = brace - 8;  // the header ends with that '}'
  uint64_t raw_len = 0;
  std::memcpy(&raw_len, data, 8);
  if (fixed_len == raw_len) return 0;
  std::vector<std::byte> copy(bytes.begin(), bytes.end());  // exact size, like libFuzzer's buffer
  std::memcpy(copy.data(), &fixed_len, 8);
  Parse(copy, nullptr);
  return 0;
}
