// The state of `engram-client chat`: the conversation as the `messages` the server renders with
// the model's chat template, and the slash commands typed at its prompt. Kept apart from the
// terminal and the RPC so it can be tested on its own.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engram/v1/inference.pb.h"

namespace engram::client {

struct ChatCommand {
  enum class Kind {
    kSend,     // a user turn: `text`
    kEmpty,    // a blank line: nothing to do
    kReset,    // /reset: forget the turns, keep the system prompt
    kSystem,   // /system <text>: set (or, with no text, remove) the system prompt
    kExit,     // /exit or /quit
    kHelp,     // /help
    kUnknown,  // any other /word: `text` is the word
  };
  Kind kind = Kind::kEmpty;
  std::string text;
};

// "//x" sends the user turn "/x", so a message can start with a slash.
ChatCommand ParseChatLine(std::string_view line);

// Lines for /help.
const char* ChatHelpText();

class ChatConversation {
 public:
  explicit ChatConversation(std::string system = "") : system_(std::move(system)) {}

  const std::string& system() const { return system_; }
  void SetSystem(std::string system) { system_ = std::move(system); }
  // Forgets the turns; the system prompt stays, as a new conversation with the same setup.
  void Reset() { turns_.clear(); }

  void AddUser(std::string text) { turns_.push_back({"user", std::move(text)}); }
  void AddAssistant(std::string text) { turns_.push_back({"assistant", std::move(text)}); }
  // Takes back the last user turn when its reply failed, so the next one does not follow a
  // question the model never answered.
  void DropLastUser();

  // The system prompt (when set) followed by every turn, asking for the assistant's reply.
  void Fill(engram::v1::ChatMessages* out) const;
  size_t num_turns() const { return turns_.size(); }

 private:
  struct Turn {
    std::string role;
    std::string content;
  };
  std::string system_;
  std::vector<Turn> turns_;
};

}  // namespace engram::client
