// Early-return helpers for absl::Status / absl::StatusOr, so every fallible boundary (files,
// config, requests) propagates errors without nesting.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ENGRAM_CONCAT_INNER(a, b) a##b
#define ENGRAM_CONCAT(a, b) ENGRAM_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status engram_status_ = (expr);          \
    if (!engram_status_.ok()) return engram_status_; \
  } while (0)

// `lhs` may be a declaration ("auto x"), so it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)    \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(ENGRAM_CONCAT(engram_statusor_, __LINE__), lhs, expr)
// NOLINTEND(bugprone-macro-parentheses)
