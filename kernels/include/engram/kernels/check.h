// Internal-invariant checks. A failed ENGRAM_CHECK is a bug in this program, never bad input
// (bad input gets an absl::Status), so it prints file and line and aborts.
#pragma once

#include <cstdio>
#include <cstdlib>

#define ENGRAM_CHECK(cond)                                                          \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

#define ENGRAM_CHECK_MSG(cond, ...)                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                            \
      std::fputc('\n', stderr);                                                     \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)
