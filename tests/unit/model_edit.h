// Edits of a generated model directory for tests that corrupt or reshape one: read a
// safetensors file whole, rewrite it through an edit, and edit config.json. Used by
// bad_model_test and product_key_model_test.
#pragma once

#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/util/safetensors.h"

namespace engram::testing_util {

using Tensors = std::vector<SafetensorsWriter::Tensor>;

// Every tensor of a safetensors file in memory (the mapping is gone on return, so the file can
// be rewritten).
inline Tensors ReadAll(const std::string& path) {
  auto f = SafetensorsFile::Open(path);
  EXPECT_TRUE(f.ok()) << f.status();
  Tensors out;
  if (!f.ok()) return out;
  for (const auto& t : (*f)->tensors()) {
    SafetensorsWriter::Tensor x{t.name, t.dtype, t.shape, std::vector<std::byte>(t.nbytes)};
    std::memcpy(x.bytes.data(), (*f)->data(t), t.nbytes);
    out.push_back(std::move(x));
  }
  return out;
}

inline void Rewrite(const std::string& path, const std::function<void(Tensors&)>& edit) {
  Tensors t = ReadAll(path);
  edit(t);
  ASSERT_TRUE(SafetensorsWriter::WriteFile(path, t).ok());
}

inline void EditJson(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in);
  in.close();
  edit(j);
  std::ofstream(path, std::ios::trunc) << j.dump(2);
}

}  // namespace engram::testing_util
