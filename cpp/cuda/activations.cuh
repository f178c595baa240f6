// cpp/cuda/activations.cuh — dropout (the CPU's counter-based keep rule, so that a seed gives
// the same mask on both), softmax over the last axis, and the fused sparse softmax
// cross-entropy, as kernel bodies and launch sequences (see hd.cuh for the design).
// Oracle: cpp/src/softmax_dropout.cpp. N elements (flat), R rows x K row length, B x K logits.
#pragma once
#include <cstdint>

#include "dropout_rule.cuh"
#include "hd.cuh"

namespace faltung::cuda::act {

// ---- dropout ---------------------------------------------------------------------------------
using dropout::KeepRule;  // the CPU's rule itself (dropout_rule.cuh)
using dropout::keep_rule;

// x (N) -> y (N), mask (N). Thread per element.
template <typename T>
struct DropoutForward {
  T *y;
  uint8_t* mask;
  const T* x;
  int64_t N;
  KeepRule rule;
  T scale;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= N) return;
    const bool k = rule.keep(i);
    mask[i] = k ? 1 : 0;
    y[i] = k ? x[i] * scale : T(0);
  }
};

// dy (N), mask (N) -> dx (N). Thread per element.
template <typename T>
struct DropoutBackward {
  T* dx;
  const T* dy;
  const uint8_t* mask;
  int64_t N;
  T scale;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i < N) dx[i] = mask[i] ? dy[i] * scale : T(0);
  }
};

// The CPU's scale: 1 / (1 - rate), and 0 when everything drops.
template <typename T> inline T dropout_scale(double rate) { return rate < 1.0 ? T(1.0 / (1.0 - rate)) : T(0); }

template <class Exec, typename T>
void dropout_forward(Exec& ex, T* y, uint8_t* mask, const T* x, int64_t N, double rate, uint64_t seed,
                     int64_t block) {
  ex.launch(cover(N, block), DropoutForward<T>{y, mask, x, N, keep_rule(rate, seed), dropout_scale<T>(rate)});
}
template <class Exec, typename T>
void dropout_backward(Exec& ex, T* dx, const T* dy, const uint8_t* mask, int64_t N, double rate, int64_t block) {
  ex.launch(cover(N, block), DropoutBackward<T>{dx, dy, mask, N, dropout_scale<T>(rate)});
}

// ---- softmax over rows ------------------------------------------------------------------------
// max and log-sum-exp of a row (the max is -inf only for a row of -inf: returned as is)
template <typename T>
FALTUNG_HD inline T row_max(const T* x, int64_t K) {
  T m = x[0];
  for (int64_t k = 1; k < K; ++k) m = hd_max(m, x[k]);
  return m;
}
template <typename T>
FALTUNG_HD inline T row_logsumexp(const T* x, int64_t K) {
  const T m = row_max(x, K);
  if (m == T(1) / T(0) || m == -T(1) / T(0)) return m;
  T s = 0;
  for (int64_t k = 0; k < K; ++k) s += hd_exp(x[k] - m);
  return m + hd_log(s);
}

// x (R,K) -> y (R,K). Thread per row.
template <typename T>
struct SoftmaxForward {
  T* y;
  const T* x;
  int64_t R, K;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t r = th.global();
    if (r >= R) return;
    const T* x_r = x + r * K;
    T* y_r = y + r * K;
    const T m = row_max(x_r, K);
    T s = 0;
    for (int64_t k = 0; k < K; ++k) s += (y_r[k] = hd_exp(x_r[k] - m));
    const T inv = T(1) / s;
    for (int64_t k = 0; k < K; ++k) y_r[k] *= inv;
  }
};

// dy (R,K), y (R,K) softmax output -> dx (R,K) = y (dy - sum(dy y)). Thread per row.
template <typename T>
struct SoftmaxBackward {
  T* dx;
  const T *dy, *y;
  int64_t R, K;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t r = th.global();
    if (r >= R) return;
    const T *dy_r = dy + r * K, *y_r = y + r * K;
    T* dx_r = dx + r * K;
    T dot = 0;
    for (int64_t k = 0; k < K; ++k) dot += dy_r[k] * y_r[k];
    for (int64_t k = 0; k < K; ++k) dx_r[k] = y_r[k] * (dy_r[k] - dot);
  }
};

template <class Exec, typename T>
void softmax_forward(Exec& ex, T* y, const T* x, int64_t R, int64_t K, int64_t block) {
  ex.launch(cover(K > 0 ? R : 0, block), SoftmaxForward<T>{y, x, R, K});
}
template <class Exec, typename T>
void softmax_backward(Exec& ex, T* dx, const T* dy, const T* y, int64_t R, int64_t K, int64_t block) {
  ex.launch(cover(K > 0 ? R : 0, block), SoftmaxBackward<T>{dx, dy, y, R, K});
}

// ---- sparse softmax cross-entropy -----------------------------------------------------------
// logits (B,K), labels (B) in [0, K) (checked by the caller) -> loss (B) = lse - x_y,
// grad (B,K) = scale (softmax - onehot(y)) or nullptr. Thread per row.
template <typename T>
struct SparseXent {
  T *loss, *grad;
  const T* logits;
  const int32_t* labels;
  int64_t B, K;
  T scale;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t b = th.global();
    if (b >= B) return;
    const T* x_b = logits + b * K;
    const int64_t y = labels[b];
    const T lse = row_logsumexp(x_b, K);
    loss[b] = lse - x_b[y];
    if (!grad) return;
    T* g_b = grad + b * K;
    for (int64_t k = 0; k < K; ++k) g_b[k] = scale * hd_exp(x_b[k] - lse);
    g_b[y] -= scale;
  }
};

template <class Exec, typename T>
void sparse_softmax_xent(Exec& ex, T* loss, T* grad, const T* logits, const int32_t* labels, int64_t B,
                         int64_t K, T scale, int64_t block) {
  ex.launch(cover(K > 0 ? B : 0, block), SparseXent<T>{loss, grad, logits, labels, B, K, scale});
}

}  // namespace faltung::cuda::act
