// Product-key memory (DESIGN §2.4) on generated tiny models: every bad input the format allows a
// user to produce is refused at load, naming the file, key or tensor and what is allowed; the
// values table gives bit-identical logits from every tier and row path; and a sparse values
// table of more than 2^32 rows is addressed with 64-bit row ids end to end.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/model/model_loader.h"
#include "server/util/safetensors.h"
#include "tests/unit/model_edit.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing_util::CreateTinyModel;
using testing_util::EditJson;
using testing_util::FreshDir;
using testing_util::Quote;
using testing_util::Rewrite;
using testing_util::RunResult;
using testing_util::RunTool;
using testing_util::Tensors;

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

// The tiny preset with one product-key layer (block 1, shared values, swilu): n = 16 keys per
// half, 2 heads, knn 4, k_dim 16, values [256, 64].
constexpr char kPkm[] = "--memory pkm";

SafetensorsWriter::Tensor F32(std::string name, std::vector<int64_t> shape, float value) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  SafetensorsWriter::Tensor t{std::move(name), DType::kF32, std::move(shape),
                              std::vector<std::byte>(static_cast<size_t>(n) * 4)};
  for (int64_t i = 0; i < n; ++i) std::memcpy(t.bytes.data() + 4 * i, &value, 4);
  return t;
}

// verify's contract: status 1 and one line naming every part.
void ExpectRefused(const std::string& dir, const std::vector<std::string>& parts) {
  const RunResult r = RunTool("verify " + Quote(dir));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(r.Lines().size(), 1u) << r.output;
  for (const auto& p : parts) EXPECT_THAT(r.output, HasSubstr(p));
}

TEST(ProductKeyModel, CreatedModelVerifies) {
  const std::string dir = CreateTinyModel("verifies", kPkm);
  const RunResult r = RunTool("verify " + Quote(dir));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("1 product-key values tables"));
  const RunResult info = RunTool("info " + Quote(dir));
  EXPECT_EQ(info.status, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr("product-key memory: layers 1"));
  EXPECT_THAT(info.output, HasSubstr("values table shared: 256 rows x 64"));
}

TEST(ProductKeyModel, BadConfigValuesAreRefusedNamingTheKey) {
  struct Case {
    const char* key;
    nlohmann::json value;
    std::string want;
  };
  const Case cases[] = {
      {"knn", 17, "'product_key_memory.knn' is 17, allowed range [1, 16]"},
      {"k_dim", 15, "'product_key_memory.k_dim' is 15, must be even"},
      {"heads", 1, "'product_key_memory.heads' is 1, allowed range [2, 1024]"},
  };
  const std::string base = CreateTinyModel("bad_config_base", kPkm);
  for (const Case& c : cases) {
    const std::string dir = FreshDir(std::string("bad_config_") + c.key);
    fs::copy(base, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    EditJson(dir + "/config.json",
             [&](nlohmann::json& j) { j["product_key_memory"][c.key] = c.value; });
    ExpectRefused(dir, {"config.json", c.want});
  }
  const std::string dir = FreshDir("bad_config_hc");
  fs::copy(base, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  EditJson(dir + "/config.json", [](nlohmann::json& j) { j["hc_mult"] = 2; });
  ExpectRefused(dir, {"config.json", "needs hc_mult 1", "hc_mult is 2"});
}

TEST(ProductKeyModel, BadTensorsAreRefusedNamingTheFileAndTensor) {
  const std::string base = CreateTinyModel("bad_tensor_base", kPkm);
  auto copy = [&](const std::string& name) {
    const std::string dir = FreshDir(name);
    fs::copy(base, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    return dir;
  };
  const std::string values = "model.memory.values.weight";
  std::string dir = copy("rows");
  Rewrite(dir + "/memory-values.safetensors", [&](Tensors& t) {
    t = {F32(values, {255, 64}, 0.5f)};
  });
  ExpectRefused(dir,
                {"memory-values.safetensors", values, "shape [255, 64]", "expected [256, 64]"});
  dir = copy("width");
  Rewrite(dir + "/memory-values.safetensors", [&](Tensors& t) {
    t = {F32(values, {256, 32}, 0.5f)};
  });
  ExpectRefused(dir, {"memory-values.safetensors", values, "expected [256, 64]"});
  dir = copy("swilu");
  Rewrite(dir + "/model.safetensors", [&](Tensors& t) {
    std::erase_if(
        t, [](const auto& x) { return x.name == "model.layers.1.memory.swilu_projection.weight"; });
  });
  ExpectRefused(dir, {"missing tensor 'model.layers.1.memory.swilu_projection.weight'"});
  dir = copy("mlp");
  Rewrite(dir + "/model.safetensors", [&](Tensors& t) {
    t.push_back(F32("model.layers.1.mlp.gate_proj.weight", {128, 64}, 0.1f));
  });
  ExpectRefused(dir, {"model.safetensors", "model.layers.1.mlp.gate_proj.weight",
                      "replaced by product-key memory"});
  dir = copy("value_proj_half");
  EditJson(dir + "/config.json",
           [](nlohmann::json& j) { j["product_key_memory"]["swilu_projection"] = false; });
  Rewrite(dir + "/model.safetensors", [&](Tensors& t) {
    std::erase_if(t, [](const auto& x) {
      return x.name == "model.layers.1.memory.value_proj.bias" ||
             x.name.find("swilu_projection") != std::string::npos;
    });
  });
  ExpectRefused(dir, {"missing tensor 'model.layers.1.memory.value_proj.bias'"});
  dir = copy("no_values");
  fs::remove(dir + "/memory-values.safetensors");
  ExpectRefused(dir, {"memory-values.safetensors"});
}

struct Fixture {
  BackendChoice backend = CreateBackend(2, BackendKind::kCpu);
};

// Logits of every position of one prompt, prefilled in one step, then 3 decode steps.
std::vector<float> Logits(Model& model, const std::vector<int32_t>& tokens) {
  KvCache kv(model.config(), 16, 8, model.backend());
  SequenceState s;
  model.ResetState(s);
  EXPECT_TRUE(kv.Reserve(s, static_cast<int64_t>(tokens.size())).ok());
  std::vector<float> all;
  ForwardOutput out;
  const size_t prefill = tokens.size() - 3;
  for (size_t b = 0; b < tokens.size(); b += b < prefill ? prefill : 1) {
    const size_t n = b < prefill ? prefill : 1;
    StepEntry e{&s, std::span<const int32_t>(tokens.data() + b, n), true};
    EXPECT_TRUE(model.Forward(std::span<const StepEntry>(&e, 1), kv, &out).ok());
    all.insert(all.end(), out.logits.begin(), out.logits.end());
  }
  kv.Release(s);
  return all;
}

// Every tier and row path reads the same rows and sums them in the same order: bit-identical.
TEST(ProductKeyModel, EveryTierAndRowPathIsBitIdentical) {
  for (const std::string& shape :
       {std::string(kPkm), std::string(kPkm) + " --pkm-table-dtype bfloat16 --pkm-share-values 0",
        std::string(kPkm) + " --pkm-table-dtype float8_e4m3"}) {
    SCOPED_TRACE(shape);
    const std::string dir =
        CreateTinyModel("tiers" + std::to_string(std::hash<std::string>{}(shape)), shape);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 12; ++i) tokens.push_back((i * 131 + 7) % 500);
    struct Config {
      const char* name;
      TableTier tier;
      uint64_t cache;
      std::optional<ProductKeyRowPath> path;
    };
    const Config configs[] = {{"ram", TableTier::kRam, 0, std::nullopt},
                              {"ram-staged", TableTier::kRam, 0, ProductKeyRowPath::kStaged},
                              {"mmap", TableTier::kMmap, 0, std::nullopt},
                              {"ssd", TableTier::kSsd, 0, std::nullopt},
                              {"ssd-cache", TableTier::kSsd, 1 << 20, std::nullopt}};
    std::vector<float> want;
    for (const Config& k : configs) {
      Fixture f;
      EngramMemoryOptions o;
      o.store.tier = k.tier;
      o.store.cache_bytes = k.cache;
      o.store.progress = false;
      o.product_key.row_path = k.path;
      auto loaded = LoadModelDir(dir, f.backend.backend.get(), o);
      ASSERT_TRUE(loaded.ok()) << k.name << ": " << loaded.status();
      const std::vector<float> got = Logits(*loaded->model, tokens);
      const ProductKeyMemory& pm = *loaded->model->product_key();
      const bool staged = pm.host_fetch(0);
      EXPECT_EQ(staged,
                k.path.has_value() || k.tier == TableTier::kSsd ||
                    (k.tier == TableTier::kMmap && shape.find("float8") != std::string::npos))
          << k.name;
      EXPECT_GT(pm.stats().lookups.load(), 0u);
      if (staged) {
        EXPECT_GT(pm.stats().unique_rows.load(), 0u) << k.name;
      }
      if (want.empty()) {
        want = got;
        for (float x : want) ASSERT_TRUE(std::isfinite(x));
        continue;
      }
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0) << k.name;
    }
  }
}

// n = 65537 keys per half: 4,295,098,369 value rows, past 2^32. The values file is sparse
// (only the rows the memory reads are written) and read on the ssd tier; the keys and the query
// are set so that every head picks sub-key 65536 of both halves first, naming rows whose ids
// need 33 bits.
TEST(ProductKeyModel, SparseTablePast2To32Rows) {
  const std::string dir = CreateTinyModel(
      "sparse", std::string(kPkm) + " --pkm-swilu 0 --pkm-value-proj 0 --pkm-heads 2 --pkm-knn 4");
  constexpr int64_t n = 65537, rows = n * n, D = 64, half = 8;
  static_assert(rows > (int64_t{1} << 32));
  EditJson(dir + "/config.json", [&](nlohmann::json& j) { j["product_key_memory"]["n_keys"] = n; });
  Rewrite(dir + "/model.safetensors", [&](Tensors& t) {
    for (auto& x : t) {
      const std::string p = "model.layers.1.memory.";
      if (x.name == p + "keys") {
        // Key n-1 of every (head, half) scores `half` against a query of ones; all others 0.
        x = F32(x.name, {2 * 2 * n, half}, 0.0f);
        const float one = 1.0f;
        for (int64_t th = 0; th < 4; ++th)
          for (int64_t j = 0; j < half; ++j)
            std::memcpy(x.bytes.data() + ((th * n + n - 1) * half + j) * 4, &one, 4);
      } else if (x.name == p + "query_proj.weight") {
        x = F32(x.name, x.shape, 0.0f);
      } else if (x.name == p + "query_proj.bias") {
        x = F32(x.name, x.shape, 1.0f);
      }
    }
  });
  // Sub-key ties rank by index, so the top-4 of each half is [n-1, 0, 1, 2] scoring
  // [8, 0, 0, 0]. In the 4 x 4 grid cell (0, 0) scores 16 and six cells score 8; of those the
  // lower flat cells (0, 1), (0, 2), (0, 3) win: rows (n-1)n + [n-1, 0, 1, 2], all >= 2^32.
  const std::vector<int64_t> picked = {(n - 1) * n + (n - 1), (n - 1) * n + 0, (n - 1) * n + 1,
                                       (n - 1) * n + 2};
  const float scores[] = {16, 8, 8, 8};
  {
    SafetensorsWriter w;
    w.Declare("model.memory.values.weight", DType::kF32, {rows, D});
    ASSERT_TRUE(w.Open(dir + "/memory-values.safetensors").ok());
    // Rows written: each picked row holds its rank + 1 in every column.
    std::vector<std::pair<int64_t, float>> marks;
    for (size_t i = 0; i < picked.size(); ++i)
      marks.push_back({picked[i], static_cast<float>(i + 1)});
    std::sort(marks.begin(), marks.end());
    int64_t at = 0;
    std::vector<float> row(D);
    for (const auto& [r, v] : marks) {
      ASSERT_TRUE(w.Skip(static_cast<uint64_t>(r - at) * D * 4).ok());
      std::fill(row.begin(), row.end(), v);
      ASSERT_TRUE(w.Append(row.data(), D * 4).ok());
      at = r + 1;
    }
    ASSERT_TRUE(w.Skip(static_cast<uint64_t>(rows - at) * D * 4).ok());
    ASSERT_TRUE(w.Close().ok());
  }
  Fixture f;
  EngramMemoryOptions o;
  o.store.tier = TableTier::kSsd;
  o.store.cache_bytes = 1 << 20;
  o.store.progress = false;
  auto loaded = LoadModelDir(dir, f.backend.backend.get(), o);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Model& model = *loaded->model;
  KvCache kv(model.config(), 4, 8, model.backend());
  SequenceState s;
  model.ResetState(s);
  ASSERT_TRUE(kv.Reserve(s, 2).ok());
  std::vector<float> in, outv;
  std::vector<int64_t> idx;
  ForwardDump dump;
  dump.memory_layer = 1;
  dump.memory_input = &in;
  dump.memory_output = &outv;
  dump.memory_indices = &idx;
  const std::vector<int32_t> tokens = {5, 9};
  StepEntry e{&s, tokens, true};
  ForwardOutput out;
  ASSERT_TRUE(model.Forward(std::span<const StepEntry>(&e, 1), kv, &out, &dump).ok());
  ASSERT_EQ(idx.size(), 2u * 2 * 4);
  for (size_t i = 0; i < idx.size(); ++i) EXPECT_EQ(idx[i], picked[i % 4]) << i;
  // o = sum over 2 heads of softmax(scores) . (rank + 1).
  double z = 0, want = 0;
  for (float sc : scores) z += std::exp(sc - 16.0);
  for (int j = 0; j < 4; ++j) want += 2 * std::exp(scores[j] - 16.0) / z * (j + 1);
  ASSERT_EQ(outv.size(), 2u * D);
  for (float x : outv) EXPECT_NEAR(x, want, 1e-5 * want);
  kv.Release(s);
}

}  // namespace
}  // namespace engram
