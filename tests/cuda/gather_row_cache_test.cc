// The two host -> device paths of Engram rows and the device row cache, against plain memcpy on
// the host. Everything here is a copy, so every byte must match; outputs are poisoned first.
//  - zero-copy GatherRows from pinned host memory (cudaHostAlloc, and ordinary memory pinned by
//    PinnedHostTable::Register), for row sizes that allow 16-, 8-, 2- and 1-byte loads (66 bytes
//    is a packed fp8 row of d = 64 with its two scale bytes), with duplicate ids, a destination
//    map with skipped items, and a count read from device memory;
//  - the staged path: rows gathered on the CPU into pinned staging, CopyStaged on a copy stream
//    with an event the compute stream waits on;
//  - DeviceRowCache: rows always correct; hits, misses and bypasses add up; a repeated batch
//    hits every row the first call cached; no two ids of a call share a way; every way sits in
//    its id's set.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "kernels/cuda/gather.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/row_cache.h"
#include "tests/cuda/cuda_test_util.h"

namespace engram {
namespace {

using cuda::testing::DeviceBuffer;
using cuda::testing::Stream;

// A pinned, mapped host table of `rows` packed rows with recognisable random bytes.
class HostTable {
 public:
  HostTable(int64_t rows, int64_t row_bytes, uint32_t seed) : bytes_(rows * row_bytes) {
    ENGRAM_CUDA_CHECK(cudaHostAlloc(&data_, bytes_, cudaHostAllocMapped | cudaHostAllocPortable));
    std::mt19937 rng(seed);
    auto* p = static_cast<uint8_t*>(data_);
    for (size_t i = 0; i < bytes_; ++i) p[i] = static_cast<uint8_t>(rng());
    ENGRAM_CUDA_CHECK(cudaHostGetDevicePointer(&device_, data_, 0));
  }
  ~HostTable() { ENGRAM_CUDA_CHECK(cudaFreeHost(data_)); }
  const uint8_t* host() const { return static_cast<const uint8_t*>(data_); }
  const void* device() const { return device_; }

 private:
  size_t bytes_;
  void* data_ = nullptr;
  void* device_ = nullptr;
};

std::vector<int64_t> RandomIds(int n, int64_t rows, std::mt19937& rng, bool distinct) {
  std::vector<int64_t> ids;
  std::set<int64_t> used;
  std::uniform_int_distribution<int64_t> d(0, rows - 1);
  while (static_cast<int>(ids.size()) < n) {
    const int64_t id = d(rng);
    if (distinct && !used.insert(id).second) continue;
    ids.push_back(id);
  }
  return ids;
}

void ExpectRows(const std::vector<uint8_t>& got, const uint8_t* table, int64_t row_bytes,
                const std::vector<int64_t>& ids, const std::vector<int32_t>& dst_rows,
                int64_t stride, const char* what) {
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t row = dst_rows.empty() ? static_cast<int64_t>(i) : dst_rows[i];
    if (row < 0) continue;
    ASSERT_EQ(std::memcmp(got.data() + row * stride, table + ids[i] * row_bytes, row_bytes), 0)
        << what << ": item " << i << " (table row " << ids[i] << ", " << row_bytes << "-byte rows)";
  }
}

TEST(CudaGather, ZeroCopyGatherFromPinnedHostMemory) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  const cuda::DeviceInfo info = cuda::GetDeviceInfo(0);
  std::mt19937 rng(21);
  Stream stream;
  for (int64_t row_bytes : {64, 128, 512, 66, 1040, 7}) {
    const int64_t rows = 20000;
    HostTable table(rows, row_bytes, static_cast<uint32_t>(row_bytes));
    const int n = 3001;
    const auto ids = RandomIds(n, rows, rng, /*distinct=*/false);
    DeviceBuffer<int64_t> d_ids(ids);

    DeviceBuffer<uint8_t> out(static_cast<size_t>(n) * row_bytes);
    cuda::GatherParams p;
    p.src = table.device();
    p.row_bytes = row_bytes;
    p.ids = d_ids.get();
    p.count = n;
    p.dst = out.get();
    p.blocks = cuda::GatherBlocks(info);
    cuda::GatherRows(p, stream.get());
    ExpectRows(out.Download(), table.host(), row_bytes, ids, {}, row_bytes, "identity");

    // Scattered destinations with a wider stride, some items skipped, count on the device.
    std::vector<int32_t> dst_rows(n);
    std::iota(dst_rows.begin(), dst_rows.end(), 0);
    std::shuffle(dst_rows.begin(), dst_rows.end(), rng);
    for (int i = 0; i < n; i += 7) dst_rows[i] = -1;
    const int64_t stride = row_bytes + 16;
    DeviceBuffer<int32_t> d_dst_rows(dst_rows), d_count(std::vector<int32_t>{n});
    DeviceBuffer<uint8_t> out2(static_cast<size_t>(n) * stride);
    p.dst_rows = d_dst_rows.get();
    p.count = 0;
    p.count_dev = d_count.get();
    p.dst = out2.get();
    p.dst_stride = stride;
    cuda::GatherRows(p, stream.get());
    ExpectRows(out2.Download(), table.host(), row_bytes, ids, dst_rows, stride, "scattered");
  }
}

TEST(CudaGather, RegisteredHostMemoryAndTheStagedPathAgree) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  const cuda::DeviceInfo info = cuda::GetDeviceInfo(0);
  std::mt19937 rng(22);
  const int64_t rows = 50000, row_bytes = 128;
  std::vector<uint8_t> plain(rows * row_bytes);  // ordinary memory, as the RAM tier holds it
  for (auto& b : plain) b = static_cast<uint8_t>(rng());
  std::string error;
  auto pinned = cuda::PinnedHostTable::Register(plain.data(), plain.size(), &error);
  ASSERT_NE(pinned, nullptr) << error;

  const int n = 4096;
  const auto ids = RandomIds(n, rows, rng, /*distinct=*/true);
  Stream compute, copy;
  DeviceBuffer<int64_t> d_ids(ids);
  DeviceBuffer<uint8_t> zero_copy(n * row_bytes), staged(n * row_bytes);
  cuda::GatherParams p;
  p.src = pinned->device_ptr();
  p.row_bytes = row_bytes;
  p.ids = d_ids.get();
  p.count = n;
  p.dst = zero_copy.get();
  p.blocks = cuda::GatherBlocks(info);
  cuda::GatherRows(p, compute.get());

  // Path 1: the CPU gathers into pinned staging, the copy stream moves it, compute waits.
  void* staging = nullptr;
  ENGRAM_CUDA_CHECK(cudaHostAlloc(&staging, n * row_bytes, cudaHostAllocDefault));
  for (int i = 0; i < n; ++i)
    std::memcpy(static_cast<uint8_t*>(staging) + i * row_bytes, plain.data() + ids[i] * row_bytes,
                row_bytes);
  cudaEvent_t done;
  ENGRAM_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  cuda::CopyStaged(staging, staged.get(), n * row_bytes, copy.get(), done);
  ENGRAM_CUDA_CHECK(cudaStreamWaitEvent(compute.get(), done, 0));
  compute.Sync();
  EXPECT_EQ(zero_copy.Download(), staged.Download());
  ExpectRows(staged.Download(), plain.data(), row_bytes, ids, {}, row_bytes, "staged");
  ENGRAM_CUDA_CHECK(cudaEventDestroy(done));
  ENGRAM_CUDA_CHECK(cudaFreeHost(staging));
  pinned.reset();  // unregister before `plain` goes
}

TEST(CudaRowCache, RowsAlwaysCorrectAndRepeatedRowsHit) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  const cuda::DeviceInfo info = cuda::GetDeviceInfo(0);
  std::mt19937 rng(23);
  const int64_t rows = 100000, row_bytes = 128;
  HostTable table(rows, row_bytes, 5);
  const int ways = 8, batch = 600;
  std::string error;
  auto cache = cuda::DeviceRowCache::Create(info, 1024, ways, row_bytes, batch, &error);
  ASSERT_NE(cache, nullptr) << error;
  ASSERT_EQ(cache->capacity_rows(), 1024);
  Stream stream;

  auto fetch = [&](const std::vector<int64_t>& ids) {
    DeviceBuffer<int64_t> d_ids(ids);
    DeviceBuffer<uint8_t> out(ids.size() * row_bytes);
    cache->Fetch(d_ids.get(), static_cast<int>(ids.size()), table.device(), out.get(), row_bytes,
                 stream.get());
    ExpectRows(out.Download(), table.host(), row_bytes, ids, {}, row_bytes, "cache fetch");
    // The ways this call used: distinct, each in its id's set.
    DeviceBuffer<int32_t> slots(ids.size());
    ENGRAM_CUDA_CHECK(
        cudaMemcpy(slots.get(), cache->slots(), slots.bytes(), cudaMemcpyDeviceToDevice));
    const auto s = slots.Download();
    std::set<int32_t> used;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (s[i] < 0) continue;
      EXPECT_TRUE(used.insert(s[i]).second) << "way " << s[i] << " given twice";
      EXPECT_EQ(static_cast<uint64_t>(s[i] / ways), cuda::RowCacheSet(ids[i], 1024 / ways))
          << "id " << ids[i];
    }
    return s;
  };

  const auto first_ids = RandomIds(500, rows, rng, /*distinct=*/true);
  const auto first = fetch(first_ids);
  const cuda::RowCacheStats s1 = cache->ReadStats(stream.get());
  EXPECT_EQ(s1.lookups, 500u);
  EXPECT_EQ(s1.hits, 0u);
  EXPECT_EQ(s1.misses, 500u);
  const uint64_t cached = 500 - s1.bypassed;
  EXPECT_EQ(cached, static_cast<uint64_t>(std::count_if(first.begin(), first.end(),
                                                        [](int32_t s) { return s >= 0; })));

  // The same rows again: every row the first call cached is a hit (500 ids in 128 sets of 8
  // ways, so evictions within the call are impossible: a call never evicts its own rows).
  fetch(first_ids);
  const cuda::RowCacheStats s2 = cache->ReadStats(stream.get());
  EXPECT_EQ(s2.hits - s1.hits, cached);
  EXPECT_EQ(s2.misses - s1.misses, s1.bypassed);

  // Half old, half new rows, in a different order: still correct, and the counters add up.
  auto mixed = std::vector<int64_t>(first_ids.begin(), first_ids.begin() + 250);
  for (int64_t id : RandomIds(2000, rows, rng, /*distinct=*/true)) {
    if (mixed.size() == 550) break;
    if (std::find(first_ids.begin(), first_ids.end(), id) == first_ids.end()) mixed.push_back(id);
  }
  std::shuffle(mixed.begin(), mixed.end(), rng);
  fetch(mixed);
  const cuda::RowCacheStats s3 = cache->ReadStats(stream.get());
  EXPECT_EQ(s3.lookups - s2.lookups, 550u);
  EXPECT_EQ((s3.hits - s2.hits) + (s3.misses - s2.misses), 550u);
  EXPECT_GE(s3.misses - s2.misses, 300u);  // the new rows cannot hit
}

// Host-only: runs with or without a device.
TEST(CudaRowCache, SetIndexSpreadsRunsOfIds) {
  const uint64_t sets = 128;
  std::vector<int> load(sets, 0);
  for (int64_t id = 1000000; id < 1000000 + 128 * 64; ++id) ++load[cuda::RowCacheSet(id, sets)];
  // 64 ids per set on average; a fair hash stays well within +-50% for every set.
  for (uint64_t s = 0; s < sets; ++s) {
    EXPECT_GT(load[s], 32) << "set " << s;
    EXPECT_LT(load[s], 96) << "set " << s;
  }
}

}  // namespace
}  // namespace engram
