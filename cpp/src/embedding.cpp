// Embedding kernels: gather rows of the table (forward), scatter-add rows of the gradient
// (backward). N indices, V table rows (input_dim), D columns (output_dim);
// table (V,D), idx (N), out / dout (N,D).
#include "faltung/embedding.hpp"

#include <omp.h>

#include <algorithm>
#include <string>

#include "faltung/common.hpp"

namespace faltung {

namespace {
// Below this many elements moved a kernel runs on the calling thread only. Both kernels only
// copy or add rows (memory-bound): one thread moved 0.4M floats in 25-40 us and 3M in 170 us
// here, while waking a second thread costs microseconds on a quiet machine and milliseconds
// on a busy shared one (a 0.4M-element gather took 0.6 ms on 2 threads next to another job).
// So the pool is woken only from ~1M elements (~100 us of work) on.
constexpr int64_t kParallelElems = 1 << 20;

int threads_for(int64_t work) {
  if (work < kParallelElems || omp_in_parallel()) return 1;
  return get_num_threads();
}

// Columns are handed to threads in blocks of one 64-byte cache line, so that two threads
// never write the same line of a table row (except where a row itself straddles lines).
template <typename T>
constexpr int64_t kColBlock = 64 / sizeof(T);
}  // namespace

void embedding_check_indices(const int32_t* idx, int64_t N, int64_t V, const char* op) {
  // A branch-free pass first (one unsigned compare per index, vectorized: negatives wrap
  // to huge values); the search for the culprit only when something is wrong.
  uint32_t bad = 0;
  for (int64_t i = 0; i < N; ++i) bad |= static_cast<int64_t>(static_cast<uint32_t>(idx[i])) >= V;
  if (!bad) return;
  for (int64_t i = 0; i < N; ++i)
    if (idx[i] < 0 || idx[i] >= V)
      throw std::invalid_argument(std::string(op) + ": index " + std::to_string(idx[i]) +
                                  " at position " + std::to_string(i) +
                                  " of `indices` is outside [0, input_dim=" + std::to_string(V) +
                                  ")");
}

// table (V,D), idx (N) -> out (N,D)
template <typename T>
void embedding_forward(T* out, const int32_t* idx, const T* table, int64_t N, int64_t V,
                       int64_t D) {
  embedding_check_indices(idx, N, V, "embedding");
  // Each thread writes its own rows of out: no two threads touch the same output.
#pragma omp parallel for num_threads(threads_for(N * D)) schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* row = table + idx[i] * D;
    std::copy(row, row + D, out + i * D);
  }
}

// dout (N,D), idx (N) -> dtable (V,D)
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* idx, int64_t N, int64_t V,
                        int64_t D) {
  embedding_check_indices(idx, N, V, "embedding_backward");
  // Forward: out[i,:] = table[idx[i],:]  =>  dtable[idx[i],:] += dout[i,:] for every i.
  // Several i may share a row, so threads must not split the i loop. Each thread owns a
  // range of COLUMNS instead (not of table rows): token indices are far from uniform
  // (with mask_zero the padding index 0 may be most of them), and a thread owning row 0
  // would do most of the adds, while a column split gives every thread the same work
  // whatever the indices. Each thread still visits i in order, so every sum is the serial
  // one, bit for bit. Zeroing the table has no such skew and goes by rows.
  const int nt = threads_for(V * D + N * D);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t v0 = V * t / n, v1 = V * (t + 1) / n;
    std::fill(dtable + v0 * D, dtable + v1 * D, T(0));
#pragma omp barrier
    const int64_t blocks = (D + kColBlock<T> - 1) / kColBlock<T>;
    const int64_t d0 = std::min(D, kColBlock<T> * (blocks * t / n));
    const int64_t d1 = std::min(D, kColBlock<T> * (blocks * (t + 1) / n));
    if (d0 < d1) {
      for (int64_t i = 0; i < N; ++i) {
        const T* dout_i = dout + i * D;
        T* drow = dtable + idx[i] * D;
        for (int64_t d = d0; d < d1; ++d) drow[d] += dout_i[d];
      }
    }
  }
}

// Naive oracles.
template <typename T>
void embedding_forward_naive(T* out, const int32_t* idx, const T* table, int64_t N, int64_t V,
                             int64_t D) {
  embedding_check_indices(idx, N, V, "embedding");
  for (int64_t i = 0; i < N; ++i)
    for (int64_t d = 0; d < D; ++d) out[i * D + d] = table[idx[i] * D + d];
}

template <typename T>
void embedding_backward_naive(T* dtable, const T* dout, const int32_t* idx, int64_t N,
                              int64_t V, int64_t D) {
  embedding_check_indices(idx, N, V, "embedding_backward");
  for (int64_t v = 0; v < V * D; ++v) dtable[v] = T(0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t d = 0; d < D; ++d) dtable[idx[i] * D + d] += dout[i * D + d];
}

#define FALTUNG_EMBEDDING_INSTANTIATE(T)                                                     \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t, int64_t); \
  template void embedding_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t,          \
                                      int64_t);                                                \
  template void embedding_forward_naive<T>(T*, const int32_t*, const T*, int64_t, int64_t,     \
                                           int64_t);                                           \
  template void embedding_backward_naive<T>(T*, const T*, const int32_t*, int64_t, int64_t,    \
                                            int64_t);
FALTUNG_EMBEDDING_INSTANTIATE(float)
FALTUNG_EMBEDDING_INSTANTIATE(double)
#undef FALTUNG_EMBEDDING_INSTANTIATE

}  // namespace faltung
