// engram-client chat's conversation state and slash commands.
#include "client/chat_conversation.h"

#include "gtest/gtest.h"

namespace engram::client {
namespace {

using Kind = ChatCommand::Kind;

TEST(ClientChat, ParsesCommands) {
  EXPECT_EQ(ParseChatLine("hello").kind, Kind::kSend);
  EXPECT_EQ(ParseChatLine("hello  ").text, "hello");
  EXPECT_EQ(ParseChatLine("").kind, Kind::kEmpty);
  EXPECT_EQ(ParseChatLine("   \t").kind, Kind::kEmpty);
  EXPECT_EQ(ParseChatLine("/reset").kind, Kind::kReset);
  EXPECT_EQ(ParseChatLine("/exit").kind, Kind::kExit);
  EXPECT_EQ(ParseChatLine("/quit").kind, Kind::kExit);
  EXPECT_EQ(ParseChatLine("/help").kind, Kind::kHelp);
  const ChatCommand sys = ParseChatLine("/system   You are terse. ");
  EXPECT_EQ(sys.kind, Kind::kSystem);
  EXPECT_EQ(sys.text, "You are terse.");
  EXPECT_EQ(ParseChatLine("/system").text, "");
  const ChatCommand unknown = ParseChatLine("/frobnicate now");
  EXPECT_EQ(unknown.kind, Kind::kUnknown);
  EXPECT_EQ(unknown.text, "/frobnicate");
  const ChatCommand escaped = ParseChatLine("//etc/passwd is a path");
  EXPECT_EQ(escaped.kind, Kind::kSend);
  EXPECT_EQ(escaped.text, "/etc/passwd is a path");
  EXPECT_EQ(ParseChatLine("a\r").text, "a");  // CRLF input from a pipe
}

std::vector<std::pair<std::string, std::string>> Roles(const ChatConversation& c) {
  engram::v1::ChatMessages m;
  c.Fill(&m);
  EXPECT_TRUE(m.has_add_generation_prompt() && m.add_generation_prompt());
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& x : m.messages()) out.emplace_back(x.role(), x.content());
  return out;
}

TEST(ClientChat, ConversationKeepsTurnsAndSystemPrompt) {
  ChatConversation c("Be brief.");
  c.AddUser("Hi");
  c.AddAssistant("Hello!");
  c.AddUser("Name a colour");
  using V = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(Roles(c), (V{{"system", "Be brief."},
                         {"user", "Hi"},
                         {"assistant", "Hello!"},
                         {"user", "Name a colour"}}));
  // A failed reply takes its question back.
  c.DropLastUser();
  EXPECT_EQ(c.num_turns(), 2u);
  c.DropLastUser();  // the last turn is the assistant's: nothing to take back
  EXPECT_EQ(c.num_turns(), 2u);

  c.SetSystem("");
  EXPECT_EQ(Roles(c), (V{{"user", "Hi"}, {"assistant", "Hello!"}}));
  c.SetSystem("New.");
  c.Reset();
  EXPECT_EQ(Roles(c), (V{{"system", "New."}}));
}

}  // namespace
}  // namespace engram::client
