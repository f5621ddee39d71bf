#include "tools/engramd/demo_model.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "server/util/str_cat.h"

namespace engram::engramd {
namespace fs = std::filesystem;

std::string CacheDir() {
  if (const char* d = std::getenv("ENGRAM_CACHE_DIR"); d != nullptr && *d != '\0') return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d != '\0')
    return std::string(d) + "/engram-serve";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0')
    return std::string(h) + "/.cache/engram-serve";
  return "/tmp/engram-serve-cache";
}

absl::StatusOr<std::string> EnsureDemoModel() {
  const fs::path dir = fs::path(CacheDir()) / "demo";
  if (fs::exists(dir / "config.json")) return dir.string();
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  if (ec)
    return absl::FailedPreconditionError(StrCat("cannot create the cache directory ",
                                                dir.parent_path().string(), ": ", ec.message(),
                                                " (set ENGRAM_CACHE_DIR)"));
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  const fs::path tool = self.parent_path() / "engram-model";
  if (ec || !fs::exists(tool))
    return absl::NotFoundError(
        StrCat("--demo needs the engram-model binary beside engramd (", tool.string(), ")"));
  const std::string tool_path = tool.string();
  const fs::path tmp = dir.string() + ".tmp." + std::to_string(getpid());
  fs::remove_all(tmp, ec);
  std::fprintf(stderr, "engramd: creating the demo model in %s (first start only)\n",
               dir.string().c_str());
  const std::string cmd =
      StrCat("'", tool_path, "' create --preset demo --out '", tmp.string(), "' >&2");
  if (int rc = std::system(cmd.c_str()); rc != 0) {
    fs::remove_all(tmp, ec);
    return absl::InternalError(
        StrCat("creating the demo model failed: ", cmd, " exited with ", rc));
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    fs::remove_all(tmp, ec);
    if (!fs::exists(dir / "config.json"))  // another engramd may have won the race
      return absl::InternalError(StrCat("cannot move the demo model into ", dir.string()));
  }
  return dir.string();
}

}  // namespace engram::engramd
