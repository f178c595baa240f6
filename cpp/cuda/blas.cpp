// cpp/cuda/blas.cpp — faltung._cuda's cuBLAS calls (blas.hpp opens the library): one handle per
// (host thread, device), as a handle is not to be used by threads calling at once (the
// bindings release the GIL around kernels). A thread that ends gives its handles back to a pool
// that later threads take from; none is destroyed (a cublasDestroy at process exit could run
// after the driver's teardown), so the process holds at most one per thread that ran at once.
#include <cuda_runtime_api.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "blas.hpp"

namespace faltung::cuda {
void check_cuda(cudaError_t e, const char* what);  // cuda_module.cpp
}

namespace faltung::cuda::blas {

namespace {

void check_status(int status, const char* what) {
  if (status != 0)
    throw std::runtime_error(std::string("cuBLAS ") + what + " failed with status " + std::to_string(status));
}

// Handles no thread holds: (device, handle).
std::mutex pool_mutex;
std::multimap<int, Handle> pool;

// This thread's handles by device, back to the pool when the thread ends.
struct ThreadHandles {
  std::map<int, Handle> by_device;
  ~ThreadHandles() {
    std::lock_guard<std::mutex> lock(pool_mutex);
    for (const auto& [dev, h] : by_device) pool.emplace(dev, h);
  }
};

Handle handle_for_current_device() {
  thread_local ThreadHandles mine;
  std::map<int, Handle>& handles = mine.by_device;
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  auto it = handles.find(dev);
  if (it != handles.end()) return it->second;
  {
    std::lock_guard<std::mutex> lock(pool_mutex);
    auto spare = pool.find(dev);
    if (spare != pool.end()) {
      handles[dev] = spare->second;
      pool.erase(spare);
      return handles[dev];
    }
  }
  const Library& lib = library();
  Handle h = nullptr;
  check_status(lib.create(&h), "cublasCreate_v2");
  const int st = lib.set_stream(h, nullptr);
  if (st != 0) {
    lib.destroy(h);
    check_status(st, "cublasSetStream_v2");
  }
  handles[dev] = h;
  return h;
}

}  // namespace

template <typename T>
void device_gemm(const RowGemm<T>& g, void* stream) {
  const Library& lib = library();
  if (!lib.ok) throw std::logic_error("blas::device_gemm without cuBLAS: " + lib.error);
  const ColGemm<T> c = to_col_major(g);
  check(c);
  Handle h = handle_for_current_device();
  check_status(lib.set_stream(h, stream), "cublasSetStream_v2");
  check_status(lib.gemm<T>()(h, c.transa ? 1 : 0, c.transb ? 1 : 0, int(c.m), int(c.n), int(c.k), &c.alpha, c.A,
                             int(c.lda), c.B, int(c.ldb), &c.beta, c.C, int(c.ldc)),
               sizeof(T) == sizeof(float) ? "cublasSgemm_v2" : "cublasDgemm_v2");
}

template void device_gemm<float>(const RowGemm<float>&, void*);
template void device_gemm<double>(const RowGemm<double>&, void*);

}  // namespace faltung::cuda::blas
