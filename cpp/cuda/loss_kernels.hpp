// cpp/cuda/loss_kernels.hpp — the entry points of losses.cuh (losses, graph plumbing, gradient
// clipping), templated on the executor as Kernels<Exec> (kernels.hpp): the host harness
// instantiates LossKernels<HostExec> (host_harness.cpp), the CUDA module LossKernels<DeviceExec>
// (losses.cu, nvcc); the bindings (bind_resident_losses.hpp) see only these declarations.
// Pointers are the executor's memory.
#pragma once
#include <cstdint>

#include "kernels.hpp"
#include "losses.cuh"

namespace faltung::cuda {

template <class Exec>
struct LossKernels {
  template <typename T> static void row_loss(const loss::RowLoss<T>& body, int64_t block);
  template <typename T> static void copy(T* dst, const T* src, int64_t n, int64_t block);
  template <typename T> static void add(T* y, const T* a, const T* b, int64_t n, int64_t block);
  template <typename T> static void sum_squares(T* out, T* part, const T* x, int64_t n, int64_t block);
  template <typename T> static void norm_factor(T* factor, const T* sumsq, int64_t m, T c, bool global);
  template <typename T> static void scale_by(T* x, const T* factor, int64_t n, int64_t block);
  template <typename T> static void clip_value(T* x, T c, int64_t n, int64_t block);
};

// The executor of a backend's Kernels<Exec> (HostExec for the harness, DeviceExec for a GPU).
template <class K> struct exec_of;
template <class Exec> struct exec_of<Kernels<Exec>> { using type = Exec; };

}  // namespace faltung::cuda
