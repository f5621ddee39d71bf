// gRPC status codes as users and scripts read them: the canonical upper-case names
// ("RESOURCE_EXHAUSTED"), which is what bench counts failures by and what every command prints
// on stderr when a call fails.
#pragma once

#include <string>
#include <string_view>

#include "grpcpp/support/status.h"

namespace engram::client {

// The canonical name of a gRPC code ("UNAVAILABLE"); "CODE_<n>" for a number outside the enum.
std::string StatusCodeName(grpc::StatusCode code);

// "engram-client <command>: UNAVAILABLE: failed to connect to all addresses" on stderr.
void PrintRpcError(std::string_view command, const grpc::Status& status);

}  // namespace engram::client
