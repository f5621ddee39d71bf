#include "server/util/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

// Headers larger than this are rejected before parsing; real ones are a few MB at most.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::Status Bad(std::string_view path, std::string_view what) {
  return absl::InvalidArgumentError(StrCat(path, ": invalid safetensors: ", what));
}

// a * b with overflow detection.
bool MulOverflow(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorInfo::ShapeString() const { return StrCat("[", absl::StrJoin(shape, ", "), "]"); }

absl::StatusOr<std::vector<TensorInfo>> SafetensorsFile::ParseHeader(
    std::span<const std::byte> bytes, std::string_view path,
    std::map<std::string, std::string>* metadata) {
  if (bytes.size() < 8)
    return Bad(path,
               StrCat("file is ", bytes.size(), " bytes, shorter than the 8-byte header length"));
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);  // little-endian hosts only (x86-64, aarch64)
  if (header_len > kMaxHeaderBytes)
    return Bad(path,
               StrCat("header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes));
  if (header_len > bytes.size() - 8)
    return Bad(path, StrCat("header length ", header_len, " runs past the end of the file (",
                            bytes.size(), " bytes): truncated file?"));
  const char* hp = reinterpret_cast<const char*>(bytes.data() + 8);
  nlohmann::json header =
      nlohmann::json::parse(hp, hp + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return Bad(path, "header is not a JSON object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = bytes.size() - data_start;
  std::vector<TensorInfo> tensors;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Bad(path, "__metadata__ is not an object");
      if (metadata != nullptr) {
        for (auto m = v.begin(); m != v.end(); ++m)
          if (m.value().is_string()) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) return Bad(path, StrCat("tensor '", name, "' entry is not an object"));
    TensorInfo t;
    t.name = name;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string())
      return Bad(path, StrCat("tensor '", name, "' has no dtype"));
    auto dtype = DTypeFromSafetensors(dt->get<std::string>());
    if (!dtype)
      return Bad(path,
                 StrCat("tensor '", name, "' has unsupported dtype '", dt->get<std::string>(),
                        "' (allowed: F32, F64, BF16, F16, F8_E4M3, U8, I8, I16, I32, I64, BOOL)"));
    t.dtype = *dtype;
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array())
      return Bad(path, StrCat("tensor '", name, "' has no shape"));
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
        return Bad(path,
                   StrCat("tensor '", name, "' shape has a non-integer or negative dimension"));
      const uint64_t dim = d.get<uint64_t>();
      // The element count must fit int64 (TensorInfo::numel) even when a later dim is 0.
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          MulOverflow(numel, dim, &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return Bad(path, StrCat("tensor '", name, "' shape overflows 64 bits"));
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      return Bad(path, StrCat("tensor '", name, "' data_offsets must be [begin, end]"));
    const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
    uint64_t expect = 0;
    if (MulOverflow(numel, static_cast<uint64_t>(DTypeSize(t.dtype)), &expect))
      return Bad(path, StrCat("tensor '", name, "' byte size overflows 64 bits"));
    if (end < begin)
      return Bad(path, StrCat("tensor '", name, "' data_offsets end ", end, " < begin ", begin));
    if (end - begin != expect)
      return Bad(path, StrCat("tensor '", name, "' ", dt->get<std::string>(), " ", t.ShapeString(),
                              " needs ", expect, " bytes but data_offsets span ", end - begin));
    if (end > data_size)
      return Bad(path, StrCat("tensor '", name, "' data_offsets [", begin, ", ", end,
                              ") point outside the file's ", data_size, " data bytes"));
    t.offset = data_start + begin;
    t.nbytes = expect;
    tensors.push_back(std::move(t));
  }
  std::vector<const TensorInfo*> order;
  order.reserve(tensors.size());
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset)
      return Bad(path, StrCat("tensors '", order[i - 1]->name, "' and '", order[i]->name,
                              "' have overlapping data ranges"));
  }
  return tensors;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto out = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  ASSIGN_OR_RETURN(out->file_, MappedFile::Open(path));
  std::span<const std::byte> bytes(out->file_->data(), out->file_->size());
  ASSIGN_OR_RETURN(out->tensors_, ParseHeader(bytes, path, &out->metadata_));
  for (size_t i = 0; i < out->tensors_.size(); ++i) out->by_name_[out->tensors_[i].name] = i;
  return out;
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

SafetensorsWriter::~SafetensorsWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

void SafetensorsWriter::Declare(std::string name, DType dtype, std::vector<int64_t> shape) {
  TensorInfo t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.nbytes = static_cast<uint64_t>(t.numel()) * DTypeSize(dtype);
  t.offset = expected_;
  expected_ += t.nbytes;
  decl_.push_back(std::move(t));
}

absl::Status SafetensorsWriter::Open(const std::string& path) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  for (const auto& t : decl_) {
    header[t.name] = {{"dtype", DTypeToSafetensors(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {t.offset, t.offset + t.nbytes}}};
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  path_ = path;
  f_ = std::fopen(path.c_str(), "wb");
  if (f_ == nullptr)
    return absl::PermissionDeniedError(StrCat(path, ": cannot create: ", std::strerror(errno)));
  const uint64_t len = text.size();
  if (std::fwrite(&len, 8, 1, f_) != 1 ||
      std::fwrite(text.data(), 1, text.size(), f_) != text.size())
    return absl::DataLossError(StrCat(path, ": write failed: ", std::strerror(errno)));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Append(const void* data, uint64_t nbytes) {
  if (f_ == nullptr) return absl::FailedPreconditionError("SafetensorsWriter: Append before Open");
  if (written_ + nbytes > expected_)
    return absl::InternalError(StrCat(path_, ": writing more bytes than declared"));
  if (nbytes > 0 && std::fwrite(data, 1, nbytes, f_) != nbytes)
    return absl::DataLossError(StrCat(path_, ": write failed: ", std::strerror(errno)));
  written_ += nbytes;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Skip(uint64_t nbytes) {
  if (f_ == nullptr) return absl::FailedPreconditionError("SafetensorsWriter: Skip before Open");
  if (written_ + nbytes > expected_)
    return absl::InternalError(StrCat(path_, ": skipping past the declared size"));
  if (std::fflush(f_) != 0 || ::fseeko(f_, static_cast<off_t>(nbytes), SEEK_CUR) != 0)
    return absl::DataLossError(StrCat(path_, ": seek failed: ", std::strerror(errno)));
  written_ += nbytes;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Close() {
  if (f_ == nullptr) return absl::FailedPreconditionError("SafetensorsWriter: Close before Open");
  if (written_ != expected_)
    return absl::InternalError(
        StrCat(path_, ": wrote ", written_, " of ", expected_, " declared bytes"));
  // A trailing hole from Skip needs the file extended to its full length.
  const off_t end = ::ftello(f_);
  int rc = std::fflush(f_);
  if (rc == 0 && end >= 0) rc = ::ftruncate(::fileno(f_), end);
  rc |= std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) return absl::DataLossError(StrCat(path_, ": close failed: ", std::strerror(errno)));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::WriteFile(const std::string& path,
                                          const std::vector<Tensor>& tensors,
                                          const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w;
  for (const auto& [k, v] : metadata) w.SetMetadata(k, v);
  for (const auto& t : tensors) w.Declare(t.name, t.dtype, t.shape);
  RETURN_IF_ERROR(w.Open(path));
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].bytes.size() != w.decl_[i].nbytes)
      return absl::InternalError(StrCat(path, ": tensor '", tensors[i].name, "' has ",
                                        tensors[i].bytes.size(), " bytes, shape needs ",
                                        w.decl_[i].nbytes));
    RETURN_IF_ERROR(w.Append(tensors[i].bytes.data(), tensors[i].bytes.size()));
  }
  return w.Close();
}

}  // namespace engram
