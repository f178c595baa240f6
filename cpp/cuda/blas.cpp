// cpp/cuda/blas.cpp — faltung._cuda's cuBLAS calls (blas.hpp opens the library): one handle per
// (host thread, device), created on first use and kept for the process (a handle is not to be
// shared by threads that may call at once; the bindings release the GIL around kernels).
#include <cuda_runtime_api.h>

#include <map>
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

Handle handle_for_current_device() {
  thread_local std::map<int, Handle> handles;
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  auto it = handles.find(dev);
  if (it != handles.end()) return it->second;
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
