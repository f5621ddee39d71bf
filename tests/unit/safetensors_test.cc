// safetensors reader/writer: a round trip through the streaming writer, and every header
// validation the reader performs. Model files come from users; each malformed header must be
// rejected with a message naming the file (and the tensor, where there is one), never read past.
#include "server/util/safetensors.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string TmpDir() {
  const char* env = std::getenv("ENGRAM_TEST_TMP");
  const std::string dir =
      std::string(env ? env : ::testing::TempDir().c_str()) + "/safetensors_test";
  std::filesystem::create_directories(dir);
  return dir;
}

std::string Path(const std::string& name) { return TmpDir() + "/" + name; }

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A file with a hand-written header and `data_bytes` bytes of data.
std::string RawFile(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + std::string(data_bytes, '\x01');
}

std::string OpenError(const std::string& name, const std::string& bytes) {
  const std::string path = Path(name);
  WriteBytes(path, bytes);
  auto f = SafetensorsFile::Open(path);
  EXPECT_FALSE(f.ok()) << name;
  return f.ok() ? "" : std::string(f.status().message());
}

std::vector<std::byte> Bytes(const void* p, size_t n) {
  std::vector<std::byte> v(n);
  std::memcpy(v.data(), p, n);
  return v;
}

TEST(SafetensorsTest, RoundTripThroughWriteFile) {
  const float w[6] = {1.5f, -2.0f, 0.25f, 3.0f, -0.0f, 1e-3f};
  const int64_t ids[3] = {7, -1, INT64_MAX};
  const uint16_t half[2] = {0x3f80, 0xbf80};
  const std::string path = Path("roundtrip.safetensors");
  ASSERT_TRUE(SafetensorsWriter::WriteFile(path,
                                           {{"w", DType::kF32, {2, 3}, Bytes(w, sizeof w)},
                                            {"ids", DType::kI64, {3}, Bytes(ids, sizeof ids)},
                                            {"h", DType::kBF16, {1, 2}, Bytes(half, sizeof half)},
                                            {"empty", DType::kU8, {0}, {}}},
                                           {{"format", "pt"}})
                  .ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().size(), 4u);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  const TensorInfo* t = (*f)->Find("w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::kF32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t->ShapeString(), "[2, 3]");
  EXPECT_EQ(t->nbytes, sizeof w);
  EXPECT_EQ(std::memcmp((*f)->data(*t), w, sizeof w), 0);
  // The writer pads the header so the data (and the first tensor) is 8-byte aligned.
  EXPECT_EQ(t->offset % 8, 0u);
  const TensorInfo* i = (*f)->Find("ids");
  ASSERT_NE(i, nullptr);
  EXPECT_EQ(std::memcmp((*f)->data(*i), ids, sizeof ids), 0);
  const TensorInfo* h = (*f)->Find("h");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->dtype, DType::kBF16);
  EXPECT_EQ(std::memcmp((*f)->data(*h), half, sizeof half), 0);
  EXPECT_EQ((*f)->Find("empty")->numel(), 0);
  EXPECT_EQ((*f)->Find("missing"), nullptr);
}

TEST(SafetensorsTest, StreamingWriterWithSkipAndChecks) {
  const std::string path = Path("stream.safetensors");
  SafetensorsWriter w;
  w.Declare("a", DType::kF32, {4});
  w.Declare("b", DType::kU8, {1 << 20});
  ASSERT_TRUE(w.Open(path).ok());
  const float a[4] = {1, 2, 3, 4};
  ASSERT_TRUE(w.Append(a, 8).ok());  // in pieces
  ASSERT_TRUE(w.Append(a + 2, 8).ok());
  ASSERT_TRUE(w.Skip(1 << 20).ok());  // a trailing hole: Close must extend the file
  EXPECT_FALSE(w.Append(a, 1).ok());  // past the declared size
  ASSERT_TRUE(w.Close().ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const TensorInfo* b = (*f)->Find("b");
  EXPECT_EQ(static_cast<uint8_t>((*f)->data(*b)[(1 << 20) - 1]), 0);
  EXPECT_EQ(std::memcmp((*f)->data(*(*f)->Find("a")), a, 16), 0);

  SafetensorsWriter short_writer;
  short_writer.Declare("x", DType::kF32, {2});
  ASSERT_TRUE(short_writer.Open(Path("short.safetensors")).ok());
  ASSERT_TRUE(short_writer.Append(a, 4).ok());
  EXPECT_THAT(std::string(short_writer.Close().message()), HasSubstr("wrote 4 of 8"));

  // WriteFile refuses a tensor whose bytes do not match its shape.
  auto st = SafetensorsWriter::WriteFile(Path("mismatch.safetensors"),
                                         {{"m", DType::kF32, {3}, Bytes(a, 8)}});
  EXPECT_THAT(std::string(st.message()), AllOf(HasSubstr("'m'"), HasSubstr("shape needs 12")));
}

TEST(SafetensorsTest, TruncatedFile) {
  const std::string msg = OpenError("trunc.safetensors", std::string("\x10\x00\x00", 3));
  EXPECT_THAT(msg, AllOf(HasSubstr("trunc.safetensors"), HasSubstr("shorter than the 8-byte")));
  EXPECT_THAT(OpenError("empty.safetensors", ""), HasSubstr("empty.safetensors"));
}

TEST(SafetensorsTest, HeaderLengthPastEnd) {
  std::string bytes = RawFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  bytes.resize(bytes.size() - 20);  // header cut short
  EXPECT_THAT(OpenError("hdrlen.safetensors", bytes),
              AllOf(HasSubstr("hdrlen.safetensors"), HasSubstr("runs past the end")));
  std::string huge(8, '\xff');  // 2^64-1: must not overflow the bounds check
  EXPECT_THAT(OpenError("hdrhuge.safetensors", huge + "{}"),
              AllOf(HasSubstr("hdrhuge.safetensors"), HasSubstr("exceeds the limit")));
}

TEST(SafetensorsTest, BadJson) {
  EXPECT_THAT(OpenError("badjson.safetensors", RawFile(R"({"w": {"dtype": )", 0)),
              AllOf(HasSubstr("badjson.safetensors"), HasSubstr("not a JSON object")));
  EXPECT_THAT(OpenError("array.safetensors", RawFile("[1, 2]", 0)), HasSubstr("not a JSON object"));
  EXPECT_THAT(
      OpenError("entry.safetensors", RawFile(R"({"w": 5})", 0)),
      AllOf(HasSubstr("entry.safetensors"), HasSubstr("tensor 'w' entry is not an object")));
  EXPECT_THAT(OpenError("meta.safetensors", RawFile(R"({"__metadata__": [1]})", 0)),
              HasSubstr("__metadata__ is not an object"));
  EXPECT_THAT(
      OpenError("nodtype.safetensors", RawFile(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4)),
      HasSubstr("tensor 'w' has no dtype"));
  EXPECT_THAT(
      OpenError("noshape.safetensors", RawFile(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4)),
      HasSubstr("tensor 'w' has no shape"));
  EXPECT_THAT(OpenError("negdim.safetensors",
                        RawFile(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)),
              HasSubstr("tensor 'w' shape has a non-integer or negative dimension"));
  EXPECT_THAT(OpenError("nooff.safetensors", RawFile(R"({"w":{"dtype":"F32","shape":[1]}})", 4)),
              HasSubstr("tensor 'w' data_offsets must be [begin, end]"));
  EXPECT_THAT(OpenError("revoff.safetensors",
                        RawFile(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", 4)),
              HasSubstr("tensor 'w' data_offsets end 0 < begin 4"));
}

TEST(SafetensorsTest, DtypeTimesShapeMismatch) {
  const std::string msg =
      OpenError("size.safetensors",
                RawFile(R"({"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,24]}})", 24));
  EXPECT_THAT(msg, AllOf(HasSubstr("size.safetensors"),
                         HasSubstr("tensor 'w' BF16 [2, 3] needs 12 bytes"), HasSubstr("span 24")));
  EXPECT_THAT(
      OpenError(
          "overflow.safetensors",
          RawFile(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
                  4)),
      AllOf(HasSubstr("overflow.safetensors"), HasSubstr("tensor 'w'"), HasSubstr("overflows")));
}

TEST(SafetensorsTest, RangeOutsideFile) {
  const std::string msg =
      OpenError("range.safetensors",
                RawFile(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 16));
  EXPECT_THAT(msg,
              AllOf(HasSubstr("range.safetensors"), HasSubstr("tensor 'w' data_offsets [8, 24)"),
                    HasSubstr("outside the file's 16 data bytes")));
}

TEST(SafetensorsTest, OverlappingRanges) {
  const std::string msg = OpenError(
      "overlap.safetensors",
      RawFile(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          12));
  EXPECT_THAT(msg, AllOf(HasSubstr("overlap.safetensors"), HasSubstr("tensors 'a' and 'b'"),
                         HasSubstr("overlapping")));
  // Adjacent is fine.
  const std::string path = Path("adjacent.safetensors");
  WriteBytes(
      path,
      RawFile(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
          12));
  EXPECT_TRUE(SafetensorsFile::Open(path).ok());
}

TEST(SafetensorsTest, UnknownDtype) {
  const std::string msg =
      OpenError("dtype.safetensors",
                RawFile(R"({"q":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}})", 2));
  EXPECT_THAT(msg, AllOf(HasSubstr("dtype.safetensors"), HasSubstr("tensor 'q'"),
                         HasSubstr("unsupported dtype 'Q4_K'")));
}

TEST(SafetensorsTest, MissingFileAndDirectory) {
  auto f = SafetensorsFile::Open(Path("does-not-exist.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("does-not-exist.safetensors"));
  auto d = SafetensorsFile::Open(TmpDir());
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("not a regular file"));
}

}  // namespace
}  // namespace engram
