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
// only broadcast sums may differ from numpy's pairwise sums, by rounding).
// Masks (Multiply, Maximum, Minimum; the layers' rules, as Keras 3's): input k's mask has its
// shape without the last axis (one byte per row of its last axis, 1 = kept). Multiply: a
// masked-out entry counts as 1, and with every input masked the output is 0 where none is kept
// (no gradient there); Maximum/Minimum: a masked-out entry takes the value merged so far, and
// the value merged so far (masked out in all inputs before) takes the input's (ExtremeMerge).
// Dot (a batched GEMM, dense.cuh's Gemm over a batch) and its L2 normalization are below.
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
  // n pointers to the inputs' masks (nullptr where an input has none; in the executor's memory),
  // or nullptr for no masks at all; all_masked: every input has one.
  const uint8_t* const* masks = nullptr;
  bool all_masked = false;
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

// Whether input k's entry read by output element i is kept (true without a mask).
FALTUNG_HD inline bool kept(const MergeShape& s, int64_t k, int64_t i) {
  if (!s.masks || !s.masks[k]) return true;
  return s.masks[k][(source(s, k, i) - s.offsets[k]) / s.in_dims[k * s.D + s.D - 1]] != 0;
}
// Whether some input keeps output element i (the output's mask when all_masked).
FALTUNG_HD inline bool any_kept(const MergeShape& s, int64_t i) {
  for (int64_t k = 0; k < s.n; ++k)
    if (kept(s, k, i)) return true;
  return false;
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
    const bool product = op == Op::multiply;
    bool cur_kept = kept(s, 0, i);  // (the extremes': kept by an input so far)
    T cur = product && !cur_kept ? T(1) : xs[source(s, 0, i)];
    int32_t w = 0;
    for (int64_t k = 1; k < s.n; ++k) {
      T v = xs[source(s, k, i)];
      const bool keep = kept(s, k, i);
      switch (op) {
        case Op::add:
        case Op::average: cur = cur + v; break;
        case Op::subtract: cur = cur - v; break;
        case Op::multiply: cur = cur * (keep ? v : T(1)); break;
        case Op::maximum:
        case Op::minimum: {
          int32_t src = int32_t(k);
          if (!keep) v = cur, src = w;        // masked out: the value merged so far
          if (!cur_kept) cur = v, w = src;    // none kept so far: the input's
          cur_kept = cur_kept || keep;
          const bool take = op == Op::maximum ? v > cur : v < cur;
          if (cur != cur || v != v) cur = cur != cur ? cur : v;  // np.maximum/minimum: NaN wins
          else if (take) cur = v;
          if (take) w = src;
          break;
        }
      }
    }
    if (op == Op::average) cur = cur / T(s.n);
    if (product && s.all_masked && !any_kept(s, i)) cur = T(0);
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
        if (!kept(s, k, i) || (s.all_masked && !any_kept(s, i))) return T(0);
        T g = d;
        for (int64_t j = 0; j < s.n; ++j)
          if (j != k && kept(s, j, i)) g = g * xs[source(s, j, i)];
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

// ---- Dot's normalize=True: L2 normalization of rows -------------------------------------------
// x (R,K) -> x_hat = x inv, inv (R) = 1 / max(||x_row||, eps) (Keras's ops.normalize with
// backend.epsilon(); python/faltung/layers/merging/dot.py's l2_normalize). Thread per row.
template <typename T>
struct L2Normalize {
  T *x_hat, *inv;
  const T* x;
  int64_t R, K;
  T eps;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t r = th.global();
    if (r >= R) return;
    const T* x_r = x + r * K;
    T ss = 0;
    for (int64_t k = 0; k < K; ++k) ss += x_r[k] * x_r[k];
    const T norm = hd_sqrt(ss), v = T(1) / (norm > eps ? norm : eps);
    inv[r] = v;
    for (int64_t k = 0; k < K; ++k) x_hat[r * K + k] = x_r[k] * v;
  }
};
// g (R,K) = dL/dx_hat -> dx = inv (g - x_hat sum(g x_hat)) where the norm was above eps, inv g
// where eps was taken (dot.py's l2_normalize_backward). Thread per row.
template <typename T>
struct L2NormalizeBackward {
  T* dx;
  const T *g, *x_hat, *inv;
  int64_t R, K;
  T eps;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t r = th.global();
    if (r >= R) return;
    const T *g_r = g + r * K, *h_r = x_hat + r * K;
    T proj = 0;
    for (int64_t k = 0; k < K; ++k) proj += g_r[k] * h_r[k];
    if (!(inv[r] < T(1) / eps)) proj = T(0);
    for (int64_t k = 0; k < K; ++k) dx[r * K + k] = inv[r] * (g_r[k] - h_r[k] * proj);
  }
};

template <class Exec, typename T>
void l2_normalize(Exec& ex, T* x_hat, T* inv, const T* x, int64_t R, int64_t K, T eps, int64_t block) {
  ex.launch(cover(R, block), L2Normalize<T>{x_hat, inv, x, R, K, eps});
}
template <class Exec, typename T>
void l2_normalize_backward(Exec& ex, T* dx, const T* g, const T* x_hat, const T* inv, int64_t R, int64_t K, T eps,
                           int64_t block) {
  ex.launch(cover(R, block), L2NormalizeBackward<T>{dx, g, x_hat, inv, R, K, eps});
}

}  // namespace faltung::cuda::merge
