// ENGRAM_HD marks row math that both backends call: nvcc compiles it for the device, the host
// compiler for the CPU backend, so CPU tests cover the exact math the GPU runs.
#pragma once

#if defined(__CUDACC__)
#define ENGRAM_HD __host__ __device__ __forceinline__
#else
#define ENGRAM_HD inline
#endif
