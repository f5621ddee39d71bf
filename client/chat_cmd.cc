// engram-client chat: a terminal chat on the model's chat template. On a terminal it reads
// lines with libedit (editing, history kept in a file across sessions) and streams each reply;
// with stdin from a pipe or file it reads one user turn per line, prints no prompt or banner,
// and prints each reply followed by a newline, so a script can hold a conversation and read the
// replies line by line.
#include <editline/readline.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <string>

#include "client/channel.h"
#include "client/chat_conversation.h"
#include "client/commands.h"
#include "client/flags.h"
#include "client/interrupt.h"
#include "client/request_flags.h"
#include "client/rpc_status.h"
#include "client/stream_generate.h"
#include "engram/v1/inference.grpc.pb.h"
#include "server/util/str_cat.h"

namespace engram::client {
namespace {

constexpr int64_t kDefaultMaxTokens = 1024;
constexpr int kHistoryEntries = 1000;

std::string DefaultHistoryFile() {
  const char* home = std::getenv("HOME");
  return home != nullptr && *home != '\0' ? StrCat(home, "/.engram_client_history") : "";
}

// A line from the terminal (libedit) or from the pipe; false at end of input.
bool ReadLine(bool interactive, InterruptWatcher& watcher, const std::string& history_file,
              std::string* line) {
  // Waiting for input, Ctrl-C ends the program the usual way (at a libedit prompt, libedit
  // catches the signal, puts the terminal back in cooked mode and re-raises it).
  watcher.Suspend();
  if (!interactive) {
    const bool got = static_cast<bool>(std::getline(std::cin, *line));
    watcher.Resume();
    return got;
  }
  char* raw = readline("> ");
  watcher.Resume();
  if (raw == nullptr) return false;
  *line = raw;
  std::free(raw);
  if (line->find_first_not_of(" \t") != std::string::npos) {
    add_history(line->c_str());
    // Written after every line, not at exit, so a Ctrl-C at the prompt loses nothing.
    if (!history_file.empty()) write_history(history_file.c_str());
  }
  return true;
}

}  // namespace

int RunChat(int argc, char** argv) {
  ConnectionOptions conn_opts;
  SamplingOptions sampling;
  StoppingOptions stopping;
  int64_t max_tokens = kDefaultMaxTokens;
  std::string system, history_file = DefaultHistoryFile();
  bool no_history = false;

  FlagParser p("chat", "[flags]",
               StrCat("An interactive chat: each line you type is a user turn; the reply streams\n"
                      "as it is generated. The conversation is sent whole every turn as "
                      "`messages`,\nrendered by the model's chat template.\n\n",
                      ChatHelpText(),
                      "\nWith stdin not a terminal: one user turn per line, each reply printed "
                      "on\nstdout followed by a newline, no prompt; the first failed turn exits "
                      "1."));
  p.AddString("system", &system, "system prompt to start with (/system changes it)", "TEXT");
  p.AddString("history-file", &history_file,
              "where line history is kept (default ~/.engram_client_history)", "FILE");
  p.AddBool("no-history", &no_history, "keep no history file");
  p.AddSection("stopping");
  p.AddInt("max-tokens", &max_tokens,
           StrCat("most tokens per reply, 0 = up to the context limit (default ", kDefaultMaxTokens,
                  ")"),
           0, std::numeric_limits<uint32_t>::max());
  AddStoppingFlags(p, &stopping);
  AddSamplingFlags(p, &sampling, /*with_seed=*/true);
  AddConnectionFlags(p, &conn_opts);
  p.SetPositional("", 0, 0);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  if (no_history) history_file.clear();

  auto conn = Connection::Open(conn_opts);
  if (!conn.ok()) return UsageError(p, conn.status());

  const bool interactive = isatty(STDIN_FILENO) == 1;
  if (interactive) {
    // Checks the server before the first line is typed, and says what it serves.
    auto stub = engram::v1::InferenceService::NewStub(conn->channel());
    grpc::ClientContext ctx;
    conn->Prepare(&ctx);
    engram::v1::ModelInfo info;
    grpc::Status st = stub->GetModelInfo(&ctx, engram::v1::GetModelInfoRequest(), &info);
    if (!st.ok()) {
      PrintRpcError("chat", st);
      return kExitRpcError;
    }
    std::fprintf(stderr, "%s on %s%s. /help for commands, Ctrl-D to quit.\n",
                 info.model_name().c_str(), conn_opts.server.c_str(),
                 info.has_chat_template() ? "" : " (the model has no chat template)");
    using_history();
    stifle_history(kHistoryEntries);
    if (!history_file.empty()) read_history(history_file.c_str());
  }

  engram::v1::GenerateRequest base;
  ApplySampling(p, sampling, base.mutable_sampling());
  base.mutable_stopping()->set_max_new_tokens(static_cast<uint32_t>(max_tokens));
  ApplyStopping(stopping, base.mutable_stopping());

  ChatConversation conversation(system);
  CancelSlot slot;
  InterruptWatcher watcher([&slot] { slot.Cancel(); });
  std::string line;
  while (ReadLine(interactive, watcher, history_file, &line)) {
    const ChatCommand cmd = ParseChatLine(line);
    switch (cmd.kind) {
      case ChatCommand::Kind::kEmpty:
        continue;
      case ChatCommand::Kind::kExit:
        return kExitOk;
      case ChatCommand::Kind::kHelp:
        std::fputs(ChatHelpText(), stderr);
        continue;
      case ChatCommand::Kind::kReset:
        conversation.Reset();
        if (interactive) std::fputs("(conversation reset)\n", stderr);
        continue;
      case ChatCommand::Kind::kSystem:
        conversation.SetSystem(cmd.text);
        if (interactive)
          std::fputs(cmd.text.empty() ? "(system prompt removed)\n" : "(system prompt set)\n",
                     stderr);
        continue;
      case ChatCommand::Kind::kUnknown:
        std::fprintf(stderr, "unknown command %s (/help lists them; //text sends /text)\n",
                     cmd.text.c_str());
        if (!interactive) return kExitUsage;
        continue;
      case ChatCommand::Kind::kSend:
        break;
    }
    conversation.AddUser(cmd.text);
    engram::v1::GenerateRequest req = base;
    conversation.Fill(req.mutable_messages());
    std::string reply;
    watcher.Reset();
    grpc::Status st = StreamGenerate(
        *conn, req,
        [&](const engram::v1::GenerateResponse& m) {
          std::fwrite(m.text().data(), 1, m.text().size(), stdout);
          std::fflush(stdout);
          reply += m.text();
        },
        &slot);
    // The reply's line ends here; a turn that failed before any text leaves no empty line.
    if (st.ok() || !reply.empty()) std::fputc('\n', stdout);
    std::fflush(stdout);
    if (watcher.interrupted()) {
      // What was shown stays in the conversation: the user read it and may refer to it.
      std::fputs("(reply cancelled)\n", stderr);
      if (!interactive) return kExitInterrupted;
      if (!reply.empty())
        conversation.AddAssistant(reply);
      else
        conversation.DropLastUser();
      continue;
    }
    if (!st.ok()) {
      PrintRpcError("chat", st);
      conversation.DropLastUser();
      if (!interactive) return kExitRpcError;
      continue;
    }
    conversation.AddAssistant(reply);
  }
  return kExitOk;
}

}  // namespace engram::client
