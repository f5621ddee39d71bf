#include "client/chat_conversation.h"

#include <algorithm>

namespace engram::client {
namespace {

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

ChatCommand ParseChatLine(std::string_view line) {
  line = TrimRight(line);
  if (line.find_first_not_of(" \t") == std::string_view::npos)
    return {ChatCommand::Kind::kEmpty, ""};
  if (line.substr(0, 2) == "//") return {ChatCommand::Kind::kSend, std::string(line.substr(1))};
  if (line.front() != '/') return {ChatCommand::Kind::kSend, std::string(line)};
  const size_t space = line.find_first_of(" \t");
  const std::string_view word = line.substr(0, space);
  std::string_view arg = space == std::string_view::npos ? "" : line.substr(space + 1);
  arg.remove_prefix(std::min(arg.size(), arg.find_first_not_of(" \t")));
  if (word == "/reset") return {ChatCommand::Kind::kReset, ""};
  if (word == "/system") return {ChatCommand::Kind::kSystem, std::string(arg)};
  if (word == "/exit" || word == "/quit") return {ChatCommand::Kind::kExit, ""};
  if (word == "/help") return {ChatCommand::Kind::kHelp, ""};
  return {ChatCommand::Kind::kUnknown, std::string(word)};
}

const char* ChatHelpText() {
  return "/system <text>  set the system prompt (no text: remove it); keeps the conversation\n"
         "/reset          start over (the system prompt stays)\n"
         "/exit           quit (also /quit, Ctrl-D)\n"
         "//text          send a message that starts with '/'\n"
         "Ctrl-C          stop the reply being streamed; at the prompt, quit\n";
}

void ChatConversation::DropLastUser() {
  if (!turns_.empty() && turns_.back().role == "user") turns_.pop_back();
}

void ChatConversation::Fill(engram::v1::ChatMessages* out) const {
  out->Clear();
  if (!system_.empty()) {
    auto* m = out->add_messages();
    m->set_role("system");
    m->set_content(system_);
  }
  for (const auto& t : turns_) {
    auto* m = out->add_messages();
    m->set_role(t.role);
    m->set_content(t.content);
  }
  out->set_add_generation_prompt(true);
}

}  // namespace engram::client
