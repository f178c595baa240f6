// faltung._cuda_host: the CUDA kernel bodies run on the CPU over their whole grid x block index
// space (HostExec), with faltung._cuda's Python interface, so that tests/test_cuda_host.py holds
// them to the CPU kernels on every run, GPU or not; and its DeviceArray and `resident` entry
// points (host memory standing in for device memory), so that the device-resident model path
// (faltung._device._harness_device) runs here too. Test-only; built by the default build.
#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

#include "bind_blas.hpp"
#include "bind_kernels.hpp"
#include "bind_resident.hpp"
#include "exec_host.hpp"
#include "kernels_impl.hpp"
#include "loss_kernels_impl.hpp"
#include "metric_kernels_impl.hpp"
#include "pooled_buf.hpp"
#include "seq_kernels_impl.hpp"

namespace faltung::cuda {

template bool Kernels<HostExec>::blas();
FALTUNG_CUDA_INSTANTIATE(HostExec, float)
FALTUNG_CUDA_INSTANTIATE(HostExec, double)
FALTUNG_CUDA_INSTANTIATE_CONV(HostExec, float)  // convolution and resampling
FALTUNG_CUDA_INSTANTIATE_CONV(HostExec, double)
FALTUNG_CUDA_INSTANTIATE_LAYERS(HostExec, float)  // the device-resident layers
FALTUNG_CUDA_INSTANTIATE_LAYERS(HostExec, double)
FALTUNG_CUDA_INSTANTIATE_LOSSES(HostExec, float)  // losses, graph plumbing, clipping
FALTUNG_CUDA_INSTANTIATE_LOSSES(HostExec, double)
FALTUNG_CUDA_INSTANTIATE_METRICS(HostExec, float)  // compiled metrics, loss means
FALTUNG_CUDA_INSTANTIATE_METRICS(HostExec, double)
FALTUNG_CUDA_INSTANTIATE_SEQ(HostExec, float)  // Embedding, masks, RepeatVector, Permute
FALTUNG_CUDA_INSTANTIATE_SEQ(HostExec, double)
FALTUNG_CUDA_INSTANTIATE_SEQ_ONCE(HostExec)

namespace {
// Host memory standing in for device memory, through the same pool as the device's.
struct HostRaw {
  static constexpr std::align_val_t kAlign{256};  // cudaMalloc's alignment
  static int device() { return 0; }
  static void* allocate(size_t bytes) { return ::operator new(bytes, kAlign); }
  static void release(void* p) noexcept { ::operator delete(p, kAlign); }
  static void copy_in(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
  static void copy_out(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
  // A fresh (or reused) buffer holds what cudaMalloc's may: anything. NaN (integers: their
  // maximum) here, so that a body reading an output before writing it fails on the CPU too.
  template <typename T>
  static void fresh(T* p, int64_t n) {
    if constexpr (std::numeric_limits<T>::has_quiet_NaN) std::fill(p, p + n, std::numeric_limits<T>::quiet_NaN());
    else std::fill(p, p + n, std::numeric_limits<T>::max());
  }
};
// The staging API of a Prefetcher (bind_resident_io.hpp) on the host: plain memory, copies done
// when they return, so events and streams are nothing and every wait returns at once.
struct HostStaging {
  static void* host_alloc(size_t bytes) { return ::operator new(bytes, HostRaw::kAlign); }
  static void host_free(void* p) noexcept { ::operator delete(p, HostRaw::kAlign); }
  static void* create_stream() { return nullptr; }
  static void destroy_stream(void*) noexcept {}
  static void* create_event() { return nullptr; }
  static void destroy_event(void*) noexcept {}
  static void copy_in_async(void* dst, const void* src, size_t bytes, void*) { std::memcpy(dst, src, bytes); }
  static void record(void*, void*) {}
  static void stream_wait(void*, void*) {}
  static void host_wait(void*) {}
};
struct HostBackend {
  template <typename T> using Buf = PooledBuf<T, HostRaw>;
  using Staging = HostStaging;
  using Pool = BufferPool<HostRaw>;
  using Kernels = cuda::Kernels<HostExec>;
  static dlpack::DLDevice dl_device() { return {dlpack::kDLCPU, 0}; }  // numpy.from_dlpack views it
  static void synchronize() {}  // the bodies ran when the call returned
};
}  // namespace

}  // namespace faltung::cuda

PYBIND11_MODULE(_cuda_host, m) {
  m.doc() = "faltung's CUDA kernel bodies run on the CPU over the whole grid (test harness)";
  faltung::cuda::binding::Bind<faltung::cuda::HostBackend>::bind(m);
  faltung::cuda::binding::BindResident<faltung::cuda::HostBackend>::bind(m);
  faltung::cuda::binding::bind_blas(m);
  m.def("set_reference_blas", [](bool on) { faltung::cuda::reference_blas() = on; }, pybind11::arg("on"),
        "Run the families' BLAS path (cuBLAS's on a GPU) with the column-major reference GEMM (on), or "
        "their own GEMM bodies (off, the default).");
  m.def("reference_blas", []() { return faltung::cuda::reference_blas(); });
  m.def("reference_blas_calls", []() { return faltung::cuda::reference_blas_calls(); },
        "How many GEMMs the reference BLAS ran so far.");
  m.def("set_col_budget", [](int64_t n) {
          const int64_t old = faltung::cuda::conv::col_budget();
          faltung::cuda::conv::col_budget() = n > 0 ? n : int64_t(1) << 24;
          return old;
        }, pybind11::arg("elements"),
        "Bound conv's im2col buffer to `elements` (0: the default 2^24); returns the previous bound.");
}
