// One streaming Generate call as generate and chat make it: every message goes to a callback as
// it arrives, and Ctrl-C (through a CancelSlot) cancels the call so the server frees the
// sequence at once.
#pragma once

#include <functional>

#include "client/channel.h"
#include "client/interrupt.h"
#include "engram/v1/inference.pb.h"
#include "grpcpp/support/status.h"

namespace engram::client {

grpc::Status StreamGenerate(
    const Connection& connection, const engram::v1::GenerateRequest& request,
    const std::function<void(const engram::v1::GenerateResponse&)>& on_message, CancelSlot* cancel);

}  // namespace engram::client
