// engram-client bench's progress line.
#include "client/progress.h"

#include "gtest/gtest.h"

namespace engram::client {
namespace {

TEST(ClientProgress, Render) {
  EXPECT_EQ(ProgressBar::Render("bench", 5, 0, 10, 1.25, 80),
            "bench [" + std::string(20, '#') + std::string(20, '.') + "]  5/10  1.2s");
  EXPECT_EQ(ProgressBar::Render("bench", 10, 2, 10, 3.0, 80),
            "bench [" + std::string(40, '#') + "]  10/10  failed 2  3.0s");
  // Narrow terminals: the bar shrinks to 10 columns, then the line is cut.
  const std::string narrow = ProgressBar::Render("bench", 1, 0, 4, 0.0, 30);
  EXPECT_LE(narrow.size(), 30u);
  EXPECT_EQ(narrow.substr(0, 17), "bench [##........");
  EXPECT_EQ(ProgressBar::Render("warmup", 0, 0, 0, 0.0, 80).substr(0, 9), "warmup [#");
}

TEST(ClientProgress, DisabledDrawsNothing) {
  ProgressBar bar("bench", 10, /*enabled=*/false);
  testing::internal::CaptureStderr();
  bar.Update(1, 0);
  bar.Finish();
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace engram::client
