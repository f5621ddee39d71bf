// How every subcommand reaches engramd: the address, TLS, the API key and a per-call deadline,
// as the same flags on each command.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/flags.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace engram::client {

inline constexpr char kDefaultServer[] = "127.0.0.1:50051";
// The environment variable read for the API key when --api-key-file is not given, so a key
// need not sit in a file or on the command line (where `ps` shows it).
inline constexpr char kApiKeyEnv[] = "ENGRAM_API_KEY";

struct ConnectionOptions {
  std::string server = kDefaultServer;
  std::string api_key_file;
  bool tls = false;
  std::string tls_ca;           // PEM roots; implies TLS; empty with --tls: the system roots
  std::string tls_server_name;  // overrides the name the certificate is checked against
  double deadline_s = 0;        // per call; 0 = none
};

// Adds --server, --api-key-file, --tls, --tls-ca, --tls-server-name and --deadline (whose
// default, in seconds, is `options->deadline_s`) under a "connection" section.
void AddConnectionFlags(FlagParser& parser, ConnectionOptions* options);

class Connection {
 public:
  // Reads the key and CA files; errors name the file. Creating the channel does not connect:
  // an unreachable server shows up as UNAVAILABLE on the first call.
  static absl::StatusOr<Connection> Open(const ConnectionOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // Adds the bearer key and the deadline to one call's context; call it just before the call,
  // since the deadline counts from now.
  void Prepare(grpc::ClientContext* context) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::string authorization_;  // "Bearer KEY", or empty
  double deadline_s_ = 0;
};

}  // namespace engram::client
