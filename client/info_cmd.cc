// engram-client info: GetModelInfo, as a readable summary or --json.
#include <cstdio>
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
namespace {

std::string Bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

void Field(const char* name, const std::string& value) {
  std::printf("%-18s %s\n", name, value.c_str());
}

}  // namespace

int RunInfo(int argc, char** argv) {
  ConnectionOptions conn_opts;
  conn_opts.deadline_s = 30;
  bool json = false;
  FlagParser p("info", "[flags]", "Describes the model the server serves (GetModelInfo).");
  p.AddBool("json", &json, "print the response as one JSON line");
  AddConnectionFlags(p, &conn_opts);
  p.SetPositional("", 0, 0);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;

  auto conn = Connection::Open(conn_opts);
  if (!conn.ok()) return UsageError(p, conn.status());
  auto stub = engram::v1::InferenceService::NewStub(conn->channel());
  grpc::ClientContext ctx;
  conn->Prepare(&ctx);
  engram::v1::ModelInfo m;
  grpc::Status st = stub->GetModelInfo(&ctx, engram::v1::GetModelInfoRequest(), &m);
  if (!st.ok()) {
    PrintRpcError("info", st);
    return kExitRpcError;
  }
  if (json) {
    std::printf("%s\n", ToJsonLine(m).c_str());
    return kExitOk;
  }
  Field("model", m.model_name());
  // proto3: 0 is "not reported" (a server that does not count them), not an empty model.
  if (m.parameters() > 0) Field("parameters", StrCat(m.parameters()));
  Field("backend", StrCat(m.backend(), ", ", m.dtype()));
  Field("shape",
        StrCat(m.num_layers(), " layers, hidden ", m.hidden_size(), ", ", m.num_heads(), " heads (",
               m.num_kv_heads(), " KV) x ", m.head_dim(), ", hc_mult ", m.hc_mult()));
  Field("vocab", StrCat(m.vocab_size(), " (eos ", m.eos_token_id(), ")"));
  Field("max_model_len", StrCat(m.max_model_len()));
  Field("chat template", m.has_chat_template() ? "yes" : "no");
  Field("kv cache", StrCat(m.kv_cache_blocks(), " blocks x ", m.kv_block_size(), " tokens"));
  Field("engram layers", m.engram_layers_size() == 0
                             ? std::string("none")
                             : StrCat(absl::StrJoin(m.engram_layers(), ","), " (max n-gram ",
                                      m.engram_max_ngram(), ", ", m.engram_heads(),
                                      " heads, prefetch ", m.prefetch() ? "on" : "off", ")"));
  for (const auto& l : m.memory_layers())
    if (l.kind() == "product_key")
      Field(StrCat("memory layer ", l.layer()).c_str(),
            StrCat("product_key (", l.heads(), " heads, knn ", l.knn(), ", ", l.n_keys(),
                   " keys per half, table ", l.table(), ")"));
  if (m.tables_size() > 0) {
    std::printf("\n%-6s %14s %6s %-10s %12s %-5s %12s  %s\n", "layer", "rows", "dim", "dtype",
                "size", "tier", "cache", "kind");
    for (const auto& t : m.tables())
      std::printf("%-6s %14llu %6u %-10s %12s %-5s %12s  %s\n",
                  t.name().empty() ? StrCat(t.layer()).c_str() : t.name().c_str(),
                  static_cast<unsigned long long>(t.rows()), t.dim(), t.dtype().c_str(),
                  Bytes(t.bytes()).c_str(), t.tier().c_str(),
                  t.cache_bytes() > 0 ? Bytes(t.cache_bytes()).c_str() : "-",
                  t.kind().empty() ? "engram" : t.kind().c_str());
  }
  return kExitOk;
}

}  // namespace engram::client
