// config.json parsing and the Engram addressing checks: a config that would make the server
// hash into the wrong rows (even multiplier, a prime out of walk order) or miss a key must fail
// at load with the file and the key named.
#include "server/model/config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/memory/hashing.h"

namespace engram {
namespace {

using nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kSource[] = "/models/x/config.json";

// A valid two-layer config whose primes follow the walk for engram_vocab_size [10, 20], H = 2.
ModelConfig ValidConfig() {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 100;
  c.max_position_embeddings = 128;
  c.bos_token_id = 97;
  c.eos_token_ids = {98};
  c.hc_mult = 2;
  EngramConfig& e = c.engram;
  e.layer_ids = {0, 2};
  e.max_ngram_size = 3;
  e.n_embed_per_ngram = 32;
  e.n_head_per_ngram = 2;
  e.engram_vocab_size = {10, 20};
  e.kernel_size = 4;
  e.pad_id = 99;
  e.seed = 7;
  e.multipliers = {{0, {3, 5, 7}}, {2, {-9, 11, 13}}};
  e.head_vocab_sizes = {{0, {{11, 13}, {23, 29}}}, {2, {{17, 19}, {31, 37}}}};
  e.table_dtype = DType::kBF16;
  e.table_files = {{0, "engram-layer-0.safetensors"}, {2, "engram-layer-2.safetensors"}};
  return c;
}

json ValidJson() { return json::parse(ModelConfigToJson(ValidConfig())); }

// Parses and runs the addressing checks, as ModelFiles::Open does; returns the error or "".
std::string Error(const json& j) {
  auto c = ParseModelConfig(j, kSource);
  if (!c.ok()) return std::string(c.status().message());
  auto st = ValidateEngramAddressing(c->engram, kSource);
  return st.ok() ? "" : std::string(st.message());
}

TEST(ConfigTest, ValidConfigRoundTrips) {
  const json j = ValidJson();
  ASSERT_EQ(Error(j), "");
  auto c = ParseModelConfig(j, kSource);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->hidden_size, 32);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{98});
  EXPECT_EQ(c->engram.layer_ids, (std::vector<int>{0, 2}));
  EXPECT_EQ(c->engram.multipliers.at(2), (std::vector<int64_t>{-9, 11, 13}));
  EXPECT_EQ(c->engram.head_vocab_sizes.at(2)[1], (std::vector<int64_t>{31, 37}));
  EXPECT_EQ(c->engram.table_dtype, DType::kBF16);
  EXPECT_EQ(c->engram.row_width(), 16);
  EXPECT_EQ(c->engram.SlotOf(2), 1);
  EXPECT_EQ(c->engram.SlotOf(1), -1);
  EXPECT_EQ(ModelConfigToJson(*c), ModelConfigToJson(ValidConfig()));
}

TEST(ConfigTest, MissingKeys) {
  for (const char* key :
       {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "rms_norm_eps", "vocab_size", "max_position_embeddings"}) {
    json j = ValidJson();
    j.erase(key);
    EXPECT_THAT(Error(j), AllOf(HasSubstr(kSource),
                                HasSubstr(std::string("missing required key '") + key + "'")))
        << key;
  }
  for (const char* key :
       {"layer_ids", "max_ngram_size", "n_head_per_ngram", "n_embed_per_ngram", "engram_vocab_size",
        "kernel_size", "pad_id", "table_dtype", "multipliers", "head_vocab_sizes", "table_files"}) {
    json j = ValidJson();
    j["engram"].erase(key);
    EXPECT_THAT(Error(j), AllOf(HasSubstr(kSource), HasSubstr(std::string("'engram.") + key + "'")))
        << key;
  }
  json j = ValidJson();
  j["engram"]["multipliers"].erase("2");
  EXPECT_THAT(Error(j), HasSubstr("missing required key 'engram.multipliers.2'"));
  j = ValidJson();
  j["engram"]["table_files"].erase("0");
  EXPECT_THAT(Error(j), HasSubstr("missing required key 'engram.table_files.0'"));
}

TEST(ConfigTest, EvenMultiplier) {
  json j = ValidJson();
  j["engram"]["multipliers"]["2"][1] = 12;
  EXPECT_THAT(Error(j), AllOf(HasSubstr(kSource), HasSubstr("'engram.multipliers.2'"),
                              HasSubstr("even value 12")));
  j = ValidJson();
  j["engram"]["multipliers"]["0"] = {3, 5};
  EXPECT_THAT(Error(j),
              AllOf(HasSubstr("'engram.multipliers.0'"), HasSubstr("needs max_ngram_size = 3")));
}

TEST(ConfigTest, MultiplierBeyondInt64IsRejectedNotWrapped) {
  json j = ValidJson();
  j["engram"]["multipliers"]["2"][1] = UINT64_MAX;  // would wrap to -1 (odd) if read as int64
  EXPECT_THAT(Error(j),
              AllOf(HasSubstr("'engram.multipliers.2'"), HasSubstr("signed 64-bit range")));
}

TEST(ConfigTest, WrittenFloatsAreShortest) {
  auto c = ParseModelConfig(ValidJson(), kSource);
  ASSERT_TRUE(c.ok());
  c->rms_norm_eps = 1e-5f;
  const std::string text = ModelConfigToJson(*c);
  EXPECT_THAT(text, HasSubstr("\"rms_norm_eps\": 1e-05"));
  EXPECT_EQ(ParseModelConfig(json::parse(text), kSource)->rms_norm_eps, 1e-5f);
}

TEST(ConfigTest, NonPrimeHeadSize) {
  json j = ValidJson();
  j["engram"]["head_vocab_sizes"]["2"][0][1] = 21;
  EXPECT_THAT(Error(j),
              AllOf(HasSubstr(kSource), HasSubstr("'engram.head_vocab_sizes.2' n=2 head 1"),
                    HasSubstr("21 is not prime")));
}

TEST(ConfigTest, PrimeOutOfWalkOrder) {
  json j = ValidJson();
  // Layer 2 swapped with layer 0: every value is prime, but the walk gives 11 first.
  j["engram"]["head_vocab_sizes"]["0"] = {{17, 19}, {31, 37}};
  j["engram"]["head_vocab_sizes"]["2"] = {{11, 13}, {23, 29}};
  EXPECT_THAT(Error(j), AllOf(HasSubstr("'engram.head_vocab_sizes.0' n=2 head 0"),
                              HasSubstr("17 differs from the prime walk"), HasSubstr("gives 11")));
  j = ValidJson();
  j["engram"]["head_vocab_sizes"]["0"][1] = {29, 23};  // heads swapped within one n
  EXPECT_THAT(Error(j),
              AllOf(HasSubstr("n=3 head 0"), HasSubstr("29 differs"), HasSubstr("gives 23")));
  j = ValidJson();
  j["engram"]["head_vocab_sizes"]["0"][0] = {11};  // too few heads
  EXPECT_THAT(Error(j), HasSubstr("n_head_per_ngram = 2 primes"));
}

TEST(ConfigTest, InvalidValues) {
  auto with = [](auto edit) {
    json j = ValidJson();
    edit(j);
    return Error(j);
  };
  EXPECT_THAT(with([](json& j) { j["num_key_value_heads"] = 3; }),
              HasSubstr("'num_key_value_heads'"));
  EXPECT_THAT(with([](json& j) { j["hidden_size"] = "32"; }),
              HasSubstr("'hidden_size' must be an integer"));
  EXPECT_THAT(with([](json& j) { j["torch_dtype"] = "float16"; }), HasSubstr("'torch_dtype'"));
  EXPECT_THAT(with([](json& j) { j["eos_token_id"] = 100; }), HasSubstr("'eos_token_id'"));
  EXPECT_THAT(with([](json& j) {
                j["engram"]["layer_ids"] = {2, 0};
              }),
              HasSubstr("strictly ascending"));
  EXPECT_THAT(with([](json& j) {
                j["engram"]["layer_ids"] = {0, 3};
              }),
              HasSubstr("'engram.layer_ids' holds 3"));
  EXPECT_THAT(with([](json& j) { j["engram"]["engram_vocab_size"] = {10}; }),
              HasSubstr("'engram.engram_vocab_size' has 1 entries"));
  EXPECT_THAT(with([](json& j) { j["engram"]["n_embed_per_ngram"] = 33; }),
              HasSubstr("'engram.n_embed_per_ngram'"));
  EXPECT_THAT(with([](json& j) { j["engram"]["table_dtype"] = "float8_e4m3"; }),
              HasSubstr("multiple of 32"));  // row width 16
  EXPECT_THAT(with([](json& j) { j["engram"]["table_dtype"] = "int4"; }),
              HasSubstr("'engram.table_dtype'"));
  EXPECT_THAT(with([](json& j) { j["engram"]["pad_id"] = 100; }), HasSubstr("'engram.pad_id'"));
  EXPECT_THAT(with([](json& j) { j["engram"]["table_files"]["0"] = "../x"; }),
              HasSubstr("'engram.table_files.0'"));
  EXPECT_THAT(with([](json& j) {
                j["engram"]["multipliers"]["x"] = {1, 1, 1};
              }),
              HasSubstr("non-integer layer key 'x'"));
  EXPECT_THAT(Error(json::array()), HasSubstr("not a JSON object"));
}

TEST(ConfigTest, LoadFromFileErrors) {
  auto missing = LoadModelConfig("/nonexistent/dir/config.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/dir/config.json"));
}

}  // namespace
}  // namespace engram

namespace engram {
namespace {

TEST(ConfigTest, HcMultMovedToTheBackboneAndStillReadUnderEngram) {
  json j = ValidJson();
  EXPECT_EQ(j["hc_mult"], 2);
  EXPECT_EQ(j["engram"]["hc_mult"], 2);  // written where older readers look too
  j.erase("hc_mult");                    // a directory from before the move
  auto c = ParseModelConfig(j, kSource);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hc_mult, 2);
  j = ValidJson();
  j["engram"].erase("hc_mult");
  c = ParseModelConfig(j, kSource);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hc_mult, 2);
  j["engram"]["hc_mult"] = 3;
  EXPECT_THAT(Error(j), AllOf(HasSubstr("'engram.hc_mult' is 3"), HasSubstr("top-level")));
  j = ValidJson();
  j.erase("hc_mult");
  j.erase("engram");
  c = ParseModelConfig(j, kSource);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hc_mult, 1);  // a plain Llama
}

// ValidJson with a product-key memory on layer 1 (Engram on 0 and 2) and hc_mult 1.
json WithProductKey() {
  json j = ValidJson();
  j["hc_mult"] = 1;
  j["engram"]["hc_mult"] = 1;
  j["product_key_memory"] = {{"layer_ids", {1}},
                             {"n_keys", 16},
                             {"heads", 2},
                             {"knn", 4},
                             {"k_dim", 8},
                             {"v_dim", 32},
                             {"share_values", true},
                             {"swilu_projection", true},
                             {"query_bias", true},
                             {"gated", false},
                             {"table_dtype", "float32"},
                             {"table_files", {{"shared", "memory-values.safetensors"}}}};
  return j;
}

TEST(ConfigTest, ProductKeyRoundTrips) {
  const json j = WithProductKey();
  auto c = ParseModelConfig(j, kSource);
  ASSERT_TRUE(c.ok()) << c.status();
  const ProductKeyConfig& p = c->product_key;
  EXPECT_EQ(p.layer_ids, std::vector<int>{1});
  EXPECT_EQ(p.rows(), 256);
  EXPECT_EQ(p.TableKey(1), "shared");
  EXPECT_EQ(p.SlotOf(1), 0);
  EXPECT_EQ(p.SlotOf(0), -1);
  EXPECT_EQ(json::parse(ModelConfigToJson(*c))["product_key_memory"], j["product_key_memory"]);
}

TEST(ConfigTest, ProductKeyBadValuesNameTheKey) {
  struct Case {
    const char* key;
    json value;
    const char* want;
  };
  const Case cases[] = {
      {"knn", 17, "'product_key_memory.knn' is 17, allowed range [1, 16]"},
      {"k_dim", 7, "'product_key_memory.k_dim' is 7, must be even"},
      {"heads", 1, "'product_key_memory.heads' is 1, allowed range [2, 1024]"},
      {"layer_ids", {0}, "has an Engram layer"},
      {"layer_ids", {3}, "allowed range [0, 2]"},
      {"gated", "yes", "'product_key_memory.gated' must be true or false"},
      {"table_dtype", "int8", "must be one of float32, bfloat16, float16, float8_e4m3"},
      {"table_files", {{"1", "v.safetensors"}}, "must be {\"shared\": file}"},
  };
  for (const Case& k : cases) {
    json j = WithProductKey();
    j["product_key_memory"][k.key] = k.value;
    EXPECT_THAT(Error(j), AllOf(HasSubstr(kSource), HasSubstr(k.want))) << k.key;
  }
  json j = WithProductKey();
  j["product_key_memory"]["share_values"] = false;
  EXPECT_THAT(Error(j), HasSubstr("missing required key 'product_key_memory.table_files.1'"));
  j = WithProductKey();
  j["product_key_memory"]["table_dtype"] = "float8_e4m3";
  j["product_key_memory"]["v_dim"] = 48;
  EXPECT_THAT(Error(j), HasSubstr("v_dim that is a multiple of 32"));
  j = WithProductKey();
  j["hc_mult"] = 2;
  j["engram"]["hc_mult"] = 2;
  EXPECT_THAT(Error(j), AllOf(HasSubstr("'product_key_memory.layer_ids' needs hc_mult 1"),
                              HasSubstr("hc_mult is 2")));
  j = WithProductKey();
  j["product_key_memory"].erase("n_keys");
  EXPECT_THAT(Error(j), HasSubstr("missing required key 'product_key_memory.n_keys'"));
}

}  // namespace
}  // namespace engram
