// Micro-benchmark of the two ways Engram rows reach the device (issue 6; gather.h):
//   staged     CPU threads gather the rows into pinned staging, then cudaMemcpyAsync on a copy
//              stream (timed end to end, and the copy alone);
//   zero-copy  the persistent gather kernel reads the rows from the pinned table through unified
//              addressing (GatherBlocks SMs' worth of blocks).
// Prints GB/s of useful row bytes per path and row size. Uniform random ids over a table larger
// than the last-level cache. Without a device it says so and exits 0 (ctest's smoke pass runs it
// everywhere); it exits 1 only if the two paths deliver different bytes.
//   usage: gather_paths_bench [--table-mb N] [--rows N] [--row-bytes a,b,..] [--iters N]
//                             [--threads N] [--sm-budget N]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engram/kernels/thread_pool.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_probe.h"
#include "kernels/cuda/gather.h"
#include "kernels/cuda/ops.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  int64_t table_mb = 2048;
  int rows = 65536;
  std::vector<int64_t> row_bytes = {64, 128, 256, 512};
  int iters = 20;
  int threads = 8;
  int sm_budget = 4;
};

bool Parse(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "gather_paths_bench: %s needs a value\n", a.c_str());
      return false;
    }
    const char* v = argv[++i];
    if (a == "--table-mb") {
      f->table_mb = std::atoll(v);
    } else if (a == "--rows") {
      f->rows = std::atoi(v);
    } else if (a == "--iters") {
      f->iters = std::atoi(v);
    } else if (a == "--threads") {
      f->threads = std::atoi(v);
    } else if (a == "--sm-budget") {
      f->sm_budget = std::atoi(v);
    } else if (a == "--row-bytes") {
      f->row_bytes.clear();
      for (const char* p = v; *p != '\0';) {
        f->row_bytes.push_back(std::atoll(p));
        p = std::strchr(p, ',');
        if (p == nullptr) break;
        ++p;
      }
    } else {
      std::fprintf(stderr, "gather_paths_bench: unknown flag %s\n", a.c_str());
      return false;
    }
  }
  if (f->table_mb <= 0 || f->rows <= 0 || f->iters <= 0 || f->threads <= 0 || f->sm_budget <= 0 ||
      f->row_bytes.empty()) {
    std::fprintf(stderr, "gather_paths_bench: every value must be positive\n");
    return false;
  }
  return true;
}

// The CPU half of the staged path: the pool's threads copy contiguous shares of the rows (the
// pool lives across iterations, so thread start-up is not timed).
void CpuGather(engram::ThreadPool& pool, const uint8_t* table, int64_t row_bytes,
               const std::vector<int64_t>& ids, uint8_t* staging) {
  const int64_t n = static_cast<int64_t>(ids.size());
  pool.ParallelFor(n, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      std::memcpy(staging + i * row_bytes, table + ids[i] * row_bytes, row_bytes);
  });
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (!Parse(argc, argv, &f)) return 2;
  const engram::CudaProbe probe = engram::ProbeCudaDevices();
  if (probe.device_count == 0) {
    std::printf("gather_paths_bench: no CUDA device (%s); nothing to measure\n",
                probe.error.c_str());
    return 0;
  }
  const engram::cuda::DeviceInfo info = engram::cuda::GetDeviceInfo(0);
  const int blocks = engram::cuda::GatherBlocks(info, f.sm_budget);
  std::printf("device: %s, %d SMs; zero-copy grid: %d blocks on %d SMs; staged: %d CPU threads\n",
              probe.first_device.c_str(), info.num_sms, blocks, std::min(f.sm_budget, info.num_sms),
              f.threads);
  std::printf("%9s %8s %14s %14s %14s %14s\n", "row bytes", "rows", "staged GB/s", "(copy GB/s)",
              "zero-copy GB/s", "zero-copy x");

  const size_t table_bytes = static_cast<size_t>(f.table_mb) << 20;
  void* table = nullptr;
  ENGRAM_CUDA_CHECK(cudaHostAlloc(&table, table_bytes, cudaHostAllocMapped));
  // Touch every page (and make the bytes differ) so neither path reads zero pages.
  for (size_t i = 0; i < table_bytes; i += 64) static_cast<uint8_t*>(table)[i] = uint8_t(i >> 6);
  void* table_dev = nullptr;
  ENGRAM_CUDA_CHECK(cudaHostGetDevicePointer(&table_dev, table, 0));

  cudaStream_t compute, copy;
  ENGRAM_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  ENGRAM_CUDA_CHECK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
  cudaEvent_t done, t0, t1;
  ENGRAM_CUDA_CHECK(cudaEventCreate(&done));
  ENGRAM_CUDA_CHECK(cudaEventCreate(&t0));
  ENGRAM_CUDA_CHECK(cudaEventCreate(&t1));
  std::mt19937_64 rng(1);
  engram::ThreadPool pool(f.threads);
  int status = 0;

  for (int64_t row_bytes : f.row_bytes) {
    const int64_t table_rows = static_cast<int64_t>(table_bytes) / row_bytes;
    std::uniform_int_distribution<int64_t> pick(0, table_rows - 1);
    std::vector<int64_t> ids(f.rows);
    for (auto& id : ids) id = pick(rng);
    const size_t bytes = static_cast<size_t>(f.rows) * row_bytes;
    void* staging = nullptr;
    ENGRAM_CUDA_CHECK(cudaHostAlloc(&staging, bytes, cudaHostAllocDefault));
    void *dst_staged = nullptr, *dst_zero = nullptr, *d_ids = nullptr;
    ENGRAM_CUDA_CHECK(cudaMalloc(&dst_staged, bytes));
    ENGRAM_CUDA_CHECK(cudaMalloc(&dst_zero, bytes));
    ENGRAM_CUDA_CHECK(cudaMalloc(&d_ids, ids.size() * sizeof(int64_t)));
    ENGRAM_CUDA_CHECK(
        cudaMemcpy(d_ids, ids.data(), ids.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
    ENGRAM_CUDA_CHECK(cudaDeviceSynchronize());  // the copy's DMA is on the legacy stream

    engram::cuda::GatherParams p;
    p.src = table_dev;
    p.row_bytes = row_bytes;
    p.ids = static_cast<const int64_t*>(d_ids);
    p.count = f.rows;
    p.dst = dst_zero;
    p.blocks = blocks;

    double staged_s = 0, copy_s = 0, zero_s = 0;
    for (int it = 0; it <= f.iters; ++it) {  // iteration 0 warms up and is not counted
      const auto a = Clock::now();
      CpuGather(pool, static_cast<const uint8_t*>(table), row_bytes, ids,
                static_cast<uint8_t*>(staging));
      ENGRAM_CUDA_CHECK(cudaEventRecord(t0, copy));
      engram::cuda::CopyStaged(staging, dst_staged, bytes, copy, done);
      ENGRAM_CUDA_CHECK(cudaEventRecord(t1, copy));
      ENGRAM_CUDA_CHECK(cudaEventSynchronize(done));
      const auto b = Clock::now();
      float copy_ms = 0;
      ENGRAM_CUDA_CHECK(cudaEventSynchronize(t1));
      ENGRAM_CUDA_CHECK(cudaEventElapsedTime(&copy_ms, t0, t1));

      const auto c = Clock::now();
      engram::cuda::GatherRows(p, compute);
      ENGRAM_CUDA_CHECK(cudaStreamSynchronize(compute));
      const auto d = Clock::now();
      if (it > 0) {
        staged_s += Seconds(a, b);
        copy_s += copy_ms / 1e3;
        zero_s += Seconds(c, d);
      }
    }
    std::vector<uint8_t> got_staged(bytes), got_zero(bytes);
    ENGRAM_CUDA_CHECK(cudaMemcpy(got_staged.data(), dst_staged, bytes, cudaMemcpyDeviceToHost));
    ENGRAM_CUDA_CHECK(cudaMemcpy(got_zero.data(), dst_zero, bytes, cudaMemcpyDeviceToHost));
    const bool same = got_staged == got_zero;
    const double gb = static_cast<double>(bytes) * f.iters / 1e9;
    std::printf("%9lld %8d %14.2f %14.2f %14.2f %14.2f%s\n", static_cast<long long>(row_bytes),
                f.rows, gb / staged_s, gb / copy_s, gb / zero_s, staged_s / zero_s,
                same ? "" : "  mismatch: the paths delivered different bytes");
    if (!same) status = 1;
    ENGRAM_CUDA_CHECK(cudaFree(d_ids));
    ENGRAM_CUDA_CHECK(cudaFree(dst_zero));
    ENGRAM_CUDA_CHECK(cudaFree(dst_staged));
    ENGRAM_CUDA_CHECK(cudaFreeHost(staging));
  }
  ENGRAM_CUDA_CHECK(cudaEventDestroy(t1));
  ENGRAM_CUDA_CHECK(cudaEventDestroy(t0));
  ENGRAM_CUDA_CHECK(cudaEventDestroy(done));
  ENGRAM_CUDA_CHECK(cudaStreamDestroy(copy));
  ENGRAM_CUDA_CHECK(cudaStreamDestroy(compute));
  ENGRAM_CUDA_CHECK(cudaFreeHost(table));
  return status;
}
