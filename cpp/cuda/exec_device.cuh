// cpp/cuda/exec_device.cuh — DeviceExec: launches a kernel body as a __global__ kernel on the
// current stream (nvcc only). The geometry is the one HostExec iterates (hd.cuh).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "blas.hpp"
#include "hd.cuh"

namespace faltung::cuda {

template <class Body>
__global__ void run_body(Body body) {
  body(Thread{int64_t(blockIdx.x), int64_t(threadIdx.x), int64_t(blockDim.x)});
}

template <class Body>
__global__ void run_body_steps(Body body, int64_t steps) {
  const Thread th{int64_t(blockIdx.x), int64_t(threadIdx.x), int64_t(blockDim.x)};
  for (int64_t k = 0; k < steps; ++k) {
    body.step(k, th);
    __syncthreads();
  }
}

// launch_steps with the block's shared memory: one Body::Shared per block (static size).
template <class Body>
__global__ void run_body_shared(Body body, int64_t steps) {
  __shared__ typename Body::Shared sh;
  const Thread th{int64_t(blockIdx.x), int64_t(threadIdx.x), int64_t(blockDim.x)};
  for (int64_t k = 0; k < steps; ++k) {
    body.step(k, th, sh);
    __syncthreads();
  }
}

void check_cuda(cudaError_t e, const char* what);  // runtime.cu: throws, naming `what`

struct DeviceExec {
  cudaStream_t stream = nullptr;
  // GEMMs go to cuBLAS when it was found (blas.hpp); otherwise the families launch their bodies.
  bool blas() const { return blas::library().ok; }
  template <typename T>
  void gemm(const blas::RowGemm<T>& g) {
    blas::device_gemm(g, stream);
  }
  template <class Body>
  void launch(Geometry g, const Body& body) {
    if (g.grid == 0) return;
    run_body<<<unsigned(g.grid), unsigned(g.block), 0, stream>>>(body);
    check_cuda(cudaGetLastError(), "kernel launch");
  }
  template <class Body>
  void launch_steps(Geometry g, int64_t steps, const Body& body) {
    if (g.grid == 0 || steps == 0) return;
    run_body_steps<<<unsigned(g.grid), unsigned(g.block), 0, stream>>>(body, steps);
    check_cuda(cudaGetLastError(), "kernel launch");
  }
  template <class Body>
  void launch_shared(Geometry g, int64_t steps, const Body& body) {
    if (g.grid == 0 || steps == 0) return;
    run_body_shared<<<unsigned(g.grid), unsigned(g.block), 0, stream>>>(body, steps);
    check_cuda(cudaGetLastError(), "kernel launch");
  }
};

}  // namespace faltung::cuda
