// `engram-model verify` on corrupted copies of a real generated model (create --preset tiny):
// each corruption a user can plausibly produce (a truncated download, a hand-edited config, a
// re-export that dropped or reshaped a tensor) must give exit status 1 and exactly one line
// naming the file and the tensor or key at fault — and never a crash.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/util/safetensors.h"
#include "tests/unit/model_edit.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using testing_util::EditJson;
using testing_util::FreshDir;
using testing_util::Quote;
using testing_util::ReadAll;
using testing_util::Rewrite;
using testing_util::RunResult;
using testing_util::RunTool;
using testing_util::Tensors;

class BadModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new std::string(FreshDir("bad_model_base"));
    const RunResult r = RunTool("create --preset tiny --out " + Quote(*base_));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(testing_util::ProcessDir(), ec);
    delete base_;
  }

  // A private copy of the base model for one corruption.
  std::string Copy() {
    const std::string dir =
        FreshDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::copy(*base_, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    return dir;
  }

  // Runs verify and checks the contract: status 1, one line, naming everything in `parts`.
  static void ExpectOneLineError(const std::string& dir, const std::vector<std::string>& parts) {
    const RunResult r = RunTool("verify " + Quote(dir));
    EXPECT_EQ(r.status, 1) << r.output;
    ASSERT_EQ(r.Lines().size(), 1u) << r.output;
    for (const auto& p : parts) EXPECT_THAT(r.output, HasSubstr(p));
  }

  static std::string* base_;
};

std::string* BadModelTest::base_ = nullptr;

SafetensorsWriter::Tensor* FindTensor(Tensors& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return &t;
  ADD_FAILURE() << "no tensor " << name;
  return nullptr;
}

void Truncate(const std::string& path, uint64_t remove) {
  fs::resize_file(path, fs::file_size(path) - remove);
}

TEST_F(BadModelTest, BaseModelVerifies) {
  const RunResult r = RunTool("verify " + Quote(*base_));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("OK"));
}

TEST_F(BadModelTest, TruncatedSafetensors) {
  const std::string dir = Copy();
  Truncate(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") / 2);
  ExpectOneLineError(dir, {"model.safetensors", "tensor '", "outside the file"});
}

TEST_F(BadModelTest, TruncatedBelowHeader) {
  const std::string dir = Copy();
  fs::resize_file(dir + "/model.safetensors", 100);
  ExpectOneLineError(dir, {"model.safetensors", "header length", "truncated"});
}

TEST_F(BadModelTest, HeaderPointsOutsideFile) {
  const std::string dir = Copy();
  const std::string path = dir + "/model.safetensors";
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
  auto& off = h["model.norm.weight"]["data_offsets"];
  const uint64_t span = off[1].get<uint64_t>() - off[0].get<uint64_t>();
  off = {uint64_t{1} << 40, (uint64_t{1} << 40) + span};
  std::string header = h.dump();
  while (header.size() % 8) header.push_back(' ');
  const uint64_t len = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << out << header << bytes.substr(8 + n);
  ExpectOneLineError(dir, {"model.safetensors", "'model.norm.weight'", "outside the file"});
}

TEST_F(BadModelTest, MissingTensor) {
  const std::string dir = Copy();
  Rewrite(dir + "/model.safetensors", [](Tensors& ts) {
    std::erase_if(ts, [](const auto& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  ExpectOneLineError(
      dir, {dir, "missing tensor 'model.layers.1.mlp.up_proj.weight'", "model.safetensors"});
}

TEST_F(BadModelTest, MissingEngramProjection) {
  const std::string dir = Copy();
  Rewrite(dir + "/model.safetensors", [](Tensors& ts) {
    std::erase_if(ts,
                  [](const auto& t) { return t.name == "model.layers.0.engram.key_projs.1.bias"; });
  });
  ExpectOneLineError(dir, {"missing tensor 'model.layers.0.engram.key_projs.1.bias'"});
}

TEST_F(BadModelTest, WrongShape) {
  const std::string dir = Copy();
  Rewrite(dir + "/model.safetensors", [](Tensors& ts) {
    auto* t = FindTensor(ts, "model.layers.0.self_attn.k_proj.weight");
    t->shape = {16, 128};  // same bytes as [32, 64], wrong layout
  });
  ExpectOneLineError(dir, {"model.safetensors", "'model.layers.0.self_attn.k_proj.weight'",
                           "has shape [16, 128], expected [32, 64]"});
}

TEST_F(BadModelTest, WrongDtype) {
  const std::string dir = Copy();
  Rewrite(dir + "/model.safetensors", [](Tensors& ts) {
    auto* t = FindTensor(ts, "model.norm.weight");
    t->dtype = DType::kBF16;
    t->shape = {128};  // 256 bytes either way
  });
  ExpectOneLineError(dir, {"model.safetensors", "'model.norm.weight'", "dtype BF16, expected F32"});
}

TEST_F(BadModelTest, NaNInBackbone) {
  const std::string dir = Copy();
  Rewrite(dir + "/model.safetensors", [](Tensors& ts) {
    auto* t = FindTensor(ts, "model.layers.1.post_attention_layernorm.weight");
    const float nan = std::nanf("");
    std::memcpy(t->bytes.data() + 12, &nan, 4);
  });
  ExpectOneLineError(dir, {"model.safetensors", "'model.layers.1.post_attention_layernorm.weight'",
                           "NaN at element 3"});
}

TEST_F(BadModelTest, ConfigMissingKey) {
  const std::string dir = Copy();
  EditJson(dir + "/config.json", [](nlohmann::json& j) { j.erase("intermediate_size"); });
  ExpectOneLineError(dir, {"config.json", "missing required key 'intermediate_size'"});
  EditJson(dir + "/config.json", [](nlohmann::json& j) {
    j["intermediate_size"] = 128;
    j["engram"].erase("kernel_size");
  });
  ExpectOneLineError(dir, {"config.json", "'engram.kernel_size'"});
}

TEST_F(BadModelTest, NonPrimeHeadSize) {
  const std::string dir = Copy();
  EditJson(dir + "/config.json", [](nlohmann::json& j) {
    auto& p = j["engram"]["head_vocab_sizes"]["1"][0][2];
    p = p.get<int64_t>() + 1;  // primes here are odd: +1 is even
  });
  ExpectOneLineError(dir,
                     {"config.json", "'engram.head_vocab_sizes.1' n=2 head 2", "is not prime"});
}

TEST_F(BadModelTest, EvenMultiplier) {
  const std::string dir = Copy();
  EditJson(dir + "/config.json", [](nlohmann::json& j) {
    auto& m = j["engram"]["multipliers"]["0"][1];
    m = m.get<int64_t>() + 1;
  });
  ExpectOneLineError(dir, {"config.json", "'engram.multipliers.0'", "even value"});
}

TEST_F(BadModelTest, EngramVocabSizeBeyondLimit) {
  const std::string dir = Copy();
  // INT64_MAX would overflow the prime search; it must be refused before the walk starts.
  EditJson(dir + "/config.json",
           [](nlohmann::json& j) { j["engram"]["engram_vocab_size"][0] = INT64_MAX; });
  ExpectOneLineError(
      dir, {"config.json", "'engram.engram_vocab_size'", "allowed range [2, 1099511627776]"});
}

TEST_F(BadModelTest, InvalidConfigJson) {
  const std::string dir = Copy();
  std::ofstream(dir + "/config.json", std::ios::trunc) << "{\"hidden_size\": 64,";
  ExpectOneLineError(dir, {"config.json", "not valid JSON"});
}

TEST_F(BadModelTest, TableShorterThanDeclared) {
  const std::string dir = Copy();
  Truncate(dir + "/engram-layer-1.safetensors", 100);
  ExpectOneLineError(
      dir, {"engram-layer-1.safetensors",
            "'model.layers.1.engram.multi_head_embedding.embedding.weight'", "outside the file"});
}

TEST_F(BadModelTest, TableWithTrailingData) {
  const std::string dir = Copy();
  std::ofstream(dir + "/engram-layer-0.safetensors", std::ios::binary | std::ios::app) << "garbage";
  ExpectOneLineError(dir, {"engram-layer-0.safetensors", "trailing data"});
}

TEST_F(BadModelTest, TableWrongRows) {
  const std::string dir = Copy();
  Rewrite(dir + "/engram-layer-0.safetensors", [](Tensors& ts) {
    ts[0].shape[0] -= 1;
    ts[0].bytes.resize(ts[0].bytes.size() - 16 * 4);
  });
  ExpectOneLineError(dir, {"engram-layer-0.safetensors",
                           "'model.layers.0.engram.multi_head_embedding.embedding.weight'",
                           "has shape [20111, 16], expected [20112, 16]"});
}

TEST_F(BadModelTest, MissingTableFile) {
  const std::string dir = Copy();
  fs::remove(dir + "/engram-layer-1.safetensors");
  ExpectOneLineError(dir, {"engram-layer-1.safetensors", "cannot open"});
}

TEST_F(BadModelTest, TokenizerProblems) {
  const std::string dir = Copy();
  std::ofstream(dir + "/tokenizer.json", std::ios::trunc) << "{ not json";
  ExpectOneLineError(dir, {"tokenizer.json"});
  fs::remove(dir + "/tokenizer.json");
  ExpectOneLineError(dir, {"tokenizer.json", "missing"});
}

TEST_F(BadModelTest, CompressTableNegativeId) {
  const std::string dir = Copy();
  std::vector<std::byte> bytes(512 * 8);
  const int64_t minus_one = -1;
  std::memcpy(bytes.data() + 8 * 7, &minus_one, 8);
  ASSERT_TRUE(SafetensorsWriter::WriteFile(dir + "/engram-compress.safetensors",
                                           {{"compressed_ids", DType::kI64, {512}, bytes}})
                  .ok());
  ExpectOneLineError(
      dir, {"engram-compress.safetensors", "'compressed_ids'", "negative id -1 at index 7"});
  std::vector<std::byte> b32(511 * 4);
  ASSERT_TRUE(SafetensorsWriter::WriteFile(dir + "/engram-compress.safetensors",
                                           {{"compressed_ids", DType::kI32, {511}, b32}})
                  .ok());
  ExpectOneLineError(dir, {"engram-compress.safetensors", "'compressed_ids'", "expected [512]"});
}

TEST_F(BadModelTest, ShardedBackboneVerifiesAndMissingShardFails) {
  const std::string dir = Copy();
  Tensors all = ReadAll(dir + "/model.safetensors");
  fs::remove(dir + "/model.safetensors");
  Tensors a(all.begin(), all.begin() + static_cast<long>(all.size() / 2));
  Tensors b(all.begin() + static_cast<long>(all.size() / 2), all.end());
  ASSERT_TRUE(SafetensorsWriter::WriteFile(dir + "/model-00001-of-00002.safetensors", a).ok());
  ASSERT_TRUE(SafetensorsWriter::WriteFile(dir + "/model-00002-of-00002.safetensors", b).ok());
  nlohmann::json index;
  for (const auto& t : a) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : b) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
  const RunResult r = RunTool("verify " + Quote(dir));
  EXPECT_EQ(r.status, 0) << r.output;
  fs::remove(dir + "/model-00002-of-00002.safetensors");
  ExpectOneLineError(dir, {"model-00002-of-00002.safetensors"});
}

TEST_F(BadModelTest, GarbageFilesNeverCrash) {
  const std::string dir = Copy();
  for (const char* name : {"model.safetensors", "engram-layer-0.safetensors", "config.json"}) {
    const std::string path = dir + "/" + name;
    std::string bytes(4096, '\0');
    uint32_t x = 12345;
    for (char& c : bytes) c = static_cast<char>((x = x * 1103515245u + 12345u) >> 24);
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    ExpectOneLineError(dir, {name});
    fs::copy_file(*base_ + "/" + name, path, fs::copy_options::overwrite_existing);
  }
}

TEST_F(BadModelTest, NotADirectory) {
  ExpectOneLineError("/nonexistent/model", {"/nonexistent/model"});
}

}  // namespace
}  // namespace engram
