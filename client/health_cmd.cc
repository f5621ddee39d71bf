// engram-client health: the standard grpc.health.v1 Check, for people and for the container's
// health check. Exit 0 only when the answer is SERVING; any other state, or no answer, exits 1
// with the state or the gRPC error on stderr.
#include <cstdio>
#include <string>

#include "client/channel.h"
#include "client/commands.h"
#include "client/flags.h"
#include "client/rpc_status.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace engram::client {

int RunHealth(int argc, char** argv) {
  ConnectionOptions conn_opts;
  // A health check that hangs is worse than one that fails: a short default.
  conn_opts.deadline_s = 5;
  std::string service;
  bool quiet = false;
  FlagParser p("health", "[flags]",
               "Asks the server's grpc.health.v1.Health service; prints the serving state.\n"
               "Exit 0 when SERVING, 1 otherwise (NOT_SERVING while draining or loading, or the\n"
               "gRPC error when the server does not answer).");
  p.AddString("service", &service,
              "service name to ask about (default: the server as a whole); e.g. "
              "engram.v1.InferenceService",
              "NAME");
  p.AddBool("quiet", &quiet, "print nothing; only the exit code tells");
  AddConnectionFlags(p, &conn_opts);
  p.SetPositional("", 0, 0);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;

  auto conn = Connection::Open(conn_opts);
  if (!conn.ok()) return UsageError(p, conn.status());
  auto stub = grpc::health::v1::Health::NewStub(conn->channel());
  grpc::ClientContext ctx;
  conn->Prepare(&ctx);
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status st = stub->Check(&ctx, req, &resp);
  if (!st.ok()) {
    if (!quiet) PrintRpcError("health", st);
    return kExitRpcError;
  }
  const std::string state =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
  const bool serving = resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  // On stdout whatever the state, so `state=$(engram-client health)` reads it.
  if (!quiet) std::printf("%s\n", state.c_str());
  return serving ? kExitOk : kExitRpcError;
}

}  // namespace engram::client
