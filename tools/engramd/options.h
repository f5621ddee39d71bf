// engramd's command line: every flag with its default, parsed with the project's flag parser
// (errors name the flag and the allowed values).
#pragma once

#include <cstdint>
#include <string>

#include "server/engine/engine.h"
#include "server/model/model.h"

namespace engram::engramd {

struct Options {
  std::string model_dir;
  bool demo = false;
  std::string model_name;  // default: the model directory's name
  std::string listen = "127.0.0.1:50051";
  int metrics_port = 9400;  // 0: no metrics endpoint
  int threads = 0;          // 0: one per core
  BackendKind backend = BackendKind::kAuto;
  EngineOptions engine;
  EngramMemoryOptions memory;
  double drain_timeout_s = 30;
  std::string tls_cert, tls_key, api_key_file;
  size_t max_input_bytes = 1 << 20;
};

// Returns -1 to run, else the exit status (0 after --help, 2 on a usage error).
int ParseOptions(int argc, char** argv, Options* o);

}  // namespace engram::engramd
