// cpp/cuda/seq_kernels.hpp — the entry points of seq.cuh (Embedding, masks, RepeatVector,
// Permute), templated on the executor as Kernels<Exec> (kernels.hpp): the host harness
// instantiates SeqKernels<HostExec> (host_harness.cpp), the CUDA module SeqKernels<DeviceExec>
// (seq.cu, nvcc); the bindings (bind_resident_seq.hpp) see only these declarations.
// Pointers are the executor's memory.
#pragma once
#include <cstdint>

#include "layout.cuh"
#include "seq.cuh"

namespace faltung::cuda {

template <class Exec>
struct SeqKernels {
  template <typename T>
  static void gather(T* out, const T* table, const int32_t* idx, int64_t N, int64_t D, int64_t block);
  template <typename T>
  static void scatter_add(T* dtable, const T* dy, const int32_t* order, const int32_t* offsets, int64_t V, int64_t D,
                          int64_t block);
  template <typename T>
  static void keep_rows(uint8_t* keep, const T* x, int64_t R, int64_t F, T value, int64_t block);
  template <typename T>
  static void mask_rows(T* y, const T* x, const uint8_t* keep, int64_t R, int64_t F, int64_t block);
  template <typename T>
  static void masked_mean_time(T* y, const T* x, const uint8_t* keep, int64_t B, int64_t T_, int64_t F, int64_t block);
  template <typename T>
  static void masked_mean_time_backward(T* dx, const T* dy, const uint8_t* keep, int64_t B, int64_t T_, int64_t F,
                                        int64_t block);
  template <typename T> static void repeat(T* out, const T* x, int64_t B, int64_t n, int64_t F, int64_t block);
  template <typename T> static void sum_middle(T* dx, const T* dy, int64_t B, int64_t n, int64_t F, int64_t block);
  template <typename T> static void permute(const seq::Permute<T>& body, int64_t block);
  static void mask_or(uint8_t* out, const uint8_t* a, const uint8_t* b, int64_t n, int64_t block);
  // a (B,T) mask reversed in time (go_backwards)
  static void reverse_mask(uint8_t* out, const uint8_t* inp, int64_t B, int64_t T_, int64_t block);
};

}  // namespace faltung::cuda
