// Helpers for tests that run the real engram-model binary (ENGRAM_MODEL_TOOL): run a command
// and capture its exit status and output, and give each test a fresh directory under
// ENGRAM_TEST_TMP. Used by bad_model_test and create_test.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace engram::testing_util {

struct RunResult {
  int status = -1;     // exit status, or -1 when killed by a signal (a crash)
  std::string output;  // stdout and stderr together
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < output.size()) {
      size_t end = output.find('\n', start);
      if (end == std::string::npos) end = output.size();
      if (end > start) lines.push_back(output.substr(start, end - start));
      start = end + 1;
    }
    return lines;
  }
};

inline std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command line, capturing stdout and stderr together.
inline RunResult RunCommand(const std::string& cmd) {
  RunResult r;
  std::FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// Runs `engram-model <args>` (args already quoted as needed).
inline RunResult RunTool(const std::string& args) {
  return RunCommand(Quote(ENGRAM_MODEL_TOOL) + " " + args);
}

// This process's scratch directory under ENGRAM_TEST_TMP (or the gtest temp dir).
inline std::filesystem::path ProcessDir() {
  const char* env = std::getenv("ENGRAM_TEST_TMP");
  return std::filesystem::path(env ? env : ::testing::TempDir()) /
         ("p" + std::to_string(::getpid()));
}

// Removes ProcessDir() when the test program ends.
class ProcessDirCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(ProcessDir(), ec);
  }
};

// A fresh, empty directory for this process and `name`.
inline std::string FreshDir(const std::string& name) {
  const std::filesystem::path dir = ProcessDir() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// Runs `engram-model create --preset tiny <extra>` into FreshDir(name) and returns the directory;
// a failing create is reported as a test failure with the tool's output.
inline std::string CreateTinyModel(const std::string& name, const std::string& extra = "") {
  const std::string dir = FreshDir(name);
  const RunResult r = RunTool("create --preset tiny --out " + Quote(dir) + " " + extra);
  EXPECT_EQ(r.status, 0) << r.output;
  return dir;
}

// `create --preset tiny` flags for the shapes the forward-pass tests cover: the preset (M = 2,
// N = 3), more branches, n-grams and a bf16 table, N = 2 with one head and bf16 weights, and an
// fp8 table with its block scales (one head, so rows are 32 wide); product-key memory (DESIGN
// §2.4) with shared values and swilu, beside an Engram layer with a gate, bf16 values of their
// own width and a plain value_proj, and on two blocks with per-layer fp8 values, no projection
// and no query bias.
inline std::vector<std::string> TinyModelShapes() {
  return {"",
          "--hc-mult 4 --max-ngram 4 --engram-vocab-sizes 900,1100,1300 --table-dtype bfloat16",
          "--max-ngram 2 --engram-vocab-sizes 700 --heads-per-ngram 1 --dtype bfloat16",
          "--heads-per-ngram 1 --table-dtype float8_e4m3",
          "--memory pkm",
          "--memory engram,pkm --pkm-gated 1 --pkm-swilu 0 --pkm-v-dim 32 --pkm-table-dtype "
          "bfloat16",
          "--memory pkm --layers 3 --pkm-layers 0,2 --pkm-share-values 0 --pkm-swilu 0 "
          "--pkm-value-proj 0 --pkm-query-bias 0 --pkm-table-dtype float8_e4m3"};
}

}  // namespace engram::testing_util
