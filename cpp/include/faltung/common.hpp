// faltung/common.hpp — what every kernel family shares: argument checks, threads, GEMM.
//
// Conventions (see DESIGN.md): row-major, channels-last, int64_t for every size and
// offset, validation before any kernel runs (an exception cannot leave an OpenMP
// region), std::invalid_argument for bad input (pybind11 maps it to ValueError).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace faltung {

// Throws std::invalid_argument(msg) unless cond holds. A macro so that msg is only built on
// failure: the messages format shapes with ostreams, and building them eagerly made a
// 1x4x4x3 conv call take 94 us instead of 4 (far more than its kernel).
#define FALTUNG_CHECK(cond, ...)                          \
  do {                                                    \
    if (!(cond)) throw std::invalid_argument(__VA_ARGS__); \
  } while (0)

// "(2, 3, 4)" for error messages.
std::string shape_str(const std::vector<int64_t>& shape);

// OpenMP thread count used by faltung kernels (the process' one pool).
void set_num_threads(int n);
int get_num_threads();

// C (M,N) = alpha * op(A) @ op(B) + beta * C, row-major, single-threaded OpenBLAS call.
// op(A) is (M,K): A is (M,K) with lda >= K, or (K,M) with lda >= M if trans_a.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Same contract as gemm, but splits the rows of C (or, if M is small, the columns)
// across faltung's OpenMP threads, each calling single-threaded OpenBLAS.
// Call it from outside a parallel region.
template <typename T>
void parallel_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                   const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// A reusable, growing scratch buffer per thread; never shrinks. Kernels use it instead
// of allocating on the hot path. slot separates independent buffers of one thread.
float* workspace_f32(int64_t n_floats, int slot = 0);
double* workspace_f64(int64_t n_doubles, int slot = 0);
template <typename T> T* workspace(int64_t n, int slot = 0);
template <> inline float* workspace<float>(int64_t n, int slot) { return workspace_f32(n, slot); }
template <> inline double* workspace<double>(int64_t n, int slot) { return workspace_f64(n, slot); }

}  // namespace faltung
