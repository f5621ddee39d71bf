// The "product_key_memory" object of config.json (DESIGN §2.4): parsed and validated with every
// error naming the file and the key, and written back in a stable key order.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "server/model/config.h"

namespace engram {

// `m` holds what is parsed before it (the backbone and the "engram" object): the layers must
// exist, be free of an Engram layer, and the residual stream must be plain (hc_mult 1).
absl::Status ParseProductKeyConfig(const nlohmann::json& j, const ModelConfig& m,
                                   const std::string& source, ProductKeyConfig* out);
nlohmann::ordered_json ProductKeyConfigToJson(const ProductKeyConfig& c);

}  // namespace engram
