// Softmax / log_softmax over the last axis, dropout, fused softmax cross-entropy.
// N elements (flat), R rows x K row length (softmax family), B batch x K classes (xent).
// GCC turns the clamps of the float kernels into branches and refuses to if-convert them
// under its default -ftrapping-math; nothing here reads floating-point exception flags, so
// this file opts out. The pragma precedes every include so that all inlined functions share
// the option (GCC does not inline across differing optimize options).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <string>

#include "../cuda/dropout_rule.cuh"
#include "elementwise.hpp"
#include "faltung/activations.hpp"

namespace faltung {

using namespace elementwise;

// ---- softmax family: rows of length K, one row per iteration -------------------------

// x (R,K) -> y (R,K)
template <typename T>
void softmax_forward(T* y, const T* x, int64_t R, int64_t K) {
  rows(R, K, [=](int64_t r) {
    const T* x_r = x + r * K;
    T* y_r = y + r * K;
    const T m = max_of(x_r, K);
    const T inv = T(1) / sum_exp(x_r, K, m, y_r);
    for (int64_t k = 0; k < K; ++k) y_r[k] *= inv;
  });
}

// dy (R,K), y (R,K) -> dx (R,K)
template <typename T>
void softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K) {
  rows(R, K, [=](int64_t r) {
    const T *dy_r = dy + r * K, *y_r = y + r * K;
    T* dx_r = dx + r * K;
    const T dot = dot_of(dy_r, y_r, K);
    for (int64_t k = 0; k < K; ++k) dx_r[k] = y_r[k] * (dy_r[k] - dot);
  });
}

// x (R,K) -> y (R,K)
template <typename T>
void log_softmax_forward(T* y, const T* x, int64_t R, int64_t K) {
  rows(R, K, [=](int64_t r) {
    const T* x_r = x + r * K;
    T* y_r = y + r * K;
    const T lse = logsumexp(x_r, K);
    for (int64_t k = 0; k < K; ++k) y_r[k] = x_r[k] - lse;
  });
}

// dy (R,K), y (R,K) -> dx (R,K)
template <typename T>
void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t R, int64_t K) {
  rows(R, K, [=](int64_t r) {
    const T *dy_r = dy + r * K, *y_r = y + r * K;
    T* dx_r = dx + r * K;
    const T s = sum_of(dy_r, K);
    for (int64_t k = 0; k < K; ++k) dx_r[k] = dy_r[k] - vexp(y_r[k]) * s;
  });
}

// ---- dropout ---------------------------------------------------------------------------

namespace {
using dropout::KeepRule;  // cpp/cuda/dropout_rule.cuh: the rule the CUDA bodies share
void check_rate(double rate) {
  FALTUNG_CHECK(rate >= 0.0 && rate <= 1.0,
                "dropout: expected 0 <= rate <= 1, received rate=" + std::to_string(rate));
}
}  // namespace

// -> mask (N)
void dropout_mask(uint8_t* mask, int64_t N, double rate, uint64_t seed) {
  check_rate(rate);
  const KeepRule rule = dropout::keep_rule(rate, seed);
  ew(N, kCostly, [=](int64_t i0, int64_t i1) {
    // locals: uint8_t stores may alias anything, so captured fields would be reloaded
    // every iteration and the loop would not vectorize
    const KeepRule r = rule;
    uint8_t* const m = mask;
    for (int64_t i = i0; i < i1; ++i) m[i] = r.keep(i) ? 1 : 0;
  });
}

// x (N) -> y (N), mask (N)
template <typename T>
void dropout_forward(T* y, uint8_t* mask, const T* x, int64_t N, double rate, uint64_t seed) {
  check_rate(rate);
  const KeepRule rule = dropout::keep_rule(rate, seed);
  const T scale = rate < 1.0 ? T(1.0 / (1.0 - rate)) : T(0);
  ew(N, kCostly, [=](int64_t i0, int64_t i1) {
    const KeepRule r = rule;  // locals, see dropout_mask
    uint8_t* const m = mask;
    T* const yy = y;
    const T* const xx = x;
    const T sc = scale;
    for (int64_t i = i0; i < i1; ++i) {
      const bool k = r.keep(i);
      m[i] = k ? 1 : 0;
      yy[i] = k ? xx[i] * sc : T(0);
    }
  });
}

// dy (N), mask (N) -> dx (N)
template <typename T>
void dropout_backward(T* dx, const T* dy, const uint8_t* mask, int64_t N, double rate) {
  check_rate(rate);
  const T scale = rate < 1.0 ? T(1.0 / (1.0 - rate)) : T(0);
  ew(N, kCheap, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = mask[i] ? dy[i] * scale : T(0);
  });
}

// ---- fused softmax cross-entropy ----------------------------------------------------------

// logits (B,K), target (B,K) -> loss (B), grad (B,K) or nullptr
template <typename T>
void softmax_xent(T* loss, T* grad, const T* logits, const T* target, int64_t B, int64_t K,
                  T scale) {
  rows(B, K, [=](int64_t b) {
    const T *x_b = logits + b * K, *t_b = target + b * K;
    const T lse = logsumexp(x_b, K);
    // loss = -sum_k t_k (x_k - lse); d loss / d x_k = p_k sum(t) - t_k
    T l = 0, tsum = 0;
    for (int64_t k = 0; k < K; ++k) {
      l += t_b[k] * (lse - x_b[k]);
      tsum += t_b[k];
    }
    loss[b] = l;
    if (grad) {
      T* g_b = grad + b * K;
      for (int64_t k = 0; k < K; ++k) g_b[k] = scale * (vexp(x_b[k] - lse) * tsum - t_b[k]);
    }
  });
}

// logits (B,K), labels (B) -> loss (B), grad (B,K) or nullptr
template <typename T>
void sparse_softmax_xent(T* loss, T* grad, const T* logits, const int32_t* labels, int64_t B,
                         int64_t K, T scale) {
  for (int64_t b = 0; b < B; ++b)
    FALTUNG_CHECK(labels[b] >= 0 && labels[b] < K,
                  "sparse softmax cross-entropy: label " + std::to_string(labels[b]) + " at index " +
                      std::to_string(b) + " is out of range [0, " + std::to_string(K) + ")");
  rows(B, K, [=](int64_t b) {
    const T* x_b = logits + b * K;
    const int64_t y = labels[b];
    const T lse = logsumexp(x_b, K);
    loss[b] = lse - x_b[y];
    if (grad) {
      T* g_b = grad + b * K;
      for (int64_t k = 0; k < K; ++k) g_b[k] = scale * vexp(x_b[k] - lse);
      g_b[y] -= scale;
    }
  });
}

#define FALTUNG_SOFTMAX_INSTANTIATE(T)                                                         \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t);                            \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                 \
  template void log_softmax_forward<T>(T*, const T*, int64_t, int64_t);                        \
  template void log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);             \
  template void dropout_forward<T>(T*, uint8_t*, const T*, int64_t, double, uint64_t);         \
  template void dropout_backward<T>(T*, const T*, const uint8_t*, int64_t, double);            \
  template void softmax_xent<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);              \
  template void sparse_softmax_xent<T>(T*, T*, const T*, const int32_t*, int64_t, int64_t, T);
FALTUNG_SOFTMAX_INSTANTIATE(float)
FALTUNG_SOFTMAX_INSTANTIATE(double)
#undef FALTUNG_SOFTMAX_INSTANTIATE

}  // namespace faltung
