// engram-client's flag parser, the sampling flags' mapping onto the request, and status names.
#include "client/flags.h"

#include <string>
#include <vector>

#include "client/request_flags.h"
#include "client/rpc_status.h"
#include "gtest/gtest.h"

namespace engram::client {
namespace {

absl::Status ParseArgs(FlagParser& p, std::vector<std::string> args) {
  args.insert(args.begin(), p.command());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return p.Parse(static_cast<int>(argv.size()), argv.data());
}

TEST(ClientFlags, ValuesForms) {
  int64_t n = 0;
  double x = 0;
  bool b = false;
  std::string s;
  std::vector<std::string> stops;
  IntRange r{1, 1};
  FlagParser p("test", "[flags] PROMPT");
  p.AddInt("n", &n, "");
  p.AddDouble("x", &x, "", -2, 2);
  p.AddBool("b", &b, "");
  p.AddString("s", &s, "");
  p.AddStringList("stop", &stops, "");
  p.AddRange("len", &r, "");
  p.SetPositional("PROMPT", 0, 1);
  ASSERT_TRUE(ParseArgs(p, {"--n", "3", "--x=-1.5", "--b", "--s", "hi", "--stop", "\n\n",
                            "--stop=END", "--len", "100,1024", "-"})
                  .ok());
  EXPECT_EQ(n, 3);
  EXPECT_DOUBLE_EQ(x, -1.5);
  EXPECT_TRUE(b);
  EXPECT_EQ(s, "hi");
  EXPECT_EQ(stops, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_EQ(r.min, 100);
  EXPECT_EQ(r.max, 1024);
  EXPECT_EQ(p.positional(), std::vector<std::string>{"-"});
  EXPECT_TRUE(p.IsSet("x"));
}

TEST(ClientFlags, NegativeValueAfterFlag) {
  double x = 0;
  FlagParser p("test", "");
  p.AddDouble("presence-penalty", &x, "", -2, 2);
  ASSERT_TRUE(ParseArgs(p, {"--presence-penalty", "-1"}).ok());
  EXPECT_DOUBLE_EQ(x, -1);
}

TEST(ClientFlags, FixedRange) {
  IntRange r;
  FlagParser p("test", "");
  p.AddRange("max-tokens", &r, "");
  ASSERT_TRUE(ParseArgs(p, {"--max-tokens", "64"}).ok());
  EXPECT_TRUE(r.fixed());
  EXPECT_EQ(r.min, 64);
}

TEST(ClientFlags, Errors) {
  auto error = [](std::vector<std::string> args) {
    int64_t n = 0;
    double rate = 1, p01 = 1;
    IntRange r;
    std::string choice;
    FlagParser p("bench", "");
    p.AddInt("n", &n, "");
    p.AddDouble("request-rate", &rate, "", 0, std::numeric_limits<double>::infinity(), true);
    p.AddDouble("top-p", &p01, "", 0, 1, true);
    p.AddRange("len", &r, "");
    p.AddChoice("mode", &choice, "", {"a", "b"});
    return std::string(ParseArgs(p, args).message());
  };
  EXPECT_EQ(error({"--nope"}), "engram-client bench: unknown flag --nope");
  EXPECT_EQ(error({"-x"}), "engram-client bench: unknown flag -x");
  EXPECT_EQ(error({"--n", "0"}), "engram-client bench: --n: expected a positive integer, got '0'");
  EXPECT_EQ(error({"--n"}), "engram-client bench: --n: missing value");
  EXPECT_EQ(error({"--request-rate", "0"}),
            "engram-client bench: --request-rate: expected a number > 0 or inf, got '0'");
  EXPECT_EQ(error({"--top-p", "1.5"}),
            "engram-client bench: --top-p: expected a number in (0, 1], got '1.5'");
  EXPECT_EQ(error({"--top-p", "nan"}),
            "engram-client bench: --top-p: expected a number in (0, 1], got 'nan'");
  EXPECT_NE(error({"--len", "10,5"}).find("A <= B"), std::string::npos);
  EXPECT_NE(error({"--len", "1,2,3"}).find("expected N or A,B"), std::string::npos);
  EXPECT_NE(error({"--mode", "c"}).find("expected one of a, b"), std::string::npos);
  EXPECT_EQ(error({"extra"}), "engram-client bench: unexpected argument 'extra'");
  EXPECT_EQ(error({"--request-rate", "inf"}), "");
}

TEST(ClientFlags, HelpAndUsage) {
  bool b = false;
  FlagParser p("health", "[flags]", "Checks.");
  p.AddBool("quiet", &b, "print nothing");
  p.AddSection("connection");
  std::string server;
  p.AddString("server", &server, "address", "HOST:PORT");
  ASSERT_TRUE(ParseArgs(p, {"--help"}).ok());
  EXPECT_TRUE(p.help());
  const std::string u = p.Usage();
  EXPECT_NE(u.find("usage: engram-client health [flags]"), std::string::npos);
  EXPECT_NE(u.find("\nconnection:\n  --server HOST:PORT"), std::string::npos);
  EXPECT_NE(u.find("  --quiet "), std::string::npos);
}

TEST(ClientRequestFlags, OnlySetFlagsReachTheRequest) {
  SamplingOptions s;
  StoppingOptions st;
  FlagParser p("generate", "");
  AddSamplingFlags(p, &s, /*with_seed=*/true);
  AddStoppingFlags(p, &st);
  ASSERT_TRUE(ParseArgs(p, {"--temperature", "0", "--top-k", "5", "--seed", "9", "--stop", "x",
                            "--ignore-eos", "--frequency-penalty", "-0.5"})
                  .ok());
  engram::v1::SamplingParams sp;
  ApplySampling(p, s, &sp);
  EXPECT_TRUE(sp.has_temperature());
  EXPECT_EQ(sp.temperature(), 0.0f);
  EXPECT_FALSE(sp.has_top_p());  // unset: the server's default
  EXPECT_FALSE(sp.has_repetition_penalty());
  EXPECT_EQ(sp.top_k(), 5u);
  EXPECT_TRUE(sp.has_seed());
  EXPECT_EQ(sp.seed(), 9u);
  EXPECT_FLOAT_EQ(sp.frequency_penalty(), -0.5f);
  engram::v1::StoppingCriteria sc;
  ApplyStopping(st, &sc);
  ASSERT_EQ(sc.stop_size(), 1);
  EXPECT_EQ(sc.stop(0), "x");
  EXPECT_TRUE(sc.ignore_eos());

  // Bench's --seed is the workload's, not the sampler's.
  SamplingOptions s2;
  FlagParser b("bench", "");
  AddSamplingFlags(b, &s2, /*with_seed=*/false);
  EXPECT_FALSE(ParseArgs(b, {"--seed", "1"}).ok());
}

TEST(ClientRpcStatus, CanonicalNames) {
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAVAILABLE), "UNAVAILABLE");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
  EXPECT_EQ(StatusCodeName(static_cast<grpc::StatusCode>(42)), "CODE_42");
}

}  // namespace
}  // namespace engram::client
