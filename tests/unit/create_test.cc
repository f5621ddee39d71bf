// `engram-model create` end to end: flag errors read the way the user typed them, output is
// bit-identical for a seed, the tiny preset stays small, the generated tokenizer round-trips
// multilingual text through the server's own Tokenizer, fp8 tables carry minimal ue8m0 scales,
// --compress-file ships the table the server would compute, and --tokenizer builds the model
// around a given Hugging Face tokenizer.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/memory/compress.h"
#include "server/model/model_files.h"
#include "server/tokenizer/tokenizer.h"
#include "tests/data/tokenizer/byte_level_fixture.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing_util::FreshDir;
using testing_util::Quote;
using testing_util::RunResult;
using testing_util::RunTool;

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string CreateTiny(const std::string& name, const std::string& extra = "") {
  const std::string dir = FreshDir(name);
  const RunResult r = RunTool("create --preset tiny --out " + Quote(dir) + " " + extra);
  EXPECT_EQ(r.status, 0) << r.output;
  return dir;
}

TEST(CreateTest, FlagErrorsNameTheFlag) {
  const std::string out = FreshDir("flags");
  struct Case {
    std::string args, message;
  } cases[] = {
      {"--hidden x", "engram-model create: --hidden: expected a positive integer, got 'x'"},
      {"--hidden 100000", "--hidden: expected an integer in [1, 65536], got '100000'"},
      {"--layers 0", "--layers: expected an integer in [1, 1024], got '0'"},
      {"--foo 1", "engram-model create: unknown flag --foo"},
      {"--preset huge", "--preset: expected one of tiny, demo, bench, got 'huge'"},
      {"--table-gb -1", "--table-gb: expected a positive number, got '-1'"},
      {"--engram-vocab-sizes 10,x", "--engram-vocab-sizes: expected a comma-separated list"},
      {"--hidden", "--hidden: missing value"},
      {"--heads-per-ngram 4 --table-dtype float8_e4m3",
       "--table-dtype float8_e4m3 needs a row width (--embed-per-ngram / --heads-per-ngram = 16) "
       "that is "
       "a multiple of 32"},
      {"--hidden 100 --heads 3", "--hidden 100 is not a multiple of --heads 3"},
      {"--kv-heads 3", "--kv-heads 3 does not divide --heads 4"},
      {"--engram-layers 0,5", "--engram-layers: layer 5 does not exist (--layers 2)"},
      {"--engram-layers 1,0", "--engram-layers must be strictly ascending"},
      {"--engram-vocab-sizes 10", "--engram-vocab-sizes needs --max-ngram - 1 = 2 values, got 1"},
      {"--table-gb 1 --engram-vocab-sizes 10,10", "--table-gb and --engram-vocab-sizes"},
      {"--vocab 100", "--vocab: expected an integer in [259, 1048576], got '100'"},
      {"--tie-embeddings=maybe", "--tie-embeddings: expected true or false, got 'maybe'"},
  };
  for (const auto& c : cases) {
    const RunResult r = RunTool("create --out " + Quote(out) + " " + c.args);
    EXPECT_EQ(r.status, 1) << c.args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.message)) << c.args;
  }
  const RunResult no_out = RunTool("create --preset tiny");
  EXPECT_EQ(no_out.status, 1);
  EXPECT_THAT(no_out.output, HasSubstr("--out DIR is required"));
  EXPECT_TRUE(fs::is_empty(out)) << "a rejected command wrote files";
}

TEST(CreateTest, HelpAndDispatch) {
  const RunResult help = RunTool("create --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_THAT(help.output, HasSubstr("--table-gb"));
  EXPECT_THAT(help.output, HasSubstr("--compress-file"));
  EXPECT_EQ(RunTool("verify --help").status, 0);
  EXPECT_EQ(RunTool("info --help").status, 0);
  EXPECT_EQ(RunTool("--help").status, 0);
  const RunResult unknown = RunTool("frobnicate");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_THAT(unknown.output, HasSubstr("unknown command 'frobnicate'"));
  const RunResult no_dir = RunTool("verify");
  EXPECT_EQ(no_dir.status, 1);
  EXPECT_THAT(no_dir.output, HasSubstr("engram-model verify: missing argument DIR"));
}

TEST(CreateTest, DeterministicForASeedAndSmall) {
  const std::string a = CreateTiny("det_a");
  const std::string b = CreateTiny("det_b");
  const std::string c = CreateTiny("det_c", "--seed 1");
  uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(a)) {
    const std::string name = entry.path().filename().string();
    total += fs::file_size(entry.path());
    EXPECT_EQ(Slurp(a + "/" + name), Slurp(b + "/" + name)) << name;
  }
  EXPECT_LT(total, 20u << 20);
  EXPECT_NE(Slurp(a + "/model.safetensors"), Slurp(c + "/model.safetensors"));
  EXPECT_NE(Slurp(a + "/engram-layer-0.safetensors"), Slurp(c + "/engram-layer-0.safetensors"));
  EXPECT_NE(Slurp(a + "/config.json"), Slurp(c + "/config.json"));  // multipliers
  EXPECT_EQ(Slurp(a + "/tokenizer.json"), Slurp(c + "/tokenizer.json"));

  // Re-creating into a used directory replaces the model and removes files it no longer has.
  std::ofstream(a + "/engram-layer-9.safetensors") << "stale";
  const RunResult r = RunTool("create --preset tiny --engram-layers 1 --out " + Quote(a));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(fs::exists(a + "/engram-layer-9.safetensors"));
  EXPECT_FALSE(fs::exists(a + "/engram-layer-0.safetensors"));
  EXPECT_EQ(RunTool("verify " + Quote(a)).status, 0);
}

TEST(CreateTest, GeneratedTokenizerRoundTripsMultilingualText) {
  const std::string dir = CreateTiny("tok", "--vocab 1024");
  auto files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  const ModelConfig& c = (*files)->config();
  auto tok = Tokenizer::FromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->vocab_size(), 1024);
  EXPECT_EQ(tok->TokenToId("<|begin_of_text|>"), c.bos_token_id);
  EXPECT_EQ(tok->TokenToId("<|end_of_text|>"), c.eos_token_ids.at(0));
  EXPECT_EQ(tok->TokenToId("<|pad|>"), c.engram.pad_id);
  EXPECT_EQ(c.engram.pad_id, 1023);
  EXPECT_TRUE(tok->IsSpecial(static_cast<int32_t>(c.bos_token_id)));
  for (const std::string text :
       {"The lighthouse keeper wrote it down.", "Grüße aus Zürich: crème brûlée, naïve café, Łódź.",
        "中文。今天早上下了一场小雨。", "日本語のテキスト、カタカナ。", "العربية في الصباح",
        "emoji 🍕🇩🇪👩‍💻 ok", "  spaces\n\n\ttabs  ",
        "def f(x):\n    return x**2 + 1_000", "unseen: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ǅ"}) {
    const auto ids = tok->Encode(text);
    EXPECT_EQ(tok->Decode(ids), text);
    const auto with_bos = tok->Encode(text, /*add_special_tokens=*/true);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], c.bos_token_id);
  }
  // Learned merges: common English words are single tokens.
  EXPECT_EQ(tok->Encode(" the").size(), 1u);
  EXPECT_LT(tok->Encode("The lighthouse keeper wrote it down.").size(), 20u);
}

TEST(CreateTest, Fp8TableHasMinimalScales) {
  const std::string dir = CreateTiny(
      "fp8", "--heads-per-ngram 2 --table-dtype float8_e4m3 --dtype bfloat16 --tie-embeddings");
  EXPECT_EQ(RunTool("verify " + Quote(dir)).status, 0);
  auto files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_FALSE((*files)->Backbone("lm_head.weight").has_value());
  const TensorView t = (*files)->Table(0);
  const auto s = (*files)->TableScale(0);
  ASSERT_TRUE(s.has_value());
  ASSERT_EQ(t.shape[1], 32);
  double sum2 = 0;
  const int64_t rows = t.shape[0];
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t sb = static_cast<uint8_t>(s->data[r]);
    const float scale = Ue8m0ToFloat(sb);
    float amax = 0;
    for (int j = 0; j < 32; ++j) {
      const float x = Fp8E4M3ToFloat(static_cast<uint8_t>(t.data[r * 32 + j])) * scale;
      ASSERT_TRUE(std::isfinite(x));
      amax = std::max(amax, std::fabs(x));
      sum2 += static_cast<double>(x) * x;
    }
    // Smallest power of two with amax / scale <= 448: halving it would overflow 448.
    ASSERT_LE(amax / scale, 448.0f) << r;
    ASSERT_GT(amax / scale, 224.0f * 0.9f) << r;  // rounding can shave the block maximum a little
  }
  EXPECT_NEAR(std::sqrt(sum2 / static_cast<double>(rows * 32)), 0.5, 0.02);
}

TEST(CreateTest, CompressFileMatchesTokenizer) {
  const std::string dir = CreateTiny("compress", "--compress-file");
  const RunResult v = RunTool("verify " + Quote(dir));
  EXPECT_EQ(v.status, 0) << v.output;
  EXPECT_THAT(v.output, HasSubstr("compressed-id table shipped"));
  auto files = ModelFiles::Open(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_TRUE((*files)->shipped_compress().has_value());
  auto tok = Tokenizer::FromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(*(*files)->shipped_compress(), BuildCompressTable(*tok).ids);
}

TEST(CreateTest, InfoSummarises) {
  const std::string dir = CreateTiny("info");
  const RunResult r = RunTool("info " + Quote(dir));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("layer 0: 20,112 rows x 16"));
  EXPECT_THAT(r.output, HasSubstr("n=2 primes [3001, 3011, 3019, 3023]"));
  EXPECT_THAT(r.output, HasSubstr("compressed vocabulary:"));
  EXPECT_THAT(r.output, HasSubstr("ratio"));
  const RunResult bad = RunTool("info /nonexistent/model");
  EXPECT_EQ(bad.status, 1);
}

TEST(CreateTest, PlainLlamaWithoutEngram) {
  const std::string dir = CreateTiny("plain", "--engram-layers none");
  EXPECT_EQ(RunTool("verify " + Quote(dir)).status, 0);
  EXPECT_FALSE(fs::exists(dir + "/engram-layer-0.safetensors"));
}

// --tokenizer with a small stand-in for a real tokenizer (the real DeepSeek-V3, Llama 3 and
// Qwen 3 ones are checked by tests/tokenizers, compare.py create).
TEST(CreateTest, BuildsAroundAGivenTokenizer) {
  const std::string src = FreshDir("hf_tokenizer");
  testing::FixtureSpec spec = testing::StandardSpec();  // ids 0..272, added 273..275
  spec.added_tokens.push_back(testing::AddedTokenJson(276, "<|im_end|>", true));
  spec.added_tokens.push_back(testing::AddedTokenJson(277, "<pad>", true));
  std::ofstream(src + "/tokenizer.json") << testing::BuildFixture(spec).dump();
  const std::string config =
      R"({"bos_token": {"__type": "AddedToken", "content": "<|bos|>"}, "eos_token": "<|eos|>",)"
      R"( "chat_template": "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"})";
  std::ofstream(src + "/tokenizer_config.json") << config;

  const std::string dir = CreateTiny("hf_model", "--tokenizer " + Quote(src + "/tokenizer.json"));
  EXPECT_EQ(Slurp(dir + "/tokenizer.json"), Slurp(src + "/tokenizer.json"));
  EXPECT_EQ(Slurp(dir + "/tokenizer_config.json"), config);
  const nlohmann::json c = nlohmann::json::parse(Slurp(dir + "/config.json"));
  EXPECT_EQ(c["vocab_size"], 278);  // from the tokenizer, not the preset's 512
  EXPECT_EQ(c["bos_token_id"], 273);
  EXPECT_EQ(c["eos_token_id"], nlohmann::json::array({274, 276}));  // config eos + <|im_end|>
  EXPECT_EQ(c["engram"]["pad_id"], 277);                            // a dedicated pad token
  const RunResult v = RunTool("verify " + Quote(dir));
  EXPECT_EQ(v.status, 0) << v.output;

  // --vocab pads the embedding beyond the tokenizer (the compress table follows), never below.
  const std::string padded = CreateTiny(
      "hf_padded", "--compress-file --vocab 300 --tokenizer " + Quote(src + "/tokenizer.json"));
  EXPECT_EQ(nlohmann::json::parse(Slurp(padded + "/config.json"))["vocab_size"], 300);
  EXPECT_EQ(RunTool("verify " + Quote(padded)).status, 0);
  const RunResult small =
      RunTool("create --preset tiny --vocab 260 --tokenizer " + Quote(src + "/tokenizer.json") +
              " --out " + Quote(FreshDir("hf_small")));
  EXPECT_EQ(small.status, 1);
  EXPECT_THAT(small.output, HasSubstr("--vocab 260 is smaller than the 278 tokens of"));

  // Without tokenizer_config.json: bos/eos from well-known names, no config copied.
  fs::remove(src + "/tokenizer_config.json");
  const std::string bare = CreateTiny("hf_bare", "--tokenizer " + Quote(src + "/tokenizer.json"));
  EXPECT_FALSE(fs::exists(bare + "/tokenizer_config.json"));
  const nlohmann::json b = nlohmann::json::parse(Slurp(bare + "/config.json"));
  EXPECT_FALSE(b.contains("bos_token_id"));
  EXPECT_EQ(b["eos_token_id"], 276);

  const RunResult missing = RunTool(
      "create --preset tiny --tokenizer /nonexistent/tokenizer.json "
      "--out " +
      Quote(FreshDir("hf_missing")));
  EXPECT_EQ(missing.status, 1);
  EXPECT_THAT(missing.output, HasSubstr("/nonexistent/tokenizer.json"));
}

}  // namespace
}  // namespace engram
