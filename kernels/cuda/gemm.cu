// cuBLASLt bf16 GEMM behind dlopen (gemm.h says why). The row-major product y = x W^T is the
// column-major product y^T = W x^T: W [n][k] row-major is a k x n column-major matrix used
// transposed (TRANSA = T), x [m][k] is k x m column-major (TRANSB = N), y^T is n x m with
// leading dimension n. This "TN" layout is the one cuBLASLt's Hopper kernels favour.
#include <cublasLt.h>
#include <dlfcn.h>

#include <cstring>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm.h"

#ifndef ENGRAM_CUBLASLT_DIR
#define ENGRAM_CUBLASLT_DIR "/usr/local/cuda/lib64"
#endif

namespace engram::cuda {

// The entry points used, resolved by name; the types come from the header, so a signature
// change between cuBLAS majors is a compile error here, and the major is checked at load.
struct CublasLtGemm::Api {
  decltype(&cublasLtCreate) create;
  decltype(&cublasLtDestroy) destroy;
  decltype(&cublasLtGetVersion) get_version;
  decltype(&cublasLtGetStatusString) status_string;
  decltype(&cublasLtMatmulDescCreate) desc_create;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set;
  decltype(&cublasLtMatrixLayoutCreate) layout_create;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic;
  decltype(&cublasLtMatmul) matmul;
};

namespace {

static_assert(sizeof(cublasLtMatmulAlgo_t) <= 8 * sizeof(uint64_t), "Algo storage too small");

// Hopper's cuBLASLt kernels want up to 32 MiB of workspace for split-K and stream-K.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

template <typename F>
bool Resolve(void* lib, const char* name, F* fn, std::string* error) {
  void* sym = dlsym(lib, name);
  if (sym == nullptr) {
    *error = std::string("libcublasLt has no ") + name;
    return false;
  }
  std::memcpy(fn, &sym, sizeof sym);
  return true;
}

// Largest power of two (<= 256) dividing the address: what the heuristic may assume.
int Alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

// Destroys the descriptors of one Run whatever path it leaves by.
struct Descriptors {
  const CublasLtGemm::Api* api = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descriptors() {
    if (pref != nullptr) api->pref_destroy(pref);
    for (cublasLtMatrixLayout_t l : {a, b, c})
      if (l != nullptr) api->layout_destroy(l);
    if (op != nullptr) api->desc_destroy(op);
  }
};

}  // namespace

std::unique_ptr<CublasLtGemm> CublasLtGemm::Create(std::string* error) {
  const std::string soname = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
  std::string path = soname;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    path = std::string(ENGRAM_CUBLASLT_DIR) + "/" + soname;
    lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  }
  if (lib == nullptr) {
    *error = "cannot load " + soname + " (nor " + path + "): " + dlerror();
    return nullptr;
  }
  // The library stays loaded for the life of the process: cuBLAS registers exit-time clean-up,
  // and unloading it under a live CUDA context gains nothing.
  std::unique_ptr<CublasLtGemm> g(new CublasLtGemm());
  g->library_ = path;
  g->api_ = std::make_unique<Api>();
  Api& api = *g->api_;
  const bool ok = Resolve(lib, "cublasLtCreate", &api.create, error) &&
                  Resolve(lib, "cublasLtDestroy", &api.destroy, error) &&
                  Resolve(lib, "cublasLtGetVersion", &api.get_version, error) &&
                  Resolve(lib, "cublasLtGetStatusString", &api.status_string, error) &&
                  Resolve(lib, "cublasLtMatmulDescCreate", &api.desc_create, error) &&
                  Resolve(lib, "cublasLtMatmulDescDestroy", &api.desc_destroy, error) &&
                  Resolve(lib, "cublasLtMatmulDescSetAttribute", &api.desc_set, error) &&
                  Resolve(lib, "cublasLtMatrixLayoutCreate", &api.layout_create, error) &&
                  Resolve(lib, "cublasLtMatrixLayoutDestroy", &api.layout_destroy, error) &&
                  Resolve(lib, "cublasLtMatmulPreferenceCreate", &api.pref_create, error) &&
                  Resolve(lib, "cublasLtMatmulPreferenceDestroy", &api.pref_destroy, error) &&
                  Resolve(lib, "cublasLtMatmulPreferenceSetAttribute", &api.pref_set, error) &&
                  Resolve(lib, "cublasLtMatmulAlgoGetHeuristic", &api.heuristic, error) &&
                  Resolve(lib, "cublasLtMatmul", &api.matmul, error);
  if (!ok) return nullptr;
  const size_t version = api.get_version();
  if (version / 10000 != CUBLAS_VER_MAJOR) {
    *error = path + " is version " + std::to_string(version) + ", built against major " +
             std::to_string(CUBLAS_VER_MAJOR);
    return nullptr;
  }
  cublasLtHandle_t handle = nullptr;
  const cublasStatus_t st = api.create(&handle);
  if (st != CUBLAS_STATUS_SUCCESS) {
    *error = std::string("cublasLtCreate: ") + api.status_string(st);
    return nullptr;
  }
  g->handle_ = handle;
  const cudaError_t err = cudaMalloc(&g->workspace_, kWorkspaceBytes);
  if (err != cudaSuccess) {
    *error = CudaErrorText("cuBLASLt workspace", err);
    return nullptr;  // the destructor destroys the handle
  }
  g->workspace_bytes_ = kWorkspaceBytes;
  return g;
}

CublasLtGemm::~CublasLtGemm() {
  if (handle_ != nullptr) api_->destroy(static_cast<cublasLtHandle_t>(handle_));
  if (workspace_ != nullptr) ENGRAM_CUDA_CHECK(cudaFree(workspace_));
}

std::string CublasLtGemm::Run(const GemmArgs& g, cudaStream_t stream) {
  if (g.m <= 0 || g.n <= 0 || g.k <= 0) return "";
  if (g.out_dtype != DType::kF32 && g.out_dtype != DType::kBF16)
    return "GEMM output dtype must be float32 or bfloat16";
  const Api& api = *api_;
  const auto handle = static_cast<cublasLtHandle_t>(handle_);
  const cudaDataType_t out_type = g.out_dtype == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  std::string err;
  auto check = [&](cublasStatus_t st, const char* what) {
    if (st != CUBLAS_STATUS_SUCCESS && err.empty())
      err = std::string(what) + ": " + api.status_string(st);
    return st == CUBLAS_STATUS_SUCCESS;
  };

  Descriptors d;
  d.api = &api;
  if (!check(api.desc_create(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate"))
    return err;
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  check(api.desc_set(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a), "TRANSA");
  check(api.desc_set(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b), "TRANSB");
  if (g.bias != nullptr) {
    // The bias is per output feature: per row of the column-major y^T, which is what
    // CUBLASLT_EPILOGUE_BIAS broadcasts. Kept in float whatever the output type.
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = CUDA_R_32F;
    check(api.desc_set(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue),
          "EPILOGUE");
    check(api.desc_set(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias),
          "BIAS_POINTER");
    check(api.desc_set(d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type),
          "BIAS_DATA_TYPE");
  }
  check(api.layout_create(&d.a, CUDA_R_16BF, static_cast<uint64_t>(g.k), static_cast<uint64_t>(g.n),
                          g.k),
        "layout W");
  check(api.layout_create(&d.b, CUDA_R_16BF, static_cast<uint64_t>(g.k), static_cast<uint64_t>(g.m),
                          g.k),
        "layout x");
  check(api.layout_create(&d.c, out_type, static_cast<uint64_t>(g.n), static_cast<uint64_t>(g.m),
                          g.n),
        "layout y");
  if (!err.empty()) return err;

  const int align_w = Alignment(g.w), align_x = Alignment(g.x), align_y = Alignment(g.y);
  const AlgoKey key{g.m,     g.n,     g.k,    static_cast<int>(g.out_dtype), g.bias != nullptr,
                    align_w, align_x, align_y};
  auto it = algos_.find(key);
  if (it == algos_.end()) {
    if (!check(api.pref_create(&d.pref), "cublasLtMatmulPreferenceCreate")) return err;
    const uint64_t ws = workspace_bytes_;
    const uint32_t aw = static_cast<uint32_t>(align_w), ax = static_cast<uint32_t>(align_x),
                   ay = static_cast<uint32_t>(align_y);
    check(api.pref_set(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
          "MAX_WORKSPACE_BYTES");
    check(api.pref_set(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aw, sizeof aw),
          "MIN_ALIGNMENT_A");
    check(api.pref_set(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ax, sizeof ax),
          "MIN_ALIGNMENT_B");
    check(api.pref_set(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ay, sizeof ay),
          "MIN_ALIGNMENT_C");
    check(api.pref_set(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ay, sizeof ay),
          "MIN_ALIGNMENT_D");
    if (!err.empty()) return err;
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    if (!check(api.heuristic(handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &result, &found),
               "cublasLtMatmulAlgoGetHeuristic"))
      return err;
    if (found == 0)
      return "cuBLASLt has no bf16 algorithm for m=" + std::to_string(g.m) +
             " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k);
    Algo algo;
    std::memcpy(algo.data, &result.algo, sizeof result.algo);
    it = algos_.emplace(key, algo).first;
  }
  cublasLtMatmulAlgo_t algo;
  std::memcpy(&algo, it->second.data, sizeof algo);
  const float alpha = 1.0f, beta = 0.0f;
  check(api.matmul(handle, d.op, &alpha, g.w, d.a, g.x, d.b, &beta, g.y, d.c, g.y, d.c, &algo,
                   workspace_, workspace_bytes_, stream),
        "cublasLtMatmul");
  return err;
}

}  // namespace engram::cuda
