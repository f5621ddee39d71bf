// The subcommands of engram-client; each takes (argc, argv) with argv[0] the subcommand name
// and returns the process exit code (client/flags.h: 0 ok, 1 RPC error, 2 usage, 130 Ctrl-C).
#pragma once

namespace engram::client {

int RunGenerate(int argc, char** argv);
int RunChat(int argc, char** argv);
int RunBench(int argc, char** argv);
int RunTokenize(int argc, char** argv);
int RunInfo(int argc, char** argv);
int RunHealth(int argc, char** argv);

}  // namespace engram::client
