#include "client/channel.h"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "server/util/str_cat.h"

namespace engram::client {
namespace {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(what, " ", path, ": cannot open"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(StrCat(what, " ", path, ": read error"));
  return ss.str();
}

std::string Trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(s.find_last_not_of(ws) + 1);
  s.erase(0, s.find_first_not_of(ws));
  return s;
}

}  // namespace

void AddConnectionFlags(FlagParser& parser, ConnectionOptions* options) {
  parser.AddSection("connection");
  parser.AddString("server", &options->server,
                   StrCat("engramd address host:port (default ", kDefaultServer, ")"), "HOST:PORT");
  parser.AddString("api-key-file", &options->api_key_file,
                   StrCat("file holding the API key, sent as 'authorization: Bearer KEY' "
                          "(default: $",
                          kApiKeyEnv, " when set)"),
                   "FILE");
  parser.AddBool("tls", &options->tls, "connect with TLS, trusting the system's CA roots");
  parser.AddString("tls-ca", &options->tls_ca, "PEM file of CA roots to trust (implies --tls)",
                   "FILE");
  parser.AddString("tls-server-name", &options->tls_server_name,
                   "name to check the server certificate against (default: the --server host)",
                   "NAME");
  parser.AddDouble(
      "deadline", &options->deadline_s,
      StrCat("seconds each call may take, 0 = none (default ", options->deadline_s, ")"), 0, 1e9);
}

absl::StatusOr<Connection> Connection::Open(const ConnectionOptions& options) {
  Connection c;
  c.deadline_s_ = options.deadline_s;
  std::string key;
  if (!options.api_key_file.empty()) {
    auto contents = ReadWholeFile(options.api_key_file, "--api-key-file");
    if (!contents.ok()) return contents.status();
    key = Trim(*std::move(contents));
    if (key.empty())
      return absl::InvalidArgumentError(
          StrCat("--api-key-file ", options.api_key_file, ": the file is empty"));
  } else if (const char* env = std::getenv(kApiKeyEnv); env != nullptr) {
    key = Trim(env);
  }
  if (!key.empty()) c.authorization_ = StrCat("Bearer ", key);

  grpc::ChannelArguments args;
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.tls || !options.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      auto pem = ReadWholeFile(options.tls_ca, "--tls-ca");
      if (!pem.ok()) return pem.status();
      ssl.pem_root_certs = *std::move(pem);
    }
    creds = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  } else {
    if (!options.tls_server_name.empty())
      return absl::InvalidArgumentError("--tls-server-name needs --tls or --tls-ca");
    creds = grpc::InsecureChannelCredentials();
  }
  c.channel_ = grpc::CreateCustomChannel(options.server, creds, args);
  return c;
}

void Connection::Prepare(grpc::ClientContext* context) const {
  // Plain metadata rather than CallCredentials: gRPC refuses call credentials on an insecure
  // channel, and a key over loopback without TLS is a supported setup.
  if (!authorization_.empty()) context->AddMetadata("authorization", authorization_);
  if (deadline_s_ > 0)
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::duration<double>(deadline_s_)));
}

}  // namespace engram::client
