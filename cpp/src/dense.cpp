// Dense (fully connected) kernels.
// B batch, IN input features, OUT output features; inp (B,IN), weight (IN,OUT), bias (OUT).
#include "faltung/dense.hpp"

#include <omp.h>

#include <algorithm>

#include "faltung/common.hpp"

namespace faltung {

namespace {
// Below this many output elements a loop runs on the calling thread only.
constexpr int64_t kParallelElems = 1 << 16;

int threads_for(int64_t work) {
  if (work < kParallelElems || omp_in_parallel()) return 1;
  return get_num_threads();
}
}  // namespace

// inp (B,IN), weight (IN,OUT), bias (OUT) or nullptr -> out (B,OUT)
template <typename T>
void dense_forward(T* out, const T* inp, const T* weight, const T* bias, int64_t B, int64_t IN,
                   int64_t OUT) {
  if (B <= 0 || OUT <= 0) return;
  if (bias) {
    // out[b,:] = bias; then out += inp @ weight in the GEMM (beta = 1).
#pragma omp parallel for num_threads(threads_for(B * OUT)) schedule(static)
    for (int64_t b = 0; b < B; ++b) std::copy(bias, bias + OUT, out + b * OUT);
  }
  if (IN <= 0) {
    if (!bias) std::fill(out, out + B * OUT, T(0));
    return;
  }
  parallel_gemm<T>(false, false, B, OUT, IN, T(1), inp, IN, weight, OUT, bias ? T(1) : T(0), out,
                   OUT);
}

// dout (B,OUT), inp (B,IN), weight (IN,OUT) -> dinp (B,IN), dweight (IN,OUT), dbias (OUT)
template <typename T>
void dense_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                    int64_t B, int64_t IN, int64_t OUT) {
  if (dinp) {
    // out = inp @ W  =>  dinp (B,IN) = dout (B,OUT) @ W^T (OUT,IN)
    if (OUT > 0)
      parallel_gemm<T>(false, true, B, IN, OUT, T(1), dout, OUT, weight, OUT, T(0), dinp, IN);
    else
      std::fill(dinp, dinp + B * IN, T(0));
  }
  if (dweight) {
    // dweight (IN,OUT) = inp^T (IN,B) @ dout (B,OUT)
    if (B > 0)
      parallel_gemm<T>(true, false, IN, OUT, B, T(1), inp, IN, dout, OUT, T(0), dweight, OUT);
    else
      std::fill(dweight, dweight + IN * OUT, T(0));
  }
  if (dbias) {
    // out = ... + bias  =>  dbias[o] = sum_b dout[b,o]; each thread owns a column range.
    const int nt = threads_for(B * OUT);
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t o0 = OUT * t / n, o1 = OUT * (t + 1) / n;
      T* db = dbias + o0;
      std::fill(db, db + (o1 - o0), T(0));
      for (int64_t b = 0; b < B; ++b) {
        const T* dout_b = dout + b * OUT + o0;
        for (int64_t o = 0; o < o1 - o0; ++o) db[o] += dout_b[o];
      }
    }
  }
}

// Naive oracles.
template <typename T>
void dense_forward_naive(T* out, const T* inp, const T* weight, const T* bias, int64_t B,
                         int64_t IN, int64_t OUT) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < OUT; ++o) {
      T acc = bias ? bias[o] : T(0);
      for (int64_t i = 0; i < IN; ++i) acc += inp[b * IN + i] * weight[i * OUT + o];
      out[b * OUT + o] = acc;
    }
}

template <typename T>
void dense_backward_naive(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                          const T* weight, int64_t B, int64_t IN, int64_t OUT) {
  if (dinp)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < IN; ++i) {
        T acc = 0;
        for (int64_t o = 0; o < OUT; ++o) acc += dout[b * OUT + o] * weight[i * OUT + o];
        dinp[b * IN + i] = acc;
      }
  if (dweight)
    for (int64_t i = 0; i < IN; ++i)
      for (int64_t o = 0; o < OUT; ++o) {
        T acc = 0;
        for (int64_t b = 0; b < B; ++b) acc += inp[b * IN + i] * dout[b * OUT + o];
        dweight[i * OUT + o] = acc;
      }
  if (dbias)
    for (int64_t o = 0; o < OUT; ++o) {
      T acc = 0;
      for (int64_t b = 0; b < B; ++b) acc += dout[b * OUT + o];
      dbias[o] = acc;
    }
}

#define FALTUNG_DENSE_INSTANTIATE(T)                                                           \
  template void dense_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void dense_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t,  \
                                  int64_t);                                                    \
  template void dense_forward_naive<T>(T*, const T*, const T*, const T*, int64_t, int64_t,     \
                                       int64_t);                                               \
  template void dense_backward_naive<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,     \
                                        int64_t, int64_t);
FALTUNG_DENSE_INSTANTIATE(float)
FALTUNG_DENSE_INSTANTIATE(double)
#undef FALTUNG_DENSE_INSTANTIATE

}  // namespace faltung
