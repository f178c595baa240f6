// faltung._cuda (built with -DFALTUNG_CUDA=ON): the CUDA runtime's facts (versions, devices)
// and the kernel families of bind_kernels.hpp on a GPU (DeviceBackend: device buffers, copies
// in and out per call), plus DeviceArray and the `resident` entry points of bind_resident.hpp
// (arrays that stay in device memory between calls: device-resident models). Compiled by the host compiler; the kernels come from kernels.cu.
// The CUDA runtime is linked statically (CMakeLists.txt says why), so this module imports on a
// machine without a driver or a GPU and reports what is missing instead of failing to load.
#include <cuda_runtime_api.h>

#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "bind_kernels.hpp"
#include "bind_resident.hpp"

namespace faltung::cuda {

namespace py = pybind11;

void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  if (e == cudaErrorMemoryAllocation) throw std::bad_alloc();  // pybind11: MemoryError
  throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorName(e) + " (" +
                           cudaGetErrorString(e) + ")");
}

namespace {

// Device memory owned by one call; the copies are synchronous (default stream), so a result is
// complete when download returns.
template <typename T>
class DeviceBuf {
 public:
  static DeviceBuf alloc(int64_t n) {
    DeviceBuf b;
    if (n > 0) check_cuda(cudaMalloc(reinterpret_cast<void**>(&b.p_), size_t(n) * sizeof(T)), "cudaMalloc");
    return b;
  }
  static DeviceBuf upload(const T* src, int64_t n) {
    DeviceBuf b = alloc(n);
    if (n > 0) check_cuda(cudaMemcpy(b.p_, src, size_t(n) * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
    return b;
  }
  void download(T* dst, int64_t n) const {
    if (n > 0) check_cuda(cudaMemcpy(dst, p_, size_t(n) * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  }
  T* get() { return p_; }
  DeviceBuf() = default;
  DeviceBuf(DeviceBuf&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
  DeviceBuf& operator=(DeviceBuf&& o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~DeviceBuf() {
    if (p_) cudaFree(p_);
  }

 private:
  T* p_ = nullptr;
};

struct DeviceBackend {
  template <typename T> using Buf = DeviceBuf<T>;
  using Kernels = cuda::Kernels<DeviceExec>;
  static dlpack::DLDevice dl_device() {  // where cudaMalloc puts memory now: the current device
    int d = 0;
    check_cuda(cudaGetDevice(&d), "cudaGetDevice");
    return {dlpack::kDLCUDA, d};
  }
  static void synchronize() { check_cuda(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize"); }
};

// {"count": n, "error": why none (or ""), "devices": [{"name", "compute_capability", "memory"}]}
py::dict devices() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  py::dict d;
  py::list list;
  if (e != cudaSuccess) n = 0;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p;
    check_cuda(cudaGetDeviceProperties(&p, i), "cudaGetDeviceProperties");
    py::dict dev;
    dev["name"] = std::string(p.name);
    dev["compute_capability"] = std::to_string(p.major) + "." + std::to_string(p.minor);
    dev["memory"] = int64_t(p.totalGlobalMem);
    list.append(dev);
  }
  d["count"] = n;
  d["error"] = e == cudaSuccess ? std::string() : std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  d["devices"] = list;
  return d;
}

std::string version_str(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

}  // namespace
}  // namespace faltung::cuda

PYBIND11_MODULE(_cuda, m) {
  namespace fc = faltung::cuda;
  m.doc() = "faltung's CUDA backend: runtime facts and the kernel families on a GPU";
  m.def("runtime_version", []() {
    int v = 0;
    fc::check_cuda(cudaRuntimeGetVersion(&v), "cudaRuntimeGetVersion");
    return fc::version_str(v);
  }, "The CUDA runtime version linked into this module (\"13.0\").");
  m.def("driver_version", []() {
    int v = 0;
    cudaDriverGetVersion(&v);  // 0 when no driver is installed
    return v ? fc::version_str(v) : std::string();
  }, "The CUDA version the installed driver supports, or \"\" when no driver is installed.");
  m.def("devices", &fc::devices, "The GPUs the runtime sees, and why none when it sees none.");
  m.attr("architectures") = FALTUNG_CUDA_ARCHITECTURES;
  m.def("set_device", [](int index) { fc::check_cuda(cudaSetDevice(index), "cudaSetDevice"); }, pybind11::arg("index"),
        "Make GPU `index` the current device: where new DeviceArrays and kernel launches go.");
  fc::binding::Bind<fc::DeviceBackend>::bind(m);
  fc::binding::BindResident<fc::DeviceBackend>::bind(m);
}
