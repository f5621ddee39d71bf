// `promtool check metrics` over a /metrics body, shared by the metrics unit test and the engramd
// integration test. Exit 3 is lint findings only (1 would be a parse error). Two are intrinsic to
// vLLM's names, which engramd keeps so that vLLM dashboards work: the colon (by convention
// reserved for recording rules) and the _total of the histogram engram:iteration_tokens_total.
// Any other complaint fails the calling test.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/unit/tool_runner.h"

namespace engram::testing_util {

// Skips the calling test when promtool is not installed.
inline void ExpectPromtoolAcceptsMetrics(const std::string& body,
                                         const std::string& promtool = "/usr/bin/promtool") {
  if (!std::filesystem::exists(promtool)) GTEST_SKIP() << "no " << promtool;
  const std::string file = FreshDir("promtool") + "/metrics.txt";
  std::ofstream(file) << body;
  const RunResult r = RunCommand(Quote(promtool) + " check metrics < " + Quote(file));
  std::printf("promtool check metrics: exit %d\n%s", r.status, r.output.c_str());
  if (r.status == 0) return;
  EXPECT_EQ(r.status, 3) << r.output;
  for (const std::string& line : r.Lines()) {
    const bool colon = line.ends_with(" metric names should not contain ':'");
    const bool vllm_total =
        line ==
        "engram:iteration_tokens_total non-counter metrics should not have \"_total\" suffix";
    EXPECT_TRUE(colon || vllm_total) << "promtool: " << line;
  }
}

}  // namespace engram::testing_util
