#include "client/stream_generate.h"

#include "engram/v1/inference.grpc.pb.h"

namespace engram::client {

grpc::Status StreamGenerate(
    const Connection& connection, const engram::v1::GenerateRequest& request,
    const std::function<void(const engram::v1::GenerateResponse&)>& on_message,
    CancelSlot* cancel) {
  auto stub = engram::v1::InferenceService::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Prepare(&context);
  cancel->Set(&context);
  auto reader = stub->Generate(&context, request);
  engram::v1::GenerateResponse response;
  while (reader->Read(&response)) on_message(response);
  grpc::Status status = reader->Finish();
  cancel->Clear();
  return status;
}

}  // namespace engram::client
