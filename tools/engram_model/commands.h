// The engram-model subcommands. main.cc dispatches on argv[1] and calls one of these with
// argv shifted by one: argv[0] is the subcommand name ("create"), flags follow. Each returns
// the process exit status: 0 success, 1 bad input or a failed check, 2 not available.
// Flags are parsed per subcommand with tools/engram_model/flags.h.
#pragma once

namespace engram::tool {

int RunCreate(int argc, char** argv);    // create.cc: generate a model directory
int RunInfo(int argc, char** argv);      // info.cc: summarise a model directory
int RunVerify(int argc, char** argv);    // verify.cc: validate a model directory completely
int RunHash(int argc, char** argv);      // hash.cc: Engram row ids of a text
int RunForward(int argc, char** argv);   // forward.cc: logits of a prompt
int RunGates(int argc, char** argv);     // gates.cc: Engram gate values per token
int RunGenerate(int argc, char** argv);  // generate.cc: sample a continuation
int RunBench(int argc, char** argv);     // bench.cc: offline throughput, Engram offload cost

}  // namespace engram::tool
