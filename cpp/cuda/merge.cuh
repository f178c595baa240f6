// cpp/cuda/merge.cuh — the merge layers as kernel bodies and launch sequences (see hd.cuh for
// the design): Add, Subtract, Multiply, Average, Maximum, Minimum (n inputs of one shape,
// forward and backward) and Concatenate along any axis. Oracle: python/faltung/layers/merging
// (numpy), whose order of operations the bodies keep, so results agree to the last bit:
//   Add/Average/Multiply fold left (((x0 op x1) op x2) ...), Average divides the sum by n;
//   Maximum/Minimum: out = op(op(x0, x1), x2) ... (NaN propagates), and dL/dy goes to the first
//   input attaining the extreme (strict comparison, so a tie keeps the earlier input: the
//   TensorFlow gradient Keras gets); win (N) int32 holds that input's index;
//   Multiply's backward: dx_i = ((dy x_0) x_1) ... skipping x_i (no division: zeros are exact).
// Broadcasting and masks are the layer's business (it expands inputs to the output shape
// first); the bodies see n inputs of N elements each, stacked as xs (n, N).
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace faltung::cuda::merge {

enum class Op : int32_t { add, subtract, multiply, average, maximum, minimum };

// xs (n, N) -> y (N), win (N) for maximum/minimum (else unused). Thread per element.
template <typename T>
struct Forward {
  T* y;
  int32_t* win;
  const T* xs;
  int64_t n, N;
  Op op;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= N) return;
    T cur = xs[i];
    int32_t w = 0;
    for (int64_t k = 1; k < n; ++k) {
      const T v = xs[k * N + i];
      switch (op) {
        case Op::add:
        case Op::average: cur = cur + v; break;
        case Op::subtract: cur = cur - v; break;
        case Op::multiply: cur = cur * v; break;
        case Op::maximum:
        case Op::minimum: {
          const bool take = op == Op::maximum ? v > cur : v < cur;
          if (cur != cur || v != v) cur = cur != cur ? cur : v;  // np.maximum/minimum: NaN wins
          else if (take) cur = v;
          if (take) w = int32_t(k);
          break;
        }
      }
    }
    if (op == Op::average) cur = cur / T(n);
    y[i] = cur;
    if (win) win[i] = w;
  }
};

// dy (N), xs (n, N) (multiply), win (N) (maximum/minimum) -> dxs (n, N). Thread per element.
template <typename T>
struct Backward {
  T* dxs;
  const T *dy, *xs;
  const int32_t* win;
  int64_t n, N;
  Op op;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= N) return;
    const T d = dy[i];
    for (int64_t k = 0; k < n; ++k) {
      T g = d;
      switch (op) {
        case Op::add: break;
        case Op::subtract: g = k == 0 ? d : -d; break;
        case Op::average: g = d / T(n); break;
        case Op::multiply:
          for (int64_t j = 0; j < n; ++j)
            if (j != k) g = g * xs[j * N + i];
          break;
        case Op::maximum:
        case Op::minimum: g = win[i] == k ? d : T(0); break;
      }
      dxs[k * N + i] = g;
    }
  }
};

template <class Exec, typename T>
void forward(Exec& ex, T* y, int32_t* win, const T* xs, int64_t n, int64_t N, Op op, int64_t block) {
  ex.launch(cover(N, block), Forward<T>{y, win, xs, n, N, op});
}
template <class Exec, typename T>
void backward(Exec& ex, T* dxs, const T* dy, const T* xs, const int32_t* win, int64_t n, int64_t N, Op op,
              int64_t block) {
  ex.launch(cover(N, block), Backward<T>{dxs, dy, xs, win, n, N, op});
}

// ---- Concatenate ------------------------------------------------------------------------------
// Input k viewed as (outer, sizes[k], inner) (outer = product of the axes before `axis`, inner
// of those after), stored one after another in xs at offsets[k] = outer inner (sizes[0] + ...
// + sizes[k-1]); the output (outer, S, inner), S = sum of sizes; starts[k] = sizes[0] + ... +
// sizes[k-1] along the axis (n + 1 entries, starts[n] = S).
// Forward: thread per output element gathers; backward: thread per element of dy scatters to
// the one input it came from (each dx element is written once: no atomics).
struct ConcatShape {
  int64_t outer, inner, S, n;
  const int64_t* starts;  // (n + 1), in the executor's memory
};

FALTUNG_HD inline int64_t concat_source(const ConcatShape& s, int64_t a) {  // the input that holds slot a
  int64_t k = 0;
  while (s.starts[k + 1] <= a) ++k;
  return k;
}

// Maps output element i to its input element: (k, index into the stacked xs).
FALTUNG_HD inline int64_t concat_map(const ConcatShape& s, int64_t i) {
  const int64_t in = i % s.inner, a = (i / s.inner) % s.S, o = i / (s.inner * s.S);
  const int64_t k = concat_source(s, a), size_k = s.starts[k + 1] - s.starts[k];
  return s.outer * s.inner * s.starts[k] + (o * size_k + (a - s.starts[k])) * s.inner + in;
}

template <typename T>
struct ConcatForward {
  T* y;
  const T* xs;
  ConcatShape s;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i < s.outer * s.S * s.inner) y[i] = xs[concat_map(s, i)];
  }
};
template <typename T>
struct ConcatBackward {
  T* dxs;
  const T* dy;
  ConcatShape s;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i < s.outer * s.S * s.inner) dxs[concat_map(s, i)] = dy[i];
  }
};

template <class Exec, typename T>
void concat_forward(Exec& ex, T* y, const T* xs, const ConcatShape& s, int64_t block) {
  ex.launch(cover(s.outer * s.S * s.inner, block), ConcatForward<T>{y, xs, s});
}
template <class Exec, typename T>
void concat_backward(Exec& ex, T* dxs, const T* dy, const ConcatShape& s, int64_t block) {
  ex.launch(cover(s.outer * s.S * s.inner, block), ConcatBackward<T>{dxs, dy, s});
}

}  // namespace faltung::cuda::merge
