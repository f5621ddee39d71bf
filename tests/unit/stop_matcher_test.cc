// Stop strings across token boundaries: nothing at or after a stop string is released, held-back
// text is released once ruled out, and cuts never split a UTF-8 character.
#include "server/engine/stop_matcher.h"

#include "gtest/gtest.h"

namespace engram {
namespace {

std::string Feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += m.Push(p);
  return out;
}

TEST(StopMatcher, MatchSpanningPiecesCutsBeforeIt) {
  StopMatcher m({"END"}, false);
  EXPECT_EQ(m.Push("abc E"), "abc ");  // "E" could begin the stop string
  EXPECT_EQ(m.Push("N"), "");
  EXPECT_EQ(m.Push("Dxyz"), "");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.matched_stop(), "END");
  EXPECT_EQ(m.Push("more"), "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcher, FalseStartIsReleased) {
  StopMatcher m({"END"}, false);
  EXPECT_EQ(Feed(m, {"a", "E", "N", "x"}), "aENx");
  EXPECT_FALSE(m.matched());
  EXPECT_EQ(m.Push("EN"), "");
  EXPECT_EQ(m.Flush(), "EN");
}

TEST(StopMatcher, IncludeStopString) {
  StopMatcher m({"\n\n"}, true);
  EXPECT_EQ(Feed(m, {"one\n", "\ntwo"}), "one\n\n");
}

TEST(StopMatcher, EarliestOfSeveralWins) {
  StopMatcher m({"cd", "b"}, false);
  EXPECT_EQ(m.Push("abcd"), "a");
  EXPECT_EQ(m.matched_stop(), "b");
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m;
  EXPECT_EQ(m.Push("hello"), "hello");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcher, HoldBackNeverSplitsACharacter) {
  // The stop string starts with the last byte of "é" (0xC3 0xA9): holding one byte back would
  // split the character, so the whole character waits.
  StopMatcher m({"\xA9z"}, false);
  EXPECT_EQ(m.Push("x\xC3\xA9"), "x");
  EXPECT_EQ(m.Push("y"), "\xC3\xA9y");
}

}  // namespace
}  // namespace engram
