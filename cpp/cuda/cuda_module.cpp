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

#include "bind_blas.hpp"
#include "bind_kernels.hpp"
#include "bind_resident.hpp"
#include "pooled_buf.hpp"

namespace faltung::cuda {

namespace py = pybind11;

void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  if (e == cudaErrorMemoryAllocation) throw std::bad_alloc();  // pybind11: MemoryError
  throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorName(e) + " (" +
                           cudaGetErrorString(e) + ")");
}

namespace {

// Device memory: cudaMalloc'd blocks, cached by the pool (pooled_buf.hpp). The copies are
// synchronous (legacy default stream), so a result is complete when copy_out returns.
struct CudaRaw {
  static int device() {
    int d = 0;
    check_cuda(cudaGetDevice(&d), "cudaGetDevice");
    return d;
  }
  static void* allocate(size_t bytes) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) cudaGetLastError();  // clear it, or the next launch check would report it
    check_cuda(e, "cudaMalloc");               // out of memory: std::bad_alloc (the pool retries once)
    return p;
  }
  static void release(void* p) noexcept { cudaFree(p); }
  static void copy_in(void* dst, const void* src, size_t bytes) {
    check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  static void copy_out(void* dst, const void* src, size_t bytes) {
    check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
  }
  template <typename T>
  static void fresh(T*, int64_t) {}
};

// The staging API of a Prefetcher (bind_resident_io.hpp): pinned host memory (cudaHostAlloc),
// a copy stream that does not synchronize with the legacy default stream (where the kernels
// run), and events between them. A null stream is the legacy default stream.
struct CudaStaging {
  static void* host_alloc(size_t bytes) {
    void* p = nullptr;
    const cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) cudaGetLastError();
    check_cuda(e, "cudaHostAlloc");
    return p;
  }
  static void host_free(void* p) noexcept { cudaFreeHost(p); }
  static void* create_stream() {
    cudaStream_t s = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    return s;
  }
  static void destroy_stream(void* s) noexcept { cudaStreamDestroy(static_cast<cudaStream_t>(s)); }
  static void* create_event() {
    cudaEvent_t e = nullptr;
    check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    return e;
  }
  static void destroy_event(void* e) noexcept { cudaEventDestroy(static_cast<cudaEvent_t>(e)); }
  static void copy_in_async(void* dst, const void* src, size_t bytes, void* stream) {
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream)),
               "cudaMemcpyAsync");
  }
  // `event` completes when the work queued on `stream` so far has
  static void record(void* event, void* stream) {
    check_cuda(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)),
               "cudaEventRecord");
  }
  // work queued on `stream` from now on waits for `event`
  static void stream_wait(void* stream, void* event) {
    check_cuda(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), static_cast<cudaEvent_t>(event), 0),
               "cudaStreamWaitEvent");
  }
  static void host_wait(void* event) {
    check_cuda(cudaEventSynchronize(static_cast<cudaEvent_t>(event)), "cudaEventSynchronize");
  }
};

struct DeviceBackend {
  template <typename T> using Buf = PooledBuf<T, CudaRaw>;
  using Staging = CudaStaging;
  using Pool = BufferPool<CudaRaw>;
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
  fc::binding::bind_blas(m);
}
