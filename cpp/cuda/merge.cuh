// cpp/cuda/merge.cuh — the merge layers as kernel bodies and launch sequences (see hd.cuh for
// the design): Add, Subtract, Multiply, Average, Maximum, Minimum (n inputs of one shape,
// forward and backward) and Concatenate along any axis. Oracle: python/faltung/layers/merging
// (numpy), whose order of operations the bodies keep, so results agree to the last bit:
//   Add/Average/Multiply fold left (((x0 op x1) op x2) ...), Average divides the sum by n;
//   Maximum/Minimum: out = op(op(x0, x1), x2) ... (NaN propagates), and dL/dy goes to the first
//   input attaining the extreme (strict comparison, so a tie keeps the earlier input: the
//   TensorFlow gradient Keras gets); win (N) int32 holds that input's index;
//   Multiply's backward: dx_i = ((dy x_0) x_1) ... skipping x_i (no division: zeros are exact).
// Broadcasting as the layers (base_merge.py): inputs of lower rank get size-1 axes after the
// batch axis, then size-1 axes broadcast; the backward sums over them (in row-major order, so
// only broadcast sums may differ from numpy's pairwise sums, by rounding). Masks are the
// layer's business (not here).
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace faltung::cuda::merge {

enum class Op : int32_t { add, subtract, multiply, average, maximum, minimum };

// The inputs' layout: n inputs stored one after another in xs (input k from offsets[k],
// offsets[n] the total), each of rank D after Keras's expand_rank (size-1 axes inserted after
// the batch axis), in_dims (n, D) their sizes, the output dims (D) (each input's size is the
// output's or 1: broadcast), N = prod(dims). Arrays in the executor's memory.
struct MergeShape {
  int64_t n, D, N;
  const int64_t *dims, *in_dims, *offsets;
};

// The index in xs of input k's element that output element i reads (broadcast axes: 0).
FALTUNG_HD inline int64_t source(const MergeShape& s, int64_t k, int64_t i) {
  int64_t idx = 0, mul = 1;
  for (int64_t d = s.D - 1; d >= 0; --d) {
    const int64_t c = i % s.dims[d], nd = s.in_dims[k * s.D + d];
    i /= s.dims[d];
    idx += (nd == 1 ? 0 : c) * mul;
    mul *= nd;
  }
  return s.offsets[k] + idx;
}

// xs -> y (N), win (N) for maximum/minimum (else nullptr). Thread per output element.
template <typename T>
struct Forward {
  T* y;
  int32_t* win;
  const T* xs;
  MergeShape s;
  Op op;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t i = th.global();
    if (i >= s.N) return;
    T cur = xs[source(s, 0, i)];
    int32_t w = 0;
    for (int64_t k = 1; k < s.n; ++k) {
      const T v = xs[source(s, k, i)];
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
    if (op == Op::average) cur = cur / T(s.n);
    y[i] = cur;
    if (win) win[i] = w;
  }
};

// dy (N), xs (multiply), win (N) (maximum/minimum) -> dxs, laid out as xs. Thread per input
// element (all inputs): the sum over the output elements that read it (one unless broadcast),
// visited in row-major order; each term is the layer's: add dy, subtract +-dy, average dy/n,
// multiply ((dy x_0) x_1) ... without x_k, maximum/minimum dy where win == k.
template <typename T>
struct Backward {
  T* dxs;
  const T *dy, *xs;
  const int32_t* win;
  MergeShape s;
  Op op;
  FALTUNG_HD T term(int64_t k, int64_t i) const {
    const T d = dy[i];
    switch (op) {
      case Op::add: return d;
      case Op::subtract: return k == 0 ? d : -d;
      case Op::average: return d / T(s.n);
      case Op::multiply: {
        T g = d;
        for (int64_t j = 0; j < s.n; ++j)
          if (j != k) g = g * xs[source(s, j, i)];
        return g;
      }
      case Op::maximum:
      case Op::minimum: return win[i] == k ? d : T(0);
    }
    return d;
  }
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= s.offsets[s.n]) return;
    int64_t k = 0;
    while (s.offsets[k + 1] <= e) ++k;
    int64_t reps = 1;  // output elements per input element: the product of the broadcast axes
    for (int64_t d = 0; d < s.D; ++d)
      if (s.in_dims[k * s.D + d] == 1) reps *= s.dims[d];
    T sum = 0;
    for (int64_t r = 0; r < reps; ++r) {
      int64_t loc = e - s.offsets[k], rem = r, i = 0, mul = 1;  // the r-th output element reading e
      for (int64_t d = s.D - 1; d >= 0; --d) {
        const int64_t nd = s.in_dims[k * s.D + d];
        int64_t c;
        if (nd == 1) {
          c = rem % s.dims[d];
          rem /= s.dims[d];
        } else {
          c = loc % nd;
        }
        loc /= nd;
        i += c * mul;
        mul *= s.dims[d];
      }
      sum = r == 0 ? term(k, i) : sum + term(k, i);
    }
    dxs[e] = reps > 0 ? sum : T(0);
  }
};

template <class Exec, typename T>
void forward(Exec& ex, T* y, int32_t* win, const T* xs, const MergeShape& s, Op op, int64_t block) {
  ex.launch(cover(s.N, block), Forward<T>{y, win, xs, s, op});
}
template <class Exec, typename T>
void backward(Exec& ex, T* dxs, const T* dy, const T* xs, const int32_t* win, const MergeShape& s, Op op,
              int64_t block, int64_t total) {
  ex.launch(cover(total, block), Backward<T>{dxs, dy, xs, win, s, op});
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
