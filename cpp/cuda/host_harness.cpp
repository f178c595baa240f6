// faltung._cuda_host: the CUDA kernel bodies run on the CPU over their whole grid x block index
// space (HostExec), with faltung._cuda's Python interface, so that tests/test_cuda_host.py holds
// them to the CPU kernels on every run, GPU or not; and its DeviceArray and `resident` entry
// points (host memory standing in for device memory), so that the device-resident model path
// (faltung._device._harness_device) runs here too. Test-only; built by the default build.
#include <limits>
#include <vector>

#include "bind_kernels.hpp"
#include "bind_resident.hpp"
#include "exec_host.hpp"
#include "kernels_impl.hpp"

namespace faltung::cuda {

FALTUNG_CUDA_INSTANTIATE(HostExec, float)
FALTUNG_CUDA_INSTANTIATE(HostExec, double)
FALTUNG_CUDA_INSTANTIATE_CONV(HostExec, float)  // convolution and resampling
FALTUNG_CUDA_INSTANTIATE_CONV(HostExec, double)

namespace {
// Host memory: a buffer the bodies write as they would device memory.
template <typename T>
struct HostBuf {
  std::vector<T> v;
  static HostBuf upload(const T* p, int64_t n) { return HostBuf{std::vector<T>(p, p + n)}; }
  // Fresh memory holds what cudaMalloc's may: anything. NaN (the largest value for integers)
  // here, so that a body reading an output before writing it fails the tests on the CPU too.
  static HostBuf alloc(int64_t n) { return HostBuf{std::vector<T>(size_t(n), garbage())}; }
  static T garbage() {
    if constexpr (std::numeric_limits<T>::has_quiet_NaN) return std::numeric_limits<T>::quiet_NaN();
    else return std::numeric_limits<T>::max();
  }
  T* get() { return v.data(); }
  void download(T* dst, int64_t n) const { std::copy(v.begin(), v.begin() + n, dst); }
};
struct HostBackend {
  template <typename T> using Buf = HostBuf<T>;
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
}
