// The forward pass's batching and state contracts on a generated tiny model (engram-model
// create): incremental decode, chunked prefill and a mixed batch of sequences at different
// positions must each reproduce the single-sequence full forward. Float32 sums in a different
// grouping (rows of a batch are independent, but chunking changes nothing in per-row math) give
// identical results up to the attention softmax length; 1e-4 relative is far below any bug.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/model/model_loader.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

using testing_util::CreateTinyModel;

struct Fixture {
  BackendChoice backend = CreateBackend(2, BackendKind::kCpu);
  LoadedModel m;
};

std::vector<int32_t> Tokens(int n, int vocab) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 7919 + 13) % vocab);
  return t;
}

void ExpectClose(const std::vector<float>& a, const std::vector<float>& b,
                 const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], 1e-4 * (1 + std::fabs(b[i]))) << what << " at " << i;
}

// Logits of every position of `tokens` run in chunks of `chunk` tokens.
std::vector<float> RunChunked(Model& model, const std::vector<int32_t>& tokens, size_t chunk) {
  KvCache kv(model.config(), 64, 4, model.backend());
  SequenceState s;
  model.ResetState(s);
  EXPECT_TRUE(kv.Reserve(s, static_cast<int64_t>(tokens.size())).ok());
  std::vector<float> all;
  ForwardOutput out;
  for (size_t b = 0; b < tokens.size(); b += chunk) {
    StepEntry e{&s, std::span<const int32_t>(tokens.data() + b, std::min(chunk, tokens.size() - b)),
                true};
    EXPECT_TRUE(model.Forward(std::span<const StepEntry>(&e, 1), kv, &out).ok());
    all.insert(all.end(), out.logits.begin(), out.logits.end());
  }
  kv.Release(s);
  EXPECT_EQ(kv.free_blocks(), kv.num_blocks());
  return all;
}

class ModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelTest, IncrementalAndChunkedEqualFull) {
  Fixture f;
  auto loaded = LoadModelDir(
      CreateTinyModel("inc" + std::to_string(std::hash<std::string>{}(GetParam())), GetParam()),
      f.backend.backend.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Model& model = *loaded->model;
  const auto tokens = Tokens(23, model.config().vocab_size);  // longer than the conv window
  const auto full = RunChunked(model, tokens, tokens.size());
  ExpectClose(RunChunked(model, tokens, 1), full, "incremental");
  ExpectClose(RunChunked(model, tokens, 5), full, "chunks of 5");
}

TEST_P(ModelTest, MixedBatchEqualsSeparateRuns) {
  Fixture f;
  auto loaded = LoadModelDir(
      CreateTinyModel("mix" + std::to_string(std::hash<std::string>{}(GetParam())), GetParam()),
      f.backend.backend.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Model& model = *loaded->model;
  const int vocab = model.config().vocab_size;
  const auto a = Tokens(17, vocab);
  auto b = Tokens(9, vocab);
  for (auto& t : b) t = (t * 31 + 5) % vocab;
  const auto ref_a = RunChunked(model, a, a.size());
  const auto ref_b = RunChunked(model, b, b.size());

  // Step 1: a prefills 12 tokens while b prefills 4; step 2: a decodes one while b prefills 5;
  // then a finishes its last 4 tokens one at a time alongside nothing.
  KvCache kv(model.config(), 32, 4, model.backend());
  SequenceState sa, sb;
  model.ResetState(sa);
  model.ResetState(sb);
  ASSERT_TRUE(kv.Reserve(sa, 17).ok());
  ASSERT_TRUE(kv.Reserve(sb, 9).ok());
  std::vector<float> got_a, got_b;
  ForwardOutput out;
  const int V = vocab;
  auto take = [&](std::vector<float>& dst, int first, int rows) {
    dst.insert(dst.end(), out.logits.begin() + static_cast<int64_t>(first) * V,
               out.logits.begin() + static_cast<int64_t>(first + rows) * V);
  };
  StepEntry s1[2] = {{&sa, std::span<const int32_t>(a.data(), 12), true},
                     {&sb, std::span<const int32_t>(b.data(), 4), true}};
  ASSERT_TRUE(model.Forward(s1, kv, &out).ok());
  take(got_a, out.first_row[0], 12);
  take(got_b, out.first_row[1], 4);
  StepEntry s2[2] = {{&sb, std::span<const int32_t>(b.data() + 4, 5), true},
                     {&sa, std::span<const int32_t>(a.data() + 12, 1), true}};
  ASSERT_TRUE(model.Forward(s2, kv, &out).ok());
  take(got_b, out.first_row[0], 5);
  take(got_a, out.first_row[1], 1);
  for (int i = 13; i < 17; ++i) {
    StepEntry s3{&sa, std::span<const int32_t>(a.data() + i, 1), false};
    ASSERT_TRUE(model.Forward(std::span<const StepEntry>(&s3, 1), kv, &out).ok());
    ASSERT_EQ(out.first_row[1] - out.first_row[0],
              1);  // only the last row when all_logits is false
    take(got_a, 0, 1);
  }
  ExpectClose(got_a, ref_a, "sequence a");
  ExpectClose(got_b, ref_b, "sequence b");
  kv.Release(sa);
  kv.Release(sb);
  EXPECT_EQ(kv.free_blocks(), kv.num_blocks());
}

INSTANTIATE_TEST_SUITE_P(Shapes, ModelTest, ::testing::ValuesIn(testing_util::TinyModelShapes()));

TEST(ModelErrors, RejectsBadTokensAndMissingBlocks) {
  Fixture f;
  auto loaded = LoadModelDir(CreateTinyModel("err", ""), f.backend.backend.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Model& model = *loaded->model;
  KvCache kv(model.config(), 4, 4, model.backend());
  SequenceState s;
  model.ResetState(s);
  ForwardOutput out;
  const std::vector<int32_t> bad = {1, model.config().vocab_size};
  ASSERT_TRUE(kv.Reserve(s, 2).ok());
  StepEntry e{&s, bad, false};
  auto st = model.Forward(std::span<const StepEntry>(&e, 1), kv, &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.num_cached, 0);  // the state did not advance
  const std::vector<int32_t> many(9, 1);
  StepEntry e2{&s, many, false};
  EXPECT_EQ(model.Forward(std::span<const StepEntry>(&e2, 1), kv, &out).code(),
            absl::StatusCode::kFailedPrecondition);
  SequenceState t;
  EXPECT_EQ(kv.Reserve(t, 100).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(t.block_table.empty());
}

}  // namespace
}  // namespace engram
