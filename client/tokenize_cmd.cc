// engram-client tokenize: what the server's tokenizer makes of a text (or of a conversation
// rendered by the chat template), so prompts can be checked and --token-ids prepared.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "absl/strings/str_join.h"
#include "client/channel.h"
#include "client/commands.h"
#include "client/flags.h"
#include "client/proto_json.h"
#include "client/rpc_status.h"
#include "engram/v1/inference.grpc.pb.h"
#include "server/util/str_cat.h"

namespace engram::client {

int RunTokenize(int argc, char** argv) {
  ConnectionOptions conn_opts;
  conn_opts.deadline_s = 30;
  bool json = false, ids_only = false, add_special_tokens = false, chat = false;
  FlagParser p("tokenize", "[flags] TEXT   (TEXT '-': read it from stdin)",
               "Prints one line per token: position, id and the piece it stands for (quoted).");
  p.AddBool("ids", &ids_only, "print only the ids, comma-separated (for generate --token-ids)");
  p.AddBool("json", &json, "print the response as one JSON line");
  p.AddBool("add-special-tokens", &add_special_tokens,
            "add the tokenizer's special tokens (BOS) as a prompt would get them");
  p.AddBool("chat", &chat,
            "tokenize TEXT as one user message rendered by the chat template, with the "
            "assistant header");
  AddConnectionFlags(p, &conn_opts);
  p.SetPositional("TEXT", 1, 1);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;

  std::string text = p.positional()[0];
  if (text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), {});

  engram::v1::TokenizeRequest req;
  if (chat) {
    auto* m = req.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(text);
    req.mutable_messages()->set_add_generation_prompt(true);
  } else {
    req.set_text(text);
  }
  req.set_add_special_tokens(add_special_tokens);

  auto conn = Connection::Open(conn_opts);
  if (!conn.ok()) return UsageError(p, conn.status());
  auto stub = engram::v1::InferenceService::NewStub(conn->channel());
  grpc::ClientContext ctx;
  conn->Prepare(&ctx);
  engram::v1::TokenizeResponse resp;
  grpc::Status st = stub->Tokenize(&ctx, req, &resp);
  if (!st.ok()) {
    PrintRpcError("tokenize", st);
    return kExitRpcError;
  }
  if (json) {
    std::printf("%s\n", ToJsonLine(resp).c_str());
  } else if (ids_only) {
    std::printf("%s\n", absl::StrJoin(resp.token_ids(), ",").c_str());
  } else {
    for (int i = 0; i < resp.token_ids_size(); ++i) {
      const std::string piece = i < resp.tokens_size() ? Quoted(resp.tokens(i)) : "";
      std::printf("%6d %8u  %s\n", i, resp.token_ids(i), piece.c_str());
    }
    std::printf("%u tokens (max_model_len %u)\n", resp.count(), resp.max_model_len());
  }
  return kExitOk;
}

}  // namespace engram::client
