// engramd --demo: the built-in demo model, generated on first start by the engram-model binary
// installed beside engramd (no downloads), into a cache directory reused by later starts.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace engram::engramd {

// $ENGRAM_CACHE_DIR, else $XDG_CACHE_HOME/engram-serve, else ~/.cache/engram-serve.
std::string CacheDir();
// The demo model directory, created (atomically: built aside, then renamed) when missing.
absl::StatusOr<std::string> EnsureDemoModel();

}  // namespace engram::engramd
