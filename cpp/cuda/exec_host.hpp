// cpp/cuda/exec_host.hpp — HostExec: runs a kernel body over its whole grid x block index
// space on the CPU, in order (block 0 thread 0, thread 1, ...). See hd.cuh for the contract.
// Test-only: compiled into faltung._cuda_host (cpp/cuda/host_harness.cpp) by the default build.
#pragma once
#include <cmath>
#include <cstring>
#include <memory>

#include "blas.hpp"
#include "hd.cuh"

namespace faltung::cuda {

// The host harness's stand-in for cuBLAS (faltung._cuda_host.set_reference_blas): when on, the
// families take their BLAS path, each GEMM run by blas::ref_gemm through the same row- to
// column-major mapping as cuBLAS's calls, so that path too is held to the CPU kernels.
inline bool& reference_blas() {
  static bool on = false;
  return on;
}
// How many GEMMs took that path (faltung._cuda_host.reference_blas_calls): tests see the path taken.
inline int64_t& reference_blas_calls() {
  static int64_t n = 0;
  return n;
}

struct HostExec {
  bool blas() const { return reference_blas(); }
  template <typename T>
  void gemm(const blas::RowGemm<T>& g) {
    ++reference_blas_calls();
    blas::ref_gemm(blas::to_col_major(g));
  }
  template <class Body>
  void launch(Geometry g, const Body& body) {
    for (int64_t b = 0; b < g.grid; ++b)
      for (int64_t t = 0; t < g.block; ++t) body(Thread{b, t, g.block});
  }
  // Block by block; within a block, each step runs every thread before the next step (the
  // barrier). Blocks are independent, so running them one after another is a legal order.
  template <class Body>
  void launch_steps(Geometry g, int64_t steps, const Body& body) {
    for (int64_t b = 0; b < g.grid; ++b)
      for (int64_t k = 0; k < steps; ++k)
        for (int64_t t = 0; t < g.block; ++t) body.step(k, Thread{b, t, g.block});
  }
  // launch_steps with a block's shared memory (Body::Shared, one per block). Each block starts
  // from bytes 0xFF (NaN in every float), as the device's uninitialized shared memory may hold
  // anything: a body that reads a slot before writing it shows up as NaN here.
  template <class Body>
  void launch_shared(Geometry g, int64_t steps, const Body& body) {
    auto sh = std::make_unique<typename Body::Shared>();
    for (int64_t b = 0; b < g.grid; ++b) {
      std::memset(static_cast<void*>(sh.get()), 0xFF, sizeof(typename Body::Shared));
      for (int64_t k = 0; k < steps; ++k)
        for (int64_t t = 0; t < g.block; ++t) body.step(k, Thread{b, t, g.block}, *sh);
    }
  }
};

}  // namespace faltung::cuda
